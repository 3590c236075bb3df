//! What a cluster holds behind aliases (`alias list`, `alias status`): every index
//! a pipeline built for an alias, found by its ownership marker, with the index the
//! alias serves from, each build's fingerprint, whether it finished, its documents
//! and its size. Reads only.

use std::collections::BTreeMap;

use elasticsearch::http::Method;
use serde::Serialize;
use serde_json::Value;

use super::{ALIAS_KEY, COMPLETE_KEY, FINGERPRINT_KEY};
use crate::stages::sink::elasticsearch::client::EsClient;
use crate::stages::sink::elasticsearch::index::{self, encode, META_KEY};

/// One index built for an alias.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltIndex {
    pub name: String,
    /// The alias points to it.
    pub serving: bool,
    /// Its build finished (the alias was moved to it once); an unfinished build holds
    /// only part of the documents.
    pub complete: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The fingerprint it was built for (16 hex digits), as its marker records it.
    pub fingerprint: Option<String>,
    /// Documents it holds.
    pub documents: u64,
    /// Bytes its primary shards take on disk.
    pub size_bytes: u64,
}

/// The indices one pipeline built for one alias, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct AliasInventory {
    pub alias: String,
    pub pipeline: String,
    /// The index the alias points to now; `None` when it points to none of them (not
    /// created yet, or moved by hand).
    pub serving: Option<String>,
    pub indices: Vec<BuiltIndex>,
}

/// What was built for aliases on the cluster: every alias when `only` is `None`,
/// else the one alias of that name (its indices are `ALIAS-*`). Sorted by alias.
pub async fn inventory(client: &EsClient, only: Option<&str>) -> anyhow::Result<Vec<AliasInventory>> {
    let pattern = match only {
        Some(alias) => format!("{}-*", encode(alias)),
        None => "*".to_owned(),
    };
    let markers = get(
        client,
        &format!("{pattern}/_mapping?filter_path=*.mappings._meta.{META_KEY}"),
        "the indices built for aliases",
    )
    .await?;
    // index name -> (alias, pipeline, marker)
    let mut built: BTreeMap<String, (String, String, Value)> = BTreeMap::new();
    for (name, entry) in markers.as_object().into_iter().flatten() {
        let marker = &entry["mappings"]["_meta"][META_KEY];
        if let (Some(alias), Some(pipeline)) = (marker[ALIAS_KEY].as_str(), marker["pipeline"].as_str()) {
            if only.is_none_or(|wanted| wanted == alias) {
                built.insert(name.clone(), (alias.to_owned(), pipeline.to_owned(), marker.clone()));
            }
        }
    }
    if built.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = built.keys().map(|n| encode(n)).collect();
    let names = names.join(",");
    let settings = get(
        client,
        &format!("{names}/_settings?filter_path=*.settings.index.creation_date"),
        "their creation dates",
    )
    .await?;
    let stats = get(
        client,
        &format!("{names}/_stats/store?filter_path=indices.*.primaries.store.size_in_bytes"),
        "their sizes",
    )
    .await?;
    let aliases = get(client, &format!("{names}/_alias"), "the aliases pointing to them").await?;

    let mut grouped: BTreeMap<(String, String), AliasInventory> = BTreeMap::new();
    for (name, (alias, pipeline, marker)) in built {
        let serving = aliases[&name]["aliases"].get(&alias).is_some();
        let index = BuiltIndex {
            serving,
            complete: marker[COMPLETE_KEY].as_bool() == Some(true),
            created_ms: settings[&name]["settings"]["index"]["creation_date"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            fingerprint: marker[FINGERPRINT_KEY]["index"].as_str().map(str::to_owned),
            documents: index::count(client, &name).await?,
            size_bytes: stats["indices"][&name]["primaries"]["store"]["size_in_bytes"]
                .as_u64()
                .unwrap_or(0),
            name,
        };
        let entry = grouped
            .entry((alias.clone(), pipeline.clone()))
            .or_insert_with(|| AliasInventory {
                alias,
                pipeline,
                serving: None,
                indices: Vec::new(),
            });
        if index.serving {
            entry.serving = Some(index.name.clone());
        }
        entry.indices.push(index);
    }
    let mut found: Vec<AliasInventory> = grouped.into_values().collect();
    for entry in &mut found {
        entry
            .indices
            .sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
    }
    Ok(found)
}

/// `GET path`, its JSON body; `what` says what was read, for the error.
async fn get(client: &EsClient, path: &str, what: &str) -> anyhow::Result<Value> {
    let reply = client
        .request(Method::Get, path, None)
        .await
        .map_err(anyhow::Error::msg)?;
    match reply.status {
        200 => Ok(reply.json()?),
        // No index matched a pattern that names some (`users-*` and no build yet).
        404 => Ok(Value::Object(serde_json::Map::new())),
        _ => {
            let path = path.split('?').next().unwrap_or(path);
            Err(client.status_error(&reply, &format!("GET {path} (reading {what})")))
        }
    }
}
