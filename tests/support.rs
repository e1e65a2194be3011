//! The test kit shared by the integration tests and the demo: configuration, fixture events, the
//! lab's Route 53 emulator (one per test, in-process, with a private zone of its own), and
//! smithy-mocked ElastiCache answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_elasticache::operation::describe_global_replication_groups::DescribeGlobalReplicationGroupsOutput;
use aws_sdk_elasticache::types::{GlobalReplicationGroup, GlobalReplicationGroupMember};
use aws_sdk_route53::config::Credentials;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType, Vpc,
    VpcRegion,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use failover_core::config::SwitchConfig;
use failover_core::retry::Deadline;
use traffic_switch::{Invocation, TrafficSwitch};

/// The functions' errors are named through this trait (`err.error_type()`).
pub use failover_core::audit::ReportsError;

pub const DATASTORE: &str = "ldgnf-sessions";
pub const USW1: &str = "sessions-usw1";
pub const USW2: &str = "sessions-usw2";
pub const EP1: &str = "master.sessions-usw1.lab1.usw1.cache.amazonaws.com";
pub const EP2: &str = "master.sessions-usw2.lab2.usw2.cache.amazonaws.com";
pub const RECORD: &str = "writer.sessions.internal";

/// The traffic switch's configuration for the fixture datastore, plus `extra` variables.
pub fn config(zone: &str, extra: &[(&str, &str)]) -> SwitchConfig {
    let mut vars: HashMap<String, String> = [
        ("GLOBAL_DATASTORE_ID", DATASTORE.to_owned()),
        (
            "MEMBERS",
            format!("us-west-1:{USW1}:{EP1},us-west-2:{USW2}:{EP2}"),
        ),
        ("HOSTED_ZONE_ID", zone.to_owned()),
        ("RECORD_NAME", RECORD.to_owned()),
        ("AWS_REGION", "us-west-2".to_owned()),
        ("STABLE_POLL_MS", "200".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    SwitchConfig::from_lookup(&|k| vars.get(k).cloned()).expect("test configuration is valid")
}

/// The fixture events, by file name, exactly as `sam local invoke -e` would send them.
pub fn fixture(name: &str) -> &'static str {
    match name {
        "promotion-this-region.json" => {
            include_str!("../events/traffic-switch/promotion-this-region.json")
        }
        "promotion-duplicate.json" => include_str!("../events/traffic-switch/promotion-duplicate.json"),
        "promotion-plain-text-node-id.json" => {
            include_str!("../events/traffic-switch/promotion-plain-text-node-id.json")
        }
        "promotion-stale.json" => include_str!("../events/traffic-switch/promotion-stale.json"),
        "promotion-other-group.json" => {
            include_str!("../events/traffic-switch/promotion-other-group.json")
        }
        "elasticache-other-event.json" => {
            include_str!("../events/traffic-switch/elasticache-other-event.json")
        }
        "alarm-sns.json" => include_str!("../events/traffic-switch/alarm-sns.json"),
        "alarm-eventbridge.json" => include_str!("../events/traffic-switch/alarm-eventbridge.json"),
        "alarm-eventbridge-ok.json" => include_str!("../events/traffic-switch/alarm-eventbridge-ok.json"),
        "alarm-direct-action.json" => include_str!("../events/traffic-switch/alarm-direct-action.json"),
        "manual-status.json" => include_str!("../events/traffic-switch/manual-status.json"),
        "manual-preflight.json" => include_str!("../events/traffic-switch/manual-preflight.json"),
        "manual-switch-dry-run.json" => {
            include_str!("../events/traffic-switch/manual-switch-dry-run.json")
        }
        "manual-switch.json" => include_str!("../events/traffic-switch/manual-switch.json"),
        "manual-switch-break-glass.json" => {
            include_str!("../events/traffic-switch/manual-switch-break-glass.json")
        }
        "region-switch-step.json" => include_str!("../events/traffic-switch/region-switch-step.json"),
        "schedule.json" => include_str!("../events/traffic-switch/schedule.json"),
        "invalid-switch-unconfirmed.json" => {
            include_str!("../events/traffic-switch/invalid-switch-unconfirmed.json")
        }
        "invalid-unknown-shape.json" => {
            include_str!("../events/traffic-switch/invalid-unknown-shape.json")
        }
        other => panic!("no fixture named {other}"),
    }
}

/// Every fixture name `fixture` knows; a test checks this matches the folder.
pub const FIXTURES: &[&str] = &[
    "promotion-this-region.json",
    "promotion-duplicate.json",
    "promotion-plain-text-node-id.json",
    "promotion-stale.json",
    "promotion-other-group.json",
    "elasticache-other-event.json",
    "alarm-sns.json",
    "alarm-eventbridge.json",
    "alarm-eventbridge-ok.json",
    "alarm-direct-action.json",
    "manual-status.json",
    "manual-preflight.json",
    "manual-switch-dry-run.json",
    "manual-switch.json",
    "manual-switch-break-glass.json",
    "region-switch-step.json",
    "schedule.json",
    "invalid-switch-unconfirmed.json",
    "invalid-unknown-shape.json",
];

/// A describe answer with `primary` as PRIMARY, the other member SECONDARY.
pub fn described(status: &str, primary: &str) -> DescribeGlobalReplicationGroupsOutput {
    let member = |group: &str, region: &str| {
        GlobalReplicationGroupMember::builder()
            .replication_group_id(group)
            .replication_group_region(region)
            .role(if group == primary { "PRIMARY" } else { "SECONDARY" })
            .status("associated")
            .build()
    };
    DescribeGlobalReplicationGroupsOutput::builder()
        .global_replication_groups(
            GlobalReplicationGroup::builder()
                .global_replication_group_id(DATASTORE)
                .status(status)
                .members(member(USW1, "us-west-1"))
                .members(member(USW2, "us-west-2"))
                .build(),
        )
        .build()
}

/// A describe rule that always reports `primary` as PRIMARY of an available datastore.
pub fn primary_is(primary: &'static str) -> Rule {
    mock!(aws_sdk_elasticache::Client::describe_global_replication_groups)
        .match_requests(|r| {
            r.global_replication_group_id() == Some(DATASTORE) && r.show_member_info() == Some(true)
        })
        .sequence()
        .output(move || described("available", primary))
        .repeatedly()
        .build()
}

/// A mocked ElastiCache client answering with `rules` (in any order), SDK retries off as in
/// production.
pub fn elasticache(rules: &[&Rule]) -> aws_sdk_elasticache::Client {
    mock_client!(
        aws_sdk_elasticache,
        RuleMode::MatchAny,
        rules.iter().copied(),
        |c| c.retry_config(aws_sdk_elasticache::config::retry::RetryConfig::disabled())
    )
}

/// A mocked Route 53 client answering with `rules` in order.
pub fn route53_mock(rules: &[&Rule]) -> aws_sdk_route53::Client {
    mock_client!(
        aws_sdk_route53,
        RuleMode::Sequential,
        rules.iter().copied(),
        |c| c.retry_config(aws_sdk_route53::config::retry::RetryConfig::disabled())
    )
}

/// A Route 53 of this test's own: the lab's emulator (Route 53's real semantics: atomic batches,
/// exact-match DELETEs, names compared case-insensitively with the trailing dot optional), served
/// on loopback for as long as the test's runtime lives.
pub struct Route53Lab {
    pub client: aws_sdk_route53::Client,
    pub state: std::sync::Arc<failover_lab::route53::Route53State>,
    pub url: String,
}

/// Starts a Route 53 emulator and a client for it, exactly as the function's would be built with
/// `AWS_ENDPOINT_URL_ROUTE_53` set.
pub async fn route53_lab() -> Route53Lab {
    let state = std::sync::Arc::new(failover_lab::route53::Route53State::new());
    let (url, _task) = failover_lab::route53::serve(std::sync::Arc::clone(&state))
        .await
        .expect("the Route 53 emulator listens on loopback");
    Route53Lab {
        client: aws_sdk_route53::Client::new(&lab_sdk(&url, "us-east-1")),
        state,
        url,
    }
}

static ZONES: AtomicU32 = AtomicU32::new(0);

/// Creates a private hosted zone of this test's own and,
/// if `initial` is given, the writer CNAME pointing at it. Returns the zone id.
pub async fn private_zone(r53: &aws_sdk_route53::Client, initial: Option<&str>) -> String {
    let n = ZONES.fetch_add(1, Ordering::SeqCst);
    let caller = format!("test-{}-{n}", std::process::id());
    let out = r53
        .create_hosted_zone()
        .name("sessions.internal")
        .caller_reference(&caller)
        .hosted_zone_config(
            HostedZoneConfig::builder()
                .private_zone(true)
                .comment(caller.clone())
                .build(),
        )
        .vpc(
            Vpc::builder()
                .vpc_region(VpcRegion::UsWest2)
                .vpc_id("vpc-0sessions")
                .build(),
        )
        .send()
        .await
        .expect("Route 53 creates the private zone");
    let zone = out
        .hosted_zone()
        .expect("zone in answer")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();
    if let Some(value) = initial {
        put_cname(r53, &zone, value, 30).await;
    }
    zone
}

/// Sets the writer record directly (the test's hand, not the function's).
pub async fn put_cname(r53: &aws_sdk_route53::Client, zone: &str, value: &str, ttl: i64) {
    let rrs = ResourceRecordSet::builder()
        .name(format!("{RECORD}."))
        .r#type(RrType::Cname)
        .ttl(ttl)
        .resource_records(ResourceRecord::builder().value(value).build().expect("record"))
        .build()
        .expect("record set");
    r53.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Upsert)
                        .resource_record_set(rrs)
                        .build()
                        .expect("change"),
                )
                .build()
                .expect("batch"),
        )
        .send()
        .await
        .expect("Route 53 accepts the record");
}

/// The writer record as Route 53 holds it now: (value, ttl), or `None`.
pub async fn read_cname(r53: &aws_sdk_route53::Client, zone: &str) -> Option<(String, i64)> {
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("Route 53 lists records");
    out.resource_record_sets()
        .iter()
        .find(|r| r.name().trim_end_matches('.') == RECORD && r.r#type() == &RrType::Cname)
        .map(|r| {
            (
                r.resource_records()
                    .first()
                    .map(|v| v.value().to_owned())
                    .unwrap_or_default(),
                r.ttl().unwrap_or_default(),
            )
        })
}

/// Runs the handler once with a generous deadline.
pub async fn invoke(switch: &TrafficSwitch, event: &str) -> Invocation {
    switch
        .handle(event, "test-request", Deadline::after(Duration::from_secs(20)))
        .await
}

/// The workspace root (where `.venv` and `target/` live).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

static LABS: AtomicU32 = AtomicU32::new(0);

/// Starts a lab of this test's own (own Valkey servers, own emulated AWS APIs, own work dir),
/// with the real traffic-switch binary from `target/debug` (`make test` builds it first).
pub async fn start_lab(tweak: impl FnOnce(&mut failover_lab::LabConfig)) -> failover_lab::Lab {
    let root = workspace_root();
    let mut cfg = failover_lab::LabConfig::two_regions(&root);
    let n = LABS.fetch_add(1, Ordering::SeqCst);
    cfg.work_dir = root.join(format!("target/lab-tests/{}-{n}", std::process::id()));
    cfg.promotion_time = Duration::from_millis(500);
    cfg.lambda_retry_delay = Duration::from_millis(300);
    // As for `lab up`: run other builds of the functions (an older one, to see a test fail).
    if let Ok(dir) = std::env::var("LAB_BINARY_DIR") {
        cfg.binary_dir = dir.into();
    }
    tweak(&mut cfg);
    failover_lab::Lab::start(cfg).await.unwrap_or_else(|e| {
        panic!("the lab must start (run `make test`, which installs and builds what it needs): {e}")
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every client of the lab's emulators shares: the endpoint, signing for `region`, dummy
/// credentials, SDK retries off (as in production: the functions retry themselves).
fn lab_sdk(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_elasticache::config::SharedCredentialsProvider::new(
            Credentials::new("lab", "lab", None, None, "tests"),
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

/// An ElastiCache client for the lab's emulator, signing for `region`, SDK retries off.
pub fn elasticache_at(endpoint: &str, region: &str) -> aws_sdk_elasticache::Client {
    aws_sdk_elasticache::Client::new(&lab_sdk(endpoint, region))
}

/// A Route 53 ARC data-plane client for one cluster endpoint, as `arc` mode builds them: one per
/// endpoint, SDK retries off, a short attempt timeout.
pub fn arc_client(endpoint: &str, region: &str) -> aws_sdk_route53recoverycluster::Client {
    use aws_sdk_route53recoverycluster::config;
    let conf = config::Builder::from(&lab_sdk(endpoint, region))
        .timeout_config(
            config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(700))
                .build(),
        )
        .build();
    aws_sdk_route53recoverycluster::Client::from_conf(conf)
}

/// A CloudWatch client (rpc-v2-cbor) for the lab's emulator, signing for `region`.
pub fn cloudwatch_at(endpoint: &str, region: &str) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&lab_sdk(endpoint, region))
}

/// `FailoverGlobalReplicationGroup` through the SDK, promoting the lab member in `region` (the
/// client signs for that Region, as an operator's CLI would).
pub async fn failover_via_sdk(
    lab: &failover_lab::Lab,
    region: &str,
) -> Result<
    aws_sdk_elasticache::operation::failover_global_replication_group::FailoverGlobalReplicationGroupOutput,
    aws_sdk_elasticache::error::SdkError<
        aws_sdk_elasticache::operation::failover_global_replication_group::FailoverGlobalReplicationGroupError,
    >,
>{
    let group = lab
        .state
        .region(region)
        .map(|r| r.group.clone())
        .unwrap_or_default();
    elasticache_at(&lab.endpoints.elasticache, region)
        .failover_global_replication_group()
        .global_replication_group_id(&lab.endpoints.datastore_id)
        .primary_region(region)
        .primary_replication_group_id(group)
        .send()
        .await
}

/// The write-error alarm each Region's stack creates (`CreateExampleAlarms`), put into the lab's
/// CloudWatch in `region`: `SessionStore/WriteErrors` for `ClientRegion` = `region`, Sum ≥ 1 in
/// `datapoints` of `periods` periods of `period_s` seconds, missing data not breaching. Returns
/// the client, signing for `region`.
pub async fn write_errors_alarm(
    endpoint: &str,
    region: &str,
    name: &str,
    (period_s, periods, datapoints): (i32, i32, i32),
) -> aws_sdk_cloudwatch::Client {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    let cw = cloudwatch_at(endpoint, region);
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("SessionStore")
        .metric_name("WriteErrors")
        .dimensions(Dimension::builder().name("ClientRegion").value(region).build())
        .statistic(Statistic::Sum)
        .period(period_s)
        .evaluation_periods(periods)
        .datapoints_to_alarm(datapoints)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .expect("PutMetricAlarm");
    cw
}
