//! `redis-connector serve` end to end: a real process over pipeline files in a
//! temporary folder, a private redis-server per test, the shared Elasticsearch, its
//! HTTP endpoints read as a user (or Prometheus) would. Covers schedules, reloads
//! (edits, invalid edits, reformatting, removed files, ConfigMap and git-sync
//! symlink swaps, SIGHUP), readiness, skipped ticks, triggers, shutdown, metrics.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::serve::{promtool_problems, Serve};
use crate::support::{
    connector, es_delete_index, es_get, es_url, free_port, http, unique_index, write_file, RedisServer,
};
use serde_json::Value;

/// A pipeline from Redis (keys `user:*`, hashes) into `index` with a template that
/// writes `version`, plus `extra` top-level YAML.
fn es_pipeline(name: &str, redis: &RedisServer, index: &str, version: &str, extra: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, rules: [{{database: 0, key_pattern: 'user:*'}}]}}\n\
         transforms:\n  - type: template\n    id: '{{{{ key }}}}'\n    document: {{name: '{{{{ value.name }}}}', version: '{version}'}}\n\
         sink: {{type: elasticsearch, url: '{es}', index: {index}}}\ndead_letter: {name}.dl.ndjson\n{extra}",
        port = redis.port,
        es = es_url(),
    )
}

/// A pipeline from Redis into an NDJSON file.
fn ndjson_pipeline(name: &str, redis: &RedisServer, path: &str, extra: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {port}}}\nsink: {{type: ndjson, path: '{path}'}}\n\
         dead_letter: {name}.dl.ndjson\n{extra}",
        port = redis.port,
    )
}

fn users(redis: &RedisServer, n: usize) {
    let mut commands = String::new();
    for i in 0..n {
        commands.push_str(&format!("HSET user:{i} name user{i}\n"));
    }
    redis.cli_pipe(&commands);
}

fn version_of(index: &str, id: &str) -> Option<String> {
    let _ = http().post(format!("{}/{index}/_refresh", es_url())).send();
    es_get(index, id).and_then(|doc| doc["version"].as_str().map(str::to_owned))
}

fn runs(serve: &Serve, name: &str, outcome: &str) -> f64 {
    serve
        .metric(&format!(
            "redis_connector_pipeline_runs_total{{pipeline=\"{name}\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
}

#[test]
fn scheduled_pipelines_run_again_and_follow_edits_of_their_files() {
    let redis = RedisServer::start(&[]);
    users(&redis, 3);
    let index = unique_index("serve-edit");
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    let every = "schedule: {every: 2s}\n";
    let users_file = write_file(
        &pipelines,
        "users.yaml",
        &es_pipeline("users", &redis, &index, "one", every),
    );
    let once_file = write_file(
        &pipelines,
        "once.yaml",
        &ndjson_pipeline("once", &redis, "once.ndjson", ""),
    );

    let mut serve = Serve::start(dir.path(), &["pipelines"]);

    // The scheduled pipeline runs at start and again; the other runs once.
    serve.wait_for("two runs of users", || runs(&serve, "users", "ok") >= 2.0);
    assert_eq!(version_of(&index, "user:1").as_deref(), Some("one"));
    assert_eq!(runs(&serve, "once", "ok"), 1.0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("once.ndjson"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    let once = serve.pipeline("once").unwrap();
    assert_eq!(once["schedule"], "once");
    assert_eq!(once["next_run"], Value::Null);
    let users_status = serve.pipeline("users").unwrap();
    assert_eq!(users_status["schedule"], "every 2s");
    assert!(users_status["next_run"].is_string(), "{users_status}");
    let last = &users_status["last_summary"];
    assert_eq!(
        last["written"].as_u64().unwrap() + last["unchanged"].as_u64().unwrap(),
        3,
        "{last}"
    );
    // Change-aware sync: the first run wrote the documents, the later ones found
    // them unchanged.
    assert_eq!(
        serve.metric("redis_connector_pipeline_documents_total{pipeline=\"users\",operation=\"written\"}"),
        Some(3.0)
    );
    assert!(
        serve
            .metric("redis_connector_pipeline_documents_total{pipeline=\"users\",operation=\"unchanged\"}")
            .unwrap()
            >= 3.0
    );

    // A template change is picked up: the new documents appear.
    std::fs::write(&users_file, es_pipeline("users", &redis, &index, "two", every)).unwrap();
    serve.wait_for("documents of the edited template", || {
        version_of(&index, "user:1").as_deref() == Some("two")
    });
    let reload = &serve.status()["reload"];
    assert_eq!(reload["result"], "success", "{reload}");
    assert_eq!(reload["changed"], serde_json::json!(["users"]));
    assert_eq!(reload["unchanged"], 1);

    // Comments, whitespace and key order: nothing changes, nothing restarts.
    let reloads = serve.events("reload").len();
    let reordered = format!(
        "# the same pipeline, written differently\ndead_letter: once.dl.ndjson\nsink: {{path: once.ndjson,   type: ndjson}}\n\
         source: {{port: {}, host: '127.0.0.1', type: redis}}\nname: once\n",
        redis.port
    );
    std::fs::write(&once_file, reordered).unwrap();
    serve.wait_for("the reload of the reformatted file", || {
        serve.events("reload").len() > reloads
    });
    let reload = &serve.status()["reload"];
    assert_eq!(reload["changed"], serde_json::json!([]), "{reload}");
    assert_eq!(reload["unchanged"], 2);
    assert_eq!(
        runs(&serve, "once", "ok"),
        1.0,
        "an unchanged pipeline is not run again"
    );

    // An invalid edit keeps the old pipeline running; /metrics and /status show it.
    std::fs::write(
        &users_file,
        es_pipeline("users", &redis, &index, "three", "schedule: {every: 2s, evry: 1}\n"),
    )
    .unwrap();
    serve.wait_for("the failed reload", || {
        serve.metric("redis_connector_config_reloads_total{result=\"failure\"}") == Some(1.0)
    });
    assert_eq!(serve.metric("redis_connector_config_last_reload_successful"), Some(0.0));
    let reload = &serve.status()["reload"];
    assert_eq!(reload["result"], "failure");
    let errors = reload["errors"].to_string();
    assert!(errors.contains("users.yaml:") && errors.contains("evry"), "{errors}");
    let before = runs(&serve, "users", "ok");
    serve.wait_for("users running on after the invalid edit", || {
        runs(&serve, "users", "ok") > before
    });
    assert_eq!(version_of(&index, "user:1").as_deref(), Some("two"));

    // A removed file stops its pipeline.
    std::fs::write(&users_file, es_pipeline("users", &redis, &index, "two", every)).unwrap();
    std::fs::remove_file(&once_file).unwrap();
    serve.wait_for("once removed", || serve.pipeline("once").is_none());
    assert_eq!(serve.status()["reload"]["removed"], serde_json::json!(["once"]));
    assert!(serve
        .metric("redis_connector_pipeline_runs_total{pipeline=\"once\",outcome=\"ok\"}")
        .is_none());

    // One structured line per run start and end, and per reload.
    let ended = serve.events("run_ended");
    let line = ended.iter().find(|l| l["fields"]["pipeline"] == "users").unwrap();
    assert_eq!(line["fields"]["read"], 3, "{line}");
    assert_eq!(line["fields"]["status"], "ok");
    assert!(!serve.events("run_started").is_empty());

    serve.signal("TERM");
    assert_eq!(serve.wait_exit().code(), Some(0), "{}", serve.log_text());
    es_delete_index(&index);
}

/// Replaces the symlink `link` with one to `target`, atomically, as Kubernetes and
/// git-sync do (a new link renamed over the old one).
fn swap_symlink(link: &Path, target: &Path) {
    let tmp = link.with_file_name(format!("{}_tmp", link.file_name().unwrap().to_str().unwrap()));
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[test]
fn a_configmap_s_data_symlink_swap_is_noticed() {
    let redis = RedisServer::start(&[]);
    users(&redis, 2);
    let index = unique_index("serve-configmap");
    let dir = tempfile::tempdir().unwrap();
    // A ConfigMap volume: ..data -> ..v1, users.yaml -> ..data/users.yaml.
    let volume = dir.path().join("config");
    std::fs::create_dir_all(volume.join("..v1")).unwrap();
    write_file(
        &volume.join("..v1"),
        "users.yaml",
        &es_pipeline("users", &redis, &index, "one", ""),
    );
    std::os::unix::fs::symlink("..v1", volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/users.yaml", volume.join("users.yaml")).unwrap();

    let serve = Serve::start(dir.path(), &["config"]);
    serve.wait_for("the first run", || {
        version_of(&index, "user:0").as_deref() == Some("one")
    });

    for version in ["two", "three"] {
        let new = volume.join(format!("..{version}"));
        std::fs::create_dir(&new).unwrap();
        write_file(&new, "users.yaml", &es_pipeline("users", &redis, &index, version, ""));
        swap_symlink(&volume.join("..data"), Path::new(new.file_name().unwrap()));
        serve.wait_for("the swapped content", || {
            version_of(&index, "user:0").as_deref() == Some(version)
        });
    }
    es_delete_index(&index);
}

#[test]
fn a_git_sync_worktree_symlink_move_is_noticed() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("git");
    let worktree = |sha: &str, path: &str| {
        let folder = root.join(".worktrees").join(sha).join("pipelines");
        std::fs::create_dir_all(&folder).unwrap();
        write_file(&folder, "a.yaml", &ndjson_pipeline("a", &redis, path, ""));
        root.join(".worktrees").join(sha)
    };
    std::os::unix::fs::symlink(worktree("111", "a1.ndjson"), root.join("current")).unwrap();

    let serve = Serve::start(dir.path(), &["git/current/pipelines"]);
    serve.wait_for("the first run", || dir.path().join("a1.ndjson").exists());
    for (sha, path) in [("222", "a2.ndjson"), ("333", "a3.ndjson")] {
        swap_symlink(&root.join("current"), &worktree(sha, path));
        serve.wait_for("the new worktree's pipeline", || dir.path().join(path).exists());
    }
    assert_eq!(serve.status()["reload"]["changed"], serde_json::json!(["a"]));
}

#[test]
fn sighup_reloads_without_watching() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.yaml", &ndjson_pipeline("a", &redis, "one.ndjson", ""));
    let serve = Serve::start(dir.path(), &["--watch", "off", "a.yaml"]);
    serve.wait_for("the first run", || dir.path().join("one.ndjson").exists());
    std::fs::write(&file, ndjson_pipeline("a", &redis, "two.ndjson", "")).unwrap();
    serve.signal("HUP");
    serve.wait_for("the run after SIGHUP", || dir.path().join("two.ndjson").exists());
    let reload = serve.events("reload");
    assert_eq!(reload[0]["fields"]["cause"], "SIGHUP", "{reload:?}");
}

#[test]
fn polling_notices_an_edit() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.yaml", &ndjson_pipeline("a", &redis, "one.ndjson", ""));
    let serve = Serve::start(dir.path(), &["--watch", "poll", "--poll-interval", "200ms", "a.yaml"]);
    serve.wait_for("the first run", || dir.path().join("one.ndjson").exists());
    std::fs::write(&file, ndjson_pipeline("a", &redis, "two.ndjson", "")).unwrap();
    serve.wait_for("the run after the edit", || dir.path().join("two.ndjson").exists());
}

#[test]
fn readyz_is_503_naming_the_pipeline_until_its_first_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    // Redis is not there yet: the first runs fail.
    let port = free_port();
    write_file(
        dir.path(),
        "a.yaml",
        &format!(
            "name: a\nsource: {{type: redis, host: 127.0.0.1, port: {port}}}\nsink: {{type: ndjson, path: a.ndjson}}\n\
             schedule: {{every: 1s}}\n"
        ),
    );
    let serve = Serve::start(dir.path(), &["a.yaml"]);
    let (code, body) = serve.get("/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["not_ready"]["a"].is_string(), "{body}");
    serve.wait_for("a failed run", || runs(&serve, "a", "failed") >= 1.0);
    let (code, body) = serve.get("/readyz").unwrap();
    assert_eq!(code, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    let why = body["not_ready"]["a"].as_str().unwrap();
    assert!(why.starts_with("last run failed: "), "{why}");

    let _redis = RedisServer::start_on(port, &[]);
    serve.wait_for("readiness", || {
        serve.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(serve.status()["ready"], true);
}

#[test]
fn a_tick_that_finds_the_run_still_going_is_skipped_and_counted() {
    let redis = RedisServer::start(&["--enable-debug-command", "yes"]);
    users(&redis, 2);
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "a.yaml",
        &ndjson_pipeline("a", &redis, "a.ndjson", "schedule: {every: 1s}\n"),
    );
    let serve = Serve::start(dir.path(), &["a.yaml"]);
    serve.wait_for("the first run", || runs(&serve, "a", "ok") >= 1.0);
    // Redis answers nothing for 4 s: the run in progress (or the next) spans ticks.
    assert_eq!(redis.cli(&["DEBUG", "SLEEP", "4"]).trim(), "OK");
    serve.wait_for("a skipped tick", || {
        serve
            .metric("redis_connector_pipeline_skipped_ticks_total{pipeline=\"a\"}")
            .unwrap_or(0.0)
            >= 1.0
    });
    let status = serve.pipeline("a").unwrap();
    assert!(status["skipped_ticks"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(runs(&serve, "a", "failed"), 0.0);
    let warning = serve.log_text();
    assert!(
        warning.contains("scheduled run(s) skipped: the previous run was still going"),
        "{warning}"
    );
}

#[test]
fn a_pipeline_runs_on_request_only_with_allow_trigger() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "a.yaml",
        &ndjson_pipeline("a", &redis, "a.ndjson", "schedule: {every: 1h}\n"),
    );

    let serve = Serve::start(dir.path(), &["a.yaml"]);
    serve.wait_for("the first run", || runs(&serve, "a", "ok") >= 1.0);
    let (code, body) = serve.post("/pipelines/a/run");
    assert_eq!(code, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--allow-trigger"));
    drop(serve);

    let serve = Serve::start(dir.path(), &["--allow-trigger", "a.yaml"]);
    serve.wait_for("the first run", || runs(&serve, "a", "ok") >= 1.0);
    let (code, body) = serve.post("/pipelines/a/run");
    assert_eq!(code, 202, "{body}");
    serve.wait_for("the requested run", || runs(&serve, "a", "ok") >= 2.0);
    let (code, body) = serve.post("/pipelines/nope/run");
    assert_eq!(code, 404, "{body}");
    assert!(serve
        .events("run_started")
        .iter()
        .any(|l| l["fields"]["trigger"] == "manual"));
}

#[test]
fn with_strict_an_invalid_set_is_refused_at_start_with_validate_s_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "a.yaml",
        "name: a\nsource: {type: redis, host: h}\nsink: {type: ndjson, path: '-'}\nschedule: {cron: '0 3 * * *', timezone: Europe/Pariss}\n",
    );
    write_file(
        dir.path(),
        "b.yaml",
        "name: a\nsource: {type: redis, host: h}\nsink: {type: ndjson, path: b.ndjson}\n",
    );
    let validate = connector()
        .current_dir(dir.path())
        .args(["validate", "."])
        .output()
        .unwrap();
    let serve = connector()
        .current_dir(dir.path())
        .args(["serve", "--strict", "--listen", "127.0.0.1:0", "."])
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&serve.stderr);
    let expected = String::from_utf8_lossy(&validate.stdout);
    assert!(
        expected.contains("a.yaml:4:41: error: unknown time zone `Europe/Pariss` (did you mean `Europe/Paris`?)"),
        "{expected}"
    );
    for line in expected.lines() {
        assert!(stderr.contains(line), "{line} missing from:\n{stderr}");
    }
    assert!(stderr.contains("serve did not start"), "{stderr}");
}

/// A named pipe for an NDJSON sink: the run blocks writing until the test reads.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    path
}

#[test]
fn sigterm_lets_the_run_in_progress_finish_then_exits_0() {
    let redis = RedisServer::start(&[]);
    let mut commands = String::new();
    for i in 0..20_000 {
        commands.push_str(&format!("SET k:{i} {}\n", "v".repeat(100)));
    }
    redis.cli_pipe(&commands);
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path(), "out.ndjson");
    write_file(
        dir.path(),
        "a.yaml",
        &ndjson_pipeline("a", &redis, pipe.to_str().unwrap(), ""),
    );
    let mut serve = Serve::start(dir.path(), &["a.yaml"]);
    let mut reader = std::fs::File::open(&pipe).unwrap();
    let mut first = vec![0u8; 64 * 1024];
    reader.read_exact(&mut first).unwrap();
    assert!(serve.pipeline("a").unwrap()["running"].is_object());

    serve.signal("TERM");
    serve.wait_for("the stop line", || !serve.events("stopping").is_empty());
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(serve.wait_exit().code(), Some(0), "{}", serve.log_text());
    let lines = first.iter().chain(rest.iter()).filter(|b| **b == b'\n').count();
    assert_eq!(lines, 20_000, "the run finished: every key written");
    let ended = serve.events("run_ended");
    assert_eq!(ended[0]["fields"]["status"], "ok", "{ended:?}");
}

#[test]
fn past_the_shutdown_timeout_the_run_is_interrupted_and_serve_exits_1() {
    let redis = RedisServer::start(&[]);
    let mut commands = String::new();
    for i in 0..20_000 {
        commands.push_str(&format!("SET k:{i} {}\n", "v".repeat(100)));
    }
    redis.cli_pipe(&commands);
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path(), "out.ndjson");
    write_file(
        dir.path(),
        "a.yaml",
        &ndjson_pipeline("a", &redis, pipe.to_str().unwrap(), ""),
    );
    let mut serve = Serve::start(dir.path(), &["--shutdown-timeout", "1s", "a.yaml"]);
    let mut reader = std::fs::File::open(&pipe).unwrap();
    let mut first = vec![0u8; 64 * 1024];
    reader.read_exact(&mut first).unwrap();

    serve.signal("TERM");
    // Nothing is read until the timeout passed and the run was interrupted.
    serve.wait_for("the interruption", || {
        serve.log_text().contains("shutdown timeout passed: interrupting a")
    });
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(serve.wait_exit().code(), Some(1), "{}", serve.log_text());
    let ended = serve.events("run_ended");
    assert_eq!(ended[0]["fields"]["status"], "interrupted", "{ended:?}");
    let written = ended[0]["fields"]["written"].as_u64().unwrap();
    assert!(written < 20_000, "the source stopped early ({written})");
}

#[test]
fn prometheus_scrapes_the_metrics_and_promtool_finds_no_problem() {
    let redis = RedisServer::start(&[]);
    users(&redis, 4);
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.yaml", &ndjson_pipeline("a", &redis, "a.ndjson", ""));
    let serve = Serve::start(dir.path(), &["a.yaml"]);
    serve.wait_for("the run", || runs(&serve, "a", "ok") >= 1.0);

    let (_, metrics) = serve.get("/metrics").unwrap();
    let problems = promtool_problems(&metrics);
    assert!(problems.is_empty(), "{problems}\n{metrics}");

    let prometheus_port = free_port();
    let config = write_file(
        dir.path(),
        "prometheus.yml",
        &format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: redis-connector\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            serve.port
        ),
    );
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's prometheus package)");
    let scraped = |query: &str| -> Option<String> {
        let response = http()
            .get(format!("http://127.0.0.1:{prometheus_port}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .ok()?;
        let body: Value = response.json().unwrap_or_default();
        body["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
    };
    let query = "redis_connector_pipeline_documents_total{pipeline=\"a\",operation=\"written\"}";
    let mut found = None;
    serve.wait_for("Prometheus to have scraped the documents counter", || {
        found = scraped(query);
        found.is_some()
    });
    // The run duration histogram, the build's commit and the process series too.
    let count = scraped("redis_connector_pipeline_run_duration_seconds_count{pipeline=\"a\"}");
    let commit = scraped("count(redis_connector_build_info{commit!=\"\"})");
    let memory = scraped("process_resident_memory_bytes > 1000000");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(found.as_deref(), Some("4"));
    assert_eq!(count.as_deref(), Some("1"));
    assert_eq!(commit.as_deref(), Some("1"));
    assert!(memory.is_some(), "process_resident_memory_bytes scraped");
}
