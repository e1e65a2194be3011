//! Intake never panics: whatever the payload, it is taken in as 1 to `MAX_RECORDS` triggers or
//! refused with an error that says what was wrong. Release builds abort on a panic, so a panic in
//! intake would be a crashed invocation with no audit record.

use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::strategies::{
    field, field_w, json, key, kind_of, mostly, object, of_kind, one_of, sometimes, string, text,
};
use crate::intake::{IntakeError, MAX_RECORDS, PROMOTED_AS_PRIMARY, Trigger, parse_event};
use crate::promote::PromoterCommand;
use crate::switch::SwitchCommand;

/// Every file under `events/`, with the command type of the function it is for.
const SWITCH_FIXTURES: &[(&str, &str)] = &[
    (
        "alarm-direct-action.json",
        include_str!("../../../../events/traffic-switch/alarm-direct-action.json"),
    ),
    (
        "alarm-eventbridge-ok.json",
        include_str!("../../../../events/traffic-switch/alarm-eventbridge-ok.json"),
    ),
    (
        "alarm-eventbridge.json",
        include_str!("../../../../events/traffic-switch/alarm-eventbridge.json"),
    ),
    (
        "alarm-sns.json",
        include_str!("../../../../events/traffic-switch/alarm-sns.json"),
    ),
    (
        "elasticache-other-event.json",
        include_str!("../../../../events/traffic-switch/elasticache-other-event.json"),
    ),
    (
        "invalid-switch-unconfirmed.json",
        include_str!("../../../../events/traffic-switch/invalid-switch-unconfirmed.json"),
    ),
    (
        "invalid-unknown-shape.json",
        include_str!("../../../../events/traffic-switch/invalid-unknown-shape.json"),
    ),
    (
        "manual-preflight.json",
        include_str!("../../../../events/traffic-switch/manual-preflight.json"),
    ),
    (
        "manual-status.json",
        include_str!("../../../../events/traffic-switch/manual-status.json"),
    ),
    (
        "manual-switch-break-glass.json",
        include_str!("../../../../events/traffic-switch/manual-switch-break-glass.json"),
    ),
    (
        "manual-switch-dry-run.json",
        include_str!("../../../../events/traffic-switch/manual-switch-dry-run.json"),
    ),
    (
        "manual-switch.json",
        include_str!("../../../../events/traffic-switch/manual-switch.json"),
    ),
    (
        "promotion-duplicate.json",
        include_str!("../../../../events/traffic-switch/promotion-duplicate.json"),
    ),
    (
        "promotion-other-group.json",
        include_str!("../../../../events/traffic-switch/promotion-other-group.json"),
    ),
    (
        "promotion-plain-text-node-id.json",
        include_str!("../../../../events/traffic-switch/promotion-plain-text-node-id.json"),
    ),
    (
        "promotion-stale.json",
        include_str!("../../../../events/traffic-switch/promotion-stale.json"),
    ),
    (
        "promotion-this-region.json",
        include_str!("../../../../events/traffic-switch/promotion-this-region.json"),
    ),
    (
        "region-switch-step.json",
        include_str!("../../../../events/traffic-switch/region-switch-step.json"),
    ),
    (
        "schedule.json",
        include_str!("../../../../events/traffic-switch/schedule.json"),
    ),
];

const PROMOTER_FIXTURES: &[(&str, &str)] = &[
    (
        "alarm-writes-failing.json",
        include_str!("../../../../events/promoter/alarm-writes-failing.json"),
    ),
    (
        "alarm-writes-ok.json",
        include_str!("../../../../events/promoter/alarm-writes-ok.json"),
    ),
    (
        "invalid-promote-force-state.json",
        include_str!("../../../../events/promoter/invalid-promote-force-state.json"),
    ),
    (
        "manual-evaluate.json",
        include_str!("../../../../events/promoter/manual-evaluate.json"),
    ),
    (
        "manual-preflight.json",
        include_str!("../../../../events/promoter/manual-preflight.json"),
    ),
    (
        "manual-promote-dry-run.json",
        include_str!("../../../../events/promoter/manual-promote-dry-run.json"),
    ),
    (
        "manual-promote-force.json",
        include_str!("../../../../events/promoter/manual-promote-force.json"),
    ),
    (
        "manual-promote.json",
        include_str!("../../../../events/promoter/manual-promote.json"),
    ),
    (
        "region-switch-step.json",
        include_str!("../../../../events/promoter/region-switch-step.json"),
    ),
    (
        "schedule.json",
        include_str!("../../../../events/promoter/schedule.json"),
    ),
];

/// The one fixture that is meant to be refused at intake (the rest are refused, if at all, at triage).
const REFUSED_AT_INTAKE: &str = "invalid-unknown-shape.json";

fn all_fixtures() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    SWITCH_FIXTURES.iter().chain(PROMOTER_FIXTURES)
}

// ---- what "taken in or refused with a named reason" means ----

/// The error says what was wrong: a non-empty message whose variant carries its evidence.
fn names_what_was_wrong(e: &IntakeError) -> Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert!(!message.trim().is_empty(), "{e:?} has an empty message");
    let evidence = match e {
        IntakeError::TooLarge { bytes, max } => bytes > max,
        IntakeError::NotJson(inner) => !inner.to_string().trim().is_empty(),
        IntakeError::NotAnObject(kind) => !kind.is_empty(),
        IntakeError::UnknownShape { keys } => !keys.trim().is_empty(),
        IntakeError::TooManyRecords { count, max } => count > max,
        IntakeError::NoRecords => true,
        IntakeError::SnsRecord { index, problem } => *index < MAX_RECORDS && !problem.trim().is_empty(),
        IntakeError::Alarm(problem) | IntakeError::Command(problem) => !problem.trim().is_empty(),
    };
    prop_assert!(evidence, "{e:?} names nothing: {message}");
    Ok(())
}

/// Parses `raw` as `C`'s function would; returns the triggers, or checks the error names its cause.
fn taken_in_or_named<C: DeserializeOwned + Debug>(
    raw: &str,
) -> Result<Option<Vec<Trigger<C>>>, TestCaseError> {
    match parse_event::<C>(raw) {
        Ok(triggers) => {
            prop_assert!(
                (1..=MAX_RECORDS).contains(&triggers.len()),
                "{} triggers from {raw:.200}",
                triggers.len()
            );
            Ok(Some(triggers))
        }
        Err(e) => {
            names_what_was_wrong(&e)?;
            Ok(None)
        }
    }
}

/// Both functions' intakes take `raw` in or name what is wrong with it.
fn both_functions(raw: &str) -> Result<(), TestCaseError> {
    taken_in_or_named::<SwitchCommand>(raw)?;
    taken_in_or_named::<PromoterCommand>(raw)?;
    Ok(())
}

// ---- near-miss events ----

const VALID_ARNS: &[&str] = &[
    "arn:aws:cloudwatch:us-west-2:123456789012:alarm:writes-failing",
    "arn:aws:cloudwatch:eu-west-1:1:alarm:x",
];

const INVALID_ARNS: &[&str] = &[
    "arn:aws:cloudwatch:REGION:1:alarm:x",
    "arn:aws:cloudwatch",
    "arn:aws:sns:us-west-2:123456789012:topic",
    "not-an-arn",
];

fn alarm_arn() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(VALID_ARNS).prop_map(Value::from),
        2 => prop::sample::select(INVALID_ARNS).prop_map(Value::from),
        1 => "arn:aws:cloudwatch:[a-zA-Z0-9-]{0,14}:[0-9]{0,12}:alarm:.{0,10}".prop_map(Value::String),
    ]
    .boxed()
}

fn alarm_state() -> BoxedStrategy<Value> {
    mostly(
        &["ALARM", "OK", "INSUFFICIENT_DATA"],
        &["alarm", "Alarm", "SIDEWAYS"],
    )
}

fn time() -> BoxedStrategy<Value> {
    one_of(&[
        "2026-11-23T10:00:05.123Z",
        "2026-11-23T10:00:01.456+0000",
        "yesterday",
    ])
}

/// What an SNS record's `Message` may hold: plain-text or JSON ElastiCache notifications, alarm
/// messages, any JSON, any text.
fn sns_message() -> BoxedStrategy<String> {
    let event = || {
        prop_oneof![
            4 => Just(PROMOTED_AS_PRIMARY.to_owned()),
            1 => Just("SnapshotComplete".to_owned()),
            1 => "[A-Za-z0-9 :]{0,12}",
        ]
    };
    let source = || {
        prop_oneof![
            4 => prop::sample::select(&["sessions-usw2", "sessions-usw2-0001-001", "SESSIONS-USW1"][..])
                .prop_map(str::to_owned),
            1 => "[a-z0-9_ -]{0,20}",
            1 => text(),
            1 => Just("a".repeat(300)),
        ]
    };
    let separator = prop_oneof![
        4 => prop::sample::select(&[" : ", ":", " :: "][..]),
        1 => prop::sample::select(&["", " - "][..]),
    ];
    let plain = (event(), separator, source(), any::<bool>()).prop_map(|(e, sep, src, pad)| {
        let m = format!("ElastiCache:{e}{sep}{src}");
        if pad { format!("  {m}\n") } else { m }
    });
    let notification = prop::collection::vec((event(), field(source().prop_map(Value::String))), 0..3)
        .prop_map(|entries| {
            let m: Map<String, Value> = entries
                .into_iter()
                .filter_map(|(e, v)| v.map(|v| (format!("ElastiCache:{e}"), v)))
                .collect();
            Value::Object(m).to_string()
        });
    let alarm = (
        field(one_of(&["writes-failing", ""])),
        field(alarm_arn()),
        field(alarm_state()),
        field(alarm_state()),
        field(time()),
        field(one_of(&["US West (Oregon)"])),
    )
        .prop_map(|(name, arn, new, old, at, region)| {
            object([
                ("AlarmName", name),
                ("AlarmArn", arn),
                ("NewStateValue", new),
                ("OldStateValue", old),
                ("StateChangeTime", at),
                ("Region", region),
            ])
            .to_string()
        });
    prop_oneof![
        3 => plain,
        3 => notification,
        3 => alarm,
        1 => json().prop_map(|v| v.to_string()),
        1 => string(),
    ]
    .boxed()
}

fn sns_record() -> BoxedStrategy<Value> {
    // Many fields, each needed: mostly right, so that some records parse.
    let f = |good: BoxedStrategy<Value>| field_w(60, good);
    let sns = (
        f(one_of(&["Notification"])),
        f(one_of(&["m-1", ""])),
        f(one_of(&["arn:aws:sns:us-west-2:123456789012:elasticache-events"])),
        f(prop_oneof![Just(Value::Null), one_of(&["ElastiCache Notification"])].boxed()),
        f(sns_message().prop_map(Value::String).boxed()),
        f(prop_oneof![
            8 => Just(Value::from("2026-11-23T10:00:05.123Z")),
            1 => time(),
        ]
        .boxed()),
        f(one_of(&["1"])),
        f(one_of(&["EXAMPLE"])),
        f(one_of(&["https://sns.example/cert.pem"])),
        f(one_of(&["https://sns.example/unsubscribe"])),
        f(Just(Value::Object(Map::new())).boxed()),
    )
        .prop_map(
            |(kind, id, topic, subject, message, at, version, signature, cert, unsubscribe, attributes)| {
                object([
                    ("Type", kind),
                    ("MessageId", id),
                    ("TopicArn", topic),
                    ("Subject", subject),
                    ("Message", message),
                    ("Timestamp", at),
                    ("SignatureVersion", version),
                    ("Signature", signature),
                    ("SigningCertURL", cert),
                    ("UnsubscribeURL", unsubscribe),
                    ("MessageAttributes", attributes),
                ])
            },
        );
    (
        f(prop_oneof![8 => Just(Value::from("aws:sns")), 1 => one_of(&["aws:sqs"])].boxed()),
        f(one_of(&["1.0"])),
        f(one_of(&[
            "arn:aws:sns:us-west-2:123456789012:elasticache-events:sub",
        ])),
        f(sns.boxed()),
    )
        .prop_map(|(source, version, subscription, sns)| {
            object([
                ("EventSource", source),
                ("EventVersion", version),
                ("EventSubscriptionArn", subscription),
                ("Sns", sns),
            ])
        })
        .boxed()
}

/// An SNS event, usually of one record, sometimes of none or of too many, sometimes with an extra key.
fn sns_event() -> BoxedStrategy<Value> {
    let records = prop_oneof![
        4 => prop::collection::vec(sns_record(), 1..=1),
        1 => prop::collection::vec(sns_record(), 0..=MAX_RECORDS + 2),
    ]
    .prop_map(Value::Array);
    (field(records), prop::option::of((key(), json())))
        .prop_map(|(records, extra)| {
            let mut event = object([("Records", records)]);
            if let (Value::Object(m), Some((k, v))) = (&mut event, extra) {
                m.entry(k).or_insert(v);
            }
            event
        })
        .boxed()
}

fn alarm_detail() -> BoxedStrategy<Value> {
    let state = || {
        (
            field(alarm_state()),
            field(one_of(&["Threshold Crossed"])),
            field(time()),
        )
            .prop_map(|(value, reason, at)| object([("value", value), ("reason", reason), ("timestamp", at)]))
    };
    (
        field(one_of(&["writes-failing", "primary-unreachable"])),
        field(state().boxed()),
        field(state().boxed()),
        field(json()),
    )
        .prop_map(|(name, state, previous, configuration)| {
            object([
                ("alarmName", name),
                ("state", state),
                ("previousState", previous),
                ("configuration", configuration),
            ])
        })
        .boxed()
}

/// CloudWatch alarm events as EventBridge and an alarm's direct action deliver them, and schedules.
fn alarm_event() -> BoxedStrategy<Value> {
    let kind = prop_oneof![
        3 => Just((
            Some(Value::from("CloudWatch Alarm State Change")),
            Some(Value::from("aws.cloudwatch")),
        )),
        1 => Just((Some(Value::from("Scheduled Event")), Some(Value::from("aws.events")))),
        2 => (
            field(mostly(
                &["CloudWatch Alarm State Change", "Scheduled Event"],
                &["EC2 Instance State-change Notification", "CloudWatch Alarm State change"],
            )),
            field(mostly(&["aws.cloudwatch", "aws.events"], &["my.app", "aws.cloudwatch "])),
        ),
    ];
    let eventbridge = (
        kind,
        field(
            prop::collection::vec(alarm_arn(), 1..=2)
                .prop_map(Value::Array)
                .boxed(),
        ),
        field(alarm_detail()),
        field(time()),
    )
        .prop_map(|((detail_type, source), resources, detail, at)| {
            object([
                ("version", Some(Value::from("0"))),
                ("detail-type", detail_type),
                ("source", source),
                ("resources", resources),
                ("detail", detail),
                ("time", at),
            ])
        });
    let direct = (
        field(mostly(&["aws.cloudwatch"], &["aws.events"])),
        field(alarm_arn()),
        field(alarm_detail()),
        field(one_of(&["us-west-2"])),
    )
        .prop_map(|(source, arn, data, region)| {
            object([
                ("source", source),
                ("alarmArn", arn),
                ("alarmData", data),
                ("region", region),
            ])
        });
    prop_oneof![eventbridge, direct].boxed()
}

/// Commands of both functions: the fields of the command named, each now and then missing or of
/// the wrong type, sometimes a field of another command or an unknown one.
fn command() -> BoxedStrategy<Value> {
    const FIELDS: [&str; 6] = [
        "target_region",
        "dry_run",
        "confirm",
        "reason",
        "force",
        "override_safety_rules",
    ];
    let list = |items: &'static [&'static str]| {
        prop::collection::vec(one_of(items), 0..4)
            .prop_map(Value::Array)
            .boxed()
    };
    let name = prop_oneof![
        2 => prop::sample::select(&["status", "evaluate"][..]),
        4 => prop::sample::select(&["switch", "promote"][..]),
        1 => prop::sample::select(&["Switch", "reboot", ""][..]),
    ];
    (
        field(name.prop_map(Value::from)),
        field(one_of(&[
            "us-west-2",
            "us-west-1",
            "eu-west-1",
            "US West (Oregon)",
            "us-west",
        ])),
        sometimes(any::<bool>().prop_map(Value::Bool)),
        sometimes(one_of(&["ldgnf-sessions", "sessions"])),
        sometimes(one_of(&["INC-1", "  "])),
        sometimes(list(&[
            "state",
            "signal",
            "vantage",
            "data_loss",
            "cooldown",
            "State",
        ])),
        sometimes(list(&[
            "arn:aws:route53-recovery-control::123456789012:controlpanel/p/safetyrule/r",
            "arn:aws:s3:::bucket",
        ])),
        prop::option::weighted(0.15, prop::sample::select(&FIELDS[..])),
        prop::option::weighted(0.15, (key(), json())),
    )
        .prop_map(
            |(command, region, dry_run, confirm, reason, force, overrides, stray, extra)| {
                let own: &[&str] = match command.as_ref().and_then(Value::as_str) {
                    Some("status" | "evaluate") => &[],
                    Some("switch") => &[
                        "target_region",
                        "dry_run",
                        "confirm",
                        "reason",
                        "override_safety_rules",
                    ],
                    Some("promote") => &["target_region", "dry_run", "confirm", "reason", "force"],
                    _ => &FIELDS,
                };
                let kept = |name: &str, v: Option<Value>| {
                    (own.contains(&name) || stray == Some(name))
                        .then_some(v)
                        .flatten()
                };
                let mut v = object([
                    ("command", command.clone()),
                    ("target_region", kept("target_region", region)),
                    ("dry_run", kept("dry_run", dry_run)),
                    ("confirm", kept("confirm", confirm)),
                    ("reason", kept("reason", reason)),
                    ("force", kept("force", force)),
                    ("override_safety_rules", kept("override_safety_rules", overrides)),
                ]);
                if let (Value::Object(m), Some((k, x))) = (&mut v, extra) {
                    m.entry(k).or_insert(x);
                }
                v
            },
        )
        .boxed()
}

/// Whether `v` has the key `key` at any depth (`key` cut short with `…`: a key it starts).
fn has_key(v: &Value, key: &str) -> bool {
    let matches = |k: &str| match key.strip_suffix('…') {
        Some(head) => k.starts_with(head),
        None => k == key,
    };
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| matches(k) || has_key(v, key)),
        Value::Array(items) => items.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

/// Region switch steps, the plan ARN right or not, nested a few levels down.
fn region_switch_step() -> BoxedStrategy<Value> {
    (
        field(prop_oneof![
            3 => one_of(&[
                "arn:aws:arc-region-switch::123456789012:plan/sessions:abc123",
                "arn:aws-us-gov:arc-region-switch::123456789012:plan/p",
            ]),
            1 => one_of(&[
                "arn:aws:arc-region-switch::1234:plan/x",
                "arn:aws:arc-region-switch::123456789012:plan/",
            ]),
        ]),
        field(one_of(&["2f6e1c9a"])),
        field(one_of(&["activate", "deactivate", "Activate", "postRecovery"])),
        field(one_of(&["us-west-2", "us-west-1", "US-WEST-2"])),
        field(one_of(&["us-west-1"])),
        sometimes(one_of(&["us-west-2", "us-west-1", "eu-west-1"])),
        sometimes(one_of(&[
            "activatingRegion",
            "activeRegion",
            "deactivatingRegion",
            "inactiveRegion",
        ])),
        // The walk looks four levels down: deeper is not a step.
        prop_oneof![4 => 0..=3usize, 1 => 4..=6usize],
        prop::option::weighted(0.3, (text(), json())),
    )
        .prop_map(
            |(plan, execution, action, activate, deactivate, target, run, depth, extra)| {
                let mut v = object([
                    ("planArn", plan),
                    ("executionId", execution),
                    ("action", action),
                    ("activateRegion", activate),
                    ("deactivateRegion", deactivate),
                    ("targetRegion", target),
                    ("regionToRun", run),
                ]);
                if let (Value::Object(m), Some((k, x))) = (&mut v, extra) {
                    m.entry(k).or_insert(x);
                }
                for _ in 0..depth {
                    v = object([("payload", Some(v))]);
                }
                v
            },
        )
        .boxed()
}

// ---- fixtures ----

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointer of every node of `v`, the root included.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, &format!("{at}/{i}"), out);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                pointers(item, &format!("{at}/{}", escape_pointer(k)), out);
            }
        }
        _ => {}
    }
}

/// How one node of a fixture is spoilt.
#[derive(Debug, Clone)]
enum Spoil {
    /// A value of another JSON type: `kind` steps round the six types, `seed` and `pick` fill it.
    Retype { kind: usize, seed: Value, pick: usize },
    /// Any text in its place, whatever it was.
    Text(String),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        2 => (0..5usize, json(), any::<usize>()).prop_map(|(kind, seed, pick)| Spoil::Retype { kind, seed, pick }),
        1 => text().prop_map(Spoil::Text),
    ]
}

/// Spoils one node of `v`, chosen by `which`; returns its JSON pointer.
fn spoil_one_node(v: &mut Value, which: Index, how: &Spoil) -> String {
    let mut all = Vec::new();
    pointers(v, "", &mut all);
    let pointer = which.get(&all).clone();
    if let Some(node) = v.pointer_mut(&pointer) {
        *node = match how {
            Spoil::Retype { kind, seed, pick } => of_kind((kind_of(node) + 1 + kind % 5) % 6, seed, *pick),
            Spoil::Text(t) => Value::String(t.clone()),
        };
    }
    pointer
}

fn fixture_value(raw: &str) -> Value {
    serde_json::from_str(raw).expect("every fixture is JSON")
}

/// The same outcome, compared by value: the triggers, or the error's message.
fn outcome<C: DeserializeOwned + Debug>(raw: &str) -> Result<Vec<Trigger<C>>, String> {
    parse_event::<C>(raw).map_err(|e| e.to_string())
}

fn round_trips_alike<C: DeserializeOwned + Debug + PartialEq>(name: &str, raw: &str) {
    let value = fixture_value(raw);
    let as_written = outcome::<C>(raw);
    for again in [
        value.to_string(),
        serde_json::to_string_pretty(&value).expect("serialises"),
    ] {
        assert_eq!(outcome::<C>(&again), as_written, "{name}");
    }
    if name == REFUSED_AT_INTAKE {
        assert!(
            as_written.is_err(),
            "{name} is meant to be refused: {as_written:?}"
        );
    } else {
        assert!(
            as_written.as_ref().is_ok_and(|t| t.len() == 1),
            "{name}: {as_written:?}"
        );
    }
}

#[test]
fn every_fixture_parses_the_same_after_a_json_round_trip() {
    for (name, raw) in SWITCH_FIXTURES {
        round_trips_alike::<SwitchCommand>(name, raw);
    }
    for (name, raw) in PROMOTER_FIXTURES {
        round_trips_alike::<PromoterCommand>(name, raw);
    }
}

#[test]
fn every_file_under_events_is_in_the_fixture_properties() {
    for (dir, listed) in [
        ("traffic-switch", SWITCH_FIXTURES),
        ("promoter", PROMOTER_FIXTURES),
    ] {
        let path = format!("{}/../../events/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut on_disk: Vec<String> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let names: Vec<String> = listed.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(on_disk, names, "events/{dir}");
    }
}

fn kind<C>(t: &Trigger<C>) -> &'static str {
    match t {
        Trigger::ElastiCache(_) => "elasticache",
        Trigger::Alarm(_) => "alarm",
        Trigger::Schedule { .. } => "schedule",
        Trigger::RegionSwitch(_) => "region_switch",
        Trigger::Command(_) => "command",
    }
}

/// The generators are only worth their cases if they reach the parser's successes and its
/// refusals alike; this fails when a strategy drifts into producing only one of them.
#[test]
fn the_near_miss_generators_reach_triggers_and_refusals_of_every_shape() {
    const CASES: usize = 400;
    let mut runner = TestRunner::deterministic();
    for (name, strategy, expect) in [
        ("sns", sns_event(), &["elasticache", "alarm"][..]),
        ("alarm", alarm_event(), &["alarm", "schedule"][..]),
        ("command", command(), &["command"][..]),
        ("region switch", region_switch_step(), &["region_switch"][..]),
    ] {
        let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
        let mut refused = 0;
        for _ in 0..CASES {
            let raw = strategy
                .new_tree(&mut runner)
                .expect("generates")
                .current()
                .to_string();
            // Each command parses for one function only: count what either takes in.
            let switch = parse_event::<SwitchCommand>(&raw).map(|t| t.iter().map(kind).collect::<Vec<_>>());
            let promoter =
                parse_event::<PromoterCommand>(&raw).map(|t| t.iter().map(kind).collect::<Vec<_>>());
            match (switch, promoter) {
                (Ok(kinds), _) | (Err(_), Ok(kinds)) => {
                    for k in kinds {
                        *taken.entry(k).or_default() += 1;
                    }
                }
                (Err(_), Err(_)) => refused += 1,
            }
        }
        for kind in expect {
            assert!(
                taken.get(kind).is_some_and(|n| *n >= CASES / 100),
                "{name}: too few {kind} triggers in {CASES} cases: {taken:?}"
            );
        }
        assert!(refused >= CASES / 10, "{name}: only {refused} of {CASES} refused");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_taken_in_or_refused_with_a_named_reason(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        prefix in prop::sample::select(&["", "{", "{\"Records\":", "{\"command\":", "[", "\""][..]),
    ) {
        let raw = format!("{prefix}{}", String::from_utf8_lossy(&bytes));
        both_functions(&raw)?;
    }

    #[test]
    fn any_json_value_is_taken_in_or_refused_with_a_named_reason(value in json()) {
        let raw = value.to_string();
        both_functions(&raw)?;
        if !value.is_object() {
            // Not an object: refused, naming what it is instead.
            let e = parse_event::<SwitchCommand>(&raw).expect_err("only objects are events");
            prop_assert!(matches!(e, IntakeError::NotAnObject(_)), "{e:?}");
        }
    }

    #[test]
    fn near_miss_sns_events_are_taken_in_record_for_record_or_refused_with_a_named_reason(
        event in sns_event(),
    ) {
        let raw = event.to_string();
        both_functions(&raw)?;
        // An event with `Records` is an SNS event, unless a stray `command` key makes it a command
        // (commands are looked for first).
        let sns = event.get("Records").is_some() && event.get("command").is_none();
        if let (Some(triggers), true) = (taken_in_or_named::<SwitchCommand>(&raw)?, sns) {
            let records = event.get("Records").and_then(Value::as_array).map_or(0, Vec::len);
            prop_assert_eq!(triggers.len(), records, "one trigger per record");
        }
    }

    #[test]
    fn near_miss_alarm_events_are_taken_in_or_refused_with_a_named_reason(event in alarm_event()) {
        both_functions(&event.to_string())?;
    }

    #[test]
    fn a_payload_with_a_command_key_is_a_command_or_a_command_error(command in command()) {
        let raw = command.to_string();
        both_functions(&raw)?;
        if command.get("command").is_some() {
            for result in [
                parse_event::<SwitchCommand>(&raw).map(|t| matches!(t.as_slice(), [Trigger::Command(_)])),
                parse_event::<PromoterCommand>(&raw).map(|t| matches!(t.as_slice(), [Trigger::Command(_)])),
            ] {
                match result {
                    Ok(is_command) => prop_assert!(is_command, "{raw} taken in as something else"),
                    Err(e) => prop_assert!(matches!(e, IntakeError::Command(_)), "{raw}: {e:?}"),
                }
            }
        }
    }

    #[test]
    fn near_miss_region_switch_steps_are_taken_in_or_refused_with_a_named_reason(
        step in region_switch_step(),
    ) {
        both_functions(&step.to_string())?;
    }

    #[test]
    fn a_region_switch_step_promotes_a_member_only_when_every_field_it_recognised_was_usable(
        payload in region_switch_step(),
        here in prop::sample::select(&["us-west-1", "us-west-2"][..]),
    ) {
        use crate::ids::Region;
        use crate::region_switch::{Field, Held, MAX_SHOWN, PlanAction, RegionToRun};
        let raw = payload.to_string();
        let Ok(triggers) = parse_event::<PromoterCommand>(&raw) else { return Ok(()) };
        let Some(Trigger::RegionSwitch(step)) = triggers.first() else { return Ok(()) };
        let members = [Region::parse("us-west-1"), Region::parse("us-west-2")].map(|r| r.expect("region"));
        let own = Region::parse(here).expect("region");
        fn usable<T>(f: &Option<Field<T>>) -> bool {
            f.as_ref().is_none_or(|f| matches!(f.value, Held::Usable(_)))
        }
        match step.region_to_activate(&own, &members) {
            Ok(a) => {
                prop_assert!(members.contains(&a.region), "{a:?}");
                prop_assert!(
                    usable(&step.activating_region)
                        && usable(&step.deactivating_region)
                        && usable(&step.target_region),
                    "{raw}"
                );
                prop_assert!(
                    step.action.as_ref().is_none_or(|f| f.value == Held::Usable(PlanAction::Activate)),
                    "{raw}"
                );
                prop_assert!(
                    step.region_to_run.as_ref().is_none_or(|f| matches!(
                        f.value,
                        Held::Usable(RegionToRun::ActivatingRegion | RegionToRun::ActiveRegion)
                    )),
                    "{raw}"
                );
            }
            Err(e) => {
                prop_assert!(has_key(&payload, &e.field), "{e} names a key {raw} lacks");
                prop_assert!(e.held.chars().count() <= MAX_SHOWN, "{e}");
            }
        }
    }

    #[test]
    fn a_fixture_with_one_node_of_the_wrong_type_or_any_text_is_refused_or_taken_in_never_a_panic(
        fixture in any::<Index>(),
        node in any::<Index>(),
        how in spoil(),
        inside_message in any::<bool>(),
    ) {
        let all: Vec<_> = all_fixtures().collect();
        let (name, raw) = fixture.get(&all);
        let mut event = fixture_value(raw);
        // SNS fixtures carry a JSON document in a string: spoil inside it half of the time.
        let message = event
            .pointer("/Records/0/Sns/Message")
            .and_then(Value::as_str)
            .and_then(|m| serde_json::from_str::<Value>(m).ok());
        let pointer = match message {
            Some(mut inner) if inside_message => {
                let at = spoil_one_node(&mut inner, node, &how);
                if let Some(m) = event.pointer_mut("/Records/0/Sns/Message") {
                    *m = Value::String(inner.to_string());
                }
                format!("Message{at}")
            }
            _ => spoil_one_node(&mut event, node, &how),
        };
        let raw = event.to_string();
        both_functions(&raw)
            .map_err(|e| TestCaseError::fail(format!("{name} with {pointer} spoilt: {e}")))?;
    }
}
