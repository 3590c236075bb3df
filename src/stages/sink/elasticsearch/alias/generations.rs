//! The indices built behind an alias over time ("generations"): moving the alias in
//! one `_aliases` request, marking a build complete, finding the builds a pipeline
//! owns, deleting those beyond `keep_previous`, ending a build (the swap and its
//! guard), and `alias rollback`.

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::{current, Case, Plan, ALIAS_KEY, COMPLETE_KEY};
use crate::stages::sink::elasticsearch::http::client::EsClient;
use crate::stages::sink::elasticsearch::setup::index::{self, encode, META_KEY};

/// Moves (or creates) `alias` onto `to` in one `_aliases` request; removing it from
/// `from` requires it to be there still (`must_exist`), so an alias someone else moved
/// meanwhile fails the swap rather than leaving two indices behind it.
pub async fn swap(client: &EsClient, alias: &str, from: Option<&str>, to: &str) -> anyhow::Result<()> {
    let mut actions = Vec::new();
    if let Some(from) = from {
        actions.push(json!({ "remove": { "index": from, "alias": alias, "must_exist": true } }));
    }
    actions.push(json!({ "add": { "index": to, "alias": alias, "is_write_index": true } }));
    let body = json!({ "actions": actions });
    client
        .json_call(
            Method::Post,
            "_aliases",
            &body,
            &format!("POST _aliases (moving alias {alias} to {to})"),
        )
        .await?;
    Ok(())
}

/// Marks `name`, a build that finished, complete in its ownership marker (`PUT
/// <index>/_mapping` with its `_meta`, the rest of which is kept).
async fn mark_complete(client: &EsClient, name: &str) -> anyhow::Result<()> {
    let Some(state) = index::inspect(client, name).await? else {
        anyhow::bail!("index {name} is gone: the alias was not moved to it");
    };
    let mut meta = state
        .mapping
        .as_ref()
        .map(|m| m["_meta"].clone())
        .unwrap_or(Value::Null);
    if let Some(Value::Object(marker)) = meta.get_mut(META_KEY) {
        marker.insert(COMPLETE_KEY.to_owned(), Value::Bool(true));
    }
    let body = json!({ "_meta": meta });
    client
        .json_call(
            Method::Put,
            &format!("{}/_mapping", encode(name)),
            &body,
            &format!("PUT {name}/_mapping (marking the build complete)"),
        )
        .await?;
    Ok(())
}

/// One index built for an alias: its name, creation date in milliseconds, and
/// whether its build finished (the alias was moved to it).
#[derive(Debug, Clone)]
pub struct Generation {
    pub name: String,
    pub created: u64,
    pub complete: bool,
}

/// The concrete indices built for `alias` that carry `pipeline`'s marker, oldest
/// first (by creation date).
pub async fn generations(client: &EsClient, alias: &str, pipeline: &str) -> anyhow::Result<Vec<Generation>> {
    let pattern = format!("{}-*", encode(alias));
    let reply = client
        .request(
            Method::Get,
            &format!("{pattern}/_mapping?filter_path=*.mappings._meta.{META_KEY}"),
            None,
        )
        .await
        .map_err(anyhow::Error::msg)?;
    if reply.status != 200 {
        return Err(client.status_error(
            &reply,
            &format!("GET {alias}-*/_mapping (finding the indices built for the alias)"),
        ));
    }
    let mappings = reply.json()?;
    let reply = client
        .request(
            Method::Get,
            &format!("{pattern}/_settings?filter_path=*.settings.index.creation_date"),
            None,
        )
        .await
        .map_err(anyhow::Error::msg)?;
    if reply.status != 200 {
        return Err(client.status_error(&reply, &format!("GET {alias}-*/_settings (their creation dates)")));
    }
    let settings = reply.json()?;
    let mut found: Vec<Generation> = mappings
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| {
            let marker = &v["mappings"]["_meta"][META_KEY];
            marker["pipeline"].as_str() == Some(pipeline) && marker[ALIAS_KEY].as_str() == Some(alias)
        })
        .map(|(name, v)| {
            let created = settings[name]["settings"]["index"]["creation_date"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let complete = v["mappings"]["_meta"][META_KEY][COMPLETE_KEY].as_bool() == Some(true);
            Generation {
                name: name.clone(),
                created,
                complete,
            }
        })
        .collect();
    found.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(found)
}

/// Deletes the indices built for `alias` by `pipeline` other than `current` beyond
/// the `keep` newest complete ones: older complete builds and every build that never
/// finished (never `current`, never an index without the marker). Returns the names
/// deleted.
pub async fn prune(
    client: &EsClient,
    alias: &str,
    pipeline: &str,
    current: &str,
    keep: usize,
) -> anyhow::Result<Vec<String>> {
    let older: Vec<Generation> = generations(client, alias, pipeline)
        .await?
        .into_iter()
        .filter(|g| g.name != current)
        .collect();
    let complete = older.iter().filter(|g| g.complete).count();
    let mut complete_seen = 0;
    let doomed: Vec<String> = older
        .into_iter()
        .filter(|g| {
            if !g.complete {
                return true;
            }
            complete_seen += 1;
            complete_seen + keep <= complete
        })
        .map(|g| g.name)
        .collect();
    let mut deleted = Vec::new();
    for name in doomed {
        let reply = client
            .request(Method::Delete, &encode(&name), None)
            .await
            .map_err(anyhow::Error::msg)?;
        if reply.status != 200 && reply.status != 404 {
            return Err(client.status_error(&reply, &format!("DELETE {name} (an index beyond keep_previous)")));
        }
        deleted.push(name);
    }
    Ok(deleted)
}

/// How a run behind an alias ended, as far as the swap is concerned.
pub struct Ending<'a> {
    pub pipeline: &'a str,
    /// Why the alias must stay where it is (the run failed, was interrupted, a
    /// document failed); `None` when the build is complete.
    pub blocked: Option<String>,
    /// `delete_stale.max_fraction`: the new index may hold at most this fraction fewer
    /// documents than the live one.
    pub max_fraction: f64,
    pub allow_mass_delete: bool,
    pub keep_previous: usize,
}

/// Ends a build: when complete and within the guard, moves the alias onto the new
/// index and deletes the indices beyond `keep_previous`. Returns the notes for the
/// summary and the error that keeps the alias where it is, if any.
pub async fn finish_build(
    client: &EsClient,
    plan: &Plan,
    ending: Ending<'_>,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let from = match &plan.case {
        Case::InPlace => return Ok((Vec::new(), None)),
        Case::First => None,
        Case::Rebuild { from, .. } => Some(from.name.as_str()),
    };
    let left = match from {
        Some(from) => format!("alias {} left on {from}", plan.alias),
        None => format!("alias {} not created", plan.alias),
    };
    if let Some(reason) = ending.blocked {
        let next = if plan.target_complete {
            "syncs"
        } else {
            "resumes the build of"
        };
        return Ok((
            Vec::new(),
            Some(format!(
                "{left}: {reason}; the next run {next} {} (change-aware: it writes only what is missing or changed)",
                plan.target
            )),
        ));
    }
    index::refresh(client, std::slice::from_ref(&plan.target)).await?;
    let new = index::count(client, &plan.target).await?;
    let old = match from {
        Some(from) => index::count(client, from).await?,
        None => 0,
    };
    let lost = old.saturating_sub(new);
    if old > 0 && lost as f64 > ending.max_fraction * old as f64 && !ending.allow_mass_delete {
        return Ok((
            Vec::new(),
            Some(format!(
                "{left}: the new index {} holds {new} documents, {lost} fewer than the {old} of {} ({:.1}%, over delete_stale.max_fraction {}); check the pipeline, or move it with --allow-mass-delete",
                plan.target,
                from.unwrap_or_default(),
                lost as f64 * 100.0 / old as f64,
                ending.max_fraction
            )),
        ));
    }
    mark_complete(client, &plan.target).await?;
    swap(client, &plan.alias, from, &plan.target).await?;
    let mut notes = vec![match from {
        Some(from) => format!(
            "moved alias {} from {from} ({old} documents) to {} ({new} documents)",
            plan.alias, plan.target
        ),
        None => format!("created alias {} on {} ({new} documents)", plan.alias, plan.target),
    }];
    let deleted = prune(client, &plan.alias, ending.pipeline, &plan.target, ending.keep_previous).await?;
    if !deleted.is_empty() {
        notes.push(format!(
            "deleted {} (beyond keep_previous: {})",
            deleted.join(", "),
            ending.keep_previous
        ));
    }
    Ok((notes, None))
}

/// Points `alias` back at the newest index built for it by `pipeline` before the one
/// it points at now. Returns what was done, in words; with `dry_run`, what would be
/// done, changing nothing.
pub async fn rollback(client: &EsClient, alias: &str, pipeline: &str, dry_run: bool) -> anyhow::Result<String> {
    let Some(live) = current(client, alias, pipeline).await? else {
        anyhow::bail!("alias {alias} does not exist: there is nothing to roll back");
    };
    let built = generations(client, alias, pipeline).await?;
    let live_created = built
        .iter()
        .find(|g| g.name == live.name)
        .map(|g| g.created)
        .unwrap_or(u64::MAX);
    // Only a build that finished: one abandoned midway holds part of the documents.
    let previous = built
        .iter()
        .rfind(|g| g.name != live.name && g.complete && g.created <= live_created)
        .map(|g| g.name.clone());
    let Some(previous) = previous else {
        anyhow::bail!(
            "alias {alias} points to {}, and no older index built for it by pipeline `{pipeline}` is kept \
             (sink.keep_previous keeps that many after each swap): nothing was changed",
            live.name
        );
    };
    let docs = index::count(client, &previous).await?;
    if dry_run {
        return Ok(format!(
            "alias {alias}: would move from {} ({} documents) to {previous} ({docs} documents); nothing was \
             changed (dry run)",
            live.name, live.docs_at_start
        ));
    }
    swap(client, alias, Some(&live.name), &previous).await?;
    Ok(format!(
        "alias {alias}: moved from {} ({} documents) to {previous} ({docs} documents). The next run of pipeline \
         `{pipeline}` moves it to the index of the pipeline file as it is then: revert the file to stay on {previous}",
        live.name, live.docs_at_start
    ))
}
