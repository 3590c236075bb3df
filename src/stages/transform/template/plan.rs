//! The plan of a `document` mapping: each leaf named by its JSON pointer, as a
//! template (a string), an expression (`{expr: ...}`, keeping its type) or a
//! constant, made once at build.

use serde_json::{Map, Value as Json};

use crate::config::FieldError;
use crate::templating::errors::json_kind;

/// What a document's body is made of. Leaves point into the compiled templates
/// (by name) and expressions (by position).
pub(super) enum BodyPlan {
    /// No `document`: the default document's body.
    Default,
    /// `document: {expr: ...}`: one expression yielding the whole mapping.
    Whole { expr: usize, pointer: String },
    /// A mapping of leaves.
    Fields(Vec<(String, Node)>),
}

/// One node of a document mapping.
pub(super) enum Node {
    /// A string template; the result is a string.
    Template(String),
    /// An expression (by position in the compiled list); the result keeps its type.
    Expr {
        expr: usize,
        pointer: String,
    },
    /// A constant copied as it is.
    Constant(Json),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

/// `Some(source)` when the mapping is `{expr: "..."}`; `Some(Err)` when `expr` is not a string.
pub(super) fn expression_source(map: &Map<String, Json>) -> Option<Result<&str, String>> {
    if map.len() != 1 {
        return None;
    }
    match map.get("expr")? {
        Json::String(source) => Some(Ok(source)),
        other => Some(Err(format!(
            "`expr` must be a string holding an expression, not {}",
            json_kind(other)
        ))),
    }
}

/// Walks a `document` mapping, naming every leaf by its JSON pointer.
pub(super) struct Planner<'a> {
    pub(super) templates: &'a mut Vec<(String, String)>,
    pub(super) exprs: &'a mut Vec<(String, String)>,
    pub(super) errors: Vec<FieldError>,
}

impl Planner<'_> {
    pub(super) fn plan_map(&mut self, map: &Map<String, Json>, pointer: &str) -> Vec<(String, Node)> {
        map.iter()
            .map(|(name, value)| {
                let child = format!("{pointer}/{}", escape_pointer(name));
                (name.clone(), self.plan(value, &child))
            })
            .collect()
    }

    fn plan(&mut self, value: &Json, pointer: &str) -> Node {
        match value {
            Json::String(source) => {
                self.templates.push((pointer.to_owned(), source.clone()));
                Node::Template(pointer.to_owned())
            }
            Json::Object(map) => match expression_source(map) {
                Some(Ok(source)) => {
                    self.exprs.push((pointer.to_owned(), source.to_owned()));
                    Node::Expr {
                        expr: self.exprs.len() - 1,
                        pointer: pointer.to_owned(),
                    }
                }
                Some(Err(message)) => {
                    self.errors.push(FieldError::new(format!("{pointer}/expr"), message));
                    Node::Constant(Json::Null)
                }
                None => Node::Map(self.plan_map(map, pointer)),
            },
            Json::Array(items) => Node::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.plan(item, &format!("{pointer}/{i}")))
                    .collect(),
            ),
            other => Node::Constant(other.clone()),
        }
    }
}

/// Escapes a JSON pointer segment (`~` → `~0`, `/` → `~1`).
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
