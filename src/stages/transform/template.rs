//! The template transform (placeholder until it lands).

use crate::config::model::TemplateConfig;
use crate::record::Batch;
use crate::stages::{FieldError, StageContext};

pub struct TemplateTransform {
    config: TemplateConfig,
}

impl TemplateTransform {
    pub fn build(config: &TemplateConfig) -> Result<Self, Vec<FieldError>> {
        Ok(TemplateTransform { config: config.clone() })
    }

    pub fn apply(&self, _batch: Batch, _ctx: &StageContext) -> Batch {
        let _ = &self.config;
        todo!("template transform")
    }
}
