//! A record the template could not render: why (the field's pointer, minijinja's
//! message naming the failing expression), and its dead-letter line.

use serde_json::Value as Json;

use crate::dead_letter::DeadLetterEntry;
use crate::record::Record;
use crate::stages::StageContext;
use crate::templating::errors::{describe, enclosing_expression};
use crate::templating::record_json;

/// Why one record could not be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderFailure {
    /// The field's pointer (`/document/name`, `/id`).
    pub pointer: String,
    /// What went wrong, with the template's line.
    pub message: String,
    /// The document id, when it was rendered before the failure.
    pub id: Option<String>,
}

impl RenderFailure {
    pub(super) fn new(pointer: &str, error: &minijinja::Error, id: Option<&str>) -> Self {
        RenderFailure {
            pointer: pointer.to_owned(),
            message: describe(error),
            id: id.map(str::to_owned),
        }
    }

    /// As [`RenderFailure::new`], naming the expression of the template's `source`
    /// that failed (`` `value.name`: undefined value (line 1) ``) when the error
    /// locates it: the whole `{{ ... }}` or `{% ... %}` around the failing part.
    pub(super) fn in_source(pointer: &str, error: &minijinja::Error, source: &str, id: Option<&str>) -> Self {
        let mut failure = Self::new(pointer, error, id);
        let failed = error.range().and_then(|range| enclosing_expression(source, range));
        if let Some(expression) = failed.filter(|e| !e.is_empty()) {
            failure.message = format!("`{expression}`: {}", failure.message);
        }
        failure
    }

    pub(super) fn message(pointer: &str, message: &str, id: Option<&str>) -> Self {
        RenderFailure {
            pointer: pointer.to_owned(),
            message: message.to_owned(),
            id: id.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for RenderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// Sends a failed record to the dead-letter file (the failure is already counted).
pub(super) fn dead_letter(record: &Record, ctx: &StageContext, failure: RenderFailure) {
    let (key, key_is_base64) = record.key_text();
    let reason = failure.to_string();
    // The key still exists: stale deletion keeps what an earlier run wrote for it.
    ctx.failed_before_sink.add(failure.id.as_deref());
    let entry = DeadLetterEntry {
        pipeline: ctx.pipeline.to_string(),
        stage: ctx.stage.clone(),
        index: None,
        id: failure.id,
        key,
        key_encoding: key_is_base64.then_some("base64"),
        database: record.database,
        error_type: "template_error".to_owned(),
        reason,
        document: None,
        record: Some(Json::Object(record_json(record))),
    };
    if let Err(error) = ctx.dead_letter.write(&entry) {
        tracing::error!(
            pipeline = %ctx.pipeline,
            key = ?entry.key,
            "cannot write to the dead-letter file {}: {error}",
            ctx.dead_letter.path().display()
        );
    }
}
