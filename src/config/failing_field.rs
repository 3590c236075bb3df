//! Where a pipeline that passed the schema still fails to convert to the typed
//! structs (`1e3` where a whole number is needed, a duration past the largest one):
//! serde's messages name no field, so the failing field is searched for by taking
//! parts away.

use serde::Deserialize;
use serde_json::Value;

use super::model::Pipeline;
use super::yaml;

/// The pointer of the deepest part of `value` that keeps it from converting to a
/// [`Pipeline`] (whose conversion failed with `error`); `""` when none is found.
pub fn failing_field(value: &Value, error: &str) -> String {
    search_failing(value, error, "").unwrap_or_default()
}

/// Serde's messages name no field, so parts are taken away, from the top: a part
/// whose removal leaves the error as it was does not hold it (nor is searched); one
/// whose removal ends the error, or changes it into another, holds it and is
/// searched further; a required part (its removal only makes it missing) is searched
/// too, and is itself the culprit when it is a whole number written as a float
/// (`database: 1.0`) that converts once written as an integer. The items of a list
/// are searched by halves (a file of 60,000 rules costs some 16 conversions, not
/// 60,000), the members of a mapping one by one. Runs only for a failed file.
fn search_failing(value: &Value, error: &str, pointer: &str) -> Option<String> {
    let still_fails = |changed: &Value| match Pipeline::deserialize(changed) {
        Ok(_) => None,
        Err(other) => Some(other.to_string()),
    };
    let keys: Vec<String> = match value.pointer(pointer)? {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => {
            // The first `k` items removed: find the smallest `k` that changes the
            // error; item `k - 1` then holds it.
            let without_first = |k: usize| {
                let mut changed = value.clone();
                if let Some(Value::Array(items)) = changed.pointer_mut(pointer) {
                    items.drain(..k);
                }
                still_fails(&changed).as_deref() != Some(error)
            };
            if items.is_empty() || !without_first(items.len()) {
                return None;
            }
            let (mut low, mut high) = (0, items.len());
            while high - low > 1 {
                let middle = low + (high - low) / 2;
                if without_first(middle) {
                    high = middle;
                } else {
                    low = middle;
                }
            }
            let child = format!("{pointer}/{low}");
            return Some(search_failing(value, error, &child).unwrap_or(child));
        }
        _ => return None,
    };
    for key in keys {
        let child = format!("{pointer}/{}", yaml::escape_pointer(&key));
        let mut without = value.clone();
        remove(&mut without, &child);
        match still_fails(&without) {
            Some(other) if other == error => continue,
            Some(other) if other.contains(&format!("missing field `{key}`")) => {
                if let Some(whole) = value.pointer(&child).and_then(as_whole_number) {
                    let mut fixed = value.clone();
                    if let Some(slot) = fixed.pointer_mut(&child) {
                        *slot = whole;
                    }
                    if still_fails(&fixed).as_deref() != Some(error) {
                        return Some(child);
                    }
                }
                if let Some(found) = search_failing(value, error, &child) {
                    return Some(found);
                }
            }
            _ => return Some(search_failing(value, error, &child).unwrap_or(child)),
        }
    }
    None
}

/// `1000` for `1e3` or `1000.0`: a float with no fraction, as an integer.
fn as_whole_number(value: &Value) -> Option<Value> {
    let number = value.as_f64().filter(|_| value.is_f64())?;
    if number.fract() != 0.0 || number.abs() > 9.0e15 {
        return None;
    }
    Some(Value::from(number as i64))
}

/// Removes the member or item at `pointer` (which exists) from `value`.
fn remove(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.shift_remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}
