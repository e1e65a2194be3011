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
    let expected: [(&str, &str); 8] = [
        ("alarm-writes-failing.json", "automatic"),
        ("schedule.json", "automatic"),
        ("alarm-writes-ok.json", "ignore"),
        ("manual-evaluate.json", "evaluate"),
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
            Ok(PromoterTriage::Act(PromoteIntent::Manual { .. })) => "manual",
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
