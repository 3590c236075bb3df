//! Checking Redis glob patterns (`key_pattern`) before anything connects: the syntax
//! Redis's `stringmatchlen` accepts, with the mistakes it silently tolerates made errors.

/// Checks a Redis glob: `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` and `\` escapes.
///
/// Errors (with the 1-based column within the pattern): an unclosed `[`, an empty
/// `[]` (or `[^]`), a trailing lone `\`. Written by hand because Redis's dialect is
/// not the shell's (`[^...]`, no `{a,b}`) and no maintained crate checks exactly it.
pub fn check_redis_glob(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err(format!(
                        "trailing `\\` at column {} escapes nothing: write `\\\\` for a literal backslash",
                        i + 1
                    ));
                }
                i += 2;
            }
            '[' => {
                let open = i;
                let mut j = i + 1;
                if j < chars.len() && chars[j] == '^' {
                    j += 1;
                }
                let first = j;
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        '\\' => {
                            if j + 1 >= chars.len() {
                                return Err(format!(
                                    "trailing `\\` at column {} escapes nothing: write `\\\\` for a literal backslash",
                                    j + 1
                                ));
                            }
                            j += 2;
                        }
                        ']' => {
                            closed = true;
                            break;
                        }
                        _ => j += 1,
                    }
                }
                if !closed {
                    return Err(format!(
                        "unclosed `[` at column {}: close the character class with `]`, or write `\\[` for a literal `[`",
                        open + 1
                    ));
                }
                if j == first {
                    return Err(format!(
                        "empty character class `{}` at column {}: list at least one character",
                        chars[open..=j].iter().collect::<String>(),
                        open + 1
                    ));
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_redis_glob;

    #[test]
    fn accepts_the_reference_examples() {
        for pattern in [
            "alpha*",
            "alpha",
            "test[123]",
            "test[^123]",
            "*",
            "user:?",
            "[a-z]*",
            "a\\*b",
            "[\\]]",
        ] {
            assert_eq!(check_redis_glob(pattern), Ok(()), "{pattern}");
        }
    }

    #[test]
    fn unclosed_bracket_names_its_column() {
        let error = check_redis_glob("user:[abc").unwrap_err();
        assert!(error.starts_with("unclosed `[` at column 6"), "{error}");
    }

    #[test]
    fn trailing_backslash_is_an_error() {
        let error = check_redis_glob("user\\").unwrap_err();
        assert!(error.starts_with("trailing `\\` at column 5"), "{error}");
        assert!(check_redis_glob("[a\\")
            .unwrap_err()
            .starts_with("trailing `\\` at column 3"));
    }

    #[test]
    fn empty_class_is_an_error() {
        assert!(check_redis_glob("a[]")
            .unwrap_err()
            .starts_with("empty character class `[]` at column 2"));
        assert!(check_redis_glob("[^]")
            .unwrap_err()
            .starts_with("empty character class `[^]` at column 1"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert!(check_redis_glob("é[")
            .unwrap_err()
            .starts_with("unclosed `[` at column 2"));
    }
}
