//! Build inputs besides the main context, made ready before planning:
//! `--ssh` agents checked to be agents, and `--build-context`s turned
//! into what the planner and worker take — an image to resolve, an image
//! put in the store from an OCI layout, or a directory (local, or a git
//! repository or tarball fetched into a temporary one). [`fetch_context`]
//! fetches a remote main context the same way.
//!
//! A fetched directory is opened like the main context, so its keys come
//! from its content. `.dockerignore` is applied as BuildKit applies it to
//! a named context (`dockerui/namedcontext.go`): for a local directory,
//! the file at its root (never the Dockerfile's `<name>.dockerignore`);
//! for a git repository or a tarball, none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_context::remote::{self, RemoteError};
use rbuild_solver::Digest;
use rbuild_solver::ImageConfig;
use rbuild_solver::plan::{NamedContext, NamedContexts, ResolvedImage, context_key, parse_git_url};
use rbuild_store::Store;
use rbuild_store::layout::{Descriptor, Index, Manifest};
use rbuild_worker::git::{self, GitAuth, GitError};
use rbuild_worker::ssh::{self, AgentError, KeyAgent, KeyError, SshAgents};

use crate::spec::inputs::{ContextSource, SshSpec};

/// A build input that could not be made ready; each names the flag and
/// value it is about.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "--ssh {id}: SSH_AUTH_SOCK is not set\nhint: start an agent (eval \"$(ssh-agent)\"; ssh-add) or pass --ssh {id}=SOCKET"
    )]
    SshAuthSockUnset { id: String },
    #[error("--ssh {id}")]
    SshAgent {
        id: String,
        #[source]
        source: AgentError,
    },
    #[error("--ssh {id}")]
    SshKeys {
        id: String,
        #[source]
        source: KeyError,
    },
    #[error("--ssh {id}={}: no such socket or key file", path.display())]
    SshPathMissing { id: String, path: PathBuf },
    #[error("--build-context {name}={}: not a directory", path.display())]
    ContextDir { name: String, path: PathBuf },
    #[error("--build-context {name}")]
    ContextGit {
        name: String,
        #[source]
        source: GitError,
    },
    #[error("--build-context {name}")]
    ContextRemote {
        name: String,
        #[source]
        source: RemoteError,
    },
    #[error("--build-context {name}=oci-layout://{}: {why}", dir.display())]
    OciLayout {
        name: String,
        dir: PathBuf,
        why: String,
    },
    #[error("--build-context {name}=oci-layout://{}", dir.display())]
    OciStore {
        name: String,
        dir: PathBuf,
        #[source]
        source: Box<rbuild_store::StoreError>,
    },
    #[error("cannot make a temporary directory for {what}")]
    Temp {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The inputs of one build, ready: what the planner and the worker get.
/// Holds the temporary directories of fetched contexts until dropped.
#[derive(Debug, Default)]
pub(crate) struct ReadyInputs {
    pub named: NamedContexts,
    /// Directories of the named contexts that are [`NamedContext::Local`],
    /// by key.
    pub dirs: BTreeMap<String, PathBuf>,
    /// Keys of the named contexts fetched into a temporary directory (git,
    /// tarball): no `.dockerignore` and no stat cache for them.
    pub fetched: std::collections::BTreeSet<String>,
    pub ssh: Agents,
    _temps: Vec<tempfile::TempDir>,
}

/// Checks each `--ssh` agent answers and prepares each
/// `--build-context`. `env` reads the process environment
/// (`SSH_AUTH_SOCK`); `secret` looks a `--secret` up by id (git
/// credentials).
pub(crate) fn prepare(
    store: &Store,
    ssh_specs: &[SshSpec],
    contexts: &[crate::spec::inputs::NamedContextSpec],
    env: &dyn Fn(&str) -> Option<String>,
    secret: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<ReadyInputs, InputError> {
    let mut ready = ReadyInputs {
        ssh: agents(ssh_specs, env)?,
        ..ReadyInputs::default()
    };
    for spec in contexts {
        let key = context_key(&spec.name);
        let name = &spec.name;
        match &spec.source {
            ContextSource::Image(r) => {
                ready.named.insert(key, NamedContext::Image(r.clone()));
            }
            ContextSource::OciLayout { dir, reference } => {
                let image = import_oci_layout(store, name, dir, reference.as_deref())?;
                ready
                    .named
                    .insert(key, NamedContext::Resolved(Box::new(image)));
            }
            ContextSource::Local(dir) => {
                if !dir.is_dir() {
                    return Err(InputError::ContextDir {
                        name: name.clone(),
                        path: dir.clone(),
                    });
                }
                ready.named.insert(key.clone(), NamedContext::Local);
                ready.dirs.insert(key, dir.clone());
            }
            remote_source => {
                let temp = tempfile::Builder::new()
                    .prefix("rbuild-context-")
                    .tempdir()
                    .map_err(|source| InputError::Temp {
                        what: format!("--build-context {name}"),
                        source,
                    })?;
                let dir = fetch_context(remote_source, temp.path(), &ready.ssh.sockets, secret)
                    .map_err(|e| match e {
                        FetchError::Git(source) => InputError::ContextGit {
                            name: name.clone(),
                            source,
                        },
                        FetchError::Remote(source) => InputError::ContextRemote {
                            name: name.clone(),
                            source,
                        },
                    })?;
                ready.named.insert(key.clone(), NamedContext::Local);
                ready.fetched.insert(key.clone());
                ready.dirs.insert(key, dir);
                ready._temps.push(temp);
            }
        }
    }
    Ok(ready)
}

/// The `--ssh` agents of a build: sockets by id, and the agents this
/// process serves for key files (which stop when this is dropped).
#[derive(Debug, Default)]
pub struct Agents {
    pub sockets: SshAgents,
    /// Each served agent with the private directory of its socket
    /// (dropped in that order).
    _served: Vec<(KeyAgent, tempfile::TempDir)>,
}

/// `--ssh` specs → agent sockets, each checked to answer as an agent:
/// `$SSH_AUTH_SOCK` when no path is given, a given socket, or key files
/// served by an agent in this process ([`KeyAgent`]), as buildx does.
pub fn agents(
    specs: &[SshSpec],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Agents, InputError> {
    let mut out = Agents::default();
    for spec in specs {
        let socket = match spec.paths.as_slice() {
            [] => match env("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
                Some(s) => PathBuf::from(s),
                None => {
                    return Err(InputError::SshAuthSockUnset {
                        id: spec.id.clone(),
                    });
                }
            },
            [one] if is_socket(one) => one.clone(),
            paths => {
                if let Some(path) = paths.iter().find(|p| !p.exists()) {
                    return Err(InputError::SshPathMissing {
                        id: spec.id.clone(),
                        path: path.clone(),
                    });
                }
                let key_err = |source| InputError::SshKeys {
                    id: spec.id.clone(),
                    source,
                };
                let keys = KeyAgent::load(paths).map_err(key_err)?;
                let dir = tempfile::Builder::new()
                    .prefix("rbuild-ssh-")
                    .tempdir()
                    .map_err(|source| InputError::Temp {
                        what: format!("--ssh {}", spec.id),
                        source,
                    })?;
                let agent =
                    KeyAgent::start(&dir.path().join("agent.sock"), keys).map_err(key_err)?;
                let socket = agent.socket().to_path_buf();
                out._served.push((agent, dir));
                socket
            }
        };
        ssh::probe(&socket).map_err(|source| InputError::SshAgent {
            id: spec.id.clone(),
            source,
        })?;
        out.sockets.insert(spec.id.clone(), socket);
    }
    Ok(out)
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Why a remote context could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Fetches a git or tarball context into the empty directory `dest` and
/// returns the directory to use as the context (for git, the `:DIR` of
/// `URL#REF:DIR` inside the checkout). `.git` is not kept, as BuildKit
/// does for git contexts. Local and image sources are returned as they
/// are (a local directory) or not fetched (`dest`).
pub fn fetch_context(
    source: &ContextSource,
    dest: &Path,
    ssh: &SshAgents,
    secret: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<PathBuf, FetchError> {
    match source {
        ContextSource::Git(url) => {
            let g = parse_git_url(url).expect("a Git source parses as a git URL");
            let auth = GitAuth::for_remote(
                &g.remote,
                secret,
                ssh.get_path(rbuild_solver::op::DEFAULT_SSH_ID),
            );
            let commit = git::resolve(&g.remote, &g.reference, None, &auth)?;
            git::checkout(&g.remote, &g.reference, &commit, false, dest, &auth)?;
            let dir = if g.subdir.is_empty() {
                dest.to_path_buf()
            } else {
                dest.join(&g.subdir)
            };
            if !dir.is_dir() {
                return Err(GitError::NoSubdir {
                    remote: g.remote,
                    commit,
                    subdir: g.subdir,
                }
                .into());
            }
            Ok(dir)
        }
        ContextSource::Url(url) => {
            remote::fetch_tarball(url, dest)?;
            Ok(dest.to_path_buf())
        }
        ContextSource::Local(dir) => Ok(dir.clone()),
        ContextSource::Image(_) | ContextSource::OciLayout { .. } => Ok(dest.to_path_buf()),
    }
}

/// Puts the image `reference` (a digest, a tag, or the only image) of
/// the OCI layout `dir` into the store and resolves it.
fn import_oci_layout(
    store: &Store,
    name: &str,
    dir: &Path,
    reference: Option<&str>,
) -> Result<ResolvedImage, InputError> {
    let bad = |why: String| InputError::OciLayout {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        why,
    };
    let read_json = |path: PathBuf| -> Result<serde_json::Value, InputError> {
        let bytes = std::fs::read(&path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("{} is not valid JSON: {e}", path.display())))
    };
    let index: Index = serde_json::from_value(read_json(dir.join("index.json"))?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let chosen: &Descriptor = match reference {
        Some(r) if r.starts_with("sha256:") => index
            .manifests
            .iter()
            .find(|d| d.digest == r)
            .ok_or_else(|| bad(format!("no image {r} in index.json")))?,
        Some(tag) => index
            .manifests
            .iter()
            .find(|d| {
                d.annotations
                    .get("org.opencontainers.image.ref.name")
                    .is_some_and(|n| n == tag || n.rsplit(':').next() == Some(tag))
            })
            .ok_or_else(|| bad(format!("no image tagged {tag:?} in index.json")))?,
        None => match index.manifests.as_slice() {
            [only] => only,
            [] => return Err(bad("index.json lists no image".to_string())),
            _ => {
                return Err(bad(
                    "index.json lists several images\nhint: name one with @sha256:… or :TAG"
                        .to_string(),
                ));
            }
        },
    };
    let blob = |digest: &str| -> Result<PathBuf, InputError> {
        let d: Digest = digest
            .parse()
            .map_err(|e| bad(format!("bad digest {digest:?}: {e}")))?;
        Ok(dir.join("blobs").join("sha256").join(d.hex()))
    };
    let mut manifest_desc = chosen.clone();
    // An index (multi-platform): the host's manifest.
    if manifest_desc.media_type.contains("index") {
        let nested: Index = serde_json::from_value(read_json(blob(&manifest_desc.digest)?)?)
            .map_err(|e| bad(format!("image index: {e}")))?;
        let host = rbuild_oci::Platform::host();
        manifest_desc = nested
            .manifests
            .iter()
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    p["os"] == host.os.as_str() && p["architecture"] == host.architecture.as_str()
                })
            })
            .cloned()
            .ok_or_else(|| bad(format!("no manifest for {host} in the image index")))?;
    }
    let manifest: Manifest = serde_json::from_value(read_json(blob(&manifest_desc.digest)?)?)
        .map_err(|e| bad(format!("manifest: {e}")))?;
    let store_err = |source| InputError::OciStore {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        source: Box::new(source),
    };
    let mut digests = vec![manifest_desc.digest.clone(), manifest.config.digest.clone()];
    digests.extend(manifest.layers.iter().map(|l| l.digest.clone()));
    for d in &digests {
        let path = blob(d)?;
        let expected: Digest = d
            .parse()
            .map_err(|e| bad(format!("bad digest {d:?}: {e}")))?;
        let mut f = std::fs::File::open(&path)
            .map_err(|e| bad(format!("cannot read blob {}: {e}", path.display())))?;
        store.put_blob(&mut f, Some(expected)).map_err(store_err)?;
    }
    let manifest_digest: Digest = manifest_desc
        .digest
        .parse()
        .map_err(|e| bad(format!("bad digest: {e}")))?;
    let config_digest: Digest = manifest
        .config
        .digest
        .parse()
        .map_err(|e| bad(format!("bad digest: {e}")))?;
    let raw = store.read_blob(&config_digest).map_err(store_err)?;
    let config: ImageConfig =
        serde_json::from_slice(&raw).map_err(|e| bad(format!("image config: {e}")))?;
    Ok(ResolvedImage {
        reference: format!("oci-layout://{}@{manifest_digest}", dir.display()),
        digest: manifest_digest,
        config,
    })
}
