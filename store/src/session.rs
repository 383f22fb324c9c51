//! This process's scratch space and the write sessions that keep gc away:
//! `tmp/<session>/` is made on first use and swept once its owner died; a
//! [`WriteSession`] holds the gc lock shared from a first blob to the index
//! update that references it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{FileLock, LockMode, Result, Store, StoreError};
use rbuild_oci::error_chain_line;

/// Held across a sequence of writes (blobs, then the index) so that a
/// concurrent garbage collection cannot delete blobs not yet referenced.
#[derive(Debug)]
pub struct WriteSession<'a> {
    store: &'a Store,
}

impl Drop for WriteSession<'_> {
    fn drop(&mut self) {
        let mut state = self.store.writers.lock().expect("writers lock");
        state.0 -= 1;
        if state.0 == 0 {
            state.1 = None;
        }
    }
}

/// This process's scratch directory, `tmp/<pid>-<nanos>/`, made on first
/// use rather than at open: read-only commands (`run`, `images`, `inspect`)
/// then create, lock and sweep nothing. That matters beyond the syscalls:
/// on ext4 every directory removed frees a block, and with `-o discard`
/// (common on VMs and SSDs) that is a synchronous discard request, which
/// measured 0.5–4 ms per directory here.
///
/// Derefs to the path, creating the directory (after sweeping dead
/// sessions) the first time, so every use of the scratch path makes sure it
/// exists. When creating fails the path is still returned and the I/O that
/// follows reports the error with that path.
#[derive(Debug)]
pub(crate) struct SessionTmp {
    store_dir: PathBuf,
    path: PathBuf,
    /// Set once the session was made (the lock proving it is live) or
    /// making it failed (why, kept for every later caller).
    made: OnceLock<std::result::Result<FileLock, String>>,
}

impl SessionTmp {
    pub(crate) fn new(store_dir: &Path) -> SessionTmp {
        // pid and time tell processes apart (a pid may be reused); the
        // sequence number tells apart the stores one process opens, which
        // two threads can do within one clock tick. Two sessions with one
        // name would deadlock: the first's drop waits for the sweep lock
        // that the second holds while it waits for the session lock.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        SessionTmp::at(store_dir, nanos)
    }

    /// [`SessionTmp::new`] with the clock reading given.
    fn at(store_dir: &Path, nanos: u32) -> SessionTmp {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = format!("{}-{nanos}-{seq}", std::process::id());
        SessionTmp {
            store_dir: store_dir.to_path_buf(),
            path: store_dir.join("tmp").join(session),
            made: OnceLock::new(),
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.path.with_extension("lock")
    }

    /// Makes the directory if no call did yet.
    pub(crate) fn ensure(&self) -> Result<&Path> {
        let made = self.made.get_or_init(|| {
            Store::make_session_tmp(&self.store_dir, self).map_err(|e| error_chain_line(&e))
        });
        match made {
            Ok(_) => Ok(&self.path),
            Err(why) => Err(StoreError::io(&self.path)(io::Error::other(why.clone()))),
        }
    }
}

impl std::ops::Deref for SessionTmp {
    type Target = Path;

    fn deref(&self) -> &Path {
        let _ = self.ensure();
        &self.path
    }
}

impl Drop for SessionTmp {
    /// Removes the session's directory, then its lock file, under the
    /// sweep lock so a concurrent sweep never sees half of it. What a
    /// killed process leaves behind is swept by the next session.
    fn drop(&mut self) {
        let Some(Ok(_lock)) = self.made.get() else {
            return;
        };
        let guard = FileLock::acquire(&self.store_dir.join("locks/tmp.lock"), LockMode::Exclusive);
        if fs::remove_dir_all(&self.path).is_ok() {
            let _ = fs::remove_file(self.lock_path());
        }
        drop(guard);
    }
}

impl Store {
    /// Sweeps dead sessions' scratch space and makes `session`'s own.
    fn make_session_tmp(dir: &Path, session: &SessionTmp) -> Result<FileLock> {
        let tmp_root = dir.join("tmp");
        fs::create_dir_all(&tmp_root).map_err(StoreError::io(&tmp_root))?;
        let _guard = FileLock::acquire(&dir.join("locks/tmp.lock"), LockMode::Exclusive)?;
        let entries = fs::read_dir(&tmp_root).map_err(StoreError::io(&tmp_root))?;
        let mut live = BTreeSet::new();
        let mut all = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::io(&tmp_root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(session) = name.strip_suffix(".lock") {
                let lock_path = entry.path();
                if FileLock::try_acquire(&lock_path, LockMode::Exclusive)?.is_none() {
                    live.insert(session.to_string());
                }
            }
            all.push((name, entry.path()));
        }
        for (name, path) in all {
            let session = name.strip_suffix(".lock").unwrap_or(&name);
            if live.contains(session) {
                continue;
            }
            // Directory first, then its lock: a lock file never outlives
            // proof that its directory is gone.
            let r = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path)(e)),
            }
        }
        let lock = FileLock::acquire(&session.lock_path(), LockMode::Exclusive)?;
        fs::create_dir(&session.path).map_err(StoreError::io(&session.path))?;
        Ok(lock)
    }

    /// Bytes under `tmp/` that belong to sessions whose process died
    /// (swept when the next session is made).
    pub(crate) fn dead_scratch_bytes(&self) -> Result<u64> {
        let tmp_root = self.dir.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp_root) else {
            return Ok(0);
        };
        let mut total = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lock") {
                continue;
            }
            let lock = tmp_root.join(format!("{name}.lock"));
            let live =
                lock.exists() && FileLock::try_acquire(&lock, LockMode::Exclusive)?.is_none();
            if !live {
                total += crate::tree_size(&entry.path());
            }
        }
        Ok(total)
    }

    /// Starts (or joins) a write session; see [`WriteSession`].
    pub fn write_session(&self) -> Result<WriteSession<'_>> {
        let mut state = self.writers.lock().expect("writers lock");
        if state.1.is_none() {
            state.1 = Some(self.acquire_lock(
                &self.dir.join("locks/gc.lock"),
                LockMode::Shared,
                "garbage collection (a prune or `system check` holds the store)",
            )?);
        }
        state.0 += 1;
        Ok(WriteSession { store: self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: two processes opening a fresh root at once collided on the
    /// temporary file used to create `oci-layout` ("No such file or directory").
    #[test]
    fn stores_opened_by_one_process_get_distinct_scratch_sessions() {
        // Regression: sessions were named pid-nanos, and two threads opening
        // stores within one clock tick got the same name and deadlocked.
        // (Seen in CI: three threads of one test named theirs alike.)
        let dir = tempfile::tempdir().unwrap();
        let a = SessionTmp::at(dir.path(), 659_065_341);
        let b = SessionTmp::at(dir.path(), 659_065_341);
        assert_ne!(a.path, b.path);
        assert_ne!(a.lock_path(), b.lock_path());
    }
}
