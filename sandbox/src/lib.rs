//! The sandbox: runs a process in fresh namespaces on an overlayfs root,
//! hardened like Docker's defaults.
//!
//! # How a run goes
//!
//! [`run`] never forks the (possibly multi-threaded) caller into the
//! container. It spawns a fresh, single-threaded copy of the current binary
//! with the hidden argument [`INIT_ARG`]; the binary's `main` must call
//! [`init_main`] when it sees it. The spec goes to that init process as
//! JSON on fd 3; status messages (snapshotter used, setup errors) come back
//! as JSON lines on fd 4. The init process then:
//!
//! 1. creates a state dir (generated `/etc/hosts`, `/etc/hostname`,
//!    `/etc/resolv.conf`, and the content of [`MountKind::File`] mounts
//!    such as a build step's secrets, on a tmpfs private to its mount
//!    namespace), a cgroup when limits are set, and, when not root, a user
//!    namespace mapping the caller to root;
//! 2. unshares a private mount namespace and mounts the rootfs there
//!    (overlayfs, or the copy-based snapshotter when overlay is refused);
//! 3. unshares a pid namespace and forks pid 1, which unshares mount, uts,
//!    ipc and (with `Network::None`) network namespaces (or joins the
//!    prepared one of `Network::Join`, or inherits the one the init
//!    process made for `Network::Helper`'s helper), mounts /proc,
//!    /dev, /sys, masks and write-protects the kernel files Docker does,
//!    pivots into the rootfs, resolves the user from the rootfs's
//!    /etc/passwd, keeps Docker's 14 default capabilities, sets
//!    no_new_privs, installs the seccomp allow-list and execs the command;
//! 4. forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to pid 1,
//!    relays the terminal for `tty`, and exits with pid 1's status. When
//!    pid 1 exits the kernel kills everything else in its pid namespace.
//!
//! # The host binary stays out of reach
//!
//! The init process is exec'd from a read-only view of the binary (made
//! once per caller process), never from a path the sandbox could write: as
//! root a detached read-only bind mount of `/proc/self/exe` (no copy, in no
//! mount table); as another user the binary itself when root owns it and
//! nobody else may write it, otherwise a sealed `memfd` copy. Until pid 1 execs the command,
//! `/proc/self/exe` of processes in the container resolves to that view,
//! so a malicious image (e.g. a `/bin/sh` that is `#!/proc/self/exe`)
//! cannot reopen the host's rbuild for writing (CVE-2019-5736).

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cgroup;
mod container;
mod error;
mod exec;
pub mod harness;
mod init;
mod interrupt;
mod malloc_arenas;
mod net_helper;
mod path_in_root;
mod protocol;
mod runtime_dir;
mod seccomp;
mod snapshot;
mod spec;
mod tty;
mod user;
mod userns;

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

pub use cgroup::{CgroupVersion, version as cgroup_version};
pub use container::DEFAULT_CAPS;
pub use error::SandboxError;
pub use exec::{EXEC_ARG, ExecSpec, exec_main};
pub use init::init_main;
pub use interrupt::{INTERRUPTED, cancel_on_interrupt};
pub use malloc_arenas::{limit_malloc_arenas, trim_malloc_arenas};
pub use runtime_dir::{StaleDir, remove_stale, runtime_dir, stale_dirs};
pub use snapshot::copy_merged_path;
pub use spec::{
    Limits, Mount, MountFile, MountKind, NetHelper, Network, Process, Rootfs, SandboxSpec,
    SupplementaryGroups,
};
pub use user::{Identity, resolve as resolve_user};
pub use userns::missing_for_multi_user as rootless_limitations;
pub use userns::{RootlessMapping, SubRange, rootless_mapping};

/// The hidden argument (argv\[1\]) that makes the binary run [`init_main`].
pub const INIT_ARG: &str = "__sandbox-init";

/// How the rootfs of an overlay sandbox is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotterKind {
    /// overlayfs: lowers shared read-only, changes in the upper dir.
    Overlay,
    /// Lowers copied into a merged dir; changes written to the upper dir
    /// afterwards (slower, works on any filesystem).
    Copy,
}

impl std::fmt::Display for SnapshotterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotterKind::Overlay => "overlayfs",
            SnapshotterKind::Copy => "copy",
        })
    }
}

static LAST_SNAPSHOTTER: AtomicU8 = AtomicU8::new(0);

static LAST_OOM_KILLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the OOM killer struck a sandbox (with a memory limit or a
/// named cgroup) this process waited for since the last call; clears it.
pub fn take_oom_killed() -> bool {
    LAST_OOM_KILLED.swap(false, Ordering::Relaxed)
}

/// The snapshotter the last overlay run of this process used; before any
/// run, `Overlay` when the kernel lists overlayfs in /proc/filesystems
/// (runs still fall back to `Copy` if the mount is refused).
pub fn snapshotter_kind() -> SnapshotterKind {
    match LAST_SNAPSHOTTER.load(Ordering::Relaxed) {
        1 => SnapshotterKind::Overlay,
        2 => SnapshotterKind::Copy,
        _ => {
            let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
            if fs.lines().any(|l| l.trim_end().ends_with("overlay")) {
                SnapshotterKind::Overlay
            } else {
                SnapshotterKind::Copy
            }
        }
    }
}

/// Where the sandboxed process's stdin/stdout/stderr go: `None` is the
/// caller's own. With `process.tty`, stdin and stdout are relayed through
/// a pty by the init process, which uses its own stdin/stdout for that.
#[derive(Debug, Default)]
pub struct SandboxStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// `/dev/null`, opened for reading and writing (e.g. as a sandbox's stdin).
pub fn dev_null() -> Result<OwnedFd, SandboxError> {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| SandboxError::setup("open /dev/null", Some("/dev/null".into()), e))
}

/// The binary the init process is exec'd from: a read-only view of this
/// binary, so nothing running as the container can reopen it for writing
/// through `/proc/<pid>/exe` (CVE-2019-5736). Made once per caller process.
///
/// As root: a detached, read-only bind mount of `/proc/self/exe`
/// (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)`),
/// which copies nothing and appears in no mount table; writes through it
/// fail with `EROFS`. As another user, when the binary belongs to root and
/// is writable by nobody else (an installed binary): the binary itself,
/// which the sandbox's user namespace cannot write either (host root is
/// not mapped in it). Otherwise (e.g. a binary the user owns, or if the
/// kernel refuses): a sealed `memfd` copy of the binary (`F_SEAL_WRITE`,
/// writes fail with `EPERM`), which costs a copy of the whole binary.
fn init_binary() -> Result<&'static OwnedFd, SandboxError> {
    static EXE: OnceLock<Result<OwnedFd, (PathBuf, i32)>> = OnceLock::new();
    let r = EXE.get_or_init(|| {
        let fd = readonly_bind_of_self()
            .or_else(|_| unwritable_self())
            .or_else(|_| sealed_copy_of_self())?;
        // Keep the fd number clear of 3 and 4, which the init process's
        // spec and status pipes take in the child before exec.
        // SAFETY: F_DUPFD_CLOEXEC returns a new fd that we then own.
        let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
        if high < 0 {
            return Err((
                PathBuf::from("/proc/self/exe"),
                io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            ));
        }
        // SAFETY: `high` is a fresh fd owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(high) })
    });
    r.as_ref().map_err(|(path, errno)| SandboxError::Spawn {
        path: path.clone(),
        source: io::Error::from_raw_os_error(*errno),
    })
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn readonly_bind_of_self() -> Result<OwnedFd, (PathBuf, i32)> {
    let exe = PathBuf::from("/proc/self/exe");
    let fail = |e: io::Error| (exe.clone(), e.raw_os_error().unwrap_or(libc::EIO));
    if !nix::unistd::geteuid().is_root() {
        return Err(fail(io::Error::from_raw_os_error(libc::EPERM)));
    }
    const OPEN_TREE_CLONE: libc::c_long = 1;
    const MOUNT_ATTR_RDONLY: u64 = 1;
    // SAFETY: open_tree with a NUL-terminated path and flags; returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_long,
        )
    };
    if fd < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: fresh fd from open_tree.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on our detached mount fd with a valid attr struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    Ok(fd)
}

fn unwritable_self() -> Result<OwnedFd, (PathBuf, i32)> {
    use std::os::unix::fs::MetadataExt;
    let exe = PathBuf::from("/proc/self/exe");
    let fail = |e: io::Error| (exe.clone(), e.raw_os_error().unwrap_or(libc::EIO));
    if nix::unistd::geteuid().is_root() {
        // Root's sandboxes run as mapped root: they could write it.
        return Err(fail(io::Error::from_raw_os_error(libc::EPERM)));
    }
    let file = std::fs::File::open(&exe).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(fail(io::Error::from_raw_os_error(libc::EACCES)));
    }
    Ok(OwnedFd::from(file))
}

fn sealed_copy_of_self() -> Result<OwnedFd, (PathBuf, i32)> {
    let exe = PathBuf::from("/proc/self/exe");
    let fail = |e: io::Error| (exe.clone(), e.raw_os_error().unwrap_or(libc::EIO));
    let fd = nix::sys::memfd::memfd_create(
        c"rbuild-sandbox-init",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| fail(e.into()))?;
    let mut src = std::fs::File::open(&exe).map_err(fail)?;
    let mut dst = std::fs::File::from(fd);
    io::copy(&mut src, &mut dst).map_err(fail)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a memfd we own.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    Ok(OwnedFd::from(dst))
}

/// Runs `spec` to completion and returns the process's exit code (128+n
/// when killed by signal n). stdout/stderr stream as they are written.
///
/// Errors: setup failures, a missing user, or a command that cannot be
/// executed ([`SandboxError::exit_code`] gives docker's 125/126/127).
pub fn run(spec: &SandboxSpec, stdio: SandboxStdio) -> Result<i32, SandboxError> {
    spawn(spec, stdio)?.wait()
}

/// A started sandbox: its init process, and the status pipe to read when
/// it ends.
#[derive(Debug)]
pub struct Sandbox {
    pid: nix::unistd::Pid,
    status: std::fs::File,
}

impl Sandbox {
    /// Host pid of the init process (the monitor outside the container).
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Sends `signal` to the init process, which forwards SIGINT, SIGTERM,
    /// SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to pid 1. (Like any pid 1,
    /// the command only receives signals it installed a handler for.)
    pub fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|e| SandboxError::setup("signal sandbox", None, e.into()))?;
        nix::sys::signal::kill(self.pid, sig)
            .map_err(|e| SandboxError::setup("signal sandbox", None, e.into()))
    }

    /// Waits for the sandbox to end; see [`run`].
    pub fn wait(mut self) -> Result<i32, SandboxError> {
        let mut messages = Vec::new();
        self.status
            .read_to_end(&mut messages)
            .map_err(|e| SandboxError::setup("read sandbox status", None, e))?;
        self.finish(&messages)
    }

    /// Like [`Sandbox::wait`], and meanwhile sends the signals of `signals`
    /// that reach this process to the sandbox (docker run's signal proxy).
    /// They must be blocked in the calling thread, so that they queue
    /// instead of acting; no thread is needed.
    pub fn wait_forwarding(
        mut self,
        signals: &nix::sys::signal::SigSet,
    ) -> Result<i32, SandboxError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let fail =
            |step: &'static str| move |e: nix::Error| SandboxError::setup(step, None, e.into());
        let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(fail("signalfd"))?;
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let mut fds = [
                PollFd::new(self.status.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                r => r.map_err(fail("wait for sandbox"))?,
            };
            let status_ready = fds[0].any().unwrap_or(true);
            let signal_ready = fds[1].any().unwrap_or(false);
            if signal_ready {
                while let Ok(Some(info)) = sfd.read_signal() {
                    if let Ok(sig) = nix::sys::signal::Signal::try_from(info.ssi_signo as i32) {
                        let _ = nix::sys::signal::kill(self.pid, sig);
                    }
                }
            }
            if status_ready {
                match self.status.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => messages.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(SandboxError::setup("read sandbox status", None, e)),
                }
            }
        }
        self.finish(&messages)
    }

    /// Reaps the init process and turns its status messages and exit
    /// status into the run's result.
    fn finish(self, messages: &[u8]) -> Result<i32, SandboxError> {
        use nix::sys::wait::{WaitStatus, waitpid};
        let status = loop {
            match waitpid(self.pid, None) {
                Err(nix::Error::EINTR) => continue,
                r => {
                    break r.map_err(|e| {
                        SandboxError::setup("wait for sandbox init", None, e.into())
                    })?;
                }
            }
        };
        let mut error = None;
        for line in messages.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice(line)
                .map_err(|source| SandboxError::Protocol { source })?
            {
                protocol::Message::Snapshotter(kind) => {
                    let v = match kind {
                        SnapshotterKind::Overlay => 1,
                        SnapshotterKind::Copy => 2,
                    };
                    LAST_SNAPSHOTTER.store(v, Ordering::Relaxed);
                }
                protocol::Message::OomKilled => LAST_OOM_KILLED.store(true, Ordering::Relaxed),
                protocol::Message::Error(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = error {
            return Err(e.into());
        }
        match status {
            WaitStatus::Exited(_, code) => Ok(code),
            WaitStatus::Signaled(_, sig, _) => Err(SandboxError::InitDied {
                status: 128 + sig as i32,
            }),
            _ => Err(SandboxError::InitDied { status: -1 }),
        }
    }
}

/// Starts the init process from `exe` with `stdio` on fds 0-2, the spec
/// pipe on fd 3 and the status pipe on fd 4, and returns its pid. The fds
/// given are closed here (the child has its copies).
///
/// posix_spawn, not fork: glibc starts the child with `CLONE_VM|CLONE_VFORK`,
/// so this (possibly large, multi-threaded) process's page tables are not
/// copied and its memory is not made copy-on-write for the few hundred
/// microseconds until the exec. The fds land at their numbers through the
/// spawn's file actions, in the child only, so a sandbox started at the same
/// time by another thread never inherits them.
fn spawn_init(
    exe: &Path,
    subcommand: &std::ffi::CStr,
    stdio: SandboxStdio,
    spec: OwnedFd,
    status: OwnedFd,
) -> Result<nix::unistd::Pid, SandboxError> {
    let fail = |source: io::Error| SandboxError::Spawn {
        path: exe.to_path_buf(),
        source,
    };
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(fail(io::Error::from_raw_os_error(rc)))
        }
    };
    // Above 10, so that no dup2 below lands on a source still to be placed.
    let high = |fd: &OwnedFd| -> Result<OwnedFd, SandboxError> {
        // SAFETY: F_DUPFD_CLOEXEC returns a new fd, which we then own.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if n < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        // SAFETY: fresh fd from fcntl.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    };
    let (spec, status) = (high(&spec)?, high(&status)?);
    let path = CString::new(exe.as_os_str().as_bytes()).expect("fd path has no NUL");
    let argv = [c"rbuild".as_ptr(), subcommand.as_ptr(), std::ptr::null()];
    let env = environment();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let placed: [(Option<&OwnedFd>, i32); 5] = [
        (stdio.stdin.as_ref(), 0),
        (stdio.stdout.as_ref(), 1),
        (stdio.stderr.as_ref(), 2),
        (Some(&spec), protocol::SPEC_FD),
        (Some(&status), protocol::STATUS_FD),
    ];
    // SAFETY: the file actions and attributes are initialised before use
    // and destroyed after; every pointer handed to posix_spawn (path, argv,
    // environ) stays valid for the call, and the fds outlive it.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        check(libc::posix_spawnattr_init(&mut attr))?;
        let spawned = (|| {
            for (fd, at) in placed {
                if let Some(fd) = fd {
                    check(libc::posix_spawn_file_actions_adddup2(
                        &mut actions,
                        fd.as_raw_fd(),
                        at,
                    ))?;
                }
            }
            // As std's Command: an empty signal mask and default
            // dispositions (Rust ignores SIGPIPE, which exec would keep).
            let mut none: libc::sigset_t = std::mem::zeroed();
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigfillset(&mut all);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &none))?;
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            ))?;
            Ok(nix::unistd::Pid::from_raw(pid))
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        spawned
    }
}

/// [`INIT_ARG`] as a C string.
const INIT_ARG_C: &std::ffi::CStr = c"__sandbox-init";

/// This process's environment as C strings (copied under std's env lock,
/// so a concurrent `set_var` cannot pull it from under posix_spawn).
fn environment() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect()
}

/// Starts `spec` and returns without waiting; see [`run`].
pub fn spawn(spec: &SandboxSpec, stdio: SandboxStdio) -> Result<Sandbox, SandboxError> {
    // What sandboxes of killed processes left in the runtime dir goes
    // before this process adds its own (once per process).
    runtime_dir::sweep_stale_once();
    let exe = init_binary()?;
    let exe_path = PathBuf::from(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SandboxError::setup("create pipe", None, e.into()))
    };
    let (spec_r, spec_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let pid = spawn_init(&exe_path, INIT_ARG_C, stdio, spec_r, status_w)?;
    let json = serde_json::to_vec(spec).map_err(|source| SandboxError::Protocol { source })?;
    {
        let mut w = std::fs::File::from(spec_w);
        // A failed write means the init process died; its status says why.
        let _ = w.write_all(&json);
    }
    Ok(Sandbox {
        pid,
        status: std::fs::File::from(status_r),
    })
}

/// Starts `spec` in the running sandbox whose pid 1 is `spec.pid` (see
/// [`ExecSpec`]) and returns without waiting; [`Sandbox::wait`] gives the
/// process's exit code, or the setup error (docker's 126/127 included).
pub fn exec(spec: &ExecSpec, stdio: SandboxStdio) -> Result<Sandbox, SandboxError> {
    let exe = init_binary()?;
    let exe_path = PathBuf::from(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SandboxError::setup("create pipe", None, e.into()))
    };
    let (spec_r, spec_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let pid = spawn_init(&exe_path, c"__sandbox-exec", stdio, spec_r, status_w)?;
    let json = serde_json::to_vec(spec).map_err(|source| SandboxError::Protocol { source })?;
    {
        let mut w = std::fs::File::from(spec_w);
        let _ = w.write_all(&json);
    }
    Ok(Sandbox {
        pid,
        status: std::fs::File::from(status_r),
    })
}
