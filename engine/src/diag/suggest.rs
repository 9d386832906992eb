//! "Did you mean ...?" for misspelt step kinds, fields and references.

/// The candidate closest to `typo`, if it is close enough to be a plausible misspelling.
pub fn nearest<'a, I>(typo: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        // Jaro-Winkler ranks; a small edit distance rescues short names (`lg` -> `log`)
        // whose Jaro-Winkler score is low only because they are short.
        let mut score = strsim::jaro_winkler(typo, c);
        let edits = strsim::levenshtein(typo, c);
        if edits <= 2 && edits < c.len().min(typo.len().max(2)) {
            score = score.max(0.8);
        }
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    // 0.8 keeps `sql.exce` -> `sql.exec` and `timout` -> `timeout` while refusing to
    // suggest `http.check` for `banana`.
    best.filter(|(_, s)| *s >= 0.8).map(|(c, _)| c)
}

/// ` (did you mean `x`?)` or nothing.
pub fn help<'a, I>(typo: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    nearest(typo, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn suggests_close_names_only() {
        let kinds = ["sql.exec", "sql.assert", "http.check", "shell.run"];
        assert_eq!(nearest("sql.exce", kinds), Some("sql.exec"));
        assert_eq!(nearest("shell.rnu", kinds), Some("shell.run"));
        assert_eq!(nearest("banana", kinds), None);
        assert_eq!(nearest("lg", ["log", "storage"]), Some("log"));
    }
}
