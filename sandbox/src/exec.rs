//! A further process in a running sandbox (`rbuild exec`): the hidden
//! subcommand [`EXEC_ARG`], a fresh single-threaded re-exec of the binary
//! (from the same read-only view as the init process), reads an
//! [`ExecSpec`] from fd 3, joins pid 1's cgroups, then its user (when
//! rootless), ipc, uts, network, pid and mount namespaces and its root,
//! and forks: the child (inside the pid namespace) drops to Docker's
//! capabilities, sets no_new_privs, installs the same seccomp filter and
//! execs the command; this process forwards signals to it and exits with
//! its status. Setup errors go to the status pipe on fd 4, as for a run.

use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use super::container;
use super::error::{SandboxError, WireError};
use super::protocol::{Message, SPEC_FD, STATUS_FD};
use super::spec::Process;

/// The hidden argument (argv\[1\]) that makes the binary run [`exec_main`].
pub const EXEC_ARG: &str = "__sandbox-exec";

/// What `rbuild exec` runs, and where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    /// Host pid of the sandbox's pid 1, whose namespaces are joined.
    pub pid: u32,
    /// The process (its `user` resolved in the container's /etc/passwd;
    /// with `tty` it gets a pseudo-terminal relayed to this stdio, as a
    /// run's pid 1 does).
    pub process: Process,
}

/// Entry point of the hidden exec subcommand. Never returns.
pub fn exec_main() -> ! {
    // SAFETY: fcntl on the status fd the parent set up for us.
    unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let code = match join_and_run() {
        Ok(code) => code,
        Err(e) => {
            container::send(STATUS_FD, &Message::Error(WireError::from(&e)));
            e.exit_code()
        }
    };
    std::process::exit(code)
}

fn read_spec() -> Result<ExecSpec, SandboxError> {
    // SAFETY: fd 3 was set up by the parent for us alone.
    let mut f = unsafe { fs::File::from_raw_fd(SPEC_FD) };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| SandboxError::setup("read exec spec", None, e))?;
    serde_json::from_slice(&buf).map_err(|e| SandboxError::InvalidSpec {
        reason: format!("exec spec is not valid JSON: {e}"),
    })
}

/// Moves this process into every cgroup pid 1 is in (best effort: a
/// hierarchy that refuses keeps the caller's).
fn join_cgroups(pid: u32) {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let me = std::process::id().to_string();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls.starts_with("name=") {
            continue;
        }
        let rel = path.trim_start_matches('/');
        let candidates: Vec<std::path::PathBuf> = if ctrls.is_empty() {
            vec![Path::new("/sys/fs/cgroup").join(rel)]
        } else {
            std::iter::once(ctrls)
                .chain(ctrls.split(','))
                .map(|c| Path::new("/sys/fs/cgroup").join(c).join(rel))
                .collect()
        };
        for dir in candidates {
            if fs::write(dir.join("cgroup.procs"), &me).is_ok() {
                break;
            }
        }
    }
}

fn open(path: &str, flags: i32) -> Result<OwnedFd, SandboxError> {
    let c = std::ffi::CString::new(path).expect("path without NUL");
    // SAFETY: NUL-terminated path; the fd returned is owned here.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(SandboxError::setup(
            "open namespace of the container",
            Some(path.into()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn join_and_run() -> Result<i32, SandboxError> {
    let spec = read_spec()?;
    let pid = spec.pid;
    join_cgroups(pid);
    let same = |ns: &str| {
        let a = fs::metadata(format!("/proc/{pid}/ns/{ns}")).map(|m| m.ino());
        let b = fs::metadata(format!("/proc/self/ns/{ns}")).map(|m| m.ino());
        matches!((a, b), (Ok(a), Ok(b)) if a == b)
    };
    let kinds = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    // Everything is opened before any is joined: after the mount
    // namespace, /proc is the container's.
    let mut fds = Vec::new();
    for (name, flag) in kinds {
        if !same(name) {
            fds.push((
                open(&format!("/proc/{pid}/ns/{name}"), libc::O_RDONLY)?,
                flag,
            ));
        }
    }
    // Opened on the host's /dev/ptmx, before the mount namespace changes.
    let pty = if spec.process.tty {
        Some(super::tty::Pty::open()?)
    } else {
        None
    };
    let root = open(
        &format!("/proc/{pid}/root"),
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    for (fd, flag) in &fds {
        setns(fd, *flag).map_err(|e| SandboxError::setup("join namespace", None, e.into()))?;
    }
    nix::unistd::fchdir(&root).map_err(|e| SandboxError::setup("fchdir root", None, e.into()))?;
    nix::unistd::chroot(".").map_err(|e| SandboxError::setup("chroot", None, e.into()))?;
    nix::unistd::chdir("/").map_err(|e| SandboxError::setup("chdir /", None, e.into()))?;
    drop(root);
    drop(fds);

    let mut mask = SigSet::empty();
    for s in super::init::FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGWINCH);
    mask.thread_block()
        .map_err(|e| SandboxError::setup("block signals", None, e.into()))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SandboxError::setup("signalfd", None, e.into()))?;
    // SAFETY: this process is single-threaded (a fresh exec that started
    // no threads), so the child may do anything after fork.
    let child = match unsafe { nix::unistd::fork() }
        .map_err(|e| SandboxError::setup("fork exec process", None, e.into()))?
    {
        ForkResult::Child => {
            drop(sfd);
            let slave = pty.map(|p| p.into_slave().0);
            container::start_joined(&spec.process, slave, STATUS_FD)
        }
        ForkResult::Parent { child } => child,
    };
    let master = pty.map(|p| p.into_master());
    super::init::wait_loop(child, &sfd, master.as_ref(), nix::unistd::getppid())
}
