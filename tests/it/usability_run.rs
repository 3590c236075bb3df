//! What a new user of `run` reads, against a private Redis and the shared
//! Elasticsearch: `--follow --summary-json -` (JSON on standard output, the text
//! summary on standard error, no file named `-`), `-q --dry-run` (the summary, no
//! samples), `--full` (identical documents counted as rewritten, not changed), the
//! dry run's stale line when nothing is stale, and an empty `${PW:-}` password.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{connector, es_count, es_delete_index, es_url, unique_index, write_file, RedisServer};
use serde_json::Value;

/// Deletes the test's index when the test ends, passed or not.
struct IndexCleanup(String);

impl Drop for IndexCleanup {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", text(&output.stdout), text(&output.stderr))
}

/// A pipeline of database 0 into `index`, `extra` appended to the sink.
fn pipeline(port: u16, index: &str, extra: &str) -> String {
    format!(
        "name: {index}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: 0}}\n\
         sink:\n  type: elasticsearch\n  url: {es}\n  index: {index}\n{extra}",
        es = es_url()
    )
}

#[test]
fn follow_with_summary_json_dash_writes_the_json_to_stdout_and_the_text_to_stderr() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe(&(0..20).map(|i| format!("SET k:{i} {i}\n")).collect::<String>());
    let index = unique_index("usability-follow");
    let _cleanup = IndexCleanup(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "p.yaml",
        &format!("{}live: {{configure_server: true}}\n", pipeline(redis.port, &index, "")),
    );
    let child = connector()
        .current_dir(dir.path())
        .args(["run", "--follow", "--summary-json", "-"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while es_count(&index) < 20 {
        assert!(Instant::now() < deadline, "the first sync did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("standard output is one JSON document ({e}): {}", describe(&output)));
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["pipelines"][0]["pipeline"], index.as_str(), "{summary:#}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("pipeline {index} (live): stopped")),
        "the text summary is on standard error: {stderr}"
    );
    assert!(
        stderr.contains("SIGTERM received: stopping following, applying the changes already received"),
        "{stderr}"
    );
    assert!(!stderr.contains("skipping stale deletion"), "{stderr}");
    assert!(!dir.path().join("-").exists(), "a file named `-` was written");
}

#[test]
fn quiet_dry_run_full_and_stale_lines_say_what_happens() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe(&(0..20).map(|i| format!("SET k:{i} {i}\n")).collect::<String>());
    let index = unique_index("usability-words");
    let _cleanup = IndexCleanup(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "p.yaml",
        &pipeline(redis.port, &index, "  delete_stale: true\n"),
    );
    let run = |args: &[&str]| {
        let output = connector()
            .current_dir(dir.path())
            .arg("run")
            .args(args)
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        text(&output.stdout)
    };
    run(&["-q"]);
    assert_eq!(es_count(&index), 20);

    // -q: the summary, no sample documents unless asked for; nothing stale, no "0 of".
    let quiet = run(&["-q", "--dry-run"]);
    assert!(
        quiet.starts_with(&format!("pipeline {index}: ok (dry run: nothing written)")),
        "{quiet}"
    );
    assert!(quiet.contains("stale documents that would be deleted: 0"), "{quiet}");
    assert!(!quiet.contains("sample documents"), "{quiet}");
    assert!(!quiet.contains("are stale"), "{quiet}");
    let sampled = run(&["-q", "--dry-run", "--sample", "1"]);
    assert!(sampled.contains("sample documents (1):"), "{sampled}");

    // A stale document is still reported.
    redis.cli_pipe("DEL k:0\n");
    let stale = run(&["-q", "--dry-run"]);
    assert!(
        stale.contains(&format!(
            "note: 1 of 20 documents in index {index} are stale: a real run would delete them"
        )),
        "{stale}"
    );
    redis.cli_pipe("SET k:0 0\n");

    // --full: identical documents are rewritten, not changed.
    let full = run(&["-q", "--full"]);
    assert!(
        full.contains("compared with the index: 0 new, 0 changed and 20 rewritten (same content, --full) documents sent, 0 unchanged"),
        "{full}"
    );
}

#[test]
fn an_empty_password_from_a_variable_sends_none_and_a_refused_auth_gives_the_servers_reason() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let dir = tempfile::tempdir().unwrap();
    let source = |password: &str| {
        format!(
            "name: pw\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0, password: \"{password}\"}}\n\
             sink: {{type: ndjson, path: out.ndjson}}\n",
            redis.port
        )
    };
    let file = write_file(dir.path(), "p.yaml", &source("${USABILITY_UNSET_PW:-}"));
    let output = connector()
        .current_dir(dir.path())
        .args(["run", "-q"])
        .arg(&file)
        .env_remove("USABILITY_UNSET_PW")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.ndjson"))
            .unwrap()
            .lines()
            .count(),
        1
    );

    let file = write_file(dir.path(), "p.yaml", &source("${USABILITY_PW}"));
    let output = connector()
        .current_dir(dir.path())
        .args(["run", "-q"])
        .arg(&file)
        .env("USABILITY_PW", "not-wanted-pw-1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let said = describe(&output);
    assert!(
        said.contains("the server has no password set, but one was sent; remove `password` / `password_file`"),
        "{said}"
    );
    assert!(
        said.contains("without any password configured"),
        "the server's own words: {said}"
    );
    assert!(!said.contains("not-wanted-pw-1"), "{said}");
}
