//! Checks the pipeline's own `settings` and `mappings` with Elasticsearch before any
//! key is read, in a dry run and at the start of a real run, so a mistake such as
//! `type: strng` fails at once with Elasticsearch's own reason rather than after
//! reading every key.
//!
//! How: `POST /_index_template/_simulate` with a template holding exactly the index
//! body a run would create. Elasticsearch builds the index's settings and mapper
//! service from it, as index creation does, and answers with the same reason creation
//! would give (`mapper_parsing_exception: ... The mapper type [strng] declared on field
//! [age] does not exist ...`), while creating nothing: no index, no template, no
//! cluster-state change, nothing to clean up if the process dies. It is in the server
//! itself, so the stripped 9.2.8 distribution has it (a throwaway index would work too,
//! but it writes to the cluster, which a dry run must not do, and needs the right to
//! delete indices). The template's pattern is a name no index has and its priority the
//! highest, so no existing template is composed with it: what is checked is the
//! pipeline's own body. Credentials without the `manage_index_templates` privilege
//! cannot simulate: the check is then skipped with a note, and the body is checked
//! when the index is created.

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::super::http::client::EsClient;

/// What the check found.
pub enum Checked {
    /// Elasticsearch accepts the body.
    Accepted,
    /// The credentials may not simulate templates: not checked (the reason, for a note).
    NotAllowed(String),
}

/// Asks Elasticsearch whether it would create an index from `body` (`settings` and
/// `mappings`). An error carries Elasticsearch's own reason.
pub async fn check(client: &EsClient, body: &Value) -> anyhow::Result<Checked> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut template = json!({});
    for part in ["settings", "mappings"] {
        if let Some(value) = body.get(part) {
            template[part] = value.clone();
        }
    }
    let request = json!({
        "index_patterns": [format!("redis-connector-creation-check-{nanos}")],
        "priority": i64::MAX,
        "template": template,
    });
    let bytes = bytes::Bytes::from(serde_json::to_vec(&request)?);
    let reply = client
        .request(
            Method::Post,
            "_index_template/_simulate",
            Some((bytes, "application/json")),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    match reply.status {
        200 => Ok(Checked::Accepted),
        400 => {
            let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            anyhow::bail!(
                "Elasticsearch would refuse to create the index from the sink's settings and mappings: {}",
                deepest_reason(&answer["error"]).unwrap_or_else(|| reply.error_summary())
            )
        }
        403 => Ok(Checked::NotAllowed(reply.error_summary())),
        _ => Err(client.status_error(
            &reply,
            "POST _index_template/_simulate (checking the sink's settings and mappings)",
        )),
    }
}

/// The innermost `caused_by` of an error: the reason index creation gives (the outer
/// ones speak of the simulated template).
fn deepest_reason(error: &Value) -> Option<String> {
    let mut current = error;
    while current["caused_by"].is_object() {
        current = &current["caused_by"];
    }
    match (current["type"].as_str(), current["reason"].as_str()) {
        (Some(ty), Some(reason)) => Some(format!("{ty}: {reason}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_cause_is_the_reason() {
        let error = json!({
            "type": "illegal_argument_exception",
            "reason": "composable template [simulate_template_x] template after composition is invalid",
            "caused_by": {"type": "illegal_argument_exception", "reason": "invalid composite mappings",
                "caused_by": {"type": "mapper_parsing_exception", "reason": "The mapper type [strng] declared on field [a] does not exist."}}
        });
        assert_eq!(
            deepest_reason(&error).unwrap(),
            "mapper_parsing_exception: The mapper type [strng] declared on field [a] does not exist."
        );
        let flat =
            json!({"type": "invalid_index_template_exception", "reason": "unknown setting [index.number_of_shardz]"});
        assert_eq!(
            deepest_reason(&flat).unwrap(),
            "invalid_index_template_exception: unknown setting [index.number_of_shardz]"
        );
    }
}
