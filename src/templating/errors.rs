//! Template errors described for users: one line with what went wrong, where, and
//! every cause.

use minijinja::Error;

/// A minijinja error as one line: what went wrong, the line, and any cause.
pub fn describe(error: &Error) -> String {
    let mut text = match error.detail() {
        Some(detail) => format!("{}: {}", error.kind(), detail),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    with_causes(text, error)
}

/// A minijinja error as minijinja prints it (with the template's name and line,
/// `... (in index:1)`), and any cause: the Elasticsearch sink's `index` template.
pub fn describe_named(error: &Error) -> String {
    with_causes(error.to_string(), error)
}

/// `text` followed by each cause of `error`, `: `-separated.
fn with_causes(mut text: String, error: &Error) -> String {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The text of the `{{ ... }}` or `{% ... %}` of `source` around `range` (the whole
/// source when it has no delimiters: an expression), trimmed.
pub fn enclosing_expression(source: &str, range: std::ops::Range<usize>) -> Option<&str> {
    source.get(range.clone())?;
    let before = &source[..range.start];
    let open = [before.rfind("{{"), before.rfind("{%")].into_iter().flatten().max();
    let Some(open) = open else {
        return Some(source.trim());
    };
    let after = &source[range.end..];
    let close = [after.find("}}"), after.find("%}")].into_iter().flatten().min()?;
    let inner = source.get(open + 2..range.end + close)?;
    Some(inner.trim_matches('-').trim())
}
/// The kind of a JSON value in words, for messages (`not a list`, `gave a number`).
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value as Json;
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}
