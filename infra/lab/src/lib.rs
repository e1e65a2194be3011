//! The local two-Region lab.
//!
//! Real: Valkey (one server per Region, the secondary replicating through the inter-Region link),
//! the functions (their real binaries, served by the lab's Lambda Runtime API).
//! Emulated: Route 53, the ElastiCache Global Datastore control plane, the ARC cluster, CloudWatch,
//! SNS delivery to the functions, and the link itself (a userspace proxy). Everything binds to loopback and stops when the [`Lab`] is
//! dropped.

pub mod arc;
pub mod chaos;
pub mod cloudwatch;
pub mod control;
pub mod drill;
pub mod elasticache;
pub mod failover;
pub mod lag;
pub mod lambda;
pub mod link;
pub mod readiness;
pub mod route53;
pub mod valkey;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lambda::{Function, FunctionSpec, InvocationRecord, Runtime, now_ms};
use crate::link::LinkMode;

#[derive(Debug, Error)]
pub enum LabError {
    #[error("missing: {0}")]
    Missing(String),
    #[error("could not start: {0}")]
    Start(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("valkey: {0}")]
    Valkey(String),
    #[error("route 53: {0}")]
    Route53(String),
}

/// One Region of the lab.
#[derive(Debug, Clone, Serialize)]
pub struct RegionConfig {
    pub name: String,
    pub group: String,
    /// The AWS-style writer endpoint the CNAME points at when this member is primary.
    pub endpoint: String,
}

/// What to start; every timing is a knob.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The workspace root: `.venv` and `target/` are found from here.
    pub root: PathBuf,
    /// Where servers keep their files and logs (`.lab` by default).
    pub work_dir: PathBuf,
    /// The first is the initial primary.
    pub regions: Vec<RegionConfig>,
    pub datastore_id: String,
    pub record_name: String,
    pub record_ttl: i64,
    /// How long a Global Datastore failover stays `modifying` (AWS: about a minute).
    pub promotion_time: Duration,
    /// Delay before Lambda's asynchronous retry of a failed invocation (AWS: 1 then 2 minutes).
    pub lambda_retry_delay: Duration,
    pub function_timeout: Duration,
    /// Functions to run in every Region, by package name; binaries come from `binary_dir`.
    pub functions: Vec<String>,
    pub binary_dir: PathBuf,
    /// Extra environment for the functions (e.g. `STABLE_POLL_MS`).
    pub function_env: Vec<(String, String)>,
    /// How often CloudWatch alarms are evaluated.
    pub alarm_tick: Duration,
    /// How often the replication-lag heartbeat is written and the lag published.
    pub lag_tick: Duration,
    /// How the functions move writers: `dns` or `arc` (their `ROUTING_MODE`).
    pub routing_mode: String,
    /// Add a routing control outside the datastore to the ARC cluster (for safety-rule drills).
    pub arc_spare_control: bool,
    /// The traffic switch's reconcile schedule (the template's `ReconcileMinutes`): an EventBridge
    /// scheduled event to every Region's traffic switch this often. `None`: no schedule.
    pub reconcile_every: Option<Duration>,
}

impl LabConfig {
    /// Two Regions, us-west-1 primary, seconds-scale timings.
    pub fn two_regions(root: &Path) -> Self {
        let region = |name: &str, short: &str| RegionConfig {
            name: name.to_owned(),
            group: format!("sessions-{short}"),
            endpoint: format!("master.sessions-{short}.lab.{short}.cache.amazonaws.com"),
        };
        Self {
            root: root.to_path_buf(),
            work_dir: root.join(".lab"),
            regions: vec![region("us-west-1", "usw1"), region("us-west-2", "usw2")],
            datastore_id: "ldgnf-sessions".into(),
            record_name: "writer.sessions.internal".into(),
            record_ttl: 5,
            promotion_time: Duration::from_secs(2),
            lambda_retry_delay: Duration::from_secs(1),
            function_timeout: Duration::from_secs(30),
            functions: vec!["traffic-switch".into()],
            binary_dir: root.join("target/debug"),
            function_env: vec![("STABLE_POLL_MS".into(), "200".into())],
            alarm_tick: Duration::from_millis(250),
            lag_tick: Duration::from_millis(200),
            routing_mode: "dns".into(),
            arc_spare_control: false,
            reconcile_every: None,
        }
    }

    /// Adds a third Region (a Global Datastore has at most two secondaries).
    pub fn with_third_region(mut self, name: &str, short: &str) -> Self {
        self.regions.push(RegionConfig {
            name: name.to_owned(),
            group: format!("sessions-{short}"),
            endpoint: format!("master.sessions-{short}.lab.{short}.cache.amazonaws.com"),
        });
        self
    }

    /// `MEMBERS` as the functions read it.
    pub fn members_env(&self) -> String {
        self.regions
            .iter()
            .map(|r| format!("{}:{}:{}", r.name, r.group, r.endpoint))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A Region at run time.
pub struct RegionRuntime {
    pub name: String,
    pub group: String,
    pub endpoint: String,
    /// The Region's Valkey, for clients in the same Region.
    pub valkey_port: u16,
    /// The link's entry into this Region, for everything coming from another Region.
    pub link_port: u16,
    valkey: tokio::sync::Mutex<Option<Child>>,
    pub functions: Mutex<Vec<Arc<Runtime>>>,
}

/// The Global Datastore as the emulator holds it.
#[derive(Debug, Clone, Serialize)]
pub struct GdsState {
    pub status: String,
    pub primary: usize,
    pub failovers: u32,
}

/// An ElastiCache event, as `DescribeEvents` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct LabEvent {
    pub region: String,
    pub source: String,
    pub source_type: String,
    pub message: String,
    pub at_ms: u64,
}

/// A request an emulated API received. `params["trace"]` is the caller's `x-amzn-trace-id`
/// header when it sent one (the functions do: it names the invocation, see
/// [`lambda::InvocationRecord::trace_id`]).
#[derive(Debug, Clone, Serialize)]
pub struct ApiRequest {
    pub service: String,
    pub region: String,
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub status: u16,
    pub at_ms: u64,
}

impl ApiRequest {
    /// The trace header of the invocation that made the request, if any.
    pub fn trace(&self) -> Option<&str> {
        self.params.get("trace").map(String::as_str)
    }
}

/// The `x-amzn-trace-id` header of a request, for [`ApiRequest::params`].
pub fn trace_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One change of the Global Datastore's state, as the emulator made it.
#[derive(Debug, Clone, Serialize)]
pub struct GdsChange {
    pub at_ms: u64,
    pub status: String,
    /// The Region of the member that is PRIMARY from this moment.
    pub primary: String,
}

/// How SNS delivers to the functions; switches for at-least-once behaviour.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct SnsFaults {
    /// Deliver every notification twice.
    #[serde(default)]
    pub duplicate: bool,
    /// Hold every notification this long before delivering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Lose every notification (a missed promotion event).
    #[serde(default)]
    pub drop: bool,
}

/// A notification SNS delivered (or will deliver).
#[derive(Debug, Clone, Serialize)]
pub struct Publication {
    pub region: String,
    pub message: String,
    pub message_id: String,
    pub at_ms: u64,
}

/// Everything the lab's servers share.
pub struct LabState {
    pub cfg: LabConfig,
    pub regions: Vec<RegionRuntime>,
    gds: Mutex<GdsState>,
    gds_history: Mutex<Vec<GdsChange>>,
    /// Answer delays per emulated API (`service` or `service:Action`).
    api_delays: Mutex<BTreeMap<String, Duration>>,
    events: Mutex<Vec<LabEvent>>,
    requests: Mutex<Vec<ApiRequest>>,
    publications: Mutex<Vec<Publication>>,
    pub sns: Mutex<SnsFaults>,
    link: watch::Sender<LinkMode>,
    valkey_bin: PathBuf,
    /// Regions made dark by the control surface (Valkey stopped, APIs unreachable).
    dark: Mutex<Vec<String>>,
    /// Signalled by the control surface's `/shutdown`.
    pub shutdown: tokio::sync::Notify,
    /// The Route 53 ARC cluster's shared state and endpoint faults.
    pub arc: Arc<arc::ArcState>,
    /// CloudWatch metrics and alarms.
    pub cloudwatch: cloudwatch::CloudWatchState,
    /// Route 53: the private zone with the writer record, its change log and faults.
    pub route53: Arc<route53::Route53State>,
    /// Notification topics, subscriptions and the lag metric switch: what the readiness check
    /// reads and the lab can break.
    pub readiness: readiness::Readiness,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LabState {
    pub fn gds(&self) -> GdsState {
        lock(&self.gds).clone()
    }

    /// Changes the datastore's state and records the change in its history.
    pub(crate) fn set_gds(&self, change: impl FnOnce(&mut GdsState)) {
        let mut g = lock(&self.gds);
        change(&mut g);
        let primary = self
            .regions
            .get(g.primary)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        lock(&self.gds_history).push(GdsChange {
            at_ms: now_ms(),
            status: g.status.clone(),
            primary,
        });
    }

    /// Every state the datastore went through, from the start, in order.
    pub fn gds_history(&self) -> Vec<GdsChange> {
        lock(&self.gds_history).clone()
    }

    /// The delay configured for `service`'s `action` (or for the whole service), if any.
    pub fn api_delay(&self, service: &str, action: &str) -> Duration {
        let delays = lock(&self.api_delays);
        delays
            .get(&format!("{service}:{action}"))
            .or_else(|| delays.get(service))
            .copied()
            .unwrap_or_default()
    }

    /// Delays every answer of `service` (or only of `action`) by `delay`; zero removes it.
    pub fn set_api_delay(&self, service: &str, action: Option<&str>, delay: Duration) {
        let key = action.map_or_else(|| service.to_owned(), |a| format!("{service}:{a}"));
        let mut delays = lock(&self.api_delays);
        if delay.is_zero() {
            delays.remove(&key);
        } else {
            delays.insert(key, delay);
        }
    }

    pub fn events(&self) -> Vec<LabEvent> {
        lock(&self.events).clone()
    }

    /// Every request the emulated APIs received (ElastiCache, ARC and Route 53), in time order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        let mut all = lock(&self.requests).clone();
        all.extend(self.arc.requests());
        all.extend(self.route53.requests());
        all.sort_by_key(|r| r.at_ms);
        all
    }

    pub fn publications(&self) -> Vec<Publication> {
        lock(&self.publications).clone()
    }

    pub(crate) fn record(&self, r: ApiRequest) {
        lock(&self.requests).push(r);
    }

    /// Records an ElastiCache event of replication group `source` in `region` (what
    /// `DescribeEvents` returns there), as ElastiCache would — or as a test adds noise.
    pub fn event(&self, region: &str, source: &str, message: &str) {
        lock(&self.events).push(LabEvent {
            region: region.to_owned(),
            source: source.to_owned(),
            source_type: "replication-group".into(),
            message: message.to_owned(),
            at_ms: now_ms(),
        });
    }

    pub fn region(&self, name: &str) -> Option<&RegionRuntime> {
        self.regions.iter().find(|r| r.name == name)
    }

    pub fn region_dark(&self, name: &str) -> bool {
        lock(&self.dark).iter().any(|d| d == name)
    }

    pub fn link_mode(&self) -> LinkMode {
        *self.link.borrow()
    }

    pub fn set_link(&self, mode: LinkMode) {
        self.link.send_replace(mode);
    }

    /// The address a client in `from_region` reaches `endpoint` at: the Region's Valkey directly
    /// when local, through the link when not.
    pub fn resolve(&self, endpoint: &str, from_region: &str) -> Option<SocketAddr> {
        let endpoint = endpoint.trim_end_matches('.').to_ascii_lowercase();
        let r = self.regions.iter().find(|r| r.endpoint == endpoint)?;
        let port = if r.name == from_region {
            r.valkey_port
        } else {
            r.link_port
        };
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Publishes `message` to the Region's ElastiCache topic: every function subscribed in that
    /// Region gets it asynchronously, as Lambda receives SNS (`Records[].Sns`).
    pub fn publish(&self, region: &str, subject: &str, message: &str) {
        // An inactive (or another) topic: ElastiCache publishes nothing at all.
        if !self.readiness.publishes(region) {
            return;
        }
        let faults = *lock(&self.sns);
        let message_id = format!("lab-{}-{}", now_ms(), rand::random::<u32>());
        lock(&self.publications).push(Publication {
            region: region.to_owned(),
            message: message.to_owned(),
            message_id: message_id.clone(),
            at_ms: now_ms(),
        });
        let event = sns_event(region, subject, message, &message_id);
        let Some(r) = self.region(region) else { return };
        if faults.drop {
            return;
        }
        let subscribed = self.readiness.subscribed(region);
        let targets: Vec<Arc<Runtime>> = lock(&r.functions)
            .iter()
            .filter(|f| subscribed || f.name != "traffic-switch")
            .cloned()
            .collect();
        for rt in targets {
            let copies = if faults.duplicate { 2 } else { 1 };
            let event = event.clone();
            let delay = Duration::from_millis(faults.delay_ms);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for _ in 0..copies {
                    rt.invoke_async(event.clone(), "sns");
                }
            });
        }
    }

    /// Delivers a notification exactly as given, e.g. an old one replayed late (the control
    /// surface's "replay" switch).
    pub fn deliver_raw(&self, region: &str, event: Value) {
        if let Some(r) = self.region(region) {
            for rt in lock(&r.functions).iter() {
                rt.invoke_async(event.clone(), "sns");
            }
        }
    }

    /// Every invocation of every function, in time order.
    pub fn invocations(&self) -> Vec<InvocationRecord> {
        let mut all: Vec<InvocationRecord> = self
            .regions
            .iter()
            .flat_map(|r| {
                lock(&r.functions)
                    .iter()
                    .flat_map(|f| f.records())
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by_key(|r| r.queued_at_ms);
        all
    }

    /// Every audit line every function wrote.
    pub fn audits(&self) -> Vec<Value> {
        self.regions
            .iter()
            .flat_map(|r| {
                lock(&r.functions)
                    .iter()
                    .flat_map(|f| f.audits())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits (up to `limit`) until every finished invocation's audit line has been read from its
    /// function's output: a function posts its result to the Runtime API and prints its audit line
    /// on stdout, and the two reach the lab by different roads. True when they all have.
    pub async fn audits_caught_up(&self, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let audits = self.audits();
            let missing = self.invocations().into_iter().any(|i| {
                i.finished_at_ms.is_some()
                    && !audits
                        .iter()
                        .any(|a| a["request_id"].as_str() == Some(i.request_id.as_str()))
            });
            if !missing {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True when no function has anything queued or running.
    pub fn functions_idle(&self) -> bool {
        self.regions
            .iter()
            .all(|r| lock(&r.functions).iter().all(|f| f.idle()))
    }

    /// The names of the functions running in `region`.
    pub fn functions_in(&self, region: &str) -> Vec<String> {
        self.region(region)
            .map(|r| lock(&r.functions).iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }

    pub fn function(&self, region: &str, name: &str) -> Option<Arc<Runtime>> {
        let r = self.region(region)?;
        lock(&r.functions).iter().find(|f| f.name == name).cloned()
    }

    /// Stops a Region's Valkey (the data plane goes dark).
    pub async fn stop_valkey(&self, region: &str) -> bool {
        let Some(r) = self.region(region) else {
            return false;
        };
        let mut child = r.valkey.lock().await;
        if let Some(mut c) = child.take() {
            let _ = c.kill().await;
        }
        true
    }

    /// Starts a Region's Valkey again. A member that is not the primary comes back as a replica of
    /// the current primary, as ElastiCache re-syncs a recovered secondary.
    pub async fn start_valkey(&self, region: &str) -> Result<(), LabError> {
        let Some(i) = self.regions.iter().position(|r| r.name == region) else {
            return Err(LabError::Missing(format!("no Region {region}")));
        };
        let r = &self.regions[i];
        let mut slot = r.valkey.lock().await;
        if slot.is_none() {
            let child =
                valkey::start(&self.valkey_bin, r.valkey_port, &self.cfg.work_dir.join(&r.name)).await?;
            *slot = Some(child);
        }
        let primary = self.gds().primary;
        if primary != i {
            let port = self.regions[primary].link_port.to_string();
            valkey::command(r.valkey_port, &["REPLICAOF", "127.0.0.1", &port]).await?;
        }
        Ok(())
    }

    /// Freezes a Region's Valkey (SIGSTOP: connections open, nothing answers — a hung data plane
    /// while the control plane still says `available`) or thaws it. A thawed node that is no longer
    /// the primary is re-pointed at the primary, as ElastiCache does with a recovered member.
    pub async fn freeze_valkey(&self, region: &str, frozen: bool) -> Result<(), LabError> {
        let Some(i) = self.regions.iter().position(|r| r.name == region) else {
            return Err(LabError::Missing(format!("no Region {region}")));
        };
        let r = &self.regions[i];
        let pid = r
            .valkey
            .lock()
            .await
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| LabError::Valkey(format!("{region}'s Valkey is not running")))?;
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .map_err(|e| LabError::Io(format!("kill {signal} {pid}: {e}")))?;
        if !status.success() {
            return Err(LabError::Valkey(format!("kill {signal} {pid} failed")));
        }
        let primary = self.gds().primary;
        if !frozen && primary != i {
            let port = self.regions[primary].link_port.to_string();
            valkey::command(r.valkey_port, &["REPLICAOF", "127.0.0.1", &port]).await?;
        }
        Ok(())
    }

    /// Makes a Region dark (Valkey stopped, its ElastiCache endpoint unavailable) or lights it.
    pub async fn set_dark(&self, region: &str, dark: bool) -> Result<(), LabError> {
        if dark {
            lock(&self.dark).push(region.to_owned());
            self.stop_valkey(region).await;
        } else {
            lock(&self.dark).retain(|d| d != region);
            self.start_valkey(region).await?;
        }
        Ok(())
    }

    /// The writer CNAME's value now (lower case, no trailing dot), as Route 53 holds it.
    pub fn writer_record(&self) -> Option<String> {
        let zone = self.route53.zones().into_iter().next()?.id;
        let set = self.route53.record(&zone, &self.cfg.record_name, "CNAME")?;
        set.values
            .first()
            .map(|v| v.trim_end_matches('.').to_ascii_lowercase())
    }
}

/// The traffic switch's reconcile schedule: every `every`, the EventBridge scheduled event to
/// each Region's traffic switch, asynchronously, as an EventBridge schedule target is invoked.
async fn reconcile_schedule(lab: Arc<LabState>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    loop {
        interval.tick().await;
        for r in &lab.regions {
            let event = json!({
                "version": "0", "id": format!("lab-schedule-{}", now_ms()),
                "detail-type": "Scheduled Event", "source": "aws.events", "account": "000000000000",
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "region": r.name,
                "resources": [format!("arn:aws:events:{}:000000000000:rule/lab-reconcile", r.name)],
                "detail": {}
            });
            if let Some(f) = lab.function(&r.name, "traffic-switch") {
                f.invoke_async(event, "eventbridge");
            }
        }
    }
}

/// An SNS notification in the shape Lambda receives.
pub fn sns_event(region: &str, subject: &str, message: &str, message_id: &str) -> Value {
    let topic = format!("arn:aws:sns:{region}:000000000000:elasticache-events");
    json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:lab"),
        "Sns": {
            "Type": "Notification", "MessageId": message_id, "TopicArn": topic,
            "Subject": subject, "Message": message,
            "Timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "SignatureVersion": "1", "Signature": "lab",
            "SigningCertURL": "https://sns.lab/cert.pem", "UnsubscribeURL": "https://sns.lab/unsubscribe",
            "MessageAttributes": {}
        }
    }]})
}

/// Endpoints and ports the lab chose: written to `.lab/state.json` for the tests, drills and
/// anyone poking at the lab by hand.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoints {
    pub control: String,
    pub elasticache: String,
    pub cloudwatch: String,
    pub route53: String,
    pub sns: String,
    pub hosted_zone_id: String,
    pub record_name: String,
    pub datastore_id: String,
    pub regions: Vec<RegionEndpoints>,
    /// The ARC cluster's five endpoints, as (Region, URL).
    pub arc_endpoints: Vec<(String, String)>,
    /// Routing-control ARN per lab Region.
    pub arc_controls: BTreeMap<String, String>,
    pub arc_safety_rules: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionEndpoints {
    pub name: String,
    pub group: String,
    pub endpoint: String,
    pub valkey: String,
    pub link: String,
    pub runtime_apis: BTreeMap<String, String>,
}

/// A running lab. Dropping it stops everything it started.
pub struct Lab {
    pub state: Arc<LabState>,
    pub endpoints: Endpoints,

    _functions: Vec<Function>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for r in &self.state.regions {
            if let Ok(mut v) = r.valkey.try_lock()
                && let Some(c) = v.as_mut()
            {
                let _ = c.start_kill();
            }
        }
    }
}

async fn free_port() -> Result<u16, LabError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| LabError::Io(e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| LabError::Io(e.to_string()))
}

async fn serve(router: axum::Router) -> Result<(String, JoinHandle<()>), LabError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| LabError::Io(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| LabError::Io(e.to_string()))?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}"), task))
}

impl Lab {
    /// Starts everything; fails loudly (naming what is missing) if any piece cannot start.
    pub async fn start(cfg: LabConfig) -> Result<Self, LabError> {
        if cfg.regions.len() < 2 {
            return Err(LabError::Start("the lab needs at least two Regions".into()));
        }
        std::fs::create_dir_all(&cfg.work_dir).map_err(|e| LabError::Io(e.to_string()))?;
        let valkey_bin = valkey::find_server(&cfg.root)?;
        let (link_tx, link_rx) = watch::channel(LinkMode::Up);
        let mut tasks = Vec::new();

        // Valkey per Region, and the link's entry into each Region.
        let mut regions = Vec::new();
        for rc in &cfg.regions {
            let valkey_port = free_port().await?;
            let child = valkey::start(&valkey_bin, valkey_port, &cfg.work_dir.join(&rc.name)).await?;
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| LabError::Io(e.to_string()))?;
            let link_port = listener
                .local_addr()
                .map_err(|e| LabError::Io(e.to_string()))?
                .port();
            tasks.push(tokio::spawn(link::serve(
                listener,
                SocketAddr::from(([127, 0, 0, 1], valkey_port)),
                link_rx.clone(),
            )));
            regions.push(RegionRuntime {
                name: rc.name.clone(),
                group: rc.group.clone(),
                endpoint: rc.endpoint.clone(),
                valkey_port,
                link_port,
                valkey: tokio::sync::Mutex::new(Some(child)),
                functions: Mutex::new(Vec::new()),
            });
        }
        let primary_link = regions[0].link_port.to_string();
        for r in regions.iter().skip(1) {
            valkey::command(r.valkey_port, &["REPLICAOF", "127.0.0.1", &primary_link]).await?;
        }
        for r in regions.iter().skip(1) {
            wait_in_sync(r.valkey_port).await?;
        }

        // Route 53: the private zone and the writer record, pointing at the primary.
        let route53 = Arc::new(route53::Route53State::new());
        let (route53_url, t) = route53::serve(Arc::clone(&route53)).await?;
        tasks.push(t);
        let apex = cfg
            .record_name
            .split_once('.')
            .map_or(cfg.record_name.as_str(), |(_, a)| a);
        let r53 = |e: route53::Route53Error| LabError::Route53(e.message());
        let zone = route53.create_zone(apex, true).map_err(r53)?;
        route53
            .upsert(
                &zone,
                &cfg.record_name,
                "CNAME",
                cfg.record_ttl,
                &[regions[0].endpoint.as_str()],
            )
            .map_err(r53)?;

        let region_names: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
        let arc_cluster = arc::start(&region_names, &region_names[0], cfg.arc_spare_control).await?;
        tasks.extend(arc_cluster.tasks);
        let arc_endpoints = arc_cluster.endpoints;
        let state = Arc::new(LabState {
            cfg: cfg.clone(),
            regions,
            gds: Mutex::new(GdsState {
                status: "available".into(),
                primary: 0,
                failovers: 0,
            }),
            gds_history: Mutex::new(vec![GdsChange {
                at_ms: now_ms(),
                status: "available".into(),
                primary: cfg.regions[0].name.clone(),
            }]),
            api_delays: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            publications: Mutex::new(Vec::new()),
            sns: Mutex::new(SnsFaults::default()),
            link: link_tx,
            valkey_bin,
            dark: Mutex::new(Vec::new()),
            shutdown: tokio::sync::Notify::new(),
            arc: Arc::clone(&arc_cluster.state),
            cloudwatch: cloudwatch::CloudWatchState::default(),
            route53,
            readiness: readiness::Readiness::new(&region_names),
        });

        let (elasticache_url, t) = serve(elasticache::router(Arc::clone(&state))).await?;
        tasks.push(t);
        let (cloudwatch_url, t) = serve(cloudwatch::router(Arc::clone(&state))).await?;
        tasks.push(t);
        let (sns_url, t) = serve(readiness::sns_router(Arc::clone(&state))).await?;
        tasks.push(t);
        tasks.push(tokio::spawn(cloudwatch::evaluator(
            Arc::clone(&state),
            cfg.alarm_tick,
        )));
        tasks.push(tokio::spawn(lag::publisher(Arc::clone(&state), cfg.lag_tick)));
        if let Some(every) = cfg.reconcile_every {
            tasks.push(tokio::spawn(reconcile_schedule(Arc::clone(&state), every)));
        }
        let (control_url, t) = serve(control::router(Arc::clone(&state), zone.clone())).await?;
        tasks.push(t);

        // The functions, in every Region, subscribed to that Region's topic.
        let mut functions = Vec::new();
        let mut region_endpoints = Vec::new();
        for r in &state.regions {
            let mut apis = BTreeMap::new();
            for name in &cfg.functions {
                let mut env: Vec<(String, String)> = vec![
                    ("GLOBAL_DATASTORE_ID".into(), cfg.datastore_id.clone()),
                    ("MEMBERS".into(), cfg.members_env()),
                    ("HOSTED_ZONE_ID".into(), zone.clone()),
                    ("RECORD_NAME".into(), cfg.record_name.clone()),
                    ("RECORD_TTL".into(), cfg.record_ttl.to_string()),
                    ("AWS_ENDPOINT_URL_ELASTICACHE".into(), elasticache_url.clone()),
                    ("AWS_ENDPOINT_URL_ROUTE_53".into(), route53_url.clone()),
                    ("AWS_ENDPOINT_URL_CLOUDWATCH".into(), cloudwatch_url.clone()),
                    ("AWS_ENDPOINT_URL_SNS".into(), sns_url.clone()),
                    ("EVENTS_TOPIC_ARN".into(), readiness::topic_arn(&r.name)),
                    // Lambda sets this; the readiness check looks for the function's subscription.
                    ("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone()),
                ];
                if cfg.routing_mode == "arc" {
                    let arc_endpoints: Vec<String> =
                        arc_endpoints.iter().map(|(r, u)| format!("{r}={u}")).collect();
                    let arc_controls: Vec<String> = state
                        .arc
                        .controls
                        .iter()
                        .filter(|c| state.region(&c.region).is_some())
                        .map(|c| format!("{}={}", c.region, c.arn))
                        .collect();
                    env.push(("ROUTING_MODE".into(), "arc".into()));
                    env.push(("ARC_ENDPOINTS".into(), arc_endpoints.join(",")));
                    env.push(("ARC_CONTROLS".into(), arc_controls.join(",")));
                    env.push(("ARC_ENDPOINT_TIMEOUT_MS".into(), "500".into()));
                }
                env.extend(cfg.function_env.iter().cloned());
                let f = Function::start(FunctionSpec {
                    name: name.clone(),
                    region: r.name.clone(),
                    binary: cfg.binary_dir.join(name),
                    env,
                    timeout: cfg.function_timeout,
                    retry_delay: cfg.lambda_retry_delay,
                    log: cfg.work_dir.join("logs").join(format!("{}-{name}.log", r.name)),
                })
                .await?;
                apis.insert(name.clone(), f.api.to_string());
                lock(&r.functions).push(Arc::clone(&f.runtime));
                functions.push(f);
            }
            region_endpoints.push(RegionEndpoints {
                name: r.name.clone(),
                group: r.group.clone(),
                endpoint: r.endpoint.clone(),
                valkey: format!("127.0.0.1:{}", r.valkey_port),
                link: format!("127.0.0.1:{}", r.link_port),
                runtime_apis: apis,
            });
        }

        let endpoints = Endpoints {
            control: control_url,
            elasticache: elasticache_url,
            cloudwatch: cloudwatch_url,
            route53: route53_url,
            sns: sns_url,
            hosted_zone_id: zone,
            record_name: cfg.record_name.clone(),
            datastore_id: cfg.datastore_id.clone(),
            regions: region_endpoints,
            arc_endpoints,
            arc_controls: state
                .arc
                .controls
                .iter()
                .map(|c| (c.region.clone(), c.arn.clone()))
                .collect(),
            arc_safety_rules: state.arc.rules.iter().map(|r| r.arn.clone()).collect(),
        };
        Ok(Self {
            state,
            endpoints,

            _functions: functions,
            tasks,
        })
    }

    /// Writes `state.json` (everything) and `env` (shell variables) into the work dir.
    pub fn write_state_files(&self) -> Result<(), LabError> {
        let dir = &self.state.cfg.work_dir;
        let json = serde_json::to_string_pretty(&self.endpoints).map_err(|e| LabError::Io(e.to_string()))?;
        std::fs::write(dir.join("state.json"), json).map_err(|e| LabError::Io(e.to_string()))?;
        let mut env = format!(
            "LAB_CONTROL={}\nAWS_ENDPOINT_URL_ELASTICACHE={}\nAWS_ENDPOINT_URL_ROUTE_53={}\n\
             AWS_ENDPOINT_URL_CLOUDWATCH={}\nAWS_ENDPOINT_URL_SNS={}\nHOSTED_ZONE_ID={}\nAWS_ACCESS_KEY_ID=lab\nAWS_SECRET_ACCESS_KEY=lab\n",
            self.endpoints.control,
            self.endpoints.elasticache,
            self.endpoints.route53,
            self.endpoints.cloudwatch,
            self.endpoints.sns,
            self.endpoints.hosted_zone_id
        );
        for r in &self.endpoints.regions {
            let key = r.name.replace('-', "_").to_ascii_uppercase();
            env.push_str(&format!("VALKEY_{key}={}\nLINK_{key}={}\n", r.valkey, r.link));
        }
        std::fs::write(dir.join("env"), env).map_err(|e| LabError::Io(e.to_string()))
    }

    /// The writer CNAME's current value.
    pub async fn writer_record(&self) -> Option<String> {
        self.state.writer_record()
    }
}

/// Waits until a replica reports its link to the primary up (bounded).
async fn wait_in_sync(port: u16) -> Result<(), LabError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if let Ok(info) = valkey::replication_info(port).await
            && info.iter().any(|(k, v)| k == "master_link_status" && v == "up")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(LabError::Start(format!(
        "replica on port {port} did not sync within 15 s"
    )))
}
