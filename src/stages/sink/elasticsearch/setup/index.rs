//! Index setup: whether an index exists, what its mapping and `_meta` ownership marker
//! say, creating it (with the pipeline's settings and mappings, or the built-in mapping
//! of the default document) and refreshing it at the end of a run.
//!
//! Ownership: an index this connector creates carries
//! `_meta: {"redis_connector": {"pipeline": NAME, "delete_stale": BOOL}}`. Stale deletion
//! only ever runs on an index whose marker names this pipeline, or on one that held no
//! documents before this run began (see [`stale_deletion_allowed`]). A pipeline without
//! stale deletion does not write into an index another pipeline keeps exact with it
//! (see [`writing_allowed`]): that pipeline's next run would delete what it wrote.
//! `delete_stale` is kept up to date by the owner's runs; a marker without it (written
//! before it was recorded) counts as `true` until the owner's next run without stale
//! deletion records `false`.

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::super::http::client::EsClient;
use super::super::reconcile::content_hash::{hash_field_mapping, CONTENT_HASH_FIELD};

/// The `_meta` key of the ownership marker.
pub const META_KEY: &str = "redis_connector";

/// What is known about one target index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexState {
    pub name: String,
    /// It existed when this run first looked.
    pub existed: bool,
    /// This run created it.
    pub created: bool,
    /// The pipeline named in its `_meta` marker, if any.
    pub owner: Option<String>,
    /// The marker's `delete_stale` (whether the owner deletes stale documents there);
    /// `None` when the marker does not say (or there is no marker).
    pub owner_deletes_stale: Option<bool>,
    /// Documents it held when this run first looked.
    pub docs_at_start: u64,
    /// Its mapping (`mappings` object), when it exists.
    pub mapping: Option<Value>,
}

/// The ownership marker: the pipeline, and whether it deletes stale documents.
pub fn marker(pipeline: &str, delete_stale: bool) -> Value {
    json!({ "pipeline": pipeline, "delete_stale": delete_stale })
}

/// The built-in mapping of the default document, with the ownership marker.
pub fn default_mappings(pipeline: &str, delete_stale: bool) -> Value {
    json!({
        "_meta": { META_KEY: marker(pipeline, delete_stale) },
        "properties": {
            // Lucene refuses a term over 32,766 bytes, and a Redis key can be far
            // longer: such a key stays in `_source`, unindexed, rather than failing
            // its document (8191 characters fit in the limit whatever the UTF-8).
            "key": { "type": "keyword", "ignore_above": 8191 },
            "key_encoding": { "type": "keyword" },
            "value": { "type": "text", "fields": { "keyword": { "type": "keyword", "ignore_above": 256 } } },
            "value_encoding": { "type": "keyword" },
            "database": { "type": "integer" },
            "key_type": { "type": "keyword" },
            "size_in_bytes": { "type": "long" },
            "_timestamp": { "type": "date" }
        }
    })
}

/// The body of `PUT /<index>`: the pipeline's `settings`; its `mappings` (or the
/// built-in mapping when the documents are default ones, or dynamic mapping for
/// rendered documents without `mappings`), always with the ownership marker and the
/// content hash field added.
pub fn creation_body(
    settings: Option<&Value>,
    mappings: Option<&Value>,
    default_documents: bool,
    pipeline: &str,
    delete_stale: bool,
) -> Value {
    let mut mappings = match mappings {
        Some(m) => m.clone(),
        None if default_documents => default_mappings(pipeline, delete_stale),
        None => json!({}),
    };
    if let Value::Object(map) = &mut mappings {
        let meta = map.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert(META_KEY.to_owned(), marker(pipeline, delete_stale));
        }
        // Change-aware sync's content hash, also under a `dynamic: strict` mapping.
        let properties = map.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(properties) = properties {
            properties.entry(CONTENT_HASH_FIELD).or_insert_with(hash_field_mapping);
        }
    }
    let mut body = json!({ "mappings": mappings });
    if let Some(settings) = settings {
        body["settings"] = settings.clone();
    }
    body
}

/// Whether stale deletion may run on `state` for `pipeline`; the error says why not.
pub fn stale_deletion_allowed(state: &IndexState, pipeline: &str) -> Result<(), String> {
    match &state.owner {
        Some(owner) if owner == pipeline => Ok(()),
        Some(owner) => Err(format!(
            "index {} belongs to pipeline `{owner}` (its _meta.{META_KEY}.pipeline), not `{pipeline}`: \
             stale deletion would remove that pipeline's documents, so it was refused; \
             use another index, or set delete_stale: false for an index shared by several pipelines",
            state.name
        )),
        None if state.created || state.docs_at_start == 0 => Ok(()),
        None => Err(format!(
            "index {} was not created by redis-connector (no _meta.{META_KEY}.pipeline marker) and already \
             held {} documents: stale deletion would remove documents this pipeline never wrote, so it was refused; \
             write to a new index, or add the marker with PUT {}/_mapping {}",
            state.name,
            state.docs_at_start,
            state.name,
            json!({ "_meta": marked_meta(state, pipeline, true) })
        )),
    }
}

/// Whether `pipeline`, which does not delete stale documents, may write into `state`:
/// not when the index's marker names another pipeline that keeps it exact with
/// `delete_stale` (or a marker that predates the flag), whose next run would delete
/// every document written here as stale. The error says why and what to do.
pub fn writing_allowed(state: &IndexState, pipeline: &str) -> Result<(), String> {
    match (&state.owner, state.owner_deletes_stale) {
        (Some(owner), deletes) if owner != pipeline && deletes != Some(false) => Err(format!(
            "index {} belongs to pipeline `{owner}`, which {} it exact with delete_stale \
             (its _meta.{META_KEY}{}): documents this pipeline writes there would be deleted as stale \
             by `{owner}`'s next run, so nothing was written; write to another index, or merge the two \
             pipelines into one",
            state.name,
            if deletes.is_none() { "may keep" } else { "keeps" },
            if deletes.is_none() {
                format!(
                    ".pipeline, written before the marker recorded delete_stale; if `{owner}` does not \
                     delete stale documents, its next run records delete_stale: false there"
                )
            } else {
                ".delete_stale".to_owned()
            }
        )),
        _ => Ok(()),
    }
}

/// The index's `_meta` with this pipeline's marker added. A mapping update replaces
/// `_meta` as a whole, so whatever else it holds is kept by sending it again, and so
/// are the marker's other fields (an alias's fingerprints, see `alias/`).
fn marked_meta(state: &IndexState, pipeline: &str, delete_stale: bool) -> Value {
    let mut meta = match state.mapping.as_ref().map(|m| &m["_meta"]) {
        Some(Value::Object(meta)) => meta.clone(),
        _ => serde_json::Map::new(),
    };
    let mut fields = match meta.get(META_KEY) {
        Some(Value::Object(fields)) if fields.get("pipeline").and_then(Value::as_str) == Some(pipeline) => {
            fields.clone()
        }
        _ => serde_json::Map::new(),
    };
    if let Value::Object(own) = marker(pipeline, delete_stale) {
        fields.extend(own);
    }
    meta.insert(META_KEY.to_owned(), Value::Object(fields));
    Value::Object(meta)
}

/// Marks an existing index as `pipeline`'s (`PUT <index>/_mapping` with its `_meta`
/// plus the marker). Used for an index that was empty when a pipeline with stale
/// deletion first wrote to it: stale deletion was allowed there because nothing in it
/// could be another writer's, and the marker keeps it allowed on the next run, when
/// the index holds this pipeline's documents. Also used to bring the marker's
/// `delete_stale` of an index this pipeline owns up to date.
pub async fn claim(
    client: &EsClient,
    state: &mut IndexState,
    pipeline: &str,
    delete_stale: bool,
) -> anyhow::Result<()> {
    let body = json!({ "_meta": marked_meta(state, pipeline, delete_stale) });
    client
        .json_call(
            Method::Put,
            &format!("{}/_mapping", encode(&state.name)),
            &body,
            &format!("PUT {}/_mapping (marking the index as this pipeline's)", state.name),
        )
        .await?;
    if let Some(Value::Object(mapping)) = &mut state.mapping {
        mapping.insert("_meta".to_owned(), body["_meta"].clone());
    }
    state.owner = Some(pipeline.to_owned());
    state.owner_deletes_stale = Some(delete_stale);
    Ok(())
}

/// Reads an index's mapping, marker and document count; `None` when it does not exist.
pub async fn inspect(client: &EsClient, name: &str) -> anyhow::Result<Option<IndexState>> {
    let path = format!("{}/_mapping", encode(name));
    let reply = client
        .request(Method::Get, &path, None)
        .await
        .map_err(anyhow::Error::msg)?;
    if reply.status == 404 {
        return Ok(None);
    }
    if reply.status != 200 {
        return Err(client.status_error(&reply, &format!("GET {name}/_mapping")));
    }
    let body = reply.json()?;
    // The answer is keyed by the concrete index name (the target may be an alias).
    let mapping = body
        .as_object()
        .and_then(|o| o.values().next())
        .map(|v| v["mappings"].clone())
        .unwrap_or(Value::Null);
    let owner = mapping["_meta"][META_KEY]["pipeline"].as_str().map(str::to_owned);
    let owner_deletes_stale = mapping["_meta"][META_KEY]["delete_stale"].as_bool();
    let docs_at_start = count(client, name).await?;
    Ok(Some(IndexState {
        name: name.to_owned(),
        existed: true,
        created: false,
        owner,
        owner_deletes_stale,
        docs_at_start,
        mapping: Some(mapping),
    }))
}

/// The names of every open index whose `_meta` marker names `pipeline`: the indices a
/// templated `index` wrote to in earlier runs, which stale deletion must also cover
/// (a key whose database or type no longer exists leaves documents in an index this
/// run never writes to).
pub async fn owned_by(client: &EsClient, pipeline: &str) -> anyhow::Result<Vec<String>> {
    let path = format!("_mapping?filter_path=*.mappings._meta.{META_KEY}.pipeline");
    let reply = client
        .request(Method::Get, &path, None)
        .await
        .map_err(anyhow::Error::msg)?;
    if reply.status != 200 {
        return Err(client.status_error(&reply, "GET _mapping (finding this pipeline's indices)"));
    }
    let body = reply.json()?;
    let mut names: Vec<String> = body
        .as_object()
        .map(|indices| {
            indices
                .iter()
                .filter(|(_, v)| v["mappings"]["_meta"][META_KEY]["pipeline"].as_str() == Some(pipeline))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

/// `GET <index>/_count`.
pub async fn count(client: &EsClient, name: &str) -> anyhow::Result<u64> {
    let reply = client
        .request(Method::Get, &format!("{}/_count", encode(name)), None)
        .await
        .map_err(anyhow::Error::msg)?;
    if reply.status != 200 {
        return Err(client.status_error(&reply, &format!("GET {name}/_count")));
    }
    reply.json()?["count"].as_u64().ok_or_else(|| {
        anyhow::anyhow!(
            "Elasticsearch at {} answered GET {name}/_count without a count",
            reply.node
        )
    })
}

/// Creates the index with `body`. Returns `false` when it already existed (someone
/// else created it in between).
pub async fn create(client: &EsClient, name: &str, body: &Value) -> anyhow::Result<bool> {
    let bytes = bytes::Bytes::from(serde_json::to_vec(body)?);
    let reply = client
        .request(Method::Put, &encode(name), Some((bytes, "application/json")))
        .await
        .map_err(anyhow::Error::msg)?;
    match reply.status {
        200 | 201 => Ok(true),
        400 if reply.error_summary().starts_with("resource_already_exists_exception") => Ok(false),
        _ => Err(client.status_error(&reply, &format!("PUT {name} (creating the index)"))),
    }
}

/// Refreshes the indices so a search right after sees every document: one request
/// per group of names that fits an HTTP request line (see [`name_lists`]).
pub async fn refresh(client: &EsClient, names: &[String]) -> anyhow::Result<()> {
    for list in name_lists(names, MAX_NAME_LIST_BYTES) {
        let reply = client
            .request(Method::Post, &format!("{list}/_refresh"), None)
            .await
            .map_err(anyhow::Error::msg)?;
        if reply.status != 200 {
            let shown = if list.contains(',') {
                format!("{} indices", list.split(',').count())
            } else {
                list.clone()
            };
            return Err(client.status_error(&reply, &format!("POST {shown}/_refresh")));
        }
    }
    Ok(())
}

/// How long a comma-separated list of index names in a request path may be:
/// Elasticsearch refuses a request line over 4096 bytes (`http.max_initial_line_length`),
/// and a templated `index` can route a run to many indices of up to 255 bytes each.
const MAX_NAME_LIST_BYTES: usize = 3000;

/// The path-encoded `names`, comma-joined in groups of at most `max_bytes` (a single
/// name longer than that is a group of its own).
fn name_lists(names: &[String], max_bytes: usize) -> Vec<String> {
    let mut lists: Vec<String> = Vec::new();
    let mut current = String::new();
    for name in names {
        let name = encode(name);
        if !current.is_empty() && current.len() + 1 + name.len() > max_bytes {
            lists.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&name);
    }
    if !current.is_empty() {
        lists.push(current);
    }
    lists
}

/// An index name as a path segment (names cannot hold `/`, but may hold `%`, `#`, ...).
pub fn encode(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(owner: Option<&str>, created: bool, docs: u64) -> IndexState {
        IndexState {
            name: "idx".into(),
            existed: !created,
            created,
            owner: owner.map(str::to_owned),
            owner_deletes_stale: owner.map(|_| true),
            docs_at_start: docs,
            mapping: None,
        }
    }

    #[test]
    fn a_new_marker_keeps_the_fields_the_owner_recorded_but_not_another_pipelines() {
        let mut held = state(Some("p"), false, 1);
        held.mapping =
            Some(json!({"_meta": {"other": 1, META_KEY: {"pipeline": "p", "delete_stale": true, "alias": "a"}}}));
        let meta = marked_meta(&held, "p", false);
        assert_eq!(meta["other"], 1);
        assert_eq!(
            meta[META_KEY],
            json!({"pipeline": "p", "delete_stale": false, "alias": "a"})
        );
        let meta = marked_meta(&held, "q", true);
        assert_eq!(meta[META_KEY], json!({"pipeline": "q", "delete_stale": true}));
    }

    #[test]
    fn default_mapping_types_the_default_document() {
        let m = default_mappings("users", true);
        assert_eq!(m["_meta"]["redis_connector"]["pipeline"], "users");
        assert_eq!(m["_meta"]["redis_connector"]["delete_stale"], true);
        assert_eq!(m["properties"]["key"]["type"], "keyword");
        assert_eq!(m["properties"]["key"]["ignore_above"], 8191);
        assert_eq!(m["properties"]["value"]["type"], "text");
        assert_eq!(m["properties"]["value"]["fields"]["keyword"]["ignore_above"], 256);
        assert_eq!(m["properties"]["database"]["type"], "integer");
        assert_eq!(m["properties"]["size_in_bytes"]["type"], "long");
        assert_eq!(m["properties"]["_timestamp"]["type"], "date");
    }

    #[test]
    fn creation_adds_the_marker_to_the_pipelines_own_mappings() {
        let mappings = json!({"properties": {"age": {"type": "integer"}}, "_meta": {"team": "x"}});
        let settings = json!({"number_of_shards": 1});
        let body = creation_body(Some(&settings), Some(&mappings), true, "p", true);
        assert_eq!(body["settings"]["number_of_shards"], 1);
        assert_eq!(body["mappings"]["properties"]["age"]["type"], "integer");
        assert_eq!(body["mappings"]["_meta"]["team"], "x");
        assert_eq!(body["mappings"]["_meta"]["redis_connector"]["pipeline"], "p");
        assert_eq!(body["mappings"]["_meta"]["redis_connector"]["delete_stale"], true);
        assert_eq!(
            body["mappings"]["properties"]["_content_hash"],
            json!({"type": "keyword", "index": false})
        );
        let body = creation_body(None, None, false, "p", false);
        assert_eq!(
            body,
            json!({"mappings": {
                "_meta": {"redis_connector": {"pipeline": "p", "delete_stale": false}},
                "properties": {"_content_hash": {"type": "keyword", "index": false}}
            }})
        );
    }

    #[test]
    fn stale_deletion_only_touches_indices_of_this_pipeline() {
        assert!(stale_deletion_allowed(&state(Some("p"), false, 10), "p").is_ok());
        assert!(stale_deletion_allowed(&state(None, true, 0), "p").is_ok());
        assert!(stale_deletion_allowed(&state(None, false, 0), "p").is_ok());
        let other = stale_deletion_allowed(&state(Some("q"), false, 10), "p").unwrap_err();
        assert!(other.contains("belongs to pipeline `q`"), "{other}");
        let foreign = stale_deletion_allowed(&state(None, false, 5), "p").unwrap_err();
        assert!(foreign.contains("already held 5 documents"), "{foreign}");
    }

    #[test]
    fn the_marker_suggested_or_added_keeps_the_rest_of_meta() {
        let mut foreign = state(None, false, 5);
        foreign.mapping = Some(json!({"_meta": {"team": "search"}, "properties": {}}));
        assert_eq!(
            marked_meta(&foreign, "p", true),
            json!({"team": "search", "redis_connector": {"pipeline": "p", "delete_stale": true}})
        );
        let message = stale_deletion_allowed(&foreign, "p").unwrap_err();
        assert!(
            message.ends_with(
                r#"PUT idx/_mapping {"_meta":{"team":"search","redis_connector":{"pipeline":"p","delete_stale":true}}}"#
            ),
            "{message}"
        );
        assert_eq!(
            marked_meta(&state(None, false, 0), "p", false),
            json!({"redis_connector": {"pipeline": "p", "delete_stale": false}})
        );
    }

    #[test]
    fn without_stale_deletion_an_index_another_pipeline_keeps_exact_is_refused() {
        // Unmarked, or marked by this pipeline: fine.
        assert!(writing_allowed(&state(None, false, 10), "p").is_ok());
        assert!(writing_allowed(&state(Some("p"), false, 10), "p").is_ok());
        // Another pipeline's index that it does not keep exact: shared, fine.
        let mut shared = state(Some("q"), false, 10);
        shared.owner_deletes_stale = Some(false);
        assert!(writing_allowed(&shared, "p").is_ok());
        let message = writing_allowed(&state(Some("q"), false, 10), "p").unwrap_err();
        assert_eq!(
            message,
            "index idx belongs to pipeline `q`, which keeps it exact with delete_stale \
             (its _meta.redis_connector.delete_stale): documents this pipeline writes there would be \
             deleted as stale by `q`'s next run, so nothing was written; write to another index, or \
             merge the two pipelines into one"
        );
        // A marker written before delete_stale was recorded: refused, and says so.
        let mut legacy = state(Some("q"), false, 10);
        legacy.owner_deletes_stale = None;
        let message = writing_allowed(&legacy, "p").unwrap_err();
        assert!(
            message.contains("written before the marker recorded delete_stale"),
            "{message}"
        );
    }

    #[test]
    fn refreshed_names_are_grouped_to_fit_a_request_line() {
        let names: Vec<String> = (0..20).map(|i| format!("{}-{i:02}", "x".repeat(240))).collect();
        let lists = name_lists(&names, MAX_NAME_LIST_BYTES);
        assert_eq!(lists.len(), 2);
        assert!(lists.iter().all(|l| l.len() <= MAX_NAME_LIST_BYTES));
        assert_eq!(lists.join(","), names.join(","), "every name, in order");
        assert_eq!(name_lists(&["a".into(), "b#c".into()], 3000), ["a,b%23c"]);
        assert!(name_lists(&[], 3000).is_empty());
        assert_eq!(name_lists(&["abcdef".into(), "g".into()], 3), ["abcdef", "g"]);
    }

    #[test]
    fn index_names_are_path_encoded() {
        assert_eq!(encode("redis-0"), "redis-0");
        assert_eq!(encode("a#b"), "a%23b");
    }
}
