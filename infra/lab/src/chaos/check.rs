//! The invariants a history must keep, as pure functions over what the lab recorded: the
//! datastore's history, every write of where writers point (Route 53's change log or the ARC
//! cluster's), every datastore read with the answer it got, and every invocation with its audit
//! record. Requests are tied to the invocation that made them by its X-Ray trace header, which the
//! AWS SDK sends on every call (see `lambda::InvocationRecord::trace_id`).

use serde::Serialize;
use serde_json::Value;

use crate::GdsChange;

/// A write that moved (or kept) writers somewhere: a Route 53 change of the writer record, or an
/// ARC routing-control update.
#[derive(Debug, Clone, Serialize)]
pub struct Write {
    /// When the service received it, and when it applied it (later on a slow endpoint).
    pub received_ms: u64,
    pub applied_ms: u64,
    pub trace: Option<String>,
    /// The member Region it pointed writers at (`None`: none, or an endpoint outside the datastore).
    pub to: Option<String>,
}

/// A `DescribeGlobalReplicationGroups` and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct Read {
    pub at_ms: u64,
    pub trace: Option<String>,
    pub status: String,
    pub primary: String,
}

/// One invocation attempt, with what its audit record said.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub request_id: String,
    pub trace: String,
    pub function: String,
    pub region: String,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// The Lambda result: true for a response, false for an error.
    pub ok: bool,
    /// The audit record's `outcome`, when there is one.
    pub outcome: Option<String>,
}

/// A broken invariant, named, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Safety: every write pointed writers at the member that was the sole PRIMARY of an `available`
/// datastore in the last read its invocation made before sending it. A write no invocation can be
/// tied to, or one sent without such a read, breaks it too.
pub fn safety(writes: &[Write], reads: &[Read]) -> Vec<Violation> {
    let mut out = Vec::new();
    for w in writes {
        let Some(trace) = &w.trace else {
            out.push(violation(
                "safety",
                format!(
                    "a write received at {} ms carried no trace: no invocation made it",
                    w.received_ms
                ),
            ));
            continue;
        };
        let last = reads
            .iter()
            .filter(|r| r.trace.as_ref() == Some(trace) && r.at_ms <= w.received_ms)
            .max_by_key(|r| r.at_ms);
        match (last, &w.to) {
            (None, _) => out.push(violation(
                "safety",
                format!(
                    "the write received at {} ms ({trace}) was sent without reading the datastore first",
                    w.received_ms
                ),
            )),
            (Some(r), to) if r.status != "available" || to.as_deref() != Some(r.primary.as_str()) => {
                out.push(violation(
                    "safety",
                    format!(
                        "the write received at {} ms ({trace}) pointed writers at {} but its last read \
                         ({} ms) said {} with {} PRIMARY",
                        w.received_ms,
                        to.as_deref().unwrap_or("no member"),
                        r.at_ms,
                        r.status,
                        r.primary
                    ),
                ));
            }
            _ => {}
        }
    }
    out
}

/// The datastore's state at `at_ms`: its last change at or before then.
pub fn datastore_at(gds: &[GdsChange], at_ms: u64) -> Option<&GdsChange> {
    gds.iter().filter(|c| c.at_ms <= at_ms).max_by_key(|c| c.at_ms)
}

/// Whether an invocation's outcome promised writers on the primary: it read the datastore and
/// ended `switched` or `no_op` (not ignored, a status report, a dry run, or a failure).
fn promised(run: &Run) -> bool {
    run.ok && matches!(run.outcome.as_deref(), Some("switched" | "no_op"))
}

/// Convergence, checked at a quiet moment `at_ms` (no invocation queued or running) where writers
/// point at `writers`: if an invocation that started after the datastore last settled returned
/// success, writers are on the settled primary — with no further trigger needed.
pub fn convergence(at_ms: u64, gds: &[GdsChange], runs: &[Run], writers: Option<&str>) -> Option<Violation> {
    let settled = datastore_at(gds, at_ms)?;
    if settled.status != "available" {
        return None;
    }
    let promise = runs
        .iter()
        .filter(|r| {
            r.started_ms.is_some_and(|s| s >= settled.at_ms) && r.finished_ms.is_some_and(|f| f <= at_ms)
        })
        .find(|r| promised(r))?;
    (writers != Some(settled.primary.as_str())).then(|| {
        violation(
            "convergence",
            format!(
                "at {at_ms} ms writers point at {} though the datastore settled on {} at {} ms and {} \
                 ({} in {}) started after that and returned {}",
                writers.unwrap_or("no member"),
                settled.primary,
                settled.at_ms,
                promise.request_id,
                promise.function,
                promise.region,
                promise.outcome.as_deref().unwrap_or("?")
            ),
        )
    })
}

/// Evidence: every attempt finished and left exactly one well-formed audit record (its
/// `request_id`, an `outcome`, one entry per trigger with its own `outcome`), and no function
/// process exited. `exited` is (function, how) for every process that ended.
pub fn evidence(runs: &[Run], audits: &[Value], exited: &[(String, String)]) -> Vec<Violation> {
    let mut out: Vec<Violation> = exited
        .iter()
        .map(|(f, how)| violation("evidence", format!("the {f} process exited: {how}")))
        .collect();
    for run in runs {
        if run.finished_ms.is_none() {
            out.push(violation(
                "evidence",
                format!("{} ({}) never finished", run.request_id, run.function),
            ));
            continue;
        }
        let records: Vec<&Value> = audits
            .iter()
            .filter(|a| a["request_id"].as_str() == Some(run.request_id.as_str()))
            .collect();
        match records.as_slice() {
            [a] => {
                let well_formed = a["audit"].as_str() == Some(run.function.as_str())
                    && a["outcome"].is_string()
                    && a["duration_ms"].is_u64()
                    && a["triggers"]
                        .as_array()
                        .is_some_and(|ts| ts.iter().all(|t| t["outcome"].is_string()));
                if !well_formed {
                    out.push(violation(
                        "evidence",
                        format!("{}'s audit record is malformed: {a}", run.request_id),
                    ));
                }
            }
            other => out.push(violation(
                "evidence",
                format!("{} left {} audit records, not one", run.request_id, other.len()),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gds(changes: &[(u64, &str, &str)]) -> Vec<GdsChange> {
        changes
            .iter()
            .map(|(at, status, primary)| GdsChange {
                at_ms: *at,
                status: (*status).to_owned(),
                primary: (*primary).to_owned(),
            })
            .collect()
    }

    fn read(at: u64, trace: &str, status: &str, primary: &str) -> Read {
        Read {
            at_ms: at,
            trace: Some(trace.to_owned()),
            status: status.to_owned(),
            primary: primary.to_owned(),
        }
    }

    fn write(at: u64, trace: &str, to: &str) -> Write {
        Write {
            received_ms: at,
            applied_ms: at,
            trace: Some(trace.to_owned()),
            to: Some(to.to_owned()),
        }
    }

    fn run(id: &str, started: u64, finished: u64, outcome: &str) -> Run {
        Run {
            request_id: id.to_owned(),
            trace: format!("t-{id}"),
            function: "traffic-switch".into(),
            region: "us-west-2".into(),
            started_ms: Some(started),
            finished_ms: Some(finished),
            ok: outcome != "failed",
            outcome: Some(outcome.to_owned()),
        }
    }

    #[test]
    fn a_write_to_the_member_its_last_read_called_primary_is_safe() {
        let reads = [read(10, "a", "available", "us-west-2")];
        assert!(safety(&[write(20, "a", "us-west-2")], &reads).is_empty());
    }

    #[test]
    fn a_write_elsewhere_or_after_a_modifying_read_or_with_no_read_or_no_trace_is_not() {
        let reads = [
            read(10, "a", "available", "us-west-2"),
            read(30, "b", "modifying", "us-west-1"),
        ];
        assert_eq!(safety(&[write(20, "a", "us-west-1")], &reads).len(), 1);
        assert_eq!(safety(&[write(40, "b", "us-west-1")], &reads).len(), 1);
        assert_eq!(
            safety(&[write(5, "a", "us-west-2")], &reads).len(),
            1,
            "read after the write"
        );
        let anonymous = Write {
            trace: None,
            ..write(50, "x", "us-west-2")
        };
        assert_eq!(safety(&[anonymous], &reads).len(), 1);
    }

    #[test]
    fn only_the_last_read_before_the_write_counts() {
        // The invocation read usw2 primary, then usw1 primary (a failback), then wrote usw2: the
        // older view must not excuse the write.
        let reads = [
            read(10, "a", "available", "us-west-2"),
            read(20, "a", "available", "us-west-1"),
        ];
        assert_eq!(safety(&[write(30, "a", "us-west-2")], &reads).len(), 1);
    }

    #[test]
    fn a_success_after_the_datastore_settled_promises_writers_on_its_primary() {
        let history = gds(&[
            (0, "available", "us-west-1"),
            (100, "modifying", "us-west-1"),
            (200, "available", "us-west-2"),
        ]);
        let runs = [run("r1", 250, 300, "no_op")];
        assert!(convergence(400, &history, &runs, Some("us-west-2")).is_none());
        let v = convergence(400, &history, &runs, Some("us-west-1")).expect("stale writers");
        assert!(v.detail.contains("r1"), "{}", v.detail);
        assert!(convergence(400, &history, &runs, None).is_some());
    }

    #[test]
    fn no_promise_is_made_by_a_run_that_started_before_the_settle_or_failed_or_only_reported() {
        let history = gds(&[
            (0, "available", "us-west-1"),
            (100, "modifying", "us-west-1"),
            (200, "available", "us-west-2"),
        ]);
        for runs in [
            vec![run("early", 150, 300, "switched")],
            vec![run("failed", 250, 300, "failed")],
            vec![run("status", 250, 300, "reported")],
            vec![run("ignored", 250, 300, "ignored")],
            vec![run("later", 250, 500, "switched")],
        ] {
            assert!(
                convergence(400, &history, &runs, Some("us-west-1")).is_none(),
                "{runs:?}"
            );
        }
        // While the datastore is changing, nothing is promised.
        let moving = gds(&[(0, "available", "us-west-1"), (300, "modifying", "us-west-1")]);
        assert!(convergence(400, &moving, &[run("r", 10, 20, "no_op")], Some("us-west-2")).is_none());
    }

    #[test]
    fn every_finished_run_needs_exactly_one_well_formed_audit_and_no_process_may_exit() {
        let runs = [run("r1", 0, 10, "no_op")];
        let good = json!({"audit": "traffic-switch", "request_id": "r1", "outcome": "no_op", "duration_ms": 3,
            "triggers": [{"outcome": "no_op"}]});
        assert!(evidence(&runs, std::slice::from_ref(&good), &[]).is_empty());
        assert_eq!(evidence(&runs, &[], &[]).len(), 1, "missing");
        assert_eq!(
            evidence(&runs, &[good.clone(), good.clone()], &[]).len(),
            1,
            "twice"
        );
        let bad = json!({"audit": "traffic-switch", "request_id": "r1", "outcome": "no_op", "triggers": "x"});
        assert_eq!(evidence(&runs, &[bad], &[]).len(), 1, "malformed");
        let crashed = [("traffic-switch".to_owned(), "signal: 6 (SIGABRT)".to_owned())];
        assert_eq!(evidence(&runs, &[good], &crashed).len(), 1);
        let unfinished = Run {
            finished_ms: None,
            ..run("r2", 0, 0, "no_op")
        };
        assert_eq!(evidence(&[unfinished], &[], &[]).len(), 1);
    }
}
