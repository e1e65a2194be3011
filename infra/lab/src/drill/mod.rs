//! DR drills on the lab: inject a failure under a session-store workload, with the real functions
//! deciding, and measure what users would have felt — stale reads, recovery time (stage by
//! stage), lost writes, errors and latency — against targets, with the evidence archived.
//!
//! Scenarios:
//! - `primary-down`: the primary Region goes dark. Expected: write errors → alarm → the promoter
//!   promotes the secondary → the traffic switch moves the writer → writes resume.
//! - `link-loss`: the inter-Region link degrades (latency and loss-like stalls); both Regions stay
//!   up. Expected: **no** promotion (errors seen only across the link are not a dead Region).
//! - `data-plane-degraded`: the primary's Valkey hangs while the control plane says `available`.
//!   Expected with the default policy: the primary Region's own writers fail too, so the vantage
//!   gate agrees and the secondary is promoted.
//! - `failback`: `primary-down`, then the old primary comes back, rejoins as a secondary and
//!   catches up (the lag metric says so), and the operator's confirmed `promote` command fails
//!   the datastore back: writers follow, and the planned leg loses no acknowledged write.

pub mod report;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::cloudwatch::Alarm;
use crate::lambda::now_ms;
use crate::link::LinkMode;
use crate::{Lab, LabConfig, LabError, LabState};
use report::{Expected, Markers, Recorded, Report, Targets};
use workload::{ClientBehaviour, Workload, WorkloadConfig, WriterSource, resolve_writer};

/// The write-error alarm each Region's stack creates (see `template.yaml`).
pub const ALARM: &str = "sessions-writes-failing";

#[derive(Debug, Error)]
pub enum DrillError {
    #[error("lab: {0}")]
    Lab(#[from] LabError),
    #[error("unknown scenario {0:?}: expected all, primary-down, link-loss, data-plane-degraded or failback")]
    UnknownScenario(String),
    #[error("writing the report to {path}: {error}")]
    Write { path: String, error: String },
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    PrimaryDown,
    LinkLoss,
    DataPlaneDegraded,
    Failback,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::PrimaryDown,
        Scenario::LinkLoss,
        Scenario::DataPlaneDegraded,
        Scenario::Failback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PrimaryDown => "primary-down",
            Scenario::LinkLoss => "link-loss",
            Scenario::DataPlaneDegraded => "data-plane-degraded",
            Scenario::Failback => "failback",
        }
    }

    /// `all` or one scenario's name.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, DrillError> {
        if s == "all" {
            return Ok(Self::ALL.to_vec());
        }
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .map(|c| vec![c])
            .ok_or_else(|| DrillError::UnknownScenario(s.to_owned()))
    }

    fn promotes(self) -> bool {
        self != Scenario::LinkLoss
    }

    /// Failovers the scenario makes when everything works.
    fn expected_promotions(self) -> u32 {
        match self {
            Scenario::LinkLoss => 0,
            Scenario::PrimaryDown | Scenario::DataPlaneDegraded => 1,
            Scenario::Failback => 2,
        }
    }
}

/// How the primary's data plane fails in `data-plane-degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Degrade {
    /// The node hangs (SIGSTOP): connections open, commands time out.
    Hang,
    /// The node is gone (stopped): connections are refused at once.
    Refuse,
}

/// Every knob of a drill; the defaults run in seconds of lab time.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    pub root: PathBuf,
    /// Where reports go: `<out>/<scenario>/…` and `<out>/summary.{json,md}`.
    pub out_dir: PathBuf,
    /// `dns` or `arc`.
    pub mode: String,
    pub workload: WorkloadConfig,
    /// Steady state before the fault.
    pub warmup: Duration,
    /// After recovery (or after the fault is removed): to watch the after-phase.
    pub settle: Duration,
    /// The most a scenario waits for recovery.
    pub recovery_timeout: Duration,
    /// failback: the most the returning Region may take to catch up before the planned leg.
    pub catch_up_timeout: Duration,
    /// How long the link stays degraded in `link-loss`.
    pub link_fault: Duration,
    pub link_delay_ms: u64,
    pub link_loss: f64,
    /// How the data plane fails in `data-plane-degraded`.
    pub degrade: Degrade,
    /// The lab's Global Datastore failover time.
    pub promotion_time: Duration,
    /// The writer record's TTL (seconds).
    pub record_ttl: i64,
    /// Alarm: errors in `datapoints` of `periods` periods of `period_s` seconds.
    pub alarm_period_s: u64,
    pub alarm_periods: usize,
    pub alarm_datapoints: usize,
    pub targets: Targets,
    pub binary_dir: PathBuf,
    /// Print progress (phase and elapsed time) to stderr.
    pub progress: bool,
}

impl DrillConfig {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            out_dir: root.join("drill-report"),
            mode: "dns".into(),
            workload: WorkloadConfig::default(),
            warmup: Duration::from_secs(3),
            settle: Duration::from_secs(3),
            recovery_timeout: Duration::from_secs(45),
            catch_up_timeout: Duration::from_secs(30),
            link_fault: Duration::from_secs(8),
            link_delay_ms: 150,
            link_loss: 0.2,
            degrade: Degrade::Hang,
            promotion_time: Duration::from_secs(2),
            record_ttl: 1,
            alarm_period_s: 1,
            alarm_periods: 3,
            alarm_datapoints: 2,
            targets: Targets::default(),
            binary_dir: root.join("target/debug"),
            progress: true,
        }
    }
}

/// `lab drill` usage; every timing knob and target is a flag.
pub const USAGE: &str = "lab drill [all|primary-down|link-loss|data-plane-degraded|failback] [options]
  --mode dns|arc            how writers are moved (default dns)
  --out DIR                 report directory (default drill-report)
  --rate N                  session writes per second per Region (20)
  --cache-forever           clients resolve the writer once and never again (the bad client)
  --retries N               times a client retries a failed write (1)
  --ttl S                   the writer record's TTL, seconds (1)
  --warmup S | --settle S | --recovery-timeout S | --link-fault S | --promotion S   timings, seconds
  --link-delay-ms MS --link-loss 0..1      the link-loss fault (150, 0.2)
  --degrade hang|refuse     how the primary's data plane fails in data-plane-degraded (hang)
  --alarm P/M/N             alarm: N of M periods of P seconds with errors (1/3/2)
  --max-stale-ms MS --max-recovery-ms MS --max-lost-writes N    objective targets (3000, 30000, 20;
                            failback's planned leg is always held to 0 lost writes)
  --catch-up-timeout S      failback: how long the returning Region may take to catch up (30)
  --quiet                   no progress lines";

impl DrillConfig {
    /// Applies `lab drill` arguments; returns the scenarios to run.
    pub fn apply_args(&mut self, args: &[String]) -> Result<Vec<Scenario>, String> {
        let mut scenarios = None;
        let mut it = args.iter();
        let secs = |v: Option<&String>, flag: &str| -> Result<Duration, String> {
            v.and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{flag} needs a number of seconds"))
        };
        let num = |v: Option<&String>, flag: &str| -> Result<u64, String> {
            v.and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{flag} needs a whole number"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--mode" => match it.next().map(String::as_str) {
                    Some(m @ ("dns" | "arc")) => self.mode = m.to_owned(),
                    other => return Err(format!("--mode must be dns or arc, got {other:?}")),
                },
                "--out" => {
                    self.out_dir = it.next().map(PathBuf::from).ok_or("--out needs a directory")?;
                }
                "--rate" => {
                    let n = num(it.next(), a)?;
                    self.workload.writes_per_second = u32::try_from(n.clamp(1, 1000)).unwrap_or(20);
                }
                "--degrade" => match it.next().map(String::as_str) {
                    Some("hang") => self.degrade = Degrade::Hang,
                    Some("refuse") => self.degrade = Degrade::Refuse,
                    other => return Err(format!("--degrade must be hang or refuse, got {other:?}")),
                },
                "--cache-forever" => self.workload.behaviour = ClientBehaviour::CacheForever,
                "--retries" => self.workload.retries = u32::try_from(num(it.next(), a)?.min(10)).unwrap_or(1),
                "--ttl" => self.record_ttl = i64::try_from(num(it.next(), a)?).unwrap_or(1),
                "--warmup" => self.warmup = secs(it.next(), a)?,
                "--settle" => self.settle = secs(it.next(), a)?,
                "--recovery-timeout" => self.recovery_timeout = secs(it.next(), a)?,
                "--catch-up-timeout" => self.catch_up_timeout = secs(it.next(), a)?,
                "--link-fault" => self.link_fault = secs(it.next(), a)?,
                "--promotion" => self.promotion_time = secs(it.next(), a)?,
                "--link-delay-ms" => self.link_delay_ms = num(it.next(), a)?,
                "--link-loss" => {
                    self.link_loss = it
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|l| (0.0..=1.0).contains(l))
                        .ok_or("--link-loss needs a number from 0 to 1")?;
                }
                "--alarm" => {
                    let parts: Vec<u64> = it
                        .next()
                        .map(|v| v.split('/').filter_map(|p| p.parse().ok()).collect())
                        .unwrap_or_default();
                    let [p, m, n] = parts.as_slice() else {
                        return Err("--alarm needs P/M/N, e.g. 1/3/2".into());
                    };
                    if *p == 0 || *n == 0 || n > m {
                        return Err("--alarm needs P ≥ 1 and 1 ≤ N ≤ M".into());
                    }
                    self.alarm_period_s = *p;
                    self.alarm_periods = usize::try_from(*m).unwrap_or(3);
                    self.alarm_datapoints = usize::try_from(*n).unwrap_or(2);
                }
                "--max-stale-ms" => self.targets.max_stale_window_ms = num(it.next(), a)?,
                "--max-recovery-ms" => self.targets.max_recovery_ms = num(it.next(), a)?,
                "--max-lost-writes" => {
                    self.targets.max_lost_writes = usize::try_from(num(it.next(), a)?).unwrap_or(0);
                }
                "--quiet" => self.progress = false,
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}\n{USAGE}")),
                name if scenarios.is_none() => {
                    scenarios = Some(Scenario::parse_list(name).map_err(|e| e.to_string())?);
                }
                extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
            }
        }
        Ok(scenarios.unwrap_or_else(|| Scenario::ALL.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn no_scenario_means_all_four() {
        let mut cfg = DrillConfig::new(Path::new("/w"));
        assert_eq!(cfg.apply_args(&[]), Ok(Scenario::ALL.to_vec()));
    }

    #[test]
    fn flags_set_the_knobs_and_targets() {
        let mut cfg = DrillConfig::new(Path::new("/w"));
        let s = cfg
            .apply_args(&args(
                "link-loss --mode arc --rate 5 --cache-forever --link-fault 2.5 --alarm 2/4/3 --max-lost-writes 0 \
                 --degrade refuse --retries 3",
            ))
            .expect("valid");
        assert_eq!(s, vec![Scenario::LinkLoss]);
        assert_eq!(cfg.mode, "arc");
        assert_eq!(cfg.workload.writes_per_second, 5);
        assert_eq!(cfg.workload.behaviour, ClientBehaviour::CacheForever);
        assert_eq!(cfg.link_fault, Duration::from_millis(2500));
        assert_eq!(
            (cfg.alarm_period_s, cfg.alarm_periods, cfg.alarm_datapoints),
            (2, 4, 3)
        );
        assert_eq!(cfg.targets.max_lost_writes, 0);
        assert_eq!(cfg.degrade, Degrade::Refuse);
        assert_eq!(cfg.workload.retries, 3);
    }

    #[test]
    fn bad_arguments_are_named() {
        for (bad, says) in [
            ("--mode ftp", "--mode"),
            ("--degrade slowly", "--degrade"),
            ("region-down", "unknown scenario"),
            ("--link-loss 2", "--link-loss"),
            ("--alarm 1/2/3", "--alarm"),
            ("--frobnicate", "unknown option"),
            ("all link-loss", "unexpected argument"),
        ] {
            let mut cfg = DrillConfig::new(Path::new("/w"));
            let err = cfg.apply_args(&args(bad)).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

/// One scenario's outcome: the report and where its files are.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub report: Report,
    pub dir: PathBuf,
}

struct Progress {
    t0: Instant,
    on: bool,
    scenario: &'static str,
}

impl Progress {
    fn say(&self, what: &str) {
        if self.on {
            eprintln!(
                "[{:>6.1}s] {:<20} {what}",
                self.t0.elapsed().as_secs_f64(),
                self.scenario
            );
        }
    }
}

fn write(path: &Path, contents: &str) -> Result<(), DrillError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DrillError::Write {
            path: dir.display().to_string(),
            error: e.to_string(),
        })?;
    }
    std::fs::write(path, contents).map_err(|e| DrillError::Write {
        path: path.display().to_string(),
        error: e.to_string(),
    })
}

fn lab_config(cfg: &DrillConfig, scenario: Scenario) -> LabConfig {
    let mut lab = LabConfig::two_regions(&cfg.root);
    lab.work_dir = cfg.out_dir.join(scenario.name()).join("lab");
    lab.binary_dir.clone_from(&cfg.binary_dir);
    lab.functions = vec!["traffic-switch".into(), "promoter".into()];
    lab.routing_mode.clone_from(&cfg.mode);
    lab.promotion_time = cfg.promotion_time;
    lab.record_ttl = cfg.record_ttl;
    lab.lambda_retry_delay = Duration::from_millis(500);
    let vantage = lab
        .regions
        .iter()
        .map(|r| format!("{}:{ALARM}", r.name))
        .collect::<Vec<_>>()
        .join(",");
    lab.function_env.extend([
        ("SIGNAL_ALARMS".to_owned(), ALARM.to_owned()),
        ("VANTAGE_ALARMS".to_owned(), vantage),
        ("COOLDOWN_MINUTES".to_owned(), "30".to_owned()),
    ]);
    lab
}

fn alarm(cfg: &DrillConfig, region: &str) -> Alarm {
    write_errors_alarm(
        region,
        cfg.alarm_period_s,
        cfg.alarm_periods,
        cfg.alarm_datapoints,
    )
}

/// The write-error alarm each Region's stack creates ([`ALARM`] on `SessionStore/WriteErrors` for
/// the Region's clients): errors in `datapoints` of `periods` periods of `period_s` seconds.
pub fn write_errors_alarm(region: &str, period_s: u64, periods: usize, datapoints: usize) -> Alarm {
    Alarm {
        region: region.to_owned(),
        name: ALARM.to_owned(),
        arn: format!("arn:aws:cloudwatch:{region}:000000000000:alarm:{ALARM}"),
        namespace: "SessionStore".into(),
        metric: "WriteErrors".into(),
        dimensions: BTreeMap::from([("ClientRegion".to_owned(), region.to_owned())]),
        period_s,
        evaluation_periods: periods,
        datapoints_to_alarm: datapoints,
        threshold: 1.0,
        comparison: "GreaterThanOrEqualToThreshold".into(),
        statistic: "Sum".into(),
        treat_missing: "notBreaching".into(),
        state: "INSUFFICIENT_DATA".into(),
        reason: "created by the lab".into(),
        updated_ms: now_ms(),
    }
}

/// What the drill watches while the scenario runs.
#[derive(Default)]
struct Watch {
    alarm_ms: Option<u64>,
    routed_ms: Option<u64>,
}

impl Watch {
    async fn poll(&mut self, lab: &LabState, source: &WriterSource, fault_ms: u64, new_primary: &str) {
        if self.alarm_ms.is_none()
            && lab
                .cloudwatch
                .alarms()
                .iter()
                .any(|a| a.name == ALARM && a.state == "ALARM" && a.updated_ms >= fault_ms)
        {
            self.alarm_ms = Some(now_ms());
        }
        if self.routed_ms.is_none()
            && resolve_writer(lab, source)
                .await
                .is_some_and(|(w, _)| w == new_primary)
        {
            self.routed_ms = Some(now_ms());
        }
    }
}

/// Runs one scenario on a fresh lab and writes its report, picture and evidence.
pub async fn run_scenario(cfg: &DrillConfig, scenario: Scenario) -> Result<Outcome, DrillError> {
    let progress = Progress {
        t0: Instant::now(),
        on: cfg.progress,
        scenario: scenario.name(),
    };
    progress.say(&format!(
        "starting the lab ({} mode, two Regions, traffic switch + promoter in each)",
        cfg.mode
    ));
    let lab = Lab::start(lab_config(cfg, scenario)).await?;
    let state = Arc::clone(&lab.state);
    let regions: Vec<String> = state.regions.iter().map(|r| r.name.clone()).collect();
    let (old, new) = match (state.regions.first(), state.regions.get(1)) {
        (Some(a), Some(b)) => (a.name.clone(), b.name.clone()),
        _ => return Err(DrillError::Other("the lab has fewer than two Regions".into())),
    };
    let new_endpoint = state
        .regions
        .get(1)
        .map(|r| r.endpoint.clone())
        .unwrap_or_default();
    for r in &regions {
        state.cloudwatch.put_alarm(alarm(cfg, r));
    }
    let source = if cfg.mode == "arc" {
        WriterSource::Arc { ttl: cfg.record_ttl }
    } else {
        WriterSource::Dns {
            zone: lab.endpoints.hosted_zone_id.clone(),
            name: lab.endpoints.record_name.clone(),
        }
    };

    let start_ms = now_ms();
    let workload = Workload::start(Arc::clone(&state), source.clone(), cfg.workload.clone());
    progress.say(&format!(
        "workload running: {} session writes/s per Region, clients {}",
        cfg.workload.writes_per_second,
        match cfg.workload.behaviour {
            ClientBehaviour::HonourTtl => "honouring the writer record's TTL",
            ClientBehaviour::CacheForever => "caching the writer forever",
        }
    ));
    tokio::time::sleep(cfg.warmup).await;

    let fault_ms = now_ms();
    match scenario {
        Scenario::PrimaryDown | Scenario::Failback => {
            progress.say(&format!(
                "FAULT: {old} goes dark (Valkey stopped, its APIs unreachable)"
            ));
            state.set_dark(&old, true).await?;
        }
        Scenario::LinkLoss => {
            progress.say(&format!(
                "FAULT: inter-Region link degraded ({} ms delay, {:.0}% loss)",
                cfg.link_delay_ms,
                cfg.link_loss * 100.0
            ));
            state.set_link(LinkMode::Degraded {
                delay_ms: cfg.link_delay_ms,
                loss: cfg.link_loss,
            });
        }
        Scenario::DataPlaneDegraded => {
            progress.say(&format!(
                "FAULT: {old}'s Valkey {}; the control plane still says available",
                match cfg.degrade {
                    Degrade::Hang => "hangs",
                    Degrade::Refuse => "refuses connections",
                }
            ));
            match cfg.degrade {
                Degrade::Hang => state.freeze_valkey(&old, true).await?,
                Degrade::Refuse => {
                    state.stop_valkey(&old).await;
                }
            }
        }
    }

    let mut watch = Watch::default();
    let mut fault_cleared_ms = None;
    let mut recovered_ms = None;
    let mut said = (false, false, false);
    let wait_until = Instant::now()
        + if scenario.promotes() {
            cfg.recovery_timeout
        } else {
            cfg.link_fault
        };
    while Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        watch.poll(&state, &source, fault_ms, &new_endpoint).await;
        if watch.alarm_ms.is_some() && !said.0 {
            said.0 = true;
            progress.say("write-error alarm in ALARM");
        }
        if state.gds().failovers > 0 && !said.1 {
            said.1 = true;
            progress.say(&format!("{new} promoted to primary"));
        }
        if watch.routed_ms.is_some() && !said.2 {
            said.2 = true;
            progress.say(&format!("writer name now answers {new}"));
        }
        if scenario.promotes() {
            recovered_ms = workload
                .recorder
                .with_samples(|s| report::first_acknowledged_write(s, &new, fault_ms));
            if recovered_ms.is_some() {
                progress.say(&format!("RECOVERED: first session write acknowledged by {new}"));
                break;
            }
        }
    }
    if scenario.promotes() && recovered_ms.is_none() {
        progress.say("no recovery within the timeout");
    }
    match scenario {
        Scenario::LinkLoss => {
            state.set_link(LinkMode::Up);
            fault_cleared_ms = Some(now_ms());
            progress.say("link repaired");
        }
        Scenario::Failback => {}
        Scenario::DataPlaneDegraded => {
            match cfg.degrade {
                Degrade::Hang => state.freeze_valkey(&old, false).await?,
                Degrade::Refuse => state.start_valkey(&old).await?,
            }
            fault_cleared_ms = Some(now_ms());
            progress.say(&format!("{old}'s Valkey back (re-pointed at the primary)"));
        }
        Scenario::PrimaryDown => {}
    }
    // failback: the old primary comes back as a secondary, catches up, and the operator fails
    // the datastore back to it. The report judges this planned leg.
    let mut planned: Option<PlannedLeg> = None;
    let mut notes = Vec::new();
    if scenario == Scenario::Failback {
        notes.push((
            "recovery time (unplanned leg)".to_owned(),
            recovered_ms.map_or_else(
                || "never".to_owned(),
                |r| format!("{} ms", r.saturating_sub(fault_ms)),
            ),
        ));
        let leg = planned_failback(cfg, &lab, &source, &workload, &progress, &old).await?;
        notes.push(("rejoined and caught up".to_owned(), leg.caught_up.clone()));
        notes.push(("planned failback command".to_owned(), leg.command.clone()));
        fault_cleared_ms = Some(leg.back_ms);
        planned = Some(leg);
    }
    progress.say("settling");
    let settle_until = Instant::now() + cfg.settle;
    while Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if planned.is_none() {
            watch.poll(&state, &source, fault_ms, &new_endpoint).await;
        }
    }
    let recorder = workload.stop().await;
    let end_ms = now_ms();
    // Let in-flight invocations finish so their audit records are complete.
    let idle_by = Instant::now() + Duration::from_secs(10);
    while !state.functions_idle() && Instant::now() < idle_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let events = state.events();
    // The leg the report judges: the planned one in a failback, else the fault's.
    let leg_from = planned.as_ref().map_or(fault_ms, |p| p.start_ms);
    let after = |needle: &str| {
        events
            .iter()
            .filter(|e| e.at_ms >= leg_from && e.message.contains(needle))
            .map(|e| e.at_ms)
            .min()
    };
    let acks = recorder.acks();
    let lost = workload::lost_writes(&state, &acks)
        .await
        .map_err(|e| DrillError::Other(format!("counting lost writes: {e}")))?;
    let writer_at_end = resolve_writer(&state, &source).await.and_then(|(w, _)| {
        state
            .regions
            .iter()
            .find(|r| r.endpoint == w.trim_end_matches('.'))
            .map(|r| r.name.clone())
    });
    state.audits_caught_up(Duration::from_secs(2)).await;
    let audits = state.audits();
    let lag_at_decision_s = audits
        .iter()
        .filter(|a| a["audit"] == "promoter" && a["outcome"] == "switched")
        .find_map(|a| a["triggers"][0]["observed"]["lag"][0].as_f64());
    let recorded = Recorded {
        scenario: scenario.name().to_owned(),
        mode: cfg.mode.clone(),
        behaviour: match cfg.workload.behaviour {
            ClientBehaviour::HonourTtl => "honour-ttl".into(),
            ClientBehaviour::CacheForever => "cache-forever".into(),
        },
        regions: regions.clone(),
        markers: Markers {
            start_ms,
            fault_ms: leg_from,
            // A planned failback has no alarm: the operator's command is its detection.
            alarm_ms: if planned.is_some() { None } else { watch.alarm_ms },
            failover_started_ms: after("has started"),
            promoted_ms: after("promoted as primary"),
            routed_ms: planned.as_ref().map_or(watch.routed_ms, |p| p.routed_ms),
            recovered_ms: planned.as_ref().map_or(recovered_ms, |p| p.recovered_ms),
            fault_cleared_ms,
            end_ms,
        },
        samples: recorder.samples(),
        acks,
        visible: recorder.visible(),
        unseen: recorder.unseen(),
        dark_at_end: regions.iter().filter(|r| state.region_dark(r)).cloned().collect(),
        lost,
        promotions: state.gds().failovers,
        writer_region_at_end: writer_at_end,
        connects: recorder.connects(),
        resolutions: recorder.resolutions(),
        retries: recorder.retries(),
        lag_at_decision_s,
        expected: Expected {
            promotions: scenario.expected_promotions(),
            writer_region: match scenario {
                Scenario::LinkLoss | Scenario::Failback => old,
                Scenario::PrimaryDown | Scenario::DataPlaneDegraded => new,
            },
        },
        targets: if planned.is_some() {
            // A planned failback of a caught-up secondary must lose nothing.
            Targets {
                max_lost_writes: 0,
                ..cfg.targets.clone()
            }
        } else {
            cfg.targets.clone()
        },
        leg_start_ms: planned.as_ref().map(|p| p.start_ms),
        notes,
    };
    let report = report::build(&recorded);
    let dir = cfg.out_dir.join(scenario.name());
    let json = serde_json::to_string_pretty(&report).map_err(|e| DrillError::Other(e.to_string()))?;
    write(&dir.join("report.json"), &json)?;
    write(&dir.join("timeline.svg"), &report::svg(&recorded))?;
    write(&dir.join("report.md"), &report::markdown(&report, "timeline.svg"))?;
    let lines: Vec<String> = audits.iter().map(Value::to_string).collect();
    write(&dir.join("audits.jsonl"), &(lines.join("\n") + "\n"))?;
    let invocations =
        serde_json::to_string_pretty(&state.invocations()).map_err(|e| DrillError::Other(e.to_string()))?;
    write(&dir.join("invocations.json"), &invocations)?;
    progress.say(&format!(
        "{} — report in {}",
        if report.passed { "PASS" } else { "FAIL" },
        dir.display()
    ));
    drop(lab);
    Ok(Outcome { report, dir })
}

/// The planned leg of a failback, as measured.
struct PlannedLeg {
    /// When the old primary came back.
    back_ms: u64,
    /// When the operator's command was sent: the leg's start.
    start_ms: u64,
    routed_ms: Option<u64>,
    recovered_ms: Option<u64>,
    caught_up: String,
    command: String,
}

/// The old primary comes back (a secondary now, re-synced from the new primary), catches up as
/// the lag metric shows, then the operator's confirmed `promote` command, run by the promoter in
/// that Region, fails the datastore back. Waits for writers to follow and a write to land there.
async fn planned_failback(
    cfg: &DrillConfig,
    lab: &Lab,
    source: &WriterSource,
    workload: &Workload,
    progress: &Progress,
    old: &str,
) -> Result<PlannedLeg, DrillError> {
    let state = &lab.state;
    let (old_group, old_endpoint) = state
        .region(old)
        .map(|r| (r.group.clone(), r.endpoint.clone()))
        .ok_or_else(|| DrillError::Other(format!("no Region {old}")))?;
    progress.say(&format!("{old} comes back and rejoins as a secondary"));
    let back_ms = now_ms();
    state.set_dark(old, false).await?;
    let dims = BTreeMap::from([("ReplicationGroupId".to_owned(), old_group)]);
    let caught_by = Instant::now() + cfg.catch_up_timeout;
    let caught = loop {
        let lag = state.cloudwatch.latest(
            old,
            "AWS/ElastiCache",
            "GlobalDatastoreReplicationLag",
            &dims,
            back_ms,
        );
        if let Some(p) = lag.filter(|p| p.value <= 1.0) {
            break Some(p);
        }
        if Instant::now() >= caught_by {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let caught_up = match &caught {
        Some(p) => format!("lag {:.3} s at +{} ms", p.value, p.at_ms.saturating_sub(back_ms)),
        None => format!("lag not ≤ 1 s within {} s", cfg.catch_up_timeout.as_secs()),
    };
    progress.say(&format!("{old} caught up: {caught_up}"));

    // Validate before routing back, as the runbook does: the same command as a dry run, until
    // every gate that will hold (state, data_loss) passes. The promoter reads the lag metric's
    // newest period, which can still show the rejoin after the lag itself is back to zero.
    let promoter = state
        .function(old, "promoter")
        .ok_or_else(|| DrillError::Other(format!("no promoter in {old}")))?;
    let promote = |dry_run: bool| {
        serde_json::json!({
            "command": "promote", "target_region": old, "dry_run": dry_run,
            "confirm": state.cfg.datastore_id, "reason": "DR drill: planned failback",
            "force": ["signal", "vantage", "cooldown"],
        })
    };
    let validated_by = Instant::now() + cfg.catch_up_timeout;
    let validated = loop {
        let answer = promoter.invoke_sync(promote(true), "console").await;
        let gates = answer
            .as_ref()
            .ok()
            .map(|v| v["triggers"][0]["decision"]["gates"].clone());
        let holding = gates.as_ref().and_then(Value::as_array).is_some_and(|gs| {
            gs.iter()
                .filter(|g| g["name"] == "state" || g["name"] == "data_loss")
                .all(|g| g["verdict"] == "pass")
        });
        if holding {
            break Some(now_ms());
        }
        if Instant::now() >= validated_by {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let caught_up = match validated {
        Some(at) => format!("{caught_up}, validated at +{} ms", at.saturating_sub(back_ms)),
        None => format!(
            "{caught_up}, not validated within {} s",
            cfg.catch_up_timeout.as_secs()
        ),
    };
    progress.say(&format!("validated: {caught_up}"));

    let start_ms = now_ms();
    progress.say(&format!(
        "PLANNED FAILBACK: the operator's confirmed promote of {old} (signal, vantage and cooldown forced; state and data_loss hold)"
    ));
    let answer = promoter.invoke_sync(promote(false), "console").await;
    let command = match &answer {
        Ok(v) => format!("answered {}", v["outcome"].as_str().unwrap_or("?")),
        Err(e) => format!("failed: {}", e["errorMessage"].as_str().unwrap_or("no message")),
    };
    progress.say(&format!("promote command {command}"));

    let mut routed_ms = None;
    let mut recovered_ms = None;
    let until = Instant::now() + cfg.recovery_timeout;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if routed_ms.is_none()
            && resolve_writer(state, source)
                .await
                .is_some_and(|(w, _)| w.trim_end_matches('.') == old_endpoint)
        {
            routed_ms = Some(now_ms());
            progress.say(&format!("writer name now answers {old}"));
        }
        recovered_ms = workload
            .recorder
            .with_samples(|s| report::first_acknowledged_write(s, old, start_ms));
        if recovered_ms.is_some() {
            progress.say(&format!(
                "RECOVERED: first session write acknowledged by {old} after the failback"
            ));
            break;
        }
    }
    Ok(PlannedLeg {
        back_ms,
        start_ms,
        routed_ms,
        recovered_ms,
        caught_up,
        command,
    })
}

/// Runs the scenarios one after the other, then writes the summary.
pub async fn run(cfg: &DrillConfig, scenarios: &[Scenario]) -> Result<Vec<Outcome>, DrillError> {
    let mut outcomes = Vec::new();
    for s in scenarios {
        outcomes.push(run_scenario(cfg, *s).await?);
    }
    let reports: Vec<Report> = outcomes.iter().map(|o| o.report.clone()).collect();
    let summary = serde_json::json!({
        "passed": reports.iter().all(|r| r.passed),
        "mode": cfg.mode,
        "scenarios": reports,
    });
    write(
        &cfg.out_dir.join("summary.json"),
        &serde_json::to_string_pretty(&summary).map_err(|e| DrillError::Other(e.to_string()))?,
    )?;
    let mut md = format!(
        "# DR drill summary ({} mode)\n\n```\n{}```\n\n",
        cfg.mode,
        report::objectives_table(&reports)
    );
    for o in &outcomes {
        md.push_str(&format!(
            "- [{}]({}/report.md): {}\n",
            o.report.scenario,
            o.report.scenario,
            if o.report.passed { "PASS" } else { "FAIL" }
        ));
    }
    write(&cfg.out_dir.join("summary.md"), &md)?;
    Ok(outcomes)
}
