//! With a fixed `index:` (no alias), the pipeline's `mappings` against the mapping of
//! the index that already exists: fields the index lacks are added with a put-mapping
//! (`PUT <index>/_mapping`, which only ever adds), and a field whose type differs is
//! named in a note (a warning in a dry run) that points to `sink.alias`, since
//! Elasticsearch cannot change a field's type in place: only a rebuild into a new
//! index applies it. Without this, edits to `mappings` were silently ignored once the
//! index existed.
//!
//! Compared: the fields under `properties` (recursively through objects and nested
//! fields) and their `type`. Other parameters of an existing field (an analyzer, a
//! multi-field) are not compared: Elasticsearch reports them in its own words when
//! they cannot be merged, and an alias rebuild applies them.

use elasticsearch::http::Method;
use serde_json::{json, Map, Value};

use super::super::write::running::Running;
use super::index::encode;
use crate::config::model::ElasticsearchSinkConfig;
use crate::stages::StageContext;

/// How the pipeline's mappings differ from an index's.
#[derive(Debug, Default, PartialEq)]
pub struct MappingDiff {
    /// The fields the index lacks, as a put-mapping body (`{"properties": ...}`);
    /// `None` when it lacks none.
    pub additions: Option<Value>,
    /// Their paths (`address.city`), in the file's order.
    pub added: Vec<String>,
    /// Fields whose type differs.
    pub conflicts: Vec<Conflict>,
}

/// A field whose type in the pipeline's mappings is not the index's.
#[derive(Debug, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub in_file: String,
    pub in_index: String,
}

/// Compares the pipeline's `mappings` with an index's (both `mappings` objects).
pub fn diff(file: &Value, index: &Value) -> MappingDiff {
    let mut out = MappingDiff::default();
    let mut additions = Map::new();
    compare(&file["properties"], &index["properties"], "", &mut additions, &mut out);
    if !additions.is_empty() {
        out.additions = Some(json!({ "properties": additions }));
    }
    out
}

/// Compares two `properties` objects, putting what `index` lacks into `additions`.
fn compare(file: &Value, index: &Value, prefix: &str, additions: &mut Map<String, Value>, out: &mut MappingDiff) {
    let Some(fields) = file.as_object() else { return };
    for (name, wanted) in fields {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(held) = index.get(name) else {
            additions.insert(name.clone(), wanted.clone());
            out.added.push(path);
            continue;
        };
        let (in_file, in_index) = (type_of(wanted), type_of(held));
        if in_file != in_index {
            out.conflicts.push(Conflict {
                field: path,
                in_file: in_file.to_owned(),
                in_index: in_index.to_owned(),
            });
            continue;
        }
        if matches!(in_file, "object" | "nested") {
            let mut inner = Map::new();
            compare(&wanted["properties"], &held["properties"], &path, &mut inner, out);
            if !inner.is_empty() {
                let mut object = Map::new();
                if in_file == "nested" {
                    object.insert("type".into(), json!("nested"));
                }
                object.insert("properties".into(), Value::Object(inner));
                additions.insert(name.clone(), Value::Object(object));
            }
        }
    }
}

/// A field's type: its `type`, or `object` (a field with `properties` and no type).
fn type_of(field: &Value) -> &str {
    field["type"].as_str().unwrap_or("object")
}

/// The note on a type the index cannot take in place.
fn conflict_note(conflict: &Conflict, index: &str) -> String {
    format!(
        "field `{}` is `{}` in the pipeline's mappings but `{}` in index {index}: Elasticsearch cannot change \
         a field's type in place, so the index keeps `{}`; to apply the change, rebuild the index behind an \
         alias (set `sink.alias`, see docs/src/safety.md)",
        conflict.field, conflict.in_file, conflict.in_index, conflict.in_index
    )
}

/// Adds `diff`'s fields to `mapping` (the index's, as this run knows it).
fn merge(mapping: &mut Value, additions: &Value) {
    let (Some(target), Some(added)) = (mapping.as_object_mut(), additions.as_object()) else {
        return;
    };
    for (key, value) in added {
        match (target.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, value),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

impl Running {
    /// Brings an existing index's mapping in step with the pipeline's `mappings` (see
    /// the module's doc): with a fixed `index` and no alias, not in a follow phase
    /// (its sync did it). The outcome is a note; a put-mapping Elasticsearch refuses
    /// is a note and a warning, not a failed run (the documents are written with the
    /// mapping the index has, as before).
    pub async fn update_mapping(
        &mut self,
        position: usize,
        config: &ElasticsearchSinkConfig,
        ctx: &StageContext,
    ) -> anyhow::Result<()> {
        let Some(wanted) = config
            .mappings
            .as_ref()
            .filter(|_| config.alias.is_none() && !ctx.options.follow)
        else {
            return Ok(());
        };
        let state = &self.indices.get(position).state;
        let Some(held) = state.mapping.as_ref() else {
            return Ok(());
        };
        let name = state.name.clone();
        let diff = diff(wanted, held);
        let dry_run = ctx.options.dry_run;
        for conflict in &diff.conflicts {
            let note = conflict_note(conflict, &name);
            tracing::warn!(pipeline = %ctx.pipeline, index = %name, "{note}");
            self.notes.push(if dry_run { format!("warning: {note}") } else { note });
        }
        let Some(additions) = diff.additions else {
            return Ok(());
        };
        let fields = diff.added.join(", ");
        if dry_run {
            self.notes.push(format!(
                "a real run would add {fields} to the mapping of index {name} (in the pipeline's mappings, \
                 not in the index)"
            ));
            return Ok(());
        }
        let reply = self
            .client()
            .json_call(
                Method::Put,
                &format!("{}/_mapping", encode(&name)),
                &additions,
                &format!("PUT {name}/_mapping (adding the pipeline's new fields)"),
            )
            .await;
        match reply {
            Ok(_) => {
                tracing::info!(pipeline = %ctx.pipeline, index = %name, "added {fields} to the mapping");
                self.notes.push(format!(
                    "added {fields} to the mapping of index {name} (in the pipeline's mappings, not in the index)"
                ));
                if let Some(mapping) = self.indices.get_mut(position).state.mapping.as_mut() {
                    merge(mapping, &additions);
                }
            }
            Err(error) => {
                let note = format!(
                    "could not add {fields} to the mapping of index {name}: {error:#}; documents are written with \
                     the mapping the index has (rebuild it behind an alias, `sink.alias`, to apply the file's)"
                );
                tracing::warn!(pipeline = %ctx.pipeline, index = %name, "{note}");
                self.notes.push(note);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_the_index_lacks_are_added_and_nothing_else() {
        let file = json!({"properties": {
            "name": {"type": "text"},
            "age": {"type": "integer"},
            "address": {"properties": {"city": {"type": "keyword"}, "zip": {"type": "keyword"}}},
            "tags": {"type": "nested", "properties": {"label": {"type": "keyword"}}}
        }});
        let index = json!({"_meta": {"redis_connector": {}}, "properties": {
            "name": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
            "address": {"properties": {"city": {"type": "keyword"}}},
            "tags": {"type": "nested", "properties": {}}
        }});
        let found = diff(&file, &index);
        assert_eq!(found.added, ["age", "address.zip", "tags.label"]);
        assert_eq!(
            found.additions,
            Some(json!({"properties": {
                "age": {"type": "integer"},
                "address": {"properties": {"zip": {"type": "keyword"}}},
                "tags": {"type": "nested", "properties": {"label": {"type": "keyword"}}}
            }}))
        );
        assert!(found.conflicts.is_empty());
        assert_eq!(diff(&file, &file), MappingDiff::default(), "the same mapping: nothing");
    }

    #[test]
    fn a_changed_type_is_a_conflict_naming_the_field() {
        let file =
            json!({"properties": {"age": {"type": "keyword"}, "address": {"properties": {"zip": {"type": "long"}}}}});
        let index = json!({"properties": {"age": {"type": "long"}, "address": {"type": "keyword"}}});
        let found = diff(&file, &index);
        assert_eq!(found.additions, None);
        assert_eq!(
            found.conflicts,
            [
                Conflict {
                    field: "age".into(),
                    in_file: "keyword".into(),
                    in_index: "long".into()
                },
                Conflict {
                    field: "address".into(),
                    in_file: "object".into(),
                    in_index: "keyword".into()
                }
            ]
        );
        assert_eq!(
            conflict_note(&found.conflicts[0], "users"),
            "field `age` is `keyword` in the pipeline's mappings but `long` in index users: Elasticsearch cannot \
             change a field's type in place, so the index keeps `long`; to apply the change, rebuild the index \
             behind an alias (set `sink.alias`, see docs/src/safety.md)"
        );
    }

    #[test]
    fn added_fields_are_merged_into_the_known_mapping() {
        let mut mapping = json!({"properties": {"address": {"properties": {"city": {"type": "keyword"}}}}});
        merge(
            &mut mapping,
            &json!({"properties": {"age": {"type": "integer"}, "address": {"properties": {"zip": {"type": "keyword"}}}}}),
        );
        assert_eq!(
            mapping,
            json!({"properties": {
                "address": {"properties": {"city": {"type": "keyword"}, "zip": {"type": "keyword"}}},
                "age": {"type": "integer"}
            }})
        );
    }
}
