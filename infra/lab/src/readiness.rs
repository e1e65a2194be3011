//! What the readiness check (`{"command":"preflight"}`) reads that the rest of the lab does not
//! emulate, and the switches that break each item and mend it again:
//!
//! - each member group's ElastiCache notification topic and its status (`DescribeCacheClusters`,
//!   set with `ModifyReplicationGroup`): an inactive topic, or another topic, means ElastiCache
//!   publishes no promotion event to the functions;
//! - the topic's subscriptions (SNS `ListSubscriptionsByTopic`, on the query protocol the SDK
//!   speaks): an unsubscribed traffic switch gets no event;
//! - the lag metric (paused: nothing published, and what was is forgotten, so `ListMetrics`
//!   lists nothing);
//! - a gate alarm (deleted, kept aside to restore), the writer record (an A record instead of the
//!   CNAME) and an ARC cluster endpoint (refusing connections).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cloudwatch::Alarm;
use crate::lambda::now_ms;
use crate::wire::{esc, signing_region};
use crate::{ApiRequest, LabState};

/// The account the lab's ARNs name (the functions' ARNs use it too).
pub const ACCOUNT: &str = "000000000000";
const TOPIC_NAME: &str = "lab-elasticache-events";
const SNS_NS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// The lab stack's ElastiCache events topic in `region`.
pub fn topic_arn(region: &str) -> String {
    format!("arn:aws:sns:{region}:{ACCOUNT}:{TOPIC_NAME}")
}

/// A member group's notification settings, as `DescribeCacheClusters` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub topic_arn: String,
    pub topic_status: String,
}

/// The items of the readiness check the lab can break.
pub const ITEMS: &[&str] = &[
    "topic",
    "subscription",
    "lag-metric",
    "alarm",
    "record",
    "arc-endpoint",
];

#[derive(Default)]
pub struct Readiness {
    /// Per Region (its member group): where ElastiCache publishes events.
    notifications: Mutex<BTreeMap<String, Notification>>,
    /// Regions whose traffic switch is not subscribed to the topic.
    unsubscribed: Mutex<BTreeSet<String>>,
    lag_paused: AtomicBool,
    /// Alarms the lab deleted, to restore on mend.
    deleted_alarms: Mutex<Vec<Alarm>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Readiness {
    /// Every Region's group notifies that Region's lab topic, active: a correct deployment.
    pub fn new(regions: &[String]) -> Self {
        let r = Self::default();
        for region in regions {
            lock(&r.notifications).insert(region.clone(), active(region));
        }
        r
    }

    pub fn notification(&self, region: &str) -> Option<Notification> {
        lock(&self.notifications).get(region).cloned()
    }

    pub fn set_notification(&self, region: &str, arn: Option<&str>, status: Option<&str>) {
        let mut n = lock(&self.notifications);
        let entry = n.entry(region.to_owned()).or_insert_with(|| active(region));
        if let Some(a) = arn {
            a.clone_into(&mut entry.topic_arn);
        }
        if let Some(s) = status {
            s.clone_into(&mut entry.topic_status);
        }
    }

    /// Whether ElastiCache publishes `region`'s events to the lab topic there.
    pub fn publishes(&self, region: &str) -> bool {
        self.notification(region)
            .is_some_and(|n| n.topic_arn == topic_arn(region) && n.topic_status == "active")
    }

    pub fn subscribed(&self, region: &str) -> bool {
        !lock(&self.unsubscribed).contains(region)
    }

    pub fn lag_paused(&self) -> bool {
        self.lag_paused.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Value {
        json!({
            "notifications": *lock(&self.notifications),
            "unsubscribed": *lock(&self.unsubscribed),
            "lag_paused": self.lag_paused(),
            "deleted_alarms": lock(&self.deleted_alarms).iter().map(|a| format!("{} in {}", a.name, a.region)).collect::<Vec<_>>(),
        })
    }
}

fn active(region: &str) -> Notification {
    Notification {
        topic_arn: topic_arn(region),
        topic_status: "active".into(),
    }
}

/// What to break or mend: an item of [`ITEMS`] and, where it needs one, a Region (or ARC
/// endpoint) and an alarm name.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Target {
    pub item: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

fn need<'a>(v: Option<&'a String>, what: &str, item: &str) -> Result<&'a str, String> {
    v.map(String::as_str)
        .ok_or_else(|| format!("{item} needs a {what}"))
}

fn region_of<'a>(lab: &LabState, t: &'a Target) -> Result<&'a str, String> {
    let r = need(t.region.as_ref(), "Region", &t.item)?;
    lab.region(r)
        .map(|_| r)
        .ok_or_else(|| format!("{r} is not a lab Region"))
}

/// Breaks (`broken`) or mends one item. Returns what it did.
pub fn set(lab: &LabState, t: &Target, broken: bool) -> Result<Value, String> {
    let rd = &lab.readiness;
    match t.item.as_str() {
        "topic" => {
            let region = region_of(lab, t)?;
            if broken {
                rd.set_notification(region, None, Some("inactive"));
            } else {
                rd.set_notification(region, Some(&topic_arn(region)), Some("active"));
            }
            Ok(json!({"topic": rd.notification(region)}))
        }
        "subscription" => {
            let region = region_of(lab, t)?;
            if broken {
                lock(&rd.unsubscribed).insert(region.to_owned());
            } else {
                lock(&rd.unsubscribed).remove(region);
            }
            Ok(json!({"region": region, "subscribed": rd.subscribed(region)}))
        }
        "lag-metric" => {
            rd.lag_paused.store(broken, Ordering::Relaxed);
            if broken {
                lab.cloudwatch
                    .purge("AWS/ElastiCache", "GlobalDatastoreReplicationLag");
            }
            Ok(json!({"lag_published": !broken}))
        }
        "alarm" => {
            let region = region_of(lab, t)?;
            let name = need(t.name.as_ref(), "alarm name", &t.item)?;
            if broken {
                let a = lab
                    .cloudwatch
                    .remove_alarm(region, name)
                    .ok_or_else(|| format!("no alarm {name} in {region}"))?;
                lock(&rd.deleted_alarms).push(a);
            } else {
                let mut deleted = lock(&rd.deleted_alarms);
                let i = deleted
                    .iter()
                    .position(|a| a.region == region && a.name == name)
                    .ok_or_else(|| format!("the lab did not delete {name} in {region}"))?;
                lab.cloudwatch.put_alarm(deleted.remove(i));
            }
            Ok(json!({"alarm": name, "region": region, "exists": !broken}))
        }
        "record" => {
            let zone = lab
                .route53
                .zones()
                .into_iter()
                .next()
                .map(|z| z.id)
                .ok_or("no zone")?;
            let name = &lab.cfg.record_name;
            let ttl = lab.cfg.record_ttl;
            let change = if broken {
                // 192.0.2.0/24 is documentation space: a value no client will ever be sent to.
                lab.route53
                    .retype(&zone, name, "CNAME", "A", ttl, &["192.0.2.10"])
            } else {
                let primary = lab
                    .regions
                    .get(lab.gds().primary)
                    .map(|r| r.endpoint.clone())
                    .unwrap_or_default();
                lab.route53
                    .retype(&zone, name, "A", "CNAME", ttl, &[primary.as_str()])
            };
            change
                .map(|id| json!({"record": name, "type": if broken { "A" } else { "CNAME" }, "change": id}))
                .map_err(|e| e.message())
        }
        "arc-endpoint" => {
            let endpoint = need(t.region.as_ref(), "cluster endpoint (0-4 or its Region)", &t.item)?;
            let index = endpoint
                .parse::<usize>()
                .ok()
                .or_else(|| crate::arc::ENDPOINT_REGIONS.iter().position(|r| *r == endpoint))
                .ok_or_else(|| format!("{endpoint} is not an ARC endpoint (0-4 or its Region)"))?;
            let mode = if broken {
                crate::arc::EndpointMode::Refuse
            } else {
                crate::arc::EndpointMode::Ok
            };
            if !lab.arc.set_mode(index, mode) {
                return Err(format!("no ARC endpoint {index}"));
            }
            Ok(json!({"arc_endpoint": index, "mode": mode}))
        }
        other => Err(format!("{other:?} is not one of {}", ITEMS.join(", "))),
    }
}

// ---- SNS, read-only ----

pub fn sns_router(lab: Arc<LabState>) -> Router {
    Router::new().route("/", post(sns)).with_state(lab)
}

fn sns_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{SNS_NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
         <RequestId>lab-{}</RequestId></ErrorResponse>",
        esc(message),
        now_ms()
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, [("content-type", "text/xml")], body).into_response()
}

async fn sns(State(lab): State<Arc<LabState>>, headers: HeaderMap, body: Bytes) -> Response {
    let p: HashMap<String, String> = crate::wire::params(&body);
    let action = p.get("Action").cloned().unwrap_or_default();
    let region = signing_region(&headers).unwrap_or_else(|| "unknown".into());
    let (status, response) = if lab.region_dark(&region) {
        (
            503,
            sns_error(
                503,
                "ServiceUnavailable",
                &format!("the {region} endpoint is unavailable"),
            ),
        )
    } else if action == "ListSubscriptionsByTopic" {
        list_subscriptions(&lab, &region, p.get("TopicArn").map(String::as_str).unwrap_or(""))
    } else {
        (
            400,
            sns_error(
                400,
                "InvalidAction",
                &format!("the lab does not emulate {action:?}"),
            ),
        )
    };
    lab.record(ApiRequest {
        service: "sns".into(),
        region,
        action,
        params: p.into_iter().collect(),
        status,
        at_ms: now_ms(),
    });
    response
}

fn list_subscriptions(lab: &LabState, region: &str, topic: &str) -> (u16, Response) {
    if topic != topic_arn(region) {
        return (404, sns_error(404, "NotFound", "Topic does not exist"));
    }
    let mut members = String::new();
    if let Some(r) = lab.region(region) {
        for f in lab.functions_in(&r.name) {
            // The lab subscribes the traffic switch only (the template's ElastiCacheEvents event).
            if f != "traffic-switch" || !lab.readiness.subscribed(region) {
                continue;
            }
            let endpoint = format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{f}");
            members.push_str(&format!(
                "<member><TopicArn>{topic}</TopicArn><Protocol>lambda</Protocol>\
                 <SubscriptionArn>{topic}:lab-{f}</SubscriptionArn><Owner>{ACCOUNT}</Owner>\
                 <Endpoint>{endpoint}</Endpoint></member>"
            ));
        }
    }
    let body = format!(
        "<ListSubscriptionsByTopicResponse xmlns=\"{SNS_NS}\"><ListSubscriptionsByTopicResult>\
         <Subscriptions>{members}</Subscriptions></ListSubscriptionsByTopicResult>\
         <ResponseMetadata><RequestId>lab-{}</RequestId></ResponseMetadata></ListSubscriptionsByTopicResponse>",
        now_ms()
    );
    (
        200,
        (StatusCode::OK, [("content-type", "text/xml")], body).into_response(),
    )
}
