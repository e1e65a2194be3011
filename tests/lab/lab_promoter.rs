//! The promoter as its real binary in the lab: a dark primary Region is promoted away from and the
//! traffic switch follows; a degraded link is not mistaken for a dead Region.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use failover_lab::Lab;
use failover_tests::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(40);
const ALARM: &str = "sessions-writes-failing";

async fn lab_with_promoter() -> Lab {
    start_lab(|cfg| {
        cfg.functions = vec!["traffic-switch".into(), "promoter".into()];
        for (k, v) in [
            ("SIGNAL_ALARMS", ALARM.to_owned()),
            ("VANTAGE_ALARMS", format!("us-west-1:{ALARM},us-west-2:{ALARM}")),
            ("COOLDOWN_MINUTES", "30".to_owned()),
            ("STABLE_POLL_MS", "200".to_owned()),
        ] {
            cfg.function_env.push((k.into(), v));
        }
    })
    .await
}

/// Each Region's writers publish their write errors; the alarm is "errors in 2 of 3 one-second
/// periods".
async fn alarm_in(lab: &Lab, region: &str) -> aws_sdk_cloudwatch::Client {
    write_errors_alarm(&lab.endpoints.cloudwatch, region, ALARM, (1, 3, 2)).await
}

async fn errors(cw: &aws_sdk_cloudwatch::Client, region: &str, value: f64) {
    let _ = cw
        .put_metric_data()
        .namespace("SessionStore")
        .metric_data(
            MetricDatum::builder()
                .metric_name("WriteErrors")
                .dimensions(Dimension::builder().name("ClientRegion").value(region).build())
                .value(value)
                .build(),
        )
        .send()
        .await;
}

/// A file from `events/promoter/`, as the console would send it.
fn promoter_event(name: &str) -> Value {
    let path = format!("{}/../events/promoter/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promoter_audits(lab: &Lab, region: &str) -> Vec<Value> {
    lab.state
        .audits()
        .into_iter()
        .filter(|a| a["audit"] == "promoter" && a["function_region"] == region)
        .collect()
}

/// A failover to us-west-2 that the traffic switch has followed: the start of a ping-pong.
async fn failed_over_to_usw2(lab: &Lab) {
    let usw2 = lab.state.regions[1].endpoint.clone();
    failover_via_sdk(lab, "us-west-2").await.expect("failover starts");
    eventually(LIMIT, "the failover to be followed", || async {
        (lab.writer_record().await.as_deref() == Some(usw2.as_str())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_primary_region_is_promoted_away_from_and_writers_follow() {
    let lab = lab_with_promoter().await;
    let usw2 = &lab.state.regions[1];
    let cw2 = alarm_in(&lab, "us-west-2").await;
    let _cw1 = alarm_in(&lab, "us-west-1").await;
    lab.state.set_dark("us-west-1", true).await.expect("dark");

    // us-west-2's writers fail against the dark primary until the alarm fires and the chain runs.
    eventually(
        LIMIT,
        "the promoter to promote and the switch to follow",
        || async {
            errors(&cw2, "us-west-2", 5.0).await;
            (lab.writer_record().await.as_deref() == Some(usw2.endpoint.as_str())).then_some(())
        },
    )
    .await;
    assert_eq!(lab.state.gds().failovers, 1);
    let audits = eventually(LIMIT, "the promoter's audit line", || async {
        let a = promoter_audits(&lab, "us-west-2");
        a.iter().any(|x| x["outcome"] == "switched").then_some(a)
    })
    .await;
    let promoted = audits
        .iter()
        .find(|a| a["outcome"] == "switched")
        .unwrap_or_else(|| panic!("no promotion in {audits:#?}"));
    let gates = promoted["triggers"][0]["decision"]["gates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(gates.len(), 5);
    assert!(gates.iter().all(|g| g["verdict"] == "pass"), "{gates:#?}");
    let vantage = gates
        .iter()
        .find(|g| g["name"] == "vantage")
        .expect("vantage gate");
    // The dark Region's CloudWatch did not answer at all (503): that, and only that, may agree.
    assert!(
        vantage["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Region not answering")),
        "{vantage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_link_is_not_mistaken_for_a_dead_primary() {
    let lab = lab_with_promoter().await;
    let usw1 = &lab.state.regions[0];
    let cw2 = alarm_in(&lab, "us-west-2").await;
    let cw1 = alarm_in(&lab, "us-west-1").await;
    lab.state.set_link(failover_lab::link::LinkMode::Down);

    // Only us-west-2's writers (across the link) fail; us-west-1's own writers are healthy.
    let blocked = eventually(LIMIT, "the promoter to evaluate and refuse", || async {
        errors(&cw2, "us-west-2", 5.0).await;
        errors(&cw1, "us-west-1", 0.0).await;
        promoter_audits(&lab, "us-west-2")
            .into_iter()
            .find(|a| a["outcome"] == "no_op" && a["triggers"][0]["decision"].is_object())
    })
    .await;
    let reason = blocked["triggers"][0]["decision"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("vantage") && reason.contains("link"), "{reason}");
    assert_eq!(lab.state.gds().failovers, 0, "no promotion");
    assert_eq!(lab.writer_record().await.as_deref(), Some(usw1.endpoint.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_alarm_while_the_datastore_is_modifying_does_nothing() {
    let lab = start_lab(|cfg| {
        cfg.functions = vec!["traffic-switch".into(), "promoter".into()];
        cfg.promotion_time = Duration::from_secs(3);
        cfg.function_env.push(("SIGNAL_ALARMS".into(), ALARM.into()));
        cfg.function_env.push((
            "VANTAGE_ALARMS".into(),
            format!("us-west-1:{ALARM},us-west-2:{ALARM}"),
        ));
    })
    .await;
    failover_via_sdk(&lab, "us-west-2")
        .await
        .expect("failover starts");
    let event = promoter_event("alarm-writes-failing.json");
    let f = lab.state.function("us-west-2", "promoter").expect("promoter");
    let response = f.invoke_sync(event, "console").await.expect("handled");
    assert_eq!(response["outcome"], "no_op");
    let state = &response["triggers"][0]["decision"]["gates"][0];
    assert_eq!(state["name"], "state");
    assert_eq!(state["verdict"], "block");
    assert!(
        state["detail"].as_str().is_some_and(|d| d.contains("modifying")),
        "{state}"
    );
    eventually(LIMIT, "the one failover to complete", || async {
        (lab.state.gds().status == "available").then_some(())
    })
    .await;
    assert_eq!(lab.state.gds().failovers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooldown_stops_a_ping_pong_back_to_the_old_primary() {
    let lab = lab_with_promoter().await;
    let cw1 = alarm_in(&lab, "us-west-1").await;
    let _cw2 = alarm_in(&lab, "us-west-2").await;
    failed_over_to_usw2(&lab).await;

    // Minutes later the new primary's Region goes dark too; us-west-1's writers fail.
    lab.state.set_dark("us-west-2", true).await.expect("dark");
    let blocked = eventually(LIMIT, "us-west-1's promoter to evaluate and refuse", || async {
        errors(&cw1, "us-west-1", 5.0).await;
        promoter_audits(&lab, "us-west-1").into_iter().find(|a| {
            a["triggers"][0]["decision"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("cooldown"))
        })
    })
    .await;
    assert_eq!(blocked["outcome"], "no_op");
    assert_eq!(lab.state.gds().failovers, 1, "no ping-pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_switch_plan_step_promotes_its_region_and_a_retried_step_succeeds_without_a_second_failover()
{
    let lab = lab_with_promoter().await;
    let usw2 = &lab.state.regions[1];
    let step = promoter_event("region-switch-step.json");
    let f = lab.state.function("us-west-2", "promoter").expect("promoter");

    // A planned switch: both Regions healthy, no write errors anywhere.
    let response = f
        .invoke_sync(step.clone(), "region-switch")
        .await
        .expect("the step succeeds");
    assert_eq!(response["outcome"], "switched", "{response:#}");
    let gds = lab.state.gds();
    assert_eq!(gds.failovers, 1);
    assert_eq!(
        gds.status, "available",
        "the step returns only once the promotion is done"
    );
    eventually(LIMIT, "the traffic switch to follow", || async {
        (lab.writer_record().await.as_deref() == Some(usw2.endpoint.as_str())).then_some(())
    })
    .await;

    // Region switch retries a step it did not see succeed: the retry is a success, not a failover.
    let again = f
        .invoke_sync(step, "region-switch")
        .await
        .expect("the retry succeeds");
    assert_eq!(again["outcome"], "no_op", "{again:#}");
    assert_eq!(lab.state.gds().failovers, 1);
}

fn gate<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["triggers"][0]["decision"]["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no {name} gate in {response:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_loss_gate_reads_the_replication_lag_and_blocks_once_replication_has_stalled() {
    let lab = start_lab(|cfg| {
        cfg.functions = vec!["promoter".into()];
        for (k, v) in [
            ("SIGNAL_ALARMS", ALARM),
            ("VANTAGE_ALARMS", "us-west-1:sessions-writes-failing"),
            ("MAX_LAG_SECONDS", "1"),
            ("LAG_MAX_AGE_SECONDS", "30"),
        ] {
            cfg.function_env.push((k.into(), v.into()));
        }
    })
    .await;
    let f = lab.state.function("us-west-2", "promoter").expect("promoter");
    let evaluate = || async {
        f.invoke_sync(promoter_event("manual-evaluate.json"), "console")
            .await
            .ok()
    };
    let healthy = eventually(LIMIT, "a lag within the bound", || async {
        let r = evaluate().await?;
        let g = gate(&r, "data_loss").clone();
        (g["verdict"] == "pass" && g["detail"].as_str()?.contains("within")).then_some(g)
    })
    .await;
    assert!(
        healthy["detail"]
            .as_str()
            .is_some_and(|d| d.contains("replication lag")),
        "{healthy}"
    );

    // Replication stalls (the link swallows everything) while the primary keeps taking writes.
    lab.state.set_link(failover_lab::link::LinkMode::Blackhole);
    let blocked = eventually(LIMIT, "the lag to exceed the bound", || async {
        let r = evaluate().await?;
        let g = gate(&r, "data_loss").clone();
        (g["verdict"] == "block").then_some(g)
    })
    .await;
    assert!(
        blocked["detail"]
            .as_str()
            .is_some_and(|d| d.contains("exceeds the 1 s bound")),
        "{blocked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vantage_alarm_missing_from_a_primary_region_that_answers_blocks_the_promotion() {
    // us-west-1 is up and answers, but its write-error alarm was never created: the vantage
    // point cannot be read. Before, that counted as "unreachable, so agrees", and a cut link
    // promoted us-west-2 onto it.
    let lab = lab_with_promoter().await;
    let usw1 = &lab.state.regions[0];
    let cw2 = alarm_in(&lab, "us-west-2").await;
    lab.state.set_link(failover_lab::link::LinkMode::Down);
    let reason = eventually(LIMIT, "the promoter to evaluate and refuse", || async {
        errors(&cw2, "us-west-2", 5.0).await;
        promoter_audits(&lab, "us-west-2").into_iter().find_map(|a| {
            let reason = a["triggers"][0]["decision"]["reason"].as_str()?.to_owned();
            (a["outcome"] == "no_op" && reason.contains("vantage")).then_some(reason)
        })
    })
    .await;
    assert!(
        reason.contains(&format!("us-west-1/{ALARM}")) && reason.contains("does not exist"),
        "the reason names the alarm and the error: {reason}"
    );
    assert!(reason.contains("configuration fault"), "{reason}");
    assert_eq!(
        lab.state.gds().failovers,
        0,
        "no promotion on evidence it could not read"
    );
    assert_eq!(lab.writer_record().await.as_deref(), Some(usw1.endpoint.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_on_the_second_page_of_events_still_holds_the_cooldown() {
    // A failover to us-west-2 a moment ago, then a busy account: 150 newer events of the same
    // group push it to DescribeEvents' second page. The promoter in us-west-1 must read every page.
    let lab = lab_with_promoter().await;
    let cw1 = alarm_in(&lab, "us-west-1").await;
    let _cw2 = alarm_in(&lab, "us-west-2").await;
    failed_over_to_usw2(&lab).await;
    for region in ["us-west-1", "us-west-2"] {
        let group = lab.state.region(region).expect("region").group.clone();
        for i in 0..150 {
            lab.state
                .event(region, &group, &format!("Snapshot {i} of {group} succeeded"));
        }
    }
    lab.state.set_dark("us-west-2", true).await.expect("dark");
    let reason = eventually(LIMIT, "us-west-1's promoter to refuse", || async {
        errors(&cw1, "us-west-1", 5.0).await;
        promoter_audits(&lab, "us-west-1").into_iter().find_map(|a| {
            let reason = a["triggers"][0]["decision"]["reason"].as_str()?.to_owned();
            (a["outcome"] == "no_op" && reason.contains("cooldown")).then_some(reason)
        })
    })
    .await;
    assert!(reason.contains("within the 1800 s cooldown"), "{reason}");
    assert_eq!(lab.state.gds().failovers, 1, "no ping-pong");
    // Every page was read: more than one DescribeEvents call for the same group and Region.
    let pages = lab
        .state
        .requests()
        .into_iter()
        .filter(|r| {
            r.action == "DescribeEvents" && r.region == "us-west-1" && r.params.contains_key("Marker")
        })
        .count();
    assert!(pages > 0, "the second page was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_regions_a_dark_primary_is_failed_over_once_onto_the_preferred_secondary() {
    // Both secondaries see us-west-1 go dark. eu-west-1's alarm is quicker (errors in 1 of 1
    // periods) so, left alone, it would promote first; PROMOTION_PRIORITY prefers us-west-2:
    // eu-west-1 gives way, reads again, and finds the failover done.
    let lab = start_lab(|cfg| {
        *cfg = cfg.clone().with_third_region("eu-west-1", "euw1");
        cfg.functions = vec!["traffic-switch".into(), "promoter".into()];
        for (k, v) in [
            ("SIGNAL_ALARMS", ALARM.to_owned()),
            (
                "VANTAGE_ALARMS",
                format!("us-west-1:{ALARM},us-west-2:{ALARM},eu-west-1:{ALARM}"),
            ),
            ("COOLDOWN_MINUTES", "30".to_owned()),
            ("STABLE_POLL_MS", "200".to_owned()),
            ("PROMOTION_PRIORITY", "us-west-2,eu-west-1".to_owned()),
            ("PROMOTION_DELAY_SECONDS", "8".to_owned()),
        ] {
            cfg.function_env.push((k.into(), v));
        }
    })
    .await;
    let usw2 = lab.state.regions[1].endpoint.clone();
    let _cw1 = alarm_in(&lab, "us-west-1").await;
    let cw2 = alarm_in(&lab, "us-west-2").await;
    let cw3 = write_errors_alarm(&lab.endpoints.cloudwatch, "eu-west-1", ALARM, (1, 1, 1)).await;
    lab.state.set_dark("us-west-1", true).await.expect("dark");
    eventually(LIMIT, "the failover and the switch", || async {
        errors(&cw3, "eu-west-1", 5.0).await;
        errors(&cw2, "us-west-2", 5.0).await;
        (lab.writer_record().await.as_deref() == Some(usw2.as_str())).then_some(())
    })
    .await;
    // Let eu-west-1's promoter finish giving way and evaluating again.
    eventually(
        LIMIT,
        "eu-west-1's promoter to give way and stand down",
        || async {
            errors(&cw3, "eu-west-1", 5.0).await;
            promoter_audits(&lab, "eu-west-1")
                .into_iter()
                .find(|a| a["triggers"][0]["deferred"].is_string())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lab.state.gds().failovers, 1, "exactly one failover");
    let primary = lab.state.gds().primary;
    assert_eq!(
        lab.state.regions[primary].name, "us-west-2",
        "onto the preferred secondary"
    );
    let gave_way = promoter_audits(&lab, "eu-west-1")
        .into_iter()
        .find(|a| a["triggers"][0]["deferred"].is_string())
        .expect("eu-west-1 gave way");
    assert_eq!(gave_way["outcome"], "no_op", "{gave_way:#}");
    assert!(
        gave_way["triggers"][0]["deferred"]
            .as_str()
            .is_some_and(|d| d.contains("us-west-2 comes first")),
        "{gave_way:#}"
    );
}
