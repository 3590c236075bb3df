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

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

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

/// Nodes an alias may copy in one file, in total (guards against "billion laughs").
const MAX_ALIAS_NODES: usize = 100_000;

/// Parses one YAML document. Returns the root node (`None` when the text has no
/// document at all, or when a syntax error stopped the parse) and every problem found.
pub fn parse(text: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut builder = Builder::default();
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
                builder
                    .errors
                    .push(syntax_error(text, position, error.info()));
                return (None, builder.errors);
            }
        }
    }
    (builder.root, builder.errors)
}

/// Turns the parser's message into one a user can act on. Tabs get their own: the
/// parser often trips over a tab-indented line on the line before it (the tab ends
/// a plain scalar), so the error's line and the next one are both looked at.
fn syntax_error(text: &str, position: Position, info: &str) -> YamlError {
    let first = position.line.saturating_sub(1);
    for (index, line_text) in text.lines().enumerate().skip(first).take(2) {
        let indentation: String = line_text
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if let Some(tab) = indentation.find('\t') {
            return YamlError {
                position: Position {
                    line: index + 1,
                    column: indentation[..tab].chars().count() + 1,
                },
                pointer: String::new(),
                message: "tab character in indentation: YAML indents with spaces only".into(),
            };
        }
    }
    // `database: *` or `key_pattern: *abc`, as the reference's docs write them: YAML
    // reads an unquoted `*` as an alias.
    let token: String = text
        .lines()
        .nth(first)
        .map(|line_text| {
            line_text
                .chars()
                .skip(position.column.saturating_sub(1))
                .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}'))
                .collect()
        })
        .unwrap_or_default();
    if token.starts_with('*') && (info.contains("alias") || info.contains("anchor")) {
        return YamlError {
            position,
            pointer: String::new(),
            message: format!(
                "invalid YAML: an unquoted `*` starts an alias (a reference to an `&anchor`); to write the text `{token}`, quote it: `\"{token}\"`"
            ),
        };
    }
    let cause = likely_cause(text, position, info)
        .map(|cause| format!(" ({cause})"))
        .unwrap_or_default();
    YamlError {
        position,
        pointer: String::new(),
        message: format!("invalid YAML: {info}{cause}"),
    }
}

fn spaces(n: usize) -> String {
    if n == 1 {
        "1 space".to_owned()
    } else {
        format!("{n} spaces")
    }
}

/// What most often makes the parser say `info` at `position`: an indentation that
/// does not line up with the line above, or `key:value` without a space.
fn likely_cause(text: &str, position: Position, info: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.chars().take_while(|c| *c == ' ').count();
    let here_index = position.line.checked_sub(1)?;
    let here = lines.get(here_index)?;
    // The line above that holds something (not blank, not only a comment).
    let (above_index, above) = lines[..here_index]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let no_space = |l: &str| {
        let body = l.trim_start().trim_start_matches("- ");
        let plain = !body.starts_with(['"', '\'', '{', '[']);
        plain
            && body
                .char_indices()
                .any(|(i, c)| c == ':' && body[i + 1..].starts_with(|n: char| !n.is_whitespace()) && !body[..i].contains(' '))
            && !body.contains(": ")
            && !body.ends_with(':')
    };
    if info.contains("could not find expected ':'") || info.contains("simple key expect ':'") {
        if no_space(above) {
            return Some(format!(
                "likely cause: line {} writes `key:value` without a space after the colon; YAML needs `key: value`",
                above_index + 1
            ));
        }
        return Some(format!(
            "likely cause: line {} or the one before it is not `key: value` (a missing colon, an unclosed quote, or indentation that does not line up)",
            position.line
        ));
    }
    let (here_indent, above_indent) = (indent(here), indent(above));
    if info.contains("mapping values are not allowed") && here_indent > above_indent {
        return Some(format!(
            "likely cause: line {} is indented {}, more than line {} ({above_indent}) whose value is already given; fields of one mapping line up",
            position.line,
            spaces(here_indent),
            above_index + 1
        ));
    }
    if info.contains("mapping values are not allowed") {
        return Some("likely cause: an unquoted value holding `: `; quote it, or check the indentation of the lines above".to_owned());
    }
    if info.contains("did not find expected key") || info.contains("did not find expected '-'") {
        return Some(format!(
            "likely cause: line {} is indented {} where the fields around it have {above_indent}; fields of one mapping line up",
            position.line,
            spaces(here_indent)
        ));
    }
    None
}

/// A collection being built: its start and what it holds so far. (Its pointer is
/// computed from the stack only when an error needs it: most files have none.)
struct Open {
    position: Position,
    anchor: usize,
    kind: OpenKind,
}

enum OpenKind {
    Sequence(Vec<Node>),
    /// Entries so far, the key waiting for its value, and the entries a merge key
    /// (`<<: *defaults`) brings in, added at the end where no key of the mapping
    /// itself has their name.
    Mapping {
        entries: Vec<Entry>,
        pending: Option<PendingKey>,
        merged: Vec<Entry>,
        /// The line where each key was first written, for duplicates (a lookup, not a
        /// scan of the entries: a document of 50,000 fields was quadratic).
        first_lines: std::collections::HashMap<String, usize>,
    },
}

/// A mapping key waiting for its value.
struct PendingKey {
    key: String,
    position: Position,
    /// A plain `<<`: its value is merged into the mapping instead of being an entry.
    merge: bool,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    documents: usize,
    /// Where a second document starts, if one does.
    second_document: Option<Position>,
    anchors: std::collections::HashMap<usize, Node>,
    alias_nodes: usize,
    errors: Vec<YamlError>,
    /// Set once an error makes the rest of the tree meaningless.
    stopped: bool,
}

impl Builder {
    /// Handles one event; `false` stops the parse.
    fn event(&mut self, event: Event<'_>, span: Span) -> bool {
        let position = Position::start_of(&span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    // An empty document after the first (a trailing `---`, as many
                    // generated files end) is nothing; one with content is an error.
                    self.second_document = Some(position);
                }
            }
            Event::Scalar(ref text, style, _, _)
                if self.documents > 1
                    && self.stack.is_empty()
                    && style == ScalarStyle::Plain
                    && matches!(text.as_ref(), "" | "~") => {}
            Event::Scalar(..)
            | Event::SequenceStart(..)
            | Event::MappingStart(..)
            | Event::Alias(_)
                if self.documents > 1 =>
            {
                self.errors.push(YamlError {
                    position: self.second_document.unwrap_or(position),
                    pointer: String::new(),
                    message: "a pipeline file holds one YAML document; a second one starts here (remove `---`, or split the file)".into(),
                });
                return false;
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.check_tag(
                    tag.as_deref(),
                    &["str", "int", "float", "bool", "null"],
                    position,
                );
                let core = tag
                    .as_ref()
                    .filter(|t| t.is_yaml_core_schema())
                    .map(|t| t.suffix.as_str());
                let forced_string = core == Some("str");
                // `!!int "6379"`: a core-schema type asks for that type, quoted or not.
                let typed = matches!(core, Some("int" | "float" | "bool" | "null"));
                let plain = (style == ScalarStyle::Plain || typed) && !forced_string;
                let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
                let single_line = span.start.line() == span.end.line();
                let text = text.into_owned();
                let value = if plain {
                    resolve_plain(&text)
                } else {
                    Value::String(text.clone())
                };
                let text_column = position.column + usize::from(quoted);
                let node = Node {
                    position,
                    kind: NodeKind::Scalar(Scalar {
                        text,
                        plain,
                        forced_string,
                        single_line,
                        text_column,
                        value,
                    }),
                };
                self.finish_node(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), &["seq"], position);
                self.stack.push(Open {
                    position,
                    anchor,
                    kind: OpenKind::Sequence(Vec::new()),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), &["map"], position);
                self.stack.push(Open {
                    position,
                    anchor,
                    kind: OpenKind::Mapping {
                        entries: Vec::new(),
                        pending: None,
                        merged: Vec::new(),
                        first_lines: std::collections::HashMap::new(),
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    let kind = match open.kind {
                        OpenKind::Sequence(items) => NodeKind::Sequence(items),
                        OpenKind::Mapping {
                            mut entries,
                            merged,
                            mut first_lines,
                            ..
                        } => {
                            for entry in merged {
                                if !first_lines.contains_key(&entry.key) {
                                    first_lines.insert(entry.key.clone(), entry.key_position.line);
                                    entries.push(entry);
                                }
                            }
                            NodeKind::Mapping(entries)
                        }
                    };
                    self.finish_node(
                        Node {
                            position: open.position,
                            kind,
                        },
                        open.anchor,
                    );
                }
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    self.errors.push(YamlError {
                        position,
                        pointer: self.child_pointer(),
                        message: "alias refers to an unknown anchor".into(),
                    });
                    self.stopped = true;
                    return false;
                };
                self.alias_nodes += count_nodes(&node);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    self.errors.push(YamlError {
                        position,
                        pointer: self.child_pointer(),
                        message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes: refusing to expand them"),
                    });
                    self.stopped = true;
                    return false;
                }
                self.finish_node(node, 0);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        !self.stopped
    }

    /// Reports a tag other than the core-schema ones in `allowed` (`!!int`, ...) and
    /// the non-specific `!`: a custom tag (`!Ref`, `!ENV`) or `!!binary` would
    /// otherwise be dropped silently, its value read as plain text.
    fn check_tag(
        &mut self,
        tag: Option<&saphyr_parser::Tag>,
        allowed: &[&str],
        position: Position,
    ) {
        let Some(tag) = tag else { return };
        if (tag.is_yaml_core_schema() && allowed.contains(&tag.suffix.as_str()))
            || (tag.handle == "!" && tag.suffix.is_empty())
        {
            return;
        }
        let written = if tag.is_yaml_core_schema() {
            format!("!!{}", tag.suffix)
        } else {
            format!("{}{}", tag.handle, tag.suffix)
        };
        self.errors.push(YamlError {
            position,
            pointer: self.child_pointer(),
            message: format!(
                "the tag `{written}` is not taken here: a pipeline file is plain YAML (only `!!str`, `!!int`, `!!float`, `!!bool` and `!!null` on values); remove it"
            ),
        });
    }

    /// The JSON pointer of the node that starts next (a key being parsed has no
    /// pointer of its own: it gets its mapping's).
    fn child_pointer(&self) -> String {
        self.pointer_of(self.stack.len())
    }

    /// The pointer of the node that starts next inside the first `depth` open collections.
    fn pointer_of(&self, depth: usize) -> String {
        let mut pointer = String::new();
        for open in &self.stack[..depth] {
            match &open.kind {
                OpenKind::Sequence(items) => pointer.push_str(&format!("/{}", items.len())),
                OpenKind::Mapping {
                    pending: Some(PendingKey { key, .. }),
                    ..
                } => {
                    pointer.push('/');
                    pointer.push_str(&escape_pointer(key));
                }
                OpenKind::Mapping { pending: None, .. } => break,
            }
        }
        pointer
    }

    /// Places a finished node in its parent (as an item, a key or a value) or as the root.
    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let depth = self.stack.len();
        let Some(open) = self.stack.last() else {
            self.root = Some(node);
            return;
        };
        // A key: check it (immutably, so the mapping's pointer can be computed), then store it.
        if let OpenKind::Mapping {
            pending: None,
            first_lines,
            ..
        } = &open.kind
        {
            let (key, merge) = match &node.kind {
                NodeKind::Scalar(scalar) => {
                    (scalar.text.clone(), scalar.plain && scalar.text == "<<")
                }
                _ => {
                    self.errors.push(YamlError {
                        position: node.position,
                        pointer: self.pointer_of(depth - 1),
                        message: format!("a key must be plain text, not {}", node.kind_name()),
                    });
                    (String::from("\u{0}invalid key"), false)
                }
            };
            if let Some(first_line) = first_lines.get(&key).filter(|_| !merge) {
                let message = format!(
                    "duplicate key `{key}` (first defined at line {first_line}): each key appears once in a mapping"
                );
                let pointer = format!("{}/{}", self.pointer_of(depth - 1), escape_pointer(&key));
                self.errors.push(YamlError {
                    position: node.position,
                    pointer,
                    message,
                });
            }
            if let Some(Open {
                kind:
                    OpenKind::Mapping {
                        pending,
                        first_lines,
                        ..
                    },
                ..
            }) = self.stack.last_mut()
            {
                if !merge {
                    first_lines.entry(key.clone()).or_insert(node.position.line);
                }
                *pending = Some(PendingKey {
                    key,
                    position: node.position,
                    merge,
                });
            }
            return;
        }
        let mut not_mergeable = None;
        match &mut self.stack.last_mut().expect("an open collection").kind {
            OpenKind::Sequence(items) => items.push(node),
            OpenKind::Mapping {
                entries,
                pending,
                merged,
                ..
            } => match pending.take() {
                Some(PendingKey { merge: true, .. }) => {
                    let sources = match node.kind {
                        NodeKind::Mapping(_) => vec![node],
                        NodeKind::Sequence(items)
                            if items.iter().all(|i| matches!(i.kind, NodeKind::Mapping(_))) =>
                        {
                            items
                        }
                        _ => {
                            not_mergeable = Some(node);
                            Vec::new()
                        }
                    };
                    for source in sources {
                        if let NodeKind::Mapping(source_entries) = source.kind {
                            merged.extend(source_entries);
                        }
                    }
                }
                Some(PendingKey { key, position, .. }) => entries.push(Entry {
                    key,
                    key_position: position,
                    value: node,
                }),
                None => {}
            },
        }
        if let Some(node) = not_mergeable {
            let (position, got) = match &node.kind {
                NodeKind::Sequence(items) => match items
                    .iter()
                    .find(|i| !matches!(i.kind, NodeKind::Mapping(_)))
                {
                    Some(item) => (
                        item.position,
                        format!("a list holding {}", item.kind_name()),
                    ),
                    None => (node.position, node.kind_name().to_owned()),
                },
                _ => (node.position, node.kind_name().to_owned()),
            };
            self.errors.push(YamlError {
                position,
                pointer: format!("{}/<<", self.pointer_of(depth - 1)),
                message: format!(
                    "a merge key `<<` takes a mapping or a list of mappings (`<<: *defaults`), not {got}"
                ),
            });
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Scalar(_) => 0,
        NodeKind::Sequence(items) => items.iter().map(count_nodes).sum(),
        NodeKind::Mapping(entries) => entries.iter().map(|e| 1 + count_nodes(&e.value)).sum(),
    }
}

/// Escapes one JSON pointer segment (`~` -> `~0`, `/` -> `~1`).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = resolve_integer(text) {
        return Value::Number(n);
    }
    if is_float(text) {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_owned())
}

fn resolve_integer(text: &str) -> Option<Number> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = text.strip_prefix("0o") {
        (8, octal)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix != 10 && text.len() != digits.len() + 2 {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some(Number::from((magnitude as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else {
        Some(Number::from(magnitude))
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (infinities and NaN stay strings:
/// JSON has no place for them).
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
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
        let root = parse_ok("a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: '12'\ng: yes\nh: 0x1f\ni: [x, \"y\"]\nj: !!str 3\n");
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
        assert_eq!(
            parse_ok("---\na: 1\n...\n---\n# end\n").to_json(),
            json!({"a": 1})
        );
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
        let root = parse_ok(
            "d: &d {a: 1, b: 2}\ne: &e {b: 3, c: 4}\nm:\n  b: 9\n  <<: [*d, *e]\n  z: 0\n",
        );
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
        assert_eq!(
            inner[1].value.position,
            Position {
                line: 2,
                column: 14
            }
        );
        // A quoted `<<` is an ordinary key.
        assert_eq!(
            parse_ok("'<<': {a: 1}\n").to_json(),
            json!({"<<": {"a": 1}})
        );
    }

    #[test]
    fn a_merge_key_needs_a_mapping() {
        let (_, errors) = parse("s:\n  <<: 5\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/s/<<");
        assert_eq!(errors[0].position, Position { line: 2, column: 7 });
        assert!(
            errors[0]
                .message
                .starts_with("a merge key `<<` takes a mapping"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_unquoted_star_gets_a_hint_to_quote_it() {
        let (_, errors) = parse("database: *\n");
        assert_eq!(
            errors[0].position,
            Position {
                line: 1,
                column: 11
            }
        );
        assert_eq!(
            errors[0].message,
            "invalid YAML: an unquoted `*` starts an alias (a reference to an `&anchor`); to write the text `*`, quote it: `\"*\"`"
        );
        let (_, errors) = parse("rules:\n  - {database: 0, key_pattern: *abc}\n");
        assert!(
            errors[0].message.contains("quote it: `\"*abc\"`"),
            "{errors:?}"
        );
    }

    #[test]
    fn core_schema_tags_set_the_type_and_other_tags_are_errors() {
        let root = parse_ok("a: !!int \"6379\"\nb: !!str 12\nc: !!bool 'true'\nd: !!float '1.5'\ne: !!null ''\nf: !!map {x: 1}\n");
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
        assert!(
            found[0].2.starts_with("the tag `!Ref` is not taken here"),
            "{found:?}"
        );
        assert!(
            found[1]
                .2
                .starts_with("the tag `!!binary` is not taken here"),
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
        assert!(
            errors[0].message.contains("aliases expand to more than"),
            "{errors:?}"
        );
    }

    #[test]
    fn empty_text_has_no_document() {
        assert!(parse("").0.is_none());
        assert!(parse("# only a comment\n").0.is_none());
    }
}
