//! Batching: documents are appended to the bulk being built, which is sent when it
//! holds `bulk.max_docs` documents or `bulk.max_bytes` bytes (the document that took
//! it over the bytes goes in the next one), or when the input paused; up to
//! `bulk.concurrency` bulks are in flight, each written by the [`BulkService`].
//! Following changes (live mode), one bulk is in flight at a time and the next one
//! gathers what arrives meanwhile: it goes as soon as the one in flight is answered,
//! never sealed early to wait behind it ([`Writer::next_following`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::super::http::client::EsClient;
use super::super::http::service::BulkService;
use super::super::http::transport::Transport;
use super::encoder::{Bulk, SentBulk};
use crate::record::Batch;

/// The log target of each bulk request's timing (`RUST_LOG=redis_connector::sink::timing=debug`):
/// its documents, how long it waited for a request slot, how long Elasticsearch took
/// to answer it (retries included).
const TIMING: &str = "redis_connector::sink::timing";

/// When a bulk is sent, and how many may be in flight.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_docs: usize,
    pub max_bytes: usize,
    pub concurrency: usize,
}

/// The bulk being built and the requests in flight.
pub struct Writer<T: Transport = EsClient> {
    service: Arc<BulkService<T>>,
    limits: Limits,
    /// Bytes reserved for each new bulk's body.
    capacity: usize,
    bulk: Bulk,
    in_flight: JoinSet<anyhow::Result<()>>,
}

impl<T: Transport> Writer<T> {
    /// An empty writer sending through `service`.
    pub fn new(service: Arc<BulkService<T>>, limits: Limits) -> Self {
        let reserved = limits.max_bytes.min(8 << 20);
        let capacity = reserved + (reserved >> 3);
        Writer {
            service,
            limits,
            capacity,
            bulk: Bulk::with_capacity(capacity),
            in_flight: JoinSet::new(),
        }
    }

    /// The bulk being built: documents are appended to it, then
    /// [`Writer::flush_if_full`] is called.
    pub fn bulk(&mut self) -> &mut Bulk {
        &mut self.bulk
    }

    /// Whether the bulk being built holds no document.
    pub fn is_empty(&self) -> bool {
        self.bulk.is_empty()
    }

    /// Sends the bulk once it holds `max_docs` documents or `max_bytes` (the last
    /// document alone when it took the bulk over the bytes).
    pub async fn flush_if_full(&mut self) -> anyhow::Result<()> {
        let Limits {
            max_docs, max_bytes, ..
        } = self.limits;
        if self.bulk.byte_len() > max_bytes && self.bulk.len() > 1 {
            let tail = self.bulk.split_off_last();
            let full = std::mem::replace(&mut self.bulk, tail);
            self.dispatch(full).await?;
        }
        if self.bulk.len() >= max_docs || self.bulk.byte_len() >= max_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the bulk being built, whatever it holds (nothing when empty).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let full = std::mem::replace(&mut self.bulk, Bulk::with_capacity(self.capacity));
        self.dispatch(full).await
    }

    /// The first error of a request that ended, without waiting for the others
    /// (to surface a failed request early rather than at the end).
    pub fn check_ended(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.in_flight.try_join_next() {
            flatten(done)?;
        }
        Ok(())
    }

    /// Sends what is left and waits for every request in flight.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        if !self.bulk.is_empty() {
            let last = std::mem::take(&mut self.bulk);
            self.dispatch(last).await?;
        }
        while let Some(done) = self.in_flight.join_next().await {
            flatten(done)?;
        }
        Ok(())
    }

    /// Following changes: the next batch of `input` (`None` once it closed). The
    /// bulk being built goes at once when no request is in flight and nothing is
    /// waiting in `input`; while one is in flight it keeps gathering what arrives
    /// and goes as soon as that one is answered. So a change waits for at most the
    /// request in flight, not behind a bulk sealed half-empty.
    pub async fn next_following(&mut self, input: &mut mpsc::Receiver<Batch>) -> anyhow::Result<Option<Batch>> {
        loop {
            if self.bulk.is_empty() {
                return Ok(input.recv().await);
            }
            if self.in_flight.is_empty() {
                match input.try_recv() {
                    Ok(batch) => return Ok(Some(batch)),
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(None),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.flush().await?;
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                done = self.in_flight.join_next() => {
                    if let Some(done) = done {
                        flatten(done)?;
                    }
                }
                next = input.recv() => return Ok(next),
            }
        }
    }

    /// Stops the requests in flight (the run cannot go on).
    pub fn abort(&mut self) {
        self.in_flight.abort_all();
    }

    /// Sends `bulk` once fewer than `concurrency` requests are in flight.
    async fn dispatch(&mut self, bulk: Bulk) -> anyhow::Result<()> {
        if bulk.is_empty() {
            return Ok(());
        }
        let waiting = Instant::now();
        while self.in_flight.len() >= self.limits.concurrency {
            if let Some(done) = self.in_flight.join_next().await {
                flatten(done)?;
            }
        }
        let waited = waiting.elapsed();
        let service = self.service.clone();
        let sent = SentBulk::from_bulk(bulk);
        self.in_flight.spawn(async move {
            let (docs, sending) = (sent.items.len(), Instant::now());
            let written = service.write(sent).await;
            tracing::debug!(
                target: TIMING,
                docs,
                waited_ms = millis(waited),
                answered_ms = millis(sending.elapsed()),
                "a bulk request answered"
            );
            written
        });
        Ok(())
    }
}

/// Milliseconds to the hundredth, for the timing lines.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

fn flatten(done: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    done.map_err(|e| anyhow::anyhow!("a bulk request task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use serde_json::json;

    use super::*;
    use crate::stages::sink::elasticsearch::http::transport::scripted::{
        self, answer, bulk_answer, ids, ScriptedTransport,
    };

    fn writer(
        transport: &Arc<ScriptedTransport>,
        dir: &tempfile::TempDir,
        limits: Limits,
    ) -> Writer<Arc<ScriptedTransport>> {
        let service = scripted::service(transport, dir.path(), 1_000);
        Writer::new(Arc::new(service), limits)
    }

    fn all_written() -> Arc<ScriptedTransport> {
        ScriptedTransport::new(|_, body| bulk_answer(&vec![201; ids(body).len()], ""))
    }

    /// Appends document `id` with a `text` field of `size` bytes, then flushes if full.
    async fn push(writer: &mut Writer<Arc<ScriptedTransport>>, id: &str, size: usize) {
        let body = json!({ "text": "x".repeat(size) }).as_object().unwrap().clone();
        writer.bulk().push_index("users", id, &body, 0, 0, false);
        writer.bulk().set_last_key(id.as_bytes().to_vec());
        writer.flush_if_full().await.unwrap();
    }

    fn sent_ids(transport: &ScriptedTransport) -> Vec<Vec<String>> {
        transport.bodies().iter().map(|b| ids(b)).collect()
    }

    #[tokio::test]
    async fn a_bulk_is_sent_at_max_docs_and_the_rest_at_the_end() {
        let transport = all_written();
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_docs: 2,
            max_bytes: 1 << 20,
            concurrency: 1,
        };
        let mut writer = writer(&transport, &dir, limits);
        for id in ["a", "b", "c", "d", "e"] {
            push(&mut writer, id, 10).await;
        }
        writer.finish().await.unwrap();
        assert_eq!(sent_ids(&transport), [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert_eq!(writer.service.counters.out.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn the_document_that_takes_a_bulk_over_max_bytes_goes_in_the_next() {
        let transport = all_written();
        let dir = tempfile::tempdir().unwrap();
        // Each document is about 150 bytes with its action line: two fit in 400.
        let limits = Limits {
            max_docs: 100,
            max_bytes: 400,
            concurrency: 2,
        };
        let mut writer = writer(&transport, &dir, limits);
        for id in ["a", "b", "c", "d", "e"] {
            push(&mut writer, id, 50).await;
        }
        writer.finish().await.unwrap();
        let mut sent = sent_ids(&transport);
        sent.sort();
        assert_eq!(sent, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert!(transport.bodies().iter().all(|body| body.len() <= 400));
    }

    #[tokio::test]
    async fn a_document_larger_than_max_bytes_is_sent_alone() {
        let transport = all_written();
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_docs: 100,
            max_bytes: 400,
            concurrency: 1,
        };
        let mut writer = writer(&transport, &dir, limits);
        push(&mut writer, "a", 10).await;
        push(&mut writer, "big", 1_000).await;
        push(&mut writer, "c", 10).await;
        writer.finish().await.unwrap();
        assert_eq!(sent_ids(&transport), [vec!["a"], vec!["big"], vec!["c"]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn following_the_bulk_gathers_what_arrives_while_one_is_in_flight_and_goes_when_it_is_answered() {
        // The first request is held in flight until the test lets it go.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Mutex::new(held);
        let transport = ScriptedTransport::new(move |n, body| {
            if n == 0 {
                let _ = held.lock().unwrap().recv();
            }
            bulk_answer(&vec![201; ids(body).len()], "")
        });
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_docs: 100,
            max_bytes: 1 << 20,
            concurrency: 1,
        };
        let mut writer = writer(&transport, &dir, limits);
        let (tx, mut input) = mpsc::channel::<Batch>(4);
        let next = |id: &str| -> Batch { vec![crate::record::Record::gone(0, id.as_bytes().to_vec())] };

        let steps = async {
            tx.send(next("a")).await.unwrap();
            assert!(writer.next_following(&mut input).await.unwrap().is_some());
            push(&mut writer, "a", 10).await;
            // Nothing in flight, "b" already waiting: it joins "a".
            tx.send(next("b")).await.unwrap();
            assert!(writer.next_following(&mut input).await.unwrap().is_some());
            push(&mut writer, "b", 10).await;
            // Nothing waiting: "a, b" goes at once (and stays in flight); "c" comes.
            let (c, ()) = tokio::join!(writer.next_following(&mut input), async {
                tx.send(next("c")).await.unwrap()
            });
            assert!(c.unwrap().is_some());
            push(&mut writer, "c", 10).await;
            // Nothing waiting, "a, b" in flight: "c" is not sent alone to wait behind
            // it; "d", arriving meanwhile, joins it.
            let (d, ()) = tokio::join!(writer.next_following(&mut input), async {
                tx.send(next("d")).await.unwrap()
            });
            assert!(d.unwrap().is_some());
            push(&mut writer, "d", 10).await;
            release.send(()).unwrap();
            drop(tx);
            assert!(writer.next_following(&mut input).await.unwrap().is_none());
            writer.finish().await.unwrap();
        };
        // (Only a guard: a writer that sent "c" alone would wait forever behind "a, b".)
        tokio::time::timeout(std::time::Duration::from_secs(60), steps)
            .await
            .expect("the writer waited behind the request in flight");
        assert_eq!(sent_ids(&transport), [vec!["a", "b"], vec!["c", "d"]]);
    }

    #[tokio::test]
    async fn a_failed_request_is_the_writers_error() {
        let transport = ScriptedTransport::new(|_, _| answer(401, json!({})));
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_docs: 1,
            max_bytes: 1 << 20,
            concurrency: 1,
        };
        let mut writer = writer(&transport, &dir, limits);
        push(&mut writer, "a", 10).await;
        let error = writer.finish().await.unwrap_err().to_string();
        assert!(error.contains("answered POST _bulk with HTTP 401"), "{error}");
    }
}
