//! The readiness check (`{"command":"preflight"}`): what a function needs from the account,
//! judged from read-only calls. Each judge is a pure function of what the shell read (or the
//! fault that stopped it) and the configuration, and returns one checklist item: PASS, WARN or
//! FAIL, what was found, and how to fix it.
//!
//! The items are the facts no offline test can prove: that ElastiCache publishes to the stack's
//! topic, that the topic delivers to the traffic switch, that the writer record or controls are
//! what the switch swaps, that the lag metric exists under the configured dimension and is fresh,
//! that the gate alarms exist where the promoter reads them, and that the role may make every
//! read call it makes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{ArcTarget, DatastoreConfig, DnsTarget, MemberConfig};
use crate::fault::AwsFault;
use crate::ids::topic_in;
use crate::intake::AlarmState;
use crate::observed::{DatastoreView, RecordView, Role};

/// One item's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    /// Works, but not as recommended, or could not be fully checked now; read `found`.
    Warn,
    /// Will not work as configured: the fix says what to change.
    Fail,
}

/// One checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, e.g. `events_topic:us-west-2`.
    pub item: String,
    pub verdict: Verdict,
    /// What the reads found.
    pub found: String,
    /// How to make it PASS (absent on PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(item: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            item: item.into(),
            verdict: Verdict::Pass,
            found: found.into(),
            fix: None,
        }
    }

    pub fn warn(item: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            item: item.into(),
            verdict: Verdict::Warn,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(item: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            item: item.into(),
            verdict: Verdict::Fail,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole readiness report: ready when no item FAILs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checklist {
    pub ready: bool,
    /// `"7 PASS, 1 WARN, 0 FAIL"`.
    pub summary: String,
    pub checks: Vec<Check>,
}

impl Checklist {
    pub fn of(checks: Vec<Check>) -> Self {
        let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
        let (pass, warn, fail) = (count(Verdict::Pass), count(Verdict::Warn), count(Verdict::Fail));
        Self {
            ready: fail == 0 && !checks.is_empty(),
            summary: format!("{pass} PASS, {warn} WARN, {fail} FAIL"),
            checks,
        }
    }

    /// The item named `item`, if checked.
    pub fn item(&self, item: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.item == item)
    }
}

/// Whether a fault is the service refusing this role the call (IAM), in any service's spelling.
pub fn denied(f: &AwsFault) -> bool {
    matches!(
        f.code.as_deref(),
        Some(
            "AccessDenied"
                | "AccessDeniedException"
                | "AuthorizationError"
                | "UnauthorizedOperation"
                | "UnauthorizedException"
                | "NotAuthorized"
        )
    ) || f.http_status == Some(403)
}

/// How a failed read reads in a checklist: denied, no answer, or the service's error.
fn unread(f: &AwsFault) -> String {
    if denied(f) {
        format!("access denied: {f}")
    } else if f.region_dark() {
        format!("no answer (the Region or endpoint may be dark): {f}")
    } else {
        f.to_string()
    }
}

/// One read the check made: the IAM action it needs, where, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    pub action: &'static str,
    pub region: String,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The service answered (with data or with an error that is not about permission): the
    /// role may make the call.
    Allowed,
    Denied(String),
    /// No answer: the permission could not be checked.
    Unchecked(String),
}

impl Call {
    pub fn of<T>(action: &'static str, region: impl Into<String>, result: &Result<T, AwsFault>) -> Self {
        let answer = match result {
            Ok(_) => Answer::Allowed,
            Err(f) if denied(f) => Answer::Denied(f.to_string()),
            // No answer, or the call was never made (no client, nothing configured to read).
            Err(f)
                if f.region_dark() || f.transient || f.is_code("NoClient") || f.is_code("NotConfigured") =>
            {
                Answer::Unchecked(f.to_string())
            }
            // Not found, invalid parameter…: the service judged the request, so IAM let it through.
            Err(_) => Answer::Allowed,
        };
        Self {
            action,
            region: region.into(),
            answer,
        }
    }
}

/// The IAM item: every read action the check made, proven by making it. Write actions cannot be
/// proven by a read-only check; they are granted beside these in the template.
pub fn permissions(calls: &[Call]) -> Check {
    let mut actions: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        actions.entry(c.action).or_default().push(c);
    }
    let denied: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.answer {
            Answer::Denied(why) => Some(format!("{} in {} ({why})", c.action, c.region)),
            _ => None,
        })
        .collect();
    let unchecked: Vec<String> = actions
        .iter()
        .filter(|(_, cs)| {
            !cs.iter().any(|c| c.answer == Answer::Allowed)
                && !cs.iter().any(|c| matches!(c.answer, Answer::Denied(_)))
        })
        .map(|(a, cs)| {
            format!(
                "{a} ({})",
                cs.iter()
                    .map(|c| c.region.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let allowed: Vec<&str> = actions
        .iter()
        .filter(|(_, cs)| cs.iter().any(|c| c.answer == Answer::Allowed))
        .map(|(a, _)| *a)
        .collect();
    let item = "permissions";
    if !denied.is_empty() {
        return Check::fail(
            item,
            format!("denied: {}", denied.join("; ")),
            "grant these actions to the function's role (the template's policies list each one with its resource); a \
             permissions boundary or SCP can also deny them",
        );
    }
    if !unchecked.is_empty() {
        return Check::warn(
            item,
            format!(
                "not checked, no answer: {}; allowed: {}",
                unchecked.join("; "),
                allowed.join(", ")
            ),
            "run preflight again when those endpoints answer",
        );
    }
    Check::pass(
        item,
        format!(
            "every read the function makes was allowed: {} (write actions are not exercised by a read-only check)",
            allowed.join(", ")
        ),
    )
}

/// The Global Datastore matches `MEMBERS` and has one primary.
pub fn datastore(cfg: &DatastoreConfig, read: &Result<DatastoreView, AwsFault>) -> Check {
    let item = "datastore";
    let view = match read {
        Ok(v) => v,
        Err(f) => {
            return Check::fail(
                item,
                format!("could not read Global Datastore {}: {}", cfg.id, unread(f)),
                "check GLOBAL_DATASTORE_ID and the role's elasticache:DescribeGlobalReplicationGroups",
            );
        }
    };
    let mut problems = Vec::new();
    for m in &cfg.members {
        match view
            .members
            .iter()
            .find(|v| v.group.eq_ignore_ascii_case(m.group.as_str()))
        {
            None => problems.push(format!(
                "MEMBERS names {} in {}, which is not a member",
                m.group, m.region
            )),
            Some(v) if v.region != m.region.as_str() => problems.push(format!(
                "MEMBERS puts {} in {}, the datastore in {}",
                m.group, m.region, v.region
            )),
            Some(_) => {}
        }
    }
    for v in &view.members {
        if !cfg
            .members
            .iter()
            .any(|m| v.group.eq_ignore_ascii_case(m.group.as_str()))
        {
            problems.push(format!(
                "member {} in {} is missing from MEMBERS",
                v.group, v.region
            ));
        }
    }
    if !problems.is_empty() {
        return Check::fail(
            item,
            problems.join("; "),
            "make MEMBERS list every member as region:replication-group:writer-endpoint, the same in every Region's stack",
        );
    }
    let members = view
        .members
        .iter()
        .map(|m| format!("{} {} in {}", m.role, m.group, m.region))
        .collect::<Vec<_>>()
        .join(", ");
    let primaries = view.primaries().count();
    if !view.is_available() || primaries != 1 {
        return Check::warn(
            item,
            format!(
                "{} is {} with {primaries} primaries ({members})",
                view.id,
                view.status,
                primaries = primaries
            ),
            "a failover is under way or the datastore is changing: run preflight again when it is available",
        );
    }
    Check::pass(item, format!("{} is available: {members}", view.id))
}

/// One cache cluster's notification settings, as `DescribeCacheClusters` gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterNotification {
    pub cluster: String,
    pub topic_arn: Option<String>,
    pub topic_status: Option<String>,
}

/// A member replication group publishes its events to this stack's topic in its Region, and
/// ElastiCache has not marked that topic inactive.
pub fn events_topic(
    member: &MemberConfig,
    own_topic: Option<&str>,
    read: &Result<Vec<ClusterNotification>, AwsFault>,
) -> Check {
    let item = format!("events_topic:{}", member.region);
    let Some(expected) = own_topic.and_then(|t| topic_in(t, member.region.as_str())) else {
        return Check::fail(
            item,
            "EVENTS_TOPIC_ARN is not set (or is not an SNS topic ARN), so the topic cannot be checked",
            "set EVENTS_TOPIC_ARN to this stack's ElastiCache events topic (the template does)",
        );
    };
    let set_topic = format!(
        "aws elasticache modify-replication-group --region {} --replication-group-id {} --notification-topic-arn {expected} \
         --notification-topic-status active --apply-immediately",
        member.region, member.group
    );
    let clusters = match read {
        Ok(c) => c,
        Err(f) => {
            return Check::fail(
                item,
                format!(
                    "could not read {}'s notification settings in {}: {}",
                    member.group,
                    member.region,
                    unread(f)
                ),
                "grant elasticache:DescribeReplicationGroups and elasticache:DescribeCacheClusters, or run again when the Region answers",
            );
        }
    };
    if clusters.is_empty() {
        return Check::fail(
            item,
            format!(
                "{} in {} has no member clusters to read",
                member.group, member.region
            ),
            "check MEMBERS: the replication group must exist in that Region",
        );
    }
    let elsewhere: Vec<String> = clusters
        .iter()
        .filter(|c| c.topic_arn.as_deref() != Some(expected.as_str()))
        .map(|c| {
            format!(
                "{} notifies {}",
                c.cluster,
                c.topic_arn.as_deref().unwrap_or("no topic")
            )
        })
        .collect();
    if !elsewhere.is_empty() {
        return Check::fail(
            item,
            format!(
                "{} does not publish to {expected}: {}; a promotion in {} would reach no traffic switch",
                member.group,
                elsewhere.join(", "),
                member.region
            ),
            set_topic,
        );
    }
    let inactive: Vec<String> = clusters
        .iter()
        .filter(|c| {
            !c.topic_status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("active"))
        })
        .map(|c| {
            format!(
                "{} ({})",
                c.cluster,
                c.topic_status.as_deref().unwrap_or("no status")
            )
        })
        .collect();
    if !inactive.is_empty() {
        return Check::fail(
            item,
            format!(
                "ElastiCache marked {expected} inactive for {}: it stopped publishing there, usually because the topic's \
                 policy does not let elasticache.amazonaws.com publish",
                inactive.join(", ")
            ),
            format!(
                "allow elasticache.amazonaws.com sns:Publish on the topic with the aws:SourceOwner condition (the \
                 template's ElastiCacheEventsTopicPolicy), then reactivate: {set_topic}"
            ),
        );
    }
    Check::pass(
        item,
        format!(
            "{} ({} clusters) publishes to {expected}, active",
            member.group,
            clusters.len()
        ),
    )
}

/// One subscription of a topic, as `ListSubscriptionsByTopic` gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub protocol: String,
    pub endpoint: String,
    pub subscription_arn: String,
}

/// The function's name and Region in a Lambda function ARN (any qualifier dropped).
fn lambda_function(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", name, ..] => Some((region, name)),
        _ => None,
    }
}

/// This Region's topic delivers to this function.
pub fn subscription(
    own_topic: Option<&str>,
    function: Option<(&str, &str)>,
    read: &Result<Vec<Subscription>, AwsFault>,
) -> Check {
    let item = "subscription";
    let (Some(topic), Some((region, name))) = (own_topic, function) else {
        return Check::fail(
            item,
            "EVENTS_TOPIC_ARN or the function's own name (AWS_LAMBDA_FUNCTION_NAME) is not set",
            "set EVENTS_TOPIC_ARN to this stack's ElastiCache events topic (the template does)",
        );
    };
    let subs = match read {
        Ok(s) => s,
        Err(f) => {
            return Check::fail(
                item,
                format!("could not list the subscriptions of {topic}: {}", unread(f)),
                "grant sns:ListSubscriptionsByTopic on the topic (the template does)",
            );
        }
    };
    let mine: Vec<&Subscription> = subs
        .iter()
        .filter(|s| {
            s.protocol.eq_ignore_ascii_case("lambda") && lambda_function(&s.endpoint) == Some((region, name))
        })
        .collect();
    let subscribe = format!(
        "subscribe the function: aws sns subscribe --region {region} --topic-arn {topic} --protocol lambda \
         --notification-endpoint <this function's ARN> (the template's ElastiCacheEvents event does it)"
    );
    match mine.as_slice() {
        [] => Check::fail(
            item,
            format!(
                "{topic} has {} subscriptions, none to {name}: promotion events are published and lost",
                subs.len()
            ),
            subscribe,
        ),
        [s, ..] if s.subscription_arn.eq_ignore_ascii_case("PendingConfirmation") => Check::fail(
            item,
            format!("{name}'s subscription to {topic} is pending confirmation"),
            subscribe,
        ),
        [s, ..] => Check::pass(
            item,
            format!("{topic} delivers to {name} ({})", s.subscription_arn),
        ),
    }
}

/// The member that is primary, when exactly one is.
fn the_primary<'a>(cfg: &'a DatastoreConfig, view: &DatastoreView) -> Option<&'a MemberConfig> {
    let mut primaries = view.primaries();
    let p = primaries.next()?;
    if primaries.next().is_some() {
        return None;
    }
    cfg.members
        .iter()
        .find(|m| m.group.as_str().eq_ignore_ascii_case(&p.group))
}

/// dns mode: the writer record exists, is a plain CNAME, has the configured TTL and points at the
/// primary's writer endpoint.
pub fn writer_record(
    cfg: &DatastoreConfig,
    dns: &DnsTarget,
    datastore: Option<&DatastoreView>,
    read: &Result<Option<RecordView>, AwsFault>,
) -> Check {
    let item = "writer_record";
    let name = &dns.record_name;
    let create = |target: &str| {
        format!(
            "make {name} in zone {} one plain CNAME (no routing policy) to {target} with TTL {}",
            dns.hosted_zone, dns.ttl
        )
    };
    let primary = datastore.and_then(|v| the_primary(cfg, v));
    let primary_endpoint = primary.map_or("the primary's writer endpoint".to_owned(), |p| {
        p.writer_endpoint.to_string()
    });
    let record = match read {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Check::fail(
                item,
                format!("no record {name} in zone {}", dns.hosted_zone),
                create(&primary_endpoint),
            );
        }
        Err(f) => {
            return Check::fail(
                item,
                format!("could not read {name} in zone {}: {}", dns.hosted_zone, unread(f)),
                "check HOSTED_ZONE_ID and the role's route53:ListResourceRecordSets on that zone",
            );
        }
    };
    if !record.record_type.eq_ignore_ascii_case("CNAME") {
        return Check::fail(
            item,
            format!(
                "{name} is a {} record; the switch swaps only a plain CNAME, so every switch would be refused",
                record.record_type
            ),
            format!(
                "delete the {} record and {}",
                record.record_type,
                create(&primary_endpoint)
            ),
        );
    }
    if record.has_routing_policy {
        return Check::fail(
            item,
            format!(
                "{name} is a CNAME with a routing policy (weighted, failover, alias…); the switch refuses to rewrite it"
            ),
            create(&primary_endpoint),
        );
    }
    let value = record.value.as_deref().unwrap_or("");
    let pointed = cfg
        .members
        .iter()
        .find(|m| m.writer_endpoint.as_str().eq_ignore_ascii_case(value));
    let Some(pointed) = pointed else {
        return Check::fail(
            item,
            format!("{name} points at {value:?}, which is no member's writer endpoint in MEMBERS"),
            create(&primary_endpoint),
        );
    };
    let Some(primary) = primary else {
        return Check::warn(
            item,
            format!(
                "{name} points at {} ({}); the datastore has no single primary to compare with",
                pointed.region, value
            ),
            "run preflight again when the datastore is available",
        );
    };
    if pointed.region != primary.region {
        return Check::fail(
            item,
            format!(
                "{name} points at {} ({value}) but the primary is {}: writers are on a read-only replica",
                pointed.region, primary.region
            ),
            format!(
                "invoke the traffic switch with {{\"command\":\"switch\",\"target_region\":\"{}\",\"dry_run\":false,\"confirm\":\"{}\",\"reason\":\"...\"}} \
                 (the scheduled reconcile also repairs it)",
                primary.region, cfg.id
            ),
        );
    }
    match record.ttl {
        Some(ttl) if ttl == dns.ttl => Check::pass(
            item,
            format!(
                "{name} is a plain CNAME to {value}, the primary ({}), TTL {ttl}",
                primary.region
            ),
        ),
        ttl => Check::warn(
            item,
            format!(
                "{name} is a plain CNAME to the primary ({}), but its TTL is {} and RECORD_TTL is {}: clients keep the old \
                 answer for the record's TTL after a switch",
                primary.region,
                ttl.map_or("unset".to_owned(), |t| t.to_string()),
                dns.ttl
            ),
            format!(
                "set the record's TTL to {} (the next switch writes it anyway)",
                dns.ttl
            ),
        ),
    }
}

/// Each cluster endpoint's listing of the controls (Region, states or the fault).
pub type EndpointReads = [(String, Result<BTreeMap<String, bool>, AwsFault>)];

/// arc mode: every configured cluster endpoint answers.
pub fn arc_endpoints(arc: &ArcTarget, reads: &EndpointReads) -> Check {
    let item = "arc_endpoints";
    let failed: Vec<String> = reads
        .iter()
        .filter_map(|(r, res)| res.as_ref().err().map(|f| format!("{r}: {}", unread(f))))
        .collect();
    let answered = reads.len() - failed.len();
    if failed.is_empty() {
        return Check::pass(
            item,
            format!("all {} cluster endpoints answered", arc.endpoints.len()),
        );
    }
    Check::fail(
        item,
        format!(
            "{answered} of {} cluster endpoints answered; not: {}",
            arc.endpoints.len(),
            failed.join("; ")
        ),
        "check ARC_ENDPOINTS against the cluster's endpoints (aws route53-recovery-control-config describe-cluster) and the \
         role's route53-recovery-cluster:ListRoutingControls; a switch needs one endpoint to answer, the rotation is only \
         as wide as the endpoints that do",
    )
}

/// arc mode: exactly one configured control is On, the primary's, as the first endpoint that
/// answered lists them.
pub fn routing_controls(
    cfg: &DatastoreConfig,
    arc: &ArcTarget,
    datastore: Option<&DatastoreView>,
    reads: &EndpointReads,
) -> Check {
    let item = "routing_controls";
    let Some((endpoint, states)) = reads
        .iter()
        .find_map(|(r, res)| res.as_ref().ok().map(|s| (r, s)))
    else {
        return Check::fail(item, "no cluster endpoint answered", "see arc_endpoints");
    };
    let missing: Vec<String> = arc
        .controls
        .iter()
        .filter(|(_, a)| !states.contains_key(a))
        .map(|(r, a)| format!("{r}: {a}"))
        .collect();
    if !missing.is_empty() {
        return Check::fail(
            item,
            format!("the cluster ({endpoint}) does not list: {}", missing.join("; ")),
            "check ARC_CONTROLS: one routing-control ARN per member Region, from this cluster",
        );
    }
    let on: Vec<&str> = arc
        .controls
        .iter()
        .filter(|(_, a)| states.get(a) == Some(&true))
        .map(|(r, _)| r.as_str())
        .collect();
    let Some(primary) = datastore.and_then(|v| the_primary(cfg, v)) else {
        return Check::warn(
            item,
            format!(
                "On: [{}]; the datastore has no single primary to compare with",
                on.join(", ")
            ),
            "run preflight again when the datastore is available",
        );
    };
    if on == [primary.region.as_str()] {
        return Check::pass(
            item,
            format!(
                "exactly one control On, the primary's ({}), read from {endpoint}",
                primary.region
            ),
        );
    }
    Check::fail(
        item,
        format!(
            "On: [{}], but the primary is {}: writers must have exactly the primary's control On",
            on.join(", "),
            primary.region
        ),
        format!(
            "invoke the traffic switch with {{\"command\":\"switch\",\"target_region\":\"{}\",\"dry_run\":false,\"confirm\":\"{}\",\"reason\":\"...\"}}",
            primary.region, cfg.id
        ),
    )
}

/// Which gate an alarm serves, for the item name and the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmRole {
    Signal,
    Vantage,
}

/// A gate alarm exists and can be read where the promoter reads it.
pub fn alarm(role: AlarmRole, region: &str, name: &str, read: &Result<AlarmState, AwsFault>) -> Check {
    let (item, var, without) = match role {
        AlarmRole::Signal => (
            format!("signal_alarm:{name}"),
            "SIGNAL_ALARMS",
            "no automatic promotion can start",
        ),
        AlarmRole::Vantage => (
            format!("vantage_alarm:{region}"),
            "VANTAGE_ALARMS",
            "the vantage gate cannot agree, so no automatic promotion can pass it",
        ),
    };
    match read {
        Ok(state) => Check::pass(item, format!("{name} exists in {region} and reads {state:?}")),
        Err(f) if f.is_code("AlarmNotFound") => Check::fail(
            item,
            format!("{name} does not exist in {region}: {without}"),
            format!(
                "create it in {region} (the template does with CreateExampleAlarms=true) or correct {var}"
            ),
        ),
        Err(f) => Check::fail(
            item,
            format!("could not read {name} in {region}: {}; {without}", unread(f)),
            "grant cloudwatch:DescribeAlarms on the alarm in that Region (the template does), or run again when the Region answers",
        ),
    }
}

/// No vantage alarms configured at all.
pub fn no_vantage(vantage_required: usize) -> Check {
    let item = "vantage_alarms";
    if vantage_required > 0 {
        return Check::fail(
            item,
            format!(
                "VANTAGE_REQUIRED is {vantage_required} but VANTAGE_ALARMS is empty: no promotion can pass the vantage gate"
            ),
            "list the write-error alarm of every other member Region in VANTAGE_ALARMS (region=alarm-name)",
        );
    }
    Check::warn(
        item,
        "no vantage alarms: the vantage gate cannot work, so a broken link between this Region and the primary looks the \
         same as the primary failing",
        "create a write-error alarm in every member Region (CreateExampleAlarms=true) and list the others in VANTAGE_ALARMS",
    )
}

/// What `ListMetrics` found for the lag metric's namespace and name: each dimension set.
pub type Listed = Vec<Vec<(String, String)>>;

/// The lag metric the promoter reads exists under the configured dimension and is fresh.
#[allow(clippy::too_many_arguments)]
pub fn lag_metric(
    metric: &crate::config::MetricId,
    region: &str,
    is_primary: bool,
    listed: &Result<Listed, AwsFault>,
    latest: &Result<Option<(f64, DateTime<Utc>)>, AwsFault>,
    max_age: Duration,
    now: DateTime<Utc>,
    missing_allowed: bool,
) -> Check {
    let item = "lag_metric";
    let wanted = metric
        .dimensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let what = format!("{}/{} {{{wanted}}} in {region}", metric.namespace, metric.name);
    let silent = if missing_allowed {
        " With MISSING_LAG=allow the data-loss gate passes without it: promotions go ahead blind."
    } else {
        " With MISSING_LAG=block every automatic promotion stops at the data-loss gate."
    };
    let sets = match listed {
        Ok(s) => s,
        Err(f) => {
            return Check::fail(
                item,
                format!("could not list {what}: {}", unread(f)),
                "grant cloudwatch:ListMetrics (it has no resource-level permissions)",
            );
        }
    };
    let mut wanted_set = metric.dimensions.clone();
    wanted_set.sort();
    let exists = sets.iter().any(|s| {
        let mut s = s.clone();
        s.sort();
        s == wanted_set
    });
    if !exists {
        if sets.is_empty() && is_primary {
            return Check::warn(
                item,
                format!(
                    "{what} has never been published here: ElastiCache publishes the lag only in a secondary's Region, and this \
                     Region is primary now, so it cannot be checked until it is a secondary"
                ),
                "run preflight here again while this Region is a secondary (after a failover drill)",
            );
        }
        let found = if sets.is_empty() {
            "no such metric at all".to_owned()
        } else {
            format!(
                "only: {}",
                sets.iter()
                    .map(|s| format!(
                        "{{{}}}",
                        s.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        return Check::fail(
            item,
            format!("ListMetrics has no {what}, {found}.{silent}"),
            "set LAG_METRIC_NAMESPACE, LAG_METRIC_NAME and LAG_METRIC_DIMENSION to what ListMetrics shows for the replication \
             group (aws cloudwatch list-metrics --namespace AWS/ElastiCache --metric-name GlobalDatastoreReplicationLag)",
        );
    }
    if is_primary {
        return Check::pass(
            item,
            format!("{what} is listed; this Region is primary now, so no fresh datapoint is expected here"),
        );
    }
    match latest {
        Ok(Some((value, at))) => {
            let age = now.signed_duration_since(*at).to_std().unwrap_or_default();
            if age <= max_age {
                Check::pass(
                    item,
                    format!(
                        "{what}: {value} s at {} ({} s old)",
                        at.to_rfc3339(),
                        age.as_secs()
                    ),
                )
            } else {
                Check::fail(
                    item,
                    format!(
                        "{what}: newest datapoint is {} s old, older than LAG_MAX_AGE_SECONDS ({} s).{silent}",
                        age.as_secs(),
                        max_age.as_secs()
                    ),
                    "check that the replication group is a Global Datastore secondary and ElastiCache publishes the metric \
                     (it does every minute), or raise LAG_MAX_AGE_SECONDS to cover its period",
                )
            }
        }
        Ok(None) => Check::fail(
            item,
            format!(
                "{what} is listed but has no datapoint within LAG_MAX_AGE_SECONDS ({} s).{silent}",
                max_age.as_secs()
            ),
            "check that ElastiCache still publishes it (it does every minute for a secondary)",
        ),
        Err(f) => Check::fail(
            item,
            format!("could not read {what}: {}", unread(f)),
            "grant cloudwatch:GetMetricData (it has no resource-level permissions)",
        ),
    }
}

/// The cooldown gate can read a member Region's ElastiCache events.
pub fn cooldown_events(
    region: &str,
    group: &str,
    read: &Result<Option<DateTime<Utc>>, AwsFault>,
    missing_blocks: bool,
) -> Check {
    let item = format!("cooldown_events:{region}");
    match read {
        Ok(last) => Check::pass(
            item,
            format!(
                "{group}'s events in {region} read; last failover: {}",
                last.map_or("none in the cooldown window".to_owned(), |t| t.to_rfc3339())
            ),
        ),
        Err(f) => Check::fail(
            item,
            format!(
                "could not read {group}'s events in {region}: {}; {}",
                unread(f),
                if missing_blocks {
                    "with MISSING_EVENTS=block the cooldown gate blocks every promotion"
                } else {
                    "with MISSING_EVENTS=allow the cooldown gate passes without knowing the last failover"
                }
            ),
            "grant elasticache:DescribeEvents (it has no resource-level permissions), or run again when the Region answers",
        ),
    }
}

/// Whether `region`'s member is the primary in `view`.
pub fn is_primary(view: Option<&DatastoreView>, region: &str) -> bool {
    view.is_some_and(|v| {
        v.members
            .iter()
            .any(|m| m.region == region && m.role == Role::Primary)
    })
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
