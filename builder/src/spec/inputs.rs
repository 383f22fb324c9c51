//! The specs of build inputs besides the main context, in buildx's
//! syntaxes: `--ssh default|ID[=SOCKET|KEY[,KEY…]]` and
//! `--build-context NAME=VALUE`. Pure syntax, as [`super::parse`]: what a
//! path is (a socket or a key file, a directory) is decided when the
//! build opens it.

use std::path::PathBuf;

use rbuild_solver::plan::parse_git_url;

/// One `--ssh`: an id `RUN --mount=type=ssh,id=…` asks for, and the
/// agent socket or key files behind it (none: `$SSH_AUTH_SOCK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub id: String,
    /// A socket, or key files; empty for the agent in `$SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

/// What a named context (or the main context, when remote) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A local directory (absolute).
    Local(PathBuf),
    /// `docker-image://REF`.
    Image(String),
    /// `oci-layout://DIR[@DIGEST|:TAG]`.
    OciLayout {
        dir: PathBuf,
        /// `sha256:…` or a tag in the layout's index; `None`: the only
        /// image it holds.
        reference: Option<String>,
    },
    /// A git repository: `URL[#REF[:DIR]]` as [`parse_git_url`] reads it.
    Git(String),
    /// A tarball at an `http(s)://` URL.
    Url(String),
}

/// One `--build-context NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContextSpec {
    /// The name as given (looked up normalized, as BuildKit does).
    pub name: String,
    pub source: ContextSource,
}

/// A `--ssh` or `--build-context` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputSpecError {
    #[error(
        "invalid --ssh value {value:?}: the id is empty\nhint: write default, ID, or ID=SOCKET|KEY[,KEY…]"
    )]
    SshEmptyId { value: String },
    #[error("invalid --ssh value {value:?}: a path is empty")]
    SshEmptyPath { value: String },
    #[error(
        "invalid --build-context value {value:?}: expected NAME=VALUE\nhint: VALUE is a directory, docker-image://REF, oci-layout://DIR[@DIGEST], a git URL or a tarball URL"
    )]
    ContextNotKeyValue { value: String },
    #[error("invalid --build-context value {value:?}: the name is empty")]
    ContextEmptyName { value: String },
    #[error("invalid --build-context value {value:?}: {what} is empty")]
    ContextEmptyValue { value: String, what: &'static str },
    #[error(
        "invalid --build-context value {value:?}: the source type {scheme}:// is not supported\nhint: a directory, docker-image://REF, oci-layout://DIR[@DIGEST], a git URL or an http(s) tarball URL"
    )]
    ContextScheme { value: String, scheme: String },
}

/// `--ssh default|ID[=SOCKET|KEY[,KEY…]]`.
pub fn parse_ssh(s: &str) -> Result<SshSpec, InputSpecError> {
    let (id, paths) = match s.split_once('=') {
        Some((id, p)) => (id, Some(p)),
        None => (s, None),
    };
    if id.trim().is_empty() {
        return Err(InputSpecError::SshEmptyId {
            value: s.to_string(),
        });
    }
    let paths = match paths {
        None => Vec::new(),
        Some(p) => {
            let mut out = Vec::new();
            for part in p.split(',') {
                if part.is_empty() {
                    return Err(InputSpecError::SshEmptyPath {
                        value: s.to_string(),
                    });
                }
                out.push(expand_home(part));
            }
            out
        }
    };
    Ok(SshSpec {
        id: id.to_string(),
        paths,
    })
}

/// `~/…` as the shell would have it (buildx does the same for `--ssh`).
fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p))
}

/// A context value: `docker-image://`, `oci-layout://`, a git URL, an
/// `http(s)://` tarball, else a local directory (made absolute).
pub fn parse_context_source(value: &str) -> Result<ContextSource, InputSpecError> {
    let empty = |what| InputSpecError::ContextEmptyValue {
        value: value.to_string(),
        what,
    };
    if let Some(r) = value.strip_prefix("docker-image://") {
        if r.is_empty() {
            return Err(empty("the image reference"));
        }
        return Ok(ContextSource::Image(r.to_string()));
    }
    if let Some(rest) = value.strip_prefix("oci-layout://") {
        let (dir, reference) = if let Some((d, digest)) = rest.split_once('@') {
            (d, Some(digest.to_string()))
        } else {
            // `DIR:TAG`: the last `:` after the last `/`.
            let slash = rest.rfind('/').map_or(0, |i| i + 1);
            match rest[slash..].rfind(':') {
                Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
                None => (rest, None),
            }
        };
        if dir.is_empty() {
            return Err(empty("the layout directory"));
        }
        return Ok(ContextSource::OciLayout {
            dir: std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir)),
            reference,
        });
    }
    if parse_git_url(value).is_some() {
        return Ok(ContextSource::Git(value.to_string()));
    }
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(ContextSource::Url(value.to_string()));
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(InputSpecError::ContextScheme {
            value: value.to_string(),
            scheme: scheme.to_string(),
        });
    }
    if value.is_empty() {
        return Err(empty("the directory"));
    }
    Ok(ContextSource::Local(
        std::path::absolute(value).unwrap_or_else(|_| PathBuf::from(value)),
    ))
}

/// `--build-context NAME=VALUE`.
pub fn parse_build_context(s: &str) -> Result<NamedContextSpec, InputSpecError> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(InputSpecError::ContextNotKeyValue {
            value: s.to_string(),
        });
    };
    if name.trim().is_empty() {
        return Err(InputSpecError::ContextEmptyName {
            value: s.to_string(),
        });
    }
    let source = parse_context_source(value).map_err(|e| match e {
        InputSpecError::ContextEmptyValue { what, .. } => InputSpecError::ContextEmptyValue {
            value: s.to_string(),
            what,
        },
        other => other,
    })?;
    Ok(NamedContextSpec {
        name: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_specs_as_buildx() {
        assert_eq!(parse_ssh("default").unwrap().paths, Vec::<PathBuf>::new());
        let s = parse_ssh("gh=/run/agent.sock").unwrap();
        assert_eq!((s.id.as_str(), s.paths.len()), ("gh", 1));
        assert_eq!(parse_ssh("k=/a,/b").unwrap().paths.len(), 2);
        assert!(parse_ssh("=/x").is_err());
        assert!(parse_ssh("k=/a,").is_err());
    }

    #[test]
    fn context_sources_of_every_kind() {
        let p = |s| parse_build_context(s).unwrap().source;
        assert_eq!(
            p("base=docker-image://busybox:1.36"),
            ContextSource::Image("busybox:1.36".into())
        );
        assert_eq!(
            p("l=oci-layout:///tmp/lay@sha256:abc"),
            ContextSource::OciLayout {
                dir: "/tmp/lay".into(),
                reference: Some("sha256:abc".into())
            }
        );
        assert_eq!(
            p("l=oci-layout:///tmp/lay:v1"),
            ContextSource::OciLayout {
                dir: "/tmp/lay".into(),
                reference: Some("v1".into())
            }
        );
        assert_eq!(
            p("src=https://example.com/r.git#main"),
            ContextSource::Git("https://example.com/r.git#main".into())
        );
        assert_eq!(
            p("src=https://example.com/ctx.tar.gz"),
            ContextSource::Url("https://example.com/ctx.tar.gz".into())
        );
        assert!(matches!(p("lib=../lib"), ContextSource::Local(d) if d.is_absolute()));
        assert!(parse_build_context("nameonly").is_err());
        assert!(parse_build_context("=dir").is_err());
        assert!(parse_build_context("x=docker-image://").is_err());
        let e = parse_build_context("x=s3://bucket/ctx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s3://"), "{e}");
    }
}
