//! Times as `serve` shows them: RFC 3339 in `/status`, Unix seconds in metrics.

use chrono::{DateTime, SecondsFormat, Utc};

/// A time as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Seconds since the Unix epoch, for metrics.
pub fn unix_seconds(time: DateTime<Utc>) -> f64 {
    time.timestamp_millis() as f64 / 1000.0
}
