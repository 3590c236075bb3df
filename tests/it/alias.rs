//! Writing behind an alias (`sink.alias`) end to end, against a private Redis and the
//! shared Elasticsearch: a mapping change builds a new index and swaps the alias
//! while searches keep their documents; failures and interruptions leave the alias;
//! `keep_previous`, rollback, ownership and the dry run's plan.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;
use crate::support::{alias_indices, es_count, es_url, http, pointed, unique_index, RedisServer};

/// One test's Redis, folder and alias; deletes every index built for the alias when
/// the test ends, passed or not.
pub(crate) struct Setup {
    pub(crate) redis: RedisServer,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) alias: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for name in alias_indices(&self.alias) {
            support::es_delete_index(&name);
        }
        support::es_delete_index(&self.alias);
    }
}

impl Setup {
    pub(crate) fn new(prefix: &str) -> Setup {
        Setup {
            redis: RedisServer::start(&[]),
            dir: tempfile::tempdir().unwrap(),
            alias: unique_index(prefix),
        }
    }

    /// `count` string keys `k:N` holding `N`.
    pub(crate) fn fill(&self, count: usize) {
        let commands: String = (0..count).map(|i| format!("SET k:{i} {i}\n")).collect();
        self.redis.cli_pipe(&commands);
    }

    /// A pipeline whose documents are `{n: VALUE}` with `n` mapped as `field_type`,
    /// behind the alias; `extra` is appended to the sink.
    fn pipeline(&self, field_type: &str, extra: &str) -> PathBuf {
        support::write_file(
            self.dir.path(),
            "alias.yaml",
            &format!(
                "name: {alias}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: 0}}\n\
                 transforms:\n  - type: template\n    document: {{n: \"{{{{ value }}}}\"}}\n\
                 sink:\n  type: elasticsearch\n  url: {es}\n  alias: {alias}\n  delete_stale: true\n\
                 \x20 mappings: {{properties: {{n: {{type: {field_type}}}}}}}\n{extra}",
                alias = self.alias,
                port = self.redis.port,
                es = es_url(),
            ),
        )
    }

    fn run(&self, pipeline: &Path, args: &[&str]) -> (Output, Value) {
        let summary = self.dir.path().join("summary.json");
        let _ = std::fs::remove_file(&summary);
        let out = support::connector()
            .current_dir(self.dir.path())
            .args(["run", "-q", "--summary-json", summary.to_str().unwrap()])
            .args(args)
            .arg(pipeline)
            .output()
            .expect("the connector runs");
        let text = std::fs::read_to_string(&summary).unwrap_or_else(|_| panic!("no summary: {}", describe(&out)));
        let json: Value = serde_json::from_str(&text).unwrap();
        (out, json["pipelines"][0].clone())
    }

    fn run_ok(&self, pipeline: &Path, args: &[&str]) -> Value {
        let (out, entry) = self.run(pipeline, args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        entry
    }

    fn rollback(&self, pipeline: &Path) -> Output {
        support::connector()
            .args(["alias", "rollback"])
            .arg(pipeline)
            .output()
            .expect("the connector runs")
    }

    /// The index the alias points to (exactly one).
    pub(crate) fn live(&self) -> String {
        let names = pointed(&self.alias);
        assert_eq!(names.len(), 1, "alias {} points to {names:?}", self.alias);
        names.into_iter().next().unwrap()
    }
}

pub(crate) fn describe(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn notes(entry: &Value) -> String {
    entry["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// The mapped type of `n` in `index`.
fn field_type(index: &str) -> String {
    let body: Value = http()
        .get(format!("{}/{index}/_mapping", es_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body[index]["mappings"]["properties"]["n"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Counts through the alias, as a searcher would, until stopped: the lowest count
/// seen (an error or a missing alias counts as 0), the number of searches, and the
/// longest time during which searches saw fewer than `expected` documents.
fn poll(alias: String, expected: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64, Duration)> {
    std::thread::spawn(move || {
        let client = http();
        let (mut lowest, mut searches, mut longest) = (u64::MAX, 0u64, Duration::ZERO);
        let mut short_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let count = client
                .get(format!("{}/{alias}/_count", es_url()))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<Value>().ok())
                .and_then(|b| b["count"].as_u64())
                .unwrap_or(0);
            searches += 1;
            lowest = lowest.min(count);
            match (count < expected, short_since) {
                (true, None) => short_since = Some(Instant::now()),
                (false, Some(since)) => {
                    longest = longest.max(since.elapsed());
                    short_since = None;
                }
                _ => {}
            }
        }
        if let Some(since) = short_since {
            longest = longest.max(since.elapsed());
        }
        (lowest, searches, longest)
    })
}

#[test]
fn a_mapping_change_builds_a_new_index_and_swaps_while_searches_keep_every_document() {
    let setup = Setup::new("alias-swap");
    setup.fill(3000);
    let keyword = setup.pipeline("keyword", "");
    let first = setup.run_ok(&keyword, &[]);
    assert!(notes(&first).contains("does not exist"), "{first:#}");
    let old = setup.live();
    assert!(old.starts_with(&format!("{}-", setup.alias)), "{old}");
    assert_eq!(field_type(&old), "keyword");
    assert_eq!(es_count(&setup.alias), 3000);

    let integer = setup.pipeline("integer", "  bulk: {max_docs: 100, concurrency: 1}\n");
    let stop = Arc::new(AtomicBool::new(false));
    let searcher = poll(setup.alias.clone(), 3000, stop.clone());
    let entry = setup.run_ok(&integer, &[]);
    stop.store(true, Ordering::Relaxed);
    let (lowest, searches, longest) = searcher.join().unwrap();
    eprintln!("searches during the rebuild: {searches}, lowest count {lowest}, longest gap {longest:?}");
    assert!(searches > 0);
    assert_eq!(
        lowest, 3000,
        "a search through the alias saw fewer documents during the rebuild"
    );

    let new = setup.live();
    assert_ne!(new, old);
    assert_eq!(field_type(&new), "integer");
    assert_eq!(es_count(&new), 3000);
    let text = notes(&entry);
    assert!(text.contains("mappings changed (n: keyword -> integer)"), "{text}");
    assert!(
        text.contains(&format!(
            "moved alias {} from {old} (3000 documents) to {new} (3000 documents)",
            setup.alias
        )),
        "{text}"
    );
    // keep_previous: 1 keeps the old one, for rollback.
    assert_eq!(alias_indices(&setup.alias), {
        let mut v = vec![old.clone(), new.clone()];
        v.sort();
        v
    });

    // The same pipeline again: no rebuild, change-aware in place.
    let again = setup.run_ok(&integer, &[]);
    assert_eq!(setup.live(), new);
    assert_eq!(again["written"], 0);
    assert_eq!(again["unchanged"], 3000);
    assert!(notes(&again).contains("change-aware sync in place"), "{again:#}");
    assert_eq!(alias_indices(&setup.alias).len(), 2);
}

#[test]
fn a_dry_run_states_the_plan_and_writes_nothing() {
    let setup = Setup::new("alias-dry");
    setup.fill(50);
    let keyword = setup.pipeline("keyword", "");
    let (out, entry) = setup.run(&keyword, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        notes(&entry).contains(&format!(
            "alias {} does not exist: would build {}-",
            setup.alias, setup.alias
        )),
        "{entry:#}"
    );
    assert!(alias_indices(&setup.alias).is_empty());
    assert!(pointed(&setup.alias).is_empty());

    setup.run_ok(&keyword, &[]);
    let old = setup.live();
    let integer = setup.pipeline("integer", "");
    let (out, entry) = setup.run(&integer, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = notes(&entry);
    assert!(
        text.contains(&format!(
            "mappings changed (n: keyword -> integer): would build {}-",
            setup.alias
        )) && text.contains(&format!(
            "from scratch and move the alias {} from {old} (50 documents)",
            setup.alias
        )),
        "{text}"
    );
    assert_eq!(alias_indices(&setup.alias), vec![old.clone()]);
    assert_eq!(setup.live(), old);
}

#[test]
fn a_failed_document_during_a_build_leaves_the_alias_and_exits_1() {
    let setup = Setup::new("alias-failed");
    setup.fill(100);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    let old = setup.live();
    setup.redis.cli(&["SET", "k:bad", "not a number"]);
    let (out, entry) = setup.run(&setup.pipeline("integer", ""), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(entry["failed"], 1);
    assert_eq!(setup.live(), old);
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("alias {} left on {old}: 1 documents failed", setup.alias)),
        "{entry:#}"
    );
    assert_eq!(es_count(&setup.alias), 100);
    let built = alias_indices(&setup.alias).into_iter().find(|n| *n != old).unwrap();
    assert!(
        error.ends_with(&format!(
            "the next run resumes the build of {built} (change-aware: it writes only what is missing or changed)"
        )),
        "{entry:#}"
    );

    // Fixed in Redis: the next run resumes into the same index and swaps.
    setup.redis.cli(&["SET", "k:bad", "7"]);
    let entry = setup.run_ok(&setup.pipeline("integer", ""), &[]);
    assert!(
        notes(&entry).contains(&format!("resuming {built} (it holds 100 documents")),
        "{entry:#}"
    );
    assert_eq!(entry["written"], 1);
    assert_eq!(setup.live(), built);
}

#[test]
fn a_build_killed_midway_leaves_the_alias_and_the_next_run_finishes_it() {
    let setup = Setup::new("alias-kill");
    setup.fill(40_000);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    let old = setup.live();
    let integer = setup.pipeline("integer", "  bulk: {max_docs: 20, concurrency: 1}\n  refresh: false\n");
    let mut child = support::connector()
        .current_dir(setup.dir.path())
        .args(["run", "-q"])
        .arg(&integer)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the new index holds some documents, then kill -9.
    let built = loop {
        if let Some(name) = alias_indices(&setup.alias).into_iter().find(|n| *n != old) {
            if es_count(&name) > 0 {
                break name;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = es_count(&built);
    assert!(partial < 40_000, "the build was not interrupted ({partial} documents)");
    assert_eq!(setup.live(), old);
    assert_eq!(es_count(&setup.alias), 40_000);

    let entry = setup.run_ok(&setup.pipeline("integer", ""), &[]);
    assert!(
        notes(&entry).contains(&format!("resuming {built} (it holds")),
        "{entry:#}"
    );
    assert_eq!(
        entry["unchanged"].as_u64().unwrap() + entry["written"].as_u64().unwrap(),
        40_000
    );
    assert!(entry["unchanged"].as_u64().unwrap() >= partial, "{entry:#}");
    assert_eq!(setup.live(), built);
    assert_eq!(es_count(&setup.alias), 40_000);
}

#[test]
fn keep_previous_1_keeps_exactly_one_older_index_and_rollback_restores_it() {
    let setup = Setup::new("alias-keep");
    setup.fill(20);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    let first = setup.live();
    setup.run_ok(&setup.pipeline("integer", ""), &[]);
    let second = setup.live();
    let long = setup.pipeline("long", "");
    let entry = setup.run_ok(&long, &[]);
    let third = setup.live();
    assert!(
        notes(&entry).contains(&format!("deleted {first} (beyond keep_previous: 1)")),
        "{entry:#}"
    );
    assert_eq!(alias_indices(&setup.alias), {
        let mut v = vec![second.clone(), third.clone()];
        v.sort();
        v
    });

    let out = setup.rollback(&long);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("moved from {third} (20 documents) to {second} (20 documents)")),
        "{said}"
    );
    assert_eq!(setup.live(), second);
    assert_eq!(field_type(&second), "integer");
    assert_eq!(es_count(&setup.alias), 20);

    // Nothing older is kept: a second rollback changes nothing.
    let out = setup.rollback(&long);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no older index built for it"),
        "{}",
        describe(&out)
    );
    assert_eq!(setup.live(), second);

    // keep_previous: 0 deletes every older index after the swap.
    let entry = setup.run_ok(&setup.pipeline("long", "  keep_previous: 0\n"), &[]);
    assert!(
        notes(&entry).contains(&format!("moved alias {} from {second}", setup.alias)),
        "{entry:#}"
    );
    assert_eq!(alias_indices(&setup.alias), vec![third]);
}

#[test]
fn an_abandoned_build_is_neither_kept_by_keep_previous_nor_rolled_back_to() {
    let setup = Setup::new("alias-abandoned");
    setup.fill(20);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    let served = setup.live();

    // A build that fails (one value is not an integer) and is then abandoned: the
    // file goes back to keyword, in place on the index that serves.
    setup.redis.cli(&["SET", "k:bad", "not a number"]);
    let (out, _) = setup.run(&setup.pipeline("integer", ""), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let abandoned = alias_indices(&setup.alias).into_iter().find(|n| *n != served).unwrap();
    setup.redis.cli(&["DEL", "k:bad"]);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    assert_eq!(setup.live(), served);

    // The next swap keeps the index that served, not the newer abandoned build.
    let long = setup.pipeline("long", "");
    let entry = setup.run_ok(&long, &[]);
    let newest = setup.live();
    assert!(
        notes(&entry).contains(&format!("deleted {abandoned} (beyond keep_previous: 1)")),
        "{entry:#}"
    );
    assert_eq!(alias_indices(&setup.alias), {
        let mut v = vec![served.clone(), newest.clone()];
        v.sort();
        v
    });

    let out = setup.rollback(&long);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "moved from {newest} (20 documents) to {served} (20 documents)"
        )),
        "{}",
        describe(&out)
    );
    assert_eq!(es_count(&setup.alias), 20);
}

#[test]
fn an_alias_over_an_index_this_pipeline_does_not_own_is_refused_before_writing() {
    let setup = Setup::new("alias-foreign");
    setup.fill(10);
    let foreign = format!("{}-by-hand", setup.alias);
    let client = http();
    client.put(format!("{}/{foreign}", es_url())).send().unwrap();
    client
        .post(format!("{}/_aliases", es_url()))
        .json(&serde_json::json!({"actions": [{"add": {"index": foreign, "alias": setup.alias}}]}))
        .send()
        .unwrap();
    let (out, _) = setup.run(&setup.pipeline("keyword", ""), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let said = describe(&out);
    assert!(
        said.contains(&format!(
            "index {foreign} (alias {} points to it) was not created by redis-connector",
            setup.alias
        )),
        "{said}"
    );
    assert_eq!(alias_indices(&setup.alias), vec![foreign.clone()]);
    assert_eq!(pointed(&setup.alias), vec![foreign]);
}

#[test]
fn validate_explains_index_or_alias() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, sink: &str| {
        support::write_file(
            dir.path(),
            name,
            &format!(
                "name: p\nsource: {{type: redis, host: h}}\nsink:\n  type: elasticsearch\n  url: http://e:9200\n{sink}"
            ),
        )
    };
    let both = file("both.yaml", "  index: i\n  alias: a\n");
    let neither = file("neither.yaml", "  keep_previous: 2\n");
    let good = file("good.yaml", "  alias: a\n  keep_previous: 0\n");
    let out = support::connector()
        .arg("validate")
        .args([&both, &neither, &good])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("both.yaml:4:3: error: give `index` or `alias`, not both"),
        "{said}"
    );
    assert!(
        said.contains("neither.yaml:4:3: error: the sink needs `index` (documents go into that index) or `alias`"),
        "{said}"
    );
    assert!(!said.contains("good.yaml"), "{said}");
}

#[test]
fn a_template_index_is_refused_behind_an_alias() {
    let dir = tempfile::tempdir().unwrap();
    let file = support::write_file(
        dir.path(),
        "routed.yaml",
        "name: p\nsource: {type: redis, host: h}\ntransforms:\n  - type: template\n    index: \"x-{{ database }}\"\n\
         sink:\n  type: elasticsearch\n  url: http://e:9200\n  alias: a\n",
    );
    let out = support::connector().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("a template's `index` sends documents past the sink's alias `a`"),
        "{said}"
    );
    assert!(said.contains("(at /transforms/0/index)"), "{said}");
}

#[test]
fn a_build_holding_far_fewer_documents_is_not_swapped_unless_allowed() {
    let setup = Setup::new("alias-guard");
    setup.fill(100);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    let old = setup.live();
    let commands: String = (0..60).map(|i| format!("DEL k:{i}\n")).collect();
    setup.redis.cli_pipe(&commands);
    let integer = setup.pipeline("integer", "");
    let (out, entry) = setup.run(&integer, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("alias {} left on {old}: the new index", setup.alias))
            && error.contains(&format!(
                "holds 40 documents, 60 fewer than the 100 of {old} (60.0%, over"
            ))
            && error.contains("--allow-mass-delete"),
        "{entry:#}"
    );
    assert_eq!(setup.live(), old);
    assert_eq!(es_count(&setup.alias), 100);

    let entry = setup.run_ok(&integer, &["--allow-mass-delete"]);
    assert!(notes(&entry).contains("(100 documents) to"), "{entry:#}");
    assert_ne!(setup.live(), old);
    assert_eq!(es_count(&setup.alias), 40);
}

#[test]
fn after_a_rollback_the_next_run_says_it_moves_the_alias_back_not_that_it_resumes() {
    let setup = Setup::new("alias-back");
    setup.fill(20);
    setup.run_ok(&setup.pipeline("keyword", ""), &[]);
    let first = setup.live();
    let integer = setup.pipeline("integer", "");
    setup.run_ok(&integer, &[]);
    let second = setup.live();
    let out = setup.rollback(&integer);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(setup.live(), first);

    let plan = format!(
        "alias {alias} points to {first} (20 documents), not to {second}, the index built for this pipeline as it is \
         (the alias was rolled back, or moved by hand):",
        alias = setup.alias
    );
    let entry = setup.run_ok(&integer, &["--dry-run"]);
    let said = notes(&entry);
    assert!(said.contains(&plan), "{said}");
    assert!(
        said.contains(&format!("would sync {second} change-aware (20 documents;")),
        "{said}"
    );
    assert!(!said.contains("resum"), "{said}");

    let entry = setup.run_ok(&integer, &[]);
    let said = notes(&entry);
    assert!(said.contains(&plan), "{said}");
    assert!(said.contains(&format!("syncing {second} change-aware (20 documents; only what changed since it served is written) and then moving the alias back to it")), "{said}");
    assert!(!said.contains("resum"), "{said}");
    assert_eq!(entry["written"], 0, "{entry:#}");
    assert_eq!(setup.live(), second);
}
