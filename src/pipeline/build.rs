//! The one build of a pipeline's stages, for `validate`, `run`, dry runs and live
//! mode alike.
//!
//! Each stage is built from its configuration (pure: templates, globs, regexes
//! compiled, no I/O), in the order that lets each be told at construction what it
//! needs of the others: the transforms first; then the sink, with what the
//! transforms do to records ([`Upstream`]); then the source, with whether any later
//! stage reads the record's `ttl`. The checks that span stages ([`super::fields`])
//! are made here too. What the stages require of each other is returned with them
//! ([`Requirements`]), so no caller asks a stage about another.

use crate::config::fingerprint::pipeline_fingerprint;
use crate::config::model::{Pipeline, SinkConfig, SourceConfig, TransformConfig};
use crate::config::FieldError;
use crate::stages::{Sink, Source, Transform, Upstream};

/// What a pipeline's stages require of each other, worked out from the built stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// Whether a stage after the source reads the record's `ttl` (when none does, the
    /// source does not ask Redis for it: one command per key fewer).
    pub ttl_read: bool,
    /// What the transforms do to records before the sink (ids, bodies and index
    /// rendered, the fingerprint seeding content hashes).
    pub upstream: Upstream,
    /// Whether every stage can still name the document of a key that no longer
    /// exists from its `key` and `database` alone (no `id` or `index` template reads
    /// its value): live mode then deletes a gone key's document at once.
    pub locates_by_key: bool,
}

/// A pipeline's built stages, and what they require of each other.
pub struct Stages {
    pub source: Source,
    pub transforms: Vec<Transform>,
    pub sink: Sink,
    pub requirements: Requirements,
}

/// The sections of a pipeline to build; a section that did not convert (a file that
/// failed its schema) is `None`, and the checks that need it are skipped.
pub struct Parts<'a> {
    pub source: Option<&'a SourceConfig>,
    pub transforms: Vec<Option<&'a TransformConfig>>,
    pub sink: Option<&'a SinkConfig>,
}

/// Builds every stage of `pipeline` (the source from the pipeline unless `source` is
/// given: live mode's follow phases read changed keys through the same transforms
/// and sink). `Err` holds every problem found, with pointers from the file's root
/// (`/transforms/1/document/a`), the source's first, then the transforms', then
/// the sink's.
pub fn build(pipeline: &Pipeline, source: Option<Source>) -> Result<Stages, Vec<FieldError>> {
    let parts = Parts {
        source: Some(&pipeline.source),
        transforms: pipeline.transforms.iter().map(Some).collect(),
        sink: Some(&pipeline.sink),
    };
    let (stages, errors) = build_parts(&parts, source, pipeline_fingerprint(pipeline));
    match stages {
        Some(stages) if errors.is_empty() => Ok(stages),
        _ => Err(errors),
    }
}

/// Builds the sections given, for their problems only (`validate` of a file that
/// failed its schema: each section that still converts is checked all the same).
pub fn check(parts: &Parts) -> Vec<FieldError> {
    build_parts(parts, None, 0).1
}

/// The one build behind [`build`] and [`check`]: the stages when every section was
/// given and built, and every problem found.
fn build_parts(parts: &Parts, given: Option<Source>, fingerprint: u64) -> (Option<Stages>, Vec<FieldError>) {
    let mut source_errors = Vec::new();
    let mut transform_errors = Vec::new();
    let mut sink_errors = Vec::new();
    let at = |prefix: &str, found: Vec<FieldError>| {
        found
            .into_iter()
            .map(move |e| FieldError::new(format!("{prefix}{}", e.pointer), e.message))
            .collect::<Vec<_>>()
    };

    let mut transforms = Vec::new();
    let mut all_transforms = true;
    let mut across = super::fields::check_transforms(&parts.transforms, parts.sink)
        .into_iter()
        .peekable();
    for (i, config) in parts.transforms.iter().enumerate() {
        let prefix = format!("/transforms/{i}");
        match config.map(Transform::build) {
            Some(Ok(transform)) => transforms.push(transform),
            Some(Err(found)) => {
                transform_errors.extend(at(&prefix, found));
                all_transforms = false;
            }
            None => all_transforms = false,
        }
        while let Some((_, error)) = across.next_if(|(j, _)| *j == i) {
            transform_errors.extend(at(&prefix, vec![error]));
        }
    }

    // A later template replaces an earlier one's document, index included.
    let upstream = Upstream {
        bodies_rendered: Some(transforms.iter().any(Transform::renders_body)),
        ids_rendered: transforms.iter().any(Transform::renders_id),
        routed: transforms
            .iter()
            .rev()
            .find(|t| t.makes_documents())
            .is_some_and(Transform::renders_index),
        fingerprint,
    };
    let sink = parts.sink.and_then(|config| {
        Sink::build(config, &upstream)
            .map_err(|found| sink_errors.extend(at("/sink", found)))
            .ok()
    });

    let ttl_read = transforms.iter().any(|t| t.reads("ttl")) || sink.as_ref().is_some_and(|s| s.reads("ttl"));
    let source = match given {
        Some(mut source) => {
            source.set_ttl_needed(ttl_read);
            Some(source)
        }
        None => parts.source.and_then(|config| {
            Source::build(config, ttl_read)
                .map_err(|found| source_errors.extend(at("/source", found)))
                .ok()
        }),
    };

    let mut errors = source_errors;
    errors.append(&mut transform_errors);
    errors.append(&mut sink_errors);
    let stages = match (source, sink) {
        (Some(source), Some(sink)) if all_transforms => {
            let locates_by_key = transforms.iter().all(Transform::locates_by_key) && sink.locates_by_key();
            Some(Stages {
                source,
                transforms,
                sink,
                requirements: Requirements {
                    ttl_read,
                    upstream,
                    locates_by_key,
                },
            })
        }
        _ => None,
    };
    (stages, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(transforms: &str, sink: &str) -> Pipeline {
        crate::config::yaml::from_str(&format!(
            "name: p\nsource: {{type: redis, host: h}}\ntransforms: {transforms}\nsink: {sink}\n"
        ))
        .unwrap()
    }

    const ES: &str = "{type: elasticsearch, url: 'http://h:9200', index: users}";

    fn requirements(transforms: &str, sink: &str) -> Requirements {
        build(&pipeline(transforms, sink), None).ok().unwrap().requirements
    }

    #[test]
    fn without_transforms_nothing_is_rendered_and_ttl_is_not_read() {
        let r = requirements("[]", ES);
        assert!(!r.ttl_read && r.locates_by_key);
        assert_eq!(r.upstream.bodies_rendered, Some(false));
        assert!(!r.upstream.ids_rendered && !r.upstream.routed);
        assert_eq!(r.upstream.fingerprint, pipeline_fingerprint(&pipeline("[]", ES)));
    }

    #[test]
    fn a_template_says_what_it_renders() {
        let r = requirements("[{type: template, id: '{{ key }}', document: {t: '{{ ttl }}'}}]", ES);
        assert!(r.ttl_read && r.upstream.ids_rendered && !r.upstream.routed);
        assert_eq!(r.upstream.bodies_rendered, Some(true));
        // Only `id`: the default body stays.
        let r = requirements("[{type: template, id: '{{ key }}'}]", ES);
        assert_eq!(r.upstream.bodies_rendered, Some(false));
    }

    #[test]
    fn the_last_template_decides_the_index() {
        let routed = "{type: template, index: 'i-{{ database }}'}";
        let filter = "{type: filter, rules: []}";
        assert!(requirements(&format!("[{routed}, {filter}]"), ES).upstream.routed);
        assert!(
            !requirements(&format!("[{routed}, {{type: template, id: x}}]"), ES)
                .upstream
                .routed
        );
    }

    #[test]
    fn an_id_reading_the_value_cannot_locate_a_gone_key() {
        assert!(requirements("[{type: template, id: '{{ key }}-{{ database }}'}]", ES).locates_by_key);
        assert!(!requirements("[{type: template, id: '{{ value.id }}'}]", ES).locates_by_key);
        let sink = "{type: elasticsearch, url: 'http://h:9200', index: 'i-{{ value.kind }}'}";
        assert!(!requirements("[]", sink).locates_by_key);
    }

    #[test]
    fn the_sink_reading_ttl_makes_the_source_ask_for_it() {
        let sink = "{type: elasticsearch, url: 'http://h:9200', index: 'i-{{ ttl }}'}";
        assert!(requirements("[]", sink).ttl_read);
    }

    #[test]
    fn every_problem_is_returned_from_the_root_in_stage_order() {
        let p: Pipeline = crate::config::yaml::from_str(
            "name: p\nsource: {type: redis, host: h, timeout: 0}\ntransforms:\n  - {type: template, document: {a: '{{ x '}}\n  - {type: filter, rules: [{policy: exclude, field: kye, rule: equals, value: a}]}\nsink: {type: elasticsearch, url: 'not a url', index: i}\n",
        )
        .unwrap();
        let errors = build(&p, None).err().unwrap();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/source/timeout",
                "/transforms/0/document/a",
                "/transforms/1/rules/0/field",
                "/sink/url"
            ]
        );
    }

    #[test]
    fn check_skips_what_did_not_convert() {
        let filter: TransformConfig = crate::config::yaml::from_str(
            "{type: filter, rules: [{policy: exclude, field: kye, rule: equals, value: a}]}",
        )
        .unwrap();
        let errors = check(&Parts {
            source: None,
            transforms: vec![None, Some(&filter)],
            sink: None,
        });
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/transforms/1/rules/0/field");
    }
}
