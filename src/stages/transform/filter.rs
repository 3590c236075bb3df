//! The filter transform (placeholder until it lands).

use crate::config::model::FilterConfig;
use crate::record::Batch;
use crate::stages::{FieldError, StageContext};

pub struct FilterTransform {
    config: FilterConfig,
}

impl FilterTransform {
    pub fn build(config: &FilterConfig) -> Result<Self, Vec<FieldError>> {
        Ok(FilterTransform { config: config.clone() })
    }

    pub fn apply(&self, _batch: Batch, _ctx: &StageContext) -> Batch {
        let _ = &self.config;
        todo!("filter transform")
    }
}
