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

/// What a blocking [`FileLock::acquire`] reports to the observer.
#[derive(Debug)]
pub enum LockWait<'a> {
    /// The lock at `lock` is held by others (`holders`, when the kernel
    /// says who); the caller now waits for it.
    Waiting {
        lock: &'a Path,
        holders: &'a [LockHolder],
    },
    /// The lock was taken after waiting `waited`.
    Acquired {
        lock: &'a Path,
        waited: std::time::Duration,
    },
}

/// A process holding a lock, from `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// Its command line, space-separated (empty when unreadable).
    pub command: String,
}

/// Hears about waits for locks; set once per process by the front end
/// (libraries do not print).
pub type LockWaitObserver = Box<dyn Fn(&LockWait<'_>) + Send + Sync>;

static WAIT_OBSERVER: std::sync::OnceLock<LockWaitObserver> = std::sync::OnceLock::new();

/// Sets the process's [`LockWaitObserver`]; later calls are ignored.
pub fn set_lock_wait_observer(observer: LockWaitObserver) {
    let _ = WAIT_OBSERVER.set(observer);
}

/// The processes holding a lock on the file at `path`, as `/proc/locks`
/// lists them (flock locks are listed with the pid that took them). Empty
/// when the file or the list cannot be read.
fn holders(path: &Path) -> Vec<LockHolder> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let dev = meta.dev();
    let want = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    let mut pids: Vec<u32> = locks
        .lines()
        .filter_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 4321 fd:01:1234 0 EOF`; waiters'
            // lines read `1: -> FLOCK …` and hold nothing.
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) != Some(&"->") && fields.get(5) == Some(&want.as_str()))
                .then(|| fields.get(4)?.parse().ok())
                .flatten()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .map(|pid| LockHolder {
            pid,
            command: std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
        })
        .collect()
}

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
    /// When another process holds it, the [`LockWaitObserver`] (if one is
    /// set) hears who holds it before the wait and how long it took after.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<FileLock, StoreError> {
        if let Some(lock) = Self::try_acquire(path, mode)? {
            return Ok(lock);
        }
        let observer = WAIT_OBSERVER.get();
        let started = std::time::Instant::now();
        if let Some(observer) = observer {
            observer(&LockWait::Waiting {
                lock: path,
                holders: &holders(path),
            });
        }
        let arg = match mode {
            LockMode::Shared => FlockArg::LockShared,
            LockMode::Exclusive => FlockArg::LockExclusive,
        };
        let lock =
            Self::lock(path, arg).map(|l| l.expect("blocking lock always returns a lock"))?;
        if let Some(observer) = observer {
            observer(&LockWait::Acquired {
                lock: path,
                waited: started.elapsed(),
            });
        }
        Ok(lock)
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
        assert!(holders(&p).is_empty());
        let _held = FileLock::acquire(&p, LockMode::Shared).unwrap();
        let found = holders(&p);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, std::process::id());
        assert!(!found[0].command.is_empty());
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
