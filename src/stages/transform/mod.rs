//! Transform stages: applied in order to every batch.

pub mod filter;
pub mod template;
