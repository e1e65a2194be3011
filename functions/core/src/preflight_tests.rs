//! Every readiness judge against the faults it exists to catch, and against the healthy case.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;
use crate::config::MetricId;
use crate::config::{Routing, SwitchConfig};
use crate::observed::MemberView;

const EP1: &str = "master.sessions-usw1.abc.usw1.cache.amazonaws.com";
const EP2: &str = "master.sessions-usw2.abc.usw2.cache.amazonaws.com";
const TOPIC: &str = "arn:aws:sns:us-west-2:111122223333:sessions-elasticache-events";
const C1: &str = "arn:aws:route53-recovery-control::111122223333:controlpanel/p1/routingcontrol/usw1";
const C2: &str = "arn:aws:route53-recovery-control::111122223333:controlpanel/p1/routingcontrol/usw2";

fn cfg(mode: &str) -> SwitchConfig {
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("GLOBAL_DATASTORE_ID", "ldgnf-sessions".to_owned()),
        (
            "MEMBERS",
            format!("us-west-1:sessions-usw1:{EP1},us-west-2:sessions-usw2:{EP2}"),
        ),
        ("HOSTED_ZONE_ID", "Z0SESSIONS".to_owned()),
        ("RECORD_NAME", "writer.sessions.internal".to_owned()),
        ("RECORD_TTL", "30".to_owned()),
        ("AWS_REGION", "us-west-2".to_owned()),
    ]);
    if mode == "arc" {
        vars.insert("ROUTING_MODE", "arc".into());
        vars.insert(
            "ARC_ENDPOINTS",
            "us-east-1=https://a.example,us-west-2=https://b.example,eu-west-1=https://c.example".into(),
        );
        vars.insert("ARC_CONTROLS", format!("us-west-1={C1},us-west-2={C2}"));
    }
    SwitchConfig::from_lookup(&|k| vars.get(k).cloned()).expect("valid test config")
}

fn dns() -> (SwitchConfig, crate::config::DnsTarget) {
    let c = cfg("dns");
    let Routing::Dns(d) = c.routing.clone() else {
        unreachable!("dns config")
    };
    (c, d)
}

fn arc() -> (SwitchConfig, crate::config::ArcTarget) {
    let c = cfg("arc");
    let Routing::Arc(a) = c.routing.clone() else {
        unreachable!("arc config")
    };
    (c, a)
}

fn view(primary: &str, status: &str) -> DatastoreView {
    let member = |group: &str, region: &str| MemberView {
        group: group.into(),
        region: region.into(),
        role: if region == primary {
            Role::Primary
        } else {
            Role::Secondary
        },
        status: "associated".into(),
    };
    DatastoreView {
        id: "ldgnf-sessions".into(),
        status: status.into(),
        members: vec![
            member("sessions-usw1", "us-west-1"),
            member("sessions-usw2", "us-west-2"),
        ],
    }
}

fn fault(code: &str, status: Option<u16>) -> AwsFault {
    let mut f = AwsFault::service("Test.Op", Some(code.into()), format!("{code} happened"), false);
    f.http_status = status;
    f
}

fn dark() -> AwsFault {
    AwsFault::service(
        "Test.Op",
        Some("ConnectionError".into()),
        "Connection refused".into(),
        true,
    )
}

#[test]
fn a_checklist_is_ready_with_warnings_but_not_with_one_failure() {
    let ok = Checklist::of(vec![Check::pass("a", "x"), Check::warn("b", "y", "z")]);
    assert!(ok.ready);
    assert_eq!(ok.summary, "1 PASS, 1 WARN, 0 FAIL");
    let bad = Checklist::of(vec![Check::pass("a", "x"), Check::fail("c", "y", "z")]);
    assert!(!bad.ready);
    assert!(
        !Checklist::of(Vec::new()).ready,
        "an empty checklist proves nothing"
    );
}

#[test]
fn a_denied_read_fails_the_permissions_item_naming_the_action_and_the_region() {
    let calls = [
        Call::of::<()>(
            "cloudwatch:DescribeAlarms",
            "us-west-1",
            &Err(fault("AccessDenied", Some(403))),
        ),
        Call::of("cloudwatch:DescribeAlarms", "us-west-2", &Ok(())),
        Call::of("cloudwatch:ListMetrics", "us-west-2", &Ok(())),
    ];
    let c = permissions(&calls);
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.found.contains("cloudwatch:DescribeAlarms in us-west-1"),
        "{}",
        c.found
    );
}

#[test]
fn a_read_that_got_no_answer_leaves_its_permission_unchecked_not_passed() {
    let calls = [
        Call::of::<()>("sns:ListSubscriptionsByTopic", "us-west-2", &Err(dark())),
        Call::of("cloudwatch:ListMetrics", "us-west-2", &Ok(())),
    ];
    let c = permissions(&calls);
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.found.contains("sns:ListSubscriptionsByTopic"), "{}", c.found);
}

#[test]
fn a_read_that_was_never_made_proves_nothing() {
    let never = AwsFault::service(
        "Test.Op",
        Some("NoClient".into()),
        "no client for eu-west-1".into(),
        false,
    );
    let calls = [Call::of::<()>(
        "elasticache:DescribeEvents",
        "eu-west-1",
        &Err(never),
    )];
    assert_eq!(permissions(&calls).verdict, Verdict::Warn);
}

#[test]
fn a_not_found_answer_proves_the_permission_because_the_service_judged_the_request() {
    let calls = [Call::of::<()>(
        "cloudwatch:DescribeAlarms",
        "us-west-1",
        &Err(fault("AlarmNotFound", None)),
    )];
    assert_eq!(permissions(&calls).verdict, Verdict::Pass);
}

#[test]
fn the_datastore_item_fails_when_members_disagree_and_warns_while_it_is_modifying() {
    let c = cfg("dns");
    assert_eq!(
        datastore(&c.datastore, &Ok(view("us-west-1", "available"))).verdict,
        Verdict::Pass
    );
    assert_eq!(
        datastore(&c.datastore, &Ok(view("us-west-1", "modifying"))).verdict,
        Verdict::Warn
    );
    let mut moved = view("us-west-1", "available");
    moved.members[1].region = "eu-west-1".into();
    let m = datastore(&c.datastore, &Ok(moved));
    assert_eq!(m.verdict, Verdict::Fail);
    assert!(m.found.contains("sessions-usw2"), "{}", m.found);
    let mut extra = view("us-west-1", "available");
    extra.members.push(MemberView {
        group: "sessions-euw1".into(),
        region: "eu-west-1".into(),
        role: Role::Secondary,
        status: "associated".into(),
    });
    assert!(
        datastore(&c.datastore, &Ok(extra))
            .found
            .contains("missing from MEMBERS")
    );
    assert_eq!(datastore(&c.datastore, &Err(dark())).verdict, Verdict::Fail);
}

#[test]
fn the_topic_of_another_region_is_this_stacks_topic_with_that_region() {
    assert_eq!(
        topic_in(TOPIC, "us-west-1").as_deref(),
        Some("arn:aws:sns:us-west-1:111122223333:sessions-elasticache-events")
    );
    assert_eq!(topic_in("arn:aws:sqs:us-west-2:1:q", "us-west-1"), None);
    assert_eq!(topic_in("not an arn", "us-west-1"), None);
}

fn notifications(topic: Option<&str>, status: &str) -> Result<Vec<ClusterNotification>, AwsFault> {
    Ok(vec![ClusterNotification {
        cluster: "sessions-usw1-001".into(),
        topic_arn: topic.map(str::to_owned),
        topic_status: Some(status.into()),
    }])
}

#[test]
fn an_inactive_topic_fails_with_the_policy_fix_and_an_active_one_passes() {
    let c = cfg("dns");
    let member = &c.datastore.members[0];
    let right = topic_in(TOPIC, "us-west-1");
    let inactive = events_topic(member, Some(TOPIC), &notifications(right.as_deref(), "inactive"));
    assert_eq!(inactive.verdict, Verdict::Fail);
    assert!(inactive.found.contains("inactive"), "{}", inactive.found);
    assert!(
        inactive
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("aws:SourceOwner"))
    );
    assert_eq!(
        events_topic(member, Some(TOPIC), &notifications(right.as_deref(), "active")).verdict,
        Verdict::Pass
    );
}

#[test]
fn a_group_that_notifies_another_topic_or_none_fails_with_the_command_that_sets_ours() {
    let c = cfg("dns");
    let member = &c.datastore.members[0];
    for wrong in [Some("arn:aws:sns:us-west-1:111122223333:someone-else"), None] {
        let check = events_topic(member, Some(TOPIC), &notifications(wrong, "active"));
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(
            check
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("modify-replication-group")
                    && f.contains("arn:aws:sns:us-west-1:111122223333:sessions-elasticache-events")),
            "{:?}",
            check.fix
        );
    }
    assert_eq!(
        events_topic(member, None, &notifications(None, "active")).verdict,
        Verdict::Fail
    );
    assert_eq!(
        events_topic(member, Some(TOPIC), &Err(dark())).verdict,
        Verdict::Fail
    );
    assert_eq!(
        events_topic(member, Some(TOPIC), &Ok(Vec::new())).verdict,
        Verdict::Fail
    );
}

fn sub(endpoint: &str, arn: &str) -> Subscription {
    Subscription {
        protocol: "lambda".into(),
        endpoint: endpoint.into(),
        subscription_arn: arn.into(),
    }
}

#[test]
fn the_subscription_passes_only_for_this_function_in_this_region() {
    let me = Some(("us-west-2", "sessions-traffic-switch"));
    let mine = sub(
        "arn:aws:lambda:us-west-2:111122223333:function:sessions-traffic-switch:live",
        "arn:aws:sns:us-west-2:111122223333:sessions-elasticache-events:1",
    );
    assert_eq!(
        subscription(Some(TOPIC), me, &Ok(vec![mine])).verdict,
        Verdict::Pass
    );
    let elsewhere = sub(
        "arn:aws:lambda:us-west-1:111122223333:function:sessions-traffic-switch",
        "arn:aws:sns:us-west-2:111122223333:sessions-elasticache-events:2",
    );
    let other = sub(
        "arn:aws:lambda:us-west-2:111122223333:function:something-else",
        "arn:aws:sns:us-west-2:111122223333:sessions-elasticache-events:3",
    );
    let none = subscription(Some(TOPIC), me, &Ok(vec![elsewhere, other]));
    assert_eq!(none.verdict, Verdict::Fail);
    assert!(
        none.found
            .contains("2 subscriptions, none to sessions-traffic-switch"),
        "{}",
        none.found
    );
    let pending = sub(
        "arn:aws:lambda:us-west-2:111122223333:function:sessions-traffic-switch",
        "PendingConfirmation",
    );
    assert_eq!(
        subscription(Some(TOPIC), me, &Ok(vec![pending])).verdict,
        Verdict::Fail
    );
    assert_eq!(subscription(None, me, &Ok(Vec::new())).verdict, Verdict::Fail);
}

fn record(kind: &str, value: &str, ttl: i64, policy: bool) -> Result<Option<RecordView>, AwsFault> {
    Ok(Some(RecordView {
        record_type: kind.into(),
        value: Some(value.into()),
        ttl: Some(ttl),
        has_routing_policy: policy,
    }))
}

#[test]
fn the_writer_record_passes_only_as_a_plain_cname_to_the_primary() {
    let (c, d) = dns();
    let v = view("us-west-1", "available");
    let judge = |r| writer_record(&c.datastore, &d, Some(&v), &r);
    assert_eq!(judge(record("CNAME", EP1, 30, false)).verdict, Verdict::Pass);
    let a = judge(record("A", "10.0.0.1", 30, false));
    assert_eq!(a.verdict, Verdict::Fail);
    assert!(a.found.contains("is a A record"), "{}", a.found);
    assert_eq!(judge(record("CNAME", EP1, 30, true)).verdict, Verdict::Fail);
    let replica = judge(record("CNAME", EP2, 30, false));
    assert_eq!(replica.verdict, Verdict::Fail);
    assert!(replica.found.contains("read-only replica"), "{}", replica.found);
    assert!(
        replica
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("\"target_region\":\"us-west-1\""))
    );
    assert_eq!(
        judge(record("CNAME", "elsewhere.example.com", 30, false)).verdict,
        Verdict::Fail
    );
    assert_eq!(judge(Ok(None)).verdict, Verdict::Fail);
    assert_eq!(
        judge(Err(fault("NoSuchHostedZone", Some(404)))).verdict,
        Verdict::Fail
    );
    let ttl = judge(record("CNAME", EP1, 300, false));
    assert_eq!(ttl.verdict, Verdict::Warn);
    assert!(ttl.found.contains("TTL is 300"), "{}", ttl.found);
}

#[test]
fn the_writer_record_is_not_judged_against_a_datastore_without_a_single_primary() {
    let (c, d) = dns();
    let mut two = view("us-west-1", "modifying");
    two.members[1].role = Role::Primary;
    assert_eq!(
        writer_record(&c.datastore, &d, Some(&two), &record("CNAME", EP2, 30, false)).verdict,
        Verdict::Warn
    );
}

fn states(on1: bool, on2: bool) -> Result<BTreeMap<String, bool>, AwsFault> {
    Ok(BTreeMap::from([(C1.to_owned(), on1), (C2.to_owned(), on2)]))
}

#[test]
fn a_dark_cluster_endpoint_fails_the_endpoints_item_naming_it() {
    let (_, a) = arc();
    let reads = vec![
        ("us-east-1".to_owned(), states(true, false)),
        ("us-west-2".to_owned(), Err(dark())),
        ("eu-west-1".to_owned(), states(true, false)),
    ];
    let c = arc_endpoints(&a, &reads);
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.found.starts_with("2 of 3") && c.found.contains("us-west-2"),
        "{}",
        c.found
    );
    let all = vec![
        ("us-east-1".to_owned(), states(true, false)),
        ("us-west-2".to_owned(), states(true, false)),
        ("eu-west-1".to_owned(), states(true, false)),
    ];
    assert_eq!(arc_endpoints(&a, &all).verdict, Verdict::Pass);
}

#[test]
fn routing_controls_pass_only_with_exactly_the_primarys_control_on() {
    let (c, a) = arc();
    let v = view("us-west-1", "available");
    let judge = |s| routing_controls(&c.datastore, &a, Some(&v), &[("us-east-1".to_owned(), s)]);
    assert_eq!(judge(states(true, false)).verdict, Verdict::Pass);
    assert_eq!(judge(states(true, true)).verdict, Verdict::Fail);
    assert_eq!(judge(states(false, true)).verdict, Verdict::Fail);
    assert_eq!(judge(states(false, false)).verdict, Verdict::Fail);
    let missing = judge(Ok(BTreeMap::from([(C1.to_owned(), true)])));
    assert_eq!(missing.verdict, Verdict::Fail);
    assert!(missing.found.contains(C2), "{}", missing.found);
    assert_eq!(judge(Err(dark())).verdict, Verdict::Fail);
}

#[test]
fn a_missing_vantage_alarm_fails_and_says_the_vantage_gate_cannot_agree() {
    let missing = alarm(
        AlarmRole::Vantage,
        "us-west-1",
        "sessions-write-errors",
        &Err(fault("AlarmNotFound", None)),
    );
    assert_eq!(missing.item, "vantage_alarm:us-west-1");
    assert_eq!(missing.verdict, Verdict::Fail);
    assert!(
        missing.found.contains("vantage gate cannot agree"),
        "{}",
        missing.found
    );
    let dark_region = alarm(AlarmRole::Signal, "us-west-2", "w", &Err(dark()));
    assert_eq!(dark_region.verdict, Verdict::Fail);
    assert!(dark_region.found.contains("no answer"), "{}", dark_region.found);
    assert_eq!(
        alarm(AlarmRole::Signal, "us-west-2", "w", &Ok(AlarmState::Ok)).verdict,
        Verdict::Pass
    );
    assert_eq!(no_vantage(0).verdict, Verdict::Warn);
    assert_eq!(no_vantage(1).verdict, Verdict::Fail);
}

fn lag() -> MetricId {
    MetricId {
        namespace: "AWS/ElastiCache".into(),
        name: "GlobalDatastoreReplicationLag".into(),
        dimensions: vec![("ReplicationGroupId".into(), "sessions-usw2".into())],
    }
}

fn listed(dim: &str, value: &str) -> Result<Listed, AwsFault> {
    Ok(vec![vec![(dim.to_owned(), value.to_owned())]])
}

#[test]
fn a_lag_metric_under_another_dimension_fails_naming_what_exists_and_the_silent_pass() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .expect("time");
    let fresh = Ok(Some((0.4, now - chrono::Duration::seconds(20))));
    let c = lag_metric(
        &lag(),
        "us-west-2",
        false,
        &listed("GlobalReplicationGroupId", "ldgnf-sessions"),
        &fresh,
        Duration::from_secs(120),
        now,
        true,
    );
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.found.contains("GlobalReplicationGroupId=ldgnf-sessions"),
        "{}",
        c.found
    );
    assert!(c.found.contains("MISSING_LAG=allow"), "{}", c.found);
}

#[test]
fn the_lag_metric_passes_fresh_and_fails_stale_on_a_secondary() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .expect("time");
    let judge = |age: i64| {
        lag_metric(
            &lag(),
            "us-west-2",
            false,
            &listed("ReplicationGroupId", "sessions-usw2"),
            &Ok(Some((0.4, now - chrono::Duration::seconds(age)))),
            Duration::from_secs(120),
            now,
            false,
        )
    };
    assert_eq!(judge(20).verdict, Verdict::Pass);
    let stale = judge(600);
    assert_eq!(stale.verdict, Verdict::Fail);
    assert!(stale.found.contains("600 s old"), "{}", stale.found);
    let none = lag_metric(
        &lag(),
        "us-west-2",
        false,
        &listed("ReplicationGroupId", "sessions-usw2"),
        &Ok(None),
        Duration::from_secs(120),
        now,
        false,
    );
    assert_eq!(none.verdict, Verdict::Fail);
}

#[test]
fn on_the_primary_the_lag_metric_warns_when_never_published_and_passes_when_listed() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .expect("time");
    let judge = |l: Result<Listed, AwsFault>| {
        lag_metric(
            &lag(),
            "us-west-1",
            true,
            &l,
            &Ok(None),
            Duration::from_secs(120),
            now,
            false,
        )
        .verdict
    };
    assert_eq!(judge(Ok(Vec::new())), Verdict::Warn);
    assert_eq!(
        judge(listed("ReplicationGroupId", "sessions-usw2")),
        Verdict::Pass
    );
    assert_eq!(judge(listed("CacheClusterId", "x")), Verdict::Fail);
    assert_eq!(judge(Err(fault("AccessDenied", Some(403)))), Verdict::Fail);
}

#[test]
fn unreadable_cooldown_events_fail_and_say_what_the_policy_then_does() {
    let c = cooldown_events(
        "us-west-1",
        "sessions-usw1",
        &Err(fault("AccessDenied", Some(403))),
        true,
    );
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.found.contains("MISSING_EVENTS=block"), "{}", c.found);
    assert_eq!(
        cooldown_events("us-west-1", "g", &Ok(None), true).verdict,
        Verdict::Pass
    );
}
