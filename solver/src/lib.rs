//! rbuild-solver: Dockerfile + build args + target → a build graph of steps
//! with stable cache keys, and the scheduling of that graph.
//!
//! Owns: the planning of Dockerfile semantics (stages, ARG/ENV scoping,
//! `COPY --from`), the generic DAG, [`digest::Digest`] and cache-key
//! encoding. Side effects happen only through traits this crate defines
//! (a worker that executes ops, a cache index); `rbuild-worker` implements
//! them.
//!
//! May depend on: `rbuild-parser` and `rbuild-oci`. Never on the store, the
//! worker or the CLI.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

pub mod cache_key;
/// Content digests live in `rbuild-oci`; re-exported so the solver's
/// users name one type.
pub use rbuild_oci::digest;
pub mod explain;
pub mod file_digests;
pub mod graph;
/// The image config model lives in `rbuild-oci` (every crate that reads
/// or writes configs uses it); re-exported for the planner's users.
pub use rbuild_oci::image_config;
pub mod op;
pub mod plan;
pub mod scheduler;

pub use cache_key::{CacheKey, KeyEncoder, KeyField};
pub use digest::Digest;
pub use file_digests::{FileDigests, FileDigestsBuilder};
pub use graph::{BuildGraph, KeyedOp, StepId};
pub use image_config::ImageConfig;
pub use op::Op;
