//! rbuild's build as a library: one call, [`build`], takes a Dockerfile
//! with its context and options ([`BuildRequest`]) to an image in the
//! store, its exports, cache exports and pushes, and returns a typed
//! [`BuildResult`]. Every front end (`rbuild build`, a bake file, an API)
//! shares it; they read flags, render [`Event`]s and decide exit codes.
//! The flag values' syntaxes (`-o`, `--cache-to`, `--secret`, …) are
//! parsed here too, in [`spec::parse`], so every front end reads a spec
//! the same way.
//!
//! The flow ([`build`]):
//!
//! 1. parse the Dockerfile (syntax warnings go out as events);
//! 2. plan it (`rbuild_solver::plan`), resolving base images through the
//!    store and pulling what it lacks;
//! 3. open the context, read the secrets, open `--cache-from` imports;
//! 4. solve the graph (`rbuild_solver::scheduler`) with `rbuild-worker`'s
//!    worker, up to `jobs` steps at once;
//! 5. explain each executed step's miss against the lineage record of its
//!    last build, then save the new records ([`report`]);
//! 6. write the image config and manifest (`image.rs`) and
//!    the `--cache-to` exports;
//! 7. run the exporters and pushes ([`export()`]).
//!
//! Several builds at once (bake's targets) call [`build_shared`] from
//! threads of their own with one [`StepGate`], so that a stage they share
//! runs once.
//!
//! Nothing here prints or reads the process's stdin/stdout: events go to
//! [`BuildEvents`], export streams (rootfs tars, image archives) to what
//! the front end's [`ExportHost`] opens. Errors are [`BuildError`].

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod attest;
mod cache;
pub mod emulation;
pub mod error;
pub mod events;
pub mod export;
pub mod gate;
mod image;
pub mod index;
pub mod inputs;
pub mod multiplatform;
pub mod report;
pub mod request;
mod solve;
pub mod spec;
pub mod timing;

use rbuild_oci::reference::ImageRef;
use rbuild_store::{Image, Store};

pub use error::{BuildError, HostError, StepFailure};
pub use events::{BuildEvents, Event, PullReporter, Stream, Summary, VertexId};
pub use export::{ExportHost, ExportStream, export};
pub use gate::StepGate;
pub use report::BuildReport;
pub use request::{BuildInputs, BuildOptions, BuildRequest, DockerfileSource};
pub use spec::{
    Annotation, AnnotationKind, BuildArg, CacheFromSpec, CacheToSpec, Compression, ImageFormat,
    OutputSpec, SecretSource, SecretSpec,
};

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The built image, in the store and named by [`names`](Self::names).
    pub image: Image,
    /// Every step the build needed: cache hit or miss, why, sizes; totals.
    pub report: BuildReport,
    /// The names the image got: `-t` tags, then `type=image,name=` names,
    /// normalized, each once.
    pub names: Vec<ImageRef>,
    /// The manifest the outputs wrote when it is not the stored
    /// [`image`](Self::image)'s: the one pushed (compressed layers, Docker
    /// media types by default), an archive's, or one carrying annotations
    /// (what `--metadata-file` calls `containerimage.digest`).
    pub manifest: Option<export::ExportedManifest>,
}

impl BuildResult {
    /// The result as buildx's `--metadata-file` describes it.
    pub fn metadata(&self) -> serde_json::Value {
        export::metadata_of(&self.image, &self.names, self.manifest.as_ref())
    }
}

/// Builds `request` into `store`: plans and solves the Dockerfile, writes
/// the image and the cache exports, then runs the exporters and pushes.
/// Progress goes to `options.events`; a failed step has been reported as
/// [`Event::Failed`] and a [`Event::Summary`] when
/// [`BuildError::Step`] is returned.
pub fn build(
    store: &Store,
    request: &BuildRequest,
    options: &BuildOptions<'_>,
) -> Result<BuildResult, BuildError> {
    build_shared(store, request, options, &StepGate::new())
}

/// [`build`], as one of several builds running at once that share
/// `gate`: a step two of them need (same cache key) executes once, the
/// other build waiting for its result (see [`gate`]).
pub fn build_shared(
    store: &Store,
    request: &BuildRequest,
    options: &BuildOptions<'_>,
    gate: &StepGate,
) -> Result<BuildResult, BuildError> {
    check_request(request)?;
    multiplatform::check_emulators(request)?;
    if request.platforms.len() > 1 {
        return multiplatform::build(store, request, options, gate);
    }
    let solved = solve::run(store, request, options, gate)?;
    let exported = export::export_all(
        store,
        request,
        &solved.image,
        &solved.client,
        options.events,
        options.host,
        &solved.capture,
    )?;
    let mut image = solved.image;
    if let Some(index) = exported.index {
        image.index = Some(index);
        image.tags = exported.names.clone();
    }
    Ok(BuildResult {
        image,
        report: solved.report,
        names: exported.names,
        manifest: exported.manifest,
    })
}

/// What cannot be known wrong from one flag alone, checked before the
/// build starts so a bad combination builds, tags and pushes nothing.
fn check_request(request: &BuildRequest) -> Result<(), BuildError> {
    let rewrite = request
        .outputs
        .iter()
        .any(|o| o.format().is_some_and(|f| f.rewrite_timestamp));
    if rewrite && request.source_date_epoch.is_none() {
        return Err(BuildError::RewriteTimestampNeedsEpoch);
    }
    let pushes = request.push
        || request
            .outputs
            .iter()
            .any(|o| matches!(o, OutputSpec::Image { push: true, .. }));
    let named = !request.tags.is_empty()
        || request
            .outputs
            .iter()
            .any(|o| matches!(o, OutputSpec::Image { names, .. } if !names.is_empty()));
    if pushes && !named {
        return Err(BuildError::PushNeedsName);
    }
    Ok(())
}
