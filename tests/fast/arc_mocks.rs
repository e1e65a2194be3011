//! arc mode's error classes, with aws-smithy-mocks answering each cluster endpoint in the wire
//! format the real service uses (awsJson1_0 error bodies): which failures move on to the next
//! endpoint, which stop at once, and that nothing touches Route 53.

use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_route53recoverycluster::operation::list_routing_controls::ListRoutingControlsOutput;
use aws_sdk_route53recoverycluster::operation::update_routing_control_states::UpdateRoutingControlStatesOutput;
use aws_sdk_route53recoverycluster::types::{RoutingControl, RoutingControlState};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use failover_core::audit::Outcome;
use failover_core::aws::arc::ArcCluster;
use failover_core::config::SwitchConfig;
use failover_core::retry::Deadline;
use traffic_switch::TrafficSwitch;

use failover_tests::*;

const ARN1: &str = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/usw1";
const ARN2: &str = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/usw2";

fn arc_config() -> SwitchConfig {
    config(
        "Z0UNUSED",
        &[
            ("ROUTING_MODE", "arc"),
            (
                "ARC_ENDPOINTS",
                "us-east-1=https://a.example/v1,us-west-2=https://b.example/v1,eu-west-1=https://c.example/v1,\
                 ap-northeast-1=https://d.example/v1,ap-southeast-2=https://e.example/v1",
            ),
            ("ARC_CONTROLS", &format!("us-west-1={ARN1},us-west-2={ARN2}")),
        ],
    )
}

fn json_error(status: u16, kind: &str, message: &str) -> (u16, String) {
    (
        status,
        format!("{{\"__type\":\"{kind}\",\"message\":\"{message}\"}}"),
    )
}

/// One endpoint of a cluster whose controls start as `states`: it lists them and applies updates,
/// so the switch's read after its flip sees the flip.
fn healthy(states: &'static [(&'static str, bool)]) -> (Rule, Rule) {
    let shared: Arc<Mutex<BTreeMap<String, bool>>> = Arc::new(Mutex::new(
        states.iter().map(|(a, on)| ((*a).to_owned(), *on)).collect(),
    ));
    let read = Arc::clone(&shared);
    let list =
        mock!(aws_sdk_route53recoverycluster::Client::list_routing_controls).then_compute_output(move |_| {
            let states = read.lock().expect("states").clone();
            ListRoutingControlsOutput::builder()
                .set_routing_controls(Some(
                    states
                        .into_iter()
                        .map(|(arn, on)| {
                            RoutingControl::builder()
                                .routing_control_arn(arn)
                                .routing_control_state(if on {
                                    RoutingControlState::On
                                } else {
                                    RoutingControlState::Off
                                })
                                .build()
                        })
                        .collect(),
                ))
                .build()
                .expect("output")
        });
    let update = mock!(aws_sdk_route53recoverycluster::Client::update_routing_control_states)
        .then_compute_output(move |req| {
            let mut states = shared.lock().expect("states");
            for e in req.update_routing_control_state_entries() {
                states.insert(
                    e.routing_control_arn().to_owned(),
                    e.routing_control_state() == &RoutingControlState::On,
                );
            }
            UpdateRoutingControlStatesOutput::builder().build()
        });
    (list, update)
}

/// One endpoint that fails every call with `status`/`body`.
fn failing(status: u16, body: String) -> (Rule, Rule) {
    let b1 = body.clone();
    let get = mock!(aws_sdk_route53recoverycluster::Client::list_routing_controls)
        .sequence()
        .http_status(status, Some(b1))
        .repeatedly()
        .build();
    let update = mock!(aws_sdk_route53recoverycluster::Client::update_routing_control_states)
        .sequence()
        .http_status(status, Some(body))
        .repeatedly()
        .build();
    (get, update)
}

fn client(rules: &(Rule, Rule)) -> aws_sdk_route53recoverycluster::Client {
    mock_client!(
        aws_sdk_route53recoverycluster,
        RuleMode::MatchAny,
        [&rules.0, &rules.1],
        |c| c.retry_config(aws_sdk_route53recoverycluster::config::retry::RetryConfig::disabled())
    )
}

fn switch(endpoints: &[(&str, &(Rule, Rule))], describe: &Rule) -> TrafficSwitch {
    let cluster = ArcCluster::from_clients(
        endpoints
            .iter()
            .map(|(r, rules)| ((*r).to_owned(), client(rules)))
            .collect(),
        Duration::from_millis(500),
    );
    // A Route 53 client with no rules: any call would fail the test's assertions.
    TrafficSwitch::with_clients(arc_config(), elasticache(&[describe]), route53_mock(&[])).with_arc(cluster)
}

#[tokio::test(start_paused = true)]
async fn transient_endpoint_failures_move_on_until_one_endpoint_answers() {
    static BEFORE: [(&str, bool); 2] = [(ARN1, true), (ARN2, false)];
    let e500 = failing(500, json_error(500, "InternalServerException", "boom").1);
    let e429 = failing(429, json_error(429, "ThrottlingException", "slow down").1);
    let e503 = failing(
        503,
        json_error(503, "EndpointTemporarilyUnavailableException", "try another").1,
    );
    let good = healthy(&BEFORE);
    let describe = primary_is(USW2);
    let sw = switch(
        &[
            ("us-east-1", &e500),
            ("us-west-2", &e429),
            ("eu-west-1", &e503),
            ("ap-northeast-1", &good),
        ],
        &describe,
    );
    let inv = invoke(&sw, fixture("promotion-this-region.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    let t = &inv.audit.triggers[0];
    let flip = t
        .actions
        .iter()
        .find(|a| a.action == "arc.update_routing_control_states")
        .expect("flip recorded");
    assert_eq!(flip.detail["answered_by"], "ap-northeast-1");
    assert_eq!(good.1.num_calls(), 1, "one UpdateRoutingControlStates call");
    let after = t.controls_after.as_ref().expect("controls after");
    assert_eq!(after.get("us-west-2"), Some(&true));
    assert_eq!(after.get("us-west-1"), Some(&false));
    assert!(
        t.actions.iter().all(|a| !a.action.starts_with("route53.")),
        "arc mode never calls Route 53"
    );
}

#[tokio::test(start_paused = true)]
async fn a_safety_rule_rejection_is_reported_and_not_retried_on_other_endpoints() {
    static BEFORE: [(&str, bool); 2] = [(ARN1, true), (ARN2, false)];
    // A safety rule is the cluster's: every endpoint gives the same answer.
    let rejecting = || {
        let (status, body) = json_error(409, "ConflictException", "violates safety rule at-most-one-on");
        (
            healthy(&BEFORE).0,
            mock!(aws_sdk_route53recoverycluster::Client::update_routing_control_states)
                .sequence()
                .http_status(status, Some(body))
                .repeatedly()
                .build(),
        )
    };
    let conflict = rejecting();
    let other = rejecting();
    let describe = primary_is(USW2);
    let sw = switch(&[("us-east-1", &conflict), ("us-west-2", &other)], &describe);
    let inv = invoke(&sw, fixture("promotion-this-region.json")).await;
    let err = inv.result.expect_err("rejected");
    assert_eq!(err.error_type(), "SafetyRuleRejected", "{err}");
    assert!(err.to_string().contains("at-most-one-on"), "{err}");
    assert_eq!(
        conflict.1.num_calls() + other.1.num_calls(),
        1,
        "a rule's answer is the cluster's answer: no other endpoint is asked"
    );
}

#[tokio::test(start_paused = true)]
async fn a_validation_error_stops_at_once_with_the_service_message() {
    let (status, body) = json_error(400, "ValidationException", "bad routing control ARN");
    let bad = failing(status, body);
    let describe = primary_is(USW2);
    let sw = switch(&[("us-east-1", &bad)], &describe);
    let inv = invoke(&sw, fixture("promotion-this-region.json")).await;
    let err = inv.result.expect_err("invalid");
    assert_eq!(err.error_type(), "AwsFault");
    assert!(err.to_string().contains("ValidationException"), "{err}");
    assert_eq!(bad.0.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_every_endpoint_fails_the_switch_stops_before_the_deadline_naming_each() {
    let eps: Vec<(Rule, Rule)> = (0..5)
        .map(|_| failing(500, json_error(500, "InternalServerException", "down").1))
        .collect();
    let describe = primary_is(USW2);
    let named: Vec<(&str, &(Rule, Rule))> = [
        "us-east-1",
        "us-west-2",
        "eu-west-1",
        "ap-northeast-1",
        "ap-southeast-2",
    ]
    .into_iter()
    .zip(eps.iter())
    .collect();
    let sw = switch(&named, &describe);
    let started = tokio::time::Instant::now();
    let inv = sw
        .handle(
            fixture("promotion-this-region.json"),
            "req",
            Deadline::after(Duration::from_secs(5)),
        )
        .await;
    let err = inv.result.expect_err("unreachable");
    assert_eq!(err.error_type(), "ArcUnreachable");
    let text = err.to_string();
    for region in [
        "us-east-1",
        "us-west-2",
        "eu-west-1",
        "ap-northeast-1",
        "ap-southeast-2",
    ] {
        assert!(text.contains(region), "{region} missing from: {text}");
    }
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn status_in_arc_mode_reads_the_controls_from_the_first_endpoint_that_answers() {
    static STATES: [(&str, bool); 2] = [(ARN1, false), (ARN2, true)];
    let down = failing(500, json_error(500, "InternalServerException", "down").1);
    let good = healthy(&STATES);
    let describe = primary_is(USW2);
    let sw = switch(&[("us-east-1", &down), ("us-west-2", &good)], &describe);
    let inv = invoke(&sw, fixture("manual-status.json")).await;
    let response = inv.result.expect("status");
    let status = &response["triggers"][0]["status"];
    assert_eq!(status["routing_controls"]["us-west-2"], "On");
    assert_eq!(status["routing_controls"]["us-west-1"], "Off");
    assert_eq!(status["controls_read_from"], "us-west-2");
    assert_eq!(status["writers_on_primary"], true);
}
