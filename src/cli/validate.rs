//! `redis-connector validate PATH...`: checks pipeline files offline and prints every
//! problem. Text output is one `file:line:col: error: message (at /pointer)` line per
//! problem (plus, on a terminal, the source line underlined); `--format json` prints
//! one JSON array of `{file, line, column, pointer, message}` and nothing else on
//! standard output. The `N files checked, M invalid` summary goes to standard error.
//! Exit codes: 0 all valid, 1 any invalid, 2 usage error.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::{OutputFormat, ValidateArgs};
use crate::config::{self, Diagnostic};

/// Runs `validate` and returns its exit code.
pub fn execute(args: &ValidateArgs) -> ExitCode {
    let files = match config::discover(&args.paths) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("error: {error}");
            if args.format == OutputFormat::Json {
                super::usage_error_json(&error.to_string());
            }
            return ExitCode::from(2);
        }
    };
    let variables = match config::variables::Variables::new(args.env_file.as_deref(), args.allow_unset) {
        Ok(variables) => variables,
        Err(message) => {
            eprintln!("error: {message}");
            if args.format == OutputFormat::Json {
                super::usage_error_json(&message);
            }
            return ExitCode::from(2);
        }
    };
    let set = crate::pipeline::load_set(&files, &variables);
    let mut diagnostics = set.diagnostics;
    let mut warnings = set.warnings;
    for pipeline in &set.loaded {
        for warning in crate::pipeline::warnings::pipeline_warnings(&pipeline.pipeline) {
            warnings.push(Diagnostic {
                file: pipeline.path.clone(),
                line: 0,
                column: 0,
                pointer: warning.pointer,
                message: warning.message,
            });
        }
    }
    // Notes and warnings go to standard error in both formats; warnings change the
    // exit code only with --strict, where they are errors.
    for note in &set.notes {
        eprintln!("{}", labelled(note, "note"));
    }
    if args.strict {
        diagnostics.append(&mut warnings);
        // File by file in the order given, each by position.
        let order = |d: &Diagnostic| files.iter().position(|f| *f == d.file).unwrap_or(usize::MAX);
        diagnostics.sort_by_key(|d| (order(d), d.line, d.column));
    } else {
        for warning in &warnings {
            eprintln!("{}", labelled(warning, "warning"));
        }
    }
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = stdout.lock();
    // A closed pipe (`validate ... | head`) is not an error worth reporting.
    let _ = match args.format {
        OutputFormat::Json => write_json(&mut out, &diagnostics),
        OutputFormat::Text => write_text(&mut out, &diagnostics, terminal),
    };
    let _ = out.flush();
    let invalid: BTreeSet<&PathBuf> = diagnostics.iter().map(|d| &d.file).collect();
    eprintln!(
        "{} {} checked, {} invalid",
        files.len(),
        plural(files.len(), "file", "files"),
        invalid.len()
    );
    if diagnostics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `file:line:col: LABEL: message (at /pointer)`, without the place a whole-file
/// finding has not.
fn labelled(diagnostic: &Diagnostic, label: &str) -> String {
    let place = if diagnostic.line == 0 {
        diagnostic.file.display().to_string()
    } else {
        format!(
            "{}:{}:{}",
            diagnostic.file.display(),
            diagnostic.line,
            diagnostic.column
        )
    };
    format!("{place}: {label}: {} (at {})", diagnostic.message, diagnostic.pointer)
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn write_json(out: &mut impl Write, diagnostics: &[Diagnostic]) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, diagnostics)?;
    writeln!(out)
}

pub(crate) fn write_text(out: &mut impl Write, diagnostics: &[Diagnostic], excerpts: bool) -> std::io::Result<()> {
    let mut sources: HashMap<&PathBuf, Option<String>> = HashMap::new();
    for diagnostic in diagnostics {
        // A message of several lines (a regex error's caret diagram) keeps its later
        // lines indented, so each line that starts at column 0 is one problem.
        writeln!(out, "{}", diagnostic.to_string().replace('\n', "\n    "))?;
        if !excerpts || diagnostic.line == 0 {
            continue;
        }
        let source = sources.entry(&diagnostic.file).or_insert_with(|| {
            // Without the byte-order mark the loader skipped, or line 1's columns
            // would be off by one.
            std::fs::read(&diagnostic.file).ok().map(|b| {
                let text = String::from_utf8_lossy(&b);
                text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned()
            })
        });
        if let Some(line) = source.as_deref().and_then(|text| text.lines().nth(diagnostic.line - 1)) {
            // The file's own line may hold a secret written in it (a URL's password):
            // masked before and after the column apart, so the underline still fits.
            let split = line
                .char_indices()
                .nth(diagnostic.column.saturating_sub(1))
                .map_or(line.len(), |(i, _)| i);
            let before = crate::redact::text(&line[..split]);
            let masked = format!("{before}{}", crate::redact::text(&line[split..]));
            let shown = excerpt(&masked, diagnostic.line, before.chars().count() + 1);
            write!(out, "{}", crate::redact::text(&shown))?;
        }
    }
    Ok(())
}

/// The source line with the token at `column` underlined, rustc/just style:
/// ```text
///    |
///  5 |   port: 70000
///    |         ^^^^^
/// ```
pub fn excerpt(line_text: &str, line: usize, column: usize) -> String {
    let line_text = line_text.replace('\t', " ");
    let number = line.to_string();
    let gutter = " ".repeat(number.len());
    let chars: Vec<char> = line_text.chars().collect();
    let start = column.saturating_sub(1).min(chars.len());
    let width = token_width(&chars[start..]).max(1);
    format!(
        "{gutter} |\n{number} | {line_text}\n{gutter} | {}{}\n",
        " ".repeat(start),
        "^".repeat(width)
    )
}

/// Width of the token starting a text: a quoted string up to its closing quote, or
/// plain text up to `: `, `,`, `]`, `}`, ` #` or the end of the line.
fn token_width(rest: &[char]) -> usize {
    match rest.first() {
        None => 0,
        Some(&quote @ ('"' | '\'')) => {
            let mut i = 1;
            while i < rest.len() {
                if rest[i] == '\\' && quote == '"' {
                    i += 2;
                    continue;
                }
                if rest[i] == quote {
                    return i + 1;
                }
                i += 1;
            }
            rest.len()
        }
        Some(_) => {
            let mut end = rest.len();
            for i in 0..rest.len() {
                let next = rest.get(i + 1).copied();
                let stop = match rest[i] {
                    ':' => next.is_none_or(|c| c == ' '),
                    ',' | ']' | '}' => true,
                    '#' => i > 0 && rest[i - 1] == ' ',
                    _ => false,
                };
                if stop {
                    end = i;
                    break;
                }
            }
            rest[..end].iter().collect::<String>().trim_end().chars().count()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_of_a_file_with_a_byte_order_mark_line_up() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "\u{feff}name: 5\n").unwrap();
        let diagnostic = crate::config::Diagnostic {
            file: file.clone(),
            line: 1,
            column: 7,
            pointer: "/name".into(),
            message: "expected a string".into(),
        };
        let mut out = Vec::new();
        super::write_text(&mut out, &[diagnostic], true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("  |\n1 | name: 5\n  |       ^\n"), "{text:?}");
    }

    #[test]
    fn an_excerpt_never_shows_a_secret_written_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "url: \"elastic:excerpt-secret-1@h:9200\"\n").unwrap();
        crate::redact::register("excerpt-secret-1");
        let diagnostic = crate::config::Diagnostic {
            file: file.clone(),
            line: 1,
            column: 6,
            pointer: "/url".into(),
            message: "has no scheme".into(),
        };
        let mut out = Vec::new();
        super::write_text(&mut out, &[diagnostic], true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("  |\n1 | url: \"elastic:***@h:9200\"\n  |      ^^^^^^^^^^^^^^^^^^^^\n"),
            "{text}"
        );
        assert!(!text.contains("excerpt-secret-1"), "{text}");
    }

    #[test]
    fn underlines_a_plain_value() {
        assert_eq!(
            excerpt("  port: 70000", 5, 9),
            "  |\n5 |   port: 70000\n  |         ^^^^^\n"
        );
    }

    #[test]
    fn underlines_a_key() {
        assert_eq!(
            excerpt("  key_patern: 'a*'  # c", 12, 3),
            "   |\n12 |   key_patern: 'a*'  # c\n   |   ^^^^^^^^^^\n"
        );
    }

    #[test]
    fn underlines_a_quoted_value_and_flow_items() {
        assert_eq!(excerpt("a: \"x, y\"", 1, 4), "  |\n1 | a: \"x, y\"\n  |    ^^^^^^\n");
        assert_eq!(excerpt("d: [0, -1]", 1, 8), "  |\n1 | d: [0, -1]\n  |        ^^\n");
    }

    #[test]
    fn underlines_one_character_at_the_end_of_a_line() {
        assert_eq!(excerpt("a:", 1, 3), "  |\n1 | a:\n  |   ^\n");
    }
}
