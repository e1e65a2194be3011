//! The session-store workload a drill runs: one client per Region, as an application would be.
//!
//! Each client creates sessions at a steady rate through the **writer name**, resolved the way a
//! well-behaved client does (the answer cached for the record's TTL, then asked again) or — the
//! `cache_forever` knob — the way a badly behaved one does (asked once). It reads its last session
//! back through the writer, and every Region's reader checks its **local** node for every
//! acknowledged session until it appears, which measures how long a reader there could still see
//! the old state (the stale-read window). Every acknowledged write is kept, so losses can be
//! counted at the end. Write errors are published as `SessionStore/WriteErrors` in the client's
//! Region, which is what the promoter's alarms watch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::LabState;
use crate::cloudwatch::Datapoint;
use crate::lambda::now_ms;

/// How clients find the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientBehaviour {
    /// Cache the writer's address for the record's TTL, then resolve again.
    HonourTtl,
    /// Resolve once and keep the answer (a JVM with `networkaddress.cache.ttl=-1`, a pool that
    /// never reconnects): shows why TTLs matter.
    CacheForever,
}

/// Where the writer name is looked up.
#[derive(Clone)]
pub enum WriterSource {
    /// The private-zone CNAME in Route 53, read as a resolver would get it: from the zone's data,
    /// not through the API (API faults are the control plane's; DNS answers are the data plane).
    Dns { zone: String, name: String },
    /// A Route 53 failover record whose health checks follow the ARC routing controls: the member
    /// whose control is On.
    Arc { ttl: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Write,
    /// A read of the client's last session through the writer.
    ReadWriter,
    /// A read of recent sessions from the Region's own node (its replica).
    ReadLocal,
}

/// One operation a client made.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_ms: u64,
    pub region: String,
    pub op: Op,
    pub ok: bool,
    pub latency_ms: f64,
    /// The Region whose node answered (or was asked).
    pub node: Option<String>,
    /// Attempts the command took (writes are retried `retries` times).
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An acknowledged session write.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub key: String,
    pub region: String,
    pub node: String,
    pub t_ms: u64,
}

/// When a Region's local node first showed an acknowledged write.
#[derive(Debug, Clone, Serialize)]
pub struct Visible {
    pub reader: String,
    pub key: String,
    pub acked_ms: u64,
    /// From when the reader could have read the old state: the acknowledgement, or — when its
    /// node did not answer at all for a while (hung, dark) — the first read it answered after.
    /// Errors are not stale reads; they are counted as errors.
    pub exposed_ms: u64,
    pub seen_ms: u64,
}

/// Everything the workload saw.
#[derive(Default)]
pub struct Recorder {
    samples: Mutex<Vec<Sample>>,
    acks: Mutex<Vec<Ack>>,
    visible: Mutex<Vec<Visible>>,
    connects: Mutex<BTreeMap<String, u32>>,
    resolutions: Mutex<BTreeMap<String, u32>>,
    retries: Mutex<BTreeMap<String, u32>>,
    /// Per reader Region: acknowledged writes not yet seen on its local node.
    pending: Mutex<HashMap<String, VecDeque<(String, u64)>>>,
    /// Per reader Region: since when its local node has answered without a gap.
    up_since: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most acknowledged writes a reader keeps waiting for (bounded memory under a long fault).
const MAX_PENDING: usize = 20_000;

impl Recorder {
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }
    /// Reads the samples in place (for checks made while the workload runs: no copy).
    pub fn with_samples<R>(&self, read: impl FnOnce(&[Sample]) -> R) -> R {
        read(&lock(&self.samples))
    }
    pub fn acks(&self) -> Vec<Ack> {
        lock(&self.acks).clone()
    }
    pub fn visible(&self) -> Vec<Visible> {
        lock(&self.visible).clone()
    }
    pub fn connects(&self) -> BTreeMap<String, u32> {
        lock(&self.connects).clone()
    }
    pub fn resolutions(&self) -> BTreeMap<String, u32> {
        lock(&self.resolutions).clone()
    }
    pub fn retries(&self) -> BTreeMap<String, u32> {
        lock(&self.retries).clone()
    }
    /// Acknowledged writes each reader Region never saw: (key, exposed from ms).
    pub fn unseen(&self) -> BTreeMap<String, Vec<(String, u64)>> {
        let up = lock(&self.up_since).clone();
        lock(&self.pending)
            .iter()
            .map(|(r, q)| {
                let since = up.get(r).copied().unwrap_or(0);
                (
                    r.clone(),
                    q.iter().map(|(k, t)| (k.clone(), (*t).max(since))).collect(),
                )
            })
            .collect()
    }

    fn sample(&self, s: Sample) {
        lock(&self.samples).push(s);
    }

    fn ack(&self, ack: Ack, readers: &[String]) {
        let mut pending = lock(&self.pending);
        for r in readers {
            let q = pending.entry(r.clone()).or_default();
            if q.len() < MAX_PENDING {
                q.push_back((ack.key.clone(), ack.t_ms));
            }
        }
        lock(&self.acks).push(ack);
    }
}

/// Workload knobs.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadConfig {
    pub writes_per_second: u32,
    pub behaviour: ClientBehaviour,
    /// A command that takes longer than this is an error (what a client's socket timeout does).
    pub op_timeout: Duration,
    pub connect_timeout: Duration,
    /// How often readers check their local node.
    pub read_interval: Duration,
    /// How many times a failed write is retried (after dropping the connection), as client
    /// libraries do; the writer name is re-resolved only when its TTL has run out.
    pub retries: u32,
    pub retry_backoff: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            writes_per_second: 20,
            behaviour: ClientBehaviour::HonourTtl,
            op_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(300),
            read_interval: Duration::from_millis(50),
            retries: 1,
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// The running workload; [`Workload::stop`] ends it.
pub struct Workload {
    pub recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    pub fn start(lab: Arc<LabState>, source: WriterSource, cfg: WorkloadConfig) -> Self {
        let recorder = Arc::new(Recorder::default());
        let (stop, stop_rx) = watch::channel(false);
        let regions: Vec<String> = lab.regions.iter().map(|r| r.name.clone()).collect();
        let mut tasks = Vec::new();
        for region in &regions {
            let client = Client {
                lab: Arc::clone(&lab),
                region: region.clone(),
                readers: regions.clone(),
                source: source.clone(),
                cfg: cfg.clone(),
                recorder: Arc::clone(&recorder),
                cached: None,
                conns: HashMap::new(),
                seq: 0,
            };
            tasks.push(tokio::spawn(client.run(stop_rx.clone())));
            tasks.push(tokio::spawn(read_local(
                Arc::clone(&lab),
                region.clone(),
                cfg.clone(),
                Arc::clone(&recorder),
                stop_rx.clone(),
            )));
        }
        Self {
            recorder,
            stop,
            tasks,
        }
    }

    pub async fn stop(self) -> Arc<Recorder> {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        self.recorder
    }
}

struct Client {
    lab: Arc<LabState>,
    region: String,
    readers: Vec<String>,
    source: WriterSource,
    cfg: WorkloadConfig,
    recorder: Arc<Recorder>,
    /// (writer name, good until ms)
    cached: Option<(String, u64)>,
    conns: HashMap<SocketAddr, redis::aio::MultiplexedConnection>,
    seq: u64,
}

/// Resolves the writer name now, uncached: the CNAME's value and TTL, or the member whose
/// routing control is On.
pub async fn resolve_writer(lab: &LabState, source: &WriterSource) -> Option<(String, i64)> {
    match source {
        WriterSource::Dns { zone, name } => {
            let set = lab.route53.record(zone, name, "CNAME")?;
            let value = set.values.first()?.clone();
            Some((value, set.ttl.unwrap_or(60)))
        }
        WriterSource::Arc { ttl } => {
            let states = lab.arc.states();
            lab.regions.iter().find_map(|r| {
                let control = lab.arc.control_for(&r.name)?;
                states
                    .get(&control.arn)
                    .copied()
                    .unwrap_or(false)
                    .then(|| (r.endpoint.clone(), *ttl))
            })
        }
    }
}

impl Client {
    async fn writer(&mut self) -> Option<String> {
        let now = now_ms();
        if let Some((name, until)) = &self.cached
            && (self.cfg.behaviour == ClientBehaviour::CacheForever || now < *until)
        {
            return Some(name.clone());
        }
        *lock(&self.recorder.resolutions)
            .entry(self.region.clone())
            .or_default() += 1;
        match resolve_writer(&self.lab, &self.source).await {
            Some((name, ttl)) => {
                let ttl_ms = u64::try_from(ttl.max(0)).unwrap_or(0) * 1000;
                self.cached = Some((name.clone(), now + ttl_ms));
                Some(name)
            }
            // The resolver failed: keep using the last answer, as resolvers serve stale.
            None => self.cached.as_ref().map(|(n, _)| n.clone()),
        }
    }

    async fn conn(&mut self, addr: SocketAddr) -> Result<redis::aio::MultiplexedConnection, String> {
        if let Some(c) = self.conns.get(&addr) {
            return Ok(c.clone());
        }
        *lock(&self.recorder.connects)
            .entry(self.region.clone())
            .or_default() += 1;
        let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(
            self.cfg.connect_timeout,
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        self.conns.insert(addr, conn.clone());
        Ok(conn)
    }

    async fn command(&mut self, addr: SocketAddr, cmd: redis::Cmd) -> Result<redis::Value, String> {
        let mut conn = self.conn(addr).await?;
        let result = tokio::time::timeout(self.cfg.op_timeout, cmd.query_async::<redis::Value>(&mut conn))
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if result.is_err() {
            // A client drops a connection that failed, and reconnects on the next command.
            self.conns.remove(&addr);
        }
        result
    }

    fn node_of(&self, endpoint: &str) -> Option<String> {
        self.lab
            .regions
            .iter()
            .find(|r| r.endpoint == endpoint.trim_end_matches('.'))
            .map(|r| r.name.clone())
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let period = Duration::from_secs_f64(1.0 / f64::from(self.cfg.writes_per_second.max(1)));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            // A dark Region's application is down with it.
            if self.lab.region_dark(&self.region) {
                continue;
            }
            self.write_once().await;
        }
    }

    async fn write_once(&mut self) {
        let started = Instant::now();
        let t_ms = now_ms();
        self.seq += 1;
        let key = format!("session:{}:{:08}", self.region, self.seq);
        let mut attempts = 0;
        let (node, result) = loop {
            attempts += 1;
            let writer = self.writer().await;
            let node = writer.as_deref().and_then(|w| self.node_of(w));
            let addr = writer.as_deref().and_then(|w| self.lab.resolve(w, &self.region));
            let result = match addr {
                Some(addr) => {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&key)
                        .arg(format!("user-{}", self.seq))
                        .arg("EX")
                        .arg(86_400);
                    self.command(addr, cmd).await.map(|_| addr)
                }
                None => Err("the writer name did not resolve".to_owned()),
            };
            if result.is_ok() || attempts > self.cfg.retries {
                break (node, result);
            }
            *lock(&self.recorder.retries)
                .entry(self.region.clone())
                .or_default() += 1;
            tokio::time::sleep(self.cfg.retry_backoff).await;
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(addr) => {
                let node = node.unwrap_or_default();
                self.recorder.ack(
                    Ack {
                        key: key.clone(),
                        region: self.region.clone(),
                        node: node.clone(),
                        t_ms,
                    },
                    &self.readers,
                );
                self.recorder.sample(Sample {
                    t_ms,
                    region: self.region.clone(),
                    op: Op::Write,
                    ok: true,
                    latency_ms,
                    node: Some(node.clone()),
                    attempts,
                    error: None,
                });
                // Read the session back through the writer (a login followed by a page view).
                let started = Instant::now();
                let mut get = redis::cmd("GET");
                get.arg(&key);
                let read = self.command(addr, get).await;
                self.recorder.sample(Sample {
                    t_ms: now_ms(),
                    region: self.region.clone(),
                    op: Op::ReadWriter,
                    ok: matches!(read, Ok(redis::Value::BulkString(_))),
                    latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                    node: Some(node),
                    attempts: 1,
                    error: read.err(),
                });
            }
            Err(error) => {
                self.recorder.sample(Sample {
                    t_ms,
                    region: self.region.clone(),
                    op: Op::Write,
                    ok: false,
                    latency_ms,
                    node,
                    attempts,
                    error: Some(error),
                });
                // What the application (or its canary) publishes, and the promoter's alarms watch.
                self.lab.cloudwatch.put(Datapoint {
                    region: self.region.clone(),
                    namespace: "SessionStore".into(),
                    name: "WriteErrors".into(),
                    dimensions: BTreeMap::from([("ClientRegion".to_owned(), self.region.clone())]),
                    at_ms: now_ms(),
                    value: 1.0,
                });
            }
        }
    }
}

/// A Region's reader: checks its local node for every acknowledged write until it appears.
async fn read_local(
    lab: Arc<LabState>,
    region: String,
    cfg: WorkloadConfig,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(port) = lab.region(&region).map(|r| r.valkey_port) else {
        return;
    };
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(cfg.read_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if lab.region_dark(&region) {
            conn = None;
            lock(&recorder.up_since).remove(&region);
            continue;
        }
        let batch: Vec<(String, u64)> = lock(&recorder.pending)
            .get(&region)
            .map(|q| q.iter().take(200).cloned().collect())
            .unwrap_or_default();
        if batch.is_empty() {
            continue;
        }
        if conn.is_none() {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
                continue;
            };
            conn = tokio::time::timeout(cfg.connect_timeout, client.get_multiplexed_async_connection())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let started = Instant::now();
        let t_ms = now_ms();
        let read = match conn.as_mut() {
            Some(c) => {
                let mut mget = redis::cmd("MGET");
                for (k, _) in &batch {
                    mget.arg(k);
                }
                match tokio::time::timeout(cfg.op_timeout, mget.query_async::<Vec<Option<String>>>(c)).await {
                    Ok(Ok(values)) => Ok(values),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
            None => Err("could not connect".to_owned()),
        };
        recorder.sample(Sample {
            t_ms,
            region: region.clone(),
            op: Op::ReadLocal,
            ok: read.is_ok(),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            node: Some(region.clone()),
            attempts: 1,
            error: read.as_ref().err().cloned(),
        });
        let Ok(values) = read else {
            conn = None;
            lock(&recorder.up_since).remove(&region);
            continue;
        };
        let seen_ms = now_ms();
        let up_since = *lock(&recorder.up_since).entry(region.clone()).or_insert(seen_ms);
        let found: Vec<&(String, u64)> = batch
            .iter()
            .zip(values.iter())
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k)
            .collect();
        if found.is_empty() {
            continue;
        }
        let keys: std::collections::HashSet<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        if let Some(q) = lock(&recorder.pending).get_mut(&region) {
            q.retain(|(k, _)| !keys.contains(k.as_str()));
        }
        let mut visible = lock(&recorder.visible);
        for (key, acked_ms) in found {
            visible.push(Visible {
                reader: region.clone(),
                key: key.clone(),
                acked_ms: *acked_ms,
                exposed_ms: (*acked_ms).max(up_since),
                seen_ms,
            });
        }
    }
}

/// The acknowledged writes the current primary does not have: lost in the failover.
pub async fn lost_writes(lab: &LabState, acks: &[Ack]) -> Result<Vec<Ack>, String> {
    let primary = lab.gds().primary;
    let port = lab
        .regions
        .get(primary)
        .map(|r| r.valkey_port)
        .ok_or("no primary")?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut conn = tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection())
        .await
        .map_err(|_| "the primary did not accept a connection".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    for chunk in acks.chunks(500) {
        let mut mget = redis::cmd("MGET");
        for a in chunk {
            mget.arg(&a.key);
        }
        let values: Vec<Option<String>> =
            tokio::time::timeout(Duration::from_secs(5), mget.query_async(&mut conn))
                .await
                .map_err(|_| "the primary did not answer MGET".to_owned())?
                .map_err(|e| e.to_string())?;
        lost.extend(
            chunk
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_none())
                .map(|(a, _)| a.clone()),
        );
    }
    Ok(lost)
}
