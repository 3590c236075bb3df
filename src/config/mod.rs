//! Loading a pipeline file: YAML -> `${VAR}` interpolation -> JSON Schema check ->
//! typed structs -> semantic checks. Every problem is a [`Diagnostic`] located by file,
//! line, column and JSON pointer.

pub mod model;
pub mod units;
