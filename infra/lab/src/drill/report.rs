//! A drill's report, as pure functions of what was recorded: the objectives (each PASS/FAIL
//! against its target), the recovery broken into its stages, latency per Region and phase, and
//! the timeline picture. The same shape can be filled from a real AWS drill (see the README).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::workload::{Ack, Op, Sample, Visible};

/// Times of what happened, in ms since the epoch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Markers {
    pub start_ms: u64,
    pub fault_ms: u64,
    /// A write-error alarm entered ALARM.
    pub alarm_ms: Option<u64>,
    /// `FailoverGlobalReplicationGroup` was accepted.
    pub failover_started_ms: Option<u64>,
    /// The new primary took writes (the datastore `available` again).
    pub promoted_ms: Option<u64>,
    /// The writer name first answered with the new primary.
    pub routed_ms: Option<u64>,
    /// The first acknowledged write on the new primary.
    pub recovered_ms: Option<u64>,
    /// The fault was removed (link repaired, node thawed).
    pub fault_cleared_ms: Option<u64>,
    pub end_ms: u64,
}

/// The targets objectives are judged against; every one can be set by the user.
#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    /// Longest a reader in another Region may still see the old state.
    pub max_stale_window_ms: u64,
    /// Fault injection to the first write acknowledged by the new primary.
    pub max_recovery_ms: u64,
    /// Acknowledged writes a promotion may lose.
    pub max_lost_writes: usize,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            max_stale_window_ms: 3_000,
            max_recovery_ms: 30_000,
            max_lost_writes: 20,
        }
    }
}

/// What the scenario should end with.
#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    /// How many failovers the scenario makes: 0, 1, or 2 for a failover and its failback.
    pub promotions: u32,
    pub writer_region: String,
}

/// Everything a drill recorded, as the report's input.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub scenario: String,
    pub mode: String,
    pub behaviour: String,
    pub regions: Vec<String>,
    pub markers: Markers,
    pub samples: Vec<Sample>,
    pub acks: Vec<Ack>,
    pub visible: Vec<Visible>,
    /// Per reader Region, acknowledged writes never seen there (key, exposed from ms).
    pub unseen: BTreeMap<String, Vec<(String, u64)>>,
    /// Regions whose node was down at the end (their readers cannot be judged).
    pub dark_at_end: Vec<String>,
    pub lost: Vec<Ack>,
    pub promotions: u32,
    pub writer_region_at_end: Option<String>,
    pub connects: BTreeMap<String, u32>,
    pub resolutions: BTreeMap<String, u32>,
    pub retries: BTreeMap<String, u32>,
    /// The replication lag the promoter read at its decision (s), when it could.
    pub lag_at_decision_s: Option<f64>,
    pub expected: Expected,
    pub targets: Targets,
    /// A scenario of two legs (failover, then a planned failback) judges the second: the markers
    /// are the planned leg's, and writes count for staleness and losses only when acknowledged
    /// from this moment on.
    pub leg_start_ms: Option<u64>,
    /// Facts the scenario reports without a target (name, value).
    pub notes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    /// Reported, with no target.
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Objective {
    pub name: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub errors: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Recovery, stage by stage (ms); `None` where a stage did not happen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    pub total_ms: Option<u64>,
    pub detection_ms: Option<u64>,
    pub decision_ms: Option<u64>,
    pub promotion_ms: Option<u64>,
    pub routing_switch_ms: Option<u64>,
    pub client_pickup_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LostWrites {
    pub count: usize,
    pub acknowledged: usize,
    /// How long before the fault the oldest lost write was acknowledged.
    pub window_before_fault_ms: Option<u64>,
    /// The replication delay the surviving Region saw just before the fault (p99, ms): what a
    /// promotion at that moment should lose at most.
    pub replication_lag_before_fault_ms: Option<f64>,
    pub lag_at_decision_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub event: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub mode: String,
    pub client_behaviour: String,
    pub passed: bool,
    pub objectives: Vec<Objective>,
    pub recovery: Recovery,
    pub stale_read_window_ms: Option<u64>,
    pub writes_still_unseen: usize,
    pub lost_writes: LostWrites,
    /// Per Region, per phase (before / during / after), per command.
    pub latency: BTreeMap<String, BTreeMap<String, BTreeMap<String, Latency>>>,
    /// Failed commands per Region and command during the switchover.
    pub errors_during: BTreeMap<String, BTreeMap<String, usize>>,
    pub connections_opened: BTreeMap<String, u32>,
    pub writer_resolutions: BTreeMap<String, u32>,
    /// Write retries per Region (each failed attempt that was tried again).
    pub write_retries: BTreeMap<String, u32>,
    pub promotions: u32,
    pub writer_region_at_end: Option<String>,
    /// What happened, in time order, in ms from the start of the drill.
    pub timeline: Vec<TimelineEvent>,
    pub targets: Targets,
}

/// Recovery: when `node` first acknowledged a write (not a read: a replica answers reads all
/// along) started at or after `from_ms` — the acknowledgement, not the start, so a write that
/// waited through a timeout and a retry counts when it succeeded.
pub fn first_acknowledged_write(samples: &[Sample], node: &str, from_ms: u64) -> Option<u64> {
    samples
        .iter()
        .filter(|s| s.op == Op::Write && s.ok && s.t_ms >= from_ms && s.node.as_deref() == Some(node))
        .map(|s| s.t_ms + s.latency_ms.max(0.0) as u64)
        .min()
}

/// Nearest-rank percentile of `values` (need not be sorted).
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

fn since(later: Option<u64>, earlier: Option<u64>) -> Option<u64> {
    Some(later?.saturating_sub(earlier?))
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Write => "write",
        Op::ReadWriter => "read",
        Op::ReadLocal => "read_local",
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "never".to_owned(), |v| format!("{:.2} s", v as f64 / 1000.0))
}

/// The end of the switchover: recovery, else the fault's removal, else the end of the drill.
fn switchover_end(m: &Markers) -> u64 {
    m.recovered_ms.or(m.fault_cleared_ms).unwrap_or(m.end_ms)
}

fn phase(m: &Markers, t: u64) -> &'static str {
    if t < m.fault_ms {
        "before"
    } else if t < switchover_end(m) {
        "during"
    } else {
        "after"
    }
}

pub fn build(r: &Recorded) -> Report {
    let m = &r.markers;
    let recovery = Recovery {
        total_ms: since(m.recovered_ms, Some(m.fault_ms)),
        detection_ms: since(m.alarm_ms, Some(m.fault_ms)),
        decision_ms: since(m.failover_started_ms, m.alarm_ms),
        promotion_ms: since(m.promoted_ms, m.failover_started_ms),
        routing_switch_ms: since(m.routed_ms, m.promoted_ms),
        client_pickup_ms: since(m.recovered_ms, m.routed_ms),
    };

    // Stale reads: how long after its acknowledgement a write was still missing from a reader's
    // local node — seen late, or (not lost, reader up) never seen by the end.
    let leg = r.leg_start_ms.unwrap_or(0);
    let lost: std::collections::HashSet<&str> = r.lost.iter().map(|a| a.key.as_str()).collect();
    let seen_late = r
        .visible
        .iter()
        .filter(|v| v.exposed_ms >= leg)
        .map(|v| v.seen_ms.saturating_sub(v.exposed_ms));
    let still_unseen: Vec<u64> = r
        .unseen
        .iter()
        .filter(|(reader, _)| !r.dark_at_end.contains(reader))
        .flat_map(|(_, keys)| keys.iter())
        .filter(|(k, exposed)| !lost.contains(k.as_str()) && *exposed >= leg)
        .map(|(_, exposed)| m.end_ms.saturating_sub(*exposed))
        .collect();
    let stale_window = seen_late.chain(still_unseen.iter().copied()).max();

    // Replication delay the other Regions saw in the two seconds before the fault.
    let node_of: std::collections::HashMap<&str, &str> =
        r.acks.iter().map(|a| (a.key.as_str(), a.node.as_str())).collect();
    let lag_before: Vec<f64> = r
        .visible
        .iter()
        .filter(|v| v.acked_ms + 2_000 >= m.fault_ms && v.acked_ms < m.fault_ms)
        .filter(|v| node_of.get(v.key.as_str()).is_some_and(|n| *n != v.reader))
        .map(|v| v.seen_ms.saturating_sub(v.acked_ms) as f64)
        .collect();
    let lost_in_leg: Vec<&Ack> = r.lost.iter().filter(|a| a.t_ms >= leg).collect();
    let acked_in_leg = r.acks.iter().filter(|a| a.t_ms >= leg).count();
    let lost_writes = LostWrites {
        count: lost_in_leg.len(),
        acknowledged: acked_in_leg,
        window_before_fault_ms: lost_in_leg
            .iter()
            .map(|a| a.t_ms)
            .min()
            .map(|t| m.fault_ms.saturating_sub(t)),
        replication_lag_before_fault_ms: percentile(&lag_before, 99.0),
        lag_at_decision_s: r.lag_at_decision_s,
    };

    let mut latency: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<&Sample>>>> = BTreeMap::new();
    let mut errors_during: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for s in &r.samples {
        let p = phase(m, s.t_ms);
        latency
            .entry(s.region.clone())
            .or_default()
            .entry(p.to_owned())
            .or_default()
            .entry(op_name(s.op).to_owned())
            .or_default()
            .push(s);
        if p == "during" && !s.ok {
            *errors_during
                .entry(s.region.clone())
                .or_default()
                .entry(op_name(s.op).to_owned())
                .or_default() += 1;
        }
    }
    let latency = latency
        .into_iter()
        .map(|(region, phases)| {
            let phases = phases
                .into_iter()
                .map(|(p, ops)| {
                    let ops = ops
                        .into_iter()
                        .map(|(op, samples)| {
                            let ok: Vec<f64> =
                                samples.iter().filter(|s| s.ok).map(|s| s.latency_ms).collect();
                            let l = Latency {
                                count: samples.len(),
                                errors: samples.iter().filter(|s| !s.ok).count(),
                                p50_ms: percentile(&ok, 50.0),
                                p95_ms: percentile(&ok, 95.0),
                                p99_ms: percentile(&ok, 99.0),
                            };
                            (op, l)
                        })
                        .collect();
                    (p, ops)
                })
                .collect();
            (region, phases)
        })
        .collect();

    let t = &r.targets;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let judge = |pass: bool| if pass { Verdict::Pass } else { Verdict::Fail };
    let promoted = r.promotions > 0;
    let mut objectives = vec![
        Objective {
            name: "promotion".into(),
            value: format!("{} ({} failover(s))", yes_no(promoted), r.promotions),
            target: match r.expected.promotions {
                0 => "no".to_owned(),
                1 => "yes (1 failover(s))".to_owned(),
                n => format!("yes ({n} failover(s))"),
            },
            verdict: judge(r.promotions == r.expected.promotions),
        },
        Objective {
            name: "writers at the end".into(),
            value: r
                .writer_region_at_end
                .clone()
                .unwrap_or_else(|| "unresolved".into()),
            target: r.expected.writer_region.clone(),
            verdict: judge(r.writer_region_at_end.as_deref() == Some(r.expected.writer_region.as_str())),
        },
    ];
    let leg_name = |name: &str| {
        if r.leg_start_ms.is_some() {
            format!("{name} (planned leg)")
        } else {
            name.to_owned()
        }
    };
    if r.expected.promotions > 0 {
        objectives.push(Objective {
            name: leg_name("recovery time"),
            value: ms(recovery.total_ms),
            target: format!("≤ {}", ms(Some(t.max_recovery_ms))),
            verdict: judge(recovery.total_ms.is_some_and(|v| v <= t.max_recovery_ms)),
        });
    }
    objectives.push(Objective {
        name: leg_name("stale-read window"),
        value: stale_window.map_or_else(|| "none".to_owned(), |v| ms(Some(v))),
        target: format!("≤ {}", ms(Some(t.max_stale_window_ms))),
        verdict: judge(stale_window.unwrap_or(0) <= t.max_stale_window_ms),
    });
    objectives.push(Objective {
        name: leg_name("acknowledged writes lost"),
        value: format!("{} of {}", lost_writes.count, lost_writes.acknowledged),
        target: format!("≤ {}", t.max_lost_writes),
        verdict: judge(lost_writes.count <= t.max_lost_writes),
    });
    for (name, value) in &r.notes {
        objectives.push(Objective {
            name: name.clone(),
            value: value.clone(),
            target: "reported".into(),
            verdict: Verdict::Info,
        });
    }
    if r.leg_start_ms.is_some() {
        objectives.push(Objective {
            name: "acknowledged writes lost (whole drill)".into(),
            value: format!("{} of {}", r.lost.len(), r.acks.len()),
            target: "reported".into(),
            verdict: Verdict::Info,
        });
    }
    let errors: usize = errors_during.values().flat_map(|m| m.values()).sum();
    objectives.push(Objective {
        name: "failed commands during the switchover".into(),
        value: errors.to_string(),
        target: "reported".into(),
        verdict: Verdict::Info,
    });
    let passed = objectives.iter().all(|o| o.verdict != Verdict::Fail);

    let rel = |v: u64| v.saturating_sub(m.start_ms);
    let mut timeline: Vec<TimelineEvent> = Vec::new();
    for (name, v) in [
        ("fault", Some(m.fault_ms)),
        ("alarm", m.alarm_ms),
        ("failover_started", m.failover_started_ms),
        ("promoted", m.promoted_ms),
        ("routed", m.routed_ms),
        ("recovered", m.recovered_ms),
        ("fault_cleared", m.fault_cleared_ms),
    ] {
        if let Some(v) = v {
            timeline.push(TimelineEvent {
                event: name.to_owned(),
                at_ms: rel(v),
            });
        }
    }
    timeline.push(TimelineEvent {
        event: "end".to_owned(),
        at_ms: rel(m.end_ms),
    });
    timeline.sort_by_key(|e| e.at_ms);

    Report {
        scenario: r.scenario.clone(),
        mode: r.mode.clone(),
        client_behaviour: r.behaviour.clone(),
        passed,
        objectives,
        recovery,
        stale_read_window_ms: stale_window,
        writes_still_unseen: still_unseen.len(),
        lost_writes,
        latency,
        errors_during,
        connections_opened: r.connects.clone(),
        writer_resolutions: r.resolutions.clone(),
        write_retries: r.retries.clone(),
        promotions: r.promotions,
        writer_region_at_end: r.writer_region_at_end.clone(),
        timeline,
        targets: t.clone(),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

/// The objectives as a plain-text table (what the drill prints).
pub fn objectives_table(reports: &[Report]) -> String {
    // Columns as wide as their longest cell, so long values never push the verdicts out of line.
    let rows: Vec<[String; 5]> = reports
        .iter()
        .flat_map(|r| {
            r.objectives.iter().map(|o| {
                [
                    format!("{} ({})", r.scenario, r.mode),
                    o.name.clone(),
                    o.value.clone(),
                    o.target.clone(),
                    format!("{:?}", o.verdict),
                ]
            })
        })
        .collect();
    let header = ["scenario", "objective", "value", "target", "verdict"].map(str::to_owned);
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let _ = writeln!(
            out,
            "{:<w0$} {:<w1$} {:<w2$} {:<w3$} {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    out
}

/// The human report for one scenario.
pub fn markdown(r: &Report, svg_name: &str) -> String {
    let mut md = String::new();
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        md,
        "# Drill: {} ({} mode, clients {}) — {verdict}\n",
        r.scenario, r.mode, r.client_behaviour
    );
    let _ = writeln!(md, "![timeline]({svg_name})\n");
    let _ = writeln!(
        md,
        "## Objectives\n\n| objective | value | target | verdict |\n|---|---|---|---|"
    );
    for o in &r.objectives {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:?} |",
            o.name, o.value, o.target, o.verdict
        );
    }
    let rc = &r.recovery;
    let _ = writeln!(
        md,
        "\n## Recovery\n\n| stage | time |\n|---|---|\n| detection (fault → alarm) | {} |\n| decision (alarm → failover call) | {} |\n| promotion (call → new primary) | {} |\n| routing switch (new primary → writer name answers it) | {} |\n| client pickup (→ first write acknowledged there) | {} |\n| **total** | **{}** |",
        ms(rc.detection_ms),
        ms(rc.decision_ms),
        ms(rc.promotion_ms),
        ms(rc.routing_switch_ms),
        ms(rc.client_pickup_ms),
        ms(rc.total_ms)
    );
    let l = &r.lost_writes;
    let _ = writeln!(
        md,
        "\n## Lost writes\n\n{} of {} acknowledged writes are not on the primary at the end.{} Replication delay just before the fault (p99): {} ms. Lag the promoter read at its decision: {}.",
        l.count,
        l.acknowledged,
        l.window_before_fault_ms.map_or_else(String::new, |w| format!(
            " The oldest was acknowledged {} before the fault.",
            ms(Some(w))
        )),
        opt_ms(l.replication_lag_before_fault_ms),
        l.lag_at_decision_s
            .map_or_else(|| "not readable".to_owned(), |s| format!("{s:.3} s"))
    );
    let _ = writeln!(
        md,
        "\n## Latency (ms, successful commands) and errors\n\n| Region | phase | command | count | errors | p50 | p95 | p99 |\n|---|---|---|---|---|---|---|---|"
    );
    for (region, phases) in &r.latency {
        for p in ["before", "during", "after"] {
            for (op, s) in phases.get(p).into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "| {region} | {p} | {op} | {} | {} | {} | {} | {} |",
                    s.count,
                    s.errors,
                    opt_ms(s.p50_ms),
                    opt_ms(s.p95_ms),
                    opt_ms(s.p99_ms)
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "\nConnections opened per Region: {:?}. Writer-name resolutions per Region: {:?}. Write retries per Region: {:?}.",
        r.connections_opened, r.writer_resolutions, r.write_retries
    );
    let _ = writeln!(
        md,
        "\n## Timeline (ms from start)\n\n{}\n\nEvidence: `audits.jsonl` holds the audit record of every function invocation, `report.json` this report.",
        r.timeline
            .iter()
            .map(|e| format!("- {} ms: {}", e.at_ms, e.event))
            .collect::<Vec<_>>()
            .join("\n")
    );
    md
}

/// The timeline picture: per Region, acknowledged and failed writes per bin, and write latency
/// (p95 per bin), with a vertical marker for each event.
pub fn svg(r: &Recorded) -> String {
    const W: f64 = 960.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    const PANEL: f64 = 120.0;
    const GAP: f64 = 40.0;
    const BIN_MS: u64 = 250;
    let m = &r.markers;
    let span = m.end_ms.saturating_sub(m.start_ms).max(1);
    let x = |t: u64| LEFT + (t.saturating_sub(m.start_ms) as f64 / span as f64) * (W - LEFT - RIGHT);
    let bins = (span / BIN_MS + 1) as usize;
    let panels = r.regions.len() * 2;
    let h = 90.0 + panels as f64 * (PANEL + GAP);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14">{} ({} mode): writes per {BIN_MS} ms and write latency, per Region</text>"#,
        r.scenario, r.mode
    );
    let mut top = 90.0;
    for region in &r.regions {
        let mut ok = vec![0u32; bins];
        let mut err = vec![0u32; bins];
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); bins];
        for smp in r
            .samples
            .iter()
            .filter(|s| &s.region == region && s.op == Op::Write)
        {
            let b = (smp.t_ms.saturating_sub(m.start_ms) / BIN_MS) as usize;
            if b < bins {
                if smp.ok {
                    ok[b] += 1;
                } else {
                    err[b] += 1;
                }
                // Failed writes count too: a timeout is what the user waited.
                lat[b].push(smp.latency_ms);
            }
        }
        let max_count = ok.iter().chain(err.iter()).copied().max().unwrap_or(1).max(1);
        let bar_w = ((W - LEFT - RIGHT) / bins as f64).max(1.0);
        // Panel 1: acknowledged (green) and failed (red) writes.
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{}">{region}: writes acknowledged (green) / failed (red)</text><rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#ccc"/>"##,
            top - 4.0,
            W - LEFT - RIGHT
        );
        for b in 0..bins {
            let bx = LEFT + b as f64 * bar_w;
            for (count, colour, offset) in [(ok[b], "#2a9d3f", 0.0), (err[b], "#d62728", bar_w / 2.0)] {
                if count > 0 {
                    let bh = f64::from(count) / f64::from(max_count) * PANEL;
                    let _ = writeln!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"/>"#,
                        bx + offset,
                        top + PANEL - bh,
                        (bar_w / 2.0).max(0.5)
                    );
                }
            }
        }
        top += PANEL + GAP;
        // Panel 2: p95 write latency per bin.
        let p95: Vec<Option<f64>> = lat.iter().map(|v| percentile(v, 95.0)).collect();
        let max_lat = p95.iter().flatten().copied().fold(1.0_f64, f64::max);
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{}">{region}: write latency p95, failed writes included (max {max_lat:.0} ms)</text><rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#ccc"/>"##,
            top - 4.0,
            W - LEFT - RIGHT
        );
        // One line per run of bins with writes: no line is drawn across a gap with none.
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (b, v) in p95.iter().enumerate() {
            match v {
                Some(v) => {
                    if let Some(run) = runs.last_mut() {
                        run.push(format!(
                            "{:.1},{:.1}",
                            LEFT + (b as f64 + 0.5) * bar_w,
                            top + PANEL - v / max_lat * PANEL
                        ));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>"##,
                run.join(" ")
            );
        }
        top += PANEL + GAP;
    }
    for (i, (name, t, colour)) in [
        ("fault", Some(m.fault_ms), "#d62728"),
        ("alarm", m.alarm_ms, "#ff7f0e"),
        ("failover", m.failover_started_ms, "#9467bd"),
        ("promoted", m.promoted_ms, "#8c564b"),
        ("routed", m.routed_ms, "#17becf"),
        ("recovered", m.recovered_ms, "#2a9d3f"),
        ("cleared", m.fault_cleared_ms, "#7f7f7f"),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(t) = t {
            let mx = x(t);
            // Labels on three staggered rows, so markers close in time stay readable.
            let ly = 38.0 + (i % 3) as f64 * 12.0;
            let _ = writeln!(
                s,
                r#"<line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 3"/><text x="{:.1}" y="{ly:.1}" fill="{colour}" class="marker">{name}</text>"#,
                ly - 9.0,
                h - 10.0,
                mx + 2.0
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">0 s</text><text x="{:.1}" y="{:.1}" text-anchor="end">{:.1} s</text>"#,
        h - 2.0,
        W - RIGHT,
        h - 2.0,
        span as f64 / 1000.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(region: &str, t_ms: u64, ok: bool, latency_ms: f64) -> Sample {
        Sample {
            t_ms,
            region: region.into(),
            op: Op::Write,
            ok,
            latency_ms,
            node: Some("us-west-1".into()),
            attempts: 1,
            error: (!ok).then(|| "refused".into()),
        }
    }

    fn ack(key: &str, t_ms: u64) -> Ack {
        Ack {
            key: key.into(),
            region: "us-west-2".into(),
            node: "us-west-1".into(),
            t_ms,
        }
    }

    fn recorded() -> Recorded {
        Recorded {
            scenario: "primary-down".into(),
            mode: "dns".into(),
            behaviour: "honour_ttl".into(),
            regions: vec!["us-west-1".into(), "us-west-2".into()],
            markers: Markers {
                start_ms: 0,
                fault_ms: 3_000,
                alarm_ms: Some(5_000),
                failover_started_ms: Some(5_400),
                promoted_ms: Some(7_400),
                routed_ms: Some(7_500),
                recovered_ms: Some(8_000),
                fault_cleared_ms: None,
                end_ms: 11_000,
            },
            samples: vec![
                sample("us-west-2", 1_000, true, 2.0),
                sample("us-west-2", 4_000, false, 500.0),
                sample("us-west-2", 9_000, true, 1.0),
            ],
            acks: vec![ack("a", 2_900), ack("b", 2_990)],
            visible: vec![Visible {
                reader: "us-west-2".into(),
                key: "a".into(),
                acked_ms: 2_900,
                exposed_ms: 2_900,
                seen_ms: 2_950,
            }],
            unseen: BTreeMap::from([("us-west-2".to_owned(), vec![("b".to_owned(), 2_990)])]),
            dark_at_end: vec!["us-west-1".into()],
            lost: vec![ack("b", 2_990)],
            promotions: 1,
            writer_region_at_end: Some("us-west-2".into()),
            connects: BTreeMap::new(),
            resolutions: BTreeMap::new(),
            retries: BTreeMap::new(),
            lag_at_decision_s: None,
            expected: Expected {
                promotions: 1,
                writer_region: "us-west-2".into(),
            },
            targets: Targets::default(),
            leg_start_ms: None,
            notes: Vec::new(),
        }
    }

    fn verdict(r: &Report, name: &str) -> Verdict {
        r.objectives
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.verdict.clone())
            .unwrap_or_else(|| panic!("no objective {name}"))
    }

    #[test]
    fn only_a_write_acknowledged_by_the_new_primary_counts_as_recovery() {
        let mut read = sample("us-west-2", 3_500, true, 0.4);
        read.op = Op::ReadLocal;
        read.node = Some("us-west-2".into());
        let mut old = sample("us-west-2", 3_600, true, 0.4);
        old.node = Some("us-west-1".into());
        let mut early = sample("us-west-2", 2_000, true, 0.4);
        early.node = Some("us-west-2".into());
        let mut write = sample("us-west-2", 7_000, true, 0.4);
        write.node = Some("us-west-2".into());
        let samples = [read, old, early, write];
        assert_eq!(
            first_acknowledged_write(&samples, "us-west-2", 3_000),
            Some(7_000)
        );
        assert_eq!(first_acknowledged_write(&samples[..3], "us-west-2", 3_000), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn recovery_is_broken_into_its_stages_and_they_add_up() {
        let r = build(&recorded());
        let rc = &r.recovery;
        assert_eq!(rc.total_ms, Some(5_000));
        let stages = [
            rc.detection_ms,
            rc.decision_ms,
            rc.promotion_ms,
            rc.routing_switch_ms,
            rc.client_pickup_ms,
        ];
        assert_eq!(stages.iter().flatten().sum::<u64>(), 5_000);
        assert!(r.passed, "{:#?}", r.objectives);
    }

    #[test]
    fn a_lost_write_is_not_also_counted_as_a_stale_read() {
        let r = build(&recorded());
        assert_eq!(r.lost_writes.count, 1);
        assert_eq!(r.lost_writes.window_before_fault_ms, Some(10));
        assert_eq!(r.stale_read_window_ms, Some(50));
        assert_eq!(r.writes_still_unseen, 0);
    }

    #[test]
    fn a_write_never_seen_by_a_live_reader_is_stale_until_the_end() {
        let mut rec = recorded();
        rec.lost.clear();
        let r = build(&rec);
        assert_eq!(r.stale_read_window_ms, Some(11_000 - 2_990));
        assert_eq!(verdict(&r, "stale-read window"), Verdict::Fail);
    }

    #[test]
    fn no_recovery_fails_the_recovery_objective_and_the_drill() {
        let mut rec = recorded();
        rec.markers.recovered_ms = None;
        let r = build(&rec);
        assert_eq!(verdict(&r, "recovery time"), Verdict::Fail);
        assert!(!r.passed);
    }

    #[test]
    fn an_unexpected_promotion_or_a_second_one_fails() {
        let mut rec = recorded();
        rec.expected.promotions = 0;
        assert_eq!(verdict(&build(&rec), "promotion"), Verdict::Fail);
        let mut rec = recorded();
        rec.promotions = 2;
        assert_eq!(verdict(&build(&rec), "promotion"), Verdict::Fail);
    }

    #[test]
    fn a_failback_expects_two_failovers_and_judges_only_its_planned_leg() {
        let mut rec = recorded();
        rec.expected.promotions = 2;
        rec.promotions = 2;
        rec.targets.max_lost_writes = 0;
        // "b" (acknowledged at 2 990 ms, lost) belongs to the first leg; the planned leg starts
        // at 3 000 ms and lost nothing.
        rec.leg_start_ms = Some(3_000);
        let r = build(&rec);
        assert_eq!(verdict(&r, "promotion"), Verdict::Pass);
        assert_eq!(
            verdict(&r, "acknowledged writes lost (planned leg)"),
            Verdict::Pass
        );
        assert_eq!(r.lost_writes.count, 0);
        assert_eq!(
            verdict(&r, "acknowledged writes lost (whole drill)"),
            Verdict::Info
        );
        assert!(
            r.objectives
                .iter()
                .any(|o| o.name == "recovery time (planned leg)")
        );
        // A write lost inside the planned leg fails it.
        rec.leg_start_ms = Some(2_000);
        let r = build(&rec);
        assert_eq!(
            verdict(&r, "acknowledged writes lost (planned leg)"),
            Verdict::Fail
        );
    }

    #[test]
    fn too_many_lost_writes_fail() {
        let mut rec = recorded();
        rec.targets.max_lost_writes = 0;
        assert_eq!(verdict(&build(&rec), "acknowledged writes lost"), Verdict::Fail);
    }

    #[test]
    fn errors_during_the_switchover_are_counted_per_region_and_command() {
        let r = build(&recorded());
        assert_eq!(r.errors_during["us-west-2"]["write"], 1);
        let before = &r.latency["us-west-2"]["before"]["write"];
        assert_eq!((before.count, before.errors, before.p50_ms), (1, 0, Some(2.0)));
    }

    #[test]
    fn the_picture_has_a_marker_for_every_event_that_happened() {
        let svg = svg(&recorded());
        for name in ["fault", "alarm", "failover", "promoted", "routed", "recovered"] {
            assert!(svg.contains(&format!(">{name}</text>")), "{name}");
        }
        assert!(!svg.contains(">cleared</text>"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
