//! Bounded retries with exponential backoff and full jitter, never past the invocation deadline.
//!
//! The SDK clients are built with their own retries off, so this is the one place that decides
//! whether and when to try again: [`next_step`] is the pure rule (tested exhaustively), [`run`]
//! applies it around an async call.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::fault::AwsFault;

/// How retries are spaced and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    #[serde(with = "crate::retry::ms")]
    pub base: Duration,
    #[serde(with = "crate::retry::ms")]
    pub cap: Duration,
    pub max_attempts: u32,
    /// The longest one attempt may take; a hung endpoint must not eat the whole invocation.
    #[serde(with = "crate::retry::ms")]
    pub attempt_timeout: Duration,
}

pub(crate) mod ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl Default for RetryPolicy {
    /// Route 53 allows about five requests a second per account; starting at 100 ms and doubling
    /// to 2 s spreads a burst of throttled callers without adding much to a single retry.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 8,
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// For reading a Region that may be dark: two short attempts, so a Region that does not
    /// answer costs seconds, not the invocation.
    pub fn probe(self) -> Self {
        Self {
            max_attempts: 2,
            attempt_timeout: Duration::from_secs(2),
            ..self
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    RetryAfter(Duration),
    GiveUp(&'static str),
}

/// The pure retry rule. `attempt` is the number of attempts made so far (≥ 1); `unit` is a random
/// number in [0, 1) for full jitter: the delay is uniform in [0, min(cap, base·2^(attempt-1))].
pub fn next_step(
    policy: &RetryPolicy,
    attempt: u32,
    transient: bool,
    remaining: Duration,
    unit: f64,
) -> Step {
    if !transient {
        return Step::GiveUp("the error is not transient");
    }
    if attempt >= policy.max_attempts {
        return Step::GiveUp("attempts exhausted");
    }
    let exp = policy
        .base
        .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
    let ceiling = exp.min(policy.cap);
    let delay = ceiling.mul_f64(unit.clamp(0.0, 1.0));
    // Another attempt is only worth starting if it has time to finish: keep room for a whole
    // attempt after the sleep, or at least a short one.
    let needed = delay + policy.attempt_timeout.min(Duration::from_millis(500));
    if needed > remaining {
        return Step::GiveUp("the invocation deadline is near");
    }
    Step::RetryAfter(delay)
}

/// The time the current invocation must be finished by, less the configured margin.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    pub fn after(d: Duration) -> Self {
        Self {
            at: Instant::now() + d,
        }
    }

    /// The deadline of a Lambda invocation: `deadline_epoch_ms` is the runtime's deadline header,
    /// `now_epoch_ms` the shell's clock; `margin` is kept in hand. A zero deadline (some local
    /// runners send none) gets 30 s.
    pub fn from_lambda(deadline_epoch_ms: u64, now_epoch_ms: u64, margin: Duration) -> Self {
        let remaining = if deadline_epoch_ms == 0 {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(deadline_epoch_ms.saturating_sub(now_epoch_ms))
        };
        Self::after(remaining.saturating_sub(margin))
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Everything a call needs to retry properly.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub policy: RetryPolicy,
    pub deadline: Deadline,
}

/// A successful call and how many attempts it took.
#[derive(Debug, Clone)]
pub struct Done<T> {
    pub value: T,
    pub attempts: u32,
    /// Earlier attempts given up on without an answer ([`AwsFault::unanswered`]): for a change,
    /// they may still be applied after this one.
    pub abandoned: u32,
}

/// Reads every page of a paged API: `page(token)` fetches one page (each retried under `budget`)
/// and returns its items and the next token. More than `max_pages` pages is an error, never a
/// silently partial answer.
pub async fn all_pages<T, F, Fut>(
    operation: &'static str,
    budget: &Budget,
    max_pages: usize,
    page: F,
) -> Result<Vec<T>, AwsFault>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), AwsFault>>,
{
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..max_pages {
        let (items, next) = run(operation, budget, || page(token.clone())).await?.value;
        all.extend(items);
        match next.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
    Err(AwsFault::service(
        operation,
        Some("TooManyPages".into()),
        format!("more than {max_pages} pages: not all could be read"),
        false,
    ))
}

/// Runs `call` until it succeeds, fails permanently, runs out of attempts or would run past the
/// deadline. Each attempt is cut off at the policy's attempt timeout or the deadline, whichever is
/// sooner.
pub async fn run<T, F, Fut>(
    operation: &'static str,
    budget: &Budget,
    mut call: F,
) -> Result<Done<T>, AwsFault>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsFault>>,
{
    let mut attempt = 0u32;
    let mut abandoned = 0u32;
    loop {
        attempt += 1;
        let limit = budget.policy.attempt_timeout.min(budget.deadline.remaining());
        let result = match tokio::time::timeout(limit, call()).await {
            Ok(r) => r,
            Err(_) => Err(AwsFault::timeout(operation, limit)),
        };
        let mut fault = match result {
            Ok(value) => {
                return Ok(Done {
                    value,
                    attempts: attempt,
                    abandoned,
                });
            }
            Err(f) => f,
        };
        if fault.unanswered() {
            abandoned += 1;
        }
        fault.abandoned = abandoned;
        let unit: f64 = rand::random();
        match next_step(
            &budget.policy,
            attempt,
            fault.transient,
            budget.deadline.remaining(),
            unit,
        ) {
            Step::RetryAfter(delay) => {
                tracing::warn!(operation, attempt, delay_ms = delay.as_millis() as u64, error = %fault, "retrying");
                tokio::time::sleep(delay).await;
            }
            Step::GiveUp(why) => return Err(fault.gave_up(attempt, why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(1),
        }
    }

    const PLENTY: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_lambda_deadline_keeps_the_margin_and_a_missing_one_gets_thirty_seconds() {
        let d = Deadline::from_lambda(10_000, 4_000, Duration::from_secs(1));
        assert_eq!(d.remaining(), Duration::from_secs(5));
        let past = Deadline::from_lambda(1_000, 4_000, Duration::from_secs(1));
        assert_eq!(past.remaining(), Duration::ZERO);
        assert_eq!(
            Deadline::from_lambda(0, 4_000, Duration::ZERO).remaining(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn permanent_errors_are_never_retried() {
        assert_eq!(
            next_step(&policy(), 1, false, PLENTY, 0.5),
            Step::GiveUp("the error is not transient")
        );
    }

    #[test]
    fn the_delay_ceiling_doubles_per_attempt_up_to_the_cap() {
        // unit just under 1 shows the ceiling; 0 shows the floor of full jitter.
        let ceilings: Vec<u128> = (1..5)
            .map(|a| match next_step(&policy(), a, true, PLENTY, 0.999_999) {
                Step::RetryAfter(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ceilings, vec![99, 199, 399, 799]);
        let big = RetryPolicy {
            max_attempts: 40,
            ..policy()
        };
        assert_eq!(
            next_step(&big, 39, true, PLENTY, 0.999_999),
            Step::RetryAfter(Duration::from_micros(1_999_998))
        );
        assert_eq!(
            next_step(&policy(), 3, true, PLENTY, 0.0),
            Step::RetryAfter(Duration::ZERO)
        );
    }

    #[test]
    fn jitter_spreads_delays_across_the_whole_window() {
        let d = |u| match next_step(&policy(), 3, true, PLENTY, u) {
            Step::RetryAfter(d) => d,
            other => panic!("{other:?}"),
        };
        assert!(d(0.25) < d(0.5) && d(0.5) < d(0.75));
        assert_eq!(d(0.5), Duration::from_millis(200));
    }

    #[test]
    fn attempts_are_bounded() {
        assert_eq!(
            next_step(&policy(), 5, true, PLENTY, 0.5),
            Step::GiveUp("attempts exhausted")
        );
    }

    #[test]
    fn no_retry_starts_that_could_not_finish_before_the_deadline() {
        // Sleep of 200 ms plus 500 ms of attempt room does not fit in 600 ms.
        assert_eq!(
            next_step(&policy(), 3, true, Duration::from_millis(600), 0.5),
            Step::GiveUp("the invocation deadline is near")
        );
        assert_eq!(
            next_step(&policy(), 3, true, Duration::from_millis(701), 0.5),
            Step::RetryAfter(Duration::from_millis(200))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_transient_faults_then_succeeds() {
        let budget = Budget {
            policy: policy(),
            deadline: Deadline::after(PLENTY),
        };
        let mut calls = 0;
        let done = run("Test.Op", &budget, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(AwsFault::service(
                        "Test.Op",
                        Some("Throttling".into()),
                        "slow down".into(),
                        true,
                    ))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .expect("succeeds on the third attempt");
        assert_eq!((done.value, done.attempts), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn run_cuts_off_a_hung_attempt_and_stops_at_the_deadline() {
        let budget = Budget {
            policy: policy(),
            deadline: Deadline::after(Duration::from_millis(2_500)),
        };
        let started = Instant::now();
        let fault = run("Test.Hang", &budget, || async {
            std::future::pending::<Result<(), AwsFault>>().await
        })
        .await
        .expect_err("never answers");
        assert!(fault.transient);
        assert!(fault.attempts >= 2, "{fault:?}");
        assert_eq!(fault.gave_up.as_deref(), Some("the invocation deadline is near"));
        assert!(
            started.elapsed() <= Duration::from_millis(2_500),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_page_is_read_in_order_and_too_many_pages_is_an_error_not_a_partial_answer() {
        let budget = Budget {
            policy: policy(),
            deadline: Deadline::after(PLENTY),
        };
        // Three pages: tokens "1", "2", then none.
        let page = |token: Option<String>| async move {
            let n: u32 = token.as_deref().map_or(0, |t| t.parse().unwrap_or(99));
            let next = (n < 2).then(|| (n + 1).to_string());
            Ok((vec![n * 10, n * 10 + 1], next))
        };
        let all = all_pages("Test.List", &budget, 5, page)
            .await
            .expect("three pages");
        assert_eq!(all, vec![0, 1, 10, 11, 20, 21]);
        let fault = all_pages("Test.List", &budget, 2, page)
            .await
            .expect_err("more pages than allowed");
        assert!(fault.is_code("TooManyPages"), "{fault}");
    }
}
