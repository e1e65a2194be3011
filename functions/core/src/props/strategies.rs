//! Strategies shared by the property modules: JSON values biased towards the keys and strings the
//! intake looks for, so random values land in its branches rather than at "unknown shape".

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys the intake and the Region switch walk look for, and some near misses.
const KEYS: &[&str] = &[
    "command",
    "Records",
    "EventSource",
    "Sns",
    "Message",
    "MessageId",
    "TopicArn",
    "Timestamp",
    "detail-type",
    "source",
    "detail",
    "resources",
    "alarmData",
    "alarmArn",
    "alarmName",
    "state",
    "value",
    "previousState",
    "planArn",
    "executionId",
    "action",
    "activateRegion",
    "deactivatingRegion",
    "targetRegion",
    "target_region",
    "dry_run",
    "confirm",
    "reason",
    "force",
    "override_safety_rules",
    "AlarmName",
    "AlarmArn",
    "NewStateValue",
    "ElastiCache:ReplicationGroupPromotedAsPrimary",
    "time",
];

/// Strings the intake compares against, and some near misses.
const STRINGS: &[&str] = &[
    "aws:sns",
    "aws.cloudwatch",
    "aws.events",
    "Scheduled Event",
    "CloudWatch Alarm State Change",
    "ALARM",
    "OK",
    "INSUFFICIENT_DATA",
    "alarm",
    "status",
    "switch",
    "evaluate",
    "promote",
    "state",
    "vantage",
    "us-west-2",
    "US West (Oregon)",
    "activate",
    "deactivate",
    "arn:aws:cloudwatch:us-west-2:123456789012:alarm:writes-failing",
    "arn:aws:cloudwatch:REGION:1:alarm:x",
    "arn:aws:arc-region-switch::123456789012:plan/sessions:abc123",
    "arn:aws:arc-region-switch::1234:plan/x",
    "ElastiCache:ReplicationGroupPromotedAsPrimary : sessions-usw2",
    "ElastiCache:ReplicationGroupPromotedAsPrimary",
    "{\"ElastiCache:ReplicationGroupPromotedAsPrimary\":\"sessions-usw2\"}",
    "2026-11-23T10:00:00.000Z",
    "not a time",
    "",
];

pub fn key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(KEYS).prop_map(str::to_owned),
        2 => "[a-zA-Z:_-]{0,12}",
        1 => text(),
    ]
    .boxed()
}

pub fn string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(STRINGS).prop_map(str::to_owned),
        2 => text(),
        1 => "[a-z0-9:/._ -]{0,40}",
    ]
    .boxed()
}

/// Any text: short or long (past the lengths messages are cut at), of any characters, multi-byte
/// ones included, so that cutting a string at a byte offset shows.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        1 => prop::collection::vec(any::<char>(), 100..400).prop_map(String::from_iter),
        1 => (prop::collection::vec(any::<char>(), 0..4), "[a-z0-9 :-]{110,300}")
            .prop_map(|(head, tail)| head.into_iter().chain(tail.chars()).rev().collect()),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        3 => string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
pub fn json() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A field of a near-miss event: usually right, sometimes missing, sometimes any value at all.
pub fn field(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    field_w(16, good)
}

/// [`field`], right `weight` times out of `weight + 2`: events with many fields need most of them
/// right for any of them to parse.
pub fn field_w(weight: u32, good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        weight => good.prop_map(Some),
        1 => Just(None),
        1 => json().prop_map(Some),
    ]
    .boxed()
}

/// An optional field: present about half of the time, now and then of any value at all.
pub fn sometimes(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        4 => good.prop_map(Some),
        4 => Just(None),
        1 => json().prop_map(Some),
    ]
    .boxed()
}

/// One of the given strings, or any string.
pub fn one_of(choices: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        8 => prop::sample::select(choices).prop_map(|s| Value::String(s.to_owned())),
        1 => string().prop_map(Value::String),
    ]
    .boxed()
}

/// Usually the right string, sometimes a near miss, now and then any string.
pub fn mostly(right: &'static [&'static str], wrong: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(right).prop_map(Value::from),
        2 => prop::sample::select(wrong).prop_map(Value::from),
        1 => string().prop_map(Value::String),
    ]
    .boxed()
}

/// An object of the fields that are present.
pub fn object(fields: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect::<Map<String, Value>>(),
    )
}

/// The JSON type of a value, as a small number (null, bool, number, string, array, object).
pub fn kind_of(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A value of JSON type `kind` (see [`kind_of`]), built around `seed`.
pub fn of_kind(kind: usize, seed: &Value, pick: usize) -> Value {
    match kind {
        0 => Value::Null,
        1 => Value::Bool(pick.is_multiple_of(2)),
        2 => [
            Value::from(0),
            Value::from(-1),
            Value::from(1e300),
            Value::from(u64::MAX),
        ][pick % 4]
            .clone(),
        3 => Value::String(["", "x", "ALARM", "aws:sns"][pick % 4].to_owned()),
        4 => {
            if pick.is_multiple_of(2) {
                Value::Array(Vec::new())
            } else {
                Value::Array(vec![seed.clone()])
            }
        }
        _ => {
            if pick.is_multiple_of(2) {
                Value::Object(Map::new())
            } else {
                Value::Object([("k".to_owned(), seed.clone())].into_iter().collect())
            }
        }
    }
}
