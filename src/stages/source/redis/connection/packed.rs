//! A lean connection for the source's hot path: a page's pipeline goes out as one
//! packed write, and its replies are parsed by `resp` straight off the socket, with
//! no task, channel or parser framework in between (the redis crate's multiplexed
//! connection and parser were 46% of the connector's CPU on the "mixed" benchmark).
//!
//! Plain TCP only: with TLS the source keeps the crate's connection. One query at a
//! time per connection; `DbConnection` keeps a few idle ones for the pages in flight
//! and gives reconnects, retries and restart detection as for the crate's.

use std::io;
use std::time::Duration;

use redis::{RedisError, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connect::is_permission_denied;
use super::resp::{Progress, ReplyParser};

/// Read buffer kept between queries; one grown past [`KEPT_BUFFER_BYTES`] by a large
/// reply is given back.
const READ_CHUNK_BYTES: usize = 64 * 1024;
const KEPT_BUFFER_BYTES: usize = 1024 * 1024;

/// Where and as whom to connect, without TLS.
#[derive(Clone)]
pub struct PlainServer {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Bounds connecting, and each query as a whole.
    pub timeout: Duration,
}

/// An open connection on one database.
pub struct PackedConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
    timeout: Duration,
}

fn timed_out(what: &str, timeout: Duration) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out after {timeout:?}"),
    ))
}

impl PackedConnection {
    /// Connects, authenticates (`AUTH`, with the ACL user when there is one) and
    /// selects `db`. A refused password or database is the server's error, as the
    /// crate's connection gives it.
    pub async fn open(server: &PlainServer, db: u32) -> Result<PackedConnection, RedisError> {
        let connecting = TcpStream::connect((server.host.as_str(), server.port));
        let stream = tokio::time::timeout(server.timeout, connecting)
            .await
            .map_err(|_| timed_out("connecting", server.timeout))??;
        stream.set_nodelay(true)?;
        let mut connection = PackedConnection {
            stream,
            buffer: Vec::with_capacity(READ_CHUNK_BYTES),
            timeout: server.timeout,
        };
        // One command at a time, so a server refusing the connection outright (it
        // sends `-ERR max number of clients reached`, then closes) is seen as that
        // error, not as a connection lost mid-pipeline. `PING` proves the connection
        // answers, and that the server is done loading its data (`LOADING`, which
        // `AUTH` and `SELECT` do not report).
        let mut setup = Vec::new();
        if let Some(password) = &server.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &server.username {
                auth.arg(user);
            }
            setup.push(auth.arg(password).get_packed_command());
        }
        if db != 0 {
            setup.push(redis::cmd("SELECT").arg(db).get_packed_command());
        }
        let ping = setup.len();
        setup.push(redis::cmd("PING").get_packed_command());
        for (i, command) in setup.iter().enumerate() {
            let reply = connection.query(command, 1).await?;
            if let Some(Value::ServerError(error)) = reply.into_iter().next() {
                let error = RedisError::from(error);
                // A user whose ACL leaves out `PING` (`+@read +select`, no
                // `+@connection`) reads as well as before: the refusal is an answer
                // from a server that took the connection.
                if i == ping && is_permission_denied(&error) {
                    break;
                }
                return Err(error);
            }
        }
        Ok(connection)
    }

    /// Sends `packed` (commands as the protocol writes them) and gives the `replies`
    /// they answer, server errors as `Value::ServerError` values. Writing and reading
    /// go on together, so a pipeline larger than the socket buffers cannot stall.
    /// After an error the connection must be dropped.
    pub async fn query(&mut self, packed: &[u8], replies: usize) -> Result<Vec<Value>, RedisError> {
        let timeout = self.timeout;
        let exchange = async {
            let (mut reader, mut writer) = self.stream.split();
            let write = async {
                writer.write_all(packed).await?;
                Ok::<(), RedisError>(())
            };
            let read = read_replies(&mut reader, &mut self.buffer, replies);
            let ((), values) = tokio::try_join!(write, read)?;
            Ok::<_, RedisError>(values)
        };
        let values = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| timed_out("waiting for replies", timeout))??;
        if self.buffer.capacity() > KEPT_BUFFER_BYTES {
            self.buffer = Vec::with_capacity(READ_CHUNK_BYTES);
        }
        Ok(values)
    }
}

/// Reads and parses `count` replies; `buffer` is empty before and after.
async fn read_replies(
    reader: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut Vec<u8>,
    count: usize,
) -> Result<Vec<Value>, RedisError> {
    let mut parser = ReplyParser::default();
    let mut values = Vec::with_capacity(count);
    let mut start = 0;
    let mut need = 1;
    buffer.clear();
    while values.len() < count {
        if buffer.len() - start >= need {
            match parser.parse(&buffer[start..])? {
                Progress::Done { value, used } => {
                    values.push(value);
                    start += used;
                    need = 1;
                    continue;
                }
                Progress::More { used, need: more } => {
                    start += used;
                    need = more;
                }
            }
        }
        // Parsed bytes leave the buffer before it grows: what stays is one reply's
        // unparsed tail, read again only once `need` says it can be whole.
        if start > 0 {
            buffer.drain(..start);
            start = 0;
        }
        buffer.reserve(need.saturating_sub(buffer.len()).max(READ_CHUNK_BYTES));
        while buffer.len() < need {
            if reader.read_buf(buffer).await? == 0 {
                return Err(RedisError::from(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed the connection after {} of {count} replies",
                        values.len()
                    ),
                )));
            }
        }
    }
    if start != buffer.len() {
        return Err(RedisError::from((
            redis::ErrorKind::Parse,
            "invalid reply from Redis",
            format!("{} bytes past the last reply", buffer.len() - start),
        )));
    }
    buffer.clear();
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_split_across_reads_are_parsed_whole_in_order() {
        let (mut client, mut server) = tokio::io::duplex(7);
        let sender = tokio::spawn(async move {
            server
                .write_all(b"+OK\r\n*2\r\n$3\r\nabc\r\n:5\r\n$-1\r\n-ERR no\r\n")
                .await
                .unwrap();
        });
        let mut buffer = Vec::new();
        let values = read_replies(&mut client, &mut buffer, 4).await.unwrap();
        sender.await.unwrap();
        assert_eq!(values[0], Value::Okay);
        assert_eq!(
            values[1],
            Value::Array(vec![Value::BulkString(b"abc".to_vec()), Value::Int(5)])
        );
        assert_eq!(values[2], Value::Nil);
        assert!(matches!(&values[3], Value::ServerError(e) if e.code() == "ERR"));
        assert!(buffer.is_empty());
    }

    #[tokio::test]
    async fn a_connection_closed_mid_reply_is_a_dropped_connection() {
        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(b"+OK\r\n$10\r\nabc").await.unwrap();
        drop(server);
        let error = read_replies(&mut client, &mut Vec::new(), 2).await.unwrap_err();
        assert!(error.is_connection_dropped(), "{error}");
        assert!(error.to_string().contains("after 1 of 2 replies"), "{error}");
    }

    #[tokio::test]
    async fn bytes_past_the_last_reply_are_an_error_not_a_reply_for_the_next_query() {
        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(b":1\r\n:2\r\n").await.unwrap();
        let error = read_replies(&mut client, &mut Vec::new(), 1).await.unwrap_err();
        assert!(error.to_string().contains("past the last reply"), "{error}");
    }
}
