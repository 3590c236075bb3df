//! Sink stages: where documents go.

pub mod elasticsearch;
pub mod ndjson;
