//! `make demo`: a Global Datastore failover in the local two-Region lab, end to end.
//!
//! Real Valkey in two Regions, the lab's Route 53, the emulated Global Datastore control plane,
//! and the real traffic-switch binary in each Region behind the lab's Lambda Runtime API: a
//! failover, a stale notification that changes nothing, then the failback.

use std::time::{Duration, Instant};

use failover_lab::{Lab, LabConfig};
use failover_tests::{failover_via_sdk, workspace_root};

#[tokio::main]
async fn main() {
    let root = workspace_root();
    let mut cfg = LabConfig::two_regions(&root);
    cfg.work_dir = root.join(".lab/demo");
    let lab = match Lab::start(cfg).await {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("the lab did not start: {e}");
            std::process::exit(1);
        }
    };
    let t0 = Instant::now();
    let at = || format!("{:>6.2}s", t0.elapsed().as_secs_f64());
    println!("lab up: us-west-1 primary, us-west-2 replicating through the inter-Region link");
    println!(
        "{}  writer CNAME → {}",
        at(),
        lab.writer_record().await.unwrap_or_default()
    );

    fail_over(&lab, 1, &at).await;
    // A stale promotion of us-west-1, delivered late: must change nothing.
    let stale =
        serde_json::json!({"ElastiCache:ReplicationGroupPromotedAsPrimary": lab.state.regions[0].group});
    lab.state
        .publish("us-west-1", "ElastiCache Notification", &stale.to_string());
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "{}  stale promotion of us-west-1 replayed to us-west-1's switch",
        at()
    );
    println!(
        "{}  writer CNAME → {}",
        at(),
        lab.writer_record().await.unwrap_or_default()
    );

    // The failback: the runbook's last step, after the old primary is validated.
    fail_over(&lab, 0, &at).await;

    println!("\nevery invocation, as the audit records tell it:");
    for r in lab.state.invocations() {
        let reason = r.response["triggers"][0]["decisions"]
            .as_array()
            .and_then(|d| d.last())
            .and_then(|p| p["reason"].as_str())
            .unwrap_or("");
        println!(
            "  {} {:<14} {:<9} {}",
            r.region,
            r.function,
            r.response["outcome"].as_str().unwrap_or(&r.outcome),
            reason
        );
    }
}

/// Fails the datastore over to region `to` (its index in the lab) and waits for the writer CNAME
/// to follow, printing each step; exits if it does not within 30 s.
async fn fail_over(lab: &Lab, to: usize, at: &impl Fn() -> String) {
    let target = &lab.state.regions[to];
    let before = lab.state.gds().failovers;
    match failover_via_sdk(lab, &target.name).await {
        Ok(_) => println!(
            "{}  FailoverGlobalReplicationGroup → {} (datastore modifying)",
            at(),
            target.name
        ),
        Err(e) => {
            eprintln!("failover refused: {e:?}");
            std::process::exit(1);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut promoted = false;
    loop {
        if !promoted && lab.state.gds().failovers > before {
            promoted = true;
            println!(
                "{}  {} promoted; ElastiCache published ReplicationGroupPromotedAsPrimary",
                at(),
                target.name
            );
        }
        if promoted && lab.writer_record().await.as_deref() == Some(target.endpoint.as_str()) {
            println!(
                "{}  traffic switch ({}) moved the writer CNAME → {}",
                at(),
                target.name,
                target.endpoint
            );
            return;
        }
        if Instant::now() > deadline {
            eprintln!("the writer CNAME did not move within 30 s; see .lab/demo/logs/");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
