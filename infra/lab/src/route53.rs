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

use crate::wire::{esc, signing_region};
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
    /// When the request arrived (epoch ms); a slow change is applied later.
    pub received_ms: u64,
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
        self.apply(zone, &[change], None, None, true, None)
    }

    /// Replaces the simple record set `name`/`from_type` with one of `to_type` in one atomic batch
    /// (DELETE then CREATE), bypassing HTTP (logged as a direct change): how the lab turns the
    /// writer CNAME into an A record, and back. Returns the change id.
    pub fn retype(
        &self,
        zone: &str,
        name: &str,
        from_type: &str,
        to_type: &str,
        ttl: i64,
        values: &[&str],
    ) -> Result<String, Route53Error> {
        if !RR_TYPES.contains(&to_type) {
            return Err(enumeration_error(to_type, &RR_TYPES));
        }
        let mut changes = Vec::new();
        if let Some(existing) = self.record(zone, name, from_type) {
            changes.push(ChangeInput {
                action: Action::Delete,
                set: existing,
            });
        }
        changes.push(ChangeInput {
            action: Action::Create,
            set: RecordSet {
                name: normalise_name(name),
                record_type: to_type.to_owned(),
                set_identifier: None,
                ttl: Some(ttl),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
                routing: Routing::default(),
            },
        });
        self.apply(zone, &changes, None, None, true, None)
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
        received_ms: Option<u64>,
    ) -> Result<String, Route53Error> {
        let propagation = self.propagation_ms.load(AtomicOrdering::Relaxed);
        let at_ms = now_ms();
        // The change log is written under the store's lock so its order is the order applied.
        let mut store = lock(&self.store);
        let id = store.change(zone, changes, comment.clone(), at_ms, propagation)?;
        lock(&self.changes).push(AppliedChange {
            received_ms: received_ms.unwrap_or(at_ms),
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
    received_ms: u64,
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
            let change_id = state.apply(
                id,
                &changes,
                comment,
                call.trace.clone(),
                false,
                Some(call.received_ms),
            )?;
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
        received_ms,
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use aws_sdk_route53::Client;
    use aws_sdk_route53::config::http::HttpResponse;
    use aws_sdk_route53::config::retry::RetryConfig;
    use aws_sdk_route53::config::timeout::TimeoutConfig;
    use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_route53::operation::change_resource_record_sets::{
        ChangeResourceRecordSetsError, ChangeResourceRecordSetsOutput,
    };
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ChangeStatus, HostedZoneConfig, ResourceRecord, ResourceRecordSet,
        RrType, Vpc, VpcRegion,
    };

    use super::*;

    const ZONE: &str = "sessions.internal";
    const WRITER: &str = "writer.sessions.internal";
    const USW1: &str = "master.sessions-usw1.lab.usw1.cache.amazonaws.com";
    const USW2: &str = "master.sessions-usw2.lab.usw2.cache.amazonaws.com";

    struct Lab {
        state: Arc<Route53State>,
        url: String,
        client: Client,
        zone: String,
        _server: JoinHandle<()>,
    }

    impl Lab {
        /// A client giving up after `timeout`.
        fn impatient(&self, timeout: Duration) -> Client {
            client(&self.url, Some(timeout))
        }

        fn writer(&self) -> Option<String> {
            self.state
                .record(&self.zone, WRITER, "CNAME")
                .and_then(|r| r.values.first().cloned())
        }
    }

    fn client(url: &str, timeout: Option<Duration>) -> Client {
        let mut conf = aws_sdk_route53::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("lab", "lab", None, None, "lab"))
            .retry_config(RetryConfig::disabled());
        if let Some(t) = timeout {
            conf = conf.timeout_config(TimeoutConfig::builder().operation_timeout(t).build());
        }
        Client::from_conf(conf.build())
    }

    /// A served emulator with the lab's private zone and its writer CNAME on us-west-1.
    async fn lab() -> Lab {
        let state = Arc::new(Route53State::new());
        let (url, server) = serve(Arc::clone(&state)).await.expect("serve");
        let zone = state.create_zone(ZONE, true).expect("zone");
        state.upsert(&zone, WRITER, "CNAME", 5, &[USW1]).expect("seed");
        Lab {
            client: client(&url, None),
            state,
            url,
            zone,
            _server: server,
        }
    }

    fn rrs(name: &str, t: RrType, ttl: i64, values: &[&str]) -> ResourceRecordSet {
        ResourceRecordSet::builder()
            .name(name)
            .r#type(t)
            .ttl(ttl)
            .set_resource_records(Some(
                values
                    .iter()
                    .map(|v| ResourceRecord::builder().value(*v).build().expect("value"))
                    .collect(),
            ))
            .build()
            .expect("record set")
    }

    fn change(action: ChangeAction, set: ResourceRecordSet) -> Change {
        Change::builder()
            .action(action)
            .resource_record_set(set)
            .build()
            .expect("change")
    }

    async fn submit(
        client: &Client,
        zone: &str,
        changes: Vec<Change>,
    ) -> Result<ChangeResourceRecordSetsOutput, SdkError<ChangeResourceRecordSetsError, HttpResponse>> {
        client
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .set_changes(Some(changes))
                    .build()
                    .expect("batch"),
            )
            .send()
            .await
    }

    /// HTTP status, code and message of a service error, as the SDK surfaces them.
    fn seen<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> (u16, String, String) {
        (
            e.raw_response().map_or(0, |r| r.status().as_u16()),
            e.code().unwrap_or_default().to_owned(),
            e.message().unwrap_or_default().to_owned(),
        )
    }

    /// What the product's adapter does: list from the name, keep the CNAME of that name.
    async fn read_writer(client: &Client, zone: &str) -> ResourceRecordSet {
        let out = client
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(format!("{WRITER}."))
            .max_items(10)
            .send()
            .await
            .expect("list");
        out.resource_record_sets()
            .iter()
            .find(|r| {
                r.name().trim_end_matches('.').eq_ignore_ascii_case(WRITER) && r.r#type() == &RrType::Cname
            })
            .cloned()
            .expect("writer record")
    }

    fn listed(records: &[ResourceRecordSet]) -> Vec<(String, String, Option<String>)> {
        records
            .iter()
            .map(|r| {
                (
                    r.name().to_owned(),
                    r.r#type().as_str().to_owned(),
                    r.set_identifier().map(str::to_owned),
                )
            })
            .collect()
    }

    // --- names -------------------------------------------------------------------------------

    #[test]
    fn names_are_lower_case_fqdns_with_route53_escapes() {
        assert_eq!(
            normalise_name("Writer.Sessions.Internal"),
            "writer.sessions.internal."
        );
        assert_eq!(
            normalise_name("writer.sessions.internal."),
            "writer.sessions.internal."
        );
        assert_eq!(normalise_name("*.Example.com"), "\\052.example.com.");
        assert_eq!(normalise_name("\\052.example.com."), "\\052.example.com.");
        assert_eq!(normalise_name("\\101b.example.com"), "ab.example.com.");
    }

    /// The status line of a raw GET, for paths the SDK never sends.
    async fn raw_get(url: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        answer.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn zone_and_change_ids_are_accepted_with_or_without_their_prefix() {
        assert_eq!(bare_zone_id("/hostedzone/Z123"), "Z123");
        assert_eq!(bare_zone_id("Z123"), "Z123");
        assert_eq!(bare_change_id("/change/C9"), "C9");
        let state = Arc::new(Route53State::new());
        let id = state.create_zone("example.com", false).expect("zone");
        assert!(id.starts_with('Z') && id.len() == 21, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(
            state
                .records(&format!("/hostedzone/{id}"))
                .expect("records")
                .len(),
            2
        );

        // The SDK strips the prefix before sending; other clients send it percent-encoded.
        let (url, _server) = serve(Arc::clone(&state)).await.expect("serve");
        for path in [
            format!("/2013-04-01/hostedzone/{id}"),
            format!("/2013-04-01/hostedzone/%2Fhostedzone%2F{id}"),
            format!("/2013-04-01/hostedzone/%2Fhostedzone%2F{id}/rrset"),
        ] {
            assert_eq!(raw_get(&url, &path).await, "HTTP/1.1 200 OK", "{path}");
        }
        let change = state
            .upsert(&id, "a.example.com", "A", 60, &["192.0.2.1"])
            .expect("upsert");
        assert_eq!(
            raw_get(&url, &format!("/2013-04-01/change/%2Fchange%2F{change}")).await,
            "HTTP/1.1 200 OK"
        );
    }

    #[test]
    fn operations_parse_from_their_api_names() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
        }
        assert!("DeleteHostedZone".parse::<Operation>().is_err());
    }

    // --- zones -------------------------------------------------------------------------------

    #[tokio::test]
    async fn a_created_zone_answers_201_with_its_location_and_starts_with_soa_and_ns() {
        let lab = lab().await;
        let private = lab
            .client
            .create_hosted_zone()
            .name("Private.Example")
            .caller_reference("ref-private")
            .hosted_zone_config(
                HostedZoneConfig::builder()
                    .private_zone(true)
                    .comment("lab")
                    .build(),
            )
            .vpc(
                Vpc::builder()
                    .vpc_region(VpcRegion::UsWest1)
                    .vpc_id("vpc-1")
                    .build(),
            )
            .send()
            .await
            .expect("create private");
        let zone = private.hosted_zone().expect("zone");
        let id = zone.id().trim_start_matches("/hostedzone/").to_owned();
        assert!(zone.id().starts_with("/hostedzone/Z"), "{}", zone.id());
        assert_eq!(zone.name(), "private.example.");
        assert!(
            private
                .location()
                .ends_with(&format!("/2013-04-01/hostedzone/{id}"))
        );
        assert_eq!(
            private.change_info().map(|c| c.status()),
            Some(&ChangeStatus::Pending)
        );
        assert_eq!(private.vpc().and_then(|v| v.vpc_id()), Some("vpc-1"));
        // No DelegationSet in the answer; the SDK fills in an empty one for the required member.
        assert!(
            private
                .delegation_set()
                .is_none_or(|d| d.name_servers().is_empty())
        );

        let public = lab
            .client
            .create_hosted_zone()
            .name("public.example")
            .caller_reference("ref-public")
            .send()
            .await
            .expect("create public");
        assert_eq!(public.delegation_set().map(|d| d.name_servers().len()), Some(4));
        assert!(public.vpc().is_none());

        let again = lab
            .client
            .create_hosted_zone()
            .name("other.example")
            .caller_reference("ref-public")
            .send()
            .await
            .expect_err("same caller reference");
        assert_eq!(seen(&again).1, "HostedZoneAlreadyExists");

        let got = lab.client.get_hosted_zone().id(&id).send().await.expect("get");
        let hz = got.hosted_zone().expect("zone");
        assert_eq!(hz.config().map(|c| c.private_zone()), Some(true));
        assert_eq!(hz.config().and_then(|c| c.comment()), Some("lab"));
        assert_eq!(hz.resource_record_set_count(), Some(2));
        assert_eq!(got.vpcs().len(), 1);

        let records = lab
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&id)
            .send()
            .await
            .expect("list");
        assert_eq!(
            listed(records.resource_record_sets()),
            vec![
                ("private.example.".to_owned(), "NS".to_owned(), None),
                ("private.example.".to_owned(), "SOA".to_owned(), None),
            ]
        );
        let soa = &records.resource_record_sets()[1];
        assert!(
            soa.resource_records()[0]
                .value()
                .contains("awsdns-hostmaster.amazon.com.")
        );
    }

    #[tokio::test]
    async fn zones_are_listed_by_id_in_pages_and_by_name_with_labels_reversed() {
        let state = Arc::new(Route53State::new());
        let (url, _server) = serve(Arc::clone(&state)).await.expect("serve");
        let client = client(&url, None);
        let mut ids = Vec::new();
        for name in ["b.example.com", "a.example.org", "example.com"] {
            ids.push(state.create_zone(name, false).expect("zone"));
        }
        ids.sort();

        let mut seen_ids = Vec::new();
        let mut marker: Option<String> = None;
        let mut pages = 0;
        loop {
            let out = client
                .list_hosted_zones()
                .set_marker(marker.clone())
                .max_items(2)
                .send()
                .await
                .expect("list");
            pages += 1;
            seen_ids.extend(
                out.hosted_zones()
                    .iter()
                    .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned()),
            );
            if !out.is_truncated() {
                break;
            }
            marker = out.next_marker().map(str::to_owned);
        }
        assert_eq!(pages, 2);
        assert_eq!(seen_ids, ids);

        let by_name = client.list_hosted_zones_by_name().send().await.expect("by name");
        let names: Vec<&str> = by_name.hosted_zones().iter().map(|z| z.name()).collect();
        assert_eq!(names, ["example.com.", "b.example.com.", "a.example.org."]);

        let from_b = client
            .list_hosted_zones_by_name()
            .dns_name("B.example.com")
            .max_items(1)
            .send()
            .await
            .expect("from b");
        assert_eq!(from_b.hosted_zones()[0].name(), "b.example.com.");
        assert!(from_b.is_truncated());
        assert_eq!(from_b.next_dns_name(), Some("a.example.org."));
    }

    #[tokio::test]
    async fn an_unknown_zone_is_no_such_hosted_zone_404() {
        let lab = lab().await;
        let list = lab
            .client
            .list_resource_record_sets()
            .hosted_zone_id("ZNOSUCHZONE")
            .send()
            .await
            .expect_err("unknown zone");
        assert_eq!(
            seen(&list),
            (
                404,
                "NoSuchHostedZone".to_owned(),
                "No hosted zone found with ID: ZNOSUCHZONE".to_owned()
            )
        );
        let change = submit(
            &lab.client,
            "ZNOSUCHZONE",
            vec![change(
                ChangeAction::Upsert,
                rrs("x.sessions.internal", RrType::A, 60, &["192.0.2.1"]),
            )],
        )
        .await
        .expect_err("unknown zone");
        assert!(matches!(
            change.into_service_error(),
            ChangeResourceRecordSetsError::NoSuchHostedZone(_)
        ));
        let get = lab
            .client
            .get_hosted_zone()
            .id("ZNOSUCHZONE")
            .send()
            .await
            .expect_err("unknown");
        assert_eq!(seen(&get).0, 404);
    }

    // --- record sets -------------------------------------------------------------------------

    /// A public zone with records whose order exercises every rule of Route 53's listing.
    async fn ordered_zone(state: &Route53State, client: &Client) -> String {
        let zone = state.create_zone("example.com", false).expect("zone");
        for (name, t, v) in [
            ("www.example.com", "AAAA", "2001:db8::1"),
            ("WWW.example.com.", "A", "192.0.2.1"),
            ("api-1.example.com", "A", "192.0.2.2"),
            ("b.a.example.com", "A", "192.0.2.3"),
            ("a.example.com", "TXT", "\"hello\""),
            ("*.example.com", "A", "192.0.2.4"),
            ("example.com", "MX", "10 mail.example.com"),
        ] {
            state.upsert(&zone, name, t, 300, &[v]).expect("upsert");
        }
        let weighted = |id: &str, ip: &str| {
            ResourceRecordSet::builder()
                .name("w.example.com")
                .r#type(RrType::A)
                .set_identifier(id)
                .weight(10)
                .ttl(60)
                .resource_records(ResourceRecord::builder().value(ip).build().expect("value"))
                .build()
                .expect("weighted")
        };
        submit(
            client,
            &zone,
            vec![
                change(ChangeAction::Create, weighted("two", "192.0.2.6")),
                change(ChangeAction::Create, weighted("one", "192.0.2.5")),
            ],
        )
        .await
        .expect("weighted records");
        zone
    }

    fn expected_order() -> Vec<(String, String, Option<String>)> {
        [
            ("example.com.", "MX", None),
            ("example.com.", "NS", None),
            ("example.com.", "SOA", None),
            ("\\052.example.com.", "A", None),
            ("a.example.com.", "TXT", None),
            ("b.a.example.com.", "A", None),
            ("api-1.example.com.", "A", None),
            ("w.example.com.", "A", Some("one")),
            ("w.example.com.", "A", Some("two")),
            ("www.example.com.", "A", None),
            ("www.example.com.", "AAAA", None),
        ]
        .into_iter()
        .map(|(n, t, s)| (n.to_owned(), t.to_owned(), s.map(str::to_owned)))
        .collect()
    }

    #[tokio::test]
    async fn record_sets_are_listed_in_route53_order_and_paged_across_every_boundary() {
        let state = Arc::new(Route53State::new());
        let (url, _server) = serve(Arc::clone(&state)).await.expect("serve");
        let client = client(&url, None);
        let zone = ordered_zone(&state, &client).await;

        let all = client
            .list_resource_record_sets()
            .hosted_zone_id(&zone)
            .send()
            .await
            .expect("list");
        assert_eq!(listed(all.resource_record_sets()), expected_order());
        assert!(!all.is_truncated());
        assert_eq!(all.max_items(), 300);

        for page_size in [1, 2, 3] {
            let mut collected = Vec::new();
            let (mut name, mut t, mut id) = (None::<String>, None::<RrType>, None::<String>);
            loop {
                let out = client
                    .list_resource_record_sets()
                    .hosted_zone_id(&zone)
                    .set_start_record_name(name.clone())
                    .set_start_record_type(t.clone())
                    .set_start_record_identifier(id.clone())
                    .max_items(page_size)
                    .send()
                    .await
                    .expect("page");
                assert!(out.resource_record_sets().len() <= usize::try_from(page_size).expect("size"));
                collected.extend(listed(out.resource_record_sets()));
                if !out.is_truncated() {
                    break;
                }
                name = out.next_record_name().map(str::to_owned);
                t = out.next_record_type().cloned();
                id = out.next_record_identifier().map(str::to_owned);
                assert!(name.is_some() && t.is_some());
            }
            assert_eq!(collected, expected_order(), "page size {page_size}");
        }
    }

    #[tokio::test]
    async fn a_delete_must_match_the_set_identifier_and_every_routing_field() {
        let state = Arc::new(Route53State::new());
        let (url, _server) = serve(Arc::clone(&state)).await.expect("serve");
        let client = client(&url, None);
        let zone = ordered_zone(&state, &client).await;
        let weighted = |id: &str, weight: i64| {
            ResourceRecordSet::builder()
                .name("W.example.com.")
                .r#type(RrType::A)
                .set_identifier(id)
                .weight(weight)
                .ttl(60)
                .resource_records(
                    ResourceRecord::builder()
                        .value("192.0.2.5")
                        .build()
                        .expect("value"),
                )
                .build()
                .expect("weighted")
        };
        let heavier = submit(
            &client,
            &zone,
            vec![change(ChangeAction::Delete, weighted("one", 20))],
        )
        .await
        .expect_err("other weight");
        assert!(seen(&heavier).2.contains("do not match the current values"));
        let unknown = submit(
            &client,
            &zone,
            vec![change(ChangeAction::Delete, weighted("three", 10))],
        )
        .await
        .expect_err("other set");
        assert_eq!(
            seen(&unknown).2,
            "[Tried to delete resource record set [name='w.example.com.', type='A', set-identifier='three'] but it was not found]"
        );
        submit(
            &client,
            &zone,
            vec![change(ChangeAction::Delete, weighted("one", 10))],
        )
        .await
        .expect("exact match");
        let left: Vec<Option<String>> = state
            .records(&zone)
            .expect("records")
            .into_iter()
            .filter(|r| r.name == "w.example.com.")
            .map(|r| r.set_identifier)
            .collect();
        assert_eq!(left, [Some("two".to_owned())]);
    }

    #[tokio::test]
    async fn listing_from_a_start_name_begins_at_that_name_or_the_next_one() {
        let state = Arc::new(Route53State::new());
        let (url, _server) = serve(Arc::clone(&state)).await.expect("serve");
        let client = client(&url, None);
        let zone = ordered_zone(&state, &client).await;
        let first = |start: &str, t: Option<RrType>| {
            let client = client.clone();
            let zone = zone.clone();
            let start = start.to_owned();
            async move {
                let out = client
                    .list_resource_record_sets()
                    .hosted_zone_id(zone)
                    .start_record_name(start)
                    .set_start_record_type(t)
                    .max_items(10)
                    .send()
                    .await
                    .expect("list");
                listed(out.resource_record_sets()).into_iter().next()
            }
        };
        let www_a = Some(("www.example.com.".to_owned(), "A".to_owned(), None));
        assert_eq!(first("www.example.com.", None).await, www_a);
        assert_eq!(first("WWW.Example.Com", None).await, www_a);
        assert_eq!(
            first("www.example.com", Some(RrType::Aaaa)).await,
            Some(("www.example.com.".to_owned(), "AAAA".to_owned(), None))
        );
        // No such name: the listing starts at the next name in Route 53's order.
        assert_eq!(
            first("b.example.com", None).await,
            Some((
                "w.example.com.".to_owned(),
                "A".to_owned(),
                Some("one".to_owned())
            ))
        );
        assert_eq!(first("zzz.example.com", None).await, None);
    }

    #[tokio::test]
    async fn the_compare_and_swap_flip_succeeds_twenty_times_by_any_spelling_of_the_name() {
        let lab = lab().await;
        let spellings = [
            "writer.sessions.internal.",
            "Writer.Sessions.Internal",
            "WRITER.SESSIONS.INTERNAL.",
            "writer.sessions.internal",
        ];
        for flip in 0..20 {
            let current = read_writer(&lab.client, &lab.zone).await;
            let to = if flip % 2 == 0 { USW2 } else { USW1 };
            let name = spellings[flip % spellings.len()];
            let out = submit(
                &lab.client,
                &lab.zone,
                vec![
                    change(ChangeAction::Delete, current),
                    change(ChangeAction::Create, rrs(name, RrType::Cname, 5, &[to])),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("flip {flip}: {}", aws_sdk_route53::error::DisplayErrorContext(e)));
            assert_eq!(
                out.change_info().map(|c| c.status()),
                Some(&ChangeStatus::Pending)
            );
            assert_eq!(lab.writer().as_deref(), Some(to), "flip {flip}");
            let records = lab.state.records(&lab.zone).expect("records");
            assert_eq!(records.len(), 3, "NS, SOA and one writer after flip {flip}");
        }
        let read = read_writer(&lab.client, &lab.zone).await;
        assert_eq!(read.name(), "writer.sessions.internal.");
        // The seed plus twenty flips.
        assert_eq!(lab.state.changes().len(), 21);
    }

    #[tokio::test]
    async fn a_stale_delete_fails_the_whole_batch_and_leaves_the_zone_unchanged() {
        let lab = lab().await;
        let before = lab.state.records(&lab.zone).expect("records");
        let stale = rrs(WRITER, RrType::Cname, 5, &[USW2]);
        let err = submit(
            &lab.client,
            &lab.zone,
            vec![
                change(ChangeAction::Delete, stale),
                change(
                    ChangeAction::Create,
                    rrs(WRITER, RrType::Cname, 5, &["elsewhere.example"]),
                ),
            ],
        )
        .await
        .expect_err("stale delete");
        let (status, code, message) = seen(&err);
        assert_eq!((status, code.as_str()), (400, "InvalidChangeBatch"));
        assert_eq!(
            message,
            "[Tried to delete resource record set [name='writer.sessions.internal.', type='CNAME'] but the values provided do not match the current values, \
             Tried to create resource record set [name='writer.sessions.internal.', type='CNAME'] but it already exists]"
        );
        // The modelled error carries the same message.
        match err.into_service_error() {
            ChangeResourceRecordSetsError::InvalidChangeBatch(e) => {
                assert!(
                    e.message()
                        .is_some_and(|m| m.contains("do not match the current values"))
                );
                assert_eq!(e.code(), Some("InvalidChangeBatch"));
            }
            other => panic!("expected InvalidChangeBatch, got {other:?}"),
        }
        assert_eq!(lab.state.records(&lab.zone).expect("records"), before);
        assert_eq!(lab.state.changes().len(), 1, "only the seed");
    }

    #[tokio::test]
    async fn a_delete_with_the_wrong_ttl_is_a_value_mismatch() {
        let lab = lab().await;
        let err = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Delete,
                rrs(WRITER, RrType::Cname, 60, &[USW1]),
            )],
        )
        .await
        .expect_err("wrong ttl");
        let (status, code, message) = seen(&err);
        assert_eq!((status, code.as_str()), (400, "InvalidChangeBatch"));
        assert!(
            message.contains("but the values provided do not match the current values"),
            "{message}"
        );
        assert_eq!(lab.writer().as_deref(), Some(USW1));
    }

    #[tokio::test]
    async fn deleting_a_missing_record_is_not_found_and_creating_an_existing_one_already_exists() {
        let lab = lab().await;
        let missing = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Delete,
                rrs("Gone.sessions.internal", RrType::Cname, 5, &[USW1]),
            )],
        )
        .await
        .expect_err("missing");
        assert_eq!(
            seen(&missing).2,
            "[Tried to delete resource record set [name='gone.sessions.internal.', type='CNAME'] but it was not found]"
        );
        // Same name, other type: not found either.
        let other_type = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Delete,
                rrs(WRITER, RrType::A, 5, &["192.0.2.1"]),
            )],
        )
        .await
        .expect_err("other type");
        assert!(seen(&other_type).2.contains("type='A'] but it was not found"));

        let exists = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Create,
                rrs(WRITER, RrType::Cname, 5, &[USW2]),
            )],
        )
        .await
        .expect_err("exists");
        assert_eq!(
            seen(&exists),
            (
                400,
                "InvalidChangeBatch".to_owned(),
                "[Tried to create resource record set [name='writer.sessions.internal.', type='CNAME'] but it already exists]"
                    .to_owned()
            )
        );
        assert_eq!(lab.writer().as_deref(), Some(USW1));
    }

    #[tokio::test]
    async fn a_cname_cannot_share_its_name_with_another_type_in_either_direction() {
        let lab = lab().await;
        let a_on_cname = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Upsert,
                rrs(WRITER, RrType::A, 5, &["192.0.2.1"]),
            )],
        )
        .await
        .expect_err("A on a CNAME");
        assert_eq!(
            seen(&a_on_cname).2,
            "[RRSet of type A with DNS name writer.sessions.internal. is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone sessions.internal.]"
        );

        lab.state
            .upsert(&lab.zone, "txt.sessions.internal", "TXT", 60, &["\"x\""])
            .expect("txt");
        let cname_on_txt = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Create,
                rrs("txt.sessions.internal.", RrType::Cname, 5, &[USW1]),
            )],
        )
        .await
        .expect_err("CNAME on a TXT");
        assert_eq!(
            seen(&cname_on_txt).2,
            "[RRSet of type CNAME with DNS name txt.sessions.internal. is not permitted as it conflicts with other records with the same DNS name in zone sessions.internal.]"
        );

        // Replacing the CNAME by an A in one batch is fine: the DELETE clears the way.
        let current = read_writer(&lab.client, &lab.zone).await;
        submit(
            &lab.client,
            &lab.zone,
            vec![
                change(ChangeAction::Delete, current),
                change(ChangeAction::Create, rrs(WRITER, RrType::A, 5, &["192.0.2.1"])),
            ],
        )
        .await
        .expect("CNAME replaced by an A");
        assert!(lab.state.record(&lab.zone, WRITER, "CNAME").is_none());
        assert!(lab.state.record(&lab.zone, WRITER, "A").is_some());
    }

    #[tokio::test]
    async fn a_cname_at_the_apex_and_a_record_outside_the_zone_are_refused() {
        let lab = lab().await;
        let apex = submit(
            &lab.client,
            &lab.zone,
            vec![change(ChangeAction::Create, rrs(ZONE, RrType::Cname, 5, &[USW1]))],
        )
        .await
        .expect_err("apex CNAME");
        assert_eq!(
            seen(&apex).2,
            "[RRSet of type CNAME with DNS name sessions.internal. is not permitted at apex in zone sessions.internal.]"
        );
        let outside = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Create,
                rrs("writer.other.internal", RrType::Cname, 5, &[USW1]),
            )],
        )
        .await
        .expect_err("outside");
        assert_eq!(
            seen(&outside),
            (
                400,
                "InvalidChangeBatch".to_owned(),
                "[RRSet with DNS name writer.other.internal. is not permitted in zone sessions.internal.]"
                    .to_owned()
            )
        );
        let soa = lab.state.record(&lab.zone, ZONE, "SOA").expect("soa");
        let no_soa = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Delete,
                rrs(ZONE, RrType::Soa, 900, &[&soa.values[0]]),
            )],
        )
        .await
        .expect_err("the SOA stays");
        assert!(seen(&no_soa).2.contains("exactly one SOA record"));
    }

    #[tokio::test]
    async fn malformed_batches_get_route53s_validation_answers() {
        let lab = lab().await;
        let empty = submit(&lab.client, &lab.zone, Vec::new())
            .await
            .expect_err("empty");
        let (status, code, message) = seen(&empty);
        assert_eq!((status, code.as_str()), (400, "InvalidInput"));
        assert!(
            message.contains("The content of element 'Changes' is not complete"),
            "{message}"
        );

        let no_ttl = ResourceRecordSet::builder()
            .name("x.sessions.internal")
            .r#type(RrType::A)
            .resource_records(
                ResourceRecord::builder()
                    .value("192.0.2.1")
                    .build()
                    .expect("value"),
            )
            .build()
            .expect("record");
        let missing_ttl = submit(&lab.client, &lab.zone, vec![change(ChangeAction::Create, no_ttl)])
            .await
            .expect_err("no TTL");
        assert_eq!(
            seen(&missing_ttl),
            (
                400,
                "InvalidInput".to_owned(),
                "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change with [Action=CREATE, Name=x.sessions.internal, Type=A, SetIdentifier=null]".to_owned()
            )
        );

        let two_values = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Create,
                rrs("two.sessions.internal", RrType::Cname, 5, &[USW1, USW2]),
            )],
        )
        .await
        .expect_err("two CNAME values");
        let (status, code, message) = seen(&two_values);
        assert_eq!((status, code.as_str()), (400, "InvalidChangeBatch"));
        assert!(message.contains("more than one value"), "{message}");
        assert_eq!(lab.state.records(&lab.zone).expect("records").len(), 3);
    }

    #[tokio::test]
    async fn upsert_creates_a_record_then_replaces_it() {
        let lab = lab().await;
        let name = "cache.sessions.internal";
        for ip in ["192.0.2.1", "192.0.2.2"] {
            submit(
                &lab.client,
                &lab.zone,
                vec![change(ChangeAction::Upsert, rrs(name, RrType::A, 30, &[ip]))],
            )
            .await
            .expect("upsert");
            let r = lab.state.record(&lab.zone, name, "A").expect("record");
            assert_eq!(
                (r.name.as_str(), r.ttl, r.values),
                ("cache.sessions.internal.", Some(30), vec![ip.to_owned()])
            );
        }
        // A DELETE matches the values in any order.
        lab.state
            .upsert(
                &lab.zone,
                "multi.sessions.internal",
                "A",
                30,
                &["192.0.2.1", "192.0.2.2"],
            )
            .expect("multi");
        submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Delete,
                rrs(
                    "multi.sessions.internal",
                    RrType::A,
                    30,
                    &["192.0.2.2", "192.0.2.1"],
                ),
            )],
        )
        .await
        .expect("delete in any order");
        assert!(
            lab.state
                .record(&lab.zone, "multi.sessions.internal", "A")
                .is_none()
        );
    }

    #[tokio::test]
    async fn get_change_is_pending_until_the_propagation_delay_has_passed() {
        let lab = lab().await;
        lab.state.set_propagation_delay(Duration::from_millis(400));
        let out = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Upsert,
                rrs("p.sessions.internal", RrType::A, 30, &["192.0.2.1"]),
            )],
        )
        .await
        .expect("change");
        let id = out.change_info().expect("info").id().to_owned();
        assert!(id.starts_with("/change/C"), "{id}");
        let status = |client: Client, id: String| async move {
            client
                .get_change()
                .id(id)
                .send()
                .await
                .expect("get change")
                .change_info()
                .map(|c| c.status().clone())
        };
        assert_eq!(
            status(lab.client.clone(), id.clone()).await,
            Some(ChangeStatus::Pending)
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            status(lab.client.clone(), id.clone()).await,
            Some(ChangeStatus::Insync)
        );

        lab.state.set_propagation_delay(Duration::ZERO);
        let quick = submit(
            &lab.client,
            &lab.zone,
            vec![change(
                ChangeAction::Upsert,
                rrs("q.sessions.internal", RrType::A, 30, &["192.0.2.1"]),
            )],
        )
        .await
        .expect("change");
        let quick_id = quick.change_info().expect("info").id().to_owned();
        assert_eq!(
            status(lab.client.clone(), quick_id).await,
            Some(ChangeStatus::Insync)
        );

        let unknown = lab
            .client
            .get_change()
            .id("CNOSUCHCHANGE")
            .send()
            .await
            .expect_err("unknown");
        assert_eq!(seen(&unknown).0, 404);
        assert_eq!(seen(&unknown).1, "NoSuchChange");
    }

    // --- faults ------------------------------------------------------------------------------

    #[tokio::test]
    async fn throttling_and_prior_request_not_complete_are_400s_with_their_codes_and_change_nothing() {
        let lab = lab().await;
        lab.state
            .set_fault(Operation::ListResourceRecordSets, Fault::Throttling, Some(1));
        let throttled = lab
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&lab.zone)
            .send()
            .await
            .expect_err("throttled");
        assert_eq!(
            seen(&throttled),
            (400, "Throttling".to_owned(), "Rate exceeded".to_owned())
        );

        lab.state.set_fault(
            Operation::ChangeResourceRecordSets,
            Fault::PriorRequestNotComplete,
            Some(1),
        );
        let current = read_writer(&lab.client, &lab.zone).await;
        let batch = vec![
            change(ChangeAction::Delete, current),
            change(ChangeAction::Create, rrs(WRITER, RrType::Cname, 5, &[USW2])),
        ];
        let prior = submit(&lab.client, &lab.zone, batch.clone())
            .await
            .expect_err("prior");
        let (status, code, message) = seen(&prior);
        assert_eq!((status, code.as_str()), (400, "PriorRequestNotComplete"));
        assert!(message.contains("still processing a prior request"));
        assert_eq!(lab.writer().as_deref(), Some(USW1));

        // Both were for one request only.
        submit(&lab.client, &lab.zone, batch)
            .await
            .expect("retry succeeds");
        assert_eq!(lab.writer().as_deref(), Some(USW2));
    }

    #[tokio::test]
    async fn an_error_5xx_fault_is_a_500_internal_failure() {
        let lab = lab().await;
        lab.state
            .set_fault(Operation::GetHostedZone, Fault::Error5xx, None);
        let err = lab
            .client
            .get_hosted_zone()
            .id(&lab.zone)
            .send()
            .await
            .expect_err("5xx");
        let (status, code, _) = seen(&err);
        assert_eq!((status, code.as_str()), (500, "InternalFailure"));
    }

    #[tokio::test]
    async fn a_hung_change_times_out_at_the_client_and_is_never_applied() {
        let lab = lab().await;
        lab.state
            .set_fault(Operation::ChangeResourceRecordSets, Fault::Hang, Some(1));
        let current = read_writer(&lab.client, &lab.zone).await;
        let err = submit(
            &lab.impatient(Duration::from_millis(300)),
            &lab.zone,
            vec![
                change(ChangeAction::Delete, current),
                change(ChangeAction::Create, rrs(WRITER, RrType::Cname, 5, &[USW2])),
            ],
        )
        .await
        .expect_err("hang");
        assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(lab.writer().as_deref(), Some(USW1));
        let logged = lab.state.requests();
        let last = logged.last().expect("logged");
        assert_eq!(
            (last.action.as_str(), last.status),
            ("ChangeResourceRecordSets", 0)
        );
        assert_eq!(last.params.get("fault").map(String::as_str), Some("hang"));
    }

    #[tokio::test]
    async fn a_lost_answer_applies_the_change_but_the_client_sees_a_transient_failure() {
        let lab = lab().await;
        lab.state
            .set_fault(Operation::ChangeResourceRecordSets, Fault::Lost, Some(1));
        let current = read_writer(&lab.client, &lab.zone).await;
        let batch = vec![
            change(ChangeAction::Delete, current),
            change(ChangeAction::Create, rrs(WRITER, RrType::Cname, 5, &[USW2])),
        ];
        let err = submit(&lab.impatient(Duration::from_secs(5)), &lab.zone, batch.clone())
            .await
            .expect_err("lost");
        // No answer at all: a dispatch (I/O) failure, which is retryable.
        assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
        assert_eq!(lab.writer().as_deref(), Some(USW2), "the change was applied");
        assert_eq!(lab.state.changes().len(), 2);

        // The caller's retry of the same compare-and-swap now meets the change it made.
        let retry = submit(&lab.client, &lab.zone, batch)
            .await
            .expect_err("retry conflicts");
        let message = seen(&retry).2;
        assert!(
            message.contains("do not match") && message.contains("already exists"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_slow_change_lands_after_the_client_gave_up() {
        let lab = lab().await;
        lab.state.set_fault(
            Operation::ChangeResourceRecordSets,
            Fault::Slow { ms: 600 },
            Some(1),
        );
        let current = read_writer(&lab.client, &lab.zone).await;
        let started = Instant::now();
        let err = submit(
            &lab.impatient(Duration::from_millis(200)),
            &lab.zone,
            vec![
                change(ChangeAction::Delete, current),
                change(ChangeAction::Create, rrs(WRITER, RrType::Cname, 5, &[USW2])),
            ],
        )
        .await
        .expect_err("gave up");
        assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
        assert_eq!(lab.writer().as_deref(), Some(USW1), "not yet");
        tokio::time::sleep(Duration::from_millis(700).saturating_sub(started.elapsed())).await;
        assert_eq!(lab.writer().as_deref(), Some(USW2), "landed late");
        let applied = lab.state.changes();
        let late = applied.last().expect("applied");
        assert!(!late.direct);
        assert_eq!(late.changes[1].values, vec![USW2.to_owned()]);
    }

    #[tokio::test]
    async fn latency_delays_the_answer_but_the_call_succeeds() {
        let lab = lab().await;
        lab.state
            .set_latency(Operation::ListResourceRecordSets, Duration::from_millis(250));
        let started = Instant::now();
        let read = read_writer(&lab.client, &lab.zone).await;
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(read.resource_records()[0].value(), USW1);
        lab.state.clear_faults();
        assert!(lab.state.latencies().is_empty());
    }

    #[tokio::test]
    async fn next_n_faults_expire_and_standing_ones_last_until_cleared() {
        let lab = lab().await;
        lab.state
            .set_fault(Operation::GetHostedZone, Fault::Throttling, Some(2));
        let get = || lab.client.get_hosted_zone().id(&lab.zone).send();
        assert!(get().await.is_err());
        assert_eq!(lab.state.faults()[0].remaining, Some(1));
        assert!(get().await.is_err());
        assert!(lab.state.faults().is_empty());
        get().await.expect("expired");

        lab.state
            .set_fault(Operation::GetHostedZone, Fault::Throttling, None);
        for _ in 0..3 {
            assert_eq!(seen(&get().await.expect_err("standing")).1, "Throttling");
        }
        // Other operations are untouched.
        read_writer(&lab.client, &lab.zone).await;
        lab.state.clear_faults();
        get().await.expect("cleared");
    }

    // --- logs --------------------------------------------------------------------------------

    #[tokio::test]
    async fn the_change_log_and_request_log_carry_the_trace_id_and_times() {
        let lab = lab().await;
        let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let current = read_writer(&lab.client, &lab.zone).await;
        let before = now_ms();
        lab.client
            .change_resource_record_sets()
            .hosted_zone_id(&lab.zone)
            .change_batch(
                ChangeBatch::builder()
                    .comment("traffic-switch us-west-2")
                    .changes(change(ChangeAction::Delete, current))
                    .changes(change(
                        ChangeAction::Create,
                        rrs(WRITER, RrType::Cname, 5, &[USW2]),
                    ))
                    .build()
                    .expect("batch"),
            )
            .customize()
            .mutate_request(move |req| {
                req.headers_mut().insert(TRACE_HEADER, trace);
            })
            .send()
            .await
            .expect("change");
        let after = now_ms();

        let applied = lab.state.changes();
        let last = applied.last().expect("applied");
        assert_eq!(last.trace.as_deref(), Some(trace));
        assert!((before..=after).contains(&last.at_ms));
        assert_eq!(last.zone, lab.zone);
        assert_eq!(last.comment.as_deref(), Some("traffic-switch us-west-2"));
        let entries: Vec<(&str, &str, &str, Option<i64>)> = last
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.name.as_str(), c.record_type.as_str(), c.ttl))
            .collect();
        assert_eq!(
            entries,
            [
                ("DELETE", "writer.sessions.internal.", "CNAME", Some(5)),
                ("CREATE", "writer.sessions.internal.", "CNAME", Some(5)),
            ]
        );
        let json = serde_json::to_value(&applied).expect("serialises");
        assert_eq!(json[1]["changes"][1]["type"], "CNAME");

        let requests = lab.state.requests();
        let logged = requests
            .iter()
            .find(|r| r.action == "ChangeResourceRecordSets")
            .expect("logged");
        assert_eq!(logged.service, "route53");
        assert_eq!(logged.status, 200);
        assert_eq!(logged.params.get("trace").map(String::as_str), Some(trace));
        assert_eq!(logged.params.get("zone"), Some(&lab.zone));
        assert_eq!(logged.params.get("change"), Some(&last.change_id));
        assert!((before..=after).contains(&logged.at_ms));
        let list = requests
            .iter()
            .find(|r| r.action == "ListResourceRecordSets")
            .expect("list logged");
        assert_eq!(list.params.get("maxitems").map(String::as_str), Some("10"));
        assert!(!list.params.contains_key("trace"));
    }
}
