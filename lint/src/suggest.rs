//! "did you mean" by edit distance, as BuildKit's `util/suggest`.

/// Levenshtein distance, in characters.
pub(crate) fn distance(a: &str, b: &str) -> usize {
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

/// BuildKit's `suggest.Search`: the option closest to `value` within
/// distance 2, none when `value` is itself an option. Case-sensitive
/// comparison unless `case_sensitive` is false.
pub(crate) fn search<'o>(
    value: &str,
    options: impl IntoIterator<Item = &'o str>,
    case_sensitive: bool,
) -> Option<&'o str> {
    if value.len() > 64 {
        return None;
    }
    let norm = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_ascii_lowercase()
        }
    };
    let v = norm(value);
    let mut best: Option<(&'o str, usize)> = None;
    for opt in options {
        let o = norm(opt);
        if o == v {
            return None;
        }
        let d = distance(&v, &o);
        if d < 3 && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((opt, d));
        }
    }
    best.map(|(o, _)| o)
}
