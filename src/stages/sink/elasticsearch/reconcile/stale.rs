//! Stale deletion: after a complete run, documents of the target index whose `_id` this
//! run did not produce are deleted, so the index holds exactly what Redis holds.
//!
//! Memory: the ids a run produced are kept as a set of 64-bit xxh3 hashes of
//! `index + "\0" + _id` ([`IdSet`]), 8 bytes per document plus the hash table's
//! overhead: about 16 MB per million documents, whatever the ids' length. A hash
//! collision can only make a stale document look live (it is kept, never a live one
//! deleted); at 64 bits that is about one chance in 10^7 for a million stale documents
//! against a million live ones.
//!
//! The index is read page by page through a point in time (`_source: false`, sorted by
//! `_shard_doc`, `search_after`): `_delete_by_query` is not in every distribution and
//! would need the ids anyway. The stale ids are held only up to the guard's limit
//! (`max_fraction` of the index), so a tripped guard costs no more memory than a
//! permitted deletion; with `--allow-mass-delete` they are deleted page by page.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use elasticsearch::http::Method;
use serde_json::{json, Value};
use xxhash_rust::xxh3::Xxh3;

use super::super::http::service::BulkService;
use super::super::setup::index::encode;
use super::content_hash::{close_pit, hash_hex, key_hash, open_pit, CONTENT_HASH_FIELD, NO_HASH};
use crate::stages::context::failed_id_hash;

/// A `Hasher` that passes a `u64` through: the keys are already xxh3 hashes, so
/// hashing them again would only cost time. (Written by hand: it is five lines, and
/// the crates that offer it are larger than the need.)
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The set of `(index, _id)` a run produced, as 64-bit hashes, plus the ids to keep in
/// every index (records that failed before they could be placed: their keys exist).
#[derive(Default)]
pub struct IdSet {
    placed: HashSet<u64, BuildHasherDefault<PassThroughHasher>>,
    anywhere: HashSet<u64, BuildHasherDefault<PassThroughHasher>>,
}

/// The 64-bit hash of `index + "\0" + id`.
pub fn id_hash(index: &str, id: &str) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(index.as_bytes());
    hasher.update(&[0]);
    hasher.update(id.as_bytes());
    hasher.digest()
}

impl IdSet {
    /// Adds `(index, id)`; `false` when this run had produced it already.
    pub fn insert(&mut self, index: &str, id: &str) -> bool {
        self.placed.insert(id_hash(index, id))
    }
    /// Keeps `id` live in every index.
    pub fn insert_anywhere(&mut self, id: &str) {
        self.anywhere.insert(failed_id_hash(id));
    }
    /// Keeps live in every index the id whose [`failed_id_hash`] is `hash`.
    pub fn insert_anywhere_hash(&mut self, hash: u64) {
        self.anywhere.insert(hash);
    }
    /// Whether the id whose [`failed_id_hash`] is `hash` is kept live in every index.
    pub fn kept_anywhere(&self, hash: u64) -> bool {
        !self.anywhere.is_empty() && self.anywhere.contains(&hash)
    }
    pub fn contains(&self, index: &str, id: &str) -> bool {
        self.placed.contains(&id_hash(index, id))
            || (!self.anywhere.is_empty() && self.anywhere.contains(&failed_id_hash(id)))
    }
    /// Ids held (unit tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.placed.len() + self.anywhere.len()
    }
}

/// The mass-delete guard: `Some(message)` when deleting `stale` of `total` documents
/// would remove more than `max_fraction` of the index.
pub fn guard_message(index: &str, stale: u64, total: u64, max_fraction: f64) -> Option<String> {
    if total == 0 || (stale as f64) <= max_fraction * total as f64 {
        return None;
    }
    let percent = stale as f64 * 100.0 / total as f64;
    Some(format!(
        "would delete {stale} of {total} documents ({percent:.1}%) from index {index}, more than \
         delete_stale.max_fraction {max_fraction}; nothing was deleted; rerun with --allow-mass-delete if this is intended"
    ))
}

/// What to do with the stale documents found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Count them (dry run).
    Count,
    /// Count them, holding the ids of at most `max_fraction` of the index (the guard's
    /// limit); delete later if the guard allows.
    Collect { max_fraction: f64 },
    /// Delete them page by page (the guard is off).
    DeleteAsFound,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Documents in the index (in the point in time).
    pub total: u64,
    /// Documents whose id this run did not produce.
    pub stale: u64,
    /// Stale ids held ([`Mode::Collect`], up to its limit).
    pub held: Vec<String>,
    /// Documents deleted ([`Mode::DeleteAsFound`]).
    pub deleted: u64,
    /// Deletions that failed.
    pub errors: Vec<String>,
}

/// Documents read per page.
const PAGE: usize = 5000;

/// Reads every `_id` of `index` and finds those not in `live`.
pub async fn scan(service: &BulkService, index: &str, live: &IdSet, mode: Mode) -> anyhow::Result<Scan> {
    let reply = service
        .send(
            &format!("{}/_pit?keep_alive=2m", encode(index)),
            Bytes::new(),
            "application/json",
        )
        .await?;
    let mut pit = reply.json()?["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("Elasticsearch at {} opened no point in time on {index}", reply.node))?
        .to_owned();
    let result = scan_pages(service, index, live, mode, &mut pit).await;
    let close = serde_json::to_vec(&json!({ "id": pit }))?;
    if let Err(e) = service
        .transport
        .request(Method::Delete, "_pit", Some((Bytes::from(close), "application/json")))
        .await
    {
        tracing::debug!(error = %e, "closing the point in time failed (it expires by itself)");
    }
    result
}

async fn scan_pages(
    service: &BulkService,
    index: &str,
    live: &IdSet,
    mode: Mode,
    pit: &mut String,
) -> anyhow::Result<Scan> {
    let mut scan = Scan::default();
    let mut search_after: Option<Value> = None;
    let mut first = true;
    let mut limit = 0u64;
    loop {
        let mut query = json!({
            "size": PAGE,
            "_source": false,
            "track_total_hits": first,
            "pit": { "id": &*pit, "keep_alive": "2m" },
            "sort": [{ "_shard_doc": "asc" }],
        });
        if let Some(after) = &search_after {
            query["search_after"] = after.clone();
        }
        let reply = service
            .send(
                "_search?filter_path=pit_id,hits.total,hits.hits._id,hits.hits.sort",
                Bytes::from(serde_json::to_vec(&query)?),
                "application/json",
            )
            .await?;
        let body = reply.json()?;
        if let Some(id) = body["pit_id"].as_str() {
            *pit = id.to_owned();
        }
        if first {
            scan.total = body["hits"]["total"]["value"].as_u64().unwrap_or(0);
            if let Mode::Collect { max_fraction } = mode {
                limit = (max_fraction * scan.total as f64).floor() as u64;
            }
            first = false;
        }
        let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let mut page_stale = Vec::new();
        for hit in &hits {
            let Some(id) = hit["_id"].as_str() else { continue };
            if !live.contains(index, id) {
                scan.stale += 1;
                match mode {
                    Mode::Count => {}
                    Mode::Collect { .. } => {
                        if scan.stale <= limit {
                            scan.held.push(id.to_owned());
                        }
                    }
                    Mode::DeleteAsFound => page_stale.push(id.to_owned()),
                }
            }
        }
        if !page_stale.is_empty() {
            let (deleted, errors) = service.delete(index, &page_stale).await?;
            scan.deleted += deleted;
            scan.errors.extend(errors);
        }
        match hits.last() {
            Some(last) if hits.len() == PAGE => search_after = Some(last["sort"].clone()),
            _ => break,
        }
    }
    if let Mode::Collect { .. } = mode {
        if scan.stale > limit {
            scan.held = Vec::new();
        }
    }
    Ok(scan)
}

/// What [`delete_by_hash`] did.
#[derive(Debug, Default)]
pub struct Deleted {
    pub deleted: u64,
    pub errors: Vec<String>,
}

/// Terms in one `terms` query: Elasticsearch's default `index.max_terms_count`.
const MAX_TERMS: usize = 65_536;

/// Deletes the stale documents change-aware sync found in its map of `index`:
/// `stale` holds their `(xxh3 of the _id, content hash)`. Their `_id`s are not in
/// memory, so they are found by their content hash (a `terms` query on the hash's
/// doc values, plus documents without a hash), through a point in time with
/// `search_after`, and a hit is deleted only when the hash of its `_id` is a stale
/// one; with more distinct hashes than one query takes, every id is looked at. Each
/// page's stale ids are deleted with bulk `delete` actions, `chunk` at a time. The
/// index must have been refreshed since this run's writes.
pub async fn delete_by_hash(
    service: &BulkService,
    index: &str,
    stale: &[(u64, u64)],
    chunk: usize,
) -> anyhow::Result<Deleted> {
    let search = HashSearch::new(stale);
    let mut pit = open_pit(service, index).await?;
    let result = delete_pages(service, index, &search, chunk, &mut pit).await;
    close_pit(service, &pit).await;
    result
}

/// Up to `limit` of the `_id`s of `index` whose `(xxh3 of the _id, content hash)` is
/// in `stale`, found as [`delete_by_hash`] finds them (`verify`'s samples of extra
/// documents). Reads no further than the page where the limit is reached.
pub async fn find_by_hash(
    service: &BulkService,
    index: &str,
    stale: &[(u64, u64)],
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    let search = HashSearch::new(stale);
    let mut pit = open_pit(service, index).await?;
    let mut found = Vec::new();
    let mut after = None;
    let result = loop {
        match search.page(service, &mut pit, after.take()).await {
            Ok((ids, next)) => {
                found.extend(ids);
                match next {
                    Some(next) if found.len() < limit => after = Some(next),
                    _ => break Ok(()),
                }
            }
            Err(error) => break Err(error),
        }
    };
    close_pit(service, &pit).await;
    found.truncate(limit);
    result.map(|()| found)
}

/// A search for the documents whose id hashes are given (with their content hashes,
/// which narrow the query), page by page through a point in time.
struct HashSearch {
    keys: HashSet<u64, BuildHasherDefault<PassThroughHasher>>,
    query: Value,
}

impl HashSearch {
    fn new(stale: &[(u64, u64)]) -> HashSearch {
        let keys = stale.iter().map(|&(key, _)| key).collect();
        let mut hashes: Vec<u64> = stale.iter().map(|&(_, hash)| hash).filter(|&h| h != NO_HASH).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let without_hash = stale.iter().any(|&(_, hash)| hash == NO_HASH);
        let query = if hashes.len() > MAX_TERMS {
            json!({ "match_all": {} })
        } else {
            let terms: Vec<String> = hashes
                .iter()
                .map(|&h| String::from_utf8_lossy(&hash_hex(h)).into_owned())
                .collect();
            let mut should = vec![json!({ "terms": { CONTENT_HASH_FIELD: terms } })];
            if without_hash {
                should.push(json!({ "bool": { "must_not": { "exists": { "field": CONTENT_HASH_FIELD } } } }));
            }
            json!({ "bool": { "should": should, "minimum_should_match": 1 } })
        };
        HashSearch { keys, query }
    }

    /// One page after `search_after`: the ids in it whose hash is sought, and where
    /// the next page starts (`None` after the last).
    async fn page(
        &self,
        service: &BulkService,
        pit: &mut String,
        search_after: Option<Value>,
    ) -> anyhow::Result<(Vec<String>, Option<Value>)> {
        let mut body = json!({
            "size": PAGE,
            "_source": false,
            "track_total_hits": false,
            "query": self.query,
            "pit": { "id": &*pit, "keep_alive": "2m" },
            "sort": [{ "_shard_doc": "asc" }],
        });
        if let Some(after) = search_after {
            body["search_after"] = after;
        }
        let reply = service
            .send(
                "_search?filter_path=pit_id,hits.hits._id,hits.hits.sort",
                Bytes::from(serde_json::to_vec(&body)?),
                "application/json",
            )
            .await?;
        let page = reply.json()?;
        if let Some(id) = page["pit_id"].as_str() {
            *pit = id.to_owned();
        }
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let ids = hits
            .iter()
            .filter_map(|hit| hit["_id"].as_str())
            .filter(|id| self.keys.contains(&key_hash(id)))
            .map(str::to_owned)
            .collect();
        let next = match hits.last() {
            Some(last) if hits.len() == PAGE => Some(last["sort"].clone()),
            _ => None,
        };
        Ok((ids, next))
    }
}

async fn delete_pages(
    service: &BulkService,
    index: &str,
    search: &HashSearch,
    chunk: usize,
    pit: &mut String,
) -> anyhow::Result<Deleted> {
    let mut outcome = Deleted::default();
    let mut search_after: Option<Value> = None;
    loop {
        let (ids, next) = search.page(service, pit, search_after.take()).await?;
        let (deleted, errors) = delete_in_chunks(service, index, &ids, chunk).await?;
        outcome.deleted += deleted;
        outcome.errors.extend(errors);
        match next {
            Some(next) => search_after = Some(next),
            None => break,
        }
    }
    Ok(outcome)
}

/// Deletes `ids` from `index`, `chunk` per bulk request. Returns how many were
/// deleted and the errors of those that could not be.
pub async fn delete_in_chunks(
    service: &BulkService,
    index: &str,
    ids: &[String],
    chunk: usize,
) -> anyhow::Result<(u64, Vec<String>)> {
    let mut deleted = 0;
    let mut errors = Vec::new();
    for part in ids.chunks(chunk.max(1)) {
        let (d, e) = service.delete(index, part).await?;
        deleted += d;
        errors.extend(e);
    }
    Ok((deleted, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_told_apart_by_index_and_id() {
        let mut set = IdSet::default();
        set.insert("a", "1");
        assert!(set.contains("a", "1"));
        assert!(!set.contains("b", "1"));
        assert!(!set.contains("a", "2"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(id_hash("ab", "c"), id_hash("a", "bc"));
        assert_eq!(set.len(), 1);
        set.insert_anywhere("9");
        assert!(set.contains("a", "9") && set.contains("b", "9"));
        set.insert_anywhere_hash(failed_id_hash("8"));
        assert!(set.contains("c", "8"));
        assert!(!set.contains("c", "7"));
    }

    #[test]
    fn guard_trips_only_above_the_fraction() {
        assert_eq!(guard_message("i", 5, 10, 0.5), None);
        assert_eq!(guard_message("i", 0, 0, 0.5), None);
        let message = guard_message("users", 6, 10, 0.5).unwrap();
        assert_eq!(
            message,
            "would delete 6 of 10 documents (60.0%) from index users, more than delete_stale.max_fraction 0.5; \
             nothing was deleted; rerun with --allow-mass-delete if this is intended"
        );
        assert!(guard_message("i", 10, 10, 1.0).is_none());
    }
}
