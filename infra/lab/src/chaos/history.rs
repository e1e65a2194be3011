//! Seeded random histories: what happens to the lab, step by step. Pure: the same seed, mode and
//! length give the same steps (the generator is xoshiro256++ seeded through SplitMix64, both fixed
//! algorithms), so a failing history is replayed from its seed.
//!
//! Every fault a history injects is bounded — in count (`times`), in time (a step's own pause), or
//! by a later step that clears it — and the quiet phase at the end clears whatever is left, so the
//! system is expected to converge once the history is over. Slow ARC endpoints land an abandoned
//! update within the window the traffic switch looks again in (see the README): a late landing
//! past that window is the scheduled reconcile's to correct, not this issue's.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// How the functions move writers in a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dns,
    Arc,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dns => "dns",
            Mode::Arc => "arc",
        }
    }

    /// The mode a seed runs in when none is chosen: even seeds dns, odd seeds arc.
    pub fn of_seed(seed: u64) -> Self {
        if seed.is_multiple_of(2) {
            Mode::Dns
        } else {
            Mode::Arc
        }
    }
}

/// What a history does next. Regions are the lab's (`us-west-1`, `us-west-2`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `FailoverGlobalReplicationGroup` to the member in `to`; refused while one is under way,
    /// which is how a second failover meets one still `modifying`. With `notification_lost`, its
    /// promotion notification never arrives, and writers stay behind for a trigger to fix.
    Failover {
        to: String,
        notification_lost: bool,
    },
    /// Two copies racing a failover: an alarm reaches one Region's traffic switch (`trigger_region`,
    /// or the primary's when `None`), and `after_ms` later, while that trigger is in flight, the
    /// datastore fails over to `to` (or, when `None`, to the Region writers point at then: the
    /// copy is moving writers away from the member about to become primary), whose copy then
    /// gets the promotion.
    Race {
        trigger_region: Option<String>,
        to: Option<String>,
        after_ms: u64,
    },
    /// How SNS delivers from now on: `normal`, `duplicate`, `delay` (by `delay_ms`) or `drop`.
    Sns {
        delivery: String,
        delay_ms: u64,
    },
    /// The Region goes dark (Valkey stopped, its APIs unreachable) or comes back.
    Dark {
        region: String,
    },
    Light {
        region: String,
    },
    /// The inter-Region link: `up`, `down`, or `degraded`.
    Link {
        mode: String,
    },
    /// An alarm state change (`ALARM` or `OK`) reaching the Region's traffic switch.
    Alarm {
        region: String,
        state: String,
    },
    /// A promotion notification of `of`'s member delivered to `region` out of turn: late, stale or
    /// a duplicate.
    Replay {
        region: String,
        of: String,
    },
    /// An operator's console command to `region`'s traffic switch: a confirmed `switch` to
    /// `target`, or `status`.
    Command {
        region: String,
        command: String,
        target: String,
    },
    /// Every answer of one emulated API (`elasticache`, `route53`, `arc`) arrives `ms` late; 0
    /// removes the delay.
    Latency {
        service: String,
        ms: u64,
    },
    /// dns: Route 53 answers the next `times` requests of `operation` with `fault`.
    Route53Fault {
        operation: String,
        fault: String,
        times: u32,
    },
    /// arc: one cluster endpoint's behaviour (`ok`, `refuse`, `hang`, `error5xx`, `throttle`,
    /// `slow:<ms>`).
    ArcEndpoint {
        endpoint: usize,
        mode: String,
    },
    /// Nothing happens for `ms`.
    Pause {
        ms: u64,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Failover {
                to,
                notification_lost: false,
            } => write!(f, "failover to {to}"),
            Step::Failover { to, .. } => write!(f, "failover to {to}, its notification lost"),
            Step::Race {
                trigger_region,
                to,
                after_ms,
            } => write!(
                f,
                "race: alarm into {}'s switch, failover to {} {after_ms} ms later",
                trigger_region.as_deref().unwrap_or("the primary"),
                to.as_deref().unwrap_or("where writers point")
            ),
            Step::Sns { delivery, delay_ms } if delivery == "delay" => write!(f, "sns delay {delay_ms} ms"),
            Step::Sns { delivery, .. } => write!(f, "sns {delivery}"),
            Step::Dark { region } => write!(f, "{region} goes dark"),
            Step::Light { region } => write!(f, "{region} comes back"),
            Step::Link { mode } => write!(f, "link {mode}"),
            Step::Alarm { region, state } => write!(f, "alarm {state} into {region}"),
            Step::Replay { region, of } => write!(f, "promotion of {of} replayed into {region}"),
            Step::Command {
                region,
                command,
                target,
            } if command == "switch" => write!(f, "operator: switch to {target} via {region}"),
            Step::Command { region, command, .. } => write!(f, "operator: {command} via {region}"),
            Step::Latency { service, ms } => write!(f, "{service} answers {ms} ms late"),
            Step::Route53Fault {
                operation,
                fault,
                times,
            } => write!(f, "route53 {operation}: {fault} x{times}"),
            Step::ArcEndpoint { endpoint, mode } => write!(f, "arc endpoint {endpoint}: {mode}"),
            Step::Pause { ms } => write!(f, "pause {ms} ms"),
        }
    }
}

/// A generated history.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub seed: u64,
    pub mode: Mode,
    /// How long the lab's failovers stay `modifying`: short, so that they land while the
    /// switches' slow calls are still in flight.
    pub promotion_ms: u64,
    pub steps: Vec<Step>,
}

pub const REGIONS: [&str; 2] = ["us-west-1", "us-west-2"];

/// The Route 53 operations the traffic switch calls.
const ROUTE53_OPS: [&str; 2] = ["ListResourceRecordSets", "ChangeResourceRecordSets"];
const ROUTE53_FAULTS: [&str; 5] = [
    "throttling",
    "prior_request_not_complete",
    "error5xx",
    "lost",
    "latency",
];

/// `steps` steps for `seed` in `mode`.
///
/// The mix leans on what breaks a switch: most histories start with latency on the routing API
/// (Route 53 or ARC) and often on ElastiCache, so calls are in flight for hundreds of
/// milliseconds; failovers are short and frequent, notifications are often lost (leaving writers
/// behind for a trigger to fix), and a quarter of the steps are races — a trigger into one copy
/// and a failover while it is acting.
pub fn generate(seed: u64, mode: Mode, steps: usize) -> History {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let promotion_ms = rng.random_range(100..400);
    let routing = match mode {
        Mode::Dns => "route53",
        Mode::Arc => "arc",
    };
    let mut out = Vec::with_capacity(steps);
    if rng.random_bool(0.9) {
        out.push(Step::Latency {
            service: routing.to_owned(),
            // ARC calls must fit the switch's 500 ms endpoint timeout to be answered at all.
            ms: match mode {
                Mode::Dns => rng.random_range(200..900),
                Mode::Arc => rng.random_range(50..240),
            },
        });
    }
    if rng.random_bool(0.5) {
        out.push(Step::Latency {
            service: "elasticache".to_owned(),
            ms: rng.random_range(20..300),
        });
    }
    if rng.random_bool(0.4) {
        out.push(Step::Sns {
            delivery: "drop".to_owned(),
            delay_ms: 0,
        });
    }
    while out.len() < steps {
        let region = |rng: &mut Xoshiro256PlusPlus| REGIONS[rng.random_range(0..REGIONS.len())].to_owned();
        let step = match rng.random_range(0..100u32) {
            0..=14 => Step::Failover {
                to: region(&mut rng),
                notification_lost: rng.random_bool(0.4),
            },
            15..=39 => {
                // Half the races aim where it hurts: the primary's copy moving writers off the
                // member that is about to be promoted back.
                let aimed = rng.random_bool(0.5);
                Step::Race {
                    trigger_region: (!aimed).then(|| region(&mut rng)),
                    to: (!aimed).then(|| region(&mut rng)),
                    after_ms: rng.random_range(0..300),
                }
            }
            40..=47 => {
                let delivery = ["normal", "duplicate", "delay", "drop"][rng.random_range(0..4)];
                Step::Sns {
                    delivery: delivery.to_owned(),
                    delay_ms: if delivery == "delay" {
                        rng.random_range(200..2_000)
                    } else {
                        0
                    },
                }
            }
            48..=50 => Step::Dark {
                region: region(&mut rng),
            },
            51..=54 => Step::Light {
                region: region(&mut rng),
            },
            55..=57 => Step::Link {
                mode: ["up", "down", "degraded"][rng.random_range(0..3)].to_owned(),
            },
            58..=65 => Step::Alarm {
                region: region(&mut rng),
                state: if rng.random_bool(0.75) { "ALARM" } else { "OK" }.to_owned(),
            },
            66..=70 => Step::Replay {
                region: region(&mut rng),
                of: region(&mut rng),
            },
            71..=75 => Step::Command {
                region: region(&mut rng),
                command: if rng.random_bool(0.6) { "switch" } else { "status" }.to_owned(),
                target: region(&mut rng),
            },
            76..=81 => {
                let service = if rng.random_bool(0.5) {
                    "elasticache"
                } else {
                    routing
                };
                Step::Latency {
                    service: service.to_owned(),
                    ms: match (rng.random_bool(0.25), service) {
                        (true, _) => 0,
                        (false, "arc") => rng.random_range(20..240),
                        _ => rng.random_range(20..700),
                    },
                }
            }
            82..=91 => match mode {
                Mode::Dns => Step::Route53Fault {
                    operation: ROUTE53_OPS[rng.random_range(0..ROUTE53_OPS.len())].to_owned(),
                    fault: ROUTE53_FAULTS[rng.random_range(0..ROUTE53_FAULTS.len())].to_owned(),
                    times: rng.random_range(1..4),
                },
                Mode::Arc => Step::ArcEndpoint {
                    endpoint: rng.random_range(0..5),
                    mode: match rng.random_range(0..7u32) {
                        0 => "ok".to_owned(),
                        1 => "refuse".to_owned(),
                        2 => "hang".to_owned(),
                        3 => "error5xx".to_owned(),
                        4 => "throttle".to_owned(),
                        // Slower than the switch's 500 ms endpoint timeout, so the update is
                        // abandoned and lands late, but within the window it looks again in.
                        _ => format!("slow:{}", rng.random_range(550..900)),
                    },
                },
            },
            _ => Step::Pause {
                ms: rng.random_range(100..1_500),
            },
        };
        out.push(step);
        // Most steps are followed by a little time for things to happen.
        if out.len() < steps && rng.random_bool(0.5) {
            out.push(Step::Pause {
                ms: rng.random_range(50..800),
            });
        }
    }
    out.truncate(steps);
    History {
        seed,
        mode,
        promotion_ms,
        steps: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_history_and_another_seed_another() {
        let a = generate(42, Mode::Dns, 30);
        let b = generate(42, Mode::Dns, 30);
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.steps.len(), 30);
        assert_ne!(a.steps, generate(43, Mode::Dns, 30).steps);
    }

    #[test]
    fn a_mode_only_injects_the_faults_of_its_own_routing() {
        for seed in 0..50 {
            let dns = generate(seed, Mode::Dns, 40);
            assert!(dns.steps.iter().all(|s| !matches!(s, Step::ArcEndpoint { .. })));
            assert!(
                dns.steps
                    .iter()
                    .all(|s| !matches!(s, Step::Latency { service, .. } if service == "arc"))
            );
            let arc = generate(seed, Mode::Arc, 40);
            assert!(arc.steps.iter().all(|s| !matches!(s, Step::Route53Fault { .. })));
        }
    }

    #[test]
    fn a_long_history_holds_every_kind_of_step() {
        let steps = generate(7, Mode::Arc, 400).steps;
        let kinds: std::collections::BTreeSet<&str> = steps
            .iter()
            .map(|s| match s {
                Step::Failover { .. } => "failover",
                Step::Race { .. } => "race",
                Step::Sns { .. } => "sns",
                Step::Dark { .. } => "dark",
                Step::Light { .. } => "light",
                Step::Link { .. } => "link",
                Step::Alarm { .. } => "alarm",
                Step::Replay { .. } => "replay",
                Step::Command { .. } => "command",
                Step::Latency { .. } => "latency",
                Step::Route53Fault { .. } => "route53",
                Step::ArcEndpoint { .. } => "arc",
                Step::Pause { .. } => "pause",
            })
            .collect();
        assert_eq!(kinds.len(), 12, "{kinds:?}");
    }

    #[test]
    fn the_modes_alternate_by_seed() {
        assert_eq!(Mode::of_seed(10), Mode::Dns);
        assert_eq!(Mode::of_seed(11), Mode::Arc);
    }
}
