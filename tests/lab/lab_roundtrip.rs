//! Round trips on the lab with the real traffic-switch binaries: failover → failback → failover,
//! writers following every time in dns and arc mode; and two real switches racing for one
//! record, the loser reading again, both ending right.

use std::time::Duration;

use failover_lab::route53::Operation;
use failover_lab::{Lab, SnsFaults};
use failover_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Where writers point now: the CNAME's Region (dns) or the one Region whose control is On (arc).
fn writers(lab: &Lab) -> Option<String> {
    failover_lab::chaos::writers_now(lab)
}

async fn writers_reach(lab: &Lab, region: &str) {
    eventually(LIMIT, &format!("writers to point at {region}"), || async {
        (writers(lab).as_deref() == Some(region) && lab.state.functions_idle()).then_some(())
    })
    .await;
}

async fn available_on(lab: &Lab, region: &str) {
    eventually(
        LIMIT,
        &format!("{region} to be the primary of an available datastore"),
        || async {
            let g = lab.state.gds();
            (g.status == "available" && lab.state.regions[g.primary].name == region).then_some(())
        },
    )
    .await;
}

/// A write from `from_region` through the writer name, to whichever node it names.
async fn write_through_writer(lab: &Lab, from_region: &str, key: &str) -> redis::RedisResult<()> {
    let region = writers(lab).expect("writers point at a member");
    let endpoint = lab.state.region(&region).expect("a lab Region").endpoint.clone();
    let addr = lab.state.resolve(&endpoint, from_region).expect("a lab endpoint");
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("SET")
        .arg(key)
        .arg("session")
        .query_async::<()>(&mut conn)
        .await
}

/// Fails the datastore over to `to` with its promotion notification lost, then lets SNS deliver
/// again: writers are left behind on the old primary for a trigger to fix.
async fn failover_unannounced(lab: &Lab, to: &str) {
    *lab.state.sns.lock().expect("sns") = SnsFaults {
        drop: true,
        ..SnsFaults::default()
    };
    let published = lab.state.publications().len();
    failover_via_sdk(lab, to).await.expect("failover starts");
    available_on(lab, to).await;
    eventually(LIMIT, "the promotion to be published (and lost)", || async {
        (lab.state.publications().len() > published).then_some(())
    })
    .await;
    *lab.state.sns.lock().expect("sns") = SnsFaults::default();
    assert_ne!(writers(lab).as_deref(), Some(to), "writers were left behind");
}

async fn round_trip(mode: &str) {
    let lab = start_lab(|cfg| cfg.routing_mode = mode.to_owned()).await;
    assert_eq!(writers(&lab).as_deref(), Some("us-west-1"));
    for (leg, to) in ["us-west-2", "us-west-1", "us-west-2"].into_iter().enumerate() {
        failover_via_sdk(&lab, to)
            .await
            .unwrap_or_else(|e| panic!("{mode} leg {leg}: the failover to {to} starts: {e:?}"));
        available_on(&lab, to).await;
        writers_reach(&lab, to).await;
        write_through_writer(&lab, "us-west-1", &format!("{mode}-leg-{leg}"))
            .await
            .unwrap_or_else(|e| panic!("{mode} leg {leg}: writers on {to} can write: {e}"));
    }
    // Every write of where writers point was one of the switches', and followed the primary.
    let moved_to: Vec<Option<String>> = match mode {
        "arc" => lab
            .state
            .arc
            .changes()
            .iter()
            .map(|c| {
                c.set
                    .iter()
                    .find(|(_, on)| **on)
                    .and_then(|(arn, _)| lab.state.arc.controls.iter().find(|k| &k.arn == arn))
                    .map(|k| k.region.clone())
            })
            .collect(),
        _ => lab
            .state
            .route53
            .changes()
            .iter()
            .filter(|c| !c.direct)
            .map(|c| {
                let value = c
                    .changes
                    .iter()
                    .find(|e| e.action == "CREATE")?
                    .values
                    .first()?
                    .clone();
                lab.state
                    .regions
                    .iter()
                    .find(|r| r.endpoint == value.trim_end_matches('.'))
                    .map(|r| r.name.clone())
            })
            .collect(),
    };
    let want: Vec<Option<String>> = ["us-west-2", "us-west-1", "us-west-2"]
        .iter()
        .map(|r| Some((*r).to_owned()))
        .collect();
    assert_eq!(moved_to, want, "{mode}: one change per leg, to the new primary");
    let failed: Vec<_> = lab
        .state
        .invocations()
        .into_iter()
        .filter(|i| i.outcome != "ok")
        .map(|i| i.response)
        .collect();
    assert!(failed.is_empty(), "{mode}: no invocation failed: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dns_mode_writers_follow_a_failover_a_failback_and_a_failover_again() {
    round_trip("dns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_arc_mode_writers_follow_a_failover_a_failback_and_a_failover_again() {
    round_trip("arc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_switches_racing_for_one_record_apply_one_change_and_the_loser_reads_again() {
    let lab = start_lab(|_| {}).await;
    // The datastore fails over while its promotion notification is lost: the record is left on
    // usw1 with usw2 primary, for both Regions' switches to find.
    failover_unannounced(&lab, "us-west-2").await;
    // Each change is applied 500 ms after it arrives, so both switches read the old record before
    // either change lands: both send the same compare-and-swap, and only one can match.
    lab.state
        .route53
        .set_latency(Operation::ChangeResourceRecordSets, Duration::from_millis(500));
    for region in ["us-west-1", "us-west-2"] {
        let f = lab
            .state
            .function(region, "traffic-switch")
            .expect("a switch in each Region");
        f.invoke_async(
            serde_json::from_str(fixture("alarm-eventbridge.json")).expect("fixture"),
            "eventbridge",
        );
    }
    writers_reach(&lab, "us-west-2").await;
    assert!(
        lab.state.audits_caught_up(LIMIT).await,
        "every audit line arrives"
    );
    let applied: Vec<_> = lab
        .state
        .route53
        .changes()
        .into_iter()
        .filter(|c| !c.direct)
        .collect();
    assert_eq!(applied.len(), 1, "exactly one swap was applied: {applied:?}");
    let audits = lab.state.audits();
    let mut outcomes: Vec<&str> = audits.iter().filter_map(|a| a["outcome"].as_str()).collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["no_op", "switched"], "{audits:#?}");
    let loser = audits
        .iter()
        .find(|a| a["outcome"] == "no_op")
        .expect("the loser");
    let t = &loser["triggers"][0];
    let plans: Vec<&str> = t["decisions"]
        .as_array()
        .map(|d| d.iter().filter_map(|p| p["plan"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(plans, ["switch", "no_op"], "the loser read again: {t}");
    let change = t["actions"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["action"] == "route53.change_resource_record_sets")
        })
        .expect("the loser's change");
    assert_eq!(change["ok"], false);
    assert!(
        change["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("InvalidChangeBatch")),
        "{change}"
    );
    // The winner's change is in the log under its own trace: the evidence names who moved writers.
    let winner = lab
        .state
        .invocations()
        .into_iter()
        .find(|i| i.response["outcome"] == "switched")
        .expect("the winner's invocation");
    assert_eq!(applied[0].trace.as_deref(), Some(winner.trace_id.as_str()));
}

/// The race a random history found against the first switch (both forms): writers are left on
/// us-west-1 by a failover whose notification was lost, us-west-2's copy sets out to move them,
/// and while its slow calls are in flight the datastore fails back to us-west-1, whose copy finds
/// writers already there. Before the fix the first copy's stale write landed last and left
/// writers on the demoted member; now it reads writers first and reads back after writing.
async fn a_copy_overtaken_by_a_failback(mode: &str) {
    let lab = start_lab(|cfg| {
        cfg.routing_mode = mode.to_owned();
        cfg.promotion_time = Duration::from_millis(200);
    })
    .await;
    failover_unannounced(&lab, "us-west-2").await;
    match mode {
        "arc" => lab.state.arc.set_latency(Duration::from_millis(200)),
        _ => {
            for op in [
                Operation::ListResourceRecordSets,
                Operation::ChangeResourceRecordSets,
            ] {
                lab.state.route53.set_latency(op, Duration::from_millis(600));
            }
        }
    }
    let usw2 = lab
        .state
        .function("us-west-2", "traffic-switch")
        .expect("a switch in us-west-2");
    usw2.invoke_async(
        serde_json::from_str(fixture("alarm-eventbridge.json")).expect("fixture"),
        "eventbridge",
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    failover_via_sdk(&lab, "us-west-1")
        .await
        .expect("the failback starts");
    available_on(&lab, "us-west-1").await;
    // arc: from here on calls are quick again, so the failed-back Region's copy checks at once
    // while the first copy's slow update is still on its way. (dns: the swap stays slow.)
    lab.state.arc.set_latency(Duration::ZERO);
    eventually(LIMIT, "every invocation to finish", || async {
        lab.state.functions_idle().then_some(())
    })
    .await;
    assert_eq!(
        writers(&lab).as_deref(),
        Some("us-west-1"),
        "{mode}: writers end on the primary with no further trigger: {:#?}",
        lab.state.audits()
    );
    let failed: Vec<_> = lab
        .state
        .invocations()
        .into_iter()
        .filter(|i| i.outcome != "ok")
        .collect();
    assert!(failed.is_empty(), "{mode}: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dns_mode_a_copy_overtaken_by_a_failback_still_leaves_writers_on_the_primary() {
    a_copy_overtaken_by_a_failback("dns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_arc_mode_a_copy_overtaken_by_a_failback_still_leaves_writers_on_the_primary() {
    a_copy_overtaken_by_a_failback("arc").await;
}
