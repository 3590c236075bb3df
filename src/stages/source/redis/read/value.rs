//! Turning Redis replies into typed values: bytes, pairs, members, scores, stream
//! entries and RedisJSON documents, binary-safe and without lossy conversion.

use redis::Value;

use crate::record::StreamEntry;

/// A reply that had not the shape its command promises (a bug or a proxy in between).
fn unexpected(what: &str, value: &Value) -> String {
    let mut shown = format!("{value:?}");
    if shown.len() > 120 {
        let mut end = 120;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    format!("unexpected reply to {what}: {shown}")
}

/// A bulk or simple string as bytes; `None` for nil. Integers come back as their text.
pub fn bytes(value: Value) -> Result<Option<Vec<u8>>, String> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(text) => Ok(Some(text.into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Some(text.into_bytes())),
        Value::Okay => Ok(Some(b"OK".to_vec())),
        Value::Int(n) => Ok(Some(n.to_string().into_bytes())),
        other => Err(unexpected("a string command", &other)),
    }
}

/// An integer reply (also accepted as a numeric string); `None` for nil.
pub fn int(value: &Value) -> Result<Option<i64>, String> {
    match value {
        Value::Nil => Ok(None),
        Value::Int(n) => Ok(Some(*n)),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| unexpected("an integer command", value)),
        Value::SimpleString(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| unexpected("an integer command", value)),
        other => Err(unexpected("an integer command", other)),
    }
}

/// A status reply as text (`TYPE` answers `hash`, `none`, ...).
pub fn status(value: &Value) -> Result<String, String> {
    match value {
        Value::SimpleString(text) => Ok(text.clone()),
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Value::Okay => Ok("OK".into()),
        other => Err(unexpected("TYPE", other)),
    }
}

/// The elements of an array (or RESP3 set) reply; nil is an empty list.
pub fn array(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(unexpected("a command that returns a list", &other)),
    }
}

/// A list of byte strings (`LRANGE`, `SMEMBERS`, `SSCAN`'s members).
pub fn byte_list(value: Value) -> Result<Vec<Vec<u8>>, String> {
    array(value)?
        .into_iter()
        .map(|item| bytes(item).map(|b| b.unwrap_or_default()))
        .collect()
}

/// Field/value pairs, binary-safe.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Field/value pairs from a flat `[f1, v1, f2, v2, ...]` array (RESP2) or a map (RESP3).
pub fn pairs(value: Value) -> Result<Pairs, String> {
    match value {
        Value::Map(entries) => entries
            .into_iter()
            .map(|(f, v)| Ok((bytes(f)?.unwrap_or_default(), bytes(v)?.unwrap_or_default())))
            .collect(),
        other => {
            let items = array(other)?;
            if items.len() % 2 != 0 {
                return Err("unexpected reply: an odd number of field/value items".into());
            }
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut iter = items.into_iter();
            while let (Some(f), Some(v)) = (iter.next(), iter.next()) {
                out.push((bytes(f)?.unwrap_or_default(), bytes(v)?.unwrap_or_default()));
            }
            Ok(out)
        }
    }
}

/// A score as Redis writes it (`1.5`, `inf`, `-inf`).
fn score(value: Value) -> Result<f64, String> {
    match value {
        Value::Double(d) => Ok(d),
        Value::Int(n) => Ok(n as f64),
        other => {
            let text = bytes(other)?.unwrap_or_default();
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .ok_or_else(|| format!("unexpected zset score `{}`", String::from_utf8_lossy(&text)))
        }
    }
}

/// `(member, score)` pairs from `ZRANGE ... WITHSCORES`, flat (RESP2) or nested (RESP3).
pub fn scored_members(value: Value) -> Result<Vec<(Vec<u8>, f64)>, String> {
    let items = array(value)?;
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let Some(first) = iter.next() {
        match first {
            Value::Array(pair) if pair.len() == 2 => {
                let mut pair = pair.into_iter();
                let member = bytes(pair.next().unwrap_or_default())?.unwrap_or_default();
                out.push((member, score(pair.next().unwrap_or_default())?));
            }
            member => {
                let member = bytes(member)?.unwrap_or_default();
                let score_value = iter.next().ok_or("unexpected reply: a zset member without a score")?;
                out.push((member, score(score_value)?));
            }
        }
    }
    Ok(out)
}

/// Entries of `XRANGE`: `[[id, [f1, v1, ...]], ...]`.
pub fn stream_entries(value: Value) -> Result<Vec<StreamEntry>, String> {
    array(value)?
        .into_iter()
        .map(|entry| {
            let mut parts = array(entry)?.into_iter();
            let id = bytes(parts.next().unwrap_or_default())?.unwrap_or_default();
            let id = String::from_utf8(id).map_err(|_| "unexpected reply: a stream id that is not text".to_owned())?;
            let fields = pairs(parts.next().unwrap_or_default())?;
            Ok(StreamEntry { id, fields })
        })
        .collect()
}

/// A `SCAN`-family reply: the next cursor and the page's items.
pub fn scan_page(value: Value) -> Result<(u64, Vec<Value>), String> {
    let mut parts = array(value)?.into_iter();
    let (Some(cursor), Some(items)) = (parts.next(), parts.next()) else {
        return Err("unexpected reply to SCAN: not a [cursor, items] pair".into());
    };
    let cursor = bytes(cursor)?.unwrap_or_default();
    let cursor = std::str::from_utf8(&cursor)
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("unexpected SCAN cursor `{}`", String::from_utf8_lossy(&cursor)))?;
    Ok((cursor, array(items)?))
}

/// The deepest nesting of arrays and objects a RedisJSON document may have to be
/// read: the JSON parser's own limit (serde_json stops at 128 levels). RedisJSON
/// accepts deeper documents (built path by path); such a key is that key's failure.
pub const MAX_JSON_DEPTH: usize = 127;

/// How deep arrays and objects nest in JSON `text` (0 for a scalar), counted without
/// parsing it (brackets inside strings do not count).
pub fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The document of `JSON.GET key $`, with the length of its JSON text as RedisJSON
/// wrote it (the size `max_value_bytes` limits): the reply is a compact JSON array
/// holding the root, `[root]`, whose text is parsed alone (so a root as deep as the
/// parser goes is read). `None` for nil (the key vanished). An error is the key's
/// failure: a document nested deeper than [`MAX_JSON_DEPTH`], or text that is not JSON.
pub fn json_root(value: Value) -> Result<Option<(serde_json::Value, usize)>, String> {
    let Some(text) = bytes(value)? else {
        return Ok(None);
    };
    let wrapped = text.first() == Some(&b'[') && text.last() == Some(&b']');
    let root = if wrapped { &text[1..text.len() - 1] } else { &text[..] };
    if wrapped && root.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let depth = json_depth(root);
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "value nests {depth} levels deep, deeper than the {MAX_JSON_DEPTH} levels this tool reads"
        ));
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(root).map_err(|e| format!("JSON.GET returned text that is not JSON: {e}"))?;
    Ok(Some((parsed, root.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    #[test]
    fn flat_and_map_replies_give_the_same_pairs() {
        let flat = Value::Array(vec![bulk(b"a"), bulk(b"1"), bulk(&[0xff]), bulk(b"2")]);
        let map = Value::Map(vec![(bulk(b"a"), bulk(b"1")), (bulk(&[0xff]), bulk(b"2"))]);
        let expected = vec![(b"a".to_vec(), b"1".to_vec()), (vec![0xff], b"2".to_vec())];
        assert_eq!(pairs(flat).unwrap(), expected);
        assert_eq!(pairs(map).unwrap(), expected);
    }

    #[test]
    fn zset_scores_parse_infinities_and_both_protocols() {
        let resp2 = Value::Array(vec![
            bulk(b"a"),
            bulk(b"-inf"),
            bulk(b"b"),
            bulk(b"2.5"),
            bulk(b"c"),
            bulk(b"inf"),
        ]);
        let got = scored_members(resp2).unwrap();
        assert_eq!(got[0], (b"a".to_vec(), f64::NEG_INFINITY));
        assert_eq!(got[1], (b"b".to_vec(), 2.5));
        assert_eq!(got[2], (b"c".to_vec(), f64::INFINITY));
        let resp3 = Value::Array(vec![Value::Array(vec![bulk(b"a"), Value::Double(1.0)])]);
        assert_eq!(scored_members(resp3).unwrap(), vec![(b"a".to_vec(), 1.0)]);
    }

    #[test]
    fn stream_entries_keep_ids_and_binary_fields() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"1-0"),
            Value::Array(vec![bulk(b"f"), bulk(&[0, 1, 2])]),
        ])]);
        let entries = stream_entries(reply).unwrap();
        assert_eq!(
            entries,
            vec![StreamEntry {
                id: "1-0".into(),
                fields: vec![(b"f".to_vec(), vec![0, 1, 2])]
            }]
        );
    }

    #[test]
    fn scan_replies_give_cursor_and_keys() {
        let reply = Value::Array(vec![bulk(b"17"), Value::Array(vec![bulk(b"k1"), bulk(b"k\n2")])]);
        let (cursor, keys) = scan_page(reply).unwrap();
        assert_eq!(cursor, 17);
        assert_eq!(
            byte_list(Value::Array(keys)).unwrap(),
            vec![b"k1".to_vec(), b"k\n2".to_vec()]
        );
    }

    #[test]
    fn json_get_dollar_unwraps_the_root() {
        assert_eq!(
            json_root(bulk(br#"[{"a":1}]"#)).unwrap(),
            Some((serde_json::json!({"a": 1}), 7))
        );
        assert_eq!(json_root(Value::Nil).unwrap(), None);
        assert_eq!(json_root(bulk(b"[]")).unwrap(), None);
        assert!(json_root(bulk(b"not json")).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_root_as_deep_as_the_parser_goes_is_read_and_a_deeper_one_is_refused() {
        let nested = |depth: usize| format!("[{}{}]", "[".repeat(depth), "]".repeat(depth));
        let (root, _) = json_root(bulk(nested(MAX_JSON_DEPTH).as_bytes())).unwrap().unwrap();
        assert_eq!(json_depth(root.to_string().as_bytes()), MAX_JSON_DEPTH);
        assert_eq!(
            json_root(bulk(nested(176).as_bytes())).unwrap_err(),
            "value nests 176 levels deep, deeper than the 127 levels this tool reads"
        );
    }

    #[test]
    fn brackets_inside_strings_do_not_nest() {
        assert_eq!(json_depth(br#"{"a":"[[[\"[[","b":[1]}"#), 2);
        assert_eq!(json_depth(b"42"), 0);
    }

    #[test]
    fn nil_is_none_and_integers_parse_from_text() {
        assert_eq!(bytes(Value::Nil).unwrap(), None);
        assert_eq!(int(&Value::Int(-2)).unwrap(), Some(-2));
        assert_eq!(int(&bulk(b"42")).unwrap(), Some(42));
        assert!(int(&bulk(b"x")).is_err());
    }
}
