//! The user-mode network helper of [`Network::Helper`](super::Network)
//! (pasta, rootless), as podman runs it: the sandbox's own user namespace
//! (with the user's subordinate ids) owns a fresh network namespace, and
//! the helper, run from the host's namespaces as the calling user, joins
//! both to give it an interface. Joining a user namespace its own user
//! owns needs no privilege.
//!
//! The init process forks the helper's process before it enters its user
//! namespace ([`Pending::fork`]); that process waits on a pipe until the
//! namespaces exist ([`Pending::start`]), then execs the helper with the
//! init process's pid. The init process waits for the helper's ready file
//! and stops the helper when the sandbox ends ([`Running`]'s drop); if
//! the init process is killed, the helper gets SIGTERM (parent-death
//! signal), so it never outlives the sandbox.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::error::SandboxError;
use super::spec::NetHelper;

/// How long the helper may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The helper's process, forked and waiting for the namespaces.
pub(crate) struct Pending {
    pid: Pid,
    go: OwnedFd,
    ready: PathBuf,
    log: PathBuf,
    shown: String,
}

/// The helper, running; dropping it stops it.
pub(crate) struct Running {
    pid: Pid,
}

/// `args` with `{pid}` and `{ready}` filled in.
fn fill(args: &[String], pid: Pid, ready: &Path) -> Vec<String> {
    args.iter()
        .map(|a| {
            a.replace("{pid}", &pid.to_string())
                .replace("{ready}", &ready.display().to_string())
        })
        .collect()
}

fn fail(step: &'static str) -> impl Fn(nix::Error) -> SandboxError {
    move |e| SandboxError::setup(step, None, e.into())
}

impl Pending {
    /// Forks the helper's process; single-threaded callers only. `dir`
    /// holds its ready file and log until it is ready.
    pub(crate) fn fork(helper: &NetHelper, dir: &Path) -> Result<Pending, SandboxError> {
        let me = nix::unistd::getpid();
        let ready = dir.join(format!("net-helper-{me}.ready"));
        let log = dir.join(format!("net-helper-{me}.log"));
        let _ = fs::remove_file(&ready);
        let args = fill(&helper.args, me, &ready);
        let shown = format!("{} {}", helper.program, args.join(" "));
        let cstr = |s: &str| {
            CString::new(s).map_err(|_| SandboxError::InvalidSpec {
                reason: format!("network helper argument {s:?} contains NUL"),
            })
        };
        let program = cstr(&helper.program)?;
        let mut argv = vec![program.clone()];
        for a in &args {
            argv.push(cstr(a)?);
        }
        let err = fs::File::create(&log)
            .map_err(|e| SandboxError::setup("create network helper log", Some(log.clone()), e))?;
        let null = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| SandboxError::setup("open", Some("/dev/null".into()), e))?;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(fail("create network helper pipe"))?;
        // SAFETY: the init process is single-threaded, so fork is safe.
        match unsafe { nix::unistd::fork() }.map_err(fail("fork network helper"))? {
            ForkResult::Child => {
                drop(w);
                // SAFETY: plain syscalls on fds this process owns, then
                // exec or _exit; nothing returns into the init's code.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                    let mut b = [0u8; 1];
                    // End of file without a byte: the init gave up.
                    if libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) != 1
                        || libc::getppid() != me.as_raw()
                    {
                        libc::_exit(1);
                    }
                    // As std's Command: default dispositions and no
                    // blocked signals (Rust ignores SIGPIPE, which exec
                    // keeps, and pasta refuses to start with it ignored).
                    for sig in 1..libc::SIGRTMIN() {
                        libc::signal(sig, libc::SIG_DFL);
                    }
                    let mut none: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut none);
                    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                    libc::dup2(null.as_raw_fd(), 0);
                    libc::dup2(null.as_raw_fd(), 1);
                    libc::dup2(err.as_raw_fd(), 2);
                    let _ = nix::unistd::execvp(&program, &argv);
                    libc::_exit(127)
                }
            }
            ForkResult::Parent { child } => Ok(Pending {
                pid: child,
                go: w,
                ready,
                log,
                shown,
            }),
        }
    }

    /// Lets the helper run (the namespaces exist now) and waits until it
    /// has configured the namespace.
    pub(crate) fn start(self) -> Result<Running, SandboxError> {
        let running = Running { pid: self.pid };
        let _ = nix::unistd::write(&self.go, b"x");
        drop(self.go);
        let deadline = Instant::now() + READY_TIMEOUT;
        let why = loop {
            if fs::metadata(&self.ready).is_ok_and(|m| m.len() > 0) {
                let _ = fs::remove_file(&self.ready);
                let _ = fs::remove_file(&self.log);
                return Ok(running);
            }
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(WaitStatus::Exited(_, 127)) => break "could not be executed".to_string(),
                Ok(ws) => break format!("ended before the namespace was ready ({ws:?})"),
                Err(e) => break e.to_string(),
            }
            if Instant::now() > deadline {
                break format!("did not configure the namespace within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        drop(running);
        let mut stderr = String::new();
        let _ = fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut stderr));
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(&self.ready);
        // pasta tells syslog it cannot reach it on every line.
        let stderr: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("Failed to send") && !l.trim().is_empty())
            .collect();
        let why = if stderr.is_empty() {
            why
        } else {
            stderr.join("\n")
        };
        Err(SandboxError::Rootless {
            missing: format!("the network helper failed: {}: {why}", self.shown),
            hint: "a user-mode network helper (pasta) needs /dev/net/tun readable and writable by you (mode 0666) and unprivileged user namespaces; or use --network none or --network host".into(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only while it is still this process's child (the init's reaper
        // may have collected it, and its pid be another's by now).
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(nix::unistd::getpid().as_raw()) {
            let _ = kill(self.pid, Signal::SIGTERM);
            let _ = waitpid(self.pid, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_and_ready_file_are_filled_in() {
        let args: Vec<String> = ["--pid", "{ready}", "-t", "none", "{pid}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            fill(&args, Pid::from_raw(42), Path::new("/run/r")),
            ["--pid", "/run/r", "-t", "none", "42"]
        );
    }
}
