//! The `template` and `filter` transforms through the stage registry, as the executor
//! drives them: typed output, per-record errors sent to the dead-letter file, and every
//! basic sync rule.

use redis_connector::config::model::TransformConfig;
use redis_connector::dead_letter::DeadLetter;
use redis_connector::document::default_id;
use redis_connector::record::{Batch, KeyType, Record, RedisValue, StreamEntry};
use redis_connector::stages::{RunOptions, StageContext, Transform};
use serde_json::{json, Value};

fn transform(yaml: &str) -> Transform {
    let config: TransformConfig = redis_connector::config::yaml::from_str(yaml).unwrap();
    match Transform::build(&config) {
        Ok(t) => t,
        Err(errors) => panic!("{errors:?}"),
    }
}

struct Stage {
    _dir: tempfile::TempDir,
    ctx: StageContext,
    dead_letter: std::path::PathBuf,
}

fn stage() -> Stage {
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("users.dead-letter.ndjson");
    let ctx = StageContext::new(
        "users",
        "transforms[0]",
        DeadLetter::new(&dead_letter),
        RunOptions::default(),
    );
    Stage {
        _dir: dir,
        ctx,
        dead_letter,
    }
}

fn record(db: u32, key: &str, key_type: KeyType, value: RedisValue) -> Record {
    Record {
        database: db,
        key: key.as_bytes().to_vec(),
        key_type,
        value,
        size_in_bytes: Some(72),
        ttl: None,
        document: None,
        operation: redis_connector::record::Operation::Upsert,
    }
}

fn string(key: &str, value: &str) -> Record {
    record(0, key, KeyType::String, RedisValue::String(value.as_bytes().to_vec()))
}

fn hash(key: &str, fields: &[(&str, &str)]) -> Record {
    let pairs = fields
        .iter()
        .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    record(1, key, KeyType::Hash, RedisValue::Hash(pairs))
}

fn body(record: &Record) -> Value {
    Value::Object(record.document.as_ref().expect("a rendered document").body.clone())
}

fn keys(batch: &Batch) -> Vec<String> {
    batch
        .iter()
        .map(|r| String::from_utf8(r.key.clone()).unwrap())
        .collect()
}

#[test]
fn expression_leaves_keep_their_type_and_string_leaves_are_strings() {
    let t = transform(
        r#"
type: template
document:
  name: "{{ value.name }}"
  age: { expr: "value.age | int" }
  score: { expr: "value.score | float" }
  adult: { expr: "(value.age | int) >= 18" }
  tags: { expr: "value.tags.split(',')" }
  profile: { expr: "{'city': value.city, 'db': database}" }
  missing_ok: { expr: "value.nickname | default(none)" }
  age_text: "{{ value.age }}"
  constant: 42
"#,
    );
    let s = stage();
    let batch = t.apply(
        vec![hash(
            "user:1",
            &[
                ("name", "Ada"),
                ("age", "36"),
                ("score", "9.5"),
                ("tags", "a,b"),
                ("city", "London"),
            ],
        )],
        &s.ctx,
    );
    assert_eq!(batch.len(), 1);
    assert_eq!(
        body(&batch[0]),
        json!({
            "name": "Ada", "age": 36, "score": 9.5, "adult": true, "tags": ["a", "b"],
            "profile": {"city": "London", "db": 1}, "missing_ok": null, "age_text": "36", "constant": 42
        })
    );
    assert_eq!(
        batch[0].document.as_ref().unwrap().id,
        default_id(1, b"user:1"),
        "no id template: the default id"
    );
}

#[test]
fn the_whole_document_can_be_one_expression_yielding_a_map() {
    let t = transform("type: template\ndocument: { expr: \"value\" }\n");
    let s = stage();
    let batch = t.apply(vec![hash("user:2", &[("name", "Grace"), ("lang", "COBOL")])], &s.ctx);
    assert_eq!(body(&batch[0]), json!({"name": "Grace", "lang": "COBOL"}));
}

#[test]
fn a_whole_document_expression_that_is_not_a_map_dead_letters_the_record() {
    let t = transform("type: template\ndocument: { expr: \"value\" }\n");
    let s = stage();
    let batch = t.apply(vec![string("plain", "text"), hash("h", &[("a", "1")])], &s.ctx);
    assert_eq!(keys(&batch), ["h"]);
    let line: Value = serde_json::from_str(std::fs::read_to_string(&s.dead_letter).unwrap().trim()).unwrap();
    assert_eq!(line["key"], "plain");
    assert_eq!(line["error_type"], "template_error");
    assert!(line["reason"]
        .as_str()
        .unwrap()
        .starts_with("/document: the document expression must yield a mapping"));
}

#[test]
fn id_and_index_templates_set_the_document_id_and_target_index() {
    let t = transform(
        "type: template\nid: \"{{ database }}:{{ key | lower }}\"\nindex: \"redis-{{ key_type }}-{{ pipeline }}\"\n",
    );
    let s = stage();
    let batch = t.apply(vec![string("User:7", "hello")], &s.ctx);
    let document = batch[0].document.as_ref().unwrap();
    assert_eq!(document.id, "0:user:7");
    assert_eq!(document.index.as_deref(), Some("redis-string-users"));
    assert_eq!(
        document.body["value"], "hello",
        "no document template: the default body"
    );
    assert_eq!(document.body["key_type"], "string");
}

#[test]
fn every_record_field_and_the_useful_filters_are_available() {
    let t = transform(
        r#"
type: template
document:
  key: "{{ key }}"
  database: { expr: "database" }
  key_type: "{{ key_type }}"
  size: { expr: "size_in_bytes" }
  ttl: { expr: "ttl" }
  pipeline: "{{ pipeline }}"
  digest: "{{ (database ~ '/' ~ key) | md5 }}"
  upper: "{{ key.upper() }}"
  json: "{{ value | tojson }}"
  year: "{{ 0 | datetimeformat(format='[year]') }}"
  stamp: { expr: "timestamp is string" }
"#,
    );
    let s = stage();
    let mut rec = record(3, "z", KeyType::ZSet, RedisValue::ZSet(vec![(b"m".to_vec(), 2.0)]));
    rec.ttl = Some(60);
    let batch = t.apply(vec![rec], &s.ctx);
    assert_eq!(
        body(&batch[0]),
        json!({
            "key": "z", "database": 3, "key_type": "zset", "size": 72, "ttl": 60, "pipeline": "users",
            "digest": default_id(3, b"z"), "upper": "Z", "json": "[{\"member\":\"m\",\"score\":2.0}]",
            "year": "1970", "stamp": true
        })
    );
}

#[test]
fn an_undefined_variable_dead_letters_that_record_with_its_key_and_field_path_and_the_batch_goes_on() {
    let t = transform(
        "type: template\nid: \"{{ key }}\"\ndocument:\n  name: \"{{ value.name }}\"\n  nested:\n    city: \"Lives in\\n{{ value.city }}\"\n",
    );
    let s = stage();
    let batch = t.apply(
        vec![
            hash("ok:1", &[("name", "Ada"), ("city", "London")]),
            hash("bad:1", &[("name", "Bob")]),
            hash("ok:2", &[("name", "Cy"), ("city", "Paris")]),
            string("bad:2", "no fields here"),
        ],
        &s.ctx,
    );
    assert_eq!(keys(&batch), ["ok:1", "ok:2"], "the run goes on with the other records");
    assert_eq!(
        body(&batch[1]),
        json!({"name": "Cy", "nested": {"city": "Lives in\nParis"}})
    );
    assert_eq!(s.ctx.counters.snapshot().failed, 2);

    let text = std::fs::read_to_string(&s.dead_letter).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["key"], "bad:1");
    assert_eq!(lines[0]["database"], 1);
    assert_eq!(lines[0]["pipeline"], "users");
    assert_eq!(lines[0]["stage"], "transforms[0]");
    assert_eq!(lines[0]["_id"], "bad:1", "the id rendered before the failure");
    assert_eq!(lines[0]["error_type"], "template_error");
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("/document/nested/city: `value.city`: undefined value"),
        "{reason}"
    );
    assert!(reason.contains("(line 2)"), "{reason}");
    assert!(lines[1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("/document/name: `value.name`: undefined value"));
}

#[test]
fn template_syntax_errors_are_reported_by_validate_with_the_field_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "name: p\nsource: {type: redis, host: 127.0.0.1}\ntransforms:\n  - type: template\n    document:\n      ok: \"{{ key }}\"\n      name: \"{{ value.name | }}\"\nsink: {type: ndjson, path: out.ndjson}\n",
    )
    .unwrap();
    let errors = redis_connector::pipeline::load_pipeline(&path).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].pointer, "/transforms/0/document/name");
    assert!(
        errors[0].message.starts_with("invalid template: syntax error"),
        "{}",
        errors[0].message
    );
    assert!(errors[0].message.contains("line 1"), "{}", errors[0].message);
}

fn filter(rules: &str) -> Transform {
    transform(&format!("type: filter\nrules:\n{rules}"))
}

fn kept(t: &Transform, records: Vec<Record>) -> Vec<String> {
    let s = stage();
    let n = records.len() as u64;
    let batch = t.apply(records, &s.ctx);
    assert_eq!(
        s.ctx.counters.snapshot().filtered,
        n - batch.len() as u64,
        "dropped records count as filtered"
    );
    keys(&batch)
}

#[test]
fn each_filter_rule_matches_as_the_reference_does() {
    let recs = || {
        vec![
            string("user:1", "Ada Lovelace"),
            string("tmp:2", "scratch"),
            string("user:3", "Alan Turing"),
        ]
    };
    let rule = |rule: &str, field: &str, value: &str| {
        filter(&format!(
            "  - {{policy: exclude, field: {field}, rule: {rule}, value: {value}}}\n"
        ))
    };
    assert_eq!(kept(&rule("equals", "value", "scratch"), recs()), ["user:1", "user:3"]);
    assert_eq!(kept(&rule("contains", "value", "Love"), recs()), ["tmp:2", "user:3"]);
    assert_eq!(
        kept(&rule("starts_with", "key", "'tmp:'"), recs()),
        ["user:1", "user:3"]
    );
    assert_eq!(kept(&rule("ends_with", "value", "Turing"), recs()), ["user:1", "tmp:2"]);
    assert_eq!(kept(&rule("regex", "key", "'user:[13]'"), recs()), ["tmp:2"]);
    assert_eq!(
        kept(&rule("regex", "value", "Lovelace"), recs()),
        ["user:1", "tmp:2", "user:3"],
        "anchored at the start"
    );
    assert_eq!(
        kept(&rule("'<'", "key", "'u'"), recs()),
        ["user:1", "user:3"],
        "text compares as text"
    );
    assert_eq!(kept(&rule("'>'", "key", "'u'"), recs()), ["tmp:2"]);
}

#[test]
fn numbers_compare_as_numbers_even_when_redis_holds_them_as_text() {
    let recs = || {
        vec![
            hash("a", &[("age", "9")]),
            hash("b", &[("age", "10")]),
            hash("c", &[("age", "100.5")]),
        ]
    };
    let over_nine = filter("  - {policy: exclude, field: value.age, rule: '>', value: 9}\n");
    assert_eq!(
        kept(&over_nine, recs()),
        ["a"],
        "as text, \"10\" and \"100.5\" sort before \"9\""
    );
    let under_ten = filter("  - {policy: exclude, field: value.age, rule: '<', value: 10}\n");
    assert_eq!(kept(&under_ten, recs()), ["b", "c"]);
    let equals = filter("  - {policy: exclude, field: value.age, rule: equals, value: 10.0}\n");
    assert_eq!(kept(&equals, recs()), ["a", "c"]);
    let typed = transform("type: template\ndocument:\n  age: { expr: \"value.age | float\" }\n");
    let s = stage();
    let rendered = typed.apply(recs(), &s.ctx);
    let rendered_over_nine = filter("  - {policy: exclude, field: age, rule: '>', value: 9}\n");
    assert_eq!(
        kept(&rendered_over_nine, rendered),
        ["a"],
        "a rendered number field compares the same"
    );
}

#[test]
fn the_first_matching_rule_decides_and_no_match_includes() {
    let t = filter(
        "  - {policy: include, field: key, rule: equals, value: 'tmp:keep'}\n  - {policy: exclude, field: key, rule: starts_with, value: 'tmp:'}\n  - {policy: include, field: key, rule: starts_with, value: 'tmp:'}\n",
    );
    let recs = vec![string("tmp:keep", ""), string("tmp:drop", ""), string("other", "")];
    assert_eq!(kept(&t, recs), ["tmp:keep", "other"]);
}

#[test]
fn filters_read_the_rendered_document_when_a_template_ran_before() {
    let template =
        transform("type: template\ndocument:\n  kind: \"{{ 'admin' if key.startswith('adm') else 'user' }}\"\n");
    let s = stage();
    let rendered = template.apply(vec![string("adm:1", ""), string("u:2", "")], &s.ctx);
    let t = filter("  - {policy: exclude, field: kind, rule: equals, value: admin}\n");
    assert_eq!(kept(&t, rendered), ["u:2"]);
    // A name the document does not have is the record's: `key` is still the Redis key.
    let by_key = filter("  - {policy: exclude, field: key, rule: equals, value: 'u:2'}\n");
    let rendered = template.apply(vec![string("u:2", ""), string("u:3", "")], &s.ctx);
    assert_eq!(kept(&by_key, rendered), ["u:3"]);
    let missing = filter("  - {policy: exclude, field: kind.nope, rule: equals, value: user}\n");
    let rendered = template.apply(vec![string("u:2", "")], &s.ctx);
    assert_eq!(kept(&missing, rendered), ["u:2"], "a missing field never matches");
}

#[test]
fn filters_reach_into_lists_streams_and_other_types_with_dots() {
    let stream = record(
        0,
        "events",
        KeyType::Stream,
        RedisValue::Stream(vec![StreamEntry {
            id: "1-0".into(),
            fields: vec![(b"kind".to_vec(), b"login".to_vec())],
        }]),
    );
    let list = record(0, "queue", KeyType::List, RedisValue::List(vec![b"job-1".to_vec()]));
    let t = filter(
        "  - {policy: exclude, field: value.0.fields.kind, rule: equals, value: login}\n  - {policy: exclude, field: key_type, rule: equals, value: list}\n",
    );
    assert_eq!(kept(&t, vec![stream, list, string("s", "")]), ["s"]);
}

#[test]
fn invalid_filter_rules_are_validate_errors() {
    let config: TransformConfig = redis_connector::config::yaml::from_str(
        "type: filter\nrules:\n  - {policy: exclude, field: key, rule: regex, value: '[unclosed'}\n  - {policy: exclude, field: key, rule: equals, value: [1, 2]}\n",
    )
    .unwrap();
    let errors = Transform::build(&config).err().unwrap();
    let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/rules/0/value", "/rules/1/value"]);
    assert!(errors[0].message.contains("invalid regex"), "{}", errors[0].message);
}
