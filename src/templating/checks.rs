//! What is checked of a template before any record is rendered: names it reads that
//! no record offers, filters the environment lacks, and the literal text of an index
//! template against Elasticsearch's index-name rules (shared by the template
//! transform's `index` and the Elasticsearch sink's).

use minijinja::Environment;

use crate::config::FieldError;

/// An error for each name in `read` (the names a template reads without setting
/// them) that is neither one of `names` nor a global of `env` (`range`, `now`, ...).
/// Strict mode fails every record on such a name at run time, so a typo
/// (`{{ vlaue.name }}`) is reported by `validate` instead, at `pointer`.
pub fn unknown_names(
    env: &Environment<'_>,
    pointer: &str,
    read: &std::collections::HashSet<String>,
    names: &[&str],
) -> Vec<FieldError> {
    let mut unknown: Vec<&String> = read
        .iter()
        .filter(|name| !names.contains(&name.as_str()) && !env.globals().any(|(global, _)| global == name.as_str()))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| {
            let hint = match crate::config::suggest::did_you_mean(name, names.iter().copied()) {
                Some(suggestion) => format!(", did you mean `{suggestion}`?"),
                None => String::new(),
            };
            FieldError::new(
                pointer,
                format!(
                    "unknown variable `{name}`: a template sees {}{hint}",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            )
        })
        .collect()
}

/// An error for each filter a source applies (`{{ value | to_json }}`) that `env`
/// does not have. minijinja looks filters up only when it applies them, so such a
/// template compiles and then fails every record; Jinja2 itself refuses it when it
/// compiles. Each source is `(pointer, text, expression)`, `expression` saying
/// whether the text is an expression (all code) rather than a template (code
/// inside `{{ }}` and `{% %}`). Each name is asked of `env` once.
pub fn unknown_filters<'a>(
    env: &Environment<'_>,
    sources: impl IntoIterator<Item = (&'a str, &'a str, bool)>,
) -> Vec<FieldError> {
    let mut known: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for (pointer, source, expression) in sources {
        for name in filter_names(source, expression) {
            let exists = *known.entry(name.clone()).or_insert_with(|| {
                let probe = env.render_str(&format!("{{{{ none | {name} }}}}"), ());
                !matches!(probe, Err(error) if error.kind() == minijinja::ErrorKind::UnknownFilter)
            });
            if exists {
                continue;
            }
            let hint = match crate::config::suggest::did_you_mean(&name, COMMON_FILTERS) {
                Some(suggestion) => format!(", did you mean `{suggestion}`?"),
                None => String::new(),
            };
            errors.push(FieldError::new(pointer, format!("unknown filter `{name}`{hint}")));
        }
    }
    errors
}

/// Filters a template may mean when it names one that does not exist (suggestions
/// only: whether a filter exists is asked of the environment).
const COMMON_FILTERS: [&str; 32] = [
    "tojson",
    "lower",
    "upper",
    "title",
    "capitalize",
    "trim",
    "replace",
    "default",
    "split",
    "join",
    "int",
    "float",
    "string",
    "bool",
    "length",
    "first",
    "last",
    "list",
    "map",
    "select",
    "reject",
    "sort",
    "unique",
    "round",
    "abs",
    "items",
    "min",
    "max",
    "sum",
    "reverse",
    "datetimeformat",
    "md5",
];

/// The text of a template outside its `{{ }}`, `{% %}` and `{# #}` blocks: what
/// every rendering contains, whatever the record. `None` when there is no block at
/// all (the template is plain text).
pub fn literal_parts(source: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut rest = source;
    let mut any_block = false;
    while let Some(start) = ["{{", "{%", "{#"].iter().filter_map(|open| rest.find(open)).min() {
        any_block = true;
        parts.push(&rest[..start]);
        let close = match &rest[start..start + 2] {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        match rest[start + 2..].find(close) {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => return Some(parts),
        }
    }
    parts.push(rest);
    any_block.then_some(parts)
}

/// The names after each `|` in the code of `source`, outside string literals and
/// comments: the filters it applies, sorted.
fn filter_names(source: &str, expression: bool) -> std::collections::BTreeSet<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut names = std::collections::BTreeSet::new();
    let mut in_code = expression;
    let mut i = 0;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        if !in_code {
            match (c, next) {
                ('{', Some('{' | '%')) => {
                    in_code = true;
                    i += 2;
                }
                ('{', Some('#')) => {
                    // A comment, to its `#}`.
                    let end = (i + 2..chars.len().saturating_sub(1)).find(|&j| chars[j] == '#' && chars[j + 1] == '}');
                    i = end.map_or(chars.len(), |j| j + 2);
                }
                _ => i += 1,
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '}' | '%' if !expression && next == Some('}') => {
                in_code = false;
                i += 2;
            }
            '|' => {
                i += 1;
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if i > start && !chars[start].is_ascii_digit() {
                    names.insert(chars[start..i].iter().collect());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The characters Elasticsearch refuses anywhere in an index name.
const INDEX_NAME_FORBIDDEN: &str = "\\/*?\"<>| ,#:";

/// Checks an index that may be a template: a plain name as [`check_index_name`]
/// does; a template by its text outside `{{ }}` and `{% %}`, which every rendered
/// name holds: an upper-case letter or a character no index name takes there
/// (`Redis-{{ database }}`) would make Elasticsearch reject every document.
pub fn check_index_template(source: &str) -> Result<(), String> {
    let Some(parts) = literal_parts(source) else {
        return check_index_name(source);
    };
    // The sink trims a rendered name; inner spaces stay.
    let text = parts.concat();
    let text = text.trim();
    if let Some(c) = text.chars().find(|c| c.is_uppercase()) {
        return Err(format!(
            "the index template writes `{c}` outside `{{{{ }}}}`: index names are lower case, so Elasticsearch would reject every document"
        ));
    }
    if let Some(c) = text.chars().find(|c| INDEX_NAME_FORBIDDEN.contains(*c)) {
        return Err(format!(
            "the index template writes `{c}` outside `{{{{ }}}}`: index names must not contain it, so Elasticsearch would reject every document"
        ));
    }
    Ok(())
}

/// Checks a plain index name against Elasticsearch's rules (lower case, no leading
/// `-`, `_` or `+`, none of the characters it refuses, at most 255 bytes).
pub fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the index name is empty".to_owned());
    }
    if name != name.to_lowercase() {
        return Err(format!("index name `{name}` must be lower case"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(format!("index name `{name}` must not start with -, _ or +"));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid index name"));
    }
    if let Some(c) = name.chars().find(|c| INDEX_NAME_FORBIDDEN.contains(*c)) {
        return Err(format!("index name `{name}` must not contain `{c}`"));
    }
    if name.len() > 255 {
        return Err(format!("index name `{name}` is longer than 255 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_parts_are_the_text_outside_blocks() {
        assert_eq!(literal_parts("redis"), None);
        assert_eq!(
            literal_parts("Redis-{{ database }}-x{# c #}y{% if a %}z{% endif %}"),
            Some(vec!["Redis-", "-x", "y", "z", ""])
        );
        assert_eq!(literal_parts("a{{ b"), Some(vec!["a"]));
    }

    #[test]
    fn filter_names_are_read_from_code_only() {
        let names = |source: &str, expression: bool| filter_names(source, expression).into_iter().collect::<Vec<_>>();
        assert_eq!(
            names("a|b {{ x|f1(1) | f2 }} c | d {%- if y | f3 -%}{% endif %}", false),
            ["f1", "f2", "f3"]
        );
        assert_eq!(names("{{ '|a' ~ \"|b\\\"|c\" | f }}{# {{ x | g }} #}", false), ["f"]);
        assert_eq!(names("value | tojson(indent=2)", true), ["tojson"]);
    }

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        assert!(check_index_name("redis-0").is_ok());
        assert!(check_index_name("Redis").unwrap_err().contains("lower case"));
        assert!(check_index_name("_x").is_err());
        assert!(check_index_name("a b").is_err());
        assert!(check_index_name("").is_err());
    }
}
