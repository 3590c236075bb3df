//! The NDJSON sink (placeholder until it lands).

use tokio::sync::mpsc;

use crate::config::model::NdjsonSinkConfig;
use crate::record::Batch;
use crate::stages::{FieldError, SinkReport, StageContext, UpstreamOutcome};

pub struct NdjsonSink {
    config: NdjsonSinkConfig,
}

impl NdjsonSink {
    pub fn build(config: &NdjsonSinkConfig) -> Result<Self, Vec<FieldError>> {
        Ok(NdjsonSink { config: config.clone() })
    }
    pub async fn open(&mut self, _ctx: &StageContext) -> anyhow::Result<()> {
        todo!("ndjson sink")
    }
    pub async fn consume(&mut self, _input: mpsc::Receiver<Batch>, _ctx: &StageContext) -> anyhow::Result<()> {
        let _ = &self.config;
        todo!("ndjson sink")
    }
    pub async fn finish(self, _upstream: UpstreamOutcome, _ctx: &StageContext) -> anyhow::Result<SinkReport> {
        todo!("ndjson sink")
    }
}
