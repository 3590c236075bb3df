//! Live pipelines under `redis-connector serve`, end to end: a real process over
//! pipeline files in a temporary folder, a private redis-server per test (its
//! notifications set by `live.configure_server`), the shared Elasticsearch. Covers
//! following without a schedule, readiness after the first sync, retries of a first
//! sync that fails, the live metrics and `/status`, reloads (unchanged, edited,
//! removed), SIGTERM's drain, and the refusal of `schedule` on a live pipeline.

use crate::support;
use crate::support::serve::{promtool_problems, Serve};
use crate::support::{
    connector, es_delete_index, es_get, es_url, free_port, http, unique_index, write_file, RedisServer,
};
use serde_json::Value;

/// A live pipeline from Redis (keys `user:*`, hashes) into `index` with a template
/// that writes `version`.
fn live_pipeline(name: &str, port: u16, index: &str, version: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, rules: [{{database: 0, key_pattern: 'user:*'}}]}}\n\
         transforms:\n  - type: template\n    id: '{{{{ key }}}}'\n    document: {{name: '{{{{ value.name }}}}', version: '{version}'}}\n\
         sink: {{type: elasticsearch, url: '{es}', index: {index}}}\ndead_letter: {name}.dl.ndjson\n\
         live: {{configure_server: true, drain_timeout: 20s}}\n",
        es = es_url(),
    )
}

fn doc(index: &str, id: &str) -> Option<Value> {
    let _ = http().post(format!("{}/{index}/_refresh", es_url())).send();
    es_get(index, id)
}

fn version_of(index: &str, id: &str) -> Option<String> {
    doc(index, id).and_then(|d| d["version"].as_str().map(str::to_owned))
}

fn ready(serve: &Serve) -> bool {
    serve.get("/readyz").is_some_and(|(code, _)| code == 200)
}

fn metric(serve: &Serve, name: &str, pipeline: &str, extra: &str) -> Option<f64> {
    serve.metric(&format!("redis_connector_{name}{{pipeline=\"{pipeline}\"{extra}}}"))
}

#[test]
fn a_live_pipeline_is_followed_without_a_schedule_and_shows_its_lag_pending_and_resyncs() {
    let redis = RedisServer::start(&[]);
    redis.cli(&["HSET", "user:1", "name", "ann"]);
    let index = unique_index("serve-live");
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "users.yaml",
        &live_pipeline("users", redis.port, &index, "one"),
    );
    let serve = Serve::start(dir.path(), &["users.yaml"]);

    serve.wait_for("readiness after the first sync", || ready(&serve));
    assert_eq!(version_of(&index, "user:1").as_deref(), Some("one"));
    let status = serve.pipeline("users").unwrap();
    assert_eq!(status["state"], "following", "{status}");
    assert_eq!(status["schedule"], "live");
    assert_eq!(status["next_run"], Value::Null);
    assert_eq!(
        status["last_summary"]["written"], 1,
        "the first sync's summary: {status}"
    );
    let following = serve.events("following");
    assert_eq!(following.len(), 1, "{following:?}");
    assert_eq!(following[0]["fields"]["read"], 1);

    // A change is applied with no schedule at all; a DEL removes the document.
    redis.cli(&["HSET", "user:2", "name", "bob"]);
    serve.wait_for("the new key's document", || doc(&index, "user:2").is_some());
    assert_eq!(doc(&index, "user:2").unwrap()["name"], "bob");
    redis.cli(&["DEL", "user:1"]);
    serve.wait_for("the deleted key's document to go", || doc(&index, "user:1").is_none());

    serve.wait_for("the live counters in /metrics", || {
        metric(&serve, "pipeline_live_events_total", "users", "").unwrap_or(0.0) >= 2.0
            && metric(&serve, "pipeline_documents_total", "users", ",operation=\"deleted\"") == Some(1.0)
    });
    // The first sync wrote user:1, the follow phase user:2.
    assert_eq!(
        metric(&serve, "pipeline_documents_total", "users", ",operation=\"written\""),
        Some(2.0)
    );
    assert_eq!(metric(&serve, "pipeline_live_pending_keys", "users", ""), Some(0.0));
    assert_eq!(metric(&serve, "pipeline_live_lag_seconds", "users", ""), Some(0.0));
    assert_eq!(
        metric(&serve, "pipeline_live_dropped_keys_total", "users", ""),
        Some(0.0)
    );
    assert_eq!(metric(&serve, "pipeline_running", "users", ""), Some(1.0));
    assert_eq!(
        metric(&serve, "pipeline_runs_total", "users", ",outcome=\"ok\""),
        Some(1.0),
        "the first sync"
    );
    for reason in [
        "restart",
        "flush",
        "subscription_dropped",
        "overflow",
        "reconcile_every",
    ] {
        assert_eq!(
            metric(
                &serve,
                "pipeline_live_resyncs_total",
                "users",
                &format!(",reason=\"{reason}\"")
            ),
            Some(0.0),
            "{reason}"
        );
    }

    // A dropped subscription: resubscribed and resynced, counted by reason.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    serve.wait_for("the resync", || {
        metric(
            &serve,
            "pipeline_live_resyncs_total",
            "users",
            ",reason=\"subscription_dropped\"",
        ) == Some(1.0)
            && serve.pipeline("users").unwrap()["state"] == "following"
    });
    let resync = serve.events("resync");
    assert_eq!(resync[0]["fields"]["reason"], "subscription_dropped", "{resync:?}");
    let status = serve.pipeline("users").unwrap();
    assert_eq!(status["live"]["resyncs"]["subscription_dropped"], 1, "{status}");
    assert_eq!(status["live"]["pending"], 0);
    assert!(status["live"]["events"].as_u64().unwrap() >= 2, "{status}");
    redis.cli(&["HSET", "user:3", "name", "cy"]);
    serve.wait_for("a change after the resync", || doc(&index, "user:3").is_some());

    let (_, metrics) = serve.get("/metrics").unwrap();
    let problems = promtool_problems(&metrics);
    assert!(problems.is_empty(), "{problems}\n{metrics}");
    assert!(!metrics.contains("user:"), "never a label per key:\n{metrics}");
    es_delete_index(&index);
}

#[test]
fn a_first_sync_that_cannot_start_is_retried_and_readyz_names_why_until_it_succeeds() {
    // Redis is not there yet.
    let port = free_port();
    let index = unique_index("serve-live-retry");
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "users.yaml", &live_pipeline("users", port, &index, "one"));
    let serve = Serve::start(dir.path(), &["users.yaml"]);

    serve.wait_for("a second attempt", || serve.events("live_started").len() >= 2);
    let (code, body) = serve.get("/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let why = body["not_ready"]["users"].as_str().unwrap();
    assert!(why.starts_with("first sync failed: "), "{why}");
    assert!(why.contains(&port.to_string()), "the error names the server: {why}");
    let status = serve.pipeline("users").unwrap();
    assert!(
        ["failed", "syncing"].contains(&status["state"].as_str().unwrap()),
        "{status}"
    );
    let retry = serve.events("live_retry");
    assert!(
        !retry.is_empty() && retry[0]["fields"]["retry_in_seconds"] == 1.0,
        "{retry:?}"
    );

    let redis = RedisServer::start_on(port, &[]);
    redis.cli(&["HSET", "user:1", "name", "ann"]);
    serve.wait_for("readiness once Redis answers", || ready(&serve));
    assert_eq!(version_of(&index, "user:1").as_deref(), Some("one"));
    redis.cli(&["HSET", "user:2", "name", "bob"]);
    serve.wait_for("a change followed", || doc(&index, "user:2").is_some());
    assert_eq!(serve.pipeline("users").unwrap()["live"]["error"], Value::Null);
    es_delete_index(&index);
}

#[test]
fn an_edited_live_pipeline_restarts_with_its_new_shape_and_a_removed_one_stops_following() {
    let redis = RedisServer::start(&[]);
    redis.cli(&["HSET", "user:1", "name", "ann"]);
    let index = unique_index("serve-live-reload");
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    let file = write_file(
        &pipelines,
        "users.yaml",
        &live_pipeline("users", redis.port, &index, "one"),
    );
    // (A set is never empty: the other pipeline stays when users.yaml is removed.)
    write_file(
        &pipelines,
        "other.yaml",
        &format!("name: other\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: ndjson, path: other.ndjson}}\n", redis.port),
    );
    let serve = Serve::start(dir.path(), &["pipelines"]);
    serve.wait_for("following", || ready(&serve));
    let since = serve.pipeline("users").unwrap()["live"]["following_since"].clone();

    // The same pipeline written differently: it keeps following, untouched.
    std::fs::write(
        &file,
        format!("# reformatted\n{}", live_pipeline("users", redis.port, &index, "one")),
    )
    .unwrap();
    serve.wait_for("the reload", || !serve.events("reload").is_empty());
    let status = serve.pipeline("users").unwrap();
    assert_eq!(status["live"]["following_since"], since, "{status}");
    assert_eq!(status["live"]["attempts"], 1);

    // A template change: it drains, restarts, and its resync rewrites every document.
    std::fs::write(&file, live_pipeline("users", redis.port, &index, "two")).unwrap();
    serve.wait_for("the documents of the new template", || {
        version_of(&index, "user:1").as_deref() == Some("two")
    });
    serve.wait_for("following again", || {
        serve.pipeline("users").unwrap()["state"] == "following"
    });
    redis.cli(&["HSET", "user:2", "name", "bob"]);
    serve.wait_for("a change in the new shape", || {
        version_of(&index, "user:2").as_deref() == Some("two")
    });
    let ended = serve.events("live_ended");
    assert_eq!(ended.len(), 1, "the old configuration stopped once: {ended:?}");
    assert_eq!(ended[0]["fields"]["status"], "stopped");

    // Removed: it stops following (its subscription ends), so a later change is not indexed.
    std::fs::remove_file(&file).unwrap();
    serve.wait_for("the pipeline gone", || serve.pipeline("users").is_none());
    serve.wait_for("the subscription gone", || {
        redis.cli(&["PUBSUB", "NUMPAT"]).trim() == "0"
    });
    redis.cli(&["HSET", "user:3", "name", "cy"]);
    assert!(doc(&index, "user:3").is_none());
    assert!(serve
        .metric("redis_connector_pipeline_live_events_total{pipeline=\"users\"}")
        .is_none());
    es_delete_index(&index);
}

#[test]
fn sigterm_applies_what_is_pending_and_exits_0() {
    let redis = RedisServer::start(&[]);
    let index = unique_index("serve-live-term");
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "users.yaml",
        &live_pipeline("users", redis.port, &index, "one"),
    );
    let mut serve = Serve::start(dir.path(), &["--shutdown-timeout", "60s", "users.yaml"]);
    serve.wait_for("following", || ready(&serve));

    let mut commands = String::new();
    for i in 0..2_000 {
        commands.push_str(&format!("HSET user:{i} name u{i}\n"));
    }
    redis.cli_pipe(&commands);
    serve.wait_for("the changes to arrive", || {
        serve.pipeline("users").unwrap()["live"]["events"].as_u64().unwrap_or(0) >= 2_000
    });
    serve.signal("TERM");
    assert_eq!(serve.wait_exit().code(), Some(0), "{}", serve.log_text());
    let ended = serve.events("live_ended");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["fields"]["status"], "stopped");
    assert_eq!(ended[0]["fields"]["pending"], 0, "{ended:?}");
    assert_eq!(support::es_count(&index), 2_000);
    es_delete_index(&index);
}

#[test]
fn a_schedule_on_a_live_pipeline_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "a.yaml",
        "name: a\nsource: {type: redis, host: h}\nsink: {type: ndjson, path: a.ndjson}\nlive: true\nschedule: {every: 5m}\n",
    );
    let validate = connector()
        .current_dir(dir.path())
        .args(["validate", "a.yaml"])
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(1));
    let out = String::from_utf8_lossy(&validate.stdout);
    assert!(out.contains("a.yaml:5:"), "{out}");
    assert!(
        out.contains("a live pipeline is never scheduled") && out.contains("live.reconcile_every"),
        "{out}"
    );
    // `live: false` makes the schedule count.
    write_file(
        dir.path(),
        "a.yaml",
        "name: a\nsource: {type: redis, host: h}\nsink: {type: ndjson, path: a.ndjson}\nlive: false\nschedule: {every: 5m}\n",
    );
    let validate = connector()
        .current_dir(dir.path())
        .args(["validate", "a.yaml"])
        .output()
        .unwrap();
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );
}

#[test]
fn a_live_pipeline_stuck_past_the_shutdown_timeout_is_interrupted_and_serve_exits_1() {
    let redis = RedisServer::start(&[]);
    // An "Elasticsearch" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let yaml = live_pipeline("users", redis.port, "never", "one").replace(&es_url(), &url);
    write_file(dir.path(), "users.yaml", &yaml);
    let mut serve = Serve::start(dir.path(), &["--shutdown-timeout", "1s", "users.yaml"]);
    serve.wait_for("the subscription", || redis.cli(&["PUBSUB", "NUMPAT"]).trim() != "0");
    let (code, _) = serve.get("/readyz").unwrap();
    assert_eq!(code, 503);

    serve.signal("TERM");
    assert_eq!(serve.wait_exit().code(), Some(1), "{}", serve.log_text());
    let log = serve.log_text();
    assert!(log.contains("shutdown timeout passed: interrupting users"), "{log}");
    let ended = serve.events("live_ended");
    assert_eq!(ended[0]["fields"]["status"], "interrupted", "{ended:?}");
}

#[test]
fn a_live_pipeline_waiting_to_try_again_takes_its_fixed_file() {
    let redis = RedisServer::start(&[]);
    redis.cli(&["HSET", "user:1", "name", "ann"]);
    let index = unique_index("serve-live-fix");
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    // A wrong port: nothing listens there.
    let file = write_file(
        &pipelines,
        "users.yaml",
        &live_pipeline("users", free_port(), &index, "one"),
    );
    let serve = Serve::start(dir.path(), &["pipelines"]);
    serve.wait_for("a failed try", || !serve.events("live_retry").is_empty());
    assert_eq!(serve.get("/readyz").unwrap().0, 503);

    std::fs::write(&file, live_pipeline("users", redis.port, &index, "one")).unwrap();
    serve.wait_for("readiness with the fixed file", || ready(&serve));
    assert_eq!(version_of(&index, "user:1").as_deref(), Some("one"));
    let status = serve.pipeline("users").unwrap();
    assert_eq!(status["state"], "following", "{status}");
    assert_eq!(
        status["live"]["attempts"], 1,
        "a new configuration starts a new count: {status}"
    );
    es_delete_index(&index);
}
