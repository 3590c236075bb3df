//! Unit tests of the template transform, each building it from YAML.

use super::*;
use crate::dead_letter::DeadLetter;
use crate::record::{KeyType, RedisValue};
use crate::stages::RunOptions;
use crate::templating::record_json;
use serde_json::json;

fn config(yaml: &str) -> TemplateConfig {
    crate::config::yaml::from_str(yaml).unwrap()
}

#[test]
fn reads_says_which_record_fields_the_templates_use() {
    let reads = |yaml: &str| TemplateTransform::build(&config(yaml)).ok().unwrap().reads("ttl");
    assert!(!reads("document: {k: '{{ key }}', v: {expr: value}}"));
    assert!(!reads("id: '{{ key }}'"));
    assert!(reads("document: {t: '{% if ttl %}{{ ttl }}{% endif %}'}"));
    assert!(reads("document: {t: {expr: 'ttl or 0'}}"));
    assert!(reads("document: {expr: '{\"t\": ttl}'}"));
    assert!(reads("index: 'i-{{ ttl }}'"));
    assert!(
        reads("document: {all: '{{ debug() }}'}"),
        "debug() shows the whole context"
    );
    assert!(
        !reads("document: {t: '{% set ttl = 1 %}{{ ttl }}'}"),
        "a local of that name"
    );
}

#[test]
fn a_gone_key_is_located_only_when_id_and_index_read_nothing_but_key_and_database() {
    let locates = |yaml: &str| TemplateTransform::build(&config(yaml)).ok().unwrap().locates_by_key();
    assert!(locates("document: {v: {expr: value}}"), "the default id");
    assert!(locates(
        "id: '{{ database }}-{{ key | md5 }}'\nindex: 'i-{{ database }}'"
    ));
    assert!(!locates("id: '{{ value.email }}'"));
    assert!(!locates("index: 'i-{{ key_type }}'"));
}

#[test]
fn a_delete_gets_its_id_and_index_but_no_body() {
    let transform = TemplateTransform::build(&config(
        "id: 'u-{{ key }}'\nindex: 'i-{{ database }}'\ndocument: {name: '{{ value.name }}'}",
    ))
    .unwrap();
    let ctx = StageContext::new(
        "p",
        "transforms[0]",
        crate::dead_letter::DeadLetter::new("/nonexistent/dl"),
        Default::default(),
    );
    let batch = transform.apply(vec![Record::gone(2, b"user:1".to_vec())], &ctx);
    let document = batch[0].document.as_ref().unwrap();
    assert_eq!(
        (document.id.as_str(), document.index.as_deref()),
        ("u-user:1", Some("i-2"))
    );
    assert!(document.body.is_empty());
    assert_eq!(
        ctx.counters.snapshot().failed,
        0,
        "value.name is not rendered for a delete"
    );
}

fn hash_record() -> Record {
    Record {
        database: 2,
        key: b"user:1".to_vec(),
        key_type: KeyType::Hash,
        value: RedisValue::Hash(vec![
            (b"name".to_vec(), b"Ada".to_vec()),
            (b"age".to_vec(), b"36".to_vec()),
        ]),
        size_in_bytes: Some(80),
        ttl: None,
        document: None,
        operation: crate::record::Operation::Upsert,
    }
}

fn ctx(dir: &tempfile::TempDir) -> StageContext {
    StageContext::new(
        "users",
        "transforms[0]",
        DeadLetter::new(dir.path().join("dl.ndjson")),
        RunOptions::default(),
    )
}

#[test]
fn expressions_keep_their_type_and_templates_give_strings() {
    let t = TemplateTransform::build(&config(
        r#"
document:
  name: "{{ value.name | upper }}"
  age: { expr: "value.age | int" }
  adult: { expr: "value.age | int >= 18" }
  tags: { expr: "['a', 'b']" }
  nothing: { expr: "none" }
  nested: { db: { expr: "database" }, literal: 5 }
"#,
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let doc = t.render(&hash_record(), &ctx(&dir)).unwrap();
    assert_eq!(
        Json::Object(doc.body),
        json!({"name": "ADA", "age": 36, "adult": true, "tags": ["a", "b"], "nothing": null,
                   "nested": {"db": 2, "literal": 5}})
    );
    assert_eq!(doc.id, default_id(2, b"user:1"));
}

#[test]
fn templates_see_values_as_to_json_gives_them_repeated_stream_fields_included() {
    use crate::record::StreamEntry;
    let t = TemplateTransform::build(&config("document: {v: {expr: value}}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut record = hash_record();
    record.key_type = KeyType::Stream;
    record.value = RedisValue::Stream(vec![StreamEntry {
        id: "1-0".into(),
        fields: vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"a".to_vec(), b"2".to_vec()),
            (vec![0xff], b"b".to_vec()),
        ],
    }]);
    let doc = t.render(&record, &ctx(&dir)).unwrap();
    assert_eq!(doc.body["v"], record.value.to_json());
    assert_eq!(doc.body["v"][0]["fields"]["a"], json!(["1", "2"]));
}

#[test]
fn syntax_errors_name_the_field_and_line() {
    let errors = TemplateTransform::build(&config(
        "id: \"{{ key\"\ndocument:\n  a: \"line one\\n{{ value.name | }}\"\n  b: { expr: \"1 +\" }\n",
    ))
    .err()
    .unwrap();
    let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/id", "/document/a", "/document/b/expr"], "{errors:?}");
    assert!(errors[1].message.contains("line 2"), "{}", errors[1].message);
    assert!(
        errors[0].message.starts_with("invalid template: syntax error"),
        "{}",
        errors[0].message
    );
}

#[test]
fn unknown_variable_names_are_build_errors() {
    let errors = TemplateTransform::build(&config(
        "id: \"{{ kye }}\"\ndocument:\n  a: \"{{ vlaue.name }}\"\n  b: { expr: \"sizeinbytes + zzz\" }\n",
    ))
    .err()
    .unwrap();
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.pointer.as_str(), e.message.as_str()))
        .collect();
    let sees =
        "a template sees `key`, `database`, `key_type`, `value`, `size_in_bytes`, `ttl`, `pipeline`, `timestamp`";
    assert!(
        found.contains(&("/id", &*format!("unknown variable `kye`: {sees}, did you mean `key`?"))),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "/document/a",
            &*format!("unknown variable `vlaue`: {sees}, did you mean `value`?")
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "/document/b/expr",
            &*format!("unknown variable `sizeinbytes`: {sees}, did you mean `size_in_bytes`?")
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&("/document/b/expr", &*format!("unknown variable `zzz`: {sees}"))),
        "{found:?}"
    );
    assert_eq!(found.len(), 4, "{found:?}");
}

#[test]
fn unknown_filters_are_build_errors() {
    let errors = TemplateTransform::build(&config(
            "id: \"{{ key | lowr }}\"\ndocument:\n  a: \"x | y {{ value | to_json }} {# | nope #}{{ '|nope' }}\"\n  b: { expr: \"key | md5 | upper | uppr\" }\n",
        ))
        .err()
        .unwrap();
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.pointer.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("/document/b/expr", "unknown filter `uppr`, did you mean `upper`?"),
            ("/id", "unknown filter `lowr`, did you mean `lower`?"),
            ("/document/a", "unknown filter `to_json`, did you mean `tojson`?"),
        ]
    );
}

#[test]
fn a_plain_index_that_is_no_index_name_is_a_build_error() {
    let errors = TemplateTransform::build(&config("index: Users\n")).err().unwrap();
    assert_eq!(
        (errors[0].pointer.as_str(), errors[0].message.as_str()),
        ("/index", "index name `Users` must be lower case")
    );
    let errors = TemplateTransform::build(&config("index: \"Users-{{ database }}\"\n"))
        .err()
        .unwrap();
    assert!(
        errors[0]
            .message
            .starts_with("the index template writes `U` outside `{{ }}`"),
        "{errors:?}"
    );
    assert!(TemplateTransform::build(&config("index: \" users-{{ key | lower }} \"\n")).is_ok());
}

#[test]
fn locals_loops_and_globals_are_known_names() {
    let built = TemplateTransform::build(&config(
            "document:\n  a: \"{% set x = key %}{{ x }}{% for i in range(2) %}{{ loop.index }}{{ i }}{% endfor %}\"\n  b: \"{{ now() }} {{ timestamp }} {{ pipeline }} {{ ttl }} {{ dict(a=1) }}\"\n  c: { expr: \"[value, database, key_type, size_in_bytes] | length\" }\n",
        ));
    assert!(built.is_ok(), "{:?}", built.err());
}

#[test]
fn undefined_variables_fail_the_record_with_its_field_path() {
    let t = TemplateTransform::build(&config("document:\n  x: \"{{ value.missing }}\"\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let failure = t.render(&hash_record(), &ctx(&dir)).unwrap_err();
    assert_eq!(failure.pointer, "/document/x");
    assert_eq!(failure.message, "`value.missing`: undefined value (line 1)");
    let t = TemplateTransform::build(&config("document:\n  x: {expr: \"value.gone | int\"}\n")).unwrap();
    let failure = t.render(&hash_record(), &ctx(&dir)).unwrap_err();
    assert_eq!(failure.pointer, "/document/x");
    assert!(
        failure.message.starts_with("`value.gone | int`: undefined value"),
        "{}",
        failure.message
    );
    let t = TemplateTransform::build(&config("document:\n  x: \"Hi {{ value.gone | upper }}!\"\n")).unwrap();
    let failure = t.render(&hash_record(), &ctx(&dir)).unwrap_err();
    assert!(
        failure.message.starts_with("`value.gone | upper`: undefined value"),
        "{}",
        failure.message
    );
}

#[test]
fn the_context_has_the_shape_of_record_to_context_for_every_type() {
    use crate::record::StreamEntry;
    let values = [
        (KeyType::String, RedisValue::String(vec![0xff, 0x00])),
        (KeyType::String, RedisValue::String(b"text".to_vec())),
        (
            KeyType::Hash,
            RedisValue::Hash(vec![(vec![0xfe], b"v".to_vec()), (b"n".to_vec(), vec![0xff])]),
        ),
        (KeyType::List, RedisValue::List(vec![b"a".to_vec(), b"b".to_vec()])),
        (KeyType::Set, RedisValue::Set(vec![b"x".to_vec()])),
        (
            KeyType::ZSet,
            RedisValue::ZSet(vec![(b"m".to_vec(), 1.5), (b"n".to_vec(), f64::NEG_INFINITY)]),
        ),
        (
            KeyType::Stream,
            RedisValue::Stream(vec![StreamEntry {
                id: "1-1".into(),
                fields: vec![(b"f".to_vec(), b"v".to_vec())],
            }]),
        ),
        (
            KeyType::Json,
            RedisValue::Json(json!({"a": [1, 2.5, null, true], "b": {"c": "d"}})),
        ),
    ];
    for (key_type, value) in values {
        let mut record = hash_record();
        record.key = vec![0xff, b'k'];
        record.key_type = key_type;
        record.value = value;
        record.ttl = Some(5);
        let mut expected = record_json(&record);
        expected.insert("pipeline".into(), json!("p"));
        assert_eq!(
            to_json(&record_context(&record, "p", None)).unwrap(),
            Json::Object(expected.clone()),
            "the index template's context"
        );
        expected.insert("timestamp".into(), json!("T"));
        assert_eq!(
            to_json(&record_context(&record, "p", Some("T"))).unwrap(),
            Json::Object(expected)
        );
    }
}

#[test]
fn md5_filter_matches_the_default_id() {
    let t = TemplateTransform::build(&config("id: \"{{ (database ~ '/' ~ key) | md5 }}\"\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let doc = t.render(&hash_record(), &ctx(&dir)).unwrap();
    assert_eq!(doc.id, default_id(2, b"user:1"));
    assert_eq!(doc.body["key"], "user:1", "no document: the default body");
}
