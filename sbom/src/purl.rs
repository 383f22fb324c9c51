//! Package URLs (<https://github.com/package-url/purl-spec>):
//! `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`, each part
//! percent-encoded as the spec says.

/// Percent-encodes `s` for a purl part: letters, digits and `.-_~` stay,
/// everything else (`+`, `:`, `@`, `/`, spaces, non-ASCII) becomes `%XX`.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A purl of `kind` for `name` (its namespace segments separated by
/// `/`, each encoded) at `version`, with `qualifiers` (sorted by key, as
/// the spec's canonical form has them; empty values dropped).
pub(crate) fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, Option<&str>)],
) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        let segs: Vec<String> = ns
            .split('/')
            .filter(|s| !s.is_empty())
            .map(encode)
            .collect();
        out.push_str(&segs.join("/"));
        out.push('/');
    }
    out.push_str(&encode(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version));
    }
    let mut q: Vec<(&str, &str)> = qualifiers
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    q.sort();
    for (i, (k, v)) in q.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_purl_encodes_plus_and_epoch() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                "1:2.36-9+deb12u4",
                &[("arch", Some("amd64")), ("distro", Some("debian-12"))]
            ),
            "pkg:deb/debian/libc6@1%3A2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn npm_scope_and_go_namespace() {
        assert_eq!(
            purl("npm", Some("@babel"), "core", "7.0.0", &[]),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(
            purl("golang", Some("github.com/spf13"), "cobra", "v1.8.0", &[]),
            "pkg:golang/github.com/spf13/cobra@v1.8.0"
        );
    }
}
