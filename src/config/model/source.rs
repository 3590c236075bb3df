//! The `source:` section: the Redis source, its databases, TLS and advanced sync
//! rules (re-exported by [`super`]).

use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::default_true;
use crate::config::units::{ByteSize, DurationSpec};
use crate::record::KeyType;

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
            _ => Err(de::Error::custom(
                "`database` is \"*\", a number, \"0,1,2\" or a list of numbers",
            )),
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
