//! Error and retry paths, each produced for real where the lab's Route 53 emulator can produce it
//! (throttling, `PriorRequestNotComplete`, 5xx, a hung endpoint, an answer lost after the change
//! was applied, a change applied after the caller gave up, a record moved under us), and with
//! aws-smithy-mocks (real wire-format error bodies) only for ElastiCache's: a missing datastore,
//! throttling, and a datastore that stays `modifying`.

use std::time::{Duration, Instant};

use aws_smithy_mocks::mock;
use failover_core::audit::Outcome;
use failover_core::retry::Deadline;
use failover_core::switch::Plan;
use failover_lab::route53::{Fault, Operation};
use traffic_switch::TrafficSwitch;

use failover_tests::*;

fn elasticache_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>r-1</RequestId></ErrorResponse>"
    )
}

/// A Route 53 of the test's own with the writer record on `initial`, and a switch whose
/// ElastiCache answers come from `describe`.
async fn switch_on(initial: &str, describe: &aws_smithy_mocks::Rule) -> (TrafficSwitch, Route53Lab, String) {
    let r53 = route53_lab().await;
    let zone = private_zone(&r53.client, Some(initial)).await;
    let switch =
        TrafficSwitch::with_clients(config(&zone, &[]), elasticache(&[describe]), r53.client.clone());
    (switch, r53, zone)
}

/// Changes the switch made (not the test's own setup).
fn switch_changes(r53: &Route53Lab) -> Vec<failover_lab::route53::AppliedChange> {
    r53.state
        .changes()
        .into_iter()
        .filter(|c| {
            c.comment
                .as_deref()
                .is_some_and(|m| m.starts_with("traffic-switch"))
        })
        .collect()
}

fn change_action(inv: &traffic_switch::Invocation) -> &traffic_switch::ActionReport {
    inv.audit.triggers[0]
        .actions
        .iter()
        .find(|a| a.action == "route53.change_resource_record_sets")
        .expect("a change was sent")
}

fn plans(inv: &traffic_switch::Invocation) -> Vec<&'static str> {
    inv.audit.triggers[0].decisions.iter().map(Plan::kind).collect()
}

#[tokio::test]
async fn throttling_prior_request_not_complete_and_server_errors_are_retried_until_the_change_lands() {
    for fault in [Fault::Throttling, Fault::PriorRequestNotComplete, Fault::Error5xx] {
        let describe = primary_is(USW2);
        let (switch, r53, zone) = switch_on(EP1, &describe).await;
        r53.state
            .set_fault(Operation::ChangeResourceRecordSets, fault, Some(2));
        let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
        assert_eq!(
            inv.audit.outcome,
            Outcome::Switched,
            "{fault:?}: {:?}",
            inv.audit.error
        );
        assert_eq!(
            change_action(&inv).attempts,
            3,
            "{fault:?}: two answered with it, the third landed"
        );
        assert_eq!(read_cname(&r53.client, &zone).await, Some((EP2.to_owned(), 30)));
        assert_eq!(switch_changes(&r53).len(), 1, "{fault:?}: applied once");
        assert_eq!(
            plans(&inv),
            ["switch", "no_op"],
            "{fault:?}: the write is read back"
        );
    }
}

#[tokio::test]
async fn a_record_that_moved_under_us_is_read_again_and_not_overwritten() {
    // Our read finds usw1; before our swap lands, another Region's switch moves the record to usw2.
    // Route 53 rejects our DELETE of the old value; we read again and find nothing to do.
    let describe = primary_is(USW2);
    let (switch, r53, zone) = switch_on(EP1, &describe).await;
    r53.state.set_fault(
        Operation::ChangeResourceRecordSets,
        Fault::Slow { ms: 800 },
        Some(1),
    );
    let running = tokio::spawn({
        let switch = switch.clone();
        async move { invoke(&switch, fixture("promotion-this-region.json")).await }
    });
    eventually(Duration::from_secs(5), "the switch's first read", || async {
        r53.state
            .requests()
            .iter()
            .any(|r| r.action == "ListResourceRecordSets")
            .then_some(())
    })
    .await;
    r53.state
        .upsert(&zone, RECORD, "CNAME", 30, &[EP2])
        .expect("the other switch's change");
    let inv = running.await.expect("the invocation ends");
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    assert_eq!(inv.audit.outcome, Outcome::NoOp);
    let change = change_action(&inv);
    assert!(!change.ok);
    assert_eq!(change.attempts, 1, "a conflict is not blindly retried");
    assert!(
        change.detail["error"]
            .as_str()
            .is_some_and(|e| e.contains("values provided do not match")),
        "{}",
        change.detail
    );
    assert_eq!(plans(&inv), ["switch", "no_op"], "read again after the conflict");
    assert!(switch_changes(&r53).is_empty(), "nothing of ours was applied");
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn a_change_whose_answer_was_lost_is_reported_as_this_invocations_switch() {
    // Route 53 applies the swap and the connection drops before the answer: the retry finds the
    // record already moved (a conflict), and the read after it finds our own value there.
    let describe = primary_is(USW2);
    let (mut switch, r53, zone) = switch_on(EP1, &describe).await;
    // Short attempts: the lost attempt makes the switch look once more before it ends.
    switch.retry.attempt_timeout = Duration::from_millis(500);
    r53.state
        .set_fault(Operation::ChangeResourceRecordSets, Fault::Lost, Some(1));
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    assert_eq!(inv.audit.outcome, Outcome::Switched, "the write was ours");
    let t = &inv.audit.triggers[0];
    assert!(
        t.attribution
            .as_deref()
            .is_some_and(|a| a.contains("answer was lost")),
        "{:?}",
        t.attribution
    );
    assert_eq!(t.abandoned_writes.len(), 1);
    assert_eq!(switch_changes(&r53).len(), 1, "applied exactly once");
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP2.to_owned(), 30)));
    let emf: serde_json::Value =
        serde_json::from_str(&inv.audit.emf_line("ValkeyFailover", 0)).expect("EMF line");
    assert_eq!(emf["SwitchesPerformed"], 1, "the metric counts it");
}

#[tokio::test]
async fn a_write_abandoned_on_a_slow_endpoint_is_looked_at_again_before_the_invocation_ends() {
    let describe = primary_is(USW2);
    let (mut switch, r53, zone) = switch_on(EP1, &describe).await;
    switch.retry.attempt_timeout = Duration::from_millis(300);
    // The first attempt is held 600 ms and abandoned at 300 ms; the retry lands at once.
    r53.state.set_fault(
        Operation::ChangeResourceRecordSets,
        Fault::Slow { ms: 600 },
        Some(1),
    );
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    let t = &inv.audit.triggers[0];
    assert_eq!(t.abandoned_writes.len(), 1, "{:?}", t.abandoned_writes);
    let late = t
        .late_landing
        .as_ref()
        .expect("the late-landing check is recorded");
    assert_eq!(late.checked_again_after_ms, Some(300));
    assert!(!late.may_still_land);
    assert_eq!(
        plans(&inv),
        ["switch", "no_op", "no_op"],
        "one more look after the wait"
    );
    // The abandoned attempt landed after the retry and was rejected: its DELETE no longer matched.
    assert_eq!(switch_changes(&r53).len(), 1);
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_cut_off_per_attempt_and_the_invocation_ends_before_its_deadline() {
    let describe = primary_is(USW2);
    let (mut switch, r53, _zone) = switch_on(EP1, &describe).await;
    switch.retry.attempt_timeout = Duration::from_millis(300);
    r53.state
        .set_fault(Operation::ListResourceRecordSets, Fault::Hang, None);
    let started = Instant::now();
    let inv = switch
        .handle(
            fixture("alarm-sns.json"),
            "req",
            Deadline::after(Duration::from_secs(2)),
        )
        .await;
    let err = inv.result.expect_err("fails");
    assert!(err.to_string().contains("AttemptTimeout"), "{err}");
    assert!(
        inv.audit.triggers[0].actions[0].attempts >= 2,
        "a hung attempt is cut off and retried"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn endless_throttling_gives_up_before_the_deadline_and_reports_the_attempts() {
    let describe = primary_is(USW2);
    let (switch, r53, zone) = switch_on(EP1, &describe).await;
    r53.state
        .set_fault(Operation::ChangeResourceRecordSets, Fault::Throttling, None);
    let started = Instant::now();
    let inv = switch
        .handle(
            fixture("promotion-this-region.json"),
            "req",
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    let err = inv.result.as_ref().expect_err("gives up");
    assert_eq!(err.error_type(), "AwsFault");
    let text = err.to_string();
    assert!(text.contains("Throttling") && text.contains("attempts"), "{text}");
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(change_action(&inv).attempts >= 2);
    assert_eq!(inv.audit.outcome, Outcome::Failed);
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP1.to_owned(), 30)));
}

#[tokio::test]
async fn a_missing_global_datastore_fails_at_once_and_says_so() {
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .http_status(
            404,
            Some(elasticache_error(
                "GlobalReplicationGroupNotFoundFault",
                "GlobalReplicationGroup ldgnf-sessions not found",
            )),
        )
        .repeatedly()
        .build();
    let (switch, r53, _zone) = switch_on(EP1, &describe).await;
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    let err = inv.result.expect_err("fails");
    assert_eq!(err.error_type(), "AwsFault");
    assert!(
        err.to_string().contains("GlobalReplicationGroupNotFoundFault"),
        "{err}"
    );
    assert_eq!(describe.num_calls(), 1, "a permanent fault is not retried");
    assert_eq!(inv.audit.outcome, Outcome::Failed);
    assert!(switch_changes(&r53).is_empty());
}

#[tokio::test]
async fn elasticache_throttling_and_server_errors_are_retried() {
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .http_status(400, Some(elasticache_error("Throttling", "Rate exceeded")))
        .http_status(500, Some(elasticache_error("InternalFailure", "oops")))
        .output(|| described("available", USW2))
        .repeatedly()
        .build();
    let (switch, r53, zone) = switch_on(EP1, &describe).await;
    let inv = invoke(&switch, fixture("alarm-eventbridge.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(
        inv.audit.triggers[0].actions[1].attempts, 3,
        "the first describe took three attempts"
    );
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn a_failover_under_way_is_waited_out_then_followed() {
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .output(|| described("modifying", USW1))
        .times(2)
        .output(|| described("available", USW2))
        .repeatedly()
        .build();
    let (switch, r53, zone) = switch_on(EP1, &describe).await;
    let inv = invoke(&switch, fixture("alarm-sns.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(plans(&inv), ["wait", "wait", "switch", "no_op"]);
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn a_datastore_still_modifying_at_the_deadline_fails_without_changing_anything() {
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .output(|| described("modifying", USW2))
        .repeatedly()
        .build();
    let (mut switch, r53, zone) = switch_on(EP1, &describe).await;
    // Short attempts leave room in the 3 s deadline for several looks.
    switch.retry.attempt_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let inv = switch
        .handle(
            fixture("promotion-this-region.json"),
            "req",
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    let err = inv.result.expect_err("not stable");
    assert_eq!(err.error_type(), "DatastoreNotStable");
    assert!(err.to_string().contains("modifying"), "{err}");
    assert!(switch_changes(&r53).is_empty());
    assert_eq!(read_cname(&r53.client, &zone).await, Some((EP1.to_owned(), 30)));
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(describe.num_calls() > 3, "it kept looking while time allowed");
}
