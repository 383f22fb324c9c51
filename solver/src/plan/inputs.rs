//! Build inputs other than the main context, as the planner sees them:
//! named contexts (`--build-context NAME=VALUE`, already fetched or
//! resolved by the caller) and git URLs (`ADD URL.git#REF:DIR`).
//!
//! Named contexts replace names as BuildKit's Dockerfile frontend does
//! (`dockerui.NamedContext`): a name is normalized like an image
//! reference (`docker.io/library/alpine:latest` and `alpine` are the same
//! key), a stage whose name is a context's is replaced whole (none of its
//! instructions run), then `FROM NAME`, `COPY --from=NAME` and
//! `RUN --mount=from=NAME` use the context where no earlier stage has the
//! name.

use std::collections::BTreeMap;

use rbuild_oci::reference::ImageRef;

use super::ResolvedImage;

/// What one named context is, once the caller has fetched or resolved it.
#[derive(Debug, Clone)]
pub enum NamedContext {
    /// `docker-image://REF`: resolved through the planner's
    /// [`ImageResolver`](super::ImageResolver) like a `FROM REF`.
    Image(String),
    /// An image the caller resolved itself (`oci-layout://DIR@DIGEST`,
    /// whose blobs it put in the store).
    Resolved(Box<ResolvedImage>),
    /// A directory of files: a local directory, or a git repository or
    /// tarball fetched into one. The worker knows it by this name.
    Local,
}

/// Named contexts by [`context_key`].
pub type NamedContexts = BTreeMap<String, NamedContext>;

/// The key a name is looked up under, BuildKit's: the name read as an
/// image reference in docker's short form without `:latest`
/// (`docker.io/library/alpine:latest` → `alpine`); a name that is not a
/// reference is only lowercased.
pub fn context_key(name: &str) -> String {
    match ImageRef::parse(name) {
        Ok(r) => {
            let f = r.familiar();
            f.strip_suffix(":latest").map(str::to_string).unwrap_or(f)
        }
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// A git source as written: `REMOTE[#REF[:SUBDIR]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// What `git` is given: `https://host/repo.git`, `git@host:repo.git`,
    /// `ssh://…`, `git://…`.
    pub remote: String,
    /// Branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// A directory inside the repository (no leading `/`); empty for the
    /// root.
    pub subdir: String,
}

/// `s` as a git source, or `None` when it is not one. As BuildKit's
/// `gitutil`: `git://`, `ssh://` and scp-like `git@host:path` are git;
/// `http(s)://` only when the path ends in `.git` (or the host is
/// github.com, as docker build has it).
pub fn parse_git_url(s: &str) -> Option<GitUrl> {
    let (remote, fragment) = match s.split_once('#') {
        Some((r, f)) => (r, f),
        None => (s, ""),
    };
    let is_git = if remote.starts_with("git://") || remote.starts_with("ssh://") {
        true
    } else if let Some(rest) = remote.strip_prefix("git@") {
        rest.contains(':')
    } else if let Some(rest) = remote
        .strip_prefix("https://")
        .or_else(|| remote.strip_prefix("http://"))
    {
        let path_end = rest.split(['?']).next().unwrap_or(rest);
        path_end.ends_with(".git") || path_end.starts_with("github.com/")
    } else {
        false
    };
    if !is_git || remote.len() <= "git://".len() {
        return None;
    }
    let (reference, subdir) = match fragment.split_once(':') {
        Some((r, d)) => (r, d),
        None => (fragment, ""),
    };
    let subdir = super::paths::clean(subdir)
        .trim_start_matches('/')
        .to_string();
    Some(GitUrl {
        remote: remote.to_string(),
        reference: reference.to_string(),
        subdir: if subdir == "." { String::new() } else { subdir },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keys_are_normalized_like_buildkit() {
        assert_eq!(context_key("alpine"), "alpine");
        assert_eq!(context_key("alpine:latest"), "alpine");
        assert_eq!(context_key("docker.io/library/alpine:latest"), "alpine");
        assert_eq!(context_key("alpine:3.20"), "alpine:3.20");
        assert_eq!(context_key("base"), "base");
        assert_eq!(context_key("Base"), "base");
    }

    #[test]
    fn git_urls_are_recognized_as_buildkit_does() {
        let g = parse_git_url("https://example.com/org/repo.git#v1.0:sub/dir").unwrap();
        assert_eq!(g.remote, "https://example.com/org/repo.git");
        assert_eq!(g.reference, "v1.0");
        assert_eq!(g.subdir, "sub/dir");
        let g = parse_git_url("git@example.com:org/repo.git").unwrap();
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("", ""));
        assert!(parse_git_url("git://127.0.0.1:9418/repo#main").is_some());
        assert!(parse_git_url("ssh://git@host/repo.git#abc").is_some());
        assert!(parse_git_url("https://github.com/moby/buildkit").is_some());
        assert!(parse_git_url("https://example.com/file.tar.gz").is_none());
        assert!(parse_git_url("src/app").is_none());
        assert!(parse_git_url("git@nohost").is_none());
    }
}
