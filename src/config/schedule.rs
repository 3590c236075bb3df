//! A pipeline's `schedule:` compiled: an interval or a cron expression in a time
//! zone, and the next time it gives after a moment. Checked when a file is loaded
//! (`validate` reports a bad expression or zone at its line), used by `serve`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::model::ScheduleConfig;
use crate::config::FieldError;

/// When a pipeline runs under `serve`.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `interval`, counted from when the pipeline started.
    Every(Duration),
    /// At the times of a cron expression, read in a time zone.
    Cron {
        cron: Box<croner::Cron>,
        timezone: Tz,
        /// The expression as written.
        text: String,
    },
}

impl Schedule {
    /// Compiles `schedule:`; errors point below `/schedule`.
    pub fn build(config: &ScheduleConfig) -> Result<Self, Vec<FieldError>> {
        match (&config.every, &config.cron) {
            (Some(_), Some(_)) => Err(vec![FieldError::new(
                "",
                "give either `every` (an interval) or `cron` (an expression), not both",
            )]),
            (None, None) => Err(vec![FieldError::new(
                "",
                "a schedule needs `every` (an interval such as `15m`) or `cron` (an expression such as `*/15 * * * *`)",
            )]),
            (Some(every), None) => {
                if config.timezone != "UTC" {
                    return Err(vec![FieldError::new(
                        "/timezone",
                        "`timezone` applies to `cron` only: an `every` interval is the same in every zone",
                    )]);
                }
                if every.0 < Duration::from_secs(1) {
                    return Err(vec![FieldError::new(
                        "/every",
                        format!(
                            "an interval of {} ms is too short: `every` must be at least 1s",
                            every.0.as_millis()
                        ),
                    )]);
                }
                Ok(Schedule::Every(every.0))
            }
            (None, Some(text)) => {
                let mut errors = Vec::new();
                let cron = croner::Cron::from_str(text)
                    .map_err(|error| {
                        errors.push(FieldError::new(
                            "/cron",
                            format!(
                                "`{text}` is not a cron expression ({error}): write five fields, minute hour day-of-month month day-of-week, such as `*/15 * * * *` or `0 3 * * MON`"
                            ),
                        ))
                    })
                    .ok();
                let timezone = Tz::from_str(&config.timezone)
                    .map_err(|_| {
                        let suggestion = crate::config::suggest::did_you_mean(
                            &config.timezone,
                            chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()),
                        )
                        .map(|name| format!(" (did you mean `{name}`?)"))
                        .unwrap_or_default();
                        errors.push(FieldError::new(
                            "/timezone",
                            format!(
                                "unknown time zone `{}`{suggestion}: use an IANA name such as `UTC`, `Europe/Paris` or `America/New_York`",
                                config.timezone
                            ),
                        ))
                    })
                    .ok();
                match (cron, timezone) {
                    (Some(cron), Some(timezone)) if errors.is_empty() => {
                        if cron
                            .find_next_occurrence(&Utc::now().with_timezone(&timezone), false)
                            .is_err()
                        {
                            return Err(vec![FieldError::new(
                                "/cron",
                                format!("`{text}` never matches a date: check the day of month against the month"),
                            )]);
                        }
                        Ok(Schedule::Cron {
                            cron: Box::new(cron),
                            timezone,
                            text: text.clone(),
                        })
                    }
                    _ => Err(errors),
                }
            }
        }
    }

    /// The first time of this schedule strictly after `after`; `anchor` is when the
    /// pipeline started (intervals count from it). `None` when a cron expression has
    /// no time left.
    pub fn next_after(&self, after: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(interval) => {
                let step = chrono::Duration::from_std(*interval).ok()?;
                if after < anchor {
                    return Some(anchor);
                }
                let elapsed = (after - anchor).num_milliseconds();
                let step_ms = step.num_milliseconds().max(1);
                let periods = elapsed / step_ms + 1;
                Some(anchor + chrono::Duration::milliseconds(periods * step_ms))
            }
            Schedule::Cron { cron, timezone, .. } => cron
                .find_next_occurrence(&after.with_timezone(timezone), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
        }
    }

    /// How the schedule reads in logs and `/status`: `every 15m`, `cron "0 3 * * *" (Europe/Paris)`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(interval) => format!("every {}", describe_duration(*interval)),
            Schedule::Cron { text, timezone, .. } => format!("cron \"{text}\" ({})", timezone.name()),
        }
    }
}

/// `90s` -> `1m30s`; whole units only, milliseconds when under a second remain.
fn describe_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 || out.is_empty() {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config(yaml: &str) -> ScheduleConfig {
        crate::config::yaml::from_str(yaml).unwrap()
    }

    fn messages(yaml: &str) -> Vec<String> {
        Schedule::build(&config(yaml))
            .unwrap_err()
            .into_iter()
            .map(|e| format!("{}: {}", e.pointer, e.message))
            .collect()
    }

    #[test]
    fn an_interval_ticks_from_its_anchor_and_skips_to_the_next_period() {
        let schedule = Schedule::build(&config("every: 15m")).unwrap();
        let anchor = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 1, 1, h, m, s).unwrap();
        assert_eq!(schedule.next_after(anchor, anchor), Some(at(10, 15, 0)));
        assert_eq!(schedule.next_after(at(10, 14, 59), anchor), Some(at(10, 15, 0)));
        assert_eq!(schedule.next_after(at(10, 15, 0), anchor), Some(at(10, 30, 0)));
        // A run that took 40 minutes: the next time is on the grid, not 15m after it.
        assert_eq!(schedule.next_after(at(10, 40, 0), anchor), Some(at(10, 45, 0)));
        assert_eq!(schedule.describe(), "every 15m");
    }

    #[test]
    fn a_cron_expression_is_read_in_its_time_zone() {
        let schedule = Schedule::build(&config("{cron: '0 3 * * *', timezone: Europe/Paris}")).unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer.
        assert_eq!(
            schedule.next_after(winter, winter),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 2, 0, 0).unwrap())
        );
        let summer = Utc.with_ymd_and_hms(2026, 7, 10, 12, 0, 0).unwrap();
        assert_eq!(
            schedule.next_after(summer, summer),
            Some(Utc.with_ymd_and_hms(2026, 7, 11, 1, 0, 0).unwrap())
        );
        assert_eq!(schedule.describe(), "cron \"0 3 * * *\" (Europe/Paris)");
    }

    #[test]
    fn a_cron_expression_defaults_to_utc_and_accepts_seconds_and_aliases() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let every_5s = Schedule::build(&config("cron: '*/5 * * * * *'")).unwrap();
        assert_eq!(every_5s.next_after(t, t), Some(t + chrono::Duration::seconds(5)));
        let hourly = Schedule::build(&config("cron: '@hourly'")).unwrap();
        assert_eq!(hourly.next_after(t, t), Some(t + chrono::Duration::hours(1)));
    }

    #[test]
    fn mistakes_are_named_with_the_field_and_the_fix() {
        assert_eq!(
            messages("{every: 1m, cron: '* * * * *'}"),
            ["``: give either `every` (an interval) or `cron` (an expression), not both".replace("``: ", ": ")]
        );
        assert!(messages("at_start: false")[0].contains("needs `every`"));
        assert!(messages("every: 500ms")[0].starts_with("/every: an interval of 500 ms is too short"));
        assert!(messages("{every: 1m, timezone: Europe/Paris}")[0]
            .starts_with("/timezone: `timezone` applies to `cron` only"));
        let cron = messages("cron: '61 * * * *'");
        assert!(
            cron[0].starts_with("/cron: `61 * * * *` is not a cron expression"),
            "{cron:?}"
        );
        let zone = messages("{cron: '* * * * *', timezone: Europe/Pariss}");
        assert_eq!(zone.len(), 1);
        assert!(
            zone[0].starts_with("/timezone: unknown time zone `Europe/Pariss` (did you mean `Europe/Paris`?)"),
            "{zone:?}"
        );
    }
}
