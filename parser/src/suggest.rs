//! "did you mean" suggestions by edit distance, as BuildKit offers them.

/// Levenshtein distance between two strings, counted in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest option within edit distance 2 (BuildKit's threshold), or
/// `None` when nothing is close or `value` is itself an option.
/// Comparison ignores ASCII case; the option is returned as given.
pub(crate) fn closest<'o>(value: &str, options: &[&'o str]) -> Option<&'o str> {
    // Keep pathological inputs cheap: a long word is never "close".
    if value.len() > 64 {
        return None;
    }
    let lower = value.to_ascii_lowercase();
    let mut best: Option<(&'o str, usize)> = None;
    for opt in options {
        let o = opt.to_ascii_lowercase();
        if o == lower {
            return None;
        }
        let d = edit_distance(&lower, &o);
        if d < 3 && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((opt, d));
        }
    }
    best.map(|(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("COPPY", &["COPY", "RUN"]), Some("COPY"));
        assert_eq!(closest("chmood", &["chmod", "chown"]), Some("chmod"));
        assert_eq!(closest("frobnicate", &["COPY", "RUN"]), None);
        assert_eq!(closest("copy", &["COPY"]), None);
    }
}
