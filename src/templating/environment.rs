//! The minijinja environment every template is compiled in (the template transform's
//! fields and the Elasticsearch sink's `index`), and what its templates read.

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// The environment every template of a stage is compiled in: strict undefined, no
/// auto-escaping, the contrib filters and Python-style methods, and `md5`.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("md5", md5_hex);
    // The contrib `now()` gives a float of seconds, which dynamic mapping makes a
    // float field: this one gives the ISO 8601 UTC text `_timestamp` holds
    // (`2026-11-27T11:36:27.123Z`), which Elasticsearch maps as a date and
    // `datetimeformat` reads.
    env.add_function("now", crate::document::now_timestamp);
    env
}

/// `{{ text | md5 }}`: the md5 hex digest of the text (numbers use their text form).
fn md5_hex(value: Value) -> String {
    use md5::{Digest, Md5};
    let digest = match value.as_str() {
        Some(text) => Md5::digest(text.as_bytes()),
        None => match value.as_bytes() {
            Some(bytes) => Md5::digest(bytes),
            None => Md5::digest(value.to_string().as_bytes()),
        },
    };
    format!("{digest:x}")
}

/// Whether any template of `env` reads the record's `field` (a top-level name of the
/// context), from the templates' syntax. Lets the source skip what nothing reads
/// (`TTL` is one command per key). A template that calls `debug()` sees the whole
/// context, so it reads every field.
pub fn environment_reads(env: &Environment<'_>, field: &str) -> bool {
    env.templates()
        .any(|(_, template)| reads_among(&template.undeclared_variables(false), field))
}

/// Whether `names` (what a template or expression reads without setting it) reach
/// the record's `field`: by name, or all of them through `debug()`.
pub(crate) fn reads_among(names: &std::collections::HashSet<String>, field: &str) -> bool {
    names.contains(field) || names.contains("debug")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_renders_an_iso_8601_utc_timestamp_that_datetimeformat_reads() {
        let env = environment();
        let now = env.render_str("{{ now() }}", ()).unwrap();
        let shape = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap();
        assert!(shape.is_match(&now), "{now}");
        let year = env
            .render_str("{{ now() | datetimeformat(format='[year]') }}", ())
            .unwrap();
        assert_eq!(year, now[..4]);
    }
}
