//! Endpoint rotation for the Route 53 ARC data plane, as a pure state machine.
//!
//! An ARC cluster has five regional endpoints and AWS keeps at least three up; a caller starts at a
//! random one and tries each in turn, moving on after connection errors, timeouts, throttling and
//! 5xx. After a whole round fails it backs off and goes round again — never past the deadline.

use std::time::Duration;

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try the endpoint with this index.
    Try(usize),
    /// Every endpoint failed this round: wait, then start the next round.
    Backoff(Duration),
    /// Stop: the reason goes into the report.
    GiveUp(&'static str),
}

/// The rotation through `n` endpoints from `start`.
#[derive(Debug, Clone)]
pub struct Rotation {
    order: Vec<usize>,
    pos: usize,
    round: u32,
    max_rounds: u32,
}

/// Below this much time left, no endpoint is worth trying: it could not answer in time.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(200);

impl Rotation {
    /// `start` is reduced modulo `n`; `max_rounds` is at least 1.
    pub fn new(n: usize, start: usize, max_rounds: u32) -> Self {
        let order = (0..n).map(|i| (start % n.max(1) + i) % n.max(1)).collect();
        Self {
            order,
            pos: 0,
            round: 0,
            max_rounds: max_rounds.max(1),
        }
    }

    /// The next step, given the time left and the backoff the caller would wait between rounds
    /// (`backoff` is already jittered by the caller).
    pub fn next(&mut self, remaining: Duration, backoff: Duration) -> Next {
        if self.order.is_empty() {
            return Next::GiveUp("no endpoints are configured");
        }
        if remaining < MIN_ATTEMPT {
            return Next::GiveUp("the invocation deadline is near");
        }
        if let Some(&i) = self.order.get(self.pos) {
            self.pos += 1;
            return Next::Try(i);
        }
        self.round += 1;
        if self.round >= self.max_rounds {
            return Next::GiveUp("every endpoint failed in every round");
        }
        if remaining < backoff + MIN_ATTEMPT {
            return Next::GiveUp("the invocation deadline is near");
        }
        self.pos = 0;
        Next::Backoff(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLENTY: Duration = Duration::from_secs(60);
    const PAUSE: Duration = Duration::from_millis(100);

    fn round(r: &mut Rotation) -> Vec<usize> {
        let mut tried = Vec::new();
        while let Next::Try(i) = r.next(PLENTY, PAUSE) {
            tried.push(i);
            if tried.len() > 10 {
                break;
            }
        }
        tried
    }

    #[test]
    fn every_endpoint_is_tried_once_per_round_from_any_start() {
        for start in 0..7 {
            let mut r = Rotation::new(5, start, 3);
            let mut tried = round(&mut r);
            assert_eq!(tried[0], start % 5, "starts where asked");
            tried.sort_unstable();
            assert_eq!(tried, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn rounds_are_separated_by_a_backoff_and_bounded() {
        let mut r = Rotation::new(2, 1, 2);
        assert_eq!(r.next(PLENTY, PAUSE), Next::Try(1));
        assert_eq!(r.next(PLENTY, PAUSE), Next::Try(0));
        assert_eq!(r.next(PLENTY, PAUSE), Next::Backoff(PAUSE));
        assert_eq!(r.next(PLENTY, PAUSE), Next::Try(1));
        assert_eq!(r.next(PLENTY, PAUSE), Next::Try(0));
        assert_eq!(
            r.next(PLENTY, PAUSE),
            Next::GiveUp("every endpoint failed in every round")
        );
    }

    #[test]
    fn nothing_is_tried_when_the_deadline_is_near() {
        let mut r = Rotation::new(5, 0, 3);
        assert_eq!(
            r.next(Duration::from_millis(150), PAUSE),
            Next::GiveUp("the invocation deadline is near")
        );
        let mut r = Rotation::new(1, 0, 3);
        assert_eq!(r.next(PLENTY, PAUSE), Next::Try(0));
        // A backoff that would leave too little for another attempt is not taken.
        assert_eq!(
            r.next(Duration::from_millis(250), PAUSE),
            Next::GiveUp("the invocation deadline is near")
        );
    }

    #[test]
    fn no_endpoints_means_giving_up_at_once() {
        assert_eq!(
            Rotation::new(0, 3, 3).next(PLENTY, PAUSE),
            Next::GiveUp("no endpoints are configured")
        );
    }
}
