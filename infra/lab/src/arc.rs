//! The Route 53 ARC cluster data plane moto lacks: five regional cluster endpoints sharing one
//! routing-control state, on the `route53-recovery-cluster` protocol (awsJson1_0, target prefix
//! `ToggleCustomerAPI`), with assertion safety rules and a fault switch per endpoint.
//!
//! Each endpoint is a link-style proxy in front of its own HTTP server, so "refuse connections"
//! and "hang" happen at the TCP level exactly as a dead endpoint behaves; 5xx and throttling are
//! answered by the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::link::{self, LinkMode};
use crate::{ApiRequest, LabError, lambda::now_ms};

/// The Regions ARC cluster endpoints are served from.
pub const ENDPOINT_REGIONS: [&str; 5] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ap-northeast-1",
    "ap-southeast-2",
];

/// How one cluster endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EndpointMode {
    #[default]
    Ok,
    /// Connections are refused.
    Refuse,
    /// Connections are accepted and never answered; nothing sent to it is applied.
    Hang,
    /// `InternalServerException` (HTTP 500).
    Error5xx,
    /// `ThrottlingException` (HTTP 429).
    Throttle,
    /// Every request is handled this long after it arrives — read, or applied — and answered
    /// then, whether or not the caller is still waiting: an update the caller gave up on lands late.
    Slow { ms: u64 },
}

impl EndpointMode {
    /// `ok`, `refuse`, `hang`, `error5xx`, `throttle`, or `slow:<ms>`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => Self::Ok,
            "refuse" => Self::Refuse,
            "hang" => Self::Hang,
            "error5xx" => Self::Error5xx,
            "throttle" => Self::Throttle,
            _ => Self::Slow {
                ms: s.strip_prefix("slow:")?.parse().ok()?,
            },
        })
    }
}

/// One applied change of routing-control states.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    /// When the request arrived, and when it was applied (later on a slow endpoint).
    pub received_ms: u64,
    pub at_ms: u64,
    /// The endpoint (its Region) that applied it.
    pub endpoint: String,
    /// The caller's `x-amzn-trace-id`, if it sent one.
    pub trace: Option<String>,
    /// The states asked for, by control ARN (true = On).
    pub set: BTreeMap<String, bool>,
    /// Every control's state after the change.
    pub after: BTreeMap<String, bool>,
}

/// An assertion rule: at least `threshold` of `controls` On (or, inverted, fewer than that).
#[derive(Debug, Clone, Serialize)]
pub struct SafetyRule {
    pub arn: String,
    pub name: String,
    pub controls: Vec<String>,
    pub threshold: usize,
    pub inverted: bool,
}

impl SafetyRule {
    fn holds(&self, states: &BTreeMap<String, bool>) -> bool {
        let on = self
            .controls
            .iter()
            .filter(|c| states.get(*c).copied().unwrap_or(false))
            .count();
        (on >= self.threshold) != self.inverted
    }
}

/// A routing control.
#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub arn: String,
    pub name: String,
    pub region: String,
}

pub struct ArcState {
    pub control_panel: String,
    pub controls: Vec<Control>,
    pub rules: Vec<SafetyRule>,
    states: Mutex<BTreeMap<String, bool>>,
    modes: Vec<watch::Sender<EndpointMode>>,
    links: Vec<watch::Sender<LinkMode>>,
    requests: Mutex<Vec<ApiRequest>>,
    changes: Mutex<Vec<StateChange>>,
    /// Added to every request on every endpoint before it is handled.
    latency: Mutex<std::time::Duration>,
    /// After a control changes, further changes to it fail this long with ARC's generic
    /// `ConflictException` (a routing control's wait period).
    wait_period: Mutex<std::time::Duration>,
    /// When each control last changed (epoch ms).
    changed_at: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ArcState {
    /// Routing-control state by ARN (true = On).
    pub fn states(&self) -> BTreeMap<String, bool> {
        lock(&self.states).clone()
    }

    /// The control of `region`, if any.
    pub fn control_for(&self, region: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.region == region)
    }

    pub fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.requests).clone()
    }

    /// Sets the wait period after a change during which a control cannot change again (zero: none).
    pub fn set_wait_period(&self, wait: std::time::Duration) {
        *lock(&self.wait_period) = wait;
    }

    /// Delays every request on every endpoint by `latency` before it is handled (zero: none).
    pub fn set_latency(&self, latency: std::time::Duration) {
        *lock(&self.latency) = latency;
    }

    /// Every applied change of routing-control states, in order.
    pub fn changes(&self) -> Vec<StateChange> {
        lock(&self.changes).clone()
    }

    /// Sets endpoint `i`'s behaviour.
    pub fn set_mode(&self, i: usize, mode: EndpointMode) -> bool {
        let (Some(m), Some(l)) = (self.modes.get(i), self.links.get(i)) else {
            return false;
        };
        m.send_replace(mode);
        l.send_replace(match mode {
            EndpointMode::Refuse => LinkMode::Down,
            EndpointMode::Hang => LinkMode::Blackhole,
            _ => LinkMode::Up,
        });
        true
    }

    pub fn modes(&self) -> Vec<EndpointMode> {
        self.modes.iter().map(|m| *m.borrow()).collect()
    }
}

#[derive(Clone)]
struct Endpoint {
    arc: Arc<ArcState>,
    index: usize,
}

struct ArcError {
    status: u16,
    kind: &'static str,
    message: String,
}

impl ArcError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ArcError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"__type": self.kind, "message": self.message}).to_string();
        (
            status,
            [
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amzn-errortype", self.kind),
            ],
            body,
        )
            .into_response()
    }
}

fn answer(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.0")],
        v.to_string(),
    )
        .into_response()
}

async fn handle(State(ep): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let action = target.trim_start_matches("ToggleCustomerAPI.").to_owned();
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let trace = crate::trace_of(&headers);
    let mode = ep
        .arc
        .modes
        .get(ep.index)
        .map_or(EndpointMode::Ok, |m| *m.borrow());
    // The request is handled in a task of its own, so a caller giving up (its attempt timeout
    // drops this handler) does not cancel it: like a real server, a request that arrived is
    // processed, and on a slow endpoint it lands late.
    let received_ms = now_ms();
    let latency = *lock(&ep.arc.latency);
    let work = tokio::spawn(async move {
        let slow = match mode {
            EndpointMode::Slow { ms } => std::time::Duration::from_millis(ms),
            _ => std::time::Duration::ZERO,
        };
        tokio::time::sleep(latency + slow).await;
        let result = match mode {
            EndpointMode::Error5xx => Err(ArcError::new(
                500,
                "InternalServerException",
                "internal error (lab fault)",
            )),
            EndpointMode::Throttle => Err(ArcError::new(
                429,
                "ThrottlingException",
                "rate exceeded (lab fault)",
            )),
            _ => dispatch(&ep, &action, &input, trace.as_deref(), received_ms),
        };
        let status = match &result {
            Ok(_) => 200,
            Err(e) => e.status,
        };
        let mut params = BTreeMap::from([("body".to_owned(), input.to_string())]);
        if let Some(t) = trace {
            params.insert("trace".into(), t);
        }
        lock(&ep.arc.requests).push(ApiRequest {
            service: "route53-recovery-cluster".into(),
            region: endpoint_region(ep.index).into(),
            action,
            params,
            status,
            at_ms: now_ms(),
        });
        result.unwrap_or_else(IntoResponse::into_response)
    });
    work.await.unwrap_or_else(|_| {
        ArcError::new(500, "InternalServerException", "the lab's handler failed").into_response()
    })
}

fn endpoint_region(index: usize) -> &'static str {
    ENDPOINT_REGIONS.get(index).copied().unwrap_or("unknown")
}

fn state_name(on: bool) -> &'static str {
    if on { "On" } else { "Off" }
}

fn parse_state(v: &Value) -> Result<bool, ArcError> {
    match v.as_str() {
        Some("On") => Ok(true),
        Some("Off") => Ok(false),
        other => Err(ArcError::new(
            400,
            "ValidationException",
            format!("invalid RoutingControlState {other:?}"),
        )),
    }
}

fn dispatch(
    ep: &Endpoint,
    action: &str,
    input: &Value,
    trace: Option<&str>,
    received_ms: u64,
) -> Result<Response, ArcError> {
    let arc = &ep.arc;
    let known = |arn: &str| -> Result<&Control, ArcError> {
        arc.controls.iter().find(|c| c.arn == arn).ok_or_else(|| {
            ArcError::new(
                404,
                "ResourceNotFoundException",
                format!("routing control {arn} not found"),
            )
        })
    };
    match action {
        "GetRoutingControlState" => {
            let arn = input["RoutingControlArn"].as_str().unwrap_or_default();
            let c = known(arn)?;
            let on = arc.states().get(arn).copied().unwrap_or(false);
            Ok(answer(json!({
                "RoutingControlArn": c.arn, "RoutingControlState": state_name(on), "RoutingControlName": c.name
            })))
        }
        "ListRoutingControls" => {
            // One snapshot of every state, optionally of one control panel, paged by NextToken (an
            // index into the listing) and MaxResults (default 500, as AWS documents).
            let states = arc.states();
            let panel = input["ControlPanelArn"].as_str();
            if panel.is_some_and(|p| p != arc.control_panel) {
                return Err(ArcError::new(
                    404,
                    "ResourceNotFoundException",
                    format!("control panel {} not found", panel.unwrap_or_default()),
                ));
            }
            let max = input["MaxResults"].as_u64().map_or(500, |m| m.max(1));
            let from = match input["NextToken"].as_str() {
                None => 0,
                Some(t) => t.parse::<usize>().map_err(|_| {
                    ArcError::new(400, "ValidationException", format!("invalid NextToken {t:?}"))
                })?,
            };
            let page: Vec<Value> = arc
                .controls
                .iter()
                .skip(from)
                .take(usize::try_from(max).unwrap_or(usize::MAX))
                .map(|c| {
                    json!({
                        "ControlPanelArn": arc.control_panel, "ControlPanelName": "lab",
                        "RoutingControlArn": c.arn, "RoutingControlName": c.name,
                        "RoutingControlState": state_name(states.get(&c.arn).copied().unwrap_or(false)),
                        "Owner": "000000000000"
                    })
                })
                .collect();
            let next = from + page.len();
            let mut out = json!({ "RoutingControls": page });
            if next < arc.controls.len() {
                out["NextToken"] = json!(next.to_string());
            }
            Ok(answer(out))
        }
        "UpdateRoutingControlState" => {
            let arn = input["RoutingControlArn"].as_str().unwrap_or_default();
            known(arn)?;
            let on = parse_state(&input["RoutingControlState"])?;
            update(
                ep,
                &[(arn.to_owned(), on)],
                &input["SafetyRulesToOverride"],
                trace,
                received_ms,
            )
        }
        "UpdateRoutingControlStates" => {
            let entries = input["UpdateRoutingControlStateEntries"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if entries.is_empty() {
                return Err(ArcError::new(
                    400,
                    "ValidationException",
                    "UpdateRoutingControlStateEntries is empty",
                ));
            }
            let mut changes = Vec::new();
            for e in &entries {
                let arn = e["RoutingControlArn"].as_str().unwrap_or_default();
                known(arn)?;
                changes.push((arn.to_owned(), parse_state(&e["RoutingControlState"])?));
            }
            update(ep, &changes, &input["SafetyRulesToOverride"], trace, received_ms)
        }
        other => Err(ArcError::new(
            400,
            "ValidationException",
            format!("unknown operation {other:?}"),
        )),
    }
}

/// Applies `changes` atomically if every safety rule not overridden holds afterwards.
fn update(
    ep: &Endpoint,
    changes: &[(String, bool)],
    overrides: &Value,
    trace: Option<&str>,
    received_ms: u64,
) -> Result<Response, ArcError> {
    let arc = &ep.arc;
    let overridden: Vec<&str> = overrides
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut states = lock(&arc.states);
    let mut next = states.clone();
    for (arn, on) in changes {
        next.insert(arn.clone(), *on);
    }
    // A control still in its wait period cannot change: ARC's generic "conflict, try again".
    let wait = u64::try_from(lock(&arc.wait_period).as_millis()).unwrap_or(u64::MAX);
    let now = now_ms();
    if wait > 0 {
        let changed_at = lock(&arc.changed_at);
        if let Some((arn, _)) = changes.iter().find(|(arn, on)| {
            states.get(arn) != Some(on) && changed_at.get(arn).is_some_and(|t| now.saturating_sub(*t) < wait)
        }) {
            return Err(ArcError::new(
                409,
                "ConflictException",
                format!(
                    "There was a conflict with this request. Try again. ({arn} changed less than {wait} ms ago)"
                ),
            ));
        }
    }
    if let Some(rule) = arc
        .rules
        .iter()
        .find(|r| !overridden.contains(&r.arn.as_str()) && !r.holds(&next))
    {
        return Err(ArcError::new(
            409,
            "ConflictException",
            format!(
                "the change violates safety rule {} ({}): {}at least {} of its controls must be On",
                rule.name,
                rule.arn,
                if rule.inverted { "fewer than " } else { "" },
                rule.threshold
            ),
        ));
    }
    {
        let mut changed_at = lock(&arc.changed_at);
        for (arn, on) in changes {
            if states.get(arn) != Some(on) {
                changed_at.insert(arn.clone(), now);
            }
        }
    }
    lock(&arc.changes).push(StateChange {
        received_ms,
        at_ms: now,
        endpoint: endpoint_region(ep.index).into(),
        trace: trace.map(str::to_owned),
        set: changes.iter().cloned().collect(),
        after: next.clone(),
    });
    *states = next;
    Ok(answer(json!({})))
}

/// A running ARC cluster: its endpoints' URLs, by Region.
pub struct ArcCluster {
    pub state: Arc<ArcState>,
    pub endpoints: Vec<(String, String)>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts five endpoints for `regions` (one routing control per lab Region; `primary` On) with
/// the rules "at least one On" and "fewer than two On" — together, exactly one Region On — and
/// optionally a spare control outside the datastore.
pub async fn start(regions: &[String], primary: &str, spare: bool) -> Result<ArcCluster, LabError> {
    let panel = "arn:aws:route53-recovery-control::000000000000:controlpanel/lab".to_owned();
    // A "spare" control outside the Global Datastore, covered by the same rules: left On by an
    // earlier break-glass, it makes an ordinary flip violate "fewer than two On".
    let spare_region = spare.then(|| "spare".to_owned());
    let controls: Vec<Control> = regions
        .iter()
        .chain(spare_region.iter())
        .map(|r| Control {
            arn: format!("{panel}/routingcontrol/{r}"),
            name: format!("writer-{r}"),
            region: r.clone(),
        })
        .collect();
    let arns: Vec<String> = controls.iter().map(|c| c.arn.clone()).collect();
    let rules = vec![
        SafetyRule {
            arn: format!("{panel}/safetyrule/at-least-one-on"),
            name: "at-least-one-on".into(),
            controls: arns.clone(),
            threshold: 1,
            inverted: false,
        },
        SafetyRule {
            arn: format!("{panel}/safetyrule/at-most-one-on"),
            name: "at-most-one-on".into(),
            controls: arns,
            threshold: 2,
            inverted: true,
        },
    ];
    let states = controls
        .iter()
        .map(|c| (c.arn.clone(), c.region == primary))
        .collect();
    let mut modes = Vec::new();
    let mut links = Vec::new();
    let mut mode_rx = Vec::new();
    for _ in ENDPOINT_REGIONS {
        let (m, _) = watch::channel(EndpointMode::Ok);
        let (l, lr) = watch::channel(LinkMode::Up);
        modes.push(m);
        links.push(l);
        mode_rx.push(lr);
    }
    let state = Arc::new(ArcState {
        control_panel: panel,
        controls,
        rules,
        states: Mutex::new(states),
        modes,
        links,
        requests: Mutex::new(Vec::new()),
        changes: Mutex::new(Vec::new()),
        latency: Mutex::new(std::time::Duration::ZERO),
        wait_period: Mutex::new(std::time::Duration::ZERO),
        changed_at: Mutex::new(BTreeMap::new()),
    });
    let mut tasks = Vec::new();
    let mut endpoints = Vec::new();
    for (index, (region, link_rx)) in ENDPOINT_REGIONS.iter().zip(mode_rx).enumerate() {
        let io = |e: std::io::Error| LabError::Io(e.to_string());
        let inner = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
        let inner_addr: SocketAddr = inner.local_addr().map_err(io)?;
        let app = Router::new().route("/", post(handle)).with_state(Endpoint {
            arc: Arc::clone(&state),
            index,
        });
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(inner, app).await;
        }));
        let outer = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
        let outer_addr = outer.local_addr().map_err(io)?;
        tasks.push(tokio::spawn(link::serve(outer, inner_addr, link_rx)));
        endpoints.push(((*region).to_owned(), format!("http://{outer_addr}")));
    }
    Ok(ArcCluster {
        state,
        endpoints,
        tasks,
    })
}
