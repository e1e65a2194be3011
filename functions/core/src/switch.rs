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
use std::collections::BTreeMap;

use crate::command::{CommandRejected, confirmed, default_true, member_region};
use crate::config::{ArcTarget, DnsTarget, MemberConfig, Routing, SwitchConfig};
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
    /// Read-only readiness check: a PASS/WARN/FAIL checklist of what the switch needs from the
    /// account (see [`crate::preflight`]).
    Preflight {},
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
        /// `arc` mode, break glass: safety-rule ARNs to override for this one change. Needs
        /// `confirm` even on a dry run. Never set on an automatic path.
        #[serde(default)]
        override_safety_rules: Vec<String>,
    },
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
    /// An alarm fired, a Region switch plan ran this step, or ElastiCache sent an event that can
    /// mean a role change: make sure writers are on whoever is primary now.
    FollowPrimary { because: String },
    /// The schedule: check that writers are on the primary, and repair it when an event was
    /// lost. Never waits on a datastore that is changing: the promotion event, or the next
    /// reconcile, follows it.
    Reconcile { scheduled_at: String },
    /// An operator asked for writers to go to this Region.
    ManualSwitch {
        target: Region,
        dry_run: bool,
        reason: String,
        /// Safety rules the operator chose to override (arc mode only).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        override_safety_rules: Vec<String>,
    },
    /// An operator asked to see the state.
    Status,
    /// An operator (or the hourly schedule) asked for the readiness checklist.
    Preflight,
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
        Trigger::ElastiCache(n) if !n.may_change_roles() => ignore(format!(
            "ElastiCache event {} for {} does not change the primary",
            n.event, n.source
        )),
        // Another event that can mean a role change: a cue to read the datastore, never a truth.
        Trigger::ElastiCache(n) if !n.is_promotion() => match resolve_source(&n.source, cfg) {
            Some(m) => Ok(Triage::Act(Intent::FollowPrimary {
                because: format!(
                    "ElastiCache event {} of {} ({}) can mean a role change",
                    n.event, m.group, m.region
                ),
            })),
            None => ignore(format!(
                "ElastiCache event {} of {} is not for a member of Global Datastore {}",
                n.event, n.source, cfg.datastore.id
            )),
        },
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
        Trigger::Schedule { time } => Ok(Triage::Act(Intent::Reconcile {
            scheduled_at: time.clone(),
        })),
        // A plan step after the promotion: writers follow whoever is primary, never a Region the
        // payload names (the datastore is the only authority on that).
        Trigger::RegionSwitch(step) => Ok(Triage::Act(Intent::FollowPrimary {
            because: format!(
                "Region switch plan {} (execution {}) ran this step",
                step.plan_arn,
                step.execution_id.as_deref().unwrap_or("unknown")
            ),
        })),
        Trigger::Command(SwitchCommand::Status {}) => Ok(Triage::Act(Intent::Status)),
        Trigger::Command(SwitchCommand::Preflight {}) => Ok(Triage::Act(Intent::Preflight)),
        Trigger::Command(SwitchCommand::Switch {
            target_region,
            dry_run,
            confirm,
            reason,
            override_safety_rules,
        }) => {
            let target = member_region(target_region, &cfg.datastore)?;
            if !override_safety_rules.is_empty() {
                if cfg.mode() != crate::config::RoutingMode::Arc {
                    return Err(CommandRejected::BadOverride(
                        "safety rules exist only in arc mode".into(),
                    ));
                }
                if let Some(bad) = override_safety_rules
                    .iter()
                    .find(|a| !a.starts_with("arn:") || !a.contains("/safetyrule/"))
                {
                    return Err(CommandRejected::BadOverride(format!(
                        "{:?} is not a safety-rule ARN",
                        bad.chars().take(120).collect::<String>()
                    )));
                }
            }
            let reason = confirmed(
                !dry_run || !override_safety_rules.is_empty(),
                &cfg.datastore,
                confirm.as_deref(),
                reason.as_deref(),
            )?;
            Ok(Triage::Act(Intent::ManualSwitch {
                target,
                dry_run: *dry_run,
                reason,
                override_safety_rules: override_safety_rules.clone(),
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
            because: format!("alarm {} is in ALARM", a.name),
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

/// A flip of the ARC routing controls: `on`'s control On, every other member's Off, in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlFlip {
    pub on: Region,
    pub group: ReplicationGroupId,
    /// (control ARN, Region, desired state On?) for every member, in `MEMBERS` order.
    pub entries: Vec<(String, Region, bool)>,
    /// The states read before deciding (`None`: could not be read).
    pub before: BTreeMap<String, Option<bool>>,
    /// Safety rules to override: only ever from an operator's command.
    pub override_safety_rules: Vec<String>,
    pub dry_run: bool,
}

/// What to do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum Plan {
    /// The Global Datastore is between states; read it again shortly.
    Wait { reason: String },
    /// Nothing to change.
    NoOp { reason: String },
    /// Acting would move writers somewhere wrong, or the configuration disagrees with AWS.
    Refuse { reason: String },
    /// dns mode: swap the writer CNAME.
    Switch { change: RecordChange, reason: String },
    /// arc mode: flip the routing controls.
    Flip { flip: ControlFlip, reason: String },
}

impl Plan {
    /// The plan's name as it appears in the audit record.
    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Wait { .. } => "wait",
            Plan::NoOp { .. } => "no_op",
            Plan::Refuse { .. } => "refuse",
            Plan::Switch { .. } => "switch",
            Plan::Flip { .. } => "flip",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Plan::Wait { reason }
            | Plan::NoOp { reason }
            | Plan::Refuse { reason }
            | Plan::Switch { reason, .. }
            | Plan::Flip { reason, .. } => reason,
        }
    }

    /// Whether carrying the plan out is only to be reported.
    pub fn is_dry_run(&self) -> bool {
        match self {
            Plan::Switch { change, .. } => change.dry_run,
            Plan::Flip { flip, .. } => flip.dry_run,
            _ => false,
        }
    }
}

/// Where writers must go, and why: the member described as PRIMARY, checked against the intent.
struct Target<'a> {
    member: &'a MemberConfig,
    dry_run: bool,
    overrides: Vec<String>,
    why: String,
}

fn target<'a>(intent: &Intent, observed: &Observed, cfg: &'a SwitchConfig) -> Result<Target<'a>, Box<Plan>> {
    let ds = &observed.datastore;
    // A trigger waits for a changing datastore to settle; a reconcile never acts on one.
    let unsettled = |reason: String| {
        Box::new(match intent {
            Intent::Reconcile { .. } => Plan::NoOp {
                reason: format!(
                    "{reason}; a reconcile never moves writers while the datastore is changing \
                     (the promotion event, or the next reconcile, follows it)"
                ),
            },
            _ => Plan::Wait { reason },
        })
    };
    if !ds.is_available() {
        return Err(unsettled(format!(
            "Global Datastore {} is {}, not available: a failover or change is under way",
            ds.id, ds.status
        )));
    }
    let primaries: Vec<_> = ds.primaries().collect();
    let [primary] = primaries.as_slice() else {
        return Err(unsettled(format!(
            "Global Datastore {} reports {} PRIMARY members, not one",
            ds.id,
            primaries.len()
        )));
    };
    let Some(member) = cfg
        .datastore
        .members
        .iter()
        .find(|m| m.group.as_str() == primary.group)
    else {
        return Err(Box::new(Plan::Refuse {
            reason: format!(
                "the primary {} ({}) is not in MEMBERS: no writer endpoint is configured for it",
                primary.group, primary.region
            ),
        }));
    };
    if member.region.as_str() != primary.region {
        return Err(Box::new(Plan::Refuse {
            reason: format!(
                "MEMBERS places {} in {}, but AWS reports it in {}",
                member.group, member.region, primary.region
            ),
        }));
    }
    let at = |dry_run, overrides, why| {
        Ok(Target {
            member,
            dry_run,
            overrides,
            why,
        })
    };
    match intent {
        Intent::Status | Intent::Preflight => Err(Box::new(Plan::NoOp {
            reason: "status and preflight are read-only".to_owned(),
        })),
        Intent::FollowPromotion { group, region } => {
            if group != &member.group {
                let role = ds
                    .members
                    .iter()
                    .find(|m| m.group == group.as_str())
                    .map_or(Role::Unknown("not a member".to_owned()), |m| m.role.clone());
                return Err(Box::new(Plan::NoOp {
                    reason: format!(
                        "stale or duplicate promotion: {group} ({region}) is {role} now; the primary is {} ({})",
                        member.group, member.region
                    ),
                }));
            }
            at(
                false,
                Vec::new(),
                format!("{} ({}) was promoted and is PRIMARY", member.group, member.region),
            )
        }
        Intent::FollowPrimary { because } => at(
            false,
            Vec::new(),
            format!("{because}; the primary is {} ({})", member.group, member.region),
        ),
        Intent::Reconcile { scheduled_at } => at(
            false,
            Vec::new(),
            format!(
                "reconcile ({scheduled_at}): the primary is {} ({})",
                member.group, member.region
            ),
        ),
        Intent::ManualSwitch {
            target,
            dry_run,
            reason,
            override_safety_rules,
        } => {
            if target != &member.region {
                return Err(Box::new(Plan::Refuse {
                    reason: format!(
                        "{target} is not the primary Region ({} is): writers must go to the primary. \
                         Promote {target} first (promoter or FailoverGlobalReplicationGroup)",
                        member.region
                    ),
                }));
            }
            at(
                *dry_run,
                override_safety_rules.clone(),
                format!("operator: {reason}"),
            )
        }
    }
}

/// Decides what to do, given what was observed: writers go to the member described as PRIMARY,
/// through whichever routing the configuration names. `Intent::Status` never reaches here (the
/// handler reports instead).
pub fn decide(intent: &Intent, observed: &Observed, cfg: &SwitchConfig) -> Plan {
    let t = match target(intent, observed, cfg) {
        Ok(t) => t,
        Err(plan) => return *plan,
    };
    match &cfg.routing {
        Routing::Dns(dns) => decide_dns(t, observed, dns, cfg),
        Routing::Arc(arc) => decide_arc(t, observed, arc),
    }
}

fn decide_dns(t: Target<'_>, observed: &Observed, dns: &DnsTarget, cfg: &SwitchConfig) -> Plan {
    let (member, why) = (t.member, t.why);
    let record = observed.record.as_ref();
    if let Some(r) = record {
        if r.has_routing_policy {
            return Plan::Refuse {
                reason: format!(
                    "{} is a routing-policy or alias record; dns mode rewrites only a simple CNAME",
                    dns.record_name
                ),
            };
        }
        if !r.record_type.eq_ignore_ascii_case("CNAME") {
            return Plan::Refuse {
                reason: format!(
                    "{} is a {} record, not a CNAME; refusing to replace it",
                    dns.record_name, r.record_type
                ),
            };
        }
        if r.value.as_deref() == Some(member.writer_endpoint.as_str()) {
            return Plan::NoOp {
                reason: format!(
                    "{} already points at {} ({}); {why}",
                    dns.record_name, member.writer_endpoint, member.region
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
            ttl: dns.ttl,
            dry_run: t.dry_run,
        },
        reason: format!("{why}; {from_desc}"),
    }
}

fn decide_arc(t: Target<'_>, observed: &Observed, arc: &ArcTarget) -> Plan {
    let member = t.member;
    let before: BTreeMap<String, Option<bool>> = arc
        .controls
        .iter()
        .map(|(_, arn)| {
            let state = observed
                .controls
                .as_ref()
                .and_then(|c| c.states.get(arn).copied());
            (arn.clone(), state)
        })
        .collect();
    let entries: Vec<(String, Region, bool)> = arc
        .controls
        .iter()
        .map(|(region, arn)| (arn.clone(), region.clone(), region == &member.region))
        .collect();
    let matches = entries
        .iter()
        .all(|(arn, _, want)| before.get(arn).copied().flatten() == Some(*want));
    if matches {
        return Plan::NoOp {
            reason: format!(
                "routing controls already have only {} On; {}",
                member.region, t.why
            ),
        };
    }
    let on_now: Vec<&str> = entries
        .iter()
        .filter(|(arn, _, _)| before.get(arn).copied().flatten() == Some(true))
        .map(|(_, r, _)| r.as_str())
        .collect();
    let was = if on_now.is_empty() {
        "no control was read as On".to_owned()
    } else {
        format!("On now: {}", on_now.join(", "))
    };
    Plan::Flip {
        flip: ControlFlip {
            on: member.region.clone(),
            group: member.group.clone(),
            entries,
            before,
            override_safety_rules: t.overrides,
            dry_run: t.dry_run,
        },
        reason: format!("{}; {was}", t.why),
    }
}

/// The member Region writers are sent to, as observed: the configured member whose endpoint the
/// record names (dns), or the one member whose routing control is On (arc). `None` when the record
/// names no configured endpoint, or no control or several are On, or the states are unknown.
pub fn writers_on(observed: &Observed, cfg: &SwitchConfig) -> Option<Region> {
    match &cfg.routing {
        Routing::Dns(_) => observed
            .record
            .as_ref()
            .and_then(|r| r.value.as_deref())
            .and_then(|v| DnsName::parse(v).ok())
            .and_then(|n| cfg.datastore.member_with_endpoint(&n))
            .map(|m| m.region.clone()),
        Routing::Arc(arc) => {
            let states = observed.controls.as_ref()?;
            let mut on = arc
                .controls
                .iter()
                .filter(|(_, arn)| states.states.get(arn).copied() == Some(true))
                .map(|(r, _)| r);
            match (on.next(), on.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
    }
}

/// The read-only view the `status` command returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub global_datastore: String,
    pub datastore_status: String,
    pub mode: crate::config::RoutingMode,
    pub primary_region: Option<String>,
    pub primary_group: Option<String>,
    pub members: Vec<crate::observed::MemberView>,
    /// dns mode: the writer record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    /// arc mode: each member Region's routing control, `On`, `Off` or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_controls: Option<BTreeMap<String, String>>,
    /// arc mode: the cluster endpoint that answered, and those that did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controls_read_from: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints_failed: Vec<String>,
    /// The Region writers are sent to now (the record's target, or the one control On).
    pub writers_point_at: Option<String>,
    /// True when writers are sent to the primary, and only there.
    pub writers_on_primary: bool,
}

pub fn status_report(observed: &Observed, cfg: &SwitchConfig) -> StatusReport {
    let primaries: Vec<_> = observed.datastore.primaries().collect();
    let primary = match primaries.as_slice() {
        [p] => Some(*p),
        _ => None,
    };
    let record = observed.record.as_ref();
    let mut report = StatusReport {
        global_datastore: observed.datastore.id.clone(),
        datastore_status: observed.datastore.status.clone(),
        mode: cfg.mode(),
        primary_region: primary.map(|p| p.region.clone()),
        primary_group: primary.map(|p| p.group.clone()),
        members: observed.datastore.members.clone(),
        record_name: None,
        record_value: None,
        record_ttl: None,
        routing_controls: None,
        controls_read_from: None,
        endpoints_failed: Vec::new(),
        writers_point_at: None,
        writers_on_primary: false,
    };
    report.writers_point_at = writers_on(observed, cfg).map(|r| r.to_string());
    match &cfg.routing {
        Routing::Dns(dns) => {
            report.record_name = Some(dns.record_name.to_string());
            report.record_value = record.and_then(|r| r.value.clone());
            report.record_ttl = record.and_then(|r| r.ttl);
        }
        Routing::Arc(arc) => {
            let states = observed.controls.as_ref();
            let state_of = |arn: &str| states.and_then(|c| c.states.get(arn).copied());
            report.routing_controls = Some(
                arc.controls
                    .iter()
                    .map(|(r, arn)| {
                        let s = match state_of(arn) {
                            Some(true) => "On",
                            Some(false) => "Off",
                            None => "unknown",
                        };
                        (r.to_string(), s.to_owned())
                    })
                    .collect(),
            );
            report.controls_read_from = states.map(|c| c.read_from.clone());
            report.endpoints_failed = states.map(|c| c.failed.clone()).unwrap_or_default();
        }
    }
    report.writers_on_primary = matches!(
        (&report.writers_point_at, &report.primary_region),
        (Some(w), Some(p)) if w == p
    );
    report
}
