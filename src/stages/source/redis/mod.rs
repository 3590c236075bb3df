//! The Redis source (placeholder until the Redis source lands).

use tokio::sync::mpsc;

use crate::config::model::RedisSourceConfig;
use crate::record::Batch;
use crate::stages::{FieldError, SourceReport, StageContext};

pub struct RedisSource {
    config: RedisSourceConfig,
}

impl RedisSource {
    pub fn build(config: &RedisSourceConfig) -> Result<Self, Vec<FieldError>> {
        Ok(RedisSource { config: config.clone() })
    }

    pub async fn run(self, _out: mpsc::Sender<Batch>, _ctx: StageContext) -> anyhow::Result<SourceReport> {
        let _ = &self.config;
        todo!("redis source")
    }
}
