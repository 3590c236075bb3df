//! The Redis source against real redis-servers (one private server per test): every
//! type, binary keys and values, the reference's rules, databases, ACL, TLS, failures,
//! vanished and oversized keys, chunked reads and a server restarted mid-read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::source::{clients_with, cmd, commandstat, config, read, read_source, read_with, text_keys, Run};
use crate::support::{RedisCluster, RedisServer, TestCerts};
use redis_connector::config::model::RedisSourceConfig;
use redis_connector::dead_letter::DeadLetter;
use redis_connector::record::{KeyType, Record, RedisValue, StreamEntry};
use redis_connector::stages::source::redis::RedisSource;
use redis_connector::stages::{RunOptions, SourceReport, StageContext};

#[test]
fn every_type_is_read_with_its_typed_value_binary_safe() {
    let redis = RedisServer::start(&[]);
    let mut c = redis.connection();
    let binary_key: &[u8] = &[b'b', 0xff, 0x00, b'\n'];
    let binary_value: &[u8] = &[0, 159, 146, 150, 255];
    cmd(&mut c, &[b"SET", b"plain", b"hello"]);
    cmd(&mut c, &[b"SET", binary_key, binary_value]);
    cmd(&mut c, &[b"SET", b"empty", b""]);
    for key in ["with space", "new\nline", "ünïcødé 😀", "sym*?[]\\"] {
        cmd(&mut c, &[b"SET", key.as_bytes(), format!("value of {key}").as_bytes()]);
    }
    cmd(&mut c, &[b"HSET", b"hash", b"a", b"1", b"b", &[0xfe]]);
    cmd(&mut c, &[b"RPUSH", b"list", b"x", b"y", b"x"]);
    cmd(&mut c, &[b"SADD", b"set", b"c", b"a", b"b"]);
    cmd(
        &mut c,
        &[b"ZADD", b"zset", b"1.5", b"m1", b"-inf", b"m0", b"+inf", b"m9"],
    );
    cmd(&mut c, &[b"XADD", b"stream", b"1-0", b"f", b"v"]);
    cmd(&mut c, &[b"XADD", b"stream", b"2-0", b"g", b"w", b"h", b"z"]);
    cmd(&mut c, &[b"SET", b"expiring", b"soon", b"EX", b"1000"]);

    let run = read(config(redis.port, "database: 0\nscan_count: 3\n")).unwrap();

    assert_eq!(run.records.len(), 13);
    assert_eq!(run.keys().len(), 13, "each key once");
    assert!(
        run.batches >= 2,
        "one batch per SCAN page, not one for everything: {}",
        run.batches
    );
    assert_eq!(run.value(b"plain"), &RedisValue::String(b"hello".to_vec()));
    assert_eq!(run.value(binary_key), &RedisValue::String(binary_value.to_vec()));
    assert_eq!(run.value(b"empty"), &RedisValue::String(Vec::new()));
    assert_eq!(
        run.value("new\nline".as_bytes()),
        &RedisValue::String(b"value of new\nline".to_vec())
    );
    assert_eq!(
        run.value("sym*?[]\\".as_bytes()),
        &RedisValue::String(b"value of sym*?[]\\".to_vec())
    );
    assert_eq!(
        run.value("ünïcødé 😀".as_bytes()),
        &RedisValue::String("value of ünïcødé 😀".as_bytes().to_vec())
    );
    assert_eq!(
        run.value(b"hash"),
        &RedisValue::Hash(vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), vec![0xfe])])
    );
    assert_eq!(
        run.value(b"list"),
        &RedisValue::List(vec![b"x".to_vec(), b"y".to_vec(), b"x".to_vec()])
    );
    assert_eq!(
        run.value(b"set"),
        &RedisValue::Set(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
    );
    assert_eq!(
        run.value(b"zset"),
        &RedisValue::ZSet(vec![
            (b"m0".to_vec(), f64::NEG_INFINITY),
            (b"m1".to_vec(), 1.5),
            (b"m9".to_vec(), f64::INFINITY)
        ])
    );
    assert_eq!(
        run.value(b"stream"),
        &RedisValue::Stream(vec![
            StreamEntry {
                id: "1-0".into(),
                fields: vec![(b"f".to_vec(), b"v".to_vec())]
            },
            StreamEntry {
                id: "2-0".into(),
                fields: vec![(b"g".to_vec(), b"w".to_vec()), (b"h".to_vec(), b"z".to_vec())]
            },
        ])
    );
    let types: BTreeMap<&[u8], KeyType> = run.records.iter().map(|r| (r.key.as_slice(), r.key_type)).collect();
    assert_eq!(types[b"zset".as_slice()], KeyType::ZSet);
    assert_eq!(types[b"stream".as_slice()], KeyType::Stream);

    let ttl = run.record(b"expiring").ttl.expect("a ttl");
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    assert_eq!(run.record(b"plain").ttl, None);
    assert!(
        run.records.iter().all(|r| r.size_in_bytes.is_some_and(|s| s > 0)),
        "MEMORY USAGE for every key"
    );
    assert!(run.records.iter().all(|r| r.database == 0 && r.document.is_none()));

    let db0 = &run.report.keys[&0];
    assert_eq!(db0["string"], 8);
    assert_eq!(
        (db0["hash"], db0["list"], db0["set"], db0["zset"], db0["stream"]),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(run.counters.received, 13);
    assert_eq!(run.counters.skipped, 0);
    assert_eq!(run.estimated, 13);
}

#[test]
fn size_in_bytes_false_skips_memory_usage() {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nHSET h f v\n");
    let run = read(config(redis.port, "size_in_bytes: false\n")).unwrap();
    assert_eq!(run.records.len(), 2);
    assert!(run.records.iter().all(|r| r.size_in_bytes.is_none()));
    assert_eq!(commandstat(&redis, "memory|usage"), 0);
}

/// The key set that tells the reference's seven examples apart.
fn reference_keys(redis: &RedisServer) {
    redis.cli_pipe(
        "SET alpha 1\nSET alpha1 1\nSADD alphabet a b\nSET beta 1\nSET test1 1\nSET test2 1\nSET test3 1\n\
         SADD test4 x\nSET testa 1\nSET test12 1\nSADD set:one m\nHSET user:1 name ann\n",
    );
}

fn redis_cli_scan(redis: &RedisServer, pattern: &str, key_type: Option<&str>) -> BTreeSet<Vec<u8>> {
    redis
        .cli(&["--scan", "--pattern", pattern])
        .lines()
        .filter(|key| key_type.is_none_or(|t| redis.cli(&["TYPE", key]).trim() == t))
        .map(|key| key.as_bytes().to_vec())
        .collect()
}

#[test]
fn the_seven_reference_rule_examples_select_what_redis_scan_match_selects() {
    let redis = RedisServer::start(&[]);
    reference_keys(&redis);
    let cases: [(&str, Option<&str>, &[&str]); 7] = [
        ("alpha*", None, &["alpha", "alpha1", "alphabet"]),
        ("alpha", None, &["alpha"]),
        ("test[123]", None, &["test1", "test2", "test3"]),
        ("test[^123]", None, &["test4", "testa"]),
        (
            "*",
            None,
            &[
                "alpha", "alpha1", "alphabet", "beta", "test1", "test2", "test3", "test4", "testa", "test12",
                "set:one", "user:1",
            ],
        ),
        ("*", Some("SET"), &["alphabet", "test4", "set:one"]),
        ("", Some("SET"), &["alphabet", "test4", "set:one"]),
    ];
    for (pattern, key_type, expected) in cases {
        let mut rule = String::from("rules:\n  - database: 0\n");
        if !pattern.is_empty() {
            rule += &format!("    key_pattern: '{pattern}'\n");
        }
        if let Some(t) = key_type {
            rule += &format!("    _type: {t}\n");
        }
        let run = read(config(redis.port, &rule)).unwrap();
        let redis_says = redis_cli_scan(
            &redis,
            if pattern.is_empty() { "*" } else { pattern },
            key_type.map(|_| "set"),
        );
        assert_eq!(
            run.keys(),
            redis_says,
            "rule {pattern:?}/{key_type:?} against redis-cli --scan"
        );
        assert_eq!(run.keys(), text_keys(expected), "rule {pattern:?}/{key_type:?}");
        assert_eq!(run.records.len(), expected.len(), "no key twice");
    }
}

#[test]
fn type_only_rules_accept_every_spelling() {
    let redis = RedisServer::start(&[]);
    reference_keys(&redis);
    for spelling in ["_type: hash", "type: HASH", "_type: Hash"] {
        let run = read(config(
            redis.port,
            &format!("rules:\n  - database: 0\n    {spelling}\n"),
        ))
        .unwrap();
        assert_eq!(run.keys(), text_keys(&["user:1"]), "{spelling}");
    }
    // A rule's type fixes the type: no TYPE command is needed.
    assert_eq!(commandstat(&redis, "type"), 0);
}

#[test]
fn type_only_rules_read_with_sizes_and_ttls_off() {
    // With the type fixed by the rule, `size_in_bytes: false` and no stage reading
    // `ttl`, nothing is left to ask before the values: the page must still be read.
    let redis = RedisServer::start(&[]);
    reference_keys(&redis);
    redis.cli_pipe("RPUSH list:1 a b\nZADD zset:1 1 m\nXADD stream:1 1-0 f v\n");
    for (rule, expected) in [
        ("_type: SET", vec!["alphabet", "test4", "set:one"]),
        ("_type: HASH", vec!["user:1"]),
        ("_type: LIST", vec!["list:1"]),
        ("_type: ZSET", vec!["zset:1"]),
        ("_type: STREAM", vec!["stream:1"]),
        ("{_type: HASH, key_pattern: 'user:*'}", vec!["user:1"]),
    ] {
        let rule = if let Some(inner) = rule.strip_prefix('{') {
            format!("rules:\n  - {{database: 0, {inner}\n")
        } else {
            format!("rules:\n  - {{database: 0, {rule}}}\n")
        };
        let mut source = RedisSource::build(&config(redis.port, &format!("size_in_bytes: false\n{rule}"))).unwrap();
        source.set_ttl_needed(false);
        let run = read_source(source, 8, |_| {}).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(run.keys(), text_keys(&expected), "{rule}");
        assert_eq!(run.counters.skipped, 0, "{rule}");
    }
}

#[test]
fn overlapping_rules_produce_each_key_once() {
    let redis = RedisServer::start(&[]);
    reference_keys(&redis);
    let rules = "rules:\n  - {database: 0, key_pattern: 'alpha*'}\n  - {database: 0, key_pattern: '*1'}\n  - {database: 0, _type: SET}\n";
    let run = read(config(redis.port, rules)).unwrap();
    let expected = text_keys(&["alpha", "alpha1", "alphabet", "test1", "set:one", "test4", "user:1"]);
    assert_eq!(run.keys(), expected);
    assert_eq!(run.records.len(), expected.len(), "each key once");
    assert_eq!(run.counters.received, expected.len() as u64);
}

fn three_databases(redis: &RedisServer) {
    redis.cli_pipe("SELECT 0\nSET a 0\nSET b 0\nSET c 0\nSELECT 2\nSET a 2\nHSET h f v\nSELECT 5\nSET z 5\n");
}

fn per_database(run: &Run) -> BTreeMap<u32, BTreeSet<Vec<u8>>> {
    let mut map: BTreeMap<u32, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for r in &run.records {
        map.entry(r.database).or_default().insert(r.key.clone());
    }
    map
}

#[test]
fn star_reads_every_database_that_holds_keys() {
    let redis = RedisServer::start(&[]);
    three_databases(&redis);
    let run = read(config(redis.port, "database: '*'\n")).unwrap();
    let dbs = per_database(&run);
    assert_eq!(dbs.keys().copied().collect::<Vec<_>>(), vec![0, 2, 5]);
    assert_eq!(dbs[&2], text_keys(&["a", "h"]));
    assert_eq!(run.value(b"z"), &RedisValue::String(b"5".to_vec()));
    assert_eq!(run.estimated, 6);
    assert_eq!(run.report.keys[&2]["hash"], 1);
    assert!(run.report.notes.is_empty(), "{:?}", run.report.notes);
}

#[test]
fn a_database_list_reads_those_databases() {
    let redis = RedisServer::start(&[]);
    three_databases(&redis);
    for selection in ["database: '5,0'", "database: [0, 5]"] {
        let run = read(config(redis.port, selection)).unwrap();
        let dbs = per_database(&run);
        assert_eq!(dbs.keys().copied().collect::<Vec<_>>(), vec![0, 5], "{selection}");
        assert_eq!(run.records.len(), 4);
        assert_eq!(run.estimated, 4);
    }
    // Rules ignore `database`.
    let run = read(config(
        redis.port,
        "database: 5\nrules:\n  - {database: 2, key_pattern: 'h'}\n",
    ))
    .unwrap();
    assert_eq!(per_database(&run).keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn databases_that_do_not_exist_are_all_named_in_one_error_before_any_record() {
    let redis = RedisServer::start(&[]);
    three_databases(&redis);
    let error = read(config(redis.port, "database: [0, 16, 99]\n")).err().unwrap();
    assert_eq!(
        error,
        format!(
            "Redis at 127.0.0.1:{} has no databases 16, 99 (it has 16 databases, 0 to 15)",
            redis.port
        )
    );
    let error = read(config(redis.port, "rules:\n  - {database: 40, key_pattern: 'a'}\n"))
        .err()
        .unwrap();
    assert!(error.contains("has no database 40 "), "{error}");
}

#[test]
fn star_falls_back_to_info_keyspace_when_config_is_renamed_away() {
    let redis = RedisServer::start(&["--rename-command", "CONFIG", "\"\""]);
    three_databases(&redis);
    assert!(redis.cli(&["CONFIG", "GET", "databases"]).contains("unknown command"));
    let run = read(config(redis.port, "database: '*'\n")).unwrap();
    assert_eq!(per_database(&run).keys().copied().collect::<Vec<_>>(), vec![0, 2, 5]);
    assert_eq!(run.records.len(), 6);
    assert!(
        run.report.notes.iter().any(|n| n.contains("INFO keyspace")),
        "{:?}",
        run.report.notes
    );
    // Without CONFIG, a listed database is checked with SELECT.
    let error = read(config(redis.port, "database: [0, 20, 21]\n")).err().unwrap();
    assert_eq!(
        error,
        format!(
            "Redis at 127.0.0.1:{} has no databases 20, 21 (SELECT: DB index is out of range)",
            redis.port
        )
    );
}

const READER_PASSWORD: &str = "s3cr3t-Reader-pw";

fn acl_server() -> RedisServer {
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET user:1 ann\nHSET user:2 name bob\nSET secret:1 classified\nSET other x\n");
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        &format!(">{READER_PASSWORD}"),
        "~user:*",
        "+@read",
        "+@connection",
        "+info",
        "+config|get",
    ]);
    assert_eq!(out.trim(), "OK");
    redis
}

#[test]
fn an_acl_user_restricted_to_user_keys_reads_them_with_a_matching_rule() {
    let redis = acl_server();
    let auth = format!("username: reader\npassword: {READER_PASSWORD}\n");
    let run = read(config(
        redis.port,
        &format!("{auth}rules:\n  - {{database: 0, key_pattern: 'user:*'}}\n"),
    ))
    .unwrap();
    assert_eq!(run.keys(), text_keys(&["user:1", "user:2"]));
    assert_eq!(run.value(b"user:1"), &RedisValue::String(b"ann".to_vec()));
    // MEMORY USAGE is allowed on the user's keys: sizes are there, and no note says
    // otherwise (the probe's own key name is outside `~user:*`).
    assert!(
        run.records.iter().all(|r| r.size_in_bytes.is_some_and(|n| n > 0)),
        "{:?}",
        run.records
    );
    assert!(
        !run.report.notes.iter().any(|n| n.contains("MEMORY USAGE")),
        "{:?}",
        run.report.notes
    );
}

#[test]
fn an_acl_user_reading_keys_it_may_not_gets_a_noperm_error_naming_user_and_key() {
    let redis = acl_server();
    let auth = format!("username: reader\npassword: {READER_PASSWORD}\n");
    let error = read(config(redis.port, &format!("{auth}database: 0\n"))).err().unwrap();
    eprintln!("NOPERM: {error}");
    assert!(
        error.starts_with(&format!("Redis at 127.0.0.1:{}: TYPE of key `", redis.port)),
        "{error}"
    );
    assert!(error.contains("permission denied to user `reader` (NOPERM)"), "{error}");
    assert!(!error.contains(READER_PASSWORD), "{error}");
}

#[test]
fn a_user_denied_config_and_info_still_reads_every_database_and_lists_are_checked() {
    // An ACL like managed Redis read-only users: reads allowed, CONFIG and INFO
    // (both @dangerous) denied. `"*"` then finds the databases with SELECT/DBSIZE.
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSELECT 3\nSET b 2\n");
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "ro",
        "on",
        ">ro-pw",
        "~*",
        "+@read",
        "+@connection",
        "-@dangerous",
    ]);
    assert_eq!(out.trim(), "OK");
    let auth = "username: ro\npassword: ro-pw\n";
    let denied = redis.cli(&[
        "--user",
        "ro",
        "--pass",
        "ro-pw",
        "--no-auth-warning",
        "CONFIG",
        "GET",
        "databases",
    ]);
    assert!(denied.contains("NOPERM"), "the user must be denied CONFIG: {denied}");

    let run = read(config(redis.port, &format!("{auth}database: \"*\"\n"))).unwrap();
    assert_eq!(run.keys(), text_keys(&["a", "b"]));
    assert!(
        run.report.notes.iter().any(|n| n.contains("SELECT and DBSIZE")),
        "{:?}",
        run.report.notes
    );

    let run = read(config(redis.port, &format!("{auth}database: \"0,3\"\n"))).unwrap();
    assert_eq!(run.keys(), text_keys(&["a", "b"]));
    let error = read(config(redis.port, &format!("{auth}database: \"0,3,99\"\n")))
        .err()
        .unwrap();
    assert!(error.contains("has no database 99"), "{error}");
}

#[test]
fn without_memory_usage_sizes_are_null_with_a_note_and_limits_still_hold() {
    let redis = RedisServer::start(&["--rename-command", "MEMORY", ""]);
    let big = "x".repeat(5000);
    redis.cli_pipe(&format!("SET small s\nSET big {big}\nHSET h f v\n"));
    let run = read(config(redis.port, "database: 0\nmax_value_bytes: 1000\n")).unwrap();
    assert_eq!(run.keys(), text_keys(&["small", "h"]));
    assert!(run.records.iter().all(|r| r.size_in_bytes.is_none()));
    assert!(
        run.report
            .notes
            .iter()
            .any(|n| n.contains("MEMORY USAGE is not available")),
        "{:?}",
        run.report.notes
    );
    assert_eq!(run.counters.skipped_reasons.get("too_large").copied(), Some(1));
}

#[test]
fn a_wrong_password_names_server_and_user_but_never_the_password() {
    let redis = acl_server();
    let error = read(config(
        redis.port,
        "username: reader\npassword: not-the-Password-42\ndatabase: 0\n",
    ))
    .err()
    .unwrap();
    assert_eq!(
        error,
        format!(
            "Redis at 127.0.0.1:{}: connecting to db 0 failed: authentication failed for user `reader`: wrong password, \
             or the user does not exist or is disabled (the server said: WRONGPASS invalid username-password pair or \
             user is disabled.)",
            redis.port
        )
    );
}

#[test]
fn a_password_file_is_read_and_its_trailing_newline_ignored() {
    let redis = acl_server();
    let dir = tempfile::tempdir().unwrap();
    let file = support::write_file(dir.path(), "pw", &format!("{READER_PASSWORD}\n"));
    let yaml = format!(
        "username: reader\npassword_file: {}\nrules:\n  - {{database: 0, key_pattern: 'user:1'}}\n",
        file.display()
    );
    let run = read(config(redis.port, &yaml)).unwrap();
    assert_eq!(run.keys(), text_keys(&["user:1"]));
}

#[test]
fn nothing_listening_gives_connection_refused_naming_host_and_port() {
    let port = support::free_port();
    let error = read(config(port, "")).err().unwrap();
    assert_eq!(
        error,
        format!("Redis at 127.0.0.1:{port}: connecting to db 0 failed: connection refused (is Redis running and listening on that port?)")
    );
}

fn tls_config(port: u16, certs: &TestCerts, extra: &str) -> RedisSourceConfig {
    config(
        port,
        &format!(
            "database: 0\ntls:\n  enabled: true\n  ca_file: {}\n{extra}",
            certs.path("ca.crt")
        ),
    )
}

#[test]
fn tls_with_the_servers_ca_reads_keys() {
    let certs = TestCerts::generate();
    let redis = RedisServer::start_tls(&certs, false);
    redis.cli_tls(&certs, &["SET", "over-tls", "yes"]);
    let run = read(tls_config(redis.port, &certs, "")).unwrap();
    assert_eq!(run.value(b"over-tls"), &RedisValue::String(b"yes".to_vec()));
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCerts::generate();
    let redis = RedisServer::start_tls(&certs, true);
    redis.cli_tls(&certs, &["SET", "mtls", "ok"]);
    let with_cert = format!(
        "  cert_file: {}\n  key_file: {}\n",
        certs.path("client.crt"),
        certs.path("client.key")
    );
    let run = read(tls_config(redis.port, &certs, &with_cert)).unwrap();
    assert_eq!(run.value(b"mtls"), &RedisValue::String(b"ok".to_vec()));

    let error = read(tls_config(redis.port, &certs, "")).err().unwrap();
    eprintln!("without a client certificate: {error}");
    assert!(
        error.starts_with(&format!(
            "Redis at 127.0.0.1:{}: connecting to db 0 failed:",
            redis.port
        )),
        "{error}"
    );
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused_unless_verification_is_off() {
    let certs = TestCerts::generate();
    let other = TestCerts::generate();
    let redis = RedisServer::start_tls(&certs, false);
    redis.cli_tls(&certs, &["SET", "k", "v"]);
    let error = read(tls_config(redis.port, &other, "")).err().unwrap();
    eprintln!("unknown CA: {error}");
    assert!(
        error.starts_with(&format!(
            "Redis at 127.0.0.1:{}: connecting to db 0 failed: TLS handshake failed:",
            redis.port
        )),
        "{error}"
    );
    assert!(
        error.contains("UnknownIssuer") || error.contains("certificate"),
        "{error}"
    );

    let insecure = config(
        redis.port,
        "database: 0\ntls: {enabled: true, insecure_skip_verify: true}\n",
    );
    assert_eq!(read(insecure).unwrap().keys(), text_keys(&["k"]));
}

#[test]
fn keys_deleted_between_scan_and_read_are_counted_as_vanished() {
    // With every per-key lookup, and with neither TTL (nothing reads `ttl`) nor
    // MEMORY USAGE: the read itself must then notice the key is gone.
    for (ttl, sizes) in [(true, true), (false, false), (false, true)] {
        keys_deleted_between_scan_and_read_are_counted_as_vanished_with(ttl, sizes);
    }
}

fn keys_deleted_between_scan_and_read_are_counted_as_vanished_with(ttl: bool, sizes: bool) {
    let redis = RedisServer::start(&[]);
    let mut commands = String::new();
    for i in 0..2000 {
        commands += &format!("SET k:{i} v{i}\n");
    }
    redis.cli_pipe(&commands);
    // One page fetched at a time, one batch in the channel: with the consumer not
    // receiving, the walk stops after exactly 4 SCAN calls, pages 3 and 4 scanned but
    // not read. Deleting every key then makes those vanish.
    let yaml = format!("database: 0\nscan_count: 10\npages_in_flight: 1\nsize_in_bytes: {sizes}\n");
    let mut source = RedisSource::build(&config(redis.port, &yaml)).unwrap();
    source.set_ttl_needed(ttl);
    let run = read_source(source, 1, |batch| {
        if batch == 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while commandstat(&redis, "scan") < 4 {
                assert!(Instant::now() < deadline, "the source never scanned 4 pages");
                std::thread::sleep(Duration::from_millis(10));
            }
            redis.cli(&["FLUSHALL"]);
        }
    })
    .unwrap();
    let vanished = run.counters.skipped_reasons.get("vanished").copied().unwrap_or(0);
    assert!(
        vanished > 0,
        "keys scanned before the delete and read after it are vanished (ttl {ttl}, sizes {sizes})"
    );
    assert!(!run.records.is_empty());
    assert_eq!(
        commandstat(&redis, "scan"),
        5,
        "after the delete, one more SCAN finds nothing"
    );
    for record in &run.records {
        let key = String::from_utf8(record.key.clone()).unwrap();
        assert_eq!(record.value, RedisValue::String(key.replace("k:", "v").into_bytes()));
    }
    assert_eq!(run.counters.received, run.records.len() as u64);
    assert_eq!(run.counters.skipped, vanished);
}

#[test]
fn values_over_max_value_bytes_are_skipped_and_counted() {
    let redis = RedisServer::start(&[]);
    let mut c = redis.connection();
    let big = vec![b'x'; 5000];
    cmd(&mut c, &[b"SET", b"big-string", &big]);
    cmd(&mut c, &[b"SET", b"small-string", b"ok"]);
    for i in 0..50 {
        cmd(
            &mut c,
            &[b"HSET", b"big-hash", format!("field{i}").as_bytes(), &[b'y'; 100]],
        );
    }
    cmd(&mut c, &[b"HSET", b"small-hash", b"a", b"1"]);
    cmd(&mut c, &[b"RPUSH", b"big-list", &[b'z'; 600], &[b'z'; 600]]);
    for size_in_bytes in [true, false] {
        let yaml = format!("max_value_bytes: 1000\nchunk_size: 10\nsize_in_bytes: {size_in_bytes}\n");
        let run = read(config(redis.port, &yaml)).unwrap();
        assert_eq!(
            run.keys(),
            text_keys(&["small-string", "small-hash"]),
            "size_in_bytes: {size_in_bytes}"
        );
        assert_eq!(run.counters.skipped_reasons.get("too_large"), Some(&3));
        assert_eq!(run.counters.skipped, 3);
    }
}

#[test]
fn a_hash_with_200000_fields_is_read_in_chunks() {
    let redis = RedisServer::start(&[]);
    redis.cli(&[
        "EVAL",
        "for i=1,200000 do redis.call('HSET', KEYS[1], 'f'..i, 'v'..i) end",
        "1",
        "huge",
    ]);
    redis.cli(&["SET", "small", "s"]);
    let run = read(config(redis.port, "chunk_size: 1000\n")).unwrap();
    let RedisValue::Hash(fields) = run.value(b"huge") else {
        panic!("a hash")
    };
    assert_eq!(fields.len(), 200_000);
    let map: BTreeMap<&[u8], &[u8]> = fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())).collect();
    assert_eq!(map.len(), 200_000, "no field twice");
    assert_eq!(map[b"f1".as_slice()], b"v1");
    assert_eq!(map[b"f200000".as_slice()], b"v200000");
    assert!(
        commandstat(&redis, "hscan") >= 200,
        "read with HSCAN pages of about 1000 fields"
    );
    assert_eq!(commandstat(&redis, "hgetall"), 0, "never in one HGETALL reply");
    assert_eq!(run.records.len(), 2);
}

fn load_many(redis: &RedisServer, n: usize) -> BTreeSet<Vec<u8>> {
    let mut commands = String::new();
    let mut keys = BTreeSet::new();
    for i in 0..n {
        if i % 10 == 0 {
            commands += &format!("HSET h:{i} n {i}\n");
            keys.insert(format!("h:{i}").into_bytes());
        } else {
            commands += &format!("SET s:{i} {i}\n");
            keys.insert(format!("s:{i}").into_bytes());
        }
    }
    redis.cli_pipe(&commands);
    keys
}

#[test]
fn dropped_connections_resume_from_the_cursor_and_lose_nothing() {
    let redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    let yaml = "database: 0\nscan_count: 50\npages_in_flight: 2\n";
    let run = read_with(config(redis.port, yaml), 1, |batch| {
        if batch == 1 {
            let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
            assert_ne!(killed.trim(), "0", "the source's connections were killed");
        }
    })
    .unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len(), "resumed from the cursor: no key twice");
    assert!(
        run.report.notes.iter().any(|n| n.contains("dropped")),
        "{:?}",
        run.report.notes
    );
}

#[test]
fn a_redis_restart_mid_read_loses_nothing_that_still_exists() {
    let mut redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    redis.cli(&["SAVE"]);
    let port = redis.port;
    let mut restarted: Option<RedisServer> = None;
    let yaml = "database: 0\nscan_count: 50\npages_in_flight: 2\n";
    let run = read_with(config(port, yaml), 1, |batch| {
        if batch == 1 {
            // A crash, then a start on the same port that loads the saved data.
            redis.kill();
            let dir = redis.dir.path().to_str().unwrap().to_owned();
            restarted = Some(RedisServer::start_on(port, &["--dir", &dir]));
        }
    })
    .unwrap();
    let restarted = restarted.expect("the server was restarted");
    assert_eq!(
        restarted.cli(&["DBSIZE"]).trim(),
        "3000",
        "the restarted server has the data"
    );
    assert_eq!(run.keys(), keys, "every key arrives");
    assert!(
        run.report.notes.iter().any(|n| n.contains("restarted")),
        "{:?}",
        run.report.notes
    );
    for record in &run.records {
        if record.key.starts_with(b"s:") {
            assert_eq!(record.value, RedisValue::String(record.key[2..].to_vec()));
        }
    }
}

#[test]
fn a_server_still_loading_its_data_is_waited_for_before_its_commands_are_probed() {
    // A server just started answers `LOADING` for a while: the `MEMORY USAGE` probe
    // must not take that for a server without the command (sizes null in every
    // document, and a note saying so).
    let mut redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    redis.cli(&["SAVE"]);
    redis.kill();
    let dir = redis.dir.path().to_str().unwrap().to_owned();
    // Loading slowed down (300 µs a key), answering clients meanwhile.
    let loading = RedisServer::start_on(
        redis.port,
        &[
            "--dir",
            &dir,
            "--key-load-delay",
            "300",
            "--loading-process-events-interval-bytes",
            "1024",
        ],
    );
    assert!(loading.cli(&["PING"]).contains("LOADING"), "the server is loading");
    let run = read(config(
        redis.port,
        "database: 0
",
    ))
    .unwrap();
    assert_eq!(run.keys(), keys);
    assert!(run.report.notes.is_empty(), "{:?}", run.report.notes);
    assert!(run.records.iter().all(|r| r.size_in_bytes.is_some()));
}

#[test]
fn pages_read_while_the_server_reloads_its_data_wait_for_it_and_lose_nothing() {
    // `DEBUG RELOAD` (as a replica's full sync) loads the data set again under open
    // connections: commands meanwhile get `LOADING`, the replies of pages in flight
    // included. That is a wait, not a key whose TYPE failed.
    let redis = RedisServer::start(&[
        "--enable-debug-command",
        "yes",
        "--key-load-delay",
        "300",
        "--loading-process-events-interval-bytes",
        "1024",
    ]);
    let keys = load_many(&redis, 3000);
    let yaml = "database: 0\nscan_count: 50\npages_in_flight: 4\n";
    let run = read_with(config(redis.port, yaml), 1, |batch| {
        if batch == 1 {
            // Returns once reloaded; the source reads meanwhile.
            let mut reloader = std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "DEBUG", "RELOAD"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(redis.cli(&["PING"]).contains("LOADING"), "reloading");
            // Let the source's pages meet the reload.
            std::thread::spawn(move || reloader.wait());
        }
    })
    .unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len(), "no key twice");
}

#[test]
fn cancelling_stops_the_read_without_error() {
    let redis = RedisServer::start(&[]);
    load_many(&redis, 2000);
    let source = RedisSource::build(&config(redis.port, "scan_count: 10\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = StageContext::new(
        "test",
        "source",
        DeadLetter::new(dir.path().join("dl")),
        RunOptions::default(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let handle = runtime.spawn(source.run(tx, ctx.clone()));
    let first = rx.blocking_recv().expect("a first batch");
    ctx.cancel.cancel();
    let mut total = first.len();
    while let Some(batch) = rx.blocking_recv() {
        total += batch.len();
    }
    runtime
        .block_on(handle)
        .unwrap()
        .expect("a cancelled read ends without error");
    assert!(total < 2000, "stopped early, read {total}");
    assert_eq!(ctx.counters.snapshot().received as usize, total);
}

#[test]
fn collections_longer_than_a_chunk_are_read_whole_and_in_order() {
    let redis = RedisServer::start(&[]);
    let mut commands = String::new();
    for i in 0..25 {
        commands += &format!("RPUSH list item{i:02}\nZADD zset {i} m{i:02}\nSADD set s{i:02}\nXADD stream {}-0 n {i}\nHSET hash f{i:02} v{i}\n", i + 1);
    }
    redis.cli_pipe(&commands);
    let run = read(config(redis.port, "chunk_size: 10\n")).unwrap();
    let expected_list: Vec<Vec<u8>> = (0..25).map(|i| format!("item{i:02}").into_bytes()).collect();
    assert_eq!(run.value(b"list"), &RedisValue::List(expected_list));
    let expected_zset: Vec<(Vec<u8>, f64)> = (0..25).map(|i| (format!("m{i:02}").into_bytes(), i as f64)).collect();
    assert_eq!(run.value(b"zset"), &RedisValue::ZSet(expected_zset));
    let expected_set: Vec<Vec<u8>> = (0..25).map(|i| format!("s{i:02}").into_bytes()).collect();
    assert_eq!(run.value(b"set"), &RedisValue::Set(expected_set));
    let RedisValue::Stream(entries) = run.value(b"stream") else {
        panic!("a stream")
    };
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, (1..=25).map(|i| format!("{i}-0")).collect::<Vec<_>>());
    let RedisValue::Hash(fields) = run.value(b"hash") else {
        panic!("a hash")
    };
    assert_eq!(fields.len(), 25);
    assert!(commandstat(&redis, "lrange") >= 3 && commandstat(&redis, "zrange") >= 3);
    assert!(commandstat(&redis, "xrange") >= 3);
}

#[test]
fn a_collection_deleted_or_overwritten_while_read_in_chunks_is_never_cut_short() {
    // One element per call: 20,000 calls take seconds, so the key is deleted (or
    // overwritten with a string, which changes its type), by another client, well
    // inside the read. What was read of it must not be sent as if it were the whole
    // value, and the run must go on. Deleted, it is vanished; overwritten, it is read
    // again as what it holds now, unless the rule selects only the old type.
    for (key_type, command, fill, change, rule) in [
        ("list", "lrange", "RPUSH big", "DEL", ""),
        ("hash", "hscan", "HSET big", "DEL", ""),
        ("zset", "zrange", "ZADD big", "DEL", ""),
        ("stream", "xrange", "XADD big *", "DEL", ""),
        ("list", "lrange", "RPUSH big", "SET", ""),
        ("hash", "hscan", "HSET big", "SET", ""),
        ("stream", "xrange", "XADD big *", "SET", ""),
        ("list", "lrange", "RPUSH big", "SET", "list"),
    ] {
        let redis = RedisServer::start(&[]);
        let mut commands = String::from("SET other v\n");
        for block in 0..20 {
            if key_type == "stream" {
                for i in 0..1000 {
                    commands += &format!("{fill} f {}\n", block * 1000 + i);
                }
                continue;
            }
            commands += fill;
            for i in 0..1000 {
                let n = block * 1000 + i;
                match key_type {
                    "list" => commands += &format!(" e{n}"),
                    _ => commands += &format!(" {n} e{n}"),
                }
            }
            commands.push('\n');
        }
        redis.cli_pipe(&commands);
        let case = format!("{key_type} then {change} (rule type `{rule}`)");
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(60);
                while commandstat(&redis, command) < 20 {
                    assert!(
                        Instant::now() < deadline,
                        "{case}: the source never read `big` in chunks"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                match change {
                    "DEL" => redis.cli(&["DEL", "big"]),
                    _ => redis.cli(&["SET", "big", "now a string"]),
                };
                commandstat(&redis, command)
            });
            let yaml = match rule {
                "" => "database: 0\nchunk_size: 1\n".to_owned(),
                _ => format!("chunk_size: 1\nrules:\n  - {{database: 0, key_pattern: '*', _type: {rule}}}\n"),
            };
            let run = read(config(redis.port, &yaml)).unwrap_or_else(|e| panic!("{case}: {e}"));
            let calls_at_change = watcher.join().unwrap();
            assert!(
                calls_at_change < 10_000,
                "{case}: `big` changed too late to test anything"
            );
            let vanished = run.counters.skipped_reasons.get("vanished").copied();
            match (change, rule) {
                ("SET", "") => {
                    assert_eq!(run.keys(), text_keys(&["big", "other"]), "{case}: read again");
                    assert_eq!(
                        run.value(b"big"),
                        &RedisValue::String(b"now a string".to_vec()),
                        "{case}"
                    );
                    assert_eq!(run.record(b"big").key_type, KeyType::String, "{case}");
                    assert_eq!(vanished, None, "{case}");
                }
                ("SET", _) => {
                    // `other` is a string too: the rule selects neither.
                    assert!(run.keys().is_empty(), "{case}: no cut-short `big`");
                    assert_eq!(vanished, Some(1), "{case}: out of the rule's selection");
                }
                _ => {
                    assert_eq!(run.keys(), text_keys(&["other"]), "{case}: no cut-short `big`");
                    assert_eq!(vanished, Some(1), "{case}");
                }
            }
        });
    }
}

#[test]
fn a_key_overwritten_with_another_type_at_every_read_is_skipped_after_three_and_the_run_goes_on() {
    // `big` turns from a list into a hash and back (an atomic RENAME over it) each
    // time the source has read 20 of its 20,000 elements: read again twice, it is
    // then skipped as `kept_changing_type`, not read forever and not sent cut short.
    let redis = RedisServer::start(&[]);
    let fill = |key: &str, list: bool| {
        let mut commands = String::new();
        for block in 0..20 {
            commands += if list { "RPUSH " } else { "HSET " };
            commands += key;
            for i in 0..1000 {
                let n = block * 1000 + i;
                commands += &if list { format!(" e{n}") } else { format!(" {n} e{n}") };
            }
            commands.push('\n');
        }
        redis.cli_pipe(&commands);
    };
    redis.cli(&["SET", "other", "v"]);
    fill("big", true);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut list = true;
            for _ in 0..3 {
                let command = if list { "lrange" } else { "hscan" };
                let start = commandstat(&redis, command);
                let deadline = Instant::now() + Duration::from_secs(60);
                while commandstat(&redis, command) < start + 20 {
                    assert!(Instant::now() < deadline, "the source never read `big` as a {command}");
                    std::thread::sleep(Duration::from_millis(5));
                }
                list = !list;
                fill("next", list);
                redis.cli(&["RENAME", "next", "big"]);
            }
        });
        let run = read(config(redis.port, "database: 0\nchunk_size: 1\n")).unwrap();
        watcher.join().unwrap();
        assert_eq!(run.keys(), text_keys(&["other"]));
        assert_eq!(run.counters.skipped_reasons.get("kept_changing_type").copied(), Some(1));
        assert_eq!(run.counters.skipped_reasons.get("vanished").copied(), None);
    });
}

#[test]
fn pages_are_read_on_extra_connections_logged_in_as_the_acl_user_on_their_database() {
    // The hot path reads pages on lean connections of its own (see `packed`): each
    // must authenticate as the configured user and select the database, or the
    // values would come from db 0 or be refused.
    let redis = acl_server();
    let mut commands = String::from("SELECT 3\n");
    for i in 0..3000 {
        commands += &format!("SET user:{i} v{i}\n");
    }
    redis.cli_pipe(&commands);
    let yaml = format!(
        "username: reader\npassword: {READER_PASSWORD}\nscan_count: 50\npages_in_flight: 2\n\
         rules:\n  - {{database: 3, key_pattern: 'user:*'}}\n"
    );
    let mut on_db3 = 0;
    let run = read_with(config(redis.port, &yaml), 1, |batch| {
        if batch == 2 {
            on_db3 = clients_with(&redis, &[" db=3 ", " user=reader "]);
        }
    })
    .unwrap();
    assert_eq!(run.records.len(), 3000);
    assert_eq!(run.value(b"user:2999"), &RedisValue::String(b"v2999".to_vec()));
    assert!(run.records.iter().all(|r| r.database == 3));
    assert!(
        on_db3 >= 2,
        "the crate's connection and at least one lean one on db 3, as `reader`: {on_db3}"
    );
}

#[test]
fn a_user_denied_ping_still_reads_pages_on_lean_connections() {
    // The lean connection's `PING` (which proves it answers and is past `LOADING`)
    // is refused to an ACL without `+@connection`: that refusal is an answer, not a
    // reason to read every page on the one connection the crate opened.
    let redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "noping",
        "on",
        ">pw",
        "~*",
        "+@read",
        "+info",
        "+config|get",
    ]);
    assert_eq!(out.trim(), "OK");
    let yaml = "username: noping
password: pw
database: 0
scan_count: 50
pages_in_flight: 2
";
    let mut connections = 0;
    let run = read_with(config(redis.port, yaml), 1, |batch| {
        if batch == 2 {
            connections = clients_with(&redis, &[" user=noping "]);
        }
    })
    .unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len());
    assert!(
        connections >= 2,
        "the crate's connection and at least one lean one: {connections}"
    );
}

#[test]
fn a_paused_server_is_waited_for_not_taken_for_a_restarted_one() {
    // `CLIENT PAUSE` longer than `timeout`: the page in flight times out and the
    // connection is replaced. `INFO` on the new connection times out too; that is a
    // failed reconnect to retry, not a server whose run id cannot be known (which
    // would start the scan over and send keys twice).
    let redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    let yaml = "database: 0
scan_count: 50
pages_in_flight: 2
timeout: 300ms
";
    let run = read_with(config(redis.port, yaml), 1, |batch| {
        if batch == 1 {
            assert_eq!(redis.cli(&["CLIENT", "PAUSE", "1500", "ALL"]).trim(), "OK");
        }
    })
    .unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len(), "no key twice");
    assert!(
        !run.report.notes.iter().any(|n| n.contains("restarted")),
        "{:?}",
        run.report.notes
    );
    assert!(
        run.report.notes.iter().any(|n| n.contains("dropped")),
        "the pause outlasted the timeout: {:?}",
        run.report.notes
    );
}

#[test]
fn a_server_refusing_extra_connections_is_read_on_one_connection() {
    // maxclients 2: the control connection and the database's own fit, the lean
    // connection for pages is refused ("max number of clients reached"); the read
    // goes on, whole, on the connection it has.
    let redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    redis.cli(&["CONFIG", "SET", "maxclients", "2"]);
    let run = read(config(redis.port, "database: 0\nscan_count: 100\n")).unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len());
    redis.cli(&["CONFIG", "SET", "maxclients", "100"]);
    let stats = redis.cli(&["INFO", "stats"]);
    assert!(
        !stats.contains("rejected_connections:0"),
        "the lean connection was tried and refused: {stats}"
    );
}

#[test]
fn once_a_lean_connection_is_refused_the_idle_ones_are_closed_to_give_back_their_slots() {
    // maxclients 3: the test's own connection, the database's, and one lean
    // connection; the next lean one is refused. The lean connection already open
    // must not sit idle for the rest of the read: a reconnect, or the next
    // database's connection, needs its slot.
    let redis = RedisServer::start(&[]);
    let keys = load_many(&redis, 3000);
    let mut own = redis.connection();
    cmd(&mut own, &[b"CONFIG", b"SET", b"maxclients", b"3"]);
    let mut others = Vec::new();
    let yaml = "database: 0
scan_count: 50
pages_in_flight: 4
";
    let run = read_with(config(redis.port, yaml), 1, |batch| {
        if batch == 20 {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut own).unwrap();
            others = list
                .lines()
                .filter(|line| !line.contains(" cmd=client|list "))
                .map(str::to_owned)
                .collect();
        }
    })
    .unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len());
    assert_eq!(others.len(), 1, "only the database's connection: {others:#?}");
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut own).unwrap();
    assert!(!stats.contains("rejected_connections:0"), "{stats}");
}

#[test]
fn many_databases_are_read_a_few_at_a_time_within_the_servers_maxclients() {
    // 60 databases holding keys, a server that takes 20 clients: one connection per
    // database at once would be refused ("max number of clients reached"). (8 at a
    // time, plus connections closed but not yet noticed by the server, fit.)
    let redis = RedisServer::start(&["--databases", "60"]);
    let mut commands = String::new();
    for db in 0..60 {
        commands += &format!("SELECT {db}\nSET k{db} v\n");
    }
    redis.cli_pipe(&commands);
    redis.cli(&["CONFIG", "SET", "maxclients", "20"]);
    let run = read(config(redis.port, "database: \"*\"\n")).unwrap();
    assert_eq!(run.records.len(), 60);
    assert_eq!(per_database(&run).len(), 60);
    assert_eq!(run.estimated, 60);
    let stats = redis.cli(&["INFO", "stats"]);
    assert!(stats.contains("rejected_connections:0"), "{stats}");
}

#[test]
fn a_user_denied_dbsize_still_reads_and_a_user_denied_select_is_stopped_before_any_read() {
    // DBSIZE only feeds the progress estimate: an ACL listing the read commands
    // without it must not stop the run.
    let redis = RedisServer::start(&[]);
    redis.cli_pipe("SET a 1\nSELECT 3\nSET b 2\nHSET h f v\n");
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "nodbsize",
        "on",
        ">pw",
        "~*",
        "+@read",
        "+@connection",
        "+config|get",
        "-dbsize",
    ]);
    assert_eq!(out.trim(), "OK");
    let auth = "username: nodbsize\npassword: pw\n";
    for databases in ["\"*\"", "\"0,3\""] {
        let run = read(config(redis.port, &format!("{auth}database: {databases}\n")))
            .unwrap_or_else(|e| panic!("{databases}: {e}"));
        assert_eq!(run.keys(), text_keys(&["a", "b", "h"]), "{databases}");
        assert_eq!(run.estimated, 0, "{databases}");
        if databases == "\"*\"" {
            assert!(
                run.report.notes.iter().any(|n| n.contains("DBSIZE is not available")),
                "{:?}",
                run.report.notes
            );
        }
    }

    let out = redis.cli(&["ACL", "SETUSER", "noselect", "on", ">pw", "~*", "+@read", "+config|get"]);
    assert_eq!(out.trim(), "OK");
    let auth = "username: noselect\npassword: pw\n";
    // Database 0 needs no SELECT.
    let run = read(config(redis.port, &format!("{auth}database: 0\n"))).unwrap();
    assert_eq!(run.keys(), text_keys(&["a"]));
    // Denied INFO and SELECT, it cannot list the databases: the error says what to do.
    let error = read(config(redis.port, &format!("{auth}database: \"*\"\n")))
        .err()
        .unwrap();
    assert!(
        error.contains("SELECT is denied to this user too") && error.contains("`database: 0`"),
        "{error}"
    );
    let error = read(config(redis.port, &format!("{auth}database: \"0,3\"\n")))
        .err()
        .unwrap();
    assert!(
        error.starts_with(&format!(
            "Redis at 127.0.0.1:{}: SELECT of db 3 failed: permission denied to user `noselect` (NOPERM)",
            redis.port
        )),
        "{error}"
    );
}

#[test]
fn a_page_of_big_collections_of_unknown_size_is_sent_in_parts_bounded_in_bytes() {
    // Without MEMORY USAGE (size_in_bytes: false, or MEMORY disabled) the sizes are
    // known only once read: ten lists of about 1 MB in one SCAN page must not be
    // read and sent as one 10 MB batch.
    let redis = RedisServer::start(&[]);
    let element = "x".repeat(20);
    let mut commands = String::new();
    for k in 0..10 {
        for _ in 0..50 {
            commands += &format!("RPUSH list{k}");
            for _ in 0..1000 {
                commands += " ";
                commands += &element;
            }
            commands.push('\n');
        }
    }
    redis.cli_pipe(&commands);
    let run = read(config(
        redis.port,
        "database: 0\nsize_in_bytes: false\nscan_count: 1000\n",
    ))
    .unwrap();
    assert_eq!(run.records.len(), 10);
    assert!(
        run.records.iter().all(|r| r.value.payload_len() == 50_000 * 20),
        "every list read whole"
    );
    let bound = redis_connector_part_bytes() + 50_000 * 20;
    assert!(
        run.batch_bytes.iter().all(|&b| b <= bound),
        "batches of {:?} bytes, bound {bound}",
        run.batch_bytes
    );
    assert!(run.batches >= 4, "{:?}", run.batch_bytes);
}

/// The reader's part size (2 MiB), as `reader::PART_BYTES` says.
fn redis_connector_part_bytes() -> u64 {
    2 * 1024 * 1024
}

fn net_output_bytes(redis: &RedisServer) -> u64 {
    let info = redis.cli(&["INFO", "stats"]);
    info.lines()
        .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap()
}

#[test]
fn a_collection_of_big_elements_over_the_limit_is_not_read_a_whole_chunk_at_a_time() {
    // 100 elements of 100 KB (10 MB) against max_value_bytes 1 MiB: `chunk_size`
    // (1000) elements in one reply would be the whole 10 MB, read only to be dropped.
    let redis = RedisServer::start(&[]);
    let element = "x".repeat(100_000);
    let mut commands = String::from("SET small v\n");
    for _ in 0..100 {
        commands += &format!("RPUSH fat {element}\nXADD fatstream * f {element}\n");
    }
    redis.cli_pipe(&commands);
    let before = net_output_bytes(&redis);
    let run = read(config(redis.port, "database: 0\nmax_value_bytes: 1MiB\n")).unwrap();
    let sent = net_output_bytes(&redis) - before;
    assert_eq!(run.keys(), text_keys(&["small"]));
    assert_eq!(run.counters.skipped_reasons.get("too_large").copied(), Some(2));
    // Each of the two keys: about the limit plus an element or so, not 10 MB.
    assert!(sent < 2 * 3 * 1024 * 1024, "Redis sent {sent} bytes");
}

/// 3,000 keys of three types spread over a cluster's slots.
fn load_cluster(cluster: &RedisCluster) -> BTreeSet<Vec<u8>> {
    let mut commands = String::new();
    let mut keys = BTreeSet::new();
    for i in 0..1000 {
        commands += &format!("SET s:{i} {i}\nHSET h:{i} f {i}\nRPUSH l:{i} a b\n");
        for prefix in ["s", "h", "l"] {
            keys.insert(format!("{prefix}:{i}").into_bytes());
        }
    }
    cluster.cli_pipe(&commands);
    keys
}

#[test]
fn a_cluster_is_read_from_every_master_each_key_once_and_never_from_replicas() {
    let cluster = RedisCluster::start(3, 1);
    let keys = load_cluster(&cluster);
    let masters = cluster.with_role("master");
    assert_eq!(masters.len(), 3);
    for master in &masters {
        let held: u64 = master.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(held > 500, "keys are spread over every master: {held}");
    }
    // Pointed at a replica: the whole cluster is still read, from its masters.
    let replica = cluster.with_role("slave")[0];
    for node in &cluster.nodes {
        node.cli(&["CONFIG", "RESETSTAT"]);
    }
    let run = read(config(replica.port, "database: \"*\"\nscan_count: 100\n")).unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len(), "each key once");
    assert!(run.records.iter().all(|r| r.database == 0));
    assert_eq!(
        run.value(b"h:7"),
        &RedisValue::Hash(vec![(b"f".to_vec(), b"7".to_vec())])
    );
    assert_eq!(run.estimated, 3000);
    // MEMORY USAGE's probe key lives on some master: the others answer MOVED, which
    // says the command exists (it once nulled every size of a cluster).
    assert!(run.records.iter().all(|r| r.size_in_bytes.is_some_and(|s| s > 0)));
    assert!(
        !run.report.notes.iter().any(|n| n.contains("MEMORY USAGE")),
        "{:?}",
        run.report.notes
    );
    assert!(
        run.report
            .notes
            .iter()
            .any(|n| n.contains("is a cluster node: read the cluster's 3 masters")),
        "{:?}",
        run.report.notes
    );
    assert_eq!(run.report.keys[&0].values().sum::<u64>(), 3000);
    for replica in cluster.with_role("slave") {
        assert_eq!(commandstat(replica, "scan"), 0, "replicas are not read");
        assert_eq!(commandstat(replica, "get"), 0, "replicas are not read");
    }
}

#[test]
fn a_cluster_is_read_with_rules_of_database_0_and_refuses_others_before_reading() {
    let cluster = RedisCluster::start(3, 0);
    load_cluster(&cluster);
    let port = cluster.nodes[0].port;
    let run = read(config(port, "rules:\n  - {database: 0, key_pattern: 'h:1*'}\n")).unwrap();
    let expected: BTreeSet<Vec<u8>> = (0..1000)
        .map(|i| format!("h:{i}"))
        .filter(|k| k.starts_with("h:1"))
        .map(String::into_bytes)
        .collect();
    assert_eq!(run.keys(), expected);

    let error = read(config(port, "rules:\n  - {database: 1, key_pattern: 'h:*'}\n"))
        .err()
        .unwrap();
    assert_eq!(
        error,
        format!(
            "Redis at 127.0.0.1:{port} is a cluster node, and a cluster has database 0 only: a rule reads database 1 (use `database: 0` in every rule)"
        )
    );
    let error = read(config(port, "database: \"0,2\"\n")).err().unwrap();
    assert!(
        error.ends_with("`database` lists 0, 2 (use `database: 0` or \"*\")"),
        "{error}"
    );
}

#[test]
fn every_node_of_a_cluster_is_read_as_the_configured_acl_user() {
    let cluster = RedisCluster::start(3, 0);
    let keys = load_cluster(&cluster);
    for node in &cluster.nodes {
        let out = node.cli(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            &format!(">{READER_PASSWORD}"),
            "~*",
            "+@read",
            "+@connection",
            "+info",
            "+cluster|nodes",
        ]);
        assert_eq!(out.trim(), "OK");
        let out = node.cli(&[
            "ACL",
            "SETUSER",
            "blind",
            "on",
            &format!(">{READER_PASSWORD}"),
            "~*",
            "+@read",
            "+@connection",
            "+info",
        ]);
        assert_eq!(out.trim(), "OK");
        // The default user may not read any more: only `reader` can.
        node.cli(&["ACL", "SETUSER", "default", "-@all"]);
    }
    let auth = format!("username: reader\npassword: {READER_PASSWORD}\ndatabase: 0\n");
    let run = read(config(cluster.nodes[2].port, &auth)).unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len());
    let wrong = read(config(
        cluster.nodes[2].port,
        "username: reader\npassword: nope\ndatabase: 0\n",
    ))
    .err()
    .unwrap();
    assert!(wrong.contains("authentication failed for user `reader`"), "{wrong}");

    // Without `CLUSTER NODES`, the node alone would look complete: the run stops.
    let port = cluster.nodes[2].port;
    let blind = format!("username: blind\npassword: {READER_PASSWORD}\ndatabase: 0\n");
    let error = read(config(port, &blind)).err().unwrap();
    assert!(
        error.starts_with(&format!(
            "Redis at 127.0.0.1:{port} is a cluster node, and it holds only the keys of its own slots; to find the other masters the user needs `CLUSTER NODES` (ACL `+cluster|nodes`)"
        )),
        "{error}"
    );
}

/// Runs the source to its end like [`read_with`], but keeps what was sent before an
/// error: the records, and the run's result.
fn read_through(
    config: RedisSourceConfig,
    capacity: usize,
    mut on_batch: impl FnMut(usize),
) -> (Vec<Record>, Result<SourceReport, String>) {
    let source = RedisSource::build(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = StageContext::new(
        "test",
        "source",
        DeadLetter::new(dir.path().join("dl.ndjson")),
        RunOptions::default(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(capacity);
    let handle = runtime.spawn(source.run(tx, ctx));
    let mut records = Vec::new();
    for batches in 0.. {
        on_batch(batches);
        let Some(batch) = rx.blocking_recv() else { break };
        records.extend(batch);
    }
    (records, runtime.block_on(handle).unwrap().map_err(|e| format!("{e:#}")))
}

#[test]
fn slots_moved_while_a_cluster_is_read_fail_the_run_instead_of_leaving_keys_out() {
    let cluster = RedisCluster::start(3, 0);
    let keys = load_cluster(&cluster);
    let masters = cluster.with_role("master");
    let id = |node: &RedisServer| node.cli(&["CLUSTER", "MYID"]).trim().to_owned();
    let (from, to) = (id(masters[0]), id(masters[1]));
    // A page at a time, one batch in the channel: with the consumer waiting, every
    // master's walk stops a few pages in, and 300 slots (about 55 keys) move from
    // one master to another, most of them not yet scanned on the first one and
    // already past on the second: read on neither.
    let slow = "database: 0\nscan_count: 10\npages_in_flight: 1\nchunk_size: 1\n";
    let (records, result) = read_through(config(masters[2].port, slow), 1, |batch| {
        if batch == 3 {
            let out = std::process::Command::new("redis-cli")
                .args(["--cluster", "reshard", &format!("127.0.0.1:{}", masters[0].port)])
                .args([
                    "--cluster-from",
                    &from,
                    "--cluster-to",
                    &to,
                    "--cluster-slots",
                    "300",
                    "--cluster-yes",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "reshard: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    });
    let got: BTreeSet<Vec<u8>> = records.iter().map(|r| r.key.clone()).collect();
    let error = result.expect_err(&format!(
        "a run across a reshard is not complete: {} of {} keys read",
        got.len(),
        keys.len()
    ));
    assert!(
        error.contains("the cluster changed while it was read: master 127.0.0.1:")
            || error.contains("the cluster moved the key's slot to another node"),
        "{error}"
    );

    // Once the reshard is over, a run reads every key once.
    let run = read(config(masters[2].port, "database: 0\n")).unwrap();
    assert_eq!(run.keys(), keys);
    assert_eq!(run.records.len(), keys.len());

    // A slot left half-moved (MIGRATING/IMPORTING) stops the next run before it reads.
    let slot = masters[1].cli(&["CLUSTER", "KEYSLOT", "s:1"]).trim().to_owned();
    let owner = masters
        .iter()
        .find(|m| m.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]).trim() != "0")
        .unwrap();
    let other = masters.iter().find(|m| m.port != owner.port).unwrap();
    assert_eq!(
        other
            .cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(owner)])
            .trim(),
        "OK"
    );
    assert_eq!(
        owner
            .cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(other)])
            .trim(),
        "OK"
    );
    let error = read(config(masters[2].port, "database: 0\n")).err().unwrap();
    assert!(
        error.contains(&format!("is moving a slot ([{slot}-")) && error.contains("resharding is in progress"),
        "{error}"
    );
}

#[test]
fn a_cluster_that_cannot_serve_keys_stops_the_run_before_reading_instead_of_nulling_sizes() {
    // One node serving half the slots: cluster_state:fail, every keyed command
    // answers CLUSTERDOWN (the MEMORY USAGE probe was taken for a missing command).
    let node = RedisServer::start_on(
        support::cluster_port(),
        &["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
    );
    assert_eq!(node.cli(&["CLUSTER", "ADDSLOTSRANGE", "0", "8191"]).trim(), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.cli(&["GET", "k"]).contains("CLUSTERDOWN") {
        assert!(Instant::now() < deadline, "the node never said CLUSTERDOWN");
        std::thread::sleep(Duration::from_millis(100));
    }
    let error = read(config(node.port, "database: 0\n")).err().unwrap();
    assert!(
        error.starts_with(&format!("Redis at 127.0.0.1:{}: MEMORY USAGE", node.port))
            && error.contains("the cluster moved the key's slot to another node, or cannot serve it now"),
        "{error}"
    );

    // All slots served: a cluster of one master, whose own line has no ip (it never
    // met another node), read at the configured host.
    assert_eq!(node.cli(&["CLUSTER", "ADDSLOTSRANGE", "8192", "16383"]).trim(), "OK");
    assert!(node.cli(&["CLUSTER", "NODES"]).contains(&format!(" :{}@", node.port)));
    while !node.cli(&["SET", "k", "v"]).contains("OK") {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "the node never served keys"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut localhost = config(node.port, "database: 0\n");
    localhost.host = "localhost".into();
    let run = read(localhost).unwrap();
    assert_eq!(run.keys(), text_keys(&["k"]));
    assert!(run.records[0].size_in_bytes.is_some());
    assert_eq!(
        run.report.notes,
        vec![format!(
            "Redis at localhost:{0} is a cluster node: read the cluster's only master (localhost:{0}), each for the keys of its own slots",
            node.port
        )]
    );
}
