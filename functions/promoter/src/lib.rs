//! The promoter: glue between the Lambda runtime, the pure gates in [`failover_core::promote`] and
//! the AWS adapters. Per trigger worth acting on: observe (the datastore, the write-error alarms
//! here, the vantage alarms in the primary's Region, the replication lag, the last failover in
//! every member Region), evaluate every gate, and — only when all agree — call
//! `FailoverGlobalReplicationGroup`, then follow it until the new primary is in place or the
//! deadline nears. One audit/EMF line per invocation.

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
use failover_core::aws::cloudwatch::CloudWatch;
use failover_core::aws::elasticache::ElastiCache;
use failover_core::command::CommandRejected;
use failover_core::config::PromoterConfig;
use failover_core::fault::AwsFault;
use failover_core::ids::Region;
use failover_core::intake::{self, IntakeError, Trigger};
use failover_core::observed::{DatastoreView, Role};
use failover_core::promote::{
    self, AlarmRead, AlarmReading, EventsRead, LagRead, PromoteDecision, PromoteIntent, PromoteObserved,
    PromoterCommand, PromoterTriage, Promotion, REGION_SWITCH_WAIVES,
};
use failover_core::region_switch::Activation;
use failover_core::retry::{Budget, Deadline, RetryPolicy};
use futures_util::future::join_all;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

mod preflight;

pub const FUNCTION: &str = "promoter";

/// Time kept, after giving way to the preferred Region, to evaluate again and make the call.
const DEFER_ROOM: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum PromoterError {
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] IntakeError),
    #[error("invalid command: {0}")]
    InvalidCommand(#[from] CommandRejected),
    #[error("{0}")]
    Aws(#[from] AwsFault),
    #[error("refused: {0}")]
    Refused(String),
    /// A Region switch step whose promotion had not finished when the invocation had to end: the
    /// step fails, Region switch retries it, and the retry finds the promotion done or under way.
    #[error("not finished before the deadline: {0}")]
    Pending(String),
}

impl ReportsError for PromoterError {
    fn error_type(&self) -> &'static str {
        match self {
            PromoterError::InvalidEvent(_) => "InvalidEvent",
            PromoterError::InvalidCommand(_) => "InvalidCommand",
            PromoterError::Aws(_) => "AwsFault",
            PromoterError::Refused(_) => "Refused",
            PromoterError::Pending(_) => "PromotionPending",
        }
    }
}

impl From<PromoterError> for Diagnostic {
    fn from(e: PromoterError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// What happened to one trigger.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerReport {
    pub trigger: Value,
    pub triage: Option<PromoterTriage>,
    /// For a Region switch step: which Region it activates, and how that was worked out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<PromoteObserved>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<PromoteDecision>,
    /// The failover call and its follow-up, when made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Value>,
    /// An automatic promotion this Region gave way on first (`PROMOTION_PRIORITY`): how long it
    /// waited for the preferred Region before reading the datastore again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    /// The readiness checklist (`preflight` command, or the hourly schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<failover_core::preflight::Checklist>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    pub duration_ms: u64,
}

impl audit::HasOutcome for TriggerReport {
    fn outcome(&self) -> Outcome {
        self.outcome
    }

    fn ready(&self) -> Option<bool> {
        self.preflight.as_ref().map(|p| p.ready)
    }
}

/// The promoter's audit record: one per invocation, also the response.
pub type AuditRecord = audit::AuditRecord<TriggerReport, ()>;

#[derive(Debug)]
pub struct Invocation {
    pub audit: AuditRecord,
    pub result: Result<Value, PromoterError>,
}

/// The promoter, built once at start-up.
#[derive(Debug, Clone)]
pub struct Promoter {
    pub cfg: PromoterConfig,
    /// ElastiCache per member Region (this Region's first is used for describe and failover).
    pub elasticache: Vec<(String, ElastiCache)>,
    pub cloudwatch: CloudWatch,
    pub retry: RetryPolicy,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Promoter {
    pub fn new(cfg: PromoterConfig, sdk: &SdkConfig) -> Self {
        let regions: Vec<String> = cfg
            .datastore
            .members
            .iter()
            .map(|m| m.region.to_string())
            .collect();
        let elasticache = regions
            .iter()
            .map(|r| {
                let conf = aws_sdk_elasticache::config::Builder::from(sdk)
                    .region(aws_sdk_elasticache::config::Region::new(r.clone()))
                    .build();
                (r.clone(), aws_sdk_elasticache::Client::from_conf(conf))
            })
            .collect();
        let cloudwatch = CloudWatch::new(sdk, regions.iter().map(String::as_str));
        Self::with_clients(cfg, elasticache, cloudwatch)
    }

    pub fn with_clients(
        cfg: PromoterConfig,
        elasticache: Vec<(String, aws_sdk_elasticache::Client)>,
        cloudwatch: CloudWatch,
    ) -> Self {
        Self {
            cfg,
            elasticache: elasticache
                .into_iter()
                .map(|(r, c)| (r, ElastiCache::new(c)))
                .collect(),
            cloudwatch,
            retry: RetryPolicy::default(),
        }
    }

    fn ec(&self, region: &str) -> Result<&ElastiCache, PromoterError> {
        self.elasticache
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, c)| c)
            .ok_or_else(|| PromoterError::Refused(format!("no ElastiCache client for {region}")))
    }

    pub fn deadline_for(&self, deadline_epoch_ms: u64) -> Deadline {
        Deadline::from_lambda(
            deadline_epoch_ms,
            audit::epoch_ms(SystemTime::now()),
            self.cfg.deadline_margin,
        )
    }

    pub async fn lambda_handler(&self, event: LambdaEvent<Box<RawValue>>) -> Result<Value, PromoterError> {
        let deadline = self.deadline_for(event.context.deadline);
        let inv = self
            .handle(event.payload.get(), &event.context.request_id, deadline)
            .await;
        let now_ms = i64::try_from(audit::epoch_ms(SystemTime::now())).unwrap_or(i64::MAX);
        println!("{}", inv.audit.emf_line(&self.cfg.metrics_namespace, now_ms));
        inv.result
    }

    pub async fn handle(&self, raw: &str, request_id: &str, deadline: Deadline) -> Invocation {
        let started = Instant::now();
        let mut audit = AuditRecord::new(
            FUNCTION,
            request_id,
            self.cfg.function_region.to_string(),
            self.cfg.datastore.id.to_string(),
            (),
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
    ) -> Result<(), PromoterError> {
        let triggers = intake::parse_event::<PromoterCommand>(raw)?;
        let triaged: Vec<(Trigger<PromoterCommand>, PromoterTriage)> = triggers
            .into_iter()
            .map(|t| promote::triage(&t, &self.cfg).map(|tr| (t, tr)))
            .collect::<Result<_, _>>()?;
        let mut first_error = None;
        for (trigger, triage) in triaged {
            let started = Instant::now();
            let mut report = TriggerReport {
                trigger: serde_json::to_value(&trigger).unwrap_or(Value::Null),
                triage: Some(triage.clone()),
                activation: None,
                deferred: None,
                preflight: None,
                observed: None,
                decision: None,
                actions: Vec::new(),
                outcome: Outcome::Ignored,
                error: None,
                duration_ms: 0,
            };
            let result = match triage {
                PromoterTriage::Ignore { reason } => {
                    tracing::info!(%reason, "trigger ignored");
                    Ok(Outcome::Ignored)
                }
                PromoterTriage::Act(PromoteIntent::Preflight) => {
                    report.preflight = Some(self.preflight(deadline).await);
                    Ok(Outcome::Reported)
                }
                PromoterTriage::Act(intent) => self.act(&intent, deadline, &mut report).await,
            };
            report.duration_ms = millis(started.elapsed());
            match result {
                Ok(o) => report.outcome = o,
                Err(e) => {
                    report.outcome = Outcome::Failed;
                    report.error = Some(e.report());
                    first_error.get_or_insert(e);
                }
            }
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

    /// Reading a Region that may be dark: two short attempts, so a dark Region costs seconds.
    fn probe_budget(&self, deadline: Deadline) -> Budget {
        Budget {
            policy: self.retry.probe(),
            deadline,
        }
    }

    /// Observes and evaluates every gate for `target`, keeping both in the report.
    async fn evaluate(
        &self,
        target: &Promotion,
        force: &[promote::GateName],
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<PromoteDecision, PromoterError> {
        let observed = self.observe(target, deadline).await?;
        let decision = promote::evaluate(target, &observed, &self.cfg.policy, chrono::Utc::now(), force);
        tracing::info!(promote = decision.promote.is_some(), reason = %decision.reason, "gates evaluated");
        report.observed = Some(observed);
        report.decision = Some(decision.clone());
        Ok(decision)
    }

    async fn observe(
        &self,
        target: &Promotion,
        deadline: Deadline,
    ) -> Result<PromoteObserved, PromoterError> {
        let own = self.cfg.function_region.to_string();
        let datastore = self
            .ec(&own)?
            .describe_datastore(&self.cfg.datastore.id, &self.budget(deadline))
            .await?
            .value;
        let primary_region = datastore
            .members
            .iter()
            .find(|m| m.role == Role::Primary)
            .map(|m| m.region.clone())
            .unwrap_or_default();
        let probe = self.probe_budget(deadline);
        // Fail closed: only a Region that does not answer at all is "dark"; an alarm a Region
        // that answers cannot give (missing, denied, throttled) is a fault, never agreement.
        let read = |region: String, name: String| async move {
            let state = match self.cloudwatch.alarm_state(&region, &name, &probe).await {
                Ok(s) => AlarmRead::Is(s),
                Err(f) if f.region_dark() => AlarmRead::RegionDark(f.to_string()),
                Err(f) => AlarmRead::Unreadable(f.to_string()),
            };
            AlarmReading { region, name, state }
        };
        let signal_reads = self
            .cfg
            .signal_alarms
            .iter()
            .map(|n| read(target.region.to_string(), n.clone()));
        let vantage_reads = self
            .cfg
            .vantage_alarms
            .iter()
            .filter(|(r, _)| r.as_str() == primary_region)
            .map(|(r, n)| read(r.to_string(), n.clone()));
        let mut metric = self.cfg.lag_metric.clone();
        for d in &mut metric.dimensions {
            d.1 = target.group.to_string();
        }
        let lag = self.cloudwatch.latest(
            target.region.as_str(),
            &metric,
            (
                SystemTime::now(),
                self.cfg.policy.lag_max_age.max(Duration::from_secs(60)),
            ),
            Duration::from_secs(1),
            &probe,
        );
        // Each member group's events, in the member's own Region, every page.
        let cooldown_window = self.cfg.policy.cooldown.max(Duration::from_secs(60));
        let events = self.cfg.datastore.members.iter().map(|m| {
            let (region, group) = (m.region.to_string(), m.group.to_string());
            let probe = &probe;
            async move {
                let result = match self.ec(&region) {
                    Ok(ec) => ec.last_failover(&group, cooldown_window, probe).await,
                    Err(e) => Err(AwsFault::service(
                        "ElastiCache.DescribeEvents",
                        None,
                        e.to_string(),
                        false,
                    )),
                };
                (region, result)
            }
        });
        let (signal, vantage, lag, events) = tokio::join!(
            join_all(signal_reads),
            join_all(vantage_reads),
            lag,
            join_all(events)
        );
        let lag = match lag {
            Ok(Some((seconds, at))) => LagRead::Value { seconds, at },
            Ok(None) => LagRead::Missing,
            Err(f) if f.region_dark() => LagRead::RegionDark(f.to_string()),
            Err(f) => LagRead::Unreadable(f.to_string()),
        };
        let mut read = EventsRead::default();
        for (region, result) in events {
            match result {
                Ok(last) => {
                    read.last_failover = read.last_failover.max(last);
                    read.read.push(region);
                }
                Err(f) if f.region_dark() => read.dark.push(region),
                Err(f) => read.unreadable.push(format!("{region}: {f}")),
            }
        }
        Ok(PromoteObserved {
            datastore,
            signal,
            vantage,
            lag,
            events: read,
        })
    }

    async fn act(
        &self,
        intent: &PromoteIntent,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<Outcome, PromoterError> {
        let own = &self.cfg.function_region;
        // `must_finish`: a Region switch step succeeds only once the Region is primary.
        let (target_region, dry_run, force, must_finish) = match intent {
            PromoteIntent::Automatic { .. } => (own.clone(), false, Vec::new(), false),
            PromoteIntent::Evaluate => (own.clone(), true, Vec::new(), false),
            PromoteIntent::Preflight => {
                return Err(PromoterError::Refused(
                    "preflight is handled before any gate".into(),
                ));
            }
            PromoteIntent::Manual {
                target,
                dry_run,
                force,
                ..
            } => (target.clone(), *dry_run, force.clone(), false),
            PromoteIntent::RegionSwitch { step } => {
                let members: Vec<Region> = self
                    .cfg
                    .datastore
                    .members
                    .iter()
                    .map(|m| m.region.clone())
                    .collect();
                // Refused here, before any AWS call: a payload the step does not understand moves
                // nothing.
                let activation = step
                    .region_to_activate(own, &members)
                    .map_err(|r| PromoterError::Refused(r.to_string()))?;
                let region = activation.region.clone();
                report.activation = Some(activation);
                (region, false, REGION_SWITCH_WAIVES.to_vec(), true)
            }
        };
        let Some(member) = self.cfg.datastore.member_in(&target_region) else {
            return Err(PromoterError::Refused(format!(
                "{target_region} is not a member Region"
            )));
        };
        let target = Promotion {
            region: member.region.clone(),
            group: member.group.clone(),
        };
        let ec = self.ec(own.as_str())?;
        let is_primary = |ds: &DatastoreView| {
            ds.is_available()
                && ds
                    .members
                    .iter()
                    .any(|m| m.group == target.group.as_str() && m.role == Role::Primary)
        };
        if must_finish {
            // A retried step, or a failover already under way: finish following it, not a second.
            let ds = ec
                .describe_datastore(&self.cfg.datastore.id, &self.budget(deadline))
                .await?
                .value;
            let ds = if ds.is_available() {
                ds
            } else {
                self.follow(ec, deadline, report, &|d: &DatastoreView| d.is_available())
                    .await
                    .ok_or_else(|| PromoterError::Pending(format!("{} is still {}", ds.id, ds.status)))?
            };
            if is_primary(&ds) {
                return Ok(Outcome::NoOp);
            }
        }
        let mut decision = self.evaluate(&target, &force, deadline, report).await?;
        // Two secondaries can both see the primary dark: the preferred one acts at once, the
        // others give it time, then read the datastore again (a failover under way, or done,
        // blocks them).
        if decision.promote.is_some() && !dry_run && matches!(intent, PromoteIntent::Automatic { .. }) {
            let (wait, preferred) = self.cfg.promotion_wait();
            if !wait.is_zero() {
                let preferred = preferred.map_or_else(|| "a listed Region".to_owned(), ToString::to_string);
                if deadline.remaining() <= wait + DEFER_ROOM {
                    report.deferred = Some(format!(
                        "{preferred} comes first (PROMOTION_PRIORITY): this Region waits {} s before promoting, \
                         more than this invocation has left; the next evaluation decides",
                        wait.as_secs()
                    ));
                    return Ok(Outcome::NoOp);
                }
                tracing::info!(wait_s = wait.as_secs(), %preferred, "giving way to the preferred Region");
                tokio::time::sleep(wait).await;
                report.deferred = Some(format!(
                    "{preferred} comes first (PROMOTION_PRIORITY): waited {} s, then evaluated again",
                    wait.as_secs()
                ));
                decision = self.evaluate(&target, &force, deadline, report).await?;
            }
        }
        let Some(promotion) = decision.promote else {
            if must_finish {
                // The plan must not go on to move traffic onto a Region that is not primary.
                return Err(PromoterError::Refused(format!(
                    "the Region switch step cannot promote {}: {}",
                    target.region, decision.reason
                )));
            }
            return Ok(Outcome::NoOp);
        };
        if dry_run {
            return Ok(Outcome::DryRun);
        }
        let started = Instant::now();
        let result = ec
            .failover(
                &self.cfg.datastore.id,
                promotion.region.as_str(),
                promotion.group.as_str(),
                &self.budget(deadline),
            )
            .await;
        report.actions.push(serde_json::json!({
            "action": "elasticache.failover_global_replication_group",
            "ok": result.is_ok(),
            "duration_ms": millis(started.elapsed()),
            "status": result.as_ref().ok().map(|d| &d.value),
            "error": result.as_ref().err().map(ToString::to_string),
        }));
        let outcome = match result {
            Ok(_) => Outcome::Switched,
            // Another invocation (or an operator) got there first: that is the outcome we want. A
            // Region switch step still follows it, since it may only succeed once it is done.
            Err(f) if f.is_code("InvalidGlobalReplicationGroupState") => {
                if !must_finish {
                    return Ok(Outcome::NoOp);
                }
                Outcome::NoOp
            }
            Err(f) => return Err(f.into()),
        };
        if self.cfg.wait_for_promotion || must_finish {
            let promoted = self.follow(ec, deadline, report, &is_primary).await.is_some();
            if must_finish && !promoted {
                return Err(PromoterError::Pending(format!(
                    "{} is not PRIMARY yet",
                    promotion.group
                )));
            }
        }
        Ok(outcome)
    }

    /// Polls the datastore until `done` holds or the deadline nears; the view that satisfied it.
    async fn follow(
        &self,
        ec: &ElastiCache,
        deadline: Deadline,
        report: &mut TriggerReport,
        done: &dyn Fn(&DatastoreView) -> bool,
    ) -> Option<DatastoreView> {
        let started = Instant::now();
        let mut polls = 0u32;
        let mut last = String::from("unknown");
        let mut reached = None;
        while deadline.remaining() > self.cfg.poll_interval + self.retry.attempt_timeout {
            tokio::time::sleep(self.cfg.poll_interval).await;
            polls += 1;
            let Ok(read) = ec
                .describe_datastore(&self.cfg.datastore.id, &self.budget(deadline))
                .await
            else {
                continue;
            };
            last = read.value.status.clone();
            if done(&read.value) {
                last = "done".into();
                reached = Some(read.value);
                break;
            }
        }
        report.actions.push(serde_json::json!({
            "action": "elasticache.describe_global_replication_groups (follow)",
            "polls": polls, "duration_ms": millis(started.elapsed()), "final": last,
        }));
        reached
    }
}
