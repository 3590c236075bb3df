//! The Elasticsearch sink (placeholder until it lands).

use tokio::sync::mpsc;

use crate::config::model::ElasticsearchSinkConfig;
use crate::record::Batch;
use crate::stages::{FieldError, SinkReport, StageContext, UpstreamOutcome};

pub struct ElasticsearchSink {
    config: ElasticsearchSinkConfig,
}

impl ElasticsearchSink {
    pub fn build(config: &ElasticsearchSinkConfig) -> Result<Self, Vec<FieldError>> {
        Ok(ElasticsearchSink { config: config.clone() })
    }
    pub async fn open(&mut self, _ctx: &StageContext) -> anyhow::Result<()> {
        todo!("elasticsearch sink")
    }
    pub async fn consume(&mut self, _input: mpsc::Receiver<Batch>, _ctx: &StageContext) -> anyhow::Result<()> {
        let _ = &self.config;
        todo!("elasticsearch sink")
    }
    pub async fn finish(self, _upstream: UpstreamOutcome, _ctx: &StageContext) -> anyhow::Result<SinkReport> {
        todo!("elasticsearch sink")
    }
}
