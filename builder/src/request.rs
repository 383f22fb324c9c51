//! What a front end asks for: [`BuildRequest`] (plain, validated data:
//! what `rbuild build`'s flags say once parsed) and [`BuildOptions`] (the
//! front end's side of the build: where events go, the cancel flag, and
//! its part of the exporters).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use rbuild_oci::reference::ImageRef;
use rbuild_solver::plan::PlanRequest;

use crate::events::BuildEvents;
use crate::export::ExportHost;
use crate::spec::{Annotation, CacheFromSpec, CacheToSpec, OutputSpec, SecretSpec};

/// The Dockerfile a build reads, as the front end found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerfileSource {
    pub bytes: Vec<u8>,
    /// The name diagnostics and reports show: the path as the user gave
    /// it (`Dockerfile`, `docker/app.Dockerfile`), `<stdin>`.
    pub name: String,
    /// Where it was read from (for `<name>.dockerignore` next to it and to
    /// recognize the same build across runs); `None` for stdin.
    pub path: Option<PathBuf>,
}

/// One build: everything the flags of `rbuild build` say, validated.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub dockerfile: DockerfileSource,
    /// The context directory, absolute.
    pub context: PathBuf,
    /// What the planner gets: build args (resolved), target, platform,
    /// labels, the RUN steps' network.
    pub plan: PlanRequest,
    /// `--platform a,b,…` with more than one platform: one build each,
    /// into one image index (`plan.platform` is then ignored). Empty or
    /// one platform: a single-platform build for `plan.platform`.
    pub platforms: Vec<rbuild_oci::Platform>,
    /// `-t`, normalized, duplicates dropped.
    pub tags: Vec<ImageRef>,
    /// Do not look steps up in the cache index (`--no-cache`).
    pub no_cache: bool,
    /// `--no-cache-filter` stage names (lowercased: stage names are).
    pub no_cache_filter: Vec<String>,
    /// Check base image tags against their registry (`--pull`).
    pub pull: bool,
    /// Push to every name the image gets after the build (`--push`).
    pub push: bool,
    /// Secrets `RUN --mount=type=secret` may ask for; ids are unique.
    pub secrets: Vec<SecretSpec>,
    /// Most steps executing at once; at least 1.
    pub jobs: usize,
    /// Where the image goes, in order; `type=image` is implied when absent
    /// (the image is always in the store).
    pub outputs: Vec<OutputSpec>,
    /// Cache exports, in the order given.
    pub cache_to: Vec<CacheToSpec>,
    /// Cache imports, consulted in the order given.
    pub cache_from: Vec<CacheFromSpec>,
    /// `SOURCE_DATE_EPOCH` (seconds): every time in the image config,
    /// and with an output's `rewrite-timestamp=true` the newest file time
    /// in the build's own layers.
    pub source_date_epoch: Option<i64>,
    /// `--ssh` agents and `--build-context`s.
    pub inputs: BuildInputs,
    /// `--annotation`s: for every image output (image, registry, oci,
    /// docker), beside each output's own `annotation.KEY=` attributes.
    pub annotations: Vec<Annotation>,
    /// `--provenance`, `--sbom`, `--attest`: attached to the image in
    /// archives and pushes.
    pub attestations: crate::attest::Attestations,
    /// The context as provenance names it when it is not a local
    /// directory (the git or tarball URL given); `None` for a directory.
    pub attestation_context: Option<String>,
}

/// Build inputs besides the main context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInputs {
    /// `--ssh`, ids unique.
    pub ssh: Vec<crate::spec::inputs::SshSpec>,
    /// `--build-context`, names unique.
    pub contexts: Vec<crate::spec::inputs::NamedContextSpec>,
    /// The main context was fetched into a temporary directory (a git or
    /// tarball URL, a tar on stdin): as BuildKit, which reads
    /// `.dockerignore` from local directories only, no ignore file
    /// applies; and no stat cache is kept for a directory used once.
    pub fetched_context: bool,
}

/// The front end's side of a build.
#[derive(Clone, Copy)]
pub struct BuildOptions<'a> {
    /// Where progress goes.
    pub events: &'a dyn BuildEvents,
    /// Set (by a signal handler, a request's cancellation) to stop the
    /// build: running steps are killed and no new one starts; honoured
    /// from [`Event::Solving`](crate::Event::Solving) on.
    pub cancel: &'a AtomicBool,
    /// What exporters need from the front end (where streams go, stdout).
    pub host: &'a dyn ExportHost,
}
