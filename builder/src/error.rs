//! [`BuildError`]: every way a build (or one of its exports) can fail,
//! with the context a front end needs to show it. Display texts are
//! lowercase one-liners that do not repeat their source (chained with
//! `#[source]`); a front end prints the chain joined by `: `.

use std::path::PathBuf;

use rbuild_context::ContextError;
use rbuild_oci::reference::{ImageRef, ReferenceError};
use rbuild_parser::ParseError;
use rbuild_registry::RegistryError;
use rbuild_solver::plan::PlanError;
use rbuild_store::StoreError;
use rbuild_store::archive::ArchiveError;
use rbuild_store::layer::LayerError;
use rbuild_worker::cache_transfer::{CacheTransferError, LazyFetchError};

use crate::spec::SecretError;

/// An error a front end's part of an export (see
/// [`ExportHost`](crate::ExportHost)) reports, passed on as it is.
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse; front ends show the error with its
    /// source line (`ParseError::render`).
    #[error("cannot parse {dockerfile}")]
    Parse {
        /// The Dockerfile's display name.
        dockerfile: String,
        #[source]
        source: Box<ParseError>,
    },
    /// Planning failed (an unknown stage, a base image that cannot be
    /// resolved, …); shown as `Dockerfile: <the planner's error>`.
    #[error("{dockerfile}")]
    Plan {
        dockerfile: String,
        #[source]
        source: PlanError,
    },
    /// The Dockerfile's `# syntax=` names a frontend image other than the
    /// official `docker/dockerfile` ones, which rbuild cannot run.
    #[error(
        "{dockerfile}:{line}: the frontend image {image:?} is not supported: rbuild builds with its built-in Dockerfile frontend only\nhint: remove the `# syntax=` line, or name docker/dockerfile:1"
    )]
    Frontend {
        dockerfile: String,
        line: u32,
        image: String,
    },
    /// A step failed; the events already showed it as `Failed`.
    #[error("{} failed: {}", .0.step_name, .0.message)]
    Step(Box<StepFailure>),
    /// An output asks for `rewrite-timestamp=true` without an epoch.
    #[error(
        "rewrite-timestamp=true needs SOURCE_DATE_EPOCH\nhint: set it in the environment or pass --build-arg SOURCE_DATE_EPOCH=SECONDS"
    )]
    RewriteTimestampNeedsEpoch,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// An `--ssh` agent or `--build-context` that is not usable.
    #[error(transparent)]
    Input(Box<crate::inputs::InputError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A platform whose steps cannot run here (no emulator).
    #[error(transparent)]
    NoEmulator(Box<crate::emulation::NoEmulator>),
    /// An output that cannot hold several platforms.
    #[error(
        "-o type={output} cannot hold a multi-platform image\nhint: use type=oci, type=docker, type=local (a directory per platform) or type=image"
    )]
    MultiPlatformOutput { output: &'static str },
    /// `index:` annotations on an output that writes no index (one
    /// platform, nothing attested): BuildKit's refusal.
    #[error(
        "index annotations not supported for single platform export\nhint: build several platforms (--platform a,b), attach an attestation (--provenance, --sbom), or use manifest: annotations"
    )]
    IndexAnnotationsSinglePlatform,
    /// The worker, the cache index or the lineage records failed outside
    /// a step.
    #[error(transparent)]
    Worker(#[from] rbuild_worker::BuildError),
    /// A blob of an imported cache hit could not be fetched after the
    /// solve (for the image or a cache export); the message names the
    /// step as the user sees it and ends with a `hint:` line, so the
    /// fetch's causes are part of it rather than chained.
    #[error("{}", crate::cache::fetch_failure_message(.error, .step_name.as_deref()))]
    CacheFetch {
        error: Box<LazyFetchError>,
        /// The step's display name, when the build got to it.
        step_name: Option<String>,
    },
    #[error("--cache-to type=registry,ref={reference}")]
    CacheToReference {
        reference: String,
        #[source]
        source: ReferenceError,
    },
    #[error("--cache-to type=inline")]
    InlineCache {
        #[source]
        source: CacheTransferError,
    },
    #[error("--cache-to: exporting the cache to {reference}")]
    CacheExport {
        reference: String,
        #[source]
        source: CacheTransferError,
    },
    #[error("serializing the image config")]
    ImageConfig {
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot tag the image as {}", .name.familiar())]
    Tag {
        name: Box<ImageRef>,
        #[source]
        source: StoreError,
    },
    #[error("cannot create output directory {}", .path.display())]
    OutputDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The scratch directory of a rootfs export.
    #[error("cannot create {}", .path.display())]
    ScratchDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot unpack layer {layer} into {}", .dir.display())]
    Unpack {
        layer: rbuild_solver::Digest,
        dir: PathBuf,
        #[source]
        source: LayerError,
    },
    #[error("cannot pack {}", .path.display())]
    Pack {
        path: PathBuf,
        #[source]
        source: LayerError,
    },
    /// Writing the image archive of `-o type=oci|docker` failed.
    #[error("cannot write the image archive {}", .dest.display())]
    Archive {
        dest: PathBuf,
        #[source]
        source: ArchiveError,
    },
    /// The front end's part of an export failed (its error as it is).
    #[error(transparent)]
    Host(HostError),
    #[error(
        "pushing needs a name\nhint: add -t REGISTRY/NAME:TAG or -o type=image,name=REGISTRY/NAME:TAG,push=true"
    )]
    PushNeedsName,
    #[error("cannot push {}", .reference.familiar())]
    Push {
        reference: Box<ImageRef>,
        #[source]
        source: RegistryError,
    },
    /// The SBOM scanner could not read the image's filesystem.
    #[error("sbom: cannot scan the image")]
    SbomScan {
        #[source]
        source: rbuild_sbom::ScanError,
    },
}

/// A step that failed, with what a front end needs to show it as
/// BuildKit does (its last output lines, the Dockerfile lines).
#[derive(Debug)]
pub struct StepFailure {
    /// `[build 2/2] RUN echo hi; exit 3`.
    pub step_name: String,
    /// The step's last output lines, each prefixed by its time.
    pub output_tail: Vec<String>,
    /// 1-based first and last line of the instruction (0 when unknown).
    pub lines: (usize, usize),
    /// The error on one line, with its causes (and, for a failed fetch of
    /// an imported cache blob, a `hint:` line): `process "/bin/sh -c …"
    /// did not complete successfully: exit code: 3`.
    pub message: String,
    /// The worker's error.
    pub error: rbuild_worker::BuildError,
}

impl From<crate::inputs::InputError> for BuildError {
    fn from(e: crate::inputs::InputError) -> BuildError {
        BuildError::Input(Box::new(e))
    }
}

impl StepFailure {
    /// The build was interrupted (SIGINT/SIGTERM, the cancel flag) rather
    /// than failed by the step itself.
    pub fn cancelled(&self) -> bool {
        matches!(self.error, rbuild_worker::BuildError::Cancelled)
    }
}

impl From<crate::emulation::NoEmulator> for BuildError {
    fn from(e: crate::emulation::NoEmulator) -> BuildError {
        BuildError::NoEmulator(Box::new(e))
    }
}
