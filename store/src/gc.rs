//! Garbage collection and disk usage: blobs and snapshots that no index
//! entry, no lease and no [`GcRoots`] (the build cache index) reaches are
//! removed, under the exclusive gc lock so no write session is running.

use std::collections::BTreeSet;
use std::fs;

use rbuild_oci::Digest;
use rbuild_oci::ImageConfig;

use crate::{
    FileLock, LayerInfo, LockMode, Manifest, Result, Store, StoreError, atomic, tree_size,
};

/// Layers something beside the image index keeps alive (the build cache
/// index implements it): [`Store::gc`] keeps their blobs and snapshots.
/// The store knows nothing of what keeps them; this trait is the seam.
pub trait GcRoots {
    /// Every layer to keep. An error stops the collection before anything
    /// is removed: roots that cannot be read keep everything.
    fn live_layers(
        &self,
        store: &Store,
    ) -> std::result::Result<Vec<LayerInfo>, Box<dyn std::error::Error + Send + Sync>>;
}

/// No roots beyond images and leases: for a store no build has used.
pub struct NoGcRoots;

impl GcRoots for NoGcRoots {
    fn live_layers(
        &self,
        _store: &Store,
    ) -> std::result::Result<Vec<LayerInfo>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Vec::new())
    }
}

/// What garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    pub blobs_removed: u64,
    /// Bytes of the blobs and of the unpacked snapshots removed.
    pub bytes_freed: u64,
    pub snapshots_removed: u64,
}

/// What [`Store::unreferenced`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unreferenced {
    /// Blobs nothing reaches.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Bytes in the scratch space of processes that died (partial blobs,
    /// staged downloads).
    pub scratch_bytes: u64,
}

impl Unreferenced {
    /// Bytes a collection would free.
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.scratch_bytes
    }
}

/// Bytes used by the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUsage {
    pub blobs: u64,
    pub blob_count: u64,
    pub snapshots: u64,
    pub snapshot_count: u64,
}

impl Store {
    /// Deletes blobs and snapshots that no index entry, no lease and no
    /// build cache-index record reaches.
    /// Waits for running write sessions of other processes to finish. Must
    /// not be called while this `Store` has a [`WriteSession`](crate::WriteSession) open.
    ///
    /// `roots` names the layers kept beyond images and leases (the build
    /// cache index's records); when they cannot be read, nothing is removed.
    pub fn gc(&self, gc_roots: &dyn GcRoots) -> Result<GcStats> {
        let _gc = self.acquire_lock(
            &self.dir.join("locks/gc.lock"),
            LockMode::Exclusive,
            "the store (running builds, loads and pulls hold it)",
        )?;
        // Dead processes' scratch (partial blobs, staged downloads) goes
        // when this session's is made; counted as freed.
        let scratch = self.dead_scratch_bytes()?;
        self.tmp.ensure()?;
        let (keep_blobs, keep_snapshots) = self.reachable(gc_roots, true)?;
        let mut stats = GcStats {
            bytes_freed: scratch,
            ..GcStats::default()
        };
        let blobs = self.blobs_dir();
        for entry in fs::read_dir(&blobs).map_err(StoreError::io(&blobs))? {
            let entry = entry.map_err(StoreError::io(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = format!("sha256:{name}")
                .parse::<Digest>()
                .is_ok_and(|d| keep_blobs.contains(&d));
            if !keep {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(StoreError::io(&entry.path()))?;
                stats.blobs_removed += 1;
                stats.bytes_freed += size;
            }
        }
        let snaps = self.dir.join("snapshots");
        for entry in fs::read_dir(&snaps).map_err(StoreError::io(&snaps))? {
            let entry = entry.map_err(StoreError::io(&snaps))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep_snapshots.contains(&name) {
                // Rename out of sight first so the removal is all-or-nothing
                // for readers; the rest is swept with our tmp if we die.
                let doomed = atomic::temp_path(&self.tmp, "gc-snapshot");
                fs::rename(entry.path(), &doomed).map_err(StoreError::io(&entry.path()))?;
                stats.bytes_freed += tree_size(&doomed);
                fs::remove_dir_all(&doomed).map_err(StoreError::io(&doomed))?;
                stats.snapshots_removed += 1;
            }
        }
        Ok(stats)
    }

    /// What images, leases and `gc_roots` keep: blob digests and snapshot
    /// names. With `sweep_leases`, lease files nobody holds are removed
    /// (only under the exclusive gc lock).
    fn reachable(
        &self,
        gc_roots: &dyn GcRoots,
        sweep_leases: bool,
    ) -> Result<(BTreeSet<Digest>, BTreeSet<String>)> {
        let mut roots: BTreeSet<Digest> = BTreeSet::new();
        for d in self.read_index()?.manifests {
            if let Ok(d) = d.digest.parse() {
                roots.insert(d);
            }
        }
        let leases = self.dir.join("leases");
        let mut held = Vec::new();
        for entry in fs::read_dir(&leases).map_err(StoreError::io(&leases))? {
            let entry = entry.map_err(StoreError::io(&leases))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = name
                .strip_suffix(".lock")
                .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
            else {
                continue;
            };
            match FileLock::try_acquire(&entry.path(), LockMode::Exclusive)? {
                None => {
                    roots.insert(digest);
                }
                Some(lock) => held.push((entry.path(), lock)),
            }
        }
        // Unused lease files go while we hold their lock.
        if sweep_leases {
            for (path, _lock) in &held {
                let _ = fs::remove_file(path);
            }
        }
        drop(held);

        // An image index keeps its manifests (and what they keep).
        let mut pending: Vec<Digest> = roots.iter().copied().collect();
        while let Some(d) = pending.pop() {
            let Ok(bytes) = self.read_blob_unverified(&d) else {
                continue;
            };
            let Ok(index) = serde_json::from_slice::<crate::Index>(&bytes) else {
                continue;
            };
            if !index
                .media_type
                .as_deref()
                .is_some_and(crate::image_index::is_index_media_type)
            {
                continue;
            }
            for m in &index.manifests {
                if let Ok(child) = m.digest.parse::<Digest>()
                    && roots.insert(child)
                {
                    pending.push(child);
                }
            }
        }
        let mut keep_blobs = BTreeSet::new();
        let mut keep_snapshots = BTreeSet::new();
        for manifest in roots {
            keep_blobs.insert(manifest);
            let Ok(bytes) = self.read_blob_unverified(&manifest) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            if let Ok(c) = m.config.digest.parse::<Digest>() {
                keep_blobs.insert(c);
                if let Ok(cfg) = self.read_blob_unverified(&c).and_then(|b| {
                    serde_json::from_slice::<ImageConfig>(&b).map_err(|source| StoreError::Json {
                        what: c.to_string(),
                        source,
                    })
                }) {
                    for id in &cfg.rootfs.diff_ids {
                        keep_snapshots.insert(id.trim_start_matches("sha256:").to_string());
                    }
                }
            }
            for l in &m.layers {
                if let Ok(d) = l.digest.parse::<Digest>() {
                    keep_blobs.insert(d);
                }
            }
        }
        // Results in the build cache index stay until `cache prune`; a
        // failure to read them keeps everything (fail closed).
        let live = gc_roots
            .live_layers(self)
            .map_err(|source| StoreError::GcRoots { source })?;
        for l in live {
            keep_blobs.insert(l.digest);
            keep_snapshots.insert(l.diff_id.hex());
        }
        // Compressed variants of live layers stay: the next push reuses
        // them (records of dead layers go when sweeping).
        keep_blobs.extend(self.live_variant_blobs(&keep_snapshots, sweep_leases)?);
        Ok((keep_blobs, keep_snapshots))
    }

    /// Blobs nothing reaches (no image, lease or build cache record: left
    /// by a killed or failed write, e.g. after a full disk) and the
    /// scratch space of processes that died. What the next [`Store::gc`]
    /// (`image prune`, `cache prune`, `system check --repair`) removes.
    pub fn unreferenced(&self, gc_roots: &dyn GcRoots) -> Result<Unreferenced> {
        let (keep, _) = self.reachable(gc_roots, false)?;
        let mut out = Unreferenced::default();
        let blobs = self.blobs_dir();
        for entry in fs::read_dir(&blobs).map_err(StoreError::io(&blobs))? {
            let entry = entry.map_err(StoreError::io(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = format!("sha256:{name}")
                .parse::<Digest>()
                .is_ok_and(|d| keep.contains(&d));
            if !kept {
                out.blobs += 1;
                out.blob_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        out.scratch_bytes = self.dead_scratch_bytes()?;
        Ok(out)
    }

    /// Bytes used by blobs and snapshots.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let mut du = DiskUsage::default();
        let blobs = self.blobs_dir();
        for entry in fs::read_dir(&blobs).map_err(StoreError::io(&blobs))? {
            let entry = entry.map_err(StoreError::io(&blobs))?;
            du.blobs += entry.metadata().map(|m| m.len()).unwrap_or(0);
            du.blob_count += 1;
        }
        let snaps = self.dir.join("snapshots");
        for entry in fs::read_dir(&snaps).map_err(StoreError::io(&snaps))? {
            let entry = entry.map_err(StoreError::io(&snaps))?;
            du.snapshots += tree_size(&entry.path());
            du.snapshot_count += 1;
        }
        Ok(du)
    }
}
