//! Event intake: every shape the functions are invoked with, turned into one internal type.
//!
//! Shapes: SNS records carrying an ElastiCache notification (JSON or plain text) or a CloudWatch
//! alarm; the EventBridge "CloudWatch Alarm State Change" event; the payload of an alarm's direct
//! Lambda action; EventBridge schedules; the step of an ARC Region switch plan (recognised by its
//! plan ARN, see [`crate::region_switch`]); and manual commands typed into the console. Anything
//! else is an error that names what was wrong.

use aws_lambda_events::sns::SnsEvent;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::ids::Region;

/// Lambda's asynchronous payload limit; anything larger is not an event we were sent.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// SNS delivers one record per invocation; a handful more is tolerated, hundreds is not an event.
pub const MAX_RECORDS: usize = 10;

/// The ElastiCache event that ends a Global Datastore failover.
pub const PROMOTED_AS_PRIMARY: &str = "ReplicationGroupPromotedAsPrimary";

/// Why an event could not be taken in. Nothing is changed when intake fails.
#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("event is {bytes} bytes, more than the {max} accepted")]
    TooLarge { bytes: usize, max: usize },
    #[error("event is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error(
        "event has an unknown shape (top-level keys: {keys}); expected SNS Records, a CloudWatch alarm event, a schedule, a Region switch step or a command"
    )]
    UnknownShape { keys: String },
    #[error("event has {count} records, more than the {max} accepted")]
    TooManyRecords { count: usize, max: usize },
    #[error("event has no records")]
    NoRecords,
    #[error("SNS record {index}: {problem}")]
    SnsRecord { index: usize, problem: String },
    #[error("CloudWatch alarm event: {0}")]
    Alarm(String),
    #[error("manual command: {0}")]
    Command(String),
}

/// Where an SNS-delivered trigger came from; kept for the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnsDelivery {
    pub message_id: String,
    pub topic_arn: String,
    pub published_at: DateTime<Utc>,
}

/// An ElastiCache notification as published to SNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElastiCacheNotification {
    /// The event name without the `ElastiCache:` prefix.
    pub event: String,
    /// The source id: a replication group or a member node such as `sessions-usw2-0001-001`.
    pub source: String,
    pub delivery: SnsDelivery,
}

impl ElastiCacheNotification {
    pub fn is_promotion(&self) -> bool {
        self.event == PROMOTED_AS_PRIMARY
    }

    /// Whether the event can mean a role change (a promotion, a failover, anything naming the
    /// primary): a cue to read the datastore, never a truth. Snapshots, parameter changes and node
    /// replacements are not.
    pub fn may_change_roles(&self) -> bool {
        let e = self.event.to_ascii_lowercase();
        self.is_promotion() || e.contains("failover") || e.contains("promot") || e.contains("primary")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmVia {
    Sns,
    EventBridge,
    DirectAction,
}

/// A CloudWatch alarm state change, whichever way it was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmChange {
    pub name: String,
    pub arn: String,
    /// Taken from the ARN: SNS alarm messages carry a display name ("US West (Oregon)") instead.
    pub region: Region,
    pub new_state: AlarmState,
    pub old_state: Option<AlarmState>,
    pub changed_at: Option<String>,
    pub via: AlarmVia,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<SnsDelivery>,
}

/// One thing that happened, for the decision to consider. `C` is the function's command type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger<C> {
    #[serde(rename = "elasticache")]
    ElastiCache(ElastiCacheNotification),
    Alarm(AlarmChange),
    /// An EventBridge schedule (`detail-type: "Scheduled Event"`): re-evaluate, in case an alarm
    /// event was lost.
    Schedule {
        time: String,
    },
    /// A custom-action Lambda step of an ARC Region switch plan execution.
    /// Boxed: what its fields held makes it the largest trigger by far.
    RegionSwitch(Box<crate::region_switch::RegionSwitchStep>),
    Command(C),
}

/// Parses a raw invocation payload into triggers. Commands are parsed as `C`, which should deny
/// unknown fields so a typo is an error rather than a silently different command.
pub fn parse_event<C: DeserializeOwned>(raw: &str) -> Result<Vec<Trigger<C>>, IntakeError> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(IntakeError::TooLarge {
            bytes: raw.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    let value: Value = serde_json::from_str(raw).map_err(IntakeError::NotJson)?;
    let Value::Object(obj) = value else {
        return Err(IntakeError::NotAnObject(json_kind(&value)));
    };
    if obj.contains_key("command") {
        let cmd =
            serde_json::from_value(Value::Object(obj)).map_err(|e| IntakeError::Command(e.to_string()))?;
        return Ok(vec![Trigger::Command(cmd)]);
    }
    if obj.contains_key("Records") {
        return parse_sns(Value::Object(obj));
    }
    if obj.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        if obj.get("source").and_then(Value::as_str) != Some("aws.events") {
            return Err(IntakeError::UnknownShape {
                keys: "a Scheduled Event not from aws.events".into(),
            });
        }
        let time = obj
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        return Ok(vec![Trigger::Schedule { time }]);
    }
    if obj.contains_key("detail-type") {
        return parse_eventbridge(&obj).map(|a| vec![Trigger::Alarm(a)]);
    }
    if obj.contains_key("alarmData") {
        return parse_direct_alarm(&obj).map(|a| vec![Trigger::Alarm(a)]);
    }
    if let Some(step) = crate::region_switch::parse(&obj) {
        return Ok(vec![Trigger::RegionSwitch(Box::new(step))]);
    }
    // Quoted, so that an empty or blank key is still seen in the message.
    let mut keys: Vec<String> = obj.keys().take(8).map(|k| format!("{k:?}")).collect();
    if obj.len() > keys.len() {
        keys.push("…".to_owned());
    }
    Err(IntakeError::UnknownShape {
        keys: if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join(", ")
        },
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_sns<C>(value: Value) -> Result<Vec<Trigger<C>>, IntakeError> {
    let count = value.get("Records").and_then(Value::as_array).map(Vec::len);
    match count {
        Some(0) => return Err(IntakeError::NoRecords),
        Some(n) if n > MAX_RECORDS => {
            return Err(IntakeError::TooManyRecords {
                count: n,
                max: MAX_RECORDS,
            });
        }
        _ => {}
    }
    let event: SnsEvent = serde_json::from_value(value).map_err(|e| IntakeError::SnsRecord {
        index: 0,
        problem: format!("not an SNS event: {e}"),
    })?;
    event
        .records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            let fail = |problem: String| IntakeError::SnsRecord { index, problem };
            if record.event_source != "aws:sns" {
                return Err(fail(format!(
                    "EventSource is {:?}, not aws:sns",
                    record.event_source
                )));
            }
            let sns = record.sns;
            let delivery = SnsDelivery {
                message_id: sns.message_id,
                topic_arn: sns.topic_arn,
                published_at: sns.timestamp,
            };
            parse_sns_message(&sns.message, delivery).map_err(fail)
        })
        .collect()
}

fn parse_sns_message<C>(message: &str, delivery: SnsDelivery) -> Result<Trigger<C>, String> {
    let trimmed = message.trim();
    if let Some(rest) = trimmed.strip_prefix("ElastiCache:") {
        // Plain-text form: `ElastiCache:<EventName> : <source>`.
        let (event, source) = rest.split_once(':').ok_or_else(|| {
            format!(
                "plain-text ElastiCache message {:?} has no ' : <source>'",
                truncate(trimmed)
            )
        })?;
        return elasticache(event.trim(), source.trim(), delivery).map(Trigger::ElastiCache);
    }
    let parsed: Value = serde_json::from_str(trimmed)
        .map_err(|e| format!("Message is neither an ElastiCache notification nor JSON ({e})"))?;
    let Value::Object(obj) = parsed else {
        return Err(format!("Message is JSON {} , not an object", json_kind(&parsed)));
    };
    let ec_keys: Vec<&String> = obj.keys().filter(|k| k.starts_with("ElastiCache:")).collect();
    match ec_keys.as_slice() {
        [key] => {
            let source = obj
                .get(key.as_str())
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{key} must have a string source id"))?;
            let event = key.trim_start_matches("ElastiCache:");
            elasticache(event, source, delivery).map(Trigger::ElastiCache)
        }
        [] if obj.contains_key("AlarmName") => parse_sns_alarm(obj, delivery).map(Trigger::Alarm),
        [] => {
            Err("Message is JSON but neither an ElastiCache notification nor a CloudWatch alarm".to_owned())
        }
        _ => Err(format!(
            "Message names {} ElastiCache events; expected one",
            ec_keys.len()
        )),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn elasticache(event: &str, source: &str, delivery: SnsDelivery) -> Result<ElastiCacheNotification, String> {
    if event.is_empty() || !event.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "ElastiCache event name {:?} is not a word",
            truncate(event)
        ));
    }
    if source.is_empty()
        || source.len() > 255
        || !source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "ElastiCache source id {:?} is not an id",
            truncate(source)
        ));
    }
    Ok(ElastiCacheNotification {
        event: event.to_owned(),
        source: source.to_owned(),
        delivery,
    })
}

/// The fields used from a CloudWatch alarm message published to SNS. Metric and composite alarms
/// differ in the rest (`Trigger` vs `AlarmRule`), so only these are required.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsAlarmMessage {
    alarm_name: String,
    alarm_arn: String,
    new_state_value: AlarmState,
    #[serde(default)]
    old_state_value: Option<AlarmState>,
    #[serde(default)]
    state_change_time: Option<String>,
}

fn parse_sns_alarm(obj: Map<String, Value>, delivery: SnsDelivery) -> Result<AlarmChange, String> {
    let m: SnsAlarmMessage =
        serde_json::from_value(Value::Object(obj)).map_err(|e| format!("CloudWatch alarm message: {e}"))?;
    let region = Region::from_arn(&m.alarm_arn).map_err(|e| format!("AlarmArn: {e}"))?;
    Ok(AlarmChange {
        name: m.alarm_name,
        arn: m.alarm_arn,
        region,
        new_state: m.new_state_value,
        old_state: m.old_state_value,
        changed_at: m.state_change_time,
        via: AlarmVia::Sns,
        delivery: Some(delivery),
    })
}

#[derive(Deserialize)]
struct StateValue {
    value: AlarmState,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmDetail {
    alarm_name: String,
    state: StateValue,
    #[serde(default)]
    previous_state: Option<StateValue>,
}

#[derive(Deserialize)]
struct EventBridgeAlarm {
    source: String,
    #[serde(default)]
    resources: Vec<String>,
    detail: AlarmDetail,
}

fn parse_eventbridge(obj: &Map<String, Value>) -> Result<AlarmChange, IntakeError> {
    let detail_type = obj.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    if detail_type != "CloudWatch Alarm State Change" {
        return Err(IntakeError::Alarm(format!(
            "EventBridge detail-type {:?} is not handled; expected \"CloudWatch Alarm State Change\"",
            truncate(detail_type)
        )));
    }
    let ev: EventBridgeAlarm = serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| IntakeError::Alarm(format!("EventBridge event: {e}")))?;
    if ev.source != "aws.cloudwatch" {
        return Err(IntakeError::Alarm(format!(
            "source is {:?}, not aws.cloudwatch",
            truncate(&ev.source)
        )));
    }
    let arn = ev
        .resources
        .into_iter()
        .find(|r| r.contains(":alarm:"))
        .ok_or_else(|| IntakeError::Alarm("resources holds no alarm ARN".to_owned()))?;
    alarm_from(arn, ev.detail, AlarmVia::EventBridge)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectAlarm {
    source: String,
    alarm_arn: String,
    alarm_data: AlarmDetail,
}

fn parse_direct_alarm(obj: &Map<String, Value>) -> Result<AlarmChange, IntakeError> {
    let ev: DirectAlarm = serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| IntakeError::Alarm(format!("alarm action payload: {e}")))?;
    if ev.source != "aws.cloudwatch" {
        return Err(IntakeError::Alarm(format!(
            "source is {:?}, not aws.cloudwatch",
            truncate(&ev.source)
        )));
    }
    alarm_from(ev.alarm_arn, ev.alarm_data, AlarmVia::DirectAction)
}

fn alarm_from(arn: String, detail: AlarmDetail, via: AlarmVia) -> Result<AlarmChange, IntakeError> {
    let region = Region::from_arn(&arn).map_err(|e| IntakeError::Alarm(format!("alarm ARN: {e}")))?;
    Ok(AlarmChange {
        name: detail.alarm_name,
        arn,
        region,
        new_state: detail.state.value,
        old_state: detail.previous_state.map(|s| s.value),
        changed_at: detail.state.timestamp,
        via,
        delivery: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
    enum TestCommand {
        Status {},
    }

    fn sns(message: &str) -> String {
        serde_json::json!({"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-west-2:123456789012:topic:sub",
            "Sns": {
                "Type": "Notification", "MessageId": "m-1",
                "TopicArn": "arn:aws:sns:us-west-2:123456789012:topic",
                "Subject": null, "Message": message,
                "Timestamp": "2026-11-23T10:00:00.000Z", "SignatureVersion": "1",
                "Signature": "x", "SigningCertUrl": "https://example", "UnsubscribeUrl": "https://example",
                "MessageAttributes": {}
            }
        }]})
        .to_string()
    }

    fn one(raw: &str) -> Trigger<TestCommand> {
        let mut v = parse_event::<TestCommand>(raw).expect("parses");
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn json_and_plain_text_elasticache_messages_parse_alike() {
        for msg in [
            r#"{"ElastiCache:ReplicationGroupPromotedAsPrimary":"sessions-usw2"}"#,
            "ElastiCache:ReplicationGroupPromotedAsPrimary : sessions-usw2",
            "ElastiCache:ReplicationGroupPromotedAsPrimary:sessions-usw2",
        ] {
            let Trigger::ElastiCache(n) = one(&sns(msg)) else {
                panic!("{msg} is not an ElastiCache trigger")
            };
            assert!(n.is_promotion());
            assert_eq!(n.source, "sessions-usw2");
            assert_eq!(n.delivery.message_id, "m-1");
        }
    }

    #[test]
    fn other_elasticache_events_are_taken_in_but_are_not_promotions() {
        let Trigger::ElastiCache(n) = one(&sns(
            r#"{"ElastiCache:SnapshotComplete":"sessions-usw2-0001-001"}"#,
        )) else {
            panic!("not ElastiCache")
        };
        assert!(!n.is_promotion());
        assert_eq!(n.event, "SnapshotComplete");
    }

    #[test]
    fn sns_alarm_takes_its_region_from_the_arn_not_the_display_name() {
        let msg = serde_json::json!({
            "AlarmName": "primary-unreachable", "NewStateValue": "ALARM", "OldStateValue": "OK",
            "StateChangeTime": "2026-11-23T10:00:00.000+0000", "Region": "US West (Oregon)",
            "AlarmArn": "arn:aws:cloudwatch:us-west-2:123456789012:alarm:primary-unreachable",
            "AlarmRule": "ALARM(a) OR ALARM(b)"
        })
        .to_string();
        let Trigger::Alarm(a) = one(&sns(&msg)) else {
            panic!("not an alarm")
        };
        assert_eq!(a.region.as_str(), "us-west-2");
        assert_eq!(a.new_state, AlarmState::Alarm);
        assert_eq!(a.old_state, Some(AlarmState::Ok));
        assert_eq!(a.via, AlarmVia::Sns);
    }

    #[test]
    fn bad_input_is_named_in_the_error() {
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "not valid JSON"),
            ("[]".into(), "must be a JSON object"),
            ("\"hi\"".into(), "must be a JSON object"),
            ("{}".into(), "keys: none"),
            (r#"{"foo":1,"bar":2}"#.into(), "foo"),
            (r#"{"Records":[]}"#.into(), "no records"),
            (
                r#"{"Records":[{"EventSource":"aws:sns"}]}"#.into(),
                "not an SNS event",
            ),
            (sns("hello"), "neither an ElastiCache notification nor JSON"),
            (sns("ElastiCache:Promoted"), "no ' : <source>'"),
            (sns(r#"{"ElastiCache:X":"a b"}"#), "not an id"),
            (
                sns(r#"{"ElastiCache:X":"a","ElastiCache:Y":"b"}"#),
                "2 ElastiCache events",
            ),
            (sns(r#"{"ElastiCache:X":42}"#), "string source id"),
            (
                sns(
                    r#"{"AlarmName":"a","AlarmArn":"arn:aws:cloudwatch:us-west-2:1:alarm:a","NewStateValue":"SIDEWAYS"}"#,
                ),
                "unknown variant",
            ),
            (
                sns(r#"{"AlarmName":"a","AlarmArn":"nope","NewStateValue":"ALARM"}"#),
                "AlarmArn",
            ),
            (
                sns(r#"{"hello":"world"}"#),
                "neither an ElastiCache notification nor a CloudWatch alarm",
            ),
            (
                r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2"}"#.into(),
                "is not handled",
            ),
            (r#"{"command":"reboot"}"#.into(), "unknown variant"),
            (r#"{"command":"status","verbose":true}"#.into(), "unknown field"),
            (
                format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES)),
                "more than the",
            ),
        ];
        for (raw, expect) in cases {
            let err = parse_event::<TestCommand>(&raw).expect_err(&raw[..raw.len().min(80)]);
            assert!(
                err.to_string().contains(expect),
                "{:?} -> {err}",
                &raw[..raw.len().min(80)]
            );
        }
    }

    #[test]
    fn an_unknown_shape_names_its_keys_even_empty_or_blank_ones() {
        let err = parse_event::<TestCommand>(r#"{"": null, " ": 1}"#).expect_err("unknown shape");
        assert!(err.to_string().contains(r#"top-level keys: "", " ")"#), "{err}");
    }

    #[test]
    fn an_eventbridge_schedule_is_a_schedule_trigger() {
        let raw = r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events",
            "account":"1","time":"2026-11-23T10:00:00Z","region":"us-west-2","resources":[],"detail":{}}"#;
        assert!(matches!(one(raw), Trigger::Schedule { time } if time == "2026-11-23T10:00:00Z"));
        let spoofed = raw.replace("aws.events", "my.app");
        assert!(parse_event::<TestCommand>(&spoofed).is_err());
    }

    #[test]
    fn too_many_records_are_refused_before_parsing_them() {
        let rec = serde_json::json!({"EventSource": "aws:sns"});
        let raw = serde_json::json!({ "Records": vec![rec; MAX_RECORDS + 1] }).to_string();
        let err = parse_event::<TestCommand>(&raw).expect_err("too many");
        assert!(matches!(err, IntakeError::TooManyRecords { count, .. } if count == MAX_RECORDS + 1));
    }
}
