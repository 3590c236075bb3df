//! Index names and document ids: where the sink's documents go ([`Target`]: a fixed
//! index, checked, or an `index` template, compiled), and the id rule Elasticsearch
//! enforces per document ([`check_id`]). The rules on a name itself are
//! `templating::checks::check_index_name`, shared with the template transform.

use std::borrow::Cow;

use crate::config::model::ElasticsearchSinkConfig;
use crate::config::FieldError;
use crate::record::Record;
use crate::templating;
use crate::templating::checks::check_index_name;
use crate::templating::index::render_index;

/// Where documents go.
pub enum Target {
    Fixed(String),
    /// The `index` template, compiled (named `index`).
    Template(minijinja::Environment<'static>),
}

impl Target {
    /// The configuration's target, checked: with `alias`, a fixed index that `open`
    /// names (from the fingerprints); an `index` template, compiled; else the fixed
    /// `index`. Problems go to `errors` (at `/alias` or `/index`).
    pub fn from_config(config: &ElasticsearchSinkConfig, errors: &mut Vec<FieldError>) -> Option<Target> {
        if let Some(alias) = &config.alias {
            // `open` names the concrete index, from the fingerprints.
            match check_index_name(alias) {
                Ok(()) => Some(Target::Fixed(String::new())),
                Err(message) => {
                    errors.push(FieldError::new("/alias", message));
                    None
                }
            }
        } else if config.index.contains("{{") || config.index.contains("{%") {
            templating::index::compile_index(&config.index, errors).map(Target::Template)
        } else {
            match check_index_name(&config.index) {
                Ok(()) => Some(Target::Fixed(config.index.clone())),
                Err(message) => {
                    errors.push(FieldError::new("/index", message));
                    None
                }
            }
        }
    }

    /// Whether the `index` template reads the record's `field`.
    pub fn reads(&self, field: &str) -> bool {
        match self {
            Target::Fixed(_) => false,
            Target::Template(env) => templating::environment_reads(env, field),
        }
    }

    /// The index `record` goes to: the document's own (a template transform's
    /// `index`), else the fixed one, else the `index` template's. An error is the
    /// dead-letter's `(error_type, reason)`: the template failed, or the name it gave
    /// is no valid index name.
    pub fn index_for(&self, record: &Record, pipeline: &str) -> Result<Cow<'_, str>, (&'static str, String)> {
        let rendered = match (&record.document, self) {
            (Some(document), _) if document.index.is_some() => Ok(document.index.clone().unwrap_or_default()),
            (_, Target::Fixed(name)) => return Ok(Cow::Borrowed(name)),
            (_, Target::Template(env)) => render_index(env, record, pipeline),
        };
        match rendered {
            Ok(name) => match check_index_name(&name) {
                Ok(()) => Ok(Cow::Owned(name)),
                Err(message) => Err(("invalid_index_name", message)),
            },
            Err(message) => Err(("index_template_error", message)),
        }
    }
}

/// Elasticsearch's limit on a document id: at most 512 bytes. One longer id makes it
/// refuse the whole bulk request (`action_request_validation_exception`), so it is
/// caught here, for that document alone.
pub fn check_id(id: &str) -> Result<(), String> {
    const MAX_ID_BYTES: usize = 512;
    if id.len() <= MAX_ID_BYTES {
        return Ok(());
    }
    let start: String = id.chars().take(40).collect();
    Err(format!(
        "the document id `{start}…` is {} bytes long; Elasticsearch takes at most {MAX_ID_BYTES}: \
         make the `id` template shorter (e.g. `{{{{ key | md5 }}}}`)",
        id.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{KeyType, RedisValue};
    use crate::stages::sink::elasticsearch::ElasticsearchSink;

    fn config(yaml: &str) -> ElasticsearchSinkConfig {
        crate::config::yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_index_template_sees_the_record_and_the_pipeline() {
        let sink = ElasticsearchSink::build(&config(
            "url: http://a:9200\nindex: '{{ pipeline }}-{{ key_type }}-{{ database }}'",
        ))
        .unwrap();
        let Target::Template(env) = &sink.target else {
            panic!("templated")
        };
        let record = Record {
            database: 3,
            key: b"k".to_vec(),
            key_type: KeyType::Hash,
            value: RedisValue::Hash(vec![]),
            size_in_bytes: None,
            ttl: None,
            document: None,
            operation: crate::record::Operation::Upsert,
        };
        assert_eq!(render_index(env, &record, "users").unwrap(), "users-hash-3");
    }

    #[test]
    fn ids_over_512_bytes_are_refused_with_their_length() {
        assert!(check_id(&"a".repeat(512)).is_ok());
        let error = check_id(&"é".repeat(300)).unwrap_err();
        assert!(
            error.contains("is 600 bytes long; Elasticsearch takes at most 512"),
            "{error}"
        );
        assert!(error.contains("{{ key | md5 }}"), "{error}");
    }
}
