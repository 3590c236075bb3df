//! A YAML syntax error in words a user can act on: the parser's message, with the
//! likely cause (a tab, an unclosed quote or bracket, a key at the wrong indentation).

use super::{Position, YamlError};

/// Turns the parser's message into one a user can act on. Tabs get their own: the
/// parser often trips over a tab-indented line on the line before it (the tab ends
/// a plain scalar), so the error's line and the next one are both looked at.
pub(super) fn syntax_error(text: &str, position: Position, info: &str) -> YamlError {
    let first = position.line.saturating_sub(1);
    for (index, line_text) in text.lines().enumerate().skip(first).take(2) {
        let indentation: String = line_text.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
        if let Some(tab) = indentation.find('\t') {
            return YamlError {
                position: Position {
                    line: index + 1,
                    column: indentation[..tab].chars().count() + 1,
                },
                pointer: String::new(),
                message: "tab character in indentation: YAML indents with spaces only".into(),
            };
        }
    }
    // `database: *` or `key_pattern: *abc`, as the reference's docs write them: YAML
    // reads an unquoted `*` as an alias.
    let token: String = text
        .lines()
        .nth(first)
        .map(|line_text| {
            line_text
                .chars()
                .skip(position.column.saturating_sub(1))
                .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}'))
                .collect()
        })
        .unwrap_or_default();
    if token.starts_with('*') && (info.contains("alias") || info.contains("anchor")) {
        return YamlError {
            position,
            pointer: String::new(),
            message: format!(
                "invalid YAML: an unquoted `*` starts an alias (a reference to an `&anchor`); to write the text `{token}`, quote it: `\"{token}\"`"
            ),
        };
    }
    let cause = likely_cause(text, position, info)
        .map(|cause| format!(" ({cause})"))
        .unwrap_or_default();
    YamlError {
        position,
        pointer: String::new(),
        message: format!("invalid YAML: {info}{cause}"),
    }
}

fn spaces(n: usize) -> String {
    if n == 1 {
        "1 space".to_owned()
    } else {
        format!("{n} spaces")
    }
}

/// What most often makes the parser say `info` at `position`: an indentation that
/// does not line up with the line above, or `key:value` without a space.
fn likely_cause(text: &str, position: Position, info: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.chars().take_while(|c| *c == ' ').count();
    let here_index = position.line.checked_sub(1)?;
    let here = lines.get(here_index)?;
    // The line above that holds something (not blank, not only a comment).
    let (above_index, above) = lines[..here_index]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let no_space = |l: &str| {
        let body = l.trim_start().trim_start_matches("- ");
        let plain = !body.starts_with(['"', '\'', '{', '[']);
        plain
            && body.char_indices().any(|(i, c)| {
                c == ':' && body[i + 1..].starts_with(|n: char| !n.is_whitespace()) && !body[..i].contains(' ')
            })
            && !body.contains(": ")
            && !body.ends_with(':')
    };
    if info.contains("could not find expected ':'") || info.contains("simple key expect ':'") {
        if no_space(above) {
            return Some(format!(
                "likely cause: line {} writes `key:value` without a space after the colon; YAML needs `key: value`",
                above_index + 1
            ));
        }
        return Some(format!(
            "likely cause: line {} or the one before it is not `key: value` (a missing colon, an unclosed quote, or indentation that does not line up)",
            position.line
        ));
    }
    let (here_indent, above_indent) = (indent(here), indent(above));
    if info.contains("mapping values are not allowed") && here_indent > above_indent {
        return Some(format!(
            "likely cause: line {} is indented {}, more than line {} ({above_indent}) whose value is already given; fields of one mapping line up",
            position.line,
            spaces(here_indent),
            above_index + 1
        ));
    }
    if info.contains("mapping values are not allowed") {
        return Some(
            "likely cause: an unquoted value holding `: `; quote it, or check the indentation of the lines above"
                .to_owned(),
        );
    }
    if info.contains("did not find expected key") || info.contains("did not find expected '-'") {
        return Some(format!(
            "likely cause: line {} is indented {} where the fields around it have {above_indent}; fields of one mapping line up",
            position.line,
            spaces(here_indent)
        ));
    }
    None
}
