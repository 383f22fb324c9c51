//! Image references parsed like Docker's (`busybox` →
//! `docker.io/library/busybox:latest`).
//!
//! Grammar (from the distribution reference format): an optional domain
//! (`host[:port]`, recognised when the first path component contains `.` or
//! `:` or is `localhost`), one or more lowercase path components separated by
//! `/`, an optional `:tag` and an optional `@sha256:<hex>`. A reference with
//! neither tag nor digest gets the tag `latest`. Names on Docker Hub with a
//! single component get the `library/` namespace.

use std::fmt;
use std::str::FromStr;

use crate::Digest;

/// The registry assumed when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag assumed when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalized image reference: domain, repository path, and a tag and/or a
/// digest. Always valid; its `Display` is the full normalized form, e.g.
/// `docker.io/library/busybox:latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Text that is not a valid image reference; names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error(
        "invalid reference {reference:?}: repository name {name:?} must be lowercase\nhint: write {lower:?}"
    )]
    Uppercase {
        reference: String,
        name: String,
        lower: String,
    },
    #[error(
        "invalid reference {reference:?}: path component {component:?} is not valid\nhint: components use lowercase letters, digits and single separators (. _ __ -)"
    )]
    BadComponent {
        reference: String,
        component: String,
    },
    #[error(
        "invalid reference {reference:?}: registry host {domain:?} is not valid\nhint: a registry host is letters, digits, '-' and '.', optionally followed by :PORT"
    )]
    BadDomain { reference: String, domain: String },
    #[error(
        "invalid reference {reference:?}: tag {tag:?} is not valid\nhint: tags are up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    BadTag { reference: String, tag: String },
    #[error(
        "invalid reference {reference:?}: digest {digest:?} is not valid\nhint: expected sha256:<64 lowercase hex characters>"
    )]
    BadDigest { reference: String, digest: String },
    #[error("invalid reference {reference:?}: repository name is longer than 255 characters")]
    NameTooLong { reference: String },
    #[error(
        "invalid reference {reference:?}: a 64-character hexadecimal string is an image ID, not a repository name\nhint: choose a name such as myimage:latest"
    )]
    LooksLikeId { reference: String },
}

impl ImageRef {
    /// Parses `text` the way `docker` does and normalizes it.
    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        let reference = text.to_string();
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // Split off the digest first: it may contain ':'.
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| ReferenceError::BadDigest {
                    reference: reference.clone(),
                    digest: d.to_string(),
                })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before
        // it belongs to a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::BadTag {
                reference,
                tag: tag.to_string(),
            });
        }
        if digest.is_none()
            && tag.is_none()
            && name.len() == 64
            && name.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ReferenceError::LooksLikeId { reference });
        }

        let (domain, path) = split_domain(name);
        if path.is_empty() {
            return Err(ReferenceError::BadComponent {
                reference,
                component: String::new(),
            });
        }
        if !valid_domain(domain) {
            return Err(ReferenceError::BadDomain {
                reference,
                domain: domain.to_string(),
            });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                reference,
                name: path.to_string(),
                lower: path.to_ascii_lowercase(),
            });
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::BadComponent {
                    reference,
                    component: component.to_string(),
                });
            }
        }
        let mut domain = domain.to_string();
        if domain == LEGACY_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        let mut path = path.to_string();
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_NAMESPACE}/{path}");
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong { reference });
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, if any.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox`, `user/app`,
    /// `localhost:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The whole reference in Docker's short form, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_repository();
        self.push_suffix(&mut out);
        out
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (and no tag).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.repository();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Splits `name` into (domain, path) following Docker's rule: the first
/// component is a domain when it contains `.` or `:`, or is `localhost`, or
/// contains an uppercase letter (so that the error names the domain).
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_normalization_cases() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(
            norm("localhost:5000/ns/app:tag"),
            "localhost:5000/ns/app:tag"
        );
        assert_eq!(norm("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        assert_eq!(norm("a__b/c-d/e.f_g"), "docker.io/a__b/c-d/e.f_g:latest");
        assert_eq!(norm("foo---bar"), "docker.io/library/foo---bar:latest");
    }

    #[test]
    fn digest_only_reference_gets_no_tag() {
        let r = ImageRef::parse(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        let r = ImageRef::parse(&format!("host:5000/x:1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.domain(), "host:5000");
        assert_eq!(r.digest().unwrap().hex(), HEX);
    }

    #[test]
    fn familiar_form_strips_default_domain_and_library() {
        let f = |s: &str| ImageRef::parse(s).unwrap().familiar();
        assert_eq!(f("busybox"), "busybox:latest");
        assert_eq!(f("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b:latest");
        assert_eq!(f("user/app"), "user/app:latest");
        assert_eq!(f("localhost:5000/app:x"), "localhost:5000/app:x");
    }

    #[test]
    fn errors_name_the_bad_part() {
        let e = ImageRef::parse("Busybox").unwrap_err();
        assert!(matches!(e, ReferenceError::Uppercase { ref name, .. } if name == "Busybox"));
        assert!(e.to_string().contains("must be lowercase"));
        let e = ImageRef::parse("busybox:-bad").unwrap_err();
        assert!(matches!(e, ReferenceError::BadTag { ref tag, .. } if tag == "-bad"));
        let e = ImageRef::parse("busybox@sha256:abc").unwrap_err();
        assert!(matches!(e, ReferenceError::BadDigest { .. }));
        let e = ImageRef::parse("a//b").unwrap_err();
        assert!(
            matches!(e, ReferenceError::BadComponent { ref component, .. } if component.is_empty())
        );
        let e = ImageRef::parse("foo_-bar").unwrap_err();
        assert!(matches!(e, ReferenceError::BadComponent { .. }));
        let e = ImageRef::parse("bad_host:x/app").unwrap_err();
        assert!(matches!(e, ReferenceError::BadDomain { .. }), "{e:?}");
        assert_eq!(ImageRef::parse("").unwrap_err(), ReferenceError::Empty);
        assert!(matches!(
            ImageRef::parse(HEX).unwrap_err(),
            ReferenceError::LooksLikeId { .. }
        ));
        let long = "a".repeat(300);
        assert!(matches!(
            ImageRef::parse(&long).unwrap_err(),
            ReferenceError::NameTooLong { .. }
        ));
        assert!(ImageRef::parse(&format!("busybox:{}", "t".repeat(129))).is_err());
        assert!(ImageRef::parse("busybox:").is_err());
    }

    #[test]
    fn uppercase_domain_is_allowed() {
        assert_eq!(norm("Example.COM/app"), "Example.COM/app:latest");
    }
}
