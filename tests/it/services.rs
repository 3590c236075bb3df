//! `scripts/services` gives the tests a real Redis and a real Elasticsearch:
//! `start` succeeds (and is idempotent), Redis answers PONG, Elasticsearch's
//! cluster is green or yellow on the expected version, and `status` says so.
//!
//! The scripts folder is `$REDIS_CONNECTOR_SCRIPTS` (set by `scripts/test`),
//! else `scripts/` of this crate.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn scripts_dir() -> PathBuf {
    match std::env::var_os("REDIS_CONNECTOR_SCRIPTS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts"),
    }
}

fn redis_port() -> String {
    std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".to_owned())
}

fn es_url() -> String {
    std::env::var("ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_owned())
}

fn services(args: &[&str]) -> Output {
    let script = scripts_dir().join("services");
    Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis_port()])
        .args(args)
        .output()
        .expect("redis-cli (installed by scripts/services start)");
    assert_success("redis-cli", &out);
    text(&out.stdout).trim().to_owned()
}

/// The `process_id:` line of `INFO server`.
fn redis_pid() -> String {
    let info = redis_cli(&["info", "server"]);
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap_or_else(|| panic!("no process_id in INFO server:\n{info}"))
        .trim()
        .to_owned()
}

fn es_get(path: &str) -> serde_json::Value {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("{}{path}", es_url());
    let response = client.get(&url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().unwrap();
    assert_eq!(status.as_u16(), 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// The id of the single Elasticsearch node (kept in its data folder).
fn es_node_id() -> String {
    let nodes = es_get("/_nodes/_local?filter_path=nodes.*.name");
    let ids: Vec<&String> = nodes["nodes"].as_object().expect("nodes object").keys().collect();
    assert_eq!(ids.len(), 1, "one local node: {nodes}");
    ids[0].clone()
}

/// The operating-system pid of the Elasticsearch node (new at each restart).
fn es_pid(node_id: &str) -> u64 {
    let process = es_get(&format!("/_nodes/{node_id}/process?filter_path=nodes.*.process.id"));
    process["nodes"][node_id]["process"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no process.id: {process}"))
}

#[test]
fn start_gives_a_live_redis_and_elasticsearch_and_status_reports_them() {
    // start: installs what is missing, starts both, waits for health.
    assert_success("scripts/services start", &services(&["start"]));

    // Redis answers on its port.
    assert_eq!(redis_cli(&["ping"]), "PONG");
    let info = redis_cli(&["info", "server"]);
    assert!(info.contains("redis_version:"), "INFO server: {info}");
    assert!(
        info.contains(&format!("tcp_port:{}", redis_port())),
        "INFO server: {info}"
    );

    // Elasticsearch: one node, green or yellow, the pinned version.
    let health = es_get("/_cluster/health?wait_for_status=yellow&timeout=30s");
    let status = health["status"].as_str().unwrap_or_default();
    assert!(status == "green" || status == "yellow", "cluster health: {health}");
    assert_eq!(health["timed_out"], serde_json::json!(false), "{health}");
    assert_eq!(health["number_of_nodes"], serde_json::json!(1), "{health}");
    let expected_version = std::env::var("ES_VERSION").unwrap_or_else(|_| "9.2.8".to_owned());
    let node_id = es_node_id();
    let version = es_get(&format!("/_nodes/{node_id}?filter_path=nodes.*.version"));
    assert_eq!(
        version["nodes"][&node_id]["version"],
        serde_json::json!(expected_version),
        "{version}"
    );
    // The default node runs without security: no credentials needed.
    let security = es_get(&format!(
        "/_nodes/{node_id}/settings?filter_path=nodes.*.settings.xpack.security.enabled"
    ));
    assert_eq!(
        security["nodes"][&node_id]["settings"]["xpack"]["security"]["enabled"],
        serde_json::json!("false"),
        "{security}"
    );

    // start again: idempotent, quick, and the very same servers keep running.
    let redis_before = redis_pid();
    let es_before = es_pid(&node_id);
    let started = Instant::now();
    assert_success("scripts/services start (again)", &services(&["start"]));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a second start took {:?}",
        started.elapsed()
    );
    assert_eq!(redis_pid(), redis_before, "Redis was restarted by a second start");
    assert_eq!(
        es_pid(&node_id),
        es_before,
        "Elasticsearch was restarted by a second start"
    );

    // status: exit 0, one "up" line per service.
    let status = services(&["status"]);
    assert_success("scripts/services status", &status);
    let report = text(&status.stdout);
    let port = redis_port();
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("redis default: up, ") && l.contains(&format!("redis://127.0.0.1:{port}"))),
        "status output:\n{report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("elasticsearch default: up, ")
            && (l.contains("cluster status green") || l.contains("cluster status yellow"))),
        "status output:\n{report}"
    );
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = services(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("unknown command: no-such-command"), "{err}");
    assert!(err.contains("Usage: scripts/services COMMAND"), "{err}");
}

/// `scripts/services redisjson-module` with the source at `source` and its own
/// services folder `dir` (the build and the cache; no service is started).
fn redisjson_module(source: &std::path::Path, dir: &std::path::Path) -> Output {
    let script = scripts_dir().join("services");
    Command::new(&script)
        .arg("redisjson-module")
        .env("REDISJSON_SOURCE", source)
        .env("REDIS_CONNECTOR_SERVICES_DIR", dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

#[test]
fn the_redisjson_module_is_built_once_per_source_and_its_absence_is_said() {
    // A stand-in for the module's source that cargo builds offline in seconds (a
    // `cdylib` named `rejson`, as RedisJSON's is): what is checked is the script's
    // build, cache and messages, not RedisJSON (tests/it/redis_json.rs loads that).
    let work = tempfile::tempdir().unwrap();
    let services_dir = work.path().join("services");
    let source = work.path().join("source");
    std::fs::create_dir_all(source.join("src")).unwrap();
    std::fs::write(
        source.join("Cargo.toml"),
        "[package]\nname = \"rejson\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        source.join("src/lib.rs"),
        "#[no_mangle]\npub extern \"C\" fn version() -> u32 { 1 }\n",
    )
    .unwrap();
    std::fs::write(
        source.join("Cargo.lock"),
        "# This file is automatically @generated by Cargo.\nversion = 3\n\n[[package]]\nname = \"rejson\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();

    let first = redisjson_module(&source, &services_dir);
    assert_success("redisjson-module (build)", &first);
    let module = text(&first.stdout).trim().to_owned();
    assert!(
        module.starts_with(services_dir.join("redisjson/librejson-").to_str().unwrap()),
        "{module}"
    );
    assert!(
        module.ends_with(".so") && std::path::Path::new(&module).is_file(),
        "{module}"
    );
    assert!(
        text(&first.stderr).contains("building the RedisJSON module"),
        "{}",
        text(&first.stderr)
    );
    assert!(!source.join("target").exists(), "the source folder is never built in");
    let built_at = std::fs::metadata(&module).unwrap().modified().unwrap();

    // Again: the same file, not rebuilt.
    let second = redisjson_module(&source, &services_dir);
    assert_success("redisjson-module (cached)", &second);
    assert_eq!(text(&second.stdout).trim(), module);
    assert!(!text(&second.stderr).contains("building"), "{}", text(&second.stderr));
    assert_eq!(std::fs::metadata(&module).unwrap().modified().unwrap(), built_at);

    // A changed source is another module.
    std::fs::write(
        source.join("src/lib.rs"),
        "#[no_mangle]\npub extern \"C\" fn version() -> u32 { 2 }\n",
    )
    .unwrap();
    let third = redisjson_module(&source, &services_dir);
    assert_success("redisjson-module (changed source)", &third);
    let rebuilt = text(&third.stdout).trim().to_owned();
    assert_ne!(rebuilt, module);
    assert!(std::path::Path::new(&rebuilt).is_file());

    // No source: exit 3, saying where it looked.
    let absent = redisjson_module(&work.path().join("nowhere"), &services_dir);
    assert_eq!(absent.status.code(), Some(3), "{}", text(&absent.stderr));
    assert!(text(&absent.stdout).is_empty());
    assert!(
        text(&absent.stderr).contains("no RedisJSON source at"),
        "{}",
        text(&absent.stderr)
    );
}
