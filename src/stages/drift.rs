//! What `verify` finds: the documents the pipeline would write now that the index
//! lacks (missing) or holds with another content (different), and those the index
//! holds that the pipeline would not write (extra), counted, with a few samples of
//! each. A sink that compares fills it in a verifying run ([`StageContext::drift`]);
//! the `verify` command reports it.
//!
//! [`StageContext::drift`]: super::StageContext::drift

use std::sync::Mutex;

use serde::Serialize;

/// One kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// The pipeline would write the document; the index does not hold its id.
    Missing,
    /// The index holds the id with another content hash (or none).
    Different,
    /// The index holds an id the pipeline would not write.
    Extra,
}

/// One document found drifting: where, its id, and its key when known (an extra
/// document's key is read from its `key` field, when it has one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftSample {
    pub index: String,
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<u32>,
}

/// The counts and samples of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftCount {
    pub count: u64,
    pub samples: Vec<DriftSample>,
}

/// Everything a verifying run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    pub missing: DriftCount,
    pub different: DriftCount,
    pub extra: DriftCount,
    /// Documents the compared indices held.
    pub indexed: u64,
}

impl DriftReport {
    /// Whether the index holds exactly what the pipeline would write.
    pub fn exact(&self) -> bool {
        self.missing.count == 0 && self.different.count == 0 && self.extra.count == 0
    }

    /// Drifting documents of every kind.
    pub fn total(&self) -> u64 {
        self.missing.count + self.different.count + self.extra.count
    }
}

/// The collector a verifying run fills (shared by the run's stages).
#[derive(Debug)]
pub struct Drift {
    samples: usize,
    report: Mutex<DriftReport>,
}

impl Drift {
    /// A collector keeping up to `samples` samples of each kind.
    pub fn new(samples: usize) -> Drift {
        Drift {
            samples,
            report: Mutex::new(DriftReport::default()),
        }
    }

    /// How many samples of each kind are kept.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Counts `count` drifting documents of `kind`, keeping the samples `sample` gives
    /// while fewer than the limit are kept (it is called only then).
    pub fn add(&self, kind: DriftKind, count: u64, sample: impl FnOnce(usize) -> Vec<DriftSample>) {
        let mut report = self.lock();
        let limit = self.samples;
        let entry = match kind {
            DriftKind::Missing => &mut report.missing,
            DriftKind::Different => &mut report.different,
            DriftKind::Extra => &mut report.extra,
        };
        entry.count += count;
        let room = limit.saturating_sub(entry.samples.len());
        if room > 0 && count > 0 {
            let mut found = sample(room);
            found.truncate(room);
            entry.samples.extend(found);
        }
    }

    /// Counts the documents an index held.
    pub fn add_indexed(&self, documents: u64) {
        self.lock().indexed += documents;
    }

    /// What was found so far.
    pub fn report(&self) -> DriftReport {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DriftReport> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> DriftSample {
        DriftSample {
            index: "i".into(),
            id: id.into(),
            key: Some(id.into()),
            database: Some(0),
        }
    }

    #[test]
    fn counts_every_document_and_keeps_the_first_samples() {
        let drift = Drift::new(2);
        drift.add(DriftKind::Missing, 1, |_| vec![sample("a")]);
        drift.add(DriftKind::Missing, 1, |_| vec![sample("b")]);
        drift.add(DriftKind::Missing, 1, |_| panic!("no room left: not asked"));
        drift.add(DriftKind::Extra, 5, |room| {
            assert_eq!(room, 2);
            vec![sample("x"), sample("y"), sample("z")]
        });
        let report = drift.report();
        assert_eq!(report.missing.count, 3);
        assert_eq!(report.missing.samples, [sample("a"), sample("b")]);
        assert_eq!(report.extra.count, 5);
        assert_eq!(report.extra.samples.len(), 2);
        assert_eq!(report.total(), 8);
        assert!(!report.exact());
        assert!(DriftReport::default().exact());
    }
}
