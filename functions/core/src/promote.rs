//! The promoter's gates, as one pure function of (observed state, policy, now, forced gates).
//!
//! Promoting a Global Datastore secondary is disruptive and can lose the writes that had not
//! replicated, so every gate must agree, and each verdict is reported by name:
//!
//! 1. `state` — the datastore is `available`, the target is a SECONDARY member, no failover is
//!    under way (anything `modifying` means one is: stop).
//! 2. `signal` — the write-error alarms are in ALARM *now* (read, not taken from the event).
//! 3. `vantage` — the primary Region is really down, not just the link: enough vantage points
//!    (alarms seen from the primary's own Region, its health alarm, or its CloudWatch not
//!    answering at all, per policy) agree. Errors seen only from the secondary mean a bad link, and
//!    promoting would move every writer onto it.
//! 4. `data_loss` — the last replication lag is under the bound; a missing lag (the primary Region
//!    dark) is decided by policy and reported as an unknown loss bound.
//! 5. `cooldown` — no failover within the minimum interval (from `DescribeEvents`), so two
//!    Regions cannot ping-pong.
//!
//! **Fail closed.** Evidence that could not be read is never agreement. Only a Region that does
//! not answer at all ([`AlarmRead::RegionDark`]: connection refused or reset, timeout, 5xx) may
//! count as agreeing, and only where the policy says so; a Region that answers but lacks the
//! alarm, denies access or throttles to the end ([`AlarmRead::Unreadable`]) is a configuration
//! fault, and blocks. The same split decides the lag and the events.
//!
//! `force` skips named gates — only from a confirmed operator command — and the decision says so.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{MissingEvents, MissingLag, PromotePolicy};

use crate::ids::{Region, ReplicationGroupId};
use crate::intake::AlarmState;
use crate::observed::{DatastoreView, Role};
use crate::region_switch::RegionSwitchStep;

/// The gates, by the names operators use in `force`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateName {
    State,
    Signal,
    Vantage,
    DataLoss,
    Cooldown,
}

impl GateName {
    /// The name operators use (`force`) and reasons print.
    pub fn as_str(self) -> &'static str {
        match self {
            GateName::State => "state",
            GateName::Signal => "signal",
            GateName::Vantage => "vantage",
            GateName::DataLoss => "data_loss",
            GateName::Cooldown => "cooldown",
        }
    }

    pub const ALL: [GateName; 5] = [
        GateName::State,
        GateName::Signal,
        GateName::Vantage,
        GateName::DataLoss,
        GateName::Cooldown,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Block,
    /// Skipped on an operator's `force`; the detail still says what it would have found.
    Forced,
}

/// One gate's verdict and the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub name: GateName,
    pub verdict: Verdict,
    pub detail: String,
}

/// What reading one alarm gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmRead {
    /// The alarm's state now.
    Is(AlarmState),
    /// Its Region's CloudWatch did not answer at all (connection refused or reset, timeout, 5xx):
    /// the Region may be dark.
    RegionDark(String),
    /// The Region answered but the alarm could not be read: it does not exist, access is denied,
    /// the calls were throttled to the end. A fault to fix, never agreement.
    Unreadable(String),
}

/// An alarm as `DescribeAlarms` reported it, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmReading {
    pub region: String,
    pub name: String,
    pub state: AlarmRead,
}

/// The replication lag as read for the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LagRead {
    /// The newest datapoint: seconds, and when it was measured.
    Value { seconds: f64, at: DateTime<Utc> },
    /// No datapoint in the window: nothing is being published (the primary Region dark), or the
    /// metric is misconfigured. `MISSING_LAG` decides.
    Missing,
    /// The target Region's CloudWatch did not answer at all. `MISSING_LAG` decides.
    RegionDark(String),
    /// The read failed in a Region that answered (denied, invalid query…): blocks.
    Unreadable(String),
}

/// What `DescribeEvents` gave across the member Regions: every page, each member group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventsRead {
    /// The newest failover or promotion event of a member group within the window.
    pub last_failover: Option<DateTime<Utc>>,
    /// Regions whose events were read in full.
    pub read: Vec<String>,
    /// Regions whose ElastiCache did not answer at all (dark): their failovers are reported in
    /// the other members' Regions too.
    pub dark: Vec<String>,
    /// Regions that answered but whose events could not be read, with why.
    pub unreadable: Vec<String>,
}

/// Everything the gates read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoteObserved {
    pub datastore: DatastoreView,
    /// The write-error alarms in the target's Region.
    pub signal: Vec<AlarmReading>,
    /// Vantage points on the primary Region.
    pub vantage: Vec<AlarmReading>,
    /// The last `GlobalDatastoreReplicationLag` datapoint for the target, or why there is none.
    pub lag: LagRead,
    /// The member groups' failover events, per `DescribeEvents`.
    pub events: EventsRead,
}

/// The promotion to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promotion {
    pub region: Region,
    pub group: ReplicationGroupId,
}

/// Every gate's verdict, and whether to promote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoteDecision {
    pub gates: Vec<Gate>,
    /// `Some` only when no gate blocks.
    pub promote: Option<Promotion>,
    pub reason: String,
    /// Gates an operator forced past, for the audit record.
    pub forced: Vec<GateName>,
}

fn gate(name: GateName, pass: bool, detail: String, force: &[GateName]) -> Gate {
    let verdict = if pass {
        Verdict::Pass
    } else if force.contains(&name) {
        Verdict::Forced
    } else {
        Verdict::Block
    };
    Gate {
        name,
        verdict,
        detail,
    }
}

fn describe(readings: &[AlarmReading]) -> String {
    readings
        .iter()
        .map(|a| match &a.state {
            AlarmRead::Is(s) => format!("{}/{}={s:?}", a.region, a.name),
            AlarmRead::RegionDark(e) => format!("{}/{}=Region not answering ({e})", a.region, a.name),
            AlarmRead::Unreadable(e) => format!("{}/{}=unreadable ({e})", a.region, a.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "no Region".to_owned()
    } else {
        v.join(", ")
    }
}

/// Evaluates every gate for promoting `target` (a member of the datastore) at `now`.
pub fn evaluate(
    target: &Promotion,
    observed: &PromoteObserved,
    policy: &PromotePolicy,
    now: DateTime<Utc>,
    force: &[GateName],
) -> PromoteDecision {
    let ds = &observed.datastore;
    let mut gates = Vec::with_capacity(5);

    // 1. state — never forceable: promoting during a failover or a non-secondary is never right.
    let member = ds.members.iter().find(|m| m.group == target.group.as_str());
    let (state_ok, state_detail) = match member {
        _ if !ds.is_available() => (
            false,
            format!("Global Datastore is {}: a change is under way", ds.status),
        ),
        None => (false, format!("{} is not a member of {}", target.group, ds.id)),
        Some(m) if m.role != Role::Secondary => (false, format!("{} is {}, not SECONDARY", m.group, m.role)),
        Some(m) if m.region != target.region.as_str() => (
            false,
            format!("{} is in {}, not {}", m.group, m.region, target.region),
        ),
        Some(m) if !m.status.eq_ignore_ascii_case("associated") => {
            (false, format!("{} is {}, not associated", m.group, m.status))
        }
        Some(m) => (
            true,
            format!("{} is an associated SECONDARY; datastore available", m.group),
        ),
    };
    gates.push(gate(GateName::State, state_ok, state_detail, &[]));

    // 2. signal
    let alarming = observed
        .signal
        .iter()
        .filter(|a| a.state == AlarmRead::Is(AlarmState::Alarm))
        .count();
    let signal_ok = !observed.signal.is_empty() && alarming == observed.signal.len();
    gates.push(gate(
        GateName::Signal,
        signal_ok,
        if observed.signal.is_empty() {
            "no write-error alarm is configured".to_owned()
        } else {
            format!(
                "{alarming} of {} in ALARM now: {}",
                observed.signal.len(),
                describe(&observed.signal)
            )
        },
        force,
    ));

    // 3. vantage
    let agreeing = observed
        .vantage
        .iter()
        .filter(|a| match &a.state {
            AlarmRead::Is(s) => *s == AlarmState::Alarm,
            AlarmRead::RegionDark(_) => policy.unreachable_vantage_agrees,
            AlarmRead::Unreadable(_) => false,
        })
        .count();
    let healthy = observed
        .vantage
        .iter()
        .filter(|a| a.state == AlarmRead::Is(AlarmState::Ok))
        .count();
    let unreadable: Vec<&AlarmReading> = observed
        .vantage
        .iter()
        .filter(|a| matches!(a.state, AlarmRead::Unreadable(_)))
        .collect();
    let vantage_ok = unreadable.is_empty() && agreeing >= policy.vantage_required.max(1);
    let vantage_detail = if !unreadable.is_empty() {
        format!(
            "vantage alarm(s) could not be read from a Region that answers: {} — a missing alarm or a denied \
             read is a configuration fault, not a dark Region",
            describe(&unreadable.into_iter().cloned().collect::<Vec<_>>())
        )
    } else if observed.vantage.is_empty() {
        match ds.primaries().next() {
            Some(p) => format!(
                "no vantage alarm is configured for the primary Region {} (VANTAGE_ALARMS)",
                p.region
            ),
            None => "the datastore reports no PRIMARY member: there is no primary Region to read".to_owned(),
        }
    } else if vantage_ok {
        format!(
            "{agreeing} vantage point(s) agree the primary Region is down: {}",
            describe(&observed.vantage)
        )
    } else if healthy > 0 {
        format!(
            "the primary Region looks healthy from {healthy} vantage point(s): errors seen only from the secondary \
             suggest the inter-Region link, not the primary ({})",
            describe(&observed.vantage)
        )
    } else {
        format!(
            "{agreeing} of the {} vantage point(s) required agree: {}",
            policy.vantage_required.max(1),
            describe(&observed.vantage)
        )
    };
    gates.push(gate(GateName::Vantage, vantage_ok, vantage_detail, force));

    // 4. data_loss
    let fresh = |at: &DateTime<Utc>| {
        now.signed_duration_since(*at)
            .to_std()
            .is_ok_and(|age| age <= policy.lag_max_age)
    };
    let missing = |what: String| match policy.missing_lag {
        MissingLag::Allow => (true, format!("{what}; policy allows: the loss bound is unknown")),
        MissingLag::Block => (false, format!("{what}; policy blocks without a known loss bound")),
    };
    let (loss_ok, loss_detail) = match &observed.lag {
        LagRead::Value { seconds, at } if fresh(at) && *seconds <= policy.max_lag_seconds => (
            true,
            format!(
                "replication lag {seconds:.3} s is within the {} s bound",
                policy.max_lag_seconds
            ),
        ),
        LagRead::Value { seconds, at } if fresh(at) => (
            false,
            format!(
                "replication lag {seconds:.3} s exceeds the {} s bound: promoting would lose more",
                policy.max_lag_seconds
            ),
        ),
        LagRead::Value { seconds, at } => missing(format!(
            "the last lag ({seconds:.3} s at {at}) is too old to trust"
        )),
        LagRead::Missing => missing("no replication lag datapoint in the window".to_owned()),
        LagRead::RegionDark(e) => missing(format!("the lag's Region did not answer ({e})")),
        LagRead::Unreadable(e) => (
            false,
            format!("the replication lag could not be read from a Region that answers: {e}"),
        ),
    };
    gates.push(gate(GateName::DataLoss, loss_ok, loss_detail, force));

    // 5. cooldown
    let ev = &observed.events;
    let mut read = format!("events read in {}", list_or_none(&ev.read));
    if !ev.dark.is_empty() {
        read.push_str(&format!("; not answering (dark): {}", ev.dark.join(", ")));
    }
    let recent = ev.last_failover.map(|at| {
        let since = now.signed_duration_since(at).to_std().unwrap_or(Duration::ZERO);
        (since < policy.cooldown, since)
    });
    let (cool_ok, cool_detail) = match recent {
        Some((true, since)) => (
            false,
            format!(
                "the last failover was {} s ago, within the {} s cooldown ({read})",
                since.as_secs(),
                policy.cooldown.as_secs()
            ),
        ),
        _ if !ev.unreadable.is_empty() => {
            let what = format!(
                "the events of a Region that answers could not be read: {} ({read})",
                ev.unreadable.join("; ")
            );
            match policy.missing_events {
                MissingEvents::Block => (
                    false,
                    format!("{what}; policy blocks: a failover there may be within the cooldown"),
                ),
                MissingEvents::Allow => (true, format!("{what}; policy allows")),
            }
        }
        Some((false, since)) => (
            true,
            format!("the last failover was {} s ago ({read})", since.as_secs()),
        ),
        None => (true, format!("no failover within the events window ({read})")),
    };
    gates.push(gate(GateName::Cooldown, cool_ok, cool_detail, force));

    let blocking: Vec<&Gate> = gates.iter().filter(|g| g.verdict == Verdict::Block).collect();
    let forced: Vec<GateName> = gates
        .iter()
        .filter(|g| g.verdict == Verdict::Forced)
        .map(|g| g.name)
        .collect();
    if let Some(first) = blocking.first() {
        let names: Vec<&str> = blocking.iter().map(|g| g.name.as_str()).collect();
        return PromoteDecision {
            reason: format!("blocked by {}: {}", names.join(", "), first.detail),
            gates,
            promote: None,
            forced,
        };
    }
    PromoteDecision {
        reason: if forced.is_empty() {
            format!("every gate agrees: promote {} ({})", target.group, target.region)
        } else {
            format!(
                "promote {} ({}) with gates forced past: {}",
                target.group,
                target.region,
                forced.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
            )
        },
        gates,
        promote: Some(target.clone()),
        forced,
    }
}

/// Manual commands the promoter accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub enum PromoterCommand {
    /// A dry-run report of every gate for promoting this Region's member.
    Evaluate {},
    /// Read-only readiness check: a PASS/WARN/FAIL checklist of what the promoter needs from the
    /// account (see [`crate::preflight`]).
    Preflight {},
    /// Promote the member in `target_region`.
    Promote {
        target_region: String,
        #[serde(default = "crate::command::default_true")]
        dry_run: bool,
        #[serde(default)]
        confirm: Option<String>,
        #[serde(default)]
        reason: Option<String>,
        /// Gates to skip (never `state`); logged as forced.
        #[serde(default)]
        force: Vec<GateName>,
    },
}

/// What a trigger asks of the promoter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum PromoteIntent {
    /// An alarm or the schedule: evaluate and, if every gate agrees, promote this Region.
    Automatic { because: String },
    /// Report every gate; change nothing.
    Evaluate,
    /// The readiness checklist; change nothing.
    Preflight,
    /// An operator's promotion.
    Manual {
        target: Region,
        dry_run: bool,
        reason: String,
        force: Vec<GateName>,
    },
    /// A custom-action step of an ARC Region switch plan: make the activating Region primary.
    /// Starting the plan execution was the decision to move, so the gates that exist to confirm an
    /// *automatic* decision ([`REGION_SWITCH_WAIVES`]) are waived and reported as forced; `state`
    /// and `data_loss` still hold. Success means the Region is primary: the plan's next steps rely
    /// on it, and a step that runs out of time fails so that Region switch retries it.
    RegionSwitch { step: Box<RegionSwitchStep> },
}

/// The gates a Region switch plan execution stands in for: it is an operator's (or its trigger's)
/// decision that the application moves, made with its own evidence and its own minimum interval.
pub const REGION_SWITCH_WAIVES: [GateName; 3] = [GateName::Signal, GateName::Vantage, GateName::Cooldown];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "triage", rename_all = "snake_case")]
pub enum PromoterTriage {
    Ignore { reason: String },
    Act(PromoteIntent),
}

/// Decides from the trigger and configuration alone whether to read AWS at all.
pub fn triage(
    trigger: &crate::intake::Trigger<PromoterCommand>,
    cfg: &crate::config::PromoterConfig,
) -> Result<PromoterTriage, crate::command::CommandRejected> {
    use crate::command::CommandRejected;
    use crate::intake::Trigger;
    let ignore = |reason: String| Ok(PromoterTriage::Ignore { reason });
    match trigger {
        Trigger::ElastiCache(n) => ignore(format!("ElastiCache event {} is the traffic switch's", n.event)),
        Trigger::Alarm(a) if !cfg.signal_alarms.contains(&a.name) => {
            ignore(format!("alarm {} is not in SIGNAL_ALARMS", a.name))
        }
        Trigger::Alarm(a) if a.new_state != AlarmState::Alarm => ignore(format!(
            "alarm {} went to {:?}; only ALARM can start a promotion",
            a.name, a.new_state
        )),
        Trigger::Alarm(a) => Ok(PromoterTriage::Act(PromoteIntent::Automatic {
            because: format!("alarm {} entered ALARM", a.name),
        })),
        Trigger::Schedule { time } => Ok(PromoterTriage::Act(PromoteIntent::Automatic {
            because: format!("scheduled re-evaluation at {time}"),
        })),
        Trigger::RegionSwitch(step) => Ok(PromoterTriage::Act(PromoteIntent::RegionSwitch {
            step: step.clone(),
        })),
        Trigger::Command(PromoterCommand::Evaluate {}) => Ok(PromoterTriage::Act(PromoteIntent::Evaluate)),
        Trigger::Command(PromoterCommand::Preflight {}) => Ok(PromoterTriage::Act(PromoteIntent::Preflight)),
        Trigger::Command(PromoterCommand::Promote {
            target_region,
            dry_run,
            confirm,
            reason,
            force,
        }) => {
            let target = crate::command::member_region(target_region, &cfg.datastore)?;
            if force.contains(&GateName::State) {
                return Err(CommandRejected::BadForce(
                    "the state gate cannot be forced: promoting during a failover, or a member that is not \
                     SECONDARY, is never right"
                        .into(),
                ));
            }
            let reason = crate::command::confirmed(
                !dry_run || !force.is_empty(),
                &cfg.datastore,
                confirm.as_deref(),
                reason.as_deref(),
            )?;
            Ok(PromoterTriage::Act(PromoteIntent::Manual {
                target,
                dry_run: *dry_run,
                reason,
                force: force.clone(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::observed::MemberView;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .expect("time")
    }

    fn target() -> Promotion {
        Promotion {
            region: Region::parse("us-west-2").expect("region"),
            group: ReplicationGroupId::parse("sessions-usw2").expect("group"),
        }
    }

    fn policy() -> PromotePolicy {
        PromotePolicy {
            max_lag_seconds: 5.0,
            lag_max_age: Duration::from_secs(300),
            missing_lag: MissingLag::Allow,
            cooldown: Duration::from_secs(1800),
            missing_events: MissingEvents::Block,
            vantage_required: 1,
            unreachable_vantage_agrees: true,
        }
    }

    fn reading(region: &str, name: &str, state: AlarmRead) -> AlarmReading {
        AlarmReading {
            region: region.into(),
            name: name.into(),
            state,
        }
    }

    fn is(s: AlarmState) -> AlarmRead {
        AlarmRead::Is(s)
    }

    fn lag(seconds: f64, at: DateTime<Utc>) -> LagRead {
        LagRead::Value { seconds, at }
    }

    fn events_read(last_failover: Option<DateTime<Utc>>) -> EventsRead {
        EventsRead {
            last_failover,
            read: vec!["us-west-2".into()],
            dark: vec!["us-west-1".into()],
            unreadable: Vec::new(),
        }
    }

    /// A primary Region that is really down: every gate passes.
    fn down() -> PromoteObserved {
        PromoteObserved {
            datastore: DatastoreView {
                id: "ldgnf-sessions".into(),
                status: "available".into(),
                members: vec![
                    MemberView {
                        group: "sessions-usw1".into(),
                        region: "us-west-1".into(),
                        role: Role::Primary,
                        status: "associated".into(),
                    },
                    MemberView {
                        group: "sessions-usw2".into(),
                        region: "us-west-2".into(),
                        role: Role::Secondary,
                        status: "associated".into(),
                    },
                ],
            },
            signal: vec![reading("us-west-2", "writes-failing-usw2", is(AlarmState::Alarm))],
            vantage: vec![reading("us-west-1", "writes-failing-usw1", is(AlarmState::Alarm))],
            lag: lag(0.4, now() - chrono::Duration::seconds(30)),
            events: events_read(None),
        }
    }

    fn verdict(d: &PromoteDecision, name: GateName) -> Verdict {
        d.gates
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.verdict)
            .expect("gate present")
    }

    #[test]
    fn a_dark_primary_with_every_gate_agreeing_is_promoted_and_every_gate_is_named() {
        let d = evaluate(&target(), &down(), &policy(), now(), &[]);
        assert_eq!(d.promote, Some(target()));
        assert_eq!(d.gates.iter().map(|g| g.name).collect::<Vec<_>>(), GateName::ALL);
        assert!(
            d.gates.iter().all(|g| g.verdict == Verdict::Pass),
            "{:?}",
            d.gates
        );
    }

    #[test]
    fn state_gate_blocks_a_failover_under_way_a_primary_target_or_a_stranger() {
        let mut o = down();
        o.datastore.status = "modifying".into();
        let d = evaluate(&target(), &o, &policy(), now(), &GateName::ALL);
        assert_eq!(verdict(&d, GateName::State), Verdict::Block, "never forceable");
        assert!(d.promote.is_none());

        let mut o = down();
        o.datastore.members[1].role = Role::Primary;
        assert!(evaluate(&target(), &o, &policy(), now(), &[]).promote.is_none());

        let mut o = down();
        o.datastore.members[1].group = "other".into();
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::State), Verdict::Block);
    }

    #[test]
    fn signal_gate_needs_the_alarms_in_alarm_now_not_just_in_the_event() {
        for state in [
            is(AlarmState::Ok),
            is(AlarmState::InsufficientData),
            AlarmRead::RegionDark("connection refused".into()),
            AlarmRead::Unreadable("AccessDenied".into()),
        ] {
            let mut o = down();
            o.signal = vec![reading("us-west-2", "writes-failing-usw2", state)];
            let d = evaluate(&target(), &o, &policy(), now(), &[]);
            assert_eq!(verdict(&d, GateName::Signal), Verdict::Block, "{:?}", o.signal);
            assert!(d.promote.is_none());
        }
        let mut o = down();
        o.signal.clear();
        assert_eq!(
            verdict(&evaluate(&target(), &o, &policy(), now(), &[]), GateName::Signal),
            Verdict::Block
        );
    }

    #[test]
    fn vantage_gate_tells_a_degraded_link_from_a_dark_region() {
        // Errors only from the secondary; the primary's own writers are fine: the link.
        let mut o = down();
        o.vantage = vec![reading("us-west-1", "writes-failing-usw1", is(AlarmState::Ok))];
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::Vantage), Verdict::Block);
        assert!(d.reason.contains("inter-Region link"), "{}", d.reason);
        assert!(d.promote.is_none());

        // A dark Region's CloudWatch does not answer either: that counts, per policy.
        let mut o = down();
        o.vantage = vec![reading(
            "us-west-1",
            "writes-failing-usw1",
            AlarmRead::RegionDark("connection refused".into()),
        )];
        assert!(evaluate(&target(), &o, &policy(), now(), &[]).promote.is_some());
        let strict = PromotePolicy {
            unreachable_vantage_agrees: false,
            ..policy()
        };
        assert!(evaluate(&target(), &o, &strict, now(), &[]).promote.is_none());

        // Requiring two vantage points: one is not enough.
        let two = PromotePolicy {
            vantage_required: 2,
            ..policy()
        };
        assert!(evaluate(&target(), &down(), &two, now(), &[]).promote.is_none());
    }

    #[test]
    fn a_vantage_alarm_a_reachable_region_cannot_give_blocks_and_is_named_whatever_else_agrees() {
        for why in [
            "alarm writes-failing-usw1 does not exist in us-west-1",
            "AccessDenied: not authorized to perform cloudwatch:DescribeAlarms",
            "Throttling: Rate exceeded (gave up: attempts exhausted)",
        ] {
            let mut o = down();
            // One vantage point agrees; the other cannot be read although its Region answers.
            o.vantage.push(reading(
                "us-west-1",
                "health-usw1",
                AlarmRead::Unreadable(why.into()),
            ));
            let d = evaluate(&target(), &o, &policy(), now(), &[]);
            assert_eq!(verdict(&d, GateName::Vantage), Verdict::Block, "{why}");
            assert!(d.promote.is_none());
            assert!(
                d.reason.contains("health-usw1") && d.reason.contains(why),
                "the reason names the alarm and the error: {}",
                d.reason
            );
        }
        // Alone, an unreadable alarm never counts as a dark Region.
        let mut o = down();
        o.vantage = vec![reading(
            "us-west-1",
            "writes-failing-usw1",
            AlarmRead::Unreadable("does not exist".into()),
        )];
        assert!(evaluate(&target(), &o, &policy(), now(), &[]).promote.is_none());
    }

    #[test]
    fn with_no_vantage_point_to_read_the_reason_says_why() {
        let mut o = down();
        o.vantage.clear();
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::Vantage), Verdict::Block);
        assert!(
            d.reason.contains("for the primary Region us-west-1"),
            "{}",
            d.reason
        );
        o.datastore.members[0].role = Role::Secondary;
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert!(d.reason.contains("no PRIMARY member"), "{}", d.reason);
    }

    #[test]
    fn data_loss_gate_holds_the_lag_bound_and_the_missing_lag_policy() {
        let mut o = down();
        o.lag = lag(9.0, now());
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::DataLoss), Verdict::Block);
        assert!(d.reason.contains("exceeds"), "{}", d.reason);

        let mut o = down();
        o.lag = LagRead::Missing;
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert!(d.promote.is_some());
        let gate = d
            .gates
            .iter()
            .find(|g| g.name == GateName::DataLoss)
            .expect("gate");
        assert!(gate.detail.contains("unknown"), "{}", gate.detail);
        let block = PromotePolicy {
            missing_lag: MissingLag::Block,
            ..policy()
        };
        assert!(evaluate(&target(), &o, &block, now(), &[]).promote.is_none());

        // A lag measured long ago is no bound at all.
        let mut o = down();
        o.lag = lag(0.1, now() - chrono::Duration::hours(2));
        let d = evaluate(&target(), &o, &block, now(), &[]);
        assert_eq!(verdict(&d, GateName::DataLoss), Verdict::Block);

        // A Region that does not answer is missing data, for the policy to decide.
        let mut o = down();
        o.lag = LagRead::RegionDark("connection refused".into());
        assert!(evaluate(&target(), &o, &policy(), now(), &[]).promote.is_some());
        assert!(evaluate(&target(), &o, &block, now(), &[]).promote.is_none());
    }

    #[test]
    fn a_lag_a_reachable_region_cannot_give_blocks_whatever_the_missing_lag_policy() {
        let mut o = down();
        o.lag = LagRead::Unreadable("AccessDenied: cloudwatch:GetMetricData".into());
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::DataLoss), Verdict::Block);
        assert!(d.reason.contains("AccessDenied"), "{}", d.reason);
    }

    #[test]
    fn cooldown_gate_blocks_a_ping_pong() {
        let mut o = down();
        o.events.last_failover = Some(now() - chrono::Duration::minutes(10));
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::Cooldown), Verdict::Block);
        assert!(d.promote.is_none());
        o.events.last_failover = Some(now() - chrono::Duration::minutes(31));
        assert!(evaluate(&target(), &o, &policy(), now(), &[]).promote.is_some());
    }

    #[test]
    fn events_a_reachable_region_cannot_give_block_the_cooldown_unless_the_policy_allows() {
        let mut o = down();
        o.events.unreadable = vec!["us-west-2: AccessDenied: elasticache:DescribeEvents".into()];
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert_eq!(verdict(&d, GateName::Cooldown), Verdict::Block);
        assert!(d.reason.contains("AccessDenied"), "{}", d.reason);
        let allow = PromotePolicy {
            missing_events: MissingEvents::Allow,
            ..policy()
        };
        let d = evaluate(&target(), &o, &allow, now(), &[]);
        assert_eq!(verdict(&d, GateName::Cooldown), Verdict::Pass);
        let gate = d
            .gates
            .iter()
            .find(|g| g.name == GateName::Cooldown)
            .expect("gate");
        assert!(
            gate.detail.contains("could not be read") && gate.detail.contains("allows"),
            "{}",
            gate.detail
        );
        // A recent failover that was read blocks, whatever could not be read elsewhere.
        o.events.last_failover = Some(now() - chrono::Duration::minutes(1));
        assert_eq!(
            verdict(&evaluate(&target(), &o, &allow, now(), &[]), GateName::Cooldown),
            Verdict::Block
        );
    }

    #[test]
    fn a_dark_regions_events_do_not_block_and_the_detail_says_what_was_read() {
        let d = evaluate(&target(), &down(), &policy(), now(), &[]);
        let gate = d
            .gates
            .iter()
            .find(|g| g.name == GateName::Cooldown)
            .expect("gate");
        assert_eq!(gate.verdict, Verdict::Pass);
        assert!(
            gate.detail.contains("read in us-west-2") && gate.detail.contains("dark): us-west-1"),
            "{}",
            gate.detail
        );
    }

    #[test]
    fn reasons_name_gates_as_force_spells_them() {
        let mut o = down();
        o.lag = lag(9.0, now());
        o.events.last_failover = Some(now());
        let d = evaluate(&target(), &o, &policy(), now(), &[]);
        assert!(
            d.reason.starts_with("blocked by data_loss, cooldown: "),
            "{}",
            d.reason
        );
        let d = evaluate(
            &target(),
            &o,
            &policy(),
            now(),
            &[GateName::DataLoss, GateName::Cooldown],
        );
        assert!(
            d.reason.ends_with("with gates forced past: data_loss, cooldown"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_region_switch_plan_waives_signal_vantage_and_cooldown_but_never_state_or_data_loss() {
        // A planned switch: nothing fails, the primary looks healthy, a failover was recent.
        let mut planned = down();
        planned.signal = vec![reading("us-west-2", "writes-failing-usw2", is(AlarmState::Ok))];
        planned.vantage = vec![reading("us-west-1", "writes-failing-usw1", is(AlarmState::Ok))];
        planned.events.last_failover = Some(now() - chrono::Duration::minutes(5));
        assert!(
            evaluate(&target(), &planned, &policy(), now(), &[])
                .promote
                .is_none()
        );
        let d = evaluate(&target(), &planned, &policy(), now(), &REGION_SWITCH_WAIVES);
        assert_eq!(d.promote, Some(target()));
        assert_eq!(d.forced, REGION_SWITCH_WAIVES.to_vec());

        let mut lagging = planned.clone();
        lagging.lag = lag(9.0, now());
        let d = evaluate(&target(), &lagging, &policy(), now(), &REGION_SWITCH_WAIVES);
        assert_eq!(verdict(&d, GateName::DataLoss), Verdict::Block);
        assert!(d.promote.is_none());

        let mut busy = planned;
        busy.datastore.status = "modifying".into();
        let d = evaluate(&target(), &busy, &policy(), now(), &REGION_SWITCH_WAIVES);
        assert_eq!(verdict(&d, GateName::State), Verdict::Block);
    }

    #[test]
    fn a_region_switch_step_is_acted_on_by_the_promoter() {
        let raw = r#"{"planArn":"arn:aws:arc-region-switch::123456789012:plan/sessions:abc123"}"#;
        let Ok(triggers) = crate::intake::parse_event::<PromoterCommand>(raw) else {
            panic!("a Region switch step must parse")
        };
        let [trigger] = triggers.as_slice() else {
            panic!("{triggers:?}")
        };
        assert!(matches!(
            triage(trigger, &promoter_cfg()),
            Ok(PromoterTriage::Act(PromoteIntent::RegionSwitch { .. }))
        ));
    }

    fn promoter_cfg() -> crate::config::PromoterConfig {
        let vars: std::collections::HashMap<&str, &str> = [
            ("GLOBAL_DATASTORE_ID", "ldgnf-sessions"),
            (
                "MEMBERS",
                "us-west-1:sessions-usw1:a.example,us-west-2:sessions-usw2:b.example",
            ),
            ("AWS_REGION", "us-west-2"),
            ("SIGNAL_ALARMS", "writes-failing-usw2"),
            ("VANTAGE_ALARMS", "us-west-1:writes-failing-usw1"),
        ]
        .into_iter()
        .collect();
        crate::config::PromoterConfig::from_lookup(&|k| vars.get(k).map(|v| (*v).to_owned())).expect("valid")
    }

    #[test]
    fn only_a_signal_alarm_in_alarm_or_the_schedule_starts_an_automatic_evaluation() {
        use crate::intake::{AlarmChange, AlarmVia, Trigger};
        let alarm = |name: &str, state| {
            Trigger::Alarm(AlarmChange {
                name: name.into(),
                arn: format!("arn:aws:cloudwatch:us-west-2:1:alarm:{name}"),
                region: Region::parse("us-west-2").expect("region"),
                new_state: state,
                old_state: None,
                changed_at: None,
                via: AlarmVia::EventBridge,
                delivery: None,
            })
        };
        let cfg = promoter_cfg();
        assert!(matches!(
            triage(&alarm("writes-failing-usw2", AlarmState::Alarm), &cfg),
            Ok(PromoterTriage::Act(PromoteIntent::Automatic { .. }))
        ));
        assert!(matches!(
            triage(&alarm("writes-failing-usw2", AlarmState::Ok), &cfg),
            Ok(PromoterTriage::Ignore { .. })
        ));
        assert!(matches!(
            triage(&alarm("disk-full", AlarmState::Alarm), &cfg),
            Ok(PromoterTriage::Ignore { .. })
        ));
        assert!(matches!(
            triage(&Trigger::Schedule { time: "t".into() }, &cfg),
            Ok(PromoterTriage::Act(PromoteIntent::Automatic { .. }))
        ));
    }

    #[test]
    fn a_manual_promotion_needs_confirmation_a_reason_and_never_forces_the_state_gate() {
        use crate::intake::Trigger;
        let cmd = |dry_run, confirm: Option<&str>, force: Vec<GateName>| {
            Trigger::Command(PromoterCommand::Promote {
                target_region: "us-west-2".into(),
                dry_run,
                confirm: confirm.map(Into::into),
                reason: Some("INC-9".into()),
                force,
            })
        };
        let cfg = promoter_cfg();
        assert!(triage(&cmd(false, None, vec![]), &cfg).is_err());
        assert!(
            triage(&cmd(true, None, vec![GateName::Vantage]), &cfg).is_err(),
            "force needs confirm"
        );
        assert!(matches!(
            triage(&cmd(false, Some("ldgnf-sessions"), vec![GateName::State]), &cfg),
            Err(crate::command::CommandRejected::BadForce(_))
        ));
        assert!(matches!(
            triage(
                &cmd(false, Some("ldgnf-sessions"), vec![GateName::Cooldown]),
                &cfg
            ),
            Ok(PromoterTriage::Act(PromoteIntent::Manual { dry_run: false, .. }))
        ));
        assert!(matches!(
            triage(&cmd(true, None, vec![]), &cfg),
            Ok(PromoterTriage::Act(_))
        ));
        let parsed: PromoterCommand =
            serde_json::from_str(r#"{"command":"promote","target_region":"us-west-2"}"#).expect("parses");
        assert!(
            matches!(parsed, PromoterCommand::Promote { dry_run: true, .. }),
            "dry run by default"
        );
    }

    #[test]
    fn force_skips_only_the_named_gates_and_says_so() {
        let mut o = down();
        o.vantage = vec![reading("us-west-1", "writes-failing-usw1", is(AlarmState::Ok))];
        o.events.last_failover = Some(now() - chrono::Duration::minutes(1));
        let d = evaluate(&target(), &o, &policy(), now(), &[GateName::Vantage]);
        assert!(d.promote.is_none(), "cooldown still blocks");
        let d = evaluate(
            &target(),
            &o,
            &policy(),
            now(),
            &[GateName::Vantage, GateName::Cooldown],
        );
        assert_eq!(d.promote, Some(target()));
        assert_eq!(d.forced, [GateName::Vantage, GateName::Cooldown]);
        assert!(d.reason.contains("forced"), "{}", d.reason);
    }
}
