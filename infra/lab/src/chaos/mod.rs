//! Randomized histories on the lab, as the project's own test: seeded sequences of failovers and
//! failbacks (a second one while the first is `modifying` included), SNS duplicates, late
//! deliveries and drops, Lambda retries, a Region going dark and coming back, the link going down
//! or degrading, alarms firing and clearing, operator commands, latency on every API, Route 53
//! faults (dns) and slow, broken or hung ARC endpoints (arc) — with the real traffic-switch binary
//! running in both Regions. After every step, and once everything is quiet, the invariants of
//! [`check`] are checked; a failing history prints its seed and steps and replays from the seed.

pub mod check;
pub mod history;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

use crate::arc::EndpointMode;
use crate::lambda::now_ms;
use crate::link::LinkMode;
use crate::route53::{Fault, Operation};
use crate::{Lab, LabConfig, LabError, LabState, SnsFaults};
use check::{Read, Run, Violation, Write};
use history::{History, Mode, Step};

#[derive(Debug, Error)]
pub enum ChaosError {
    #[error("lab: {0}")]
    Lab(#[from] LabError),
    #[error("writing {path}: {error}")]
    Write { path: String, error: String },
}

/// How long, once a history is over and everything is quiet, one trigger may take to put writers
/// on the primary (the liveness bound).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub root: PathBuf,
    pub binary_dir: PathBuf,
    pub out_dir: PathBuf,
    /// The first history's seed; the others follow it (seed + 1, …).
    pub seed: u64,
    pub histories: u32,
    /// Stop starting histories once this much time has passed (CI's bounded batch).
    pub budget: Option<Duration>,
    pub steps: usize,
    /// `None`: each seed's own mode (even dns, odd arc).
    pub mode: Option<Mode>,
    pub progress: bool,
    /// Keep every history's evidence, not only a failing one's.
    pub keep: bool,
}

pub const USAGE: &str = "\
lab chaos [options]      randomized histories on the lab, with the invariants checked

  --seed N               first seed (default: from the clock; printed); history i uses seed N+i
  --histories N          how many histories (default 10)
  --budget-secs S        stop starting new histories after S seconds
  --steps N              steps per history (default 16)
  --mode dns|arc         every history in one mode (default: even seeds dns, odd seeds arc)
  --out DIR              where failing histories' evidence goes (default chaos-report/)
  --keep                 keep every history's evidence, not only a failing one's
  --quiet                no progress lines

A failing history prints its seed; `lab chaos --seed <seed> --histories 1` replays it.";

impl ChaosConfig {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            binary_dir: root.join("target/debug"),
            out_dir: root.join("chaos-report"),
            seed: now_ms() % 1_000_000,
            histories: 10,
            budget: None,
            steps: 16,
            mode: None,
            progress: true,
            keep: false,
        }
    }

    pub fn apply_args(&mut self, args: &[String]) -> Result<(), String> {
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: &String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
            match flag.as_str() {
                "--seed" => self.seed = number(value()?)?,
                "--histories" => {
                    self.histories = u32::try_from(number(value()?)?).map_err(|e| e.to_string())?;
                }
                "--budget-secs" => self.budget = Some(Duration::from_secs(number(value()?)?)),
                "--steps" => {
                    self.steps = usize::try_from(number(value()?)?).map_err(|e| e.to_string())?;
                }
                "--mode" => {
                    self.mode = Some(match value()?.as_str() {
                        "dns" => Mode::Dns,
                        "arc" => Mode::Arc,
                        other => return Err(format!("--mode {other}: expected dns or arc")),
                    });
                }
                "--out" => self.out_dir = PathBuf::from(value()?),
                "--quiet" => self.progress = false,
                "--keep" => self.keep = true,
                other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
            }
        }
        Ok(())
    }
}

/// How one history went.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryResult {
    pub seed: u64,
    pub mode: Mode,
    pub promotion_ms: u64,
    pub steps: Vec<Step>,
    pub violations: Vec<Violation>,
    /// From the liveness trigger to writers on the primary.
    pub liveness_ms: Option<u64>,
    pub invocations: usize,
    pub writes: usize,
    pub failovers: u32,
    pub duration_ms: u64,
}

impl HistoryResult {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The history as a replayable report: seed, steps, and what broke.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "history seed {} ({}, failovers take {} ms): {}\n",
            self.seed,
            self.mode.name(),
            self.promotion_ms,
            if self.passed() { "passed" } else { "FAILED" }
        );
        for (i, step) in self.steps.iter().enumerate() {
            s.push_str(&format!("  {:2}. {step}\n", i + 1));
        }
        for v in &self.violations {
            s.push_str(&format!("  ✗ {}: {}\n", v.invariant, v.detail));
        }
        s.push_str(&format!(
            "  replay: target/debug/lab chaos --seed {} --histories 1 --mode {}\n",
            self.seed,
            self.mode.name()
        ));
        s
    }
}

/// A batch's results.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub first_seed: u64,
    pub results: Vec<HistoryResult>,
    pub duration_ms: u64,
}

impl Summary {
    pub fn failed(&self) -> Vec<&HistoryResult> {
        self.results.iter().filter(|r| !r.passed()).collect()
    }
}

/// Runs the batch: one fresh lab per history.
pub async fn run(cfg: &ChaosConfig) -> Result<Summary, ChaosError> {
    let started = Instant::now();
    let mut results = Vec::new();
    for i in 0..cfg.histories {
        if cfg.budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let seed = cfg.seed + u64::from(i);
        let mode = cfg.mode.unwrap_or_else(|| Mode::of_seed(seed));
        let history = history::generate(seed, mode, cfg.steps);
        let result = run_history(cfg, &history).await?;
        if cfg.progress {
            eprintln!(
                "[{:6.1}s] seed {seed} {}: {} ({} invocations, {} writes, {} failovers, liveness {} ms, {:.1} s)",
                started.elapsed().as_secs_f64(),
                mode.name(),
                if result.passed() { "ok" } else { "FAILED" },
                result.invocations,
                result.writes,
                result.failovers,
                result
                    .liveness_ms
                    .map_or_else(|| "-".to_owned(), |l| l.to_string()),
                result.duration_ms as f64 / 1000.0
            );
        }
        if !result.passed() {
            eprintln!("{}", result.describe());
        }
        results.push(result);
    }
    Ok(Summary {
        first_seed: cfg.seed,
        results,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

fn lab_config(cfg: &ChaosConfig, history: &History) -> LabConfig {
    let mut lab = LabConfig::two_regions(&cfg.root);
    lab.work_dir = cfg.out_dir.join(format!("seed-{}", history.seed)).join("lab");
    lab.binary_dir.clone_from(&cfg.binary_dir);
    lab.routing_mode = history.mode.name().to_owned();
    lab.promotion_time = Duration::from_millis(history.promotion_ms);
    // AWS retries an asynchronous invocation after a minute; a second here keeps a history short
    // while leaving a late-landing write time to land before the retry looks.
    lab.lambda_retry_delay = Duration::from_secs(1);
    lab.function_timeout = Duration::from_secs(10);
    lab.function_env = vec![("STABLE_POLL_MS".into(), "100".into())];
    lab
}

/// Where writers point now: the Region of the record's endpoint (dns) or of the one control On.
pub fn writers_now(lab: &Lab) -> Option<String> {
    let s = &lab.state;
    match s.cfg.routing_mode.as_str() {
        "arc" => {
            let states = s.arc.states();
            let on: Vec<&str> = s
                .regions
                .iter()
                .filter(|r| {
                    s.arc
                        .control_for(&r.name)
                        .is_some_and(|c| states.get(&c.arn).copied().unwrap_or(false))
                })
                .map(|r| r.name.as_str())
                .collect();
            match on.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            }
        }
        _ => {
            let value = s
                .route53
                .record(&lab.endpoints.hosted_zone_id, &s.cfg.record_name, "CNAME")?
                .values
                .first()?
                .trim_end_matches('.')
                .to_ascii_lowercase();
            s.regions
                .iter()
                .find(|r| r.endpoint == value)
                .map(|r| r.name.clone())
        }
    }
}

/// The Region's write-error alarm changing to `state`, delivered to its functions as CloudWatch
/// delivers it.
fn send_alarm(lab: &LabState, region: &str, state: &str) {
    let mut alarm = crate::drill::write_errors_alarm(region, 1, 3, 2);
    alarm.state = state.to_owned();
    alarm.reason = "a chaos history".into();
    let previous = if state == "ALARM" { "OK" } else { "ALARM" };
    crate::cloudwatch::deliver(lab, &alarm, previous);
}

fn failover(lab: &Arc<LabState>, to: &str) {
    if let Some(group) = lab.region(to).map(|r| r.group.clone()) {
        let id = lab.cfg.datastore_id.clone();
        // Refused while one is under way, or when `to` is already primary: as AWS would.
        let _ = crate::failover::start(lab, &id, to, &group);
    }
}

fn primary_now(lab: &LabState) -> Option<String> {
    lab.regions.get(lab.gds().primary).map(|r| r.name.clone())
}

/// A failover whose promotion notification is lost: SNS drops for as long as it takes, then
/// delivers as it did before.
async fn failover_unannounced(lab: &Arc<LabState>, to: &str) {
    let sns = |lab: &LabState| *lab.sns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = sns(lab);
    let published = lab.publications().len();
    *lab.sns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = SnsFaults { drop: true, ..before };
    failover(lab, to);
    // Until the promotion is published (and dropped), or the failover was refused.
    let until = Instant::now() + Duration::from_secs(5);
    while lab.publications().len() == published && Instant::now() < until {
        if lab.gds().status == "available" && Instant::now() + Duration::from_secs(4) > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    *lab.sns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = before;
}

async fn execute(lab: &Lab, step: &Step) -> Result<(), LabError> {
    let s = &lab.state;
    match step {
        Step::Failover {
            to,
            notification_lost,
        } => {
            if *notification_lost {
                failover_unannounced(s, to).await;
            } else {
                failover(s, to);
            }
        }
        Step::Race {
            trigger_region,
            to,
            after_ms,
        } => {
            let aimed = trigger_region.is_none() && to.is_none();
            if aimed && writers_now(lab).is_some_and(|w| Some(w) == primary_now(s)) {
                // Writers are where they belong: first leave them behind — a failover whose
                // notification is lost — so the primary's copy has something to move.
                if let Some(other) = s
                    .regions
                    .iter()
                    .find(|r| Some(&r.name) != primary_now(s).as_ref())
                {
                    failover_unannounced(s, &other.name.clone()).await;
                    quiet(s, Duration::from_secs(5)).await;
                }
            }
            let Some(trigger) = trigger_region.clone().or_else(|| primary_now(s)) else {
                return Ok(());
            };
            send_alarm(s, &trigger, "ALARM");
            tokio::time::sleep(Duration::from_millis(*after_ms)).await;
            if let Some(to) = to.clone().or_else(|| writers_now(lab)) {
                failover(s, &to);
            }
        }
        Step::Sns { delivery, delay_ms } => {
            *s.sns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = SnsFaults {
                duplicate: delivery == "duplicate",
                delay_ms: *delay_ms,
                drop: delivery == "drop",
            };
        }
        Step::Dark { region } => s.set_dark(region, true).await?,
        Step::Light { region } => s.set_dark(region, false).await?,
        Step::Link { mode } => s.set_link(match mode.as_str() {
            "down" => LinkMode::Down,
            "degraded" => LinkMode::Degraded {
                delay_ms: 150,
                loss: 0.2,
            },
            _ => LinkMode::Up,
        }),
        Step::Alarm { region, state } => send_alarm(s, region, state),
        Step::Replay { region, of } => {
            if let Some(group) = s.region(of).map(|r| r.group.clone()) {
                let message = json!({ "ElastiCache:ReplicationGroupPromotedAsPrimary": group }).to_string();
                s.publish(region, "ElastiCache Notification", &message);
            }
        }
        Step::Command {
            region,
            command,
            target,
        } => {
            let event = if command == "switch" {
                json!({"command": "switch", "target_region": target, "dry_run": false,
                       "confirm": s.cfg.datastore_id, "reason": "chaos: operator"})
            } else {
                json!({"command": "status"})
            };
            if let Some(f) = s.function(region, "traffic-switch") {
                // A console invocation: synchronous, never retried; the history does not wait.
                tokio::spawn(async move {
                    let _ = f.invoke_sync(event, "console").await;
                });
            }
        }
        Step::Latency { service, ms } => {
            let d = Duration::from_millis(*ms);
            match service.as_str() {
                "route53" => {
                    for op in [
                        Operation::ListResourceRecordSets,
                        Operation::ChangeResourceRecordSets,
                    ] {
                        s.route53.set_latency(op, d);
                    }
                }
                "arc" => s.arc.set_latency(d),
                _ => s.set_api_delay(service, None, d),
            }
        }
        Step::Route53Fault {
            operation,
            fault,
            times,
        } => {
            if let Ok(op) = operation.parse::<Operation>() {
                let fault = match fault.as_str() {
                    "throttling" => Fault::Throttling,
                    "prior_request_not_complete" => Fault::PriorRequestNotComplete,
                    "error5xx" => Fault::Error5xx,
                    "lost" => Fault::Lost,
                    _ => Fault::Slow { ms: 300 },
                };
                s.route53.set_fault(op, fault, Some(*times));
            }
        }
        Step::ArcEndpoint { endpoint, mode } => {
            if let Some(m) = EndpointMode::parse(mode) {
                s.arc.set_mode(*endpoint, m);
            }
        }
        Step::Pause { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
    }
    Ok(())
}

/// Clears every fault a history may have left.
async fn calm(lab: &Lab) -> Result<(), LabError> {
    let s = &lab.state;
    s.set_link(LinkMode::Up);
    for r in &s.cfg.regions {
        if s.region_dark(&r.name) {
            s.set_dark(&r.name, false).await?;
        }
    }
    *s.sns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = SnsFaults::default();
    s.set_api_delay("elasticache", None, Duration::ZERO);
    s.route53.clear_faults();
    s.arc.set_latency(Duration::ZERO);
    for i in 0..crate::arc::ENDPOINT_REGIONS.len() {
        s.arc.set_mode(i, EndpointMode::Ok);
    }
    Ok(())
}

/// Waits until the datastore is `available` and no function has anything queued, running or
/// waiting to be retried; false if that does not happen within `limit`.
async fn quiet(lab: &LabState, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if lab.gds().status == "available" && lab.functions_idle() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every invocation attempt with its audit record's outcome.
fn runs(lab: &LabState) -> (Vec<Run>, Vec<Value>) {
    let audits = lab.audits();
    let runs = lab
        .invocations()
        .into_iter()
        .filter(|i| !i.request_id.is_empty())
        .map(|i| {
            let outcome = audits
                .iter()
                .find(|a| a["request_id"].as_str() == Some(i.request_id.as_str()))
                .and_then(|a| a["outcome"].as_str().map(str::to_owned));
            Run {
                request_id: i.request_id,
                trace: i.trace_id,
                function: i.function,
                region: i.region,
                started_ms: i.started_at_ms,
                finished_ms: i.finished_at_ms,
                ok: i.outcome == "ok",
                outcome,
            }
        })
        .collect();
    (runs, audits)
}

/// Every write of where writers point since `since_ms`, with the member it pointed at.
fn writes(lab: &Lab, since_ms: u64) -> Vec<Write> {
    let s = &lab.state;
    let region_of_endpoint = |v: &str| {
        let v = v.trim_end_matches('.').to_ascii_lowercase();
        s.regions.iter().find(|r| r.endpoint == v).map(|r| r.name.clone())
    };
    let mut out: Vec<Write> = s
        .route53
        .changes()
        .into_iter()
        .filter(|c| !c.direct && c.at_ms >= since_ms)
        .map(|c| Write {
            received_ms: c.received_ms,
            applied_ms: c.at_ms,
            trace: c.trace.clone(),
            to: c
                .changes
                .iter()
                .find(|e| e.action != "DELETE")
                .and_then(|e| e.values.first())
                .and_then(|v| region_of_endpoint(v)),
        })
        .collect();
    out.extend(
        s.arc
            .changes()
            .into_iter()
            .filter(|c| c.at_ms >= since_ms)
            .map(|c| {
                let on: Vec<String> = c
                    .set
                    .iter()
                    .filter(|(_, on)| **on)
                    .filter_map(|(arn, _)| s.arc.controls.iter().find(|k| &k.arn == arn))
                    .map(|k| k.region.clone())
                    .collect();
                Write {
                    received_ms: c.received_ms,
                    applied_ms: c.at_ms,
                    trace: c.trace.clone(),
                    to: match on.as_slice() {
                        [one] => Some(one.clone()),
                        _ => None,
                    },
                }
            }),
    );
    out
}

/// Every datastore read with what it answered.
fn reads(lab: &LabState) -> Vec<Read> {
    lab.requests()
        .into_iter()
        .filter(|r| r.action == "DescribeGlobalReplicationGroups" && r.status == 200)
        .map(|r| Read {
            at_ms: r.at_ms,
            trace: r.trace().map(str::to_owned),
            status: r.params.get("answer_status").cloned().unwrap_or_default(),
            primary: r.params.get("answer_primary").cloned().unwrap_or_default(),
        })
        .collect()
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), ChaosError> {
    let err = |e: String| ChaosError::Write {
        path: path.display().to_string(),
        error: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let text = serde_json::to_string_pretty(v).map_err(|e| err(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| err(e.to_string()))
}

/// Runs one history on a fresh lab and checks it.
pub async fn run_history(cfg: &ChaosConfig, history: &History) -> Result<HistoryResult, ChaosError> {
    let started = Instant::now();
    let lab = Lab::start(lab_config(cfg, history)).await?;
    let t0 = now_ms();
    let mut violations = Vec::new();
    // The first broken convergence is the finding; later checks would only repeat it.
    let check_quiet = |lab: &Lab, violations: &mut Vec<Violation>| {
        if violations.iter().any(|v| v.invariant == "convergence") {
            return;
        }
        // The outcomes come from the audit records: let the lines of finished runs arrive.
        let (runs, _) = runs(&lab.state);
        if let Some(v) = check::convergence(
            now_ms(),
            &lab.state.gds_history(),
            &runs,
            writers_now(lab).as_deref(),
        ) {
            violations.push(v);
        }
    };
    for step in &history.steps {
        execute(&lab, step).await?;
        // At the end of every step that lets things settle briefly, writers must have followed any
        // success that came after the datastore settled.
        if quiet(&lab.state, Duration::from_millis(1_500)).await {
            check_quiet(&lab, &mut violations);
        }
    }
    calm(&lab).await?;
    if quiet(&lab.state, Duration::from_secs(45)).await {
        check_quiet(&lab, &mut violations);
    } else {
        violations.push(Violation {
            invariant: "liveness",
            detail: "the lab did not become quiet within 45 s of the history's end".into(),
        });
    }
    // Liveness: one trigger, and writers are on the primary within the bound.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(history.seed ^ 0x5eed);
    let region = history::REGIONS[rng.random_range(0..history::REGIONS.len())];
    let primary = lab
        .state
        .regions
        .get(lab.state.gds().primary)
        .map(|r| r.name.clone());
    let triggered = Instant::now();
    send_alarm(&lab.state, region, "ALARM");
    let mut liveness_ms = None;
    while triggered.elapsed() < LIVENESS_BOUND {
        if writers_now(&lab) == primary && lab.state.functions_idle() {
            liveness_ms = Some(u64::try_from(triggered.elapsed().as_millis()).unwrap_or(u64::MAX));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if liveness_ms.is_none() {
        violations.push(Violation {
            invariant: "liveness",
            detail: format!(
                "one alarm into {region} did not put writers on the primary {} within {} s (they point at {})",
                primary.as_deref().unwrap_or("?"),
                LIVENESS_BOUND.as_secs(),
                writers_now(&lab).as_deref().unwrap_or("no member")
            ),
        });
    }
    quiet(&lab.state, Duration::from_secs(20)).await;
    // A missing audit record is a finding only once its line has had time to arrive.
    lab.state.audits_caught_up(Duration::from_secs(2)).await;

    let (runs, audits) = runs(&lab.state);
    let writes = writes(&lab, t0);
    violations.extend(check::safety(&writes, &reads(&lab.state)));
    let exited: Vec<(String, String)> = lab
        .state
        .regions
        .iter()
        .flat_map(|r| {
            r.functions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .filter_map(|f| f.exited().map(|how| (format!("{} in {}", f.name, r.name), how)))
                .collect::<Vec<_>>()
        })
        .collect();
    violations.extend(check::evidence(&runs, &audits, &exited));

    let result = HistoryResult {
        seed: history.seed,
        mode: history.mode,
        promotion_ms: history.promotion_ms,
        steps: history.steps.clone(),
        violations,
        liveness_ms,
        invocations: runs.len(),
        writes: writes.len(),
        failovers: lab.state.gds().failovers,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let dir = cfg.out_dir.join(format!("seed-{}", history.seed));
    if result.passed() && !cfg.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        write_json(&dir.join("result.json"), &result)?;
        write_json(&dir.join("audits.json"), &audits)?;
        write_json(&dir.join("invocations.json"), &lab.state.invocations())?;
        write_json(&dir.join("writes.json"), &writes)?;
        write_json(&dir.join("datastore.json"), &lab.state.gds_history())?;
        write_json(&dir.join("requests.json"), &lab.state.requests())?;
    }
    Ok(result)
}
