//! Templating, in one place for every stage that renders or reads a record: the
//! minijinja environment, a record's context and the names it offers, the checks run
//! before any record, and error descriptions. The template transform, the filter
//! transform and the Elasticsearch sink's `index` use it; none of them imports
//! another.

pub mod checks;
pub mod context;
pub mod environment;
pub mod errors;
pub mod index;

pub use context::{record_context, record_json, INDEX_TEMPLATE_NAMES, RECORD_FIELDS, RECORD_NAMES};
pub use environment::{environment, environment_reads};
