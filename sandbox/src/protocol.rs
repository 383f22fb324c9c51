//! Messages from the init process (and pid 1) to the caller, one JSON object
//! per line on the status pipe (fd 4 in the init process). The pipe is
//! close-on-exec, so it closes when the command starts; the init process
//! keeps its copy until it exits.

use serde::{Deserialize, Serialize};

use super::SnapshotterKind;
use super::error::WireError;

/// The fd the init process reads the spec (JSON) from.
pub const SPEC_FD: i32 = 3;
/// The fd the init process writes [`Message`]s to.
pub const STATUS_FD: i32 = 4;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// How the rootfs was made.
    Snapshotter(SnapshotterKind),
    /// Setup failed; the run's result is this error.
    Error(WireError),
    /// The kernel's OOM killer killed a process of the sandbox's memory
    /// cgroup (docker's `OOMKilled`).
    OomKilled,
}
