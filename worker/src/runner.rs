//! The seam under RUN steps (BuildKit's `Executor`): the worker describes
//! one process — argv, environment, user, working directory, network, a
//! root filesystem of snapshots over an upper dir, extra mounts — and a
//! [`Runner`] carries it out, streaming its output and returning how it
//! ended. Everything about the step around it (materializing mount
//! sources, secrets, placeholders, packing the upper dir into a layer,
//! error messages) stays in the worker.
//!
//! [`SandboxRunner`] runs the process in rbuild's sandbox (namespaces,
//! overlayfs), as every build does. Tests give the worker
//! [`FakeRunner`](crate::testing::FakeRunner) instead, which applies
//! scripted effects to the upper dir without any namespace, so RUN
//! semantics are tested without root.
//!
//! BuildKit's Executor also has `Exec`, a further process in a running
//! container (for its debugging shell). Nothing in rbuild starts a second
//! process in a running step, and the sandbox has no way to join one, so
//! the trait has `run` only.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rbuild_sandbox as sandbox;
use rbuild_sandbox::{
    Limits, Mount, MountKind, Network, Process, Rootfs, SandboxError, SandboxSpec, SandboxStdio,
};
use rbuild_solver::op::ExecNetwork;

use crate::Stream;

/// Runs one process for a RUN step.
pub trait Runner: Sync {
    /// Runs `spec`'s process to its end with stdin on `/dev/null`, passing
    /// its stdout and stderr to `io.output` as they arrive. When
    /// `io.cancel` is set while it runs, the process and everything it
    /// started are killed and the result is [`RunStatus::Cancelled`].
    ///
    /// Errors: the process could not be started or its command executed,
    /// in the sandbox's terms (a missing command is
    /// [`SandboxError::Exec`], docker's exit code 127).
    fn run(&self, spec: &RunSpec, io: &RunIo<'_>) -> Result<RunStatus, SandboxError>;
}

/// One process to run: the worker's description, with every path on the
/// host already made (mount sources, the upper and work dirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE`, in order (a later entry wins).
    pub env: Vec<String>,
    /// Working directory in the root filesystem (empty: `/`).
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, as the rootfs's
    /// `/etc/passwd` and `/etc/group` resolve it (empty: root).
    pub user: String,
    pub network: ExecNetwork,
    pub hostname: String,
    pub rootfs: RunRootfs,
    /// Applied in order, so a later mount hides an earlier one at or
    /// above its target.
    pub mounts: Vec<RunMount>,
}

/// The root filesystem: an overlay of `lowers` (snapshot directories, top
/// first) whose changes land in `upper` (overlayfs's format: deletions are
/// 0:0 character devices, opaque directories carry an xattr). `upper` and
/// `work` are empty directories on the same filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRootfs {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// A mount at an absolute `target` in the root filesystem. A runner
/// creates a missing target in the upper dir (a directory, or an empty
/// file for a bind of a file) before mounting; the worker removes those
/// placeholders afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub target: PathBuf,
    pub source: MountSource,
    pub readonly: bool,
}

/// What a [`RunMount`] shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A file or directory of the host, shared with the process.
    Bind(PathBuf),
    /// An empty tmpfs, gone when the process ends.
    Tmpfs,
    /// A file with this content that exists only for the run, in memory
    /// the kernel frees when the run ends however it ends (the sandbox:
    /// its private tmpfs), never in a directory of the host: secrets and
    /// heredoc files.
    File(rbuild_sandbox::MountFile),
}

/// Where a run's output goes, and what stops it.
#[derive(Clone, Copy)]
pub struct RunIo<'a> {
    /// Receives output as it arrives, from any thread; chunks are not
    /// split at line boundaries.
    pub output: &'a (dyn Fn(Stream, &[u8]) + Sync),
    /// Set (e.g. on Ctrl-C) to kill the process.
    pub cancel: &'a AtomicBool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The process exited with this code (128+n when killed by signal n).
    Exited(i32),
    /// [`RunIo::cancel`] was set and the process was killed.
    Cancelled,
}

/// Runs processes in rbuild's sandbox: an overlay of the lowers, Docker's
/// default confinement, the hostname and network asked for. What every
/// build uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxRunner;

/// How often a running sandbox's cancel flag is looked at.
const CANCEL_POLL: Duration = Duration::from_millis(50);

impl Runner for SandboxRunner {
    fn run(&self, spec: &RunSpec, io: &RunIo<'_>) -> Result<RunStatus, SandboxError> {
        let spec = sandbox_spec(spec);
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Setup {
                step: "create output pipe".into(),
                path: None,
                source: e.into(),
            })
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdio = SandboxStdio {
            stdin: Some(sandbox::dev_null()?),
            stdout: Some(out_w),
            stderr: Some(err_w),
        };
        // The write ends went into the spawned process's stdio and are
        // closed here when `spawn` returns, so the readers see EOF when
        // the container's processes are gone.
        let sb = crate::phases::time("sandbox", || sandbox::spawn(&spec, stdio))?;
        let process_started = std::time::Instant::now();
        let pid = nix::unistd::Pid::from_raw(sb.pid() as i32);
        let done = AtomicBool::new(false);
        let cancelled = AtomicBool::new(false);
        let status = std::thread::scope(|s| {
            s.spawn(|| pump(io, Stream::Stdout, out_r));
            s.spawn(|| pump(io, Stream::Stderr, err_r));
            let watcher = s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    if io.cancel.load(Ordering::Relaxed) {
                        cancelled.store(true, Ordering::Release);
                        // The init process dies; pid 1 follows it
                        // (PDEATHSIG), and with it the whole pid namespace.
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        break;
                    }
                    std::thread::park_timeout(CANCEL_POLL);
                }
            });
            let status = sb.wait();
            done.store(true, Ordering::Release);
            // Wake the watcher now: the scope waits for it, and a sleep
            // would add up to CANCEL_POLL to every step.
            watcher.thread().unpark();
            status
        });
        crate::phases::record("process", process_started);
        // An interrupt sent to the whole process group reaches the step's
        // processes too, which may exit (130) before the watcher kills
        // them: the build was cancelled either way.
        if cancelled.load(Ordering::Acquire) || io.cancel.load(Ordering::Relaxed) {
            return Ok(RunStatus::Cancelled);
        }
        status.map(RunStatus::Exited)
    }
}

/// `spec` as the sandbox takes it: a writable overlay root, no limits.
fn sandbox_spec(spec: &RunSpec) -> SandboxSpec {
    SandboxSpec {
        rootfs: Rootfs::Overlay {
            lowers: spec.rootfs.lowers.clone(),
            upper: spec.rootfs.upper.clone(),
            work: spec.rootfs.work.clone(),
        },
        process: Process {
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            user: spec.user.clone(),
            tty: false,
            // BuildKit: /etc/group memberships only.
            groups: sandbox::SupplementaryGroups::Memberships,
        },
        mounts: spec
            .mounts
            .iter()
            .map(|m| {
                let (kind, source) = match &m.source {
                    MountSource::Bind(source) => (MountKind::Bind, source.clone()),
                    MountSource::Tmpfs => (MountKind::Tmpfs, PathBuf::new()),
                    MountSource::File(file) => (MountKind::File(file.clone()), PathBuf::new()),
                };
                Mount {
                    kind,
                    source,
                    target: m.target.clone(),
                    readonly: m.readonly,
                }
            })
            .collect(),
        network: match spec.network {
            ExecNetwork::Host => Network::Host,
            ExecNetwork::None => Network::None,
        },
        hostname: spec.hostname.clone(),
        readonly_rootfs: false,
        limits: Limits::default(),
        cgroup: None,
    }
}

/// Reads one output pipe to its end, passing what arrives to `io.output`.
fn pump(io: &RunIo<'_>, stream: Stream, pipe: OwnedFd) {
    let mut file = fs::File::from(pipe);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => (io.output)(stream, &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}
