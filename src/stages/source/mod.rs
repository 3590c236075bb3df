//! Source stages: where records come from.

pub mod redis;
