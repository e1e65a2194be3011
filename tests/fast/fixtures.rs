//! The files in `events/` are the contract with `sam local invoke -e` and `cargo lambda invoke
//! --data-file`: each must parse into the trigger it is named for and triage as documented.

use failover_core::intake::{AlarmState, AlarmVia, Trigger, parse_event};
use failover_core::switch::{SwitchCommand, Triage, triage};

use failover_tests::*;

fn triaged(name: &str) -> Result<Triage, String> {
    let triggers = parse_event::<SwitchCommand>(fixture(name)).map_err(|e| e.to_string())?;
    assert_eq!(triggers.len(), 1, "{name}");
    triage(&triggers[0], &config("Z0FIXTURE", &[])).map_err(|e| e.to_string())
}

#[test]
fn every_file_in_events_is_covered_by_the_fixture_tests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/traffic-switch");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("events/traffic-switch exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = FIXTURES.iter().map(|s| (*s).to_owned()).collect();
    known.sort();
    assert_eq!(on_disk, known);
}

#[test]
fn every_fixture_is_valid_json_that_round_trips() {
    for name in FIXTURES {
        let v: serde_json::Value = serde_json::from_str(fixture(name)).expect(name);
        let again: serde_json::Value = serde_json::from_str(&v.to_string()).expect(name);
        assert_eq!(v, again, "{name}");
    }
}

#[test]
fn promotions_for_members_ask_to_follow_the_promotion() {
    for name in [
        "promotion-this-region.json",
        "promotion-duplicate.json",
        "promotion-plain-text-node-id.json",
        "promotion-stale.json",
    ] {
        assert!(
            matches!(
                triaged(name),
                Ok(Triage::Act(failover_core::switch::Intent::FollowPromotion { .. }))
            ),
            "{name}"
        );
    }
}

#[test]
fn a_region_switch_step_asks_the_switch_to_follow_the_primary() {
    match triaged("region-switch-step.json") {
        Ok(Triage::Act(failover_core::switch::Intent::FollowPrimary { because })) => {
            assert!(because.contains("arc-region-switch"), "{because}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_schedule_asks_the_switch_for_a_reconcile() {
    assert!(
        matches!(
            triaged("schedule.json"),
            Ok(Triage::Act(failover_core::switch::Intent::Reconcile { .. }))
        ),
        "{:?}",
        triaged("schedule.json")
    );
}

#[test]
fn fixtures_that_must_be_ignored_are() {
    for name in [
        "promotion-other-group.json",
        "elasticache-other-event.json",
        "alarm-eventbridge-ok.json",
    ] {
        assert!(
            matches!(triaged(name), Ok(Triage::Ignore { .. })),
            "{name}: {:?}",
            triaged(name)
        );
    }
}

#[test]
fn each_alarm_fixture_arrives_by_its_named_route_in_alarm_state() {
    for (name, via) in [
        ("alarm-sns.json", AlarmVia::Sns),
        ("alarm-eventbridge.json", AlarmVia::EventBridge),
        ("alarm-direct-action.json", AlarmVia::DirectAction),
    ] {
        let triggers = parse_event::<SwitchCommand>(fixture(name)).expect(name);
        let Some(Trigger::Alarm(a)) = triggers.first() else {
            panic!("{name} is not an alarm")
        };
        assert_eq!(a.via, via, "{name}");
        assert_eq!(a.new_state, AlarmState::Alarm, "{name}");
        assert_eq!(a.region.as_str(), "us-west-2", "{name}");
        assert_eq!(a.name, "sessions-primary-unreachable", "{name}");
    }
}

#[test]
fn manual_fixtures_parse_as_documented() {
    assert!(matches!(
        triaged("manual-status.json"),
        Ok(Triage::Act(failover_core::switch::Intent::Status))
    ));
    assert!(matches!(
        triaged("manual-preflight.json"),
        Ok(Triage::Act(failover_core::switch::Intent::Preflight))
    ));
    assert!(matches!(
        triaged("manual-switch-dry-run.json"),
        Ok(Triage::Act(failover_core::switch::Intent::ManualSwitch {
            dry_run: true,
            ..
        }))
    ));
    assert!(matches!(
        triaged("manual-switch.json"),
        Ok(Triage::Act(failover_core::switch::Intent::ManualSwitch {
            dry_run: false,
            ..
        }))
    ));
    assert!(triaged("invalid-switch-unconfirmed.json").is_err_and(|e| e.contains("confirm")));
    assert!(triaged("invalid-unknown-shape.json").is_err_and(|e| e.contains("unknown shape")));
}

#[test]
fn the_break_glass_fixture_overrides_rules_in_arc_mode_and_is_refused_in_dns_mode() {
    let triggers = parse_event::<SwitchCommand>(fixture("manual-switch-break-glass.json")).expect("parses");
    let dns = triage(&triggers[0], &config("Z0FIXTURE", &[]));
    assert!(dns.is_err_and(|e| e.to_string().contains("arc mode")));
    let arc = config(
        "Z0FIXTURE",
        &[
            ("ROUTING_MODE", "arc"),
            ("ARC_ENDPOINTS", "us-east-1=https://a.example/v1"),
            (
                "ARC_CONTROLS",
                "arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/a,\
                 arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/b",
            ),
        ],
    );
    match triage(&triggers[0], &arc) {
        Ok(Triage::Act(failover_core::switch::Intent::ManualSwitch {
            override_safety_rules,
            ..
        })) => assert_eq!(override_safety_rules.len(), 1),
        other => panic!("{other:?}"),
    }
}
