//! A pipeline file cannot make the loader use more than a small multiple of its own
//! size: aliases of a long string, expanded, are refused with a located error, fast,
//! by `validate` (and so by `run` and `serve`, which load files the same way).

use std::time::{Duration, Instant};

use crate::support::{connector, write_file};

/// A file aliasing a string of `length` bytes `aliases` times in one list.
fn alias_bomb(length: usize, aliases: usize) -> String {
    let mut text = format!(
        "name: bomb\nsource: {{type: redis, host: 127.0.0.1, description: &a \"{}\"}}\n",
        "x".repeat(length)
    );
    text.push_str("sink: {type: ndjson, path: out.ndjson}\nlabels: [");
    text.push_str(&"*a,".repeat(aliases));
    text.push_str("]\n");
    text
}

#[test]
fn a_long_string_aliased_thousands_of_times_is_refused_fast_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    // The two files of the report: 160 KB (2 GB RSS before) and 370 KB (aborted at 5 GB).
    for (name, length, aliases) in [("160k.yaml", 10_000, 50_000), ("370k.yaml", 70_000, 100_000)] {
        let text = alias_bomb(length, aliases);
        let file = write_file(dir.path(), name, &text);
        let started = Instant::now();
        let out = connector().arg("validate").arg(&file).output().unwrap();
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let limit = text.len() * 10 + (1 << 20);
        assert!(
            stdout.starts_with(&format!("{}:4:", file.display())),
            "{name}: {stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "error: aliases expand this file beyond {limit} bytes (line 4)"
            )),
            "{name}: {stdout}"
        );
        assert!(stdout.contains("(at /labels/"), "{name}: {stdout}");
        assert!(elapsed < Duration::from_secs(5), "{name}: took {elapsed:?}");
    }
}

#[test]
fn a_file_reusing_a_block_a_few_times_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "ok.yaml",
        "name: ok\nsource: &src {type: redis, host: 127.0.0.1, port: 6379}\nsink: {type: ndjson, path: out.ndjson}\n\
         x-copies: [*src, *src, *src, *src]\n",
    );
    let out = connector().arg("validate").arg(&file).output().unwrap();
    // (`x-copies` is no field of a pipeline: the schema names it, not the loader.)
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("aliases expand"), "{stdout}");
}
