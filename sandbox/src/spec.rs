//! What a sandbox is asked to run: the rootfs, the process, extra mounts,
//! network mode, hostname and resource limits. Plain data, serialized as JSON
//! on a pipe to the re-executed init process.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything needed to start one sandboxed process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// The process to run as pid 1.
    pub process: Process,
    /// Extra mounts, applied in order after the standard ones.
    pub mounts: Vec<Mount>,
    /// Network namespace mode.
    pub network: Network,
    /// Hostname inside the sandbox (empty: "sandbox").
    pub hostname: String,
    /// Mount the rootfs read-only (extra mounts keep their own mode).
    pub readonly_rootfs: bool,
    /// Resource limits, enforced with cgroups when any is set.
    pub limits: Limits,
    /// Name of a cgroup to create for the sandbox even without limits (a
    /// lasting container's: freezer, stats and `update` need it). Made
    /// next to the caller's cgroup and removed when the sandbox ends.
    #[serde(default)]
    pub cgroup: Option<String>,
}

/// The root filesystem of a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Rootfs {
    /// An overlay of read-only `lowers` (top first) with a writable `upper`.
    /// `upper` and `work` must be empty directories on the same filesystem.
    /// After the run, `upper` holds the changes (overlayfs format: deleted
    /// paths are 0:0 character devices, opaque dirs carry an xattr).
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A plain directory used as the root, written in place.
    Dir(PathBuf),
    /// An overlay of read-only `lowers` (top first; may be empty) whose
    /// writable layer lives on a tmpfs private to the sandbox and is gone
    /// when it ends, however it ends: nothing is created on disk, nothing
    /// is left to clean up. For runs whose changes are discarded, like
    /// `rbuild run` (Docker's writable layer of a `--rm` container). What
    /// the process writes to its root filesystem takes memory (charged to
    /// the sandbox's memory cgroup when one is set), up to half of RAM.
    Ephemeral { lowers: Vec<PathBuf> },
}

/// The process to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Process {
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// Environment as `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the rootfs (created when missing; empty: `/`).
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved from the rootfs's
    /// `/etc/passwd` and `/etc/group` (empty: root).
    pub user: String,
    /// Give the process a pseudo-terminal as stdin/stdout/stderr.
    pub tty: bool,
    /// Which supplementary groups the process gets.
    pub groups: SupplementaryGroups,
}

/// The supplementary groups of a process: the two front ends differ.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum SupplementaryGroups {
    /// The user's memberships listed in `/etc/group` only, and none when
    /// the group is given (`uid:gid`, `name:group`): what BuildKit gives a
    /// RUN step.
    #[default]
    Memberships,
    /// The primary gid first, then the memberships: what `docker run`
    /// gives a container (moby adds the primary gid to the process's
    /// additional gids).
    WithPrimary,
}

/// An extra mount inside the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path for a bind mount; ignored for the other kinds.
    pub source: PathBuf,
    /// Absolute path inside the sandbox; created when missing.
    pub target: PathBuf,
    pub readonly: bool,
}

/// Kind of an extra mount.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Tmpfs,
    /// A file with this content, written by the sandbox's init to the
    /// tmpfs private to the run's mount namespace and bind-mounted from
    /// there: it never exists outside the run's memory, and the kernel
    /// frees it when the run ends, however it ends (kill -9 included).
    /// For secrets and heredoc files.
    File(MountFile),
}

/// The content and metadata of a [`MountKind::File`]. Its `Debug` never
/// shows the content (a secret).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountFile {
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Debug for MountFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountFile")
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// Network namespace mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Network {
    /// A fresh network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// The network namespace bind-mounted at this path (a persistent
    /// namespace prepared by the caller, e.g. by `rbuild-net` with a veth
    /// on a bridge): pid 1 `setns`es into it before anything else, so the
    /// command starts with the interfaces, addresses and routes already
    /// there (root only: rootless, the sandbox's user namespace could not
    /// join a namespace it does not own; see [`Network::Helper`]). The generated
    /// `/etc/hosts` holds only localhost and the hostname and
    /// `/etc/resolv.conf` is the host's; callers that maintain their own
    /// (names of other containers) bind-mount them over with
    /// [`MountKind::Bind`] mounts at `/etc/hosts` and `/etc/resolv.conf`.
    Join(PathBuf),
    /// A fresh network namespace owned by the sandbox's own user namespace
    /// (rootless: the one with the user's subordinate ids), given its
    /// interface by a user-mode network helper run from the host's
    /// namespaces as the caller, as podman does with pasta: see
    /// [`NetHelper`]. The generated `/etc/hosts` and `/etc/resolv.conf`
    /// are those of [`Network::None`].
    Helper(NetHelper),
}

/// A user-mode network helper (pasta) for [`Network::Helper`]. Once the
/// sandbox's user and network namespaces exist (and its id maps are
/// written), the init process runs `program` with `args`, in which
/// `{pid}` stands for the host pid of a process in those namespaces and
/// `{ready}` for a file the helper writes once the namespace is
/// configured (pasta's `--pid FILE`); the command starts only then. The
/// helper runs for as long as the sandbox: the init process stops it
/// when the sandbox ends, and it gets SIGTERM if the init process dies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetHelper {
    /// The program, looked up in `PATH`.
    pub program: String,
    /// Its arguments, with `{pid}` and `{ready}` filled in.
    pub args: Vec<String>,
}

/// Resource limits; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU quota in CPUs (1.5 = one and a half cores).
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
}

impl Eq for Limits {}

impl Limits {
    /// True when any limit is set (so a cgroup is needed).
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpus.is_some() || self.pids.is_some()
    }
}
