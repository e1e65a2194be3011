//! Error and retry paths the real services (or moto) cannot be made to produce on demand:
//! throttling, `PriorRequestNotComplete`, a record that moves under us, a missing datastore,
//! endless `modifying`, and an API that never stops failing. Answered by aws-smithy-mocks with
//! real wire-format error bodies, so the SDK's own parsing is exercised too.

use std::time::{Duration, Instant};

use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
use aws_sdk_route53::types::{ChangeInfo, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType};
use aws_smithy_mocks::{Rule, mock};
use failover_core::audit::Outcome;
use failover_core::retry::Deadline;
use traffic_switch::TrafficSwitch;

use failover_tests::*;

const ZONE: &str = "Z0MOCKED";

fn route53_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>r-1</RequestId></ErrorResponse>"
    )
}

fn elasticache_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>r-1</RequestId></ErrorResponse>"
    )
}

fn listing(value: &str) -> ListResourceRecordSetsOutput {
    ListResourceRecordSetsOutput::builder()
        .resource_record_sets(
            ResourceRecordSet::builder()
                .name(format!("{RECORD}."))
                .r#type(RrType::Cname)
                .ttl(30)
                .resource_records(ResourceRecord::builder().value(value).build().expect("rr"))
                .build()
                .expect("rrs"),
        )
        .is_truncated(false)
        .max_items(10)
        .build()
        .expect("listing")
}

fn read_returns(value: &'static str) -> Rule {
    mock!(aws_sdk_route53::Client::list_resource_record_sets).then_output(move || listing(value))
}

fn accepted() -> ChangeResourceRecordSetsOutput {
    ChangeResourceRecordSetsOutput::builder()
        .change_info(
            ChangeInfo::builder()
                .id("/change/C0SWITCH")
                .status(ChangeStatus::Pending)
                .submitted_at(aws_smithy_types_now())
                .build()
                .expect("change info"),
        )
        .build()
}

fn aws_smithy_types_now() -> aws_sdk_route53::primitives::DateTime {
    aws_sdk_route53::primitives::DateTime::from_secs(1_790_000_000)
}

fn switch_with(r53_rules: &[&Rule], ec_rules: &[&Rule]) -> TrafficSwitch {
    TrafficSwitch::with_clients(config(ZONE, &[]), elasticache(ec_rules), route53_mock(r53_rules))
}

#[tokio::test(start_paused = true)]
async fn throttling_and_prior_request_not_complete_are_retried_until_the_change_lands() {
    let read = read_returns(EP1);
    let change = mock!(aws_sdk_route53::Client::change_resource_record_sets)
        .sequence()
        .http_status(400, Some(route53_error("Throttling", "Rate exceeded")))
        .http_status(
            400,
            Some(route53_error(
                "PriorRequestNotComplete",
                "The request was rejected because Route 53 was still processing a prior request.",
            )),
        )
        .http_status(503, Some(route53_error("ServiceUnavailable", "try again")))
        .output(accepted)
        .build();
    let describe = primary_is(USW2);
    let switch = switch_with(&[&read, &change], &[&describe]);
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(change.num_calls(), 4);
    let action = inv.audit.triggers[0]
        .actions
        .iter()
        .find(|a| a.action == "route53.change_resource_record_sets")
        .expect("change recorded");
    assert_eq!(action.attempts, 4);
    assert_eq!(action.detail["receipt"]["change_id"], "C0SWITCH");
}

#[tokio::test(start_paused = true)]
async fn a_record_that_moved_under_us_is_read_again_and_not_overwritten() {
    // Between our read (usw1) and our change, another Region's switch moved the record to usw2;
    // Route 53 rejects our DELETE of the old value. We read again and find nothing to do.
    let first_read = read_returns(EP1);
    let conflict = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            400.try_into().expect("status"),
            aws_smithy_types::body::SdkBody::from(route53_error(
                "InvalidChangeBatch",
                "[Tried to delete resource record set [name='writer.sessions.internal.', type='CNAME'] but the values provided do not match the current values, or it was not found]",
            )),
        )
    });
    let second_read = read_returns(EP2);
    let describe = primary_is(USW2);
    let switch = switch_with(&[&first_read, &conflict, &second_read], &[&describe]);
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    assert_eq!(inv.audit.outcome, Outcome::NoOp);
    assert_eq!(conflict.num_calls(), 1, "a conflict is not blindly retried");
    assert_eq!(
        second_read.num_calls(),
        1,
        "the record is read again after a conflict"
    );
    assert_eq!(inv.audit.triggers[0].decisions.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_missing_global_datastore_fails_at_once_and_says_so() {
    let read = read_returns(EP1);
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
    let switch = switch_with(&[&read], &[&describe]);
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    let err = inv.result.expect_err("fails");
    assert_eq!(err.error_type(), "AwsFault");
    assert!(
        err.to_string().contains("GlobalReplicationGroupNotFoundFault"),
        "{err}"
    );
    assert_eq!(describe.num_calls(), 1, "a permanent fault is not retried");
    assert_eq!(inv.audit.outcome, Outcome::Failed);
}

#[tokio::test(start_paused = true)]
async fn elasticache_throttling_and_server_errors_are_retried() {
    let read = read_returns(EP1);
    let change = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_output(accepted);
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .http_status(400, Some(elasticache_error("Throttling", "Rate exceeded")))
        .http_status(500, Some(elasticache_error("InternalFailure", "oops")))
        .output(|| described("available", USW2))
        .repeatedly()
        .build();
    let switch = switch_with(&[&read, &change], &[&describe]);
    let inv = invoke(&switch, fixture("alarm-eventbridge.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(describe.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failover_under_way_is_waited_out_then_followed() {
    let r1 = read_returns(EP1);
    let r2 = read_returns(EP1);
    let r3 = read_returns(EP1);
    let change = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_output(accepted);
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .output(|| described("modifying", USW1))
        .times(2)
        .output(|| described("available", USW2))
        .repeatedly()
        .build();
    let switch = switch_with(&[&r1, &r2, &r3, &change], &[&describe]);
    let inv = invoke(&switch, fixture("alarm-sns.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    let plans: Vec<&str> = inv.audit.triggers[0]
        .decisions
        .iter()
        .map(failover_core::switch::Plan::kind)
        .collect();
    assert_eq!(plans, ["wait", "wait", "switch"]);
}

#[tokio::test(start_paused = true)]
async fn a_datastore_still_modifying_at_the_deadline_fails_without_changing_anything() {
    let read = mock!(aws_sdk_route53::Client::list_resource_record_sets)
        .sequence()
        .output(|| listing(EP1))
        .repeatedly()
        .build();
    let change = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_output(accepted);
    let describe = mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .output(|| described("modifying", USW2))
        .repeatedly()
        .build();
    let switch = TrafficSwitch::with_clients(
        config(ZONE, &[]),
        elasticache(&[&describe]),
        route53_mock(&[&read, &change]),
    );
    let started = tokio::time::Instant::now();
    let inv = switch
        .handle(
            fixture("promotion-this-region.json"),
            "req",
            Deadline::after(Duration::from_secs(10)),
        )
        .await;
    let err = inv.result.expect_err("not stable");
    assert_eq!(err.error_type(), "DatastoreNotStable");
    assert!(err.to_string().contains("modifying"), "{err}");
    assert_eq!(change.num_calls(), 0);
    assert!(
        started.elapsed() <= Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(describe.num_calls() > 3, "it kept looking while time allowed");
}

#[tokio::test(start_paused = true)]
async fn endless_throttling_gives_up_before_the_deadline_and_reports_the_attempts() {
    let read = read_returns(EP1);
    let change = mock!(aws_sdk_route53::Client::change_resource_record_sets)
        .sequence()
        .http_status(400, Some(route53_error("Throttling", "Rate exceeded")))
        .repeatedly()
        .build();
    let describe = primary_is(USW2);
    let switch = switch_with(&[&read, &change], &[&describe]);
    let started = tokio::time::Instant::now();
    let inv = switch
        .handle(
            fixture("promotion-this-region.json"),
            "req",
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    let err = inv.result.expect_err("gives up");
    assert_eq!(err.error_type(), "AwsFault");
    let text = err.to_string();
    assert!(text.contains("Throttling") && text.contains("attempts"), "{text}");
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(change.num_calls() >= 2);
    assert_eq!(inv.audit.outcome, Outcome::Failed);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_never_answers_is_cut_off_per_attempt() {
    // A hung Route 53 read: each attempt is cut at the attempt timeout and the invocation ends
    // before its deadline with a timeout named in the error.
    let describe = primary_is(USW2);
    let hang = mock!(aws_sdk_route53::Client::list_resource_record_sets)
        .sequence()
        .http_status(504, Some(route53_error("GatewayTimeout", "upstream timed out")))
        .repeatedly()
        .build();
    let switch = switch_with(&[&hang], &[&describe]);
    let wall = Instant::now();
    let inv = switch
        .handle(
            fixture("alarm-sns.json"),
            "req",
            Deadline::after(Duration::from_secs(4)),
        )
        .await;
    let err = inv.result.expect_err("fails");
    assert!(err.to_string().contains("GatewayTimeout"), "{err}");
    assert!(hang.num_calls() >= 2, "5xx is retried");
    assert!(wall.elapsed() < Duration::from_secs(30));
}
