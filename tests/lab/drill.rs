//! The DR drills, shortened, on labs of their own: each scenario ends the way it must — promoted
//! or not, writers where they belong, losses within bound — and leaves its report, picture and
//! evidence behind.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use failover_lab::drill::{self, DrillConfig, Outcome, Scenario};
use failover_tests::*;

static RUNS: AtomicU32 = AtomicU32::new(0);

fn short(tweak: impl FnOnce(&mut DrillConfig)) -> DrillConfig {
    let root = workspace_root();
    let mut cfg = DrillConfig::new(&root);
    let n = RUNS.fetch_add(1, Ordering::SeqCst);
    cfg.out_dir = root.join(format!("target/drill-tests/{}-{n}", std::process::id()));
    cfg.progress = false;
    cfg.workload.writes_per_second = 10;
    cfg.warmup = Duration::from_millis(1500);
    cfg.settle = Duration::from_millis(1500);
    cfg.promotion_time = Duration::from_millis(500);
    cfg.link_fault = Duration::from_secs(5);
    cfg.recovery_timeout = Duration::from_secs(25);
    tweak(&mut cfg);
    cfg
}

async fn drill_one(cfg: &DrillConfig, scenario: Scenario) -> Outcome {
    drill::run_scenario(cfg, scenario)
        .await
        .unwrap_or_else(|e| panic!("the {} drill must run: {e}", scenario.name()))
}

fn verdict(o: &Outcome, name: &str) -> String {
    o.report
        .objectives
        .iter()
        .find(|x| x.name == name)
        .map(|x| format!("{:?}", x.verdict))
        .unwrap_or_else(|| panic!("no objective {name} in {:#?}", o.report.objectives))
}

fn assert_evidence(o: &Outcome) {
    for file in [
        "report.json",
        "report.md",
        "timeline.svg",
        "audits.jsonl",
        "invocations.json",
    ] {
        let path = o.dir.join(file);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} is missing or empty", path.display());
    }
    let audits = std::fs::read_to_string(o.dir.join("audits.jsonl")).unwrap_or_default();
    assert!(
        audits.lines().any(|l| l.contains("\"promoter\"")),
        "the promoter's audit records are archived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_primary_region_is_failed_over_and_session_writes_resume_on_the_new_primary() {
    let o = drill_one(&short(|_| {}), Scenario::PrimaryDown).await;
    let r = &o.report;
    assert_eq!(r.promotions, 1, "{:#?}", r.objectives);
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-2"));
    assert!(r.passed, "{:#?}", r.objectives);
    let rc = &r.recovery;
    assert!(
        rc.total_ms.is_some() && rc.detection_ms.is_some() && rc.promotion_ms.is_some(),
        "{rc:#?}"
    );
    assert!(r.lost_writes.count <= r.targets.max_lost_writes);
    assert!(
        r.errors_during
            .get("us-west-2")
            .and_then(|e| e.get("write"))
            .copied()
            .unwrap_or(0)
            > 0,
        "the surviving Region's writers saw the outage"
    );
    assert_evidence(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_inter_region_link_is_not_promoted_away_from_and_its_stale_reads_are_reported() {
    let o = drill_one(&short(|_| {}), Scenario::LinkLoss).await;
    let r = &o.report;
    assert_eq!(r.promotions, 0, "{:#?}", r.objectives);
    assert_eq!(verdict(&o, "promotion"), "Pass");
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-1"));
    assert_eq!(r.lost_writes.count, 0, "a slow link loses nothing");
    assert!(
        r.stale_read_window_ms.is_some_and(|w| w >= 150),
        "replication over a 150 ms link is visibly late: {:?}",
        r.stale_read_window_ms
    );
    assert_evidence(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_data_plane_behind_an_available_control_plane_is_failed_over() {
    let o = drill_one(&short(|_| {}), Scenario::DataPlaneDegraded).await;
    let r = &o.report;
    assert_eq!(r.promotions, 1, "{:#?}", r.objectives);
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-2"));
    assert!(r.lost_writes.count <= r.targets.max_lost_writes);
    assert!(r.recovery.total_ms.is_some(), "{:#?}", r.recovery);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_data_plane_refusing_connections_behind_an_available_control_plane_is_failed_over() {
    let o = drill_one(
        &short(|c| c.degrade = drill::Degrade::Refuse),
        Scenario::DataPlaneDegraded,
    )
    .await;
    let r = &o.report;
    assert_eq!(r.promotions, 1, "{:#?}", r.objectives);
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-2"));
    assert!(r.recovery.total_ms.is_some(), "{:#?}", r.recovery);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_arc_mode_a_dark_primary_is_failed_over_through_the_routing_controls() {
    let o = drill_one(&short(|c| c.mode = "arc".into()), Scenario::PrimaryDown).await;
    let r = &o.report;
    assert_eq!(r.mode, "arc");
    assert_eq!(r.promotions, 1, "{:#?}", r.objectives);
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-2"));
    assert!(r.passed, "{:#?}", r.objectives);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_cache_the_writer_forever_never_recover_and_the_drill_fails() {
    let o = drill_one(
        &short(|c| {
            c.workload.behaviour = drill::workload::ClientBehaviour::CacheForever;
            c.recovery_timeout = Duration::from_secs(8);
        }),
        Scenario::PrimaryDown,
    )
    .await;
    let r = &o.report;
    assert_eq!(r.promotions, 1, "the failover itself happened");
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-2"));
    assert_eq!(verdict(&o, "recovery time"), "Fail");
    assert!(!r.passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failback_after_the_old_primary_catches_up_moves_writers_home_and_loses_nothing_on_the_planned_leg()
{
    let o = drill_one(&short(|_| {}), Scenario::Failback).await;
    let r = &o.report;
    assert_eq!(
        r.promotions, 2,
        "a failover and its failback: {:#?}",
        r.objectives
    );
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-1"));
    assert_eq!(verdict(&o, "acknowledged writes lost (planned leg)"), "Pass");
    assert_eq!(r.lost_writes.count, 0);
    assert!(
        r.lost_writes.acknowledged > 0,
        "the planned leg saw writes: {:#?}",
        r.lost_writes
    );
    assert!(r.recovery.total_ms.is_some(), "{:#?}", r.recovery);
    assert!(r.passed, "{:#?}", r.objectives);
    let caught_up = r
        .objectives
        .iter()
        .find(|x| x.name == "rejoined and caught up")
        .expect("the catch-up is reported");
    assert!(caught_up.value.starts_with("lag "), "{}", caught_up.value);
    // The operator's command is in the evidence, with the gates it forced.
    let audits = std::fs::read_to_string(o.dir.join("audits.jsonl")).unwrap_or_default();
    assert!(
        audits
            .lines()
            .any(|l| l.contains("planned failback") && l.contains("\"forced\"")),
        "the promote command's audit record names the forced gates"
    );
    assert_evidence(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_arc_mode_the_failback_moves_the_routing_controls_home() {
    let o = drill_one(&short(|c| c.mode = "arc".into()), Scenario::Failback).await;
    let r = &o.report;
    assert_eq!(r.promotions, 2, "{:#?}", r.objectives);
    assert_eq!(r.writer_region_at_end.as_deref(), Some("us-west-1"));
    assert!(r.passed, "{:#?}", r.objectives);
}
