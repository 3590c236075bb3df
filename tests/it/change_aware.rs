//! Change-aware sync end to end (`redis-connector run` against a private Redis and the
//! shared Elasticsearch, one index per test): a rerun writes only what changed and
//! deletes what is gone, checked through what Elasticsearch itself says (each
//! document's `_version`, the index's `indexing.index_total`), not only through the
//! connector's own summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use redis_connector::document::default_id;
use serde_json::{json, Value};

use crate::support;
use crate::support::{es_count, es_delete_index, es_get, es_url, http, unique_index, RedisServer};

/// Deletes the index when the test ends, passed or not.
struct IndexGuard(String);

impl Drop for IndexGuard {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

/// One test's Redis, folder and index.
struct Setup {
    redis: RedisServer,
    dir: tempfile::TempDir,
    index: String,
    _guard: IndexGuard,
}

impl Setup {
    fn new(prefix: &str) -> Setup {
        let index = unique_index(prefix);
        Setup {
            redis: RedisServer::start(&[]),
            dir: tempfile::tempdir().unwrap(),
            _guard: IndexGuard(index.clone()),
            index,
        }
    }

    /// A pipeline reading database 0 into the index, with `extra` appended (a
    /// `transforms:` list) and stale deletion on. Named as its index: stale deletion
    /// covers every index a pipeline's name owns, so tests must not share one.
    fn pipeline(&self, extra: &str) -> PathBuf {
        support::write_file(
            self.dir.path(),
            "changes.yaml",
            &format!(
                "name: {}\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n{extra}\
                 sink:\n  type: elasticsearch\n  url: {}\n  index: {}\n  delete_stale: true\n",
                self.index,
                self.redis.port,
                es_url(),
                self.index
            ),
        )
    }

    /// Runs the pipeline with `args`; returns the output and the summary's entry.
    fn run(&self, pipeline: &Path, args: &[&str]) -> (Output, Value) {
        let summary = self.dir.path().join("summary.json");
        let _ = std::fs::remove_file(&summary);
        let out = support::connector()
            .current_dir(self.dir.path())
            .args(["run", "-q", "--summary-json", summary.to_str().unwrap()])
            .args(args)
            .arg(pipeline)
            .output()
            .expect("the connector runs");
        let text = std::fs::read_to_string(&summary).unwrap_or_else(|_| panic!("no summary: {}", describe(&out)));
        let json: Value = serde_json::from_str(&text).unwrap();
        let entry = json["pipelines"][0].clone();
        let n = |f: &str| entry[f].as_u64().unwrap_or(0);
        assert_eq!(
            n("read"),
            n("written") + n("unchanged") + n("filtered") + n("skipped") + n("failed"),
            "read = written + unchanged + filtered + skipped + failed: {entry:#}"
        );
        (out, entry)
    }

    /// Runs and expects exit code 0; returns `(written, unchanged, deleted_stale)`.
    fn run_ok(&self, pipeline: &Path, args: &[&str]) -> (u64, u64, u64) {
        let (out, entry) = self.run(pipeline, args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let n = |f: &str| entry[f].as_u64().unwrap();
        (n("written"), n("unchanged"), n("deleted_stale"))
    }
}

fn describe(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every document's `_version`, by `_id`.
fn versions(index: &str) -> BTreeMap<String, u64> {
    let client = http();
    client.post(format!("{}/{index}/_refresh", es_url())).send().unwrap();
    let body: Value = client
        .post(format!("{}/{index}/_search", es_url()))
        .json(&json!({"size": 10000, "version": true, "_source": false}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| {
            (
                hit["_id"].as_str().unwrap().to_owned(),
                hit["_version"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Index operations the index's primaries have taken (`indexing.index_total`).
fn index_total(index: &str) -> u64 {
    let body: Value = http()
        .get(format!("{}/{index}/_stats/indexing", es_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["_all"]["primaries"]["indexing"]["index_total"].as_u64().unwrap()
}

/// 60 keys of every type but streams in database 0.
fn load_mixed(redis: &RedisServer) {
    let mut commands = String::new();
    for i in 0..30 {
        commands.push_str(&format!("SET s:{i} value-{i}\n"));
    }
    for i in 0..10 {
        commands.push_str(&format!(
            "HSET h:{i} name n{i} age {i}\nRPUSH l:{i} a b c\nSADD t:{i} x y\n"
        ));
    }
    redis.cli_pipe(&commands);
}

fn id(key: &str) -> String {
    default_id(0, key.as_bytes())
}

#[test]
fn an_unchanged_rerun_writes_nothing_and_elasticsearch_indexes_nothing() {
    let setup = Setup::new("unchanged");
    load_mixed(&setup.redis);
    let pipeline = setup.pipeline("");
    assert_eq!(setup.run_ok(&pipeline, &[]), (60, 0, 0));
    let doc = es_get(&setup.index, &id("s:1")).unwrap();
    assert_eq!(doc["_content_hash"].as_str().unwrap().len(), 16, "{doc}");
    let (before, total) = (versions(&setup.index), index_total(&setup.index));
    assert_eq!(before.len(), 60);

    let (out, entry) = setup.run(&pipeline, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        (entry["written"].as_u64(), entry["unchanged"].as_u64()),
        (Some(0), Some(60))
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 60 = written 0 + unchanged 60 + filtered 0"),
        "{stdout}"
    );
    assert_eq!(versions(&setup.index), before, "no document was written again");
    assert_eq!(index_total(&setup.index), total, "Elasticsearch indexed nothing");
    // `_timestamp` of an unchanged document says when its content last changed.
    assert_eq!(
        es_get(&setup.index, &id("s:1")).unwrap()["_timestamp"],
        doc["_timestamp"]
    );
}

#[test]
fn one_change_one_deletion_one_new_key_make_one_write_one_delete_one_create() {
    let setup = Setup::new("one-each");
    load_mixed(&setup.redis);
    let pipeline = setup.pipeline("");
    setup.run_ok(&pipeline, &[]);
    let (before, total) = (versions(&setup.index), index_total(&setup.index));

    setup.redis.cli_pipe("SET s:1 changed\nDEL h:2\nSADD t:new z\n");
    let (out, entry) = setup.run(&pipeline, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let n = |f: &str| entry[f].as_u64().unwrap();
    assert_eq!(
        (n("written"), n("new"), n("changed"), n("unchanged"), n("deleted_stale")),
        (2, 1, 1, 58, 1),
        "{entry:#}"
    );
    let after = versions(&setup.index);
    assert_eq!(after[&id("s:1")], 2, "the changed key was written once");
    assert_eq!(after[&id("t:new")], 1, "the new key was created");
    assert!(!after.contains_key(&id("h:2")), "the deleted key's document is gone");
    let untouched = before.iter().filter(|(k, v)| after.get(*k) == Some(v)).count();
    assert_eq!(untouched, 58, "every other document kept its version");
    assert_eq!(index_total(&setup.index), total + 2);
    assert_eq!(es_get(&setup.index, &id("s:1")).unwrap()["value"], "changed");
}

#[test]
fn a_template_change_rewrites_every_document_once_then_nothing() {
    let setup = Setup::new("template");
    load_mixed(&setup.redis);
    let one = "transforms:\n  - type: template\n    document: {key: \"{{ key }}\", kind: \"{{ key_type }}\"}\n";
    let two = "transforms:\n  - type: template\n    document: {key: \"{{ key }}\", kind: \"{{ key_type | upper }}\"}\n";
    setup.run_ok(&setup.pipeline(one), &[]);
    assert_eq!(setup.run_ok(&setup.pipeline(one), &[]), (0, 60, 0));
    assert_eq!(
        setup.run_ok(&setup.pipeline(two), &[]),
        (60, 0, 0),
        "the template changed"
    );
    assert_eq!(es_get(&setup.index, &id("h:1")).unwrap()["kind"], "HASH");
    assert_eq!(setup.run_ok(&setup.pipeline(two), &[]), (0, 60, 0));
    assert!(versions(&setup.index).values().all(|&v| v == 2));
}

#[test]
fn full_rewrites_every_document() {
    let setup = Setup::new("full");
    load_mixed(&setup.redis);
    let pipeline = setup.pipeline("");
    setup.run_ok(&pipeline, &[]);
    let (out, entry) = setup.run(&pipeline, &["--full"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Identical documents written again are counted rewritten, not changed.
    assert_eq!(
        (
            entry["written"].as_u64(),
            entry["changed"].as_u64(),
            entry["rewritten"].as_u64()
        ),
        (Some(60), Some(0), Some(60))
    );
    assert!(versions(&setup.index).values().all(|&v| v == 2));
    assert_eq!(setup.run_ok(&pipeline, &[]), (0, 60, 0), "--full left the hashes right");
}

#[test]
fn an_index_written_without_hashes_is_rewritten_once() {
    // As the reference (or this connector before change-aware sync) left it: the same
    // ids and fields, no content hash, in an index this pipeline owns.
    let setup = Setup::new("legacy");
    load_mixed(&setup.redis);
    let created = http()
        .put(format!("{}/{}", es_url(), setup.index))
        .json(&json!({"mappings": {"_meta": {"redis_connector": {"pipeline": setup.index, "delete_stale": true}}}}))
        .send()
        .unwrap();
    assert!(created.status().is_success());
    let mut bulk = String::new();
    for key in ["s:1", "s:2", "gone:1"] {
        bulk.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{}\",\"_id\":\"{}\"}}}}\n{{\"key\":\"{key}\",\"value\":\"old\"}}\n",
            setup.index,
            id(key)
        ));
    }
    let reply = http()
        .post(format!("{}/_bulk?refresh=true", es_url()))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    assert!(reply.status().is_success());

    let pipeline = setup.pipeline("");
    let (out, entry) = setup.run(&pipeline, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let n = |f: &str| entry[f].as_u64().unwrap();
    assert_eq!(
        (n("written"), n("new"), n("changed"), n("deleted_stale")),
        (60, 58, 2, 1),
        "documents without a hash count as changed; one without a key is stale: {entry:#}"
    );
    assert!(es_get(&setup.index, &id("gone:1")).is_none());
    assert_eq!(setup.run_ok(&pipeline, &[]), (0, 60, 0));
}

#[test]
fn a_document_deleted_by_hand_is_written_again() {
    let setup = Setup::new("by-hand");
    load_mixed(&setup.redis);
    let pipeline = setup.pipeline("");
    setup.run_ok(&pipeline, &[]);
    let reply = http()
        .delete(format!("{}/{}/_doc/{}?refresh=true", es_url(), setup.index, id("l:3")))
        .send()
        .unwrap();
    assert!(reply.status().is_success());
    assert_eq!(setup.run_ok(&pipeline, &[]), (1, 59, 0));
    assert_eq!(es_count(&setup.index), 60);
}

#[test]
fn a_users_strict_mapping_gets_the_hash_field_and_works() {
    let setup = Setup::new("strict");
    load_mixed(&setup.redis);
    let created = http()
        .put(format!("{}/{}", es_url(), setup.index))
        .json(&json!({"mappings": {"dynamic": "strict", "properties": {
            "key": {"type": "keyword"}, "value": {"type": "text"}, "size_in_bytes": {"type": "long"},
            "database": {"type": "integer"}, "key_type": {"type": "keyword"}, "_timestamp": {"type": "date"}
        }}}))
        .send()
        .unwrap();
    assert!(created.status().is_success());
    let pipeline = setup.pipeline("");
    assert_eq!(setup.run_ok(&pipeline, &[]), (60, 0, 0));
    let mapping: Value = http()
        .get(format!("{}/{}/_mapping", es_url(), setup.index))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mappings = &mapping[&setup.index]["mappings"];
    assert_eq!(mappings["dynamic"], "strict");
    assert_eq!(
        mappings["properties"]["_content_hash"],
        json!({"type": "keyword", "index": false})
    );
    assert_eq!(setup.run_ok(&pipeline, &[]), (0, 60, 0));
}

#[test]
fn a_dry_run_says_what_would_be_new_changed_unchanged_and_stale_and_writes_nothing() {
    let setup = Setup::new("dry");
    load_mixed(&setup.redis);
    let pipeline = setup.pipeline("");
    setup.run_ok(&pipeline, &[]);
    setup.redis.cli_pipe("SET s:1 changed\nDEL h:2 h:3\nSADD t:new z\n");
    let total = index_total(&setup.index);
    let (out, entry) = setup.run(&pipeline, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let n = |f: &str| entry[f].as_u64().unwrap();
    assert_eq!(
        (n("written"), n("new"), n("changed"), n("unchanged"), n("stale_found")),
        (2, 1, 1, 57, 2),
        "{entry:#}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("compared with the index: 1 new and 1 changed documents to send, 57 unchanged"),
        "{stdout}"
    );
    assert_eq!(index_total(&setup.index), total);
    assert_eq!(es_count(&setup.index), 60);
}

#[test]
fn a_document_routed_to_another_index_leaves_no_copy_behind() {
    let setup = Setup::new("routed");
    let (young, old) = (format!("{}-young", setup.index), format!("{}-old", setup.index));
    let _guards = (IndexGuard(young.clone()), IndexGuard(old.clone()));
    setup.redis.cli_pipe("HSET u:1 age 1\nHSET u:2 age 2\nHSET u:3 age 9\n");
    let pipeline = setup.pipeline(&format!(
        "transforms:\n  - type: template\n    index: \"{}-{{{{ 'young' if (value.age | int) < 5 else 'old' }}}}\"\n",
        setup.index
    ));
    assert_eq!(setup.run_ok(&pipeline, &[]), (3, 0, 0));
    assert_eq!((es_count(&young), es_count(&old)), (2, 1));

    setup.redis.cli_pipe("HSET u:1 age 7\n");
    assert_eq!(
        setup.run_ok(&pipeline, &[]),
        (1, 2, 1),
        "written to old, deleted from young"
    );
    assert_eq!((es_count(&young), es_count(&old)), (1, 2));
    assert!(es_get(&young, &id("u:1")).is_none(), "no copy left in the old index");
    assert_eq!(es_get(&old, &id("u:1")).unwrap()["value"], r#"{"age":"7"}"#);
    assert_eq!(setup.run_ok(&pipeline, &[]), (0, 3, 0));
}
