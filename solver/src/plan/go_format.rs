//! Go's `fmt` renderings that BuildKit's history entries are made of
//! (`%q` of a string, a rune and a `[]string`, `%v` of a `[]string`,
//! `time.Duration.String`), so `created_by` reads exactly as docker
//! writes it and tools that grep history keep working.

/// `strconv.Quote`: a double-quoted Go string literal (the parser's).
pub(crate) fn quote(s: &str) -> String {
    rbuild_parser::go_quote(s)
}

/// `%q` of a `[]string`: `["a" "b"]` (space separated, no commas).
pub(crate) fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// `%v` of a `[]string`: `[a b]`.
pub(crate) fn list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// `time.Duration.String` of nanoseconds: `0s`, `1.5s`, `1m30s`,
/// `1h0m0s`, `500ms`, `2µs`.
pub(crate) fn duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    const SEC: u64 = 1_000_000_000;
    let body = if u < SEC {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{}{unit}", u / div, fraction(u % div, div))
    } else {
        let secs = u / SEC;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let s = format!("{s}{}s", fraction(u % SEC, SEC));
        if h > 0 {
            format!("{h}h{m}m{s}")
        } else if m > 0 {
            format!("{m}m{s}")
        } else {
            s
        }
    };
    format!("{sign}{body}")
}

/// `.ddd` for `rem / div` with trailing zeros dropped; empty when 0.
fn fraction(rem: u64, div: u64) -> String {
    if rem == 0 {
        return String::new();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!(".{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a \"b\"\\\n"), r#""a \"b\"\\\n""#);
        assert_eq!(quote("é"), "\"é\"");
        assert_eq!(quote("\u{1}"), r#""\x01""#);
        // Go escapes spaces other than U+0020 (unicode.IsPrint), so
        // created_by matches docker's for such commands.
        assert_eq!(quote("a\u{a0}b"), r#""a\u00a0b""#);
        assert_eq!(
            quote_list(&["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            r#"["/bin/sh" "-c" "echo hi"]"#
        );
        assert_eq!(list(&["/a".into(), "/b".into()]), "[/a /b]");
    }

    #[test]
    fn durations_like_go() {
        let s = 1_000_000_000;
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(90 * s), "1m30s");
        assert_eq!(duration(3600 * s), "1h0m0s");
        assert_eq!(duration(1_500_000_000), "1.5s");
        assert_eq!(duration(500_000_000), "500ms");
        assert_eq!(duration(1_500), "1.5µs");
        assert_eq!(duration(7), "7ns");
        assert_eq!(duration(30 * s), "30s");
    }
}
