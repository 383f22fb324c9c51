//! COPY's source globs: Go's `filepath.Match`, one path component at a
//! time (BuildKit resolves COPY/ADD sources with it).
//!
//! `filepath.Match` on Unix: `*` is any run of characters but `/`, `?` one
//! character but `/`, `[a-z]` / `[^a-z]` a class (ranges, `\` escapes inside),
//! `\c` the character `c`. A malformed pattern (an unclosed `[`, a trailing
//! `\`, an empty class) is an error, as Go's `ErrBadPattern`.
//!
//! `--exclude` and the include pattern of `--parents` are *not* these: they
//! are `.dockerignore` patterns (`**`, `!`, parents match), which
//! [`crate::IgnoreRules`] compiles and matches.

/// A pattern Go's `filepath.Match` would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {pattern:?}")]
pub struct BadPattern {
    pub pattern: String,
}

/// Whether `s` holds an unescaped `*`, `?` or `[` (BuildKit's
/// `containsWildcards`: such a source is globbed, any other is a literal
/// path).
pub(crate) fn has_wildcards(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Go's `filepath.Match(pattern, name)` for one path component (neither
/// side is expected to hold `/`, but `*` and `?` never match one anyway).
pub(crate) fn match_component(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let bad = || BadPattern {
        pattern: pattern.to_string(),
    };
    validate(&p).ok_or_else(bad)?;
    let s: Vec<char> = name.chars().collect();
    Ok(match_here(&p, &s))
}

/// Checks the whole pattern up front, so a malformed pattern is an error
/// whatever it is matched against.
fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return None;
                }
                i += 2;
            }
            '[' => {
                let (_, len) = parse_class(&p[i..], '\0')?;
                i += len;
            }
            _ => i += 1,
        }
    }
    Some(())
}

fn match_here(p: &[char], s: &[char]) -> bool {
    let Some(&c) = p.first() else {
        return s.is_empty();
    };
    match c {
        '*' => {
            let mut rest = &p[1..];
            while rest.first() == Some(&'*') {
                rest = &rest[1..];
            }
            for i in 0..=s.len() {
                if i > 0 && s[i - 1] == '/' {
                    break;
                }
                if match_here(rest, &s[i..]) {
                    return true;
                }
            }
            false
        }
        '?' => !s.is_empty() && s[0] != '/' && match_here(&p[1..], &s[1..]),
        '[' => {
            let Some(&ch) = s.first() else { return false };
            if ch == '/' {
                return false;
            }
            match parse_class(p, ch) {
                Some((true, len)) => match_here(&p[len..], &s[1..]),
                _ => false,
            }
        }
        '\\' => p.len() > 1 && s.first() == Some(&p[1]) && match_here(&p[2..], &s[1..]),
        c => s.first() == Some(&c) && match_here(&p[1..], &s[1..]),
    }
}

/// Parses the class at the start of `p` (which begins with `[`): whether
/// `ch` is in it, and the class's length in chars. `None` when malformed.
fn parse_class(p: &[char], ch: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            i += 1;
            break;
        }
        let (lo, n) = class_char(&p[i..])?;
        i += n;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, n) = class_char(&p[i + 1..])?;
            hi = h;
            i += 1 + n;
        }
        if lo <= ch && ch <= hi {
            matched = true;
        }
        ranges += 1;
    }
    Some((matched != negated, i))
}

/// One (possibly escaped) character of a class; `-` and `]` unescaped, or
/// the end of the pattern, are malformed here (Go's `getEsc`).
fn class_char(p: &[char]) -> Option<(char, usize)> {
    match p.first()? {
        '-' | ']' => None,
        '\\' => Some((*p.get(1)?, 2)),
        &c => Some((c, 1)),
    }
}

/// A path component without wildcards as the name it stands for: `\c`
/// is `c` (as `filepath.Match` would read it).
pub(crate) fn unescape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Splits a `/`-separated path into its components, resolving `.` and `..`
/// lexically (`..` stops at the root, as Go's `path.Clean` on an absolute
/// path), so `../a/./b` is `["a", "b"]`.
pub(crate) fn clean_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        match_component(p, s).unwrap()
    }

    #[test]
    fn go_filepath_match_cases() {
        // From Go's path/filepath match tests.
        assert!(m("abc", "abc"));
        assert!(m("*", "abc"));
        assert!(m("*c", "abc"));
        assert!(!m("a*", "ab/c"));
        assert!(m("a*b*c*d*e*/f", "axbxcxdxe/f"));
        assert!(!m("a*b?c*x", "abxbbxdbxebxczzy"));
        assert!(m("ab[c]", "abc"));
        assert!(m("ab[b-d]", "abc"));
        assert!(!m("ab[e-g]", "abc"));
        assert!(!m("ab[^c]", "abc"));
        assert!(m("ab[^e-g]", "abc"));
        assert!(!m("a?b", "a/b"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "ab"));
        assert!(m("a[\\-]b", "a-b"));
        assert!(m("[a-ζ]*", "α"));
        assert!(!m("*x", "xxx/x") || m("*x", "xxx"));
        for bad in ["[", "[^", "[]a]", "[-]", "[x-]", "a[", "ab\\", "[a-b-c]"] {
            assert!(match_component(bad, "a").is_err(), "{bad} is malformed");
        }
    }

    #[test]
    fn wildcard_detection_honours_escapes() {
        assert!(has_wildcards("src/*.rs"));
        assert!(has_wildcards("a[bc]"));
        assert!(!has_wildcards("a\\*b"));
        assert!(!has_wildcards("plain/path"));
    }

    #[test]
    fn clean_clamps_at_root() {
        assert_eq!(clean_components("../a/./b/../c/"), ["a", "c"]);
        assert!(clean_components("/").is_empty());
    }
}
