//! The promoter's gates over random readings, policies and `force` sets: a promotion goes through
//! only when every gate passed or was forced, `state` is never forced, and a command that asks to
//! force it is rejected before anything is read.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::command::CommandRejected;
use crate::config::PromoterConfig;
use crate::config::{MissingEvents, MissingLag, PromotePolicy};
use crate::ids::{Region, ReplicationGroupId};
use crate::intake::{AlarmState, Trigger};
use crate::observed::{DatastoreView, MemberView, Role};
use crate::promote::{
    AlarmRead, AlarmReading, EventsRead, GateName, LagRead, PromoteDecision, PromoteIntent, PromoteObserved,
    PromoterCommand, PromoterTriage, Promotion, Verdict, evaluate, triage,
};

const POOL: [(&str, &str); 3] = [
    ("us-west-1", "sessions-usw1"),
    ("us-west-2", "sessions-usw2"),
    ("eu-west-1", "sessions-euw1"),
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("time")
}

/// A moment `ms` milliseconds before now (after it, when negative).
fn ago(ms: i64) -> DateTime<Utc> {
    now() - chrono::Duration::milliseconds(ms)
}

/// Milliseconds, near the bounds the policies below use and anywhere else, in the future too.
fn age_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(&[0i64, 60, 299, 300, 301, 1_799, 1_800, 1_801, 3_600][..])
            .prop_map(|s| s * 1_000),
        3 => 0..200_000_000i64,
        1 => -3_600_000..0i64,
    ]
}

fn policy() -> impl Strategy<Value = PromotePolicy> {
    (
        prop_oneof![
            2 => prop::sample::select(&[0.5f64, 1.0, 5.0][..]),
            1 => 0.001f64..100.0,
        ],
        prop_oneof![
            2 => prop::sample::select(&[60u64, 300, 3_600][..]),
            1 => 1..=86_400u64,
        ],
        prop_oneof![Just(MissingLag::Allow), Just(MissingLag::Block)],
        prop_oneof![
            2 => prop::sample::select(&[0u64, 30][..]),
            1 => 0..=10_080u64,
        ],
        0..=4usize,
        any::<bool>(),
        prop_oneof![Just(MissingEvents::Allow), Just(MissingEvents::Block)],
    )
        .prop_map(
            |(
                max_lag_seconds,
                lag_max_age,
                missing_lag,
                cooldown_minutes,
                vantage_required,
                unreachable,
                missing_events,
            )| {
                PromotePolicy {
                    max_lag_seconds,
                    lag_max_age: Duration::from_secs(lag_max_age),
                    missing_lag,
                    cooldown: Duration::from_secs(cooldown_minutes * 60),
                    missing_events,
                    vantage_required,
                    unreachable_vantage_agrees: unreachable,
                }
            },
        )
}

fn target() -> impl Strategy<Value = Promotion> {
    (0..POOL.len()).prop_map(|i| Promotion {
        region: Region::parse(POOL[i].0).expect("region"),
        group: ReplicationGroupId::parse(POOL[i].1).expect("group"),
    })
}

fn reading_state() -> impl Strategy<Value = AlarmRead> {
    prop_oneof![
        5 => Just(AlarmRead::Is(AlarmState::Alarm)),
        2 => Just(AlarmRead::Is(AlarmState::Ok)),
        1 => Just(AlarmRead::Is(AlarmState::InsufficientData)),
        2 => Just(AlarmRead::RegionDark("connection refused".to_owned())),
        1 => Just(AlarmRead::Unreadable("alarm does not exist".to_owned())),
    ]
}

fn readings(max: usize) -> impl Strategy<Value = Vec<AlarmReading>> {
    prop::collection::vec(
        (0..POOL.len(), reading_state()).prop_map(|(i, state)| AlarmReading {
            region: POOL[i].0.to_owned(),
            name: format!("writes-failing-{}", POOL[i].1),
            state,
        }),
        0..=max,
    )
}

/// The target's own entry as described (usually right, sometimes wrong in one way) and the others.
fn datastore(target: &Promotion) -> impl Strategy<Value = DatastoreView> + use<> {
    let own_group = target.group.to_string();
    let own_region = target.region.to_string();
    let others: Vec<(&str, &str)> = POOL.into_iter().filter(|(_, g)| *g != own_group).collect();
    let role = prop_oneof![
        5 => Just(Role::Secondary),
        2 => Just(Role::Primary),
        1 => Just(Role::Unknown("PRIMARY-ELECT".to_owned())),
    ];
    let status = prop_oneof![
        5 => Just("associated".to_owned()),
        1 => Just("ASSOCIATED".to_owned()),
        1 => prop::sample::select(&["associating", "disassociating", ""][..]).prop_map(str::to_owned),
    ];
    (
        prop_oneof![
            8 => Just("available".to_owned()),
            2 => Just("modifying".to_owned()),
            1 => "[a-z -]{0,12}",
        ],
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
        role.clone(),
        status.clone(),
        prop::collection::vec((prop::sample::select(others), role, status), 0..=2),
        any::<prop::sample::Index>(),
    )
        .prop_map(
            move |(ds_status, own_is_member, own_region_right, own_role, own_status, others, at)| {
                let mut members: Vec<MemberView> = others
                    .into_iter()
                    .map(|((region, group), role, status)| MemberView {
                        group: group.to_owned(),
                        region: region.to_owned(),
                        role,
                        status,
                    })
                    .collect();
                if own_is_member {
                    let own = MemberView {
                        group: own_group.clone(),
                        region: if own_region_right {
                            own_region.clone()
                        } else {
                            "ap-south-1".to_owned()
                        },
                        role: own_role,
                        status: own_status,
                    };
                    let i = at.index(members.len() + 1);
                    members.insert(i, own);
                }
                DatastoreView {
                    id: "ldgnf-sessions".to_owned(),
                    status: ds_status,
                    members,
                }
            },
        )
}

fn lag() -> impl Strategy<Value = LagRead> {
    let value = prop_oneof![
        4 => 0.0f64..10.0,
        2 => prop::sample::select(&[0.5f64, 1.0, 5.0][..]),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => -5.0f64..0.0,
    ];
    prop_oneof![
        8 => (value, age_ms()).prop_map(|(seconds, ms)| LagRead::Value { seconds, at: ago(ms) }),
        1 => Just(LagRead::Missing),
        1 => Just(LagRead::RegionDark("timeout".to_owned())),
        1 => Just(LagRead::Unreadable("AccessDenied".to_owned())),
    ]
}

fn events() -> impl Strategy<Value = EventsRead> {
    (
        prop::option::weighted(0.5, age_ms().prop_map(ago)),
        prop::collection::vec(prop::sample::select(&["us-west-1", "us-west-2"][..]), 0..=2),
        prop::collection::vec(prop::sample::select(&["eu-west-1: AccessDenied"][..]), 0..=1),
    )
        .prop_map(|(last_failover, dark, unreadable)| EventsRead {
            last_failover,
            read: vec!["us-west-2".to_owned()],
            dark: dark.into_iter().map(str::to_owned).collect(),
            unreadable: unreadable.into_iter().map(str::to_owned).collect(),
        })
}

fn observed_for(target: &Promotion) -> impl Strategy<Value = PromoteObserved> + use<> {
    (datastore(target), readings(3), readings(4), lag(), events()).prop_map(
        |(datastore, signal, vantage, lag, events)| PromoteObserved {
            datastore,
            signal,
            vantage,
            lag,
            events,
        },
    )
}

fn force() -> impl Strategy<Value = Vec<GateName>> {
    prop::collection::vec(prop::sample::select(GateName::ALL.to_vec()), 0..=6)
}

/// A case: the target, what was observed of it, the policy and the gates forced.
fn case() -> impl Strategy<Value = (Promotion, PromoteObserved, PromotePolicy, Vec<GateName>)> {
    target().prop_flat_map(|t| (Just(t.clone()), observed_for(&t), policy(), force()))
}

/// Whether each gate should pass, worked out from the module's documentation rather than its code.
fn should_pass(target: &Promotion, o: &PromoteObserved, p: &PromotePolicy) -> BTreeMap<GateName, bool> {
    let member = o
        .datastore
        .members
        .iter()
        .find(|m| m.group == target.group.as_str());
    let state = o.datastore.status.eq_ignore_ascii_case("available")
        && member.is_some_and(|m| {
            m.role == Role::Secondary
                && m.region == target.region.as_str()
                && m.status.eq_ignore_ascii_case("associated")
        });
    let signal = !o.signal.is_empty()
        && o.signal
            .iter()
            .all(|a| a.state == AlarmRead::Is(AlarmState::Alarm));
    // Fail closed: an alarm a Region that answers cannot give is never agreement, and blocks.
    let agreeing = o
        .vantage
        .iter()
        .filter(|a| match a.state {
            AlarmRead::Is(s) => s == AlarmState::Alarm,
            AlarmRead::RegionDark(_) => p.unreachable_vantage_agrees,
            AlarmRead::Unreadable(_) => false,
        })
        .count();
    let any_unreadable = o
        .vantage
        .iter()
        .any(|a| matches!(a.state, AlarmRead::Unreadable(_)));
    let vantage = !any_unreadable && agreeing >= p.vantage_required.max(1);
    let max_age = chrono::Duration::from_std(p.lag_max_age).expect("bounded");
    let data_loss = match o.lag {
        LagRead::Value { seconds, at } if at <= now() && now() - at <= max_age => {
            seconds <= p.max_lag_seconds
        }
        LagRead::Unreadable(_) => false,
        _ => p.missing_lag == MissingLag::Allow,
    };
    let recent = o.events.last_failover.is_some_and(|at| {
        let since = (now() - at).max(chrono::Duration::zero());
        since < chrono::Duration::from_std(p.cooldown).expect("bounded")
    });
    let cooldown = !recent && (o.events.unreadable.is_empty() || p.missing_events == MissingEvents::Allow);
    BTreeMap::from([
        (GateName::State, state),
        (GateName::Signal, signal),
        (GateName::Vantage, vantage),
        (GateName::DataLoss, data_loss),
        (GateName::Cooldown, cooldown),
    ])
}

fn verdict(d: &PromoteDecision, name: GateName) -> Option<Verdict> {
    d.gates.iter().find(|g| g.name == name).map(|g| g.verdict)
}

fn gates_hold(
    target: &Promotion,
    o: &PromoteObserved,
    p: &PromotePolicy,
    force: &[GateName],
) -> Result<(), TestCaseError> {
    let d = evaluate(target, o, p, now(), force);
    let names: Vec<GateName> = d.gates.iter().map(|g| g.name).collect();
    prop_assert_eq!(names, GateName::ALL.to_vec(), "every gate once, in order");

    // Each verdict: pass when the gate's condition holds, else forced if (and only if) the operator
    // forced it and it is not `state`, else block.
    let pass = should_pass(target, o, p);
    for g in &d.gates {
        let expected = if pass[&g.name] {
            Verdict::Pass
        } else if g.name != GateName::State && force.contains(&g.name) {
            Verdict::Forced
        } else {
            Verdict::Block
        };
        prop_assert_eq!(g.verdict, expected, "{:?}: {}", g.name, g.detail);
    }

    // The property itself, stated on the decision.
    if let Some(promotion) = &d.promote {
        prop_assert_eq!(promotion, target);
        for g in &d.gates {
            prop_assert!(
                g.verdict == Verdict::Pass
                    || (g.verdict == Verdict::Forced && force.contains(&g.name) && g.name != GateName::State),
                "promoted past {:?} ({:?}): {}",
                g.name,
                g.verdict,
                g.detail
            );
        }
    }
    if !pass[&GateName::State] {
        prop_assert!(
            d.promote.is_none(),
            "promoted past a failing state gate: {}",
            d.reason
        );
        prop_assert_eq!(verdict(&d, GateName::State), Some(Verdict::Block));
    }
    // Nothing blocks, then it promotes; and the audit record names exactly the gates forced past.
    let blocked = d.gates.iter().any(|g| g.verdict == Verdict::Block);
    prop_assert_eq!(d.promote.is_some(), !blocked, "{}", d.reason);
    let forced: Vec<GateName> = d
        .gates
        .iter()
        .filter(|g| g.verdict == Verdict::Forced)
        .map(|g| g.name)
        .collect();
    prop_assert_eq!(&d.forced, &forced);
    Ok(())
}

/// A failing `state`, one of the ways it can fail, over an otherwise random case.
fn with_failing_state(o: &mut PromoteObserved, target: &Promotion, how: u8) {
    let own = o
        .datastore
        .members
        .iter_mut()
        .find(|m| m.group == target.group.as_str());
    match (how % 5, own) {
        (0, _) | (_, None) => o.datastore.status = "modifying".to_owned(),
        (1, Some(m)) => m.role = Role::Primary,
        (2, Some(m)) => m.region = "ap-south-1".to_owned(),
        (3, Some(m)) => m.status = "disassociating".to_owned(),
        (_, Some(m)) => m.group = "someone-else".to_owned(),
    }
}

fn promoter_cfg() -> PromoterConfig {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("GLOBAL_DATASTORE_ID", "ldgnf-sessions"),
        (
            "MEMBERS",
            "us-west-1:sessions-usw1:a.example,us-west-2:sessions-usw2:b.example",
        ),
        ("AWS_REGION", "us-west-2"),
        ("SIGNAL_ALARMS", "writes-failing-usw2"),
        ("VANTAGE_ALARMS", "us-west-1:writes-failing-usw1"),
    ]);
    PromoterConfig::from_lookup(&|k| vars.get(k).map(|v| (*v).to_owned())).expect("valid")
}

fn promote_command() -> impl Strategy<Value = PromoterCommand> {
    (
        prop_oneof![
            4 => prop::sample::select(&["us-west-2", "us-west-1"][..]).prop_map(str::to_owned),
            1 => prop::sample::select(&["eu-west-1", "US West (Oregon)", ""][..]).prop_map(str::to_owned),
            1 => any::<String>(),
        ],
        any::<bool>(),
        prop::option::of(prop_oneof![
            4 => Just("ldgnf-sessions".to_owned()),
            1 => Just("sessions".to_owned()),
            1 => any::<String>(),
        ]),
        prop::option::of(prop_oneof![
            4 => Just("INC-1".to_owned()),
            1 => Just("  ".to_owned()),
        ]),
        force(),
    )
        .prop_map(
            |(target_region, dry_run, confirm, reason, force)| PromoterCommand::Promote {
                target_region,
                dry_run,
                confirm,
                reason,
                force,
            },
        )
}

proptest! {
    // Cheap cases, so many of them; shrinking through the dependent strategies is slow, so it is
    // bounded to keep a failure's report quick.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_promotion_goes_through_only_when_every_gate_passed_or_was_forced_and_never_past_state(
        (target, observed, policy, force) in case(),
    ) {
        gates_hold(&target, &observed, &policy, &force)?;
    }

    #[test]
    fn no_force_gets_a_promotion_past_a_failing_state_gate(
        (target, mut observed, policy, force) in case(),
        how in any::<u8>(),
        everything in any::<bool>(),
    ) {
        with_failing_state(&mut observed, &target, how);
        let force = if everything { GateName::ALL.to_vec() } else { force };
        let d = evaluate(&target, &observed, &policy, now(), &force);
        prop_assert!(d.promote.is_none(), "promoted with state failing: {}", d.reason);
        prop_assert_eq!(verdict(&d, GateName::State), Some(Verdict::Block));
        prop_assert!(!d.forced.contains(&GateName::State));
        gates_hold(&target, &observed, &policy, &force)?;
    }

    #[test]
    fn a_command_forcing_state_is_rejected_and_no_manual_intent_ever_forces_it(
        command in promote_command(),
    ) {
        let PromoterCommand::Promote { target_region, dry_run, confirm, force, .. } = &command else {
            unreachable!("promote_command makes promotions")
        };
        let cfg = promoter_cfg();
        let member = cfg.datastore.members.iter().any(|m| m.region.as_str() == target_region);
        let result = triage(&Trigger::Command(command.clone()), &cfg);
        if force.contains(&GateName::State) {
            prop_assert!(result.is_err(), "forcing state was accepted: {result:?}");
            if member {
                prop_assert!(matches!(result, Err(CommandRejected::BadForce(_))), "{result:?}");
            }
        }
        if let Ok(PromoterTriage::Act(PromoteIntent::Manual { force: intended, dry_run: d, .. })) = &result {
            prop_assert!(!intended.contains(&GateName::State));
            prop_assert_eq!(intended, force);
            prop_assert_eq!(d, dry_run);
            if !dry_run || !force.is_empty() {
                prop_assert_eq!(confirm.as_deref(), Some("ldgnf-sessions"), "changed without confirm");
            }
        }
        // And the same command, typed as JSON into the console, gets the same answer.
        let raw = serde_json::to_string(&command).expect("serialises");
        let parsed = crate::intake::parse_event::<PromoterCommand>(&raw).expect("a serialised command parses");
        prop_assert_eq!(&triage(&parsed[0], &cfg), &result);
    }
}

/// The generated cases reach promotions with and without forcing, and a block by every gate.
#[test]
fn the_generated_gate_cases_reach_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut promoted_plain = 0;
    let mut promoted_forced = 0;
    let mut blocked_by: BTreeMap<GateName, usize> = BTreeMap::new();
    for _ in 0..2048 {
        let (target, observed, policy, force) = strategy.new_tree(&mut runner).expect("generates").current();
        let d = evaluate(&target, &observed, &policy, now(), &force);
        match (&d.promote, d.forced.is_empty()) {
            (Some(_), true) => promoted_plain += 1,
            (Some(_), false) => promoted_forced += 1,
            (None, _) => {}
        }
        for g in d.gates.iter().filter(|g| g.verdict == Verdict::Block) {
            *blocked_by.entry(g.name).or_default() += 1;
        }
    }
    assert!(promoted_plain >= 5, "{promoted_plain} plain promotions");
    assert!(promoted_forced >= 5, "{promoted_forced} forced promotions");
    for gate in GateName::ALL {
        assert!(
            blocked_by.get(&gate).is_some_and(|n| *n >= 10),
            "{gate:?} blocks too rarely: {blocked_by:?}"
        );
    }
}
