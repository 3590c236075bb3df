//! The checks that span stages, made once by the pipeline build: the fields a
//! filter's rules name against those the records reaching it have (a rule on a field
//! no record has would silently never match), and a template's `index` behind the
//! sink's `alias`. They read the stages' configurations only, so a stage that failed
//! its own build is still checked against the others.

use serde_json::Value as Json;

use crate::config::model::{FilterConfig, SinkConfig, TemplateConfig, TransformConfig};
use crate::config::FieldError;
use crate::templating::RECORD_FIELDS;

/// The problems between the transforms (each given, or `None` when it did not
/// convert) and the sink, each with the index of the transform it is about and a
/// pointer from that transform.
pub fn check_transforms(
    transforms: &[Option<&TransformConfig>],
    sink: Option<&SinkConfig>,
) -> Vec<(usize, FieldError)> {
    let mut errors = Vec::new();
    let mut last_template = None;
    for (i, transform) in transforms.iter().enumerate() {
        match transform {
            None => {}
            Some(TransformConfig::Template(template)) => {
                if let Some(error) = index_behind_alias(template, sink) {
                    errors.push((i, error));
                }
                last_template = Some(template);
            }
            Some(TransformConfig::Filter(filter)) => {
                if let Some(seen) = fields_seen(last_template) {
                    errors.extend(unknown_fields(filter, &seen).into_iter().map(|e| (i, e)));
                }
            }
        }
    }
    errors
}

/// A template's `index` would send documents past the sink's alias, whose index the
/// connector names and rebuilds itself.
fn index_behind_alias(template: &TemplateConfig, sink: Option<&SinkConfig>) -> Option<FieldError> {
    let (Some(_), Some(SinkConfig::Elasticsearch(es))) = (&template.index, sink) else {
        return None;
    };
    let alias = es.alias.as_ref()?;
    Some(FieldError::new(
        "/index",
        format!(
            "a template's `index` sends documents past the sink's alias `{alias}`, whose \
             index the connector names and rebuilds itself: remove `index` here, or \
             write to `index` in the sink instead of `alias`"
        ),
    ))
}

/// The top-level fields a filter can find, given the last `template` stage before
/// it: the record's fields, plus the default document's when that
/// template has no `document`, or the document's own names when it is a mapping.
/// `None` when they cannot be known before a run (`document: {expr: ...}`).
pub fn fields_seen(template: Option<&TemplateConfig>) -> Option<Vec<String>> {
    // The record's own fields and its `_id`, found whatever a template rendered (the
    // filter looks there when the document lacks a name).
    let mut names: Vec<String> = RECORD_FIELDS.iter().chain(&["_id"]).map(|n| (*n).to_owned()).collect();
    let document: Vec<String> = match template.map(|t| &t.document) {
        None => Vec::new(),
        Some(None) => ["key_encoding", "value_encoding", "_timestamp"]
            .iter()
            .map(|n| (*n).to_owned())
            .collect(),
        Some(Some(Json::Object(map))) if !(map.len() == 1 && map.contains_key("expr")) => map.keys().cloned().collect(),
        Some(Some(_)) => return None,
    };
    for name in document {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Some(names)
}

/// An error for each rule whose `field` names none of `seen` (from [`fields_seen`]):
/// a missing field never matches, so such a rule (`field: kye`) silently does
/// nothing. Pointers are from the stage (`/rules/0/field`).
pub fn unknown_fields(config: &FilterConfig, seen: &[String]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, rule) in config.rules.iter().enumerate() {
        let first = rule.field.split('.').next().unwrap_or_default();
        if rule.field.is_empty() || seen.iter().any(|name| *name == rule.field || name == first) {
            continue;
        }
        let hint = match crate::config::suggest::did_you_mean(first, seen.iter().map(String::as_str)) {
            Some(suggestion) => format!(", did you mean `{suggestion}`?"),
            None => String::new(),
        };
        let names: Vec<String> = seen.iter().map(|n| format!("`{n}`")).collect();
        errors.push(FieldError::new(
            format!("/rules/{i}/field"),
            format!(
                "no field `{first}` here, so this rule would never match: the records reaching this filter have {}{hint}",
                names.join(", ")
            ),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_on_a_field_no_record_has_is_an_error() {
        let config: FilterConfig = crate::config::yaml::from_str(
            "rules: [{policy: exclude, field: kye, rule: equals, value: a}, {policy: exclude, field: value.name, rule: equals, value: a}]",
        )
        .unwrap();
        let seen = fields_seen(None).unwrap();
        let errors = unknown_fields(&config, &seen);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].pointer, "/rules/0/field");
        assert!(
            errors[0].message.starts_with("no field `kye` here"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.ends_with("did you mean `key`?"),
            "{}",
            errors[0].message
        );

        // After a template: the document's own names (a dotted name counts whole).
        let template: TemplateConfig = crate::config::yaml::from_str("document: {name: x, a.b: y}").unwrap();
        let seen = fields_seen(Some(&template)).unwrap();
        let config: FilterConfig = crate::config::yaml::from_str(
            "rules: [{policy: include, field: a.b, rule: equals, value: a}, {policy: include, field: name.first, rule: equals, value: a}, {policy: include, field: _id, rule: equals, value: a}, {policy: include, field: key, rule: equals, value: a}]",
        )
        .unwrap();
        assert!(
            unknown_fields(&config, &seen).is_empty(),
            "the record's `key` is found after a template too"
        );
        let config: FilterConfig =
            crate::config::yaml::from_str("rules: [{policy: include, field: nmae, rule: equals, value: a}]").unwrap();
        let errors = unknown_fields(&config, &seen);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.ends_with("did you mean `name`?"),
            "{}",
            errors[0].message
        );
        // The default document, and a document whose names only a run knows.
        let default: TemplateConfig = crate::config::yaml::from_str("id: '{{ key }}'").unwrap();
        assert!(fields_seen(Some(&default)).unwrap().contains(&"_timestamp".to_owned()));
        let whole: TemplateConfig = crate::config::yaml::from_str("document: {expr: value}").unwrap();
        assert_eq!(fields_seen(Some(&whole)), None);
    }

    #[test]
    fn a_template_index_behind_an_alias_is_an_error_at_the_template() {
        let template: TransformConfig =
            crate::config::yaml::from_str("{type: template, index: 'i-{{ database }}'}").unwrap();
        let sink: SinkConfig =
            crate::config::yaml::from_str("{type: elasticsearch, url: 'http://h:9200', alias: users}").unwrap();
        let errors = check_transforms(&[None, Some(&template)], Some(&sink));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].0, errors[0].1.pointer.as_str()), (1, "/index"));
        let sink: SinkConfig =
            crate::config::yaml::from_str("{type: elasticsearch, url: 'http://h:9200', index: users}").unwrap();
        assert!(check_transforms(&[Some(&template)], Some(&sink)).is_empty());
    }
}
