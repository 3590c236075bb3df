//! Where `validate` reads `${VAR}` from: the environment, an `--env-file` of
//! `KEY=VALUE` lines (which wins over the environment), and, with `--allow-unset`, a
//! placeholder for a variable set nowhere, so CI can check files whose secrets it
//! does not hold.
//!
//! A placeholder is the text `unset-var-` and the variable's name in lower case
//! (`unset-var-es_url`): a plain word, so a value built around it (`http://${HOST}:9200`)
//! still passes the checks that do not need the variable's value. The loader finds
//! the fields that hold one ([`unset_in`]), skips the problems found there, and notes
//! each variable instead (see `config::load`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::interpolate::InterpolatedValues;

/// What a placeholder starts with.
const PLACEHOLDER_PREFIX: &str = "unset-var-";

/// The variables `validate` interpolates with.
#[derive(Debug, Default, Clone)]
pub struct Variables {
    /// From `--env-file`: these win over the environment.
    file: HashMap<String, String>,
    /// `--allow-unset`: a variable set nowhere becomes a placeholder.
    allow_unset: bool,
}

impl Variables {
    /// The environment only, unset variables being errors (what `run` and `serve` use).
    pub fn environment() -> Variables {
        Variables::default()
    }

    /// The environment, `env_file`'s variables over it, and placeholders for the
    /// rest when `allow_unset`.
    pub fn new(env_file: Option<&Path>, allow_unset: bool) -> Result<Variables, String> {
        let file = match env_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| format!("cannot read the env file {}: {error}", path.display()))?;
                parse_env_file(&text).map_err(|(line, message)| format!("{}:{line}: {message}", path.display()))?
            }
            None => HashMap::new(),
        };
        Ok(Variables { file, allow_unset })
    }

    /// The value of `name`: from the env file, the environment, or a placeholder.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.file
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| self.allow_unset.then(|| placeholder(name)))
    }
}

/// The placeholder that stands for the unset variable `name`.
pub fn placeholder(name: &str) -> String {
    format!("{PLACEHOLDER_PREFIX}{}", name.to_ascii_lowercase())
}

/// Of the variables `names` a value was built from, those that stood in as a
/// placeholder in `expanded`.
pub fn unset_in<'a>(expanded: &str, names: &'a [String]) -> Vec<&'a str> {
    let mut unset: Vec<&str> = names
        .iter()
        .filter(|name| expanded.contains(&placeholder(name)))
        .map(String::as_str)
        .collect();
    unset.dedup();
    unset
}

/// The fields whose value holds a placeholder for an unset variable, with the names
/// of those variables, in the file's order.
pub fn unset_fields(value: &Value, interpolated: &InterpolatedValues) -> Vec<(String, Vec<String>)> {
    let mut found: Vec<(String, Vec<String>)> = interpolated
        .iter()
        .filter_map(|(pointer, from)| {
            let expanded = match value.pointer(pointer)? {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let names: Vec<String> = unset_in(&expanded, &from.names)
                .into_iter()
                .map(str::to_owned)
                .collect();
            (!names.is_empty()).then(|| (pointer.clone(), names))
        })
        .collect();
    found.sort();
    found
}

/// The note on a field whose variables `names` were not set.
pub fn unset_note(names: &[String], checks_skipped: bool) -> String {
    let shown: Vec<String> = names.iter().map(|n| format!("`${{{n}}}`")).collect();
    let verb = if names.len() == 1 { "is" } else { "are" };
    let what = if checks_skipped {
        "the checks that need its value were skipped"
    } else {
        "checked with a placeholder"
    };
    format!("{} {verb} not set (--allow-unset): {what}", shown.join(", "))
}

/// Reads `KEY=VALUE` lines: blank lines and `#` comments are skipped, an `export `
/// before the name is allowed, and a value in matching single or double quotes loses
/// them (no escapes, no `${...}` inside: the text is taken as it is). Errors give the
/// 1-based line and what is wrong, never the value.
pub fn parse_env_file(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut variables = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, "expected `NAME=value`".to_owned()));
        };
        let name = name.trim();
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((
                i + 1,
                format!("`{name}` is not a variable name: use letters, digits and `_`, not starting with a digit"),
            ));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .filter(|_| value.len() >= 2)
            .unwrap_or(value);
        variables.insert(name.to_owned(), unquoted.to_owned());
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_env_file_takes_comments_export_and_quotes() {
        let found = parse_env_file(
            "# CI placeholders\n\nES_URL=http://es:9200\nexport REDIS_PORT = 6380\nPW=\"two words\"\nK='x=y'\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(found["ES_URL"], "http://es:9200");
        assert_eq!(found["REDIS_PORT"], "6380");
        assert_eq!(found["PW"], "two words");
        assert_eq!(found["K"], "x=y");
        assert_eq!(found["EMPTY"], "");
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_without_its_value() {
        assert_eq!(
            parse_env_file("A=1\nsecret-value\n").unwrap_err(),
            (2, "expected `NAME=value`".to_owned())
        );
        assert_eq!(parse_env_file("1X=2\n").unwrap_err().0, 1);
    }

    #[test]
    fn the_file_wins_and_unset_names_become_placeholders_only_when_allowed() {
        let variables = Variables {
            file: HashMap::from([("PATH".to_owned(), "from-file".to_owned())]),
            allow_unset: true,
        };
        assert_eq!(variables.lookup("PATH").as_deref(), Some("from-file"));
        assert_eq!(
            variables.lookup("NO_SUCH_VARIABLE_HERE").as_deref(),
            Some("unset-var-no_such_variable_here")
        );
        assert_eq!(Variables::environment().lookup("NO_SUCH_VARIABLE_HERE"), None);
        let names = vec!["HOST".to_owned(), "PORT".to_owned()];
        assert_eq!(unset_in("http://es:unset-var-port", &names), vec!["PORT"]);
    }
}
