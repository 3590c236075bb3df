//! The pipeline fingerprint: one 64-bit number over everything in a pipeline file
//! that shapes the documents it writes, and nothing else.
//!
//! Change-aware sync seeds every document's content hash with it, so a change to
//! what shapes documents rewrites every document once; index rebuilds can compare it
//! to tell whether an index was built by the pipeline as it is now.
//!
//! In: the template transforms (`id`, `index`, `document`, in order), the sink's
//! `index`, the source's `size_in_bytes` (on or off changes the `size_in_bytes`
//! value), and [`DOCUMENT_FORMAT`], the version of the connector's own encoding.
//! Out: credentials, hosts and TLS, bulk and retry tuning, timeouts, filter rules and
//! advanced sync rules (they choose which documents exist, not what a document
//! holds: a key they drop is stale, one they add is new), `settings` and `mappings`
//! (Elasticsearch's concern; a mapping change needs an index rebuild, not a rewrite),
//! and `delete_stale`.

use xxhash_rust::xxh3::Xxh3;

use super::model::{Pipeline, SinkConfig, SourceConfig, TransformConfig};

/// Version of the bytes the connector writes for a document. Bump it when the
/// encoding of documents changes (a field added to the default document, a value
/// written differently), so that the next run rewrites every document once.
pub const DOCUMENT_FORMAT: u32 = 1;

/// The fingerprint of what shapes `pipeline`'s documents (see the module's doc).
/// Stable across runs, processes and machines for the same file content.
pub fn pipeline_fingerprint(pipeline: &Pipeline) -> u64 {
    let mut hasher = Xxh3::new();
    let mut part = |label: &str, text: &str| {
        // Length-prefixed, so no two different lists of parts hash the same bytes.
        for piece in [label, text] {
            hasher.update(&(piece.len() as u64).to_le_bytes());
            hasher.update(piece.as_bytes());
        }
    };
    part("format", &DOCUMENT_FORMAT.to_string());
    match &pipeline.source {
        SourceConfig::Redis(redis) => part("size_in_bytes", if redis.size_in_bytes { "on" } else { "off" }),
    }
    for transform in &pipeline.transforms {
        if let TransformConfig::Template(template) = transform {
            part("template", "");
            part("id", template.id.as_deref().unwrap_or(""));
            part("index", template.index.as_deref().unwrap_or(""));
            // The document's key order is kept (serde_json's `preserve_order`) and is
            // the order of the written fields, so it belongs in the fingerprint.
            let document = template.document.as_ref().map(|d| d.to_string()).unwrap_or_default();
            part("document", &document);
        }
    }
    match &pipeline.sink {
        SinkConfig::Elasticsearch(es) => part("sink.index", &es.index),
        SinkConfig::Ndjson(_) => part("sink", "ndjson"),
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(source: &str, transforms: &str, sink: &str) -> Pipeline {
        crate::config::yaml::from_str(&format!(
            "name: p\nsource: {{type: redis, host: h{source}}}\ntransforms: {transforms}\nsink: {{type: elasticsearch, url: 'http://e:9200', index: i{sink}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn what_shapes_documents_changes_the_fingerprint() {
        let base = pipeline_fingerprint(&pipeline("", "[]", ""));
        assert_eq!(base, pipeline_fingerprint(&pipeline("", "[]", "")));
        assert_ne!(
            base,
            pipeline_fingerprint(&pipeline(", size_in_bytes: false", "[]", ""))
        );
        assert_ne!(
            base,
            pipeline_fingerprint(&pipeline("", "[{type: template, id: '{{ key }}'}]", ""))
        );
        let doc_a = pipeline_fingerprint(&pipeline("", "[{type: template, document: {a: '{{ key }}'}}]", ""));
        let doc_b = pipeline_fingerprint(&pipeline("", "[{type: template, document: {a: '{{ key }}!'}}]", ""));
        assert_ne!(doc_a, doc_b);
        assert_ne!(base, pipeline_fingerprint(&pipeline("", "[]", "-x")));
    }

    #[test]
    fn credentials_tuning_and_filters_do_not() {
        let base = pipeline_fingerprint(&pipeline("", "[]", ""));
        assert_eq!(
            base,
            pipeline_fingerprint(&pipeline(", password: secret, port: 7000", "[]", ""))
        );
        assert_eq!(
            base,
            pipeline_fingerprint(&pipeline(
                "",
                "[]",
                ", api_key: k, bulk: {max_docs: 5}, delete_stale: true"
            ))
        );
        assert_eq!(
            base,
            pipeline_fingerprint(&pipeline(
                "",
                "[{type: filter, rules: [{policy: exclude, field: key, rule: equals, value: a}]}]",
                ""
            ))
        );
    }
}
