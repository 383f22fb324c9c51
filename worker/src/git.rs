//! Git sources (`ADD URL.git#REF:DIR`, git contexts) through the `git`
//! command line.
//!
//! Why the CLI and not a library: it is what BuildKit itself runs (so
//! transports, `insteadOf` rules, proxies, credential handling and
//! submodules behave as users know them), it speaks every transport
//! (`https`, `ssh` through the user's agent, `git://`, `file://`) with
//! shallow fetches by commit, and it is one Debian package. gix would add
//! a large dependency tree whose ssh transport shells out to `ssh`
//! anyway and whose submodule support is partial.
//!
//! The flow, as BuildKit's git source: [`resolve`] asks the remote which
//! commit the ref names (`git ls-remote`; nothing is fetched) — that
//! commit, not the ref, goes into the step's key, so a moved branch is a
//! new step and an unchanged one a cache hit; with `--checksum=COMMIT`
//! the remote is not asked at all. [`checkout`] then fetches only that
//! commit (`--depth 1`), checks it out with its submodules, and drops
//! `.git` unless asked to keep it.
//!
//! Credentials come as BuildKit takes them: the secret `GIT_AUTH_TOKEN`
//! (or `GIT_AUTH_TOKEN.<host>`) becomes a basic `Authorization` header
//! for HTTPS, `GIT_AUTH_HEADER(.<host>)` a verbatim one; both are handed
//! to git through `GIT_CONFIG_*` environment variables, never the
//! command line. SSH remotes use the `--ssh` agent `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a git command needs besides its arguments.
#[derive(Debug, Default, Clone)]
pub struct GitAuth {
    /// `(config key, value)` pairs passed through `GIT_CONFIG_*`.
    config: Vec<(String, String)>,
    /// The agent socket for ssh remotes.
    ssh_auth_sock: Option<PathBuf>,
}

/// A git command that failed, with what it printed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git (is it installed?)")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    #[error("git {what} of {remote} failed: {stderr}")]
    Failed {
        what: String,
        remote: String,
        stderr: String,
    },
    #[error("git ref {reference:?} not found in {remote}")]
    UnknownRef { remote: String, reference: String },
    #[error(
        "git ref {reference:?} of {remote} is at commit {actual}, not the --checksum commit {expected}"
    )]
    Checksum {
        remote: String,
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("subdirectory {subdir:?} not found in {remote} at {commit}")]
    NoSubdir {
        remote: String,
        commit: String,
        subdir: String,
    },
    #[error("I/O error at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The host of a remote (`https://host/…`, `ssh://user@host:22/…`,
/// `git@host:path`), for per-host credentials.
pub fn remote_host(remote: &str) -> Option<&str> {
    if let Some((_, rest)) = remote.split_once("://") {
        let authority = rest.split('/').next()?;
        let host = authority.rsplit('@').next()?;
        return Some(host.split(':').next().unwrap_or(host));
    }
    let (user_host, _) = remote.split_once(':')?;
    user_host.rsplit('@').next()
}

/// `host[:port]` of a URL remote (no user), as git matches
/// `http.<url>.*` config and BuildKit names per-host secrets.
fn remote_authority(remote: &str) -> Option<&str> {
    let (_, rest) = remote.split_once("://")?;
    let authority = rest.split('/').next()?;
    authority.rsplit('@').next()
}

impl GitAuth {
    /// BuildKit's credentials for `remote` from the build's secrets
    /// (`get` looks one up by id) and the `default` ssh agent.
    pub fn for_remote(
        remote: &str,
        get: impl Fn(&str) -> Option<Vec<u8>>,
        ssh_auth_sock: Option<PathBuf>,
    ) -> GitAuth {
        let mut auth = GitAuth {
            config: Vec::new(),
            ssh_auth_sock,
        };
        let is_http = remote.starts_with("https://") || remote.starts_with("http://");
        if is_http {
            let host = remote_host(remote).unwrap_or_default();
            // `HOST:PORT` as BuildKit names it (Go's `url.Host`), then
            // the host alone, then the bare id.
            let authority = remote_authority(remote).unwrap_or(host);
            let pick = |base: &str| {
                get(&format!("{base}.{authority}"))
                    .or_else(|| get(&format!("{base}.{host}")))
                    .or_else(|| get(base))
            };
            let header = if let Some(h) = pick("GIT_AUTH_HEADER") {
                Some(String::from_utf8_lossy(&h).trim().to_string())
            } else {
                pick("GIT_AUTH_TOKEN").map(|t| {
                    let token = String::from_utf8_lossy(&t).trim().to_string();
                    format!(
                        "basic {}",
                        base64_encode(format!("x-access-token:{token}").as_bytes())
                    )
                })
            };
            if let Some(h) = header {
                let scheme_host = match remote.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://{authority}/"),
                    None => remote.to_string(),
                };
                auth.config.push((
                    format!("http.{scheme_host}.extraheader"),
                    format!("Authorization: {h}"),
                ));
            }
        }
        auth
    }

    fn command(&self, dir: Option<&Path>) -> Command {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes",
            )
            .stdin(Stdio::null());
        // Only what this build asked for reaches git.
        cmd.env_remove("SSH_AUTH_SOCK");
        if let Some(sock) = &self.ssh_auth_sock {
            cmd.env("SSH_AUTH_SOCK", sock);
        }
        cmd.env("GIT_CONFIG_COUNT", self.config.len().to_string());
        for (i, (k, v)) in self.config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        cmd
    }

    fn run(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        what: &str,
        remote: &str,
    ) -> Result<String, GitError> {
        let out = self
            .command(dir)
            .args(args)
            .output()
            .map_err(|source| GitError::Spawn { source })?;
        if !out.status.success() {
            return Err(GitError::Failed {
                what: what.to_string(),
                remote: remote.to_string(),
                stderr: last_lines(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The last few lines of git's stderr, joined, for an error message.
fn last_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    let text = lines[start..].join("; ");
    if text.is_empty() {
        "git exited unsuccessfully".to_string()
    } else {
        text
    }
}

fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `reference` names in `remote` (empty: HEAD); a full commit
/// id is taken as it is. With `checksum`, the remote is not asked and the
/// checksum is the commit.
pub fn resolve(
    remote: &str,
    reference: &str,
    checksum: Option<&str>,
    auth: &GitAuth,
) -> Result<String, GitError> {
    if let Some(c) = checksum {
        return Ok(c.to_ascii_lowercase());
    }
    if is_commit_id(reference) {
        return Ok(reference.to_ascii_lowercase());
    }
    let want = if reference.is_empty() {
        "HEAD"
    } else {
        reference
    };
    let listing = auth.run(None, &["ls-remote", "--", remote], "ls-remote", remote)?;
    let refs: BTreeMap<&str, &str> = listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (name, sha))
        .collect();
    let candidates = [
        format!("refs/tags/{want}^{{}}"),
        format!("refs/tags/{want}"),
        format!("refs/heads/{want}"),
        want.to_string(),
    ];
    for c in &candidates {
        if let Some(sha) = refs.get(c.as_str()) {
            return Ok(sha.to_string());
        }
    }
    // An abbreviated commit id: only the history can say which commit it
    // is, so fetch the branches and tags into a scratch repository.
    if (4..40).contains(&want.len()) && want.bytes().all(|b| b.is_ascii_hexdigit()) {
        let scratch = tempfile::Builder::new()
            .prefix("rbuild-git-")
            .tempdir()
            .map_err(|source| GitError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let d = Some(scratch.path());
        auth.run(d, &["init", "-q", "--bare"], "init", remote)?;
        auth.run(
            d,
            &[
                "fetch",
                "-q",
                "--no-tags",
                "--",
                remote,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            "fetch",
            remote,
        )?;
        let spec = format!("{want}^{{commit}}");
        if let Ok(sha) = auth.run(
            d,
            &["rev-parse", "--verify", "-q", &spec],
            "rev-parse",
            remote,
        ) {
            return Ok(sha.trim().to_string());
        }
    }
    Err(GitError::UnknownRef {
        remote: remote.to_string(),
        reference: want.to_string(),
    })
}

/// Fetches `commit` of `remote` into the empty directory `dir` and checks
/// it out with its submodules; `.git` is removed unless `keep_git_dir`.
/// `reference` (the ref as written) is fetched by name when it is one, so
/// servers that refuse fetches by commit id still work.
pub fn checkout(
    remote: &str,
    reference: &str,
    commit: &str,
    keep_git_dir: bool,
    dir: &Path,
    auth: &GitAuth,
) -> Result<(), GitError> {
    let d = Some(dir);
    auth.run(d, &["init", "-q"], "init", remote)?;
    auth.run(
        d,
        &["remote", "add", "origin", remote],
        "remote add",
        remote,
    )?;
    let by_commit = auth.run(
        d,
        &["fetch", "-q", "--depth=1", "--no-tags", "origin", commit],
        "fetch",
        remote,
    );
    if by_commit.is_err() {
        // By name (a branch or tag), then the commit must be in it.
        let name = if reference.is_empty() {
            "HEAD"
        } else {
            reference
        };
        let by_name = auth.run(
            d,
            &["fetch", "-q", "--no-tags", "origin", name],
            "fetch",
            remote,
        );
        if by_name.is_err() {
            auth.run(
                d,
                &[
                    "fetch",
                    "-q",
                    "--no-tags",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                "fetch",
                remote,
            )?;
        }
    }
    auth.run(
        d,
        &["-c", "advice.detachedHead=false", "checkout", "-q", commit],
        "checkout",
        remote,
    )?;
    if dir.join(".gitmodules").exists() {
        auth.run(
            d,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "--init",
                "--recursive",
                "--depth=1",
            ],
            "submodule update",
            remote,
        )?;
    }
    if !keep_git_dir {
        let git = dir.join(".git");
        std::fs::remove_dir_all(&git).map_err(|source| GitError::Io { path: git, source })?;
        // Submodules' `.git` files point into the removed directory.
        remove_gitlinks(dir)?;
    }
    Ok(())
}

/// Removes the `.git` files (submodule links) below `dir`.
fn remove_gitlinks(dir: &Path) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            remove_gitlinks(&path)?;
        } else if kind.is_file() && entry.file_name() == ".git" {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Standard base64 with padding (the `Authorization: basic` header).
fn base64_encode(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_every_remote_form() {
        assert_eq!(
            remote_host("https://example.com/a/b.git"),
            Some("example.com")
        );
        assert_eq!(
            remote_host("ssh://git@example.com:22/a.git"),
            Some("example.com")
        );
        assert_eq!(remote_host("git@example.com:a/b.git"), Some("example.com"));
        assert_eq!(remote_host("git://127.0.0.1:9418/r"), Some("127.0.0.1"));
    }

    #[test]
    fn tokens_become_headers_per_host_first() {
        let secrets = |id: &str| match id {
            "GIT_AUTH_TOKEN" => Some(b"general".to_vec()),
            "GIT_AUTH_TOKEN.example.com" => Some(b"special".to_vec()),
            _ => None,
        };
        let a = GitAuth::for_remote("https://example.com/r.git", secrets, None);
        assert_eq!(
            a.config,
            [(
                "http.https://example.com/.extraheader".to_string(),
                format!(
                    "Authorization: basic {}",
                    base64_encode(b"x-access-token:special")
                )
            )]
        );
        let b = GitAuth::for_remote("https://other.org/r.git", secrets, None);
        assert!(
            b.config[0]
                .1
                .ends_with(&base64_encode(b"x-access-token:general"))
        );
        // BuildKit's name for a host with a port is HOST:PORT; the
        // header is set for that URL, port included (git matches it).
        let ported =
            |id: &str| (id == "GIT_AUTH_HEADER.example.com:8443").then(|| b"bearer x".to_vec());
        let p = GitAuth::for_remote("https://example.com:8443/r.git", ported, None);
        assert_eq!(
            p.config,
            [(
                "http.https://example.com:8443/.extraheader".to_string(),
                "Authorization: bearer x".to_string()
            )]
        );
        let ssh = GitAuth::for_remote("git@example.com:r.git", secrets, None);
        assert!(ssh.config.is_empty());
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
    }
}
