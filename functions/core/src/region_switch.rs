//! The invocation of an ARC Region switch *custom action Lambda* step.
//!
//! AWS documents how to configure the step (two functions, `regionToRun`, timeout, retry interval)
//! but not the JSON the function receives. So intake does not bet on key names: a payload is a
//! Region switch step when it carries a Region switch **plan ARN**
//! (`arn:aws…:arc-region-switch::<account>:plan/…`) somewhere in its first levels — a value no
//! other trigger carries. The execution id, the action and the Regions are then picked up by the
//! names the Region switch API uses (`executionId`, `action`, `activateRegion`/`activatingRegion`,
//! `deactivateRegion`/`deactivatingRegion`, `targetRegion`) wherever they appear, and every
//! top-level key is kept in the audit record, so the first real invocation documents the shape.
//! What the functions do with it never depends on a field being there: see
//! [`RegionSwitchStep::region_to_activate`].

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ids::Region;

/// How deep into the payload to look; Region switch payloads are shallow, and the walk is bounded.
const MAX_DEPTH: usize = 4;
/// How many values to look at before giving up.
const MAX_VALUES: usize = 512;

/// A Region switch plan execution, as far as its payload says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionSwitchStep {
    pub plan_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// `activate` or `deactivate`, lower-cased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activating_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivating_region: Option<String>,
    /// The Region the execution targets (activated or deactivated, per `action`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_region: Option<String>,
    /// The payload's top-level keys: evidence of the (undocumented) shape.
    pub keys: Vec<String>,
}

fn is_plan_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((_, tail)) = rest.split_once(":arc-region-switch::") else {
        return false;
    };
    let Some((account, plan)) = tail.split_once(":plan/") else {
        return false;
    };
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !plan.is_empty()
}

fn looks_like_region(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.contains('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn normalise(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[derive(Default)]
struct Walk {
    seen: usize,
    plan: Option<String>,
    execution: Option<String>,
    action: Option<String>,
    activating: Option<String>,
    deactivating: Option<String>,
    target: Option<String>,
}

impl Walk {
    fn value(&mut self, key: Option<&str>, v: &Value, depth: usize) {
        self.seen += 1;
        if self.seen > MAX_VALUES || depth > MAX_DEPTH {
            return;
        }
        match v {
            Value::String(s) => {
                if self.plan.is_none() && is_plan_arn(s) {
                    self.plan = Some(s.clone());
                }
                let Some(key) = key else { return };
                let slot = match normalise(key).as_str() {
                    "executionid" => &mut self.execution,
                    "action" | "executionaction" | "workflowtargetaction"
                        if matches!(s.to_ascii_lowercase().as_str(), "activate" | "deactivate") =>
                    {
                        &mut self.action
                    }
                    "activateregion" | "activatingregion" if looks_like_region(s) => &mut self.activating,
                    "deactivateregion" | "deactivatingregion" if looks_like_region(s) => {
                        &mut self.deactivating
                    }
                    "targetregion" | "workflowtargetregion" if looks_like_region(s) => &mut self.target,
                    _ => return,
                };
                if slot.is_none() {
                    *slot = Some(s.to_ascii_lowercase().chars().take(128).collect());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.value(None, i, depth + 1)),
            Value::Object(map) => map.iter().for_each(|(k, i)| self.value(Some(k), i, depth + 1)),
            _ => {}
        }
    }
}

/// `Some` when the payload carries a Region switch plan ARN.
pub fn parse(obj: &Map<String, Value>) -> Option<RegionSwitchStep> {
    let mut walk = Walk::default();
    for (k, v) in obj {
        walk.value(Some(k), v, 1);
    }
    let plan_arn = walk.plan?;
    Some(RegionSwitchStep {
        plan_arn,
        execution_id: walk.execution,
        action: walk.action,
        activating_region: walk.activating,
        deactivating_region: walk.deactivating,
        target_region: walk.target,
        keys: obj.keys().take(32).cloned().collect(),
    })
}

/// Which Region a step asks to make active, and how that was worked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    pub region: Region,
    pub because: String,
}

impl RegionSwitchStep {
    /// The Region this step activates: named outright, derived from the action and its target, or
    /// — when the payload says neither — the Region the function runs in, which is right for the
    /// documented configuration (`regionToRun: activatingRegion`). A two-Region datastore lets a
    /// deactivation name the Region to activate; with more members that is ambiguous and refused.
    pub fn region_to_activate(&self, own: &Region, members: &[Region]) -> Result<Activation, String> {
        let member = |r: &str| members.iter().find(|m| m.as_str() == r).cloned();
        let named = |r: &str, how: &str| {
            member(r)
                .map(|region| Activation {
                    region,
                    because: format!("{how} {r}"),
                })
                .ok_or_else(|| format!("the plan activates {r}, which is not a member of the datastore"))
        };
        if let Some(r) = &self.activating_region {
            return named(r, "the plan execution activates");
        }
        let deactivated = match (self.action.as_deref(), &self.target_region) {
            (Some("activate"), Some(r)) => return named(r, "the plan execution's activate action targets"),
            (Some("deactivate"), Some(r)) => Some(r),
            _ => self.deactivating_region.as_ref(),
        };
        if let Some(off) = deactivated {
            let others: Vec<&Region> = members.iter().filter(|m| m.as_str() != off).collect();
            return match others.as_slice() {
                [only] => Ok(Activation {
                    region: (*only).clone(),
                    because: format!("the plan execution deactivates {off}; {only} is the other member"),
                }),
                _ => Err(format!(
                    "the plan execution deactivates {off} without naming the Region to activate, and the \
                     datastore has {} other members: run the step with regionToRun: activatingRegion",
                    others.len()
                )),
            };
        }
        Ok(Activation {
            region: own.clone(),
            because: format!(
                "the payload names no Region; the step runs here ({own}), as regionToRun: activatingRegion does"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PLAN: &str = "arn:aws:arc-region-switch::123456789012:plan/sessions-failover:a1b2c3";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn regions() -> Vec<Region> {
        ["us-west-1", "us-west-2"]
            .iter()
            .filter_map(|r| Region::parse(r).ok())
            .collect()
    }

    fn own() -> Region {
        Region::parse("us-west-2").expect("region")
    }

    #[test]
    fn a_payload_with_a_plan_arn_is_a_region_switch_step_whatever_the_key_is_called() {
        for payload in [
            json!({"planArn": PLAN}),
            json!({"plan": PLAN, "executionId": "e-1"}),
            json!({"regionSwitch": {"execution": {"arn": PLAN}}}),
            json!({"steps": [{"x": PLAN}]}),
        ] {
            let step = parse(&obj(payload.clone())).unwrap_or_else(|| panic!("not recognised: {payload}"));
            assert_eq!(step.plan_arn, PLAN);
        }
    }

    #[test]
    fn payloads_without_a_plan_arn_are_not_region_switch_steps() {
        for payload in [
            json!({"action": "activate", "activateRegion": "us-west-2"}),
            json!({"planArn": "arn:aws:arc-region-switch::12345:plan/short-account"}),
            json!({"planArn": "arn:aws:route53-recovery-control::123456789012:controlpanel/x"}),
            json!({"deep": {"a": {"b": {"c": {"d": {"e": PLAN}}}}}}),
        ] {
            assert_eq!(parse(&obj(payload.clone())), None, "{payload}");
        }
    }

    #[test]
    fn execution_action_and_regions_are_read_by_the_api_names_in_any_casing() {
        let step = parse(&obj(json!({
            "PlanArn": PLAN,
            "ExecutionId": "exec-42",
            "execution": {"action": "ACTIVATE", "activateRegion": "us-west-2", "deactivate_region": "us-west-1"},
        })))
        .expect("step");
        assert_eq!(step.execution_id.as_deref(), Some("exec-42"));
        assert_eq!(step.action.as_deref(), Some("activate"));
        assert_eq!(step.activating_region.as_deref(), Some("us-west-2"));
        assert_eq!(step.deactivating_region.as_deref(), Some("us-west-1"));
        let mut keys = step.keys;
        keys.sort();
        assert_eq!(keys, vec!["ExecutionId", "PlanArn", "execution"]);
    }

    #[test]
    fn values_that_are_not_regions_or_actions_are_not_taken_for_them() {
        let step = parse(&obj(json!({
            "planArn": PLAN, "action": "promote everything", "activateRegion": "Oregon", "targetRegion": 7,
        })))
        .expect("step");
        assert_eq!(
            (step.action, step.activating_region, step.target_region),
            (None, None, None)
        );
    }

    #[test]
    fn a_named_activating_region_is_the_one_activated_even_when_the_step_runs_elsewhere() {
        let step = parse(&obj(json!({"planArn": PLAN, "activatingRegion": "us-west-1"}))).expect("step");
        let a = step.region_to_activate(&own(), &regions()).expect("activation");
        assert_eq!(a.region.as_str(), "us-west-1");
    }

    #[test]
    fn an_activate_action_activates_its_target_and_a_deactivate_action_the_other_member() {
        let act = parse(&obj(
            json!({"planArn": PLAN, "action": "activate", "targetRegion": "us-west-1"}),
        ))
        .expect("step");
        assert_eq!(
            act.region_to_activate(&own(), &regions())
                .expect("a")
                .region
                .as_str(),
            "us-west-1"
        );
        let deact = parse(&obj(
            json!({"planArn": PLAN, "action": "deactivate", "targetRegion": "us-west-1"}),
        ))
        .expect("step");
        let a = deact.region_to_activate(&own(), &regions()).expect("a");
        assert_eq!(a.region.as_str(), "us-west-2");
        assert!(a.because.contains("deactivates us-west-1"), "{}", a.because);
    }

    #[test]
    fn a_deactivation_with_three_members_is_ambiguous_and_refused() {
        let mut members = regions();
        members.extend(Region::parse("us-east-1").ok());
        let step = parse(&obj(json!({"planArn": PLAN, "deactivateRegion": "us-west-1"}))).expect("step");
        let err = step.region_to_activate(&own(), &members).expect_err("ambiguous");
        assert!(err.contains("activatingRegion"), "{err}");
    }

    #[test]
    fn a_region_outside_the_datastore_is_refused() {
        let step = parse(&obj(json!({"planArn": PLAN, "activateRegion": "eu-west-1"}))).expect("step");
        let err = step
            .region_to_activate(&own(), &regions())
            .expect_err("not a member");
        assert!(err.contains("eu-west-1"), "{err}");
    }

    #[test]
    fn a_payload_naming_no_region_activates_the_region_the_step_runs_in() {
        let step = parse(&obj(json!({"planArn": PLAN}))).expect("step");
        let a = step.region_to_activate(&own(), &regions()).expect("a");
        assert_eq!(a.region, own());
        assert!(a.because.contains("activatingRegion"), "{}", a.because);
    }
}
