//! The lab's CloudWatch through the real `aws-sdk-cloudwatch` (rpc-v2-cbor): metrics in and out,
//! alarms it evaluates itself, and alarm state changes reaching the real traffic switch.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StateValue, Statistic,
};
use failover_lab::SnsFaults;
use failover_lab::cloudwatch::AlarmDelivery;
use failover_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

fn dim() -> Dimension {
    Dimension::builder()
        .name("ClientRegion")
        .value("us-west-2")
        .build()
}

async fn put_errors(cw: &aws_sdk_cloudwatch::Client, value: f64) {
    cw.put_metric_data()
        .namespace("SessionStore")
        .metric_data(
            MetricDatum::builder()
                .metric_name("WriteErrors")
                .dimensions(dim())
                .value(value)
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData");
}

async fn create_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str) {
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("SessionStore")
        .metric_name("WriteErrors")
        .dimensions(dim())
        .statistic(Statistic::Sum)
        .period(1)
        .evaluation_periods(3)
        .datapoints_to_alarm(2)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_put_through_the_sdk_come_back_per_period() {
    let lab = start_lab(|_| {}).await;
    let cw = cloudwatch_at(&lab.endpoints.cloudwatch, "us-west-2");
    for v in [1.0, 2.0, 3.0, 4.0] {
        put_errors(&cw, v).await;
    }
    let now = SystemTime::now();
    let query = |id: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("SessionStore")
                            .metric_name("WriteErrors")
                            .dimensions(dim())
                            .build(),
                    )
                    .period(60)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let out = cw
        .get_metric_data()
        .metric_data_queries(query("sum", "Sum"))
        .metric_data_queries(query("p99", "p99"))
        .start_time(DateTime::from(now - Duration::from_secs(300)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .send()
        .await
        .expect("GetMetricData");
    let by_id = |id: &str| {
        out.metric_data_results()
            .iter()
            .find(|r| r.id() == Some(id))
            .map(|r| r.values().iter().sum::<f64>())
    };
    assert_eq!(by_id("sum"), Some(10.0));
    assert_eq!(by_id("p99"), Some(4.0));
    // Another Region's CloudWatch does not see them.
    let other = cloudwatch_at(&lab.endpoints.cloudwatch, "us-west-1")
        .get_metric_data()
        .metric_data_queries(query("sum", "Sum"))
        .start_time(DateTime::from(now - Duration::from_secs(300)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .send()
        .await
        .expect("GetMetricData");
    assert!(other.metric_data_results()[0].values().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_evaluated_by_the_lab_recovers_writers_when_the_promotion_event_was_lost() {
    let lab = start_lab(|_| {}).await;
    let usw2 = &lab.state.regions[1];
    let cw = cloudwatch_at(&lab.endpoints.cloudwatch, "us-west-2");
    create_alarm(&cw, "sessions-primary-unreachable").await;

    // The Global Datastore fails over, but the promotion notification is lost.
    *lab.state.sns.lock().expect("sns") = SnsFaults {
        drop: true,
        ..SnsFaults::default()
    };
    failover_lab::failover::start(&lab.state, &lab.endpoints.datastore_id, "us-west-2", &usw2.group)
        .map_err(|e| e.message)
        .expect("failover starts");
    eventually(LIMIT, "the failover to complete", || async {
        (lab.state.gds().status == "available" && lab.state.gds().failovers == 1).then_some(())
    })
    .await;
    assert_ne!(
        lab.writer_record().await.as_deref(),
        Some(usw2.endpoint.as_str()),
        "nothing moved writers yet"
    );

    // Writers in us-west-2 see errors; N of M one-second periods breach; the alarm fires.
    let alarm = eventually(LIMIT, "the alarm to go to ALARM", || async {
        put_errors(&cw, 3.0).await;
        let out = cw
            .describe_alarms()
            .alarm_names("sessions-primary-unreachable")
            .send()
            .await
            .ok()?;
        let a = out.metric_alarms().first()?.clone();
        (a.state_value() == Some(&StateValue::Alarm)).then_some(a)
    })
    .await;
    assert!(
        alarm
            .state_reason()
            .is_some_and(|r| r.contains("Threshold Crossed"))
    );

    // EventBridge delivers the state change; the switch follows the primary.
    eventually(LIMIT, "the writer CNAME to follow the primary", || async {
        (lab.writer_record().await.as_deref() == Some(usw2.endpoint.as_str())).then_some(())
    })
    .await;
    // The record moves before the function reports back: wait for every invocation to finish.
    eventually(LIMIT, "every invocation to finish", || async {
        lab.state.functions_idle().then_some(())
    })
    .await;
    let inv = lab.state.invocations();
    assert!(
        inv.iter()
            .any(|r| r.source == "eventbridge" && r.response["outcome"] == "switched"),
        "{inv:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_state_changes_can_arrive_sns_wrapped_and_unknown_alarms_are_errors() {
    let lab = start_lab(|_| {}).await;
    *lab.state.cloudwatch.delivery.lock().expect("delivery") = AlarmDelivery::Sns;
    let cw = cloudwatch_at(&lab.endpoints.cloudwatch, "us-west-1");
    create_alarm(&cw, "sessions-primary-unreachable").await;
    cw.set_alarm_state()
        .alarm_name("sessions-primary-unreachable")
        .state_value(StateValue::Alarm)
        .state_reason("drill")
        .send()
        .await
        .expect("SetAlarmState");
    let rec = eventually(LIMIT, "the SNS-wrapped alarm to be handled", || async {
        lab.state
            .invocations()
            .into_iter()
            .find(|r| r.source == "sns" && r.outcome == "ok")
    })
    .await;
    assert_eq!(rec.region, "us-west-1");
    assert_eq!(
        rec.response["outcome"], "no_op",
        "writers are already on the primary"
    );
    assert_eq!(rec.response["triggers"][0]["trigger"]["via"], "sns");

    let missing = cw
        .set_alarm_state()
        .alarm_name("no-such-alarm")
        .state_value(StateValue::Alarm)
        .state_reason("x")
        .send()
        .await
        .expect_err("unknown alarm");
    assert_eq!(missing.code(), Some("ResourceNotFound"));
}
