//! The invocation of an ARC Region switch *custom action Lambda* step.
//!
//! AWS documents how to configure the step (two functions, `regionToRun`, timeout, retry interval)
//! but not the JSON the function receives. So intake does not bet on key names: a payload is a
//! Region switch step when it carries a Region switch **plan ARN**
//! (`arn:aws…:arc-region-switch::<account>:plan/…`) somewhere in its first levels — a value no
//! other trigger carries. The execution id, the action, `regionToRun` and the Regions are then
//! picked up by the names the Region switch API uses (`executionId`, `action`, `regionToRun`,
//! `activateRegion`/`activatingRegion`, `deactivateRegion`/`deactivatingRegion`, `targetRegion`)
//! wherever they appear, and every top-level key is kept in the audit record, so the first real
//! invocation documents the shape.
//!
//! A recognised field keeps what it held, usable or not: a Region field holding a number, a list
//! or a string that is not a Region code is not the same as no field at all, and
//! [`RegionSwitchStep::region_to_activate`] — the one place that decides which Region a step
//! promotes, and the one place that checks a named Region is a member — refuses it.

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::ids::Region;

/// How deep into the payload to look; Region switch payloads are shallow, and the walk is bounded.
const MAX_DEPTH: usize = 4;
/// How many values to look at before giving up.
const MAX_VALUES: usize = 512;
/// How much of a key or of what a field held is kept (for the audit record and refusals).
pub const MAX_SHOWN: usize = 64;

/// What the plan execution does, as the Region switch API names its actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PlanAction {
    Activate,
    Deactivate,
    PostRecovery,
}

impl PlanAction {
    fn parse(s: &str) -> Option<Self> {
        [Self::Activate, Self::Deactivate, Self::PostRecovery]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }

    fn name(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::PostRecovery => "postRecovery",
        }
    }
}

/// Which Region a custom-action step runs in, as the step's configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RegionToRun {
    ActivatingRegion,
    DeactivatingRegion,
    ActiveRegion,
    InactiveRegion,
}

impl RegionToRun {
    fn parse(s: &str) -> Option<Self> {
        [
            Self::ActivatingRegion,
            Self::DeactivatingRegion,
            Self::ActiveRegion,
            Self::InactiveRegion,
        ]
        .into_iter()
        .find(|r| r.name().eq_ignore_ascii_case(s))
    }

    fn name(self) -> &'static str {
        match self {
            Self::ActivatingRegion => "activatingRegion",
            Self::DeactivatingRegion => "deactivatingRegion",
            Self::ActiveRegion => "activeRegion",
            Self::InactiveRegion => "inactiveRegion",
        }
    }
}

/// A recognised field's value: one of its kind, or something the step cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Held<T> {
    Usable(T),
    /// A wrong JSON type, a string that is not a value of the field's kind, or different values
    /// under the field's names.
    Unusable,
}

/// A recognised field of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field<T> {
    /// The key as the payload spells it (the first one met, when the field appears twice).
    pub key: String,
    /// What it held, as JSON, at most [`MAX_SHOWN`] characters.
    pub held: String,
    pub value: Held<T>,
}

impl<T> Field<T> {
    fn refuse(&self, why: impl Into<String>) -> Refusal {
        Refusal {
            field: self.key.clone(),
            held: self.held.clone(),
            why: why.into(),
        }
    }
}

/// A Region switch plan execution, as far as its payload says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionSwitchStep {
    pub plan_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Field<PlanAction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_to_run: Option<Field<RegionToRun>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activating_region: Option<Field<Region>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivating_region: Option<Field<Region>>,
    /// The Region the execution targets: activated or deactivated, per `action`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_region: Option<Field<Region>>,
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

fn normalise(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn bounded(s: &str) -> String {
    if s.chars().count() <= MAX_SHOWN {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(MAX_SHOWN - 1).collect();
    cut.push('…');
    cut
}

/// What a value was, as JSON, bounded: `"us-west-2"`, `7`, `["us-west-1"]`, `null`.
fn shown(v: &Value) -> String {
    bounded(&v.to_string())
}

/// Records what `key` held in `slot`; a second, different value makes the field unusable.
fn record<T: PartialEq>(
    slot: &mut Option<Field<T>>,
    key: &str,
    v: &Value,
    parse: impl Fn(&str) -> Option<T>,
) {
    let value = match v.as_str().and_then(parse) {
        Some(t) => Held::Usable(t),
        None => Held::Unusable,
    };
    match slot {
        None => {
            *slot = Some(Field {
                key: bounded(key),
                held: shown(v),
                value,
            });
        }
        // The same value again (`"ACTIVATE"` and `"activate"` are one action) changes nothing.
        Some(f) if f.held == shown(v) || (value != Held::Unusable && f.value == value) => {}
        Some(f) => {
            f.held = bounded(&format!("{} and also {}", f.held, v));
            f.value = Held::Unusable;
        }
    }
}

#[derive(Default)]
struct Walk {
    seen: usize,
    plan: Option<String>,
    execution: Option<String>,
    action: Option<Field<PlanAction>>,
    region_to_run: Option<Field<RegionToRun>>,
    activating: Option<Field<Region>>,
    deactivating: Option<Field<Region>>,
    target: Option<Field<Region>>,
}

impl Walk {
    fn value(&mut self, key: Option<&str>, v: &Value, depth: usize) {
        self.seen += 1;
        if self.seen > MAX_VALUES || depth > MAX_DEPTH {
            return;
        }
        if let Some(key) = key {
            self.field(key, v);
        }
        match v {
            Value::String(s) if self.plan.is_none() && is_plan_arn(s) => self.plan = Some(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| self.value(None, i, depth + 1)),
            Value::Object(map) => map.iter().for_each(|(k, i)| self.value(Some(k), i, depth + 1)),
            _ => {}
        }
    }

    /// A recognised key keeps what it held whatever its JSON type: a Region field holding a
    /// number is unusable, never absent.
    fn field(&mut self, key: &str, v: &Value) {
        let region = |s: &str| Region::parse(s).ok();
        match normalise(key).as_str() {
            "executionid" => {
                if let (None, Some(s)) = (&self.execution, v.as_str()) {
                    self.execution = Some(s.chars().take(128).collect());
                }
            }
            "action" | "executionaction" | "workflowtargetaction" => {
                record(&mut self.action, key, v, PlanAction::parse);
            }
            "regiontorun" => record(&mut self.region_to_run, key, v, RegionToRun::parse),
            "activateregion" | "activatingregion" => record(&mut self.activating, key, v, region),
            "deactivateregion" | "deactivatingregion" => record(&mut self.deactivating, key, v, region),
            "targetregion" | "workflowtargetregion" => record(&mut self.target, key, v, region),
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
        region_to_run: walk.region_to_run,
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

/// Why a step promotes nothing: the field, what it held, and why that cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("the Region switch step's {field} held {held}: {why}")]
pub struct Refusal {
    /// The key as the payload spells it.
    pub field: String,
    /// What it held, as JSON, at most [`MAX_SHOWN`] characters.
    pub held: String,
    pub why: String,
}

/// The Region a Region field names, when it names a member; refused when it holds anything else.
fn member<'a>(
    f: &'a Option<Field<Region>>,
    members: &[Region],
) -> Result<Option<(&'a Field<Region>, &'a Region)>, Refusal> {
    let Some(f) = f else { return Ok(None) };
    match &f.value {
        Held::Unusable => Err(f.refuse("not one Region code such as us-west-2")),
        Held::Usable(r) if !members.contains(r) => {
            let listed: Vec<&str> = members.iter().map(Region::as_str).collect();
            Err(f.refuse(format!("not a member of the datastore ({})", listed.join(", "))))
        }
        Held::Usable(r) => Ok(Some((f, r))),
    }
}

impl RegionSwitchStep {
    /// The Region this step promotes, or why it promotes none. A step that fails over a Global
    /// Datastore acts only on what it understood, so, in this order:
    ///
    /// 1. a Region field holding anything but a member's Region code is refused;
    /// 2. an `action` other than `activate` is refused (absent: go on);
    /// 3. a `regionToRun` other than `activatingRegion`/`activeRegion` is refused (absent: go on);
    /// 4. a `targetRegion` without an `action` is refused: it may be the Region being deactivated;
    /// 5. the Region named as activated (`activateRegion`, or `targetRegion` of an activate
    ///    action) is the one; two different ones, or one also named as deactivated, are refused;
    /// 6. with `regionToRun: activatingRegion`/`activeRegion` the step runs in the Region being
    ///    activated: that is `own`, and a payload naming another Region as activated, or `own` as
    ///    deactivated, contradicts itself and is refused;
    /// 7. else a deactivated Region alone names the other member of a two-Region datastore (more
    ///    members: ambiguous, refused);
    /// 8. else — no Region named, no action but activate — the Region the step runs in, right for
    ///    the documented configuration (`regionToRun: activatingRegion`).
    pub fn region_to_activate(&self, own: &Region, members: &[Region]) -> Result<Activation, Refusal> {
        let activating = member(&self.activating_region, members)?;
        let deactivating = member(&self.deactivating_region, members)?;
        let target = member(&self.target_region, members)?;
        if let Some(f) = &self.action {
            match f.value {
                Held::Usable(PlanAction::Activate) => {}
                Held::Usable(other) => {
                    return Err(f.refuse(format!(
                        "this step promotes for activate only, never for {}: keep it out of the plan's \
                         other workflows",
                        other.name()
                    )));
                }
                Held::Unusable => {
                    return Err(
                        f.refuse("not an action this step knows (activate, deactivate, postRecovery)")
                    );
                }
            }
        }
        let runs_in_activating = match &self.region_to_run {
            None => None,
            Some(f) => match f.value {
                Held::Usable(RegionToRun::ActivatingRegion | RegionToRun::ActiveRegion) => Some(f),
                Held::Usable(other) => {
                    return Err(f.refuse(format!(
                        "the step runs in the {} Region, not in the one it would promote: configure it \
                         with regionToRun: activatingRegion",
                        if other == RegionToRun::DeactivatingRegion {
                            "deactivating"
                        } else {
                            "inactive"
                        }
                    )));
                }
                Held::Unusable => {
                    return Err(f.refuse(
                        "not a regionToRun this step knows (activatingRegion, deactivatingRegion, \
                         activeRegion, inactiveRegion)",
                    ));
                }
            },
        };
        if let (Some((t, _)), None) = (target, &self.action) {
            return Err(t.refuse("a target Region without an action: it may be the Region being deactivated"));
        }
        let named = match (activating, target) {
            (Some((a, on)), Some((t, other))) if on != other => {
                return Err(t.refuse(format!("but {} names {on} as the Region activated", a.key)));
            }
            (Some(a), _) => Some(a),
            (None, t) => t,
        };
        if let (Some((a, on)), Some((d, off))) = (named, deactivating)
            && on == off
        {
            return Err(d.refuse(format!("but {} names it as the Region activated", a.key)));
        }
        if let Some(run) = runs_in_activating {
            let says = format!(
                "{} {} says the step runs in the Region being activated",
                run.key, run.held
            );
            if let Some((a, on)) = named
                && on != own
            {
                return Err(a.refuse(format!("but {says}, and it runs in {own}")));
            }
            if let Some((d, off)) = deactivating
                && off == own
            {
                return Err(d.refuse(format!("the Region this step runs in, but {says}")));
            }
            return Ok(Activation {
                region: own.clone(),
                because: format!("{says}: {own}"),
            });
        }
        if let Some((a, on)) = named {
            return Ok(Activation {
                region: on.clone(),
                because: format!("the plan execution activates {on} ({})", a.key),
            });
        }
        if let Some((d, off)) = deactivating {
            let others: Vec<&Region> = members.iter().filter(|m| *m != off).collect();
            return match others.as_slice() {
                [only] => Ok(Activation {
                    region: (*only).clone(),
                    because: format!(
                        "the plan execution deactivates {off} ({}); {only} is the other member",
                        d.key
                    ),
                }),
                _ => Err(d.refuse(format!(
                    "the datastore has {} other members and the payload names none of them as the Region \
                     activated: promote with the promote command instead",
                    others.len()
                ))),
            };
        }
        Ok(Activation {
            region: own.clone(),
            because: format!(
                "the payload names no Region and no action but activate; the step runs here ({own}), as \
                 regionToRun: activatingRegion does"
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

    fn region(r: &str) -> Region {
        Region::parse(r).expect("region")
    }

    fn regions() -> Vec<Region> {
        ["us-west-1", "us-west-2"].map(region).to_vec()
    }

    fn three() -> Vec<Region> {
        ["us-west-1", "us-west-2", "us-east-1"].map(region).to_vec()
    }

    fn own() -> Region {
        region("us-west-2")
    }

    /// The step `fields` make (with the plan ARN added).
    fn step(fields: Value) -> RegionSwitchStep {
        let mut m = obj(fields);
        m.insert("planArn".into(), Value::from(PLAN));
        parse(&m).expect("a plan ARN makes a step")
    }

    fn decide(fields: Value) -> Result<Activation, Refusal> {
        step(fields).region_to_activate(&own(), &regions())
    }

    fn promotes(fields: Value) -> String {
        match decide(fields.clone()) {
            Ok(a) => a.region.to_string(),
            Err(e) => panic!("{fields} refused: {e}"),
        }
    }

    fn refused(fields: Value) -> Refusal {
        match decide(fields.clone()) {
            Ok(a) => panic!("{fields} promoted {}: {}", a.region, a.because),
            Err(e) => e,
        }
    }

    /// Region values no step may act on: wrong JSON types, and strings that are not a Region code.
    fn unusable_regions() -> Vec<Value> {
        vec![
            json!(7),
            json!(1.5),
            json!(true),
            json!(null),
            json!(["us-west-1"]),
            json!([]),
            json!({"region": "us-west-1"}),
            json!(""),
            json!(" us-west-2"),
            json!("Oregon"),
            json!("US-WEST-2"),
            json!("us-west-2a"),
            json!("US West (Oregon)"),
        ]
    }

    const REGION_KEYS: [&str; 7] = [
        "activateRegion",
        "activatingRegion",
        "deactivateRegion",
        "deactivatingRegion",
        "targetRegion",
        "workflowTargetRegion",
        "activate_region",
    ];

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
    fn execution_action_region_to_run_and_regions_are_read_by_the_api_names_in_any_casing() {
        let step = step(json!({
            "ExecutionId": "exec-42",
            "execution": {
                "action": "ACTIVATE", "activateRegion": "us-west-2", "deactivate_region": "us-west-1",
                "RegionToRun": "ActivatingRegion",
            },
        }));
        assert_eq!(step.execution_id.as_deref(), Some("exec-42"));
        let action = step.action.expect("action");
        assert_eq!(action.value, Held::Usable(PlanAction::Activate));
        assert_eq!(
            (action.key.as_str(), action.held.as_str()),
            ("action", "\"ACTIVATE\"")
        );
        assert_eq!(
            step.region_to_run.map(|f| f.value),
            Some(Held::Usable(RegionToRun::ActivatingRegion))
        );
        assert_eq!(
            step.activating_region.map(|f| f.value),
            Some(Held::Usable(region("us-west-2")))
        );
        let off = step.deactivating_region.expect("deactivating");
        assert_eq!(off.key, "deactivate_region");
        assert_eq!(off.value, Held::Usable(region("us-west-1")));
        let mut keys = step.keys;
        keys.sort();
        assert_eq!(keys, vec!["ExecutionId", "execution", "planArn"]);
    }

    #[test]
    fn region_to_run_is_recognised_under_every_spelling_of_its_key() {
        for key in [
            "regionToRun",
            "RegionToRun",
            "region_to_run",
            "region-to-run",
            "REGIONTORUN",
        ] {
            let f = step(json!({ key: "activeRegion" })).region_to_run;
            let f = f.unwrap_or_else(|| panic!("{key} not recognised"));
            assert_eq!(
                (f.key.as_str(), f.value),
                (key, Held::Usable(RegionToRun::ActiveRegion))
            );
        }
    }

    #[test]
    fn a_recognised_field_of_the_wrong_type_or_value_is_kept_as_unusable_never_dropped() {
        for bad in unusable_regions() {
            for key in REGION_KEYS {
                let s = step(json!({ key: bad.clone() }));
                let f = [s.activating_region, s.deactivating_region, s.target_region]
                    .into_iter()
                    .flatten()
                    .next()
                    .unwrap_or_else(|| panic!("{key}: {bad} dropped"));
                assert_eq!(f.value, Held::Unusable, "{key}: {bad}");
                assert_eq!((f.key.as_str(), f.held.clone()), (key, bad.to_string()));
            }
        }
        for bad in [
            json!("promote everything"),
            json!(1),
            json!(["activate"]),
            json!(null),
            json!(""),
        ] {
            let s = step(json!({"action": bad.clone(), "regionToRun": bad.clone()}));
            assert_eq!(
                s.action.map(|f| (f.value, f.held)),
                Some((Held::Unusable, bad.to_string()))
            );
            assert_eq!(
                s.region_to_run.map(|f| (f.value, f.held)),
                Some((Held::Unusable, bad.to_string()))
            );
        }
    }

    #[test]
    fn a_field_named_twice_with_different_values_is_unusable_and_twice_with_one_value_is_not() {
        let s = step(json!({"activateRegion": "us-west-1", "execution": {"activatingRegion": "us-west-2"}}));
        let f = s.activating_region.expect("field");
        assert_eq!(f.value, Held::Unusable);
        assert!(
            f.held.contains("us-west-1") && f.held.contains("us-west-2"),
            "{}",
            f.held
        );
        let s = step(json!({"activateRegion": "us-west-1", "execution": {"activatingRegion": "us-west-1"}}));
        assert_eq!(
            s.activating_region.map(|f| f.value),
            Some(Held::Usable(region("us-west-1")))
        );
        let s = step(json!({"action": "activate", "execution": {"action": "Activate"}}));
        assert_eq!(
            s.action.map(|f| f.value),
            Some(Held::Usable(PlanAction::Activate))
        );
        let s = step(json!({"action": "activate", "execution": {"action": "deactivate"}}));
        assert_eq!(s.action.map(|f| f.value), Some(Held::Unusable));
    }

    #[test]
    fn what_a_field_held_and_its_key_are_kept_to_a_bounded_length() {
        let long = "x".repeat(10_000);
        let s = step(json!({ "activateRegion": long.clone(), "targetRegion": [long.clone(), long.clone()] }));
        for f in [s.activating_region, s.target_region].into_iter().flatten() {
            assert!(f.held.chars().count() <= MAX_SHOWN, "{}", f.held.len());
            assert!(f.held.ends_with('…'));
        }
        let e = refused(json!({ "activateRegion": long }));
        assert!(e.to_string().chars().count() < 2 * MAX_SHOWN + 100, "{e}");
        let key = format!("activate{}Region", "_".repeat(200));
        let e = refused(json!({ key: 7 }));
        assert!(
            e.field.chars().count() <= MAX_SHOWN && e.field.starts_with("activate_"),
            "{e}"
        );
    }

    // ---- which Region a step promotes ----

    #[test]
    fn a_region_field_in_an_unusable_form_is_refused_naming_the_field_and_what_it_held() {
        for bad in unusable_regions() {
            for key in REGION_KEYS {
                for action in [json!(null), json!("activate")] {
                    let mut fields = json!({ key: bad.clone() });
                    if !action.is_null() {
                        fields["action"] = action.clone();
                    }
                    let e = refused(fields);
                    assert_eq!((e.field.as_str(), e.held.clone()), (key, bad.to_string()));
                    assert!(e.to_string().contains(key), "{e}");
                    assert!(e.why.contains("Region code"), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_region_outside_the_datastore_is_refused_in_any_region_field() {
        for key in REGION_KEYS {
            let e = refused(json!({ key: "eu-west-1", "action": "activate" }));
            assert_eq!((e.field.as_str(), e.held.as_str()), (key, "\"eu-west-1\""));
            assert!(
                e.why.contains("not a member") && e.why.contains("us-west-1, us-west-2"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_usable_region_does_not_excuse_an_unusable_one_next_to_it() {
        for (fields, field) in [
            (
                json!({"activateRegion": "us-west-2", "deactivateRegion": 7}),
                "deactivateRegion",
            ),
            (
                json!({"activateRegion": ["us-west-1"], "deactivateRegion": "us-west-2"}),
                "activateRegion",
            ),
            (
                json!({"action": "activate", "targetRegion": "us-west-2", "activatingRegion": ""}),
                "activatingRegion",
            ),
            (
                json!({"regionToRun": "activatingRegion", "deactivateRegion": "eu-west-1"}),
                "deactivateRegion",
            ),
        ] {
            assert_eq!(refused(fields.clone()).field, field, "{fields}");
        }
    }

    #[test]
    fn every_action_but_activate_is_refused_whatever_else_the_payload_says() {
        for action in [
            json!("deactivate"),
            json!("Deactivate"),
            json!("postRecovery"),
            json!("POSTRECOVERY"),
            json!("failover"),
            json!(""),
            json!(1),
            json!(null),
            json!(["activate"]),
            json!({"type": "activate"}),
        ] {
            for rest in [
                json!({}),
                json!({"activateRegion": "us-west-2"}),
                json!({"targetRegion": "us-west-1"}),
                json!({"regionToRun": "activatingRegion"}),
            ] {
                let mut fields = rest;
                fields["action"] = action.clone();
                let e = refused(fields);
                assert_eq!((e.field.as_str(), e.held.clone()), ("action", action.to_string()));
            }
        }
    }

    #[test]
    fn activate_in_any_casing_or_no_action_at_all_goes_on() {
        for action in [
            json!("activate"),
            json!("Activate"),
            json!("ACTIVATE"),
            Value::Null,
        ] {
            let mut fields = json!({"activateRegion": "us-west-1"});
            if !action.is_null() {
                fields["action"] = action;
            }
            assert_eq!(promotes(fields), "us-west-1");
        }
    }

    #[test]
    fn every_region_to_run_but_activating_or_active_region_is_refused() {
        for run in [
            json!("deactivatingRegion"),
            json!("inactiveRegion"),
            json!("DeactivatingRegion"),
            json!("otherRegion"),
            json!(""),
            json!(2),
            json!(null),
            json!(["activatingRegion"]),
        ] {
            for rest in [
                json!({}),
                json!({"activateRegion": "us-west-2"}),
                json!({"action": "activate"}),
            ] {
                let mut fields = rest;
                fields["regionToRun"] = run.clone();
                let e = refused(fields);
                assert_eq!(
                    (e.field.as_str(), e.held.clone()),
                    ("regionToRun", run.to_string())
                );
            }
        }
    }

    #[test]
    fn region_to_run_activating_or_active_region_promotes_the_region_the_step_runs_in() {
        for run in ["activatingRegion", "activeRegion", "ActivatingRegion"] {
            for here in regions() {
                let a = step(json!({"regionToRun": run, "action": "activate"}))
                    .region_to_activate(&here, &regions())
                    .expect("activation");
                assert_eq!(a.region, here);
                assert!(a.because.contains("regionToRun"), "{}", a.because);
            }
        }
    }

    #[test]
    fn a_named_activating_region_is_the_one_activated_even_when_the_step_runs_elsewhere() {
        let a = decide(json!({"activatingRegion": "us-west-1"})).expect("activation");
        assert_eq!(a.region.as_str(), "us-west-1");
        assert!(a.because.contains("activatingRegion"), "{}", a.because);
    }

    #[test]
    fn an_activate_action_activates_its_target() {
        assert_eq!(
            promotes(json!({"action": "activate", "targetRegion": "us-west-1"})),
            "us-west-1"
        );
        assert_eq!(
            promotes(json!({"action": "Activate", "workflowTargetRegion": "us-west-2"})),
            "us-west-2"
        );
    }

    #[test]
    fn a_target_region_without_an_action_is_refused_as_it_may_be_the_one_deactivated() {
        for r in ["us-west-1", "us-west-2"] {
            let e = refused(json!({"targetRegion": r}));
            assert_eq!(e.field, "targetRegion");
            assert!(e.why.contains("without an action"), "{e}");
        }
    }

    #[test]
    fn a_deactivated_region_alone_in_a_two_member_datastore_activates_the_other_member() {
        for key in ["deactivateRegion", "deactivatingRegion"] {
            for action in [None, Some("activate")] {
                let mut fields = json!({ key: "us-west-1" });
                if let Some(a) = action {
                    fields["action"] = json!(a);
                }
                let a = decide(fields).expect("activation");
                assert_eq!(a.region.as_str(), "us-west-2");
                assert!(a.because.contains("deactivates us-west-1"), "{}", a.because);
            }
        }
        assert_eq!(promotes(json!({"deactivateRegion": "us-west-2"})), "us-west-1");
    }

    #[test]
    fn a_deactivation_with_three_members_is_ambiguous_and_refused() {
        let e = step(json!({"deactivateRegion": "us-west-1"}))
            .region_to_activate(&own(), &three())
            .expect_err("ambiguous");
        assert_eq!(
            (e.field.as_str(), e.held.as_str()),
            ("deactivateRegion", "\"us-west-1\"")
        );
        assert!(e.why.contains("2 other members"), "{e}");
    }

    #[test]
    fn with_three_members_region_to_run_activating_settles_a_deactivation_on_the_region_the_step_runs_in() {
        let a = step(json!({"deactivateRegion": "us-west-1", "regionToRun": "activatingRegion"}))
            .region_to_activate(&own(), &three())
            .expect("activation");
        assert_eq!(a.region, own());
    }

    #[test]
    fn a_payload_that_contradicts_itself_is_refused_naming_the_field_that_disagrees() {
        for (fields, field) in [
            (
                json!({"action": "activate", "activateRegion": "us-west-1", "targetRegion": "us-west-2"}),
                "targetRegion",
            ),
            (
                json!({"activateRegion": "us-west-1", "deactivateRegion": "us-west-1"}),
                "deactivateRegion",
            ),
            (
                json!({"action": "activate", "targetRegion": "us-west-2", "deactivatingRegion": "us-west-2"}),
                "deactivatingRegion",
            ),
            // The step runs in us-west-2: regionToRun says that is the Region being activated.
            (
                json!({"regionToRun": "activatingRegion", "activateRegion": "us-west-1"}),
                "activateRegion",
            ),
            (
                json!({"regionToRun": "activeRegion", "deactivateRegion": "us-west-2"}),
                "deactivateRegion",
            ),
            (
                json!({"regionToRun": "activatingRegion", "action": "activate", "targetRegion": "us-west-1"}),
                "targetRegion",
            ),
        ] {
            assert_eq!(refused(fields.clone()).field, field, "{fields}");
        }
        // Agreeing fields are fine.
        assert_eq!(
            promotes(json!({
                "action": "activate", "activateRegion": "us-west-2", "targetRegion": "us-west-2",
                "deactivateRegion": "us-west-1", "regionToRun": "activatingRegion",
            })),
            "us-west-2"
        );
    }

    #[test]
    fn a_payload_naming_no_region_activates_the_region_the_step_runs_in() {
        for fields in [
            json!({}),
            json!({"action": "activate"}),
            json!({"executionId": "e-1", "mode": "graceful"}),
        ] {
            let a = decide(fields).expect("activation");
            assert_eq!(a.region, own());
            assert!(a.because.contains("activatingRegion"), "{}", a.because);
        }
    }

    /// Every combination of a few values per field, against what the rules promise: the step
    /// promotes only a member; never a Region named as deactivated; the Region named as activated
    /// when there is one; its own Region when `regionToRun` says so or nothing is named; and it
    /// refuses, naming that field, whatever holds an unusable value.
    #[test]
    fn every_combination_of_fields_is_promoted_only_as_the_rules_allow() {
        let regions_to_try = [
            None,
            Some(json!("us-west-1")),
            Some(json!("us-west-2")),
            Some(json!("us-east-1")),
            Some(json!("eu-west-1")),
            Some(json!(7)),
            Some(json!(["us-west-1"])),
            Some(json!(null)),
            Some(json!("")),
            Some(json!("Oregon")),
        ];
        let actions = [
            None,
            Some(json!("activate")),
            Some(json!("Activate")),
            Some(json!("deactivate")),
            Some(json!("postRecovery")),
            Some(json!("failover")),
            Some(json!(1)),
        ];
        let runs = [
            None,
            Some(json!("activatingRegion")),
            Some(json!("activeRegion")),
            Some(json!("deactivatingRegion")),
            Some(json!("inactiveRegion")),
            Some(json!("anywhere")),
            Some(json!(false)),
        ];
        let (mut promoted, mut refusals) = (0, 0);
        for members in [regions(), three()] {
            let is_member = |v: &Option<Value>| {
                v.as_ref()
                    .and_then(Value::as_str)
                    .and_then(|s| Region::parse(s).ok())
                    .filter(|r| members.contains(r))
            };
            for on in &regions_to_try {
                for off in &regions_to_try {
                    for target in &regions_to_try {
                        for action in &actions {
                            for run in &runs {
                                let mut fields = Map::new();
                                for (k, v) in [
                                    ("activateRegion", on),
                                    ("deactivateRegion", off),
                                    ("targetRegion", target),
                                    ("action", action),
                                    ("regionToRun", run),
                                ] {
                                    if let Some(v) = v {
                                        fields.insert(k.into(), v.clone());
                                    }
                                }
                                let what = Value::Object(fields.clone());
                                let result = step(what.clone()).region_to_activate(&own(), &members);
                                let bad_regions: Vec<&str> = [
                                    ("activateRegion", on),
                                    ("deactivateRegion", off),
                                    ("targetRegion", target),
                                ]
                                .into_iter()
                                .filter(|(_, v)| v.is_some() && is_member(v).is_none())
                                .map(|(k, _)| k)
                                .collect();
                                let action_ok = action.as_ref().is_none_or(|a| {
                                    a.as_str().is_some_and(|a| a.eq_ignore_ascii_case("activate"))
                                });
                                let run_here = run
                                    .as_ref()
                                    .and_then(Value::as_str)
                                    .is_some_and(|r| ["activatingRegion", "activeRegion"].contains(&r));
                                let run_ok = run.is_none() || run_here;
                                match result {
                                    Err(e) => {
                                        refusals += 1;
                                        assert!(fields.contains_key(&e.field), "{what}: {e}");
                                        assert_eq!(e.held, fields[&e.field].to_string(), "{what}");
                                        if !bad_regions.is_empty() {
                                            assert!(bad_regions.contains(&e.field.as_str()), "{what}: {e}");
                                        } else if !action_ok {
                                            assert_eq!(e.field, "action", "{what}");
                                        } else if !run_ok {
                                            assert_eq!(e.field, "regionToRun", "{what}");
                                        }
                                    }
                                    Ok(a) => {
                                        promoted += 1;
                                        assert!(
                                            bad_regions.is_empty() && action_ok && run_ok,
                                            "{what}: {a:?}"
                                        );
                                        assert!(members.contains(&a.region), "{what}: {a:?}");
                                        assert_ne!(Some(&a.region), is_member(off).as_ref(), "{what}");
                                        if let Some(r) = is_member(on) {
                                            assert_eq!(a.region, r, "{what}");
                                        }
                                        if let Some(r) = is_member(target) {
                                            assert!(action.is_some(), "{what}: a target without an action");
                                            assert_eq!(a.region, r, "{what}");
                                        }
                                        if run_here {
                                            assert_eq!(a.region, own(), "{what}");
                                        }
                                        if on.is_none() && off.is_none() && target.is_none() {
                                            assert_eq!(a.region, own(), "{what}");
                                        }
                                        if on.is_none() && target.is_none() && !run_here && off.is_some() {
                                            assert_eq!(members.len(), 2, "{what}: ambiguous");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(
            promoted > 100 && refusals > 100,
            "{promoted} promoted, {refusals} refused"
        );
    }
}
