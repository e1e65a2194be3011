//! The promoter's fixtures and its AWS error paths (aws-smithy-mocks): what each trigger asks
//! for, and how a failover call that AWS refuses ends.

use std::collections::HashMap;

use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
use aws_sdk_elasticache::operation::describe_events::DescribeEventsOutput;
use aws_sdk_elasticache::operation::failover_global_replication_group::FailoverGlobalReplicationGroupOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use failover_core::audit::Outcome;
use failover_core::aws::cloudwatch::CloudWatch;
use failover_core::config::PromoterConfig;
use failover_core::intake::parse_event;
use failover_core::promote::{PromoteIntent, PromoterCommand, PromoterTriage, triage};
use failover_tests::*;
use promoter::Promoter;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../events/promoter/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("events/promoter/{name}: {e}"))
}

fn cfg() -> PromoterConfig {
    let vars: HashMap<&str, String> = [
        ("GLOBAL_DATASTORE_ID", DATASTORE.to_owned()),
        (
            "MEMBERS",
            format!("us-west-1:{USW1}:{EP1},us-west-2:{USW2}:{EP2}"),
        ),
        ("AWS_REGION", "us-west-2".to_owned()),
        ("SIGNAL_ALARMS", "sessions-writes-failing".to_owned()),
        ("VANTAGE_ALARMS", "us-west-1:sessions-writes-failing".to_owned()),
        ("WAIT_FOR_PROMOTION", "false".to_owned()),
    ]
    .into_iter()
    .collect();
    PromoterConfig::from_lookup(&|k| vars.get(k).cloned()).expect("valid")
}

fn triaged(name: &str) -> Result<PromoterTriage, String> {
    let t = parse_event::<PromoterCommand>(&fixture(name)).map_err(|e| e.to_string())?;
    triage(&t[0], &cfg()).map_err(|e| e.to_string())
}

#[test]
fn every_promoter_fixture_triages_as_its_name_says() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/promoter");
    let count = std::fs::read_dir(dir).expect("events/promoter").count();
    let expected: [(&str, &str); 10] = [
        ("region-switch-step.json", "region_switch"),
        ("alarm-writes-failing.json", "automatic"),
        ("schedule.json", "automatic"),
        ("alarm-writes-ok.json", "ignore"),
        ("manual-evaluate.json", "evaluate"),
        ("manual-preflight.json", "preflight"),
        ("manual-promote-dry-run.json", "manual"),
        ("manual-promote.json", "manual"),
        ("manual-promote-force.json", "manual"),
        ("invalid-promote-force-state.json", "error"),
    ];
    assert_eq!(count, expected.len(), "every fixture is listed here");
    for (name, kind) in expected {
        let got = match triaged(name) {
            Ok(PromoterTriage::Act(PromoteIntent::Automatic { .. })) => "automatic",
            Ok(PromoterTriage::Act(PromoteIntent::Evaluate)) => "evaluate",
            Ok(PromoterTriage::Act(PromoteIntent::Preflight)) => "preflight",
            Ok(PromoterTriage::Act(PromoteIntent::Manual { .. })) => "manual",
            Ok(PromoterTriage::Act(PromoteIntent::RegionSwitch { .. })) => "region_switch",
            Ok(PromoterTriage::Ignore { .. }) => "ignore",
            Err(_) => "error",
        };
        assert_eq!(got, kind, "{name}");
    }
}

fn alarm(state: StateValue) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_compute_output(move |req| {
        let name = req.alarm_names().first().cloned().unwrap_or_default();
        DescribeAlarmsOutput::builder()
            .metric_alarms(
                MetricAlarm::builder()
                    .alarm_name(name)
                    .state_value(state.clone())
                    .build(),
            )
            .build()
    })
}

fn no_lag() -> Rule {
    mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(|| GetMetricDataOutput::builder().build())
}

fn no_events() -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_events)
        .then_output(|| DescribeEventsOutput::builder().build())
}

fn cloudwatch(rules: &[&Rule]) -> CloudWatch {
    let client = || {
        mock_client!(
            aws_sdk_cloudwatch,
            RuleMode::MatchAny,
            rules.iter().copied(),
            |c| c.retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
        )
    };
    CloudWatch::from_clients(vec![
        ("us-west-1".into(), client()),
        ("us-west-2".into(), client()),
    ])
}

fn promoter(ec_rules: &[&Rule], cw: CloudWatch) -> Promoter {
    Promoter::with_clients(
        cfg(),
        vec![
            ("us-west-1".into(), elasticache(ec_rules)),
            ("us-west-2".into(), elasticache(ec_rules)),
        ],
        cw,
    )
}

fn elasticache_error(code: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{code} (mock)</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

#[tokio::test(start_paused = true)]
async fn with_every_gate_agreeing_the_promoter_calls_failover_for_its_own_region() {
    let describe = primary_is(USW1);
    let failover = mock!(aws_sdk_elasticache::Client::failover_global_replication_group)
        .match_requests(|r| {
            r.primary_region() == Some("us-west-2") && r.primary_replication_group_id() == Some(USW2)
        })
        .then_output(|| FailoverGlobalReplicationGroupOutput::builder().build());
    let (events, a, lag) = (no_events(), alarm(StateValue::Alarm), no_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    let inv = invoke_promoter(&p, &fixture("alarm-writes-failing.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit);
    assert_eq!(failover.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failover_already_under_way_is_a_no_op_not_an_error() {
    let describe = primary_is(USW1);
    let failover = mock!(aws_sdk_elasticache::Client::failover_global_replication_group)
        .sequence()
        .http_status(400, Some(elasticache_error("InvalidGlobalReplicationGroupState")))
        .repeatedly()
        .build();
    let (events, a, lag) = (no_events(), alarm(StateValue::Alarm), no_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    let inv = invoke_promoter(&p, &fixture("schedule.json")).await;
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    assert_eq!(inv.audit.outcome, Outcome::NoOp);
    assert_eq!(failover.num_calls(), 1, "not retried");
}

#[tokio::test(start_paused = true)]
async fn a_refused_failover_is_an_error_naming_the_aws_code() {
    let describe = primary_is(USW1);
    let failover = mock!(aws_sdk_elasticache::Client::failover_global_replication_group)
        .sequence()
        .http_status(400, Some(elasticache_error("InvalidParameterCombination")))
        .repeatedly()
        .build();
    let (events, a, lag) = (no_events(), alarm(StateValue::Alarm), no_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    let inv = invoke_promoter(&p, &fixture("alarm-writes-failing.json")).await;
    let err = inv.result.expect_err("refused");
    assert_eq!(err.error_type(), "AwsFault");
    assert!(err.to_string().contains("InvalidParameterCombination"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_evaluation_reports_every_gate_and_never_calls_failover() {
    let describe = primary_is(USW1);
    let failover = mock!(aws_sdk_elasticache::Client::failover_global_replication_group)
        .then_output(|| FailoverGlobalReplicationGroupOutput::builder().build());
    let (events, a, lag) = (no_events(), alarm(StateValue::Alarm), no_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    let inv = invoke_promoter(&p, &fixture("manual-evaluate.json")).await;
    let response = inv.result.expect("evaluates");
    assert_eq!(inv.audit.outcome, Outcome::DryRun);
    assert_eq!(
        response["triggers"][0]["decision"]["gates"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert_eq!(failover.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_alarm_back_to_ok_reads_nothing() {
    let describe = primary_is(USW1);
    let a = alarm(StateValue::Alarm);
    let p = promoter(&[&describe], cloudwatch(&[&a]));
    let inv = invoke_promoter(&p, &fixture("alarm-writes-ok.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Ignored);
    assert_eq!(describe.num_calls() + a.num_calls(), 0);
}

async fn invoke_promoter(p: &Promoter, event: &str) -> promoter::Invocation {
    p.handle(
        event,
        "test",
        failover_core::retry::Deadline::after(std::time::Duration::from_secs(20)),
    )
    .await
}

// ---- ARC Region switch custom-action step ----

/// Describe answers: `before` reads with us-west-1 PRIMARY, then us-west-2 PRIMARY for good.
fn promoted_after(before: usize) -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .sequence()
        .output(|| described("available", USW1))
        .times(before)
        .output(|| described("available", USW2))
        .repeatedly()
        .build()
}

fn ok_failover() -> Rule {
    mock!(aws_sdk_elasticache::Client::failover_global_replication_group)
        .then_output(|| FailoverGlobalReplicationGroupOutput::builder().build())
}

#[tokio::test(start_paused = true)]
async fn a_region_switch_step_promotes_a_healthy_primary_away_and_succeeds_once_its_region_is_primary() {
    // A planned switch: the write-error alarms are OK, which would block an automatic promotion.
    let (describe, failover, events) = (promoted_after(2), ok_failover(), no_events());
    let (a, lag) = (alarm(StateValue::Ok), no_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    let inv = invoke_promoter(&p, &fixture("region-switch-step.json")).await;
    let response = inv.result.expect("the step succeeds");
    assert_eq!(failover.num_calls(), 1);
    assert_eq!(inv.audit.outcome, Outcome::Switched);
    let report = &response["triggers"][0];
    assert_eq!(report["activation"]["region"], "us-west-2");
    // The gates a plan execution stands in for, reported as forced past (cooldown passed anyway).
    assert_eq!(
        report["decision"]["forced"],
        serde_json::json!(["signal", "vantage"])
    );
    assert_eq!(
        report["actions"]
            .as_array()
            .and_then(|a| a.last())
            .map(|a| &a["final"]),
        Some(&serde_json::json!("done"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_region_switch_step_after_the_promotion_succeeds_without_a_second_failover() {
    let (describe, failover) = (primary_is(USW2), ok_failover());
    let p = promoter(&[&describe, &failover], cloudwatch(&[]));
    let inv = invoke_promoter(&p, &fixture("region-switch-step.json")).await;
    assert!(inv.result.is_ok(), "{:?}", inv.result);
    assert_eq!(inv.audit.outcome, Outcome::NoOp);
    assert_eq!(failover.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_region_switch_step_whose_promotion_does_not_finish_fails_so_region_switch_retries_it() {
    let (describe, failover, events) = (primary_is(USW1), ok_failover(), no_events());
    let (a, lag) = (alarm(StateValue::Ok), no_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    let inv = invoke_promoter(&p, &fixture("region-switch-step.json")).await;
    let err = inv.result.expect_err("not primary before the deadline");
    assert_eq!(err.error_type(), "PromotionPending");
    assert!(err.to_string().contains(USW2), "{err}");
    assert_eq!(failover.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_region_switch_step_for_a_region_outside_the_datastore_changes_nothing() {
    let (describe, failover) = (primary_is(USW1), ok_failover());
    let p = promoter(&[&describe, &failover], cloudwatch(&[]));
    let step = fixture("region-switch-step.json").replace("\"us-west-2\"", "\"eu-west-1\"");
    let inv = invoke_promoter(&p, &step).await;
    let err = inv.result.expect_err("refused");
    assert_eq!(err.error_type(), "Refused");
    assert!(err.to_string().contains("eu-west-1"), "{err}");
    assert_eq!(describe.num_calls() + failover.num_calls(), 0);
}

/// A CloudWatch of two Regions answering differently.
fn cloudwatch_per_region(usw1: &[&Rule], usw2: &[&Rule]) -> CloudWatch {
    let client = |rules: &[&Rule]| {
        mock_client!(
            aws_sdk_cloudwatch,
            RuleMode::MatchAny,
            rules.iter().copied(),
            |c| c.retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
        )
    };
    CloudWatch::from_clients(vec![
        ("us-west-1".into(), client(usw1)),
        ("us-west-2".into(), client(usw2)),
    ])
}

fn denied_alarms() -> Rule {
    mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_error(|| {
        aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError::generic(
            aws_sdk_cloudwatch::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("User is not authorized to perform: cloudwatch:DescribeAlarms")
                .build(),
        )
    })
}

fn denied_lag() -> Rule {
    mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
        aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError::generic(
            aws_sdk_cloudwatch::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("User is not authorized to perform: cloudwatch:GetMetricData")
                .build(),
        )
    })
}

fn denied_events() -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_events)
        .sequence()
        .http_status(403, Some(elasticache_error("AccessDenied")))
        .repeatedly()
        .build()
}

fn never_failover() -> Rule {
    mock!(aws_sdk_elasticache::Client::failover_global_replication_group)
        .then_output(|| FailoverGlobalReplicationGroupOutput::builder().build())
}

fn reason(inv: &promoter::Invocation) -> String {
    let v = serde_json::to_value(&inv.audit).expect("audit");
    v["triggers"][0]["decision"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_vantage_alarm_the_primary_region_refuses_to_read_blocks_the_promotion_and_is_named() {
    let describe = primary_is(USW1);
    let failover = never_failover();
    let events = no_events();
    let (denied, a, lag) = (denied_alarms(), alarm(StateValue::Alarm), no_lag());
    let p = promoter(
        &[&describe, &failover, &events],
        cloudwatch_per_region(&[&denied], &[&a, &lag]),
    );
    let inv = invoke_promoter(&p, &fixture("alarm-writes-failing.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::NoOp, "{:?}", inv.audit);
    assert_eq!(
        failover.num_calls(),
        0,
        "no promotion on a vantage point it could not read"
    );
    let why = reason(&inv);
    assert!(
        why.starts_with("blocked by vantage")
            && why.contains("us-west-1/sessions-writes-failing")
            && why.contains("AccessDenied"),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn events_a_member_region_refuses_to_give_hold_the_cooldown_unless_the_policy_allows() {
    let describe = primary_is(USW1);
    let failover = never_failover();
    let (denied, fine) = (denied_events(), no_events());
    let (a, lag) = (alarm(StateValue::Alarm), no_lag());
    let cw = || cloudwatch(&[&a, &lag]);
    let with = |cfg: PromoterConfig| {
        Promoter::with_clients(
            cfg,
            vec![
                ("us-west-1".into(), elasticache(&[&describe, &failover, &denied])),
                ("us-west-2".into(), elasticache(&[&describe, &failover, &fine])),
            ],
            cw(),
        )
    };
    let inv = invoke_promoter(&with(cfg()), &fixture("alarm-writes-failing.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::NoOp, "{:?}", inv.audit);
    assert_eq!(failover.num_calls(), 0);
    let why = reason(&inv);
    assert!(
        why.starts_with("blocked by cooldown") && why.contains("us-west-1") && why.contains("AccessDenied"),
        "{why}"
    );

    let mut allow = cfg();
    allow.policy.missing_events = failover_core::config::MissingEvents::Allow;
    let inv = invoke_promoter(&with(allow), &fixture("alarm-writes-failing.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{}", reason(&inv));
    assert_eq!(failover.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lag_the_target_region_refuses_to_give_blocks_whatever_missing_lag_says() {
    let describe = primary_is(USW1);
    let failover = never_failover();
    let events = no_events();
    let (a, lag) = (alarm(StateValue::Alarm), denied_lag());
    let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
    assert_eq!(p.cfg.policy.missing_lag, failover_core::config::MissingLag::Allow);
    let inv = invoke_promoter(&p, &fixture("alarm-writes-failing.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::NoOp, "{:?}", inv.audit);
    assert_eq!(failover.num_calls(), 0);
    let why = reason(&inv);
    assert!(
        why.starts_with("blocked by data_loss") && why.contains("AccessDenied"),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_region_switch_step_it_cannot_read_makes_no_aws_call_and_fails_naming_the_field() {
    let step: serde_json::Value = serde_json::from_str(&fixture("region-switch-step.json")).expect("json");
    for (field, held) in [
        ("activateRegion", serde_json::json!(7)),
        ("activateRegion", serde_json::json!(["us-west-2"])),
        ("deactivateRegion", serde_json::json!("Oregon")),
        ("activateRegion", serde_json::json!("")),
        ("action", serde_json::json!("postRecovery")),
        ("action", serde_json::json!("deactivate")),
        ("regionToRun", serde_json::json!("deactivatingRegion")),
        ("regionToRun", serde_json::json!(null)),
    ] {
        // Every call the step could make would be answered: only the refusal can keep them at zero.
        let (describe, failover, events) = (primary_is(USW1), ok_failover(), no_events());
        let (a, lag) = (alarm(StateValue::Ok), no_lag());
        let p = promoter(&[&describe, &failover, &events], cloudwatch(&[&a, &lag]));
        let mut payload = step.clone();
        payload[field] = held.clone();
        let inv = invoke_promoter(&p, &payload.to_string()).await;
        let err = inv.result.expect_err("refused");
        assert_eq!(err.error_type(), "Refused", "{field}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(field) && message.contains(&held.to_string()),
            "{message}"
        );
        assert_eq!(inv.audit.outcome, Outcome::Failed);
        let calls = describe.num_calls()
            + failover.num_calls()
            + events.num_calls()
            + a.num_calls()
            + lag.num_calls();
        assert_eq!(calls, 0, "{field}: {held}");
    }
}

fn no_metrics() -> Rule {
    mock!(aws_sdk_cloudwatch::Client::list_metrics)
        .then_output(|| aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput::builder().build())
}

/// IAM denials are what the lab cannot produce: a role missing a read fails the permissions item
/// naming the action and the Region, and the item that needed the read fails with it.
#[tokio::test(start_paused = true)]
async fn preflight_names_each_read_the_role_is_denied_and_changes_nothing() {
    let describe = primary_is(USW1);
    let failover = never_failover();
    let (denied, fine) = (denied_events(), no_events());
    let (denied_cw, a, lag, metrics) = (denied_alarms(), alarm(StateValue::Ok), no_lag(), no_metrics());
    let p = Promoter::with_clients(
        cfg(),
        vec![
            ("us-west-1".into(), elasticache(&[&describe, &failover, &denied])),
            ("us-west-2".into(), elasticache(&[&describe, &failover, &fine])),
        ],
        cloudwatch_per_region(&[&denied_cw], &[&a, &lag, &metrics]),
    );
    let inv = invoke_promoter(&p, r#"{"command":"preflight"}"#).await;
    assert_eq!(inv.audit.outcome, Outcome::Reported, "{:?}", inv.audit);
    assert_eq!(failover.num_calls(), 0, "preflight is read-only");
    let v = serde_json::to_value(&inv.audit).expect("audit");
    let list = &v["triggers"][0]["preflight"];
    assert_eq!(list["ready"], false);
    let item = |name: &str| {
        list["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["item"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {list:#}"))
    };
    let permissions = item("permissions");
    assert_eq!(permissions["verdict"], "FAIL");
    let found = permissions["found"].as_str().unwrap_or_default();
    assert!(
        found.contains("cloudwatch:DescribeAlarms in us-west-1")
            && found.contains("elasticache:DescribeEvents in us-west-1"),
        "{found}"
    );
    assert!(
        !found.contains("us-west-2"),
        "us-west-2 allowed every read: {found}"
    );
    assert_eq!(item("vantage_alarm:us-west-1")["verdict"], "FAIL");
    assert_eq!(item("cooldown_events:us-west-1")["verdict"], "FAIL");
    assert_eq!(item("cooldown_events:us-west-2")["verdict"], "PASS");
}
