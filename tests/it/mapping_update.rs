//! With `index:` (no alias), a `mappings` edited after the index exists: fields the
//! index lacks are added (put-mapping, with a note), a changed type is a note (a
//! warning in the dry run) naming the field and pointing to `sink.alias`; the dry
//! run changes nothing. Against the shared Elasticsearch.

use std::path::Path;

use serde_json::Value;

use crate::support::{es_delete_index, es_url, http, unique_index, write_file, RedisServer};

struct IndexGuard(String);

impl Drop for IndexGuard {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

fn pipeline(dir: &Path, port: u16, index: &str, properties: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "p.yaml",
        &format!(
            "name: {index}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: 0}}\n\
             sink:\n  type: elasticsearch\n  url: {}\n  index: {index}\n  mappings:\n    properties: {properties}\n",
            es_url()
        ),
    )
}

/// Runs `run ARGS... FILE` and returns the exit code and the summary's notes.
fn run(dir: &Path, args: &[&str], file: &Path) -> (i32, Vec<String>) {
    let summary = dir.join("s.json");
    let out = crate::support::connector()
        .current_dir(dir)
        .args(["run", "-q", "--summary-json", summary.to_str().unwrap()])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let notes = json["pipelines"][0]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    (out.status.code().unwrap_or(-1), notes)
}

fn properties(index: &str) -> Value {
    let mapping: Value = http()
        .get(format!("{}/{index}/_mapping", es_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    mapping[index]["mappings"]["properties"].clone()
}

#[test]
fn new_fields_are_added_and_a_changed_type_points_to_an_alias() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET user:1 Ada\n");
    let dir = tempfile::tempdir().unwrap();
    let index = unique_index("mapping");
    let _guard = IndexGuard(index.clone());
    let file = pipeline(dir.path(), redis.port, &index, "{key: {type: keyword}}");
    let (code, _) = run(dir.path(), &[], &file);
    assert_eq!(code, 0);
    assert_eq!(properties(&index)["key"]["type"], "keyword");

    // The file now adds `team` and `address.city`, and makes `key` text.
    let file = pipeline(
        dir.path(),
        redis.port,
        &index,
        "{key: {type: text}, team: {type: keyword}, address: {properties: {city: {type: keyword}}}}",
    );
    let conflict = format!(
        "field `key` is `text` in the pipeline's mappings but `keyword` in index {index}: Elasticsearch cannot \
         change a field's type in place, so the index keeps `keyword`; to apply the change, rebuild the index \
         behind an alias (set `sink.alias`, see docs/src/safety.md)"
    );
    let (code, notes) = run(dir.path(), &["--dry-run"], &file);
    assert_eq!(code, 0, "{notes:?}");
    assert!(notes.contains(&format!("warning: {conflict}")), "{notes:?}");
    assert!(
        notes.contains(&format!(
            "a real run would add team, address to the mapping of index {index} (in the pipeline's \
             mappings, not in the index)"
        )),
        "{notes:?}"
    );
    assert!(properties(&index).get("team").is_none(), "the dry run changed nothing");

    let (code, notes) = run(dir.path(), &[], &file);
    assert_eq!(code, 0, "{notes:?}");
    assert!(notes.contains(&conflict), "{notes:?}");
    assert!(
        notes.contains(&format!(
            "added team, address to the mapping of index {index} (in the pipeline's mappings, not in the index)"
        )),
        "{notes:?}"
    );
    let now = properties(&index);
    assert_eq!(now["team"]["type"], "keyword");
    assert_eq!(now["address"]["properties"]["city"]["type"], "keyword");
    assert_eq!(now["key"]["type"], "keyword", "the type stays");

    // In step again (but for the type): no note of an addition.
    let (_, notes) = run(dir.path(), &[], &file);
    assert!(!notes.iter().any(|n| n.starts_with("added ")), "{notes:?}");
    assert!(notes.contains(&conflict), "{notes:?}");
}
