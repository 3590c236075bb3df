//! The load of `scripts/bench-live`: a writer doing SET / HSET / DEL / EXPIRE / LPUSH
//! at a fixed rate against Redis while `redis-connector run --follow` follows it, and
//! the latency of a change: from the write to its document being readable by a
//! realtime `GET` of its id (keys sampled every 20 ms; one poller asks for every
//! sample not seen yet with one realtime `_mget` about every 2 ms, so the polling
//! load on Elasticsearch stays the same however many samples are outstanding, and no
//! sample waits for a free poller while its clock runs).
//!
//! The writer keeps the asked rate over the whole run: each 10 ms tick writes what
//! the elapsed time owes (a late tick, on a busy machine, is caught up by the next),
//! in one pipelined request.
//!
//! Usage: bench_live REDIS_PORT ES_URL INDEX WRITES_PER_SECOND SECONDS
//! Prints one JSON line: the rate asked and reached, latency percentiles (ms), how
//! long the index took to hold as many documents as Redis has keys once the writer
//! stopped.

use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 6,
        "usage: bench_live REDIS_PORT ES_URL INDEX WRITES_PER_SECOND SECONDS"
    );
    let port: u16 = args[1].parse().unwrap();
    let es = args[2].clone();
    let index = args[3].clone();
    let rate: u64 = args[4].parse().unwrap();
    let seconds: u64 = args[5].parse().unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut connection = client.get_connection().unwrap();

    // Samples: (id, value, written at) to the poller; latencies (None: not seen in
    // 30 s) back.
    let (sample_tx, sample_rx) = mpsc::channel::<(String, String, Instant)>();
    let (latency_tx, latency_rx) = mpsc::channel::<Option<f64>>();
    let poller = {
        let (es, index) = (es.clone(), index.clone());
        std::thread::spawn(move || poll(&es, &index, sample_rx, latency_tx))
    };

    let started = Instant::now();
    let tick = Duration::from_millis(10);
    let mut written = 0u64;
    let mut n = 0u64;
    let mut next_sample = started;
    let mut samples = 0u64;
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut random = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    while started.elapsed() < Duration::from_secs(seconds) {
        let tick_start = Instant::now();
        // What the time since the start owes, whatever the earlier ticks managed.
        let owed = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        let count = owed.saturating_sub(written);
        let mut pipe = redis::pipe();
        for _ in 0..count {
            n += 1;
            let key = random(10_000);
            match random(10) {
                0..=3 => pipe.cmd("SET").arg(format!("s:{key}")).arg(n).ignore(),
                4 | 5 => pipe.cmd("HSET").arg(format!("h:{key}")).arg("f").arg(n).ignore(),
                6 => pipe.cmd("DEL").arg(format!("s:{key}")).ignore(),
                7 => pipe.cmd("EXPIRE").arg(format!("s:{key}")).arg(30).ignore(),
                _ => pipe.cmd("LPUSH").arg(format!("l:{key}")).arg(n).ignore(),
            };
        }
        let sample = (Instant::now() >= next_sample).then(|| {
            next_sample += Duration::from_millis(20);
            samples += 1;
            let key = format!("lat:{samples}");
            let value = format!("{n}-{samples}");
            pipe.cmd("SET").arg(&key).arg(&value).ignore();
            (redis_connector::document::default_id(0, key.as_bytes()), value)
        });
        let at = Instant::now();
        if count > 0 || sample.is_some() {
            let _: () = pipe.query(&mut connection).unwrap();
        }
        written += count;
        if let Some((id, value)) = sample {
            sample_tx.send((id, value, at)).unwrap();
        }
        if let Some(rest) = tick.checked_sub(tick_start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(sample_tx);
    let stopped = Instant::now();

    // How long until the index holds as many documents as Redis has keys.
    let http = reqwest::blocking::Client::new();
    let mut settled = None;
    while stopped.elapsed() < Duration::from_secs(120) {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
        let _ = http.post(format!("{es}/{index}/_refresh")).send();
        let count = http
            .get(format!("{es}/{index}/_count"))
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0);
        if count == keys {
            settled = Some(stopped.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = poller.join();
    let mut latencies: Vec<f64> = Vec::new();
    let mut missed = 0;
    for latency in latency_rx {
        match latency {
            Some(ms) => latencies.push(ms),
            None => missed += 1,
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "{}",
        serde_json::json!({
            "rate_asked": rate,
            "rate_reached": (written as f64 / elapsed).round(),
            "writes": written,
            "samples": latencies.len(),
            "samples_not_seen_in_30s": missed,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "settled_s": settled,
        })
    );
}

/// Polls Elasticsearch for every outstanding sample at once (a realtime `_mget` of
/// their ids) until the samples end and the last one is seen or 30 s old; sends each
/// sample's latency (ms from its write to the answer that showed its value).
fn poll(
    es: &str,
    index: &str,
    samples: mpsc::Receiver<(String, String, Instant)>,
    latencies: mpsc::Sender<Option<f64>>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{es}/{index}/_mget?realtime=true&_source_includes=value");
    let mut outstanding: Vec<(String, String, Instant)> = Vec::new();
    let mut open = true;
    while open || !outstanding.is_empty() {
        if outstanding.is_empty() {
            match samples.recv() {
                Ok(sample) => outstanding.push(sample),
                Err(_) => break,
            }
        }
        loop {
            match samples.try_recv() {
                Ok(sample) => outstanding.push(sample),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let ids: Vec<&str> = outstanding.iter().map(|(id, _, _)| id.as_str()).collect();
        let docs = http
            .post(&url)
            .json(&serde_json::json!({ "ids": ids }))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.json::<serde_json::Value>().ok());
        let answered = Instant::now();
        // (No answer: nothing is seen this round.)
        let docs: &[serde_json::Value] = docs.as_ref().and_then(|d| d["docs"].as_array()).map_or(&[], |d| d);
        let mut i = 0;
        outstanding.retain(|(_, value, at)| {
            let doc = docs.get(i);
            i += 1;
            let seen = doc.is_some_and(|doc| doc["found"] == true && doc["_source"]["value"] == value.as_str());
            if seen {
                let _ = latencies.send(Some(answered.duration_since(*at).as_secs_f64() * 1000.0));
                false
            } else if answered.duration_since(*at) > Duration::from_secs(30) {
                let _ = latencies.send(None);
                false
            } else {
                true
            }
        });
        std::thread::sleep(Duration::from_millis(2));
    }
}
