//! Pseudo-terminals for `process.tty`: a pty pair opened by the init
//! process (pid 1 gets the slave as its controlling terminal and stdio,
//! bound at /dev/console), the caller's terminal in raw mode while the
//! init process relays bytes, and window-size changes (SIGWINCH) copied to
//! the pty, which signals the foreground process group.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::termios::{self, SetArg, Termios};

use super::error::SandboxError;

/// An open pty pair.
pub(crate) struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    slave_path: PathBuf,
}

impl Pty {
    pub(crate) fn open() -> Result<Pty, SandboxError> {
        let r = nix::pty::openpty(None, None)
            .map_err(|e| SandboxError::setup("open pseudo-terminal", None, e.into()))?;
        let slave_path = nix::unistd::ttyname(&r.slave)
            .map_err(|e| SandboxError::setup("name pseudo-terminal", None, e.into()))?;
        Ok(Pty {
            master: r.master,
            slave: r.slave,
            slave_path,
        })
    }

    pub(crate) fn into_slave(self) -> (OwnedFd, PathBuf) {
        (self.slave, self.slave_path)
    }

    pub(crate) fn into_master(self) -> OwnedFd {
        self.master
    }
}

/// Copies the window size of `from` (when a terminal) to `to`.
pub(crate) fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a properly sized winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The caller's terminal in raw mode; restored when dropped.
pub(crate) struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// `None` when `fd` is not a terminal.
    pub(crate) fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSADRAIN, &self.saved);
    }
}
