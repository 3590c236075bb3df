//! The order of the crate's layers, kept by a test: a module imports only the layers
//! below its own, so `config` (the bottom of the domain code) can be read, tested and
//! changed without the stages, the executor or `serve`.
//!
//! Top to bottom: `cli` -> `serve` -> `live` -> `pipeline` -> `stages` ->
//! `templating` -> `config` -> the small shared pieces (`record`, `document`,
//! `shutdown`, `redact`, `dead_letter`, `stats`, `json_out`, `backoff`), which may
//! use each other. The test reads every file under `src/` and checks each
//! `crate::` path outside comments against this order.

/// The layers, top first; a module of one layer may import the layers after it.
/// Shared pieces are one layer: they may import each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["serve"],
    &["live"],
    &["pipeline"],
    &["stages"],
    &["templating"],
    &["config"],
    &[
        "record",
        "document",
        "shutdown",
        "redact",
        "dead_letter",
        "stats",
        "json_out",
        "backoff",
    ],
];

/// The rank of a top-level module (0 for `cli`), `None` for files outside the layers
/// (`lib.rs`, `main.rs`, this file).
fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The text of one source line without its `//` comment (doc comments included:
/// an intra-doc link is not an import). A `//` inside a string literal is rare in
/// this crate's import lines and would only hide the rest of that line.
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The top-level modules a file's code names through `crate::`, with the line (1-based)
/// and its text: `crate::config::model::Pipeline` and `use crate::{config, stages::Sink}`.
fn imports(text: &str) -> Vec<(String, usize, String)> {
    let mut found = Vec::new();
    let mut in_group: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let code = code_of(line);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if after.starts_with('{') {
                in_group = Some((index + 1, line.trim().to_owned()));
            } else if !name.is_empty() {
                found.push((name, index + 1, line.trim().to_owned()));
            }
            rest = after;
        }
        if let Some((start, first)) = &in_group {
            let group = code.split_once("crate::{").map_or(code, |(_, inside)| inside);
            for part in group.split([',', '{', '}', ';']) {
                let name = part.trim().split("::").next().unwrap_or_default();
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') && name != "self" {
                    found.push((name.to_owned(), *start, first.clone()));
                }
            }
            if code.contains(';') {
                in_group = None;
            }
        }
    }
    found
}

mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// Every `.rs` file under `folder`, sorted.
    fn rust_files(folder: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut folders = vec![folder.to_path_buf()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("src/ is readable") {
                let path = entry.expect("src/ is readable").path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn no_module_imports_a_layer_above_its_own() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for file in rust_files(&src) {
            let relative = file.strip_prefix(&src).expect("under src/");
            let top = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|name| name.trim_end_matches(".rs").to_owned())
                .unwrap_or_default();
            let Some(own) = rank(&top) else { continue };
            let text = std::fs::read_to_string(&file).expect("a source file is UTF-8");
            for (name, line, code) in imports(&text) {
                if name == top {
                    continue;
                }
                if let Some(other) = rank(&name) {
                    if other < own || (other == own && LAYERS[own].len() == 1) {
                        wrong.push(format!(
                            "src/{}:{line}: `{top}` imports `{name}`, a layer above it: {code}",
                            relative.display()
                        ));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layer order ({}):\n{}",
            LAYERS
                .iter()
                .map(|layer| layer.join("/"))
                .collect::<Vec<_>>()
                .join(" -> "),
            wrong.join("\n")
        );
    }

    #[test]
    fn every_top_level_module_has_a_layer() {
        let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
        for line in lib.lines() {
            let code = code_of(line).trim();
            let Some(name) = code.strip_suffix(';').and_then(|c| c.rsplit(' ').next()) else {
                continue;
            };
            if code.contains("mod ") && name != "layers" {
                assert!(
                    rank(name).is_some(),
                    "src/lib.rs: module `{name}` has no place in LAYERS (src/layers.rs)"
                );
            }
        }
    }

    #[test]
    fn an_import_above_is_reported_with_its_line() {
        let text = "//! doc naming crate::cli\nuse crate::config::model::Pipeline;\nuse crate::{\n    pipeline::Stages,\n    record::Record,\n};\n";
        let names: Vec<(String, usize)> = imports(text).into_iter().map(|(n, l, _)| (n, l)).collect();
        assert_eq!(
            names,
            vec![
                ("config".to_owned(), 2),
                ("pipeline".to_owned(), 3),
                ("record".to_owned(), 3)
            ]
        );
    }
}
