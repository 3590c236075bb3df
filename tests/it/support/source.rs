//! Running the Redis source in-process to its end, for tests that check its records,
//! report and counters (rather than the documents a whole pipeline writes).

use std::collections::BTreeSet;

use redis_connector::config::model::RedisSourceConfig;
use redis_connector::dead_letter::DeadLetter;
use redis_connector::record::{Record, RedisValue};
use redis_connector::stages::source::redis::RedisSource;
use redis_connector::stages::{RunOptions, SourceReport, StageContext};
use redis_connector::stats::CountersSnapshot;

use super::RedisServer;

/// What one run of the source gave.
pub struct Run {
    pub records: Vec<Record>,
    pub report: SourceReport,
    pub counters: CountersSnapshot,
    pub estimated: u64,
    pub batches: usize,
    /// Payload bytes of each batch received, in order.
    pub batch_bytes: Vec<u64>,
}

impl Run {
    pub fn keys(&self) -> BTreeSet<Vec<u8>> {
        self.records.iter().map(|r| r.key.clone()).collect()
    }
    pub fn value(&self, key: &[u8]) -> &RedisValue {
        &self
            .records
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no record for {key:?}"))
            .value
    }
    pub fn record(&self, key: &[u8]) -> &Record {
        self.records
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no record for {key:?}"))
    }
}

/// A source config for the server on `port`, plus `extra` YAML lines.
pub fn config(port: u16, extra: &str) -> RedisSourceConfig {
    redis_connector::config::yaml::from_str(&format!("host: 127.0.0.1\nport: {port}\n{extra}"))
        .expect("test config parses")
}

/// Runs the source to its end with a channel of `capacity`, calling `on_batch(n)` before
/// receiving batch `n` (so a test can act while the source waits on it).
pub fn read_with(config: RedisSourceConfig, capacity: usize, on_batch: impl FnMut(usize)) -> Result<Run, String> {
    let source = RedisSource::build(&config).map_err(|e| format!("build: {e:?}"))?;
    read_source(source, capacity, on_batch)
}

/// [`read_with`] for a source already built (and adjusted).
pub fn read_source(source: RedisSource, capacity: usize, mut on_batch: impl FnMut(usize)) -> Result<Run, String> {
    let dir = tempfile::tempdir().unwrap();
    let ctx = StageContext::new(
        "test",
        "source",
        DeadLetter::new(dir.path().join("dl.ndjson")),
        RunOptions::default(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(capacity);
    let handle = runtime.spawn(source.run(tx, ctx.clone()));
    let mut records = Vec::new();
    let mut batches = 0;
    let mut batch_bytes = Vec::new();
    loop {
        on_batch(batches);
        let Some(batch) = rx.blocking_recv() else {
            break;
        };
        assert!(!batch.is_empty(), "the source sends no empty batches");
        batches += 1;
        batch_bytes.push(batch.iter().map(|r| r.value.payload_len() as u64).sum());
        records.extend(batch);
    }
    let report = runtime.block_on(handle).unwrap().map_err(|e| format!("{e:#}"));
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            assert!(
                records.is_empty(),
                "an error came after {} records were sent: {error}",
                records.len()
            );
            return Err(error);
        }
    };
    Ok(Run {
        records,
        report,
        counters: ctx.counters.snapshot(),
        estimated: ctx.estimated_total.load(std::sync::atomic::Ordering::Relaxed),
        batches,
        batch_bytes,
    })
}

/// Runs the source to its end with a channel of 8 batches.
pub fn read(config: RedisSourceConfig) -> Result<Run, String> {
    read_with(config, 8, |_| {})
}

/// Runs one command (binary-safe arguments); panics on an error.
pub fn cmd(connection: &mut redis::Connection, args: &[&[u8]]) {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.exec(connection).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Calls of `command` (lower case, e.g. `json.get`) the server has counted (`INFO commandstats`).
pub fn commandstat(redis: &RedisServer, command: &str) -> u64 {
    let info = redis.cli(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// How many of the server's clients (`CLIENT LIST` lines) hold every one of `needles`.
pub fn clients_with(redis: &RedisServer, needles: &[&str]) -> usize {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

/// The keys named, as bytes.
pub fn text_keys(keys: &[&str]) -> BTreeSet<Vec<u8>> {
    keys.iter().map(|k| k.as_bytes().to_vec()).collect()
}
