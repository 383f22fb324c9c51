//! Slash-separated container paths, cleaned as Go's `path.Clean` does
//! (BuildKit normalizes WORKDIR, COPY destinations and mount targets so).

/// Go's `path.Clean`: no `.`/`..` elements (`..` above the root is
/// dropped), no repeated or trailing slashes; `""` becomes `.`.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `p` made absolute against the directory `base` (itself absolute),
/// cleaned.
pub(crate) fn resolve(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        clean(p)
    } else {
        clean(&format!("/{base}/{p}"))
    }
}

/// The last element of `p` (Go's `path.Base`).
pub(crate) fn base_name(p: &str) -> String {
    let c = clean(p);
    match c.rsplit_once('/') {
        Some((_, last)) if !last.is_empty() => last.to_string(),
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("a//b"), "a/b");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(resolve("/app", "src"), "/app/src");
        assert_eq!(resolve("/app", "/etc"), "/etc");
        assert_eq!(resolve("/", "."), "/");
        assert_eq!(base_name("/run/x/"), "x");
    }
}
