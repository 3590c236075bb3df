//! The server must publish keyspace notifications: `notify-keyspace-events` needs
//! `K` (the `__keyspace@N__:key` channels) and every class of event that changes or
//! removes a key. Checked at start and after every reconnection (a restarted server
//! reads its redis.conf again); `live.configure_server` adds what is missing, never
//! removing a flag.

use redis::aio::MultiplexedConnection;

use super::super::connect::{self, Connector};

/// The flags live mode needs: keyspace channels, generic commands (DEL, EXPIRE,
/// RENAME, ...), strings, lists, sets, hashes, sorted sets, expired, evicted, streams.
/// (`A` stands for `g$lshzxet`, and `d` for module types where the server knows it.)
pub const NEEDED: &str = "Kg$lshzxet";

/// What `A` stands for.
const ALL_CLASSES: &str = "g$lshzxetd";

/// The flags of a `notify-keyspace-events` value, `A` expanded.
fn expand(flags: &str) -> String {
    let mut out = String::new();
    for c in flags.chars() {
        let add = if c == 'A' { ALL_CLASSES.to_owned() } else { c.to_string() };
        for c in add.chars() {
            if !out.contains(c) {
                out.push(c);
            }
        }
    }
    out
}

/// The needed flags `current` lacks, in [`NEEDED`]'s order.
pub fn missing(current: &str) -> String {
    let have = expand(current);
    NEEDED.chars().filter(|c| !have.contains(*c)).collect()
}

/// `current` with the missing flags added (none removed).
pub fn with_missing(current: &str) -> String {
    format!("{current}{}", missing(current))
}

/// The error for a server whose flags lack some: the command to run and the
/// redis.conf line.
pub fn missing_message(endpoint: &str, current: &str) -> String {
    let value = with_missing(current);
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "6379"));
    format!(
        "Redis at {endpoint} does not publish the keyspace notifications live mode needs: \
         notify-keyspace-events is \"{current}\", which lacks \"{}\". Run \
         `redis-cli -h {host} -p {port} CONFIG SET notify-keyspace-events '{value}'` (and, to keep it \
         after a restart, put `notify-keyspace-events {value}` in redis.conf), or set \
         `live.configure_server: true` to let the connector add the missing flags itself \
         (it never removes one). On a managed service where CONFIG is not allowed, set the \
         parameter notify-keyspace-events to {value} with the provider (a parameter group \
         or the console)",
        missing(current)
    )
}

/// Checks the server's flags on `connection`; with `configure`, adds the missing ones
/// (`CONFIG SET`). Returns a note when it changed the server.
pub async fn ensure(
    connector: &Connector,
    connection: &mut MultiplexedConnection,
    configure: bool,
) -> anyhow::Result<Option<String>> {
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
             (notify-keyspace-events {NEEDED} at least) and checks them with CONFIG GET. On a \
             managed service where CONFIG is not allowed, set the parameter notify-keyspace-events \
             to KEA (or {NEEDED}) with the provider (a parameter group or the console), then set \
             `live.check_notifications: false` in the pipeline",
            connector.describe(&error, "CONFIG GET notify-keyspace-events")
        ),
    };
    if missing(&current).is_empty() {
        return Ok(None);
    }
    if !configure {
        anyhow::bail!(missing_message(endpoint, &current));
    }
    let value = with_missing(&current);
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
            missing_message(endpoint, &current)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_flags_are_found_with_a_expanded() {
        assert_eq!(missing(""), NEEDED);
        assert_eq!(missing("KA"), "");
        assert_eq!(missing("AK"), "");
        assert_eq!(missing("KEA"), "");
        assert_eq!(missing("Ex"), "Kg$lshzet");
        assert_eq!(missing("Kgx"), "$lshzet");
        assert_eq!(with_missing("Ex"), "ExKg$lshzet");
    }

    #[test]
    fn the_message_names_the_command_the_conf_line_and_the_managed_case() {
        let message = missing_message("h:1", "Ex");
        assert!(message.contains("redis-cli -h h -p 1 CONFIG SET notify-keyspace-events 'ExKg$lshzet'"), "{message}");
        assert!(message.contains("`notify-keyspace-events ExKg$lshzet` in redis.conf"), "{message}");
        assert!(message.contains("live.configure_server: true"), "{message}");
        assert!(message.contains("managed service"), "{message}");
    }
}
