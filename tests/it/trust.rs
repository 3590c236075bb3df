//! Trust under hostile input and faults (issue 23), against real Redis (with the
//! RedisJSON module), real Elasticsearch and the real binary: one key the tool cannot
//! read is that key's failure, in one-shot runs and in live mode alike.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::live::{assert_exact, pipeline, Follow};
use crate::support::{connector, es_count, es_delete_index, es_get, es_url, redisjson, unique_index, write_file};
use redis_connector::document::default_id;
use serde_json::Value;

/// Deletes the test's index when dropped.
struct OwnIndex(String);

impl Drop for OwnIndex {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

/// `JSON.SET key path json`.
fn json_set(connection: &mut redis::Connection, key: &str, path: &str, json: &str) {
    redis::cmd("JSON.SET")
        .arg(key)
        .arg(path)
        .arg(json)
        .exec(connection)
        .unwrap_or_else(|e| panic!("JSON.SET {key} {path}: {e}"));
}

/// Arrays nested `depth` levels deep: `[[...]]`.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Writes `poison` (127 levels: `JSON.GET key $` wraps it one level deeper, past the
/// JSON parser's limit) and `deep` (176 levels, built path by path: RedisJSON accepts
/// it, no JSON parser of this tool reads it).
fn write_hostile_json(connection: &mut redis::Connection) {
    json_set(connection, "poison", "$", &nested(127));
    json_set(connection, "deep", "$", &nested(127));
    json_set(connection, "deep", &format!("${}", "[0]".repeat(126)), &nested(50));
}

/// `n` string keys `k:0`, `k:1`, ... (`DEBUG POPULATE` is off on Redis 7 by default).
fn populate(redis: &crate::support::RedisServer, n: usize) {
    let commands: String = (0..n).map(|i| format!("SET k:{i} value-{i}\n")).collect();
    redis.cli_pipe(&commands);
}

/// The index's document count, 0 while it is missing or its shard not yet started
/// (an index just created answers 503 for a moment).
fn count_while_created(index: &str) -> u64 {
    let response = crate::support::http()
        .get(format!("{}/{index}/_count", es_url()))
        .send()
        .unwrap();
    let body: Value = response.json().unwrap_or(Value::Null);
    body["count"].as_u64().unwrap_or(0)
}

/// `run --follow` of db 0 of `port` into `index` (the server configured by the
/// connector), once its first sync made the index exact.
fn follow_until_exact(name: &str, port: u16, index: &str) -> Follow {
    let follow = Follow::start(&pipeline(name, port, "0", &es_url(), index, "{configure_server: true}"));
    assert_exact(port, &[0], &es_url(), index);
    follow
}

/// The dead-letter file's lines.
fn dead_letters(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn a_json_key_too_deep_to_read_is_that_keys_failure_and_the_run_writes_every_other_key() {
    let redis = redisjson::server();
    let mut c = redis.connection();
    write_hostile_json(&mut c);
    for i in 0..20 {
        redis.cli(&["SET", &format!("plain:{i}"), "v"]);
    }
    json_set(&mut c, "doc", "$", r#"{"a":1}"#);
    let index = OwnIndex(unique_index("trust-deep"));
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: deep\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
         sink: {{type: elasticsearch, url: {}, index: {}}}\n",
        redis.port,
        es_url(),
        index.0
    );
    let file = write_file(dir.path(), "pipeline.yaml", &yaml);
    let out = connector()
        .args(["run", "--summary-json", "summary.json"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A record failed: exit 1, as for any failed document; everything else written.
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(es_count(&index.0), 22, "{stdout}{stderr}");
    let poison = es_get(&index.0, &default_id(0, b"poison")).expect("the 127-level document is written");
    let value: Value = serde_json::from_str(poison["value"].as_str().unwrap()).unwrap();
    assert_eq!(value.to_string(), nested(127));
    assert!(es_get(&index.0, &default_id(0, b"deep")).is_none());

    let summary: Value = serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    let run = &summary["pipelines"][0];
    assert_eq!(run["read"], 23, "{summary}");
    assert_eq!(run["written"], 22, "{summary}");
    assert_eq!(run["failed"], 1, "{summary}");
    assert_eq!(run["counts_add_up"], true, "{summary}");
    let lines = dead_letters(&dir.path().join("deep.dead-letter.ndjson"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], "deep");
    assert_eq!(lines[0]["stage"], "source");
    assert_eq!(lines[0]["error_type"], "unreadable_value");
    assert_eq!(
        lines[0]["reason"],
        "cannot read key `deep` in db 0: value nests 176 levels deep, deeper than the 127 levels this tool reads"
    );
}

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn a_json_key_too_deep_to_read_in_live_mode_fails_alone_and_later_changes_are_applied() {
    let redis = redisjson::server();
    let mut c = redis.connection();
    redis.cli(&["SET", "before", "1"]);
    let index = OwnIndex(unique_index("trust-live-deep"));
    let follow = follow_until_exact("live-deep", redis.port, &index.0);
    write_hostile_json(&mut c);
    for i in 0..10 {
        redis.cli(&["SET", &format!("after:{i}"), "v"]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while es_count(&index.0) < 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(es_count(&index.0), 12, "{}", follow.stderr());
    assert!(es_get(&index.0, &default_id(0, b"poison")).is_some());
    assert!(es_get(&index.0, &default_id(0, b"deep")).is_none());
    let lines = dead_letters(&follow.dir.path().join("live-deep.dead-letter.ndjson"));
    assert!(
        lines
            .iter()
            .any(|l| l["key"] == "deep" && l["error_type"] == "unreadable_value"),
        "{lines:?}"
    );
    // A change after it is still applied.
    redis.cli(&["SET", "later", "v"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while es_get(&index.0, &default_id(0, b"later")).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        es_get(&index.0, &default_id(0, b"later")).is_some(),
        "{}",
        follow.stderr()
    );
    let (_, summary, stderr) = follow.stop();
    let live = &summary["pipelines"][0];
    assert!(live["failed"].as_u64().unwrap_or(0) >= 1, "{summary}\n{stderr}");
}

#[test]
fn sigterm_during_the_first_sync_of_run_follow_is_reported_interrupted_and_the_next_start_catches_up() {
    let redis = crate::support::RedisServer::start(&[]);
    populate(&redis, 60_000);
    let index = OwnIndex(unique_index("trust-first-sync"));
    let yaml = format!(
        "name: first-sync\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
         sink: {{type: elasticsearch, url: {}, index: {}, bulk: {{max_docs: 200, concurrency: 1}}}}\n\
         live: {{configure_server: true}}\n",
        redis.port,
        es_url(),
        index.0
    );
    let follow = Follow::start(&yaml);
    // Some documents are written, far from all: then SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_while_created(&index.0) < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, summary, stderr) = follow.stop();
    let written = es_count(&index.0);
    assert!(written < 60_000, "the first sync ended before the signal: {written}");
    assert_eq!(code, 1, "{summary}\n{stderr}");
    assert_eq!(summary["status"], "interrupted", "{summary}");
    assert_eq!(summary["pipelines"][0]["status"], "interrupted", "{summary}");
    assert_eq!(
        summary["pipelines"][0]["last_sync"]["status"], "interrupted",
        "{summary}"
    );

    // The next start catches up.
    let follow = Follow::start(&yaml);
    let deadline = Instant::now() + Duration::from_secs(120);
    while es_count(&index.0) < 60_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(es_count(&index.0), 60_000, "{}", follow.stderr());
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{summary}\n{stderr}");
    assert_eq!(summary["status"], "ok", "{summary}");
}

/// Runs a pipeline from `redis_port` through `transforms` into an NDJSON file in
/// `dir`: the process, started.
fn spawn_ndjson_run(dir: &Path, redis_port: u16, transforms: &str) -> std::process::Child {
    let yaml = format!(
        "name: budget\nsource: {{type: redis, host: 127.0.0.1, port: {redis_port}, database: 0}}\n\
         transforms:\n{transforms}sink: {{type: ndjson, path: out.ndjson}}\n"
    );
    spawn_run(dir, &write_file(dir, "pipeline.yaml", &yaml))
}

/// `run --summary-json summary.json FILE` in `dir`, its output in `out.log` and
/// `err.log` there: the process, started.
fn spawn_run(dir: &Path, file: &Path) -> std::process::Child {
    let (out, err) = outputs(dir);
    connector()
        .args(["run", "--summary-json", "summary.json"])
        .arg(file)
        .current_dir(dir)
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// Waits for `child` (at most `within`, then kills it and fails), giving its exit
/// code, `--summary-json` and what it printed (to `out.log` and `err.log` in `dir`).
fn wait_with_summary(mut child: std::process::Child, dir: &Path, within: Duration) -> (i32, Value, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the run was still going after {within:?}: {}",
                std::fs::read_to_string(dir.join("err.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let summary = std::fs::read(dir.join("summary.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    let text = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("out.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("err.log")).unwrap_or_default()
    );
    (status.code().unwrap_or(-1), summary, text)
}

/// Where a spawned run's standard output and error go: `out.log`, `err.log` in `dir`.
fn outputs(dir: &Path) -> (std::fs::File, std::fs::File) {
    (
        std::fs::File::create(dir.join("out.log")).unwrap(),
        std::fs::File::create(dir.join("err.log")).unwrap(),
    )
}

const LOOP_OF_LOOPS: &str = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";

#[test]
fn a_template_that_loops_too_long_or_writes_too_much_fails_its_record_and_the_run_goes_on() {
    let redis = crate::support::RedisServer::start(&[]);
    for i in 0..3 {
        redis.cli(&["SET", &format!("spin:{i}"), "v"]);
    }
    redis.cli(&["SET", "big", "v"]);
    redis.cli(&["SET", "fine", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let transforms = format!(
        "  - type: template\n    max_output_bytes: 1KiB\n    document:\n      \
         spin: \"{{% if key.startswith('spin') %}}{LOOP_OF_LOOPS}{{% endif %}}\"\n      \
         big: \"{{% if key == 'big' %}}{{% for i in range(1000) %}}{{{{ key }}}}{{% endfor %}}{{% endif %}}\"\n"
    );
    let child = spawn_ndjson_run(dir.path(), redis.port, &transforms);
    let (code, summary, output) = wait_with_summary(child, dir.path(), Duration::from_secs(60));
    assert_eq!(code, 1, "{output}");
    let run = &summary["pipelines"][0];
    assert_eq!(run["written"], 1, "{summary}\n{output}");
    assert_eq!(run["failed"], 4, "{summary}\n{output}");
    let lines = dead_letters(&dir.path().join("budget.dead-letter.ndjson"));
    let reason = |key: &str| {
        lines
            .iter()
            .find(|l| l["key"] == key)
            .map(|l| l["reason"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no dead letter for {key}: {lines:?}"))
    };
    for i in 0..3 {
        assert!(
            reason(&format!("spin:{i}")).contains("template used more than its fuel (1000000 instructions)"),
            "{}",
            reason(&format!("spin:{i}"))
        );
    }
    assert!(
        reason("big").contains("passed max_output_bytes (1024 bytes)"),
        "{}",
        reason("big")
    );
}

#[test]
fn sigterm_stops_a_run_whose_template_burns_its_fuel_on_every_record_within_seconds() {
    let redis = crate::support::RedisServer::start(&[]);
    populate(&redis, 3000);
    let dir = tempfile::tempdir().unwrap();
    let transforms = format!("  - type: template\n    document:\n      spin: \"{}\"\n", LOOP_OF_LOOPS);
    let child = spawn_ndjson_run(dir.path(), redis.port, &transforms);
    std::thread::sleep(Duration::from_secs(2));
    let signalled = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let (code, summary, output) = wait_with_summary(child, dir.path(), Duration::from_secs(30));
    let stopped_in = signalled.elapsed();
    eprintln!("run stopped {stopped_in:?} after SIGTERM");
    assert!(stopped_in < Duration::from_secs(10), "{stopped_in:?}\n{output}");
    assert_eq!(code, 1, "{output}");
    let run = &summary["pipelines"][0];
    assert_eq!(run["status"], "interrupted", "{summary}");
    assert_eq!(run["counts_add_up"], true, "{summary}");
}

#[test]
fn an_elasticsearch_restart_at_the_start_of_a_change_aware_run_is_waited_out_within_max_elapsed() {
    let es = crate::support::es_instance::EsInstance::start("trust-es", 21610, &[], &[]);
    let redis = crate::support::RedisServer::start(&[]);
    populate(&redis, 20_000);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: restart\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
         sink: {{type: elasticsearch, url: {}, index: trust-restart, retry: {{max_elapsed: 3m}}}}\n",
        redis.port,
        es.url()
    );
    let file = write_file(dir.path(), "pipeline.yaml", &yaml);
    let run = |dir: &Path| spawn_run(dir, &file);
    let (code, summary, output) = wait_with_summary(run(dir.path()), dir.path(), Duration::from_secs(120));
    assert_eq!(code, 0, "{summary}\n{output}");

    // Elasticsearch is down when the next run starts, and comes back while it waits:
    // the first connection, then the (_id, hash) read while shards recover, are
    // tried again rather than failing the run.
    es.stop();
    let child = run(dir.path());
    std::thread::sleep(Duration::from_secs(3));
    let es = crate::support::es_instance::EsInstance::start("trust-es", 21610, &[], &[]);
    let (code, summary, output) = wait_with_summary(child, dir.path(), Duration::from_secs(240));
    assert_eq!(code, 0, "{summary}\n{output}");
    let run_summary = &summary["pipelines"][0];
    assert_eq!(run_summary["unchanged"], 20000, "{summary}");
    assert_eq!(run_summary["written"], 0, "{summary}");
    assert!(output.contains("Elasticsearch may be restarting"), "{output}");
    drop(es);
}

#[test]
fn a_live_pipeline_that_cannot_apply_changes_shows_it_in_lag_status_metrics_and_readiness() {
    let redis = crate::support::RedisServer::start(&["--notify-keyspace-events", "KEA"]);
    redis.cli(&["ACL", "SETUSER", "conn", "on", ">pw", "~*", "&*", "+@all"]);
    redis.cli(&["SET", "a", "1"]);
    let index = OwnIndex(unique_index("trust-failing"));
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: failing\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0, username: conn, password: pw}}\n\
         sink: {{type: elasticsearch, url: {}, index: {}}}\nlive: true\n",
        redis.port,
        es_url(),
        index.0
    );
    write_file(dir.path(), "failing.yaml", &yaml);
    let serve = crate::support::serve::Serve::start(dir.path(), &["--live-unready-after", "3s", "."]);
    serve.wait_for("ready", || serve.get("/readyz").is_some_and(|(code, _)| code == 200));

    // The connector's user may no longer read strings: every change fails to apply.
    redis.cli(&["ACL", "SETUSER", "conn", "-get"]);
    redis.cli(&["SET", "b", "2"]);
    serve.wait_for("not ready", || {
        serve.get("/readyz").is_some_and(|(code, _)| code == 503)
    });
    let (_, body) = serve.get("/readyz").unwrap();
    assert!(body.contains("applying changes has failed since"), "{body}");
    let live = &serve.pipeline("failing").unwrap()["live"];
    assert!(live["error"].as_str().unwrap_or("").contains("get"), "{live}");
    let lag = live["lag_seconds"].as_f64().unwrap();
    assert!(lag >= 3.0, "the lag counts from the change not applied: {live}");
    std::thread::sleep(Duration::from_secs(2));
    let later = serve.pipeline("failing").unwrap()["live"]["lag_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        later > lag,
        "the lag grows while nothing is applied: {lag} then {later}"
    );
    let failed = serve
        .metric("redis_connector_pipeline_live_resyncs_failed_total{pipeline=\"failing\"}")
        .unwrap_or(0.0);
    assert!(failed >= 1.0, "{}", serve.get("/metrics").unwrap().1);

    // Allowed again: the next resync heals it and the pipeline is ready.
    redis.cli(&["ACL", "SETUSER", "conn", "+get"]);
    serve.wait_for("ready again", || {
        serve.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    serve.wait_for("b indexed", || es_get(&index.0, &default_id(0, b"b")).is_some());
    let live = &serve.pipeline("failing").unwrap()["live"];
    assert!(live["failing_since"].is_null(), "{live}");
}

#[test]
fn a_long_list_with_a_few_huge_elements_is_skipped_as_too_large_without_reading_them() {
    let redis = crate::support::RedisServer::start(&[]);
    let mut c = redis.connection();
    let small: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let _: () = redis::cmd("RPUSH").arg("list").arg(&small).query(&mut c).unwrap();
    let big = "x".repeat(3 * 1024 * 1024);
    for _ in 0..40 {
        let _: () = redis::cmd("RPUSH").arg("list").arg(&big).query(&mut c).unwrap();
    }
    let _: () = redis::cmd("RPUSH").arg("list").arg(&small).query(&mut c).unwrap();
    redis.cli(&["SET", "fine", "v"]);
    // What `MEMORY USAGE` samples says: far under the real 120 MB.
    let sampled: u64 = redis::cmd("MEMORY").arg("USAGE").arg("list").query(&mut c).unwrap();
    assert!(sampled < 2 * 1024 * 1024, "{sampled}");

    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: huge\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0, max_value_bytes: 2MiB}}\n\
         sink: {{type: ndjson, path: out.ndjson}}\n",
        redis.port
    );
    let file = write_file(dir.path(), "pipeline.yaml", &yaml);
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "peak_rss_kb=%M"])
        .arg(env!("CARGO_BIN_EXE_redis-connector"))
        .args(["run", "--summary-json", "summary.json"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: Value = serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    let run = &summary["pipelines"][0];
    assert_eq!(run["written"], 1, "{summary}");
    assert_eq!(run["skipped_reasons"]["too_large"], 1, "{summary}");
    let peak_kb: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {stderr}"));
    eprintln!("peak RSS {peak_kb} KB");
    assert!(
        peak_kb < 60 * 1024,
        "peak RSS {peak_kb} KB: a chunk of huge elements was read"
    );
}

#[test]
fn notifications_turned_off_while_following_are_noticed_within_seconds_and_healed_by_a_resync() {
    let redis = crate::support::RedisServer::start(&[]);
    redis.cli(&["SET", "before", "1"]);
    let index = OwnIndex(unique_index("trust-flags"));
    let follow = follow_until_exact("live-flags", redis.port, &index.0);
    // Turned off, and changes made at once: they send no event.
    redis.cli(&["CONFIG", "SET", "notify-keyspace-events", ""]);
    for i in 0..50 {
        redis.cli(&["SET", &format!("silent:{i}"), "v"]);
    }
    redis.cli(&["DEL", "before"]);
    // Noticed within seconds, set back, and a resync reads what changed: not left
    // to reconcile_every (1 h).
    let started = Instant::now();
    assert_exact(redis.port, &[0], &es_url(), &index.0);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    let flags = redis.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(flags.contains('K'), "set back: {flags}");
    // Followed again by events.
    redis.cli(&["SET", "after", "v"]);
    assert_exact(redis.port, &[0], &es_url(), &index.0);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("without"), "{stderr}");
    assert!(
        crate::support::live::resyncs(&summary, "notifications") >= 1,
        "{summary}"
    );
}

#[test]
fn serve_honours_its_shutdown_timeout_while_a_template_burns_its_fuel_on_every_record() {
    let redis = crate::support::RedisServer::start(&[]);
    populate(&redis, 3000);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: slow\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
         transforms:\n  - type: template\n    document:\n      spin: \"{LOOP_OF_LOOPS}\"\n\
         sink: {{type: ndjson, path: slow.ndjson}}\n",
        redis.port
    );
    write_file(dir.path(), "slow.yaml", &yaml);
    let mut serve = crate::support::serve::Serve::start(dir.path(), &["--shutdown-timeout", "2s", "."]);
    serve.wait_for("the run", || {
        serve.pipeline("slow").is_some_and(|p| !p["running"].is_null())
    });
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    serve.signal("TERM");
    let status = serve.wait_exit();
    let took = signalled.elapsed();
    eprintln!("serve stopped {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(12), "serve stopped {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(1), "a run was interrupted: {}", serve.log_text());
}
