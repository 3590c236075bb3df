//! Warnings `validate` prints about a valid pipeline: things that work but defeat a
//! feature. Today one: a template that calls `now()` renders a different document on
//! every run, so change-aware sync rewrites every document every time.

use serde_json::Value;

use crate::config::model::{Pipeline, SinkConfig, TransformConfig};

/// One warning: the field's JSON pointer and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub pointer: String,
    pub message: String,
}

/// Every template of `pipeline` that calls `now()`.
pub fn pipeline_warnings(pipeline: &Pipeline) -> Vec<Warning> {
    let mut found = Vec::new();
    for (i, transform) in pipeline.transforms.iter().enumerate() {
        if let TransformConfig::Template(template) = transform {
            let base = format!("/transforms/{i}");
            for (field, text) in [("id", &template.id), ("index", &template.index)] {
                if let Some(text) = text {
                    check(&format!("{base}/{field}"), text, &mut found);
                }
            }
            if let Some(document) = &template.document {
                walk(&format!("{base}/document"), document, &mut found);
            }
        }
    }
    if let SinkConfig::Elasticsearch(es) = &pipeline.sink {
        check("/sink/index", &es.index, &mut found);
    }
    found
}

fn walk(pointer: &str, value: &Value, found: &mut Vec<Warning>) {
    match value {
        Value::String(text) => check(pointer, text, found),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{pointer}/{i}"), item, found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                walk(&format!("{pointer}/{key}"), item, found);
            }
        }
        _ => {}
    }
}

fn check(pointer: &str, text: &str, found: &mut Vec<Warning>) {
    if calls_now(text) {
        found.push(Warning {
            pointer: pointer.to_owned(),
            message: "the template calls now(): every run renders a different document, so change-aware \
                      sync rewrites every document on every run; use the default document's _timestamp \
                      (the run's start, left out of the content hash) or a value from Redis instead"
                .to_owned(),
        });
    }
}

/// Whether `text` calls `now(` (spaces allowed before the parenthesis), as a name of
/// its own (`snow()` is not `now()`).
fn calls_now(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("now").map(|i| i + from) {
        let before_ok = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let after = text[at + 3..].trim_start();
        if before_ok && after.starts_with('(') {
            return true;
        }
        from = at + 3;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_found_in_every_template_field() {
        let pipeline: Pipeline = crate::config::yaml::from_str(
            "name: p\nsource: {type: redis, host: h}\ntransforms:\n  - type: template\n    id: '{{ key }}'\n    \
             document: {at: '{{ now() }}', n: {expr: 'now ()'}, list: ['{{ snow() }}']}\n\
             sink: {type: elasticsearch, url: 'http://e:9200', index: 'i-{{ now() | datetimeformat }}'}\n",
        )
        .unwrap();
        let pointers: Vec<String> = pipeline_warnings(&pipeline).into_iter().map(|w| w.pointer).collect();
        assert_eq!(
            pointers,
            [
                "/transforms/0/document/at",
                "/transforms/0/document/n/expr",
                "/sink/index"
            ]
        );
    }
}
