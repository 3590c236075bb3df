//! The position-keeping YAML parse of a pipeline file: a small tree of nodes, each
//! with its line and column, built from `saphyr-parser` events, and its conversion
//! to a `serde_json::Value` for the schema check and the typed structs.
//!
//! One parse serves both purposes, so every later error can be located in the very
//! text that produced the value. YAML 1.2 core-schema scalars (`true`, `null`, `12`,
//! `0x1f`, `1.5`); anchors and aliases are expanded (bounded, against alias bombs);
//! merge keys (`<<: *defaults`, or a list of them) bring in the entries a mapping
//! does not write itself; duplicate keys, several documents and tab indentation
//! are errors.
//!
//! Built on `saphyr-parser` rather than `serde_yaml`: its events carry positions, so
//! every problem names its line and column (a duplicate key names the first one too),
//! and `serde_yaml` is no longer maintained upstream (archived, its last release
//! marked deprecated: `0.9.34+deprecated`). Tests read YAML through [`from_str`], so
//! they parse it as users' files are parsed.

mod builder;
mod scalar;
mod syntax;

use saphyr_parser::{Parser, Span};
use serde_json::{Map, Value};

use builder::Builder;
pub use scalar::resolve_plain;
use syntax::syntax_error;

/// A position in the file: 1-based line, 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    fn start_of(span: &Span) -> Position {
        Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A YAML problem found while parsing, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub position: Position,
    /// JSON pointer of the node concerned (`""` when unknown).
    pub pointer: String,
    pub message: String,
}

/// A parsed node and where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    pub position: Position,
    pub kind: NodeKind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

/// A scalar: its text as written (after YAML unescaping), how it was written, and
/// the JSON value it resolves to.
#[derive(Debug, Clone)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted) scalars resolve to numbers, booleans and null; quoted and
    /// block scalars are always strings.
    pub plain: bool,
    /// Set by a `!!str` tag: the scalar is a string whatever it looks like.
    pub forced_string: bool,
    /// The scalar spans one line, so a character offset in `text` is a column offset.
    pub single_line: bool,
    /// Column of the first character of `text` (after an opening quote).
    pub text_column: usize,
    pub value: Value,
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_position: Position,
    pub value: Node,
}

impl Node {
    /// The node's JSON value.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(scalar) => scalar.value.clone(),
            NodeKind::Sequence(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Mapping(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for entry in entries {
                    // Duplicates were reported while parsing; the first one wins.
                    if !map.contains_key(&entry.key) {
                        map.insert(entry.key.clone(), entry.value.to_json());
                    }
                }
                Value::Object(map)
            }
        }
    }

    /// A short name of the node's kind, for messages (`a mapping`, `a list`, ...).
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(s) => json_kind_name(&s.value),
            NodeKind::Sequence(_) => "a list",
            NodeKind::Mapping(_) => "a mapping",
        }
    }
}

/// A short name of a JSON value's kind, for messages.
pub fn json_kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Parses one YAML document. Returns the root node (`None` when the text has no
/// document at all, or when a syntax error stopped the parse) and every problem found.
pub fn parse(text: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut builder = Builder::for_file(text.len());
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_event() {
            None => break,
            Some(Ok((event, span))) => {
                if !builder.event(event, span) {
                    break;
                }
            }
            Some(Err(error)) => {
                let marker = error.marker();
                let position = Position {
                    line: marker.line(),
                    column: marker.col() + 1,
                };
                builder.errors.push(syntax_error(text, position, error.info()));
                return (None, builder.errors);
            }
        }
    }
    (builder.root, builder.errors)
}

/// Escapes one JSON pointer segment (`~` -> `~0`, `/` -> `~1`).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Parses `text` as one YAML document the way a pipeline file is parsed (the same
/// scalars, anchors and merge keys; duplicate keys and several documents refused)
/// and converts it to `T`: for a part of a pipeline written on its own, such as one
/// stage's settings. No `${VAR}` is expanded. The error is the first problem found,
/// with its line and column when it is a YAML one.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let (root, errors) = parse(text);
    if let Some(error) = errors.first() {
        let Position { line, column } = error.position;
        return Err(format!("{line}:{column}: {}", error.message));
    }
    let value = root.map(|root| root.to_json()).unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_ok(text: &str) -> Node {
        let (root, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        root.expect("a document")
    }

    #[test]
    fn converts_to_json_by_the_core_schema() {
        let root =
            parse_ok("a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: '12'\ng: yes\nh: 0x1f\ni: [x, \"y\"]\nj: !!str 3\n");
        assert_eq!(
            root.to_json(),
            json!({"a": 1, "b": -2, "c": 1.5, "d": true, "e": null, "f": "12", "g": "yes", "h": 31, "i": ["x", "y"], "j": "3"})
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let root = parse_ok("name: x\nsource:\n  host: h\n");
        let NodeKind::Mapping(entries) = &root.kind else {
            panic!()
        };
        assert_eq!(entries[1].key_position, Position { line: 2, column: 1 });
        let NodeKind::Mapping(inner) = &entries[1].value.kind else {
            panic!()
        };
        assert_eq!(inner[0].key_position, Position { line: 3, column: 3 });
        assert_eq!(inner[0].value.position, Position { line: 3, column: 9 });
    }

    #[test]
    fn duplicate_keys_are_errors_naming_the_first() {
        let (_, errors) = parse("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].position, Position { line: 4, column: 3 });
        assert_eq!(errors[0].pointer, "/b/c");
        assert!(errors[0]
            .message
            .starts_with("duplicate key `c` (first defined at line 3)"));
    }

    #[test]
    fn tab_indentation_gets_a_clear_message() {
        let (_, errors) = parse("a:\n\tb: 1\n");
        assert_eq!(
            errors[0].message,
            "tab character in indentation: YAML indents with spaces only"
        );
        assert_eq!(errors[0].position, Position { line: 2, column: 1 });
    }

    #[test]
    fn a_tab_after_a_plain_value_is_found_on_the_next_line() {
        let (_, errors) = parse("a:\n  b: x\n\tc: 1\n");
        assert_eq!(
            errors[0].message,
            "tab character in indentation: YAML indents with spaces only"
        );
        assert_eq!(errors[0].position, Position { line: 3, column: 1 });
    }

    #[test]
    fn a_second_document_is_an_error() {
        let (_, errors) = parse("a: 1\n---\nb: 2\n");
        assert_eq!(errors[0].position.line, 2);
        assert!(errors[0].message.contains("one YAML document"));
    }

    #[test]
    fn an_empty_document_after_the_first_is_nothing() {
        assert_eq!(parse_ok("a: 1\n---\n").to_json(), json!({"a": 1}));
        assert_eq!(parse_ok("---\na: 1\n...\n---\n# end\n").to_json(), json!({"a": 1}));
        let (_, errors) = parse("a: 1\n---\n\nb: 2\n");
        assert_eq!(errors[0].position.line, 2);
    }

    #[test]
    fn aliases_are_expanded() {
        let root = parse_ok("k: &x {a: 1}\nj: *x\n");
        assert_eq!(root.to_json(), json!({"k": {"a": 1}, "j": {"a": 1}}));
    }

    #[test]
    fn merge_keys_bring_in_what_the_mapping_does_not_write() {
        let root = parse_ok("d: &d {a: 1, b: 2}\ne: &e {b: 3, c: 4}\nm:\n  b: 9\n  <<: [*d, *e]\n  z: 0\n");
        assert_eq!(
            root.to_json(),
            json!({"d": {"a": 1, "b": 2}, "e": {"b": 3, "c": 4}, "m": {"b": 9, "z": 0, "a": 1, "c": 4}})
        );
        let root = parse_ok("s:\n  <<: {type: redis, host: h}\n  host: k\n");
        assert_eq!(root.to_json(), json!({"s": {"host": "k", "type": "redis"}}));
        // Merged entries keep the position where they are written, for messages.
        let NodeKind::Mapping(entries) = &root.kind else {
            panic!()
        };
        let NodeKind::Mapping(inner) = &entries[0].value.kind else {
            panic!()
        };
        assert_eq!(inner[1].key, "type");
        assert_eq!(inner[1].value.position, Position { line: 2, column: 14 });
        // A quoted `<<` is an ordinary key.
        assert_eq!(parse_ok("'<<': {a: 1}\n").to_json(), json!({"<<": {"a": 1}}));
    }

    #[test]
    fn a_merge_key_needs_a_mapping() {
        let (_, errors) = parse("s:\n  <<: 5\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/s/<<");
        assert_eq!(errors[0].position, Position { line: 2, column: 7 });
        assert!(
            errors[0].message.starts_with("a merge key `<<` takes a mapping"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_unquoted_star_gets_a_hint_to_quote_it() {
        let (_, errors) = parse("database: *\n");
        assert_eq!(errors[0].position, Position { line: 1, column: 11 });
        assert_eq!(
            errors[0].message,
            "invalid YAML: an unquoted `*` starts an alias (a reference to an `&anchor`); to write the text `*`, quote it: `\"*\"`"
        );
        let (_, errors) = parse("rules:\n  - {database: 0, key_pattern: *abc}\n");
        assert!(errors[0].message.contains("quote it: `\"*abc\"`"), "{errors:?}");
    }

    #[test]
    fn core_schema_tags_set_the_type_and_other_tags_are_errors() {
        let root = parse_ok(
            "a: !!int \"6379\"\nb: !!str 12\nc: !!bool 'true'\nd: !!float '1.5'\ne: !!null ''\nf: !!map {x: 1}\n",
        );
        assert_eq!(
            root.to_json(),
            json!({"a": 6379, "b": "12", "c": true, "d": 1.5, "e": null, "f": {"x": 1}})
        );
        let (_, errors) = parse("a:\n  b: !Ref x\n  c: !!binary aGk=\n");
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.position.line, e.pointer.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 2);
        assert_eq!(found[0].1, "/a/b");
        assert!(found[0].2.starts_with("the tag `!Ref` is not taken here"), "{found:?}");
        assert!(
            found[1].2.starts_with("the tag `!!binary` is not taken here"),
            "{found:?}"
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f"][i];
            text += &format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n");
        }
        let (_, errors) = parse(&text);
        assert!(errors[0].message.contains("aliases expand to more than"), "{errors:?}");
    }

    #[test]
    fn empty_text_has_no_document() {
        assert!(parse("").0.is_none());
        assert!(parse("# only a comment\n").0.is_none());
    }
}
