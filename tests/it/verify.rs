//! `redis-connector verify` against a private Redis and the shared Elasticsearch: an
//! index tampered by hand (documents deleted, one rewritten, one added) is reported
//! exactly, with keys and ids; an exact index reports nothing and exits 0; nothing
//! is ever written (the index's indexing count and documents stay as they were).

use std::path::PathBuf;
use std::process::Output;

use redis_connector::document::default_id;
use serde_json::{json, Value};

use crate::support::{es_count, es_delete_index, es_url, http, unique_index, write_file, RedisServer};

struct IndexGuard(String);

impl Drop for IndexGuard {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

fn connector_in(dir: &std::path::Path, args: &[&str]) -> Output {
    crate::support::connector()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the connector runs")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Documents Elasticsearch has indexed into `index` so far (every write counts).
fn index_total(index: &str) -> u64 {
    let stats: Value = http()
        .get(format!("{}/{index}/_stats/indexing", es_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    stats["_all"]["primaries"]["indexing"]["index_total"].as_u64().unwrap()
}

fn es(method: reqwest::Method, path: &str, body: Option<Value>) {
    let mut request = http().request(method, format!("{}/{path}", es_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.text().unwrap());
}

fn pipeline(dir: &std::path::Path, port: u16, index: &str) -> PathBuf {
    write_file(
        dir,
        "users.yaml",
        &format!(
            "name: {index}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: 0}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  delete_stale: true\n",
            es_url()
        ),
    )
}

#[test]
fn verify_reports_exactly_the_documents_deleted_changed_and_added_by_hand() {
    let redis = RedisServer::start(&[]);
    let commands: String = (1..=10).map(|i| format!("HSET user:{i} name n{i}\n")).collect();
    redis.cli_pipe(&commands);
    let dir = tempfile::tempdir().unwrap();
    let index = unique_index("verify");
    let _guard = IndexGuard(index.clone());
    let file = pipeline(dir.path(), redis.port, &index);
    let out = connector_in(dir.path(), &["run", "-q", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 10);

    // Exact: exit 0, one line, no sample.
    let out = connector_in(dir.path(), &["verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("pipeline {index}: exact (index {index} holds the 10 documents the pipeline would write)\n")
    );

    // Tamper: two documents deleted, one rewritten by hand, one added by hand.
    let id = |key: &str| default_id(0, key.as_bytes());
    es(reqwest::Method::DELETE, &format!("{index}/_doc/{}", id("user:3")), None);
    es(reqwest::Method::DELETE, &format!("{index}/_doc/{}", id("user:7")), None);
    es(
        reqwest::Method::PUT,
        &format!("{index}/_doc/{}", id("user:5")),
        Some(json!({"key": "user:5", "value": "{\"name\":\"edited\"}", "database": 0, "key_type": "hash"})),
    );
    es(
        reqwest::Method::PUT,
        &format!("{index}/_doc/by-hand"),
        Some(json!({"key": "ghost", "database": 0})),
    );
    es(reqwest::Method::POST, &format!("{index}/_refresh"), None);
    let written_before = index_total(&index);

    let out = connector_in(dir.path(), &["verify", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)));
    assert_eq!(report["status"], "drift");
    let found = &report["pipelines"][0];
    assert_eq!(found["status"], "drift");
    assert_eq!(found["documents"], 10);
    assert_eq!(found["indexed"], 9);
    let samples = |kind: &str| -> Vec<(String, String)> {
        let mut list: Vec<(String, String)> = found[kind]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["key"].as_str().unwrap_or("?").to_owned(),
                    s["_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        list.sort();
        list
    };
    assert_eq!(found["missing"]["count"], 2);
    assert_eq!(
        samples("missing"),
        [("user:3".to_owned(), id("user:3")), ("user:7".to_owned(), id("user:7"))]
    );
    assert_eq!(found["different"]["count"], 1);
    assert_eq!(samples("different"), [("user:5".to_owned(), id("user:5"))]);
    assert_eq!(found["extra"]["count"], 1);
    assert_eq!(samples("extra"), [("ghost".to_owned(), "by-hand".to_owned())]);
    assert_eq!(found["extra"]["samples"][0]["index"], index.as_str());

    // The text form, with one sample of each kind.
    let out = connector_in(dir.path(), &["verify", "--samples", "1", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "pipeline {index}: 2 missing, 1 different, 1 extra (index {index} holds 9 documents; the pipeline would write 10)"
        )
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].starts_with("  missing   key \"user:"), "{text}");
    assert_eq!(
        lines[2],
        format!("  different key \"user:5\" (db 0), _id {} in {index}", id("user:5"))
    );
    assert_eq!(
        lines[3],
        format!("  extra     key \"ghost\" (db 0), _id by-hand in {index}")
    );

    // Nothing was written: no document indexed, none deleted, no file left.
    assert_eq!(index_total(&index), written_before);
    assert_eq!(es_count(&index), 9);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["users.yaml"], "no dead-letter or other file");

    // A run repairs it; verify then says exact again.
    let out = connector_in(dir.path(), &["run", "-q", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = connector_in(dir.path(), &["verify", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "exact");
    assert_eq!(report["pipelines"][0]["missing"]["count"], 0);
}

#[test]
fn verify_of_a_missing_index_reports_every_document_missing_and_creates_nothing() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSET b 2\n");
    let dir = tempfile::tempdir().unwrap();
    let index = unique_index("verify-none");
    let _guard = IndexGuard(index.clone());
    let file = pipeline(dir.path(), redis.port, &index);
    let out = connector_in(dir.path(), &["verify", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pipelines"][0]["missing"]["count"], 2);
    assert_eq!(report["pipelines"][0]["extra"]["count"], 0);
    let response = http().get(format!("{}/{index}", es_url())).send().unwrap();
    assert_eq!(response.status(), 404, "verify created no index");
}

#[test]
fn verify_behind_an_alias_compares_the_index_the_alias_serves() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSET b 2\nSET c 3\n");
    let dir = tempfile::tempdir().unwrap();
    let alias = unique_index("verify-alias");
    let file = write_file(
        dir.path(),
        "aliased.yaml",
        &format!(
            "name: {alias}\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  alias: {alias}\n",
            redis.port,
            es_url()
        ),
    );
    let out = connector_in(dir.path(), &["run", "-q", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let served = crate::support::pointed(&alias);
    let _guards: Vec<IndexGuard> = served.iter().cloned().map(IndexGuard).collect();
    assert_eq!(served.len(), 1);
    let out = connector_in(dir.path(), &["verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    es(
        reqwest::Method::DELETE,
        &format!("{}/_doc/{}", served[0], default_id(0, b"b")),
        None,
    );
    es(reqwest::Method::POST, &format!("{}/_refresh", served[0]), None);
    let out = connector_in(dir.path(), &["verify", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = &report["pipelines"][0];
    assert_eq!(found["missing"]["count"], 1, "{found}");
    assert_eq!(found["missing"]["samples"][0]["key"], "b");
    assert_eq!(found["extra"]["count"], 0);
    assert_eq!(crate::support::pointed(&alias), served, "the alias was not moved");
}

#[test]
fn a_pipeline_without_an_elasticsearch_sink_cannot_be_verified() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "nd.yaml",
        "name: nd\nsource: {type: redis, host: 127.0.0.1}\nsink: {type: ndjson, path: out.ndjson}\n",
    );
    let out = connector_in(dir.path(), &["verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pipeline nd: not compared: verify compares with an Elasticsearch index; this pipeline's sink is not \
         elasticsearch\n"
    );
}
