//! A wait that doubles after each failure, up to a cap, and starts again from its
//! first step after a success: the one backoff of the crate (Redis reconnects and
//! subscriptions, live mode's and `serve`'s retries, the Elasticsearch sink's
//! retries, which add jitter on top).

use std::time::Duration;

/// The wait between live mode's attempts after a failed phase: 1 s, doubling to 30 s
/// (`run --follow` and `serve` alike).
pub const LIVE_RETRY: Doubling = Doubling::new(Duration::from_secs(1), Duration::from_secs(30));

/// A doubling wait: `first`, `2 * first`, ... capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Doubling {
    /// Starts at `first`; never waits more than `max` (nor less than `first`).
    pub const fn new(first: Duration, max: Duration) -> Doubling {
        let max = if max.as_nanos() < first.as_nanos() { first } else { max };
        Doubling {
            first,
            max,
            current: first,
        }
    }

    /// The wait to use now.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// After a failure: the next wait is twice this one, at most `max`.
    pub fn double(&mut self) {
        self.current = self.current.saturating_mul(2).min(self.max);
    }

    /// The wait to use now, doubling the next one: `current()` then `double()`.
    pub fn advance(&mut self) -> Duration {
        let now = self.current;
        self.double();
        now
    }

    /// After a success: back to the first step.
    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stays_there() {
        let mut wait = Doubling::new(Duration::from_millis(100), Duration::from_millis(500));
        let waits: Vec<u128> = (0..6).map(|_| wait.advance().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500, 500]);
    }

    #[test]
    fn a_success_starts_again_from_the_first_step() {
        let mut wait = LIVE_RETRY;
        wait.double();
        wait.double();
        assert_eq!(wait.current(), Duration::from_secs(4));
        wait.reset();
        assert_eq!(wait.current(), Duration::from_secs(1));
    }

    #[test]
    fn a_cap_below_the_first_step_is_the_first_step() {
        let mut wait = Doubling::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(wait.max(), Duration::from_secs(2));
        assert_eq!(wait.advance(), Duration::from_secs(2));
        assert_eq!(wait.current(), Duration::from_secs(2));
    }

    #[test]
    fn live_retries_wait_from_one_to_thirty_seconds() {
        let mut wait = LIVE_RETRY;
        let waits: Vec<u64> = (0..7).map(|_| wait.advance().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
