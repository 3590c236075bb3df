//! What the source makes of Redis's error replies: by the reply's code where it has its
//! own (`WRONGTYPE`; `NOPERM` is read in `connect`), by its text only where Redis
//! gives none (`ERR unknown command`), each in one function.

use redis::{RedisError, Value};

use super::reconnect::DbConnection;
use crate::record::show_key;

/// The error a pipeline reply holds, when it is one (pipelines ignore errors, so each
/// reply is looked at on its own).
pub fn server_error(value: &Value) -> Option<RedisError> {
    match value {
        Value::ServerError(error) => Some(RedisError::from(error.clone())),
        _ => None,
    }
}

/// `WRONGTYPE`: the key holds another type than the command reads. RedisJSON's
/// `JSON.GET` on a key of another type says it in its own words instead, "Existing key
/// has wrong Redis type" (2.4.9, from its redis-module crate).
pub fn is_wrong_type(error: &RedisError) -> bool {
    error.code() == Some("WRONGTYPE") || error.to_string().contains("key has wrong Redis type")
}

/// A reply, or `None` when the key now holds another type (`WRONGTYPE`: it was
/// deleted and created again, or overwritten, since its type was asked): the key we
/// saw is gone, as a vanished one is; not a reason to stop the run.
pub fn unless_wrong_type<T>(result: redis::RedisResult<T>) -> redis::RedisResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_wrong_type(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether the server does not know the command or subcommand (a module not loaded,
/// a command renamed away, a server too old). Redis gives these the general code
/// `ERR` (`ERR unknown command 'JSON.GET', with args beginning with: ...`, `ERR unknown
/// subcommand 'USAGE'`), which other failures share: only the text tells them apart,
/// so it is read here and nowhere else.
pub fn is_unknown_command(error: &RedisError) -> bool {
    let text = error.to_string();
    text.contains("unknown command") || text.contains("unknown subcommand")
}

/// A server error on one key of a pipeline that no skip explains: the run fails.
pub fn fatal(connection: &DbConnection, error: &RedisError, command: &str, key: &[u8]) -> anyhow::Error {
    anyhow::anyhow!(connection.connector().describe(
        error,
        &format!("{command} of key `{}` in db {}", show_key(key), connection.db())
    ))
}
