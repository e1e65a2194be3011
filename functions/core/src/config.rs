//! Configuration, read from environment variables once at start-up and validated there, so a
//! misconfigured function fails its init with a message naming the variable instead of failing
//! during an incident.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::ids::{DnsName, GlobalDatastoreId, HostedZoneId, Region, ReplicationGroupId};

/// A configuration problem, naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("environment variable {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// One member of the Global Datastore as the operator configured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberConfig {
    pub region: Region,
    pub group: ReplicationGroupId,
    /// The endpoint writers must use when this member is primary (the CNAME's target).
    pub writer_endpoint: DnsName,
}

/// The Global Datastore and its members: shared by every function of the product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatastoreConfig {
    pub id: GlobalDatastoreId,
    pub members: Vec<MemberConfig>,
}

impl DatastoreConfig {
    pub fn member_in(&self, region: &Region) -> Option<&MemberConfig> {
        self.members.iter().find(|m| &m.region == region)
    }

    /// The member whose writer endpoint is `endpoint`, if any.
    pub fn member_with_endpoint(&self, endpoint: &DnsName) -> Option<&MemberConfig> {
        self.members.iter().find(|m| &m.writer_endpoint == endpoint)
    }
}

/// How the traffic switch moves writers (the name of the [`Routing`] in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// Conditionally replace the private-zone CNAME through the Route 53 API.
    Dns,
    /// Flip Route 53 ARC routing controls through the cluster's data plane.
    Arc,
}

/// The routing mode with what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Routing {
    Dns(DnsTarget),
    Arc(ArcTarget),
}

/// One of the ARC cluster's regional endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArcEndpoint {
    pub region: Region,
    pub url: String,
}

/// The Route 53 ARC cluster and the routing control of each member Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArcTarget {
    pub endpoints: Vec<ArcEndpoint>,
    /// Routing-control ARN per member Region, in `MEMBERS` order.
    pub controls: Vec<(Region, String)>,
    /// The longest one endpoint may take before the next is tried.
    #[serde(with = "millis")]
    pub endpoint_timeout: Duration,
}

impl ArcTarget {
    fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        datastore: &DatastoreConfig,
    ) -> Result<Self, ConfigError> {
        let mut endpoints: Vec<ArcEndpoint> = Vec::new();
        for (i, entry) in pairs(&required(get, "ARC_ENDPOINTS")?).enumerate() {
            let (region, url) = entry.map_err(|e| err("ARC_ENDPOINTS", format!("entry {}: {e}", i + 1)))?;
            let region =
                Region::parse(region).map_err(|e| err("ARC_ENDPOINTS", format!("entry {}: {e}", i + 1)))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
                return Err(err(
                    "ARC_ENDPOINTS",
                    format!("entry {}: {url:?} is not an http(s) URL", i + 1),
                ));
            }
            if endpoints.iter().any(|e| e.region == region) {
                return Err(err("ARC_ENDPOINTS", format!("Region {region} is listed twice")));
            }
            endpoints.push(ArcEndpoint {
                region,
                url: url.trim_end_matches('/').to_owned(),
            });
        }
        // An ARC cluster has five endpoints; fewer configured means less rotation to fall back on.
        if !(1..=5).contains(&endpoints.len()) {
            return Err(err(
                "ARC_ENDPOINTS",
                format!(
                    "needs 1 to 5 cluster endpoints (a cluster has five), found {}",
                    endpoints.len()
                ),
            ));
        }
        // Either `region=arn` pairs, or bare ARNs in MEMBERS order (what a template can pass
        // straight from a list parameter that also scopes the IAM policy).
        let raw = required(get, "ARC_CONTROLS")?;
        let entries: Vec<&str> = raw.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        let positional = entries.iter().all(|e| e.starts_with("arn:"));
        if positional && entries.len() != datastore.members.len() {
            return Err(err(
                "ARC_CONTROLS",
                format!(
                    "lists {} ARNs for {} members (bare ARNs go in MEMBERS order)",
                    entries.len(),
                    datastore.members.len()
                ),
            ));
        }
        let mut controls: Vec<(Region, String)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let (region, arn) = if positional {
                match datastore.members.get(i) {
                    Some(m) => (m.region.clone(), *entry),
                    None => return Err(err("ARC_CONTROLS", format!("entry {} has no member", i + 1))),
                }
            } else {
                let (r, a) = entry
                    .split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .ok_or_else(|| {
                        err(
                            "ARC_CONTROLS",
                            format!("entry {}: {entry:?} is not region=arn", i + 1),
                        )
                    })?;
                let r = Region::parse(r).map_err(|e| err("ARC_CONTROLS", format!("entry {}: {e}", i + 1)))?;
                (r, a)
            };
            if !arn.starts_with("arn:")
                || !arn.contains(":route53-recovery-control::")
                || !arn.contains("/routingcontrol/")
            {
                return Err(err(
                    "ARC_CONTROLS",
                    format!("entry {}: {arn:?} is not a routing-control ARN", i + 1),
                ));
            }
            if controls.iter().any(|(r, _)| r == &region) {
                return Err(err("ARC_CONTROLS", format!("Region {region} is listed twice")));
            }
            controls.push((region, arn.to_owned()));
        }
        let mut ordered = Vec::new();
        for m in &datastore.members {
            let Some(c) = controls.iter().find(|(r, _)| r == &m.region) else {
                return Err(err(
                    "ARC_CONTROLS",
                    format!("has no routing control for member Region {}", m.region),
                ));
            };
            ordered.push(c.clone());
        }
        if let Some((r, _)) = controls.iter().find(|(r, _)| datastore.member_in(r).is_none()) {
            return Err(err("ARC_CONTROLS", format!("Region {r} is not in MEMBERS")));
        }
        let endpoint_timeout = Duration::from_millis(
            bounded_int(get, "ARC_ENDPOINT_TIMEOUT_MS", 2_000, 100, 30_000)?.unsigned_abs(),
        );
        Ok(Self {
            endpoints,
            controls: ordered,
            endpoint_timeout,
        })
    }
}

/// Splits `a=b,c=d` into pairs (the value may itself contain `=` or `:`).
fn pairs(raw: &str) -> impl Iterator<Item = Result<(&str, &str), String>> {
    raw.split(',').map(str::trim).filter(|e| !e.is_empty()).map(|e| {
        e.split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| format!("{e:?} is not region=value"))
    })
}

impl DnsTarget {
    fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        datastore: &DatastoreConfig,
    ) -> Result<Self, ConfigError> {
        let hosted_zone = HostedZoneId::parse(&required(get, "HOSTED_ZONE_ID")?)
            .map_err(|e| err("HOSTED_ZONE_ID", e.to_string()))?;
        let record_name =
            DnsName::parse(&required(get, "RECORD_NAME")?).map_err(|e| err("RECORD_NAME", e.to_string()))?;
        if datastore.member_with_endpoint(&record_name).is_some() {
            return Err(err(
                "RECORD_NAME",
                "must not be one of the writer endpoints it points at",
            ));
        }
        Ok(Self {
            hosted_zone,
            record_name,
            ttl: bounded_int(get, "RECORD_TTL", 30, 1, 86_400)?,
            wait_for_insync: boolean(get, "WAIT_FOR_INSYNC", false)?,
        })
    }
}

/// Where the writer record lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsTarget {
    pub hosted_zone: HostedZoneId,
    pub record_name: DnsName,
    pub ttl: i64,
    /// Wait for the change to reach `INSYNC` before reporting success (bounded by the deadline).
    pub wait_for_insync: bool,
}

/// The traffic switch's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchConfig {
    pub datastore: DatastoreConfig,
    pub routing: Routing,
    /// Alarms allowed to move writers; empty means every alarm delivered to the function.
    pub alarm_names: BTreeSet<String>,
    pub metrics_namespace: String,
    /// Time kept in hand before the Lambda deadline: no AWS call starts inside it.
    #[serde(with = "millis")]
    pub deadline_margin: Duration,
    /// How often to re-read the Global Datastore while it is `modifying`.
    #[serde(with = "millis")]
    pub stable_poll_interval: Duration,
    /// The Region this copy of the function runs in (Lambda sets `AWS_REGION`).
    pub function_region: Region,
    /// This stack's ElastiCache events topic in this Region (`EVENTS_TOPIC_ARN`): what the
    /// readiness check expects every member group to notify (in its own Region) and to deliver
    /// to this function. Optional: only the readiness check reads it.
    pub events_topic: Option<String>,
    /// This function's name (Lambda sets `AWS_LAMBDA_FUNCTION_NAME`): the readiness check looks
    /// for its subscription.
    pub function_name: Option<String>,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Every variable the traffic switch reads, required or not. The template test checks that
/// `template.yaml` sets exactly these (plus the ones Lambda sets itself).
pub const SWITCH_VARIABLES: &[&str] = &[
    "GLOBAL_DATASTORE_ID",
    "MEMBERS",
    "ROUTING_MODE",
    "HOSTED_ZONE_ID",
    "RECORD_NAME",
    "RECORD_TTL",
    "WAIT_FOR_INSYNC",
    "ARC_ENDPOINTS",
    "ARC_CONTROLS",
    "ARC_ENDPOINT_TIMEOUT_MS",
    "SWITCH_ALARM_NAMES",
    "METRICS_NAMESPACE",
    "DEADLINE_MARGIN_MS",
    "STABLE_POLL_MS",
    "EVENTS_TOPIC_ARN",
];

/// Variables Lambda itself provides; read, never set in the template.
pub const LAMBDA_PROVIDED_VARIABLES: &[&str] = &["AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME"];

fn required(get: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Result<String, ConfigError> {
    match get(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(err(var, "is required but not set")),
    }
}

fn optional(get: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    get(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn bounded_int(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let Some(raw) = optional(get, var) else {
        return Ok(default);
    };
    let n: i64 = raw
        .parse()
        .map_err(|_| err(var, format!("{raw:?} is not a whole number")))?;
    if n < min || n > max {
        return Err(err(var, format!("{n} is outside {min}..={max}")));
    }
    Ok(n)
}

fn boolean(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match optional(get, var).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(err(var, format!("{other:?} is not true or false"))),
    }
}

/// Parses `region:group:endpoint` entries separated by commas.
pub fn parse_members(raw: &str) -> Result<Vec<MemberConfig>, ConfigError> {
    const VAR: &str = "MEMBERS";
    let mut members: Vec<MemberConfig> = Vec::new();
    for (i, entry) in raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let fields: Vec<&str> = entry.split(':').map(str::trim).collect();
        let [region, group, endpoint] = fields.as_slice() else {
            return Err(err(
                VAR,
                format!("entry {n} {entry:?} is not region:replication-group:writer-endpoint"),
            ));
        };
        let member = MemberConfig {
            region: Region::parse(region).map_err(|e| err(VAR, format!("entry {n}: {e}")))?,
            group: ReplicationGroupId::parse(group).map_err(|e| err(VAR, format!("entry {n}: {e}")))?,
            writer_endpoint: DnsName::parse(endpoint).map_err(|e| err(VAR, format!("entry {n}: {e}")))?,
        };
        if members.iter().any(|m| m.region == member.region) {
            return Err(err(VAR, format!("Region {} is listed twice", member.region)));
        }
        if members.iter().any(|m| m.group == member.group) {
            return Err(err(
                VAR,
                format!("replication group {} is listed twice", member.group),
            ));
        }
        if members
            .iter()
            .any(|m| m.writer_endpoint == member.writer_endpoint)
        {
            return Err(err(
                VAR,
                format!("endpoint {} is listed twice", member.writer_endpoint),
            ));
        }
        members.push(member);
    }
    // A Global Datastore has one primary and at most two secondaries.
    if !(2..=3).contains(&members.len()) {
        return Err(err(
            VAR,
            format!("needs 2 or 3 members (one per Region), found {}", members.len()),
        ));
    }
    Ok(members)
}

impl DatastoreConfig {
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let id = GlobalDatastoreId::parse(&required(get, "GLOBAL_DATASTORE_ID")?)
            .map_err(|e| err("GLOBAL_DATASTORE_ID", e.to_string()))?;
        let members = parse_members(&required(get, "MEMBERS")?)?;
        Ok(Self { id, members })
    }
}

impl SwitchConfig {
    pub fn mode(&self) -> RoutingMode {
        match self.routing {
            Routing::Dns(_) => RoutingMode::Dns,
            Routing::Arc(_) => RoutingMode::Arc,
        }
    }

    /// Reads the configuration through `get` (the process environment in production, a map in
    /// tests), validating every variable.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let datastore = DatastoreConfig::from_lookup(get)?;
        let routing = match optional(get, "ROUTING_MODE")
            .map(|m| m.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("dns") => Routing::Dns(DnsTarget::from_lookup(get, &datastore)?),
            Some("arc") => Routing::Arc(ArcTarget::from_lookup(get, &datastore)?),
            Some(other) => return Err(err("ROUTING_MODE", format!("{other:?} is neither dns nor arc"))),
        };
        let alarm_names = optional(get, "SWITCH_ALARM_NAMES")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let metrics_namespace = metrics_namespace(get)?;
        let deadline_margin =
            Duration::from_millis(bounded_int(get, "DEADLINE_MARGIN_MS", 1_000, 100, 60_000)?.unsigned_abs());
        let stable_poll_interval =
            Duration::from_millis(bounded_int(get, "STABLE_POLL_MS", 2_000, 50, 60_000)?.unsigned_abs());
        let function_region =
            Region::parse(&required(get, "AWS_REGION")?).map_err(|e| err("AWS_REGION", e.to_string()))?;
        let events_topic = optional(get, "EVENTS_TOPIC_ARN");
        if let Some(t) = &events_topic
            && crate::ids::topic_in(t, function_region.as_str()).as_deref() != Some(t.as_str())
        {
            return Err(err(
                "EVENTS_TOPIC_ARN",
                format!("{t:?} is not an SNS topic ARN in this Region ({function_region})"),
            ));
        }
        Ok(Self {
            datastore,
            routing,
            alarm_names,
            metrics_namespace,
            deadline_margin,
            stable_poll_interval,
            function_region,
            events_topic,
            function_name: optional(get, "AWS_LAMBDA_FUNCTION_NAME"),
        })
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }
}

/// Every variable the promoter reads.
pub const PROMOTER_VARIABLES: &[&str] = &[
    "GLOBAL_DATASTORE_ID",
    "MEMBERS",
    "SIGNAL_ALARMS",
    "VANTAGE_ALARMS",
    "VANTAGE_REQUIRED",
    "UNREACHABLE_VANTAGE_AGREES",
    "MAX_LAG_SECONDS",
    "LAG_MAX_AGE_SECONDS",
    "MISSING_LAG",
    "COOLDOWN_MINUTES",
    "MISSING_EVENTS",
    "PROMOTION_PRIORITY",
    "PROMOTION_DELAY_SECONDS",
    "LAG_METRIC_NAMESPACE",
    "LAG_METRIC_NAME",
    "LAG_METRIC_DIMENSION",
    "WAIT_FOR_PROMOTION",
    "METRICS_NAMESPACE",
    "DEADLINE_MARGIN_MS",
    "STABLE_POLL_MS",
];

/// When the replication lag cannot be read (typically: the primary Region is dark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingLag {
    /// Promote, reporting the loss bound as unknown.
    Allow,
    /// Do not promote without a known bound.
    Block,
}

/// When the events of a Region that answered cannot be read (denied, throttled to the end…), so a
/// recent failover there cannot be ruled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingEvents {
    /// Let the cooldown pass, reporting what could not be read.
    Allow,
    /// Do not pass the cooldown without the events (the default).
    Block,
}

/// What the operator configured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotePolicy {
    /// The most replication lag (seconds) a promotion may lose.
    pub max_lag_seconds: f64,
    /// The lag is only trusted if measured this recently.
    pub lag_max_age: Duration,
    pub missing_lag: MissingLag,
    /// No promotion this soon after the last failover.
    pub cooldown: Duration,
    pub missing_events: MissingEvents,
    /// How many vantage points must agree the primary Region is down.
    pub vantage_required: usize,
    /// Whether a vantage alarm whose Region's CloudWatch does not answer at all counts as
    /// agreeing. A dark Region takes its monitoring with it, so the default is yes. An alarm that
    /// a Region which answers cannot give (missing, denied) never agrees.
    pub unreachable_vantage_agrees: bool,
}

/// A metric to read: namespace, name, dimensions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetricId {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

/// The promoter's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoterConfig {
    pub datastore: DatastoreConfig,
    /// The Region this copy runs in; its member is the one it promotes automatically.
    pub function_region: Region,
    /// Write-error alarms in this Region that must be in ALARM now.
    pub signal_alarms: Vec<String>,
    /// Vantage alarms per member Region; those of the current primary's Region are consulted.
    pub vantage_alarms: Vec<(Region, String)>,
    pub policy: PromotePolicy,
    pub lag_metric: MetricId,
    /// Member Regions in the order they should take over automatically: the first acts at once,
    /// the k-th waits k × `promotion_delay` and reads the datastore again, so two secondaries that
    /// both see the primary dark do not both promote. Regions not listed come last; an empty list
    /// makes every Region act at once (enough with one secondary).
    pub promotion_priority: Vec<Region>,
    #[serde(with = "millis")]
    pub promotion_delay: Duration,
    /// After `FailoverGlobalReplicationGroup`, poll until the new primary is in place (bounded).
    pub wait_for_promotion: bool,
    pub metrics_namespace: String,
    #[serde(with = "millis")]
    pub deadline_margin: Duration,
    #[serde(with = "millis")]
    pub poll_interval: Duration,
}

/// An `allow` / `block` policy variable (any case): whether it allows, `default` when unset.
fn allows(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match optional(get, name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("allow") => Ok(true),
        Some("block") => Ok(false),
        Some(other) => Err(err(name, format!("{other:?} is neither allow nor block"))),
    }
}

/// `METRICS_NAMESPACE`, as CloudWatch accepts it (both functions).
fn metrics_namespace(get: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let ns = optional(get, "METRICS_NAMESPACE").unwrap_or_else(|| "ValkeyFailover".to_owned());
    if ns.len() > 255 || ns.starts_with(':') {
        return Err(err(
            "METRICS_NAMESPACE",
            "must be 1 to 255 characters, not starting with ':'",
        ));
    }
    Ok(ns)
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl PromoterConfig {
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let datastore = DatastoreConfig::from_lookup(get)?;
        let function_region =
            Region::parse(&required(get, "AWS_REGION")?).map_err(|e| err("AWS_REGION", e.to_string()))?;
        let Some(own) = datastore.member_in(&function_region).cloned() else {
            return Err(err(
                "MEMBERS",
                format!(
                    "has no member in this function's Region {function_region}: the promoter runs where it promotes"
                ),
            ));
        };
        let signal_alarms = list(&required(get, "SIGNAL_ALARMS")?);
        if signal_alarms.is_empty() {
            return Err(err("SIGNAL_ALARMS", "names no alarm"));
        }
        let mut vantage_alarms = Vec::new();
        for (i, entry) in list(&required(get, "VANTAGE_ALARMS")?).iter().enumerate() {
            let Some((region, name)) = entry.split_once(':') else {
                return Err(err(
                    "VANTAGE_ALARMS",
                    format!("entry {} {entry:?} is not region:alarm-name", i + 1),
                ));
            };
            let region = Region::parse(region.trim())
                .map_err(|e| err("VANTAGE_ALARMS", format!("entry {}: {e}", i + 1)))?;
            if datastore.member_in(&region).is_none() {
                return Err(err(
                    "VANTAGE_ALARMS",
                    format!("entry {}: {region} is not a member Region", i + 1),
                ));
            }
            vantage_alarms.push((region, name.trim().to_owned()));
        }
        let missing_lag = if allows(get, "MISSING_LAG", true)? {
            MissingLag::Allow
        } else {
            MissingLag::Block
        };
        let missing_events = if allows(get, "MISSING_EVENTS", false)? {
            MissingEvents::Allow
        } else {
            MissingEvents::Block
        };
        let max_lag = optional(get, "MAX_LAG_SECONDS").unwrap_or_else(|| "5".into());
        let max_lag_seconds: f64 = max_lag
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| err("MAX_LAG_SECONDS", format!("{max_lag:?} is not a positive number")))?;
        let policy = PromotePolicy {
            max_lag_seconds,
            lag_max_age: Duration::from_secs(
                bounded_int(get, "LAG_MAX_AGE_SECONDS", 300, 1, 86_400)?.unsigned_abs(),
            ),
            missing_lag,
            cooldown: Duration::from_secs(
                bounded_int(get, "COOLDOWN_MINUTES", 30, 0, 10_080)?.unsigned_abs() * 60,
            ),
            missing_events,
            vantage_required: usize::try_from(bounded_int(get, "VANTAGE_REQUIRED", 1, 1, 10)?).unwrap_or(1),
            unreachable_vantage_agrees: boolean(get, "UNREACHABLE_VANTAGE_AGREES", true)?,
        };
        let mut promotion_priority: Vec<Region> = Vec::new();
        for (i, raw) in optional(get, "PROMOTION_PRIORITY")
            .map(|v| list(&v))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let region =
                Region::parse(raw).map_err(|e| err("PROMOTION_PRIORITY", format!("entry {}: {e}", i + 1)))?;
            if datastore.member_in(&region).is_none() {
                return Err(err(
                    "PROMOTION_PRIORITY",
                    format!("entry {}: {region} is not a member Region", i + 1),
                ));
            }
            if promotion_priority.contains(&region) {
                return Err(err("PROMOTION_PRIORITY", format!("{region} is listed twice")));
            }
            promotion_priority.push(region);
        }
        let promotion_delay =
            Duration::from_secs(bounded_int(get, "PROMOTION_DELAY_SECONDS", 30, 0, 600)?.unsigned_abs());
        let lag_metric = MetricId {
            namespace: optional(get, "LAG_METRIC_NAMESPACE").unwrap_or_else(|| "AWS/ElastiCache".into()),
            name: optional(get, "LAG_METRIC_NAME").unwrap_or_else(|| "GlobalDatastoreReplicationLag".into()),
            dimensions: vec![(
                optional(get, "LAG_METRIC_DIMENSION").unwrap_or_else(|| "ReplicationGroupId".into()),
                own.group.to_string(),
            )],
        };
        Ok(Self {
            datastore,
            function_region,
            signal_alarms,
            vantage_alarms,
            policy,
            lag_metric,
            promotion_priority,
            promotion_delay,
            wait_for_promotion: boolean(get, "WAIT_FOR_PROMOTION", true)?,
            metrics_namespace: metrics_namespace(get)?,
            deadline_margin: Duration::from_millis(
                bounded_int(get, "DEADLINE_MARGIN_MS", 1_000, 100, 60_000)?.unsigned_abs(),
            ),
            poll_interval: Duration::from_millis(
                bounded_int(get, "STABLE_POLL_MS", 2_000, 50, 60_000)?.unsigned_abs(),
            ),
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// How long this Region waits before an automatic promotion, and the Region it gives way to:
    /// zero for the first of `PROMOTION_PRIORITY` (or when there is no list), k × the delay for
    /// the k-th; Regions not listed come after every listed one.
    pub fn promotion_wait(&self) -> (Duration, Option<&Region>) {
        let first = self.promotion_priority.first();
        let rank = match self
            .promotion_priority
            .iter()
            .position(|r| r == &self.function_region)
        {
            _ if self.promotion_priority.is_empty() => 0,
            Some(k) => k,
            None => self.promotion_priority.len(),
        };
        (
            self.promotion_delay * u32::try_from(rank).unwrap_or(u32::MAX),
            first.filter(|_| rank > 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("GLOBAL_DATASTORE_ID", "ldgnf-sessions"),
            (
                "MEMBERS",
                "us-west-1:sessions-usw1:master.sessions-usw1.abc.usw1.cache.amazonaws.com,\
                 us-west-2:sessions-usw2:master.sessions-usw2.abc.usw2.cache.amazonaws.com",
            ),
            ("HOSTED_ZONE_ID", "Z0SESSIONS"),
            ("RECORD_NAME", "writer.sessions.internal"),
            ("AWS_REGION", "us-west-2"),
        ])
    }

    fn load(vars: &HashMap<&'static str, &'static str>) -> Result<SwitchConfig, ConfigError> {
        SwitchConfig::from_lookup(&|k| vars.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn a_minimal_environment_gives_safe_defaults() {
        let cfg = load(&base()).expect("valid");
        assert_eq!(cfg.mode(), RoutingMode::Dns);
        let Routing::Dns(dns) = &cfg.routing else {
            panic!("dns is the default mode")
        };
        assert_eq!(dns.ttl, 30);
        assert!(!dns.wait_for_insync);
        assert!(cfg.alarm_names.is_empty());
        assert_eq!(cfg.datastore.members.len(), 2);
        assert_eq!(cfg.datastore.members[1].group.as_str(), "sessions-usw2");
    }

    #[test]
    fn every_required_variable_is_named_when_missing() {
        for var in [
            "GLOBAL_DATASTORE_ID",
            "MEMBERS",
            "HOSTED_ZONE_ID",
            "RECORD_NAME",
            "AWS_REGION",
        ] {
            let mut vars = base();
            vars.remove(var);
            let e = load(&vars).expect_err("must fail");
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn malformed_members_are_rejected_with_the_entry_number() {
        let cases = [
            ("us-west-1:a:a.example", "needs 2 or 3 members"),
            ("us-west-1:a:a.example,us-west-2:b", "entry 2"),
            ("us-west-1:a:a.example,us-west-1:b:b.example", "listed twice"),
            ("us-west-1:a:a.example,us-west-2:a:b.example", "listed twice"),
            ("us-west-1:a:x.example,us-west-2:b:x.example", "listed twice"),
            ("US West:a:a.example,us-west-2:b:b.example", "entry 1"),
            (
                "us-west-1:a:a.example,us-west-2:b:b.example,eu-west-1:c:c.example,eu-west-2:d:d.example",
                "2 or 3",
            ),
        ];
        for (members, expect) in cases {
            let mut vars = base();
            vars.insert("MEMBERS", members);
            let e = load(&vars).expect_err(members);
            assert_eq!(e.var, "MEMBERS");
            assert!(e.problem.contains(expect), "{members}: {e}");
        }
    }

    #[test]
    fn out_of_range_and_unparseable_values_are_rejected() {
        for (var, value) in [
            ("RECORD_TTL", "0"),
            ("RECORD_TTL", "thirty"),
            ("WAIT_FOR_INSYNC", "maybe"),
            ("ROUTING_MODE", "carrier-pigeon"),
            ("DEADLINE_MARGIN_MS", "5"),
            ("HOSTED_ZONE_ID", "not a zone"),
            ("RECORD_NAME", "master.sessions-usw1.abc.usw1.cache.amazonaws.com"),
            // The events topic must be an SNS topic in the function's own Region.
            (
                "EVENTS_TOPIC_ARN",
                "arn:aws:sns:eu-central-1:123456789012:sessions-elasticache-events",
            ),
            (
                "EVENTS_TOPIC_ARN",
                "arn:aws:sqs:us-west-2:123456789012:sessions-elasticache-events",
            ),
        ] {
            let mut vars = base();
            vars.insert(var, value);
            let e = load(&vars).expect_err(value);
            assert_eq!(e.var, var, "{value}: {e}");
        }
    }

    fn arc(vars: &mut HashMap<&'static str, &'static str>) {
        vars.insert("ROUTING_MODE", "arc");
        vars.insert(
            "ARC_ENDPOINTS",
            "us-east-1=https://aaaa.route53-recovery-cluster.us-east-1.amazonaws.com/v1,\
             us-west-2=https://bbbb.route53-recovery-cluster.us-west-2.amazonaws.com/v1",
        );
        vars.insert(
            "ARC_CONTROLS",
            "us-west-2=arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/w2,\
             us-west-1=arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/w1",
        );
    }

    #[test]
    fn the_published_variable_list_is_exactly_what_the_reader_reads_across_both_modes() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let mut arc_vars = base();
        arc(&mut arc_vars);
        for vars in [base(), arc_vars] {
            let cfg = SwitchConfig::from_lookup(&|k| {
                asked.borrow_mut().insert(k.to_owned());
                vars.get(k).map(|v| (*v).to_owned())
            });
            assert!(cfg.is_ok(), "{cfg:?}");
        }
        let published: std::collections::BTreeSet<String> = SWITCH_VARIABLES
            .iter()
            .chain(LAMBDA_PROVIDED_VARIABLES)
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(asked.into_inner(), published);
    }

    #[test]
    fn arc_mode_orders_controls_by_member_and_needs_no_route53_settings() {
        let mut vars = base();
        arc(&mut vars);
        vars.remove("HOSTED_ZONE_ID");
        vars.remove("RECORD_NAME");
        let cfg = load(&vars).expect("valid");
        let Routing::Arc(arc) = &cfg.routing else {
            panic!("arc mode")
        };
        assert_eq!(cfg.mode(), RoutingMode::Arc);
        assert_eq!(arc.endpoints.len(), 2);
        assert_eq!(
            arc.endpoints[0].url,
            "https://aaaa.route53-recovery-cluster.us-east-1.amazonaws.com/v1"
        );
        let regions: Vec<&str> = arc.controls.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(regions, ["us-west-1", "us-west-2"], "MEMBERS order");
        assert_eq!(arc.endpoint_timeout, Duration::from_secs(2));
    }

    #[test]
    fn arc_controls_may_be_bare_arns_in_members_order() {
        let mut vars = base();
        arc(&mut vars);
        vars.insert(
            "ARC_CONTROLS",
            "arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/a,\
             arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/b",
        );
        let cfg = load(&vars).expect("valid");
        let Routing::Arc(arc) = &cfg.routing else {
            panic!("arc")
        };
        assert_eq!(arc.controls[0].0.as_str(), "us-west-1");
        assert!(arc.controls[0].1.ends_with("/a"));
        assert!(arc.controls[1].1.ends_with("/b"));
        vars.insert(
            "ARC_CONTROLS",
            "arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/a",
        );
        assert!(
            load(&vars)
                .expect_err("one ARN for two members")
                .problem
                .contains("MEMBERS order")
        );
    }

    #[test]
    fn arc_settings_are_validated_with_the_entry_named() {
        let cases = [
            ("ARC_ENDPOINTS", "us-east-1", "not region=value"),
            ("ARC_ENDPOINTS", "us-east-1=ftp://x.example", "not an http(s) URL"),
            (
                "ARC_ENDPOINTS",
                "us-east-1=https://a.example,us-east-1=https://b.example",
                "listed twice",
            ),
            (
                "ARC_ENDPOINTS",
                "us-east-1=https://a.example,us-west-2=https://b.example,eu-west-1=https://c.example,\
                 ap-northeast-1=https://d.example,ap-southeast-2=https://e.example,us-east-2=https://f.example",
                "1 to 5",
            ),
            (
                "ARC_CONTROLS",
                "us-west-1=arn:aws:s3:::bucket",
                "not a routing-control ARN",
            ),
            (
                "ARC_CONTROLS",
                "us-west-1=arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/w1",
                "no routing control for member Region us-west-2",
            ),
            (
                "ARC_CONTROLS",
                "us-west-1=arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/w1,\
                 us-west-2=arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/w2,\
                 eu-west-1=arn:aws:route53-recovery-control::1:controlpanel/p/routingcontrol/e1",
                "not in MEMBERS",
            ),
            ("ARC_ENDPOINT_TIMEOUT_MS", "10", "outside"),
        ];
        for (var, value, expect) in cases {
            let mut vars = base();
            arc(&mut vars);
            vars.insert(var, value);
            let e = load(&vars).expect_err(value);
            assert_eq!(e.var, var, "{e}");
            assert!(e.problem.contains(expect), "{value}: {e}");
        }
        let mut vars = base();
        vars.insert("ROUTING_MODE", "arc");
        assert_eq!(load(&vars).expect_err("no endpoints").var, "ARC_ENDPOINTS");
    }

    fn promoter_vars() -> HashMap<&'static str, &'static str> {
        let mut vars = base();
        vars.insert("SIGNAL_ALARMS", "writes-failing-usw2");
        vars.insert(
            "VANTAGE_ALARMS",
            "us-west-1:writes-failing-usw1,us-west-2:writes-failing-usw2",
        );
        vars
    }

    #[test]
    fn the_promoter_reads_exactly_its_published_variables_with_safe_defaults() {
        let vars = promoter_vars();
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let cfg = PromoterConfig::from_lookup(&|k| {
            asked.borrow_mut().insert(k.to_owned());
            vars.get(k).map(|v| (*v).to_owned())
        })
        .expect("valid");
        // Of what Lambda provides, the promoter reads only its Region.
        let published: std::collections::BTreeSet<String> = PROMOTER_VARIABLES
            .iter()
            .chain(&["AWS_REGION"])
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(asked.into_inner(), published);
        assert_eq!(
            cfg.datastore
                .member_in(&cfg.function_region)
                .map(|m| m.group.as_str()),
            Some("sessions-usw2")
        );
        assert_eq!(cfg.policy.cooldown, Duration::from_secs(1800));
        assert_eq!(cfg.policy.missing_lag, MissingLag::Allow);
        assert_eq!(
            cfg.policy.missing_events,
            MissingEvents::Block,
            "an unread Region's events block the cooldown unless the operator says otherwise"
        );
        assert_eq!(
            cfg.lag_metric.dimensions,
            [("ReplicationGroupId".to_owned(), "sessions-usw2".to_owned())]
        );
    }

    #[test]
    fn the_preferred_secondary_promotes_at_once_and_the_others_wait_their_turn() {
        let three = |priority: &str, region: &str| {
            let mut vars = promoter_vars();
            vars.insert(
                "MEMBERS",
                "us-west-1:sessions-usw1:a.example,us-west-2:sessions-usw2:b.example,eu-west-1:sessions-euw1:c.example",
            );
            vars.insert("AWS_REGION", region);
            vars.insert("PROMOTION_PRIORITY", priority);
            vars.insert("PROMOTION_DELAY_SECONDS", "20");
            PromoterConfig::from_lookup(&|k| vars.get(k).map(|v| (*v).to_owned())).expect("valid")
        };
        let usw2 = Region::parse("us-west-2").expect("region");
        assert_eq!(
            three("us-west-2,eu-west-1", "us-west-2").promotion_wait(),
            (Duration::ZERO, None)
        );
        assert_eq!(
            three("us-west-2,eu-west-1", "eu-west-1").promotion_wait(),
            (Duration::from_secs(20), Some(&usw2))
        );
        // Not listed: after every listed Region.
        assert_eq!(
            three("us-west-2", "eu-west-1").promotion_wait(),
            (Duration::from_secs(20), Some(&usw2))
        );
        assert_eq!(
            three("", "eu-west-1").promotion_wait(),
            (Duration::ZERO, None),
            "no list: no wait"
        );
    }

    #[test]
    fn promoter_settings_are_validated_by_name() {
        for (var, value) in [
            ("PROMOTION_PRIORITY", "us-west-2,us-west-2"),
            ("PROMOTION_PRIORITY", "ap-south-1"),
            ("PROMOTION_PRIORITY", "Oregon"),
            ("PROMOTION_DELAY_SECONDS", "601"),
            ("METRICS_NAMESPACE", ":aws"),
            ("VANTAGE_ALARMS", "writes-failing"),
            ("VANTAGE_ALARMS", "eu-west-1:x"),
            ("MISSING_LAG", "maybe"),
            ("MISSING_EVENTS", "ignore"),
            ("MAX_LAG_SECONDS", "-1"),
            ("SIGNAL_ALARMS", " , "),
            ("AWS_REGION", "eu-west-1"),
        ] {
            let mut vars = promoter_vars();
            vars.insert(var, value);
            let e = PromoterConfig::from_lookup(&|k| vars.get(k).map(|v| (*v).to_owned())).expect_err(value);
            let expected = if var == "AWS_REGION" { "MEMBERS" } else { var };
            assert_eq!(e.var, expected, "{value}: {e}");
        }
    }

    #[test]
    fn alarm_allow_list_is_trimmed() {
        let mut vars = base();
        vars.insert("SWITCH_ALARM_NAMES", " primary-unreachable , ,writes-failing ");
        let cfg = load(&vars).expect("valid");
        assert_eq!(
            cfg.alarm_names.into_iter().collect::<Vec<_>>(),
            vec!["primary-unreachable".to_owned(), "writes-failing".to_owned()]
        );
    }
}
