//! The field reference of the user guide (`docs/src/reference.md`) is generated from
//! the JSON Schema by `scripts/pipeline-reference`: these tests fail when the page
//! checked in differs from what the generator prints for the schema as it is, and
//! when a field of the schema is missing from the page.

use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str = "regenerate it with `scripts/pipeline-reference > docs/src/reference.md` and commit it";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// What the generator prints for the schema as it is.
fn generated() -> String {
    let script = repo().join("scripts/pipeline-reference");
    let output = Command::new("python3")
        .arg(&script)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|error| panic!("cannot run python3 {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the generator prints UTF-8")
}

#[test]
fn the_checked_in_reference_is_what_the_schema_generates() {
    let expected = generated();
    let checked_in = read(&repo().join("docs/src/reference.md"));
    if checked_in == expected {
        return;
    }
    let first_difference = checked_in
        .lines()
        .zip(expected.lines())
        .enumerate()
        .find(|(_, (have, want))| have != want)
        .map(|(i, (have, want))| format!("line {}:\n  checked in: {have}\n  generated:  {want}", i + 1))
        .unwrap_or_else(|| {
            format!(
                "the checked-in page has {} lines, the generator prints {}",
                checked_in.lines().count(),
                expected.lines().count()
            )
        });
    panic!("docs/src/reference.md differs from what schemas/pipeline.schema.json generates: {REGENERATE}.\nFirst difference, {first_difference}");
}

/// Every property the schema declares, anywhere, by name.
fn property_names(value: &serde_json::Value, names: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                names.extend(properties.keys().cloned());
            }
            for child in map.values() {
                property_names(child, names);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| property_names(item, names)),
        _ => {}
    }
}

#[test]
fn every_field_of_the_schema_has_a_row_in_the_reference() {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&repo().join("schemas/pipeline.schema.json"))).expect("the schema is JSON");
    let page = generated();
    let mut names = Vec::new();
    property_names(&schema, &mut names);
    names.sort();
    names.dedup();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !page.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "fields of the schema with no row in the generated reference: {missing:?}"
    );
}
