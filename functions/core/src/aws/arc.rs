//! Route 53 ARC cluster data plane: read routing-control states and flip them, rotating through
//! the cluster's regional endpoints (one SDK client per endpoint, built once at init).
//!
//! Transient failures (connection refused, timeouts, throttling, 5xx, "endpoint temporarily
//! unavailable") move on to the next endpoint; a safety-rule rejection (`ConflictException`) or a
//! validation error is the cluster's answer, so it is reported at once, never retried elsewhere.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_route53recoverycluster::Client;
use aws_sdk_route53recoverycluster::types::{RoutingControlState, UpdateRoutingControlStateEntry};
use serde::Serialize;
use thiserror::Error;

use crate::config::ArcTarget;
use crate::fault::AwsFault;
use crate::retry::Deadline;
use crate::rotation::{Next, Rotation};

const LIST: &str = "Route53RecoveryCluster.ListRoutingControls";
const UPDATE: &str = "Route53RecoveryCluster.UpdateRoutingControlStates";

/// Rounds through all endpoints before giving up (if the deadline allows that many).
const MAX_ROUNDS: u32 = 3;

/// An answer, with which endpoint gave it and which failed first.
#[derive(Debug, Clone, Serialize)]
pub struct Answered<T> {
    pub value: T,
    pub endpoint: String,
    /// `"<region>: <why>"` for every failed attempt, in order.
    pub failed: Vec<String>,
    pub attempts: u32,
    /// Attempts given up on without an answer: for an update, the cluster may still apply them.
    pub abandoned: u32,
}

#[derive(Debug, Clone, Error)]
pub enum ArcFailure {
    /// The cluster refused the request itself (safety rule, validation, access): not retried.
    #[error("ARC endpoint {endpoint} rejected the request: {fault}")]
    Rejected {
        endpoint: String,
        fault: AwsFault,
        failed: Vec<String>,
        abandoned: u32,
    },
    /// No endpoint answered in time.
    #[error("no ARC cluster endpoint answered ({reason}); tried: {}", failed.join("; "))]
    Unreachable {
        reason: &'static str,
        failed: Vec<String>,
        attempts: u32,
        abandoned: u32,
    },
}

impl ArcFailure {
    pub fn failed(&self) -> &[String] {
        match self {
            ArcFailure::Rejected { failed, .. } | ArcFailure::Unreachable { failed, .. } => failed,
        }
    }

    pub fn attempts(&self) -> u32 {
        match self {
            ArcFailure::Rejected { failed, .. } => u32::try_from(failed.len()).unwrap_or(u32::MAX) + 1,
            ArcFailure::Unreachable { attempts, .. } => *attempts,
        }
    }

    /// Attempts given up on without an answer, which the cluster may still apply.
    pub fn abandoned(&self) -> u32 {
        match self {
            ArcFailure::Rejected { abandoned, .. } | ArcFailure::Unreachable { abandoned, .. } => *abandoned,
        }
    }
}

/// The cluster's endpoints, each with its own client.
#[derive(Debug, Clone)]
pub struct ArcCluster {
    endpoints: Vec<(String, Client)>,
    timeout: Duration,
    backoff: Duration,
}

impl ArcCluster {
    /// One client per configured endpoint, sharing credentials and settings from `sdk`.
    pub fn new(sdk: &SdkConfig, target: &ArcTarget) -> Self {
        let endpoints = target
            .endpoints
            .iter()
            .map(|e| {
                let conf = aws_sdk_route53recoverycluster::config::Builder::from(sdk)
                    .endpoint_url(&e.url)
                    .region(aws_sdk_route53recoverycluster::config::Region::new(
                        e.region.to_string(),
                    ))
                    .build();
                (e.region.to_string(), Client::from_conf(conf))
            })
            .collect();
        Self::from_clients(endpoints, target.endpoint_timeout)
    }

    /// For tests: clients built elsewhere (mocked), labelled by Region.
    pub fn from_clients(endpoints: Vec<(String, Client)>, timeout: Duration) -> Self {
        Self {
            endpoints,
            timeout,
            backoff: Duration::from_millis(200),
        }
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    async fn rotate<T, F, Fut>(
        &self,
        deadline: &Deadline,
        start: usize,
        call: F,
    ) -> Result<Answered<T>, ArcFailure>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, AwsFault>>,
    {
        let mut rotation = Rotation::new(self.endpoints.len(), start, MAX_ROUNDS);
        let mut failed = Vec::new();
        let mut attempts = 0u32;
        let mut abandoned = 0u32;
        loop {
            let backoff = self.backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            let i = match rotation.next(deadline.remaining(), backoff) {
                Next::Try(i) => i,
                Next::Backoff(d) => {
                    tokio::time::sleep(d).await;
                    continue;
                }
                Next::GiveUp(reason) => {
                    return Err(ArcFailure::Unreachable {
                        reason,
                        failed,
                        attempts,
                        abandoned,
                    });
                }
            };
            let Some((region, client)) = self.endpoints.get(i) else {
                continue;
            };
            attempts += 1;
            let limit = self.timeout.min(deadline.remaining());
            let result = match tokio::time::timeout(limit, call(client.clone())).await {
                Ok(r) => r,
                Err(_) => Err(AwsFault::timeout("Route53RecoveryCluster", limit)),
            };
            match result {
                Ok(value) => {
                    return Ok(Answered {
                        value,
                        endpoint: region.clone(),
                        failed,
                        attempts,
                        abandoned,
                    });
                }
                Err(fault) if fault.transient => {
                    if fault.unanswered() {
                        abandoned += 1;
                    }
                    tracing::warn!(endpoint = %region, error = %fault, "ARC endpoint failed; trying the next");
                    failed.push(format!("{region}: {}", fault.code.as_deref().unwrap_or("error")));
                }
                Err(fault) => {
                    return Err(ArcFailure::Rejected {
                        endpoint: region.clone(),
                        fault,
                        failed,
                        abandoned,
                    });
                }
            }
        }
    }

    /// Reads every control in `arns` from one endpoint in one `ListRoutingControls` listing (all
    /// pages from the same endpoint): one snapshot of the cluster's state, never a mix of separate
    /// reads. Controls the listing does not contain are left out (their state is unknown).
    /// `start` is the endpoint to try first.
    pub async fn read_states(
        &self,
        arns: &[String],
        deadline: &Deadline,
        start: usize,
    ) -> Result<Answered<BTreeMap<String, bool>>, ArcFailure> {
        let panel = control_panel_of(arns);
        self.rotate(deadline, start, |client| {
            let panel = panel.clone();
            async move { list_states(&client, panel, arns).await }
        })
        .await
    }

    /// Reads the controls from every endpoint separately (the readiness check: each endpoint must
    /// answer, not just one of them). Each read is bounded by the endpoint timeout.
    pub async fn read_each(
        &self,
        arns: &[String],
        deadline: &Deadline,
    ) -> Vec<(String, Result<BTreeMap<String, bool>, AwsFault>)> {
        let panel = control_panel_of(arns);
        let reads = self.endpoints.iter().map(|(region, client)| {
            let panel = panel.clone();
            async move {
                let limit = self.timeout.min(deadline.remaining());
                let result = match tokio::time::timeout(limit, list_states(client, panel, arns)).await {
                    Ok(r) => r,
                    Err(_) => Err(AwsFault::timeout(LIST, limit)),
                };
                (region.clone(), result)
            }
        });
        futures_util::future::join_all(reads).await
    }

    /// Sets every control in `entries` (ARN, On?) in one `UpdateRoutingControlStates` call, the
    /// unit safety rules are evaluated against.
    pub async fn update_states(
        &self,
        entries: &[(String, bool)],
        overrides: &[String],
        deadline: &Deadline,
        start: usize,
    ) -> Result<Answered<()>, ArcFailure> {
        let built: Vec<UpdateRoutingControlStateEntry> = entries
            .iter()
            .filter_map(|(arn, on)| {
                UpdateRoutingControlStateEntry::builder()
                    .routing_control_arn(arn)
                    .routing_control_state(if *on {
                        RoutingControlState::On
                    } else {
                        RoutingControlState::Off
                    })
                    .build()
                    .ok()
            })
            .collect();
        if built.len() != entries.len() {
            return Err(ArcFailure::Rejected {
                endpoint: "none".into(),
                fault: AwsFault::service(
                    UPDATE,
                    Some("RequestNotBuilt".into()),
                    "an entry could not be built".into(),
                    false,
                ),
                failed: Vec::new(),
                abandoned: 0,
            });
        }
        self.rotate(deadline, start, |client| {
            let built = built.clone();
            async move {
                client
                    .update_routing_control_states()
                    .set_update_routing_control_state_entries(Some(built))
                    .set_safety_rules_to_override((!overrides.is_empty()).then(|| overrides.to_vec()))
                    .send()
                    .await
                    .map_err(|e| AwsFault::from_sdk(UPDATE, &e))?;
                Ok(())
            }
        })
        .await
    }
}

/// Whether a `ConflictException`'s message names a safety rule: the cluster refusing a change its
/// rules forbid, which no retry changes. Any other conflict is ARC's "there was a conflict with
/// this request, try again" (a routing control's wait period running, concurrent changes).
pub fn names_safety_rule(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("/safetyrule/")
        || m.contains("safety rule")
        || m.contains("assertion rule")
        || m.contains("gating rule")
}

/// The control panel all of `arns` belong to (`…:controlpanel/<id>/routingcontrol/<id>`), if they
/// share one: the listing is then limited to it. Otherwise the whole cluster is listed.
fn control_panel_of(arns: &[String]) -> Option<String> {
    let mut panels = arns.iter().map(|a| {
        a.split_once("/routingcontrol/")
            .map(|(panel, _)| panel.to_owned())
    });
    let first = panels.next()??;
    panels
        .all(|p| p.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// One `ListRoutingControls` listing (all pages, one endpoint) of the controls in `arns`.
async fn list_states(
    client: &Client,
    panel: Option<String>,
    arns: &[String],
) -> Result<BTreeMap<String, bool>, AwsFault> {
    let mut states = BTreeMap::new();
    let mut token: Option<String> = None;
    // A control panel holds at most a few hundred controls; the bound only guards against a
    // token that never ends.
    for _ in 0..50 {
        let out = client
            .list_routing_controls()
            .set_control_panel_arn(panel.clone())
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| AwsFault::from_sdk(LIST, &e))?;
        for rc in out.routing_controls() {
            if let Some(arn) = rc.routing_control_arn()
                && arns.iter().any(|a| a == arn)
            {
                states.insert(
                    arn.to_owned(),
                    rc.routing_control_state() == Some(&RoutingControlState::On),
                );
            }
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::control_panel_of;

    #[test]
    fn a_conflict_is_a_safety_rule_only_when_its_message_names_one() {
        use super::names_safety_rule;
        for rule in [
            "the change violates safety rule at-most-one-on (arn:aws:route53-recovery-control::1:controlpanel/p/safetyrule/r)",
            "Cannot update: assertion rule arn:aws:route53-recovery-control::1:controlpanel/p/safetyrule/abc is violated",
            "gating rule blocks this change",
        ] {
            assert!(names_safety_rule(rule), "{rule}");
        }
        for other in [
            "There was a conflict with this request. Try again.",
            "routing control is in its wait period",
            "",
        ] {
            assert!(!names_safety_rule(other), "{other}");
        }
    }

    #[test]
    fn controls_of_one_panel_limit_the_listing_to_it_and_mixed_panels_list_everything() {
        let a = "arn:aws:route53-recovery-control::1:controlpanel/p1/routingcontrol/a".to_owned();
        let b = "arn:aws:route53-recovery-control::1:controlpanel/p1/routingcontrol/b".to_owned();
        let c = "arn:aws:route53-recovery-control::1:controlpanel/p2/routingcontrol/c".to_owned();
        assert_eq!(
            control_panel_of(&[a.clone(), b]).as_deref(),
            Some("arn:aws:route53-recovery-control::1:controlpanel/p1")
        );
        assert_eq!(control_panel_of(&[a, c]), None);
        assert_eq!(control_panel_of(&["not-an-arn".to_owned()]), None);
        assert_eq!(control_panel_of(&[]), None);
    }
}
