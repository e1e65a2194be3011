//! The readiness check (`{"command":"preflight"}`) as the real binaries run it in the lab: a
//! deployment set up right passes in every Region, and each fault the check exists for (an
//! inactive topic, an unsubscribed switch, a missing lag metric, a missing alarm, an A record, a
//! dark ARC endpoint) turns exactly its item red, and green again once mended.

use std::time::Duration;

use failover_lab::Lab;
use failover_lab::readiness::Target;
use failover_tests::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(20);
const ALARM: &str = "sessions-writes-failing";
const REGIONS: [&str; 2] = ["us-west-1", "us-west-2"];

async fn lab_with(mode: &str) -> Lab {
    let lab = start_lab(|cfg| {
        cfg.routing_mode = mode.into();
        cfg.functions = vec!["traffic-switch".into(), "promoter".into()];
        for (k, v) in [
            ("SIGNAL_ALARMS", ALARM.to_owned()),
            ("VANTAGE_ALARMS", format!("us-west-1:{ALARM},us-west-2:{ALARM}")),
            ("LAG_MAX_AGE_SECONDS", "10".to_owned()),
        ] {
            cfg.function_env.push((k.into(), v));
        }
    })
    .await;
    // The write-error alarm in every Region, as the template creates it (CreateExampleAlarms).
    for region in REGIONS {
        write_errors_alarm(&lab.endpoints.cloudwatch, region, ALARM, (10, 3, 3)).await;
    }
    // The secondary's lag metric has been published at least once.
    eventually(LIMIT, "the first lag datapoint", || async {
        (!lab.state.cloudwatch.metrics("us-west-2").is_empty()).then_some(())
    })
    .await;
    lab
}

/// Runs the preflight command on `function` in `region` as the console would, returning its
/// checklist and the invocation's audit line.
async fn preflight(lab: &Lab, region: &str, function: &str) -> (Value, Value) {
    let f = lab.state.function(region, function).expect("function runs");
    let response = f
        .invoke_sync(json!({"command": "preflight"}), "console")
        .await
        .unwrap_or_else(|e| panic!("preflight is never an error: {e}"));
    let list = response["triggers"][0]["preflight"].clone();
    assert!(list.is_object(), "no checklist in {response:#}");
    assert!(lab.state.audits_caught_up(LIMIT).await, "audit lines");
    let audit = lab
        .state
        .audits()
        .into_iter()
        .rfind(|a| a["request_id"] == response["request_id"])
        .expect("the audit line of the invocation");
    (list, audit)
}

fn verdict<'a>(list: &'a Value, item: &str) -> &'a str {
    list["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["item"] == item))
        .and_then(|c| c["verdict"].as_str())
        .unwrap_or_else(|| panic!("no item {item} in {list:#}"))
}

fn not_passing(list: &Value) -> Vec<String> {
    list["checks"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["verdict"] != "PASS")
                .map(|c| {
                    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                    format!("{} {}: {}", text("verdict"), text("item"), text("found"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn target(item: &str, region: Option<&str>, name: Option<&str>) -> Target {
    Target {
        item: item.into(),
        region: region.map(str::to_owned),
        name: name.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_set_up_right_passes_preflight_in_every_region_for_both_functions() {
    let lab = lab_with("dns").await;
    for region in REGIONS {
        let (list, audit) = preflight(&lab, region, "traffic-switch").await;
        assert_eq!(not_passing(&list), Vec::<String>::new(), "switch in {region}");
        assert_eq!(list["ready"], true);
        assert_eq!(audit["Ready"], 1, "the Ready metric rides the audit line");
        for item in [
            "datastore",
            "writer_record",
            "events_topic:us-west-1",
            "events_topic:us-west-2",
            "subscription",
            "permissions",
        ] {
            assert_eq!(verdict(&list, item), "PASS", "{item} in {region}");
        }
        let (list, audit) = preflight(&lab, region, "promoter").await;
        assert_eq!(list["ready"], true, "{list:#}");
        assert_eq!(audit["Ready"], 1);
        let expected: Vec<String> = if region == "us-west-1" {
            // The primary's own lag is never published: said, not failed.
            not_passing(&list)
                .into_iter()
                .filter(|w| w.starts_with("WARN lag_metric"))
                .collect()
        } else {
            Vec::new()
        };
        assert_eq!(not_passing(&list), expected, "promoter in {region}");
        for item in [
            "datastore",
            &format!("signal_alarm:{ALARM}"),
            "vantage_alarm:us-west-1",
            "vantage_alarm:us-west-2",
            "cooldown_events:us-west-1",
            "cooldown_events:us-west-2",
            "permissions",
        ] {
            assert_eq!(verdict(&list, item), "PASS", "{item} in {region}");
        }
    }
    let (list, _) = preflight(&lab, "us-west-2", "promoter").await;
    assert_eq!(
        verdict(&list, "lag_metric"),
        "PASS",
        "the secondary's lag is listed and fresh"
    );
    // Read-only: nothing moved.
    assert_eq!(lab.state.gds().failovers, 0);
    assert!(
        lab.state.route53.changes().iter().all(|c| c.direct),
        "no function changed the record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_turns_its_own_item_red_and_mending_it_turns_it_green() {
    let lab = lab_with("dns").await;
    let alarm_item = format!("signal_alarm:{ALARM}");
    // (what to break, which function in which Region sees it, the items that must go red)
    let cases: [(Target, &str, &str, Vec<&str>); 6] = [
        (
            target("topic", Some("us-west-2"), None),
            "traffic-switch",
            "us-west-1",
            vec!["events_topic:us-west-2"],
        ),
        (
            target("subscription", Some("us-west-2"), None),
            "traffic-switch",
            "us-west-2",
            vec!["subscription"],
        ),
        (
            target("record", None, None),
            "traffic-switch",
            "us-west-2",
            vec!["writer_record"],
        ),
        (
            target("lag-metric", None, None),
            "promoter",
            "us-west-2",
            vec!["lag_metric"],
        ),
        (
            target("alarm", Some("us-west-1"), Some(ALARM)),
            "promoter",
            "us-west-2",
            vec!["vantage_alarm:us-west-1"],
        ),
        // This Region's write-error alarm is its signal, and the vantage point on it for the others.
        (
            target("alarm", Some("us-west-2"), Some(ALARM)),
            "promoter",
            "us-west-2",
            vec![alarm_item.as_str(), "vantage_alarm:us-west-2"],
        ),
    ];
    for (fault, function, region, items) in &cases {
        let (before, _) = preflight(&lab, region, function).await;
        for item in items {
            assert_eq!(verdict(&before, item), "PASS", "{item} before {fault:?}");
        }
        failover_lab::readiness::set(&lab.state, fault, true).expect("broken");
        let (broken, audit) = preflight(&lab, region, function).await;
        for item in items {
            assert_eq!(
                verdict(&broken, item),
                "FAIL",
                "{item} after {fault:?}: {broken:#}"
            );
        }
        assert_eq!(broken["ready"], false);
        assert_eq!(audit["Ready"], 0, "a FAIL publishes Ready 0");
        let red: Vec<String> = not_passing(&broken)
            .into_iter()
            .filter(|w| w.starts_with("FAIL") && !items.iter().any(|i| w.starts_with(&format!("FAIL {i}:"))))
            .collect();
        assert_eq!(red, Vec::<String>::new(), "only {items:?} go red for {fault:?}");
        failover_lab::readiness::set(&lab.state, fault, false).expect("mended");
        let green = eventually(LIMIT, "the items to pass again", || async {
            let (list, _) = preflight(&lab, region, function).await;
            items.iter().all(|i| verdict(&list, i) == "PASS").then_some(list)
        })
        .await;
        assert_eq!(green["ready"], true, "{green:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_topic_stops_promotion_events_and_the_fix_preflight_names_restores_them() {
    let lab = lab_with("dns").await;
    failover_lab::readiness::set(&lab.state, &target("topic", Some("us-west-2"), None), true)
        .expect("broken");
    let (list, _) = preflight(&lab, "us-west-2", "traffic-switch").await;
    let check = list["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["item"] == "events_topic:us-west-2"))
        .cloned()
        .expect("the item");
    assert!(
        check["fix"]
            .as_str()
            .is_some_and(|f| f.contains("modify-replication-group")),
        "{check:#}"
    );

    // What the check warns of is real: ElastiCache publishes the promotion nowhere.
    let published = lab.state.publications().len();
    lab.state.publish(
        "us-west-2",
        "ElastiCache",
        r#"{"ElastiCache:ReplicationGroupPromotedAsPrimary":"sessions-usw2"}"#,
    );
    assert_eq!(
        lab.state.publications().len(),
        published,
        "an inactive topic gets nothing"
    );

    // The fix, as the operator would run it: ModifyReplicationGroup with the topic and status.
    let topic = failover_lab::readiness::topic_arn("us-west-2");
    elasticache_at(&lab.endpoints.elasticache, "us-west-2")
        .modify_replication_group()
        .replication_group_id("sessions-usw2")
        .notification_topic_arn(&topic)
        .notification_topic_status("active")
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyReplicationGroup");
    let (list, _) = preflight(&lab, "us-west-2", "traffic-switch").await;
    assert_eq!(verdict(&list, "events_topic:us-west-2"), "PASS", "{list:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_arc_endpoint_fails_preflight_until_it_answers_again() {
    let lab = lab_with("arc").await;
    let (list, _) = preflight(&lab, "us-west-2", "traffic-switch").await;
    assert_eq!(not_passing(&list), Vec::<String>::new());
    assert_eq!(verdict(&list, "routing_controls"), "PASS");
    let endpoint = target("arc-endpoint", Some("2"), None);
    failover_lab::readiness::set(&lab.state, &endpoint, true).expect("broken");
    let (list, audit) = preflight(&lab, "us-west-2", "traffic-switch").await;
    assert_eq!(verdict(&list, "arc_endpoints"), "FAIL", "{list:#}");
    assert_eq!(
        verdict(&list, "routing_controls"),
        "PASS",
        "the others still answer"
    );
    assert_eq!(audit["Ready"], 0);
    failover_lab::readiness::set(&lab.state, &endpoint, false).expect("mended");
    let (list, _) = preflight(&lab, "us-west-2", "traffic-switch").await;
    assert_eq!(verdict(&list, "arc_endpoints"), "PASS", "{list:#}");
}
