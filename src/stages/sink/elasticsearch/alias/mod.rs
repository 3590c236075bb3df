//! Writing behind an alias (`sink.alias`): documents go to a concrete index
//! `ALIAS-<fingerprint>` and searches use the alias.
//!
//! The fingerprint covers what shapes the index: the pipeline fingerprint (the
//! document template, see [`crate::config::fingerprint`]), the sink's `mappings` and
//! its `settings`. Each part is recorded in the concrete index's ownership marker
//! (`_meta.redis_connector.fingerprint`), so a run tells which one changed.
//!
//! A run finds one of three cases ([`Case`]): no alias yet (build the first index),
//! the alias on the index of the current fingerprint (change-aware sync in place), or
//! on another one (build the new index by a full sync while the old one keeps
//! serving). A build swaps the alias in one `_aliases` request only after a complete
//! run with no failure and a document count within the guard; then older indices
//! this pipeline owns beyond `keep_previous` are deleted. A build that failed or was
//! interrupted leaves the alias where it was; the next run finds the same index name
//! (the fingerprint did not change) and resumes into it, change-aware. A build is
//! marked complete (`_meta.redis_connector.complete`) before the alias moves to it:
//! `keep_previous` and `alias rollback` count complete builds only, so an abandoned
//! build (the file changed again before it finished) is never kept in place of an
//! index that served, nor rolled back to.
//!
//! Names are fingerprints rather than a sequence: the name of a build is known before
//! it starts and the same for every run of the same pipeline, so resuming needs no
//! state, and going back to an earlier pipeline file finds its index if it is kept.

use elasticsearch::http::Method;
use serde_json::{json, Value};
use xxhash_rust::xxh3::Xxh3;

use super::http::client::EsClient;
use super::setup::index::{self, encode, IndexState, META_KEY};

mod generations;
mod inventory;
pub use generations::{finish_build, generations, prune, rollback, swap, Ending, Generation};
pub use inventory::{inventory, AliasInventory, BuiltIndex};

/// The marker's key for the fingerprints, and for the alias the index was built for.
const FINGERPRINT_KEY: &str = "fingerprint";
const ALIAS_KEY: &str = "alias";
/// The marker's key set on a build that finished (the alias was moved to it).
const COMPLETE_KEY: &str = "complete";
/// The marker's key for the top-level fields the pipeline file's `mappings` named
/// (the index's mapping also holds the fields Elasticsearch added dynamically).
const FILE_FIELDS_KEY: &str = "file_fields";

/// What shapes an index built behind an alias, each part hashed apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprints {
    /// The pipeline fingerprint (document template and encoding).
    pub documents: u64,
    pub mappings: u64,
    pub settings: u64,
}

impl Fingerprints {
    /// The parts for a pipeline fingerprint and the sink's `mappings` and `settings`.
    pub fn new(documents: u64, mappings: Option<&Value>, settings: Option<&Value>) -> Fingerprints {
        let hash = |value: Option<&Value>| {
            let mut hasher = Xxh3::new();
            hasher.update(value.map(Value::to_string).unwrap_or_default().as_bytes());
            hasher.digest()
        };
        Fingerprints {
            documents,
            mappings: hash(mappings),
            settings: hash(settings),
        }
    }

    /// The three parts as one number.
    pub fn combined(&self) -> u64 {
        let mut hasher = Xxh3::new();
        for part in [self.documents, self.mappings, self.settings] {
            hasher.update(&part.to_le_bytes());
        }
        hasher.digest()
    }

    /// The concrete index of `alias` for these fingerprints: `ALIAS-` and 8 hex digits.
    pub fn index_name(&self, alias: &str) -> String {
        format!("{alias}-{:08x}", self.combined() >> 32)
    }

    /// The form kept in the marker.
    fn to_meta(self) -> Value {
        json!({
            "index": format!("{:016x}", self.combined()),
            "documents": format!("{:016x}", self.documents),
            "mappings": format!("{:016x}", self.mappings),
            "settings": format!("{:016x}", self.settings),
        })
    }

    /// Reads the marker's form back; `None` when a part is missing.
    fn from_meta(meta: &Value) -> Option<Fingerprints> {
        let part = |name: &str| u64::from_str_radix(meta[name].as_str()?, 16).ok();
        Some(Fingerprints {
            documents: part("documents")?,
            mappings: part("mappings")?,
            settings: part("settings")?,
        })
    }

    /// What differs from `other`, in words (`mappings`, `settings`, `document template`).
    fn changed_from(&self, other: &Fingerprints) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.mappings != other.mappings {
            changed.push("mappings");
        }
        if self.settings != other.settings {
            changed.push("settings");
        }
        if self.documents != other.documents {
            changed.push("document template");
        }
        changed
    }
}

/// The marker fields a concrete index behind `alias` carries beside the ownership
/// marker's own: the alias, the fingerprints, and the top-level fields of the file's
/// `mappings`.
pub fn marker_fields(
    alias: &str,
    fingerprints: Fingerprints,
    config_mappings: Option<&Value>,
) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    fields.insert(ALIAS_KEY.to_owned(), json!(alias));
    fields.insert(FINGERPRINT_KEY.to_owned(), fingerprints.to_meta());
    let names: Vec<&String> = config_mappings
        .and_then(|m| m["properties"].as_object())
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    fields.insert(FILE_FIELDS_KEY.to_owned(), json!(names));
    fields
}

/// Adds `fields` to the ownership marker of an index creation body
/// ([`index::creation_body`]).
pub fn mark_creation_body(body: &mut Value, fields: &serde_json::Map<String, Value>) {
    if let Some(Value::Object(marker)) = body.pointer_mut(&format!("/mappings/_meta/{META_KEY}")) {
        marker.extend(fields.clone());
    }
}

/// Which case a run behind an alias is in.
#[derive(Debug, Clone, PartialEq)]
pub enum Case {
    /// The alias does not exist: build its first index, then create the alias.
    First,
    /// The alias points at the index of the current fingerprint: change-aware sync there.
    InPlace,
    /// The alias points at `from`, built for other fingerprints: build the new index
    /// and move the alias. `changed` says what differs.
    Rebuild { from: IndexState, changed: Vec<String> },
}

/// What a run behind an alias does, decided before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub alias: String,
    /// The concrete index this run writes to.
    pub target: String,
    pub case: Case,
    /// Documents the target already held (a build resumed); `None` when it does not exist.
    pub resumed_with: Option<u64>,
    /// Whether the target is a build that finished (the alias pointed at it before:
    /// it was rolled back, or moved by hand).
    pub target_complete: bool,
}

impl Plan {
    /// The sentence that says what this run does (`would` in a dry run).
    pub fn describe(&self, dry_run: bool) -> String {
        let (build, create, move_) = if dry_run {
            ("would build", "would create", "move")
        } else {
            ("building", "then creating", "then moving")
        };
        if let (Case::Rebuild { from, .. }, Some(docs), true) = (&self.case, self.resumed_with, self.target_complete) {
            return format!(
                "alias {} points to {} ({} documents), not to {}, the index built for this pipeline as it is \
                 (the alias was rolled back, or moved by hand): {} {} change-aware ({docs} documents; only what \
                 changed since it served is written) and {} the alias back to it",
                self.alias,
                from.name,
                from.docs_at_start,
                self.target,
                if dry_run { "would sync" } else { "syncing" },
                self.target,
                if dry_run { "move" } else { "then moving" },
            );
        }
        let how = match self.resumed_with {
            Some(docs) => format!(
                "{} {} (it holds {docs} documents from a build that did not finish: change-aware, only what is missing or changed is written)",
                if dry_run { "would resume" } else { "resuming" },
                self.target
            ),
            None => format!("{build} {} from scratch", self.target),
        };
        match &self.case {
            Case::First => format!("alias {} does not exist: {how}, {create} the alias", self.alias),
            Case::InPlace => format!(
                "alias {} points to {}, built for this pipeline as it is: change-aware sync in place",
                self.alias, self.target
            ),
            Case::Rebuild { from, changed } => format!(
                "{}: {how} and {move_} the alias {} from {} ({} documents)",
                changed.join("; "),
                self.alias,
                from.name,
                from.docs_at_start
            ),
        }
    }
}

impl super::ElasticsearchSink {
    /// With `sink.alias`: what a run of `pipeline` would do behind it now (nothing is
    /// written; the sink needs its fingerprint set, as `pipeline::build` does).
    /// `None` without an alias.
    pub async fn alias_plan(&self, pipeline: &str) -> anyhow::Result<Option<Plan>> {
        let Some(alias) = &self.config.alias else {
            return Ok(None);
        };
        let fingerprints = Fingerprints::new(
            self.fingerprint,
            self.config.mappings.as_ref(),
            self.config.settings.as_ref(),
        );
        let client = self.connect()?;
        plan(&client, alias, fingerprints, self.config.mappings.as_ref(), pipeline)
            .await
            .map(Some)
    }
}

/// Live mode's follow phases write through `alias` itself (to its write index; see
/// `live/rebuild.rs`): checks that it exists and points at an index of `pipeline`,
/// so that a write never creates an index of that name.
pub async fn check_follow_target(client: &EsClient, alias: &str, pipeline: &str) -> anyhow::Result<()> {
    match current(client, alias, pipeline).await? {
        Some(_) => Ok(()),
        None => anyhow::bail!(
            "alias {alias} does not exist (deleted while following?): changes are not applied until a sync \
             builds its index again"
        ),
    }
}

/// Decides the case for `alias`, checking ownership before anything is written: the
/// index the alias points at and the target index must both carry `pipeline`'s marker.
pub async fn plan(
    client: &EsClient,
    alias: &str,
    fingerprints: Fingerprints,
    config_mappings: Option<&Value>,
    pipeline: &str,
) -> anyhow::Result<Plan> {
    let target = fingerprints.index_name(alias);
    let live = current(client, alias, pipeline).await?;
    let target_state = index::inspect(client, &target).await?;
    if let Some(state) = &target_state {
        owned(state, pipeline, &format!("the index alias {alias} is built into"))?;
    }
    let resumed_with = target_state.as_ref().map(|s| s.docs_at_start);
    let target_complete = target_state
        .as_ref()
        .and_then(|s| s.mapping.as_ref())
        .is_some_and(|m| m["_meta"][META_KEY][COMPLETE_KEY].as_bool() == Some(true));
    let case = match live {
        None => Case::First,
        Some(live) if live.name == target => Case::InPlace,
        Some(live) => {
            let recorded = live
                .mapping
                .as_ref()
                .and_then(|m| Fingerprints::from_meta(&m["_meta"][META_KEY][FINGERPRINT_KEY]));
            let changed = match recorded {
                None => vec![format!("{} records no fingerprint", live.name)],
                Some(recorded) => fingerprints
                    .changed_from(&recorded)
                    .into_iter()
                    .map(|part| match (part, config_mappings, &live.mapping) {
                        ("mappings", Some(wanted), Some(held)) => {
                            let fields = mapping_changes(held, wanted);
                            if fields.is_empty() {
                                "mappings changed".to_owned()
                            } else {
                                format!("mappings changed ({})", fields.join(", "))
                            }
                        }
                        _ => format!("{part} changed"),
                    })
                    .collect(),
            };
            Case::Rebuild { from: live, changed }
        }
    };
    // In place, the target is the live index: nothing is resumed.
    let resumed_with = if case == Case::InPlace { None } else { resumed_with };
    Ok(Plan {
        alias: alias.to_owned(),
        target,
        case,
        resumed_with,
        target_complete,
    })
}

/// The index `alias` points at, checked to be `pipeline`'s; `None` when there is no
/// such alias. An index (not an alias) of that name, an alias over several indices,
/// or one over an index this pipeline does not own is an error.
pub async fn current(client: &EsClient, alias: &str, pipeline: &str) -> anyhow::Result<Option<IndexState>> {
    let reply = client
        .request(Method::Get, &format!("_alias/{}", encode(alias)), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let names: Vec<String> = match reply.status {
        200 => reply
            .json()?
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        404 => Vec::new(),
        _ => return Err(client.status_error(&reply, &format!("GET _alias/{alias}"))),
    };
    match names.as_slice() {
        [] => match index::inspect(client, alias).await? {
            Some(state) => anyhow::bail!(
                "{alias} is an index ({} documents), not an alias: sink.alias needs the name free for the alias; \
                 nothing was written. Reindex it into {alias}-<anything> and delete it, or use another alias name",
                state.docs_at_start
            ),
            None => Ok(None),
        },
        [name] => {
            let state = index::inspect(client, name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("alias {alias} points to {name}, which cannot be read"))?;
            owned(&state, pipeline, &format!("alias {alias} points to it"))?;
            Ok(Some(state))
        }
        many => anyhow::bail!(
            "alias {alias} points to {} indices ({}): redis-connector moves an alias over one index; nothing was \
             written. Remove the alias from all but one with POST _aliases",
            many.len(),
            many.join(", ")
        ),
    }
}

/// An error unless `state` carries `pipeline`'s marker.
fn owned(state: &IndexState, pipeline: &str, why: &str) -> anyhow::Result<()> {
    match state.owner.as_deref() {
        Some(owner) if owner == pipeline => Ok(()),
        Some(owner) => anyhow::bail!(
            "index {} ({why}) belongs to pipeline `{owner}` (its _meta.{META_KEY}.pipeline), not `{pipeline}`: \
             nothing was written; use another alias name",
            state.name
        ),
        None => anyhow::bail!(
            "index {} ({why}) was not created by redis-connector (no _meta.{META_KEY}.pipeline marker): \
             pipeline `{pipeline}` neither writes to it nor moves the alias off it; nothing was written. \
             Use another alias name",
            state.name
        ),
    }
}

/// The top-level fields whose mapping differs between the index's `held` mapping and
/// the pipeline's `wanted` one: `count: keyword -> integer`, `+added`, `-removed`.
/// A field is reported removed only when the file that built the index named it (its
/// marker's `file_fields`): one Elasticsearch mapped dynamically, from a document,
/// was never in the file. An index built before the marker listed them reports no
/// removal.
pub fn mapping_changes(held: &Value, wanted: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let held_fields = held["properties"].as_object().unwrap_or(&empty);
    let wanted_fields = wanted["properties"].as_object().unwrap_or(&empty);
    let kind = |v: &Value| v["type"].as_str().unwrap_or("object").to_owned();
    let mut changes = Vec::new();
    for (name, want) in wanted_fields {
        match held_fields.get(name) {
            None => changes.push(format!("+{name}: {}", kind(want))),
            Some(have) if kind(have) != kind(want) => changes.push(format!("{name}: {} -> {}", kind(have), kind(want))),
            Some(_) => {}
        }
    }
    let file_fields: Vec<&str> = held["_meta"][META_KEY][FILE_FIELDS_KEY]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in held_fields.keys() {
        if !wanted_fields.contains_key(name) && file_fields.contains(&name.as_str()) {
            changes.push(format!("-{name}"));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_changes_the_index_name_and_is_named_when_it_differs() {
        let mappings = json!({"properties": {"n": {"type": "keyword"}}});
        let base = Fingerprints::new(1, Some(&mappings), None);
        assert_eq!(
            base.index_name("a"),
            Fingerprints::new(1, Some(&mappings), None).index_name("a")
        );
        assert_eq!(base.index_name("a").len(), "a-".len() + 8);
        let other_mappings = Fingerprints::new(1, Some(&json!({"properties": {"n": {"type": "integer"}}})), None);
        let other_settings = Fingerprints::new(1, Some(&mappings), Some(&json!({"number_of_shards": 2})));
        let other_documents = Fingerprints::new(2, Some(&mappings), None);
        for (other, part) in [
            (other_mappings, "mappings"),
            (other_settings, "settings"),
            (other_documents, "document template"),
        ] {
            assert_ne!(other.index_name("a"), base.index_name("a"));
            assert_eq!(other.changed_from(&base), vec![part]);
        }
        assert_eq!(Fingerprints::from_meta(&base.to_meta()), Some(base));
    }

    #[test]
    fn mapping_changes_name_the_fields() {
        let held = json!({
            "_meta": {META_KEY: {FILE_FIELDS_KEY: ["n", "old"]}},
            "properties": {"n": {"type": "keyword"}, "old": {"type": "text"}, "_content_hash": {"type": "keyword"}}
        });
        let wanted = json!({"properties": {"n": {"type": "integer"}, "new": {"type": "long"}}});
        assert_eq!(
            mapping_changes(&held, &wanted),
            vec!["n: keyword -> integer", "+new: long", "-old"]
        );
    }

    #[test]
    fn a_field_mapped_dynamically_is_not_reported_removed() {
        // `source` came from the documents, not from the file's mappings.
        let held = json!({
            "_meta": {META_KEY: {FILE_FIELDS_KEY: ["n"]}},
            "properties": {"n": {"type": "keyword"}, "source": {"type": "text"}}
        });
        let wanted = json!({"properties": {"n": {"type": "integer"}}});
        assert_eq!(mapping_changes(&held, &wanted), vec!["n: keyword -> integer"]);
        // An index whose marker does not list the file's fields reports no removal.
        let older = json!({"properties": {"n": {"type": "keyword"}, "source": {"type": "text"}}});
        assert_eq!(mapping_changes(&older, &wanted), vec!["n: keyword -> integer"]);
    }

    #[test]
    fn the_marker_fields_join_the_ownership_marker() {
        let mut body = index::creation_body(None, None, true, "p", false);
        let mappings = json!({"properties": {"n": {"type": "keyword"}}});
        mark_creation_body(
            &mut body,
            &marker_fields("a", Fingerprints::new(1, None, None), Some(&mappings)),
        );
        let marker = &body["mappings"]["_meta"][META_KEY];
        assert_eq!(marker["pipeline"], "p");
        assert_eq!(marker["alias"], "a");
        assert!(marker["fingerprint"]["index"].is_string());
        assert_eq!(marker[FILE_FIELDS_KEY], json!(["n"]));
    }
}
