//! The traffic switch: glue between the Lambda runtime, the pure decisions in
//! [`failover_core::switch`] and the AWS adapters. It owns no decision of its own.
//!
//! Per invocation: parse the event into triggers, triage every trigger (bad commands fail the
//! whole invocation before anything is read), then for each trigger worth acting on, observe
//! (where writers point first, then the Global Datastore), decide, act, and observe again — after
//! a wait, after a conflict, and after every write, until an observation finds writers on the
//! primary. A trigger succeeds only on such an observation. One audit/EMF line is written per
//! invocation.

// No panics on handler paths (release builds abort on panic): enforced, not promised.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![warn(unreachable_pub)]

use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use failover_core::audit::{self, ErrorReport, Outcome, ReportsError};
use failover_core::aws::arc::{ArcCluster, ArcFailure};
use failover_core::aws::elasticache::ElastiCache;
use failover_core::aws::route53::{ChangeError, ReadRecord, Route53};
use failover_core::aws::sns::Sns;
use failover_core::command::CommandRejected;
use failover_core::config::{Routing, RoutingMode, SwitchConfig};
use failover_core::fault::AwsFault;
use failover_core::ids::Region;
use failover_core::intake::{self, IntakeError, Trigger};
use failover_core::observed::{ControlsView, Observed};
use failover_core::preflight::Checklist;
use failover_core::retry::{Budget, Deadline, Done, RetryPolicy};
use failover_core::switch::{self, ControlFlip, Intent, Plan, StatusReport, SwitchCommand, Triage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

mod preflight;

pub const FUNCTION: &str = "traffic-switch";

/// How many times writers' routing may move under us while handling one trigger (a conflicting
/// change, or a write the next observation found already out of date) before we stop and report.
const MAX_MOVES: u32 = 3;

/// Why an invocation failed. Each variant becomes the Lambda error response's `errorType`.
#[derive(Debug, Error)]
pub enum SwitchError {
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] IntakeError),
    #[error("invalid command: {0}")]
    InvalidCommand(#[from] CommandRejected),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Aws(#[from] AwsFault),
    #[error("Global Datastore still changing at the deadline: {0}")]
    NotStable(String),
    #[error(
        "where writers point changed under us {0} times; another switch, or the datastore, is moving faster than this one can follow"
    )]
    RecordKeptChanging(u32),
    #[error("safety rule: {0}")]
    SafetyRuleRejected(String),
    #[error("ARC kept answering \"conflict, try again\" until the deadline: {0}")]
    ArcConflict(String),
    #[error("{0}")]
    ArcUnreachable(String),
}

impl From<ArcFailure> for SwitchError {
    fn from(f: ArcFailure) -> Self {
        match &f {
            ArcFailure::Rejected { fault, .. }
                if fault.is_code("ConflictException")
                    && failover_core::aws::arc::names_safety_rule(&fault.message) =>
            {
                SwitchError::SafetyRuleRejected(f.to_string())
            }
            // ARC's generic "conflict, try again" (a control's wait period, concurrent changes).
            ArcFailure::Rejected { fault, .. } if fault.is_code("ConflictException") => {
                SwitchError::ArcConflict(f.to_string())
            }
            ArcFailure::Rejected { fault, .. } => SwitchError::Aws(fault.clone()),
            ArcFailure::Unreachable { .. } => SwitchError::ArcUnreachable(f.to_string()),
        }
    }
}

impl ReportsError for SwitchError {
    fn error_type(&self) -> &'static str {
        match self {
            SwitchError::InvalidEvent(_) => "InvalidEvent",
            SwitchError::InvalidCommand(_) => "InvalidCommand",
            SwitchError::Refused(_) => "Refused",
            SwitchError::Aws(_) => "AwsFault",
            SwitchError::NotStable(_) => "DatastoreNotStable",
            SwitchError::RecordKeptChanging(_) => "RecordKeptChanging",
            SwitchError::SafetyRuleRejected(_) => "SafetyRuleRejected",
            SwitchError::ArcConflict(_) => "ArcConflict",
            SwitchError::ArcUnreachable(_) => "ArcUnreachable",
        }
    }
}

impl From<SwitchError> for Diagnostic {
    fn from(e: SwitchError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// One AWS call made while handling a trigger.
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub action: &'static str,
    /// When the call started (Unix ms): the order of reads and writes is part of the evidence.
    pub started_at_ms: u64,
    pub ok: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

impl ActionReport {
    /// The report of a retried call that started at `started` and returned `result`.
    fn of<T>(
        action: &'static str,
        result: &Result<Done<T>, AwsFault>,
        started: Started,
        detail: Value,
    ) -> Self {
        Self {
            action,
            started_at_ms: started.epoch_ms,
            ok: result.is_ok(),
            attempts: result.as_ref().map_or_else(|f| f.attempts, |d| d.attempts),
            duration_ms: millis(started.at.elapsed()),
            detail,
        }
    }

    /// The report of an ARC call (rotating through the cluster's endpoints).
    fn arc<T>(
        action: &'static str,
        result: &Result<failover_core::aws::arc::Answered<T>, ArcFailure>,
        started: Started,
    ) -> Self {
        Self {
            action,
            started_at_ms: started.epoch_ms,
            ok: result.is_ok(),
            attempts: result.as_ref().map_or_else(ArcFailure::attempts, |a| a.attempts),
            duration_ms: millis(started.at.elapsed()),
            detail: serde_json::json!({
                "answered_by": result.as_ref().ok().map(|a| &a.endpoint),
                "failed_endpoints": result.as_ref().map_or_else(|f| f.failed().to_vec(), |a| a.failed.clone()),
            }),
        }
    }
}

/// When a call started, by the monotonic clock (for its duration) and the wall clock (for the
/// evidence).
#[derive(Clone, Copy)]
struct Started {
    at: Instant,
    epoch_ms: u64,
}

impl Started {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            epoch_ms: audit::epoch_ms(SystemTime::now()),
        }
    }
}

/// A write given up on without an answer: the service may have applied it, or may still apply it
/// after this invocation moved on.
#[derive(Debug, Clone, Serialize)]
pub struct AbandonedWrite {
    pub action: &'static str,
    /// The Region it would point writers at.
    pub target: String,
    /// Attempts of the call that were cut off or lost their answer.
    pub abandoned_attempts: u32,
}

/// What became of this trigger's abandoned writes before the invocation ended.
#[derive(Debug, Clone, Serialize)]
pub struct LateLanding {
    /// How long after the observation that found writers on the primary it looked again (`None`:
    /// it could not, the deadline being too near, or the trigger failed first).
    pub checked_again_after_ms: Option<u64>,
    /// True when an abandoned write may still be applied after this invocation: the next trigger
    /// (or the scheduled reconcile) is then what corrects it.
    pub may_still_land: bool,
}

/// What happened to one trigger.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerReport {
    pub trigger: Value,
    pub triage: Option<Triage>,
    /// Every observation made, in order (more than one after a wait or a conflict).
    pub observed: Vec<Observed>,
    /// The plan made from each observation.
    pub decisions: Vec<Plan>,
    pub actions: Vec<ActionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    /// The readiness checklist (`preflight` command, or the hourly schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Checklist>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_after: Option<String>,
    /// arc mode: each member Region's control, On?, before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controls_before: Option<std::collections::BTreeMap<String, bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controls_after: Option<std::collections::BTreeMap<String, bool>>,
    /// Writes given up on without an answer (see [`AbandonedWrite`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub abandoned_writes: Vec<AbandonedWrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_landing: Option<LateLanding>,
    /// Why the outcome is `switched` though the last change call did not succeed: an earlier
    /// attempt of it, whose answer was lost, was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// A scheduled reconcile found writers off the primary and moved them: an event went
    /// missing, or a trigger did not finish. Counted in the `Repairs` metric.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repaired: bool,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    pub duration_ms: u64,
}

impl TriggerReport {
    fn new(trigger: Value, triage: Option<Triage>) -> Self {
        Self {
            trigger,
            triage,
            observed: Vec::new(),
            decisions: Vec::new(),
            actions: Vec::new(),
            status: None,
            preflight: None,
            record_before: None,
            record_after: None,
            controls_before: None,
            controls_after: None,
            abandoned_writes: Vec::new(),
            late_landing: None,
            attribution: None,
            repaired: false,
            outcome: Outcome::Ignored,
            error: None,
            duration_ms: 0,
        }
    }
}

/// What the traffic switch adds to the shared audit record.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchAudit {
    pub mode: RoutingMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_name: Option<String>,
}

impl audit::HasOutcome for TriggerReport {
    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn repaired(&self) -> bool {
        self.repaired
    }

    fn ready(&self) -> Option<bool> {
        self.preflight.as_ref().map(|p| p.ready)
    }
}

/// The traffic switch's audit record: one per invocation.
pub type AuditRecord = audit::AuditRecord<TriggerReport, SwitchAudit>;

/// An invocation's audit record and its result.
#[derive(Debug)]
pub struct Invocation {
    pub audit: AuditRecord,
    pub result: Result<Value, SwitchError>,
}

/// The traffic switch, built once at start-up.
#[derive(Debug, Clone)]
pub struct TrafficSwitch {
    pub cfg: SwitchConfig,
    pub elasticache: ElastiCache,
    pub route53: Route53,
    /// arc mode: the cluster's endpoints, one client each.
    pub arc: Option<ArcCluster>,
    /// The readiness check's reads: ElastiCache in each member Region (a group's notification
    /// topic is read where the group lives) and SNS here.
    pub regional: Vec<(String, ElastiCache)>,
    pub sns: Option<Sns>,
    pub retry: RetryPolicy,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TrafficSwitch {
    /// Builds the SDK clients from one shared configuration.
    pub fn new(cfg: SwitchConfig, sdk: &SdkConfig) -> Self {
        let arc = match &cfg.routing {
            Routing::Arc(target) => Some(ArcCluster::new(sdk, target)),
            Routing::Dns(_) => None,
        };
        let regional = cfg
            .datastore
            .members
            .iter()
            .map(|m| {
                let conf = aws_sdk_elasticache::config::Builder::from(sdk)
                    .region(aws_sdk_elasticache::config::Region::new(m.region.to_string()))
                    .build();
                (
                    m.region.to_string(),
                    ElastiCache::new(aws_sdk_elasticache::Client::from_conf(conf)),
                )
            })
            .collect();
        let mut switch = Self::with_clients(
            cfg,
            aws_sdk_elasticache::Client::new(sdk),
            aws_sdk_route53::Client::new(sdk),
        );
        switch.arc = arc;
        switch.regional = regional;
        switch.sns = Some(Sns::new(aws_sdk_sns::Client::new(sdk)));
        switch
    }

    /// arc mode with given (e.g. mocked) endpoint clients.
    pub fn with_arc(mut self, arc: ArcCluster) -> Self {
        self.arc = Some(arc);
        self
    }

    pub fn with_clients(
        cfg: SwitchConfig,
        elasticache: aws_sdk_elasticache::Client,
        route53: aws_sdk_route53::Client,
    ) -> Self {
        Self {
            cfg,
            elasticache: ElastiCache::new(elasticache),
            route53: Route53::new(route53),
            arc: None,
            regional: Vec::new(),
            sns: None,
            retry: RetryPolicy::default(),
        }
    }

    /// The deadline for an invocation whose Lambda deadline is `deadline_epoch_ms`, less the
    /// configured margin. A zero deadline (some local runners) gets 30 s.
    pub fn deadline_for(&self, deadline_epoch_ms: u64) -> Deadline {
        Deadline::from_lambda(
            deadline_epoch_ms,
            audit::epoch_ms(SystemTime::now()),
            self.cfg.deadline_margin,
        )
    }

    /// The Lambda entry point: handles the event, writes the audit/EMF line to stdout, returns the
    /// audit record as the response or the error as the Lambda error response.
    pub async fn lambda_handler(&self, event: LambdaEvent<Box<RawValue>>) -> Result<Value, SwitchError> {
        let deadline = self.deadline_for(event.context.deadline);
        let inv = self
            .handle(event.payload.get(), &event.context.request_id, deadline)
            .await;
        let now_ms = i64::try_from(audit::epoch_ms(SystemTime::now())).unwrap_or(i64::MAX);
        println!("{}", inv.audit.emf_line(&self.cfg.metrics_namespace, now_ms));
        inv.result
    }

    /// Handles one raw event. Never panics; every failure is in `result` and in the audit record.
    pub async fn handle(&self, raw: &str, request_id: &str, deadline: Deadline) -> Invocation {
        let started = Instant::now();
        let mut audit = AuditRecord::new(
            FUNCTION,
            request_id,
            self.cfg.function_region.to_string(),
            self.cfg.datastore.id.to_string(),
            SwitchAudit {
                mode: self.cfg.mode(),
                record_name: match &self.cfg.routing {
                    Routing::Dns(dns) => Some(dns.record_name.to_string()),
                    Routing::Arc(_) => None,
                },
            },
        );
        let result = self.handle_into(raw, deadline, &mut audit).await;
        let result = audit.close(millis(started.elapsed()), result);
        Invocation { audit, result }
    }

    async fn handle_into(
        &self,
        raw: &str,
        deadline: Deadline,
        audit: &mut AuditRecord,
    ) -> Result<(), SwitchError> {
        let triggers = intake::parse_event::<SwitchCommand>(raw)?;
        // Triage everything first: a rejected command fails the invocation before any AWS call.
        let triaged: Vec<(Trigger<SwitchCommand>, Triage)> = triggers
            .into_iter()
            .map(|t| switch::triage(&t, &self.cfg).map(|tr| (t, tr)))
            .collect::<Result<_, _>>()?;
        let mut first_error = None;
        for (trigger, triage) in triaged {
            let started = Instant::now();
            let mut report = TriggerReport::new(
                serde_json::to_value(&trigger).unwrap_or(Value::Null),
                Some(triage.clone()),
            );
            let result = match triage {
                Triage::Ignore { reason } => {
                    tracing::info!(%reason, "trigger ignored");
                    Ok(Outcome::Ignored)
                }
                Triage::Act(Intent::Status) => self.status(deadline, &mut report).await,
                Triage::Act(Intent::Preflight) => {
                    report.preflight = Some(self.preflight(deadline).await);
                    Ok(Outcome::Reported)
                }
                Triage::Act(intent) => {
                    let result = self.act(&intent, deadline, &mut report).await;
                    if matches!(intent, Intent::Reconcile { .. }) && matches!(result, Ok(Outcome::Switched)) {
                        tracing::warn!(
                            "reconcile repaired writers left off the primary: an event was lost or a trigger did not finish"
                        );
                        report.repaired = true;
                    }
                    result
                }
            };
            report.duration_ms = millis(started.elapsed());
            match result {
                Ok(outcome) => report.outcome = outcome,
                Err(e) => {
                    report.outcome = Outcome::Failed;
                    report.error = Some(e.report());
                    first_error.get_or_insert(e);
                }
            }
            tracing::info!(outcome = ?report.outcome, decision = ?report.decisions.last().map(Plan::reason), "trigger handled");
            audit.triggers.push(report);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn budget(&self, deadline: Deadline) -> Budget {
        Budget {
            policy: self.retry,
            deadline,
        }
    }

    /// Reads where writers point, then the Global Datastore — in that order, never concurrently.
    ///
    /// The write that follows is conditional on the writers' read (dns: the swap DELETEs exactly
    /// the record read) or checked against it by the next observation (arc), so the datastore view
    /// must be the newer of the two. Read the other way round, or at once, a failover landing
    /// between the reads would be absorbed into the swap's condition and the older datastore view
    /// would win.
    async fn observe(
        &self,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<(Observed, Option<ReadRecord>), SwitchError> {
        let budget = self.budget(deadline);
        let (observed, raw) = match &self.cfg.routing {
            Routing::Dns(dns) => {
                let started = Started::now();
                let rec = self.route53.read_record(dns, &budget).await;
                report.actions.push(ActionReport::of(
                    "route53.list_resource_record_sets",
                    &rec,
                    started,
                    Value::Null,
                ));
                let rec = rec?.value;
                let observed = Observed {
                    datastore: self.describe(&budget, report).await?,
                    record: rec.as_ref().map(|r| r.view.clone()),
                    controls: None,
                };
                if report.observed.is_empty() {
                    report.record_before = observed.record.as_ref().and_then(|r| r.value.clone());
                }
                report.record_after = observed.record.as_ref().and_then(|r| r.value.clone());
                (observed, rec)
            }
            Routing::Arc(arc_cfg) => {
                let cluster = self.arc_cluster()?;
                let arns: Vec<String> = arc_cfg.controls.iter().map(|(_, a)| a.clone()).collect();
                let start = rand::random_range(0..cluster.len().max(1));
                let started = Started::now();
                let states = cluster.read_states(&arns, &deadline, start).await;
                report
                    .actions
                    .push(ActionReport::arc("arc.list_routing_controls", &states, started));
                let states = states?;
                let by_region = |m: &std::collections::BTreeMap<String, bool>| -> std::collections::BTreeMap<String, bool> {
                    arc_cfg
                        .controls
                        .iter()
                        .filter_map(|(r, a)| m.get(a).map(|on| (r.to_string(), *on)))
                        .collect()
                };
                if report.observed.is_empty() {
                    report.controls_before = Some(by_region(&states.value));
                }
                report.controls_after = Some(by_region(&states.value));
                let observed = Observed {
                    datastore: self.describe(&budget, report).await?,
                    record: None,
                    controls: Some(ControlsView {
                        states: states.value,
                        read_from: states.endpoint,
                        failed: states.failed,
                    }),
                };
                (observed, None)
            }
        };
        report.observed.push(observed.clone());
        Ok((observed, raw))
    }

    async fn describe(
        &self,
        budget: &Budget,
        report: &mut TriggerReport,
    ) -> Result<failover_core::observed::DatastoreView, SwitchError> {
        let started = Started::now();
        let ds = self
            .elasticache
            .describe_datastore(&self.cfg.datastore.id, budget)
            .await;
        report.actions.push(ActionReport::of(
            "elasticache.describe_global_replication_groups",
            &ds,
            started,
            Value::Null,
        ));
        Ok(ds?.value)
    }

    fn arc_cluster(&self) -> Result<&ArcCluster, SwitchError> {
        self.arc.as_ref().ok_or_else(|| {
            SwitchError::Refused("arc mode is configured but no ARC endpoints were built".into())
        })
    }

    /// Flips the routing controls as planned. `Ok` means the cluster accepted the update.
    async fn flip(
        &self,
        flip: &ControlFlip,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<(), SwitchError> {
        let cluster = self.arc_cluster()?;
        let entries: Vec<(String, bool)> = flip.entries.iter().map(|(a, _, on)| (a.clone(), *on)).collect();
        let start = rand::random_range(0..cluster.len().max(1));
        let started = Started::now();
        let result = cluster
            .update_states(&entries, &flip.override_safety_rules, &deadline, start)
            .await;
        let mut action = ActionReport::arc("arc.update_routing_control_states", &result, started);
        action.detail = serde_json::json!({
            "answered_by": result.as_ref().ok().map(|a| &a.endpoint),
            "failed_endpoints": result.as_ref().map_or_else(|f| f.failed().to_vec(), |a| a.failed.clone()),
            "entries": flip.entries,
            "override_safety_rules": flip.override_safety_rules,
            "error": result.as_ref().err().map(ToString::to_string),
        });
        report.actions.push(action);
        let abandoned = result
            .as_ref()
            .map_or_else(ArcFailure::abandoned, |a| a.abandoned);
        if abandoned > 0 {
            report.abandoned_writes.push(AbandonedWrite {
                action: "arc.update_routing_control_states",
                target: flip.on.to_string(),
                abandoned_attempts: abandoned,
            });
        }
        result?;
        report.controls_after = Some(
            flip.entries
                .iter()
                .map(|(_, r, on)| (r.to_string(), *on))
                .collect(),
        );
        Ok(())
    }

    /// Swaps the writer CNAME as planned: `Ok(true)` when Route 53 accepted the change,
    /// `Ok(false)` when the record moved under us (a conflict: read again).
    async fn swap(
        &self,
        change: &failover_core::switch::RecordChange,
        current: Option<&ReadRecord>,
        reason: &str,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<bool, SwitchError> {
        let Routing::Dns(dns) = &self.cfg.routing else {
            return Err(SwitchError::Refused(
                "a record change was planned outside dns mode".into(),
            ));
        };
        let budget = self.budget(deadline);
        let started = Started::now();
        let comment = format!("{FUNCTION} in {}: {reason}", self.cfg.function_region);
        let result = self
            .route53
            .swap_cname(dns, current.map(|r| &r.raw), &change.to, &comment, &budget)
            .await;
        let (attempts, abandoned) = match &result {
            Ok(d) => (d.attempts, d.abandoned),
            Err(ChangeError::Conflict(f) | ChangeError::Fault(f)) => (f.attempts, f.abandoned),
        };
        report.actions.push(ActionReport {
            action: "route53.change_resource_record_sets",
            started_at_ms: started.epoch_ms,
            ok: result.is_ok(),
            attempts,
            duration_ms: millis(started.at.elapsed()),
            detail: serde_json::json!({
                "from": change.from, "to": change.to, "ttl": change.ttl,
                "receipt": result.as_ref().ok().map(|d| &d.value),
                "error": result.as_ref().err().map(ToString::to_string),
            }),
        });
        if abandoned > 0 {
            report.abandoned_writes.push(AbandonedWrite {
                action: "route53.change_resource_record_sets",
                target: change.region.to_string(),
                abandoned_attempts: abandoned,
            });
        }
        match result {
            Ok(done) => {
                report.record_after = Some(change.to.to_string());
                if dns.wait_for_insync {
                    self.wait_insync(&done.value.change_id, deadline, report).await;
                }
                Ok(true)
            }
            Err(ChangeError::Conflict(f)) => {
                tracing::warn!(error = %f, "record changed under us; reading again");
                Ok(false)
            }
            Err(ChangeError::Fault(f)) => Err(SwitchError::Aws(f)),
        }
    }

    async fn status(&self, deadline: Deadline, report: &mut TriggerReport) -> Result<Outcome, SwitchError> {
        let (observed, _) = self.observe(deadline, report).await?;
        report.status = Some(switch::status_report(&observed, &self.cfg));
        Ok(Outcome::Reported)
    }

    /// How long after writers were found on the primary to look once more when a write of this
    /// trigger was abandoned: as long again as the abandoned call was allowed to take, so a request
    /// the service held about that long is caught landing. `None` when the deadline leaves no room
    /// for the wait and one more observation.
    fn late_landing_wait(&self, deadline: Deadline) -> Option<Duration> {
        let wait = match &self.cfg.routing {
            Routing::Arc(arc) => arc.endpoint_timeout,
            Routing::Dns(_) => self.retry.attempt_timeout,
        };
        (deadline.remaining() > wait + 2 * self.retry.attempt_timeout).then_some(wait)
    }

    async fn act(
        &self,
        intent: &Intent,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<Outcome, SwitchError> {
        let result = self.converge(intent, deadline, report).await;
        if result.is_err() && !report.abandoned_writes.is_empty() {
            // The trigger failed with a write that may still be applied: the retry, or the next
            // trigger, is what will see it.
            report.late_landing = Some(LateLanding {
                checked_again_after_ms: None,
                may_still_land: true,
            });
        }
        result
    }

    /// Observes, decides and acts until an observation finds writers on the primary (or a plan
    /// refuses, or the bounds are reached). Every write is followed by another observation: a
    /// write is done only when a later read shows writers on the member that is primary then, so a
    /// failover that landed while our write was in flight is followed, not left behind.
    async fn converge(
        &self,
        intent: &Intent,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<Outcome, SwitchError> {
        let mut moves = 0;
        // Whether a write of ours was accepted, and where a write whose answer was lost pointed.
        let mut wrote = false;
        let mut lost_answer_target: Option<Region> = None;
        // How many of the abandoned writes a later look has covered.
        let mut looked_after = 0;
        loop {
            let (observed, raw) = self.observe(deadline, report).await?;
            let plan = switch::decide(intent, &observed, &self.cfg);
            tracing::info!(plan = plan.kind(), reason = plan.reason(), "decided");
            report.decisions.push(plan.clone());
            if plan.is_dry_run() {
                return Ok(Outcome::DryRun);
            }
            match plan {
                Plan::NoOp { .. } => {
                    if report.abandoned_writes.len() > looked_after {
                        looked_after = report.abandoned_writes.len();
                        if let Some(wait) = self.late_landing_wait(deadline) {
                            tracing::info!(
                                wait_ms = millis(wait),
                                "an abandoned write may still land; looking again"
                            );
                            report.late_landing = Some(LateLanding {
                                checked_again_after_ms: Some(millis(wait)),
                                may_still_land: false,
                            });
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        // No time to look again: say so.
                        report.late_landing = Some(LateLanding {
                            checked_again_after_ms: None,
                            may_still_land: true,
                        });
                    }
                    if !wrote
                        && let Some(target) = lost_answer_target.take()
                        && switch::writers_on(&observed, &self.cfg).as_ref() == Some(&target)
                    {
                        wrote = true;
                        report.attribution = Some(format!(
                            "an earlier attempt of this trigger's change to {target}, whose answer was lost, was applied: \
                             the retry found writers already there"
                        ));
                    }
                    return Ok(if wrote { Outcome::Switched } else { Outcome::NoOp });
                }
                Plan::Refuse { reason } => return Err(SwitchError::Refused(reason)),
                Plan::Wait { reason } => {
                    let poll = self.cfg.stable_poll_interval;
                    if deadline.remaining() <= poll + self.retry.attempt_timeout {
                        return Err(SwitchError::NotStable(reason));
                    }
                    tokio::time::sleep(poll).await;
                }
                Plan::Flip { flip, .. } => {
                    // A second write means the first was overtaken before we could see it hold.
                    moves += u32::from(wrote);
                    if moves >= MAX_MOVES {
                        return Err(SwitchError::RecordKeptChanging(moves));
                    }
                    match self.flip(&flip, deadline, report).await {
                        Ok(()) => wrote = true,
                        // "Conflict, try again": read again after a pause and decide again, as
                        // long as the deadline allows (the state may have moved meanwhile).
                        Err(SwitchError::ArcConflict(why)) => {
                            let poll = self.cfg.stable_poll_interval;
                            if deadline.remaining() <= poll + 2 * self.retry.attempt_timeout {
                                return Err(SwitchError::ArcConflict(why));
                            }
                            tracing::warn!(%why, "ARC answered conflict; trying again");
                            tokio::time::sleep(poll).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Plan::Switch { change, reason } => {
                    moves += u32::from(wrote);
                    if moves >= MAX_MOVES {
                        return Err(SwitchError::RecordKeptChanging(moves));
                    }
                    let abandoned_before = report.abandoned_writes.len();
                    if self
                        .swap(&change, raw.as_ref(), &reason, deadline, report)
                        .await?
                    {
                        wrote = true;
                    } else {
                        moves += 1;
                        if report.abandoned_writes.len() > abandoned_before {
                            lost_answer_target = Some(change.region.clone());
                        }
                    }
                }
            }
        }
    }

    /// Waits for `INSYNC` as far as the deadline allows. Not reaching it is reported, not an
    /// error: Route 53 accepted the change and will apply it.
    async fn wait_insync(&self, change_id: &str, deadline: Deadline, report: &mut TriggerReport) {
        let started = Started::now();
        let result = self
            .route53
            .wait_insync(change_id, Duration::from_secs(2), &self.budget(deadline))
            .await;
        let detail = serde_json::json!({
            "change_id": change_id,
            "status": result.as_ref().ok().map(|d| &d.value),
            "error": result.as_ref().err().map(ToString::to_string),
        });
        report
            .actions
            .push(ActionReport::of("route53.get_change", &result, started, detail));
    }
}
