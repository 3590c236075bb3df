//! Live mode (`run --follow`) behind an alias (`sink.alias`), against a private Redis
//! and the shared Elasticsearch: a sync that builds a new index runs while changes keep
//! going through the alias; after the swap, every key in Redis has its document read
//! through the alias, and nothing else is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::live::*;
use crate::support::*;
use serde_json::Value;

/// The one index `alias` points to.
fn live_index(alias: &str) -> String {
    let names = pointed(alias);
    assert_eq!(names.len(), 1, "alias {alias} points to {names:?}");
    names.into_iter().next().unwrap()
}

/// Deletes every index built for the alias when the test ends.
struct Cleanup {
    alias: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in alias_indices(&self.alias) {
            es_delete_index(&name);
        }
    }
}

/// A pipeline with default documents behind `alias`, with the sink's `settings`.
fn alias_pipeline(dir: &std::path::Path, file: &str, alias: &str, port: u16, settings: &str) -> std::path::PathBuf {
    write_file(
        dir,
        file,
        &format!(
            "name: {alias}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: \"0\"}}\n\
             sink: {{type: elasticsearch, url: {}, alias: {alias}, settings: {settings}, bulk: {{max_docs: 20}}}}\n\
             live: true\n",
            es_url()
        ),
    )
}

/// A plain `run` of `pipeline`, which must succeed.
fn run_once(pipeline: &std::path::Path) {
    let out = connector().args(["run", "-q"]).arg(pipeline).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Writes random changes into keys `k:0..keys` until `stop`, about 500 a second.
fn writer(port: u16, seed: u64, keys: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut connection = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut rng = Lcg(seed);
        let mut written = 0;
        while !stop.load(Ordering::Relaxed) {
            random_write(&mut connection, &mut rng, keys).unwrap();
            written += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        written
    })
}

#[test]
fn following_starts_a_rebuild_while_changes_go_through_the_alias_and_ends_exact_on_the_new_index() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KEA"]);
    let alias = unique_index("live-alias-rebuild");
    let _cleanup = Cleanup { alias: alias.clone() };
    let dir = tempfile::tempdir().unwrap();
    server.cli_pipe(&(0..3000).map(|i| format!("SET k:{i} {i}\n")).collect::<String>());
    // An index built for one shard, then the pipeline as it is: two shards (which no
    // index can change in place).
    run_once(&alias_pipeline(
        dir.path(),
        "one.yaml",
        &alias,
        server.port,
        "{number_of_shards: 1}",
    ));
    let old = live_index(&alias);
    let two = alias_pipeline(dir.path(), "two.yaml", &alias, server.port, "{number_of_shards: 2}");

    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(server.port, 3, 3000, stop.clone());
    let follow = Follow::start(&std::fs::read_to_string(&two).unwrap());
    // Writes go on during the build and after the swap.
    let mut swapped = false;
    for _ in 0..600 {
        if pointed(&alias) != vec![old.clone()] {
            swapped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(swapped, "the alias did not move: {}", follow.stderr());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let writes = writing.join().unwrap();
    assert!(writes > 0);

    assert_exact(server.port, &[0], &es_url(), &alias);
    let new = live_index(&alias);
    assert_ne!(new, old);
    // keep_previous: 1 (the default) keeps the index that served.
    assert_eq!(alias_indices(&alias), {
        let mut both = vec![old.clone(), new.clone()];
        both.sort();
        both
    });
    let settings: Value = http()
        .get(format!("{}/{new}/_settings", es_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(settings[&new]["settings"]["index"]["number_of_shards"], "2");

    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let live = &summary["pipelines"][0];
    assert_eq!(live["status"], "ok", "{summary}");
    assert_eq!(
        live["resyncs"]["rebuild"], 1,
        "a change-aware pass over the new index: {summary}"
    );
    let notes = live["notes"].to_string();
    assert!(
        notes.contains(&format!("built {new} and moved alias {alias} to it from {old}")),
        "{summary}"
    );
}

#[test]
fn an_unchanged_pipeline_follows_in_place_and_a_failed_rebuild_keeps_changes_reaching_the_serving_index() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KEA"]);
    let alias = unique_index("live-alias-inplace");
    let _cleanup = Cleanup { alias: alias.clone() };
    let dir = tempfile::tempdir().unwrap();
    server.cli_pipe(&(0..200).map(|i| format!("SET k:{i} {i}\n")).collect::<String>());
    // `value` mapped as a number: a build of that index fails while a key holds
    // text (the index of the other pipeline, with the built-in mapping, takes it).
    let refusing = alias_pipeline(
        dir.path(),
        "refusing.yaml",
        &alias,
        server.port,
        "{number_of_shards: 1}, mappings: {properties: {value: {type: long}}}",
    );
    let plain = alias_pipeline(dir.path(), "plain.yaml", &alias, server.port, "{number_of_shards: 1}");
    run_once(&plain);
    let plain_index = live_index(&alias);
    run_once(&refusing);
    let refusing_index = live_index(&alias);

    // The pipeline as the alias's index was built: changes are followed in place.
    let follow = Follow::start(&std::fs::read_to_string(&refusing).unwrap());
    let mut connection = server.connection();
    let mut rng = Lcg(5);
    for _ in 0..500 {
        numeric_write(&mut connection, &mut rng, 300);
    }
    assert_exact(server.port, &[0], &es_url(), &alias);
    assert_eq!(live_index(&alias), refusing_index);

    // The alias rolled back while following (to an index that misses the changes
    // since it served), and a key its build refuses: the next resync (the
    // subscription dropped) builds the pipeline's index again, which fails while
    // `poison` exists. The alias stays, and changes keep reaching the index that
    // serves, through it.
    let out = connector().args(["alias", "rollback"]).arg(&refusing).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(live_index(&alias), plain_index);
    server.cli(&["SET", "poison", "text"]);
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_ne!(killed.trim(), "0");
    let failed = format!("the build of {refusing_index} failed");
    wait_for(|| follow.stderr().contains(&failed), "the failed build");
    server.cli(&["SET", "during-build", "7"]);
    let id = redis_connector::document::default_id(0, b"during-build");
    wait_for(
        || es_get(&alias, &id).is_some(),
        "the change to reach the serving index",
    );
    assert_eq!(live_index(&alias), plain_index, "a failed build leaves the alias");

    // Without the key, the next attempt builds, swaps, and a rebuild pass makes it exact.
    server.cli(&["DEL", "poison"]);
    wait_for(|| pointed(&alias) == vec![refusing_index.clone()], "the swap");
    for _ in 0..300 {
        numeric_write(&mut connection, &mut rng, 300);
    }
    assert_exact(server.port, &[0], &es_url(), &alias);
    assert_eq!(alias_indices(&alias), {
        let mut both = vec![plain_index.clone(), refusing_index.clone()];
        both.sort();
        both
    });

    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let live = &summary["pipelines"][0];
    assert!(live["resyncs"]["rebuild"].as_u64().unwrap_or(0) >= 1, "{summary}");
    assert!(
        live["resyncs"]["error"].as_u64().unwrap_or(0) >= 1,
        "the failed build is retried: {summary}"
    );
}

#[test]
fn a_new_alias_is_created_by_the_first_sync_and_followed_through() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KEA"]);
    let alias = unique_index("live-alias-first");
    let _cleanup = Cleanup { alias: alias.clone() };
    let dir = tempfile::tempdir().unwrap();
    server.cli_pipe(&(0..100).map(|i| format!("SET k:{i} {i}\n")).collect::<String>());
    let file = alias_pipeline(dir.path(), "first.yaml", &alias, server.port, "{number_of_shards: 1}");
    let follow = Follow::start(&std::fs::read_to_string(&file).unwrap());
    // The first sync creates the index and the alias; then changes are followed.
    assert_exact(server.port, &[0], &es_url(), &alias);
    let mut connection = server.connection();
    let mut rng = Lcg(9);
    for _ in 0..500 {
        random_write(&mut connection, &mut rng, 150).unwrap();
    }
    assert_exact(server.port, &[0], &es_url(), &alias);
    let index = live_index(&alias);
    assert_eq!(alias_indices(&alias), vec![index.clone()]);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let live = &summary["pipelines"][0];
    assert!(live["upserts"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        live["resyncs"]["rebuild"],
        Value::Null,
        "no build while following: {summary}"
    );
}

/// One random write of numbers: SET, DEL or EXPIRE 1 s.
fn numeric_write(connection: &mut redis::Connection, rng: &mut Lcg, keys: u64) {
    let key = format!("k:{}", rng.next(keys));
    let command = match rng.next(5) {
        0..=2 => redis::cmd("SET").arg(&key).arg(rng.next(100_000)).clone(),
        3 => redis::cmd("DEL").arg(&key).clone(),
        _ => redis::cmd("EXPIRE").arg(&key).arg(1).clone(),
    };
    command.query::<redis::Value>(connection).unwrap();
}

/// Waits (at most two minutes) until `done`.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}
