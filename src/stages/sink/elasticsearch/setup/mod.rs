//! Setting an index up before documents are written: the sink's configuration checked
//! without I/O (`config`, `mappings`), where documents go (`names`), index creation
//! and ownership (`index`), checks of settings, mappings and documents against
//! Elasticsearch before writing (`creation_check`, `dry_check`, `compat`).

pub(super) mod compat;
pub(super) mod config;
pub(super) mod creation_check;
pub(super) mod dry_check;
pub(super) mod index;
pub(super) mod mapping_update;
pub(crate) mod mappings;
pub(super) mod names;
