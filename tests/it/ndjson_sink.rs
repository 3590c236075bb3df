//! `redis-connector run` from a real redis-server into the NDJSON sink, end to end
//! through the built binary: the lines a user reads, exit codes and messages.

use std::path::Path;

use crate::support::{connector, write_file, RedisServer};
use md5::{Digest, Md5};
use serde_json::Value;

fn pipeline(dir: &Path, port: u16, source_extra: &str, sink_path: &str, transforms: &str) -> std::path::PathBuf {
    let yaml = format!(
        "name: nd\nsource:\n  type: redis\n  host: 127.0.0.1\n  port: {port}\n{source_extra}{transforms}sink:\n  type: ndjson\n  path: '{sink_path}'\n"
    );
    write_file(dir, "pipeline.yaml", &yaml)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

fn by_key(lines: &[Value], key: &str) -> Value {
    lines
        .iter()
        .find(|l| l["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no line for {key}: {lines:?}"))
}

#[test]
fn run_writes_one_default_document_per_key_to_the_file() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET user:1 ann\nHSET user:2 name bob\nRPUSH list a b\nSELECT 3\nSADD tags x y\n");
    let mut c = redis.connection();
    redis::cmd("SET")
        .arg(&[0xffu8, 0x01][..])
        .arg(&[0xfeu8][..])
        .exec(&mut c)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let file = pipeline(dir.path(), redis.port, "  database: '*'\n", out.to_str().unwrap(), "");

    let result = connector()
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "stderr: {stderr}");

    let docs = lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(docs.len(), 5);
    let user1 = by_key(&docs, "user:1");
    assert_eq!(user1["_id"], format!("{:x}", Md5::digest(b"0/user:1")));
    assert_eq!(user1["value"], "ann");
    assert_eq!(user1["key_type"], "string");
    assert_eq!(user1["database"], 0);
    assert!(user1["size_in_bytes"].as_u64().unwrap() > 0);
    assert!(user1["_timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(by_key(&docs, "user:2")["value"], r#"{"name":"bob"}"#);
    assert_eq!(by_key(&docs, "list")["value"], r#"["a","b"]"#);
    let tags = by_key(&docs, "tags");
    assert_eq!(
        (tags["database"].as_u64(), tags["value"].as_str()),
        (Some(3), Some(r#"["x","y"]"#))
    );
    assert_eq!(tags["_id"], format!("{:x}", Md5::digest(b"3/tags")));
    let binary = by_key(&docs, "/wE=");
    assert_eq!(
        (binary["key_encoding"].as_str(), binary["value"].as_str()),
        (Some("base64"), Some("/g=="))
    );
    assert_eq!(binary["_id"], format!("{:x}", Md5::digest([b'0', b'/', 0xff, 0x01])));
}

#[test]
fn path_dash_writes_the_documents_to_standard_output() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSET b 2\n");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), redis.port, "  database: 0\n", "-", "");
    let result = connector()
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&result.stdout);
    // Standard output holds the documents and nothing else: the summary goes to stderr.
    for line in stdout.lines() {
        assert!(line.starts_with('{'), "stdout must be pure NDJSON, found: {line}");
    }
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("written"),
        "summary on stderr"
    );
    let docs = lines(&stdout);
    let keys: Vec<&str> = docs
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(keys, vec!["a", "b"]);
    assert_eq!(docs.len(), 2);
}

#[test]
fn a_template_index_becomes_the_lines_index_field() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("HSET user:7 name eve\n");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let transforms = "transforms:\n  - type: template\n    id: \"{{ key }}\"\n    index: \"users-{{ database }}\"\n    document:\n      name: \"{{ value.name }}\"\n";
    let file = pipeline(
        dir.path(),
        redis.port,
        "  database: 0\n",
        out.to_str().unwrap(),
        transforms,
    );
    let result = connector()
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, "{\"_id\":\"user:7\",\"_index\":\"users-0\",\"name\":\"eve\"}\n");
}

#[test]
fn an_oversized_value_is_skipped_with_a_warning_naming_the_key() {
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "huge:1", &"x".repeat(3000)]);
    redis.cli(&["SET", "fine", "ok"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let file = pipeline(
        dir.path(),
        redis.port,
        "  database: 0\n  max_value_bytes: 1000\n",
        out.to_str().unwrap(),
        "",
    );
    let result = connector()
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("skipping key `huge:1` in db 0"), "stderr: {stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("too_large 1"), "summary: {all}");
    let docs = lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["key"], "fine");
}

#[test]
fn a_dry_run_creates_no_file() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let file = pipeline(dir.path(), redis.port, "  database: 0\n", out.to_str().unwrap(), "");
    let result = connector()
        .args(["run", "--dry-run"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(!out.exists(), "a dry run writes nothing");
}

#[test]
fn an_output_file_that_cannot_be_created_fails_the_run_naming_the_path() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        redis.port,
        "  database: 0\n",
        "/nonexistent-dir/out.ndjson",
        "",
    );
    let result = connector()
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        all.contains("cannot create the NDJSON output file /nonexistent-dir/out.ndjson"),
        "{all}"
    );
}

#[test]
fn a_missing_database_fails_the_run_before_anything_is_written() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let file = pipeline(
        dir.path(),
        redis.port,
        "  database: [0, 16, 17]\n",
        out.to_str().unwrap(),
        "",
    );
    let result = connector()
        .arg("run")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let expected = format!(
        "Redis at 127.0.0.1:{} has no databases 16, 17 (it has 16 databases, 0 to 15)",
        redis.port
    );
    assert!(all.contains(&expected), "{all}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "",
        "no document written"
    );
}
