//! The evidence each invocation leaves: one JSON line that is both the audit record and a
//! CloudWatch embedded-metric-format (EMF) document, so metrics cost no API call and every metric
//! data point links back to the decision that produced it.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// How an invocation (or one trigger of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The trigger was not one to act on; AWS was not read.
    Ignored,
    /// AWS was read; nothing needed changing.
    NoOp,
    /// Read-only report (status command).
    Reported,
    /// A dry run: the change that would have been made is in the record.
    DryRun,
    /// Writers were moved.
    Switched,
    /// Something failed or was refused; see `error`.
    Failed,
}

/// A Lambda error response in the making: a short type and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    pub error_type: String,
    pub message: String,
}

/// A function's error, as its audit record and its Lambda error response name it.
pub trait ReportsError: std::fmt::Display {
    /// A short, stable name for the kind of failure (the Lambda `errorType`).
    fn error_type(&self) -> &'static str;

    fn report(&self) -> ErrorReport {
        ErrorReport {
            error_type: self.error_type().to_owned(),
            message: self.to_string(),
        }
    }
}

/// Metric names, shared by the dashboard in `infra/` and the drills.
pub mod metrics {
    pub const SWITCHES: &str = "SwitchesPerformed";
    pub const NO_OPS: &str = "NoOps";
    pub const FAILURES: &str = "Failures";
    pub const DURATION: &str = "DurationMs";
    /// Scheduled reconciles that found writers off the primary and moved them: each is an event
    /// that went missing, or a failover an event did not finish.
    pub const REPAIRS: &str = "Repairs";
    /// 1 when a readiness check (`preflight`) found no FAIL, 0 when it did; published only by
    /// readiness checks (the hourly schedule), so its alarm watches readiness, not traffic.
    pub const READY: &str = "Ready";
}

/// Counts per outcome: what the EMF metrics report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub switched: u32,
    pub no_op: u32,
    pub failed: u32,
    /// Of the switches, those a scheduled reconcile made (a repair).
    pub repaired: u32,
    /// A readiness check ran: whether every item passed or warned (the `Ready` metric).
    pub ready: Option<bool>,
}

impl Tally {
    pub fn of(outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        outcomes.into_iter().fold(Self::default(), |mut t, o| {
            match o {
                Outcome::Switched => t.switched += 1,
                Outcome::Failed => t.failed += 1,
                Outcome::Ignored | Outcome::NoOp | Outcome::Reported | Outcome::DryRun => t.no_op += 1,
            }
            t
        })
    }
}

impl Tally {
    /// The tally of a whole invocation: one failure when it failed before any trigger did (a bad
    /// event), otherwise one count per trigger outcome.
    pub fn for_invocation(failed: bool, outcomes: &[Outcome]) -> Self {
        if failed && !outcomes.contains(&Outcome::Failed) {
            Self {
                failed: 1,
                ..Self::default()
            }
        } else {
            Self::of(outcomes.iter().copied())
        }
    }
}

/// The Unix time in ms of `t` (0 before 1970), for EMF timestamps and Lambda deadlines.
pub fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What a per-trigger report must tell the invocation record.
pub trait HasOutcome {
    fn outcome(&self) -> Outcome;

    /// Whether this trigger repaired writers left off the primary (a scheduled reconcile).
    fn repaired(&self) -> bool {
        false
    }

    /// A readiness check's verdict, when this trigger was one.
    fn ready(&self) -> Option<bool> {
        None
    }
}

/// The audit record of one invocation, for any function: the fields every function shares, its
/// own (`extra`, flattened) and its per-trigger reports. Written as one JSON/EMF line and returned
/// as the invocation's response, so a console user sees exactly what the logs keep.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<T, X> {
    pub audit: &'static str,
    pub request_id: String,
    pub function_region: String,
    pub global_datastore: String,
    #[serde(flatten)]
    pub extra: X,
    pub outcome: Outcome,
    pub triggers: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    pub duration_ms: u64,
}

impl<T: Serialize + HasOutcome, X: Serialize> AuditRecord<T, X> {
    pub fn new(
        function: &'static str,
        request_id: &str,
        function_region: String,
        global_datastore: String,
        extra: X,
    ) -> Self {
        Self {
            audit: function,
            request_id: request_id.to_owned(),
            function_region,
            global_datastore,
            extra,
            outcome: Outcome::Failed,
            triggers: Vec::new(),
            error: None,
            duration_ms: 0,
        }
    }

    /// Records how the invocation ended: the highest trigger outcome, or the error.
    pub fn finish(&mut self, duration_ms: u64, error: Option<ErrorReport>) {
        self.duration_ms = duration_ms;
        self.outcome = match &error {
            Some(_) => Outcome::Failed,
            None => self
                .triggers
                .iter()
                .map(HasOutcome::outcome)
                .max()
                .unwrap_or(Outcome::Ignored),
        };
        self.error = error;
    }

    /// Ends the invocation: an error is logged and recorded; success returns the record itself,
    /// which is the invocation's response.
    pub fn close<E: ReportsError>(&mut self, duration_ms: u64, result: Result<(), E>) -> Result<Value, E> {
        if let Err(e) = &result {
            tracing::error!(error = %e, error_type = e.error_type(), "invocation failed");
        }
        self.finish(duration_ms, result.as_ref().err().map(ReportsError::report));
        result.map(|()| serde_json::to_value(&*self).unwrap_or(Value::Null))
    }

    /// The EMF line for this record, stamped `timestamp_ms`.
    pub fn emf_line(&self, namespace: &str, timestamp_ms: i64) -> String {
        let outcomes: Vec<Outcome> = self.triggers.iter().map(HasOutcome::outcome).collect();
        let tally = Tally {
            repaired: u32::try_from(self.triggers.iter().filter(|t| t.repaired()).count())
                .unwrap_or(u32::MAX),
            ready: self
                .triggers
                .iter()
                .filter_map(HasOutcome::ready)
                .reduce(|a, b| a && b),
            ..Tally::for_invocation(self.error.is_some(), &outcomes)
        };
        emf_line(
            self,
            namespace,
            &[
                ("Function", self.audit),
                ("GlobalDatastore", &self.global_datastore),
            ],
            tally,
            self.duration_ms,
            timestamp_ms,
        )
    }
}

/// Renders `record` (any serialisable audit record, which must serialise to a JSON object) as one
/// EMF line: the record's fields, plus the metric values and the `_aws` metadata that tells
/// CloudWatch which fields are metrics. `timestamp_ms` is the invocation's end, in Unix ms.
pub fn emf_line<T: Serialize>(
    record: &T,
    namespace: &str,
    dimensions: &[(&str, &str)],
    tally: Tally,
    duration_ms: u64,
    timestamp_ms: i64,
) -> String {
    let mut obj = match serde_json::to_value(record) {
        Ok(Value::Object(m)) => m,
        Ok(other) => Map::from_iter([("record".to_owned(), other)]),
        Err(e) => Map::from_iter([("record_error".to_owned(), Value::String(e.to_string()))]),
    };
    for (k, v) in dimensions {
        obj.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    obj.insert(metrics::SWITCHES.to_owned(), json!(tally.switched));
    obj.insert(metrics::NO_OPS.to_owned(), json!(tally.no_op));
    obj.insert(metrics::FAILURES.to_owned(), json!(tally.failed));
    obj.insert(metrics::DURATION.to_owned(), json!(duration_ms));
    obj.insert(metrics::REPAIRS.to_owned(), json!(tally.repaired));
    let mut declared = vec![
        json!({"Name": metrics::SWITCHES, "Unit": "Count"}),
        json!({"Name": metrics::NO_OPS, "Unit": "Count"}),
        json!({"Name": metrics::FAILURES, "Unit": "Count"}),
        json!({"Name": metrics::DURATION, "Unit": "Milliseconds"}),
        json!({"Name": metrics::REPAIRS, "Unit": "Count"}),
    ];
    // Only a readiness check reports readiness: other invocations leave the metric alone.
    if let Some(ready) = tally.ready {
        obj.insert(metrics::READY.to_owned(), json!(u8::from(ready)));
        declared.push(json!({"Name": metrics::READY, "Unit": "Count"}));
    }
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    obj.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dims],
                "Metrics": declared
            }]
        }),
    );
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emf_line_declares_every_metric_it_carries_and_keeps_the_record() {
        #[derive(Serialize)]
        struct R {
            outcome: Outcome,
            reason: &'static str,
        }
        let line = emf_line(
            &R {
                outcome: Outcome::Switched,
                reason: "promoted",
            },
            "ValkeyFailover",
            &[
                ("Function", "traffic-switch"),
                ("GlobalDatastore", "ldgnf-sessions"),
            ],
            Tally::of([Outcome::Switched, Outcome::Ignored]),
            42,
            1_700_000_000_000,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["outcome"], "switched");
        assert_eq!(v["reason"], "promoted");
        assert_eq!(v["SwitchesPerformed"], 1);
        assert_eq!(v["NoOps"], 1);
        assert_eq!(v["Failures"], 0);
        assert_eq!(v["DurationMs"], 42);
        assert_eq!(v["Function"], "traffic-switch");
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "ValkeyFailover");
        assert_eq!(cw["Dimensions"][0], json!(["Function", "GlobalDatastore"]));
        for m in cw["Metrics"].as_array().expect("metrics") {
            let name = m["Name"].as_str().expect("name");
            assert!(v.get(name).is_some(), "metric {name} declared but missing");
        }
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }

    #[test]
    fn an_invocation_that_failed_before_any_trigger_counts_one_failure() {
        assert_eq!(Tally::for_invocation(true, &[]).failed, 1);
        assert_eq!(
            Tally::for_invocation(true, &[Outcome::Failed, Outcome::Failed]).failed,
            2
        );
        assert_eq!(Tally::for_invocation(false, &[Outcome::Switched]).switched, 1);
    }

    #[test]
    fn tally_counts_failures_switches_and_everything_else_as_no_ops() {
        let t = Tally::of([
            Outcome::Failed,
            Outcome::DryRun,
            Outcome::Reported,
            Outcome::NoOp,
            Outcome::Switched,
        ]);
        assert_eq!(
            t,
            Tally {
                switched: 1,
                no_op: 3,
                failed: 1,
                repaired: 0,
                ready: None,
            }
        );
    }

    #[test]
    fn only_a_readiness_check_publishes_the_ready_metric_as_one_or_zero() {
        let line = |ready| {
            let v: Value = serde_json::from_str(&emf_line(
                &json!({}),
                "ValkeyFailover",
                &[("Function", "promoter")],
                Tally {
                    ready,
                    ..Tally::of([Outcome::Reported])
                },
                1,
                1,
            ))
            .expect("one JSON object");
            let declared = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .any(|m| m["Name"] == metrics::READY);
            (v.get(metrics::READY).cloned(), declared)
        };
        assert_eq!(line(Some(true)), (Some(json!(1)), true));
        assert_eq!(line(Some(false)), (Some(json!(0)), true));
        assert_eq!(line(None), (None, false));
    }
}
