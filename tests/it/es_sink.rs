//! The Elasticsearch sink against a real Elasticsearch: the shared one of
//! `scripts/services` ($ES_URL) with an index per test, and extra instances on ports
//! 9250-9290 (started by `scripts/services es-instance`, stopped at the end of their
//! test) for what needs other server settings: a small `http.max_content_length`, a
//! write queue of 1, a node stopped mid-run, security (basic auth, API key). TLS goes
//! through a real nginx with the test certificates of `scripts/services tls-certs`.
//!
//! The sink is driven through the library: build, open, consume fed by a channel of
//! batches built here, finish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis_connector::config::model::ElasticsearchSinkConfig;
use redis_connector::dead_letter::DeadLetter;
use redis_connector::document::{default_id, Document};
use redis_connector::record::{KeyType, Record, RedisValue};
use redis_connector::stages::sink::elasticsearch::ElasticsearchSink;
use redis_connector::stages::{RunOptions, SinkReport, StageContext, UpstreamOutcome};
use serde_json::{json, Value};

use crate::support;
use crate::support::es_instance::{services, EsInstance};
use crate::support::{es_count, es_delete_index, es_get, es_url, http, unique_index};

// --- helpers -------------------------------------------------------------------------

/// What one run of the sink gave.
struct Outcome {
    consume: Result<(), String>,
    report: Result<SinkReport, String>,
    /// `(whole requests, documents)` retried.
    retries: (u64, u64),
    dead_letter: PathBuf,
    _dir: tempfile::TempDir,
}

impl Outcome {
    fn report(&self) -> &SinkReport {
        match &self.report {
            Ok(report) => report,
            Err(e) => panic!("finish failed: {e}; consume: {:?}", self.consume),
        }
    }

    fn dead_letters(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.dead_letter) {
            Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn sink_config(yaml: &str) -> ElasticsearchSinkConfig {
    redis_connector::config::yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test config: {e}\n{yaml}"))
}

/// Runs the sink once over `batches`: open (an error there is returned as `Err`),
/// consume, finish.
async fn run_sink_async(
    config: &ElasticsearchSinkConfig,
    batches: Vec<Vec<Record>>,
    options: RunOptions,
    pipeline: &str,
) -> Result<Outcome, String> {
    run_sink_with_async(config, batches, options, pipeline, |_| async {}).await
}

/// Like [`run_sink`], calling `between(ctx)` after the first half of the batches was
/// taken in and before the rest is sent.
async fn run_sink_with_async<F, Fut>(
    config: &ElasticsearchSinkConfig,
    mut batches: Vec<Vec<Record>>,
    options: RunOptions,
    pipeline: &str,
    between: F,
) -> Result<Outcome, String>
where
    F: FnOnce(StageContext) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("dead-letter.ndjson");
    let ctx = StageContext::new(pipeline, "sink", DeadLetter::new(&dead_letter), options);
    let mut sink = ElasticsearchSink::build(config).map_err(|e| format!("build: {e:?}"))?;
    sink.open(&ctx).await.map_err(|e| format!("{e:#}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let second = batches.split_off(batches.len() / 2);
    let feeder_ctx = ctx.clone();
    let feeder = tokio::spawn(async move {
        for batch in batches {
            if tx.send(batch).await.is_err() {
                return;
            }
        }
        between(feeder_ctx).await;
        for batch in second {
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    });
    let consume = sink.consume(rx, &ctx).await.map_err(|e| format!("{e:#}"));
    let complete = feeder.await.is_ok() && consume.is_ok();
    let retries = sink.retries();
    let report = sink
        .finish(UpstreamOutcome { complete }, &ctx)
        .await
        .map_err(|e| format!("{e:#}"));
    Ok(Outcome {
        consume,
        report,
        retries,
        dead_letter,
        _dir: dir,
    })
}

/// [`run_sink_async`] on a runtime of its own (the checks use a blocking HTTP client,
/// which must not run inside one).
fn run_sink(
    config: &ElasticsearchSinkConfig,
    batches: Vec<Vec<Record>>,
    options: RunOptions,
    pipeline: &str,
) -> Result<Outcome, String> {
    runtime().block_on(run_sink_async(config, batches, options, pipeline))
}

/// [`run_sink_with_async`] on a runtime of its own.
fn run_sink_with<F, Fut>(
    config: &ElasticsearchSinkConfig,
    batches: Vec<Vec<Record>>,
    options: RunOptions,
    pipeline: &str,
    between: F,
) -> Result<Outcome, String>
where
    F: FnOnce(StageContext) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    runtime().block_on(run_sink_with_async(config, batches, options, pipeline, between))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn string_record(database: u32, key: &str, value: &str) -> Record {
    Record {
        database,
        key: key.as_bytes().to_vec(),
        key_type: KeyType::String,
        value: RedisValue::String(value.as_bytes().to_vec()),
        size_in_bytes: Some(50 + value.len() as u64),
        ttl: None,
        document: None,
        operation: redis_connector::record::Operation::Upsert,
    }
}

/// A record whose document a transform rendered: `body` under `_id` = `key`.
fn rendered_record(key: &str, body: Value) -> Record {
    let mut record = string_record(0, key, "");
    record.document = Some(Document {
        id: key.to_owned(),
        index: None,
        body: body.as_object().unwrap().clone(),
    });
    record
}

/// `n` string keys `k:0..n` in database 0, in batches of `batch`.
fn string_batches(n: usize, batch: usize) -> Vec<Vec<Record>> {
    let records: Vec<Record> = (0..n)
        .map(|i| string_record(0, &format!("k:{i}"), &format!("value {i}")))
        .collect();
    records.chunks(batch).map(<[Record]>::to_vec).collect()
}

fn options() -> RunOptions {
    RunOptions::default()
}

fn get_json(url: &str) -> Value {
    http().get(url).send().unwrap().json().unwrap()
}

/// Deletes the index when dropped, so a failing test leaves nothing behind.
struct IndexGuard(String);
impl Drop for IndexGuard {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

fn count_at(base: &str, auth: Option<(&str, &str)>, index: &str) -> u64 {
    let client = http();
    let with_auth = |r: reqwest::blocking::RequestBuilder| match auth {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let _ = with_auth(client.post(format!("{base}/{index}/_refresh"))).send();
    let body: Value = with_auth(client.get(format!("{base}/{index}/_count")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["count"].as_u64().unwrap_or_else(|| panic!("no count in {body}"))
}

// --- the shared Elasticsearch -----------------------------------------------------------

#[test]
fn documents_and_fields_arrive_as_written_with_the_built_in_mapping() {
    let index = unique_index("fields");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!("url: {}\nindex: {index}", es_url()));
    let mut hash = string_record(2, "user:1", "");
    hash.key_type = KeyType::Hash;
    hash.value = RedisValue::Hash(vec![
        (b"name".to_vec(), b"Ada".to_vec()),
        (b"age".to_vec(), b"36".to_vec()),
    ]);
    let binary = Record {
        database: 0,
        key: vec![0xff, 0x01],
        key_type: KeyType::String,
        value: RedisValue::String(vec![0xfe]),
        size_in_bytes: None,
        ttl: None,
        document: None,
        operation: redis_connector::record::Operation::Upsert,
    };
    // Longer than the 32,766 bytes Lucene takes for one term: stored, not rejected.
    let long_key = "k".repeat(40_000);
    let batches = vec![
        vec![string_record(0, "greeting", "hello world"), hash],
        vec![binary, string_record(0, &long_key, "v")],
    ];
    let outcome = run_sink(&config, batches, options(), "fields").unwrap();
    outcome.consume.as_ref().unwrap();
    let report = outcome.report();
    assert_eq!((report.written, report.failed), (4, 0));
    assert_eq!(es_count(&index), 4);
    let long = es_get(&index, &default_id(0, long_key.as_bytes())).expect("the long key's document");
    assert_eq!(long["key"], long_key.as_str());

    let greeting = es_get(&index, &default_id(0, b"greeting")).expect("greeting document");
    assert_eq!(greeting["key"], "greeting");
    assert_eq!(greeting["value"], "hello world");
    assert_eq!(greeting["database"], 0);
    assert_eq!(greeting["key_type"], "string");
    assert_eq!(greeting["size_in_bytes"], 61);
    assert!(greeting["_timestamp"].as_str().unwrap().ends_with('Z'));
    let user = es_get(&index, &default_id(2, b"user:1")).expect("hash document");
    assert_eq!(user["value"], r#"{"name":"Ada","age":"36"}"#);
    assert_eq!(user["key_type"], "hash");
    assert_eq!(user["database"], 2);
    let binary = es_get(&index, &default_id(0, &[0xff, 0x01])).expect("binary document");
    assert_eq!(binary["key"], "/wE=");
    assert_eq!(binary["key_encoding"], "base64");
    assert_eq!(binary["value_encoding"], "base64");

    let mapping = get_json(&format!("{}/{index}/_mapping", es_url()));
    let mappings = &mapping[&index]["mappings"];
    assert_eq!(mappings["_meta"]["redis_connector"]["pipeline"], "fields");
    let p = &mappings["properties"];
    assert_eq!(p["key"]["type"], "keyword");
    assert_eq!(p["key"]["ignore_above"], 8191);
    assert_eq!(p["value"]["type"], "text");
    assert_eq!(p["value"]["fields"]["keyword"]["type"], "keyword");
    assert_eq!(p["value"]["fields"]["keyword"]["ignore_above"], 256);
    assert_eq!(p["database"]["type"], "integer");
    assert_eq!(p["key_type"]["type"], "keyword");
    assert_eq!(p["size_in_bytes"]["type"], "long");
    assert_eq!(p["_timestamp"]["type"], "date");
    assert!(report.notes[0].starts_with("Elasticsearch 9."), "{:?}", report.notes);
}

#[test]
fn a_rerun_overwrites_and_stale_deletion_removes_keys_gone_from_redis() {
    let index = unique_index("stale");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!(
        "url: {}\nindex: {index}\ndelete_stale: true\nbulk: {{max_docs: 100, concurrency: 3}}",
        es_url()
    ));
    let first = run_sink(&config, string_batches(1000, 64), options(), "stale").unwrap();
    assert_eq!(first.report().written, 1000);
    assert_eq!(first.report().deleted_stale, 0);
    assert_eq!(es_count(&index), 1000);

    // The same keys again: same count, no duplicates, nothing written (unchanged).
    let again = run_sink(&config, string_batches(1000, 64), options(), "stale").unwrap();
    assert_eq!((again.report().written, again.report().unchanged), (0, 1000));
    assert_eq!(es_count(&index), 1000);

    // 300 keys gone from Redis: their documents go, the others stay.
    let mut kept = string_batches(1000, 1000).remove(0);
    kept.truncate(700);
    let third = run_sink(&config, vec![kept], options(), "stale").unwrap();
    let report = third.report();
    assert_eq!(
        (report.stale_found, report.deleted_stale),
        (300, 300),
        "{:?}",
        report.notes
    );
    assert_eq!(report.error, None);
    assert_eq!(es_count(&index), 700);
    assert!(es_get(&index, &default_id(0, b"k:699")).is_some());
    assert!(es_get(&index, &default_id(0, b"k:700")).is_none());
}

#[test]
fn the_mass_delete_guard_deletes_nothing_unless_allowed() {
    let index = unique_index("guard");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!(
        "url: {}\nindex: {index}\ndelete_stale: {{max_fraction: 0.5}}",
        es_url()
    ));
    run_sink(&config, string_batches(10, 10), options(), "guard")
        .unwrap()
        .report();
    assert_eq!(es_count(&index), 10);

    // Only 4 of 10 keys left: deleting 6 (60%) is more than 0.5.
    let mut few = string_batches(10, 10).remove(0);
    few.truncate(4);
    let guarded = run_sink(&config, vec![few.clone()], options(), "guard").unwrap();
    let report = guarded.report();
    assert_eq!(
        report.error.as_deref(),
        Some(&*format!(
            "would delete 6 of 10 documents (60.0%) from index {index}, more than delete_stale.max_fraction 0.5; \
             nothing was deleted; rerun with --allow-mass-delete if this is intended"
        ))
    );
    assert_eq!((report.stale_found, report.deleted_stale), (6, 0));
    assert_eq!(es_count(&index), 10);

    let allowed = run_sink(
        &config,
        vec![few],
        RunOptions {
            allow_mass_delete: true,
            ..options()
        },
        "guard",
    )
    .unwrap();
    assert_eq!(allowed.report().error, None);
    assert_eq!(allowed.report().deleted_stale, 6);
    assert_eq!(es_count(&index), 4);
}

#[test]
fn a_mapping_conflict_sends_exactly_the_bad_documents_to_the_dead_letter_file() {
    let index = unique_index("conflict");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!("url: {}\nindex: {index}\nbulk: {{max_docs: 7}}", es_url()));
    // The first document maps `n` as a number; docs 13 and 29 carry an object there.
    let records: Vec<Record> = (0..40)
        .map(|i| {
            let n = if i == 13 || i == 29 {
                json!({"nested": i})
            } else {
                json!(i)
            };
            rendered_record(&format!("doc{i}"), json!({"n": n, "name": format!("d{i}")}))
        })
        .collect();
    let outcome = run_sink(
        &config,
        vec![records[..1].to_vec(), records[1..].to_vec()],
        options(),
        "conflict",
    )
    .unwrap();
    outcome.consume.as_ref().unwrap();
    let report = outcome.report();
    assert_eq!((report.written, report.failed), (38, 2));
    assert_eq!(es_count(&index), 38);
    let lines = outcome.dead_letters();
    // Bulks in flight at once may answer in any order.
    let mut ids: Vec<&str> = lines.iter().map(|l| l["_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["doc13", "doc29"]);
    for line in &lines {
        assert_eq!(line["pipeline"], "conflict");
        assert_eq!(line["stage"], "sink");
        assert_eq!(line["key"], line["_id"]);
        assert_eq!(line["database"], 0);
        assert_eq!(line["error_type"], "document_parsing_exception");
        assert!(
            line["reason"].as_str().unwrap().contains("failed to parse field [n]"),
            "{line}"
        );
        assert_eq!(
            line["document"]["n"]["nested"].as_u64().unwrap(),
            if line["_id"] == "doc13" { 13 } else { 29 }
        );
    }
    // The summary names the dead-letter file once, with the count: no note repeats it.
    assert!(
        !report.notes.iter().any(|n| n.contains("rejected")),
        "{:?}",
        report.notes
    );
}

#[test]
fn an_id_over_512_bytes_is_dead_lettered_alone_and_the_rest_of_its_bulk_is_written() {
    // Elasticsearch refuses a whole bulk request for one id over 512 bytes.
    let index = unique_index("long-id");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!("url: {}\nindex: {index}", es_url()));
    let long_id = "é".repeat(300);
    let mut long = rendered_record("long", json!({"n": 2}));
    long.document.as_mut().unwrap().id = long_id.clone();
    let batch = vec![
        rendered_record("a", json!({"n": 1})),
        long,
        rendered_record("b", json!({"n": 3})),
    ];
    let outcome = run_sink(&config, vec![batch], options(), "long-id").unwrap();
    outcome.consume.as_ref().unwrap();
    let report = outcome.report();
    assert_eq!((report.written, report.failed), (2, 1), "{report:?}");
    assert_eq!(es_count(&index), 2);
    let dead = outcome.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["error_type"], "invalid_id");
    assert_eq!(dead[0]["key"], "long");
    assert_eq!(dead[0]["_id"], long_id.as_str());
    assert_eq!(dead[0]["document"], json!({"n": 2}));
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("600 bytes long"),
        "{}",
        dead[0]["reason"]
    );
}

#[test]
fn stale_deletion_refuses_a_routed_index_another_pipeline_owns_before_writing_to_it() {
    let index = unique_index("owned-routed");
    let _guard = IndexGuard(index.clone());
    let writer = sink_config(&format!("url: {}\nindex: {index}", es_url()));
    run_sink(&writer, string_batches(5, 5), options(), "owner")
        .unwrap()
        .report();
    let fixed = format!("{index}-fixed");
    let _fixed_guard = IndexGuard(fixed.clone());
    let deleter = sink_config(&format!("url: {}\nindex: {fixed}\ndelete_stale: true", es_url()));
    let mut record = rendered_record("intruder:1", json!({"a": 1}));
    record.document.as_mut().unwrap().index = Some(index.clone());
    let outcome = run_sink(&deleter, vec![vec![record]], options(), "intruder").unwrap();
    let error = outcome.consume.as_ref().expect_err("refused before writing");
    assert!(
        error.contains(&format!("index {index} belongs to pipeline `owner`")),
        "{error}"
    );
    assert_eq!(es_count(&index), 5);
    assert!(es_get(&index, "intruder:1").is_none());
}

#[test]
fn an_empty_index_made_beforehand_is_claimed_so_stale_deletion_works_on_every_run() {
    // The common set-up: the index is created by hand with its own mapping and
    // `_meta`, then synced with `delete_stale: true`. The first run may clean it (it
    // held nothing); the second run must still be allowed to, and `_meta` keeps the
    // team's entry.
    let index = unique_index("claimed");
    let _guard = IndexGuard(index.clone());
    let created = http()
        .put(format!("{}/{index}", es_url()))
        .json(&json!({"mappings": {"_meta": {"team": "search"}, "properties": {"key": {"type": "keyword"}}}}))
        .send()
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text());
    let config = sink_config(&format!("url: {}\nindex: {index}\ndelete_stale: true", es_url()));
    let outcome = run_sink(&config, string_batches(10, 5), options(), "claimer").unwrap();
    assert_eq!(outcome.report().written, 10);
    let meta = get_json(&format!("{}/{index}/_mapping", es_url()))[&index]["mappings"]["_meta"].clone();
    assert_eq!(
        meta,
        json!({"team": "search", "redis_connector": {"pipeline": "claimer", "delete_stale": true}})
    );

    let mut batches = string_batches(10, 5);
    batches[1].truncate(2);
    let outcome = run_sink(&config, batches, options(), "claimer").unwrap();
    let report = outcome.report();
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        (report.written, report.unchanged, report.deleted_stale),
        (0, 7, 3),
        "{report:?}"
    );
    assert_eq!(es_count(&index), 7);

    // A dry run claims nothing.
    let other = unique_index("unclaimed");
    let _other_guard = IndexGuard(other.clone());
    http().put(format!("{}/{other}", es_url())).send().unwrap();
    let config = sink_config(&format!("url: {}\nindex: {other}\ndelete_stale: true", es_url()));
    let dry = RunOptions {
        dry_run: true,
        ..options()
    };
    run_sink(&config, string_batches(3, 3), dry, "claimer").unwrap();
    let meta = get_json(&format!("{}/{other}/_mapping", es_url()))[&other]["mappings"].clone();
    assert!(meta.get("_meta").is_none(), "{meta}");
}

#[test]
fn stale_deletion_refuses_an_index_another_pipeline_owns() {
    let index = unique_index("owned");
    let _guard = IndexGuard(index.clone());
    let writer = sink_config(&format!("url: {}\nindex: {index}", es_url()));
    run_sink(&writer, string_batches(5, 5), options(), "owner")
        .unwrap()
        .report();
    let deleter = sink_config(&format!("url: {}\nindex: {index}\ndelete_stale: true", es_url()));
    let error = run_sink(&deleter, string_batches(1, 1), options(), "intruder")
        .err()
        .expect("refused at open");
    assert!(
        error.contains(&format!("index {index} belongs to pipeline `owner`")),
        "{error}"
    );
    assert!(error.contains("delete_stale: false"), "{error}");
    assert_eq!(es_count(&index), 5);
}

#[test]
fn a_dry_run_writes_nothing_and_says_what_a_run_would_do() {
    let index = unique_index("dry");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!("url: {}\nindex: {index}\ndelete_stale: true", es_url()));
    let dry = RunOptions {
        dry_run: true,
        ..options()
    };

    // Missing index: not created.
    let outcome = run_sink(
        &config,
        vec![vec![rendered_record("a", json!({"n": 1}))]],
        dry.clone(),
        "dry",
    )
    .unwrap();
    assert_eq!(outcome.report().written, 1);
    assert!(outcome
        .report()
        .notes
        .iter()
        .any(|n| n == &format!("index {index} does not exist: a real run would create it")));
    let status = http().head(format!("{}/{index}", es_url())).send().unwrap().status();
    assert_eq!(status, 404, "a dry run creates no index");

    // A real run, then a dry run with a conflicting document and a vanished one.
    let records = vec![
        rendered_record("a", json!({"n": 1})),
        rendered_record("b", json!({"n": 2})),
    ];
    run_sink(&config, vec![records], options(), "dry").unwrap().report();
    let outcome = run_sink(
        &config,
        vec![vec![rendered_record("a", json!({"n": "not a number"}))]],
        dry,
        "dry",
    )
    .unwrap();
    let report = outcome.report();
    assert_eq!(report.stale_found, 1);
    assert_eq!(report.deleted_stale, 0);
    let notes = report.notes.join("\n");
    assert!(
        notes.contains(&format!("1 of 2 documents in index {index} are stale")),
        "{notes}"
    );
    // The conflicting document counts as failed, with Elasticsearch's own reason.
    assert_eq!((report.written, report.failed), (0, 1));
    let lines = outcome.dead_letters();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["error_type"], "document_parsing_exception");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("failed to parse field [n] of type [long]"),
        "{}",
        lines[0]
    );
    assert_eq!(es_count(&index), 2);
    assert_eq!(es_get(&index, "a").unwrap()["n"], 1);
}

#[test]
fn a_templated_index_creates_one_index_per_database() {
    let prefix = unique_index("tpl");
    let guards = [IndexGuard(format!("{prefix}-0")), IndexGuard(format!("{prefix}-1"))];
    let config = sink_config(&format!(
        "url: {}\nindex: '{prefix}-{{{{ database }}}}'\ndelete_stale: true",
        es_url()
    ));
    let batches = vec![vec![
        string_record(0, "a", "1"),
        string_record(1, "b", "2"),
        string_record(1, "c", "3"),
    ]];
    let outcome = run_sink(&config, batches, options(), "tpl").unwrap();
    assert_eq!(outcome.report().written, 3);
    assert_eq!(es_count(&guards[0].0), 1);
    assert_eq!(es_count(&guards[1].0), 2);
    // Key c gone: deleted from the index it was written to.
    let outcome = run_sink(
        &config,
        vec![vec![string_record(0, "a", "1"), string_record(1, "b", "2")]],
        options(),
        "tpl",
    )
    .unwrap();
    assert_eq!(outcome.report().deleted_stale, 1);
    assert_eq!(es_count(&guards[1].0), 1);
}

#[test]
fn documents_routed_to_many_long_named_indices_are_all_refreshed() {
    // 20 names of ~250 bytes: one `POST a,b,.../_refresh` would pass Elasticsearch's
    // 4096-byte request line and fail the run after every document was written.
    let base = unique_index("many");
    let names: Vec<String> = (0..20)
        .map(|i| format!("{base}-{}-{i:02}", "x".repeat(250 - base.len() - 4)))
        .collect();
    let _guards: Vec<IndexGuard> = names.iter().cloned().map(IndexGuard).collect();
    let _unused = IndexGuard(format!("{base}-unused"));
    let config = sink_config(&format!("url: {}\nindex: {base}-unused", es_url()));
    let batch: Vec<Record> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut record = rendered_record(&format!("k:{i}"), json!({"n": i}));
            record.document.as_mut().unwrap().index = Some(name.clone());
            record
        })
        .collect();
    let outcome = run_sink(&config, vec![batch], options(), "many").unwrap();
    outcome.consume.as_ref().unwrap();
    assert_eq!(outcome.report().written, 20);
    // No refresh of our own: the run's refresh made every document searchable.
    for name in &names {
        let count = get_json(&format!("{}/{name}/_count", es_url()))["count"].as_u64();
        assert_eq!(count, Some(1), "{name}");
    }
}

#[test]
fn a_wrong_url_is_a_clear_error_and_a_dead_node_in_a_list_is_skipped() {
    let dead = support::free_port();
    // (The first connection is tried again within retry.max_elapsed: kept short here.)
    let config = sink_config(&format!(
        "url: http://elastic:hunter2@127.0.0.1:{dead}\nindex: x\nretry: {{max_elapsed: 1s}}"
    ));
    let error = run_sink(&config, vec![], options(), "p").err().unwrap();
    assert!(
        error.starts_with(&format!("cannot connect to Elasticsearch at http://127.0.0.1:{dead}")),
        "{error}"
    );
    assert!(error.contains("is the url right and the server up?"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    let index = unique_index("nodes");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!(
        "url: [http://127.0.0.1:{dead}, {}]\nindex: {index}\nbulk: {{max_docs: 10}}",
        es_url()
    ));
    let outcome = run_sink(&config, string_batches(200, 20), options(), "nodes").unwrap();
    outcome.consume.as_ref().unwrap();
    assert_eq!(outcome.report().written, 200);
    assert_eq!(es_count(&index), 200);
}

#[test]
fn a_dead_node_anywhere_in_the_list_fails_no_request_index_checks_included() {
    // Not only bulks: opening (mapping, count), creating a templated index, stale
    // deletion (point in time, search, deletes) and the refresh go to the next node
    // when one refuses connections, wherever the dead node sits in the list.
    let dead = support::free_port();
    for (n, urls) in [
        format!("[{}, http://127.0.0.1:{dead}]", es_url()),
        format!("[http://127.0.0.1:{dead}, {}, http://127.0.0.1:{dead}]", es_url()),
    ]
    .iter()
    .enumerate()
    {
        let fixed = unique_index("dead-node");
        let routed = format!("{fixed}-r");
        let _guards = (IndexGuard(fixed.clone()), IndexGuard(routed.clone()));
        let pipeline = format!("dead-node-{n}");
        let config = sink_config(&format!(
            "url: {urls}\nindex: {fixed}\nbulk: {{max_docs: 3}}\ndelete_stale: true"
        ));
        let mut batches = string_batches(10, 4);
        let mut record = rendered_record("r:1", json!({"a": 1}));
        record.document.as_mut().unwrap().index = Some(routed.clone());
        batches.push(vec![record]);
        for run in 0..2 {
            let outcome = run_sink(&config, batches.clone(), options(), &pipeline)
                .unwrap_or_else(|e| panic!("{urls}, run {run}: {e}"));
            outcome.consume.as_ref().unwrap();
            let report = outcome.report();
            // The second run finds every document unchanged (change-aware sync).
            let expected = if run == 0 { (11, 0, 0) } else { (0, 11, 0) };
            assert_eq!(
                (report.written, report.unchanged, report.failed),
                expected,
                "{urls}, run {run}: {report:?}"
            );
            assert!(report.error.is_none(), "{urls}: {:?}", report.error);
        }
        batches.remove(0);
        let outcome = run_sink(&config, batches, options(), &pipeline).unwrap();
        assert_eq!(outcome.report().deleted_stale, 4, "{urls}: {:?}", outcome.report());
        assert_eq!((es_count(&fixed), es_count(&routed)), (6, 1));
    }
}

// --- extra instances ----------------------------------------------------------------

#[test]
fn a_document_over_http_max_content_length_is_dead_lettered_alone() {
    let es = EsInstance::start("sink-small-body", 9251, &["http.max_content_length=1mb"], &[]);
    // Unique per run: the extra instance keeps its data between runs.
    let index = &unique_index("big-docs");
    let config = sink_config(&format!(
        "url: {}\nindex: {index}\nbulk: {{max_docs: 1000, max_bytes: 5MiB}}",
        es.url()
    ));
    let mut records: Vec<Record> = (0..50).map(|i| string_record(0, &format!("small:{i}"), "x")).collect();
    records.insert(20, string_record(0, "huge", &"y".repeat(2 << 20)));
    let outcome = run_sink(&config, vec![records], options(), "big").unwrap();
    outcome.consume.as_ref().unwrap();
    let report = outcome.report();
    assert_eq!((report.written, report.failed), (50, 1));
    assert_eq!(count_at(&es.url(), None, index), 50);
    let lines = outcome.dead_letters();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["key"], "huge");
    assert_eq!(lines[0]["_id"], default_id(0, b"huge"));
    assert_eq!(lines[0]["error_type"], "request_entity_too_large");
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("http.max_content_length"),
        "{}",
        lines[0]
    );
    es.stop();
}

#[test]
fn with_a_write_queue_of_one_every_document_still_arrives() {
    let es = EsInstance::start(
        "sink-queue-1",
        9252,
        &["thread_pool.write.queue_size=1", "thread_pool.write.size=1"],
        &[],
    );
    // Unique per run: the extra instance keeps its data between runs.
    let index = &unique_index("queue-one");
    let config = sink_config(&format!(
        "url: {}\nindex: {index}\nbulk: {{max_docs: 20, concurrency: 16}}\nretry: {{initial_backoff: 20ms, max_backoff: 500ms}}",
        es.url()
    ));
    let outcome = run_sink(&config, string_batches(20_000, 500), options(), "queue").unwrap();
    outcome.consume.as_ref().unwrap();
    let report = outcome.report();
    assert_eq!((report.written, report.failed), (20_000, 0));
    assert_eq!(count_at(&es.url(), None, index), 20_000);
    let (requests, items) = outcome.retries;
    println!("429 retries: {requests} whole requests, {items} documents");
    assert!(
        requests + items > 0,
        "a write queue of 1 under 16 concurrent bulks must have rejected something"
    );
    assert!(
        report.notes.iter().any(|n| n.starts_with("retried ")),
        "{:?}",
        report.notes
    );
    es.stop();
}

#[test]
fn elasticsearch_stopped_mid_run_retries_then_fails_clearly_without_stale_deletion() {
    let es = EsInstance::start("sink-stopped", 9253, &[], &[]);
    // Unique per run: the extra instance keeps its data between runs.
    let index = &unique_index("stopped");
    let config = sink_config(&format!(
        "url: {}\nindex: {index}\ndelete_stale: true\nbulk: {{max_docs: 50}}\nretry: {{max_elapsed: 5s, initial_backoff: 100ms}}",
        es.url()
    ));
    let stopper = EsInstance {
        name: es.name.clone(),
        port: es.port,
    };
    let outcome = run_sink_with(
        &config,
        string_batches(2000, 100),
        options(),
        "stopped",
        move |ctx| async move {
            // Wait until something was written, then stop the node.
            while ctx.counters.out.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::task::spawn_blocking(move || stopper.stop()).await.unwrap();
        },
    )
    .unwrap();
    let error = outcome.consume.as_ref().expect_err("the run fails");
    assert!(
        error.starts_with("Elasticsearch at http://127.0.0.1:9253 did not answer for 5"),
        "{error}"
    );
    assert!(error.contains("(last error: "), "{error}");
    assert!(error.contains("documents written before the failure"), "{error}");
    let report = outcome.report();
    assert_eq!(report.deleted_stale, 0);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n == "stale deletion skipped: the run failed"),
        "{:?}",
        report.notes
    );
    assert!(outcome.retries.0 > 0);
}

#[test]
fn basic_auth_works_against_elasticsearch_security_and_a_wrong_password_is_a_clear_error() {
    let es = EsInstance::start(
        "sink-secure",
        9254,
        &["xpack.security.enabled=true"],
        &[
            ("ES_USERS", "sinkadmin:s3cret-pw:superuser"),
            ("ES_HEALTH_AUTH", "sinkadmin:s3cret-pw"),
        ],
    );
    let auth = Some(("sinkadmin", "s3cret-pw"));

    // Basic auth.
    let config = sink_config(&format!(
        "url: {}\nindex: basic\nusername: sinkadmin\npassword: s3cret-pw",
        es.url()
    ));
    let outcome = run_sink(&config, string_batches(30, 10), options(), "basic").unwrap();
    // The instance may keep an earlier test run's index: then they are unchanged.
    assert_eq!(outcome.report().written + outcome.report().unchanged, 30);
    assert_eq!(count_at(&es.url(), auth, "basic"), 30);

    // A password from a file, trimmed.
    let dir = tempfile::tempdir().unwrap();
    let password_file = support::write_file(dir.path(), "pw", "s3cret-pw\n");
    let config = sink_config(&format!(
        "url: {}\nindex: basic\nusername: sinkadmin\npassword_file: {}",
        es.url(),
        password_file.display()
    ));
    assert_eq!(
        run_sink(&config, string_batches(30, 10), options(), "basic")
            .unwrap()
            .report()
            .unchanged,
        30,
        "the same documents again: compared with the index, none written"
    );

    // A wrong password: one clear error, without the password.
    let config = sink_config(&format!(
        "url: {}\nindex: basic\nusername: sinkadmin\npassword: wrong-pw-123",
        es.url()
    ));
    let error = run_sink(&config, vec![], options(), "basic").err().unwrap();
    assert!(
        error.starts_with(&format!(
            "authentication failed for user `sinkadmin` at Elasticsearch {}",
            es.url()
        )),
        "{error}"
    );
    assert!(!error.contains("wrong-pw-123"), "{error}");

    es.stop();
}

/// A real nginx in front of the shared Elasticsearch, terminating TLS (the test
/// certificate of `scripts/services tls-certs`) and/or checking an `Authorization`
/// header; killed when dropped.
struct Proxy {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// `certs`: serve TLS with them; `require_authorization`: answer 401 to any
    /// request without exactly this `Authorization` header.
    fn start(certs: Option<&Path>, require_authorization: Option<&str>) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let upstream = es_url().trim_start_matches("http://").to_owned();
        let prefix = dir.path().display();
        let tls = match certs {
            Some(certs) => format!(
                " ssl;\n    ssl_certificate {};\n    ssl_certificate_key {}",
                certs.join("server.crt").display(),
                certs.join("server.key").display()
            ),
            None => String::new(),
        };
        let check = match require_authorization {
            Some(value) => format!("if ($http_authorization != \"{value}\") {{ return 401; }}"),
            None => String::new(),
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\nuser root;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
               fastcgi_temp_path {prefix}/fcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
               client_max_body_size 100m;\n\
               server {{\n    listen 127.0.0.1:{port}{tls};\n\
                 location / {{ {check} proxy_pass http://{upstream}; }}\n  }}\n}}\n",
        );
        let conf_path = support::write_file(dir.path(), "nginx.conf", &conf);
        let mut child = Command::new("nginx")
            .args([
                "-p",
                &prefix.to_string(),
                "-c",
                conf_path.to_str().unwrap(),
                "-e",
                &format!("{prefix}/error.log"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian's nginx package)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Proxy { port, child, _dir: dir };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_certs() -> PathBuf {
    let out = Command::new(services())
        .arg("tls-certs")
        .output()
        .expect("scripts/services tls-certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn tls_is_trusted_through_ca_file_and_an_untrusted_certificate_is_a_clear_error() {
    let certs = tls_certs();
    let proxy = Proxy::start(Some(&certs), None);
    let index = unique_index("tls");
    let _guard = IndexGuard(index.clone());
    let url = format!("https://127.0.0.1:{}", proxy.port);

    let config = sink_config(&format!(
        "url: {url}\nindex: {index}\ntls: {{ca_file: {}}}",
        certs.join("ca.crt").display()
    ));
    let outcome = run_sink(&config, string_batches(25, 10), options(), "tls").unwrap();
    outcome.consume.as_ref().unwrap();
    assert_eq!(outcome.report().written, 25);
    assert_eq!(es_count(&index), 25);

    let config = sink_config(&format!("url: {url}\nindex: {index}"));
    let error = run_sink(&config, vec![], options(), "tls").err().unwrap();
    assert!(
        error.starts_with(&format!("the TLS certificate of Elasticsearch at {url} is not trusted")),
        "{error}"
    );
    assert!(error.contains("set tls.ca_file"), "{error}");

    let config = sink_config(&format!(
        "url: {url}\nindex: {index}\ntls: {{insecure_skip_verify: true}}"
    ));
    let outcome = run_sink(&config, string_batches(5, 5), options(), "tls").unwrap();
    assert_eq!(outcome.report().unchanged, 5, "the same documents again: none written");
}

/// The distribution's security module cannot create API keys (its security index needs
/// the analysis-common module, which the stripped distribution lacks), so the key is
/// checked by a real nginx in front of the shared Elasticsearch: it lets through only
/// requests with `Authorization: ApiKey <encoded key>`.
#[test]
fn an_api_key_is_sent_as_elasticsearch_expects_and_a_wrong_one_is_a_clear_error() {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode("key-id:key-secret");
    let proxy = Proxy::start(None, Some(&format!("ApiKey {encoded}")));
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let index = unique_index("apikey");
    let _guard = IndexGuard(index.clone());

    let config = sink_config(&format!("url: {url}\nindex: {index}\napi_key: {encoded}"));
    let outcome = run_sink(&config, string_batches(20, 10), options(), "apikey").unwrap();
    outcome.consume.as_ref().unwrap();
    assert_eq!(outcome.report().written, 20);
    assert_eq!(es_count(&index), 20);

    // The `id:key` form is encoded by the client.
    let dir = tempfile::tempdir().unwrap();
    let key_file = support::write_file(dir.path(), "key", "key-id:key-secret\n");
    let config = sink_config(&format!(
        "url: {url}\nindex: {index}\napi_key_file: {}",
        key_file.display()
    ));
    assert_eq!(
        run_sink(&config, string_batches(20, 10), options(), "apikey")
            .unwrap()
            .report()
            .unchanged,
        20,
        "the same documents again: compared with the index, none written"
    );

    let config = sink_config(&format!("url: {url}\nindex: {index}\napi_key: bm90OmFrZXk="));
    let error = run_sink(&config, vec![], options(), "apikey").err().unwrap();
    assert!(
        error.starts_with(&format!("authentication failed for the API key at Elasticsearch {url}")),
        "{error}"
    );
    assert!(!error.contains("bm90OmFrZXk="), "{error}");
}

// --- end to end through `redis-connector run` -------------------------------------------

/// A pipeline file reading every database of the Redis on `redis_port` into `index`.
fn cli_pipeline(dir: &Path, name: &str, redis_port: u16, es: &str, index: &str, sink_extra: &str) -> PathBuf {
    support::write_file(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {redis_port}, database: \"*\"}}\n\
             sink:\n  type: elasticsearch\n  url: {es}\n  index: {index}\n  delete_stale: true\n{sink_extra}"
        ),
    )
}

fn run_cli(dir: &Path, pipeline: &Path) -> std::process::Output {
    support::connector()
        .current_dir(dir)
        .args(["run", "-q", pipeline.to_str().unwrap()])
        .output()
        .expect("the connector runs")
}

fn describe(out: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `n` string keys `prefix:i` of `bytes` bytes, through `redis-cli --pipe`.
fn load_keys(redis: &support::RedisServer, prefix: &str, n: usize, bytes: usize) {
    let value = "v".repeat(bytes);
    let mut commands = String::with_capacity(n * (bytes + 32));
    for i in 0..n {
        commands.push_str(&format!("SET {prefix}:{i} {value}\n"));
    }
    redis.cli_pipe(&commands);
}

#[test]
fn end_to_end_a_rerun_keeps_the_count_and_deleted_keys_disappear() {
    let redis = support::RedisServer::start(&[]);
    load_keys(&redis, "k", 2_000, 20);
    redis.cli_pipe("SELECT 1\nHSET user:1 name Ada\nSADD tags a b\n");
    let index = unique_index("e2e");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cli_pipeline(dir.path(), "e2e", redis.port, &es_url(), &index, "");

    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 2_002);
    let user = es_get(&index, &default_id(1, b"user:1")).unwrap();
    assert_eq!(user["value"], r#"{"name":"Ada"}"#);

    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 2_002, "a rerun overwrites, never duplicates");

    redis.cli_pipe("DEL k:0 k:1 k:2\nSELECT 1\nDEL tags\n");
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 1_998);
    assert!(es_get(&index, &default_id(0, b"k:0")).is_none());
    assert!(es_get(&index, &default_id(1, b"tags")).is_none());
    assert!(es_get(&index, &default_id(0, b"k:3")).is_some());
}

#[test]
fn end_to_end_a_run_killed_mid_write_then_rerun_leaves_the_index_exact() {
    let redis = support::RedisServer::start(&[]);
    load_keys(&redis, "k", 60_000, 200);
    let index = unique_index("killed");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cli_pipeline(
        dir.path(),
        "killed",
        redis.port,
        &es_url(),
        &index,
        "  bulk: {max_docs: 200, concurrency: 1}\n",
    );
    let mut child = support::connector()
        .current_dir(dir.path())
        .args(["run", "-q", pipeline.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no draining, no cleanup) once documents are arriving.
    let client = http();
    loop {
        let body: Value = client
            .get(format!("{}/{index}/_count", es_url()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if body["count"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = es_count(&index);
    assert!(partial > 0 && partial < 60_000, "killed mid-write: {partial} documents");

    // Some keys go away meanwhile; the rerun makes the index exactly what Redis holds.
    redis.cli_pipe("DEL k:10 k:20 k:59999\n");
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 59_997);
    assert!(es_get(&index, &default_id(0, b"k:10")).is_none());
}

#[test]
fn end_to_end_elasticsearch_stopped_mid_run_fails_clearly_and_deletes_nothing() {
    let es = EsInstance::start("sink-cli-stopped", 9255, &[], &[]);
    let redis = support::RedisServer::start(&[]);
    load_keys(&redis, "k", 40_000, 200);
    // Unique per run: the extra instance keeps its data between runs.
    let index = &unique_index("cli-stopped");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cli_pipeline(
        dir.path(),
        "stopped",
        redis.port,
        &es.url(),
        index,
        "  bulk: {max_docs: 100, concurrency: 1}\n  retry: {max_elapsed: 5s, initial_backoff: 100ms}\n",
    );
    let child = support::connector()
        .current_dir(dir.path())
        .args(["run", "-q", pipeline.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = http();
    loop {
        let response = client.get(format!("{}/{index}/_count", es.url())).send().unwrap();
        if response.status() == 200 && response.json::<Value>().unwrap()["count"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    es.stop();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = describe(&out);
    assert!(
        all.contains("Elasticsearch at http://127.0.0.1:9255 did not answer for 5"),
        "{all}"
    );
    assert!(all.contains("documents written before the failure"), "{all}");
    assert!(
        !all.contains("deleted 0 stale") && !all.contains("stale documents of"),
        "{all}"
    );
}

#[test]
fn end_to_end_stale_deletion_covers_routed_indices_the_run_no_longer_writes_to() {
    // Documents routed per type by a template transform: when the last key of a type
    // is gone, its index gets no write this run, yet its documents are stale.
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 name Ada\nHSET user:2 name Bob\nSADD tags a b\n");
    let base = unique_index("routed");
    let (hashes, sets) = (format!("{base}-hash"), format!("{base}-set"));
    let _guards = (
        IndexGuard(base.clone()),
        IndexGuard(hashes.clone()),
        IndexGuard(sets.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "routed.yaml",
        &format!(
            "name: routed\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    index: \"{base}-{{{{ key_type }}}}\"\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {base}\n  delete_stale: true\n",
            redis.port,
            es_url()
        ),
    );
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!((es_count(&hashes), es_count(&sets)), (2, 1));

    // The set index would lose all its documents: the guard stops it and says so.
    redis.cli_pipe("DEL tags\n");
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("would delete 1 of 1 documents (100.0%) from index {sets}")),
        "{}",
        describe(&out)
    );
    assert_eq!(es_count(&sets), 1, "the guard deleted nothing");

    let out = support::connector()
        .current_dir(dir.path())
        .args(["run", "-q", "--allow-mass-delete", pipeline.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!((es_count(&hashes), es_count(&sets)), (2, 0));
}

#[test]
fn end_to_end_a_key_its_template_cannot_render_keeps_its_document_through_stale_deletion() {
    // The key still exists; only its value changed so that the template fails. Its
    // document of the last good run stays (in whichever index it went) while the
    // dead-letter file says why it was not updated; a key that is really gone is
    // deleted as usual.
    let redis = support::RedisServer::start(&[]);
    let mut load = String::new();
    for i in 1..=6 {
        load.push_str(&format!("HSET user:{i} name u{i} age {i}\n"));
    }
    redis.cli_pipe(&load);
    let base = unique_index("render-fails");
    let (fixed, young, old) = (base.clone(), format!("{base}-young"), format!("{base}-old"));
    let _guards = (
        IndexGuard(fixed.clone()),
        IndexGuard(young.clone()),
        IndexGuard(old.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let write = |id: &str| {
        support::write_file(
            dir.path(),
            "render.yaml",
            &format!(
                "name: render\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
                 transforms:\n  - type: template\n    id: \"{id}\"\n\
                 \x20   index: \"{base}-{{{{ 'young' if (value.age | int) < 4 else 'old' }}}}\"\n\
                 \x20   document: {{name: \"{{{{ value.name }}}}\", age: {{expr: \"value.age | int\"}}}}\n\
                 sink:\n  type: elasticsearch\n  url: {}\n  index: {fixed}\n  delete_stale: true\n",
                redis.port,
                es_url()
            ),
        )
    };
    let pipeline = write("{{ key }}");
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!((es_count(&young), es_count(&old)), (3, 3));

    // user:2 (young) and user:5 (old) no longer render; user:6 is gone.
    redis.cli_pipe("HSET user:2 age two\nHDEL user:5 name\nDEL user:6\n");
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 5 = written 0 + unchanged 3 + filtered 0 + skipped 0 + failed 2"),
        "{}",
        describe(&out)
    );
    assert!(stdout.contains("deleted as stale: 1 (found 1)"), "{}", describe(&out));
    assert!(es_get(&young, "user:2").is_some(), "kept: its key exists");
    assert!(es_get(&old, "user:5").is_some(), "kept: its key exists");
    assert!(es_get(&old, "user:6").is_none(), "deleted: its key is gone");
    let dead = std::fs::read_to_string(dir.path().join("render.dead-letter.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 2, "{dead}");

    // An id template that fails leaves no id to keep: stale deletion is skipped and
    // says why, rather than deleting that key's document.
    let pipeline = write("{{ value.name }}-{{ key }}");
    redis.cli_pipe("HSET user:5 name u5\nHSET user:2 age 2\nHDEL user:1 name\n");
    let out = support::connector()
        .current_dir(dir.path())
        .args(["run", "-q", "--allow-mass-delete", pipeline.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("stale deletion skipped: 1 records failed before their document id was rendered"),
        "{}",
        describe(&out)
    );
    assert!(es_get(&young, "user:1").is_some(), "{}", describe(&out));
}

#[test]
fn end_to_end_dead_letter_files_are_named_in_the_summary_and_a_dry_run_keeps_the_real_ones() {
    // A template failure goes to the pipeline's file, a mapping conflict to the sink's
    // own `dead_letter`; the summary names both. A dry run afterwards leaves both
    // files as the real run wrote them and puts its own failures beside them.
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 age 1\nHSET user:2 age two\nHSET user:3 name x\n");
    let index = unique_index("dead-letters");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "dl.yaml",
        &format!(
            "name: dl\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    id: \"{{{{ key }}}}\"\n    document: {{age: \"{{{{ value.age }}}}\"}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  dead_letter: rejected.ndjson\n\
             \x20 mappings: {{properties: {{age: {{type: long}}}}}}\n",
            redis.port,
            es_url()
        ),
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-q", "--summary-json", "s.json"];
        args.extend_from_slice(extra);
        args.push(pipeline.to_str().unwrap());
        let out = support::connector()
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap()).unwrap();
        (out, summary["pipelines"][0]["dead_letter"].clone())
    };
    let (out, files) = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        files,
        json!(["dl.dead-letter.ndjson", "rejected.ndjson"]),
        "{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 documents failed; see dl.dead-letter.ndjson, rejected.ndjson"),
        "{}",
        describe(&out)
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let (template_failures, rejected) = (read("dl.dead-letter.ndjson"), read("rejected.ndjson"));
    assert!(template_failures.contains("\"key\":\"user:3\""), "{template_failures}");
    assert!(rejected.contains("\"key\":\"user:2\""), "{rejected}");

    // The dry run predicts both failures, each in its file's dry-run twin.
    let (out, files) = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        files,
        json!(["dl.dead-letter.dry-run.ndjson", "rejected.dry-run.ndjson"]),
        "{}",
        describe(&out)
    );
    assert!(read("dl.dead-letter.dry-run.ndjson").contains("\"key\":\"user:3\""));
    assert!(read("rejected.dry-run.ndjson").contains("\"key\":\"user:2\""));
    assert_eq!(
        read("dl.dead-letter.ndjson"),
        template_failures,
        "the real run's file is untouched"
    );
    assert_eq!(read("rejected.ndjson"), rejected, "the real run's file is untouched");
    assert_eq!(es_count(&index), 1);
}

#[test]
fn end_to_end_a_key_skipped_as_too_large_keeps_its_document_through_stale_deletion() {
    // The key grew past max_value_bytes: it is skipped, but it exists, so the document
    // of the run before stays. With an `id` template its id is unknown: the summary
    // says its document is not protected (a key may stay too large for good, so it
    // must not stop stale deletion for good).
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("SET k:1 a\nSET k:2 b\nSET k:3 c\nSET k:4 d\n");
    let index = unique_index("too-large");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let write = |transforms: &str| {
        support::write_file(
            dir.path(),
            "big.yaml",
            &format!(
                "name: big\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0, max_value_bytes: 1KiB}}\n\
                 {transforms}sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  delete_stale: true\n",
                redis.port,
                es_url()
            ),
        )
    };
    let pipeline = write("");
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    redis.cli_pipe(&format!("SET k:2 {}\nDEL k:4\n", "x".repeat(5000)));
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("skipped: too_large 1"), "{}", describe(&out));
    assert!(stdout.contains("deleted as stale: 1 (found 1)"), "{}", describe(&out));
    assert_eq!(es_get(&index, &default_id(0, b"k:2")).unwrap()["value"], "b", "kept");
    assert!(es_get(&index, &default_id(0, b"k:4")).is_none(), "its key is gone");

    let templated = write("transforms:\n  - type: template\n    id: \"{{ key }}\"\n");
    support::connector()
        .current_dir(dir.path())
        .args(["run", "-q", "--allow-mass-delete", templated.to_str().unwrap()])
        .output()
        .unwrap();
    redis.cli_pipe("SET k:2 b\n");
    let out = run_cli(dir.path(), &templated);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(es_get(&index, "k:2").is_some());
    redis.cli_pipe(&format!("SET k:2 {}\n", "x".repeat(5000)));
    let out = run_cli(dir.path(), &templated);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "1 keys the source skipped have no rendered id: documents earlier runs wrote for them are deleted as stale"
        ),
        "{}",
        describe(&out)
    );
}

#[test]
fn end_to_end_a_template_with_only_an_id_keeps_the_built_in_mapping_of_the_default_document() {
    // `id` (or `index`) alone leaves the default document; its index must get the
    // built-in mapping (`key` keyword), not dynamic mapping (`key` text).
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("SET user:1 a\n");
    let index = unique_index("id-only");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "id-only.yaml",
        &format!(
            "name: id-only\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    id: \"{{{{ database }}}}:{{{{ key }}}}\"\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n",
            redis.port,
            es_url()
        ),
    );
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let properties = get_json(&format!("{}/{index}/_mapping", es_url()))[&index]["mappings"]["properties"].clone();
    assert_eq!(properties["key"]["type"], "keyword", "{properties}");
    assert_eq!(properties["database"]["type"], "integer", "{properties}");
    let hits = http()
        .post(format!("{}/{index}/_search", es_url()))
        .json(&json!({"query": {"term": {"key": "user:1"}}}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(hits["hits"]["hits"][0]["_id"], "0:user:1", "{hits}");
}

/// A pipeline file reading the keys `pattern` of database 0 into `index`.
fn owner_pipeline(
    dir: &Path,
    name: &str,
    redis_port: u16,
    pattern: &str,
    extra: &str,
    index: &str,
    delete_stale: bool,
) -> PathBuf {
    support::write_file(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nsource:\n  type: redis\n  host: 127.0.0.1\n  port: {redis_port}\n  \
             rules: [{{database: 0, key_pattern: \"{pattern}\"}}]\n{extra}\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  delete_stale: {delete_stale}\n",
            es_url()
        ),
    )
}

#[test]
fn end_to_end_without_delete_stale_an_index_another_pipeline_keeps_exact_with_stale_deletion_is_refused() {
    // Two pipelines run separately (two cron jobs): `validate` never sees them together,
    // so the index's marker is what tells the second one its documents would be deleted.
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("SET a:1 x\nSET a:2 x\nSET a:3 x\nSET b:1 y\nSET b:2 y\n");
    let kept = unique_index("kept");
    let fresh = unique_index("fresh");
    let shared_by_routing = unique_index("routed-sink");
    let _guards = (
        IndexGuard(kept.clone()),
        IndexGuard(fresh.clone()),
        IndexGuard(shared_by_routing.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let exact = owner_pipeline(dir.path(), "exact", redis.port, "a:*", "", &kept, true);
    let out = run_cli(dir.path(), &exact);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&kept), 3);

    let expected = format!(
        "index {kept} belongs to pipeline `exact`, which keeps it exact with delete_stale \
         (its _meta.redis_connector.delete_stale): documents this pipeline writes there would be deleted \
         as stale by `exact`'s next run, so nothing was written; write to another index, or merge the two \
         pipelines into one"
    );
    let intruder = owner_pipeline(dir.path(), "intruder", redis.port, "b:*", "", &kept, false);
    let out = run_cli(dir.path(), &intruder);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(describe(&out).contains(&expected), "{}", describe(&out));
    assert_eq!(es_count(&kept), 3, "nothing written");
    assert!(es_get(&kept, &default_id(0, b"b:1")).is_none());

    // A dry run reports the same problem.
    let out = support::connector()
        .current_dir(dir.path())
        .args(["run", "--dry-run", intruder.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(describe(&out).contains(&expected), "{}", describe(&out));

    // Routed per document (a templated `index`) into the same index: refused as well.
    let routed = owner_pipeline(
        dir.path(),
        "routed-intruder",
        redis.port,
        "b:*",
        &format!("transforms:\n  - type: template\n    index: \"{kept}\"\n"),
        &shared_by_routing,
        false,
    );
    let out = run_cli(dir.path(), &routed);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(describe(&out).contains(&expected), "{}", describe(&out));
    assert_eq!(es_count(&kept), 3, "nothing written");

    // Into a fresh index it works; another pipeline without stale deletion may share
    // that one (its marker says its owner deletes nothing).
    let elsewhere = owner_pipeline(dir.path(), "elsewhere", redis.port, "b:*", "", &fresh, false);
    let out = run_cli(dir.path(), &elsewhere);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&fresh), 2);
    let marker = &get_json(&format!("{}/{fresh}/_mapping", es_url()))[&fresh]["mappings"]["_meta"]["redis_connector"];
    assert_eq!(marker, &json!({"pipeline": "elsewhere", "delete_stale": false}));
    let sharer = owner_pipeline(dir.path(), "sharer", redis.port, "a:*", "", &fresh, false);
    let out = run_cli(dir.path(), &sharer);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&fresh), 5);

    // The owner's next run is unchanged: its documents, nothing else deleted.
    redis.cli_pipe("DEL a:3\n");
    let out = run_cli(dir.path(), &exact);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&kept), 2);
}

#[test]
fn stale_deletion_marker_without_delete_stale_is_brought_up_to_date_by_its_owner() {
    // An index marked before the marker recorded delete_stale: another pipeline without
    // stale deletion is refused (the owner may delete stale documents); once the owner,
    // which does not, has run, the marker says so and the other pipeline may write.
    let index = unique_index("legacy");
    let _guard = IndexGuard(index.clone());
    let put = support::http()
        .put(format!("{}/{index}", es_url()))
        .json(&json!({"mappings": {"_meta": {"redis_connector": {"pipeline": "old"}}}}))
        .send()
        .unwrap();
    assert!(put.status().is_success());
    let other = sink_config(&format!("url: {}\nindex: {index}", es_url()));
    let outcome = run_sink(&other, string_batches(2, 2), options(), "other");
    let error = outcome.err().expect("refused at open");
    assert!(
        error.contains(&format!(
            "index {index} belongs to pipeline `old`, which may keep it exact with delete_stale"
        )) && error.contains("written before the marker recorded delete_stale"),
        "{error}"
    );
    assert_eq!(es_count(&index), 0);

    run_sink(&other, Vec::new(), options(), "old").unwrap().report();
    let marker = &get_json(&format!("{}/{index}/_mapping", es_url()))[&index]["mappings"]["_meta"]["redis_connector"];
    assert_eq!(marker, &json!({"pipeline": "old", "delete_stale": false}));
    run_sink(&other, string_batches(2, 2), options(), "other")
        .unwrap()
        .report();
    assert_eq!(es_count(&index), 2);
}

#[test]
fn end_to_end_an_id_template_giving_two_keys_one_id_is_reported_not_silently_lost() {
    // Two users share an email, the pipeline's `id`: Elasticsearch keeps one document
    // for both. The run still succeeds (nothing failed), but says so, naming a key.
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe(
        "HSET user:1 email a@x.org\nHSET user:2 email b@x.org\nHSET user:3 email c@x.org\nHSET user:4 email b@x.org\n",
    );
    let index = unique_index("repeated-ids");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "by-email.yaml",
        &format!(
            "name: by-email\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    id: \"{{{{ value.email }}}}\"\n    document: {{user: \"{{{{ key }}}}\"}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n",
            redis.port,
            es_url()
        ),
    );
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(count_at(&es_url(), None, &index), 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("written 4"), "{}", describe(&out));
    assert!(
        stdout.contains("1 documents had the _id of an earlier document of this run and replaced it"),
        "{}",
        describe(&out)
    );
    assert!(stdout.contains("rendered _id `b@x.org`"), "{}", describe(&out));

    // Unique ids: no such note.
    let unique = support::write_file(
        dir.path(),
        "by-key.yaml",
        &std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace("name: by-email", "name: by-key")
            .replace("{{ value.email }}", "{{ key }}")
            .replace(&index, &format!("{index}-k")),
    );
    let _guard_k = IndexGuard(format!("{index}-k"));
    let out = run_cli(dir.path(), &unique);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("earlier document"),
        "{}",
        describe(&out)
    );
    assert_eq!(count_at(&es_url(), None, &format!("{index}-k")), 4);
}

#[test]
fn end_to_end_a_redis_cluster_is_synced_whole_and_keys_deleted_on_any_master_disappear() {
    let cluster = support::RedisCluster::start(3, 0);
    let mut commands = String::new();
    for i in 0..1500 {
        commands += &format!("SET k:{i} v{i}\n");
    }
    cluster.cli_pipe(&commands);
    let index = unique_index("e2e-cluster");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cli_pipeline(dir.path(), "e2e-cluster", cluster.nodes[1].port, &es_url(), &index, "");

    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 1_500);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("read 1500 = written 1500"),
        "{}",
        describe(&out)
    );
    assert_eq!(es_get(&index, &default_id(0, b"k:7")).unwrap()["value"], "v7");

    // Ten keys, on whichever masters their slots live.
    cluster.cli_pipe(&(0..10).map(|i| format!("DEL k:{i}\n")).collect::<String>());
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(es_count(&index), 1_490);
    assert!(es_get(&index, &default_id(0, b"k:3")).is_none());
}

#[test]
fn change_aware_an_interrupted_run_deletes_nothing_and_the_next_run_is_exact() {
    let index = unique_index("interrupted");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!(
        "url: {}\nindex: {index}\ndelete_stale: {{max_fraction: 1}}\nbulk: {{max_docs: 10}}",
        es_url()
    ));
    let first = run_sink(&config, string_batches(100, 10), options(), "interrupted").unwrap();
    assert_eq!(first.report().written, 100);

    // 60 keys gone, 5 changed; the run is stopped (Ctrl-C) halfway through.
    let second_run = || {
        let mut records = string_batches(40, 40).remove(0);
        for record in records.iter_mut().step_by(8) {
            record.value = RedisValue::String(b"changed".to_vec());
        }
        records.chunks(10).map(<[Record]>::to_vec).collect::<Vec<_>>()
    };
    let stopped = run_sink_with(&config, second_run(), options(), "interrupted", |ctx| async move {
        ctx.cancel.cancel();
    })
    .unwrap();
    let report = stopped.report();
    assert_eq!((report.stale_found, report.deleted_stale), (0, 0), "{report:?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n == "stale deletion skipped: the run did not read everything"),
        "{:?}",
        report.notes
    );
    assert_eq!(es_count(&index), 100, "nothing deleted");

    // The next complete run: the changes the stopped run wrote are unchanged now, the
    // others are written, and exactly the 60 gone keys are deleted.
    let next = run_sink(&config, second_run(), options(), "interrupted").unwrap();
    let report = next.report();
    assert_eq!(report.written + report.unchanged, 40, "{report:?}");
    assert_eq!(report.deleted_stale, 60, "{report:?}");
    assert_eq!(es_count(&index), 40);
    for i in (0..40).step_by(8) {
        let doc = es_get(&index, &default_id(0, format!("k:{i}").as_bytes())).unwrap();
        assert_eq!(doc["value"], "changed");
    }
    let again = run_sink(&config, second_run(), options(), "interrupted").unwrap();
    assert_eq!((again.report().written, again.report().unchanged), (0, 40));
}

#[test]
fn change_aware_a_rendered_document_may_not_carry_the_content_hash_field() {
    let index = unique_index("reserved");
    let _guard = IndexGuard(index.clone());
    let config = sink_config(&format!("url: {}\nindex: {index}", es_url()));
    let batches = vec![vec![
        rendered_record("a", json!({"name": "a"})),
        rendered_record("b", json!({"name": "b", "_content_hash": "mine"})),
    ]];
    let outcome = run_sink(&config, batches, options(), "reserved").unwrap();
    assert_eq!((outcome.report().written, outcome.report().failed), (1, 1));
    let dead = outcome.dead_letters();
    assert_eq!(dead[0]["error_type"], "reserved_field");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("rename that field"),
        "{}",
        dead[0]
    );
    assert_eq!(
        es_get(&index, "a").unwrap()["_content_hash"].as_str().unwrap().len(),
        16
    );
}

#[test]
fn end_to_end_a_dry_run_fails_with_the_words_of_the_real_run_it_predicts_failing() {
    // Documents the mapping rejects, then the mass-delete guard: each makes the dry run
    // exit 1, as the real run does.
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 age 1\nHSET user:2 age 2\nHSET user:3 age x\nHSET user:4 age y\n");
    let index = unique_index("dry-fails");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "df.yaml",
        &format!(
            "name: df\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    id: \"{{{{ key }}}}\"\n    document: {{age: \"{{{{ value.age }}}}\"}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  delete_stale: true\n\
             \x20 mappings: {{properties: {{age: {{type: long}}}}}}\n",
            redis.port,
            es_url()
        ),
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-q"];
        args.extend_from_slice(extra);
        args.push(pipeline.to_str().unwrap());
        support::connector()
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap()
    };
    // Before the index exists, the mapping the run would create is the one checked.
    let out = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("read 4 = would write 2 + unchanged 0 + filtered 0 + skipped 0 + failed 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 documents would fail; see df.dead-letter.dry-run.ndjson"),
        "{stdout}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("df.dead-letter.dry-run.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["_index"], index.as_str());
        assert!(line["document"]["age"].is_string(), "{line}");
        assert_eq!(line["error_type"], "document_parsing_exception");
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.contains("failed to parse field [age] of type [long]"),
            "Elasticsearch's words: {line}"
        );
    }
    assert_eq!(
        http().head(format!("{}/{index}", es_url())).send().unwrap().status(),
        404
    );

    // The real run fails on the same two documents, for the same reason.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 documents failed; see df.dead-letter.ndjson"));
    let real: Vec<Value> = std::fs::read_to_string(dir.path().join("df.dead-letter.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys = |lines: &[Value]| {
        let mut keys: Vec<String> = lines.iter().map(|l| l["key"].as_str().unwrap().to_owned()).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&real), keys(&lines));
    assert!(real.iter().all(|l| l["error_type"] == "document_parsing_exception"));
    assert_eq!(es_count(&index), 2);

    // Both written documents' keys gone, one failing key fixed: 2 of the index's 2
    // documents are stale, more than max_fraction; the guard stops the real run.
    redis.cli_pipe("DEL user:1 user:2\nHSET user:3 age 3\nDEL user:4\n");
    let strict = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("delete_stale: true", "delete_stale: {max_fraction: 0.4}");
    std::fs::write(&pipeline, strict).unwrap();
    let dry = run(&["--dry-run"]);
    let real = run(&[]);
    for out in [&dry, &real] {
        assert_eq!(out.status.code(), Some(1), "{}", describe(out));
        assert!(
            // The real run counts the document it wrote first (2 of 3); the dry run the
            // index as it is (2 of 2).
            String::from_utf8_lossy(&out.stdout).contains("error: would delete 2 of ")
                && String::from_utf8_lossy(&out.stdout).contains(&format!(
                    "from index {index}, more than delete_stale.max_fraction 0.4; nothing was deleted"
                )),
            "{}",
            describe(out)
        );
    }
    let out = run(&["--dry-run", "--allow-mass-delete"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn end_to_end_mappings_and_settings_elasticsearch_refuses_stop_the_run_before_redis_is_read() {
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 age 1\n");
    let index = unique_index("strng");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // What `validate` cannot know offline: the analyzers this cluster has.
        (
            "mappings: {properties: {age: {type: text, analyzer: nope}}}",
            "analyzer [nope] has not been configured in mappings",
        ),
        (
            "settings: {number_of_shardz: 1}",
            "unknown setting [index.number_of_shardz]",
        ),
    ];
    for (extra, reason) in cases {
        let pipeline = cli_pipeline(
            dir.path(),
            "strng",
            redis.port,
            &es_url(),
            &index,
            &format!("  {extra}\n"),
        );
        for dry in [true, false] {
            let scans = redis.cli(&["INFO", "commandstats"]).contains("cmdstat_scan");
            assert!(!scans, "nothing was read yet");
            let mut command = support::connector();
            command.current_dir(dir.path()).args(["run", "-q"]);
            if dry {
                command.arg("--dry-run");
            }
            let out = command.arg(&pipeline).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("Elasticsearch would refuse to create the index from the sink's settings and mappings")
                    && stdout.contains(reason),
                "{stdout}"
            );
        }
    }
    assert!(
        !redis.cli(&["INFO", "commandstats"]).contains("cmdstat_scan"),
        "Redis was never read"
    );
    assert_eq!(
        http().head(format!("{}/{index}", es_url())).send().unwrap().status(),
        404
    );
}

#[test]
fn end_to_end_every_dead_letter_line_can_be_replayed_and_only_the_first_five_are_logged() {
    // One pipeline meeting every per-record error: a template error, an invalid index
    // name, an id over 512 bytes, documents the mapping rejects. Every line carries its
    // document (or, before any document existed, the record the template saw).
    let redis = support::RedisServer::start(&[]);
    let prefix = unique_index("replay");
    let long_key = format!("h:{}", "l".repeat(600));
    let mut commands = format!("HSET h:ok idx {prefix}-a age 1\nHSET h:noidx age 2\nHSET h:upper idx {}-A age 3\nHSET {long_key} idx {prefix}-a age 4\n", prefix.to_uppercase());
    for i in 0..6 {
        commands.push_str(&format!("HSET h:bad{i} idx {prefix}-a age x{i}\n"));
    }
    redis.cli_pipe(&commands);
    let sink_index = format!("{prefix}-sink");
    let _guards = [IndexGuard(format!("{prefix}-a")), IndexGuard(sink_index.clone())];
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "replay.yaml",
        &format!(
            "name: replay\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    id: \"{{{{ key }}}}\"\n    index: \"{{{{ value.idx }}}}\"\n\
             \x20   document: {{age: \"{{{{ value.age }}}}\"}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {sink_index}\n\
             \x20 mappings: {{properties: {{age: {{type: long}}}}}}\n",
            redis.port,
            es_url()
        ),
    );
    let out = support::connector()
        .current_dir(dir.path())
        .args(["run", pipeline.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("replay.dead-letter.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_type = |ty: &str| lines.iter().filter(|l| l["error_type"] == ty).collect::<Vec<_>>();
    assert_eq!(lines.len(), 9, "{lines:#?}");
    let template = of_type("template_error");
    assert_eq!(template.len(), 1);
    assert_eq!(template[0]["record"]["key"], "h:noidx");
    assert_eq!(template[0]["record"]["value"], json!({"age": "2"}));
    let bad_name = of_type("invalid_index_name");
    assert_eq!(bad_name.len(), 1);
    assert_eq!(
        (bad_name[0]["_id"].as_str(), &bad_name[0]["document"]),
        (Some("h:upper"), &json!({"age": "3"}))
    );
    let long = of_type("invalid_id");
    assert_eq!(long.len(), 1);
    assert_eq!(
        (long[0]["_index"].as_str(), &long[0]["document"]),
        (Some(format!("{prefix}-a").as_str()), &json!({"age": "4"}))
    );
    let rejected = of_type("document_parsing_exception");
    assert_eq!(rejected.len(), 6);
    for line in &rejected {
        assert_eq!(line["_index"], format!("{prefix}-a"));
        assert!(line["_id"].as_str().unwrap().starts_with("h:bad"));
        assert!(line["document"]["age"].as_str().unwrap().starts_with('x'));
    }

    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("redis_connector::dead_letter"))
        .count();
    assert_eq!(logged, 6, "five failures and the count: {stderr}");
    assert!(
        stderr
            .contains("9 records failed in all (4 more than logged above); every one is in replay.dead-letter.ndjson"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("replay.dead-letter.ndjson").count(),
        1,
        "the failure is said once: {stdout}"
    );
    assert!(stdout.contains(&format!("into index {prefix}-a\n")), "{stdout}");
}

#[test]
fn end_to_end_an_index_chosen_by_a_template_transform_leaves_the_sinks_own_index_alone() {
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSELECT 1\nSET b 2\n");
    let prefix = unique_index("routed");
    let sink_index = format!("{prefix}-sink");
    let _guards = [
        IndexGuard(format!("{prefix}-0")),
        IndexGuard(format!("{prefix}-1")),
        IndexGuard(sink_index.clone()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "routed.yaml",
        &format!(
            "name: routed\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"*\"}}\n\
             transforms:\n  - type: template\n    index: \"{prefix}-{{{{ database }}}}\"\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {sink_index}\n  delete_stale: true\n",
            redis.port,
            es_url()
        ),
    );
    for _ in 0..2 {
        let out = run_cli(dir.path(), &pipeline);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("into indices {prefix}-0, {prefix}-1")),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(
        (es_count(&format!("{prefix}-0")), es_count(&format!("{prefix}-1"))),
        (1, 1)
    );
    assert_eq!(
        http()
            .head(format!("{}/{sink_index}", es_url()))
            .send()
            .unwrap()
            .status(),
        404,
        "the sink's own index is never created"
    );
}

#[test]
fn end_to_end_now_renders_a_timestamp_elasticsearch_maps_as_a_date() {
    let redis = support::RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\n");
    let index = unique_index("now");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "now.yaml",
        &format!(
            "name: now\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0}}\n\
             transforms:\n  - type: template\n    document: {{at: \"{{{{ now() }}}}\", run: \"{{{{ timestamp }}}}\"}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n",
            redis.port,
            es_url()
        ),
    );
    let out = run_cli(dir.path(), &pipeline);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mapping = get_json(&format!("{}/{index}/_mapping", es_url()));
    let properties = &mapping[&index]["mappings"]["properties"];
    assert_eq!(properties["at"]["type"], "date", "{mapping}");
    assert_eq!(properties["run"]["type"], "date", "{mapping}");
}

#[test]
fn end_to_end_a_dry_run_of_more_than_2000_documents_fails_on_every_one_the_mapping_rejects() {
    // Elasticsearch checks the first 2,000 documents of a dry run, then those the
    // offline check flags: bad documents anywhere in the SCAN order (one in 300) are
    // all found, in Elasticsearch's words.
    let redis = support::RedisServer::start(&[]);
    let mut commands = String::new();
    for i in 0..2100 {
        let age = if i % 300 == 7 { format!("bad{i}") } else { i.to_string() };
        commands.push_str(&format!("HSET user:{i} age {age}\n"));
    }
    redis.cli_pipe(&commands);
    let index = unique_index("dry-late");
    let _guard = IndexGuard(index.clone());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::write_file(
        dir.path(),
        "late.yaml",
        &format!(
            "name: late\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: 0, scan_count: 100}}\n\
             transforms:\n  - type: template\n    id: \"{{{{ key }}}}\"\n    document: {{age: \"{{{{ value.age }}}}\"}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n\
             \x20 mappings: {{properties: {{age: {{type: long}}}}}}\n",
            redis.port,
            es_url()
        ),
    );
    let out = support::connector()
        .current_dir(dir.path())
        .args(["run", "-q", "--dry-run", pipeline.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("read 2100 = would write 2093 + unchanged 0 + filtered 0 + skipped 0 + failed 7"),
        "{}",
        describe(&out)
    );
    let text = std::fs::read_to_string(dir.path().join("late.dead-letter.dry-run.ndjson")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7);
    for line in &lines {
        assert!(line["document"]["age"].as_str().unwrap().starts_with("bad"), "{line}");
        assert!(
            line["reason"]
                .as_str()
                .unwrap()
                .contains("failed to parse field [age] of type [long]"),
            "{line}"
        );
    }
}
