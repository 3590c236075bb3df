//! Mapping a JSON pointer (`/source/rules/1/_type`) to a line and column of the file.
//!
//! How pointers are mapped to lines: the file is parsed once into a tree of nodes
//! that keep their start position (`config::yaml`, built from `saphyr-parser`
//! events), and that same tree is converted to the JSON value the schema and the
//! structs check. To locate a pointer we walk the tree segment by segment (mapping
//! keys by name, list items by index) as deep as the pointer reaches:
//! - an existing node is located at its value (`port: 70000` -> the `7`), or at its
//!   key when the problem is the key itself (an unknown or duplicate field);
//! - a missing field (`required`) is located at the key of the object that lacks it
//!   (`source:`), or at the object's first line when it has no key (a list item, the root);
//! - a pointer that goes deeper than the file (a template error inside a string)
//!   stops at the deepest node that exists.
//!
//! No index is built: a walk costs the depth of the pointer times the width of the
//! mappings on the way, which keeps a 5 MB file cheap.

use super::yaml::{Node, NodeKind, Position};

/// Which part of a node a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The value (wrong type, bad pattern, out of range).
    Value,
    /// The key that names the node (unknown field); the value when it has no key.
    Key,
}

/// Splits a JSON pointer into unescaped segments (`/a~1b/0` -> `["a/b", "0"]`).
pub fn segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Locates `pointer` in the tree rooted at `root` (see the module docs).
pub fn locate(root: &Node, pointer: &str, anchor: Anchor) -> Position {
    let mut node = root;
    let mut key_position: Option<Position> = None;
    for segment in segments(pointer) {
        let next = match &node.kind {
            NodeKind::Mapping(entries) => entries
                .iter()
                .find(|e| e.key == segment)
                .map(|e| (&e.value, Some(e.key_position))),
            NodeKind::Sequence(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .map(|item| (item, None)),
            NodeKind::Scalar(_) => None,
        };
        match next {
            Some((child, key)) => {
                node = child;
                key_position = key;
            }
            // Deeper than the file: stay at the deepest node that exists.
            None => return node.position,
        }
    }
    match anchor {
        Anchor::Key => key_position.unwrap_or(node.position),
        Anchor::Value => node.position,
    }
}

/// The node at `pointer`, if the file has it.
pub fn node_at<'a>(root: &'a Node, pointer: &str) -> Option<&'a Node> {
    let mut node = root;
    for segment in segments(pointer) {
        node = match &node.kind {
            NodeKind::Mapping(entries) => &entries.iter().find(|e| e.key == segment)?.value,
            NodeKind::Sequence(items) => items.get(segment.parse::<usize>().ok()?)?,
            NodeKind::Scalar(_) => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    const TEXT: &str = "\
name: x
source:
  type: redis
  rules:
    - database: 0
      _type: FOO
    - {database: 1, key_pattern: 'a/b'}
\"we~ird/key\": 1
";

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn values_are_located_where_they_start() {
        let root = parse(TEXT).0.unwrap();
        assert_eq!(locate(&root, "/source/rules/0/_type", Anchor::Value), at(6, 14));
        assert_eq!(locate(&root, "/source/rules/1/key_pattern", Anchor::Value), at(7, 34));
    }

    #[test]
    fn keys_are_located_at_the_key() {
        let root = parse(TEXT).0.unwrap();
        assert_eq!(locate(&root, "/source/rules/0/_type", Anchor::Key), at(6, 7));
        assert_eq!(locate(&root, "/source", Anchor::Key), at(2, 1));
    }

    #[test]
    fn list_items_without_keys_fall_back_to_the_value() {
        let root = parse(TEXT).0.unwrap();
        assert_eq!(locate(&root, "/source/rules/1", Anchor::Key), at(7, 7));
    }

    #[test]
    fn escaped_segments_are_unescaped() {
        let root = parse(TEXT).0.unwrap();
        assert_eq!(locate(&root, "/we~0ird~1key", Anchor::Key), at(8, 1));
        assert_eq!(segments("/a~1b/0"), vec!["a/b".to_string(), "0".to_string()]);
    }

    #[test]
    fn pointers_deeper_than_the_file_stop_at_the_deepest_node() {
        let root = parse(TEXT).0.unwrap();
        assert_eq!(locate(&root, "/source/rules/0/_type/inner/9", Anchor::Value), at(6, 14));
        assert_eq!(locate(&root, "/source/missing/field", Anchor::Value), at(3, 3));
        assert_eq!(locate(&root, "", Anchor::Value), at(1, 1));
    }

    #[test]
    fn node_at_finds_existing_nodes_only() {
        let root = parse(TEXT).0.unwrap();
        assert!(node_at(&root, "/source/rules/1/database").is_some());
        assert!(node_at(&root, "/source/rules/2").is_none());
    }
}
