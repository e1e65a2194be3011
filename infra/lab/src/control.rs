//! The lab's control surface: HTTP on loopback (its address is in `.lab/state.json`, and
//! `lab ctl …` wraps it). Faults in, observations out.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::link::LinkMode;
use crate::{LabState, SnsFaults};

#[derive(Clone)]
struct Ctl {
    lab: Arc<LabState>,
    zone: String,
}

pub fn router(lab: Arc<LabState>, zone: String) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/valkey/{region}/{action}", post(valkey))
        .route("/region/{region}/{action}", post(region))
        .route("/link", post(link))
        .route("/sns", post(sns))
        .route("/publish", post(publish))
        .route("/failover", post(failover))
        .route("/functions/{region}/{name}/invoke", post(invoke))
        .route(
            "/requests",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.requests())) }),
        )
        .route(
            "/invocations",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.invocations())) }),
        )
        .route(
            "/audits",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.audits())) }),
        )
        .route(
            "/events",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.events())) }),
        )
        .route(
            "/publications",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.publications())) }),
        )
        .route("/arc", get(arc_state))
        .route(
            "/arc/changes",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.arc.changes())) }),
        )
        .route("/arc/wait-period", post(arc_wait_period))
        .route("/arc/{endpoint}/{mode}", post(arc_mode))
        .route("/route53", get(route53_state))
        .route(
            "/route53/changes",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.route53.changes())) }),
        )
        .route("/route53/fault", post(route53_fault))
        .route("/route53/latency", post(route53_latency))
        .route("/route53/propagation", post(route53_propagation))
        .route("/route53/clear", post(route53_clear))
        .route("/latency", post(latency))
        .route(
            "/history",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.gds_history())) }),
        )
        .route(
            "/alarms",
            get(|State(c): State<Ctl>| async move { Json(json!(c.lab.cloudwatch.alarms())) }),
        )
        .route("/alarm-delivery", post(alarm_delivery))
        .route(
            "/readiness",
            get(|State(c): State<Ctl>| async move { Json(c.lab.readiness.snapshot()) }),
        )
        .route("/break", post(break_item))
        .route("/mend", post(mend_item))
        .route("/shutdown", post(shutdown))
        .with_state(Ctl { lab, zone })
}

fn bad(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn state(State(c): State<Ctl>) -> Json<Value> {
    let gds = c.lab.gds();
    let primary = c.lab.regions.get(gds.primary).map(|r| r.name.clone());
    let record = c.lab.writer_record();
    let points_at = record
        .as_deref()
        .and_then(|v| c.lab.regions.iter().find(|r| r.endpoint == v))
        .map(|r| r.name.clone());
    let mut regions = Vec::new();
    for r in &c.lab.regions {
        let info = crate::valkey::replication_info(r.valkey_port).await.ok();
        let field = |k: &str| {
            info.as_ref()
                .and_then(|i| i.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
        };
        regions.push(json!({
            "name": r.name, "group": r.group, "endpoint": r.endpoint,
            "valkey_up": info.is_some(), "dark": c.lab.region_dark(&r.name),
            "role": field("role"), "master_link_status": field("master_link_status"),
        }));
    }
    Json(json!({
        "datastore": {"id": c.lab.cfg.datastore_id, "status": gds.status, "primary": primary, "failovers": gds.failovers},
        "record": {"name": c.lab.cfg.record_name, "value": record, "points_at": points_at},
        "link": c.lab.link_mode(),
        "sns": *c.lab.sns.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        "regions": regions,
        "functions_idle": c.lab.functions_idle(),
    }))
}

async fn valkey(State(c): State<Ctl>, Path((region, action)): Path<(String, String)>) -> Response {
    let result = match action.as_str() {
        "stop" => Ok(c.lab.stop_valkey(&region).await),
        "start" => c.lab.start_valkey(&region).await.map(|()| true),
        _ => return bad(StatusCode::NOT_FOUND, "use stop or start"),
    };
    match result {
        Ok(true) => Json(json!({"ok": true})).into_response(),
        Ok(false) => bad(StatusCode::NOT_FOUND, format!("no Region {region}")),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn region(State(c): State<Ctl>, Path((region, action)): Path<(String, String)>) -> Response {
    if c.lab.region(&region).is_none() {
        return bad(StatusCode::NOT_FOUND, format!("no Region {region}"));
    }
    let dark = match action.as_str() {
        "dark" => true,
        "light" => false,
        _ => return bad(StatusCode::NOT_FOUND, "use dark or light"),
    };
    match c.lab.set_dark(&region, dark).await {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn link(State(c): State<Ctl>, Json(mode): Json<LinkMode>) -> Json<Value> {
    c.lab.set_link(mode);
    Json(json!({"link": mode}))
}

async fn sns(State(c): State<Ctl>, Json(f): Json<SnsFaults>) -> Json<Value> {
    *c.lab
        .sns
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = f;
    Json(json!({"sns": f}))
}

#[derive(Deserialize)]
struct PublishBody {
    region: String,
    message: String,
    #[serde(default = "default_subject")]
    subject: String,
}

fn default_subject() -> String {
    "ElastiCache Notification".into()
}

async fn publish(State(c): State<Ctl>, Json(b): Json<PublishBody>) -> Response {
    if c.lab.region(&b.region).is_none() {
        return bad(StatusCode::NOT_FOUND, format!("no Region {}", b.region));
    }
    c.lab.publish(&b.region, &b.subject, &b.message);
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct FailoverBody {
    region: String,
}

async fn failover(State(c): State<Ctl>, Json(b): Json<FailoverBody>) -> Response {
    let Some(group) = c.lab.region(&b.region).map(|r| r.group.clone()) else {
        return bad(StatusCode::NOT_FOUND, format!("no Region {}", b.region));
    };
    let id = c.lab.cfg.datastore_id.clone();
    match crate::failover::start(&c.lab, &id, &b.region, &group) {
        Ok(()) => Json(json!({"ok": true, "status": "modifying"})).into_response(),
        Err(e) => bad(e.status, format!("{}: {}", e.code, e.message)),
    }
}

async fn invoke(
    State(c): State<Ctl>,
    Path((region, name)): Path<(String, String)>,
    Json(event): Json<Value>,
) -> Response {
    let Some(f) = c.lab.function(&region, &name) else {
        return bad(StatusCode::NOT_FOUND, format!("no function {name} in {region}"));
    };
    match f.invoke_sync(event, "console").await {
        Ok(v) => Json(json!({"ok": v})).into_response(),
        Err(e) => Json(json!({"error": e})).into_response(),
    }
}

async fn shutdown(State(c): State<Ctl>) -> Json<Value> {
    c.lab.shutdown.notify_waiters();
    Json(json!({"ok": true}))
}

async fn arc_state(State(c): State<Ctl>) -> Json<Value> {
    let states: serde_json::Map<String, Value> = c
        .lab
        .arc
        .controls
        .iter()
        .map(|ctl| {
            let on = c.lab.arc.states().get(&ctl.arn).copied().unwrap_or(false);
            (ctl.region.clone(), json!(if on { "On" } else { "Off" }))
        })
        .collect();
    let modes: Vec<Value> = crate::arc::ENDPOINT_REGIONS
        .iter()
        .zip(c.lab.arc.modes())
        .map(|(r, m)| json!({"region": r, "mode": m}))
        .collect();
    Json(json!({"controls": states, "endpoints": modes}))
}

/// `endpoint` is an index 0–4 or the endpoint's Region; `mode` is ok, refuse, hang, error5xx or throttle.
async fn arc_mode(State(c): State<Ctl>, Path((endpoint, mode)): Path<(String, String)>) -> Response {
    let index = endpoint
        .parse::<usize>()
        .ok()
        .or_else(|| crate::arc::ENDPOINT_REGIONS.iter().position(|r| *r == endpoint));
    match (index, crate::arc::EndpointMode::parse(&mode)) {
        (Some(i), Some(m)) if c.lab.arc.set_mode(i, m) => {
            Json(json!({"endpoint": i, "mode": m})).into_response()
        }
        _ => bad(
            StatusCode::BAD_REQUEST,
            "use /arc/<0-4 or region>/<ok|refuse|hang|error5xx|throttle|slow:MS>",
        ),
    }
}

async fn break_item(State(c): State<Ctl>, Json(t): Json<crate::readiness::Target>) -> Response {
    readiness(&c, &t, true)
}

async fn mend_item(State(c): State<Ctl>, Json(t): Json<crate::readiness::Target>) -> Response {
    readiness(&c, &t, false)
}

fn readiness(c: &Ctl, t: &crate::readiness::Target, broken: bool) -> Response {
    match crate::readiness::set(&c.lab, t, broken) {
        Ok(v) => Json(v).into_response(),
        Err(e) => bad(StatusCode::BAD_REQUEST, &e),
    }
}

async fn alarm_delivery(
    State(c): State<Ctl>,
    Json(d): Json<crate::cloudwatch::AlarmDelivery>,
) -> Json<Value> {
    *c.lab
        .cloudwatch
        .delivery
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = d;
    Json(json!({"alarm_delivery": d}))
}

async fn route53_state(State(c): State<Ctl>) -> Json<Value> {
    let r = &c.lab.route53;
    let latency: serde_json::Map<String, Value> = r
        .latencies()
        .into_iter()
        .map(|(op, d)| {
            (
                op.to_string(),
                json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            )
        })
        .collect();
    Json(json!({
        "hosted_zone_id": c.zone,
        "record": r.record(&c.zone, &c.lab.cfg.record_name, "CNAME"),
        "faults": r.faults(),
        "latency_ms": latency,
        "propagation_ms": u64::try_from(r.propagation_delay().as_millis()).unwrap_or(u64::MAX),
        "changes": r.changes().len(),
    }))
}

#[derive(Deserialize)]
struct FaultBody {
    operation: String,
    /// `throttling`, `prior_request_not_complete`, `error5xx`, `hang`, `lost`, or `slow:<ms>`.
    fault: String,
    /// How many requests it applies to; absent: until cleared.
    #[serde(default)]
    times: Option<u32>,
}

/// A Route 53 fault as the CLI and the histories name it.
pub fn route53_fault_named(name: &str) -> Option<crate::route53::Fault> {
    use crate::route53::Fault;
    Some(match name {
        "throttling" => Fault::Throttling,
        "prior_request_not_complete" => Fault::PriorRequestNotComplete,
        "error5xx" => Fault::Error5xx,
        "hang" => Fault::Hang,
        "lost" => Fault::Lost,
        _ => Fault::Slow {
            ms: name.strip_prefix("slow:")?.parse().ok()?,
        },
    })
}

async fn route53_fault(State(c): State<Ctl>, Json(b): Json<FaultBody>) -> Response {
    let op = match b.operation.parse::<crate::route53::Operation>() {
        Ok(op) => op,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(fault) = route53_fault_named(&b.fault) else {
        return bad(
            StatusCode::BAD_REQUEST,
            "fault: throttling, prior_request_not_complete, error5xx, hang, lost or slow:<ms>",
        );
    };
    c.lab.route53.set_fault(op, fault, b.times);
    Json(json!({"operation": op, "fault": fault, "times": b.times})).into_response()
}

#[derive(Deserialize)]
struct LatencyBody {
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    action: Option<String>,
    ms: u64,
}

async fn route53_latency(State(c): State<Ctl>, Json(b): Json<LatencyBody>) -> Response {
    let op = match b
        .operation
        .as_deref()
        .map(str::parse::<crate::route53::Operation>)
    {
        Some(Ok(op)) => op,
        Some(Err(e)) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
        None => return bad(StatusCode::BAD_REQUEST, "operation is required"),
    };
    c.lab
        .route53
        .set_latency(op, std::time::Duration::from_millis(b.ms));
    Json(json!({"operation": op, "latency_ms": b.ms})).into_response()
}

#[derive(Deserialize)]
struct Ms {
    ms: u64,
}

async fn route53_propagation(State(c): State<Ctl>, Json(b): Json<Ms>) -> Json<Value> {
    c.lab
        .route53
        .set_propagation_delay(std::time::Duration::from_millis(b.ms));
    Json(json!({"propagation_ms": b.ms}))
}

async fn route53_clear(State(c): State<Ctl>) -> Json<Value> {
    c.lab.route53.clear_faults();
    Json(json!({"ok": true}))
}

/// Delays every answer of an emulated API: `elasticache` (optionally one `action`) or `arc`.
async fn latency(State(c): State<Ctl>, Json(b): Json<LatencyBody>) -> Response {
    let d = std::time::Duration::from_millis(b.ms);
    match b.service.as_deref() {
        Some("arc") => c.lab.arc.set_latency(d),
        Some(service @ "elasticache") => c.lab.set_api_delay(service, b.action.as_deref(), d),
        _ => {
            return bad(
                StatusCode::BAD_REQUEST,
                "service: elasticache or arc (Route 53: /route53/latency)",
            );
        }
    }
    Json(json!({"service": b.service, "action": b.action, "latency_ms": b.ms})).into_response()
}

async fn arc_wait_period(State(c): State<Ctl>, Json(b): Json<Ms>) -> Json<Value> {
    c.lab.arc.set_wait_period(std::time::Duration::from_millis(b.ms));
    Json(json!({"wait_period_ms": b.ms}))
}
