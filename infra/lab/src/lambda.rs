//! The functions as real Lambda processes: each is the very `bootstrap` binary that gets deployed,
//! started with `AWS_LAMBDA_RUNTIME_API` pointing at a Runtime API this module serves.
//!
//! The lab serves the Runtime API itself (rather than `cargo lambda watch`) because it must behave
//! like Lambda's *asynchronous* invocation, which is how SNS and EventBridge invoke: a queue,
//! at-least-once delivery, up to two retries after an error, and a record of every attempt for the
//! tests and drills to read. It starts in milliseconds and needs no rebuild of the function.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{Notify, oneshot};

use crate::LabError;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One attempt to run an event, as the tests and drills read it.
#[derive(Debug, Clone, Serialize)]
pub struct InvocationRecord {
    pub request_id: String,
    /// The X-Ray trace header the attempt ran under. Lambda hands it to the function, and the AWS
    /// SDK sends it on every call the attempt makes (`x-amzn-trace-id`), which is how the lab's
    /// emulators tie each request to the invocation that made it.
    pub trace_id: String,
    pub function: String,
    pub region: String,
    /// Who invoked: `sns`, `eventbridge`, `console`…
    pub source: String,
    pub attempt: u32,
    pub event: Value,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// `pending`, `running`, `ok` or `error`.
    pub outcome: String,
    pub response: Value,
}

struct Pending {
    event: Value,
    source: String,
    attempt: u32,
    queued_at_ms: u64,
    reply: Option<oneshot::Sender<Result<Value, Value>>>,
    /// This attempt's entry in `records`, set when queued.
    index: usize,
}

struct Inflight {
    pending: Pending,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Pending>,
    inflight: HashMap<String, Inflight>,
    records: Vec<InvocationRecord>,
    audits: Vec<Value>,
    next_id: u64,
    /// Asynchronous retries waiting out Lambda's delay before they are queued again.
    retries_waiting: usize,
    /// How the function's process ended, if it did while the lab ran (a crash: Lambda release
    /// builds abort on panic).
    exited: Option<String>,
}

/// A function's Runtime API and invocation log.
pub struct Runtime {
    pub name: String,
    pub region: String,
    timeout: Duration,
    retry_delay: Duration,
    inner: Mutex<Inner>,
    ready: Notify,
}

impl Runtime {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an asynchronous invocation (SNS, EventBridge): returns at once.
    pub fn invoke_async(&self, event: Value, source: &str) {
        self.enqueue(Pending {
            event,
            source: source.to_owned(),
            attempt: 1,
            queued_at_ms: now_ms(),
            reply: None,
            index: 0,
        });
    }

    /// A synchronous invocation (the console's "Test" button): waits for the result.
    pub async fn invoke_sync(&self, event: Value, source: &str) -> Result<Value, Value> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Pending {
            event,
            source: source.to_owned(),
            attempt: 1,
            queued_at_ms: now_ms(),
            reply: Some(tx),
            index: 0,
        });
        rx.await
            .unwrap_or_else(|_| Err(serde_json::json!({"errorType": "LabStopped"})))
    }

    fn enqueue(&self, mut p: Pending) {
        let mut inner = self.lock();
        p.index = inner.records.len();
        inner.records.push(InvocationRecord {
            request_id: String::new(),
            trace_id: String::new(),
            function: self.name.clone(),
            region: self.region.clone(),
            source: p.source.clone(),
            attempt: p.attempt,
            event: p.event.clone(),
            queued_at_ms: p.queued_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            outcome: "pending".into(),
            response: Value::Null,
        });
        inner.queue.push_back(p);
        drop(inner);
        self.ready.notify_one();
    }

    pub fn records(&self) -> Vec<InvocationRecord> {
        self.lock().records.clone()
    }

    /// The audit lines the function wrote to stdout.
    pub fn audits(&self) -> Vec<Value> {
        self.lock().audits.clone()
    }

    /// How the function's process ended, if it ended while the lab was up.
    pub fn exited(&self) -> Option<String> {
        self.lock().exited.clone()
    }

    /// True when nothing is queued, running, or waiting to be retried.
    pub fn idle(&self) -> bool {
        let inner = self.lock();
        inner.queue.is_empty() && inner.inflight.is_empty() && inner.retries_waiting == 0
    }

    fn finish(self: &Arc<Self>, id: &str, result: Result<Value, Value>) -> bool {
        let mut inner = self.lock();
        let Some(done) = inner.inflight.remove(id) else {
            return false;
        };
        if let Some(rec) = inner.records.get_mut(done.pending.index) {
            rec.finished_at_ms = Some(now_ms());
            rec.outcome = if result.is_ok() { "ok" } else { "error" }.into();
            rec.response = match &result {
                Ok(v) | Err(v) => v.clone(),
            };
        }
        let p = done.pending;
        let retry_async = p.reply.is_none() && result.is_err() && p.attempt < 3;
        if retry_async {
            inner.retries_waiting += 1;
        }
        drop(inner);
        match (p.reply, result) {
            (Some(tx), r) => {
                let _ = tx.send(r);
            }
            // Asynchronous invocation: Lambda retries an error twice, after a delay.
            (None, Err(_)) if p.attempt < 3 => {
                let me = Arc::clone(self);
                let retry = Pending {
                    event: p.event,
                    source: p.source,
                    attempt: p.attempt + 1,
                    queued_at_ms: now_ms(),
                    reply: None,
                    index: 0,
                };
                let delay = self.retry_delay;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // Queued before it stops waiting, so the function never looks idle between.
                    me.enqueue(retry);
                    me.lock().retries_waiting -= 1;
                });
            }
            (None, _) => {}
        }
        true
    }
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    loop {
        let notified = rt.ready.notified();
        {
            let mut inner = rt.lock();
            if let Some(p) = inner.queue.pop_front() {
                inner.next_id += 1;
                let id = format!("{}-{}-{:06}", rt.region, rt.name, inner.next_id);
                let deadline = now_ms() + u64::try_from(rt.timeout.as_millis()).unwrap_or(60_000);
                let trace = trace_header(&id, now_ms());
                if let Some(rec) = inner.records.get_mut(p.index) {
                    rec.request_id = id.clone();
                    rec.trace_id = trace.clone();
                    rec.started_at_ms = Some(now_ms());
                    rec.outcome = "running".into();
                }
                let body = p.event.to_string();
                inner.inflight.insert(id.clone(), Inflight { pending: p });
                let mut headers = HeaderMap::new();
                let arn = format!("arn:aws:lambda:{}:000000000000:function:{}", rt.region, rt.name);
                for (k, v) in [
                    ("lambda-runtime-aws-request-id", id.as_str()),
                    ("lambda-runtime-deadline-ms", &deadline.to_string()),
                    ("lambda-runtime-invoked-function-arn", &arn),
                    ("lambda-runtime-trace-id", trace.as_str()),
                    ("content-type", "application/json"),
                ] {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        headers.insert(k, v);
                    }
                }
                return (StatusCode::OK, headers, body).into_response();
            }
        }
        notified.await;
    }
}

/// An X-Ray trace header unique to one attempt: `Root=1-<epoch seconds, 8 hex>-<24 hex>`, the
/// 24 hex digits derived from the request id so the lab can map requests back to attempts.
fn trace_header(request_id: &str, now_ms: u64) -> String {
    let mut h: u128 = 0xcbf2_9ce4_8422_2325;
    for b in request_id.bytes() {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!(
        "Root=1-{:08x}-{:024x};Sampled=0",
        (now_ms / 1000) & 0xffff_ffff,
        h & ((1u128 << 96) - 1)
    )
}

fn parse_body(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if rt.finish(&id, Ok(parse_body(&body))) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn error(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if rt.finish(&id, Err(parse_body(&body))) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: Bytes) -> StatusCode {
    tracing::error!(function = %rt.name, region = %rt.region, error = %parse_body(&body), "function init failed");
    StatusCode::ACCEPTED
}

/// What to start.
pub struct FunctionSpec {
    pub name: String,
    pub region: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub retry_delay: Duration,
    pub log: PathBuf,
}

/// A running function: its process and its Runtime API. Dropping it stops the process.
pub struct Function {
    pub runtime: Arc<Runtime>,
    pub api: std::net::SocketAddr,
    /// Dropped with the function: the watcher then kills the process.
    _stop: oneshot::Sender<()>,
}

impl Function {
    pub async fn start(spec: FunctionSpec) -> Result<Self, LabError> {
        if !spec.binary.is_file() {
            return Err(LabError::Missing(format!(
                "{} not found: build it first (cargo build -p {})",
                spec.binary.display(),
                spec.name
            )));
        }
        let runtime = Arc::new(Runtime {
            name: spec.name.clone(),
            region: spec.region.clone(),
            timeout: spec.timeout,
            retry_delay: spec.retry_delay,
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| LabError::Io(e.to_string()))?;
        let api = listener.local_addr().map_err(|e| LabError::Io(e.to_string()))?;
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&runtime));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let mut cmd = Command::new(&spec.binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
            .env("AWS_REGION", &spec.region)
            .env("AWS_DEFAULT_REGION", &spec.region)
            .env("AWS_ACCESS_KEY_ID", "lab")
            .env("AWS_SECRET_ACCESS_KEY", "lab")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| LabError::Io(format!("starting {}: {e}", spec.binary.display())))?;
        if let Some(parent) = spec.log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let log = tokio::fs::File::create(&spec.log)
            .await
            .map_err(|e| LabError::Io(format!("{}: {e}", spec.log.display())))?;
        let log = Arc::new(tokio::sync::Mutex::new(log));
        if let Some(out) = child.stdout.take() {
            let rt = Arc::clone(&runtime);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v.get("audit").is_some()
                    {
                        rt.lock().audits.push(v);
                    }
                    let mut f = log.lock().await;
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut f = log.lock().await;
                    let _ = f.write_all(b"stderr: ").await;
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
            });
        }
        // Watch the process: an exit while the lab runs is a crash, recorded for the tests and
        // the histories to check. Dropping the function (its `_stop`) kills it.
        let (stop, stopped) = oneshot::channel::<()>();
        let rt = Arc::clone(&runtime);
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let how = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    tracing::error!(function = %rt.name, region = %rt.region, %how, "function process exited");
                    rt.lock().exited = Some(how);
                }
                _ = stopped => {
                    let _ = child.kill().await;
                }
            }
        });
        Ok(Self {
            runtime,
            api,
            _stop: stop,
        })
    }
}
