//! `alias list`, `alias status` and `alias rollback --dry-run` against a private
//! Redis and the shared Elasticsearch, and the mapping-change note that names only
//! the fields the pipeline file mapped (not those Elasticsearch added dynamically).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::alias::{describe, Setup};
use crate::support::{connector, es_url, write_file};
use serde_json::Value;

/// `alias.rs`'s set-up (a private Redis, a folder, an alias whose indices are deleted
/// when the test ends), with 20 keys and this file's own pipeline and commands.
fn setup(prefix: &str) -> Setup {
    let setup = Setup::new(prefix);
    setup.fill(20);
    setup
}

impl Setup {
    /// Documents `{n: VALUE, source: redis}` behind the alias, with only `n` in the
    /// file's mappings (`source` is mapped dynamically).
    fn pipeline_with_dynamic_source(&self, field_type: &str) -> PathBuf {
        write_file(
            self.dir.path(),
            "alias.yaml",
            &format!(
                "name: {alias}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: 0}}\n\
                 transforms:\n  - type: template\n    document: {{n: \"{{{{ value }}}}\", source: redis}}\n\
                 sink:\n  type: elasticsearch\n  url: {es}\n  alias: {alias}\n\
                 \x20 mappings: {{properties: {{n: {{type: {field_type}}}}}}}\n",
                alias = self.alias,
                port = self.redis.port,
                es = es_url(),
            ),
        )
    }

    fn connector(&self, args: &[&str], file: &Path) -> Output {
        connector()
            .current_dir(self.dir.path())
            .args(args)
            .arg(file)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str], file: &Path) -> String {
        let output = self.connector(args, file);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[test]
fn list_status_and_rollback_dry_run_show_the_builds_and_change_nothing() {
    let setup = setup("usability-alias");
    let keyword = setup.pipeline_with_dynamic_source("keyword");
    setup.ok(&["run", "-q"], &keyword);
    let first = setup.live();
    let integer = setup.pipeline_with_dynamic_source("integer");
    let moved = setup.ok(&["run", "-q"], &integer);
    assert!(
        moved.contains("note: mappings changed (n: keyword -> integer): building"),
        "{moved}"
    );
    assert!(!moved.contains("-source"), "a dynamic field is not the file's: {moved}");
    let second = setup.live();

    let status = setup.ok(&["alias", "status"], &integer);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "pipeline {a} ({}): alias {a} on {}",
            integer.display(),
            es_url(),
            a = setup.alias
        )
    );
    assert_eq!(lines[1], format!("  serves: {second}"));
    assert_eq!(lines[2], format!("  index for the file as it is: {second} (serving)"));
    assert_eq!(
        lines[3],
        format!(
            "  a run would: alias {} points to {second}, built for this pipeline as it is: change-aware sync in place",
            setup.alias
        )
    );
    assert!(
        lines[5].starts_with(&format!("    {first}  complete  20 documents  ")),
        "{status}"
    );
    assert!(
        lines[6].starts_with(&format!("  * {second}  complete  20 documents  ")),
        "{status}"
    );

    let json: Value = serde_json::from_str(&setup.ok(&["alias", "status", "--format", "json"], &integer)).unwrap();
    assert_eq!(json["serving"], second.as_str(), "{json:#}");
    assert_eq!(json["for_the_file"], second.as_str(), "{json:#}");
    let indices = json["indices"].as_array().unwrap();
    assert_eq!(indices.len(), 2, "{json:#}");
    assert_eq!(indices[0]["name"], first.as_str());
    assert_eq!(indices[0]["serving"], false);
    assert_eq!(indices[0]["complete"], true);
    assert_eq!(indices[0]["documents"], 20);
    assert!(indices[0]["size_bytes"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(indices[1]["fingerprint"].as_str().unwrap().len(), 16, "{json:#}");

    // `alias list` reads the cluster from the files it is given, and lists every alias.
    let listed: Value =
        serde_json::from_str(&setup.ok(&["alias", "list", "--format", "json"], setup.dir.path())).unwrap();
    let cluster = &listed[0];
    assert_eq!(cluster["cluster"], es_url().as_str());
    let ours = cluster["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alias"] == setup.alias.as_str())
        .unwrap_or_else(|| panic!("{listed:#}"));
    assert_eq!(ours["pipeline"], setup.alias.as_str());
    assert_eq!(ours["serving"], second.as_str());
    assert_eq!(ours["indices"].as_array().unwrap().len(), 2);
    let text = setup.ok(&["alias", "list"], setup.dir.path());
    assert!(
        text.contains(&format!("alias {a} (pipeline {a}): serves {second}", a = setup.alias)),
        "{text}"
    );

    // The dry run of a rollback says what would move, and moves nothing.
    let said = setup.ok(&["alias", "rollback", "--dry-run"], &integer);
    assert_eq!(
        said.trim_end(),
        format!(
            "alias {}: would move from {second} (20 documents) to {first} (20 documents); nothing was changed (dry run)",
            setup.alias
        )
    );
    assert_eq!(setup.live(), second);

    // The file as edited: its index is not built yet, and a run would build it.
    let long = setup.pipeline_with_dynamic_source("long");
    let status = setup.ok(&["alias", "status"], &long);
    assert!(status.contains("(not built yet)"), "{status}");
    assert!(
        status.contains("a run would: mappings changed (n: integer -> long): would build"),
        "{status}"
    );
}

#[test]
fn status_of_a_pipeline_without_an_alias_or_of_no_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "plain.yaml",
        "name: plain\nsource: {type: redis, host: 127.0.0.1}\nsink: {type: elasticsearch, url: http://127.0.0.1:9200, index: plain}\n",
    );
    let output = connector().args(["alias", "status"]).arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pipeline `plain` (")
            && String::from_utf8_lossy(&output.stderr)
                .contains("does not write behind an alias (sink.alias): there is no alias to show or move"),
        "{}",
        describe(&output)
    );
    let output = connector()
        .args(["alias", "status", "no-such-file.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: no-such-file.yaml: no such file\n"
    );
}
