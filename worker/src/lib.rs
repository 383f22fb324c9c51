//! The build worker: carries out a build graph's [`Op`]s against the store
//! (the solver's [`Worker`] trait), keeps the persistent cache index
//! ([`StoreCacheIndex`]), resolves base images from the store
//! ([`StoreResolver`]) and saves what explains a later cache miss
//! ([`LineageStore`]).
//!
//! A step's result ([`StepOutput`]) is its root filesystem as a stack of
//! layers in the store, bottom first. Executing an op that changes the
//! filesystem (RUN, COPY, WORKDIR) adds at most one layer: RUN's changes
//! are the overlay upper dir of its process, run by a [`Runner`] (the
//! sandbox, [`SandboxRunner`], unless [`BuildWorker::with_runner`] says
//! otherwise), packed with [`rbuild_store::layer::pack_diff`];
//! COPY and WORKDIR layers are written by [`rbuild_context::copy`]. Layers are
//! stored uncompressed (OCI tar media type, blob digest = diffID) and
//! unpacked as snapshots so later steps can use them as overlay lowers:
//! a RUN's upper dir becomes its snapshot as it is (as root), and its
//! blob is written in the background while later steps run (see
//! `tree_layer_deferred`; a step no other step reads writes it at once,
//! see [`BuildWorker::with_last_steps`]); any other new layer is unpacked
//! only when a later step reads it (a COPY of 100,000 files that ends a
//! build, as most do, never creates those files a second time; see
//! `write_layer`).
//!
//! Store safety: the worker holds a [`WriteSession`] for its whole life,
//! so a concurrent `gc` (another process) waits until the build is over
//! and never deletes a blob between its creation and its cache-index
//! record. Drop the worker before calling [`Store::gc`] in this process.
//! Once the steps are done, call [`Store::finish_deferred_blobs`] before
//! using the layers' blobs: it reports a RUN layer's blob that could not
//! be written, and writes the cache-index records held back until their
//! blobs were stored.
//!
//! Secrets (`--secret`) and heredoc files reach a RUN's [`Runner`] in
//! memory ([`MountSource::File`]); the sandbox writes them to the tmpfs
//! private to the run's mount namespace, which the kernel frees when the
//! run ends, however it ends. They are never written to a directory of the
//! host, the store, a layer, a key, a cache-index record or a log.
//!
//! Snapshots of a base image that the store lacks (just loaded or pulled)
//! start unpacking in the background when its FROM step executes, so the
//! first COPY or RUN on it waits only for what is left.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cache_index;
mod cache_mount;
pub mod cache_registry;
pub mod cache_transfer;
mod exec;
pub mod git;
mod lineage;
mod phases;
mod prefetch;
mod resolver;
mod runner;
mod scratch;
pub mod ssh;
pub mod testing;
mod tree_copy;
mod upper_dir;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use rbuild_solver::graph::StepId;
use rbuild_solver::op::{CopySource, ExecMountKind, ExecOp, GitOp, Op};
use rbuild_solver::scheduler::{PhaseSpan, Worker};
use rbuild_solver::{Digest, KeyEncoder};

use rbuild_context::copy::{self, CopyError, LayeredFs, SourceFs};
use rbuild_oci::time;
use rbuild_sandbox::SandboxError;
use rbuild_store::layer::{LayerError, PackOptions, PackStats};
use rbuild_store::layout::MEDIA_TYPE_LAYER_TAR;
use rbuild_store::{LayerInfo, Store, StoreError, WriteSession};

pub use cache_index::{
    CACHE_INDEX_VERSION, CacheIndexRoots, CacheRecordInfo, CacheUsage, DamagedRecord, PruneOptions,
    PruneReport, StoreCacheIndex, check_records,
};
pub use lineage::LineageStore;
pub use resolver::{ResolveError, StoreResolver};
pub use runner::{
    MountSource, RunIo, RunMount, RunRootfs, RunSpec, RunStatus, Runner, SandboxRunner,
};

/// A build step failed; names the path, digest, secret or command involved.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The command ran and exited with a non-zero code (Docker's wording).
    #[error("process {command:?} did not complete successfully: exit code: {code}")]
    ExitCode {
        command: String,
        code: i32,
        /// The last lines the command printed (stdout and stderr mixed,
        /// in arrival order), for the error report.
        last_lines: Vec<String>,
    },
    /// The sandbox could not start or could not execute the command.
    #[error("cannot run {command:?}")]
    Sandbox {
        command: String,
        last_lines: Vec<String>,
        #[source]
        source: Box<SandboxError>,
    },
    #[error(
        "secret {id:?} is required but was not given\nhint: pass it with --secret id={id},src=FILE (or env=VAR)"
    )]
    MissingSecret { id: String },
    #[error(
        "base image {reference} ({digest}) is not in the store\nhint: `rbuild import` or `rbuild load` adds it"
    )]
    MissingImage { reference: String, digest: Digest },
    #[error("packing the changes of the step into a layer failed")]
    Pack {
        #[source]
        source: LayerError,
    },
    #[error("copying files failed")]
    Copy {
        #[source]
        source: CopyError,
    },
    #[error(
        "mount source {} does not exist in {what}",
        rbuild_oci::path_text::quoted(source_path)
    )]
    MountSource { what: String, source_path: String },
    #[error("a {op} step has no input {input}")]
    MissingInput { op: &'static str, input: usize },
    #[error("COPY needs a build context, and none was given")]
    NoContext,
    #[error("malformed JSON in {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the build was cancelled")]
    Cancelled,
    /// A blob of a cache hit imported with `--cache-from` could not be
    /// fetched when a step or the exporter first needed it.
    #[error(transparent)]
    CacheFetch(Box<cache_transfer::LazyFetchError>),
    #[error(
        "ssh agent {id:?} is required but was not given\nhint: pass it with --ssh {id}[=SOCKET] (default: $SSH_AUTH_SOCK)"
    )]
    MissingSsh { id: String },
    #[error("named context {name:?} was not given to the worker")]
    MissingNamedContext { name: String },
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error(transparent)]
    Context(#[from] rbuild_context::ContextError),
}

impl BuildError {
    /// Wraps an I/O error at `path`; a full disk is the store's
    /// [`StoreError::DiskFull`], which says so (with what to do about it)
    /// instead of `I/O error at …`.
    fn io(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
        move |source| match StoreError::io(path)(source) {
            full @ StoreError::DiskFull { .. } => BuildError::Store(full),
            StoreError::Io { path, source } => BuildError::Io { path, source },
            other => BuildError::Store(other),
        }
    }

    /// The last output lines of a failed command, if this is one.
    pub fn last_lines(&self) -> &[String] {
        match self {
            BuildError::ExitCode { last_lines, .. } | BuildError::Sandbox { last_lines, .. } => {
                last_lines
            }
            _ => &[],
        }
    }
}

/// One layer of a step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLayer {
    pub info: LayerInfo,
    /// When the layer was made (RFC 3339), for the image history; `None`
    /// for a base image's layers (its own history says).
    pub created: Option<String>,
}

/// The per-file digests behind a content digest, (path, digest) sorted
/// by path: shared between the worker and the steps' fingerprints (on
/// disk for a large context).
pub type SharedFiles = rbuild_solver::FileDigests;

/// A step's result: its root filesystem as layers in the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepOutput {
    /// Bottom first.
    pub layers: Vec<BuiltLayer>,
    /// How many of the top `layers` this step added on top of input 0
    /// (0 or 1 for RUN/COPY/WORKDIR; all of them for a base image; input
    /// 1's count for a merge).
    pub added: usize,
}

impl StepOutput {
    /// The layers this step added.
    pub fn added_layers(&self) -> &[BuiltLayer] {
        &self.layers[self.layers.len() - self.added..]
    }

    /// The layers as the store describes them, bottom first.
    pub fn layer_infos(&self) -> Vec<LayerInfo> {
        self.layers.iter().map(|l| l.info.clone()).collect()
    }

    /// Bytes of the blobs this step added (what `docker history` shows).
    pub fn added_size(&self) -> u64 {
        self.added_layers().iter().map(|l| l.info.size).sum()
    }
}

/// Which output stream of a RUN step bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives RUN steps' output as it arrives (progress display, logs).
/// Called from reader threads; chunks are not split at line boundaries.
pub trait LogSink: Sync {
    fn output(&self, step: StepId, stream: Stream, bytes: &[u8]);
}

/// Discards all output.
pub struct NoLog;

impl LogSink for NoLog {
    fn output(&self, _: StepId, _: Stream, _: &[u8]) {}
}

/// Secret values by id (`--secret id=X,src=FILE|env=VAR`). `Debug` never
/// shows the values.
#[derive(Default, Clone)]
pub struct Secrets(BTreeMap<String, Vec<u8>>);

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Adds (or replaces) the secret `id`.
    pub fn insert(&mut self, id: impl Into<String>, value: Vec<u8>) {
        self.0.insert(id.into(), value);
    }

    fn get(&self, id: &str) -> Option<&[u8]> {
        self.0.get(id).map(Vec::as_slice)
    }

    /// A copy of the secret `id`'s value (for git credentials).
    pub fn get_value(&self, id: &str) -> Option<Vec<u8>> {
        self.0.get(id).cloned()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The build context: what COPY and `RUN --mount=type=bind` read
/// (`.dockerignore` applied by `fs`), and the directory it is.
#[derive(Clone, Copy)]
pub struct BuildContext<'a> {
    pub fs: &'a dyn SourceFs,
    pub root: &'a Path,
}

/// Build inputs besides the main context: `--build-context` directories
/// by name, `--ssh` agents.
#[derive(Default)]
pub struct WorkerInputs<'a> {
    /// Named local contexts by their key (`rbuild_solver::plan::context_key`).
    pub named: BTreeMap<String, BuildContext<'a>>,
    pub ssh: ssh::SshAgents,
}

/// What a [`BuildWorker`] works with.
pub struct WorkerConfig<'a> {
    pub store: &'a Store,
    /// `None` when the build has no context (a Dockerfile from stdin).
    pub context: Option<BuildContext<'a>>,
    pub secrets: &'a Secrets,
    pub log: &'a dyn LogSink,
    /// Set (e.g. on Ctrl-C) to kill running sandboxes and fail the build.
    pub cancel: &'a AtomicBool,
}

/// Brings blobs into the store when they are first needed. A cache hit
/// imported from another machine (`--cache-from`) names layers the store
/// may lack; they are fetched only when a step reads them or the image is
/// written, so a build downloads only what it uses
/// ([`cache_transfer::ImportingCacheIndex`] implements this).
pub trait BlobFetcher: Sync {
    /// Makes sure each of `digests` that the fetcher knows how to get is
    /// in the store, fetching (verified) the missing ones; digests it does
    /// not know are left alone, for the reader to report as missing.
    fn ensure(&self, digests: &[Digest]) -> Result<(), BuildError>;
}

/// Executes ops for [`rbuild_solver::scheduler::solve`].
pub struct BuildWorker<'a> {
    cfg: WorkerConfig<'a>,
    _session: WriteSession<'a>,
    /// Fetches the blobs of imported cache hits before their snapshots
    /// are made (`None`: every blob a result names is in the store).
    fetcher: Option<&'a dyn BlobFetcher>,
    /// Runs RUN steps' processes ([`SandboxRunner`] unless replaced).
    runner: &'a dyn Runner,
    /// Per-file digests of each COPY's sources, by content digest (the
    /// scheduler's `KeyParts::content`), for explaining misses.
    files: Mutex<BTreeMap<Digest, SharedFiles>>,
    /// Named contexts and ssh agents (none unless given).
    inputs: Option<&'a WorkerInputs<'a>>,
    /// The commit each git step's ref resolved to when its key was made,
    /// so the step fetches what its key names even if the ref moved since.
    git_commits: Mutex<BTreeMap<(String, String), String>>,
    /// Where each executed step's time went ([`BuildWorker::phases`]).
    phases: Mutex<BTreeMap<StepId, Vec<PhaseSpan>>>,
    /// Base images' snapshots unpacking ahead of the steps that need them.
    prefetch: prefetch::Prefetch,
    /// Steps that waited for such an unpack to finish, and how long.
    unpack_waits: Mutex<BTreeMap<StepId, std::time::Duration>>,
    /// Steps no other step reads (see [`BuildWorker::with_last_steps`]).
    last_steps: std::collections::HashSet<StepId>,
}

impl<'a> BuildWorker<'a> {
    /// A worker on `cfg.store`; holds a write session until dropped.
    pub fn new(cfg: WorkerConfig<'a>) -> Result<BuildWorker<'a>, BuildError> {
        let session = cfg.store.write_session()?;
        Ok(BuildWorker {
            cfg,
            _session: session,
            fetcher: None,
            runner: &SandboxRunner,
            files: Mutex::new(BTreeMap::new()),
            inputs: None,
            git_commits: Mutex::new(BTreeMap::new()),
            phases: Mutex::new(BTreeMap::new()),
            prefetch: prefetch::Prefetch::default(),
            unpack_waits: Mutex::new(BTreeMap::new()),
            last_steps: Default::default(),
        })
    }

    /// Tells the worker which steps no other step of the build reads (a
    /// target's last step). A RUN among them writes its layer's blob in
    /// the pass that hashes it: nothing runs after it to overlap a
    /// background write with, and the export needs the blob at once, so
    /// a second pass over its snapshot would only add a read.
    pub fn with_last_steps(mut self, steps: impl IntoIterator<Item = StepId>) -> BuildWorker<'a> {
        self.last_steps = steps.into_iter().collect();
        self
    }

    /// Whether `step` is one of [`BuildWorker::with_last_steps`].
    fn is_last_step(&self, step: StepId) -> bool {
        self.last_steps.contains(&step)
    }

    /// Gives the worker the build's named contexts and ssh agents.
    pub fn with_inputs(mut self, inputs: &'a WorkerInputs<'a>) -> BuildWorker<'a> {
        self.inputs = Some(inputs);
        self
    }

    fn ssh_agent(&self, id: &str) -> Option<&Path> {
        self.inputs.and_then(|i| i.ssh.get(id))
    }

    fn named(&self, name: &str) -> Result<BuildContext<'a>, BuildError> {
        self.inputs
            .and_then(|i| i.named.get(name).copied())
            .ok_or_else(|| BuildError::MissingNamedContext {
                name: name.to_string(),
            })
    }

    fn git_auth(&self, remote: &str) -> git::GitAuth {
        git::GitAuth::for_remote(
            remote,
            |id| self.cfg.secrets.get(id).map(<[u8]>::to_vec),
            self.ssh_agent(rbuild_solver::op::DEFAULT_SSH_ID)
                .map(Path::to_path_buf),
        )
    }

    /// The commit a git step's ref names (asked once per build).
    fn git_commit(&self, op: &GitOp) -> Result<String, BuildError> {
        // A pinned commit is the answer without asking the remote (and is
        // not what the ref says: that is checked when the step runs).
        if let Some(pinned) = &op.checksum {
            return Ok(pinned.to_ascii_lowercase());
        }
        let id = (op.remote.clone(), op.reference.clone());
        if let Some(c) = self.git_commits.lock().expect("git lock").get(&id) {
            return Ok(c.clone());
        }
        let commit = git::resolve(&op.remote, &op.reference, None, &self.git_auth(&op.remote))?;
        self.git_commits
            .lock()
            .expect("git lock")
            .insert(id, commit.clone());
        Ok(commit)
    }

    /// A git step: the commit its key named, checked out (with its
    /// submodules; `.git` only when kept), `subdir` of it as one layer.
    fn git(&self, op: &GitOp) -> Result<StepOutput, BuildError> {
        let commit = self.git_commit(op)?;
        let auth = self.git_auth(&op.remote);
        // A pinned ref is checked against the remote when the step runs
        // (a cache hit never asks).
        if let Some(pinned) = &op.checksum
            && !op.reference.is_empty()
            && !op.reference.eq_ignore_ascii_case(pinned)
        {
            let actual = git::resolve(&op.remote, &op.reference, None, &auth)?;
            if !actual.eq_ignore_ascii_case(pinned) {
                return Err(git::GitError::Checksum {
                    remote: op.remote.clone(),
                    reference: op.reference.clone(),
                    expected: pinned.clone(),
                    actual,
                }
                .into());
            }
        }
        let scratch = scratch::ScratchDir::new(self.cfg.store, "git")?;
        let dir = scratch.path().join("checkout");
        std::fs::create_dir(&dir).map_err(BuildError::io(&dir))?;
        git::checkout(
            &op.remote,
            &op.reference,
            &commit,
            op.keep_git_dir,
            &dir,
            &auth,
        )?;
        let root = if op.subdir.is_empty() {
            dir.clone()
        } else {
            let sub = dir.join(&op.subdir);
            if !sub.is_dir() {
                return Err(git::GitError::NoSubdir {
                    remote: op.remote.clone(),
                    commit,
                    subdir: op.subdir.clone(),
                }
                .into());
            }
            sub
        };
        let fs = rbuild_context::Context::open(&root, rbuild_context::IgnoreRules::none(), None)?;
        let layer = self.tree_layer(&fs)?;
        Ok(stacked(&StepOutput::default(), layer))
    }

    /// All of `src` as one layer at `/` (a named context or a git tree).
    fn tree_layer(&self, src: &dyn SourceFs) -> Result<BuiltLayer, BuildError> {
        let op = rbuild_solver::op::CopyOp::plain(CopySource::Context, &["."], "/");
        let empty = LayeredFs::new(Vec::new());
        self.write_layer(|out| {
            copy::write_layer(&empty, Some(src), &op, out)
                .map_err(|source| BuildError::Copy { source })
        })
    }

    /// Has `runner` run RUN steps' processes instead of the sandbox
    /// (tests give a [`testing::FakeRunner`]).
    pub fn with_runner(mut self, runner: &'a dyn Runner) -> BuildWorker<'a> {
        self.runner = runner;
        self
    }

    /// Has `fetcher` bring missing blobs into the store before a step
    /// reads a result's layers (inputs of an executing step, `COPY
    /// --from` sources, `RUN --mount=from=` sources).
    pub fn with_fetcher(mut self, fetcher: &'a dyn BlobFetcher) -> BuildWorker<'a> {
        self.fetcher = Some(fetcher);
        self
    }

    /// The per-file digests behind a COPY's content digest (from
    /// `StepRecord::parts.content`), sorted by path.
    /// Shared, not copied: for a 100,000-file context that is megabytes.
    pub fn files_for(&self, content: &Digest) -> Option<SharedFiles> {
        self.files.lock().expect("files lock").get(content).cloned()
    }

    /// How long step `step` waited for its base image's snapshots to be
    /// unpacked (by the prefetch a FROM step starts), when it did: the
    /// part of a first step on a just-loaded image that is not its own
    /// work, for front ends to show.
    pub fn unpack_wait(&self, step: StepId) -> Option<std::time::Duration> {
        self.unpack_waits
            .lock()
            .expect("unpack waits lock")
            .get(&step)
            .copied()
    }

    fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cfg.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    /// The commits git sources' refs resolved to in this build, by
    /// (remote, ref): what provenance lists as git materials.
    pub fn git_commits(&self) -> BTreeMap<(String, String), String> {
        self.git_commits.lock().expect("git lock").clone()
    }

    /// Where executing `step` spent its time inside the worker (`unpack`,
    /// `mounts`, `sandbox`, `process`, `pack`, `commit`, `snapshot`), in
    /// the order the stretches ended; empty for steps it did not execute.
    pub fn phases(&self, step: StepId) -> Vec<PhaseSpan> {
        self.phases
            .lock()
            .expect("phases lock")
            .get(&step)
            .cloned()
            .unwrap_or_default()
    }

    /// Snapshot directories of `output`'s layers, top first (overlay's
    /// lowerdir order); time spent unpacking layers not unpacked yet is
    /// the `unpack` phase.
    fn snapshots(&self, output: &StepOutput) -> Result<Vec<PathBuf>, BuildError> {
        let started = std::time::Instant::now();
        let fresh = output
            .layers
            .iter()
            .any(|l| !self.cfg.store.snapshot_path(&l.info.diff_id).is_dir());
        let dirs = self.snapshots_unrecorded(output);
        if fresh {
            phases::record("unpack", started);
        }
        dirs
    }

    fn snapshots_unrecorded(&self, output: &StepOutput) -> Result<Vec<PathBuf>, BuildError> {
        if let Some(fetcher) = self.fetcher {
            // Only layers not unpacked yet need their blob.
            let missing: Vec<Digest> = output
                .layers
                .iter()
                .filter(|l| !self.cfg.store.snapshot_path(&l.info.diff_id).is_dir())
                .map(|l| l.info.digest)
                .collect();
            if !missing.is_empty() {
                fetcher.ensure(&missing)?;
            }
        }
        let infos: Vec<LayerInfo> = output.layers.iter().map(|l| l.info.clone()).collect();
        self.prefetch.wait_for(self.cfg.store, &infos);
        let mut dirs = output
            .layers
            .iter()
            .map(|l| self.cfg.store.snapshot_layer_deferred(&l.info))
            .collect::<Result<Vec<_>, _>>()?;
        dirs.reverse();
        Ok(dirs)
    }

    fn image(&self, op: &rbuild_solver::op::ImageOp) -> Result<StepOutput, BuildError> {
        // By manifest digest, straight from its blobs: no scan of every
        // image in the store (which grows with each build).
        let image = match self.cfg.store.image_by_manifest(&op.digest) {
            Ok(image) => image,
            Err(StoreError::MissingBlob { .. }) => {
                return Err(BuildError::MissingImage {
                    reference: op.reference.clone(),
                    digest: op.digest,
                });
            }
            Err(e) => return Err(e.into()),
        };
        // Steps on this image need its snapshots: start unpacking the
        // missing ones now. Not with an imported cache (`--cache-from`),
        // whose hits may need none of them.
        if self.fetcher.is_none() {
            self.prefetch.start(self.cfg.store, &image.layers);
        }
        let layers: Vec<BuiltLayer> = image
            .layers
            .into_iter()
            .map(|info| BuiltLayer {
                info,
                created: None,
            })
            .collect();
        Ok(StepOutput {
            added: layers.len(),
            layers,
        })
    }

    /// The source filesystem of a COPY: the context, input 1's layers
    /// read through their snapshots (a merged view, nothing copied), or
    /// none for inline content.
    fn with_source<T>(
        &self,
        op: &rbuild_solver::op::CopyOp,
        inputs: &[&StepOutput],
        f: impl FnOnce(Option<&dyn SourceFs>) -> Result<T, BuildError>,
    ) -> Result<T, BuildError> {
        match &op.source {
            CopySource::Context => {
                let ctx = self.cfg.context.ok_or(BuildError::NoContext)?;
                f(Some(ctx.fs))
            }
            CopySource::Inline(_) => f(None),
            CopySource::Named(name) => f(Some(self.named(name)?.fs)),
            CopySource::Input => {
                let input = inputs.get(1).ok_or(BuildError::MissingInput {
                    op: "copy",
                    input: 1,
                })?;
                let src = LayeredFs::new(self.snapshots(input)?);
                f(Some(&src))
            }
        }
    }

    /// The digest of what a RUN's bind mounts from the context show (in
    /// mount order, with their targets), or `None` when it has none: the
    /// key must change when a file the command can read changes, as a
    /// COPY's does. Mounts from stages and images are inputs, whose keys
    /// are in the step's key already.
    fn mounts_digest(&self, op: &ExecOp) -> Result<Option<Digest>, BuildError> {
        let mut enc = KeyEncoder::new("exec-mounts");
        let mut files = rbuild_solver::FileDigestsBuilder::new(Some(self.cfg.store.tmp_dir()));
        let mut any = false;
        for m in &op.mounts {
            let (ctx, source) = match &m.kind {
                ExecMountKind::Context { source, .. } => {
                    (self.cfg.context.ok_or(BuildError::NoContext)?, source)
                }
                ExecMountKind::Named { name, source, .. } => (self.named(name)?, source),
                _ => continue,
            };
            let rel = tree_copy::clean_rel(source);
            let spill = Some(self.cfg.store.tmp_dir());
            let digest = copy::tree_digest_in(ctx.fs, &rel, spill).map_err(|e| match e {
                CopyError::SourceNotFound { .. } => BuildError::MountSource {
                    what: "the build context".into(),
                    source_path: source.clone(),
                },
                source => BuildError::Copy { source },
            })?;
            enc.str("target", &m.target)
                .digest("content", &digest.digest);
            files
                .extend_from(&digest.files)
                .map_err(BuildError::io(self.cfg.store.tmp_dir()))?;
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let files = files.finish();
        let digest = enc.finish().digest();
        self.files.lock().expect("files lock").insert(digest, files);
        Ok(Some(digest))
    }

    /// Writes a layer with `write` into a new blob. A step that changed
    /// nothing still gets its (empty) layer, as in BuildKit.
    ///
    /// The layer gets no snapshot here: [`Self::snapshots`] unpacks it
    /// when a later step reads it (a RUN on it, a COPY into or from it),
    /// and `rbuild run` when it runs the image. Unpacking is one file
    /// created per entry: for a COPY of a 100,000-file context that was
    /// 8 s of a 10 s build, spent on a tree nothing read when the COPY was
    /// the last step (the image is exported from blobs, not snapshots).
    fn write_layer(
        &self,
        write: impl FnOnce(&mut dyn io::Write) -> Result<PackStats, BuildError>,
    ) -> Result<BuiltLayer, BuildError> {
        let started = std::time::Instant::now();
        // The layer is an uncompressed tar: its blob digest is its diffID,
        // which `write` computes as it packs (one sha256 pass, not two).
        let mut blob = self.cfg.store.blob_writer_prehashed()?;
        let stats = write(&mut blob)?;
        phases::record("pack", started);
        let (digest, size) = phases::time("commit", || blob.commit_as(stats.diff_id))?;
        debug_assert_eq!(
            (digest, size),
            (stats.diff_id, stats.size),
            "the packer hashed every byte it wrote"
        );
        Ok(built_layer(stats))
    }

    /// [`Self::write_layer`] for a layer packed from `tree`, a RUN step's
    /// upper dir already in the snapshot format (see
    /// [`Store::adopt_snapshot`]), which then becomes the layer's snapshot
    /// as it is: for a step no other step reads, whose blob the export
    /// needs at once (see [`Self::with_last_steps`]).
    fn tree_layer_now(
        &self,
        tree: &Path,
        write: impl FnOnce(&mut dyn io::Write) -> Result<PackStats, BuildError>,
    ) -> Result<BuiltLayer, BuildError> {
        let layer = self.write_layer(write)?;
        phases::time("snapshot", || {
            self.cfg.store.adopt_snapshot(&layer.info.diff_id, tree)
        })?;
        Ok(layer)
    }

    /// The layer of `tree`, a RUN step's upper dir already in the snapshot
    /// format (see [`Store::adopt_snapshot`]), which becomes the layer's
    /// snapshot as it is. Only the layer's identity is on the step's path:
    /// one pass over the tree hashes its tar (written nowhere); the blob,
    /// the same tar, is written on a thread of its own from the snapshot
    /// while later steps run ([`Store::write_layer_blob_deferred`]), and
    /// the build waits for it before it writes its image. For the 909 MB
    /// `apt-get` layer of a Rust toolchain, the pass that also wrote the
    /// blob took 1.46 s of the step; what is left is the hash.
    fn tree_layer_deferred(
        &self,
        tree: &Path,
        opts: PackOptions,
    ) -> Result<BuiltLayer, BuildError> {
        use rbuild_store::layer::{StreamCheck, pack_diff, pack_diff_unhashed};
        let started = std::time::Instant::now();
        // sha256 for the layer's identity, and a cheap checksum the
        // background pass is checked against (it takes no sha256).
        let mut first = StreamCheck::new(io::sink());
        let stats =
            pack_diff(tree, &mut first, &opts).map_err(|source| BuildError::Pack { source })?;
        phases::record("pack", started);
        let snapshot = phases::time("snapshot", || {
            self.cfg.store.adopt_snapshot(&stats.diff_id, tree)
        })?;
        self.cfg.store.write_layer_blob_deferred(
            stats.diff_id,
            first.sum(),
            Box::new(move |out| pack_diff_unhashed(&snapshot, out, &opts)),
        )?;
        Ok(built_layer(stats))
    }
}

/// A layer just made, stored uncompressed: its blob digest is its diffID.
fn built_layer(stats: PackStats) -> BuiltLayer {
    BuiltLayer {
        info: LayerInfo {
            digest: stats.diff_id,
            diff_id: stats.diff_id,
            size: stats.size,
            media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
        },
        created: Some(time::rfc3339(time::now_secs())),
    }
}

/// `base` with `layer` on top.
fn stacked(base: &StepOutput, layer: BuiltLayer) -> StepOutput {
    let mut layers = base.layers.clone();
    layers.push(layer);
    StepOutput { layers, added: 1 }
}

fn input<'b>(
    inputs: &[&'b StepOutput],
    n: usize,
    op: &'static str,
) -> Result<&'b StepOutput, BuildError> {
    inputs
        .get(n)
        .copied()
        .ok_or(BuildError::MissingInput { op, input: n })
}

impl Worker<Op> for BuildWorker<'_> {
    type Output = StepOutput;
    type Error = BuildError;

    fn content_digest(
        &self,
        op: &Op,
        inputs: &[&StepOutput],
    ) -> Result<Option<Digest>, BuildError> {
        let c = match op {
            Op::Copy(c) => c,
            Op::Exec(e) => return self.mounts_digest(e),
            Op::Local(l) => {
                let ctx = self.named(&l.name)?;
                let digest = copy::tree_digest_in(ctx.fs, "", Some(self.cfg.store.tmp_dir()))
                    .map_err(|source| BuildError::Copy { source })?;
                self.files
                    .lock()
                    .expect("files lock")
                    .insert(digest.digest, digest.files);
                return Ok(Some(digest.digest));
            }
            Op::Git(g) => {
                let commit = self.git_commit(g)?;
                let digest = Digest::of(format!("git-commit:{commit}").as_bytes());
                // A miss then reads "files: changed git ref main".
                let name = if g.reference.is_empty() {
                    "HEAD"
                } else {
                    &g.reference
                };
                self.files.lock().expect("files lock").insert(
                    digest,
                    SharedFiles::from_vec(vec![(format!("git ref {name}"), digest)]),
                );
                return Ok(Some(digest));
            }
            _ => return Ok(None),
        };
        if matches!(c.source, CopySource::Inline(_)) {
            // Inline content is part of the op's own key.
            return Ok(None);
        }
        let digest = self.with_source(c, inputs, |src| {
            copy::content_digest_in(src, c, Some(self.cfg.store.tmp_dir()))
                .map_err(|source| BuildError::Copy { source })
        })?;
        self.files
            .lock()
            .expect("files lock")
            .insert(digest.digest, digest.files);
        Ok(Some(digest.digest))
    }

    fn execute(
        &self,
        step: StepId,
        op: &Op,
        inputs: &[&StepOutput],
    ) -> Result<StepOutput, BuildError> {
        let (result, spans) = phases::collect(|| self.execute_op(step, op, inputs));
        if !spans.is_empty() {
            self.phases.lock().expect("phases lock").insert(step, spans);
        }
        result
    }
}

impl BuildWorker<'_> {
    fn execute_op(
        &self,
        step: StepId,
        op: &Op,
        inputs: &[&StepOutput],
    ) -> Result<StepOutput, BuildError> {
        self.check_cancel()?;
        prefetch::take_waited();
        let result = self.execute_kind(step, op, inputs);
        let waited = prefetch::take_waited();
        if !waited.is_zero() {
            self.unpack_waits
                .lock()
                .expect("unpack waits lock")
                .insert(step, waited);
        }
        result
    }
}

impl BuildWorker<'_> {
    fn execute_kind(
        &self,
        step: StepId,
        op: &Op,
        inputs: &[&StepOutput],
    ) -> Result<StepOutput, BuildError> {
        match op {
            Op::Image(i) => self.image(i),
            Op::Scratch => Ok(StepOutput::default()),
            Op::Local(l) => {
                let ctx = self.named(&l.name)?;
                let layer = self.tree_layer(ctx.fs)?;
                Ok(stacked(&StepOutput::default(), layer))
            }
            Op::Git(g) => self.git(g),
            Op::Merge => {
                let (a, b) = (input(inputs, 0, "merge")?, input(inputs, 1, "merge")?);
                let mut layers = a.layers.clone();
                layers.extend(b.layers.iter().cloned());
                Ok(StepOutput {
                    layers,
                    added: b.layers.len(),
                })
            }
            Op::Exec(e) => {
                let base = input(inputs, 0, "exec")?;
                let layer = exec::run(self, step, e, base, inputs)?;
                Ok(stacked(base, layer))
            }
            Op::Copy(c) => {
                let base = input(inputs, 0, "copy")?;
                let dest = LayeredFs::new(self.snapshots(base)?);
                let layer = self.with_source(c, inputs, |src| {
                    self.write_layer(|out| {
                        copy::write_layer(&dest, src, c, out)
                            .map_err(|source| BuildError::Copy { source })
                    })
                })?;
                Ok(stacked(base, layer))
            }
            Op::Mkdir(m) => {
                let base = input(inputs, 0, "mkdir")?;
                let dest = LayeredFs::new(self.snapshots(base)?);
                let layer = self.write_layer(|out| {
                    copy::write_mkdir_layer(&dest, m, out)
                        .map_err(|source| BuildError::Copy { source })
                })?;
                Ok(stacked(base, layer))
            }
        }
    }
}
