//! redis-connector: a declarative pipeline engine that syncs Redis into Elasticsearch.
//!
//! A pipeline file (YAML, checked against `schemas/pipeline.schema.json`) chains one
//! source stage, zero or more transform stages and one sink stage. The [`executor`]
//! runs them as tokio tasks joined by bounded channels that carry [`record::Batch`]es.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod document;
pub mod json_out;
#[cfg(test)]
mod layers;
pub mod live;
pub mod pipeline;
pub mod record;
pub mod redact;
pub mod serve;
pub mod shutdown;
pub mod stages;
pub mod stats;
pub mod templating;
