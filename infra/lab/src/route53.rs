//! The Route 53 control plane the lab serves in place of moto: hosted zones, record sets, change
//! batches and change status, on the REST-XML protocol (API version 2013-04-01) exactly as
//! `aws-sdk-route53` sends and parses it, with a fault switch per operation, a change log and a
//! request log.
//!
//! What it owns: the zones and their record sets ([`Route53State`]), the HTTP surface
//! ([`router`], [`serve`]), and the switches a drill flips ([`Fault`], latency, propagation delay).
//!
//! How strict it is, where it matters to the functions:
//! - A change batch is checked change by change against a working copy and applied all or
//!   nothing. Like Route 53 it reports every failing change at once, as one `InvalidChangeBatch`
//!   whose message is the list `[first, second]`: a stale compare-and-swap (DELETE of what was
//!   read + CREATE of the new value) reports both the value mismatch and the "already exists".
//! - Names compare case-insensitively with the trailing dot optional; they are stored and
//!   returned lower-case, fully qualified, with Route 53's `\ooo` octal escapes.
//! - A DELETE must match TTL, every value (in any order) and every routing field exactly.
//! - CNAME exclusivity, CNAME at the apex, names outside the zone, the apex SOA/NS, and the
//!   request-level validation (empty batch, missing TTL, two values for a CNAME) are refused with
//!   Route 53's codes, statuses and wording.
//!
//! Not modelled: health checks, traffic policies, alias-target existence, delegation sets,
//! DNSSEC, tags, query logging; zone deletion; the 1000-record and 32 000-character batch limits.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::elasticache::{esc, signing_region};
use crate::{ApiRequest, LabError, lambda::now_ms};

const NS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
/// Route 53's page size for record sets: the default and the most it returns.
const MAX_RECORD_PAGE: usize = 300;
/// Route 53's page size for hosted zones.
const MAX_ZONE_PAGE: usize = 100;
const MAX_BODY: usize = 4 * 1024 * 1024;
const TRACE_HEADER: &str = "x-amzn-trace-id";
/// The record types Route 53 accepts (`RRType`).
const RR_TYPES: [&str; 17] = [
    "SOA", "A", "TXT", "NS", "CNAME", "MX", "NAPTR", "PTR", "SRV", "SPF", "AAAA", "CAA", "DS", "TLSA",
    "SSHFP", "SVCB", "HTTPS",
];

// ---------------------------------------------------------------------------------------------
// Public types

/// The operations the emulator serves, by their API names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    CreateHostedZone,
    GetHostedZone,
    ListHostedZones,
    ListHostedZonesByName,
    ListResourceRecordSets,
    ChangeResourceRecordSets,
    GetChange,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::CreateHostedZone,
        Operation::GetHostedZone,
        Operation::ListHostedZones,
        Operation::ListHostedZonesByName,
        Operation::ListResourceRecordSets,
        Operation::ChangeResourceRecordSets,
        Operation::GetChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateHostedZone => "CreateHostedZone",
            Operation::GetHostedZone => "GetHostedZone",
            Operation::ListHostedZones => "ListHostedZones",
            Operation::ListHostedZonesByName => "ListHostedZonesByName",
            Operation::ListResourceRecordSets => "ListResourceRecordSets",
            Operation::ChangeResourceRecordSets => "ChangeResourceRecordSets",
            Operation::GetChange => "GetChange",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation name the emulator does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Route 53 operation {0:?}")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

/// What an armed fault does to a request of its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 400, code `Throttling`, "Rate exceeded"; nothing applied.
    Throttling,
    /// HTTP 400, code `PriorRequestNotComplete`; nothing applied.
    PriorRequestNotComplete,
    /// HTTP 500, code `InternalFailure`; nothing applied.
    Error5xx,
    /// Accepted, never answered, never applied (the client's timeout ends it).
    Hang,
    /// Applied, then the connection is cut before the answer is written: the SDK sees a
    /// dispatch (I/O) failure, which it and the functions treat as transient. Served through a
    /// router mounted elsewhere (no cuttable connection), it hangs after applying instead.
    Lost,
    /// Answered and applied only after `ms`, and applied even if the client has gone by then.
    Slow { ms: u64 },
}

/// A fault armed on an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArmedFault {
    pub operation: Operation,
    pub fault: Fault,
    /// Requests it still applies to; `None` until cleared.
    pub remaining: Option<u32>,
}

/// Routing fields of a record set. A DELETE must match every one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Routing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_location: Option<GeoLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_value_answer: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_target: Option<AliasTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy_instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr_routing: Option<CidrRouting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_proximity: Option<GeoProximity>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GeoLocation {
    pub continent_code: Option<String>,
    pub country_code: Option<String>,
    pub subdivision_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasTarget {
    pub hosted_zone_id: String,
    /// Lower-case, fully qualified.
    pub dns_name: String,
    pub evaluate_target_health: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrRouting {
    pub collection_id: String,
    pub location_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoProximity {
    #[serde(rename = "AWSRegion")]
    pub aws_region: Option<String>,
    #[serde(rename = "LocalZoneGroup")]
    pub local_zone_group: Option<String>,
    #[serde(rename = "Coordinates")]
    pub coordinates: Option<Coordinates>,
    #[serde(rename = "Bias")]
    pub bias: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinates {
    pub latitude: String,
    pub longitude: String,
}

/// A record set as stored: the name lower-case and fully qualified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    pub ttl: Option<i64>,
    pub values: Vec<String>,
    #[serde(flatten)]
    pub routing: Routing,
}

/// A hosted zone, as the lab reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneInfo {
    /// Without the `/hostedzone/` prefix.
    pub id: String,
    pub name: String,
    pub private: bool,
    pub record_count: usize,
}

/// One change of an applied batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedEntry {
    pub action: String,
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub ttl: Option<i64>,
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
}

/// A change batch that was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedChange {
    /// When it was applied (epoch ms).
    pub at_ms: u64,
    /// Without the `/change/` prefix.
    pub change_id: String,
    pub zone: String,
    pub comment: Option<String>,
    /// The request's `x-amzn-trace-id`, which names the invocation that sent it.
    pub trace: Option<String>,
    /// Applied by the lab itself ([`Route53State::upsert`]), not through the API.
    pub direct: bool,
    pub changes: Vec<AppliedEntry>,
}

/// A Route 53 error: the code, HTTP status and message the service answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route53Error {
    /// Every failing change's message.
    InvalidChangeBatch(Vec<String>),
    InvalidInput(String),
    /// The zone id as asked for.
    NoSuchHostedZone(String),
    NoSuchChange(String),
    HostedZoneAlreadyExists(String),
    Throttling,
    PriorRequestNotComplete,
    InternalFailure,
}

impl Route53Error {
    pub fn code(&self) -> &'static str {
        match self {
            Route53Error::InvalidChangeBatch(_) => "InvalidChangeBatch",
            Route53Error::InvalidInput(_) => "InvalidInput",
            Route53Error::NoSuchHostedZone(_) => "NoSuchHostedZone",
            Route53Error::NoSuchChange(_) => "NoSuchChange",
            Route53Error::HostedZoneAlreadyExists(_) => "HostedZoneAlreadyExists",
            Route53Error::Throttling => "Throttling",
            Route53Error::PriorRequestNotComplete => "PriorRequestNotComplete",
            Route53Error::InternalFailure => "InternalFailure",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Route53Error::NoSuchHostedZone(_) | Route53Error::NoSuchChange(_) => 404,
            Route53Error::HostedZoneAlreadyExists(_) => 409,
            Route53Error::InternalFailure => 500,
            _ => 400,
        }
    }

    pub fn message(&self) -> String {
        match self {
            // Route 53 prints the list of messages, brackets and all, even for one.
            Route53Error::InvalidChangeBatch(m) => format!("[{}]", m.join(", ")),
            Route53Error::InvalidInput(m) => m.clone(),
            Route53Error::NoSuchHostedZone(id) => format!("No hosted zone found with ID: {id}"),
            Route53Error::NoSuchChange(id) => {
                format!("A change with the specified change ID does not exist: {id}")
            }
            Route53Error::HostedZoneAlreadyExists(reference) => format!(
                "A hosted zone has already been created with the specified caller reference: {reference}"
            ),
            Route53Error::Throttling => "Rate exceeded".to_owned(),
            Route53Error::PriorRequestNotComplete => {
                "The request was rejected because Route 53 was still processing a prior request.".to_owned()
            }
            Route53Error::InternalFailure => {
                "The request processing has failed because of an unknown error, exception or failure."
                    .to_owned()
            }
        }
    }

    fn sender(&self) -> bool {
        !matches!(self, Route53Error::InternalFailure)
    }
}

impl fmt::Display for Route53Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Route53Error {}

// ---------------------------------------------------------------------------------------------
// Names

/// A DNS name as Route 53 compares it: labels of lower-cased bytes, escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DnsName {
    labels: Vec<Vec<u8>>,
}

impl DnsName {
    fn parse(raw: &str) -> Self {
        let bytes = raw.trim().as_bytes();
        let mut labels = Vec::new();
        let mut label = Vec::new();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'\\' => {
                    let octal = bytes
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
                        .and_then(|d| std::str::from_utf8(d).ok())
                        .and_then(|d| u8::from_str_radix(d, 8).ok());
                    if let Some(v) = octal {
                        label.push(v.to_ascii_lowercase());
                        i += 4;
                    } else if let Some(&next) = bytes.get(i + 1) {
                        label.push(next.to_ascii_lowercase());
                        i += 2;
                    } else {
                        label.push(b'\\');
                        i += 1;
                    }
                }
                b'.' => {
                    labels.push(std::mem::take(&mut label));
                    i += 1;
                }
                other => {
                    label.push(other.to_ascii_lowercase());
                    i += 1;
                }
            }
        }
        if !label.is_empty() {
            labels.push(label);
        }
        Self { labels }
    }

    /// Lower-case, fully qualified, every byte outside `a-z 0-9 - _` as `\ooo`.
    fn render(&self) -> String {
        let mut out = String::new();
        for label in &self.labels {
            for &b in label {
                if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            out.push('.');
        }
        if out.is_empty() {
            out.push('.');
        }
        out
    }

    /// Route 53's listing order: labels reversed (`com.example.www.`), compared bytewise.
    fn sort_key(&self) -> Vec<u8> {
        let mut key = Vec::new();
        for label in self.labels.iter().rev() {
            key.extend_from_slice(label);
            key.push(b'.');
        }
        key
    }

    fn is_within(&self, zone: &DnsName) -> bool {
        self.labels.ends_with(&zone.labels)
    }
}

/// `name` as Route 53 stores and returns it: lower-case FQDN with a trailing dot.
pub fn normalise_name(name: &str) -> String {
    DnsName::parse(name).render()
}

/// A zone id without the `/hostedzone/` prefix.
fn bare_zone_id(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix("/hostedzone/")
        .or_else(|| id.strip_prefix("hostedzone/"))
        .unwrap_or(id)
}

fn bare_change_id(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix("/change/")
        .or_else(|| id.strip_prefix("change/"))
        .unwrap_or(id)
}

type RecordKey = (Vec<u8>, String, String);

fn key_of(name: &str, record_type: &str, set_identifier: Option<&str>) -> RecordKey {
    (
        DnsName::parse(name).sort_key(),
        record_type.to_owned(),
        set_identifier.unwrap_or_default().to_owned(),
    )
}

fn record_key(r: &RecordSet) -> RecordKey {
    key_of(&r.name, &r.record_type, r.set_identifier.as_deref())
}

fn random_id(prefix: char, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = String::with_capacity(len + 1);
    id.push(prefix);
    for _ in 0..len {
        let i = rand::random_range(0..ALPHABET.len());
        id.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'0')));
    }
    id
}

fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        rand::random::<u32>(),
        rand::random::<u16>(),
        rand::random::<u16>(),
        rand::random::<u16>(),
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The store: zones, records, changes. No I/O, no clock: `now_ms` is passed in.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Delete,
    Upsert,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::Delete => "DELETE",
            Action::Upsert => "UPSERT",
        }
    }
}

#[derive(Debug, Clone)]
struct ChangeInput {
    action: Action,
    set: RecordSet,
}

#[derive(Debug, Clone)]
struct Zone {
    id: String,
    name: DnsName,
    caller_reference: String,
    comment: Option<String>,
    vpc: Option<(String, String)>,
    name_servers: Vec<String>,
    records: BTreeMap<RecordKey, RecordSet>,
}

impl Zone {
    fn fqdn(&self) -> String {
        self.name.render()
    }

    fn info(&self) -> ZoneInfo {
        ZoneInfo {
            id: self.id.clone(),
            name: self.fqdn(),
            private: self.vpc.is_some(),
            record_count: self.records.len(),
        }
    }
}

#[derive(Debug, Clone)]
struct ChangeRecord {
    submitted_ms: u64,
    insync_ms: u64,
    comment: Option<String>,
}

impl ChangeRecord {
    fn status(&self, now_ms: u64) -> &'static str {
        if now_ms >= self.insync_ms {
            "INSYNC"
        } else {
            "PENDING"
        }
    }
}

#[derive(Debug, Default)]
struct Store {
    zones: BTreeMap<String, Zone>,
    changes: HashMap<String, ChangeRecord>,
}

struct NewZone {
    name: String,
    caller_reference: String,
    comment: Option<String>,
    vpc: Option<(String, String)>,
}

impl Store {
    fn zone(&self, id: &str) -> Result<&Zone, Route53Error> {
        self.zones
            .get(bare_zone_id(id))
            .ok_or_else(|| Route53Error::NoSuchHostedZone(bare_zone_id(id).to_owned()))
    }

    fn record_change(&mut self, now_ms: u64, propagation_ms: u64, comment: Option<String>) -> String {
        let id = random_id('C', 20);
        self.changes.insert(
            id.clone(),
            ChangeRecord {
                submitted_ms: now_ms,
                insync_ms: now_ms.saturating_add(propagation_ms),
                comment,
            },
        );
        id
    }

    fn create_zone(
        &mut self,
        z: NewZone,
        now_ms: u64,
        propagation_ms: u64,
    ) -> Result<(String, String), Route53Error> {
        if self
            .zones
            .values()
            .any(|existing| existing.caller_reference == z.caller_reference)
        {
            return Err(Route53Error::HostedZoneAlreadyExists(z.caller_reference));
        }
        let name = DnsName::parse(&z.name);
        if name.labels.is_empty() {
            return Err(Route53Error::InvalidInput(format!(
                "Invalid domain name: {}",
                z.name
            )));
        }
        let mut id = random_id('Z', 20);
        while self.zones.contains_key(&id) {
            id = random_id('Z', 20);
        }
        let name_servers = if z.vpc.is_some() {
            // Every private zone gets these four.
            vec![
                "ns-0.awsdns-00.com.".to_owned(),
                "ns-512.awsdns-00.net.".to_owned(),
                "ns-1024.awsdns-00.org.".to_owned(),
                "ns-1536.awsdns-00.co.uk.".to_owned(),
            ]
        } else {
            let n = rand::random_range(0..512u32);
            let set = n % 64;
            vec![
                format!("ns-{n}.awsdns-{set:02}.com."),
                format!("ns-{}.awsdns-{set:02}.net.", 512 + n),
                format!("ns-{}.awsdns-{set:02}.org.", 1024 + n),
                format!("ns-{}.awsdns-{set:02}.co.uk.", 1536 + n),
            ]
        };
        let apex = name.render();
        let soa_host = if z.vpc.is_some() {
            name_servers.last()
        } else {
            name_servers.first()
        }
        .cloned()
        .unwrap_or_default();
        let mut records = BTreeMap::new();
        for set in [
            RecordSet {
                name: apex.clone(),
                record_type: "NS".into(),
                set_identifier: None,
                ttl: Some(172_800),
                values: name_servers.clone(),
                routing: Routing::default(),
            },
            RecordSet {
                name: apex,
                record_type: "SOA".into(),
                set_identifier: None,
                ttl: Some(900),
                values: vec![format!(
                    "{soa_host} awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"
                )],
                routing: Routing::default(),
            },
        ] {
            records.insert(record_key(&set), set);
        }
        let change = self.record_change(now_ms, propagation_ms, None);
        self.zones.insert(
            id.clone(),
            Zone {
                id: id.clone(),
                name,
                caller_reference: z.caller_reference,
                comment: z.comment,
                vpc: z.vpc,
                name_servers,
                records,
            },
        );
        Ok((id, change))
    }

    /// Checks `changes` one by one against a working copy of the zone and applies them all, or
    /// none with every failing change's message.
    fn change(
        &mut self,
        zone_id: &str,
        changes: &[ChangeInput],
        comment: Option<String>,
        now_ms: u64,
        propagation_ms: u64,
    ) -> Result<String, Route53Error> {
        let zone = self
            .zones
            .get(bare_zone_id(zone_id))
            .ok_or_else(|| Route53Error::NoSuchHostedZone(bare_zone_id(zone_id).to_owned()))?;
        let working = check_batch(zone, changes)?;
        if let Some(zone) = self.zones.get_mut(bare_zone_id(zone_id)) {
            zone.records = working;
        }
        Ok(self.record_change(now_ms, propagation_ms, comment))
    }
}

fn values_match(a: &RecordSet, b: &RecordSet) -> bool {
    let mut x = a.values.clone();
    let mut y = b.values.clone();
    x.sort();
    y.sort();
    a.ttl == b.ttl && x == y && a.routing == b.routing
}

fn describe(set: &RecordSet) -> String {
    match &set.set_identifier {
        Some(id) => format!(
            "[name='{}', type='{}', set-identifier='{}']",
            set.name, set.record_type, id
        ),
        None => format!("[name='{}', type='{}']", set.name, set.record_type),
    }
}

/// The zone's records after `changes`, or every message for the changes that failed.
fn check_batch(zone: &Zone, changes: &[ChangeInput]) -> Result<BTreeMap<RecordKey, RecordSet>, Route53Error> {
    let mut working = zone.records.clone();
    let mut messages = Vec::new();
    let zone_fqdn = zone.fqdn();
    for change in changes {
        let set = &change.set;
        let name = DnsName::parse(&set.name);
        if !name.is_within(&zone.name) {
            messages.push(format!(
                "RRSet with DNS name {} is not permitted in zone {zone_fqdn}",
                set.name
            ));
            continue;
        }
        let key = record_key(set);
        if change.action == Action::Delete {
            match working.get(&key) {
                None => messages.push(format!(
                    "Tried to delete resource record set {} but it was not found",
                    describe(set)
                )),
                Some(current) if !values_match(current, set) => messages.push(format!(
                    "Tried to delete resource record set {} but the values provided do not match the current values",
                    describe(set)
                )),
                Some(_) => {
                    working.remove(&key);
                }
            }
            continue;
        }
        if set.record_type == "CNAME" && name == zone.name {
            messages.push(format!(
                "RRSet of type CNAME with DNS name {} is not permitted at apex in zone {zone_fqdn}",
                set.name
            ));
            continue;
        }
        if change.action == Action::Create && working.contains_key(&key) {
            messages.push(format!(
                "Tried to create resource record set {} but it already exists",
                describe(set)
            ));
            continue;
        }
        let sort = name.sort_key();
        let same_name = || {
            working
                .values()
                .filter(|r| DnsName::parse(&r.name).sort_key() == sort)
        };
        if set.record_type == "CNAME" {
            if same_name().any(|r| r.record_type != "CNAME") {
                messages.push(format!(
                    "RRSet of type CNAME with DNS name {} is not permitted as it conflicts with other records with the same DNS name in zone {zone_fqdn}",
                    set.name
                ));
                continue;
            }
        } else if same_name().any(|r| r.record_type == "CNAME") {
            messages.push(format!(
                "RRSet of type {} with DNS name {} is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone {zone_fqdn}",
                set.record_type, set.name
            ));
            continue;
        }
        working.insert(key, set.clone());
    }
    if messages.is_empty() {
        let apex = zone.name.sort_key();
        let at_apex = |t: &str| {
            working
                .values()
                .filter(|r| r.record_type == t && DnsName::parse(&r.name).sort_key() == apex)
                .count()
        };
        if at_apex("SOA") != 1 {
            messages.push("A HostedZone must contain exactly one SOA record.".to_owned());
        }
        if at_apex("NS") == 0 {
            messages.push("A HostedZone must contain at least one NS record for the zone itself.".to_owned());
        }
    }
    if messages.is_empty() {
        Ok(working)
    } else {
        Err(Route53Error::InvalidChangeBatch(messages))
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies, as the SDK serialises them.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeRequestXml {
    change_batch: ChangeBatchXml,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeBatchXml {
    comment: Option<String>,
    changes: Option<ChangesXml>,
}

#[derive(Debug, Default, Deserialize)]
struct ChangesXml {
    #[serde(rename = "Change", default)]
    change: Vec<ChangeXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeXml {
    action: String,
    resource_record_set: RecordSetXml,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordSetXml {
    name: String,
    #[serde(rename = "Type")]
    record_type: String,
    set_identifier: Option<String>,
    weight: Option<i64>,
    region: Option<String>,
    geo_location: Option<GeoLocation>,
    failover: Option<String>,
    multi_value_answer: Option<bool>,
    #[serde(rename = "TTL")]
    ttl: Option<i64>,
    resource_records: Option<ResourceRecordsXml>,
    alias_target: Option<AliasTargetXml>,
    health_check_id: Option<String>,
    traffic_policy_instance_id: Option<String>,
    cidr_routing_config: Option<CidrRouting>,
    geo_proximity_location: Option<GeoProximity>,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceRecordsXml {
    #[serde(rename = "ResourceRecord", default)]
    record: Vec<ResourceRecordXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceRecordXml {
    value: String,
}

#[derive(Debug, Deserialize)]
struct AliasTargetXml {
    #[serde(rename = "HostedZoneId")]
    hosted_zone_id: String,
    #[serde(rename = "DNSName")]
    dns_name: String,
    #[serde(rename = "EvaluateTargetHealth")]
    evaluate_target_health: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateZoneXml {
    name: String,
    caller_reference: Option<String>,
    #[serde(rename = "VPC")]
    vpc: Option<VpcXml>,
    hosted_zone_config: Option<ZoneConfigXml>,
}

#[derive(Debug, Deserialize)]
struct VpcXml {
    #[serde(rename = "VPCRegion")]
    region: Option<String>,
    #[serde(rename = "VPCId")]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ZoneConfigXml {
    comment: Option<String>,
}

fn parse_xml<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Route53Error> {
    let text =
        std::str::from_utf8(body).map_err(|e| Route53Error::InvalidInput(format!("Invalid XML ; {e}")))?;
    quick_xml::de::from_str(text).map_err(|e| Route53Error::InvalidInput(format!("Invalid XML ; {e}")))
}

fn enumeration_error(value: &str, allowed: &[&str]) -> Route53Error {
    Route53Error::InvalidInput(format!(
        "Invalid XML ; cvc-enumeration-valid: Value '{value}' is not facet-valid with respect to enumeration '[{}]'. It must be a value from the enumeration.",
        allowed.join(", ")
    ))
}

/// Request-level validation, as Route 53 does it before looking at the zone: the first problem
/// is the answer (`InvalidInput`), unlike the zone checks that report every change.
fn parse_changes(body: &[u8]) -> Result<(Vec<ChangeInput>, Option<String>), Route53Error> {
    let req: ChangeRequestXml = parse_xml(body)?;
    let changes = req.change_batch.changes.unwrap_or_default().change;
    if changes.is_empty() {
        return Err(Route53Error::InvalidInput(format!(
            "Invalid XML ; cvc-complex-type.2.4.b: The content of element 'Changes' is not complete. One of '{{\"{NS}\":Change}}' is expected."
        )));
    }
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let action = match c.action.as_str() {
            "CREATE" => Action::Create,
            "DELETE" => Action::Delete,
            "UPSERT" => Action::Upsert,
            other => return Err(enumeration_error(other, &["CREATE", "DELETE", "UPSERT"])),
        };
        let r = c.resource_record_set;
        if !RR_TYPES.contains(&r.record_type.as_str()) {
            return Err(enumeration_error(&r.record_type, &RR_TYPES));
        }
        let values: Option<Vec<String>> = r
            .resource_records
            .map(|rr| rr.record.into_iter().map(|v| v.value).collect());
        let plain = r.ttl.is_some() && values.as_ref().is_some_and(|v| !v.is_empty());
        let forms = usize::from(r.alias_target.is_some())
            + usize::from(plain)
            + usize::from(r.traffic_policy_instance_id.is_some());
        if forms != 1 {
            return Err(Route53Error::InvalidInput(format!(
                "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found {} in Change with [Action={}, Name={}, Type={}, SetIdentifier={}]",
                if forms == 0 { "none" } else { "more than one" },
                action.as_str(),
                r.name,
                r.record_type,
                r.set_identifier.as_deref().unwrap_or("null")
            )));
        }
        let name = normalise_name(&r.name);
        let values = values.unwrap_or_default();
        if r.record_type == "CNAME" && values.len() > 1 {
            return Err(Route53Error::InvalidChangeBatch(vec![format!(
                "RRSet of type CNAME with DNS name {name} is not permitted because it has more than one value"
            )]));
        }
        out.push(ChangeInput {
            action,
            set: RecordSet {
                name,
                record_type: r.record_type,
                set_identifier: r.set_identifier,
                ttl: r.ttl,
                values,
                routing: Routing {
                    weight: r.weight,
                    region: r.region,
                    geo_location: r.geo_location,
                    failover: r.failover,
                    multi_value_answer: r.multi_value_answer,
                    health_check_id: r.health_check_id,
                    alias_target: r.alias_target.map(|a| AliasTarget {
                        hosted_zone_id: bare_zone_id(&a.hosted_zone_id).to_owned(),
                        dns_name: normalise_name(&a.dns_name),
                        evaluate_target_health: a.evaluate_target_health,
                    }),
                    traffic_policy_instance_id: r.traffic_policy_instance_id,
                    cidr_routing: r.cidr_routing_config,
                    geo_proximity: r.geo_proximity_location,
                },
            },
        });
    }
    Ok((out, req.change_batch.comment))
}

// ---------------------------------------------------------------------------------------------
// Response bodies.

fn el(name: &str, value: impl fmt::Display) -> String {
    format!("<{name}>{}</{name}>", esc(&value.to_string()))
}

fn opt_el(name: &str, value: Option<impl fmt::Display>) -> String {
    value.map(|v| el(name, v)).unwrap_or_default()
}

fn record_xml(r: &RecordSet) -> String {
    let g = &r.routing;
    let values: String = r
        .values
        .iter()
        .map(|v| format!("<ResourceRecord>{}</ResourceRecord>", el("Value", v)))
        .collect();
    let mut x = String::from("<ResourceRecordSet>");
    x.push_str(&el("Name", &r.name));
    x.push_str(&el("Type", &r.record_type));
    x.push_str(&opt_el("SetIdentifier", r.set_identifier.as_ref()));
    x.push_str(&opt_el("Weight", g.weight));
    x.push_str(&opt_el("Region", g.region.as_ref()));
    if let Some(geo) = &g.geo_location {
        x.push_str(&format!(
            "<GeoLocation>{}{}{}</GeoLocation>",
            opt_el("ContinentCode", geo.continent_code.as_ref()),
            opt_el("CountryCode", geo.country_code.as_ref()),
            opt_el("SubdivisionCode", geo.subdivision_code.as_ref())
        ));
    }
    x.push_str(&opt_el("Failover", g.failover.as_ref()));
    x.push_str(&opt_el("MultiValueAnswer", g.multi_value_answer));
    x.push_str(&opt_el("TTL", r.ttl));
    if !r.values.is_empty() {
        x.push_str(&format!("<ResourceRecords>{values}</ResourceRecords>"));
    }
    if let Some(a) = &g.alias_target {
        x.push_str(&format!(
            "<AliasTarget>{}{}{}</AliasTarget>",
            el("HostedZoneId", &a.hosted_zone_id),
            el("DNSName", &a.dns_name),
            el("EvaluateTargetHealth", a.evaluate_target_health)
        ));
    }
    x.push_str(&opt_el("HealthCheckId", g.health_check_id.as_ref()));
    x.push_str(&opt_el(
        "TrafficPolicyInstanceId",
        g.traffic_policy_instance_id.as_ref(),
    ));
    if let Some(c) = &g.cidr_routing {
        x.push_str(&format!(
            "<CidrRoutingConfig>{}{}</CidrRoutingConfig>",
            el("CollectionId", &c.collection_id),
            el("LocationName", &c.location_name)
        ));
    }
    if let Some(p) = &g.geo_proximity {
        let coordinates = p
            .coordinates
            .as_ref()
            .map(|c| {
                format!(
                    "<Coordinates>{}{}</Coordinates>",
                    el("Latitude", &c.latitude),
                    el("Longitude", &c.longitude)
                )
            })
            .unwrap_or_default();
        x.push_str(&format!(
            "<GeoProximityLocation>{}{}{coordinates}{}</GeoProximityLocation>",
            opt_el("AWSRegion", p.aws_region.as_ref()),
            opt_el("LocalZoneGroup", p.local_zone_group.as_ref()),
            opt_el("Bias", p.bias)
        ));
    }
    x.push_str("</ResourceRecordSet>");
    x
}

fn zone_xml(z: &Zone) -> String {
    format!(
        "<HostedZone>{}{}{}<Config>{}{}</Config>{}</HostedZone>",
        el("Id", format!("/hostedzone/{}", z.id)),
        el("Name", z.fqdn()),
        el("CallerReference", &z.caller_reference),
        opt_el("Comment", z.comment.as_ref()),
        el("PrivateZone", z.vpc.is_some()),
        el("ResourceRecordSetCount", z.records.len())
    )
}

fn vpc_xml(region: &str, id: &str) -> String {
    format!("<VPC>{}{}</VPC>", el("VPCRegion", region), el("VPCId", id))
}

fn delegation_xml(z: &Zone) -> String {
    let servers: String = z
        .name_servers
        .iter()
        .map(|s| el("NameServer", s.trim_end_matches('.')))
        .collect();
    format!("<DelegationSet><NameServers>{servers}</NameServers></DelegationSet>")
}

fn change_info_xml(id: &str, c: &ChangeRecord, now_ms: u64, fresh: bool) -> String {
    // Route 53 answers a change it just accepted with PENDING, whatever happens next.
    let status = if fresh { "PENDING" } else { c.status(now_ms) };
    format!(
        "<ChangeInfo>{}{}{}{}</ChangeInfo>",
        el("Id", format!("/change/{id}")),
        el("Status", status),
        el("SubmittedAt", timestamp(c.submitted_ms)),
        opt_el("Comment", c.comment.as_ref())
    )
}

/// A successful answer, before it becomes an HTTP response.
struct Answer {
    status: StatusCode,
    body: String,
    location: Option<String>,
    params: Vec<(String, String)>,
}

impl Answer {
    fn ok(root: &str, inner: String) -> Self {
        Self {
            status: StatusCode::OK,
            body: format!("<?xml version=\"1.0\"?>\n<{root} xmlns=\"{NS}\">{inner}</{root}>"),
            location: None,
            params: Vec::new(),
        }
    }

    fn param(mut self, k: &str, v: impl Into<String>) -> Self {
        self.params.push((k.to_owned(), v.into()));
        self
    }
}

fn xml_response(status: StatusCode, body: String, request_id: &str, location: Option<&str>) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert("location", v);
    }
    res
}

fn error_response(e: &Route53Error) -> Response {
    let rid = request_id();
    let body = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NS}\"><Error><Type>{}</Type>{}{}</Error>{}</ErrorResponse>",
        if e.sender() { "Sender" } else { "Receiver" },
        el("Code", e.code()),
        el("Message", e.message()),
        el("RequestId", &rid)
    );
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(status, body, &rid, None)
}

// ---------------------------------------------------------------------------------------------
// The shared state and its control surface.

#[derive(Debug, Clone, Copy)]
struct FaultSlot {
    fault: Fault,
    remaining: Option<u32>,
}

/// The emulator: zones, switches and logs. Share it as `Arc<Route53State>`.
#[derive(Debug, Default)]
pub struct Route53State {
    store: Mutex<Store>,
    faults: Mutex<BTreeMap<Operation, FaultSlot>>,
    latency: Mutex<BTreeMap<Operation, Duration>>,
    propagation_ms: AtomicU64,
    changes: Mutex<Vec<AppliedChange>>,
    requests: Mutex<Vec<ApiRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Route53State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `fault` on `operation` for the next `times` requests, or until cleared (`None`).
    /// One fault per operation: arming replaces the previous one.
    pub fn set_fault(&self, operation: Operation, fault: Fault, times: Option<u32>) {
        let mut faults = lock(&self.faults);
        if times == Some(0) {
            faults.remove(&operation);
        } else {
            faults.insert(
                operation,
                FaultSlot {
                    fault,
                    remaining: times,
                },
            );
        }
    }

    pub fn clear_fault(&self, operation: Operation) {
        lock(&self.faults).remove(&operation);
    }

    /// Adds `latency` before every request of `operation` is handled (zero removes it).
    pub fn set_latency(&self, operation: Operation, latency: Duration) {
        let mut l = lock(&self.latency);
        if latency.is_zero() {
            l.remove(&operation);
        } else {
            l.insert(operation, latency);
        }
    }

    /// Disarms every fault and removes every added latency.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
        lock(&self.latency).clear();
    }

    pub fn faults(&self) -> Vec<ArmedFault> {
        lock(&self.faults)
            .iter()
            .map(|(op, slot)| ArmedFault {
                operation: *op,
                fault: slot.fault,
                remaining: slot.remaining,
            })
            .collect()
    }

    pub fn latencies(&self) -> BTreeMap<Operation, Duration> {
        lock(&self.latency).clone()
    }

    /// How long after it is applied a change stays `PENDING` (default zero).
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.propagation_ms.store(millis(delay), AtomicOrdering::Relaxed);
    }

    pub fn propagation_delay(&self) -> Duration {
        Duration::from_millis(self.propagation_ms.load(AtomicOrdering::Relaxed))
    }

    /// Every applied change batch, oldest first.
    pub fn changes(&self) -> Vec<AppliedChange> {
        lock(&self.changes).clone()
    }

    /// Every request received, oldest first (service `route53`). `status` 0: never answered.
    pub fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.requests).clone()
    }

    /// Creates a zone (private ones in `vpc-lab`, us-east-1); returns its id without prefix.
    pub fn create_zone(&self, name: &str, private: bool) -> Result<String, Route53Error> {
        let z = NewZone {
            name: name.to_owned(),
            caller_reference: format!("lab-{}-{}", now_ms(), rand::random::<u32>()),
            comment: None,
            vpc: private.then(|| ("us-east-1".to_owned(), "vpc-lab".to_owned())),
        };
        let propagation = self.propagation_ms.load(AtomicOrdering::Relaxed);
        lock(&self.store)
            .create_zone(z, now_ms(), propagation)
            .map(|(id, _)| id)
    }

    /// Creates or replaces a simple record set, bypassing HTTP (logged as a direct change).
    /// Returns the change id.
    pub fn upsert(
        &self,
        zone: &str,
        name: &str,
        record_type: &str,
        ttl: i64,
        values: &[&str],
    ) -> Result<String, Route53Error> {
        if !RR_TYPES.contains(&record_type) {
            return Err(enumeration_error(record_type, &RR_TYPES));
        }
        let change = ChangeInput {
            action: Action::Upsert,
            set: RecordSet {
                name: normalise_name(name),
                record_type: record_type.to_owned(),
                set_identifier: None,
                ttl: Some(ttl),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
                routing: Routing::default(),
            },
        };
        self.apply(zone, &[change], None, None, true)
    }

    /// The first record set named `name` of `record_type` (any routing), normalised.
    pub fn record(&self, zone: &str, name: &str, record_type: &str) -> Option<RecordSet> {
        let store = lock(&self.store);
        let z = store.zone(zone).ok()?;
        let start = key_of(name, record_type, None);
        z.records
            .range(start.clone()..)
            .next()
            .filter(|(k, _)| k.0 == start.0 && k.1 == start.1)
            .map(|(_, r)| r.clone())
    }

    /// Every record set of the zone, in Route 53's listing order.
    pub fn records(&self, zone: &str) -> Result<Vec<RecordSet>, Route53Error> {
        let store = lock(&self.store);
        Ok(store.zone(zone)?.records.values().cloned().collect())
    }

    pub fn zones(&self) -> Vec<ZoneInfo> {
        lock(&self.store).zones.values().map(Zone::info).collect()
    }

    /// `PENDING` or `INSYNC`, as `GetChange` would answer now.
    pub fn change_status(&self, change_id: &str) -> Option<&'static str> {
        let store = lock(&self.store);
        store
            .changes
            .get(bare_change_id(change_id))
            .map(|c| c.status(now_ms()))
    }

    fn apply(
        &self,
        zone: &str,
        changes: &[ChangeInput],
        comment: Option<String>,
        trace: Option<String>,
        direct: bool,
    ) -> Result<String, Route53Error> {
        let propagation = self.propagation_ms.load(AtomicOrdering::Relaxed);
        let at_ms = now_ms();
        // The change log is written under the store's lock so its order is the order applied.
        let mut store = lock(&self.store);
        let id = store.change(zone, changes, comment.clone(), at_ms, propagation)?;
        lock(&self.changes).push(AppliedChange {
            at_ms,
            change_id: id.clone(),
            zone: bare_zone_id(zone).to_owned(),
            comment,
            trace,
            direct,
            changes: changes
                .iter()
                .map(|c| AppliedEntry {
                    action: c.action.as_str().to_owned(),
                    name: c.set.name.clone(),
                    record_type: c.set.record_type.clone(),
                    ttl: c.set.ttl,
                    values: c.set.values.clone(),
                    set_identifier: c.set.set_identifier.clone(),
                })
                .collect(),
        });
        Ok(id)
    }

    fn take_fault(&self, op: Operation) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let slot = faults.get_mut(&op)?;
        let fault = slot.fault;
        if let Some(n) = slot.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(&op);
            }
        }
        Some(fault)
    }

    fn log(&self, op: Operation, region: &str, params: BTreeMap<String, String>, status: u16, at_ms: u64) {
        lock(&self.requests).push(ApiRequest {
            service: "route53".into(),
            region: region.to_owned(),
            action: op.as_str().to_owned(),
            params,
            status,
            at_ms,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

/// One request, owned, so it can be finished by a task that outlives the connection.
struct Call {
    op: Operation,
    id: Option<String>,
    query: HashMap<String, String>,
    body: Vec<u8>,
    trace: Option<String>,
}

fn query_max(q: &HashMap<String, String>, default: usize, cap: usize) -> Result<usize, Route53Error> {
    match q.get("maxitems") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(cap)),
            _ => Err(Route53Error::InvalidInput(format!(
                "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must be a positive integer"
            ))),
        },
    }
}

fn dispatch(state: &Route53State, call: &Call) -> Result<Answer, Route53Error> {
    let id = call.id.as_deref().unwrap_or_default();
    let now = now_ms();
    let propagation = state.propagation_ms.load(AtomicOrdering::Relaxed);
    match call.op {
        Operation::CreateHostedZone => {
            let req: CreateZoneXml = parse_xml(&call.body)?;
            let caller_reference = req
                .caller_reference
                .filter(|c| !c.is_empty())
                .ok_or_else(|| Route53Error::InvalidInput("CallerReference is required".into()))?;
            let vpc = match req.vpc {
                Some(VpcXml {
                    region: Some(region),
                    id: Some(vpc_id),
                }) => Some((region, vpc_id)),
                Some(_) => return Err(Route53Error::InvalidInput("Invalid or missing VPC Id.".into())),
                None => None,
            };
            let mut store = lock(&state.store);
            let (zone_id, change_id) = store.create_zone(
                NewZone {
                    name: req.name,
                    caller_reference,
                    comment: req.hosted_zone_config.and_then(|c| c.comment),
                    vpc,
                },
                now,
                propagation,
            )?;
            let zone = store.zone(&zone_id)?;
            let change = store
                .changes
                .get(&change_id)
                .ok_or(Route53Error::InternalFailure)?;
            let tail = match &zone.vpc {
                Some((region, vpc_id)) => vpc_xml(region, vpc_id),
                None => delegation_xml(zone),
            };
            let mut answer = Answer::ok(
                "CreateHostedZoneResponse",
                format!(
                    "{}{}{tail}",
                    zone_xml(zone),
                    change_info_xml(&change_id, change, now, true)
                ),
            )
            .param("zone", zone_id.clone())
            .param("change", change_id);
            answer.status = StatusCode::CREATED;
            answer.location = Some(format!(
                "https://route53.amazonaws.com/2013-04-01/hostedzone/{zone_id}"
            ));
            Ok(answer)
        }
        Operation::GetHostedZone => {
            let store = lock(&state.store);
            let zone = store.zone(id)?;
            let tail = match &zone.vpc {
                Some((region, vpc_id)) => format!("<VPCs>{}</VPCs>", vpc_xml(region, vpc_id)),
                None => delegation_xml(zone),
            };
            Ok(Answer::ok(
                "GetHostedZoneResponse",
                format!("{}{tail}", zone_xml(zone)),
            ))
        }
        Operation::ListHostedZones => {
            let max = query_max(&call.query, MAX_ZONE_PAGE, MAX_ZONE_PAGE)?;
            let marker = call.query.get("marker").map(|m| bare_zone_id(m).to_owned());
            let private_only = call
                .query
                .get("hostedzonetype")
                .is_some_and(|t| t == "PrivateHostedZone");
            let store = lock(&state.store);
            let mut zones = store
                .zones
                .values()
                .filter(|z| !private_only || z.vpc.is_some())
                .filter(|z| marker.as_ref().is_none_or(|m| &z.id >= m));
            let page: Vec<&Zone> = zones.by_ref().take(max).collect();
            let next = zones.next();
            Ok(Answer::ok(
                "ListHostedZonesResponse",
                format!(
                    "<HostedZones>{}</HostedZones>{}{}{}{}",
                    page.iter().map(|z| zone_xml(z)).collect::<String>(),
                    el("Marker", marker.unwrap_or_default()),
                    el("IsTruncated", next.is_some()),
                    opt_el("NextMarker", next.map(|z| &z.id)),
                    el("MaxItems", max)
                ),
            ))
        }
        Operation::ListHostedZonesByName => {
            let max = query_max(&call.query, MAX_ZONE_PAGE, MAX_ZONE_PAGE)?;
            let dns_name = call.query.get("dnsname");
            let zone_id = call.query.get("hostedzoneid").map(|z| bare_zone_id(z).to_owned());
            if zone_id.is_some() && dns_name.is_none() {
                return Err(Route53Error::InvalidInput(
                    "The DNSName must be specified when HostedZoneId is specified.".into(),
                ));
            }
            let start = dns_name.map(|n| (DnsName::parse(n).sort_key(), zone_id.clone().unwrap_or_default()));
            let store = lock(&state.store);
            let mut ordered: Vec<&Zone> = store.zones.values().collect();
            ordered.sort_by(|a, b| (a.name.sort_key(), &a.id).cmp(&(b.name.sort_key(), &b.id)));
            let mut zones = ordered.into_iter().filter(|z| {
                start
                    .as_ref()
                    .is_none_or(|s| (z.name.sort_key(), z.id.clone()) >= *s)
            });
            let page: Vec<&Zone> = zones.by_ref().take(max).collect();
            let next = zones.next();
            Ok(Answer::ok(
                "ListHostedZonesByNameResponse",
                format!(
                    "<HostedZones>{}</HostedZones>{}{}{}{}{}{}",
                    page.iter().map(|z| zone_xml(z)).collect::<String>(),
                    opt_el("DNSName", dns_name),
                    opt_el("HostedZoneId", zone_id.as_ref()),
                    el("IsTruncated", next.is_some()),
                    opt_el("NextDNSName", next.map(|z| z.fqdn())),
                    opt_el("NextHostedZoneId", next.map(|z| &z.id)),
                    el("MaxItems", max)
                ),
            ))
        }
        Operation::ListResourceRecordSets => {
            let max = query_max(&call.query, MAX_RECORD_PAGE, MAX_RECORD_PAGE)?;
            let name = call.query.get("name");
            let record_type = call.query.get("type");
            let identifier = call.query.get("identifier");
            if let Some(t) = record_type {
                if name.is_none() {
                    return Err(Route53Error::InvalidInput(
                        "The input is not valid: a record type requires a record name".into(),
                    ));
                }
                if !RR_TYPES.contains(&t.as_str()) {
                    return Err(enumeration_error(t, &RR_TYPES));
                }
            }
            if identifier.is_some() && record_type.is_none() {
                return Err(Route53Error::InvalidInput(
                    "The input is not valid: a record identifier requires a record type".into(),
                ));
            }
            let start = name.map(|n| {
                key_of(
                    n,
                    record_type.map(String::as_str).unwrap_or_default(),
                    identifier.map(String::as_str),
                )
            });
            let store = lock(&state.store);
            let zone = store.zone(id)?;
            let mut records: Box<dyn Iterator<Item = &RecordSet>> = match start {
                Some(s) => Box::new(zone.records.range(s..).map(|(_, r)| r)),
                None => Box::new(zone.records.values()),
            };
            let page: Vec<&RecordSet> = records.by_ref().take(max).collect();
            let next = records.next();
            let next_xml = next
                .map(|n| {
                    format!(
                        "{}{}{}",
                        el("NextRecordName", &n.name),
                        el("NextRecordType", &n.record_type),
                        opt_el("NextRecordIdentifier", n.set_identifier.as_ref())
                    )
                })
                .unwrap_or_default();
            Ok(Answer::ok(
                "ListResourceRecordSetsResponse",
                format!(
                    "<ResourceRecordSets>{}</ResourceRecordSets>{}{next_xml}{}",
                    page.iter().map(|r| record_xml(r)).collect::<String>(),
                    el("IsTruncated", next.is_some()),
                    el("MaxItems", max)
                ),
            )
            .param("returned", page.len().to_string()))
        }
        Operation::ChangeResourceRecordSets => {
            // An unknown zone is reported before the body is looked at, as Route 53 does.
            lock(&state.store).zone(id)?;
            let (changes, comment) = parse_changes(&call.body)?;
            let change_id = state.apply(id, &changes, comment, call.trace.clone(), false)?;
            let store = lock(&state.store);
            let change = store
                .changes
                .get(&change_id)
                .ok_or(Route53Error::InternalFailure)?;
            Ok(Answer::ok(
                "ChangeResourceRecordSetsResponse",
                change_info_xml(&change_id, change, now_ms(), true),
            )
            .param("change", change_id))
        }
        Operation::GetChange => {
            let store = lock(&state.store);
            let cid = bare_change_id(id);
            let change = store
                .changes
                .get(cid)
                .ok_or_else(|| Route53Error::NoSuchChange(cid.to_owned()))?;
            let status = change.status(now_ms());
            Ok(
                Answer::ok("GetChangeResponse", change_info_xml(cid, change, now_ms(), false))
                    .param("status", status),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// A connection the `Lost` fault can cut: once cut, reads and writes fail, hyper drops it and
/// the client sees the connection close before any answer.
struct CutStream {
    inner: TcpStream,
    cut: Arc<AtomicBool>,
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the lab (Lost fault)",
    )
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.cut.load(AtomicOrdering::Acquire) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.cut.load(AtomicOrdering::Acquire) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cut.load(AtomicOrdering::Acquire) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct CutListener(TcpListener);

impl Listener for CutListener {
    type Io = CutStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    let _ = inner.set_nodelay(true);
                    return (
                        CutStream {
                            inner,
                            cut: Arc::new(AtomicBool::new(false)),
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: wait rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The request's connection, as the handler sees it.
#[derive(Clone)]
struct Conn {
    cut: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, CutListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, CutListener>) -> Self {
        Self {
            cut: Arc::clone(&stream.io().cut),
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn handle(state: Arc<Route53State>, op: Operation, id: Option<String>, req: Request) -> Response {
    let received_ms = now_ms();
    let (parts, body) = req.into_parts();
    let conn = parts.extensions.get::<ConnectInfo<Conn>>().map(|c| c.0.clone());
    let trace = header(&parts.headers, TRACE_HEADER);
    let region = signing_region(&parts.headers).unwrap_or_else(|| "us-east-1".into());
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => return error_response(&Route53Error::InvalidInput(format!("unreadable body: {e}"))),
    };
    let fault = state.take_fault(op);
    let latency = lock(&state.latency).get(&op).copied().unwrap_or_default();

    let mut params: BTreeMap<String, String> = query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match (op, &id) {
        (Operation::GetChange, Some(c)) => {
            params.insert("change".into(), bare_change_id(c).to_owned());
        }
        (_, Some(z)) => {
            params.insert("zone".into(), bare_zone_id(z).to_owned());
        }
        _ => {}
    }
    if let Some(t) = &trace {
        params.insert("trace".into(), t.clone());
    }
    if let Some(f) = fault {
        params.insert(
            "fault".into(),
            serde_json::to_value(f)
                .map(|v| match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_default(),
        );
    }

    if fault == Some(Fault::Hang) {
        state.log(op, &region, params, 0, received_ms);
        return std::future::pending().await;
    }

    let slow = match fault {
        Some(Fault::Slow { ms }) => Duration::from_millis(ms),
        _ => Duration::ZERO,
    };
    let delay = latency + slow;
    let call = Call {
        op,
        id,
        query,
        body,
        trace,
    };
    // Once read, a request is finished by its own task, as a server would: a client that gives
    // up (drops the connection) does not stop a slow change from landing.
    let worker_state = Arc::clone(&state);
    let worker = tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = match fault {
            Some(Fault::Throttling) => Err(Route53Error::Throttling),
            Some(Fault::PriorRequestNotComplete) => Err(Route53Error::PriorRequestNotComplete),
            Some(Fault::Error5xx) => Err(Route53Error::InternalFailure),
            _ => dispatch(&worker_state, &call),
        };
        let status = match &result {
            Ok(a) => a.status.as_u16(),
            Err(e) => e.status(),
        };
        if let Ok(a) = &result {
            params.extend(a.params.iter().cloned());
        }
        if let Err(e) = &result {
            params.insert("error".into(), e.code().to_owned());
        }
        worker_state.log(call.op, &region, params, status, received_ms);
        result
    });
    let result = worker.await.unwrap_or(Err(Route53Error::InternalFailure));

    if fault == Some(Fault::Lost) {
        match conn {
            Some(c) => c.cut.store(true, AtomicOrdering::Release),
            None => return std::future::pending().await,
        }
    }
    match result {
        Ok(a) => {
            let rid = request_id();
            xml_response(a.status, a.body, &rid, a.location.as_deref())
        }
        Err(e) => error_response(&e),
    }
}

/// The Route 53 API routes. Served by [`serve`], the `Lost` fault cuts the connection; mounted
/// in another server it hangs after applying instead.
pub fn router(state: Arc<Route53State>) -> Router {
    type S = State<Arc<Route53State>>;
    let with_id =
        |op: Operation| move |State(s): S, Path(id): Path<String>, req: Request| handle(s, op, Some(id), req);
    let plain = |op: Operation| move |State(s): S, req: Request| handle(s, op, None, req);
    Router::new()
        .route(
            "/2013-04-01/hostedzone",
            post(plain(Operation::CreateHostedZone)).get(plain(Operation::ListHostedZones)),
        )
        .route(
            "/2013-04-01/hostedzonesbyname",
            get(plain(Operation::ListHostedZonesByName)),
        )
        .route(
            "/2013-04-01/hostedzone/{id}",
            get(with_id(Operation::GetHostedZone)),
        )
        .route(
            "/2013-04-01/hostedzone/{id}/rrset",
            post(with_id(Operation::ChangeResourceRecordSets))
                .get(with_id(Operation::ListResourceRecordSets)),
        )
        // Older SDKs put a slash after `rrset`.
        .route(
            "/2013-04-01/hostedzone/{id}/rrset/",
            post(with_id(Operation::ChangeResourceRecordSets))
                .get(with_id(Operation::ListResourceRecordSets)),
        )
        .route("/2013-04-01/change/{id}", get(with_id(Operation::GetChange)))
        .with_state(state)
}

/// Serves the API on 127.0.0.1 (an ephemeral port); returns its URL and the server task.
pub async fn serve(state: Arc<Route53State>) -> Result<(String, JoinHandle<()>), LabError> {
    let io = |e: io::Error| LabError::Io(format!("route 53 emulator: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let app = router(state).into_make_service_with_connect_info::<Conn>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(CutListener(listener), app).await;
    });
    Ok((format!("http://{addr}"), task))
}
