//! Planning: a parsed Dockerfile + build args + target → a [`BuildGraph`]
//! of [`Op`]s, the image config the build produces, and what each step is
//! (stage, position, line) for progress and reports. Pure: base images are
//! looked up through the [`ImageResolver`] trait the caller implements.
//!
//! Dockerfile semantics live here and nowhere else: stages by name or
//! index, `FROM <stage>`, `COPY --from`, `RUN --mount=from=`, `--target`,
//! ARG/ENV scoping and expansion, build args, predefined args, ONBUILD
//! triggers, config-only instructions folded into the image config, and
//! docker-like history entries.

use std::collections::BTreeMap;

use rbuild_parser::shell::ExpandError;

use crate::digest::Digest;
use crate::graph::{BuildGraph, StepId};
use crate::image_config::ImageConfig;
use crate::op::{ExecNetwork, Op};

mod go_format;
mod inputs;
mod paths;
pub use inputs::{GitUrl, NamedContext, NamedContexts, context_key, parse_git_url};
pub use paths::clean as clean_path;
mod planner;

pub use rbuild_oci::Platform;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `--build-arg NAME=VALUE` (the CLI resolves `--build-arg NAME` from
    /// its environment before this).
    pub build_args: BTreeMap<String, String>,
    /// `--target STAGE`; `None` builds the last stage.
    pub target: Option<String>,
    /// The platform built for (`TARGETPLATFORM`); `None` means
    /// [`Platform::host`]. The build platform (`BUILDPLATFORM`) is always
    /// the host's.
    pub platform: Option<Platform>,
    /// `--label KEY=VALUE`, applied to the final image after its LABELs.
    pub labels: BTreeMap<String, String>,
    /// `--network`: the default network of RUN steps.
    pub network: ExecNetwork,
}

/// A base image as found by the [`ImageResolver`].
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest.
    pub digest: Digest,
    /// The image's config (env, workdir, user, ONBUILD triggers, history…).
    pub config: ImageConfig,
}

/// Looks up base images (FROM, `COPY --from=IMAGE`, `RUN --mount=from=IMAGE`).
pub trait ImageResolver {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Resolves `reference` (as written after expansion, not normalized)
    /// for `platform`.
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, Self::Error>;
}

/// What one step of the plan is, for progress output and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// The stage's name, or its index as text when unnamed.
    pub stage: String,
    /// 1-based position of the instruction in its stage and the stage's
    /// instruction count (FROM is 1), as in `[build 2/4]`.
    pub position: (usize, usize),
    /// 1-based line of the instruction in the Dockerfile.
    pub line: usize,
    /// The instruction as written (after line joining).
    pub instruction: String,
    /// Names the same instruction across builds even when its key
    /// changes (stage name or index + position), to find the previous
    /// key of a step whose cache missed.
    pub lineage: String,
}

/// One history entry of the built image beyond the base image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHistory {
    /// docker's `created_by`, e.g. `RUN /bin/sh -c make # buildkit`.
    pub created_by: String,
    /// The step whose layer this entry describes; `None` for config-only
    /// instructions (`empty_layer`). A step whose result adds no layer
    /// also becomes `empty_layer` (RUN, COPY/ADD and WORKDIR always add
    /// one, possibly with no entries, as in BuildKit).
    pub layer_step: Option<StepId>,
}

/// A warning about the build request or Dockerfile (not fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWarning {
    /// 1-based Dockerfile line, when the warning is about one.
    pub line: Option<usize>,
    pub message: String,
}

/// The planned build.
pub struct Plan {
    pub graph: BuildGraph<Op>,
    /// The step whose result is the target stage's filesystem.
    pub target: StepId,
    /// The target stage's name or index.
    pub target_stage: String,
    /// The built image's config: the target stage's base config with the
    /// stage's instructions applied; `rootfs.diff_ids` empty and `history`
    /// holding only the base image's entries (see `history`).
    pub config: ImageConfig,
    /// History entries to append after the base image's, in order.
    pub history: Vec<PlannedHistory>,
    /// Per step (indexed by [`StepId::index`]).
    pub steps: Vec<StepInfo>,
    pub warnings: Vec<PlanWarning>,
}

/// Planning failed: names the Dockerfile line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
    #[error("target stage {target:?} could not be found")]
    UnknownTarget { target: String },
    /// A word could not be expanded (`${X:?required}`, a bad `${…}`).
    #[error("line {line}: failed to expand {word:?}")]
    Expand {
        line: usize,
        word: String,
        #[source]
        source: ExpandError,
    },
    /// The Dockerfile has no FROM at all.
    #[error("the dockerfile has no build stage (no FROM instruction)")]
    NoStages,
    #[error("line {line}: failed to resolve base image {reference:?}")]
    Resolve {
        line: usize,
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Plans the build of `dockerfile` for `request`: every stage the target
/// needs becomes steps of one [`BuildGraph`] (identical steps shared), base
/// images are looked up through `resolver` (once per distinct reference
/// and platform, and only for stages the target needs), and the target
/// stage's image config and history are worked out as BuildKit's
/// Dockerfile frontend would.
///
/// Pure: the same Dockerfile, request and resolver answers give the same
/// plan, op for op.
pub fn plan<R: ImageResolver>(
    dockerfile: &rbuild_parser::Dockerfile,
    request: &PlanRequest,
    resolver: &R,
) -> Result<Plan, PlanError> {
    plan_with_contexts(dockerfile, request, resolver, &NamedContexts::new())
}

/// [`plan`] with named contexts (`--build-context`): each replaces the
/// stage, base image or `--from` source of its name, as BuildKit's
/// frontend does (see [`NamedContext`]).
pub fn plan_with_contexts<R: ImageResolver>(
    dockerfile: &rbuild_parser::Dockerfile,
    request: &PlanRequest,
    resolver: &R,
    named: &NamedContexts,
) -> Result<Plan, PlanError> {
    planner::Planner::new(dockerfile, request, resolver, named)?.run()
}
