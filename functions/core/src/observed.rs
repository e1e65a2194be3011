//! What the shell observed of AWS, in plain types the pure decisions read. No SDK types here.

use serde::Serialize;

/// A member's role in the Global Datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Primary,
    Secondary,
    /// A role string this build does not know; never treated as primary.
    Unknown(String),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Primary => f.write_str("PRIMARY"),
            Role::Secondary => f.write_str("SECONDARY"),
            Role::Unknown(s) => write!(f, "{s:?}"),
        }
    }
}

impl Role {
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "PRIMARY" => Self::Primary,
            "SECONDARY" => Self::Secondary,
            _ => Self::Unknown(s.to_owned()),
        }
    }
}

/// One member as `DescribeGlobalReplicationGroups(ShowMemberInfo)` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub group: String,
    pub region: String,
    pub role: Role,
    pub status: String,
}

/// The Global Datastore as described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatastoreView {
    pub id: String,
    pub status: String,
    pub members: Vec<MemberView>,
}

impl DatastoreView {
    pub fn is_available(&self) -> bool {
        self.status.eq_ignore_ascii_case("available")
    }

    pub fn primaries(&self) -> impl Iterator<Item = &MemberView> {
        self.members.iter().filter(|m| m.role == Role::Primary)
    }
}

/// The writer record as Route 53 returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    pub record_type: String,
    /// The CNAME target, normalised (lower-case, no trailing dot).
    pub value: Option<String>,
    pub ttl: Option<i64>,
    /// Weighted, failover, latency… records or aliases: not a plain CNAME this mode may rewrite.
    pub has_routing_policy: bool,
}

/// The ARC routing controls as one cluster endpoint returned them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlsView {
    /// Routing-control ARN → On?
    pub states: std::collections::BTreeMap<String, bool>,
    /// The cluster endpoint (its Region) that answered.
    pub read_from: String,
    /// Endpoints tried first that did not answer, with why.
    pub failed: Vec<String>,
}

/// Everything one decision reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub datastore: DatastoreView,
    /// dns mode: the writer record; `None` when it does not exist yet (or in arc mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordView>,
    /// arc mode: the routing controls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controls: Option<ControlsView>,
}
