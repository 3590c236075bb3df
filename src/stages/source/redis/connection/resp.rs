//! Redis replies (RESP2) parsed by hand, straight into the redis crate's `Value`, so
//! the rest of the source reads them exactly as it reads the crate's own.
//!
//! Why by hand: on the "mixed" benchmark the crate's parser (built on `combine`) was
//! 29% of the connector's CPU, which competes with Elasticsearch for the same cores.
//! No maintained crate parses into `redis::Value` (`redis-protocol` builds frames of
//! its own, which would be converted a second time). RESP2 is small: five kinds of
//! reply, each a line, a length-prefixed string, or an array of replies.
//!
//! The parser resumes where it stopped: a reply cut short by the socket keeps its
//! arrays built so far, so a large reply arriving in many reads is parsed once, not
//! again from its start after every read.

use redis::{ErrorKind, RedisError, Value};

/// Arrays nested deeper than this are refused (Redis sends at most 3 or 4 levels:
/// a stream's entries hold arrays of fields).
const MAX_DEPTH: usize = 64;

/// Elements reserved up front for an array, whatever length it announces: a garbled
/// length must not allocate gigabytes before its elements prove it.
const MAX_PREALLOCATED: usize = 4096;

/// What one call to [`ReplyParser::parse`] achieved.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// A whole reply, which took `used` bytes of the input.
    Done { value: Value, used: usize },
    /// The input ended inside a reply: its first `used` bytes are parsed and kept
    /// (drop them from the buffer), and at least `need` bytes must follow them before
    /// parsing can go on.
    More { used: usize, need: usize },
}

/// A resumable parser of one reply after another.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// The arrays being filled, outermost first, with the elements each still awaits.
    open: Vec<(Vec<Value>, usize)>,
}

/// One reply's start: a whole scalar, or the header of an array to fill.
enum Item {
    Scalar(Value),
    Array(usize),
}

impl ReplyParser {
    /// Parses `input`, which continues where the last `More` left off (or starts a
    /// reply). A malformed reply is an error of kind `Parse`; the connection it came
    /// from cannot be trusted afterwards.
    pub fn parse(&mut self, input: &[u8]) -> Result<Progress, RedisError> {
        let mut pos = 0;
        loop {
            let (item, used) = match item(&input[pos..])? {
                Some(found) => found,
                None => {
                    let need = needed(&input[pos..]);
                    return Ok(Progress::More { used: pos, need });
                }
            };
            pos += used;
            let mut value = match item {
                Item::Scalar(value) => value,
                Item::Array(0) => Value::Array(Vec::new()),
                Item::Array(len) => {
                    if self.open.len() >= MAX_DEPTH {
                        return Err(invalid(format!("arrays nested more than {MAX_DEPTH} deep")));
                    }
                    self.open.push((Vec::with_capacity(len.min(MAX_PREALLOCATED)), len));
                    continue;
                }
            };
            // Hand the value to the array it belongs to, closing every array it fills.
            loop {
                let Some((items, awaited)) = self.open.last_mut() else {
                    return Ok(Progress::Done { value, used: pos });
                };
                items.push(value);
                *awaited -= 1;
                if *awaited > 0 {
                    break;
                }
                let (items, _) = self.open.pop().unwrap_or_default();
                value = Value::Array(items);
            }
        }
    }
}

fn invalid(detail: String) -> RedisError {
    RedisError::from((ErrorKind::Parse, "invalid reply from Redis", detail))
}

/// The line at the start of `input`, without its `\r\n`, and the bytes it takes;
/// `None` when the line is not all there yet.
fn line(input: &[u8]) -> Result<Option<(&[u8], usize)>, RedisError> {
    let Some(end) = input.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if end == 0 || input[end - 1] != b'\r' {
        return Err(invalid(format!(
            "a line ending in \\n without \\r: {:?}",
            String::from_utf8_lossy(&input[..end.min(80)])
        )));
    }
    Ok(Some((&input[..end - 1], end + 1)))
}

fn integer(text: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            invalid(format!(
                "expected an integer, got {:?}",
                String::from_utf8_lossy(&text[..text.len().min(80)])
            ))
        })
}

/// A length announced by `$` or `*`: `None` for -1 (nil).
fn length(text: &[u8]) -> Result<Option<usize>, RedisError> {
    match integer(text)? {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n as usize)),
        n => Err(invalid(format!("a negative length {n}"))),
    }
}

/// The reply item at the start of `input` and the bytes it takes, or `None` when it
/// is not all there yet.
fn item(input: &[u8]) -> Result<Option<(Item, usize)>, RedisError> {
    let Some(&kind) = input.first() else {
        return Ok(None);
    };
    let Some((text, header)) = line(&input[1..])? else {
        return Ok(None);
    };
    let header = header + 1;
    let scalar = |value| Ok(Some((Item::Scalar(value), header)));
    match kind {
        b'+' if text == b"OK" => scalar(Value::Okay),
        b'+' => scalar(Value::SimpleString(String::from_utf8_lossy(text).into_owned())),
        // The crate's own parser turns the error line into its `ServerError`, with
        // the kind (`WRONGTYPE`, `NOPERM`, `LOADING`, ...) the rest of the source
        // matches on. Errors are rare: parsing them twice costs nothing.
        b'-' => match redis::parse_redis_value(&input[..header]) {
            Ok(value) => scalar(value),
            Err(error) => Err(error),
        },
        b':' => scalar(Value::Int(integer(text)?)),
        b'$' => match length(text)? {
            None => scalar(Value::Nil),
            Some(len) => {
                let end = header + len;
                if input.len() < end + 2 {
                    return Ok(None);
                }
                if &input[end..end + 2] != b"\r\n" {
                    return Err(invalid(format!("a bulk string of {len} bytes not followed by \\r\\n")));
                }
                Ok(Some((
                    Item::Scalar(Value::BulkString(input[header..end].to_vec())),
                    end + 2,
                )))
            }
        },
        b'*' => match length(text)? {
            None => scalar(Value::Nil),
            Some(len) => Ok(Some((Item::Array(len), header))),
        },
        other => Err(invalid(format!(
            "a reply starting with {:?} (this connection speaks RESP2: `+ - : $ *`)",
            char::from(other)
        ))),
    }
}

/// How many bytes `input`, a reply item cut short, needs at least: the whole bulk
/// string when its header is there, else one more byte.
fn needed(input: &[u8]) -> usize {
    if input.first() == Some(&b'$') {
        if let Ok(Some((text, header))) = line(&input[1..]) {
            if let Ok(Some(len)) = length(text) {
                return 1 + header + len + 2;
            }
        }
    }
    input.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a buffer holding whole replies, as the connection does.
    fn parse_all(input: &[u8]) -> Vec<Value> {
        let mut parser = ReplyParser::default();
        let mut values = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            match parser.parse(&input[pos..]).unwrap() {
                Progress::Done { value, used } => {
                    values.push(value);
                    pos += used;
                }
                Progress::More { .. } => panic!("incomplete at {pos}"),
            }
        }
        values
    }

    /// One reply of each kind, each as Redis sends it.
    const PIECES: [&[u8]; 10] = [
        b"+OK\r\n",
        b"+hash\r\n",
        b":-12\r\n",
        b"$5\r\nab\r\nc\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*1\r\n$2\r\nxy\r\n$1\r\nb\r\n",
        b"-WRONGTYPE Operation against a key\r\n",
    ];

    fn sample() -> Vec<u8> {
        PIECES.concat()
    }

    fn sample_values() -> Vec<Value> {
        vec![
            Value::Okay,
            Value::SimpleString("hash".into()),
            Value::Int(-12),
            Value::BulkString(b"ab\r\nc".to_vec()),
            Value::BulkString(Vec::new()),
            Value::Nil,
            Value::Nil,
            Value::Array(Vec::new()),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::Array(vec![
                    Value::Int(1),
                    Value::Array(vec![Value::BulkString(b"xy".to_vec())]),
                ]),
                Value::BulkString(b"b".to_vec()),
            ]),
            redis::parse_redis_value(b"-WRONGTYPE Operation against a key\r\n").unwrap(),
        ]
    }

    #[test]
    fn every_kind_of_reply_parses_as_the_redis_crate_parses_it() {
        let ours = parse_all(&sample());
        assert_eq!(ours, sample_values());
        let theirs: Vec<Value> = PIECES
            .iter()
            .map(|piece| redis::parse_redis_value(piece).unwrap())
            .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn server_errors_keep_their_kind_for_the_checks_that_follow() {
        let values = parse_all(b"-WRONGTYPE Operation against a key\r\n-NOPERM no\r\n");
        let Value::ServerError(error) = &values[0] else {
            panic!("{values:?}")
        };
        assert_eq!(error.code(), "WRONGTYPE");
        let error = RedisError::from(match &values[1] {
            Value::ServerError(e) => e.clone(),
            other => panic!("{other:?}"),
        });
        assert!(super::super::connect::is_permission_denied(&error));
    }

    #[test]
    fn replies_cut_at_every_byte_resume_to_the_same_values() {
        // Fed one byte more at a time, as a slow socket would, dropping what each
        // `More` says is parsed: the values are the same and nothing is parsed twice.
        let mut parser = ReplyParser::default();
        let mut buffer: Vec<u8> = Vec::new();
        let mut values = Vec::new();
        for byte in sample() {
            buffer.push(byte);
            loop {
                match parser.parse(&buffer).unwrap() {
                    Progress::Done { value, used } => {
                        values.push(value);
                        buffer.drain(..used);
                    }
                    Progress::More { used, need } => {
                        buffer.drain(..used);
                        assert!(need > buffer.len());
                        break;
                    }
                }
            }
        }
        assert!(buffer.is_empty() && parser.open.is_empty());
        assert_eq!(values, sample_values());
    }

    /// A small deterministic generator (xorshift64), for the random replies below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random reply as Redis would send it: every kind, bulk strings holding
    /// `\r`, `\n` and any byte, arrays nested up to `depth`.
    fn random_reply(rng: &mut Rng, depth: u32, out: &mut Vec<u8>) {
        let kinds = if depth == 0 { 7 } else { 9 };
        match rng.below(kinds) {
            0 => out.extend_from_slice(b"+OK\r\n"),
            1 => {
                out.push(b'+');
                for _ in 0..rng.below(12) {
                    out.push(b'a' + rng.below(26) as u8);
                }
                out.extend_from_slice(b"\r\n");
            }
            2 => {
                let lines: [&[u8]; 5] = [
                    b"-ERR unknown command 'JSON.GET'",
                    b"-WRONGTYPE Operation against a key holding the wrong kind of value",
                    b"-NOPERM this user has no permissions to run the 'get' command",
                    b"-LOADING Redis is loading the dataset in memory",
                    b"-OOM",
                ];
                out.extend_from_slice(lines[rng.below(5) as usize]);
                out.extend_from_slice(b"\r\n");
            }
            3 => {
                let n = match rng.below(3) {
                    0 => i64::MIN + rng.below(3) as i64,
                    1 => i64::MAX - rng.below(3) as i64,
                    _ => rng.below(2000) as i64 - 1000,
                };
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            4 => out.extend_from_slice(b"$-1\r\n"),
            5 | 6 => {
                let len = match rng.below(8) {
                    0 => 0,
                    1 => 1000 + rng.below(5000),
                    _ => rng.below(40),
                };
                out.extend_from_slice(format!("${len}\r\n").as_bytes());
                for _ in 0..len {
                    // Mostly the bytes that frame replies, to tempt a parser that looks
                    // for them inside a string.
                    let byte = match rng.below(4) {
                        0 => b'\r',
                        1 => b'\n',
                        2 => b"*$:+-"[rng.below(5) as usize],
                        _ => rng.next() as u8,
                    };
                    out.push(byte);
                }
                out.extend_from_slice(b"\r\n");
            }
            7 if rng.below(4) == 0 => out.extend_from_slice(b"*-1\r\n"),
            _ => {
                let len = rng.below(6);
                out.extend_from_slice(format!("*{len}\r\n").as_bytes());
                for _ in 0..len {
                    random_reply(rng, depth - 1, out);
                }
            }
        }
    }

    #[test]
    fn random_replies_cut_at_random_points_parse_as_the_redis_crate_parses_them() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let mut pieces = Vec::new();
            let mut input = Vec::new();
            for _ in 0..1 + rng.below(20) {
                let mut piece = Vec::new();
                random_reply(&mut rng, 4, &mut piece);
                input.extend_from_slice(&piece);
                pieces.push(piece);
            }
            let expected: Vec<Value> = pieces
                .iter()
                .map(|piece| redis::parse_redis_value(piece).unwrap())
                .collect();
            // Bytes arrive a random amount at a time (one byte, a few, a lot); the
            // parser is called as `packed::read_replies` calls it: once at least
            // `need` bytes follow what it kept.
            let mut parser = ReplyParser::default();
            let mut buffer: Vec<u8> = Vec::new();
            let mut values = Vec::new();
            let mut fed = 0;
            let mut need = 1;
            while fed < input.len() {
                let step = match rng.below(4) {
                    0 => 1,
                    1 => 1 + rng.below(8),
                    2 => 1 + rng.below(200),
                    _ => 1 + rng.below(8000),
                } as usize;
                let end = (fed + step).min(input.len());
                buffer.extend_from_slice(&input[fed..end]);
                fed = end;
                while buffer.len() >= need {
                    match parser.parse(&buffer).unwrap() {
                        Progress::Done { value, used } => {
                            values.push(value);
                            buffer.drain(..used);
                            need = 1;
                        }
                        Progress::More { used, need: more } => {
                            buffer.drain(..used);
                            assert!(more > buffer.len(), "round {round}: More asks for bytes it has");
                            need = more;
                            break;
                        }
                    }
                    if buffer.is_empty() {
                        break;
                    }
                }
            }
            assert!(buffer.is_empty(), "round {round}: {} bytes left", buffer.len());
            assert_eq!(values, expected, "round {round}");
        }
    }

    #[test]
    fn a_partial_bulk_string_asks_for_all_its_bytes_at_once() {
        let mut parser = ReplyParser::default();
        assert_eq!(
            parser.parse(b"*2\r\n:7\r\n$10\r\nabc").unwrap(),
            Progress::More {
                used: 8,
                need: 4 + 10 + 2 + 1
            }
        );
        assert_eq!(
            parser.parse(b"$10\r\n0123456789\r\n").unwrap(),
            Progress::Done {
                value: Value::Array(vec![Value::Int(7), Value::BulkString(b"0123456789".to_vec())]),
                used: 17
            }
        );
    }

    #[test]
    fn malformed_replies_are_parse_errors_that_say_what_was_wrong() {
        let cases: [(&[u8], &str); 5] = [
            (b"%1\r\n", "speaks RESP2"),
            (b":12a\r\n", "expected an integer, got \"12a\""),
            (b"$3\r\nabcd\r\n", "not followed by \\r\\n"),
            (b"*-2\r\n", "a negative length -2"),
            (b"+OK\n", "without \\r"),
        ];
        for (input, expected) in cases {
            let error = ReplyParser::default().parse(input).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Parse);
            assert!(error.to_string().contains(expected), "{error}");
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        let error = ReplyParser::default().parse(&deep).unwrap_err();
        assert!(error.to_string().contains("nested"), "{error}");
    }

    #[test]
    fn a_huge_announced_array_reserves_little_until_its_elements_arrive() {
        let mut parser = ReplyParser::default();
        assert!(matches!(
            parser.parse(b"*4000000000\r\n").unwrap(),
            Progress::More { used: 13, .. }
        ));
        assert!(parser.open[0].0.capacity() <= MAX_PREALLOCATED);
    }
}
