//! Ops: what a step of a build does, with everything already expanded
//! (variables substituted, paths made absolute, defaults applied). The
//! planner produces them from Dockerfile instructions; `rbuild-worker`
//! carries them out. Nothing here names Dockerfile syntax.
//!
//! Each op encodes every field that affects its result into its cache key
//! ([`KeyedOp::encode`]); fields that only affect display (`display`) or
//! that must never reach a key (secret contents, which ops never hold —
//! only secret ids) are left out.
//!
//! Inputs: a step's inputs are other steps' results, in an order each op
//! documents. Input 0 is always the root filesystem the op works on
//! (except for sources: [`Op::Image`] and [`Op::Scratch`] have none).

use crate::cache_key::KeyEncoder;
use crate::digest::Digest;
use crate::graph::KeyedOp;

/// One step's operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A base image's root filesystem. No inputs.
    Image(ImageOp),
    /// An empty root filesystem (`FROM scratch`). No inputs.
    Scratch,
    /// Runs a command on input 0's filesystem; its changes become a layer.
    /// Further inputs are read by [`ExecMountKind::Input`] mounts.
    Exec(ExecOp),
    /// Copies files into input 0's filesystem as a new layer; from the
    /// build context, from input 1 (a stage or image), or inline content.
    Copy(CopyOp),
    /// Creates a directory (WORKDIR) and its missing parents on input 0's
    /// filesystem; a layer only when something was created.
    Mkdir(MkdirOp),
    /// Input 0's layers followed by input 1's layers, without executing
    /// anything (`COPY --link`: the copy is made on scratch, so its key
    /// does not depend on the layers below it, then stacked).
    Merge,
    /// A named build context (`--build-context NAME=DIR`) as a
    /// filesystem: its files (after its `.dockerignore`) as one layer.
    /// No inputs; the key holds the digest of its content.
    Local(LocalOp),
    /// A git repository at one commit (`ADD URL.git#REF`) as a
    /// filesystem of one layer. No inputs; the key holds the commit the
    /// ref resolved to, never the ref alone.
    Git(GitOp),
}

/// A named local build context, by the name the worker knows it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOp {
    /// The context's name as given to `--build-context` (normalized).
    pub name: String,
}

/// A git source: where, which ref, which part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOp {
    /// The remote as git takes it (`https://…`, `ssh://…`,
    /// `git@host:path`, `git://…`), without the `#fragment`.
    pub remote: String,
    /// Branch, tag or commit; empty: the remote's HEAD.
    pub reference: String,
    /// A directory of the repository to take instead of its root.
    pub subdir: String,
    /// Keep the `.git` directory (`ADD --keep-git-dir`).
    pub keep_git_dir: bool,
    /// `ADD --checksum=COMMIT`: the commit the ref must resolve to; the
    /// key uses it without asking the remote.
    pub checksum: Option<String>,
}

/// A base image, named by what was resolved: the manifest digest, never
/// the tag, so a moved tag is a different step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOp {
    /// The normalized reference as written after expansion, e.g.
    /// `docker.io/library/busybox:latest` (for display and for pulling).
    pub reference: String,
    /// The resolved manifest digest.
    pub digest: Digest,
    /// `os/arch[/variant]` the image was resolved for.
    pub platform: String,
}

/// Network of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecNetwork {
    /// The host's network (the default for builds, as with BuildKit).
    #[default]
    Host,
    /// Only a loopback interface.
    None,
}

/// Runs a process in a sandbox on input 0's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOp {
    /// argv (the shell and `-c` already prepended for shell form).
    pub args: Vec<String>,
    /// `KEY=VALUE`, in the order the process gets them: the stage's ENV
    /// (image env first) then build args in scope that ENV does not set.
    pub env: Vec<String>,
    /// Absolute working directory (created when missing).
    pub cwd: String,
    /// `user[:group]` as the stage's USER says (empty: root).
    pub user: String,
    pub network: ExecNetwork,
    /// Extra mounts, in the order given.
    pub mounts: Vec<ExecMount>,
    /// Predefined proxy args (`HTTP_PROXY`, `no_proxy`, …) the process
    /// gets without the Dockerfile declaring them. Not part of the key
    /// (or of history), as with Docker: a proxy setting does not change
    /// what a step builds.
    pub proxy_env: Vec<String>,
    /// The instruction as shown in progress and reports, e.g.
    /// `RUN make`. Not part of the key.
    pub display: String,
}

/// One extra mount of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecMount {
    /// Absolute path inside the sandbox.
    pub target: String,
    pub kind: ExecMountKind,
}

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecMountKind {
    /// `type=bind` from the build context; `source` is relative to the
    /// context root. Writes are discarded when `readonly` is false.
    Context { source: String, readonly: bool },
    /// `type=bind,from=STAGE|IMAGE`: `source` inside the filesystem that
    /// is the op's input number `input` (≥ 1).
    Input {
        input: usize,
        source: String,
        readonly: bool,
    },
    /// `type=bind,from=NAME` of a named local context: `source` relative
    /// to its root; keyed by the content it shows, as a context mount.
    Named {
        name: String,
        source: String,
        readonly: bool,
    },
    /// `type=cache`: a directory kept in the store across builds, by `id`
    /// (defaults to the target path). Its contents are never part of a
    /// key or a layer.
    Cache {
        id: String,
        sharing: CacheSharing,
        /// Mode of the cache directory when created (default 0755).
        mode: u32,
        uid: u32,
        gid: u32,
        readonly: bool,
        /// `from=` + `source=`: seed the cache from input number `input`
        /// at `source` when it is first created.
        seed: Option<(usize, String)>,
    },
    /// `type=tmpfs`, `size` in bytes (None: the kernel's default).
    Tmpfs { size: Option<u64> },
    /// `type=secret`: the secret `id` as a file at `target` (default
    /// `/run/secrets/<id>`), or when `env` is set exposed as that
    /// variable. Only the id is in the key; the content never is.
    Secret {
        id: String,
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A file with fixed content (a RUN heredoc), read-only.
    File { content: String, mode: u32 },
    /// `type=ssh`: a socket at `target` that forwards to the agent `--ssh`
    /// gave for `id`; `SSH_AUTH_SOCK` points at it. Only the id is in the
    /// key, never the agent's socket path or its keys.
    Ssh {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    /// Concurrent steps use the same directory.
    #[default]
    Shared,
    /// A concurrent step gets a fresh directory of its own.
    Private,
    /// Concurrent steps wait for each other.
    Locked,
}

/// WORKDIR's directory creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkdirOp {
    /// Absolute path.
    pub path: String,
    /// `user[:group]` owning the created directories (the stage's USER;
    /// empty: root), resolved from the filesystem's /etc/passwd.
    pub user: String,
    /// e.g. `WORKDIR /app`. Not in the key.
    pub display: String,
}

/// Where COPY/ADD read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// The build context (after `.dockerignore`).
    Context,
    /// Input 1: a stage's or image's filesystem (`--from`).
    Input,
    /// Files given inline (heredocs): `(name, content)`; names are
    /// relative to the destination.
    Inline(Vec<(String, String)>),
    /// A named local context (`--build-context NAME=DIR`), read in place
    /// as the main context is, so only the selected files are in the key.
    Named(String),
}

/// COPY or ADD into a new layer on input 0's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOp {
    pub source: CopySource,
    /// Source paths or patterns (Go `filepath.Match`), expanded, relative
    /// to the source root; URLs for ADD. Empty for `Inline`.
    pub sources: Vec<String>,
    /// Absolute destination (WORKDIR applied); a trailing `/` kept, as it
    /// decides directory-vs-file.
    pub dest: String,
    /// `--chown` as written after expansion (`user[:group]`, names
    /// resolved from the destination's /etc/passwd and /etc/group).
    pub chown: Option<String>,
    /// `--chmod`: octal or symbolic, as written after expansion.
    pub chmod: Option<String>,
    /// `--link`: the layer does not depend on the destination's content.
    pub link: bool,
    /// `--parents`: keep source paths' parent directories.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD's extra behaviour; `None` for COPY.
    pub add: Option<AddOptions>,
    /// The instruction as shown, e.g. `COPY src/ /app/`. Not in the key.
    pub display: String,
}

impl CopyOp {
    /// A plain `COPY SOURCES DEST` from `source`: no flags, nothing shown.
    pub fn plain(source: CopySource, sources: &[&str], dest: &str) -> CopyOp {
        CopyOp {
            source,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.to_string(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: Vec::new(),
            add: None,
            display: String::new(),
        }
    }
}

/// ADD's options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddOptions {
    /// Extract local tar archives (gzip/bzip2/xz/zstd detected by content).
    /// Default true; `--unpack=false` turns it off.
    pub unpack: bool,
    /// `--checksum=sha256:…` for URL sources.
    pub checksum: Option<Digest>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
}

/// `type=ssh`'s defaults, as BuildKit's: the id `default`, the socket at
/// `/run/buildkit/ssh_agent.N` (N counting the step's ssh mounts).
pub const DEFAULT_SSH_ID: &str = "default";

impl ExecMountKind {
    fn encode(&self, enc: &mut KeyEncoder) {
        match self {
            ExecMountKind::Context { source, readonly } => {
                enc.str("mount", "context")
                    .str("source", source)
                    .bool("readonly", *readonly);
            }
            ExecMountKind::Named {
                name,
                source,
                readonly,
            } => {
                enc.str("mount", "named")
                    .str("name", name)
                    .str("source", source)
                    .bool("readonly", *readonly);
            }
            ExecMountKind::Input {
                input,
                source,
                readonly,
            } => {
                enc.str("mount", "input")
                    .u64("input", *input as u64)
                    .str("source", source)
                    .bool("readonly", *readonly);
            }
            ExecMountKind::Cache {
                id,
                sharing,
                mode,
                uid,
                gid,
                readonly,
                seed,
            } => {
                enc.str("mount", "cache")
                    .str("id", id)
                    .str(
                        "sharing",
                        match sharing {
                            CacheSharing::Shared => "shared",
                            CacheSharing::Private => "private",
                            CacheSharing::Locked => "locked",
                        },
                    )
                    .u64("mode", u64::from(*mode))
                    .u64("uid", u64::from(*uid))
                    .u64("gid", u64::from(*gid))
                    .bool("readonly", *readonly);
                match seed {
                    None => enc.opt_str("seed", None),
                    Some((input, source)) => {
                        enc.u64("seed-input", *input as u64).str("seed", source)
                    }
                };
            }
            ExecMountKind::Tmpfs { size } => {
                enc.str("mount", "tmpfs").u64("size", size.unwrap_or(0));
            }
            ExecMountKind::Secret {
                id,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                enc.str("mount", "secret")
                    .str("id", id)
                    .opt_str("env", env.as_deref())
                    .bool("required", *required)
                    .u64("mode", u64::from(*mode))
                    .u64("uid", u64::from(*uid))
                    .u64("gid", u64::from(*gid));
            }
            ExecMountKind::File { content, mode } => {
                enc.str("mount", "file")
                    .str("content", content)
                    .u64("mode", u64::from(*mode));
            }
            ExecMountKind::Ssh {
                id,
                required,
                mode,
                uid,
                gid,
            } => {
                enc.str("mount", "ssh")
                    .str("id", id)
                    .bool("required", *required)
                    .u64("mode", u64::from(*mode))
                    .u64("uid", u64::from(*uid))
                    .u64("gid", u64::from(*gid));
            }
        }
    }
}

impl KeyedOp for Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Image(_) => "image",
            Op::Scratch => "scratch",
            Op::Exec(_) => "exec",
            Op::Copy(_) => "copy",
            Op::Mkdir(_) => "mkdir",
            Op::Merge => "merge",
            Op::Local(_) => "local",
            Op::Git(_) => "git",
        }
    }

    fn encode(&self, enc: &mut KeyEncoder) {
        match self {
            // The digest names the content; the reference is only how it
            // was found, so a retagged identical image is the same step.
            Op::Image(i) => {
                enc.digest("digest", &i.digest).str("platform", &i.platform);
            }
            Op::Scratch | Op::Merge => {}
            // The content digest (the worker's) is the rest of the key.
            Op::Local(l) => {
                enc.str("name", &l.name);
            }
            // The resolved commit (the worker's content digest) names the
            // tree; the remote and ref say where it was found (two refs
            // are two steps, each keyed by its own commit, so a moved
            // branch re-runs only what reads it).
            Op::Git(g) => {
                enc.str("remote", &g.remote)
                    .str("ref", &g.reference)
                    .opt_str("checksum", g.checksum.as_deref())
                    .str("subdir", &g.subdir)
                    .bool("keep-git-dir", g.keep_git_dir);
            }
            Op::Mkdir(m) => {
                enc.str("path", &m.path).str("user", &m.user);
            }
            Op::Exec(e) => {
                enc.strs("args", &e.args)
                    .strs("env", &e.env)
                    .str("cwd", &e.cwd)
                    .str("user", &e.user)
                    .str(
                        "network",
                        match e.network {
                            ExecNetwork::Host => "host",
                            ExecNetwork::None => "none",
                        },
                    )
                    .u64("mounts", e.mounts.len() as u64);
                for m in &e.mounts {
                    enc.str("target", &m.target);
                    m.kind.encode(enc);
                }
            }
            Op::Copy(c) => {
                match &c.source {
                    CopySource::Context => {
                        enc.str("source", "context");
                    }
                    CopySource::Input => {
                        enc.str("source", "input");
                    }
                    CopySource::Named(name) => {
                        enc.str("source", "named").str("name", name);
                    }
                    CopySource::Inline(files) => {
                        enc.str("source", "inline").u64("files", files.len() as u64);
                        for (name, content) in files {
                            enc.str("name", name).str("content", content);
                        }
                    }
                }
                enc.strs("sources", &c.sources)
                    .str("dest", &c.dest)
                    .opt_str("chown", c.chown.as_deref())
                    .opt_str("chmod", c.chmod.as_deref())
                    .bool("link", c.link)
                    .bool("parents", c.parents)
                    .strs("exclude", &c.exclude);
                match &c.add {
                    None => {
                        enc.bool("add", false);
                    }
                    Some(a) => {
                        enc.bool("add", true)
                            .bool("unpack", a.unpack)
                            .opt_str("checksum", a.checksum.map(|d| d.to_string()).as_deref())
                            .bool("keep-git-dir", a.keep_git_dir);
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Op::Image(i) => format!("FROM {}@{}", i.reference, i.digest),
            Op::Scratch => "FROM scratch".to_string(),
            Op::Exec(e) => e.display.clone(),
            Op::Copy(c) => c.display.clone(),
            Op::Mkdir(m) => m.display.clone(),
            Op::Merge => "merge".to_string(),
            Op::Local(l) => format!("[context {}] load from client", l.name),
            Op::Git(g) => {
                if g.reference.is_empty() {
                    format!("git {}", g.remote)
                } else {
                    format!("git {}#{}", g.remote, g.reference)
                }
            }
        }
    }
}
