//! The lab's Route 53 ARC cluster, driven through the real `aws-sdk-route53recoverycluster`: shared
//! state across five endpoints, safety rules, and each endpoint fault the `arc` mode must survive.

use aws_sdk_route53recoverycluster::error::ProvideErrorMetadata;
use aws_sdk_route53recoverycluster::types::{RoutingControlState, UpdateRoutingControlStateEntry};
use failover_lab::arc::EndpointMode;
use failover_tests::*;

fn entry(arn: &str, on: bool) -> UpdateRoutingControlStateEntry {
    UpdateRoutingControlStateEntry::builder()
        .routing_control_arn(arn)
        .routing_control_state(if on {
            RoutingControlState::On
        } else {
            RoutingControlState::Off
        })
        .build()
        .expect("entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_endpoints_share_one_state_and_an_atomic_flip_moves_the_writer_control() {
    let lab = start_lab(|_| {}).await;
    let usw1 = lab.endpoints.arc_controls["us-west-1"].clone();
    let usw2 = lab.endpoints.arc_controls["us-west-2"].clone();
    assert_eq!(lab.endpoints.arc_endpoints.len(), 5);
    let (r0, e0) = &lab.endpoints.arc_endpoints[0];
    let (r3, e3) = &lab.endpoints.arc_endpoints[3];

    let listed = arc_client(e0, r0)
        .list_routing_controls()
        .send()
        .await
        .expect("list");
    let on: Vec<_> = listed
        .routing_controls()
        .iter()
        .filter(|c| c.routing_control_state() == Some(&RoutingControlState::On))
        .filter_map(|c| c.routing_control_arn())
        .collect();
    assert_eq!(on, [usw1.as_str()], "the primary's control starts On");

    arc_client(e0, r0)
        .update_routing_control_states()
        .update_routing_control_state_entries(entry(&usw2, true))
        .update_routing_control_state_entries(entry(&usw1, false))
        .send()
        .await
        .expect("one call moves On from usw1 to usw2");
    // Read back through another endpoint: one cluster, one state.
    let got = arc_client(e3, r3)
        .get_routing_control_state()
        .routing_control_arn(&usw2)
        .send()
        .await
        .expect("get");
    assert_eq!(got.routing_control_state(), &RoutingControlState::On);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_rules_reject_two_on_or_none_on_unless_overridden() {
    let lab = start_lab(|_| {}).await;
    let usw1 = lab.endpoints.arc_controls["us-west-1"].clone();
    let usw2 = lab.endpoints.arc_controls["us-west-2"].clone();
    let (r, e) = &lab.endpoints.arc_endpoints[1];
    let c = arc_client(e, r);

    let two_on = c
        .update_routing_control_state()
        .routing_control_arn(&usw2)
        .routing_control_state(RoutingControlState::On)
        .send()
        .await
        .expect_err("two Regions On");
    assert_eq!(two_on.code(), Some("ConflictException"));
    assert!(
        two_on.message().is_some_and(|m| m.contains("at-most-one-on")),
        "{two_on:?}"
    );

    let none_on = c
        .update_routing_control_state()
        .routing_control_arn(&usw1)
        .routing_control_state(RoutingControlState::Off)
        .send()
        .await
        .expect_err("no Region On");
    assert_eq!(none_on.code(), Some("ConflictException"));
    assert!(lab.state.arc.states()[&usw1], "a rejected change changes nothing");

    let rule = lab
        .endpoints
        .arc_safety_rules
        .iter()
        .find(|r| r.ends_with("at-most-one-on"))
        .expect("rule")
        .clone();
    c.update_routing_control_state()
        .routing_control_arn(&usw2)
        .routing_control_state(RoutingControlState::On)
        .safety_rules_to_override(rule)
        .send()
        .await
        .expect("break glass: the named rule is overridden");
    assert!(lab.state.arc.states()[&usw2]);

    let missing = c
        .get_routing_control_state()
        .routing_control_arn(
            "arn:aws:route53-recovery-control::000000000000:controlpanel/lab/routingcontrol/nope",
        )
        .send()
        .await
        .expect_err("unknown control");
    assert_eq!(missing.code(), Some("ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_fault_fails_the_way_a_broken_endpoint_does() {
    let lab = start_lab(|_| {}).await;
    let arn = lab.endpoints.arc_controls["us-west-1"].clone();
    let get = |i: usize| {
        let (r, e) = lab.endpoints.arc_endpoints[i].clone();
        let arn = arn.clone();
        async move {
            arc_client(&e, &r)
                .get_routing_control_state()
                .routing_control_arn(arn)
                .send()
                .await
        }
    };
    lab.state.arc.set_mode(0, EndpointMode::Refuse);
    lab.state.arc.set_mode(1, EndpointMode::Hang);
    lab.state.arc.set_mode(2, EndpointMode::Error5xx);
    lab.state.arc.set_mode(3, EndpointMode::Throttle);

    let refused = get(0).await.expect_err("refused");
    assert!(
        matches!(
            refused,
            aws_sdk_route53recoverycluster::error::SdkError::DispatchFailure(_)
        ),
        "{refused:?}"
    );
    let hung = get(1).await.expect_err("hangs");
    assert!(
        matches!(
            hung,
            aws_sdk_route53recoverycluster::error::SdkError::TimeoutError(_)
        ),
        "{hung:?}"
    );
    assert_eq!(
        get(2).await.expect_err("5xx").code(),
        Some("InternalServerException")
    );
    assert_eq!(
        get(3).await.expect_err("throttled").code(),
        Some("ThrottlingException")
    );
    get(4).await.expect("the fifth endpoint still answers");

    lab.state.arc.set_mode(0, EndpointMode::Ok);
    get(0).await.expect("a healed endpoint answers again");
}

// ---- the traffic switch in arc mode, as the real binary, against the lab's cluster ----

const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

fn arc_lab_config(cfg: &mut failover_lab::LabConfig) {
    cfg.routing_mode = "arc".into();
}

async fn controls_are(lab: &failover_lab::Lab, on: &str) {
    let arcs = lab.endpoints.arc_controls.clone();
    eventually(LIMIT, &format!("only {on}'s control to be On"), || async {
        let states = lab.state.arc.states();
        arcs.iter()
            .filter(|(r, _)| lab.state.region(r).is_some())
            .all(|(r, arn)| states.get(arn).copied() == Some(r == on))
            .then_some(())
    })
    .await;
}

fn arc_outcomes(lab: &failover_lab::Lab) -> Vec<String> {
    lab.state
        .invocations()
        .iter()
        .filter(|r| r.region == "us-west-2")
        .map(|r| r.response["outcome"].as_str().unwrap_or(&r.outcome).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_in_arc_mode_flips_the_controls_with_up_to_four_endpoints_broken_and_no_dns_change() {
    let scenarios: [&[(usize, EndpointMode)]; 3] = [
        &[],
        &[(0, EndpointMode::Refuse), (1, EndpointMode::Hang)],
        &[
            (0, EndpointMode::Refuse),
            (1, EndpointMode::Hang),
            (2, EndpointMode::Error5xx),
            (3, EndpointMode::Throttle),
        ],
    ];
    for broken in scenarios {
        let lab = start_lab(arc_lab_config).await;
        let record_before = lab.writer_record().await;
        for (i, mode) in broken {
            lab.state.arc.set_mode(*i, *mode);
        }
        failover_via_sdk(&lab, "us-west-2")
            .await
            .expect("failover starts");
        controls_are(&lab, "us-west-2").await;
        eventually(LIMIT, "the switch to finish", || async {
            lab.state.functions_idle().then_some(())
        })
        .await;
        assert_eq!(arc_outcomes(&lab), ["switched"], "{} broken", broken.len());
        assert_eq!(
            lab.writer_record().await,
            record_before,
            "arc mode makes no Route 53 change"
        );
        assert!(
            lab.state.audits_caught_up(LIMIT).await,
            "every audit line arrives"
        );
        let audit = lab
            .state
            .audits()
            .into_iter()
            .find(|a| a["outcome"] == "switched")
            .expect("audit line");
        let flip = audit["triggers"][0]["actions"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|x| x["action"] == "arc.update_routing_control_states")
                    .cloned()
            })
            .expect("flip action");
        let answered = flip["detail"]["answered_by"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let broken_regions: Vec<&str> = broken
            .iter()
            .map(|(i, _)| failover_lab::arc::ENDPOINT_REGIONS[*i])
            .collect();
        assert!(
            !broken_regions.contains(&answered.as_str()),
            "{answered} is broken"
        );
        let actions = audit["triggers"][0]["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            actions
                .iter()
                .all(|a| !a["action"].as_str().unwrap_or_default().starts_with("route53.")),
            "no Route 53 control-plane call: {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_a_safety_rule_forbids_fails_with_the_rule_named_until_an_operator_breaks_glass() {
    let lab = start_lab(|cfg| {
        arc_lab_config(cfg);
        cfg.arc_spare_control = true;
    })
    .await;
    let spare = lab.endpoints.arc_controls["spare"].clone();
    let usw1 = lab.endpoints.arc_controls["us-west-1"].clone();
    let (r, e) = &lab.endpoints.arc_endpoints[4];
    // Earlier, someone moved the writer control to the spare (exactly one On: allowed).
    arc_client(e, r)
        .update_routing_control_states()
        .update_routing_control_state_entries(entry(&spare, true))
        .update_routing_control_state_entries(entry(&usw1, false))
        .send()
        .await
        .expect("moving On to the spare is allowed");

    failover_via_sdk(&lab, "us-west-2")
        .await
        .expect("failover starts");
    let errors = eventually(LIMIT, "Lambda's three attempts to fail", || async {
        let errs: Vec<_> = lab
            .state
            .invocations()
            .into_iter()
            .filter(|r| r.region == "us-west-2" && r.outcome == "error")
            .collect();
        (errs.len() == 3).then_some(errs)
    })
    .await;
    for e in &errors {
        assert_eq!(e.response["errorType"], "SafetyRuleRejected", "{:?}", e.response);
        assert!(
            e.response["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("at-most-one-on"))
        );
    }
    let usw2 = lab.endpoints.arc_controls["us-west-2"].clone();
    assert!(!lab.state.arc.states()[&usw2], "a rejected flip changes nothing");

    // Break glass: the operator names the rule and confirms.
    let rule = lab
        .endpoints
        .arc_safety_rules
        .iter()
        .find(|r| r.ends_with("at-most-one-on"))
        .expect("rule")
        .clone();
    let f = lab
        .state
        .function("us-west-2", "traffic-switch")
        .expect("function");
    let result = f
        .invoke_sync(
            serde_json::json!({
                "command": "switch", "target_region": "us-west-2", "dry_run": false,
                "confirm": lab.endpoints.datastore_id, "reason": "INC-7: spare left On",
                "override_safety_rules": [rule]
            }),
            "console",
        )
        .await
        .expect("the break-glass switch succeeds");
    assert_eq!(result["outcome"], "switched");
    assert!(lab.state.arc.states()[&usw2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_promotion_in_arc_mode_flips_once() {
    let lab = start_lab(arc_lab_config).await;
    *lab.state.sns.lock().expect("sns") = failover_lab::SnsFaults {
        duplicate: true,
        ..Default::default()
    };
    failover_via_sdk(&lab, "us-west-2")
        .await
        .expect("failover starts");
    controls_are(&lab, "us-west-2").await;
    eventually(LIMIT, "both deliveries to be handled", || async {
        (arc_outcomes(&lab).len() == 2 && lab.state.functions_idle()).then_some(())
    })
    .await;
    let mut seen = arc_outcomes(&lab);
    seen.sort();
    assert_eq!(seen, ["no_op", "switched"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_that_names_no_safety_rule_is_tried_again_until_the_flip_lands() {
    // A routing control's wait period: right after the failover's flip, the failback's flip gets
    // ARC's generic "conflict, try again" for a while. It is not a safety rule: the switch reads
    // again and retries within its deadline, and writers follow.
    let lab = start_lab(arc_lab_config).await;
    failover_via_sdk(&lab, "us-west-2")
        .await
        .expect("failover starts");
    controls_are(&lab, "us-west-2").await;
    lab.state
        .arc
        .set_wait_period(std::time::Duration::from_millis(2_500));
    eventually(LIMIT, "the datastore to settle", || async {
        (lab.state.gds().status == "available" && lab.state.functions_idle()).then_some(())
    })
    .await;
    failover_via_sdk(&lab, "us-west-1")
        .await
        .expect("failback starts");
    controls_are(&lab, "us-west-1").await;
    eventually(LIMIT, "the switch to finish", || async {
        lab.state.functions_idle().then_some(())
    })
    .await;
    assert!(
        lab.state.audits_caught_up(LIMIT).await,
        "every audit line arrives"
    );
    let audit = lab
        .state
        .audits()
        .into_iter()
        .find(|a| a["function_region"] == "us-west-1")
        .expect("the failback's switch");
    assert_eq!(audit["outcome"], "switched", "{audit:#}");
    let updates: Vec<&serde_json::Value> = audit["triggers"][0]["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["action"] == "arc.update_routing_control_states")
                .collect()
        })
        .unwrap_or_default();
    assert!(updates.len() >= 2, "a conflict, then the flip: {updates:#?}");
    assert!(
        updates[0]["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ConflictException") && e.contains("Try again")),
        "{:#}",
        updates[0]
    );
    assert_eq!(
        updates.last().map(|u| u["ok"].clone()),
        Some(serde_json::json!(true))
    );
}
