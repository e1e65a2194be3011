//! The traffic switch's decisions, as pure functions: no I/O, no clock, no SDK types.
//!
//! Two steps. [`triage`] looks at a trigger and the configuration alone and says whether AWS needs
//! to be read at all (most triggers are ignored without a single call). [`decide`] takes what was
//! observed and returns a [`Plan`] that carries its reason.
//!
//! The safety rule the whole product rests on: writers only ever move to the member that
//! `DescribeGlobalReplicationGroups` reports as PRIMARY *now*, while the Global Datastore is
//! `available`. An event is a hint to look, never the truth — SNS duplicates and delays
//! notifications, and a stale promotion can arrive after a later failback.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{MemberConfig, SwitchConfig};
use crate::ids::{DnsName, Region, ReplicationGroupId};
use crate::intake::{AlarmChange, AlarmState, Trigger};
use crate::observed::{Observed, Role};

/// Manual commands the traffic switch accepts (typed into the Lambda console's test event).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub enum SwitchCommand {
    /// Read-only: who is primary, what the record points at. (A struct variant so that unknown
    /// fields are rejected like everywhere else.)
    Status {},
    /// Point writers at `target_region`, which must be the primary now.
    Switch {
        target_region: String,
        /// Defaults to true: a command that forgot the flag only reports what it would do.
        #[serde(default = "default_true")]
        dry_run: bool,
        /// Must repeat the Global Datastore id for a real (non-dry-run) switch.
        #[serde(default)]
        confirm: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
}

fn default_true() -> bool {
    true
}

/// A manual command that cannot be run as given. Nothing is read or changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandRejected {
    #[error("target_region: {0}")]
    BadRegion(String),
    #[error("target_region {0} is not a member Region of the Global Datastore (members: {1})")]
    NotAMember(String, String),
    #[error("a switch with dry_run=false needs \"confirm\": \"{expected}\" (the Global Datastore id){got}")]
    ConfirmationRequired { expected: String, got: String },
    #[error("a switch with dry_run=false needs a non-empty \"reason\" for the audit record")]
    ReasonRequired,
}

/// What a trigger asks for, once it is known to be worth reading AWS for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum Intent {
    /// A promotion notification named this configured member.
    FollowPromotion {
        group: ReplicationGroupId,
        region: Region,
    },
    /// An alarm fired: make sure writers are on whoever is primary now.
    FollowPrimary { alarm: String },
    /// An operator asked for writers to go to this Region.
    ManualSwitch {
        target: Region,
        dry_run: bool,
        reason: String,
    },
    /// An operator asked to see the state.
    Status,
}

/// The outcome of triage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "triage", rename_all = "snake_case")]
pub enum Triage {
    /// Nothing to do; no AWS call is made.
    Ignore {
        reason: String,
    },
    Act(Intent),
}

/// Maps an ElastiCache source id to a configured member. The source may be the replication group
/// itself or one of its nodes: `<group>-NNN` (cluster mode disabled) or `<group>-NNNN-NNN`
/// (cluster mode enabled).
pub fn resolve_source<'a>(source: &str, cfg: &'a SwitchConfig) -> Option<&'a MemberConfig> {
    let lower = source.to_ascii_lowercase();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut candidates = vec![lower.as_str()];
    if let Some((head, node)) = lower.rsplit_once('-')
        && digits(node, 3)
    {
        candidates.push(head);
        if let Some((group, shard)) = head.rsplit_once('-')
            && digits(shard, 4)
        {
            candidates.push(group);
        }
    }
    candidates
        .into_iter()
        .find_map(|c| cfg.datastore.members.iter().find(|m| m.group.as_str() == c))
}

/// Decides, from the trigger and configuration alone, whether to read AWS at all.
pub fn triage(trigger: &Trigger<SwitchCommand>, cfg: &SwitchConfig) -> Result<Triage, CommandRejected> {
    let ignore = |reason: String| Ok(Triage::Ignore { reason });
    match trigger {
        Trigger::ElastiCache(n) if !n.is_promotion() => ignore(format!(
            "ElastiCache event {} for {} does not change the primary",
            n.event, n.source
        )),
        Trigger::ElastiCache(n) => match resolve_source(&n.source, cfg) {
            Some(m) => Ok(Triage::Act(Intent::FollowPromotion {
                group: m.group.clone(),
                region: m.region.clone(),
            })),
            None => ignore(format!(
                "promotion of {} is not for a member of Global Datastore {}",
                n.source, cfg.datastore.id
            )),
        },
        Trigger::Alarm(a) => Ok(triage_alarm(a, cfg)),
        Trigger::Command(SwitchCommand::Status {}) => Ok(Triage::Act(Intent::Status)),
        Trigger::Command(SwitchCommand::Switch {
            target_region,
            dry_run,
            confirm,
            reason,
        }) => {
            let target =
                Region::parse(target_region).map_err(|e| CommandRejected::BadRegion(e.to_string()))?;
            if cfg.datastore.member_in(&target).is_none() {
                let members: Vec<&str> = cfg.datastore.members.iter().map(|m| m.region.as_str()).collect();
                return Err(CommandRejected::NotAMember(
                    target.to_string(),
                    members.join(", "),
                ));
            }
            let reason = reason.as_deref().map(str::trim).unwrap_or_default().to_owned();
            if !dry_run {
                if confirm.as_deref() != Some(cfg.datastore.id.as_str()) {
                    return Err(CommandRejected::ConfirmationRequired {
                        expected: cfg.datastore.id.to_string(),
                        got: match confirm {
                            Some(c) => {
                                format!(", got {:?}", c.chars().take(80).collect::<String>())
                            }
                            None => String::new(),
                        },
                    });
                }
                if reason.is_empty() {
                    return Err(CommandRejected::ReasonRequired);
                }
            }
            Ok(Triage::Act(Intent::ManualSwitch {
                target,
                dry_run: *dry_run,
                reason,
            }))
        }
    }
}

fn triage_alarm(a: &AlarmChange, cfg: &SwitchConfig) -> Triage {
    if !cfg.alarm_names.is_empty() && !cfg.alarm_names.contains(&a.name) {
        return Triage::Ignore {
            reason: format!("alarm {} is not in SWITCH_ALARM_NAMES", a.name),
        };
    }
    match a.new_state {
        AlarmState::Alarm => Triage::Act(Intent::FollowPrimary {
            alarm: a.name.clone(),
        }),
        AlarmState::Ok | AlarmState::InsufficientData => Triage::Ignore {
            reason: format!(
                "alarm {} went to {:?}; writers only follow the primary on ALARM (failback is a deliberate act)",
                a.name, a.new_state
            ),
        },
    }
}

/// A change of the writer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordChange {
    pub region: Region,
    pub group: ReplicationGroupId,
    /// The value the record holds now (`None`: no record). The change is conditional on it.
    pub from: Option<String>,
    pub to: DnsName,
    pub ttl: i64,
    pub dry_run: bool,
}

/// What to do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum Plan {
    /// The Global Datastore is between states; read it again shortly.
    Wait {
        reason: String,
    },
    /// Nothing to change.
    NoOp {
        reason: String,
    },
    /// Acting would move writers somewhere wrong, or the configuration disagrees with AWS.
    Refuse {
        reason: String,
    },
    Switch {
        change: RecordChange,
        reason: String,
    },
}

impl Plan {
    /// The plan's name as it appears in the audit record.
    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Wait { .. } => "wait",
            Plan::NoOp { .. } => "no_op",
            Plan::Refuse { .. } => "refuse",
            Plan::Switch { .. } => "switch",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Plan::Wait { reason }
            | Plan::NoOp { reason }
            | Plan::Refuse { reason }
            | Plan::Switch { reason, .. } => reason,
        }
    }
}

/// Decides what to do with the writer record, given what was observed. `Intent::Status` never
/// reaches here (the handler reports instead).
pub fn decide(intent: &Intent, observed: &Observed, cfg: &SwitchConfig) -> Plan {
    let ds = &observed.datastore;
    if !ds.is_available() {
        return Plan::Wait {
            reason: format!(
                "Global Datastore {} is {}, not available: a failover or change is under way",
                ds.id, ds.status
            ),
        };
    }
    let primaries: Vec<_> = ds.primaries().collect();
    let [primary] = primaries.as_slice() else {
        return Plan::Wait {
            reason: format!(
                "Global Datastore {} reports {} PRIMARY members, not one",
                ds.id,
                primaries.len()
            ),
        };
    };
    let Some(member) = cfg
        .datastore
        .members
        .iter()
        .find(|m| m.group.as_str() == primary.group)
    else {
        return Plan::Refuse {
            reason: format!(
                "the primary {} ({}) is not in MEMBERS: no writer endpoint is configured for it",
                primary.group, primary.region
            ),
        };
    };
    if member.region.as_str() != primary.region {
        return Plan::Refuse {
            reason: format!(
                "MEMBERS places {} in {}, but AWS reports it in {}",
                member.group, member.region, primary.region
            ),
        };
    }

    let (dry_run, why) = match intent {
        Intent::Status => {
            return Plan::NoOp {
                reason: "status is read-only".to_owned(),
            };
        }
        Intent::FollowPromotion { group, region } => {
            if group != &member.group {
                let role = ds
                    .members
                    .iter()
                    .find(|m| m.group == group.as_str())
                    .map_or(Role::Unknown("not a member".to_owned()), |m| m.role.clone());
                return Plan::NoOp {
                    reason: format!(
                        "stale or duplicate promotion: {group} ({region}) is {role} now; the primary is {} ({})",
                        member.group, member.region
                    ),
                };
            }
            (
                false,
                format!("{} ({}) was promoted and is PRIMARY", member.group, member.region),
            )
        }
        Intent::FollowPrimary { alarm } => (
            false,
            format!(
                "alarm {alarm} is in ALARM; the primary is {} ({})",
                member.group, member.region
            ),
        ),
        Intent::ManualSwitch {
            target,
            dry_run,
            reason,
        } => {
            if target != &member.region {
                return Plan::Refuse {
                    reason: format!(
                        "{target} is not the primary Region ({} is): writers must go to the primary. \
                         Promote {target} first (promoter or FailoverGlobalReplicationGroup)",
                        member.region
                    ),
                };
            }
            (*dry_run, format!("operator: {reason}"))
        }
    };

    let record = observed.record.as_ref();
    if let Some(r) = record {
        if r.has_routing_policy {
            return Plan::Refuse {
                reason: format!(
                    "{} is a routing-policy or alias record; dns mode rewrites only a simple CNAME",
                    cfg.dns.record_name
                ),
            };
        }
        if !r.record_type.eq_ignore_ascii_case("CNAME") {
            return Plan::Refuse {
                reason: format!(
                    "{} is a {} record, not a CNAME; refusing to replace it",
                    cfg.dns.record_name, r.record_type
                ),
            };
        }
        if r.value.as_deref() == Some(member.writer_endpoint.as_str()) {
            return Plan::NoOp {
                reason: format!(
                    "{} already points at {} ({}); {why}",
                    cfg.dns.record_name, member.writer_endpoint, member.region
                ),
            };
        }
    }
    let from = record.and_then(|r| r.value.clone());
    let from_desc = match &from {
        None => "no record yet".to_owned(),
        Some(v) => match DnsName::parse(v)
            .ok()
            .and_then(|n| cfg.datastore.member_with_endpoint(&n))
        {
            Some(m) => format!("was {} ({})", v, m.region),
            None => format!("was {v}, not a configured endpoint"),
        },
    };
    Plan::Switch {
        change: RecordChange {
            region: member.region.clone(),
            group: member.group.clone(),
            from,
            to: member.writer_endpoint.clone(),
            ttl: cfg.dns.ttl,
            dry_run,
        },
        reason: format!("{why}; {from_desc}"),
    }
}

/// The read-only view the `status` command returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub global_datastore: String,
    pub datastore_status: String,
    pub primary_region: Option<String>,
    pub primary_group: Option<String>,
    pub members: Vec<crate::observed::MemberView>,
    pub record_name: String,
    pub record_value: Option<String>,
    pub record_ttl: Option<i64>,
    /// The configured Region whose endpoint the record points at.
    pub record_points_at: Option<String>,
    /// True when the record points at the primary's endpoint.
    pub writers_on_primary: bool,
}

pub fn status_report(observed: &Observed, cfg: &SwitchConfig) -> StatusReport {
    let primaries: Vec<_> = observed.datastore.primaries().collect();
    let primary = match primaries.as_slice() {
        [p] => Some(*p),
        _ => None,
    };
    let record = observed.record.as_ref();
    let value = record.and_then(|r| r.value.clone());
    let pointed = value
        .as_deref()
        .and_then(|v| DnsName::parse(v).ok())
        .and_then(|n| cfg.datastore.member_with_endpoint(&n).cloned());
    StatusReport {
        global_datastore: observed.datastore.id.clone(),
        datastore_status: observed.datastore.status.clone(),
        primary_region: primary.map(|p| p.region.clone()),
        primary_group: primary.map(|p| p.group.clone()),
        members: observed.datastore.members.clone(),
        record_name: cfg.dns.record_name.to_string(),
        record_value: value,
        record_ttl: record.and_then(|r| r.ttl),
        writers_on_primary: matches!((&pointed, primary), (Some(m), Some(p)) if m.group.as_str() == p.group),
        record_points_at: pointed.map(|m| m.region.to_string()),
    }
}
