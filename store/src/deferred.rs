//! Layer blobs written in the background: a RUN step's layer is known
//! (its diffID, its size) from one hashing pass over its upper dir, which
//! becomes its snapshot as it is; the blob itself, the same tar written to
//! `blobs/`, is only needed when the image is exported, pushed or saved.
//! [`Store::write_layer_blob_deferred`] writes it on a thread of its own
//! while later steps run, packing the (immutable) snapshot a second time.
//! That pass is not hashed with sha256 again (half of its cost): its bytes
//! are checked against an XXH3-128 checksum and byte count the first pass
//! took beside the sha256, so a blob is only ever stored under a digest
//! its bytes were hashed to.
//!
//! Until it is committed the blob counts as present to
//! [`Store::has_blob`] (a concurrent build's cache lookup finds the step's
//! record), and whatever opens it ([`Store::open_blob`]) waits for it. A
//! build calls [`Store::finish_deferred_blobs`] once its steps are done,
//! before it writes its image: that is where a write that failed (a full
//! disk) fails the build. A snapshot whose blob could not be written is
//! never published. Files that name such a blob (cache-index records)
//! are held back until it is committed
//! ([`Store::replace_file_after_blobs`]). [`Store::publish_snapshots`]
//! (and so dropping the store) waits for every write first, since the
//! writes read the snapshots where they wait in scratch space.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rbuild_oci::Digest;

use crate::layer::{LayerError, StreamCheck, StreamSum};
use crate::{Result, Store, StoreError, atomic};

/// One blob being written in the background.
#[derive(Debug, Default)]
pub(crate) struct DeferredBlob {
    state: Mutex<Option<std::result::Result<(), Arc<StoreError>>>>,
    done: Condvar,
}

impl DeferredBlob {
    fn finish(&self, result: std::result::Result<(), StoreError>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = Some(result.map_err(Arc::new));
        self.done.notify_all();
    }

    /// Waits for the write; its outcome.
    fn wait(&self) -> std::result::Result<(), Arc<StoreError>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = self
            .done
            .wait_while(state, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        state.clone().expect("waited until set")
    }

    /// Waits at most until `deadline` for the write; whether it is over.
    fn wait_until(&self, deadline: std::time::Instant) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = deadline.saturating_duration_since(std::time::Instant::now());
        let (state, _) = self
            .done
            .wait_timeout_while(state, timeout, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        state.is_some()
    }

    fn failed(&self) -> bool {
        matches!(
            &*self.state.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Err(_))
        )
    }
}

/// What [`Store::write_layer_blob_deferred`] runs: packs the layer into
/// the writer it is given.
pub type PackLayer = Box<dyn FnOnce(&mut dyn Write) -> std::result::Result<(), LayerError> + Send>;

/// The blobs being written in the background, and the files waiting for
/// them.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    blobs: Mutex<HashMap<Digest, Arc<DeferredBlob>>>,
    /// Blobs whose write failed since they were last asked for: a file
    /// waiting for one of them is never written.
    failed: Mutex<HashSet<Digest>>,
    files: Mutex<HashMap<PathBuf, HeldFile>>,
}

/// A file's bytes and the blobs it waits for.
type HeldFile = (Vec<u8>, Vec<Digest>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    fn lock_deferred(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<DeferredBlob>>> {
        lock(&self.deferred.blobs)
    }

    /// Replaces `path` with `bytes` (atomically, not fsynced: see
    /// [`atomic::replace_file`]) once every blob of `after` that is being
    /// written in the background is committed; at once when none is. A
    /// file naming a blob (a cache-index record) must never reach the disk
    /// before the blob: after a crash it would name what the store lacks.
    /// Until it is written, [`Store::pending_file`] has its bytes; when one
    /// of the blobs fails, it is never written.
    pub fn replace_file_after_blobs(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        after: &[Digest],
    ) -> Result<()> {
        {
            let blobs = self.lock_deferred();
            if after
                .iter()
                .any(|d| lock(&self.deferred.failed).contains(d) && !self.blob_path(d).is_file())
            {
                // Names a blob that could not be written: never written.
                return Ok(());
            }
            if after.iter().any(|d| blobs.contains_key(d)) {
                lock(&self.deferred.files).insert(path.to_path_buf(), (bytes, after.to_vec()));
                return Ok(());
            }
        }
        lock(&self.deferred.files).remove(path);
        atomic::replace_file(&self.tmp, path, &bytes)
    }

    /// The bytes of `path` while [`Store::replace_file_after_blobs`] holds
    /// them back.
    pub fn pending_file(&self, path: &Path) -> Option<Vec<u8>> {
        lock(&self.deferred.files)
            .get(path)
            .map(|(bytes, _)| bytes.clone())
    }

    /// Writes the held-back files whose blobs are all committed now, and
    /// drops those waiting for a blob that failed.
    fn write_pending_files(&self) -> Result<()> {
        let ready: Vec<(PathBuf, Vec<u8>)> = {
            let blobs = self.lock_deferred();
            let failed = lock(&self.deferred.failed);
            let mut files = lock(&self.deferred.files);
            let mut ready = Vec::new();
            files.retain(|path, (bytes, after)| {
                if after.iter().any(|d| failed.contains(d)) {
                    return false;
                }
                if after.iter().any(|d| blobs.contains_key(d)) {
                    return true;
                }
                ready.push((path.clone(), std::mem::take(bytes)));
                false
            });
            ready
        };
        let mut first_error = None;
        for (path, bytes) in ready {
            if let Err(e) = atomic::replace_file(&self.tmp, &path, &bytes) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes the blob of an uncompressed layer whose diffID (`diff_id`,
    /// also its blob digest) the caller took from a first pass over the
    /// layer's tar, on a thread of its own: `pack` writes the same tar
    /// again, and the blob is committed only if those bytes have the
    /// checksum and size (`first`) of the ones the first pass hashed.
    /// `pack` must read only what nothing changes until the write is done
    /// (a snapshot this process adopted: see the module docs). A blob
    /// stored already (or being written) is not written again.
    pub fn write_layer_blob_deferred(
        &self,
        diff_id: Digest,
        first: StreamSum,
        pack: PackLayer,
    ) -> Result<()> {
        if atomic::stored_whole(&self.blob_path(&diff_id), first.size) {
            return Ok(());
        }
        let mut deferred = self.lock_deferred();
        if deferred.get(&diff_id).is_some_and(|d| !d.failed()) {
            return Ok(());
        }
        let writer = self.blob_writer_prehashed()?;
        lock(&self.deferred.failed).remove(&diff_id);
        let entry = Arc::new(DeferredBlob::default());
        let tmp = self.tmp.to_path_buf();
        let job = Arc::clone(&entry);
        std::thread::Builder::new()
            .name("layer-blob".into())
            .spawn(move || {
                // Below the steps still running: on a machine whose cores
                // a step keeps busy (a compiler), the write takes what
                // they leave instead of slowing them down; the build
                // waits for what is left of it at the end.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
                // Whatever happens, the write ends with a result: a panic
                // in the packer must fail the build, not leave it waiting.
                let write = std::panic::AssertUnwindSafe(|| {
                    let mut checked = StreamCheck::new(writer);
                    pack(&mut checked).map_err(|source| match source {
                        LayerError::Output { source } => StoreError::io(&tmp)(source),
                        source => StoreError::Pack {
                            diff_id,
                            source: Box::new(source),
                        },
                    })?;
                    if checked.sum() != first {
                        return Err(StoreError::Repacked { diff_id });
                    }
                    checked.into_inner().commit_as(diff_id).map(drop)
                });
                let result = std::panic::catch_unwind(write).unwrap_or_else(|_| {
                    Err(StoreError::Io {
                        path: tmp.clone(),
                        source: std::io::Error::other("the thread writing the blob panicked"),
                    })
                });
                job.finish(result);
            })
            .map_err(StoreError::io(&self.tmp))?;
        deferred.insert(diff_id, entry);
        Ok(())
    }

    /// True while the blob `digest` is being written in the background
    /// (and has not failed).
    pub(crate) fn blob_is_deferred(&self, digest: &Digest) -> bool {
        self.lock_deferred()
            .get(digest)
            .is_some_and(|d| !d.failed())
    }

    /// Waits for the background write of blob `digest`, if there is one.
    pub(crate) fn wait_deferred_blob(&self, digest: &Digest) -> Result<()> {
        let entry = self.lock_deferred().get(digest).cloned();
        match entry {
            Some(entry) => entry.wait().map_err(|source| StoreError::DeferredBlob {
                digest: *digest,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Whether every blob being written in the background is written (or
    /// failed) within `timeout`: a front end shows the wait as a step of
    /// its own only when it is long enough to notice.
    pub fn deferred_blobs_done_within(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let entries: Vec<Arc<DeferredBlob>> = self.lock_deferred().values().cloned().collect();
        entries.iter().all(|e| e.wait_until(deadline))
    }

    /// Waits for every blob being written in the background and forgets
    /// them; the first failure, if any. A snapshot whose blob failed is
    /// dropped from those waiting to be published (its blob is not in
    /// the store, so nothing may name it).
    pub fn finish_deferred_blobs(&self) -> Result<()> {
        let entries: Vec<(Digest, Arc<DeferredBlob>)> = self
            .lock_deferred()
            .iter()
            .map(|(d, e)| (*d, Arc::clone(e)))
            .collect();
        let mut first_error = None;
        for (digest, entry) in entries {
            let result = entry.wait();
            {
                let mut deferred = self.lock_deferred();
                if deferred
                    .get(&digest)
                    .is_some_and(|e| Arc::ptr_eq(e, &entry))
                {
                    deferred.remove(&digest);
                }
            }
            if let Err(source) = result {
                lock(&self.deferred.failed).insert(digest);
                self.forget_unpublished(&digest);
                first_error.get_or_insert(StoreError::DeferredBlob { digest, source });
            }
        }
        let files = self.write_pending_files();
        match first_error {
            Some(e) => Err(e),
            None => files,
        }
    }
}
