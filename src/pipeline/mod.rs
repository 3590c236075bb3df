//! A pipeline's stages put together: [`build()`] builds them once, with what they
//! require of each other, for `validate`, `run`, dry runs and live mode alike;
//! [`fields`] holds the checks that span stages. Running them is the executor's
//! (`crate::pipeline::executor`, kept apart so live mode and `serve` keep their imports).

pub mod build;
pub mod cross_file;
pub mod executor;
pub mod fields;
mod files;
pub mod load;
pub mod warnings;

pub use build::{build, check, Parts, Requirements, Stages};
pub use files::{load_all, load_pipeline, load_set, LoadedSet};
