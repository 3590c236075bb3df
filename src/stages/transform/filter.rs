//! The `filter` transform: the reference connector's basic sync rules.
//!
//! Rules are evaluated in order; the first rule that matches a record decides
//! (`include` keeps it, `exclude` drops it and counts it as filtered). A record no
//! rule matches is kept (the reference's default rule).
//!
//! **Which field.** `field` is looked up in the rendered document when a `template`
//! stage ran before this one, then, for a name the document does not have, in the
//! record as templates see it (`key`, `database`, `key_type`, `value` typed,
//! `size_in_bytes`, `ttl`) plus the document's `_id`: `field: key` after a template
//! whose document has only `name` still filters on the Redis key. Dots reach into objects and lists (`value.name`, `value.0`); a
//! field whose full name contains dots is found first. A missing field (or `null`)
//! never matches; a top-level name no record reaching the filter can have is a
//! load-time error ([`crate::pipeline::fields`]).
//!
//! **How values compare** (the reference's `BasicRule.matches`, with numbers made
//! dependable since Redis holds numbers as text):
//! - `starts_with`, `ends_with`, `contains`: on the field's text (strings as they are,
//!   numbers and booleans as written, lists and maps as compact JSON).
//! - `regex`: matches at the start of the text, like Python's `re.match` the reference
//!   uses (add `$` to match the whole text); compiled when the pipeline is loaded.
//! - `<`, `>`: as numbers when both sides read as numbers (`"10" > 9` is true),
//!   otherwise as text.
//! - `equals`: as numbers when either side is a JSON/YAML number and the other reads
//!   as one (`value: 7` equals `"7"` and `7.0`); as booleans when the field is a
//!   boolean (`true/t/yes/y/on`, `false/f/no/n/off`, as the reference reads them);
//!   otherwise as text.

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value as Json};

use crate::config::model::{FilterConfig, FilterPolicy, FilterRuleKind};
use crate::config::FieldError;
use crate::document::default_id;
use crate::record::{Batch, Record};
use crate::stages::StageContext;
use crate::templating::errors::json_kind;

/// A compiled `filter` stage.
pub struct FilterTransform {
    rules: Vec<Rule>,
}

/// One compiled rule.
struct Rule {
    policy: FilterPolicy,
    field: String,
    test: Test,
}

/// The comparison a rule makes, with its value prepared once.
enum Test {
    Equals(Operand),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Regex(Regex),
    LessThan(Operand),
    GreaterThan(Operand),
}

/// A rule's value: its text, its number when it reads as one, and whether it was
/// written as a number.
struct Operand {
    text: String,
    number: Option<f64>,
    is_number: bool,
}

impl FilterTransform {
    /// Checks every rule; an invalid regex or a value that is not a scalar is a
    /// [`FieldError`] at `/rules/N/value`.
    pub fn build(config: &FilterConfig) -> Result<Self, Vec<FieldError>> {
        let mut rules = Vec::with_capacity(config.rules.len());
        let mut errors = Vec::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let pointer = format!("/rules/{i}/value");
            let text = match &rule.value {
                Json::String(text) => text.clone(),
                Json::Number(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                other => {
                    errors.push(FieldError::new(
                        pointer,
                        format!(
                            "a rule's value must be a string, a number or a boolean, not {}",
                            json_kind(other)
                        ),
                    ));
                    continue;
                }
            };
            if rule.field.is_empty() {
                errors.push(FieldError::new(
                    format!("/rules/{i}/field"),
                    "`field` must name a document field",
                ));
                continue;
            }
            let operand = || Operand {
                number: parse_number(&text),
                is_number: rule.value.is_number(),
                text: text.clone(),
            };
            let test = match rule.rule {
                FilterRuleKind::Equals => Test::Equals(operand()),
                FilterRuleKind::Contains => Test::Contains(text.clone()),
                FilterRuleKind::StartsWith => Test::StartsWith(text.clone()),
                FilterRuleKind::EndsWith => Test::EndsWith(text.clone()),
                FilterRuleKind::LessThan => Test::LessThan(operand()),
                FilterRuleKind::GreaterThan => Test::GreaterThan(operand()),
                FilterRuleKind::Regex => match Regex::new(&format!("^(?:{text})")) {
                    Ok(regex) => Test::Regex(regex),
                    Err(error) => {
                        // The error of the pattern as written, so its caret diagram
                        // points into the user's text rather than the `^(?:...)` wrapper.
                        let error = Regex::new(&text).err().unwrap_or(error);
                        errors.push(FieldError::new(pointer, format!("invalid regex `{text}`: {error}")));
                        continue;
                    }
                },
            };
            rules.push(Rule {
                policy: rule.policy,
                field: rule.field.clone(),
                test,
            });
        }
        if errors.is_empty() {
            Ok(FilterTransform { rules })
        } else {
            Err(errors)
        }
    }

    /// Whether a rule looks at the record's `field` (or inside it).
    pub fn reads(&self, field: &str) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.field == field || rule.field.strip_prefix(field).is_some_and(|rest| rest.starts_with('.')))
    }

    /// Keeps the records the rules include; counts the others as filtered.
    pub fn apply(&self, mut batch: Batch, ctx: &StageContext) -> Batch {
        if ctx.options.follow {
            // Live mode: a record excluded now may have a document from before (an
            // earlier value matched): it goes on as a delete. Deletes pass untouched.
            for record in &mut batch {
                if !record.operation.is_delete() && !self.includes(record) {
                    record.operation = crate::record::Operation::Delete;
                }
            }
            return batch;
        }
        let before = batch.len();
        batch.retain(|record| self.includes(record));
        ctx.counters.add_filtered((before - batch.len()) as u64);
        batch
    }

    /// Whether the record is kept: the first matching rule decides; none matching keeps it.
    pub fn includes(&self, record: &Record) -> bool {
        for rule in &self.rules {
            let Some(value) = lookup(record, &rule.field) else {
                continue;
            };
            if rule.test.matches(&value) {
                return rule.policy == FilterPolicy::Include;
            }
        }
        true
    }
}

impl Test {
    fn matches(&self, value: &Json) -> bool {
        if value.is_null() {
            return false;
        }
        match self {
            Test::Contains(needle) => text_of(value).contains(needle.as_str()),
            Test::StartsWith(prefix) => text_of(value).starts_with(prefix.as_str()),
            Test::EndsWith(suffix) => text_of(value).ends_with(suffix.as_str()),
            Test::Regex(regex) => regex.is_match(&text_of(value)),
            Test::LessThan(operand) => compare(value, operand) == Some(Ordering::Less),
            Test::GreaterThan(operand) => compare(value, operand) == Some(Ordering::Greater),
            Test::Equals(operand) => match value {
                Json::Bool(b) => parse_bool(&operand.text) == Some(*b),
                _ => {
                    let field_number = number_of(value);
                    let numeric = value.is_number() || operand.is_number;
                    match (numeric, field_number, operand.number) {
                        (true, Some(a), Some(b)) => a == b,
                        _ => text_of(value) == operand.text,
                    }
                }
            },
        }
    }
}

/// Orders the field against the rule's value: numerically when both read as numbers,
/// otherwise as text.
fn compare(value: &Json, operand: &Operand) -> Option<Ordering> {
    match (number_of(value), operand.number) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(text_of(value).as_ref().cmp(operand.text.as_str())),
    }
}

fn number_of(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(text) => parse_number(text),
        _ => None,
    }
}

/// A number written as text (`10`, ` -2.5 `, `1e3`); `NaN` and infinities are not numbers here.
fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Booleans as the reference reads them.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" => Some(true),
        "" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// The text a field is compared as.
fn text_of(value: &Json) -> Cow<'_, str> {
    match value {
        Json::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_string()),
    }
}

/// Finds `field` in the rendered document, else (a name the document does not have,
/// or no document rendered) in the record's own fields.
fn lookup(record: &Record, field: &str) -> Option<Json> {
    let (first, rest) = match field.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (field, None),
    };
    if let Some(document) = &record.document {
        if document.body.contains_key(field) || document.body.contains_key(first) {
            return lookup_path(&document.body, field).cloned();
        }
        if first == "_id" {
            return Some(Json::String(document.id.clone()));
        }
    }
    let top = match first {
        "key" => Json::String(record.key_text().0),
        "database" => Json::from(record.database),
        "key_type" => Json::String(record.key_type.redis_name().to_owned()),
        "size_in_bytes" => record.size_in_bytes.map(Json::from).unwrap_or(Json::Null),
        "ttl" => record.ttl.map(Json::from).unwrap_or(Json::Null),
        "_id" => Json::String(default_id(record.database, &record.key)),
        "value" => record.value.to_json(),
        _ => return None,
    };
    match rest {
        None => Some(top),
        Some(rest) => lookup_in(&top, rest).cloned(),
    }
}

/// Looks a dotted path up in an object: the full name first, then segment by segment.
fn lookup_path<'a>(map: &'a Map<String, Json>, path: &str) -> Option<&'a Json> {
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    let (first, rest) = path.split_once('.')?;
    lookup_in(map.get(first)?, rest)
}

fn lookup_in<'a>(value: &'a Json, path: &str) -> Option<&'a Json> {
    match value {
        Json::Object(map) => lookup_path(map, path),
        Json::Array(items) => {
            let (first, rest) = match path.split_once('.') {
                Some((first, rest)) => (first, Some(rest)),
                None => (path, None),
            };
            let item = items.get(first.parse::<usize>().ok()?)?;
            match rest {
                None => Some(item),
                Some(rest) => lookup_in(item, rest),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{KeyType, RedisValue};

    fn filter(yaml: &str) -> Result<FilterTransform, Vec<FieldError>> {
        FilterTransform::build(&crate::config::yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn reads_names_the_fields_rules_look_at() {
        let f = filter("rules: [{policy: include, field: ttl.x, rule: equals, value: 1}, {policy: exclude, field: key, rule: equals, value: a}]").unwrap();
        assert!(f.reads("ttl"));
        assert!(f.reads("key"));
        assert!(!f.reads("value"));
        assert!(
            !filter("rules: [{policy: include, field: ttlx, rule: equals, value: 1}]")
                .unwrap()
                .reads("ttl")
        );
    }

    fn string(key: &str, value: &str) -> Record {
        Record {
            database: 0,
            key: key.as_bytes().to_vec(),
            key_type: KeyType::String,
            value: RedisValue::String(value.as_bytes().to_vec()),
            size_in_bytes: None,
            ttl: None,
            document: None,
            operation: crate::record::Operation::Upsert,
        }
    }

    #[test]
    fn after_a_template_the_document_comes_first_then_the_record() {
        // DESIGN.md's example: a document of `name` only, filtered on the Redis key.
        let f = filter("rules: [{policy: exclude, field: key, rule: starts_with, value: 'tmp:'}, {policy: exclude, field: name, rule: equals, value: bob}]").unwrap();
        let rendered = |key: &str, body: serde_json::Value| {
            let mut record = string(key, "");
            record.document = Some(crate::document::Document {
                id: format!("id-{key}"),
                index: None,
                body: body.as_object().unwrap().clone(),
            });
            record
        };
        assert!(!f.includes(&rendered("tmp:1", serde_json::json!({"name": "ann"}))));
        assert!(f.includes(&rendered("user:1", serde_json::json!({"name": "ann"}))));
        assert!(!f.includes(&rendered("user:2", serde_json::json!({"name": "bob"}))));
        // A document field of the same name wins over the record's.
        assert!(f.includes(&rendered("tmp:2", serde_json::json!({"key": "user:2"}))));
        let by_id = filter("rules: [{policy: exclude, field: _id, rule: equals, value: id-a}]").unwrap();
        assert!(!by_id.includes(&rendered("a", serde_json::json!({}))));
    }

    #[test]
    fn numeric_text_compares_as_a_number() {
        let f = filter("rules: [{policy: exclude, field: value, rule: '>', value: 9}]").unwrap();
        assert!(
            !f.includes(&string("a", "10")),
            "10 > 9 as numbers, though \"10\" < \"9\" as text"
        );
        assert!(f.includes(&string("a", "8.5")));
        assert!(
            !f.includes(&string("a", "abc")),
            "not a number: compared as text, and \"abc\" > \"9\""
        );
    }

    #[test]
    fn regex_matches_at_the_start_like_the_reference() {
        let f = filter("rules: [{policy: exclude, field: key, rule: regex, value: 'tmp:\\d+'}]").unwrap();
        assert!(!f.includes(&string("tmp:12", "")));
        assert!(f.includes(&string("x-tmp:12", "")));
    }

    #[test]
    fn invalid_regex_is_a_field_error_at_the_value() {
        let errors = filter("rules: [{policy: include, field: key, rule: equals, value: a}, {policy: exclude, field: key, rule: regex, value: '(unclosed'}]")
            .err()
            .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/rules/1/value");
        assert!(
            errors[0].message.starts_with("invalid regex `(unclosed`"),
            "{}",
            errors[0].message
        );
        // The caret diagram shows the pattern as written, not the `^(?:...)` wrapper.
        assert!(
            errors[0].message.contains("\n    (unclosed\n    ^\n"),
            "{}",
            errors[0].message
        );
        assert!(!errors[0].message.contains("^(?:"), "{}", errors[0].message);
    }

    #[test]
    fn hash_fields_are_reached_with_dots_and_missing_fields_never_match() {
        let f = filter("rules: [{policy: exclude, field: value.name, rule: equals, value: Ada}]").unwrap();
        let mut record = string("h", "");
        record.key_type = KeyType::Hash;
        record.value = RedisValue::Hash(vec![(b"name".to_vec(), b"Ada".to_vec())]);
        assert!(!f.includes(&record));
        record.value = RedisValue::Hash(vec![(b"other".to_vec(), b"Ada".to_vec())]);
        assert!(
            f.includes(&record),
            "a missing field matches no rule: the default rule includes"
        );
    }
}
