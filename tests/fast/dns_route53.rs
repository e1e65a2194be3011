//! The traffic switch against the lab's Route 53 emulator (Route 53's REST-XML API with its real
//! batch semantics), with ElastiCache answered by mocks. Each test reads the record back through
//! the SDK.

use failover_core::audit::Outcome;
use traffic_switch::TrafficSwitch;

use failover_tests::*;

async fn setup(
    initial: Option<&str>,
    primary: &'static str,
) -> (
    TrafficSwitch,
    aws_sdk_route53::Client,
    String,
    aws_smithy_mocks::Rule,
) {
    let r53 = route53_lab().await.client;
    let zone = private_zone(&r53, initial).await;
    let describe = primary_is(primary);
    let switch = TrafficSwitch::with_clients(config(&zone, &[]), elasticache(&[&describe]), r53.clone());
    (switch, r53, zone, describe)
}

#[tokio::test]
async fn a_genuine_promotion_flips_the_cname_to_the_new_primary() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW2).await;
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    let response = inv.result.expect("switch succeeds");
    assert_eq!(read_cname(&r53, &zone).await, Some((EP2.to_owned(), 30)));
    assert_eq!(inv.audit.outcome, Outcome::Switched);
    let t = &inv.audit.triggers[0];
    assert_eq!(t.record_before.as_deref(), Some(EP1));
    assert_eq!(t.record_after.as_deref(), Some(EP2));
    assert!(
        t.actions
            .iter()
            .any(|a| a.action == "route53.change_resource_record_sets" && a.ok)
    );
    // The response is the audit record: what a console user sees is what the logs keep.
    assert_eq!(response["outcome"], "switched");
    assert_eq!(response["triggers"][0]["decisions"][0]["plan"], "switch");
}

#[tokio::test]
async fn the_plain_text_form_naming_a_node_flips_the_cname_too() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW2).await;
    let inv = invoke(&switch, fixture("promotion-plain-text-node-id.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(read_cname(&r53, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn a_duplicate_promotion_after_the_flip_changes_nothing() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW2).await;
    let first = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert_eq!(first.audit.outcome, Outcome::Switched);
    let again = invoke(&switch, fixture("promotion-duplicate.json")).await;
    assert!(again.result.is_ok());
    assert_eq!(again.audit.outcome, Outcome::NoOp);
    assert!(
        again.audit.triggers[0]
            .actions
            .iter()
            .all(|a| a.action != "route53.change_resource_record_sets"),
        "a no-op must not call ChangeResourceRecordSets"
    );
    assert_eq!(read_cname(&r53, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn a_stale_promotion_leaves_the_cname_on_the_true_primary() {
    // The datastore failed over to usw2 and writers are there; usw1's old promotion arrives late.
    let (switch, r53, zone, _) = setup(Some(EP2), USW2).await;
    let inv = invoke(&switch, fixture("promotion-stale.json")).await;
    assert!(inv.result.is_ok());
    assert_eq!(inv.audit.outcome, Outcome::NoOp);
    let reason = inv.audit.triggers[0].decisions[0].reason().to_owned();
    assert!(reason.contains("stale or duplicate"), "{reason}");
    assert_eq!(read_cname(&r53, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn events_that_are_not_ours_leave_the_cname_alone_without_reading_elasticache() {
    for name in [
        "promotion-other-group.json",
        "elasticache-other-event.json",
        "alarm-eventbridge-ok.json",
    ] {
        let (switch, r53, zone, describe) = setup(Some(EP1), USW2).await;
        let inv = invoke(&switch, fixture(name)).await;
        assert!(inv.result.is_ok(), "{name}: {:?}", inv.result);
        assert_eq!(inv.audit.outcome, Outcome::Ignored, "{name}");
        assert_eq!(
            describe.num_calls(),
            0,
            "{name}: ignored triggers make no AWS calls"
        );
        assert_eq!(
            read_cname(&r53, &zone).await,
            Some((EP1.to_owned(), 30)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_alarm_in_alarm_moves_writers_to_the_primary_whichever_way_it_arrives() {
    for name in [
        "alarm-sns.json",
        "alarm-eventbridge.json",
        "alarm-direct-action.json",
    ] {
        let (switch, r53, zone, describe) = setup(Some(EP1), USW2).await;
        let inv = invoke(&switch, fixture(name)).await;
        assert_eq!(
            inv.audit.outcome,
            Outcome::Switched,
            "{name}: {:?}",
            inv.audit.error
        );
        assert!(describe.num_calls() >= 1);
        assert_eq!(
            read_cname(&r53, &zone).await,
            Some((EP2.to_owned(), 30)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_alarm_when_writers_are_already_on_the_primary_changes_nothing() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW1).await;
    let inv = invoke(&switch, fixture("alarm-sns.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::NoOp);
    assert_eq!(read_cname(&r53, &zone).await, Some((EP1.to_owned(), 30)));
}

#[tokio::test]
async fn status_reports_the_primary_and_the_record_without_changing_it() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW2).await;
    let inv = invoke(&switch, fixture("manual-status.json")).await;
    let response = inv.result.expect("status succeeds");
    let status = &response["triggers"][0]["status"];
    assert_eq!(status["primary_region"], "us-west-2");
    assert_eq!(status["record_value"], EP1);
    assert_eq!(status["writers_point_at"], "us-west-1");
    assert_eq!(status["record_ttl"], 30);
    assert_eq!(status["writers_on_primary"], false);
    assert_eq!(inv.audit.outcome, Outcome::Reported);
    assert_eq!(read_cname(&r53, &zone).await, Some((EP1.to_owned(), 30)));
}

#[tokio::test]
async fn a_dry_run_shows_the_change_and_makes_none() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW2).await;
    let inv = invoke(&switch, fixture("manual-switch-dry-run.json")).await;
    let response = inv.result.expect("dry run succeeds");
    assert_eq!(inv.audit.outcome, Outcome::DryRun);
    let change = &response["triggers"][0]["decisions"][0]["change"];
    assert_eq!(change["to"], EP2);
    assert_eq!(change["from"], EP1);
    assert_eq!(change["dry_run"], true);
    assert_eq!(read_cname(&r53, &zone).await, Some((EP1.to_owned(), 30)));
}

#[tokio::test]
async fn a_confirmed_manual_switch_moves_writers() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW2).await;
    let inv = invoke(&switch, fixture("manual-switch.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(read_cname(&r53, &zone).await, Some((EP2.to_owned(), 30)));
}

#[tokio::test]
async fn a_manual_switch_to_a_secondary_is_refused_and_changes_nothing() {
    let (switch, r53, zone, _) = setup(Some(EP1), USW1).await;
    let inv = invoke(&switch, fixture("manual-switch.json")).await;
    let err = inv.result.expect_err("refused");
    assert_eq!(err.error_type(), "Refused");
    assert!(err.to_string().contains("not the primary Region"), "{err}");
    assert_eq!(read_cname(&r53, &zone).await, Some((EP1.to_owned(), 30)));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let cases: [(&str, &str, &str); 5] = [
        (
            fixture("invalid-switch-unconfirmed.json"),
            "InvalidCommand",
            "confirm",
        ),
        (fixture("invalid-unknown-shape.json"), "InvalidEvent", "hello"),
        ("{\"Records\": [", "InvalidEvent", "not valid JSON"),
        (&huge, "InvalidEvent", "bytes"),
        (
            r#"{"command":"switch","target_region":"ap-south-1"}"#,
            "InvalidCommand",
            "not a member",
        ),
    ];
    for (event, error_type, mention) in cases {
        let (switch, r53, zone, describe) = setup(Some(EP1), USW2).await;
        let inv = invoke(&switch, event).await;
        let err = inv.result.expect_err("bad input is an error");
        assert_eq!(err.error_type(), error_type, "{err}");
        assert!(err.to_string().contains(mention), "{err}");
        assert_eq!(inv.audit.outcome, Outcome::Failed);
        assert_eq!(
            inv.audit.error.as_ref().map(|e| e.error_type.as_str()),
            Some(error_type)
        );
        assert_eq!(describe.num_calls(), 0, "bad input must not reach AWS");
        assert_eq!(read_cname(&r53, &zone).await, Some((EP1.to_owned(), 30)));
    }
}

#[tokio::test]
async fn a_missing_record_is_created_with_the_configured_ttl() {
    let r53 = route53_lab().await.client;
    let zone = private_zone(&r53, None).await;
    let describe = primary_is(USW2);
    let switch = TrafficSwitch::with_clients(
        config(&zone, &[("RECORD_TTL", "45")]),
        elasticache(&[&describe]),
        r53.clone(),
    );
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched, "{:?}", inv.audit.error);
    assert_eq!(read_cname(&r53, &zone).await, Some((EP2.to_owned(), 45)));
}

#[tokio::test]
async fn a_record_written_with_other_case_and_a_trailing_dot_is_recognised() {
    let r53 = route53_lab().await.client;
    let zone = private_zone(&r53, Some(&format!("{}.", EP2.to_uppercase()))).await;
    let describe = primary_is(USW2);
    let switch = TrafficSwitch::with_clients(config(&zone, &[]), elasticache(&[&describe]), r53.clone());
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert_eq!(
        inv.audit.outcome,
        Outcome::NoOp,
        "{:?}",
        inv.audit.triggers[0].decisions
    );
}

#[tokio::test]
async fn waiting_for_insync_records_the_final_change_status() {
    let r53 = route53_lab().await.client;
    let zone = private_zone(&r53, Some(EP1)).await;
    let describe = primary_is(USW2);
    let switch = TrafficSwitch::with_clients(
        config(&zone, &[("WAIT_FOR_INSYNC", "true")]),
        elasticache(&[&describe]),
        r53.clone(),
    );
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    assert_eq!(inv.audit.outcome, Outcome::Switched);
    let wait = inv.audit.triggers[0]
        .actions
        .iter()
        .find(|a| a.action == "route53.get_change")
        .expect("GetChange was polled");
    assert_eq!(wait.detail["status"], "INSYNC");
}

#[tokio::test]
async fn the_audit_line_is_one_emf_json_object_with_the_decision_in_it() {
    let (switch, _r53, _zone, _) = setup(Some(EP1), USW2).await;
    let inv = invoke(&switch, fixture("promotion-this-region.json")).await;
    let line = inv.audit.emf_line("ValkeyFailover", 1_790_000_000_000);
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["audit"], "traffic-switch");
    assert_eq!(v["SwitchesPerformed"], 1);
    assert_eq!(v["Failures"], 0);
    assert_eq!(v["GlobalDatastore"], DATASTORE);
    assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "ValkeyFailover");
    assert_eq!(v["triggers"][0]["trigger"]["kind"], "elasticache");
    assert!(
        v["triggers"][0]["decisions"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("was promoted"))
    );
}
