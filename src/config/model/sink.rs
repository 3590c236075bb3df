//! The `sink:` section: the Elasticsearch and NDJSON sinks, bulk, retry and stale
//! deletion settings (re-exported by [`super`]).

use std::path::PathBuf;

use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::Value;

use super::default_true;
use crate::config::units::{ByteSize, DurationSpec};

/// The sink stage, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// One per pipeline, never held in bulk: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum SinkConfig {
    Elasticsearch(ElasticsearchSinkConfig),
    Ndjson(NdjsonSinkConfig),
}

impl SinkConfig {
    /// The sink's own dead-letter file, when its configuration names one.
    pub fn dead_letter_path(&self) -> Option<PathBuf> {
        match self {
            SinkConfig::Elasticsearch(es) => es.dead_letter.clone(),
            SinkConfig::Ndjson(_) => None,
        }
    }
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
        BulkConfig {
            max_docs: default_max_docs(),
            max_bytes: default_max_bytes(),
            concurrency: default_concurrency(),
        }
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
        DeleteStale {
            enabled: false,
            max_fraction: DEFAULT_MAX_STALE_FRACTION,
        }
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
            Either::Flag(enabled) => DeleteStale {
                enabled,
                max_fraction: DEFAULT_MAX_STALE_FRACTION,
            },
            Either::Detailed(d) => DeleteStale {
                enabled: d.enabled,
                max_fraction: d.max_fraction,
            },
        })
    }
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
