//! JSON written straight into a byte buffer, the same bytes `serde_json::to_writer`
//! gives (the tests below hold them equal), but with strings escaped by
//! `json-escape-simd`. serde_json escapes a byte at a time; on 20 KB string values
//! that was a fifth of the connector's CPU (measured with `perf`), and the SIMD
//! escape scans 16 or 32 bytes at a time. Numbers, `true`/`false`/`null` and the
//! structure are written as serde_json writes them.

use base64::Engine as _;
use serde_json::{Map, Value};

/// Appends `text` as a JSON string, quotes included.
pub fn write_str(buf: &mut Vec<u8>, text: &str) {
    json_escape_simd::escape_into(text, buf);
}

/// Appends bytes as a JSON string: the text when it is UTF-8 (returns `true`),
/// otherwise its standard base64 (returns `false`), as [`crate::record::bytes_to_text`]
/// gives it.
pub fn write_bytes_as_text(buf: &mut Vec<u8>, bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            write_str(buf, text);
            true
        }
        Err(_) => {
            buf.push(b'"');
            let at = buf.len();
            buf.resize(at + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(bytes, &mut buf[at..])
                .expect("the buffer was sized for the encoding");
            buf.truncate(at + written);
            buf.push(b'"');
            false
        }
    }
}

/// Appends a JSON value, compact, object members in their order.
pub fn write_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        Value::Number(number) => serde_json::to_writer(&mut *buf, number).expect("a number serializes into a Vec"),
        Value::String(text) => write_str(buf, text),
        Value::Array(items) => write_array(buf, items, write_value),
        Value::Object(map) => write_map(buf, map),
    }
}

/// Appends a JSON array of `items`, each written by `write_item`.
pub fn write_array<T>(buf: &mut Vec<u8>, items: &[T], mut write_item: impl FnMut(&mut Vec<u8>, &T)) {
    buf.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_item(buf, item);
    }
    buf.push(b']');
}

/// Appends a JSON object.
pub fn write_map(buf: &mut Vec<u8>, map: &Map<String, Value>) {
    buf.push(b'{');
    write_members(buf, map, |_| true, false);
    buf.push(b'}');
}

/// Appends the members of `map` that `keep` accepts as `"name":value` pairs joined by
/// commas, with a leading comma when `after_other_members` (no braces).
pub fn write_members(
    buf: &mut Vec<u8>,
    map: &Map<String, Value>,
    keep: impl Fn(&str) -> bool,
    after_other_members: bool,
) {
    let mut first = !after_other_members;
    for (name, value) in map {
        if !keep(name) {
            continue;
        }
        if !first {
            buf.push(b',');
        }
        first = false;
        write_str(buf, name);
        buf.push(b':');
        write_value(buf, value);
    }
}

/// Appends, as one JSON string, the JSON text that `write_text` writes (which must be
/// UTF-8, as any JSON text is).
pub fn write_json_text_as_string(buf: &mut Vec<u8>, write_text: impl FnOnce(&mut Vec<u8>)) {
    thread_local! {
        /// The JSON text before it is escaped, reused: a fresh `Vec` per value was
        /// measured growing (reallocating) several times for most values.
        static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    TEXT.with_borrow_mut(|text| {
        text.clear();
        write_text(text);
        // Checking costs little next to the escape and keeps this free of `unsafe`.
        write_str(buf, std::str::from_utf8(text).expect("JSON text is UTF-8"));
        if text.capacity() > 1 << 20 {
            // Do not keep a big value's buffer for the rest of the run.
            *text = Vec::new();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn every_char_class() -> String {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é \u{2028} \u{10ffff} 𝄞 \u{7f}");
        text
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let long = every_char_class().repeat(40); // past any SIMD block size
        for text in [
            "",
            "plain",
            "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            &every_char_class(),
            &long,
        ] {
            let mut buf = Vec::new();
            write_str(&mut buf, text);
            assert_eq!(buf, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn values_are_written_byte_for_byte_as_serde_json_writes_them() {
        let value = json!({
            "z": null, "a": [true, false, 1, -2, 1.5, 1e300, 0.1, u64::MAX, i64::MIN],
            "nested": {"s": every_char_class(), "empty": {}, "list": []},
            "quote\"key": "v",
        });
        let mut buf = Vec::new();
        write_value(&mut buf, &value);
        assert_eq!(String::from_utf8(buf).unwrap(), serde_json::to_string(&value).unwrap());
        let mut buf = Vec::new();
        write_json_text_as_string(&mut buf, |text| write_value(text, &value));
        assert_eq!(buf, serde_json::to_vec(&Value::String(value.to_string())).unwrap());
    }

    #[test]
    fn members_can_skip_names_and_follow_other_members() {
        let map = json!({"_id": "x", "a": 1, "b": "t"}).as_object().unwrap().clone();
        let mut buf = b"{\"first\":0".to_vec();
        write_members(&mut buf, &map, |name| name != "_id", true);
        buf.push(b'}');
        assert_eq!(buf, br#"{"first":0,"a":1,"b":"t"}"#);
    }

    #[test]
    fn bytes_are_text_when_utf8_and_base64_otherwise() {
        let mut buf = Vec::new();
        assert!(write_bytes_as_text(&mut buf, "é\n".as_bytes()));
        assert_eq!(buf, "\"é\\n\"".as_bytes());
        let mut buf = Vec::new();
        assert!(!write_bytes_as_text(&mut buf, &[0xff, 0xfe, 0x00]));
        assert_eq!(buf, br#""//4A""#);
    }
}
