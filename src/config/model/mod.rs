//! The typed pipeline file. Every struct here mirrors a part of
//! `schemas/pipeline.schema.json` (the one source of truth for names, types and
//! defaults); the `schema_and_structs_agree` test in `config::schema_sync` keeps them
//! in step. The doc comment on each field is its user documentation.
//!
//! This file holds the pipeline itself, `live:` and `schedule:`; each stage section
//! has its own file (`source.rs`, `transform.rs`, `sink.rs`), re-exported here so every
//! struct is `config::model::Name`.

mod sink;
mod source;
mod transform;

pub use sink::*;
pub use source::*;
pub use transform::*;

use std::path::PathBuf;

use serde::de::Deserializer;
use serde::Deserialize;

use super::units::DurationSpec;

/// A pipeline: one source, a chain of transforms, one sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Unique name, used in logs, summaries and the dead-letter file.
    pub name: String,
    /// Free text for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// Where records come from.
    pub source: SourceConfig,
    /// Applied in order to every record.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// Where documents go.
    pub sink: SinkConfig,
    /// NDJSON file that receives every record that failed (template errors, rejected
    /// documents). Default: `<name>.dead-letter.ndjson` in the working directory.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Live mode: follow Redis's keyspace notifications and keep the index within a
    /// fraction of a second of Redis, under `run --follow` and under `serve` (which
    /// follows it for as long as it is in the set). `live: true`, or its settings.
    /// Not with `schedule` (validation refuses the pair).
    #[serde(default)]
    pub live: Option<LiveConfig>,
    /// When `serve` runs the pipeline: every interval (`every`) or at the times of a
    /// cron expression (`cron`, `timezone`). Without it, `serve` runs the pipeline once,
    /// at start, or follows it when it is live. `run` ignores it.
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
}

impl Pipeline {
    /// The dead-letter file: `dead_letter:` or `<name>.dead-letter.ndjson` in the
    /// working directory. A name is a label, not a path: its `/`, `\` and NUL become
    /// `_`, so `name: team/users` (or `../x`) does not put the file in another folder.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter.clone().unwrap_or_else(|| {
            let name: String = self
                .name
                .chars()
                .map(|c| if matches!(c, '/' | '\\' | '\0') { '_' } else { c })
                .collect();
            PathBuf::from(format!("{name}.dead-letter.ndjson"))
        })
    }
}

/// `live: true|false` or `live: {max_pending_keys: 100000, ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    /// Follow changes (default when the mapping form is used: true).
    pub enabled: bool,
    /// Changed keys waiting to be applied, at most; past it the set is dropped and a
    /// resync (reason `overflow`) reads everything again.
    pub max_pending_keys: u64,
    /// Add the `notify-keyspace-events` flags live mode needs when the server lacks
    /// them (`CONFIG SET`; flags already set are kept). Off: a missing flag stops the
    /// start with the command to run.
    pub configure_server: bool,
    /// Check `notify-keyspace-events` at start (`CONFIG GET`). Turn off only where
    /// `CONFIG` is denied (managed services) and the provider has set the flags.
    pub check_notifications: bool,
    /// A full resync this often, whatever happened (it also catches what no event
    /// tells, such as `SWAPDB`); `0` never.
    pub reconcile_every: DurationSpec,
    /// On Ctrl-C or SIGTERM, pending changes are applied for at most this long.
    pub drain_timeout: DurationSpec,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            enabled: true,
            max_pending_keys: 100_000,
            configure_server: false,
            check_notifications: true,
            reconcile_every: DurationSpec(std::time::Duration::from_secs(3600)),
            drain_timeout: DurationSpec(std::time::Duration::from_secs(10)),
        }
    }
}

impl<'de> Deserialize<'de> for LiveConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            #[serde(default = "default_true")]
            enabled: bool,
            #[serde(default = "default_max_pending_keys")]
            max_pending_keys: u64,
            #[serde(default)]
            configure_server: bool,
            #[serde(default = "default_true")]
            check_notifications: bool,
            #[serde(default = "default_reconcile_every")]
            reconcile_every: DurationSpec,
            #[serde(default = "default_drain_timeout")]
            drain_timeout: DurationSpec,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Flag(bool),
            Detailed(Detailed),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::Flag(enabled) => LiveConfig {
                enabled,
                ..LiveConfig::default()
            },
            Either::Detailed(d) => LiveConfig {
                enabled: d.enabled,
                max_pending_keys: d.max_pending_keys,
                configure_server: d.configure_server,
                check_notifications: d.check_notifications,
                reconcile_every: d.reconcile_every,
                drain_timeout: d.drain_timeout,
            },
        })
    }
}

fn default_max_pending_keys() -> u64 {
    100_000
}
fn default_reconcile_every() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(3600))
}
fn default_drain_timeout() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(10))
}

/// When `serve` runs a pipeline. Exactly one of `every` and `cron`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Run every this long (`30s`, `15m`, `1h`), counted from when the pipeline started
    /// under `serve`.
    #[serde(default)]
    pub every: Option<DurationSpec>,
    /// Run at the times of a cron expression: five fields (minute, hour, day of month,
    /// month, day of week; `*/15 * * * *`), six with seconds first, or `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Time zone of `cron`, an IANA name (`Europe/Paris`, `America/New_York`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Also run once as soon as the pipeline starts under `serve` (at start, and when
    /// its file is added or changed), before the first scheduled time.
    #[serde(default = "default_true")]
    pub at_start: bool,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// `#[serde(default = "default_true")]`, for the sections' flags.
pub(super) fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::Pipeline;
    use std::path::PathBuf;

    #[test]
    fn the_default_dead_letter_file_stays_in_the_working_directory() {
        let pipeline = |yaml: &str| crate::config::yaml::from_str::<Pipeline>(yaml).unwrap();
        let p = |name: &str| {
            pipeline(&format!(
                "name: '{name}'\nsource: {{type: redis, host: h}}\nsink: {{type: ndjson, path: '-'}}\n"
            ))
        };
        assert_eq!(p("users").dead_letter_path(), PathBuf::from("users.dead-letter.ndjson"));
        assert_eq!(
            p("team/users").dead_letter_path(),
            PathBuf::from("team_users.dead-letter.ndjson")
        );
        assert_eq!(p("../x").dead_letter_path(), PathBuf::from(".._x.dead-letter.ndjson"));
        let given = pipeline(
            "name: a/b\nsource: {type: redis, host: h}\nsink: {type: ndjson, path: '-'}\ndead_letter: out/dl.ndjson\n",
        );
        assert_eq!(given.dead_letter_path(), PathBuf::from("out/dl.ndjson"));
    }
}
