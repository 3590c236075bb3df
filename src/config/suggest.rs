//! "Did you mean ...?": the closest known name to a misspelt one.

/// The candidate closest to `input`, when it is close enough to be a likely typo
/// (Jaro-Winkler similarity >= 0.8, or at most two edits for short names).
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lowered = input.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&lowered, &candidate.to_lowercase());
            let edits = strsim::damerau_levenshtein(&lowered, &candidate.to_lowercase());
            (candidate, score, edits)
        })
        .filter(|(_, score, edits)| *score >= 0.8 || *edits <= 2.min(input.chars().count() / 2))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(candidate, _, _)| candidate)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_the_closest_field() {
        let fields = ["key_pattern", "database", "_type", "type"];
        assert_eq!(did_you_mean("key_patern", fields), Some("key_pattern"));
        assert_eq!(did_you_mean("databse", fields), Some("database"));
        assert_eq!(did_you_mean("Database", fields), Some("database"));
    }

    #[test]
    fn suggests_nothing_for_unrelated_names() {
        assert_eq!(did_you_mean("colour", ["key_pattern", "database"]), None);
        assert_eq!(did_you_mean("x", ["id", "index"]), None);
    }

    #[test]
    fn suggests_enum_values() {
        let rules = ["equals", "contains", "starts_with", "ends_with", "regex", "<", ">"];
        assert_eq!(did_you_mean("startswith", rules), Some("starts_with"));
        assert_eq!(did_you_mean("like", rules), None);
    }
}
