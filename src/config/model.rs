//! The typed pipeline file. Every struct here mirrors a part of
//! `schemas/pipeline.schema.json` (the one source of truth for names, types and
//! defaults); the `schema_and_structs_agree` test in `config::schema_sync` keeps them
//! in step. The doc comment on each field is its user documentation.

use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::units::{ByteSize, DurationSpec};
use crate::record::KeyType;

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
            Either::Flag(enabled) => LiveConfig { enabled, ..LiveConfig::default() },
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

/// The source stage, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Redis(RedisSourceConfig),
}

/// The Redis source: the reference connector's fields plus TLS and tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
    /// Host name or IP of the Redis server.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_redis_port")]
    pub port: u16,
    /// ACL user name (Redis 6+).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (use `${VAR}`; never written in the file itself).
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (e.g. a mounted Kubernetes secret); trailing newline ignored.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Databases to read: `"*"` (every database that holds keys), `"0,1,2"`, `3` or
    /// `[0, 1, 2]`. Ignored when `rules` are given.
    #[serde(default)]
    pub database: DatabaseSelection,
    /// TLS to Redis.
    #[serde(default)]
    pub tls: RedisTlsConfig,
    /// Advanced sync rules: when present, only keys they select are read.
    #[serde(default)]
    pub rules: Vec<SyncRule>,
    /// `COUNT` hint of each SCAN call (keys per page).
    #[serde(default = "default_scan_count")]
    pub scan_count: u32,
    /// SCAN pages whose values are being read at the same time, per database.
    #[serde(default = "default_pages_in_flight")]
    pub pages_in_flight: u32,
    /// Ask `MEMORY USAGE` for every key (`size_in_bytes` in the document). Off is faster.
    #[serde(default = "default_true")]
    pub size_in_bytes: bool,
    /// Values larger than this are skipped with a warning naming the key.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: ByteSize,
    /// Elements read per call from a large hash, set, zset, list or stream.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: u32,
    /// Time allowed to connect and for each command.
    #[serde(default = "default_redis_timeout")]
    pub timeout: DurationSpec,
}

/// Which databases to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DatabaseSelection {
    /// `"*"`: every database that holds keys.
    #[default]
    All,
    /// An explicit list, in the order given, without duplicates.
    List(Vec<u32>),
}

impl DatabaseSelection {
    /// Parses `"*"` or a comma-separated list such as `"0, 1,2"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(DatabaseSelection::All);
        }
        let mut list = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let db: u32 = part.parse().map_err(|_| {
                format!("`{part}` is not a database number: use \"*\", a number >= 0, or a list like \"0,1,2\"")
            })?;
            if !list.contains(&db) {
                list.push(db);
            }
        }
        Ok(DatabaseSelection::List(list))
    }
}

impl<'de> Deserialize<'de> for DatabaseSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => DatabaseSelection::parse(&text).map_err(de::Error::custom),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| DatabaseSelection::List(vec![n]))
                .ok_or_else(|| de::Error::custom("a database number must be an integer >= 0")),
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    let db = item
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| de::Error::custom("database numbers must be integers >= 0"))?;
                    if !list.contains(&db) {
                        list.push(db);
                    }
                }
                Ok(DatabaseSelection::List(list))
            }
            _ => Err(de::Error::custom("`database` is \"*\", a number, \"0,1,2\" or a list of numbers")),
        }
    }
}

/// TLS settings for Redis.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsConfig {
    /// Connect with TLS.
    #[serde(default)]
    pub enabled: bool,
    /// PEM file of the CA that signed the server's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One advanced sync rule, exactly as the reference connector takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRule {
    /// Database index the rule reads.
    pub database: u32,
    /// Redis glob the keys must match (`*`, `?`, `[abc]`, `[^abc]`, `[a-z]`, `\` escapes).
    #[serde(default)]
    pub key_pattern: Option<String>,
    /// Redis type the keys must have: HASH, LIST, SET, STREAM, STRING, ZSET, ReJSON-RL/JSON.
    #[serde(default, rename = "_type", alias = "type", deserialize_with = "deserialize_key_type")]
    pub key_type: Option<KeyType>,
}

fn deserialize_key_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<KeyType>, D::Error> {
    let text = String::deserialize(deserializer)?;
    KeyType::parse(&text).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "unknown Redis type `{text}`: use HASH, LIST, SET, STREAM, STRING, ZSET or JSON"
        ))
    })
}

/// A transform stage, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    Template(TemplateConfig),
    Filter(FilterConfig),
}

/// Renders each record into a document with minijinja templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Template of the document id (default: md5 of `{database}/{key}`).
    #[serde(default)]
    pub id: Option<String>,
    /// Template of the target index, overriding the sink's `index` per document.
    #[serde(default)]
    pub index: Option<String>,
    /// The document body: a mapping whose string leaves are templates and whose
    /// `{expr: "..."}` leaves are typed expressions, or one `{expr: "..."}` that
    /// yields a whole mapping. Default: the default document.
    #[serde(default)]
    pub document: Option<Value>,
}

/// The reference's basic sync rules: the first matching rule decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The rules, in order: the first one that matches a record decides.
    pub rules: Vec<FilterRule>,
}

/// One basic sync rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// `include` or `exclude` the records this rule matches.
    pub policy: FilterPolicy,
    /// The document field to test; dots reach into objects (`value.name`).
    pub field: String,
    /// How to compare.
    pub rule: FilterRuleKind,
    /// What to compare with (a number compares as a number).
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterPolicy {
    Include,
    Exclude,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterRuleKind {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
    Regex,
    #[serde(rename = "<")]
    LessThan,
    #[serde(rename = ">")]
    GreaterThan,
}

/// The sink stage, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// One per pipeline, never held in bulk: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum SinkConfig {
    Elasticsearch(ElasticsearchSinkConfig),
    Ndjson(NdjsonSinkConfig),
}

/// Writes newline-delimited JSON: one `{"_id": ..., ...document}` per line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonSinkConfig {
    /// File to write, or `-` for standard output.
    pub path: String,
}

/// Bulk-indexes documents into Elasticsearch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    /// One node URL or a list of them (requests go round-robin; a dead node is skipped).
    pub url: OneOrMany,
    /// Target index: a name, or a template rendered per document (`redis-{{ database }}`).
    /// Give either `index` or `alias`.
    #[serde(default)]
    pub index: String,
    /// Write behind this alias instead of into `index`: documents go to a concrete
    /// index `ALIAS-<fingerprint>` the connector creates, and a change of mappings,
    /// settings or document template builds a new one and swaps the alias.
    #[serde(default)]
    pub alias: Option<String>,
    /// With `alias`: older concrete indices kept after a swap, for rollback.
    #[serde(default = "default_keep_previous")]
    pub keep_previous: u32,
    /// Basic-auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (use `${VAR}`).
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the basic-auth password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// API key (the base64 `id:key` form Elasticsearch returns as `encoded`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// File holding the API key.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// TLS to Elasticsearch.
    #[serde(default)]
    pub tls: EsTlsConfig,
    /// Bulk request sizing and concurrency.
    #[serde(default)]
    pub bulk: BulkConfig,
    /// Retries of whole requests and of items rejected with 429.
    #[serde(default)]
    pub retry: RetryConfig,
    /// After a complete run, delete documents whose keys are gone.
    #[serde(default)]
    pub delete_stale: DeleteStale,
    /// Refresh the index at the end of a run so a search sees every document.
    #[serde(default = "default_true")]
    pub refresh: bool,
    /// Index settings used when the index is created.
    #[serde(default)]
    pub settings: Option<Value>,
    /// Index mappings used when the index is created (default: built-in mapping of
    /// the default document).
    #[serde(default)]
    pub mappings: Option<Value>,
    /// Dead-letter file for documents Elasticsearch rejects (default: the pipeline's).
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Time allowed for each request.
    #[serde(default = "default_es_timeout")]
    pub timeout: DurationSpec,
}

fn default_keep_previous() -> u32 {
    1
}

impl ElasticsearchSinkConfig {
    /// What searches use: the alias when one is given, else the index (or its template).
    pub fn target(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.index)
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// TLS settings for Elasticsearch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsTlsConfig {
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Bulk request sizing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// A request closes at this many documents...
    #[serde(default = "default_max_docs")]
    pub max_docs: u32,
    /// ...or at this many bytes, whichever comes first.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Bulk requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig { max_docs: default_max_docs(), max_bytes: default_max_bytes(), concurrency: default_concurrency() }
    }
}

/// Retry policy: exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Give up after retrying this long.
    #[serde(default = "default_retry_max_elapsed")]
    pub max_elapsed: DurationSpec,
    /// First backoff; doubles each time, with jitter.
    #[serde(default = "default_retry_initial")]
    pub initial_backoff: DurationSpec,
    /// Longest single backoff.
    #[serde(default = "default_retry_max_backoff")]
    pub max_backoff: DurationSpec,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_elapsed: default_retry_max_elapsed(),
            initial_backoff: default_retry_initial(),
            max_backoff: default_retry_max_backoff(),
        }
    }
}

/// `delete_stale: true|false` or `delete_stale: {max_fraction: 0.5}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteStale {
    /// Delete stale documents (default when the mapping form is used: true).
    pub enabled: bool,
    /// A run that would delete more than this fraction of the index deletes nothing
    /// (unless `--allow-mass-delete`).
    pub max_fraction: f64,
}

impl Default for DeleteStale {
    fn default() -> Self {
        DeleteStale { enabled: false, max_fraction: DEFAULT_MAX_STALE_FRACTION }
    }
}

/// The default `delete_stale.max_fraction`.
pub const DEFAULT_MAX_STALE_FRACTION: f64 = 0.5;

impl<'de> Deserialize<'de> for DeleteStale {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            #[serde(default = "default_true")]
            enabled: bool,
            #[serde(default = "default_max_fraction")]
            max_fraction: f64,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Flag(bool),
            Detailed(Detailed),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::Flag(enabled) => DeleteStale { enabled, max_fraction: DEFAULT_MAX_STALE_FRACTION },
            Either::Detailed(d) => DeleteStale { enabled: d.enabled, max_fraction: d.max_fraction },
        })
    }
}

fn default_true() -> bool {
    true
}
fn default_redis_port() -> u16 {
    6379
}
fn default_scan_count() -> u32 {
    1000
}
fn default_pages_in_flight() -> u32 {
    4
}
fn default_chunk_size() -> u32 {
    1000
}
fn default_max_value_bytes() -> ByteSize {
    ByteSize(10 * 1024 * 1024)
}
fn default_redis_timeout() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(30))
}
fn default_es_timeout() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(60))
}
fn default_max_docs() -> u32 {
    1000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(5 * 1024 * 1024)
}
fn default_concurrency() -> u32 {
    2
}
fn default_max_fraction() -> f64 {
    DEFAULT_MAX_STALE_FRACTION
}
fn default_retry_max_elapsed() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(300))
}
fn default_retry_initial() -> DurationSpec {
    DurationSpec(std::time::Duration::from_millis(200))
}
fn default_retry_max_backoff() -> DurationSpec {
    DurationSpec(std::time::Duration::from_secs(30))
}
