//! The traffic switch's safety rule, over random observations: writers only ever move to the
//! member described as PRIMARY in an `available` datastore, as configured for it, and carrying out
//! a plan then deciding again with the same intent changes nothing more.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::config::{MemberConfig, Routing, SwitchConfig};
use crate::ids::{Region, ReplicationGroupId};
use crate::observed::{ControlsView, DatastoreView, MemberView, Observed, RecordView, Role};
use crate::switch::{Intent, Plan, decide};

/// Candidate members: a configuration takes two or three of them, observations draw from all four,
/// so some observed primaries are not configured.
const POOL: [(&str, &str, &str); 4] = [
    (
        "us-west-1",
        "sessions-usw1",
        "master.sessions-usw1.abc.usw1.cache.amazonaws.com",
    ),
    (
        "us-west-2",
        "sessions-usw2",
        "master.sessions-usw2.abc.usw2.cache.amazonaws.com",
    ),
    (
        "eu-west-1",
        "sessions-euw1",
        "master.sessions-euw1.abc.euw1.cache.amazonaws.com",
    ),
    (
        "ap-south-1",
        "sessions-aps1",
        "master.sessions-aps1.abc.aps1.cache.amazonaws.com",
    ),
];

const DATASTORE: &str = "ldgnf-sessions";

fn control_arn(group: &str) -> String {
    format!("arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/{group}")
}

/// A valid configuration of two or three pool members, in either routing mode.
fn config() -> impl Strategy<Value = SwitchConfig> {
    (
        prop::sample::subsequence((0..POOL.len()).collect::<Vec<_>>(), 2..=3).prop_shuffle(),
        any::<bool>(),
        prop_oneof![Just(30i64), 1..=86_400i64],
        any::<bool>(),
    )
        .prop_map(|(members, arc, ttl, positional)| {
            let mut vars: HashMap<&str, String> = HashMap::from([
                ("GLOBAL_DATASTORE_ID", DATASTORE.to_owned()),
                (
                    "MEMBERS",
                    members
                        .iter()
                        .map(|&i| format!("{}:{}:{}", POOL[i].0, POOL[i].1, POOL[i].2))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("AWS_REGION", "us-west-2".to_owned()),
                ("RECORD_TTL", ttl.to_string()),
            ]);
            if arc {
                vars.insert("ROUTING_MODE", "arc".to_owned());
                vars.insert(
                    "ARC_ENDPOINTS",
                    "us-east-1=https://a.example/v1,us-west-2=https://b.example/v1".to_owned(),
                );
                // Both spellings the configuration accepts: bare ARNs in MEMBERS order, or pairs
                // listed in another order.
                let controls: Vec<String> = if positional {
                    members.iter().map(|&i| control_arn(POOL[i].1)).collect()
                } else {
                    members
                        .iter()
                        .rev()
                        .map(|&i| format!("{}={}", POOL[i].0, control_arn(POOL[i].1)))
                        .collect()
                };
                vars.insert("ARC_CONTROLS", controls.join(","));
            } else {
                vars.insert("HOSTED_ZONE_ID", "Z0SESSIONS".to_owned());
                vars.insert("RECORD_NAME", "writer.sessions.internal".to_owned());
            }
            SwitchConfig::from_lookup(&|k| vars.get(k).cloned())
                .expect("the generated configuration is valid")
        })
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        3 => Just(Role::Primary),
        3 => Just(Role::Secondary),
        2 => prop::sample::select(&["primary", "Primary", " PRIMARY", "PRIMARY-ELECT", "secondary", ""][..])
            .prop_map(Role::parse),
        1 => any::<String>().prop_map(|s| Role::parse(&s)),
    ]
}

fn random_region() -> impl Strategy<Value = String> {
    "[a-z]{2}-[a-z]{4,9}-[1-9]"
}

/// A member as described: usually a pool member where it belongs, sometimes in another Region,
/// under another spelling, or a group nobody configured.
fn member_view(configured: Vec<usize>) -> impl Strategy<Value = MemberView> {
    (
        prop_oneof![3 => prop::sample::select(configured), 1 => 0..POOL.len()],
        0..9u8,
        "[a-z][a-z0-9-]{0,12}",
        0..7u8,
        0..POOL.len(),
        random_region(),
        role(),
        prop_oneof![
            4 => Just("associated".to_owned()),
            1 => "[a-z-]{0,14}",
        ],
    )
        .prop_map(
            |(i, group_pick, random_group, region_pick, other, random_region, role, status)| {
                let group = match group_pick {
                    0..=6 => POOL[i].1.to_owned(),
                    7 => POOL[i].1.to_ascii_uppercase(),
                    _ => random_group,
                };
                let region = match region_pick {
                    0..=4 => POOL[i].0.to_owned(),
                    5 => POOL[other].0.to_owned(),
                    _ => random_region,
                };
                MemberView {
                    group,
                    region,
                    role,
                    status,
                }
            },
        )
}

fn datastore_status() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just("available".to_owned()),
        1 => Just("Available".to_owned()),
        2 => Just("modifying".to_owned()),
        1 => prop::sample::select(&["creating", "deleting", "primary-only", " available", ""][..])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn record() -> impl Strategy<Value = Option<RecordView>> {
    let record_type = prop_oneof![
        6 => Just("CNAME".to_owned()),
        1 => Just("cname".to_owned()),
        1 => prop::sample::select(&["A", "AAAA", "TXT"][..]).prop_map(str::to_owned),
        1 => "[A-Z]{0,5}",
    ];
    let value = prop_oneof![
        1 => Just(None),
        6 => (0..POOL.len()).prop_map(|i| Some(POOL[i].2.to_owned())),
        1 => (0..POOL.len()).prop_map(|i| Some(POOL[i].2.to_ascii_uppercase())),
        1 => (0..POOL.len()).prop_map(|i| Some(format!("{}.", POOL[i].2))),
        1 => "[a-z0-9.-]{1,30}".prop_map(Some),
    ];
    let ttl = prop_oneof![
        Just(None),
        (1..=86_400i64).prop_map(Some),
        any::<i64>().prop_map(Some)
    ];
    prop::option::weighted(
        0.85,
        (record_type, value, ttl, prop::bool::weighted(0.15)).prop_map(
            |(record_type, value, ttl, has_routing_policy)| RecordView {
                record_type,
                value,
                ttl,
                has_routing_policy,
            },
        ),
    )
}

/// Routing-control states as read: each pool member's control On, Off or missing, sometimes an
/// extra control, sometimes nothing read at all.
fn controls() -> impl Strategy<Value = Option<ControlsView>> {
    let state = prop_oneof![Just(None), Just(Some(true)), Just(Some(false))];
    prop::option::weighted(
        0.85,
        (
            prop::collection::vec(state, POOL.len()),
            prop::option::of(("arn:[a-z:/-]{0,20}", any::<bool>())),
            prop::collection::vec("[a-z0-9-]{0,12}", 0..2),
        )
            .prop_map(|(states, extra, failed)| {
                let mut map: BTreeMap<String, bool> = states
                    .into_iter()
                    .zip(POOL)
                    .filter_map(|(s, (_, group, _))| s.map(|on| (control_arn(group), on)))
                    .collect();
                if let Some((arn, on)) = extra {
                    map.entry(arn).or_insert(on);
                }
                ControlsView {
                    states: map,
                    read_from: "us-east-1".to_owned(),
                    failed,
                }
            }),
    )
}

/// What AWS describes, its members mostly drawn from the configured ones.
fn observed(cfg: &SwitchConfig) -> impl Strategy<Value = Observed> + use<> {
    let configured: Vec<usize> = cfg
        .datastore
        .members
        .iter()
        .filter_map(|m| POOL.iter().position(|(_, g, _)| *g == m.group.as_str()))
        .collect();
    (
        datastore_status(),
        prop::collection::vec(member_view(configured), 1..=3),
        // Mostly one PRIMARY, as a settled datastore has; otherwise the roles as drawn.
        prop::option::weighted(0.85, any::<prop::sample::Index>()),
        record(),
        controls(),
    )
        .prop_map(|(status, mut members, one_primary, record, controls)| {
            if let Some(at) = one_primary {
                let at = at.index(members.len());
                for (i, m) in members.iter_mut().enumerate() {
                    if i == at {
                        m.role = Role::Primary;
                    } else if m.role == Role::Primary {
                        m.role = Role::Secondary;
                    }
                }
            }
            Observed {
                datastore: DatastoreView {
                    id: DATASTORE.to_owned(),
                    status,
                    members,
                },
                record,
                controls,
            }
        })
}

fn region(s: &str) -> Region {
    Region::parse(s).expect("pool and generated Regions are valid")
}

/// Every intent `decide` is given: promotions of any member (named consistently or not), alarms,
/// manual switches to any Region (dry runs, overrides) and status. Members and Regions are drawn
/// from those described half of the time, so that intents often name the primary.
fn intent_for(observed: &Observed) -> impl Strategy<Value = Intent> + use<> {
    let pool: Vec<(ReplicationGroupId, Region)> = POOL
        .iter()
        .map(|(r, g, _)| (ReplicationGroupId::parse(g).expect("pool group"), region(r)))
        .collect();
    let described: Vec<(ReplicationGroupId, Region)> = observed
        .datastore
        .members
        .iter()
        .filter_map(|m| {
            Some((
                ReplicationGroupId::parse(&m.group).ok()?,
                Region::parse(&m.region).ok()?,
            ))
        })
        .collect();
    let named = if described.is_empty() {
        pool.clone()
    } else {
        described
    };
    let member = prop_oneof![prop::sample::select(named), prop::sample::select(pool.clone()),];
    let target = prop_oneof![
        4 => member.clone().prop_map(|(_, r)| r),
        1 => random_region().prop_map(|r| region(&r)),
    ];
    prop_oneof![
        3 => (member, prop::sample::select(pool), any::<bool>()).prop_map(|((group, own), (_, other), consistent)| {
            Intent::FollowPromotion {
                group,
                region: if consistent { own } else { other },
            }
        }),
        2 => "[a-z ]{0,20}".prop_map(|because| Intent::FollowPrimary { because }),
        1 => "[0-9TZ:-]{0,20}".prop_map(|scheduled_at| Intent::Reconcile { scheduled_at }),
        4 => (
            target,
            any::<bool>(),
            "[A-Z0-9 -]{0,12}",
            prop::collection::vec(
                prop::sample::select(&[
                    "arn:aws:route53-recovery-control::123456789012:controlpanel/p/safetyrule/one",
                    "arn:aws:route53-recovery-control::123456789012:controlpanel/p/safetyrule/two",
                ][..])
                .prop_map(str::to_owned),
                0..2,
            ),
        )
            .prop_map(|(target, dry_run, reason, override_safety_rules)| Intent::ManualSwitch {
                target,
                dry_run,
                reason,
                override_safety_rules,
            }),
        1 => Just(Intent::Status),
        1 => Just(Intent::Preflight),
    ]
}

/// A configuration, an observation and an intent.
fn case() -> impl Strategy<Value = (SwitchConfig, Observed, Intent)> {
    config()
        .prop_flat_map(|cfg| {
            let observed = observed(&cfg);
            (Just(cfg), observed)
        })
        .prop_flat_map(|(cfg, observed)| {
            let intent = intent_for(&observed);
            (Just(cfg), Just(observed), intent)
        })
}

/// The intent as an operator who already rehearsed it would give it again: for real.
fn for_real(intent: &Intent) -> Intent {
    match intent {
        Intent::ManualSwitch {
            target,
            reason,
            override_safety_rules,
            ..
        } => Intent::ManualSwitch {
            target: target.clone(),
            dry_run: false,
            reason: reason.clone(),
            override_safety_rules: override_safety_rules.clone(),
        },
        other => other.clone(),
    }
}

/// What AWS would describe once the plan was carried out, or `None` for a plan that changes nothing.
fn carried_out(plan: &Plan, observed: &Observed) -> Option<Observed> {
    let mut after = observed.clone();
    match plan {
        Plan::Switch { change, .. } => {
            after.record = Some(RecordView {
                record_type: "CNAME".to_owned(),
                value: Some(change.to.to_string()),
                ttl: Some(change.ttl),
                has_routing_policy: false,
            });
        }
        Plan::Flip { flip, .. } => {
            let controls = after.controls.get_or_insert_with(|| ControlsView {
                states: BTreeMap::new(),
                read_from: "us-east-1".to_owned(),
                failed: Vec::new(),
            });
            for (arn, _, on) in &flip.entries {
                controls.states.insert(arn.clone(), *on);
            }
        }
        Plan::Wait { .. } | Plan::NoOp { .. } | Plan::Refuse { .. } => return None,
    }
    Some(after)
}

/// The configured member that is the one PRIMARY of an available datastore, in the Region AWS
/// reports it in; `Err` says why there is none (and so which plan is due).
fn the_primary<'a>(observed: &Observed, cfg: &'a SwitchConfig) -> Result<&'a MemberConfig, &'static str> {
    let ds = &observed.datastore;
    if !ds.status.eq_ignore_ascii_case("available") {
        return Err("wait");
    }
    let primaries: Vec<&MemberView> = ds.members.iter().filter(|m| m.role == Role::Primary).collect();
    let [primary] = primaries.as_slice() else {
        return Err("wait");
    };
    cfg.datastore
        .members
        .iter()
        .find(|m| m.group.as_str() == primary.group && m.region.as_str() == primary.region)
        .ok_or("refuse")
}

/// Whether the intent asked only for a report.
fn asked_dry_run(intent: &Intent) -> bool {
    matches!(intent, Intent::ManualSwitch { dry_run: true, .. })
}

fn targets_only_the_primary(
    intent: &Intent,
    observed: &Observed,
    cfg: &SwitchConfig,
    plan: &Plan,
) -> Result<(), TestCaseError> {
    let member = match the_primary(observed, cfg) {
        // A reconcile never waits on (nor acts on) a changing datastore.
        Err("wait") if matches!(intent, Intent::Reconcile { .. }) => {
            prop_assert_eq!(plan.kind(), "no_op", "{}", plan.reason());
            return Ok(());
        }
        Err(due) => {
            prop_assert_eq!(plan.kind(), due, "{}", plan.reason());
            return Ok(());
        }
        Ok(member) => member,
    };
    prop_assert!(
        !matches!(plan, Plan::Wait { .. }),
        "waits on a settled datastore: {plan:?}"
    );
    let (group, region) = match plan {
        Plan::Switch { change, .. } => {
            let Routing::Dns(dns) = &cfg.routing else {
                return Err(TestCaseError::fail(format!(
                    "a record change in arc mode: {plan:?}"
                )));
            };
            prop_assert_eq!(&change.to, &member.writer_endpoint);
            prop_assert_eq!(change.ttl, dns.ttl);
            // The change is conditional on what the record holds now.
            prop_assert_eq!(
                &change.from,
                &observed.record.as_ref().and_then(|r| r.value.clone())
            );
            prop_assert_eq!(change.dry_run, asked_dry_run(intent));
            (&change.group, &change.region)
        }
        Plan::Flip { flip, .. } => {
            let Routing::Arc(arc) = &cfg.routing else {
                return Err(TestCaseError::fail(format!(
                    "a control flip in dns mode: {plan:?}"
                )));
            };
            prop_assert_eq!(&flip.on, &member.region);
            // Every configured control, in order, and only the primary's On.
            let expected: Vec<(String, Region, bool)> = arc
                .controls
                .iter()
                .map(|(r, arn)| (arn.clone(), r.clone(), r == &member.region))
                .collect();
            prop_assert_eq!(&flip.entries, &expected);
            prop_assert_eq!(flip.entries.iter().filter(|(_, _, on)| *on).count(), 1);
            let overrides = match intent {
                Intent::ManualSwitch {
                    override_safety_rules,
                    ..
                } => override_safety_rules.clone(),
                _ => Vec::new(),
            };
            prop_assert_eq!(
                &flip.override_safety_rules,
                &overrides,
                "overrides only from an operator"
            );
            prop_assert_eq!(flip.dry_run, asked_dry_run(intent));
            (&flip.group, &flip.on)
        }
        Plan::Wait { .. } | Plan::NoOp { .. } | Plan::Refuse { .. } => return Ok(()),
    };
    prop_assert_eq!(group, &member.group);
    prop_assert_eq!(region, &member.region);
    // And only where the intent allowed: never for a report, a stale promotion or another Region.
    match intent {
        Intent::Status | Intent::Preflight => {
            prop_assert!(false, "a read-only command moved writers: {plan:?}")
        }
        Intent::FollowPromotion { group: promoted, .. } => prop_assert_eq!(promoted, group),
        Intent::ManualSwitch { target, .. } => prop_assert_eq!(target, region),
        Intent::FollowPrimary { .. } | Intent::Reconcile { .. } => {}
    }
    Ok(())
}

fn check(cfg: &SwitchConfig, observed: &Observed, intent: &Intent) -> Result<(), TestCaseError> {
    let plan = decide(intent, observed, cfg);
    targets_only_the_primary(intent, observed, cfg, &plan)?;
    if let Some(after) = carried_out(&plan, observed) {
        let again = decide(&for_real(intent), &after, cfg);
        prop_assert!(
            matches!(again, Plan::NoOp { .. }),
            "after carrying out {plan:?}, decided {again:?}"
        );
    }
    Ok(())
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
    fn decide_sends_writers_only_to_the_configured_primary_and_a_carried_out_plan_is_then_a_no_op(
        (cfg, observed, intent) in case(),
    ) {
        check(&cfg, &observed, &intent)?;
    }
}

/// The property is only as good as the cases reaching every plan; this fails when the generators
/// drift into, say, never producing a single primary.
#[test]
fn the_generated_cases_reach_every_kind_of_plan_in_both_modes() {
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..1024 {
        let (cfg, observed, intent) = strategy.new_tree(&mut runner).expect("generates").current();
        *seen.entry(decide(&intent, &observed, &cfg).kind()).or_default() += 1;
    }
    for kind in ["wait", "no_op", "refuse", "switch", "flip"] {
        assert!(
            seen.get(kind).is_some_and(|n| *n >= 20),
            "{kind} reached too rarely: {seen:?}"
        );
    }
}
