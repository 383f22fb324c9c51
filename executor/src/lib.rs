//! rbuild-executor: everything that touches the machine.
//!
//! Owns: the image store (an OCI image layout plus unpacked layer
//! snapshots, [`store`]), the layer codec (deterministic tar writer, safe
//! unpacker, compression, [`layer`]), image references ([`reference`]), the
//! build context read in place with `.dockerignore` and a stat cache of
//! file digests ([`context`]), COPY/ADD/WORKDIR as layers ([`copy`]), the
//! sandbox that runs processes in namespaces on overlayfs ([`sandbox`]),
//! and the build worker and persistent cache index ([`build`]) that
//! implement the traits the solver defines.
//!
//! May depend on: `rbuild-solver` (and through it `rbuild-parser` types),
//! never on the CLI. It never sees Dockerfile syntax: it receives ops with
//! everything already expanded.

pub mod build;
pub mod context;
pub mod copy;
pub mod layer;
pub mod reference;
pub mod registry;
pub mod sandbox;
pub mod store;
