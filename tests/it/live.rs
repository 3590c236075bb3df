//! Live mode (`run --follow`) against real Redis and Elasticsearch. Every test ends
//! with the checker: once the writers stop and the connector settles, every key in
//! Redis has its document (same `_id`, key, database, type and value) and the index
//! holds nothing else.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::es_instance::EsInstance;
use crate::support::live::*;
use crate::support::*;
use serde_json::{json, Value};

#[test]
fn writes_updates_deletes_expiries_renames_type_changes_and_flushdb_are_followed_exactly() {
    let server = RedisServer::start(&[]);
    let index = unique_index("live-mix");
    let _cleanup = IndexCleanup(index.clone());
    let mut connection = server.connection();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg("start")
            .query(&mut connection)
            .unwrap();
    }
    let follow = Follow::start(&pipeline(
        "live-mix",
        server.port,
        "0,1",
        &es_url(),
        &index,
        "{configure_server: true}",
    ));
    assert_exact(server.port, &[0, 1], &es_url(), &index);

    let mut rng = Lcg(7);
    for _ in 0..1500 {
        random_write(&mut connection, &mut rng, 200).unwrap();
    }
    server.cli(&["FLUSHDB"]);
    for _ in 0..1500 {
        random_write(&mut connection, &mut rng, 200).unwrap();
    }
    server.cli(&["-n", "1", "SET", "db1:a", "x"]);
    // Keys given 1 s to live expire while the connector follows.
    std::thread::sleep(Duration::from_millis(2500));
    assert_exact(server.port, &[0, 1], &es_url(), &index);

    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let live = &summary["pipelines"][0];
    assert_eq!(live["status"], "ok", "{summary}");
    assert!(
        resyncs(&summary, "flush") >= 1,
        "FLUSHDB sends no per-key event: {summary}"
    );
    assert!(live["events"].as_u64().unwrap() >= 3000, "{summary}");
    assert!(live["deletes"].as_u64().unwrap() > 0, "{summary}");
    assert!(live["upserts"].as_u64().unwrap() > 0, "{summary}");
}

#[test]
fn a_killed_subscription_is_resubscribed_and_resynced_and_nothing_is_lost() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KEA"]);
    let index = unique_index("live-kill");
    let _cleanup = IndexCleanup(index.clone());
    server.cli(&["SET", "before", "1"]);
    let follow = Follow::start(&pipeline("live-kill", server.port, "0", &es_url(), &index, "true"));
    // The first sync is done, so the subscription (which comes before it) is made.
    assert_exact(server.port, &[0], &es_url(), &index);
    let mut connection = server.connection();
    let mut rng = Lcg(11);
    for round in 0..5 {
        for _ in 0..300 {
            random_write(&mut connection, &mut rng, 100).unwrap();
        }
        if round % 2 == 0 {
            let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            assert_ne!(killed.trim(), "0", "the connector's subscription was found");
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_exact(server.port, &[0], &es_url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(resyncs(&summary, "subscription_dropped") >= 1, "{summary}");
}

#[test]
fn a_pending_set_smaller_than_the_backlog_overflows_and_a_resync_makes_the_index_exact() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KA"]);
    let index = unique_index("live-overflow");
    let _cleanup = IndexCleanup(index.clone());
    // One document per bulk request: the sink is far slower than the writer below.
    let yaml = format!(
        "name: live-overflow\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"0\"}}\n\
         sink: {{type: elasticsearch, url: {}, index: {index}, bulk: {{max_docs: 1, concurrency: 1}}}}\n\
         live: {{max_pending_keys: 20}}\n",
        server.port,
        es_url()
    );
    let follow = Follow::start(&yaml);
    assert_exact(server.port, &[0], &es_url(), &index);
    let commands: String = (0..3000).map(|i| format!("SET o:{i} v{i}\n")).collect();
    server.cli_pipe(&commands);
    server.cli_pipe("DEL o:1 o:2 o:3\n");
    assert_exact(server.port, &[0], &es_url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(resyncs(&summary, "overflow") >= 1, "{summary}");
    assert!(summary["pipelines"][0]["dropped"].as_u64().unwrap() > 0, "{summary}");
}

#[test]
fn without_the_notification_flags_the_start_stops_with_the_command_to_run() {
    let server = RedisServer::start(&["--notify-keyspace-events", "Ex"]);
    let index = unique_index("live-off");
    let _cleanup = IndexCleanup(index.clone());
    let follow = Follow::start(&pipeline("live-off", server.port, "0", &es_url(), &index, "true"));
    let (code, stderr) = follow.wait_exit();
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "redis-cli -h 127.0.0.1 -p {} CONFIG SET notify-keyspace-events 'xEKg$lshzet'",
        server.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("`notify-keyspace-events xEKg$lshzet` in redis.conf"),
        "{stderr}"
    );
    assert!(stderr.contains("live.configure_server: true"), "{stderr}");
    assert!(stderr.contains("managed service"), "{stderr}");
    assert_eq!(es_count(&index), 0, "nothing is written before the subscription works");
}

#[test]
fn configure_server_adds_the_missing_flags_and_keeps_the_others() {
    let server = RedisServer::start(&["--notify-keyspace-events", "Ex"]);
    let index = unique_index("live-conf");
    let _cleanup = IndexCleanup(index.clone());
    server.cli(&["SET", "before", "1"]);
    let follow = Follow::start(&pipeline(
        "live-conf",
        server.port,
        "0",
        &es_url(),
        &index,
        "{configure_server: true}",
    ));
    // The first sync is done, so the subscription (which comes before it) is made.
    assert_exact(server.port, &[0], &es_url(), &index);
    let flags = server.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    let flags = flags.lines().nth(1).unwrap().to_owned();
    for flag in "EKg$lshzxet".chars() {
        assert!(
            flags.contains(flag) || flags.contains('A') && flag != 'K' && flag != 'E',
            "{flag} in {flags}"
        );
    }
    server.cli(&["SET", "after", "1"]);
    assert_exact(server.port, &[0], &es_url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let notes = summary["pipelines"][0]["notes"].to_string();
    assert!(notes.contains("set notify-keyspace-events"), "{notes}");
}

/// Deletes the test's index when dropped.
struct IndexCleanup(String);

impl Drop for IndexCleanup {
    fn drop(&mut self) {
        es_delete_index(&self.0);
    }
}

/// A redis-server with AOF (`appendfsync always`) in a folder of the test's, so it
/// can be killed and started again on its data.
struct AofServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl AofServer {
    fn start() -> AofServer {
        let mut server = AofServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server with AOF did not start");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same server as a [`RedisServer`] view for the checker (not owning it).
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for AofServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn redis_killed_and_restarted_with_aof_under_writes_is_followed_exactly() {
    let mut server = AofServer::start();
    let index = unique_index("live-restart");
    let _cleanup = IndexCleanup(index.clone());
    let follow = Follow::start(&pipeline(
        "live-restart",
        server.port,
        "0",
        &es_url(),
        &index,
        "{configure_server: true}",
    ));
    let url = server.url();
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop_writing = stop_writing.clone();
        std::thread::spawn(move || {
            let mut rng = Lcg(23);
            let mut writes = 0u64;
            while !stop_writing.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut connection) = redis::Client::open(url.as_str()).unwrap().get_connection() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                while !stop_writing.load(std::sync::atomic::Ordering::Relaxed) {
                    if random_write(&mut connection, &mut rng, 300).is_err() {
                        break;
                    }
                    writes += 1;
                }
            }
            writes
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    server.launch();
    std::thread::sleep(Duration::from_millis(1500));
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 100, "the writer wrote {writes} times");
    std::thread::sleep(Duration::from_millis(1500));
    assert_exact(server.port, &[0], &es_url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(resyncs(&summary, "restart") >= 1, "{summary}");
}

#[test]
fn elasticsearch_stopped_for_20_s_under_writes_is_caught_up_exactly_when_it_answers_again() {
    let es = EsInstance::start("live-es-down", 9261, &[], &[]);
    let server = RedisServer::start(&["--notify-keyspace-events", "KA"]);
    let index = unique_index("live-es-down");
    // Few pending keys allowed: the backlog of the outage overflows them, and the
    // resync after Elasticsearch answers again reads everything.
    let yaml = format!(
        "name: live-es-down\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"0\"}}\n\
         sink: {{type: elasticsearch, url: {}, index: {index}, retry: {{max_backoff: 1s}}}}\n\
         live: {{max_pending_keys: 100}}\n",
        server.port,
        es.url()
    );
    let mut connection = server.connection();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg("start")
            .query(&mut connection)
            .unwrap();
    }
    let follow = Follow::start(&yaml);
    // The first sync is done (a failure there stops the run: see the README).
    assert_exact(server.port, &[0], &es.url(), &index);
    let mut rng = Lcg(31);
    for _ in 0..200 {
        random_write(&mut connection, &mut rng, 150).unwrap();
    }
    es.stop();
    // 20 s of writes while Elasticsearch is down.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        for _ in 0..50 {
            random_write(&mut connection, &mut rng, 400).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let es = EsInstance::start("live-es-down", 9261, &[], &[]);
    for _ in 0..200 {
        random_write(&mut connection, &mut rng, 400).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_exact(server.port, &[0], &es.url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(resyncs(&summary, "overflow") >= 1, "{summary}");
}

#[test]
fn a_key_a_filter_now_excludes_loses_its_document_and_a_value_dependent_id_is_deleted_by_a_resync() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KA"]);
    let index = unique_index("live-filter");
    let _cleanup = IndexCleanup(index.clone());
    let yaml = format!(
        "name: live-filter\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"0\"}}\n\
         transforms:\n  - {{type: filter, rules: [{{policy: exclude, field: value, rule: starts_with, value: tmp}}]}}\n\
         sink: {{type: elasticsearch, url: {}, index: {index}}}\nlive: true\n",
        server.port,
        es_url()
    );
    server.cli(&["SET", "a", "kept"]);
    let follow = Follow::start(&yaml);
    let id_a = redis_connector::document::default_id(0, b"a");
    wait_for(|| es_get(&index, &id_a).is_some(), "the first sync writes a");
    server.cli(&["SET", "a", "tmp now"]);
    server.cli(&["SET", "b", "kept"]);
    let id_b = redis_connector::document::default_id(0, b"b");
    wait_for(|| es_get(&index, &id_b).is_some(), "b is written");
    wait_for(|| es_get(&index, &id_a).is_none(), "a, excluded now, is deleted");
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(summary["pipelines"][0]["deletes"].as_u64().unwrap() >= 1, "{summary}");

    // An id rendered from the value: a deleted key's id is unknown, a resync removes it.
    let index = unique_index("live-value-id");
    let _cleanup = IndexCleanup(index.clone());
    let yaml = format!(
        "name: live-value-id\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"0\"}}\n\
         transforms:\n  - {{type: template, id: \"doc-{{{{ value }}}}\"}}\n\
         sink: {{type: elasticsearch, url: {}, index: {index}}}\nlive: true\n",
        server.port,
        es_url()
    );
    server.cli(&["FLUSHDB"]);
    server.cli(&["SET", "c", "one"]);
    let follow = Follow::start(&yaml);
    wait_for(|| es_get(&index, "doc-one").is_some(), "the first sync writes doc-one");
    server.cli(&["DEL", "c"]);
    wait_for(|| es_get(&index, "doc-one").is_none(), "a resync deletes doc-one");
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(resyncs(&summary, "delete_without_id") >= 1, "{summary}");
}

/// Waits (at most a minute) for `done`.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "still not done after a minute: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cluster_of_three_masters_is_followed_on_every_master() {
    let cluster = RedisCluster::start(3, 0);
    let index = unique_index("live-cluster");
    let _cleanup = IndexCleanup(index.clone());
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let commands: String = (0..100).map(|i| format!("SET c:{i} start\n")).collect();
    cluster.cli_pipe(&commands);
    let follow = Follow::start(&pipeline(
        "live-cluster",
        ports[0],
        "*",
        &es_url(),
        &index,
        "{configure_server: true}",
    ));
    assert_exact_on(&ports, &[0], &es_url(), &index);
    let mut rng = Lcg(41);
    let mut commands = String::new();
    for _ in 0..2000 {
        let key = format!("c:{}", rng.next(300));
        let n = rng.next(1000);
        commands.push_str(&match rng.next(5) {
            0 | 1 => format!("SET {key} v{n}\n"),
            2 => format!("DEL {key}\n"),
            3 => format!("EXPIRE {key} 1\n"),
            _ => format!("DEL {key}\nHSET {key} f {n}\n"),
        });
    }
    cluster.cli_pipe(&commands);
    std::thread::sleep(Duration::from_millis(2000));
    assert_exact_on(&ports, &[0], &es_url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let live = &summary["pipelines"][0];
    assert!(live["notes"].to_string().contains("3 master(s)"), "{summary}");
    assert!(
        live["deletes"].as_u64().unwrap() > 0 && live["upserts"].as_u64().unwrap() > 0,
        "{summary}"
    );
}

#[test]
fn slots_moved_between_masters_while_followed_resync_and_follow_the_new_layout() {
    let cluster = RedisCluster::start(3, 0);
    let index = unique_index("live-reshard");
    let _cleanup = IndexCleanup(index.clone());
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let commands: String = (0..300).map(|i| format!("SET r:{i} start\n")).collect();
    cluster.cli_pipe(&commands);
    let follow = Follow::start(&pipeline(
        "live-reshard",
        ports[0],
        "*",
        &es_url(),
        &index,
        "{configure_server: true}",
    ));
    assert_exact_on(&ports, &[0], &es_url(), &index);
    let id = |node: &RedisServer| node.cli(&["CLUSTER", "MYID"]).trim().to_owned();
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{}", ports[0])])
        .args([
            "--cluster-from",
            &id(&cluster.nodes[0]),
            "--cluster-to",
            &id(&cluster.nodes[1]),
        ])
        .args(["--cluster-slots", "2000", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let commands: String = (0..300)
        .map(|i| format!("SET r:{i} after\nDEL r:{}\n", i + 1000))
        .collect();
    cluster.cli_pipe(&commands);
    cluster.cli_pipe("SET r:new 1\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_exact_on(&ports, &[0], &es_url(), &index);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(resyncs(&summary, "topology") >= 1, "{summary}");
}

#[test]
fn sigterm_applies_what_is_pending_exits_0_and_deletes_nothing_else_even_with_allow_mass_delete() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KA"]);
    let index = unique_index("live-stop");
    let _cleanup = IndexCleanup(index.clone());
    let commands: String = (0..200).map(|i| format!("SET before:{i} v\n")).collect();
    server.cli_pipe(&commands);
    let follow = Follow::start_with(
        &pipeline("live-stop", server.port, "0", &es_url(), &index, "true"),
        &["--allow-mass-delete"],
    );
    assert_exact(server.port, &[0], &es_url(), &index);
    let commands: String = (0..50).map(|i| format!("SET after:{i} v\n")).collect();
    server.cli_pipe(&commands);
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    let live = &summary["pipelines"][0];
    assert_eq!(live["status"], "ok", "{summary}");
    assert!(
        !live["notes"].to_string().contains("delete"),
        "no stale deletion after a follow phase: {summary}"
    );
    // What was pending when SIGTERM came was applied, and nothing else was deleted.
    assert_exact(server.port, &[0], &es_url(), &index);
    assert_eq!(es_count(&index), 250);
}

/// The document of `key` as the index holds it: its `value` parsed (a JSON key's
/// text), or `None` when there is none.
fn json_document(index: &str, key: &str) -> Option<Value> {
    let source = es_get(index, &redis_connector::document::default_id(0, key.as_bytes()))?;
    Some(serde_json::from_str(source["value"].as_str()?).unwrap())
}

#[test]
#[ignore = "needs the RedisJSON module: set REDISJSON_MODULE (scripts/test does)"]
fn redisjson_keys_changed_with_json_set_and_json_del_are_followed_and_need_the_d_flag() {
    let server = redisjson::server();
    server.cli(&["CONFIG", "SET", "notify-keyspace-events", "Kg$lshzxet"]);
    let index = unique_index("live-json");
    let _cleanup = IndexCleanup(index.clone());
    let typed = |live: &str| {
        format!(
            "name: live-json\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"0\", rules: [{{database: 0, _type: ReJSON-RL}}]}}\n\
             sink: {{type: elasticsearch, url: {}, index: {index}}}\nlive: {live}\n",
            server.port,
            es_url()
        )
    };
    // A rule reading JSON keys on a server that does not publish module types' events.
    let flags = server.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    let flags = flags.lines().nth(1).unwrap().trim().to_owned();
    let (code, stderr) = Follow::start(&typed("true")).wait_exit();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("which lacks \"d\""), "{stderr}");
    assert!(
        stderr.contains(&format!("CONFIG SET notify-keyspace-events '{flags}d'")),
        "{stderr}"
    );
    assert!(stderr.contains("RedisJSON's JSON.SET"), "{stderr}");

    // Without rules every type is read: the module being loaded, `d` is needed too,
    // and `configure_server` adds it.
    let mut connection = server.connection();
    let set = |connection: &mut redis::Connection, key: &str, path: &str, json: &str| {
        redis::cmd("JSON.SET")
            .arg(key)
            .arg(path)
            .arg(json)
            .exec(connection)
            .unwrap();
    };
    set(&mut connection, "j:1", "$", r#"{"a":1,"b":[1]}"#);
    let follow = Follow::start(&pipeline(
        "live-json",
        server.port,
        "0",
        &es_url(),
        &index,
        "{configure_server: true}",
    ));
    wait_for(
        || json_document(&index, "j:1") == Some(json!({"a": 1, "b": [1]})),
        "the first sync",
    );
    // (Redis shows `g$lshzxetd` as `A`.)
    let flags = server.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(
        flags.lines().nth(1).is_some_and(|f| f.contains('d') || f.contains('A')),
        "{flags}"
    );

    set(&mut connection, "j:2", "$", r#"{"name":"Ada"}"#);
    set(&mut connection, "j:1", "$.a", "2");
    redis::cmd("JSON.ARRAPPEND")
        .arg("j:1")
        .arg("$.b")
        .arg("3")
        .exec(&mut connection)
        .unwrap();
    redis::cmd("JSON.DEL")
        .arg("j:2")
        .arg("$.name")
        .exec(&mut connection)
        .unwrap();
    set(&mut connection, "j:3", "$", "[1,2]");
    wait_for(
        || {
            json_document(&index, "j:1") == Some(json!({"a": 2, "b": [1, 3]}))
                && json_document(&index, "j:2") == Some(json!({}))
                && json_document(&index, "j:3") == Some(json!([1, 2]))
        },
        "JSON.SET, JSON.ARRAPPEND and JSON.DEL of a path",
    );
    // JSON.DEL of the whole document removes the key (the module sends json.del, no del).
    redis::cmd("JSON.DEL").arg("j:3").exec(&mut connection).unwrap();
    wait_for(|| json_document(&index, "j:3").is_none(), "JSON.DEL of the document");
    let (code, summary, stderr) = follow.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(resyncs(&summary, "error"), 0, "{summary}");
    assert!(summary["pipelines"][0]["deletes"].as_u64().unwrap() >= 1, "{summary}");
}

#[test]
fn a_first_sync_that_fails_stops_the_follow_with_exit_1_and_says_what_to_do() {
    let server = RedisServer::start(&["--notify-keyspace-events", "KEA"]);
    server.cli(&["SET", "a", "1"]);
    // Nothing listens there.
    let es = format!("http://127.0.0.1:{}", free_port());
    let yaml = format!(
        "name: live-first\nsource: {{type: redis, host: 127.0.0.1, port: {}, database: \"0\"}}\n\
         sink: {{type: elasticsearch, url: {es}, index: live-first, retry: {{max_elapsed: 1s}}}}\nlive: true\n",
        server.port
    );
    let (code, summary, stderr) = Follow::start(&yaml).wait_exit_with_summary();
    assert_eq!(code, 1, "{stderr}");
    let live = &summary["pipelines"][0];
    assert!(
        live["error"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot connect to Elasticsearch at {es}")),
        "{summary}"
    );
    let notes = live["notes"].to_string();
    assert!(
        notes.contains("the first sync failed, so nothing was followed: run --follow stops (exit 1)"),
        "{summary}"
    );
    assert!(!notes.contains("a sync failed"), "the error is said once: {summary}");
    assert_eq!(summary["pipelines"][0]["status"], "failed", "{summary}");
}
