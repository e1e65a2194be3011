//! CloudWatch for the current `aws-sdk-cloudwatch`, which speaks smithy rpc-v2-cbor (moto answers
//! only the older JSON/query forms): `PutMetricData`, `GetMetricData`, `PutMetricAlarm`,
//! `DescribeAlarms`, `SetAlarmState`, and metric alarms the lab evaluates itself — "N of M periods
//! over threshold", periods of seconds — delivering each state change to the functions of the
//! alarm's Region as an EventBridge event or an SNS-wrapped alarm message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ciborium::Value as Cbor;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::wire::signing_region;
use crate::{ApiRequest, LabState, lambda::now_ms};

/// How alarm state changes reach the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlarmDelivery {
    /// An EventBridge rule on "CloudWatch Alarm State Change" (what `template.yaml` wires).
    #[default]
    EventBridge,
    /// An alarm action publishing to an SNS topic the function subscribes to.
    Sns,
}

#[derive(Debug, Clone, Serialize)]
pub struct Datapoint {
    pub region: String,
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
    pub at_ms: u64,
    pub value: f64,
}

/// A metric alarm.
#[derive(Debug, Clone, Serialize)]
pub struct Alarm {
    pub region: String,
    pub name: String,
    pub arn: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: BTreeMap<String, String>,
    pub period_s: u64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub threshold: f64,
    pub comparison: String,
    pub statistic: String,
    pub treat_missing: String,
    pub state: String,
    pub reason: String,
    pub updated_ms: u64,
}

/// The pure alarm rule: given the statistic of each of the last M periods (oldest first, `None`
/// where no data arrived), the state the alarm should be in. `current` is kept when missing data
/// is to be ignored.
pub fn evaluate(alarm: &Alarm, windows: &[Option<f64>], current: &str) -> (String, String) {
    let breaches = |v: f64| match alarm.comparison.as_str() {
        "GreaterThanOrEqualToThreshold" => v >= alarm.threshold,
        "GreaterThanThreshold" => v > alarm.threshold,
        "LessThanThreshold" => v < alarm.threshold,
        "LessThanOrEqualToThreshold" => v <= alarm.threshold,
        _ => false,
    };
    let missing = windows.iter().filter(|w| w.is_none()).count();
    let breaching = windows.iter().flatten().filter(|v| breaches(**v)).count()
        + if alarm.treat_missing == "breaching" {
            missing
        } else {
            0
        };
    let n = alarm.datapoints_to_alarm.max(1);
    let m = windows.len();
    if breaching >= n {
        return (
            "ALARM".into(),
            format!(
                "Threshold Crossed: {breaching} out of the last {m} datapoints were {} the threshold ({})",
                alarm.comparison, alarm.threshold
            ),
        );
    }
    if missing == m {
        return match alarm.treat_missing.as_str() {
            "notBreaching" => (
                "OK".into(),
                format!("no datapoints for {m} periods, treated as not breaching"),
            ),
            "ignore" => (current.to_owned(), "no datapoints; state kept (ignore)".into()),
            _ => (
                "INSUFFICIENT_DATA".into(),
                format!("Insufficient Data: {m} datapoints were unknown"),
            ),
        };
    }
    (
        "OK".into(),
        format!("Threshold Crossed: {breaching} out of the last {m} datapoints breached; {n} needed"),
    )
}

/// The statistic `stat` over `values` (`Sum`, `Average`, `Minimum`, `Maximum`, `SampleCount`,
/// `pNN`).
pub fn statistic(stat: &str, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    match stat {
        "Sum" => Some(values.iter().sum()),
        "Average" => Some(values.iter().sum::<f64>() / n),
        "Minimum" => values.iter().copied().reduce(f64::min),
        "Maximum" => values.iter().copied().reduce(f64::max),
        "SampleCount" => Some(n),
        p if p.starts_with('p') => {
            let q: f64 = p[1..].parse().ok()?;
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            let rank = ((q / 100.0) * n).ceil().max(1.0) as usize;
            v.get(rank.min(v.len()) - 1).copied()
        }
        _ => None,
    }
}

#[derive(Default)]
pub struct CloudWatchState {
    points: Mutex<Vec<Datapoint>>,
    alarms: Mutex<Vec<Alarm>>,
    pub delivery: Mutex<AlarmDelivery>,
}

const MAX_POINTS: usize = 200_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CloudWatchState {
    pub fn alarms(&self) -> Vec<Alarm> {
        lock(&self.alarms).clone()
    }

    pub fn put(&self, p: Datapoint) {
        let mut points = lock(&self.points);
        if points.len() >= MAX_POINTS {
            points.drain(..MAX_POINTS / 10);
        }
        points.push(p);
    }

    fn values(
        &self,
        region: &str,
        ns: &str,
        name: &str,
        dims: &BTreeMap<String, String>,
        from: u64,
        to: u64,
    ) -> Vec<f64> {
        lock(&self.points)
            .iter()
            .filter(|p| {
                p.region == region
                    && p.namespace == ns
                    && p.name == name
                    && &p.dimensions == dims
                    && p.at_ms >= from
                    && p.at_ms < to
            })
            .map(|p| p.value)
            .collect()
    }

    /// The newest datapoint of a metric in `region` at or after `since_ms`, if any.
    pub fn latest(
        &self,
        region: &str,
        ns: &str,
        name: &str,
        dims: &BTreeMap<String, String>,
        since_ms: u64,
    ) -> Option<Datapoint> {
        lock(&self.points)
            .iter()
            .rev()
            .find(|p| {
                p.region == region
                    && p.namespace == ns
                    && p.name == name
                    && &p.dimensions == dims
                    && p.at_ms >= since_ms
            })
            .cloned()
    }

    /// Deletes the alarm `name` in `region`, returning it (DeleteAlarms, or the lab breaking it).
    pub fn remove_alarm(&self, region: &str, name: &str) -> Option<Alarm> {
        let mut alarms = lock(&self.alarms);
        let i = alarms.iter().position(|a| a.region == region && a.name == name)?;
        Some(alarms.remove(i))
    }

    /// Forgets every datapoint of `namespace`/`name`, as if it had never been published.
    pub fn purge(&self, namespace: &str, name: &str) {
        lock(&self.points).retain(|p| !(p.namespace == namespace && p.name == name));
    }

    /// The distinct metrics (namespace, name, dimensions) with a datapoint in `region`.
    pub fn metrics(&self, region: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
        let mut seen: Vec<(String, String, BTreeMap<String, String>)> = Vec::new();
        for p in lock(&self.points).iter().filter(|p| p.region == region) {
            if !seen
                .iter()
                .any(|(ns, n, d)| ns == &p.namespace && n == &p.name && d == &p.dimensions)
            {
                seen.push((p.namespace.clone(), p.name.clone(), p.dimensions.clone()));
            }
        }
        seen
    }

    /// Creates or replaces an alarm (state INSUFFICIENT_DATA until evaluated).
    pub fn put_alarm(&self, alarm: Alarm) {
        let mut alarms = lock(&self.alarms);
        alarms.retain(|a| !(a.region == alarm.region && a.name == alarm.name));
        alarms.push(alarm);
    }
}

/// Evaluates every alarm once: the periods are the last M whole periods before `now_ms`.
/// Returns the alarms that changed state, with their previous state.
pub fn evaluate_all(cw: &CloudWatchState, now: u64) -> Vec<(Alarm, String)> {
    let alarms = cw.alarms();
    let mut changed = Vec::new();
    for a in alarms {
        let period = a.period_s.max(1) * 1000;
        let end = now / period * period;
        let windows: Vec<Option<f64>> = (0..a.evaluation_periods.max(1))
            .rev()
            .map(|k| {
                let to = end.saturating_sub(k as u64 * period);
                let from = to.saturating_sub(period);
                statistic(
                    &a.statistic,
                    &cw.values(&a.region, &a.namespace, &a.metric, &a.dimensions, from, to),
                )
            })
            .collect();
        let (state, reason) = evaluate(&a, &windows, &a.state);
        if state != a.state {
            let mut alarms = lock(&cw.alarms);
            if let Some(x) = alarms
                .iter_mut()
                .find(|x| x.region == a.region && x.name == a.name)
            {
                let previous = std::mem::replace(&mut x.state, state.clone());
                x.reason = reason;
                x.updated_ms = now;
                changed.push((x.clone(), previous));
            }
        }
    }
    changed
}

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
        .unwrap_or_default()
}

/// Delivers a state change to the functions of the alarm's Region.
pub fn deliver(lab: &LabState, alarm: &Alarm, previous: &str) {
    let delivery = *lock(&lab.cloudwatch.delivery);
    let event = match delivery {
        AlarmDelivery::EventBridge => json!({
            "version": "0", "id": format!("lab-{}", now_ms()), "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch", "account": "000000000000",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": alarm.region, "resources": [alarm.arn],
            "detail": {
                "alarmName": alarm.name,
                "state": {"value": alarm.state, "reason": alarm.reason, "timestamp": iso(alarm.updated_ms)},
                "previousState": {"value": previous, "reason": "", "timestamp": iso(alarm.updated_ms)},
                "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": alarm.namespace,
                    "name": alarm.metric, "dimensions": alarm.dimensions}, "period": alarm.period_s, "stat": alarm.statistic},
                    "returnData": true}]}
            }
        }),
        AlarmDelivery::Sns => {
            let message = json!({
                "AlarmName": alarm.name, "AlarmDescription": null, "AWSAccountId": "000000000000",
                "NewStateValue": alarm.state, "NewStateReason": alarm.reason, "StateChangeTime": iso(alarm.updated_ms),
                "Region": region_display(&alarm.region), "AlarmArn": alarm.arn, "OldStateValue": previous,
                "Trigger": {"MetricName": alarm.metric, "Namespace": alarm.namespace, "Statistic": alarm.statistic.to_ascii_uppercase(),
                    "Period": alarm.period_s, "EvaluationPeriods": alarm.evaluation_periods,
                    "ComparisonOperator": alarm.comparison, "Threshold": alarm.threshold, "TreatMissingData": alarm.treat_missing,
                    "EvaluateLowSampleCountPercentile": ""}
            });
            crate::sns_event(
                &alarm.region,
                &format!(
                    "{}: \"{}\" in {}",
                    alarm.state,
                    alarm.name,
                    region_display(&alarm.region)
                ),
                &message.to_string(),
                &format!("lab-alarm-{}", now_ms()),
            )
        }
    };
    let source = match delivery {
        AlarmDelivery::EventBridge => "eventbridge",
        AlarmDelivery::Sns => "sns",
    };
    if let Some(r) = lab.region(&alarm.region) {
        for f in lock(&r.functions).iter() {
            f.invoke_async(event.clone(), source);
        }
    }
}

/// CloudWatch's SNS messages carry a display name, not the code.
fn region_display(region: &str) -> &'static str {
    match region {
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "us-east-1" => "US East (N. Virginia)",
        "eu-west-1" => "EU (Ireland)",
        _ => "Lab Region",
    }
}

/// Runs the alarm evaluator until the task is aborted.
pub async fn evaluator(lab: Arc<LabState>, tick: Duration) {
    loop {
        tokio::time::sleep(tick).await;
        for (alarm, previous) in evaluate_all(&lab.cloudwatch, now_ms()) {
            tracing::info!(alarm = %alarm.name, from = %previous, to = %alarm.state, "alarm state changed");
            deliver(&lab, &alarm, &previous);
        }
    }
}

// ---- the rpc-v2-cbor wire protocol ----

fn field<'a>(m: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    m.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn text(m: &Cbor, key: &str) -> Option<String> {
    field(m, key).and_then(Cbor::as_text).map(str::to_owned)
}

fn number(v: &Cbor) -> Option<f64> {
    match v {
        Cbor::Float(f) => Some(*f),
        Cbor::Integer(i) => i128::from(*i).to_string().parse().ok(),
        Cbor::Tag(_, inner) => number(inner),
        _ => None,
    }
}

fn num(m: &Cbor, key: &str) -> Option<f64> {
    field(m, key).and_then(number)
}

fn list<'a>(m: &'a Cbor, key: &str) -> &'a [Cbor] {
    field(m, key).and_then(Cbor::as_array).map_or(&[], Vec::as_slice)
}

fn dimensions(m: &Cbor) -> BTreeMap<String, String> {
    list(m, "Dimensions")
        .iter()
        .filter_map(|d| Some((text(d, "Name")?, text(d, "Value")?)))
        .collect()
}

fn t(s: &str) -> Cbor {
    Cbor::Text(s.to_owned())
}

fn timestamp(ms: u64) -> Cbor {
    Cbor::Tag(1, Box::new(Cbor::Float(ms as f64 / 1000.0)))
}

fn int(n: u64) -> Cbor {
    Cbor::Integer(n.into())
}

fn map(entries: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(entries.into_iter().map(|(k, v)| (t(k), v)).collect())
}

fn cbor_response(status: StatusCode, body: &Cbor) -> Response {
    let mut bytes = Vec::new();
    if ciborium::into_writer(body, &mut bytes).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        status,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        bytes,
    )
        .into_response()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    cbor_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &map(vec![
            ("__type", t(&format!("com.amazonaws.cloudwatch#{code}"))),
            ("message", t(message)),
        ]),
    )
}

pub fn router(lab: Arc<LabState>) -> Router {
    Router::new()
        .route(
            "/service/GraniteServiceVersion20100801/operation/{op}",
            post(handle),
        )
        .with_state(lab)
}

async fn handle(
    State(lab): State<Arc<LabState>>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let region = signing_region(&headers).unwrap_or_else(|| "unknown".into());
    let input: Cbor = if body.is_empty() {
        Cbor::Map(Vec::new())
    } else {
        match ciborium::from_reader(body.as_ref()) {
            Ok(v) => v,
            Err(e) => return error(400, "SerializationException", &format!("body is not CBOR: {e}")),
        }
    };
    let (status, response) = if lab.region_dark(&region) {
        (
            503,
            error(
                503,
                "ServiceUnavailable",
                &format!("the {region} endpoint is unavailable"),
            ),
        )
    } else {
        match op.as_str() {
            "PutMetricData" => put_metric_data(&lab, &region, &input),
            "GetMetricData" => get_metric_data(&lab, &region, &input),
            "PutMetricAlarm" => put_metric_alarm(&lab, &region, &input),
            "DescribeAlarms" => describe_alarms(&lab, &region, &input),
            "SetAlarmState" => set_alarm_state(&lab, &region, &input),
            "DeleteAlarms" => delete_alarms(&lab, &region, &input),
            "ListMetrics" => list_metrics(&lab, &region, &input),
            other => (
                400,
                error(
                    400,
                    "UnknownOperationException",
                    &format!("the lab does not emulate {other}"),
                ),
            ),
        }
    };
    lab.record(ApiRequest {
        service: "cloudwatch".into(),
        region,
        action: op,
        params: BTreeMap::new(),
        status,
        at_ms: now_ms(),
    });
    response
}

fn ok(body: Cbor) -> (u16, Response) {
    (200, cbor_response(StatusCode::OK, &body))
}

fn put_metric_data(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    let Some(ns) = text(input, "Namespace") else {
        return (
            400,
            error(400, "MissingRequiredParameter", "Namespace is required"),
        );
    };
    let now = now_ms();
    for d in list(input, "MetricData") {
        let Some(name) = text(d, "MetricName") else {
            return (
                400,
                error(400, "MissingRequiredParameter", "MetricName is required"),
            );
        };
        let at_ms = num(d, "Timestamp").map_or(now, |s| (s * 1000.0) as u64);
        let dims = dimensions(d);
        let mut values: Vec<f64> = Vec::new();
        if let Some(v) = num(d, "Value") {
            values.push(v);
        }
        let counts: Vec<f64> = list(d, "Counts").iter().filter_map(number).collect();
        for (i, v) in list(d, "Values").iter().filter_map(number).enumerate() {
            let c = counts.get(i).copied().unwrap_or(1.0).max(1.0) as usize;
            values.extend(std::iter::repeat_n(v, c));
        }
        for value in values {
            lab.cloudwatch.put(Datapoint {
                region: region.to_owned(),
                namespace: ns.clone(),
                name: name.clone(),
                dimensions: dims.clone(),
                at_ms,
                value,
            });
        }
    }
    ok(Cbor::Map(Vec::new()))
}

fn get_metric_data(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    let (Some(start), Some(end)) = (num(input, "StartTime"), num(input, "EndTime")) else {
        return (
            400,
            error(
                400,
                "MissingRequiredParameter",
                "StartTime and EndTime are required",
            ),
        );
    };
    let (start, end) = ((start * 1000.0) as u64, (end * 1000.0) as u64);
    let mut results = Vec::new();
    for q in list(input, "MetricDataQueries") {
        let id = text(q, "Id").unwrap_or_default();
        let Some(ms) = field(q, "MetricStat") else {
            return (
                400,
                error(
                    400,
                    "InvalidParameterValue",
                    "the lab supports MetricStat queries only",
                ),
            );
        };
        let metric = field(ms, "Metric").cloned().unwrap_or(Cbor::Null);
        let period = num(ms, "Period").unwrap_or(60.0).max(1.0) as u64 * 1000;
        let stat = text(ms, "Stat").unwrap_or_else(|| "Average".into());
        let ns = text(&metric, "Namespace").unwrap_or_default();
        let name = text(&metric, "MetricName").unwrap_or_default();
        let dims = dimensions(&metric);
        let (mut stamps, mut values) = (Vec::new(), Vec::new());
        // Newest first, as CloudWatch returns them by default.
        let mut to = end.div_ceil(period) * period;
        while to > start {
            let from = to.saturating_sub(period);
            if let Some(v) = statistic(
                &stat,
                &lab.cloudwatch
                    .values(region, &ns, &name, &dims, from.max(start), to.min(end)),
            ) {
                stamps.push(timestamp(from));
                values.push(Cbor::Float(v));
            }
            to = from;
        }
        results.push(map(vec![
            ("Id", t(&id)),
            ("Label", t(&name)),
            ("Timestamps", Cbor::Array(stamps)),
            ("Values", Cbor::Array(values)),
            ("StatusCode", t("Complete")),
        ]));
    }
    ok(map(vec![
        ("MetricDataResults", Cbor::Array(results)),
        ("Messages", Cbor::Array(Vec::new())),
    ]))
}

fn put_metric_alarm(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    let (Some(name), Some(ns), Some(metric)) = (
        text(input, "AlarmName"),
        text(input, "Namespace"),
        text(input, "MetricName"),
    ) else {
        return (
            400,
            error(
                400,
                "MissingRequiredParameter",
                "AlarmName, Namespace and MetricName are required (metric math is not emulated)",
            ),
        );
    };
    let evaluation_periods = num(input, "EvaluationPeriods").unwrap_or(1.0).max(1.0) as usize;
    lab.cloudwatch.put_alarm(Alarm {
        region: region.to_owned(),
        arn: format!("arn:aws:cloudwatch:{region}:000000000000:alarm:{name}"),
        name,
        namespace: ns,
        metric,
        dimensions: dimensions(input),
        period_s: num(input, "Period").unwrap_or(60.0).max(1.0) as u64,
        evaluation_periods,
        datapoints_to_alarm: num(input, "DatapointsToAlarm").map_or(evaluation_periods, |n| n as usize),
        threshold: num(input, "Threshold").unwrap_or(0.0),
        comparison: text(input, "ComparisonOperator")
            .unwrap_or_else(|| "GreaterThanOrEqualToThreshold".into()),
        statistic: text(input, "Statistic").unwrap_or_else(|| "Sum".into()),
        treat_missing: text(input, "TreatMissingData").unwrap_or_else(|| "missing".into()),
        state: "INSUFFICIENT_DATA".into(),
        reason: "Unchecked: Initial alarm creation".into(),
        updated_ms: now_ms(),
    });
    ok(Cbor::Map(Vec::new()))
}

fn alarm_cbor(a: &Alarm) -> Cbor {
    map(vec![
        ("AlarmName", t(&a.name)),
        ("AlarmArn", t(&a.arn)),
        ("StateValue", t(&a.state)),
        ("StateReason", t(&a.reason)),
        ("StateUpdatedTimestamp", timestamp(a.updated_ms)),
        ("MetricName", t(&a.metric)),
        ("Namespace", t(&a.namespace)),
        ("Statistic", t(&a.statistic)),
        (
            "Dimensions",
            Cbor::Array(
                a.dimensions
                    .iter()
                    .map(|(k, v)| map(vec![("Name", t(k)), ("Value", t(v))]))
                    .collect(),
            ),
        ),
        ("Period", int(a.period_s)),
        ("EvaluationPeriods", int(a.evaluation_periods as u64)),
        ("DatapointsToAlarm", int(a.datapoints_to_alarm as u64)),
        ("Threshold", Cbor::Float(a.threshold)),
        ("ComparisonOperator", t(&a.comparison)),
        ("TreatMissingData", t(&a.treat_missing)),
    ])
}

fn describe_alarms(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    let names: Vec<String> = list(input, "AlarmNames")
        .iter()
        .filter_map(|v| v.as_text().map(str::to_owned))
        .collect();
    let prefix = text(input, "AlarmNamePrefix");
    let state = text(input, "StateValue");
    let alarms: Vec<Cbor> = lab
        .cloudwatch
        .alarms()
        .iter()
        .filter(|a| a.region == region)
        .filter(|a| names.is_empty() || names.contains(&a.name))
        .filter(|a| prefix.as_ref().is_none_or(|p| a.name.starts_with(p)))
        .filter(|a| state.as_ref().is_none_or(|s| &a.state == s))
        .map(alarm_cbor)
        .collect();
    ok(map(vec![
        ("MetricAlarms", Cbor::Array(alarms)),
        ("CompositeAlarms", Cbor::Array(Vec::new())),
    ]))
}

fn delete_alarms(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    for name in list(input, "AlarmNames").iter().filter_map(|v| v.as_text()) {
        lab.cloudwatch.remove_alarm(region, name);
    }
    ok(map(Vec::new()))
}

/// `ListMetrics` with the filters the functions use (namespace, name, dimensions); one page, as
/// the lab never holds more than a page of metrics.
fn list_metrics(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    let ns = text(input, "Namespace");
    let name = text(input, "MetricName");
    let wanted: Vec<(String, Option<String>)> = list(input, "Dimensions")
        .iter()
        .filter_map(|d| Some((text(d, "Name")?, text(d, "Value"))))
        .collect();
    let metrics: Vec<Cbor> = lab
        .cloudwatch
        .metrics(region)
        .into_iter()
        .filter(|(n, m, _)| ns.as_ref().is_none_or(|x| x == n) && name.as_ref().is_none_or(|x| x == m))
        .filter(|(_, _, dims)| {
            wanted.iter().all(|(k, v)| {
                dims.get(k)
                    .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
            })
        })
        .map(|(n, m, dims)| {
            map(vec![
                ("Namespace", t(&n)),
                ("MetricName", t(&m)),
                (
                    "Dimensions",
                    Cbor::Array(
                        dims.iter()
                            .map(|(k, v)| map(vec![("Name", t(k)), ("Value", t(v))]))
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    ok(map(vec![("Metrics", Cbor::Array(metrics))]))
}

fn set_alarm_state(lab: &LabState, region: &str, input: &Cbor) -> (u16, Response) {
    let name = text(input, "AlarmName").unwrap_or_default();
    let Some(state) =
        text(input, "StateValue").filter(|s| ["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&s.as_str()))
    else {
        return (
            400,
            error(
                400,
                "InvalidParameterValue",
                "StateValue must be OK, ALARM or INSUFFICIENT_DATA",
            ),
        );
    };
    let changed = {
        let mut alarms = lock(&lab.cloudwatch.alarms);
        let Some(a) = alarms.iter_mut().find(|a| a.region == region && a.name == name) else {
            return (
                404,
                error(
                    404,
                    "ResourceNotFound",
                    &format!("alarm {name} does not exist in {region}"),
                ),
            );
        };
        let previous = std::mem::replace(&mut a.state, state);
        a.reason = text(input, "StateReason").unwrap_or_default();
        a.updated_ms = now_ms();
        (previous != a.state).then(|| (a.clone(), previous))
    };
    if let Some((alarm, previous)) = changed {
        deliver(lab, &alarm, &previous);
    }
    ok(Cbor::Map(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(n: usize, m: usize, treat: &str) -> Alarm {
        Alarm {
            region: "us-west-2".into(),
            name: "a".into(),
            arn: "arn".into(),
            namespace: "SessionStore".into(),
            metric: "WriteErrors".into(),
            dimensions: BTreeMap::new(),
            period_s: 1,
            evaluation_periods: m,
            datapoints_to_alarm: n,
            threshold: 1.0,
            comparison: "GreaterThanOrEqualToThreshold".into(),
            statistic: "Sum".into(),
            treat_missing: treat.into(),
            state: "OK".into(),
            reason: String::new(),
            updated_ms: 0,
        }
    }

    #[test]
    fn n_of_m_breaching_periods_raise_the_alarm_and_fewer_do_not() {
        let a = alarm(2, 3, "missing");
        assert_eq!(evaluate(&a, &[Some(5.0), Some(0.0), Some(3.0)], "OK").0, "ALARM");
        assert_eq!(evaluate(&a, &[Some(5.0), Some(0.0), Some(0.0)], "OK").0, "OK");
        assert_eq!(evaluate(&a, &[Some(1.0), None, Some(1.0)], "OK").0, "ALARM");
    }

    #[test]
    fn missing_data_follows_the_treat_missing_data_setting() {
        let none = [None, None, None];
        assert_eq!(
            evaluate(&alarm(2, 3, "missing"), &none, "OK").0,
            "INSUFFICIENT_DATA"
        );
        assert_eq!(evaluate(&alarm(2, 3, "notBreaching"), &none, "ALARM").0, "OK");
        assert_eq!(evaluate(&alarm(2, 3, "breaching"), &none, "OK").0, "ALARM");
        assert_eq!(evaluate(&alarm(2, 3, "ignore"), &none, "ALARM").0, "ALARM");
    }

    #[test]
    fn statistics_are_computed_like_cloudwatch() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(statistic("Sum", &v), Some(10.0));
        assert_eq!(statistic("Average", &v), Some(2.5));
        assert_eq!(statistic("Maximum", &v), Some(4.0));
        assert_eq!(statistic("Minimum", &v), Some(1.0));
        assert_eq!(statistic("SampleCount", &v), Some(4.0));
        assert_eq!(statistic("p50", &v), Some(2.0));
        assert_eq!(statistic("p99", &v), Some(4.0));
        assert_eq!(statistic("Sum", &[]), None);
    }
}
