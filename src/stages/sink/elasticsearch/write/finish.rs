//! The end of a run: a complete run that wrote nothing still creates its fixed index;
//! stale documents are deleted (only after a complete run with nothing failed before
//! an id was known), per index in scope, from the change-aware map or by reading the
//! index's ids (`stale.rs` does the reading and deleting); the indices written are
//! refreshed; an alias build is ended (`alias/generations.rs`); and the report is made.

use anyhow::Context as _;

use super::super::alias;
use super::super::reconcile::content_hash::IndexHashes;
use super::super::reconcile::stale::{self, Mode};
use super::super::setup::index::{self, IndexState};
use super::super::ElasticsearchSink;
use super::indices::IndexEntry;
use super::running::Running;
use crate::stages::{SinkReport, StageContext, UpstreamOutcome};

impl ElasticsearchSink {
    /// Ends the run: deletes stale documents when the run was complete and nothing
    /// failed fatally, refreshes, and reports.
    pub(crate) async fn finish_run(
        mut self,
        upstream: UpstreamOutcome,
        ctx: &StageContext,
    ) -> anyhow::Result<SinkReport> {
        if let Some(drift) = ctx.drift.clone() {
            return self.finish_verify(&drift, upstream, ctx).await;
        }
        let mut running = self.running.take().context("the Elasticsearch sink was not opened")?;
        let snapshot = ctx.counters.snapshot();
        let dry_run = ctx.options.dry_run;
        let mut report = SinkReport {
            written: snapshot.out,
            failed: snapshot.failed,
            ..SinkReport::default()
        };
        report.notes.push(running.server.clone());
        report.notes.append(&mut running.notes);
        if let Some(reason) = &running.dry_offline {
            report.notes.push(format!(
                "Elasticsearch could not check the documents ({reason}): they were checked offline against \
                 the mapping, for type clashes only"
            ));
        }
        let mut errors = Vec::new();

        self.create_fixed_index_if_unwritten(&mut running, &upstream, ctx)
            .await?;
        if dry_run {
            for entry in running.indices.iter() {
                report.notes.push(describe_for_dry_run(&entry.state));
            }
        }
        // A live mode follow phase wrote changed keys only: nothing tells stale
        // documents from the others (its syncs delete them).
        if self.config.delete_stale.enabled && !running.following {
            self.delete_stale_if_safe(&mut running, &upstream, ctx, &mut report, &mut errors)
                .await?;
        }

        if self.config.refresh && !dry_run && running.fatal.is_none() {
            let names: Vec<String> = running
                .indices
                .iter()
                .filter(|entry| entry.written || entry.state.created)
                .map(|entry| entry.state.name.clone())
                .collect();
            index::refresh(running.client(), &names).await?;
        }

        report.unchanged = snapshot.unchanged;
        report.new = Some(running.new);
        report.changed = Some(running.changed);
        report.rewritten = running.rewritten;
        report.notes.extend(summary_notes(&running, ctx));
        // The summary names the dead-letter file of rejected documents once, with the
        // count: no note repeats it here.
        report.targets = running.indices.written().map(str::to_owned).collect();
        if let (true, Some(name)) = (report.targets.is_empty(), self.fixed_index()) {
            report.targets.push(name.to_owned());
        }
        if let (Some(plan), false) = (&self.alias_plan, dry_run) {
            let blocked = alias_blocked(&running, &upstream, ctx, &report, &errors);
            let ending = alias::Ending {
                pipeline: &ctx.pipeline,
                blocked,
                max_fraction: self.config.delete_stale.max_fraction,
                allow_mass_delete: ctx.options.allow_mass_delete,
                keep_previous: self.config.keep_previous as usize,
            };
            let (notes, error) = alias::finish_build(running.client(), plan, ending).await?;
            report.notes.extend(notes);
            errors.extend(error);
        }
        report.targets.sort();
        if !errors.is_empty() {
            report.error = Some(errors.join("; "));
        }
        Ok(report)
    }

    /// Deletes the stale documents, unless the run failed, did not read everything, or
    /// had records fail before their id was known (a note says why it was skipped).
    async fn delete_stale_if_safe(
        &self,
        running: &mut Running,
        upstream: &UpstreamOutcome,
        ctx: &StageContext,
        report: &mut SinkReport,
        errors: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if running.fatal.is_some() {
            report.notes.push("stale deletion skipped: the run failed".to_owned());
        } else if !upstream.complete || ctx.cancel.is_cancelled() {
            report
                .notes
                .push("stale deletion skipped: the run did not read everything".to_owned());
        } else if ctx.failed_before_sink.without_id() > 0 {
            report.notes.push(format!(
                "stale deletion skipped: {} records failed before their document id was rendered, \
                 so what earlier runs wrote for their keys cannot be told from stale documents",
                ctx.failed_before_sink.without_id()
            ));
        } else {
            self.delete_stale(running, ctx, report, errors).await?;
        }
        Ok(())
    }

    /// A complete run that found nothing still leaves its fixed index in place (a run
    /// that failed or was interrupted before any document creates nothing).
    async fn create_fixed_index_if_unwritten(
        &self,
        running: &mut Running,
        upstream: &UpstreamOutcome,
        ctx: &StageContext,
    ) -> anyhow::Result<()> {
        let Some(name) = self.fixed_index().filter(|_| !ctx.options.dry_run) else {
            return Ok(());
        };
        let read_everything = upstream.complete && !ctx.cancel.is_cancelled();
        if !read_everything || running.fatal.is_some() || running.indices.contains(name) {
            return Ok(());
        }
        let mut body = index::creation_body(
            self.config.settings.as_ref(),
            self.config.mappings.as_ref(),
            !self.rendered_documents.unwrap_or(false),
            &ctx.pipeline,
            self.config.delete_stale.enabled,
        );
        if let Some(fields) = &running.marker_fields {
            alias::mark_creation_body(&mut body, fields);
        }
        index::create(running.client(), name, &body).await?;
        running.indices.add(IndexState {
            name: name.to_owned(),
            existed: false,
            created: true,
            owner: Some(ctx.pipeline.to_string()),
            owner_deletes_stale: Some(self.config.delete_stale.enabled),
            docs_at_start: 0,
            mapping: None,
        });
        Ok(())
    }

    /// Deletes the stale documents of every index in scope (the run was complete).
    async fn delete_stale(
        &self,
        running: &mut Running,
        ctx: &StageContext,
        report: &mut SinkReport,
        errors: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let fixed = self.fixed_index();
        let unknown = ctx.failed_before_sink.skipped_without_id();
        if unknown > 0 {
            report.notes.push(format!(
                "{unknown} keys the source skipped have no rendered id: documents earlier runs \
                 wrote for them are deleted as stale"
            ));
        }
        // Records a template could not render, and keys the source skipped (too
        // large, ...), still exist in Redis: keep their documents, in whichever index
        // they are.
        for hash in ctx.failed_before_sink.id_hashes() {
            running.ids.insert_anywhere_hash(hash);
        }
        // Documents routed per document (a templated `index`, in the sink or in a
        // template transform): also cover the indices earlier runs of this pipeline
        // wrote to and this run did not (their keys are all gone). A run that wrote
        // nothing cannot tell routing is used: it checks only the sink's own index,
        // which errs on the side of deleting nothing.
        let routed = fixed.is_none() || running.indices.written().any(|name| Some(name) != fixed);
        if routed {
            for name in index::owned_by(running.client(), &ctx.pipeline).await? {
                if !running.indices.contains(&name) {
                    if let Some(state) = index::inspect(running.client(), &name).await? {
                        running.indices.add(state);
                    }
                }
            }
        }
        for entry in running.indices.iter() {
            let state = &entry.state;
            let owned = state.owner.as_deref() == Some(&*ctx.pipeline);
            let in_scope = entry.written || Some(state.name.as_str()) == fixed || (routed && owned);
            if !in_scope || !(state.existed || state.created) {
                continue;
            }
            if let Err(message) = index::stale_deletion_allowed(state, &ctx.pipeline) {
                errors.push(message);
                continue;
            }
            if let Some(map) = &entry.hashes {
                self.delete_stale_from_map(running, &state.name, map, ctx, report, errors)
                    .await?;
            } else if !state.created {
                // (An index created by this run holds only this run's documents.)
                self.delete_stale_by_scan(running, entry, ctx, report, errors).await?;
            }
        }
        Ok(())
    }

    /// Change-aware: the map read before the first write says which ids no document
    /// of this run produced; no second read of ids.
    async fn delete_stale_from_map(
        &self,
        running: &Running,
        name: &str,
        map: &IndexHashes,
        ctx: &StageContext,
        report: &mut SinkReport,
        errors: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let stale_entries = map.unseen(|key| running.ids.kept_anywhere(key));
        let (found, total) = (stale_entries.len() as u64, map.len() as u64);
        report.stale_found += found;
        let max_fraction = self.config.delete_stale.max_fraction;
        let guard = stale::guard_message(name, found, total, max_fraction);
        if ctx.options.dry_run {
            report.notes.extend(dry_run_stale_note(found, total, name));
            // The words the real run would stop with.
            if let (Some(guard), false) = (guard, ctx.options.allow_mass_delete) {
                errors.push(guard);
            }
        } else if let (Some(message), false) = (guard, ctx.options.allow_mass_delete) {
            errors.push(message);
        } else if found > 0 {
            index::refresh(running.client(), &[name.to_owned()]).await?;
            let chunk = self.config.bulk.max_docs as usize;
            let outcome = stale::delete_by_hash(&running.service, name, &stale_entries, chunk).await?;
            report.deleted_stale += outcome.deleted;
            errors.extend(outcome.errors);
            if outcome.deleted > 0 {
                report.notes.push(format!(
                    "deleted {} stale documents of {total} from index {name}",
                    outcome.deleted
                ));
            }
        }
        Ok(())
    }

    /// Without a map: reads every id of the index and finds those this run did not
    /// produce; deletes them (as found with `--allow-mass-delete`, else once all are
    /// counted and the guard allows), or, in a dry run, counts them.
    async fn delete_stale_by_scan(
        &self,
        running: &Running,
        entry: &IndexEntry,
        ctx: &StageContext,
        report: &mut SinkReport,
        errors: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let name = &entry.state.name;
        let dry_run = ctx.options.dry_run;
        if !dry_run {
            index::refresh(running.client(), std::slice::from_ref(name)).await?;
        }
        let max_fraction = self.config.delete_stale.max_fraction;
        let mode = if dry_run {
            Mode::Count
        } else if ctx.options.allow_mass_delete {
            Mode::DeleteAsFound
        } else {
            Mode::Collect { max_fraction }
        };
        let deleted_before = report.deleted_stale;
        let scan = stale::scan(&running.service, name, &running.ids, mode).await?;
        report.stale_found += scan.stale;
        let guard = stale::guard_message(name, scan.stale, scan.total, max_fraction);
        match mode {
            Mode::Count => {
                report.notes.extend(dry_run_stale_note(scan.stale, scan.total, name));
                // The words the real run would stop with.
                if let (Some(guard), false) = (guard, ctx.options.allow_mass_delete) {
                    errors.push(guard);
                }
            }
            Mode::DeleteAsFound => {
                report.deleted_stale += scan.deleted;
                errors.extend(scan.errors);
            }
            Mode::Collect { .. } => match guard {
                Some(message) => errors.push(message),
                None => {
                    let chunk = self.config.bulk.max_docs as usize;
                    let (deleted, failures) =
                        stale::delete_in_chunks(&running.service, name, &scan.held, chunk).await?;
                    report.deleted_stale += deleted;
                    errors.extend(failures);
                }
            },
        }
        let deleted_here = report.deleted_stale - deleted_before;
        if deleted_here > 0 {
            report.notes.push(format!(
                "deleted {deleted_here} stale documents of {} from index {name}",
                scan.total
            ));
        }
        Ok(())
    }
}

/// Why an alias build must not be ended by moving the alias: the run failed, did not
/// read everything, had failures or errors; `None` when nothing blocks it.
fn alias_blocked(
    running: &Running,
    upstream: &UpstreamOutcome,
    ctx: &StageContext,
    report: &SinkReport,
    errors: &[String],
) -> Option<String> {
    if let Some(fatal) = &running.fatal {
        Some(format!("the run failed ({fatal})"))
    } else if !upstream.complete || ctx.cancel.is_cancelled() {
        Some("the run did not read everything".to_owned())
    } else if report.failed > 0 {
        Some(format!("{} documents failed", report.failed))
    } else if ctx.failed_before_sink.without_id() > 0 || !ctx.failed_before_sink.id_hashes().is_empty() {
        Some("records failed before the sink".to_owned())
    } else if !errors.is_empty() {
        Some("the run reported errors".to_owned())
    } else {
        None
    }
}

/// A dry run's note on an index: whether it exists, with how many documents, whose.
fn describe_for_dry_run(state: &IndexState) -> String {
    match (&state.existed, &state.owner) {
        (false, _) => format!("index {} does not exist: a real run would create it", state.name),
        (true, Some(owner)) => format!(
            "index {} exists with {} documents (written by pipeline `{owner}`)",
            state.name, state.docs_at_start
        ),
        (true, None) => format!("index {} exists with {} documents", state.name, state.docs_at_start),
    }
}

/// The summary's notes on change-aware sync, `--full`, repeated ids and retries.
fn summary_notes(running: &Running, ctx: &StageContext) -> Vec<String> {
    let mut notes = Vec::new();
    let maps: Vec<&IndexHashes> = running.indices.iter().filter_map(|e| e.hashes.as_ref()).collect();
    if !maps.is_empty() {
        let bytes: usize = maps.iter().map(|map| map.memory_bytes()).sum();
        notes.push(format!(
            "compared with the (_id, content hash) of {} documents read from {} {} in {:.2} s \
             ({:.1} MB in memory)",
            running.map_documents,
            maps.len(),
            if maps.len() == 1 { "index" } else { "indices" },
            running.map_seconds,
            bytes as f64 / 1e6
        ));
    }
    if ctx.options.full && !ctx.options.dry_run {
        notes.push("--full: every document was rewritten, whatever its content hash".to_owned());
    }
    notes.extend(running.repeated.notes());
    let (requests, items) = running.service.retries.get();
    if requests > 0 || items > 0 {
        notes.push(format!(
            "retried {requests} bulk requests and {items} documents Elasticsearch rejected with 429"
        ));
    }
    notes
}

/// The dry run's note on the stale documents of one index; none when no document is
/// stale (the summary's "stale documents that would be deleted: 0" says it).
fn dry_run_stale_note(found: u64, total: u64, name: &str) -> Option<String> {
    (found > 0).then(|| format!("{found} of {total} documents in index {name} are stale: a real run would delete them"))
}
