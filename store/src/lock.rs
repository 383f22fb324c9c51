//! Advisory file locks (`flock(2)`) between rbuild processes sharing a root.
//!
//! flock locks belong to an open file description, so two `Store`s in one
//! process exclude each other exactly like two processes do, and the kernel
//! drops a lock when its holder dies: a SIGKILLed rbuild never leaves a stale
//! lock behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
    path: PathBuf,
}

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

impl FileLock {
    /// Blocks until the lock at `path` (created when missing) is held.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<FileLock, StoreError> {
        let arg = match mode {
            LockMode::Shared => FlockArg::LockShared,
            LockMode::Exclusive => FlockArg::LockExclusive,
        };
        Self::lock(path, arg).map(|l| l.expect("blocking lock always returns a lock"))
    }

    /// Takes the lock only if nobody holds a conflicting one; `None` when busy.
    pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<FileLock>, StoreError> {
        let arg = match mode {
            LockMode::Shared => FlockArg::LockSharedNonblock,
            LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
        };
        Self::lock(path, arg)
    }

    fn lock(path: &Path, arg: FlockArg) -> Result<Option<FileLock>, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreError::io(path))?;
        loop {
            match Flock::lock(file.try_clone().map_err(StoreError::io(path))?, arg) {
                Ok(lock) => {
                    return Ok(Some(FileLock {
                        _lock: lock,
                        path: path.to_path_buf(),
                    }));
                }
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, Errno::EINTR)) => continue,
                Err((_, errno)) => {
                    return Err(StoreError::Io {
                        path: path.to_path_buf(),
                        source: errno.into(),
                    });
                }
            }
        }
    }

    /// True when the lock file is still the one at its path (not unlinked
    /// or replaced by another process since it was opened).
    pub fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self._lock.metadata(), std::fs::metadata(&self.path)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        }
    }

    /// The processes holding a lock on the file at `path`, as the kernel
    /// lists them in `/proc/locks` (pid and command line); empty when that
    /// cannot be read.
    pub fn holders(path: &Path) -> Vec<(u32, String)> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Vec::new();
        };
        let dev = meta.dev();
        let want = format!(
            "{:02x}:{:02x}:{}",
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev),
            meta.ino()
        );
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
            return Vec::new();
        };
        let mut out: Vec<(u32, String)> = Vec::new();
        for line in locks.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK ADVISORY WRITE 1234 fe:00:6594570 0 EOF"; a
            // waiter's line starts "1: ->" and has one field more.
            if fields.get(1) == Some(&"->") {
                continue;
            }
            let (Some(pid), Some(id)) = (fields.get(4), fields.get(5)) else {
                continue;
            };
            if *id != want {
                continue;
            }
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if out.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let words: Vec<String> = c
                        .split(|&b| b == 0)
                        .filter(|w| !w.is_empty())
                        .map(|w| String::from_utf8_lossy(w).into_owned())
                        .collect();
                    let text = words.join(" ");
                    if text.chars().count() > 80 {
                        format!("{}…", text.chars().take(80).collect::<String>())
                    } else {
                        text
                    }
                })
                .unwrap_or_default();
            out.push((pid, cmd));
        }
        out
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_lock_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let held = FileLock::acquire(&p, LockMode::Exclusive).unwrap();
        assert!(
            FileLock::try_acquire(&p, LockMode::Shared)
                .unwrap()
                .is_none()
        );
        assert!(
            FileLock::try_acquire(&p, LockMode::Exclusive)
                .unwrap()
                .is_none()
        );
        drop(held);
        assert!(
            FileLock::try_acquire(&p, LockMode::Exclusive)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn the_kernel_names_who_holds_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        assert!(FileLock::holders(&p).is_empty());
        let _held = FileLock::acquire(&p, LockMode::Shared).unwrap();
        let found = FileLock::holders(&p);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, std::process::id());
        assert!(!found[0].1.is_empty());
    }

    #[test]
    fn shared_locks_coexist_but_exclude_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let _a = FileLock::acquire(&p, LockMode::Shared).unwrap();
        let _b = FileLock::try_acquire(&p, LockMode::Shared)
            .unwrap()
            .unwrap();
        assert!(
            FileLock::try_acquire(&p, LockMode::Exclusive)
                .unwrap()
                .is_none()
        );
    }
}
