//! The tree builder: turns `saphyr-parser` events into [`Node`]s with positions,
//! expanding anchors and aliases (bounded) and merge keys, and reporting duplicate
//! keys, tags and a second document.
//!
//! Aliases are bounded twice: in nodes ([`MAX_ALIAS_NODES`], against nested "billion
//! laughs") and in bytes ([`expansion_limit`]: a long string aliased thousands of
//! times is few nodes but gigabytes of text). So a file never makes the loader hold
//! more than a small multiple of its own size plus a fixed allowance.

use saphyr_parser::{Event, ScalarStyle, Span};
use serde_json::Value;

use super::{escape_pointer, resolve_plain, Entry, Node, NodeKind, Position, Scalar, YamlError};

/// Nodes an alias may copy in one file, in total (guards against "billion laughs").
const MAX_ALIAS_NODES: usize = 100_000;

/// The fixed allowance of [`expansion_limit`]: 1 MiB.
const EXPANSION_ALLOWANCE: usize = 1 << 20;

/// How large a file of `file_bytes` may grow once its aliases are expanded, counted
/// as YAML text ([`text_bytes`]): ten times its size plus 1 MiB. A file that reuses
/// a block of settings a few times stays far below it; a 160 KB file aliasing a
/// 10 KB string 50,000 times (500 MB of text) is refused at its 249th alias.
pub(super) fn expansion_limit(file_bytes: usize) -> usize {
    file_bytes.saturating_mul(10).saturating_add(EXPANSION_ALLOWANCE)
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
pub(super) struct Builder {
    stack: Vec<Open>,
    pub(super) root: Option<Node>,
    documents: usize,
    /// Where a second document starts, if one does.
    second_document: Option<Position>,
    anchors: std::collections::HashMap<usize, Node>,
    alias_nodes: usize,
    /// The file's size, and how many bytes of text its aliases copied so far.
    file_bytes: usize,
    alias_bytes: usize,
    pub(super) errors: Vec<YamlError>,
    /// Set once an error makes the rest of the tree meaningless.
    stopped: bool,
}

impl Builder {
    /// A builder for a file of `file_bytes` bytes (the size bounds alias expansion).
    pub(super) fn for_file(file_bytes: usize) -> Builder {
        Builder {
            file_bytes,
            ..Builder::default()
        }
    }

    /// Handles one event; `false` stops the parse.
    pub(super) fn event(&mut self, event: Event<'_>, span: Span) -> bool {
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
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(_)
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
                self.check_tag(tag.as_deref(), &["str", "int", "float", "bool", "null"], position);
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
                let (nodes, bytes) = measure(&node);
                self.alias_nodes += nodes;
                self.alias_bytes = self.alias_bytes.saturating_add(bytes);
                let limit = expansion_limit(self.file_bytes);
                if self.file_bytes.saturating_add(self.alias_bytes) > limit {
                    self.errors.push(YamlError {
                        position,
                        pointer: self.child_pointer(),
                        message: format!(
                            "aliases expand this file beyond {limit} bytes (line {}): refusing to expand them; a file \
                             of {} bytes may grow to 10 times its size plus 1 MiB once its aliases are expanded \
                             (write the value once, or reuse a shorter one)",
                            position.line, self.file_bytes
                        ),
                    });
                    self.stopped = true;
                    return false;
                }
                if self.alias_nodes > MAX_ALIAS_NODES {
                    self.errors.push(YamlError {
                        position,
                        pointer: self.child_pointer(),
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes: refusing to expand them"
                        ),
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
    fn check_tag(&mut self, tag: Option<&saphyr_parser::Tag>, allowed: &[&str], position: Position) {
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
                NodeKind::Scalar(scalar) => (scalar.text.clone(), scalar.plain && scalar.text == "<<"),
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
                kind: OpenKind::Mapping {
                    pending, first_lines, ..
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
                        NodeKind::Sequence(items) if items.iter().all(|i| matches!(i.kind, NodeKind::Mapping(_))) => {
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
            self.not_mergeable(node, depth);
        }
    }

    /// Reports the value of a merge key `<<` that is not a mapping or a list of mappings
    /// (at the first item that is not, in a list), in the mapping open at `depth - 1`.
    fn not_mergeable(&mut self, node: Node, depth: usize) {
        let (position, got) = match &node.kind {
            NodeKind::Sequence(items) => match items.iter().find(|i| !matches!(i.kind, NodeKind::Mapping(_))) {
                Some(item) => (item.position, format!("a list holding {}", item.kind_name())),
                None => (node.position, node.kind_name().to_owned()),
            },
            _ => (node.position, node.kind_name().to_owned()),
        };
        self.errors.push(YamlError {
            position,
            pointer: format!("{}/<<", self.pointer_of(depth - 1)),
            message: format!("a merge key `<<` takes a mapping or a list of mappings (`<<: *defaults`), not {got}"),
        });
    }
}

/// A node's size: how many nodes it holds (itself included), and how many bytes of
/// YAML text it amounts to (scalars' and keys' text, plus two bytes a node for the
/// punctuation around it), which is what copying it costs.
fn measure(node: &Node) -> (usize, usize) {
    match &node.kind {
        NodeKind::Scalar(scalar) => (1, scalar.text.len() + 2),
        NodeKind::Sequence(items) => items.iter().map(measure).fold((1, 2), |(n, b), (i, j)| (n + i, b + j)),
        NodeKind::Mapping(entries) => entries.iter().fold((1, 2), |(n, b), entry| {
            let (i, j) = measure(&entry.value);
            (n + 1 + i, b + entry.key.len() + 2 + j)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_is_bounded_by_ten_times_the_file_plus_one_mebibyte() {
        assert_eq!(expansion_limit(0), 1 << 20);
        assert_eq!(expansion_limit(160_000), 1_600_000 + (1 << 20));
        assert_eq!(expansion_limit(usize::MAX), usize::MAX);
    }

    #[test]
    fn a_long_string_aliased_many_times_stops_at_the_byte_limit() {
        // 10,000 bytes aliased 50,000 times: 160 KB of file, 500 MB of text expanded.
        let mut text = format!("a: &a \"{}\"\nb: [", "x".repeat(10_000));
        text.push_str(&"*a,".repeat(50_000));
        text.push_str("]\n");
        let mut builder = Builder::for_file(text.len());
        let mut parser = saphyr_parser::Parser::new_from_str(&text);
        let mut events = 0;
        while let Some(Ok((event, span))) = parser.next_event() {
            events += 1;
            if !builder.event(event, span) {
                break;
            }
        }
        let limit = expansion_limit(text.len());
        assert_eq!(builder.errors.len(), 1, "{:?}", builder.errors);
        let error = &builder.errors[0];
        assert!(
            error
                .message
                .starts_with(&format!("aliases expand this file beyond {limit} bytes (line 2)")),
            "{}",
            error.message
        );
        assert_eq!(error.position.line, 2);
        // The 249th alias goes over: (2,648,736 - 160,016) / 10,002 = 248.8.
        assert_eq!(error.pointer, "/b/248");
        // It stopped at the alias that went over, not at the end of the file.
        assert!(events < 300, "{events} events");
        // What was expanded stayed within the limit.
        assert!(builder.file_bytes + builder.alias_bytes - 10_002 <= limit);
    }

    #[test]
    fn aliases_within_the_limit_are_expanded_and_measured() {
        let text = "d: &d {host: h, port: 1}\na: *d\nb: *d\n";
        let mut builder = Builder::for_file(text.len());
        let mut parser = saphyr_parser::Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            assert!(builder.event(event, span));
        }
        assert!(builder.errors.is_empty());
        assert_eq!(builder.alias_nodes, 2 * 5);
        // {host: h, port: 1}: 2 + (4 + 2 + 3) + (4 + 2 + 3) = 20 bytes, twice.
        assert_eq!(builder.alias_bytes, 40);
    }
}
