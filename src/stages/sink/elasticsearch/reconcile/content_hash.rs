//! Change-aware sync: every document carries a content hash ([`CONTENT_HASH_FIELD`]);
//! before writing to an index, the sink reads every `(_id, hash)` it holds once, into
//! an [`IndexHashes`] map, and then writes only documents whose hash differs or whose
//! id the index lacks. The ids of the map that no document of a complete run produced
//! are the stale ones.
//!
//! The hash: 64-bit xxh3, seeded with the pipeline fingerprint
//! ([`crate::config::fingerprint`]), over the exact bytes of the document line the
//! sink sends, minus the default document's `_timestamp` (the run's start, which
//! changes on every run without the data changing); stored as 16 hex digits in a
//! `keyword` field with `index: false` (doc values only). Its top bit is cleared:
//! the map uses it to mark the entries this run produced.
//!
//! Memory: the map is a sorted `Vec` of `(xxh3 of the _id, content hash)`, 16 bytes
//! per document held by the index, allocated once at the size the index reports (so
//! 16 MB for a million documents), plus the ids that collide in 64 bits (none in
//! practice; each is kept out of stale deletion).

use std::collections::HashSet;

use bytes::Bytes;
use elasticsearch::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::super::http::client::EsClient;
use super::super::http::service::BulkService;
use super::super::setup::index::{encode, IndexState};

/// The document field that holds the content hash: 16 lower-case hex digits, mapped
/// `keyword` with `index: false`. Written by this connector on every document it
/// writes to Elasticsearch; a document without it counts as changed.
pub const CONTENT_HASH_FIELD: &str = "_content_hash";

/// The mapping of [`CONTENT_HASH_FIELD`]: doc values only (read back, never searched).
pub fn hash_field_mapping() -> Value {
    json!({ "type": "keyword", "index": false })
}

/// The bit of a stored hash that [`IndexHashes`] uses as "produced by this run".
const SEEN: u64 = 1 << 63;
/// The content of a map entry whose document has no hash (written before change-aware
/// sync, by the reference, or by hand): never equal to a computed hash.
pub const NO_HASH: u64 = !SEEN;

/// The content hash of a document's bytes, seeded with the pipeline fingerprint.
pub fn content_hash(seed: u64, bytes: &[u8]) -> u64 {
    let hash = xxh3_64_with_seed(bytes, seed) & !SEEN;
    if hash == NO_HASH {
        0
    } else {
        hash
    }
}

/// The 64-bit key of an `_id` in the map (the same hash as
/// [`crate::stages::context::failed_id_hash`], so failed records are found by it).
pub fn key_hash(id: &str) -> u64 {
    xxh3_64(id.as_bytes())
}

/// A hash as the 16 hex digits stored in the document.
pub fn hash_hex(hash: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The hash of a stored field; `NO_HASH` when it is not 16 hex digits (edited by hand).
pub fn parse_hash(text: &str) -> u64 {
    match u64::from_str_radix(text, 16) {
        Ok(hash) if text.len() == 16 && hash & SEEN == 0 && hash != NO_HASH => hash,
        _ => NO_HASH,
    }
}

/// What the map says about a document this run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// The index does not hold its id.
    New,
    /// The index holds it with another hash, or none.
    Changed,
    /// The index holds it with the same hash.
    Unchanged,
    /// The index holds it with the same hash, and `--full` writes it again.
    Rewritten,
    /// An earlier document of this run already had this id (it is written again, as
    /// Elasticsearch keeps the last one).
    Repeated,
}

/// Every `(_id, content hash)` one index held when the run first wrote to it, as
/// 64-bit hashes sorted by id hash; see the module's doc.
#[derive(Debug, Default)]
pub struct IndexHashes {
    entries: Vec<(u64, u64)>,
    /// Id hashes held by two documents of the index: never reported stale.
    collided: HashSet<u64>,
}

impl IndexHashes {
    /// Builds the map from `(id hash, content hash)` pairs in any order.
    pub fn from_pairs(mut entries: Vec<(u64, u64)>) -> IndexHashes {
        entries.sort_unstable_by_key(|&(key, _)| key);
        let mut collided = HashSet::new();
        entries.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                // Two ids, one hash: whichever is produced, the entry says changed, and
                // the id is never deleted as stale (a collision keeps a stale document,
                // never deletes a live one).
                earlier.1 = NO_HASH;
                collided.insert(earlier.0);
            }
            same
        });
        entries.shrink_to_fit();
        IndexHashes { entries, collided }
    }

    /// Documents the index held.
    pub fn len(&self) -> usize {
        self.entries.len() + self.collided.len()
    }

    /// Bytes the map takes in memory.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u64, u64)>() + self.collided.capacity() * 16
    }

    /// Compares a produced document with the map and marks its id as produced.
    /// `None`: the index does not hold the id.
    pub fn compare(&mut self, key: u64, hash: u64, full: bool) -> Option<Comparison> {
        let i = self.entries.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        let stored = &mut self.entries[i].1;
        let comparison = if *stored & SEEN != 0 {
            Comparison::Repeated
        } else if *stored == hash {
            if full {
                Comparison::Rewritten
            } else {
                Comparison::Unchanged
            }
        } else {
            Comparison::Changed
        };
        *stored |= SEEN;
        Some(comparison)
    }

    /// The entries no document of this run produced, except those `keep` says to keep
    /// (records that failed but whose keys exist) and collided ids: `(id hash, content
    /// hash)`, content [`NO_HASH`] when the document had none.
    pub fn unseen(&self, keep: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
        self.entries
            .iter()
            .filter(|&&(key, stored)| stored & SEEN == 0 && !self.collided.contains(&key) && !keep(key))
            .copied()
            .collect()
    }
}

/// Documents read per page (Elasticsearch's default `index.max_result_window`).
const PAGE: usize = 10_000;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(default)]
    hits: Hits,
}

#[derive(Deserialize, Default)]
struct Hits {
    #[serde(default)]
    total: Option<Total>,
    #[serde(default)]
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Total {
    value: u64,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    fields: Option<HitFields>,
    #[serde(default)]
    sort: Value,
}

#[derive(Deserialize)]
struct HitFields {
    #[serde(rename = "_content_hash", default)]
    hash: Vec<String>,
}

/// Reads every `(_id, content hash)` of `index` through a point in time, sorted by
/// `_shard_doc`, pages of [`PAGE`] with `search_after`, `_source: false` and the hash
/// from doc values. A restart of Elasticsearch meanwhile is waited out (see
/// `recovery`): the read starts over, until `retry.max_elapsed`.
pub async fn load(service: &BulkService, index: &str) -> anyhow::Result<IndexHashes> {
    let what = format!("reading the (_id, content hash) pairs of {index}");
    super::super::http::recovery::retrying(
        &service.policy,
        &what,
        super::super::http::recovery::is_recovering,
        || load_once(service, index),
    )
    .await
}

async fn load_once(service: &BulkService, index: &str) -> anyhow::Result<IndexHashes> {
    let pit = open_pit(service, index).await?;
    let mut pit_id = pit;
    let result = load_pages(service, index, &mut pit_id).await;
    close_pit(service, &pit_id).await;
    result.map(IndexHashes::from_pairs)
}

async fn load_pages(service: &BulkService, index: &str, pit: &mut String) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut entries = Vec::new();
    let mut search_after: Option<Value> = None;
    loop {
        let mut query = json!({
            "size": PAGE,
            "_source": false,
            "docvalue_fields": [CONTENT_HASH_FIELD],
            "track_total_hits": search_after.is_none(),
            "pit": { "id": &*pit, "keep_alive": "2m" },
            "sort": [{ "_shard_doc": "asc" }],
        });
        if let Some(after) = search_after.take() {
            query["search_after"] = after;
        }
        let reply = service
            .send(
                "_search?filter_path=pit_id,hits.total.value,hits.hits._id,hits.hits.fields,hits.hits.sort",
                Bytes::from(serde_json::to_vec(&query)?),
                "application/json",
            )
            .await?;
        let page: Page = serde_json::from_slice(&reply.body).map_err(|e| {
            anyhow::anyhow!(
                "Elasticsearch at {} sent a search page of {index} that cannot be read ({e}): {}",
                reply.node,
                reply.snippet()
            )
        })?;
        if let Some(id) = page.pit_id {
            *pit = id;
        }
        if let Some(total) = page.hits.total {
            entries.reserve_exact(usize::try_from(total.value).unwrap_or(0));
        }
        let full_page = page.hits.hits.len() == PAGE;
        let mut last_sort = Value::Null;
        for hit in page.hits.hits {
            let hash = hit
                .fields
                .and_then(|f| f.hash.into_iter().next())
                .map_or(NO_HASH, |text| parse_hash(&text));
            entries.push((key_hash(&hit.id), hash));
            last_sort = hit.sort;
        }
        if !full_page {
            break;
        }
        search_after = Some(last_sort);
    }
    Ok(entries)
}

/// Opens a point in time on `index` and returns its id.
pub async fn open_pit(service: &BulkService, index: &str) -> anyhow::Result<String> {
    let reply = service
        .send(
            &format!("{}/_pit?keep_alive=2m", encode(index)),
            Bytes::new(),
            "application/json",
        )
        .await?;
    Ok(reply.json()?["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("Elasticsearch at {} opened no point in time on {index}", reply.node))?
        .to_owned())
}

/// Closes a point in time (it expires by itself when this fails).
pub async fn close_pit(service: &BulkService, pit: &str) {
    let Ok(close) = serde_json::to_vec(&json!({ "id": pit })) else {
        return;
    };
    if let Err(e) = service
        .transport
        .request(Method::Delete, "_pit", Some((Bytes::from(close), "application/json")))
        .await
    {
        tracing::debug!(error = %e, "closing the point in time failed (it expires by itself)");
    }
}

/// Makes sure an existing index maps [`CONTENT_HASH_FIELD`] as `keyword` before the
/// first write: added with `PUT <index>/_mapping` when missing (which works on a
/// `dynamic: strict` mapping too). An index that maps it as another type is refused,
/// with what to do.
pub async fn ensure_hash_field(client: &EsClient, state: &mut IndexState) -> anyhow::Result<()> {
    let current = state
        .mapping
        .as_ref()
        .map(|m| m["properties"][CONTENT_HASH_FIELD].clone())
        .unwrap_or(Value::Null);
    match current["type"].as_str() {
        Some("keyword") => return Ok(()),
        Some(other) => anyhow::bail!(
            "index {} maps {CONTENT_HASH_FIELD} as `{other}`; change-aware sync stores each document's \
             content hash there and needs it `keyword` (index: false): write to another index, or rebuild \
             this one without that field",
            state.name
        ),
        None => {}
    }
    let body = json!({ "properties": { CONTENT_HASH_FIELD: hash_field_mapping() } });
    client
        .json_call(
            Method::Put,
            &format!("{}/_mapping", encode(&state.name)),
            &body,
            &format!(
                "PUT {}/_mapping (adding the {CONTENT_HASH_FIELD} field change-aware sync writes)",
                state.name
            ),
        )
        .await?;
    tracing::info!(index = %state.name, "added {CONTENT_HASH_FIELD} (keyword, index: false) to the mapping");
    if let Some(Value::Object(mapping)) = &mut state.mapping {
        let properties = mapping.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(properties) = properties {
            properties.insert(CONTENT_HASH_FIELD.to_owned(), hash_field_mapping());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stored_as_sixteen_hex_digits_and_read_back() {
        let hash = content_hash(7, b"{\"a\":1}");
        assert_eq!(hash & SEEN, 0);
        let hex = hash_hex(hash);
        assert_eq!(parse_hash(std::str::from_utf8(&hex).unwrap()), hash);
        assert_eq!(&hash_hex(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(parse_hash("not a hash"), NO_HASH);
        assert_eq!(parse_hash("ffffffffffffffff"), NO_HASH);
        assert_ne!(
            content_hash(7, b"x"),
            content_hash(8, b"x"),
            "the seed is the fingerprint"
        );
    }

    #[test]
    fn the_map_tells_new_changed_unchanged_and_repeated_apart() {
        let mut map = IndexHashes::from_pairs(vec![(3, 30), (1, 10), (2, NO_HASH)]);
        assert_eq!(map.len(), 3);
        assert_eq!(map.compare(1, 10, false), Some(Comparison::Unchanged));
        assert_eq!(map.compare(1, 10, false), Some(Comparison::Repeated));
        assert_eq!(
            map.compare(2, 20, false),
            Some(Comparison::Changed),
            "no hash: changed once"
        );
        assert_eq!(map.compare(4, 40, false), None);
        assert_eq!(map.unseen(|_| false), vec![(3, 30)]);
        assert_eq!(map.unseen(|key| key == 3), vec![]);
        let mut full = IndexHashes::from_pairs(vec![(1, 10)]);
        assert_eq!(full.compare(1, 10, true), Some(Comparison::Rewritten));
    }

    #[test]
    fn colliding_ids_are_never_stale() {
        let mut map = IndexHashes::from_pairs(vec![(5, 50), (5, 51), (6, 60)]);
        assert_eq!(map.len(), 3);
        assert_eq!(map.unseen(|_| false), vec![(6, 60)]);
        assert_eq!(map.compare(5, 50, false), Some(Comparison::Changed));
    }

    #[test]
    fn the_map_takes_sixteen_bytes_per_document() {
        let map = IndexHashes::from_pairs(
            (0..100_000u64)
                .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i))
                .collect(),
        );
        assert_eq!(map.memory_bytes(), 100_000 * 16);
    }
}
