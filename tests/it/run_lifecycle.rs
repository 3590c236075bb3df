//! What a run leaves behind for the next one, or for a monitoring job: the dead-letter
//! file holds this run's failures or is absent (never an earlier run's), and the
//! `--summary-json` file is this run's from its start (`running`), through a second
//! signal that quits at once (`aborted`, exit 130 / 143), to its end.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::support::{connector, write_file, RedisServer};
use serde_json::Value;

fn run_in(dir: &Path, args: &[&str]) -> Output {
    connector()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the connector binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary JSON written")).unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

/// A pipeline `users` reading the server on `port` into `out.ndjson`, with a template
/// whose `name` field needs `value.name` (a string key has none: it fails).
fn pipeline(dir: &Path, port: u16, template: &str) -> PathBuf {
    write_file(
        dir,
        "p.yaml",
        &format!(
            "name: users\nsource: {{type: redis, host: 127.0.0.1, port: {port}}}\n\
             transforms:\n  - type: template\n    document:\n      name: \"{template}\"\n\
             sink: {{type: ndjson, path: out.ndjson}}\n"
        ),
    )
}

#[test]
fn a_clean_run_leaves_no_dead_letter_file_of_an_earlier_failed_run() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 name Ada\nSET user:2 plain\nHSET user:3 name Grace\n");
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("users.dead-letter.ndjson");
    let dry_dead_letter = dir.path().join("users.dead-letter.dry-run.ndjson");

    // A failing run writes its one failure.
    let failing = pipeline(dir.path(), redis.port, "{{ value.name }}");
    let out = run_in(dir.path(), &["run", "-q", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(lines(&dead_letter), 1);

    // A second failing run holds its own failures only, not the first run's too.
    let out = run_in(dir.path(), &["run", "-q", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(lines(&dead_letter), 1, "this run's failure, not two runs' worth");

    // A dry run of the fixed pipeline removes an earlier dry run's file, keeps the
    // real run's.
    // (A file this tool wrote: an earlier run's lines.)
    std::fs::copy(&dead_letter, &dry_dead_letter).unwrap();
    let fixed = pipeline(dir.path(), redis.port, "{{ value.name | default('') }}");
    let out = run_in(dir.path(), &["run", "--dry-run", "-q", fixed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!dry_dead_letter.exists(), "the earlier dry run's failures are gone");
    assert_eq!(lines(&dead_letter), 1, "a dry run leaves the real run's file alone");

    // The fixed pipeline's real run: ok, and no dead-letter file left.
    let out = run_in(
        dir.path(),
        &["run", "-q", "--summary-json", "s.json", fixed.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!dead_letter.exists(), "a clean run leaves no stale failures");
    let summary = json(&dir.path().join("s.json"));
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["pipelines"][0]["dead_letter"], serde_json::json!([]));
}

#[test]
fn a_dead_letter_file_that_cannot_be_removed_stops_the_run_before_it_reads() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 name Ada\n");
    let dir = tempfile::tempdir().unwrap();
    // A folder where the file should be: it cannot be removed as a file.
    std::fs::create_dir(dir.path().join("users.dead-letter.ndjson")).unwrap();
    let fixed = pipeline(dir.path(), redis.port, "{{ value.name }}");
    let out = run_in(dir.path(), &["run", "-q", fixed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "error: the dead-letter file users.dead-letter.ndjson was not written by redis-connector (it is a folder)"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("out.ndjson").exists() || lines(&dir.path().join("out.ndjson")) == 0,
        "nothing was written"
    );
}

/// A FIFO in `dir`: a sink writing to it blocks once the test stops reading.
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("out.fifo");
    let status = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(status.success());
    path
}

/// Starts a run of 20,000 keys into a FIFO with `--summary-json s.json` over an older
/// summary saying `ok`, reads the first 256 KiB (the run is going), then stops
/// reading: the sink blocks, and the run cannot end on its own.
fn start_blocked_run(dir: &Path, redis: &RedisServer) -> (Child, std::fs::File) {
    let filler = "x".repeat(1_000);
    let commands: String = (0..20_000).map(|i| format!("SET k:{i} {filler}\n")).collect();
    redis.cli_pipe(&commands);
    let out = fifo(dir);
    let pipeline = write_file(
        dir,
        "p.yaml",
        &format!(
            "name: term\nsource: {{type: redis, host: 127.0.0.1, port: {}, scan_count: 100}}\nsink: {{type: ndjson, path: {}}}\n",
            redis.port,
            out.display()
        ),
    );
    std::fs::write(
        dir.join("s.json"),
        "{\"status\": \"ok\", \"pipelines\": [], \"not_run\": []}\n",
    )
    .unwrap();
    let child = connector()
        .current_dir(dir)
        .args(["run", "--summary-json", "s.json", pipeline.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::open(&out).unwrap();
    let mut first = vec![0u8; 256 * 1024];
    reader.read_exact(&mut first).unwrap();
    (child, reader)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends `first` then, once the run said it is stopping, `second`; gives the exit
/// code, the standard error and the summary file.
fn quit_twice(first: &str, second: &str) -> (Option<i32>, String, Value, Value) {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _reader) = start_blocked_run(dir.path(), &redis);
    let running = json(&dir.path().join("s.json"));
    signal(&child, first);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the run said nothing of the signal: {seen}"
        );
        seen += &line;
        if line.contains("received: stopping reading") {
            break;
        }
    }
    // Draining cannot end (nothing reads the FIFO): only the second signal ends it.
    signal(&child, second);
    let status = child.wait().unwrap();
    stderr.read_to_string(&mut seen).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(stdout.is_empty(), "no summary: {stdout}");
    let aborted = json(&dir.path().join("s.json"));
    assert_eq!(
        running["pid"],
        child.id(),
        "the file is this run's from its start: {running}"
    );
    (status.code(), seen, running, aborted)
}

#[test]
fn a_second_sigterm_exits_143_and_the_summary_json_says_aborted() {
    let (code, stderr, running, aborted) = quit_twice("TERM", "TERM");
    assert_eq!(running["status"], "running", "the older `ok` was replaced at the start");
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        stderr.contains("second SIGTERM: quitting at once, exit 143"),
        "{stderr}"
    );
    assert_eq!(aborted["status"], "aborted");
    assert_eq!(aborted["pipelines"], serde_json::json!([]));
    assert!(
        aborted["reason"].as_str().unwrap().contains("second SIGTERM"),
        "{aborted}"
    );
}

#[test]
fn a_second_ctrl_c_exits_130_and_the_summary_json_says_aborted() {
    let (code, stderr, running, aborted) = quit_twice("INT", "INT");
    assert_eq!(running["status"], "running");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("second SIGINT: quitting at once, exit 130"), "{stderr}");
    assert_eq!(aborted["status"], "aborted");
}

#[test]
fn an_unwritable_summary_json_stops_the_run_before_it_reads() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("HSET user:1 name Ada\n");
    let dir = tempfile::tempdir().unwrap();
    let fixed = pipeline(dir.path(), redis.port, "{{ value.name }}");
    let out = run_in(
        dir.path(),
        &[
            "run",
            "-q",
            "--summary-json",
            "no-such-folder/s.json",
            fixed.to_str().unwrap(),
        ],
    );
    // A usage error (exit 2), found before the pipeline files are even loaded.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("error: cannot write the summary to no-such-folder/s.json"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("nothing was run"), "{}", text(&out.stderr));
    assert!(!dir.path().join("out.ndjson").exists(), "nothing was read");
}

#[test]
fn a_run_stopped_by_a_fatal_error_says_what_not_processed_means() {
    // The sink's reader goes away mid-run (EPIPE): a fatal error while the channels
    // between the stages hold records the source read.
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (child, reader) = start_blocked_run(dir.path(), &redis);
    drop(reader);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("error: sink: cannot write to the NDJSON output"),
        "{stdout}"
    );
    let p = &json(&dir.path().join("s.json"))["pipelines"][0];
    let n = |f: &str| p[f].as_u64().unwrap();
    assert!(n("not_processed") > 0, "{p:#}");
    assert_eq!(
        n("read"),
        n("written") + n("filtered") + n("skipped") + n("failed") + n("not_processed")
    );
    assert!(
        stdout.contains(&format!(" + not processed {}\n", n("not_processed"))),
        "the equation has the term: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "not processed: {} records were read but not yet written, filtered, skipped or failed when this error stopped the run; \
             they are in no dead-letter file: fix the error and run again",
            n("not_processed")
        )),
        "{stdout}"
    );
    assert!(
        !dir.path().join("term.dead-letter.ndjson").exists(),
        "not processed is not failed"
    );
}

#[test]
fn run_help_documents_the_exit_codes_of_a_second_signal_and_the_summary_file() {
    let out = connector().args(["run", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    for expected in [
        "130  quit at once by a second Ctrl-C",
        "143  quit at once by a second SIGTERM",
        "\"status\": \"running\"",
    ] {
        assert!(help.contains(expected), "run --help lacks {expected:?}:\n{help}");
    }
}

#[test]
fn a_file_the_tool_did_not_write_at_the_dead_letter_path_is_refused_before_anything_connects() {
    // A port nothing listens on: the refusal must come first, not a connection error.
    let closed_port = crate::support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let foreign = "important: data\nnot = \"a dead-letter file\"\n";
    let target = write_file(dir.path(), "notes.txt", foreign);
    let file = write_file(
        dir.path(),
        "p.yaml",
        &format!(
            "name: users\ndead_letter: notes.txt\nsource: {{type: redis, host: 127.0.0.1, port: {closed_port}}}\n\
             sink: {{type: ndjson, path: out.ndjson}}\n"
        ),
    );
    for extra in [&[][..], &["--dry-run"][..], &["--follow"][..]] {
        let mut args = vec!["run", "-q", "--summary-json", "s.json"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        // (The dry run's file is beside it: refused the same way.)
        if extra == ["--dry-run"] {
            std::fs::write(dir.path().join("notes.dry-run.txt"), foreign).unwrap();
        }
        let out = run_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        let shown = if extra == ["--dry-run"] {
            "notes.dry-run.txt"
        } else {
            "notes.txt"
        };
        assert_eq!(
            stderr,
            format!(
                "error: the dead-letter file {shown} was not written by redis-connector (its first line is not a \
                 dead-letter entry): a run would replace it, so nothing was run and it is left as it is; move it \
                 away, or set `dead_letter:` to another path\n"
            ),
            "{extra:?}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), foreign, "kept byte for byte");
        assert!(!dir.path().join("out.ndjson").exists(), "nothing ran");
        let summary = json(&dir.path().join("s.json"));
        assert_eq!(summary["status"], "error");
        assert_eq!(summary["not_run"], serde_json::json!(["users"]));
    }
}

#[test]
fn the_tool_s_own_dead_letter_file_of_an_earlier_process_is_replaced() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET user:1 plain\n");
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("users.dead-letter.ndjson");
    let failing = pipeline(dir.path(), redis.port, "{{ value.name }}");
    let out = run_in(dir.path(), &["run", "-q", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let first = std::fs::read_to_string(&dead_letter).unwrap();
    // Several lines of an earlier process (ours): replaced by this run's one line.
    std::fs::write(&dead_letter, first.repeat(3)).unwrap();
    let out = run_in(dir.path(), &["run", "-q", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(lines(&dead_letter), 1, "this run's failure only");
}
