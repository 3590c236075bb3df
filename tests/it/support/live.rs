//! Live mode's test helpers: the checker that compares every key in Redis with every
//! document in the index, a `redis-connector run --follow` process, and a random
//! writer.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use serde_json::{json, Value};

/// A document as the checker compares it: database, key, key_type, value (parsed).
pub type Doc = (u64, String, String, Value);

/// Adds what the index should hold for the keys of `databases` on the server at
/// `port` to `out`: `_id` -> document.
pub fn add_expected(out: &mut BTreeMap<String, Doc>, port: u16, databases: &[u32]) {
    for &db in databases {
        let mut connection = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut connection).unwrap();
        for key in keys {
            let key_type: String = redis::cmd("TYPE").arg(&key).query(&mut connection).unwrap();
            let value = match key_type.as_str() {
                "string" => {
                    let v: Option<String> = redis::cmd("GET").arg(&key).query(&mut connection).unwrap();
                    match v {
                        Some(v) => json!(v),
                        None => continue,
                    }
                }
                "hash" => {
                    let v: BTreeMap<String, String> = redis::cmd("HGETALL").arg(&key).query(&mut connection).unwrap();
                    json!(v)
                }
                "list" => {
                    let v: Vec<String> = redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query(&mut connection)
                        .unwrap();
                    json!(v)
                }
                "set" => {
                    let mut v: Vec<String> = redis::cmd("SMEMBERS").arg(&key).query(&mut connection).unwrap();
                    v.sort();
                    json!(v)
                }
                "none" => continue,
                other => panic!("the checker does not compare {other} keys"),
            };
            let text = String::from_utf8(key.clone()).unwrap();
            out.insert(
                redis_connector::document::default_id(db, &key),
                (u64::from(db), text, key_type, value),
            );
        }
    }
}

/// What the index holds: `_id` -> document (the `value` text parsed as JSON).
pub fn indexed(base: &str, index: &str) -> BTreeMap<String, Doc> {
    let client = http();
    let _ = client.post(format!("{base}/{index}/_refresh")).send();
    let response = client.get(format!("{base}/{index}/_search?size=10000")).send().unwrap();
    if response.status() == 404 {
        return BTreeMap::new();
    }
    let body: Value = response.json().unwrap();
    let mut out = BTreeMap::new();
    // An index just created may answer without hits for a moment (shards starting):
    // that is "not there yet" for the checker, which asks again.
    let Some(hits) = body["hits"]["hits"].as_array() else {
        out.insert(
            format!("unreadable: {body}"),
            (0, String::new(), String::new(), Value::Null),
        );
        return out;
    };
    for hit in hits {
        let source = &hit["_source"];
        let text = source["value"].as_str().unwrap_or_default();
        let value = if source["key_type"] == "string" {
            json!(text)
        } else {
            serde_json::from_str(text).unwrap()
        };
        let value = match (source["key_type"].as_str(), value) {
            (Some("set"), Value::Array(mut items)) => {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                Value::Array(items)
            }
            (_, value) => value,
        };
        out.insert(
            hit["_id"].as_str().unwrap().to_owned(),
            (
                source["database"].as_u64().unwrap(),
                source["key"].as_str().unwrap().to_owned(),
                source["key_type"].as_str().unwrap().to_owned(),
                value,
            ),
        );
    }
    out
}

/// Waits for the index to hold exactly Redis's keys (the connector settling after
/// the writers stopped), for at most two minutes, then compares them.
pub fn assert_exact(port: u16, databases: &[u32], base: &str, index: &str) {
    assert_exact_on(&[port], databases, base, index);
}

/// [`assert_exact`] over the keys of several servers (a cluster's masters).
pub fn assert_exact_on(ports: &[u16], databases: &[u32], base: &str, index: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut want = BTreeMap::new();
        for &port in ports {
            add_expected(&mut want, port, databases);
        }
        let have = indexed(base, index);
        if want == have {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want
                .iter()
                .filter(|(id, doc)| have.get(*id) != Some(doc))
                .take(5)
                .collect();
            let extra: Vec<_> = have
                .iter()
                .filter(|(id, doc)| want.get(*id) != Some(doc))
                .take(5)
                .collect();
            panic!(
                "the index differs from Redis: {} keys, {} documents; missing or different: {missing:?}; extra or different: {extra:?}",
                want.len(),
                have.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `redis-connector run --follow` process.
pub struct Follow {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
}

impl Follow {
    pub fn start(yaml: &str) -> Follow {
        Follow::start_with(yaml, &[])
    }

    pub fn start_with(yaml: &str, args: &[&str]) -> Follow {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = write_file(dir.path(), "pipeline.yaml", yaml);
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = connector()
            .args(["run", "--follow", "-v"])
            .args(args)
            .arg("--summary-json")
            .arg(dir.path().join("summary.json"))
            .arg(&pipeline)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Follow {
            child: Some(child),
            dir,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGTERM, then the exit code and the `--summary-json` document.
    pub fn stop(mut self) -> (i32, Value, String) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let summary = std::fs::read_to_string(self.dir.path().join("summary.json"))
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap_or(Value::Null);
        (status.code().unwrap_or(-1), summary, self.stderr())
    }

    /// Waits for the process to exit on its own (at most a minute).
    pub fn wait_exit(self) -> (i32, String) {
        let (code, _, stderr) = self.wait_exit_with_summary();
        (code, stderr)
    }

    /// [`Follow::wait_exit`], with the `--summary-json` document (`Null` when none).
    pub fn wait_exit_with_summary(mut self) -> (i32, Value, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let summary = std::fs::read_to_string(self.dir.path().join("summary.json"))
                    .map(|text| serde_json::from_str(&text).unwrap())
                    .unwrap_or(Value::Null);
                return (status.code().unwrap_or(-1), summary, self.stderr());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the connector did not exit: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.stderr();
            let tail: String = log
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprintln!("--- the connector's log (end) ---\n{tail}");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn pipeline(name: &str, port: u16, database: &str, es: &str, index: &str, live: &str) -> String {
    format!(
        "name: {name}\nsource: {{type: redis, host: 127.0.0.1, port: {port}, database: \"{database}\"}}\n\
         sink: {{type: elasticsearch, url: {es}, index: {index}}}\nlive: {live}\n"
    )
}

/// A tiny deterministic random sequence (the writers' choices).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One random write of the mix: SET, HSET, DEL, EXPIRE 1 s, RENAME, RPUSH, SADD,
/// and a type change (a key overwritten as another type).
pub fn random_write(connection: &mut redis::Connection, rng: &mut Lcg, keys: u64) -> redis::RedisResult<()> {
    let key = format!("k:{}", rng.next(keys));
    let other = format!("k:{}", rng.next(keys));
    let n = rng.next(1000);
    let command = match rng.next(9) {
        0 | 1 => redis::cmd("SET").arg(&key).arg(format!("v{n}")).clone(),
        2 => {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query(connection);
            redis::cmd("HSET").arg(&key).arg("f").arg(n).arg("g").arg("x").clone()
        }
        3 => redis::cmd("DEL").arg(&key).clone(),
        4 => redis::cmd("EXPIRE").arg(&key).arg(1).clone(),
        5 => redis::cmd("RENAME").arg(&key).arg(&other).clone(),
        6 => {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query(connection);
            redis::cmd("RPUSH").arg(&key).arg(n).arg("b").clone()
        }
        7 => {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query(connection);
            redis::cmd("SADD").arg(&key).arg(n).arg("z").clone()
        }
        _ => redis::cmd("SET")
            .arg(&key)
            .arg(format!("w{n}"))
            .arg("PX")
            .arg(1000 + n)
            .clone(),
    };
    match command.query::<redis::Value>(connection) {
        // RENAME of a missing key, HSET on a key of another type: fine for a mix.
        Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => Ok(()),
        Err(error) if error.code().is_some() => Ok(()),
        other => other.map(|_| ()),
    }
}

pub fn resyncs(summary: &Value, reason: &str) -> u64 {
    summary["pipelines"][0]["resyncs"][reason].as_u64().unwrap_or(0)
}
