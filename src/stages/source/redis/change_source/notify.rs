//! The server must publish keyspace notifications: `notify-keyspace-events` needs
//! `K` (the `__keyspace@N__:key` channels) and every class of event that changes or
//! removes a key. Checked at start and after every reconnection (a restarted server
//! reads its redis.conf again); `live.configure_server` adds what is missing, never
//! removing a flag.
//!
//! Module types publish their own events under `d`: RedisJSON 2.4 sends `json.set`,
//! `json.del`, `json.arrappend`, ... only there (a `JSON.DEL` of the whole document
//! included; no `del` is sent for it). `d` is needed when a rule selects `ReJSON-RL`,
//! or when a rule (or the source without rules) selects every type and the server has
//! the module loaded (`MODULE LIST`).

use redis::aio::MultiplexedConnection;

use super::super::connection::connect::{self, Connector};

/// The flags live mode needs: keyspace channels, generic commands (DEL, EXPIRE,
/// RENAME, ...), strings, lists, sets, hashes, sorted sets, expired, evicted, streams.
/// (`A` stands for `g$lshzxet`, and `d` for module types where the server knows it.)
pub const NEEDED: &str = "Kg$lshzxet";

/// The flag of module types' events (RedisJSON's).
pub const MODULE_EVENTS: char = 'd';

/// What `A` stands for.
const ALL_CLASSES: &str = "g$lshzxetd";

/// The flags of a `notify-keyspace-events` value, `A` expanded.
fn expand(flags: &str) -> String {
    let mut out = String::new();
    for c in flags.chars() {
        let add = if c == 'A' {
            ALL_CLASSES.to_owned()
        } else {
            c.to_string()
        };
        for c in add.chars() {
            if !out.contains(c) {
                out.push(c);
            }
        }
    }
    out
}

/// The flags needed: [`NEEDED`], and `d` for module types' events when `json`.
pub fn needed(json: bool) -> String {
    let mut flags = NEEDED.to_owned();
    if json {
        flags.push(MODULE_EVENTS);
    }
    flags
}

/// The `needed` flags `current` lacks, in `needed`'s order.
pub fn missing(current: &str, needed: &str) -> String {
    let have = expand(current);
    needed.chars().filter(|c| !have.contains(*c)).collect()
}

/// `current` with the missing flags added (none removed).
pub fn with_missing(current: &str, needed: &str) -> String {
    format!("{current}{}", missing(current, needed))
}

/// Which JSON keys the subscriptions may deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKeys {
    /// A rule selects `ReJSON-RL`.
    Selected,
    /// Some rule (or the source) selects every type: JSON keys exist where the
    /// server has the module.
    IfLoaded,
    /// No rule selects them.
    No,
}

/// Whether the server on `connection` has the RedisJSON module loaded. A server that
/// does not answer `MODULE LIST` (denied) is taken to have none.
pub async fn json_module_loaded(connection: &mut MultiplexedConnection) -> bool {
    let reply: Result<redis::Value, redis::RedisError> = redis::cmd("MODULE").arg("LIST").query_async(connection).await;
    match reply {
        Ok(value) => texts(&value).iter().any(|text| text.eq_ignore_ascii_case("rejson")),
        Err(error) => {
            tracing::debug!("MODULE LIST failed ({error}): taking the server to have no RedisJSON module");
            false
        }
    }
}

/// Every string in a reply (`MODULE LIST` gives, per module, `name`, its name, ...).
fn texts(value: &redis::Value) -> Vec<String> {
    match value {
        redis::Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        redis::Value::SimpleString(text) => vec![text.clone()],
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().flat_map(texts).collect(),
        redis::Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [texts(k), texts(v)]).flatten().collect(),
        _ => Vec::new(),
    }
}

/// The error for a server whose flags lack some: the command to run and the
/// redis.conf line.
pub fn missing_message(endpoint: &str, current: &str, needed: &str) -> String {
    let value = with_missing(current, needed);
    let lacking = missing(current, needed);
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "6379"));
    let why = if lacking.contains(MODULE_EVENTS) {
        " (`d` publishes the events of module types: RedisJSON's JSON.SET, JSON.DEL, ...)"
    } else {
        ""
    };
    format!(
        "Redis at {endpoint} does not publish the keyspace notifications live mode needs: \
         notify-keyspace-events is \"{current}\", which lacks \"{lacking}\"{why}. Run \
         `redis-cli -h {host} -p {port} CONFIG SET notify-keyspace-events '{value}'` (and, to keep it \
         after a restart, put `notify-keyspace-events {value}` in redis.conf), or set \
         `live.configure_server: true` to let the connector add the missing flags itself \
         (it never removes one). On a managed service where CONFIG is not allowed, set the \
         parameter notify-keyspace-events to {value} with the provider (a parameter group \
         or the console)"
    )
}

/// Checks the server's flags on `connection`; with `configure`, adds the missing ones
/// (`CONFIG SET`). Returns a note when it changed the server.
pub async fn ensure(
    connector: &Connector,
    connection: &mut MultiplexedConnection,
    configure: bool,
    json: JsonKeys,
) -> anyhow::Result<Option<String>> {
    let needed = match json {
        JsonKeys::Selected => needed(true),
        JsonKeys::IfLoaded => needed(json_module_loaded(connection).await),
        JsonKeys::No => needed(false),
    };
    let needed = needed.as_str();
    let endpoint = connector.endpoint();
    let reply: Result<Vec<String>, redis::RedisError> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(connection)
        .await;
    let current = match reply {
        Ok(pair) => pair.get(1).cloned().unwrap_or_default(),
        Err(error) if connect::is_connection_error(&error) => {
            anyhow::bail!(connector.describe(&error, "CONFIG GET notify-keyspace-events"))
        }
        Err(error) => anyhow::bail!(
            "{}. Live mode needs the server to publish keyspace notifications \
             (notify-keyspace-events {needed} at least) and checks them with CONFIG GET. On a \
             managed service where CONFIG is not allowed, set the parameter notify-keyspace-events \
             to KEA (or {needed}) with the provider (a parameter group or the console), then set \
             `live.check_notifications: false` in the pipeline",
            connector.describe(&error, "CONFIG GET notify-keyspace-events")
        ),
    };
    if missing(&current, needed).is_empty() {
        return Ok(None);
    }
    if !configure {
        anyhow::bail!(missing_message(endpoint, &current, needed));
    }
    let value = with_missing(&current, needed);
    let set: Result<(), redis::RedisError> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(&value)
        .query_async(connection)
        .await;
    match set {
        Ok(()) => Ok(Some(format!(
            "set notify-keyspace-events to \"{value}\" on Redis at {endpoint} (was \"{current}\"); \
             put `notify-keyspace-events {value}` in its redis.conf to keep it after a restart"
        ))),
        Err(error) => anyhow::bail!(
            "{}: {}",
            connector.describe(&error, &format!("CONFIG SET notify-keyspace-events {value}")),
            missing_message(endpoint, &current, needed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_flags_are_found_with_a_expanded() {
        assert_eq!(missing("", NEEDED), NEEDED);
        assert_eq!(missing("KA", NEEDED), "");
        assert_eq!(missing("AK", NEEDED), "");
        assert_eq!(missing("KEA", NEEDED), "");
        assert_eq!(missing("Ex", NEEDED), "Kg$lshzet");
        assert_eq!(missing("Kgx", NEEDED), "$lshzet");
        assert_eq!(with_missing("Ex", NEEDED), "ExKg$lshzet");
    }

    #[test]
    fn json_keys_need_module_events_which_a_covers() {
        let json = needed(true);
        assert_eq!(missing("KA", &json), "");
        assert_eq!(missing("Kg$lshzxet", &json), "d");
        assert_eq!(missing("Kg$lshzxet", &needed(false)), "");
        let message = missing_message("h:1", "Kg$lshzxet", &json);
        assert!(
            message.contains("CONFIG SET notify-keyspace-events 'Kg$lshzxetd'"),
            "{message}"
        );
        assert!(message.contains("RedisJSON's JSON.SET"), "{message}");
    }

    #[test]
    fn the_message_names_the_command_the_conf_line_and_the_managed_case() {
        let message = missing_message("h:1", "Ex", NEEDED);
        assert!(
            message.contains("redis-cli -h h -p 1 CONFIG SET notify-keyspace-events 'ExKg$lshzet'"),
            "{message}"
        );
        assert!(
            message.contains("`notify-keyspace-events ExKg$lshzet` in redis.conf"),
            "{message}"
        );
        assert!(message.contains("live.configure_server: true"), "{message}");
        assert!(message.contains("managed service"), "{message}");
    }
}
