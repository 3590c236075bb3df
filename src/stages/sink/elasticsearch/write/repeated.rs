//! Documents that reuse an `_id` this run already wrote. Elasticsearch keeps the last
//! one, so the index ends up with fewer documents than the run wrote: said in the log
//! and in the summary rather than left for the user to find in the counts.
//!
//! Two causes: an `id` template that gives two keys the same id (a mistake in the
//! pipeline, which loses documents), and a key read twice: `SCAN` returned it twice
//! (Redis may, while it resizes its table), or Redis restarted and the scan of its
//! database started over. The same document is written twice; nothing is lost.

use crate::record::{show_key, Record};

/// Warnings logged as they happen; the rest are only counted.
const LOGGED: u64 = 3;

/// Repeated ids seen so far, by cause, with the first of each as an example.
#[derive(Debug, Default)]
pub struct RepeatedIds {
    rendered: u64,
    first_rendered: Option<String>,
    scanned_twice: u64,
    first_scanned_twice: Option<String>,
}

impl RepeatedIds {
    /// Notes that `record` gave `id` in `index` again; `rendered`: the id came from a
    /// template transform (else it is the key's own id); `scan_restarted`: the scan of
    /// the record's database started over after a Redis restart (the cause named).
    pub fn add(&mut self, index: &str, id: &str, rendered: bool, scan_restarted: bool, record: &Record) {
        let key = show_key(&record.key);
        let db = record.database;
        let (count, first, what) = if rendered {
            let what = format!(
                "key `{key}` in db {db} rendered _id `{id}` for index {index}, which an earlier document of this run had: it replaces that document"
            );
            (&mut self.rendered, &mut self.first_rendered, what)
        } else {
            let cause = if scan_restarted {
                format!("was read again after Redis restarted and the scan of db {db} started over")
            } else {
                "was returned twice by SCAN (Redis may do so while it resizes its table)".to_owned()
            };
            let what = format!("key `{key}` in db {db} {cause}: written twice as _id `{id}` in index {index}");
            (&mut self.scanned_twice, &mut self.first_scanned_twice, what)
        };
        *count += 1;
        if *count <= LOGGED {
            tracing::warn!("{what}");
        }
        first.get_or_insert(what);
    }

    /// Lines for the summary (none when no id was repeated).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(first) = &self.first_rendered {
            notes.push(format!(
                "{} documents had the _id of an earlier document of this run and replaced it, so the index holds that many fewer \
                 documents than were written: make the `id` template unique per key (include `{{{{ key }}}}`, or `{{{{ database }}}}` \
                 when several databases are read); the first: {first}",
                self.rendered
            ));
        }
        if let Some(first) = &self.first_scanned_twice {
            notes.push(format!(
                "{} keys were read twice and written twice under the same _id (each is in the index once); the first: {first}",
                self.scanned_twice
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{KeyType, RedisValue};

    fn record(key: &str) -> Record {
        Record {
            database: 2,
            key: key.as_bytes().to_vec(),
            key_type: KeyType::String,
            value: RedisValue::String(b"v".to_vec()),
            size_in_bytes: None,
            ttl: None,
            document: None,
            operation: crate::record::Operation::Upsert,
        }
    }

    #[test]
    fn repeats_are_counted_by_cause_with_the_first_as_example() {
        let mut repeated = RepeatedIds::default();
        assert!(repeated.notes().is_empty());
        repeated.add("users", "a@x.org", true, false, &record("user:2"));
        repeated.add("users", "b@x.org", true, false, &record("user:9"));
        repeated.add("redis", "5f3c", false, false, &record("k\n1"));
        let notes = repeated.notes();
        assert_eq!(notes.len(), 2);
        assert!(
            notes[0].starts_with("2 documents had the _id of an earlier document"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("include `{{ key }}`"), "{}", notes[0]);
        assert!(
            notes[0].ends_with("the first: key `user:2` in db 2 rendered _id `a@x.org` for index users, which an earlier document of this run had: it replaces that document"),
            "{}",
            notes[0]
        );
        assert!(notes[1].starts_with("1 keys were read twice"), "{}", notes[1]);
        assert!(
            notes[1].contains("key `k\\n1` in db 2 was returned twice by SCAN"),
            "{}",
            notes[1]
        );
    }

    #[test]
    fn a_key_read_again_after_a_restart_names_the_restart_not_the_table_resize() {
        let mut repeated = RepeatedIds::default();
        repeated.add("redis", "5f3c", false, true, &record("k1"));
        let notes = repeated.notes();
        assert!(
            notes[0].ends_with(
                "the first: key `k1` in db 2 was read again after Redis restarted and the scan of db 2 started over: written twice as _id `5f3c` in index redis"
            ),
            "{}",
            notes[0]
        );
        assert!(!notes[0].contains("resizes"), "{}", notes[0]);
    }
}
