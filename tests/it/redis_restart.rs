//! A Redis restart (kill -9, then a start on the same port from its AOF) under a real
//! read of large collections in chunks: every record the source sends must be exactly
//! what Redis holds, never a collection cut short by a cursor from before the restart.
//! One run per chunked type kills the server between two chunks of one key; another
//! kills it between pages, with every type in the database.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::RedisServer;
use redis_connector::config::model::RedisSourceConfig;
use redis_connector::dead_letter::DeadLetter;
use redis_connector::record::{KeyType, Record, RedisValue, StreamEntry};
use redis_connector::stages::source::redis::RedisSource;
use redis_connector::stages::{RunOptions, SourceReport, StageContext};

/// A stream entry as `XRANGE` gives it: id and field/value pairs.
type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Members per collection, and elements per chunk: 500 calls to read one collection.
const MEMBERS: usize = 10_000;
const CHUNK: usize = 20;

/// A server with the AOF on, so a restart loads what it held when killed.
fn start_with_aof() -> RedisServer {
    RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])
}

/// Waits until the AOF holds the whole data set: a rewrite writes (and syncs) it all.
fn rewrite_aof(redis: &RedisServer) {
    redis.cli(&["BGREWRITEAOF"]);
    loop {
        let info = redis.cli(&["INFO", "persistence"]);
        let busy = info
            .lines()
            .any(|l| l.trim() == "aof_rewrite_in_progress:1" || l.trim() == "aof_rewrite_scheduled:1");
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `keys` collections of `key_type` with [`MEMBERS`] members each, named
/// `<prefix>:<n>`.
fn load(redis: &RedisServer, key_type: KeyType, prefix: &str, keys: usize) {
    let mut connection = redis.connection();
    for k in 0..keys {
        let key = format!("{prefix}:{k}");
        let mut pipe = redis::pipe();
        for start in (0..MEMBERS).step_by(1000) {
            let range = start..(start + 1000).min(MEMBERS);
            match key_type {
                KeyType::Hash => {
                    let command = pipe.cmd("HSET").arg(&key);
                    for i in range {
                        command.arg(format!("field{i}")).arg(format!("value {i} of {key}"));
                    }
                }
                KeyType::Set => {
                    let command = pipe.cmd("SADD").arg(&key);
                    for i in range {
                        command.arg(format!("member{i}"));
                    }
                }
                KeyType::List => {
                    let command = pipe.cmd("RPUSH").arg(&key);
                    for i in range {
                        command.arg(format!("item{i}"));
                    }
                }
                KeyType::ZSet => {
                    let command = pipe.cmd("ZADD").arg(&key);
                    for i in range {
                        command.arg(i).arg(format!("member{i}"));
                    }
                }
                KeyType::Stream => {
                    for i in range {
                        pipe.cmd("XADD").arg(&key).arg(format!("{}-0", i + 1)).arg("n").arg(i);
                    }
                }
                KeyType::String | KeyType::Json => unreachable!("not a collection"),
            }
            pipe.ignore();
        }
        pipe.exec(&mut connection).expect("load the test data");
    }
}

/// A few small strings beside the collections.
fn load_strings(redis: &RedisServer, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(i).ignore();
    }
    pipe.exec(&mut redis.connection()).unwrap();
}

/// The value `key` holds in `redis`, in the form the source gives (hash fields and
/// set members sorted).
fn value_in_redis(connection: &mut redis::Connection, key: &[u8], key_type: KeyType) -> RedisValue {
    let query = |name: &str, args: &[&str]| {
        let mut command = redis::cmd(name);
        command.arg(key);
        for arg in args {
            command.arg(*arg);
        }
        command
    };
    match key_type {
        KeyType::String => RedisValue::String(query("GET", &[]).query(connection).unwrap()),
        KeyType::Hash => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query("HGETALL", &[]).query(connection).unwrap();
            pairs.sort();
            RedisValue::Hash(pairs)
        }
        KeyType::Set => {
            let mut members: Vec<Vec<u8>> = query("SMEMBERS", &[]).query(connection).unwrap();
            members.sort();
            RedisValue::Set(members)
        }
        KeyType::List => RedisValue::List(query("LRANGE", &["0", "-1"]).query(connection).unwrap()),
        KeyType::ZSet => RedisValue::ZSet(query("ZRANGE", &["0", "-1", "WITHSCORES"]).query(connection).unwrap()),
        KeyType::Stream => {
            let entries: Vec<Entry> = query("XRANGE", &["-", "+"]).query(connection).unwrap();
            RedisValue::Stream(
                entries
                    .into_iter()
                    .map(|(id, fields)| StreamEntry { id, fields })
                    .collect(),
            )
        }
        KeyType::Json => unreachable!("no JSON in these tests"),
    }
}

/// What one read gave.
struct Read {
    records: Vec<Record>,
    report: SourceReport,
    /// Whether the run marked db 0's scan as started over (for a later stage's notes).
    scan_restarted: bool,
}

/// Reads db 0 of the server on `port` with a small `chunk_size`, in a thread of its
/// own; `done` is set when the read is over.
fn read_in_background(port: u16, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Result<Read, String>> {
    std::thread::spawn(move || {
        let config: RedisSourceConfig = redis_connector::config::yaml::from_str(&format!(
            "host: 127.0.0.1\nport: {port}\ndatabase: 0\nscan_count: 10\nchunk_size: {CHUNK}\n"
        ))
        .unwrap();
        let source = RedisSource::build(&config).map_err(|e| format!("{e:?}"))?;
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let handle = runtime.spawn(source.run(tx, ctx.clone()));
        let mut records = Vec::new();
        while let Some(batch) = rx.blocking_recv() {
            records.extend(batch);
        }
        let report = runtime.block_on(handle).unwrap().map_err(|e| format!("{e:#}"));
        done.store(true, Ordering::SeqCst);
        Ok(Read {
            records,
            report: report?,
            scan_restarted: ctx.scans_restarted.contains(0),
        })
    })
}

/// Calls of `command` (lower case, e.g. `hscan`) the server has answered.
fn calls(connection: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(connection).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// Kills the server (as a crash would) and starts it again on its port from its AOF.
fn kill_and_restart(redis: &mut RedisServer) -> RedisServer {
    redis.kill();
    let dir = redis.dir.path().to_str().unwrap().to_owned();
    RedisServer::start_on(
        redis.port,
        &["--dir", &dir, "--appendonly", "yes", "--appendfsync", "always"],
    )
}

/// Every record equals what the restarted server holds, and every key arrived.
fn assert_exact(read: &Read, restarted: &RedisServer, expected_keys: usize) {
    let mut connection = restarted.connection();
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(
        dbsize, expected_keys,
        "the restarted server loaded every key from its AOF"
    );
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for record in &read.records {
        let mut value = record.value.clone();
        if let RedisValue::Hash(pairs) = &mut value {
            pairs.sort();
        }
        let expected = value_in_redis(&mut connection, &record.key, record.key_type);
        if value != expected {
            let size = |v: &RedisValue| match v {
                RedisValue::Hash(p) => p.len(),
                RedisValue::Set(m) | RedisValue::List(m) => m.len(),
                RedisValue::ZSet(m) => m.len(),
                RedisValue::Stream(e) => e.len(),
                _ => 1,
            };
            panic!(
                "key {} ({}) was sent with {} elements; Redis holds {}",
                String::from_utf8_lossy(&record.key),
                record.key_type,
                size(&value),
                size(&expected)
            );
        }
        *seen.entry(record.key.clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), expected_keys, "every key was sent");
}

/// Kills and restarts Redis once the read of the `key_type` collections is well under
/// way (`command` answered 100 times, of about 500 per collection), so the kill lands
/// between two chunks of one key; then checks every record against Redis.
fn restart_between_the_chunks_of_one_key(key_type: KeyType, command: &str) {
    let mut redis = start_with_aof();
    load(&redis, key_type, "big", 4);
    load_strings(&redis, 200);
    rewrite_aof(&redis);
    let done = Arc::new(AtomicBool::new(false));
    let reader = read_in_background(redis.port, done.clone());
    let mut connection = redis.connection();
    while calls(&mut connection, command) < 100 {
        assert!(!done.load(Ordering::SeqCst), "the read ended before it was interrupted");
        std::thread::sleep(Duration::from_millis(1));
    }
    let restarted = kill_and_restart(&mut redis);
    let read = reader.join().unwrap().expect("the read ends without error");
    assert_exact(&read, &restarted, 204);
    let note = read
        .report
        .notes
        .iter()
        .find(|n| n.contains("restarted while db 0 was read"))
        .unwrap_or_else(|| panic!("a note names the restart: {:?}", read.report.notes));
    assert!(
        note.contains("being read in chunks were read again from their first element"),
        "the kill landed between two chunks of a key, which was read again: {note}"
    );
}

#[test]
fn a_hash_read_in_chunks_across_a_redis_restart_is_read_again_whole() {
    restart_between_the_chunks_of_one_key(KeyType::Hash, "hscan");
}

#[test]
fn a_set_read_in_chunks_across_a_redis_restart_is_read_again_whole() {
    restart_between_the_chunks_of_one_key(KeyType::Set, "sscan");
}

#[test]
fn a_list_read_in_chunks_across_a_redis_restart_is_read_again_whole() {
    restart_between_the_chunks_of_one_key(KeyType::List, "lrange");
}

#[test]
fn a_zset_read_in_chunks_across_a_redis_restart_is_read_again_whole() {
    restart_between_the_chunks_of_one_key(KeyType::ZSet, "zrange");
}

#[test]
fn a_stream_read_in_chunks_across_a_redis_restart_is_read_again_whole() {
    restart_between_the_chunks_of_one_key(KeyType::Stream, "xrange");
}

#[test]
fn a_redis_restart_between_keys_of_every_type_sends_every_collection_whole() {
    let mut redis = start_with_aof();
    let types = [
        (KeyType::Hash, "h"),
        (KeyType::Set, "set"),
        (KeyType::List, "l"),
        (KeyType::ZSet, "z"),
        (KeyType::Stream, "x"),
    ];
    for (key_type, prefix) in types {
        load(&redis, key_type, prefix, 3);
    }
    load_strings(&redis, 500);
    rewrite_aof(&redis);
    let done = Arc::new(AtomicBool::new(false));
    let reader = read_in_background(redis.port, done.clone());
    let mut connection = redis.connection();
    // After some keys were read whole: the kill lands wherever the read is then.
    while calls(&mut connection, "scan") < 20 {
        assert!(!done.load(Ordering::SeqCst), "the read ended before it was interrupted");
        std::thread::sleep(Duration::from_millis(1));
    }
    let restarted = kill_and_restart(&mut redis);
    let read = reader.join().unwrap().expect("the read ends without error");
    assert_exact(&read, &restarted, 515);
    assert!(
        read.scan_restarted,
        "a key sent twice is said to be read again after the restart"
    );
    assert!(
        read.report
            .notes
            .iter()
            .any(|n| n.contains("restarted while db 0 was read")),
        "{:?}",
        read.report.notes
    );
}
