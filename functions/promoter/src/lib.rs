//! The promoter: glue between the Lambda runtime, the pure gates in [`failover_core::promote`] and
//! the AWS adapters. Per trigger worth acting on: observe (the datastore, the write-error alarms
//! here, the vantage alarms in the primary's Region, the replication lag, the last failover in
//! every member Region), evaluate every gate, and — only when all agree — call
//! `FailoverGlobalReplicationGroup`, then follow it until the new primary is in place or the
//! deadline nears. One audit/EMF line per invocation.

use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use failover_core::audit::{self, ErrorReport, Outcome};
use failover_core::aws::cloudwatch::CloudWatch;
use failover_core::aws::elasticache::ElastiCache;
use failover_core::config::PromoterConfig;
use failover_core::fault::AwsFault;
use failover_core::intake::{self, IntakeError, Trigger};
use failover_core::observed::Role;
use failover_core::promote::{
    self, AlarmReading, PromoteDecision, PromoteIntent, PromoteObserved, PromoterCommand, PromoterTriage,
    Promotion,
};
use failover_core::retry::{Budget, Deadline, RetryPolicy};
use failover_core::switch::CommandRejected;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

pub const FUNCTION: &str = "promoter";

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
}

impl PromoterError {
    pub fn error_type(&self) -> &'static str {
        match self {
            PromoterError::InvalidEvent(_) => "InvalidEvent",
            PromoterError::InvalidCommand(_) => "InvalidCommand",
            PromoterError::Aws(_) => "AwsFault",
            PromoterError::Refused(_) => "Refused",
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<PromoteObserved>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<PromoteDecision>,
    /// The failover call and its follow-up, when made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Value>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    pub duration_ms: u64,
}

impl audit::HasOutcome for TriggerReport {
    fn outcome(&self) -> Outcome {
        self.outcome
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
        if let Err(e) = &result {
            tracing::error!(error = %e, "invocation failed");
        }
        audit.finish(
            millis(started.elapsed()),
            result.as_ref().err().map(|e| ErrorReport {
                error_type: e.error_type().to_owned(),
                message: e.to_string(),
            }),
        );
        let result = result.map(|()| serde_json::to_value(&audit).unwrap_or(Value::Null));
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
                PromoterTriage::Act(intent) => self.act(&intent, deadline, &mut report).await,
            };
            report.duration_ms = millis(started.elapsed());
            match result {
                Ok(o) => report.outcome = o,
                Err(e) => {
                    report.outcome = Outcome::Failed;
                    report.error = Some(ErrorReport {
                        error_type: e.error_type().to_owned(),
                        message: e.to_string(),
                    });
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
            policy: RetryPolicy {
                max_attempts: 2,
                attempt_timeout: Duration::from_secs(2),
                ..self.retry
            },
            deadline,
        }
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
        let read = |region: String, name: String| async move {
            let state = self
                .cloudwatch
                .alarm_state(&region, &name, &probe)
                .await
                .map_err(|f| f.to_string());
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
        let groups: Vec<String> = self
            .cfg
            .datastore
            .members
            .iter()
            .map(|m| m.group.to_string())
            .collect();
        let cooldown_window = self.cfg.policy.cooldown.max(Duration::from_secs(60));
        let events = self
            .elasticache
            .iter()
            .map(|(_, ec)| ec.last_failover(&groups, cooldown_window, &probe));
        let (signal, vantage, lag, events) = tokio::join!(
            join_all(signal_reads),
            join_all(vantage_reads),
            lag,
            join_all(events)
        );
        Ok(PromoteObserved {
            datastore,
            signal,
            vantage,
            // A lag that cannot be read is "missing": the data-loss gate's policy decides.
            lag: lag.ok().flatten(),
            last_failover: events.into_iter().filter_map(Result::ok).flatten().max(),
        })
    }

    async fn act(
        &self,
        intent: &PromoteIntent,
        deadline: Deadline,
        report: &mut TriggerReport,
    ) -> Result<Outcome, PromoterError> {
        let (target_region, dry_run, force) = match intent {
            PromoteIntent::Automatic { .. } => (self.cfg.function_region.clone(), false, Vec::new()),
            PromoteIntent::Evaluate => (self.cfg.function_region.clone(), true, Vec::new()),
            PromoteIntent::Manual {
                target,
                dry_run,
                force,
                ..
            } => (target.clone(), *dry_run, force.clone()),
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
        let observed = self.observe(&target, deadline).await?;
        let decision = promote::evaluate(&target, &observed, &self.cfg.policy, chrono::Utc::now(), &force);
        tracing::info!(promote = decision.promote.is_some(), reason = %decision.reason, "gates evaluated");
        report.observed = Some(observed);
        report.decision = Some(decision.clone());
        let Some(promotion) = decision.promote else {
            return Ok(Outcome::NoOp);
        };
        if dry_run {
            return Ok(Outcome::DryRun);
        }
        let own = self.cfg.function_region.to_string();
        let ec = self.ec(&own)?;
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
        match result {
            Ok(_) => {}
            // Another invocation (or an operator) got there first: that is the outcome we want.
            Err(f) if f.is_code("InvalidGlobalReplicationGroupState") => return Ok(Outcome::NoOp),
            Err(f) => return Err(f.into()),
        }
        if self.cfg.wait_for_promotion {
            let started = Instant::now();
            let mut polls = 0u32;
            let mut last = String::from("modifying");
            while deadline.remaining() > self.cfg.poll_interval + self.retry.attempt_timeout {
                tokio::time::sleep(self.cfg.poll_interval).await;
                polls += 1;
                let Ok(done) = ec
                    .describe_datastore(&self.cfg.datastore.id, &self.budget(deadline))
                    .await
                else {
                    continue;
                };
                let ds = done.value;
                let promoted = ds.is_available()
                    && ds
                        .members
                        .iter()
                        .any(|m| m.group == promotion.group.as_str() && m.role == Role::Primary);
                last = ds.status.clone();
                if promoted {
                    last = "promoted".into();
                    break;
                }
            }
            report.actions.push(serde_json::json!({
                "action": "elasticache.describe_global_replication_groups (follow)",
                "polls": polls, "duration_ms": millis(started.elapsed()), "final": last,
            }));
        }
        Ok(Outcome::Switched)
    }
}

async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.into_iter().collect();
    // Sequential within one kind, concurrent across kinds (the caller joins the kinds): the lists
    // are one or two alarms long.
    for f in handles {
        out.push(f.await);
    }
    out
}
