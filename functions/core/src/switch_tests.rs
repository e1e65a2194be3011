//! The traffic switch's decision matrix: every trigger against every state that matters.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};

use crate::command::CommandRejected;
use crate::config::SwitchConfig;
use crate::intake::{AlarmChange, AlarmState, AlarmVia, ElastiCacheNotification, SnsDelivery, Trigger};
use crate::observed::{DatastoreView, MemberView, Observed, RecordView, Role};
use crate::switch::*;

const EP1: &str = "master.sessions-usw1.abc.usw1.cache.amazonaws.com";
const EP2: &str = "master.sessions-usw2.abc.usw2.cache.amazonaws.com";
const EP3: &str = "master.sessions-euw1.abc.euw1.cache.amazonaws.com";

fn cfg_with(extra: &[(&'static str, &'static str)]) -> SwitchConfig {
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("GLOBAL_DATASTORE_ID", "ldgnf-sessions".to_owned()),
        (
            "MEMBERS",
            format!(
                "us-west-1:sessions-usw1:{EP1},us-west-2:sessions-usw2:{EP2},eu-west-1:sessions-euw1:{EP3}"
            ),
        ),
        ("HOSTED_ZONE_ID", "Z0SESSIONS".to_owned()),
        ("RECORD_NAME", "writer.sessions.internal".to_owned()),
        ("AWS_REGION", "us-west-2".to_owned()),
    ]);
    for (k, v) in extra {
        vars.insert(k, (*v).to_owned());
    }
    SwitchConfig::from_lookup(&|k| vars.get(k).cloned()).expect("valid test config")
}

fn cfg() -> SwitchConfig {
    cfg_with(&[])
}

fn delivery() -> SnsDelivery {
    SnsDelivery {
        message_id: "m".into(),
        topic_arn: "arn:aws:sns:us-west-2:1:t".into(),
        published_at: Utc
            .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
            .single()
            .expect("time"),
    }
}

fn ec(event: &str, source: &str) -> Trigger<SwitchCommand> {
    Trigger::ElastiCache(ElastiCacheNotification {
        event: event.into(),
        source: source.into(),
        delivery: delivery(),
    })
}

fn promoted(source: &str) -> Trigger<SwitchCommand> {
    ec("ReplicationGroupPromotedAsPrimary", source)
}

fn alarm(name: &str, state: AlarmState) -> Trigger<SwitchCommand> {
    Trigger::Alarm(AlarmChange {
        name: name.into(),
        arn: format!("arn:aws:cloudwatch:us-west-2:123456789012:alarm:{name}"),
        region: crate::ids::Region::parse("us-west-2").expect("region"),
        new_state: state,
        old_state: Some(AlarmState::Ok),
        changed_at: None,
        via: AlarmVia::EventBridge,
        delivery: None,
    })
}

fn switch_cmd(
    region: &str,
    dry_run: bool,
    confirm: Option<&str>,
    reason: Option<&str>,
) -> Trigger<SwitchCommand> {
    Trigger::Command(SwitchCommand::Switch {
        target_region: region.into(),
        dry_run,
        confirm: confirm.map(Into::into),
        reason: reason.map(Into::into),
        override_safety_rules: Vec::new(),
    })
}

/// A Global Datastore with `primary` as PRIMARY and the others SECONDARY.
fn datastore(status: &str, primary: &str) -> DatastoreView {
    let members = [
        ("sessions-usw1", "us-west-1"),
        ("sessions-usw2", "us-west-2"),
        ("sessions-euw1", "eu-west-1"),
    ]
    .into_iter()
    .map(|(g, r)| MemberView {
        group: g.into(),
        region: r.into(),
        role: if g == primary {
            Role::Primary
        } else {
            Role::Secondary
        },
        status: "associated".into(),
    })
    .collect();
    DatastoreView {
        id: "ldgnf-sessions".into(),
        status: status.into(),
        members,
    }
}

fn cname(value: &str) -> Option<RecordView> {
    Some(RecordView {
        record_type: "CNAME".into(),
        value: Some(value.into()),
        ttl: Some(30),
        has_routing_policy: false,
    })
}

fn observed(status: &str, primary: &str, record: Option<RecordView>) -> Observed {
    Observed {
        datastore: datastore(status, primary),
        record,
        controls: None,
    }
}

fn act(trigger: &Trigger<SwitchCommand>) -> Intent {
    match triage(trigger, &cfg()) {
        Ok(Triage::Act(i)) => i,
        other => panic!("expected to act, got {other:?}"),
    }
}

fn ignored(trigger: &Trigger<SwitchCommand>, cfg: &SwitchConfig) -> String {
    match triage(trigger, cfg) {
        Ok(Triage::Ignore { reason }) => reason,
        other => panic!("expected to ignore, got {other:?}"),
    }
}

fn switched_to(plan: &Plan) -> &str {
    match plan {
        Plan::Switch { change, .. } => change.to.as_str(),
        other => panic!("expected a switch, got {other:?}"),
    }
}

// ---- triage ----

#[test]
fn a_promotion_is_resolved_from_the_group_or_any_of_its_nodes() {
    for source in [
        "sessions-usw2",
        "sessions-usw2-001",
        "sessions-usw2-0001-002",
        "SESSIONS-USW2",
    ] {
        match act(&promoted(source)) {
            Intent::FollowPromotion { group, region } => {
                assert_eq!(
                    (group.as_str(), region.as_str()),
                    ("sessions-usw2", "us-west-2"),
                    "{source}"
                )
            }
            other => panic!("{source}: {other:?}"),
        }
    }
}

#[test]
fn a_promotion_of_a_group_outside_the_datastore_is_ignored() {
    for source in [
        "billing-usw2",
        "sessions-usw2x",
        "sessions-usw2-01",
        "sessions-usw2-0001-01",
    ] {
        let reason = ignored(&promoted(source), &cfg());
        assert!(reason.contains("not for a member"), "{source}: {reason}");
    }
}

#[test]
fn elasticache_events_that_cannot_mean_a_role_change_are_ignored_with_their_name() {
    for event in [
        "SnapshotComplete",
        "CacheNodeReplaceComplete",
        "CacheClusterParametersChanged",
    ] {
        let reason = ignored(&ec(event, "sessions-usw1-0001-001"), &cfg());
        assert!(reason.contains(event), "{reason}");
    }
}

#[test]
fn an_elasticache_event_that_can_mean_a_role_change_is_a_cue_to_follow_the_primary() {
    for event in ["FailoverComplete", "TestFailoverApiCalled", "PrimaryNodeFailover"] {
        match act(&ec(event, "sessions-usw1-0001-001")) {
            Intent::FollowPrimary { because } => {
                assert!(
                    because.contains(event) && because.contains("sessions-usw1"),
                    "{because}"
                )
            }
            other => panic!("{event}: {other:?}"),
        }
    }
    // From a group outside the datastore it is no cue at all.
    let reason = ignored(&ec("FailoverComplete", "orders-0001-001"), &cfg());
    assert!(reason.contains("not for a member"), "{reason}");
}

#[test]
fn the_schedule_asks_for_a_reconcile_that_repairs_writers_left_on_a_secondary() {
    let intent = act(&Trigger::Schedule {
        time: "2026-11-23T10:00:00Z".into(),
    });
    assert!(matches!(&intent, Intent::Reconcile { scheduled_at } if scheduled_at == "2026-11-23T10:00:00Z"));
    let left_behind = observed("available", "sessions-usw2", cname(EP1));
    assert_eq!(switched_to(&decide(&intent, &left_behind, &cfg())), EP2);
    let right = observed("available", "sessions-usw2", cname(EP2));
    assert!(matches!(decide(&intent, &right, &cfg()), Plan::NoOp { .. }));
}

#[test]
fn a_reconcile_never_waits_on_nor_moves_writers_of_a_changing_datastore() {
    let intent = Intent::Reconcile {
        scheduled_at: "t".into(),
    };
    for o in [
        observed("modifying", "sessions-usw2", cname(EP1)),
        observed("available", "nobody", cname(EP1)),
    ] {
        match decide(&intent, &o, &cfg()) {
            Plan::NoOp { reason } => assert!(reason.contains("never moves writers"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    // A trigger, by contrast, waits for the datastore to settle.
    let follow = Intent::FollowPrimary { because: "x".into() };
    assert!(matches!(
        decide(
            &follow,
            &observed("modifying", "sessions-usw2", cname(EP1)),
            &cfg()
        ),
        Plan::Wait { .. }
    ));
}

#[test]
fn only_an_alarm_entering_alarm_asks_to_follow_the_primary() {
    assert_eq!(
        act(&alarm("primary-unreachable", AlarmState::Alarm)),
        Intent::FollowPrimary {
            because: "alarm primary-unreachable is in ALARM".into()
        }
    );
    for state in [AlarmState::Ok, AlarmState::InsufficientData] {
        let reason = ignored(&alarm("primary-unreachable", state), &cfg());
        assert!(reason.contains("failback is a deliberate act"), "{reason}");
    }
}

#[test]
fn alarms_outside_the_allow_list_are_ignored() {
    let cfg = cfg_with(&[("SWITCH_ALARM_NAMES", "primary-unreachable")]);
    let reason = ignored(&alarm("disk-full", AlarmState::Alarm), &cfg);
    assert!(reason.contains("SWITCH_ALARM_NAMES"), "{reason}");
    assert!(matches!(
        triage(&alarm("primary-unreachable", AlarmState::Alarm), &cfg),
        Ok(Triage::Act(_))
    ));
}

#[test]
fn a_real_manual_switch_needs_the_datastore_id_and_a_reason() {
    assert!(matches!(
        triage(&switch_cmd("us-west-2", false, None, Some("drill")), &cfg()),
        Err(CommandRejected::ConfirmationRequired { .. })
    ));
    let wrong = triage(
        &switch_cmd("us-west-2", false, Some("sessions"), Some("drill")),
        &cfg(),
    );
    assert!(
        matches!(&wrong, Err(CommandRejected::ConfirmationRequired { got, .. }) if got.contains("sessions"))
    );
    assert_eq!(
        triage(
            &switch_cmd("us-west-2", false, Some("ldgnf-sessions"), Some("  ")),
            &cfg()
        ),
        Err(CommandRejected::ReasonRequired)
    );
    assert_eq!(
        act(&Trigger::Command(SwitchCommand::Switch {
            target_region: "us-west-2".into(),
            dry_run: false,
            confirm: Some("ldgnf-sessions".into()),
            reason: Some("INC-42".into()),
            override_safety_rules: Vec::new(),
        })),
        Intent::ManualSwitch {
            target: crate::ids::Region::parse("us-west-2").expect("region"),
            dry_run: false,
            reason: "INC-42".into(),
            override_safety_rules: Vec::new(),
        }
    );
}

#[test]
fn a_dry_run_needs_neither_confirmation_nor_reason() {
    assert!(matches!(
        act(&switch_cmd("us-west-1", true, None, None)),
        Intent::ManualSwitch { dry_run: true, .. }
    ));
}

#[test]
fn a_manual_switch_to_a_region_outside_the_datastore_is_rejected() {
    assert!(matches!(
        triage(&switch_cmd("ap-south-1", true, None, None), &cfg()),
        Err(CommandRejected::NotAMember(r, _)) if r == "ap-south-1"
    ));
    assert!(matches!(
        triage(&switch_cmd("Oregon", true, None, None), &cfg()),
        Err(CommandRejected::BadRegion(_))
    ));
}

#[test]
fn a_manual_switch_defaults_to_a_dry_run() {
    let cmd: SwitchCommand =
        serde_json::from_str(r#"{"command":"switch","target_region":"us-west-2"}"#).expect("parses");
    assert!(matches!(cmd, SwitchCommand::Switch { dry_run: true, .. }));
}

// ---- decide ----

#[test]
fn a_genuine_promotion_moves_the_record_to_the_new_primary() {
    let plan = decide(
        &act(&promoted("sessions-usw2")),
        &observed("available", "sessions-usw2", cname(EP1)),
        &cfg(),
    );
    assert_eq!(switched_to(&plan), EP2);
    let Plan::Switch { change, reason } = plan else {
        unreachable!()
    };
    assert_eq!(change.from.as_deref(), Some(EP1));
    assert_eq!(change.ttl, 30);
    assert!(!change.dry_run);
    assert!(
        reason.contains("was promoted") && reason.contains("us-west-1"),
        "{reason}"
    );
}

#[test]
fn a_stale_promotion_never_moves_writers_to_a_secondary() {
    // usw2 was promoted, then the datastore failed back to usw1; the old notification arrives late.
    let plan = decide(
        &act(&promoted("sessions-usw2")),
        &observed("available", "sessions-usw1", cname(EP1)),
        &cfg(),
    );
    match plan {
        Plan::NoOp { reason } => assert!(
            reason.contains("stale or duplicate") && reason.contains("SECONDARY"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Even when the record is (wrongly) elsewhere, a stale promotion does not touch it.
    let plan = decide(
        &act(&promoted("sessions-usw2")),
        &observed("available", "sessions-usw1", cname(EP3)),
        &cfg(),
    );
    assert!(matches!(plan, Plan::NoOp { .. }), "{plan:?}");
}

#[test]
fn a_duplicate_promotion_is_a_no_op_once_the_record_is_right() {
    let plan = decide(
        &act(&promoted("sessions-usw2")),
        &observed("available", "sessions-usw2", cname(EP2)),
        &cfg(),
    );
    match plan {
        Plan::NoOp { reason } => assert!(reason.contains("already points at"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_moves_while_the_datastore_is_modifying() {
    for intent in [
        act(&promoted("sessions-usw2")),
        act(&alarm("primary-unreachable", AlarmState::Alarm)),
        act(&switch_cmd("us-west-2", true, None, None)),
    ] {
        let plan = decide(
            &intent,
            &observed("modifying", "sessions-usw2", cname(EP1)),
            &cfg(),
        );
        match plan {
            Plan::Wait { reason } => assert!(reason.contains("modifying"), "{reason}"),
            other => panic!("{intent:?}: {other:?}"),
        }
    }
}

#[test]
fn no_or_two_primaries_mean_wait_not_guess() {
    let mut none = datastore("available", "nobody");
    let plan = decide(
        &act(&alarm("a", AlarmState::Alarm)),
        &Observed {
            datastore: none.clone(),
            record: cname(EP1),
            controls: None,
        },
        &cfg(),
    );
    assert!(
        matches!(plan, Plan::Wait { ref reason } if reason.contains("0 PRIMARY")),
        "{plan:?}"
    );
    none.members[0].role = Role::Primary;
    none.members[1].role = Role::Primary;
    let plan = decide(
        &act(&alarm("a", AlarmState::Alarm)),
        &Observed {
            datastore: none,
            record: cname(EP1),
            controls: None,
        },
        &cfg(),
    );
    assert!(
        matches!(plan, Plan::Wait { ref reason } if reason.contains("2 PRIMARY")),
        "{plan:?}"
    );
}

#[test]
fn an_unknown_role_is_never_taken_for_primary() {
    let mut ds = datastore("available", "sessions-usw1");
    ds.members[0].role = Role::parse("PRIMARY-ISH");
    let plan = decide(
        &act(&alarm("a", AlarmState::Alarm)),
        &Observed {
            datastore: ds,
            record: cname(EP1),
            controls: None,
        },
        &cfg(),
    );
    assert!(matches!(plan, Plan::Wait { .. }), "{plan:?}");
}

#[test]
fn an_alarm_moves_writers_to_whoever_is_primary_now() {
    let plan = decide(
        &act(&alarm("primary-unreachable", AlarmState::Alarm)),
        &observed("available", "sessions-euw1", cname(EP1)),
        &cfg(),
    );
    assert_eq!(switched_to(&plan), EP3);
    // And does nothing when writers are already there.
    let plan = decide(
        &act(&alarm("primary-unreachable", AlarmState::Alarm)),
        &observed("available", "sessions-usw1", cname(EP1)),
        &cfg(),
    );
    assert!(matches!(plan, Plan::NoOp { .. }), "{plan:?}");
}

#[test]
fn a_region_switch_step_moves_writers_to_the_primary_not_to_the_region_its_payload_names() {
    let raw = serde_json::json!({
        "planArn": "arn:aws:arc-region-switch::123456789012:plan/sessions:abc123",
        "executionId": "exec-1",
        "activateRegion": "us-west-1",
    });
    let Ok(triggers) = crate::intake::parse_event::<SwitchCommand>(&raw.to_string()) else {
        panic!("a Region switch step must parse");
    };
    let [trigger] = triggers.as_slice() else {
        panic!("{triggers:?}")
    };
    let intent = act(trigger);
    // us-west-1 is named, but us-west-2 is the primary: writers go to the primary.
    let plan = decide(
        &intent,
        &observed("available", "sessions-usw2", cname(EP1)),
        &cfg(),
    );
    assert_eq!(switched_to(&plan), EP2);
    match plan {
        Plan::Switch { ref reason, .. } => assert!(reason.contains("exec-1"), "{plan:?}"),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn a_region_switch_step_the_promoter_would_refuse_still_only_moves_writers_to_the_primary() {
    // The switch reads no Region, action or regionToRun from the payload: whatever they hold, a
    // plan step makes it follow the datastore, which is harmless in any workflow.
    for fields in [
        serde_json::json!({"activateRegion": 7}),
        serde_json::json!({"activateRegion": ["us-west-1"], "targetRegion": {"r": "us-west-1"}}),
        serde_json::json!({"activateRegion": "eu-west-1"}),
        serde_json::json!({"action": "deactivate", "targetRegion": "us-west-2"}),
        serde_json::json!({"action": "postRecovery"}),
        serde_json::json!({"regionToRun": "deactivatingRegion", "deactivateRegion": ""}),
    ] {
        let mut raw = fields.clone();
        raw["planArn"] = "arn:aws:arc-region-switch::123456789012:plan/sessions:abc123".into();
        let Ok(triggers) = crate::intake::parse_event::<SwitchCommand>(&raw.to_string()) else {
            panic!("{fields}: a Region switch step must parse");
        };
        let [trigger] = triggers.as_slice() else {
            panic!("{triggers:?}")
        };
        let intent = act(trigger);
        assert!(
            matches!(intent, Intent::FollowPrimary { .. }),
            "{fields}: {intent:?}"
        );
        let plan = decide(
            &intent,
            &observed("available", "sessions-usw2", cname(EP1)),
            &cfg(),
        );
        assert_eq!(switched_to(&plan), EP2, "{fields}");
        let settled = decide(
            &intent,
            &observed("available", "sessions-usw2", cname(EP2)),
            &cfg(),
        );
        assert!(matches!(settled, Plan::NoOp { .. }), "{fields}: {settled:?}");
    }
}

#[test]
fn a_manual_switch_to_a_secondary_is_refused() {
    let plan = decide(
        &act(&switch_cmd("us-west-2", true, None, None)),
        &observed("available", "sessions-usw1", cname(EP1)),
        &cfg(),
    );
    match plan {
        Plan::Refuse { reason } => assert!(
            reason.contains("not the primary Region") && reason.contains("Promote"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_manual_dry_run_reports_the_change_it_would_make() {
    let plan = decide(
        &act(&switch_cmd("us-west-2", true, None, Some("rehearsal"))),
        &observed("available", "sessions-usw2", cname(EP1)),
        &cfg(),
    );
    match plan {
        Plan::Switch { change, reason } => {
            assert!(change.dry_run);
            assert_eq!(change.to.as_str(), EP2);
            assert!(reason.contains("operator: rehearsal"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_record_is_created() {
    let plan = decide(
        &act(&promoted("sessions-usw2")),
        &observed("available", "sessions-usw2", None),
        &cfg(),
    );
    assert_eq!(switched_to(&plan), EP2);
    let Plan::Switch { change, reason } = plan else {
        unreachable!()
    };
    assert_eq!(change.from, None);
    assert!(reason.contains("no record yet"), "{reason}");
}

#[test]
fn a_record_pointing_somewhere_unknown_is_corrected_and_said_so() {
    let plan = decide(
        &act(&alarm("a", AlarmState::Alarm)),
        &observed(
            "available",
            "sessions-usw1",
            cname("old-cluster.example.internal"),
        ),
        &cfg(),
    );
    let Plan::Switch { reason, .. } = plan else {
        panic!("{plan:?}")
    };
    assert!(reason.contains("not a configured endpoint"), "{reason}");
}

#[test]
fn records_this_mode_does_not_own_are_refused() {
    let a_record = Some(RecordView {
        record_type: "A".into(),
        value: Some("10.0.0.1".into()),
        ttl: Some(30),
        has_routing_policy: false,
    });
    let weighted = Some(RecordView {
        record_type: "CNAME".into(),
        value: Some(EP1.into()),
        ttl: Some(30),
        has_routing_policy: true,
    });
    for record in [a_record, weighted] {
        let plan = decide(
            &act(&promoted("sessions-usw2")),
            &observed("available", "sessions-usw2", record),
            &cfg(),
        );
        assert!(matches!(plan, Plan::Refuse { .. }), "{plan:?}");
    }
}

#[test]
fn a_primary_missing_from_the_configuration_is_refused_not_guessed() {
    let mut ds = datastore("available", "sessions-usw1");
    ds.members[0].group = "sessions-apse1".into();
    let plan = decide(
        &act(&alarm("a", AlarmState::Alarm)),
        &Observed {
            datastore: ds,
            record: cname(EP1),
            controls: None,
        },
        &cfg(),
    );
    assert!(
        matches!(plan, Plan::Refuse { ref reason } if reason.contains("not in MEMBERS")),
        "{plan:?}"
    );
}

#[test]
fn a_primary_in_another_region_than_configured_is_refused() {
    let mut ds = datastore("available", "sessions-usw1");
    ds.members[0].region = "us-east-1".into();
    let plan = decide(
        &act(&alarm("a", AlarmState::Alarm)),
        &Observed {
            datastore: ds,
            record: cname(EP2),
            controls: None,
        },
        &cfg(),
    );
    assert!(
        matches!(plan, Plan::Refuse { ref reason } if reason.contains("us-east-1")),
        "{plan:?}"
    );
}

#[test]
fn the_configured_ttl_is_carried_into_the_change() {
    let cfg = cfg_with(&[("RECORD_TTL", "60")]);
    let plan = decide(
        &act(&promoted("sessions-usw2")),
        &observed("available", "sessions-usw2", cname(EP1)),
        &cfg,
    );
    assert!(
        matches!(plan, Plan::Switch { ref change, .. } if change.ttl == 60),
        "{plan:?}"
    );
}

/// Whatever arrives, in whatever order, a switch only ever targets the endpoint of the member
/// described as PRIMARY while the datastore is available.
#[test]
fn no_trigger_in_any_state_moves_writers_anywhere_but_the_described_primary() {
    let triggers = [
        promoted("sessions-usw1"),
        promoted("sessions-usw2"),
        promoted("sessions-euw1-0001-001"),
        alarm("a", AlarmState::Alarm),
        switch_cmd("us-west-1", true, None, None),
        switch_cmd("us-west-2", false, Some("ldgnf-sessions"), Some("x")),
        switch_cmd("eu-west-1", true, None, None),
    ];
    let endpoints = [EP1, EP2, EP3];
    let mut switches = 0;
    for status in ["available", "modifying", "creating"] {
        for (i, primary) in ["sessions-usw1", "sessions-usw2", "sessions-euw1"]
            .into_iter()
            .enumerate()
        {
            for record in [None, cname(EP1), cname(EP2), cname(EP3)] {
                for t in &triggers {
                    let Ok(Triage::Act(intent)) = triage(t, &cfg()) else {
                        continue;
                    };
                    let plan = decide(&intent, &observed(status, primary, record.clone()), &cfg());
                    if let Plan::Switch { change, .. } = &plan {
                        switches += 1;
                        assert_eq!(status, "available");
                        assert_eq!(change.to.as_str(), endpoints[i], "{t:?} {status} {primary}");
                        assert_ne!(
                            record.as_ref().and_then(|r| r.value.as_deref()),
                            Some(endpoints[i])
                        );
                    }
                }
            }
        }
    }
    assert!(switches > 0, "the matrix must contain switches to mean anything");
}

#[test]
fn status_reports_where_writers_point_and_whether_that_is_the_primary() {
    let report = status_report(&observed("available", "sessions-usw2", cname(EP1)), &cfg());
    assert_eq!(report.primary_region.as_deref(), Some("us-west-2"));
    assert_eq!(report.writers_point_at.as_deref(), Some("us-west-1"));
    assert!(!report.writers_on_primary);
    assert_eq!(report.record_ttl, Some(30));
    let report = status_report(&observed("available", "sessions-usw2", cname(EP2)), &cfg());
    assert!(report.writers_on_primary);
    let report = status_report(&observed("available", "sessions-usw2", None), &cfg());
    assert_eq!(report.writers_point_at, None);
    assert!(!report.writers_on_primary);
}

// ---- arc mode ----

const ARN1: &str = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/usw1";
const ARN2: &str = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/usw2";
const ARN3: &str = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/euw1";
const RULE: &str = "arn:aws:route53-recovery-control::123456789012:controlpanel/p/safetyrule/at-most-one";

fn arc_cfg() -> SwitchConfig {
    cfg_with(&[
        ("ROUTING_MODE", "arc"),
        (
            "ARC_ENDPOINTS",
            "us-east-1=https://a.example/v1,us-west-2=https://b.example/v1",
        ),
        (
            "ARC_CONTROLS",
            "us-west-1=arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/usw1,\
             us-west-2=arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/usw2,\
             eu-west-1=arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/euw1",
        ),
    ])
}

fn controls(on: &[&str], known: &[&str]) -> Option<crate::observed::ControlsView> {
    Some(crate::observed::ControlsView {
        states: known.iter().map(|a| ((*a).to_owned(), on.contains(a))).collect(),
        read_from: "us-east-1".into(),
        failed: vec![],
    })
}

fn arc_observed(primary: &str, on: &[&str]) -> Observed {
    Observed {
        datastore: datastore("available", primary),
        record: None,
        controls: controls(on, &[ARN1, ARN2, ARN3]),
    }
}

fn arc_intent(trigger: &Trigger<SwitchCommand>) -> Intent {
    match triage(trigger, &arc_cfg()) {
        Ok(Triage::Act(i)) => i,
        other => panic!("expected to act, got {other:?}"),
    }
}

fn flip_of(plan: Plan) -> ControlFlip {
    match plan {
        Plan::Flip { flip, .. } => flip,
        other => panic!("expected a flip, got {other:?}"),
    }
}

#[test]
fn arc_a_promotion_turns_the_primarys_control_on_and_every_other_off_in_one_flip() {
    let flip = flip_of(decide(
        &arc_intent(&promoted("sessions-usw2")),
        &arc_observed("sessions-usw2", &[ARN1]),
        &arc_cfg(),
    ));
    assert_eq!(flip.on.as_str(), "us-west-2");
    let wanted: Vec<(&str, bool)> = flip.entries.iter().map(|(a, _, on)| (a.as_str(), *on)).collect();
    assert_eq!(wanted, [(ARN1, false), (ARN2, true), (ARN3, false)]);
    assert_eq!(flip.before[ARN1], Some(true));
    assert_eq!(flip.before[ARN2], Some(false));
    assert!(flip.override_safety_rules.is_empty());
    assert!(!flip.dry_run);
}

#[test]
fn arc_controls_already_right_are_left_alone() {
    let plan = decide(
        &arc_intent(&promoted("sessions-usw2")),
        &arc_observed("sessions-usw2", &[ARN2]),
        &arc_cfg(),
    );
    assert!(
        matches!(plan, Plan::NoOp { ref reason } if reason.contains("already have only us-west-2 On")),
        "{plan:?}"
    );
}

#[test]
fn arc_two_controls_on_or_an_unreadable_control_is_corrected() {
    let flip = flip_of(decide(
        &arc_intent(&alarm("a", AlarmState::Alarm)),
        &arc_observed("sessions-usw1", &[ARN1, ARN2]),
        &arc_cfg(),
    ));
    assert_eq!(flip.on.as_str(), "us-west-1");
    let partial = Observed {
        datastore: datastore("available", "sessions-usw1"),
        record: None,
        controls: controls(&[ARN1], &[ARN1, ARN2]),
    };
    let flip = flip_of(decide(
        &arc_intent(&alarm("a", AlarmState::Alarm)),
        &partial,
        &arc_cfg(),
    ));
    assert_eq!(
        flip.before[ARN3], None,
        "an unread control is reported as unknown"
    );
}

#[test]
fn arc_a_stale_promotion_changes_no_control() {
    let plan = decide(
        &arc_intent(&promoted("sessions-usw1")),
        &arc_observed("sessions-usw2", &[ARN2]),
        &arc_cfg(),
    );
    assert!(
        matches!(plan, Plan::NoOp { ref reason } if reason.contains("stale or duplicate")),
        "{plan:?}"
    );
}

#[test]
fn arc_safety_rule_overrides_come_only_from_a_confirmed_operator_command() {
    let with_override = |dry_run, confirm: Option<&str>, rules: Vec<&str>| {
        Trigger::Command(SwitchCommand::Switch {
            target_region: "us-west-2".into(),
            dry_run,
            confirm: confirm.map(Into::into),
            reason: Some("break glass".into()),
            override_safety_rules: rules.into_iter().map(Into::into).collect(),
        })
    };
    // Needs confirm even as a dry run.
    assert!(matches!(
        triage(&with_override(true, None, vec![RULE]), &arc_cfg()),
        Err(CommandRejected::ConfirmationRequired { .. })
    ));
    assert!(matches!(
        triage(
            &with_override(false, Some("ldgnf-sessions"), vec!["arn:aws:s3:::x"]),
            &arc_cfg()
        ),
        Err(CommandRejected::BadOverride(_))
    ));
    assert!(matches!(
        triage(&with_override(false, Some("ldgnf-sessions"), vec![RULE]), &cfg()),
        Err(CommandRejected::BadOverride(m)) if m.contains("arc mode")
    ));
    let intent = arc_intent(&with_override(false, Some("ldgnf-sessions"), vec![RULE]));
    let flip = flip_of(decide(
        &intent,
        &arc_observed("sessions-usw2", &[ARN1]),
        &arc_cfg(),
    ));
    assert_eq!(flip.override_safety_rules, [RULE]);
    // No automatic trigger ever carries one.
    for t in [promoted("sessions-usw2"), alarm("a", AlarmState::Alarm)] {
        let flip = flip_of(decide(
            &arc_intent(&t),
            &arc_observed("sessions-usw2", &[ARN1]),
            &arc_cfg(),
        ));
        assert!(flip.override_safety_rules.is_empty());
    }
}

#[test]
fn arc_status_reports_each_control_and_where_it_was_read() {
    let report = status_report(&arc_observed("sessions-usw2", &[ARN1]), &arc_cfg());
    let controls = report.routing_controls.expect("controls");
    assert_eq!(controls["us-west-1"], "On");
    assert_eq!(controls["us-west-2"], "Off");
    assert_eq!(report.controls_read_from.as_deref(), Some("us-east-1"));
    assert_eq!(report.writers_point_at.as_deref(), Some("us-west-1"));
    assert!(!report.writers_on_primary);
    assert_eq!(report.record_name, None);
}
