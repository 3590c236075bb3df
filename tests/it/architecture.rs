//! `docs/ARCHITECTURE.md` names every source file: a file added (or renamed) without
//! a line there fails here, so the map a new engineer reads is the tree as it is.

use crate::support::repo_root;

/// Folders the map describes in one line, without listing their files.
const SUMMARISED: [&str; 5] = [
    "src/templating",
    "src/config/yaml",
    "src/config/model",
    "src/stages/transform/template",
    "src/stages/sink/elasticsearch/alias",
];

fn rust_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_architecture_map_names_every_source_file() {
    let root = repo_root();
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    // A file is named when its file name stands as a word of the map: at the start of
    // an entry, after a `/`, or in backquotes.
    let named = |name: &str| {
        map.lines().any(|line| {
            line.split(|c: char| c.is_whitespace() || matches!(c, '`' | ',' | '/' | '(' | ')'))
                .any(|word| word == name)
        })
    };
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut missing = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let summarised = SUMMARISED
            .iter()
            .any(|folder| relative.starts_with(&format!("{folder}/")));
        if matches!(name.as_str(), "mod.rs" | "lib.rs" | "main.rs") || summarised {
            continue;
        }
        if !named(&name) {
            missing.push(relative);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name these source files: add a line for each under its folder:\n{}",
        missing.join("\n")
    );
}
