//! What to retry and how long to wait: whole requests answered 429/502/503/504 or not
//! answered at all are retried with exponential backoff and jitter until
//! `retry.max_elapsed`; items rejected with 429 inside a 200 answer are resent alone;
//! every other status is final. Pure decisions, no I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;

use crate::backoff::Doubling;
use crate::config::model::RetryConfig;

/// What to do with the answer to a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: look at the items.
    Done,
    /// 429, 502, 503, 504: send the same request again after a backoff.
    Retry,
    /// 413: the body is larger than `http.max_content_length`; split it, or
    /// dead-letter a single document.
    TooLarge,
    /// Anything else: the run cannot go on.
    Fatal,
}

/// Classifies the status of a whole request.
pub fn request_verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        429 | 502 | 503 | 504 => Verdict::Retry,
        413 => Verdict::TooLarge,
        _ => Verdict::Fatal,
    }
}

/// Whether an item rejected inside a bulk answer is resent (only 429: the node's
/// write queue was full) rather than dead-lettered.
pub fn item_is_retryable(status: u16) -> bool {
    status == 429
}

/// Exponential backoff with jitter, bounded by a total time.
#[derive(Debug)]
pub struct Backoff {
    step: Doubling,
    max_elapsed: Duration,
    started: Instant,
}

impl Backoff {
    /// Starts the clock.
    pub fn new(policy: &RetryConfig) -> Backoff {
        let initial = policy.initial_backoff.0.max(Duration::from_millis(1));
        Backoff {
            step: Doubling::new(initial, policy.max_backoff.0),
            max_elapsed: policy.max_elapsed.0,
            started: Instant::now(),
        }
    }

    /// The wait before the next try, or `None` when `max_elapsed` is used up. Each
    /// wait is drawn between half and all of the current step (equal jitter), the step
    /// doubles up to `max_backoff`, and no wait goes past the deadline.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let elapsed = self.started.elapsed();
        if elapsed >= self.max_elapsed {
            return None;
        }
        let step = self.step.advance();
        let half = step / 2;
        let jitter = rand::rng().random_range(Duration::ZERO..=step - half);
        Some((half + jitter).min(self.max_elapsed - elapsed))
    }

    /// Time since the first try.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Retries counted over a run, for the summary and the tests.
#[derive(Debug, Default)]
pub struct RetryCounters {
    /// Whole requests sent again.
    pub requests: AtomicU64,
    /// Documents resent after a 429 item rejection.
    pub items: AtomicU64,
}

impl RetryCounters {
    pub fn add_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_items(&self, n: u64) {
        self.items.fetch_add(n, Ordering::Relaxed);
    }
    /// `(requests, items)` retried so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.items.load(Ordering::Relaxed),
        )
    }
}

/// A duration as people read it: `5m0s`, `1.5s`, `250ms`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        let text = format!("{:.1}", d.as_secs_f64());
        format!("{}s", text.trim_end_matches(".0"))
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::DurationSpec;

    fn policy(initial_ms: u64, max_ms: u64, elapsed_ms: u64) -> RetryConfig {
        RetryConfig {
            max_elapsed: DurationSpec(Duration::from_millis(elapsed_ms)),
            initial_backoff: DurationSpec(Duration::from_millis(initial_ms)),
            max_backoff: DurationSpec(Duration::from_millis(max_ms)),
        }
    }

    #[test]
    fn overload_and_gateway_statuses_are_retried_other_errors_are_fatal() {
        for status in [429, 502, 503, 504] {
            assert_eq!(request_verdict(status), Verdict::Retry, "{status}");
        }
        for status in [400, 401, 403, 404, 500] {
            assert_eq!(request_verdict(status), Verdict::Fatal, "{status}");
        }
        assert_eq!(request_verdict(200), Verdict::Done);
        assert_eq!(request_verdict(413), Verdict::TooLarge);
    }

    #[test]
    fn only_429_items_are_resent() {
        assert!(item_is_retryable(429));
        assert!(!item_is_retryable(400));
        assert!(!item_is_retryable(413));
        assert!(!item_is_retryable(500));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(&policy(100, 400, 3_600_000));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_delay().unwrap()).collect();
        let steps = [100, 200, 400, 400, 400];
        for (wait, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *wait >= step / 2 && *wait <= step,
                "{wait:?} not within [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn backoff_stops_when_max_elapsed_is_used_up() {
        let mut backoff = Backoff::new(&policy(1, 1, 0));
        assert_eq!(backoff.next_delay(), None);
    }

    #[test]
    fn durations_read_like_go_durations() {
        assert_eq!(human_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }
}
