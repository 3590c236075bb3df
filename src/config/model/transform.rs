//! The `transforms:` section: the template and filter stages (re-exported by
//! [`super`]).

use serde::Deserialize;
use serde_json::Value;

use crate::config::units::ByteSize;

/// A transform stage, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    Template(TemplateConfig),
    Filter(FilterConfig),
}

/// Renders each record into a document with minijinja templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Template of the document id (default: md5 of `{database}/{key}`).
    #[serde(default)]
    pub id: Option<String>,
    /// Template of the target index, overriding the sink's `index` per document.
    #[serde(default)]
    pub index: Option<String>,
    /// The document body: a mapping whose string leaves are templates and whose
    /// `{expr: "..."}` leaves are typed expressions, or one `{expr: "..."}` that
    /// yields a whole mapping. Default: the default document.
    #[serde(default)]
    pub document: Option<Value>,
    /// Instructions each template or expression may run for one record; past it the
    /// record fails (`template used more than its fuel`) and the run goes on.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Bytes one record's templates may render in all; past it the record fails.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: ByteSize,
}

fn default_fuel() -> u64 {
    1_000_000
}

fn default_max_output_bytes() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}

/// The reference's basic sync rules: the first matching rule decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The rules, in order: the first one that matches a record decides.
    pub rules: Vec<FilterRule>,
}

/// One basic sync rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// `include` or `exclude` the records this rule matches.
    pub policy: FilterPolicy,
    /// The document field to test; dots reach into objects (`value.name`).
    pub field: String,
    /// How to compare.
    pub rule: FilterRuleKind,
    /// What to compare with (a number compares as a number).
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterPolicy {
    Include,
    Exclude,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterRuleKind {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
    Regex,
    #[serde(rename = "<")]
    LessThan,
    #[serde(rename = ">")]
    GreaterThan,
}
