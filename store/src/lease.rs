//! Image leases: `leases/<manifest hex>.lock`, shared-locked by every
//! process using an image, so that `rmi`/`prune` skip the image and gc
//! keeps everything it reaches.

use std::path::PathBuf;

use rbuild_oci::Digest;

use crate::{FileLock, Image, LockMode, Result, Store};

/// Proof that this process is using an image: while held, `rmi`/`prune` in
/// any process leave the image's blobs and snapshots alone.
#[derive(Debug)]
pub struct ImageLease {
    _lock: FileLock,
}

impl Store {
    /// Marks `image` as in use by this process until the lease is dropped.
    pub fn lease(&self, image: &Image) -> Result<ImageLease> {
        let path = self.lease_path(&image.manifest_digest);
        loop {
            let lock = FileLock::acquire(&path, LockMode::Shared)?;
            // gc deletes unused lease files while holding them exclusively;
            // a lock on a file it just deleted would protect nothing.
            if lock.is_current() {
                return Ok(ImageLease { _lock: lock });
            }
        }
    }

    fn lease_path(&self, manifest: &Digest) -> PathBuf {
        self.dir
            .join("leases")
            .join(format!("{}.lock", manifest.hex()))
    }

    /// True when some process (possibly this one) holds a lease on `image`.
    pub fn is_in_use(&self, image: &Image) -> Result<bool> {
        let path = self.lease_path(&image.manifest_digest);
        if !path.exists() {
            return Ok(false);
        }
        Ok(FileLock::try_acquire(&path, LockMode::Exclusive)?.is_none())
    }
}
