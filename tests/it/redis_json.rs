//! RedisJSON (`ReJSON-RL` keys) against the real module: RedisJSON 2.4.9, built by
//! `scripts/services` from `../shared/third_party/redisjson-2.4.9` and loaded into
//! private redis-servers with `--loadmodule`. Every test here is `#[ignore]`d with the
//! reason: without the module (a clone without `../shared`) the test runner lists them
//! as ignored, and `scripts/test` runs them with `--include-ignored` when it has the
//! module (see `support::redisjson`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::source::{commandstat, config, read, read_source, text_keys};
use crate::support::{
    connector, es_delete_index, es_get, es_url, http, redisjson, unique_index, write_file, RedisServer,
};
use redis_connector::document::default_id;
use redis_connector::record::{KeyType, RedisValue};
use redis_connector::stages::source::redis::RedisSource;
use serde_json::{json, Value};

// --- helpers -------------------------------------------------------------------------

/// `JSON.SET key $ json` through a connection (binary-safe, no shell quoting).
fn json_set(connection: &mut redis::Connection, key: &str, json: &str) {
    redis::cmd("JSON.SET")
        .arg(key)
        .arg("$")
        .arg(json)
        .exec(connection)
        .unwrap_or_else(|e| panic!("JSON.SET {key}: {e}"));
}

/// What Redis holds at `key`, as `JSON.GET key $` gives it (the root, unwrapped).
fn json_get(connection: &mut redis::Connection, key: &str) -> Value {
    let text: String = redis::cmd("JSON.GET")
        .arg(key)
        .arg("$")
        .query(connection)
        .unwrap_or_else(|e| panic!("JSON.GET {key}: {e}"));
    let Value::Array(mut roots) = serde_json::from_str(&text).unwrap() else {
        panic!("JSON.GET {key} $ gave no array: {text}");
    };
    roots.remove(0)
}

/// Writes a pipeline from `port` into an NDJSON file and runs it; returns the exit
/// code, the documents written and what it printed (summary, then log).
fn run_ndjson(dir: &Path, port: u16, source_extra: &str, transforms: &str) -> (i32, Vec<Value>, String) {
    let out = dir.join("out.ndjson");
    let _ = std::fs::remove_file(&out);
    let yaml = format!(
        "name: json\nsource:\n  type: redis\n  host: 127.0.0.1\n  port: {port}\n{source_extra}{transforms}sink:\n  type: ndjson\n  path: '{}'\n",
        out.display()
    );
    let file = write_file(dir, "pipeline.yaml", &yaml);
    let result = connector().arg("run").arg(&file).current_dir(dir).output().unwrap();
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let docs = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect();
    (result.status.code().unwrap_or(-1), docs, stderr)
}

fn doc_by_key<'a>(docs: &'a [Value], key: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["key"] == key)
        .unwrap_or_else(|| panic!("no document for `{key}` among {} documents", docs.len()))
}

fn keys_of(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(|d| d["key"].as_str().unwrap().to_owned()).collect()
}

/// A document of about `bytes` bytes of JSON text: an array of small objects.
fn big_document(bytes: usize) -> String {
    let items: Vec<Value> = (0..bytes / 64)
        .map(|i| json!({"i": i, "name": format!("item number {i:08}"), "ok": i % 2 == 0, "w": 0.25}))
        .collect();
    serde_json::to_string(&items).unwrap()
}

/// Every JSON shape a document can have, by key: `(key, JSON text)`.
fn shapes() -> Vec<(&'static str, String)> {
    let mut nested = json!("bottom");
    for depth in 0..40 {
        nested = if depth % 2 == 0 {
            json!({ format!("level{depth}"): nested })
        } else {
            json!([depth, nested])
        };
    }
    vec![
        ("json:object", r#"{"name":"Ada","age":36,"langs":["en","fr"],"address":{"city":"London"}}"#.to_owned()),
        ("json:array", r#"[1,"two",{"three":3},[4,[5]],null,true,false]"#.to_owned()),
        ("json:nested", nested.to_string()),
        (
            "json:unicode",
            r#"{"名前":"エイダ","emoji":"😀 \ud83d\ude00","escapes":"tab\tquote\"back\\slash\nnew line","control":"\u0001\u001f","accents":"àéîõü"}"#.to_owned(),
        ),
        (
            "json:numbers",
            r#"{"pi":3.141592653589793,"neg":-0.5,"tiny":1e-7,"huge":1.5e300,"third":0.3333333333333333,"int":42,"big":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"zero":0,"negzero":-0.0,"float_int":2.0}"#.to_owned(),
        ),
        ("json:string", r#""just a string""#.to_owned()),
        ("json:integer", "7".to_owned()),
        ("json:float", "2.5".to_owned()),
        ("json:true", "true".to_owned()),
        ("json:null", "null".to_owned()),
        ("json:empty-object", "{}".to_owned()),
        ("json:empty-array", "[]".to_owned()),
    ]
}

// --- documents -----------------------------------------------------------------------

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn every_json_shape_becomes_a_document_with_its_json_text_and_its_typed_value() {
    let redis = redisjson::server();
    let mut c = redis.connection();
    for (key, text) in shapes() {
        json_set(&mut c, key, &text);
    }
    let big = big_document(3 << 20);
    json_set(&mut c, "json:big", &big);
    let too_big = big_document(5 << 20);
    json_set(&mut c, "json:too-big", &too_big);
    redis.cli(&["SET", "plain", "a string"]);
    assert_eq!(redis.cli(&["TYPE", "json:object"]).trim(), "ReJSON-RL");
    let dir = tempfile::tempdir().unwrap();

    // The limit is checked from MEMORY USAGE before the read, and from the text read
    // when sizes are off: the 5 MB document is skipped either way.
    for sizes in [true, false] {
        let source = format!("  database: 0\n  max_value_bytes: 4MiB\n  size_in_bytes: {sizes}\n");
        let (code, docs, stderr) = run_ndjson(dir.path(), redis.port, &source, "");
        assert_eq!(code, 0, "sizes {sizes}: {stderr}");
        assert!(stderr.contains("skipped: too_large 1"), "sizes {sizes}: {stderr}");
        assert!(stderr.contains("json:too-big"), "the warning names the key: {stderr}");
        let mut expected: BTreeSet<String> = shapes().iter().map(|(k, _)| (*k).to_owned()).collect();
        expected.insert("json:big".to_owned());
        expected.insert("plain".to_owned());
        assert_eq!(keys_of(&docs), expected, "sizes {sizes}");

        // The default document: `value` is the JSON text of what Redis holds, as a string.
        for (key, text) in shapes()
            .iter()
            .map(|(k, t)| (*k, t.as_str()))
            .chain([("json:big", big.as_str())])
        {
            let doc = doc_by_key(&docs, key);
            assert_eq!(doc["key_type"], "ReJSON-RL", "{key}");
            assert_eq!(doc["database"], 0, "{key}");
            assert_eq!(doc["_id"], default_id(0, key.as_bytes()), "{key}");
            assert_eq!(doc["size_in_bytes"].is_u64(), sizes, "{key}: {}", doc["size_in_bytes"]);
            let value = doc["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{key}: value is not a string"));
            let read: Value = serde_json::from_str(value).unwrap_or_else(|e| panic!("{key}: {e}: {value}"));
            assert_eq!(read, json_get(&mut c, key), "{key}: what Redis holds");
            let written: Value = serde_json::from_str(text).unwrap();
            assert_eq!(read, written, "{key}: what was written");
        }
    }

    // A document whose memory is over 20 times the limit is over it unread (RedisJSON
    // keeps at most about 17.4 bytes per byte of text): 10 MB and 17 MB of memory
    // against 256 KiB, no JSON.GET for either.
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let (code, docs, stderr) = run_ndjson(dir.path(), redis.port, "  database: 0\n  max_value_bytes: 256KiB\n", "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docs.len(), shapes().len() + 1, "every shape and `plain`");
    assert_eq!(commandstat(&redis, "json.get"), shapes().len() as u64, "{stderr}");

    // A template sees the typed value: objects, arrays, numbers, booleans and null as
    // themselves, and can reach inside.
    let template = "transforms:\n  - type: template\n    document:\n      key: '{{ key }}'\n      type: '{{ key_type }}'\n      doc: { expr: value }\n      name: { expr: \"value.name if value is mapping and 'name' in value else none\" }\n";
    let (code, docs, stderr) = run_ndjson(
        dir.path(),
        redis.port,
        "  database: 0\n  max_value_bytes: 4MiB\n",
        template,
    );
    assert_eq!(code, 0, "{stderr}");
    for (key, text) in shapes()
        .iter()
        .map(|(k, t)| (*k, t.as_str()))
        .chain([("json:big", big.as_str())])
    {
        let doc = doc_by_key(&docs, key);
        let written: Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["doc"], written, "{key}");
        assert_eq!(doc["type"], "ReJSON-RL", "{key}");
    }
    assert_eq!(doc_by_key(&docs, "json:object")["name"], "Ada");
    assert_eq!(
        doc_by_key(&docs, "json:numbers")["doc"]["pi"],
        json!(std::f64::consts::PI)
    );
    assert_eq!(doc_by_key(&docs, "json:numbers")["doc"]["max"], json!(i64::MAX));
    assert_eq!(doc_by_key(&docs, "json:unicode")["doc"]["emoji"], "😀 😀");
}

// --- rules ---------------------------------------------------------------------------

/// JSON keys among keys of every other type, some of them named like the JSON ones.
fn json_among_other_types(redis: &RedisServer) -> BTreeSet<String> {
    let mut c = redis.connection();
    let mut json_keys = BTreeSet::new();
    for i in 0..300 {
        let key = format!("doc:{i}");
        json_set(&mut c, &key, &format!(r#"{{"n":{i}}}"#));
        json_keys.insert(key);
    }
    json_set(&mut c, "other:json", "[1]");
    json_keys.insert("other:json".to_owned());
    let mut commands = String::new();
    for i in 0..300 {
        commands += &format!(
            "SET doc:s{i} {i}\nHSET doc:h{i} f {i}\nRPUSH doc:l{i} a\nSADD doc:t{i} a\nZADD doc:z{i} 1 a\nXADD doc:x{i} * f v\n"
        );
    }
    redis.cli_pipe(&commands);
    json_keys
}

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn a_rule_with_every_json_type_spelling_selects_exactly_the_json_keys() {
    let redis = redisjson::server();
    let json_keys = json_among_other_types(&redis);
    // (One SCAN call walks this small database whole; its first line is the cursor 0.)
    let scanned: BTreeSet<String> = redis
        .cli(&["SCAN", "0", "TYPE", "ReJSON-RL", "COUNT", "100000"])
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(scanned, json_keys, "SCAN ... TYPE ReJSON-RL");
    let dir = tempfile::tempdir().unwrap();
    for (field, spelling) in [
        ("_type", "ReJSON-RL"),
        ("_type", "rejson-rl"),
        ("_type", "REJSON-RL"),
        ("_type", "JSON"),
        ("_type", "json"),
        ("_type", "Json"),
        ("type", "ReJSON-RL"),
        ("type", "json"),
    ] {
        // With and without a pattern, and with a small SCAN page (many pages).
        for pattern in ["", "key_pattern: '*', "] {
            let rules = format!("  scan_count: 50\n  rules:\n    - {{database: 0, {pattern}{field}: {spelling}}}\n");
            let (code, docs, stderr) = run_ndjson(dir.path(), redis.port, &rules, "");
            assert_eq!(code, 0, "{field}: {spelling}: {stderr}");
            assert_eq!(keys_of(&docs), json_keys, "{field}: {spelling} {pattern}");
            assert_eq!(docs.len(), json_keys.len(), "each key once");
            assert!(docs.iter().all(|d| d["key_type"] == "ReJSON-RL"));
        }
    }
    // A pattern and the type together; and another type never selects a JSON key.
    let rules = "  rules:\n    - {database: 0, key_pattern: 'doc:1*', _type: JSON}\n";
    let (code, docs, stderr) = run_ndjson(dir.path(), redis.port, rules, "");
    assert_eq!(code, 0, "{stderr}");
    let expected: BTreeSet<String> = json_keys.iter().filter(|k| k.starts_with("doc:1")).cloned().collect();
    assert_eq!(keys_of(&docs), expected);
    let rules = "  rules:\n    - {database: 0, key_pattern: 'doc:*', _type: STRING}\n";
    let (code, docs, stderr) = run_ndjson(dir.path(), redis.port, rules, "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docs.len(), 300);
    assert!(docs.iter().all(|d| d["key_type"] == "string"));
    // Every key, with no rule: the JSON ones are read as JSON among the others.
    let (code, docs, stderr) = run_ndjson(dir.path(), redis.port, "  database: 0\n", "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(docs.len(), json_keys.len() + 6 * 300);
    let read_as_json: BTreeSet<String> = docs
        .iter()
        .filter(|d| d["key_type"] == "ReJSON-RL")
        .map(|d| d["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(read_as_json, json_keys);
    assert_eq!(doc_by_key(&docs, "doc:7")["value"], r#"{"n":7}"#);
}

// --- keys changing while they are read ---------------------------------------------

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn a_json_key_overwritten_with_another_type_while_read_is_read_again_as_what_it_holds() {
    // Six keys of about 1.5 MB each: by their MEMORY USAGE each is a part of its own
    // (parts are at most 2 MiB), all inspected (TYPE) in one round trip, then read one
    // part at a time. With the test not receiving, the source stops after reading two
    // parts (one in the channel, one waiting to be sent); every key is changed then,
    // so the four not read yet change between the TYPE that said what they were and
    // their read. JSON.GET on a key that is now a string answers "Existing key has
    // wrong Redis type" (RedisJSON's words, not WRONGTYPE), GET on a key that is now
    // JSON answers WRONGTYPE: each is read again as what it holds now; a deleted one
    // is vanished, and so is one that left a JSON rule's selection.
    let redis = redisjson::server();
    let mut c = redis.connection();
    let doc = big_document(1_500_000);
    let old_doc: Value = serde_json::from_str(&doc).unwrap();
    let string = "s".repeat(1_500_000);
    for rule in ["", "JSON"] {
        for key in ["k1", "k2", "k3", "k4", "k6"] {
            redis.cli(&["DEL", key]);
            json_set(&mut c, key, &doc);
        }
        redis.cli(&["DEL", "k5"]);
        redis::cmd("SET").arg("k5").arg(&string).exec(&mut c).unwrap();
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let yaml = match rule {
            "" => "database: 0\npages_in_flight: 1\nmax_value_bytes: 100MiB\n".to_owned(),
            _ => format!("pages_in_flight: 1\nmax_value_bytes: 100MiB\nrules:\n  - {{database: 0, _type: {rule}}}\n"),
        };
        let source = RedisSource::build(&config(redis.port, &yaml)).unwrap();
        let run = read_source(source, 1, |batch| {
            if batch != 0 {
                return;
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while commandstat(&redis, "json.get") + commandstat(&redis, "get") < 2 {
                assert!(Instant::now() < deadline, "{rule}: the source never read two parts");
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut c = redis.connection();
            for key in ["k1", "k2", "k3", "k4"] {
                redis.cli(&["DEL", key]);
                redis::cmd("SET").arg(key).arg("now a string").exec(&mut c).unwrap();
            }
            redis.cli(&["DEL", "k5"]);
            json_set(&mut c, "k5", r#"{"now":"json"}"#);
            redis.cli(&["DEL", "k6"]);
        })
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
        let reads = commandstat(&redis, "json.get") + commandstat(&redis, "get");
        // Read before the change: sent as they were.
        let old: BTreeSet<&str> = ["k1", "k2", "k3", "k4", "k5", "k6"]
            .into_iter()
            .filter(|key| {
                run.keys().contains(key.as_bytes())
                    && match &run.record(key.as_bytes()).value {
                        RedisValue::Json(value) => value == &old_doc,
                        RedisValue::String(bytes) => bytes == string.as_bytes(),
                        _ => false,
                    }
            })
            .collect();
        assert_eq!(
            old.len(),
            2,
            "{rule}: two keys read before the change: {old:?} ({reads} reads)"
        );
        let vanished = run.counters.skipped_reasons.get("vanished").copied().unwrap_or(0);
        let mut expected_vanished = 0;
        for key in ["k1", "k2", "k3", "k4"].into_iter().filter(|k| !old.contains(k)) {
            if rule.is_empty() {
                let record = run.record(key.as_bytes());
                assert_eq!(record.key_type, KeyType::String, "{key}: read again as a string");
                assert_eq!(record.value, RedisValue::String(b"now a string".to_vec()), "{key}");
            } else {
                assert!(
                    !run.keys().contains(key.as_bytes()),
                    "{key}: a string now, out of the JSON rule"
                );
                expected_vanished += 1;
            }
        }
        if !old.contains("k6") {
            assert!(!run.keys().contains(b"k6".as_slice()), "{rule}: k6 was deleted");
            expected_vanished += 1;
        }
        match (rule, old.contains("k5")) {
            // A string at SCAN time: a JSON rule's SCAN ... TYPE never saw it.
            ("JSON", _) => assert!(!run.keys().contains(b"k5".as_slice()), "{rule}"),
            (_, true) => {}
            (_, false) => {
                let record = run.record(b"k5");
                assert_eq!(record.key_type, KeyType::Json, "k5: read again as JSON");
                assert_eq!(record.value, RedisValue::Json(json!({"now": "json"})));
            }
        }
        assert_eq!(
            vanished, expected_vanished,
            "{rule}: {:?}",
            run.counters.skipped_reasons
        );
        assert_eq!(run.counters.skipped_reasons.get("kept_changing_type"), None, "{rule}");
    }
}

// --- a server without the module, a user without JSON.GET ----------------------------

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn redis_refuses_to_load_json_keys_without_the_module_so_none_is_left_unreadable() {
    // What a server without the module does with JSON keys: a dump made with the module
    // does not load (Redis 7.0 stops at start-up), and RESTORE of a dumped JSON key is
    // refused, so no server answers TYPE `ReJSON-RL` for a key it cannot read. Reading
    // such a server finds its other keys and no `json_module_missing`.
    let with_module = redisjson::server();
    let mut c = with_module.connection();
    json_set(&mut c, "doc", r#"{"a":1}"#);
    with_module.cli(&["SET", "plain", "v"]);
    let dumped: Vec<u8> = redis::cmd("DUMP").arg("doc").query(&mut c).unwrap();
    with_module.cli(&["SAVE"]);
    let dump = with_module.dir.path().join("dump.rdb");

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&dump, dir.path().join("dump.rdb")).unwrap();
    let port = support::free_port();
    let out = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    // (It stops at once, with exit code 0 after checking the file.)
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("The RDB file contains module data I can't load: no matching module type 'ReJSON-RL'"),
        "{log}"
    );
    assert!(!log.contains("Ready to accept connections"), "{log}");

    let without = RedisServer::start(&[]);
    without.cli(&["SET", "plain", "v"]);
    let mut w = without.connection();
    let restore: redis::RedisResult<()> = redis::cmd("RESTORE").arg("doc").arg(0).arg(dumped).query(&mut w);
    let error = restore
        .expect_err("RESTORE of a JSON key into a server without the module")
        .to_string();
    assert!(error.contains("Bad data format"), "{error}");
    let run = read(config(without.port, "database: 0\n")).unwrap();
    assert_eq!(run.keys(), text_keys(&["plain"]));
    assert!(
        run.counters.skipped_reasons.is_empty(),
        "{:?}",
        run.counters.skipped_reasons
    );
}

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn a_user_denied_json_get_stops_the_run_naming_the_command_the_user_and_the_key() {
    // An ACL that lets a user read but not run JSON.GET (`+@read -json.get`): the JSON
    // key cannot be read, and skipping it would leave its document stale without a word.
    let redis = redisjson::server();
    let mut c = redis.connection();
    json_set(&mut c, "doc:1", r#"{"a":1}"#);
    redis.cli(&["SET", "plain", "v"]);
    redis.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">secret-pw",
        "~*",
        "+@read",
        "+@connection",
        "-json.get",
    ]);
    let yaml = "database: 0\nusername: reader\npassword: secret-pw\n";
    let error = read(config(redis.port, yaml)).err().expect("the run fails");
    eprintln!("{error}");
    assert!(error.contains("JSON.GET of key `doc:1` in db 0"), "{error}");
    assert!(error.contains("reader"), "{error}");
    assert!(error.contains("json.get"), "{error}");
    assert!(!error.contains("secret-pw"), "{error}");
}

// --- Redis Cluster -----------------------------------------------------------------

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn a_cluster_with_the_module_on_every_node_is_read_each_json_key_once_from_its_master() {
    let cluster = redisjson::cluster(3, 1);
    let mut commands = String::new();
    let mut json_keys = BTreeSet::new();
    for i in 0..600 {
        commands += &format!("JSON.SET doc:{i} $ '{{\"n\":{i},\"tags\":[\"a\",\"b\"]}}'\nSET s:{i} {i}\n");
        json_keys.insert(format!("doc:{i}").into_bytes());
    }
    cluster.cli_pipe(&commands);
    let masters = cluster.with_role("master");
    for master in &masters {
        let held = master.cli(&["SCAN", "0", "TYPE", "ReJSON-RL", "COUNT", "10000"]);
        assert!(
            held.lines().count() > 150,
            "JSON keys are spread over every master: {held}"
        );
    }
    let replica = cluster.with_role("slave")[0];
    for node in &cluster.nodes {
        node.cli(&["CONFIG", "RESETSTAT"]);
    }
    // Every key; then a JSON rule, from a replica's address.
    let run = read(config(masters[0].port, "database: \"*\"\nscan_count: 100\n")).unwrap();
    assert_eq!(run.records.len(), 1200, "each key once");
    let run = read(config(
        replica.port,
        "scan_count: 100\nrules:\n  - {database: 0, _type: ReJSON-RL}\n",
    ))
    .unwrap();
    assert_eq!(run.keys(), json_keys);
    assert_eq!(run.records.len(), json_keys.len(), "each key once");
    assert_eq!(
        run.value(b"doc:17"),
        &RedisValue::Json(json!({"n": 17, "tags": ["a", "b"]}))
    );
    assert!(run
        .records
        .iter()
        .all(|r| r.key_type == KeyType::Json && r.size_in_bytes.is_some_and(|s| s > 0)));
    assert_eq!(
        run.report.keys[&0].get("ReJSON-RL").copied(),
        Some(600),
        "{:?}",
        run.report.keys
    );
    for replica in cluster.with_role("slave") {
        assert_eq!(commandstat(replica, "json.get"), 0, "replicas are not read");
    }
    let on_masters: u64 = masters.iter().map(|m| commandstat(m, "json.get")).sum();
    assert!(on_masters >= 600, "{on_masters}");
}

// --- into Elasticsearch ------------------------------------------------------------

/// Deletes the test's index when dropped.
struct OwnIndex(String);

impl Drop for OwnIndex {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

fn run_into_es(dir: &Path, port: u16, index: &str, transforms: &str) -> (i32, String) {
    let yaml = format!(
        "name: json-es\nsource:\n  type: redis\n  host: 127.0.0.1\n  port: {port}\n  database: 0\n{transforms}sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  delete_stale: true\n",
        es_url()
    );
    let file = write_file(dir, "pipeline.yaml", &yaml);
    let result = connector().arg("run").arg(&file).current_dir(dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    (result.status.code().unwrap_or(-1), stderr)
}

fn es_search(index: &str, query: Value) -> Vec<Value> {
    let body: Value = http()
        .post(format!("{}/{index}/_search", es_url()))
        .json(&json!({"query": query, "size": 100}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone()
}

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn json_documents_reach_elasticsearch_as_text_by_default_and_as_fields_through_a_template() {
    let redis = redisjson::server();
    let mut c = redis.connection();
    for (key, text) in shapes() {
        json_set(&mut c, key, &text);
    }
    redis.cli(&["SET", "plain", "a string"]);
    let dir = tempfile::tempdir().unwrap();

    // The default document: `value` holds the JSON text, searchable as text.
    let index = OwnIndex(unique_index("json-default"));
    let (code, stderr) = run_into_es(dir.path(), redis.port, &index.0, "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(support::es_count(&index.0), shapes().len() as u64 + 1);
    for (key, text) in shapes() {
        let source = es_get(&index.0, &default_id(0, key.as_bytes())).unwrap_or_else(|| panic!("{key}"));
        assert_eq!(source["key_type"], "ReJSON-RL", "{key}");
        let value: Value = serde_json::from_str(source["value"].as_str().unwrap()).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(&text).unwrap(), "{key}");
    }
    let hits = es_search(&index.0, json!({"match": {"value": "London"}}));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["_source"]["key"], "json:object");

    // A template that keeps the object documents' fields: the mapping gets them.
    let typed = OwnIndex(unique_index("json-typed"));
    let template = "transforms:\n  - type: filter\n    rules:\n      - {policy: include, field: key, rule: equals, value: 'json:object'}\n      - {policy: exclude, field: key, rule: contains, value: ''}\n  - type: template\n    id: '{{ key }}'\n    document:\n      redis_key: '{{ key }}'\n      name: { expr: value.name }\n      age: { expr: value.age }\n      langs: { expr: value.langs }\n      address: { expr: value.address }\n";
    let (code, stderr) = run_into_es(dir.path(), redis.port, &typed.0, template);
    assert_eq!(code, 0, "{stderr}");
    let source = es_get(&typed.0, "json:object").unwrap();
    assert_eq!(source["address"]["city"], "London");
    assert_eq!(source["langs"], json!(["en", "fr"]));
    assert_eq!(source["redis_key"], "json:object");
    let hits = es_search(&typed.0, json!({"term": {"age": 36}}));
    assert_eq!(hits.len(), 1);

    // Redis changes: the next run rewrites the document and deletes the stale one.
    json_set(&mut c, "json:object", r#"{"name":"Ada","address":{"city":"Paris"}}"#);
    redis.cli(&["DEL", "json:array"]);
    let (code, stderr) = run_into_es(dir.path(), redis.port, &index.0, "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(support::es_count(&index.0), shapes().len() as u64);
    assert!(es_get(&index.0, &default_id(0, b"json:array")).is_none());
    let hits = es_search(&index.0, json!({"match": {"value": "Paris"}}));
    assert_eq!(hits.len(), 1);
}
