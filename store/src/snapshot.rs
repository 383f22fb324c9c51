//! Layers read back: a layer blob's uncompressed tar stream (compression
//! sniffed from its first bytes), and its snapshot, unpacked under
//! `snapshots/<diffID hex>/` all-or-nothing and verified against the diffID.
//! A tree that is already in the snapshot format (a RUN step's overlay
//! upper dir, as root) is renamed into place instead
//! ([`Store::adopt_snapshot`]), as BuildKit's overlay snapshotter commits
//! an upper dir. Snapshots a build makes (adopted, or unpacked with
//! [`Store::snapshot_layer_deferred`]) wait in the process's scratch space
//! and are published together after one `syncfs`
//! ([`Store::publish_snapshots`]).

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use rbuild_oci::Digest;

use crate::layer::HashingReader;
use crate::{LayerEncoding, LayerInfo, Result, Store, StoreError, atomic};

impl Store {
    /// Where the snapshot of layer `diff_id` is (or would be): for this
    /// process, a snapshot it adopted and has not published yet is where
    /// it waits (see [`Store::adopt_snapshot`]).
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        if let Some(tree) = self.lock_unpublished().get(diff_id) {
            return tree.clone();
        }
        self.published_snapshot_path(diff_id)
    }

    fn published_snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("snapshots").join(diff_id.hex())
    }

    fn lock_unpublished(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Digest, PathBuf>> {
        self.unpublished.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The unpacked tree of the layer with `diff_id`, unpacking it first if
    /// needed (into scratch space, then renamed into place: all-or-nothing).
    pub fn snapshot(&self, diff_id: &Digest) -> Result<PathBuf> {
        let path = self.snapshot_path(diff_id);
        if path.is_dir() {
            return Ok(path);
        }
        let layer = self
            .images()?
            .into_iter()
            .flat_map(|i| i.layers)
            .find(|l| l.diff_id == *diff_id)
            .ok_or(StoreError::UnknownLayer { diff_id: *diff_id })?;
        self.snapshot_layer(&layer)
    }

    /// Like [`Store::snapshot`] for a layer already looked up. The new
    /// snapshot is renamed into `snapshots/` at once (for `rbuild run`
    /// and containers, whose mounts outlive this process); builds use
    /// [`Store::snapshot_layer_deferred`].
    pub fn snapshot_layer(&self, layer: &LayerInfo) -> Result<PathBuf> {
        self.unpack_snapshot(layer, false)
    }

    /// Like [`Store::snapshot_layer`], but a snapshot unpacked here waits
    /// in this process's scratch space, as an adopted one does, until
    /// [`Store::publish_snapshots`]: its files are made durable by that
    /// one `syncfs` before it is renamed into `snapshots/`. A build step
    /// that reads a layer (a RUN on a COPY, a WORKDIR after a COPY --from)
    /// so never waits for an fsync of `snapshots/`, and a power loss can
    /// never leave a published snapshot with files its blob does not
    /// hold (a snapshot renamed into place unsynced could be).
    pub fn snapshot_layer_deferred(&self, layer: &LayerInfo) -> Result<PathBuf> {
        self.unpack_snapshot(layer, true)
    }

    fn unpack_snapshot(&self, layer: &LayerInfo, deferred: bool) -> Result<PathBuf> {
        let dest = self.snapshot_path(&layer.diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let _session = self.write_session()?;
        let decoded = self.open_layer(layer)?;
        let mut hashing = HashingReader::new(decoded);
        let work = atomic::temp_path(&self.tmp, "snapshot");
        fs::create_dir(&work).map_err(StoreError::io(&work))?;
        let result = (|| {
            // Snapshots are overlay lower dirs stacked above their parents,
            // so a layer's whiteouts must stay overlay whiteouts rather than
            // delete anything. That takes root (trusted.* xattrs, 0/0 char
            // devices); without it they are applied, which is exact for
            // single-layer images.
            let whiteouts = if nix::unistd::geteuid().is_root() {
                crate::layer::WhiteoutMode::Overlay
            } else {
                crate::layer::WhiteoutMode::Apply
            };
            let opts = crate::layer::UnpackOptions { whiteouts };
            if let Err(source) = crate::layer::unpack_with(&mut hashing, &work, &opts) {
                // A tar that breaks may be a blob damaged on disk whose
                // digest check (at its end) was never reached: say so.
                if let Some(damaged) = self.verify_blob(&layer.digest) {
                    return Err(damaged);
                }
                return Err(StoreError::Unpack {
                    diff_id: layer.diff_id,
                    source,
                });
            }
            io::copy(&mut hashing, &mut io::sink())
                .map_err(StoreError::io(&self.blob_path(&layer.digest)))?;
            let actual = hashing.digest();
            if actual != layer.diff_id {
                return Err(StoreError::DigestMismatch {
                    expected: layer.diff_id,
                    actual,
                });
            }
            if deferred {
                return Ok(self.set_aside(&layer.diff_id, &work));
            }
            match fs::rename(&work, &dest) {
                Ok(()) => atomic::sync_dir(&self.dir.join("snapshots")).map(|()| dest),
                // Another process finished the same snapshot first.
                Err(_) if dest.is_dir() => Ok(dest),
                Err(e) => Err(StoreError::io(&dest)(e)),
            }
        })();
        // Unless it became the (unpublished) snapshot.
        if result.as_ref().map_or(true, |kept| *kept != work) && work.exists() {
            let _ = fs::remove_dir_all(&work);
        }
        result
    }

    /// Registers `work` (unpacked in this process's scratch space) as the
    /// unpublished snapshot of `diff_id` and returns where the snapshot is:
    /// `work`, or the tree another thread of this process or another
    /// process made first.
    fn set_aside(&self, diff_id: &Digest, work: &Path) -> PathBuf {
        let mut unpublished = self.lock_unpublished();
        let published = self.published_snapshot_path(diff_id);
        if published.is_dir() {
            return published;
        }
        unpublished
            .entry(*diff_id)
            .or_insert_with(|| work.to_path_buf())
            .clone()
    }

    /// Makes `tree` the snapshot of layer `diff_id` without unpacking the
    /// layer's blob; returns the snapshot's path. `tree` must be on the
    /// store's filesystem (its tmp dir) and in the format
    /// [`Store::snapshot_layer`] unpacks into for this process: as root,
    /// overlay whiteouts (0/0 character devices) and
    /// `trusted.overlay.opaque` marks, which is what a RUN step's overlay
    /// upper dir holds. The caller vouches that `diff_id` is the diffID of
    /// `tree` (it packed the layer from it) and commits the blob first.
    ///
    /// The tree is moved aside in this process's scratch space and used
    /// from there ([`Store::snapshot_path`]) until
    /// [`Store::publish_snapshots`] (or dropping the store) makes every
    /// such tree durable with one `syncfs` and renames it into
    /// `snapshots/`. A step therefore never waits for its own writes (or
    /// anyone else's on the filesystem) to reach the disk, and a build
    /// syncs once, not once per RUN step. A crash before publishing loses
    /// only scratch space: the layer's committed blob is unpacked again
    /// when next needed. When the snapshot already exists (the same layer
    /// made before, or by another process), `tree` is left where it is
    /// for the caller to remove.
    pub fn adopt_snapshot(&self, diff_id: &Digest, tree: &Path) -> Result<PathBuf> {
        let dest = self.published_snapshot_path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let mut unpublished = self.lock_unpublished();
        if let Some(path) = unpublished.get(diff_id) {
            return Ok(path.clone());
        }
        let aside = atomic::temp_path(&self.tmp, "unpublished-snapshot");
        fs::rename(tree, &aside).map_err(StoreError::io(tree))?;
        unpublished.insert(*diff_id, aside.clone());
        Ok(aside)
    }

    /// Publishes the snapshots this process adopted or unpacked for a
    /// build (see [`Store::adopt_snapshot`],
    /// [`Store::snapshot_layer_deferred`]): one `syncfs` makes them all durable,
    /// then each is renamed into `snapshots/`. Dropping the store calls it
    /// (`rbuild build` drops its store when the command ends, after all of
    /// its builds); a caller may call it earlier once no step is running.
    pub fn publish_snapshots(&self) -> Result<()> {
        // Blobs still being written read their snapshots where they wait;
        // one that failed takes its snapshot out of the list.
        let blobs = self.finish_deferred_blobs();
        let trees: Vec<(Digest, PathBuf)> = {
            let unpublished = self.lock_unpublished();
            if unpublished.is_empty() {
                return blobs;
            }
            unpublished.iter().map(|(d, p)| (*d, p.clone())).collect()
        };
        // Under a write session: a concurrent gc must not see a snapshot
        // appear halfway through its sweep.
        let _session = self.write_session()?;
        let scratch: &Path = &self.tmp;
        let dir = fs::File::open(scratch).map_err(StoreError::io(scratch))?;
        rustix::fs::syncfs(dir.as_fd()).map_err(|e| StoreError::io(scratch)(e.into()))?;
        drop(dir);
        let mut first_error = None;
        for (diff_id, tree) in trees {
            let dest = self.published_snapshot_path(&diff_id);
            // Published (or not) under the lock, so that `snapshot_path`
            // never names a tree that has moved.
            let mut unpublished = self.lock_unpublished();
            match fs::rename(&tree, &dest) {
                Ok(()) => {}
                // Another process published the same snapshot first; ours
                // goes with the scratch space.
                Err(_) if dest.is_dir() => {}
                Err(e) => {
                    first_error.get_or_insert(StoreError::io(&dest)(e));
                    continue;
                }
            }
            unpublished.remove(&diff_id);
        }
        atomic::sync_dir(&self.dir.join("snapshots"))?;
        match first_error {
            Some(e) => Err(e),
            None => blobs,
        }
    }

    /// Drops the unpublished snapshot of `diff_id` from those to publish
    /// (it goes with the scratch space).
    pub(crate) fn forget_unpublished(&self, diff_id: &Digest) {
        self.lock_unpublished().remove(diff_id);
    }

    /// The uncompressed tar stream of `layer`, decoding gzip or zstd as
    /// the blob's first bytes say (the media type must still be a layer
    /// type rbuild knows). The blob is checked against its digest as it is
    /// read (see [`Store::open_blob_verified`]); the caller verifies the
    /// diffID if it needs to (see [`HashingReader`]).
    pub fn open_layer(&self, layer: &LayerInfo) -> Result<Box<dyn Read + Send>> {
        if LayerEncoding::from_media_type(&layer.media_type).is_none() {
            return Err(StoreError::UnsupportedMediaType {
                digest: layer.digest,
                media_type: layer.media_type.clone(),
            });
        }
        let path = self.blob_path(&layer.digest);
        // Verified as it streams: a layer damaged on disk fails the read
        // that would end it, so nothing is built on it.
        let mut blob =
            io::BufReader::with_capacity(1 << 20, self.open_blob_verified(&layer.digest)?);
        // The compression is read from the blob's first bytes, not the
        // media type: some tools label an uncompressed layer `tar+gzip`
        // (skopeo converting a docker-archive does), and the digest check
        // already vouches for the bytes, not for the label.
        let head = io::BufRead::fill_buf(&mut blob).map_err(StoreError::io(&path))?;
        Ok(match sniff_layer_encoding(head) {
            LayerEncoding::Tar => Box::new(blob),
            LayerEncoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
            LayerEncoding::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(blob).map_err(StoreError::io(&path))?,
            ),
        })
    }
}

/// A layer blob's compression from its magic number (gzip `1f 8b`, zstd
/// `28 b5 2f fd`); anything else is read as a plain tar, whose first
/// bytes are a file name.
pub(crate) fn sniff_layer_encoding(head: &[u8]) -> LayerEncoding {
    if head.starts_with(&[0x1f, 0x8b]) {
        LayerEncoding::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        LayerEncoding::Zstd
    } else {
        LayerEncoding::Tar
    }
}
