//! `redis-connector serve` as an operator deploys it, end to end (a real process, a
//! private redis-server per test, the shared Elasticsearch): one invalid file never
//! stops the valid ones and a missing folder is waited for; the bearer token guards
//! `/status` and the trigger, a foreign `Host` is refused on loopback; the metrics an
//! operator alerts on are there from the first scrape; a file watch that died is set
//! again and a file added meanwhile is picked up.

use crate::support::serve::{promtool_problems, Serve};
use crate::support::{
    connector, es_count, es_delete_index, es_url, free_port, http, unique_index, write_file, RedisServer,
};
use serde_json::Value;
use std::path::Path;

/// A pipeline from Redis (keys `user:*`, hashes) into `index`, plus `extra` YAML.
fn es_pipeline(name: &str, redis: &RedisServer, index: &str, extra: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, rules: [{{database: 0, key_pattern: 'user:*'}}]}}\n\
         transforms:\n  - type: template\n    id: '{{{{ key }}}}'\n    document: {{name: '{{{{ value.name }}}}'}}\n\
         sink: {{type: elasticsearch, url: '{es}', index: {index}}}\ndead_letter: {name}.dl.ndjson\n{extra}",
        port = redis.port,
        es = es_url(),
    )
}

/// A pipeline from Redis on `port` into an NDJSON file, plus `extra` YAML.
fn ndjson_pipeline(name: &str, port: u16, extra: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {port}}}\nsink: {{type: ndjson, path: '{name}.ndjson'}}\n\
         dead_letter: {name}.dl.ndjson\n{extra}"
    )
}

fn users(redis: &RedisServer, n: usize) {
    let commands: String = (0..n).map(|i| format!("HSET user:{i} name user{i}\n")).collect();
    redis.cli_pipe(&commands);
}

fn runs(serve: &Serve, name: &str, outcome: &str) -> f64 {
    serve
        .metric(&format!(
            "redis_connector_pipeline_runs_total{{pipeline=\"{name}\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
}

fn file_valid(serve: &Serve, file: &str) -> Option<f64> {
    serve.metric(&format!("redis_connector_pipeline_file_valid{{file=\"{file}\"}}"))
}

/// The `/status` report of `file`.
fn file_report(serve: &Serve, file: &str) -> Option<Value> {
    serve.status()["reload"]["files"]
        .as_array()?
        .iter()
        .find(|f| f["file"] == file)
        .cloned()
}

fn readyz(serve: &Serve) -> (u16, Value) {
    let (code, body) = serve.get("/readyz").unwrap();
    (code, serde_json::from_str(&body).unwrap())
}

#[test]
fn one_invalid_file_never_stops_the_valid_ones_and_removing_every_file_stops_every_pipeline() {
    let redis = RedisServer::start(&[]);
    users(&redis, 3);
    let (index_a, index_b) = (unique_index("degrade-a"), unique_index("degrade-b"));
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    let every = "schedule: {every: 1h}\n";
    let a = write_file(&pipelines, "a.yaml", &es_pipeline("a", &redis, &index_a, every));
    write_file(&pipelines, "b.yaml", &es_pipeline("b", &redis, &index_b, ""));
    write_file(
        &pipelines,
        "c.yaml",
        &ndjson_pipeline("c", redis.port, "scheduel: {every: 1m}\n"),
    );
    write_file(
        &pipelines,
        "d.yaml",
        "name: d\nsource: {type: redis, host: '${SERVE_HARDENING_UNSET_HOST}'}\nsink: {type: ndjson, path: d.ndjson}\n",
    );

    let serve = Serve::start(dir.path(), &["pipelines"]);
    // Invalid files do not make serve unready: the valid pipelines run.
    serve.wait_for("readiness", || readyz(&serve).0 == 200);
    assert_eq!(es_count(&index_a), 3);
    assert_eq!(es_count(&index_b), 3);
    assert_eq!(file_valid(&serve, "pipelines/a.yaml"), Some(1.0));
    assert_eq!(file_valid(&serve, "pipelines/c.yaml"), Some(0.0));
    assert_eq!(file_valid(&serve, "pipelines/d.yaml"), Some(0.0));
    let c = file_report(&serve, "pipelines/c.yaml").unwrap();
    assert_eq!(c["valid"], false, "{c}");
    assert_eq!(c["pipeline"], Value::Null, "{c}");
    assert!(c["errors"].to_string().contains("scheduel"), "{c}");
    let d = file_report(&serve, "pipelines/d.yaml").unwrap();
    assert!(
        d["errors"]
            .to_string()
            .contains("environment variable `SERVE_HARDENING_UNSET_HOST` is not set"),
        "{d}"
    );
    let invalid: Vec<Value> = serve.events("invalid_file");
    assert!(
        invalid.iter().any(|l| l["fields"]["file"] == "pipelines/c.yaml"),
        "{invalid:?}"
    );
    assert_eq!(serve.metric("redis_connector_config_last_reload_successful"), Some(0.0));
    let names: Vec<String> = serve.status()["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // An invalid edit keeps the last valid version of its pipeline running.
    std::fs::write(
        &a,
        es_pipeline("a", &redis, &index_a, "schedule: {every: 1h, evry: 1}\n"),
    )
    .unwrap();
    serve.wait_for("a reported invalid", || {
        file_valid(&serve, "pipelines/a.yaml") == Some(0.0)
    });
    let report = file_report(&serve, "pipelines/a.yaml").unwrap();
    assert_eq!(report["running_last_valid_version"], true, "{report}");
    assert_eq!(report["pipeline"], "a", "{report}");
    assert!(serve.pipeline("a").is_some());
    assert_eq!(serve.status()["reload"]["unchanged"], 2);

    // Removing every file stops every pipeline.
    for entry in std::fs::read_dir(&pipelines).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    serve.wait_for("every pipeline stopped", || {
        serve.status()["pipelines"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(file_valid(&serve, "pipelines/a.yaml"), None);
    assert_eq!(serve.metric("redis_connector_config_last_reload_successful"), Some(1.0));
    es_delete_index(&index_a);
    es_delete_index(&index_b);
}

#[test]
fn a_missing_folder_is_waited_for_and_strict_refuses_it() {
    let redis = RedisServer::start(&[]);
    users(&redis, 2);
    let dir = tempfile::tempdir().unwrap();

    let strict = connector()
        .current_dir(dir.path())
        .args(["serve", "--strict", "--listen", "127.0.0.1:0", "later"])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("later: no such file or folder"));

    let serve = Serve::start(dir.path(), &["later"]);
    let (code, body) = readyz(&serve);
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body["not_ready"]["later"], "no such file or folder: waiting for it to appear",
        "{body}"
    );
    assert!(!serve.events("waiting_for_path").is_empty(), "{}", serve.log_text());

    // The folder arrives (as git-sync's first clone does): its pipeline starts.
    let staging = dir.path().join(".staging");
    std::fs::create_dir(&staging).unwrap();
    write_file(&staging, "a.yaml", &ndjson_pipeline("a", redis.port, ""));
    std::fs::rename(&staging, dir.path().join("later")).unwrap();
    serve.wait_for("the pipeline of the folder that appeared", || {
        runs(&serve, "a", "ok") >= 1.0
    });
    serve.wait_for("readiness", || readyz(&serve).0 == 200);
    assert_eq!(serve.status()["reload"]["missing"], serde_json::json!([]));
}

#[test]
fn the_token_guards_status_and_the_trigger_and_a_foreign_host_is_refused() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "a.yaml",
        &ndjson_pipeline("a", redis.port, "schedule: {every: 1h}\n"),
    );
    write_file(dir.path(), "token", "t0ken-for-the-tests\n");

    let open_trigger = connector()
        .current_dir(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0", "--allow-trigger", "a.yaml"])
        .output()
        .unwrap();
    assert_eq!(open_trigger.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&open_trigger.stderr);
    assert!(
        stderr.contains("which is not a loopback address, needs --auth-token-file"),
        "{stderr}"
    );

    let serve = Serve::start(dir.path(), &["--allow-trigger", "--auth-token-file", "token", "a.yaml"]);
    serve.wait_for("the first run", || runs(&serve, "a", "ok") >= 1.0);
    let client = http();
    let post = |path: &str, token: Option<&str>| {
        let mut request = client.post(serve.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        let code = response.status().as_u16();
        let www = response.headers().get("www-authenticate").cloned();
        (code, response.json::<Value>().unwrap(), www)
    };

    let (code, body, www) = post("/pipelines/a/run", None);
    assert_eq!(code, 401, "{body}");
    assert_eq!(www.unwrap(), "Bearer");
    assert!(
        body["error"].as_str().unwrap().contains("Authorization: Bearer"),
        "{body}"
    );
    assert_eq!(post("/pipelines/a/run", Some("t0ken-for-the-test")).0, 401);
    let (code, body, _) = post("/pipelines/a/run", Some("t0ken-for-the-tests"));
    assert_eq!(code, 202, "{body}");
    serve.wait_for("the requested run", || runs(&serve, "a", "ok") >= 2.0);
    let (code, body, _) = post("/pipelines/nope/run", Some("t0ken-for-the-tests"));
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"], "no pipeline named `nope`: GET /status lists them");

    let get = |path: &str, token: Option<&str>, host: Option<&str>| {
        let mut request = client.get(serve.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    assert_eq!(get("/status", None, None).0, 401);
    let (code, body) = get("/status", Some("t0ken-for-the-tests"), None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"name\":\"a\""), "{body}");
    for open in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(get(open, None, None).0, 200, "{open}");
    }
    assert_eq!(get("/healthz", None, Some(&format!("localhost:{}", serve.port))).0, 200);

    // DNS rebinding: a name that resolves to 127.0.0.1 is not this server's name.
    let (code, body) = get("/metrics", None, Some(&format!("rebind.example:{}", serve.port)));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("not this server's address") && body.contains("--allowed-host"),
        "{body}"
    );
    assert_eq!(
        get("/status", Some("t0ken-for-the-tests"), Some("rebind.example")).0,
        403
    );
}

#[test]
fn the_metrics_an_operator_alerts_on_are_there_from_the_first_scrape() {
    let dir = tempfile::tempdir().unwrap();
    // Never run: scheduled, not at start.
    write_file(
        dir.path(),
        "later.yaml",
        &ndjson_pipeline("later", free_port(), "schedule: {every: 1h, at_start: false}\n"),
    );
    // Live, but its Redis is not there: its starts fail.
    let index = unique_index("serve-first-scrape");
    write_file(
        dir.path(),
        "live.yaml",
        &format!(
            "name: live\nsource: {{type: redis, host: 127.0.0.1, port: {}}}\nsink: {{type: elasticsearch, url: '{}', index: {index}}}\nlive: true\n",
            free_port(),
            es_url()
        ),
    );
    let serve = Serve::start(dir.path(), &["later.yaml", "live.yaml"]);
    let (_, first) = serve.get("/metrics").unwrap();
    for expected in [
        "redis_connector_pipeline_last_success_timestamp_seconds{pipeline=\"later\"} 0",
        "redis_connector_pipeline_last_success_timestamp_seconds{pipeline=\"live\"} 0",
        "redis_connector_pipeline_run_duration_seconds_count{pipeline=\"later\"} 0",
        "redis_connector_pipeline_runs_total{pipeline=\"live\",outcome=\"error\"}",
        "redis_connector_pipeline_file_valid{file=\"later.yaml\"} 1",
        "redis_connector_serve_file_watch_up 1",
        "redis_connector_build_info{version=\"0.1.0\",commit=\"",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(first.contains(expected), "{expected} missing from:\n{first}");
    }
    let commit = first
        .split("commit=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "built in a git checkout: {commit}"
    );
    let problems = promtool_problems(&first);
    assert!(problems.is_empty(), "{problems}\n{first}");

    // Every metric family is in the user documentation, with its type.
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/serve.md")).unwrap();
    for line in first.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        assert!(
            docs.lines()
                .any(|l| l.contains(&format!("`{name}")) && l.contains(&format!("| {kind} |"))),
            "{name} ({kind}) is not in docs/src/serve.md"
        );
    }

    // A live start that fails is an error outcome.
    serve.wait_for("a failed live start counted", || runs(&serve, "live", "error") >= 1.0);
    assert_eq!(
        serve.metric("redis_connector_pipeline_last_success_timestamp_seconds{pipeline=\"live\"}"),
        Some(0.0)
    );
    assert!(
        serve
            .metric("redis_connector_pipeline_run_duration_seconds_count{pipeline=\"live\"}")
            .unwrap()
            >= 1.0
    );
}

/// `chown -R` to `nobody`.
fn give_to_nobody(path: &Path) {
    let ok = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn chmod(mode: &str, path: &Path) {
    assert!(std::process::Command::new("chmod")
        .arg(mode)
        .arg(path)
        .status()
        .unwrap()
        .success());
}

#[test]
fn a_watch_that_died_is_set_again_and_a_file_added_meanwhile_is_picked_up() {
    let redis = RedisServer::start(&[]);
    users(&redis, 2);
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    write_file(&pipelines, "a.yaml", &ndjson_pipeline("a", redis.port, ""));
    chmod("755", dir.path());
    give_to_nobody(dir.path());

    // As an unprivileged user, for whom a folder with mode 000 cannot be read (nor
    // watched).
    let mut as_nobody = std::process::Command::new("setpriv");
    as_nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_redis-connector"));
    let serve = Serve::start_with(dir.path(), as_nobody, &["pipelines"]);
    serve.wait_for("the first run", || runs(&serve, "a", "ok") >= 1.0);
    assert_eq!(serve.metric("redis_connector_serve_file_watch_up"), Some(1.0));

    chmod("000", &pipelines);
    serve.wait_for("the watch seen down", || {
        serve.metric("redis_connector_serve_file_watch_up") == Some(0.0)
    });
    let status = serve.status();
    assert_eq!(status["watch"]["up"], false, "{status}");
    assert!(
        status["watch"]["problems"].to_string().contains("pipelines"),
        "{status}"
    );
    assert_eq!(serve.metric("redis_connector_config_last_reload_successful"), Some(0.0));
    assert!(
        serve.pipeline("a").is_some(),
        "what runs from an unreadable folder keeps running"
    );

    chmod("755", &pipelines);
    write_file(&pipelines, "b.yaml", &ndjson_pipeline("b", redis.port, ""));
    serve.wait_for("the file added while the watch was down", || {
        runs(&serve, "b", "ok") >= 1.0
    });
    assert_eq!(serve.metric("redis_connector_serve_file_watch_up"), Some(1.0));
    assert_eq!(serve.metric("redis_connector_config_last_reload_successful"), Some(1.0));
    assert!(!serve.events("watch_up").is_empty(), "{}", serve.log_text());
}
