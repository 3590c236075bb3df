//! `redis-connector run` end to end: a private redis-server per test, the NDJSON sink
//! and the shared Elasticsearch. Covers the summary and its invariant, exit codes,
//! invalid pipelines stopping before any connection, dry runs writing nothing,
//! backpressure keeping memory flat, and SIGTERM mid-run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::{connector, es_count, es_delete_index, es_get, es_url, unique_index, write_file, RedisServer};
use serde_json::Value;

/// Runs the connector in `dir` with `args`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    connector()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the connector binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary JSON written")).unwrap()
}

/// Asserts `read = written + unchanged + filtered + skipped + failed` in a summary's
/// pipeline entry.
fn assert_counts_add_up(p: &Value) {
    let n = |f: &str| p[f].as_u64().unwrap_or_else(|| panic!("no {f} in {p}"));
    assert_eq!(
        n("read"),
        n("written") + n("unchanged") + n("filtered") + n("skipped") + n("failed"),
        "{p:#}"
    );
    assert_eq!(p["counts_add_up"], true);
}

fn ndjson_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Loads `n` string keys `prefix:i` (database 0) holding `bytes` bytes each.
fn load_strings(redis: &RedisServer, prefix: &str, n: usize, bytes: usize) {
    let filler = "x".repeat(bytes);
    let mut commands = String::with_capacity(n * (bytes + 32));
    for i in 0..n {
        commands.push_str(&format!("SET {prefix}:{i} {filler}\n"));
    }
    redis.cli_pipe(&commands);
}

#[test]
fn a_run_writes_every_document_and_the_summary_adds_up() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe(
        "SET user:1 Ada\nSET tmp:1 scratch\nHSET user:2 name Grace age 85\nRPUSH queue a b\nSADD tags x y\nZADD board 1 m\nSELECT 1\nSET user:3 Alan\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            r#"name: users
source: {{type: redis, host: 127.0.0.1, port: {port}, database: "*"}}
transforms:
  - type: filter
    rules:
      - {{policy: exclude, field: key, rule: starts_with, value: "tmp:"}}
sink: {{type: ndjson, path: out.ndjson}}
"#,
            port = redis.port
        ),
    );
    let out = run_in(
        dir.path(),
        &[
            "run",
            "-q",
            "--summary-json",
            "summary.json",
            pipeline.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pipeline users: ok"), "{stdout}");
    assert!(
        stdout.contains("read 7 = written 6 + filtered 1 + skipped 0 + failed 0"),
        "{stdout}"
    );

    let lines = ndjson_lines(&dir.path().join("out.ndjson"));
    let mut keys: Vec<(u64, String)> = lines
        .iter()
        .map(|l| (l["database"].as_u64().unwrap(), l["key"].as_str().unwrap().to_owned()))
        .collect();
    keys.sort();
    let expected = [
        (0, "board"),
        (0, "queue"),
        (0, "tags"),
        (0, "user:1"),
        (0, "user:2"),
        (1, "user:3"),
    ];
    assert_eq!(keys, expected.map(|(d, k)| (d, k.to_owned())));

    let summary = summary_json(&dir.path().join("summary.json"));
    assert_eq!(summary["status"], "ok");
    let p = &summary["pipelines"][0];
    assert_eq!(
        (p["pipeline"].as_str(), p["status"].as_str()),
        (Some("users"), Some("ok"))
    );
    assert_eq!(
        (p["read"].as_u64(), p["written"].as_u64(), p["filtered"].as_u64()),
        (Some(7), Some(6), Some(1))
    );
    assert_counts_add_up(p);
    assert_eq!(p["keys"]["0"]["string"], 2);
    assert_eq!(p["keys"]["1"]["string"], 1);
    let stages: Vec<&str> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["source", "transforms[0]", "sink"]);
    assert_eq!(p["stages"][1]["filtered"], 1);
    assert!(p["dead_letter"].as_array().unwrap().is_empty());
    assert!(
        !dir.path().join("users.dead-letter.ndjson").exists(),
        "no failure, no dead-letter file"
    );
}

#[test]
fn failed_documents_exit_1_and_name_the_dead_letter_file() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 name Ada\nSET user:2 plain\nHSET user:3 name Grace\n");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: users\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\ntransforms:\n  - type: template\n    document:\n      name: \"{{{{ value.name }}}}\"\nsink: {{type: ndjson, path: out.ndjson}}\n",
            redis.port
        ),
    );
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "s.json", pipeline.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pipeline users: FAILED"), "{stdout}");
    assert!(
        stdout.contains("1 documents failed; see users.dead-letter.ndjson"),
        "{stdout}"
    );
    assert_eq!(ndjson_lines(&dir.path().join("out.ndjson")).len(), 2, "the run went on");
    let dead = ndjson_lines(&dir.path().join("users.dead-letter.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["key"], "user:2");
    assert_eq!(dead[0]["stage"], "transforms[0]");
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("/document/name: `value.name`: undefined value"));
    let p = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!((p["status"].as_str(), p["failed"].as_u64()), (Some("failed"), Some(1)));
    assert_eq!(p["dead_letter"][0], "users.dead-letter.ndjson");
    assert_counts_add_up(p);

    // A dry run afterwards keeps the real run's dead letters and puts its own beside them.
    let out = run_in(dir.path(), &["run", "--dry-run", "-q", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 documents would fail; see users.dead-letter.dry-run.ndjson"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(ndjson_lines(&dir.path().join("users.dead-letter.ndjson")), dead);
    assert_eq!(
        ndjson_lines(&dir.path().join("users.dead-letter.dry-run.ndjson")).len(),
        1
    );
}

#[test]
fn pipelines_of_one_run_sharing_a_dead_letter_file_are_refused_before_anything_runs() {
    // Each run empties its dead-letter file: a second pipeline (in this process or a
    // later cron run) would erase the first one's failed records, so sharing is an error.
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSET b 2\n");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |name: &str| {
        write_file(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\ndead_letter: failed.ndjson\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\n\
                 transforms:\n  - type: template\n    document: {{x: \"{{{{ value.nope }}}}\"}}\n\
                 sink: {{type: ndjson, path: out-{name}.ndjson}}\n",
                redis.port
            ),
        )
    };
    let (first, second) = (pipeline("first"), pipeline("second"));
    for parallel in ["1", "2"] {
        let out = run_in(
            dir.path(),
            &[
                "run",
                "-q",
                "--parallel",
                parallel,
                first.to_str().unwrap(),
                second.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(
                "second.yaml:2:14: error: dead-letter file `failed.ndjson` is also written by pipeline `first`"
            ),
            "{stderr}"
        );
        assert!(stderr.contains("nothing was run"), "{stderr}");
        assert!(!dir.path().join("failed.ndjson").exists() && !dir.path().join("out-first.ndjson").exists());
    }
}

#[test]
fn a_template_failure_that_cannot_reach_the_dead_letter_file_stops_the_run() {
    // Counted as failed but in no file, the record would be lost: the run stops and
    // says why, as the sink does for documents Elasticsearch rejects.
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "not-a-folder", "");
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: lost\ndead_letter: not-a-folder/dl.ndjson\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\n\
             transforms:\n  - type: template\n    document: {{x: \"{{{{ value.nope }}}}\"}}\n\
             sink: {{type: ndjson, path: out.ndjson}}\n",
            redis.port
        ),
    );
    let out = run_in(dir.path(), &["run", "-q", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("error: transforms[0]: cannot write the dead-letter file not-a-folder/dl.ndjson"),
        "{stdout}"
    );
}

#[test]
fn an_invalid_pipeline_stops_the_run_before_any_connection() {
    let closed_port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let good = write_file(
        dir.path(),
        "a.yaml",
        &format!("name: a\nsource: {{type: redis, host: 127.0.0.1, port: {closed_port}}}\nsink: {{type: ndjson, path: a.ndjson}}\n"),
    );
    let bad = write_file(
        dir.path(),
        "b.yaml",
        &format!(
            "name: b\nsource: {{type: redis, host: 127.0.0.1, port: {closed_port}}}\ntransforms:\n  - type: template\n    document:\n      name: \"{{{{ value.name | }}}}\"\nsink: {{type: ndjson, path: b.ndjson}}\n"
        ),
    );
    let out = run_in(dir.path(), &["run", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("b.yaml:6:"),
        "the error names the file and line: {stderr}"
    );
    assert!(stderr.contains("(at /transforms/0/document/name)"), "{stderr}");
    assert!(stderr.contains("nothing was run"), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("connect"),
        "no connection was tried: {stderr}"
    );
    assert!(!dir.path().join("a.ndjson").exists(), "not even the valid pipeline ran");
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn an_invalid_pipeline_replaces_the_summary_json_with_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(
        dir.path(),
        "b.yaml",
        "name: b\nsource: {type: redis, host: 127.0.0.1, databse: 0}\nsink: {type: ndjson, path: b.ndjson}\n",
    );
    // What an earlier, successful run left: a bot must not read it as this run's.
    std::fs::write(dir.path().join("s.json"), r#"{"status": "ok", "pipelines": []}"#).unwrap();
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "s.json", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let summary = summary_json(&dir.path().join("s.json"));
    assert_eq!(summary["status"], "invalid");
    assert_eq!(summary["pipelines"], serde_json::json!([]));
    let problem = &summary["problems"][0];
    assert_eq!(
        (problem["line"].as_u64(), problem["pointer"].as_str()),
        (Some(2), Some("/source/databse"))
    );
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `database`?"),
        "{problem}"
    );
}

#[test]
fn a_missing_pipeline_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["run", "no-such.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).trim(), "error: no-such.yaml: no such file or folder");
}

#[test]
fn a_fatal_sink_error_fails_the_run_with_one_message() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!("name: p\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: ndjson, path: no/such/dir/out.ndjson}}\n", redis.port),
    );
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "s.json", pipeline.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .contains("error: sink: cannot open the sink: cannot create the NDJSON output file no/such/dir/out.ndjson"),
        "{stdout}"
    );
    let p = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!(
        (p["status"].as_str(), p["read"].as_u64()),
        (Some("failed"), Some(0)),
        "the sink opens before any read"
    );
}

/// The write commands Redis ran since `before` (from `INFO commandstats`), judged by
/// Redis's own `COMMAND INFO` flags.
fn write_commands_since(redis: &RedisServer, before: &[(String, u64)]) -> Vec<String> {
    let after = commandstats(redis);
    after
        .into_iter()
        .filter(|(name, calls)| before.iter().find(|(n, _)| n == name).is_none_or(|(_, c)| calls > c))
        .filter(|(name, _)| {
            redis
                .cli(&["COMMAND", "INFO", name])
                .lines()
                .any(|l| l.trim() == "write")
        })
        .map(|(name, _)| name)
        .collect()
}

fn commandstats(redis: &RedisServer) -> Vec<(String, u64)> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn es_pipeline(dir: &Path, file: &str, name: &str, redis_port: u16, index: &str) -> PathBuf {
    write_file(
        dir,
        file,
        &format!(
            "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {redis_port}, database: \"*\"}}\nsink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  delete_stale: true\n",
            es_url()
        ),
    )
}

#[test]
fn a_dry_run_writes_nothing_to_elasticsearch_or_redis() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET user:1 Ada\nHSET user:2 name Grace\nSELECT 2\nRPUSH q a b\n");
    let index = unique_index("dry-run");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = es_pipeline(dir.path(), "dry.yaml", "dry", redis.port, &index);
    let p = pipeline.to_str().unwrap();

    // 1. The index does not exist: a dry run reads, renders, and creates nothing.
    let before = commandstats(&redis);
    let out = run_in(
        dir.path(),
        &["run", "--dry-run", "--sample", "2", "-q", "--summary-json", "s.json", p],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        write_commands_since(&redis, &before),
        Vec::<String>::new(),
        "no Redis write command"
    );
    let status = support::http()
        .head(format!("{}/{index}", es_url()))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 404, "no index created");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("pipeline dry: ok (dry run: nothing written)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read 3 = would write 3 + unchanged 0 + filtered 0"),
        "{stdout}"
    );
    assert!(stdout.contains("db 0: hash 1, string 1"), "{stdout}");
    assert!(stdout.contains("db 2: list 1"), "{stdout}");
    assert!(stdout.contains("sample documents (2):"), "{stdout}");
    let p_summary = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!(p_summary["dry_run"], true);
    assert_eq!(p_summary["samples"].as_array().unwrap().len(), 2);
    assert!(p_summary["samples"][0]["_id"].is_string() && p_summary["samples"][0]["key_type"].is_string());

    // 2. The index exists: a dry run leaves its documents alone and counts what would be deleted.
    let out = run_in(dir.path(), &["run", "-q", p]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(es_count(&index), 3);
    redis.cli(&["DEL", "user:1"]);
    redis.cli(&["SET", "user:9", "new"]);
    let before = commandstats(&redis);
    let out = run_in(dir.path(), &["run", "--dry-run", "-q", "--summary-json", "s2.json", p]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(write_commands_since(&redis, &before), Vec::<String>::new());
    assert_eq!(es_count(&index), 3, "document count unchanged");
    assert!(
        es_get(&index, &redis_connector::document::default_id(0, b"user:1")).is_some(),
        "stale document kept"
    );
    assert!(
        es_get(&index, &redis_connector::document::default_id(0, b"user:9")).is_none(),
        "new document not written"
    );
    let p2 = &summary_json(&dir.path().join("s2.json"))["pipelines"][0];
    assert_eq!(p2["stale_found"], 1);
    assert_eq!(p2["deleted_stale"], 0);
    assert!(text(&out.stdout).contains("stale documents that would be deleted: 1"));
    es_delete_index(&index);
}

/// A slow reader of a FIFO the NDJSON sink writes to.
struct Fifo {
    path: PathBuf,
}

impl Fifo {
    fn new(dir: &Path) -> Fifo {
        let path = dir.join("out.fifo");
        let status = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
        Fifo { path }
    }
}

/// Peak resident memory (`VmHWM`, kB) of a running process.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn a_slow_sink_keeps_memory_flat() {
    // 10,000 keys of 10 KB: 100 MB of values, read by a consumer slower than Redis.
    // Without backpressure the process would buffer what the sink has not written yet
    // and grow towards the data set's size. With bounded channels it holds a few
    // batches per stage (scan_count 100 keys ~ 1 MB per batch: 4 per channel, the
    // pages in flight, the sink's current one), so after the first document reaches
    // the sink its peak RSS grows by a few MB at most (~16 MB measured; it grew with the
    // data before jemalloc was told to give freed pages back, see main.rs). The bound,
    // 40 MB of growth, is generous yet far below the 100 MB of data.
    const KEYS: usize = 10_000;
    const VALUE_BYTES: usize = 10_000;
    const GROWTH_BOUND_KB: u64 = 40 * 1024;
    let redis = RedisServer::start(&[]);
    load_strings(&redis, "big", KEYS, VALUE_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: slow\nsource: {{type: redis, host: 127.0.0.1, port: {}, scan_count: 100}}\nsink: {{type: ndjson, path: {}}}\n",
            redis.port,
            fifo.path.display()
        ),
    );
    let mut child = connector()
        .current_dir(dir.path())
        .args(["run", "-q", "--summary-json", "s.json", pipeline.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut reader = std::fs::File::open(&fifo.path).unwrap();
    let (mut total, mut start, mut peak) = (0u64, None, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        if let Some(rss) = peak_rss_kb(pid) {
            start.get_or_insert(rss);
            peak = peak.max(rss);
        }
        // A slow consumer: the pipeline must wait for it, not buffer everything.
        std::thread::sleep(Duration::from_micros(500));
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let start = start.expect("the peak RSS was sampled while the run was going");
    eprintln!(
        "peak RSS {start} kB at the first document, {peak} kB at the end, {} MB through the sink",
        total >> 20
    );
    assert!(
        total > (KEYS * VALUE_BYTES) as u64,
        "the whole data set went through the sink ({total} bytes)"
    );
    assert!(
        peak - start < GROWTH_BOUND_KB,
        "peak RSS grew by {} kB (from {start} to {peak} kB) while {} MB went through: memory is not flat",
        peak - start,
        total >> 20
    );
    let p = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!(p["written"].as_u64(), Some(KEYS as u64));
}

#[test]
fn sigterm_mid_run_drains_what_was_read_prints_the_summary_and_exits_non_zero() {
    const KEYS: usize = 20_000;
    let redis = RedisServer::start(&[]);
    load_strings(&redis, "k", KEYS, 1_000);
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: term\nsource: {{type: redis, host: 127.0.0.1, port: {}, scan_count: 100}}\nsink: {{type: ndjson, path: {}}}\n",
            redis.port,
            fifo.path.display()
        ),
    );
    let child = connector()
        .current_dir(dir.path())
        .args(["run", "--summary-json", "s.json", pipeline.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::open(&fifo.path).unwrap();
    // Read a first chunk: the run is going. Then stop reading: the sink blocks, the
    // channels fill, and the source waits (backpressure), mid-run for sure.
    let mut first = vec![0u8; 256 * 1024];
    reader.read_exact(&mut first).unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "interrupted runs exit non-zero");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pipeline term: INTERRUPTED"), "{stdout}");
    assert!(
        stdout.contains("interrupted: stopped reading, drained what was in flight"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("SIGTERM received"), "{}", text(&out.stderr));
    let p = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!(p["status"], "interrupted");
    assert_counts_add_up(p);
    let lines = first.len() + rest.len();
    let written = p["written"].as_u64().unwrap();
    assert!(
        written < KEYS as u64,
        "the source stopped reading early ({written} of {KEYS})"
    );
    let newline_count = first.iter().chain(rest.iter()).filter(|b| **b == b'\n').count() as u64;
    assert_eq!(
        newline_count, written,
        "every document read was drained into the sink ({lines} bytes)"
    );
}

/// A TCP relay between the connector and Redis that stops passing Redis's answers on
/// once `stall_after` bytes went through: the connector is then mid-run, waiting.
struct StallingRelay {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallingRelay {
    fn start(redis_port: u16, stall_after: u64) -> StallingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let flag = stalled.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    return;
                };
                let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (flag, forwarded) = (flag.clone(), forwarded.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let Ok(n) = s_in.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        if forwarded.fetch_add(n as u64, Ordering::SeqCst) >= stall_after {
                            flag.store(true, Ordering::SeqCst);
                        }
                        while flag.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        StallingRelay { port, stalled }
    }

    /// Waits until the relay stalls; panics with the connector's output if it ended first.
    fn wait_stalled(&self, child: &mut std::process::Child) {
        while !self.stalled.load(Ordering::SeqCst) {
            if child.try_wait().unwrap().is_some() {
                let mut out = String::new();
                child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
                panic!("the run ended before the relay stalled: {out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn sigterm_mid_run_skips_stale_deletion_in_elasticsearch() {
    let redis = RedisServer::start(&[]);
    load_strings(&redis, "k", 5_000, 1_000);
    redis.cli(&["SET", "gone", "soon"]);
    let index = unique_index("sigterm");
    let dir = tempfile::tempdir().unwrap();
    // A complete first run indexes everything, `gone` included.
    let direct = es_pipeline(dir.path(), "direct.yaml", "stale", redis.port, &index);
    let out = run_in(dir.path(), &["run", "-q", direct.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(es_count(&index), 5_001);
    redis.cli(&["DEL", "gone"]);

    // The second run reads through the relay, which stalls after ~1 MB of answers.
    let relay = StallingRelay::start(redis.port, 1 << 20);
    let pipeline = es_pipeline(dir.path(), "relayed.yaml", "stale", relay.port, &index);
    let mut child = connector()
        .current_dir(dir.path())
        .args(["run", "--summary-json", "s.json", pipeline.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    relay.wait_stalled(&mut child);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pipeline stale: INTERRUPTED"), "{stdout}");
    let p = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!(p["status"], "interrupted");
    assert_eq!(p["deleted_stale"], 0);
    assert_counts_add_up(p);
    assert!(
        es_get(&index, &redis_connector::document::default_id(0, b"gone")).is_some(),
        "an interrupted run deletes nothing as stale"
    );
    assert_eq!(es_count(&index), 5_001);
    es_delete_index(&index);
}

#[test]
fn an_unreachable_redis_fails_the_run_with_the_error_once() {
    let closed_port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!("name: p\nsource: {{type: redis, host: 127.0.0.1, port: {closed_port}}}\nsink: {{type: ndjson, path: out.ndjson}}\n"),
    );
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "s.json", pipeline.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        all.matches("connection refused").count(),
        1,
        "the error is shown once: {all}"
    );
    assert!(
        text(&out.stdout).contains(&format!("error: source: Redis at 127.0.0.1:{closed_port}")),
        "{all}"
    );
    let p = &summary_json(&dir.path().join("s.json"))["pipelines"][0];
    assert_eq!(p["status"], "failed");
    assert!(p["error"].as_str().unwrap().starts_with("source: "));
    assert_counts_add_up(p);
}

/// Calls of one Redis command so far (`INFO commandstats`).
fn calls_of(redis: &RedisServer, command: &str) -> u64 {
    commandstats(redis)
        .into_iter()
        .find(|(name, _)| name == command)
        .map_or(0, |(_, calls)| calls)
}

#[test]
fn ttl_is_asked_only_when_a_stage_reads_it_and_then_arrives_in_documents_and_filters() {
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "plain", "a"]);
    redis.cli(&["SET", "expiring", "b", "EX", "1000"]);
    redis.cli(&["HSET", "hash", "f", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let port = redis.port;
    let run = |file: &str, transforms: &str| {
        let pipeline = write_file(
            dir.path(),
            &format!("{file}.yaml"),
            &format!(
                "name: {file}\nsource: {{type: redis, host: 127.0.0.1, port: {port}}}\n{transforms}sink: {{type: ndjson, path: {file}.ndjson}}\n"
            ),
        );
        let before = calls_of(&redis, "ttl");
        let out = run_in(dir.path(), &["run", "-q", pipeline.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let mut lines = ndjson_lines(&dir.path().join(format!("{file}.ndjson")));
        lines.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        (calls_of(&redis, "ttl") - before, lines)
    };

    // Default documents carry no ttl: nothing asks Redis for it.
    let (ttl_calls, lines) = run("plain", "");
    assert_eq!(ttl_calls, 0);
    assert_eq!(lines.len(), 3);

    // A template that reads `ttl` gets it for every key (`null` without expiry).
    let (ttl_calls, lines) = run(
        "templated",
        "transforms:\n  - type: template\n    document:\n      key: \"{{ key }}\"\n      ttl: {expr: ttl}\n",
    );
    assert_eq!(ttl_calls, 3);
    let ttl = lines[0]["ttl"].as_i64().expect("expiring has a ttl");
    assert_eq!(lines[0]["key"], "expiring");
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    assert_eq!(lines[1]["ttl"], Value::Null);
    assert_eq!(lines[2]["ttl"], Value::Null);

    // A filter on `ttl` (no template before it) sees it too.
    let (ttl_calls, lines) = run(
        "filtered",
        "transforms:\n  - type: filter\n    rules:\n      - {policy: include, field: ttl, rule: \">\", value: 0}\n      - {policy: exclude, field: key, rule: regex, value: \".*\"}\n",
    );
    assert_eq!(ttl_calls, 3);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["key"], "expiring");
}

/// The `mappings` of an index, or `None` when it does not exist.
fn es_mappings(index: &str) -> Option<Value> {
    let response = support::http()
        .get(format!("{}/{}/_mapping", es_url(), index))
        .send()
        .unwrap();
    if response.status() == 404 {
        return None;
    }
    let body: Value = response.json().unwrap();
    Some(body[index]["mappings"].clone())
}

#[test]
fn an_index_is_created_by_a_complete_run_even_empty_but_never_by_a_run_that_read_nothing() {
    let dir = tempfile::tempdir().unwrap();

    // Redis unreachable: the run fails and leaves no index behind.
    let closed_port = support::free_port();
    let index = unique_index("unreachable-redis");
    let pipeline = es_pipeline(dir.path(), "a.yaml", "unreachable_redis", closed_port, &index);
    let out = run_in(dir.path(), &["run", "-q", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("error: source: Redis at 127.0.0.1:{closed_port}")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        es_mappings(&index),
        None,
        "index {index} was created although nothing was read"
    );

    // An empty Redis, read completely: the index exists afterwards, with the built-in
    // mapping of the default document.
    let redis = RedisServer::start(&[]);
    let index = unique_index("empty-redis");
    let pipeline = es_pipeline(dir.path(), "b.yaml", "empty_redis", redis.port, &index);
    let out = run_in(dir.path(), &["run", "-q", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let mappings = es_mappings(&index).expect("the empty run created its index");
    assert_eq!(mappings["properties"]["key"]["type"], "keyword", "{mappings}");
    assert_eq!(mappings["_meta"]["redis_connector"]["pipeline"], "empty_redis");
    es_delete_index(&index);

    // The same with a template: rendered documents get dynamic mapping, not the
    // default document's (whose `value: text` could clash with what the template makes).
    let index = unique_index("empty-redis-templated");
    let pipeline = write_file(
        dir.path(),
        "c.yaml",
        &format!(
            "name: empty_templated\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\ntransforms:\n  - type: template\n    document: {{name: \"{{{{ key }}}}\", value: {{expr: value}}}}\nsink: {{type: elasticsearch, url: {}, index: {index}}}\n",
            redis.port,
            es_url()
        ),
    );
    let out = run_in(dir.path(), &["run", "-q", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let mappings = es_mappings(&index).expect("the empty run created its index");
    // No built-in mapping: only the content hash of change-aware sync is mapped.
    let properties: Vec<&String> = mappings["properties"].as_object().unwrap().keys().collect();
    assert_eq!(properties, ["_content_hash"], "no built-in mapping: {mappings}");
    assert_eq!(mappings["_meta"]["redis_connector"]["pipeline"], "empty_templated");
    es_delete_index(&index);
}

#[test]
fn summary_json_dash_goes_to_stdout_and_the_source_reports_what_it_passed_on() {
    let redis = RedisServer::start(&[]);
    load_strings(&redis, "k", 7, 10);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: users\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: ndjson, path: out.ndjson}}\n",
            redis.port
        ),
    );
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "-", pipeline.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!dir.path().join("-").exists(), "no file named `-`");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON summary alone");
    let p = &summary["pipelines"][0];
    assert_eq!(p["read"], 7);
    let source = &p["stages"][0];
    assert_eq!(
        (source["stage"].as_str(), source["out"].as_u64()),
        (Some("source"), Some(7)),
        "{p:#}"
    );
    assert!(
        text(&out.stderr).contains("pipeline users: ok"),
        "the text summary moves to stderr"
    );

    // Standard output cannot take both the documents and the summary.
    let to_stdout = write_file(
        dir.path(),
        "q.yaml",
        &format!(
            "name: q\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: ndjson, path: '-'}}\n",
            redis.port
        ),
    );
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "-", to_stdout.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("would mix on standard output"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unwritable_summary_json_path_is_a_usage_error_before_anything_is_read() {
    let redis = RedisServer::start(&[]);
    load_strings(&redis, "k", 3, 10);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: users\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: ndjson, path: out.ndjson}}\n",
            redis.port
        ),
    );
    let scans_before = calls_of(&redis, "scan");
    for target in ["no/such/folder/s.json", "."] {
        let out = run_in(
            dir.path(),
            &["run", "-q", "--summary-json", target, pipeline.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(2), "{target}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with(&format!("error: cannot write the summary to {target}: ")),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(calls_of(&redis, "scan"), scans_before, "nothing was read");
    assert!(!dir.path().join("out.ndjson").exists(), "nothing was written");
}

#[test]
fn several_pipelines_end_with_a_total_line() {
    let redis = RedisServer::start(&[]);
    load_strings(&redis, "k", 4, 10);
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        write_file(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: ndjson, path: {name}.ndjson}}\n",
                redis.port
            ),
        );
    }
    let out = run_in(dir.path(), &["run", "-q", "--parallel", "2", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .trim_end()
            .ends_with("total: 2 pipelines (2 ok): read 8 = written 8 + filtered 0 + skipped 0 + failed 0"),
        "{stdout}"
    );
}
