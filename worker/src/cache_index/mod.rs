//! The persistent cache index: cache key → a step's result (its layers),
//! kept in the store apart from the blobs it names, as BuildKit keeps its
//! cache-key index apart from snapshots.
//!
//! ```text
//! <store>/cache-v1/keys/<key hex>.json   one record per key, replaced atomically
//! ```
//!
//! A record holds the result's layers (blob digest, diffID, size, media
//! type, when made), its size, when it was made and last used, and what
//! the key was made of ([`StepFingerprint`], for explaining misses). Keys
//! never depend on the machine (see `rbuild_solver::cache_key`); records
//! only refer to blobs by digest, so a lookup whose blobs are gone is a
//! miss, never an error. [`Store::gc`] keeps every blob and snapshot a
//! record names ([`CacheIndexRoots`]) until [`StoreCacheIndex::prune`] drops
//! the record.
//!
//! `importing.rs` holds [`ImportingCacheIndex`], this index with the caches
//! `--cache-from` imported behind it, whose hits' blobs are fetched lazily.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rbuild_solver::explain::StepFingerprint;
use rbuild_solver::scheduler::{CacheIndex, KeyParts};
use rbuild_solver::{CacheKey, Digest};

use super::{BuildError, BuiltLayer, StepOutput, cache_mount};
use rbuild_oci::time;
use rbuild_store::{GcRoots, GcStats, LayerInfo, Store};

mod importing;

pub use importing::{ImportingCacheIndex, LazyFetchError};

/// Version of the record format; part of the directory name.
pub const CACHE_INDEX_VERSION: u32 = 1;

fn index_dir(store_dir: &Path) -> PathBuf {
    store_dir.join(format!("cache-v{CACHE_INDEX_VERSION}"))
}

fn keys_dir(store_dir: &Path) -> PathBuf {
    index_dir(store_dir).join("keys")
}

/// One layer of a record (also the layer format of exported caches,
/// `cache_transfer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordLayer {
    pub(crate) digest: String,
    pub(crate) diff_id: String,
    pub(crate) size: u64,
    pub(crate) media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created: Option<String>,
}

/// One cache-index record (read and written by `cache_transfer` too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) key: String,
    pub(crate) description: String,
    /// Seconds since the epoch.
    pub(crate) created: i64,
    pub(crate) last_used: i64,
    /// Bytes of the blobs the step added.
    pub(crate) size: u64,
    /// The result's layers, bottom first.
    pub(crate) layers: Vec<RecordLayer>,
    /// How many of the top layers the step added.
    pub(crate) added: usize,
    pub(crate) parts: StepFingerprint,
}

impl Record {
    pub(crate) fn output(&self) -> Option<StepOutput> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Some(BuiltLayer {
                    info: LayerInfo {
                        digest: l.digest.parse().ok()?,
                        diff_id: l.diff_id.parse().ok()?,
                        size: l.size,
                        media_type: l.media_type.clone(),
                    },
                    created: l.created.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        (self.added <= layers.len()).then_some(StepOutput {
            layers,
            added: self.added,
        })
    }

    /// Whether an image is made of the step's result: its layers start
    /// with the record's whole layer chain. Then a default `cache prune`
    /// keeps the record. BuildKit calls a record whose chain is an
    /// image's "shared", and keeps the records under it as its parents;
    /// here each step's record is looked up by its own key, so every
    /// prefix counts. One layer in common is not enough: the empty layer
    /// of a WORKDIR, or a COPY of the same files, is the same blob on any
    /// parent, and an old build's record of it would keep that build's
    /// whole chain alive.
    fn shares_with(&self, images: &ImageLayers) -> bool {
        images
            .chains
            .contains(&chain_key(self.layers.iter().map(|l| l.digest.as_str())))
    }

    /// How `usage` and `prune` list this record (`None` for a key that is
    /// not a digest).
    fn info(&self, shared: bool) -> Option<CacheRecordInfo> {
        let key = self.key.parse::<Digest>().ok()?;
        Some(CacheRecordInfo {
            key: CacheKey::from_digest(key),
            description: self.description.clone(),
            size: self.size,
            created: self.created,
            last_used: self.last_used,
            shared,
        })
    }
}

/// A layer chain as text: its blob digests, bottom first.
fn chain_key<'a>(digests: impl Iterator<Item = &'a str>) -> String {
    digests.collect::<Vec<_>>().join(",")
}

/// What the images in the store use: their blobs, and every prefix of
/// their layer lists as a chain ([`chain_key`]).
struct ImageLayers {
    blobs: BTreeSet<String>,
    chains: std::collections::HashSet<String>,
}

/// A one-line description of a step from its key's fields (the cache
/// index is not told the step's display text): e.g. `exec: sh -c make`.
fn describe(parts: &KeyParts) -> String {
    let field = |tag: &str| -> Vec<&str> {
        parts
            .fields
            .iter()
            .filter(|f| f.tag == tag)
            .map(|f| f.value.as_str())
            .collect()
    };
    let kind = field("kind").first().copied().unwrap_or("step").to_string();
    let detail = match kind.as_str() {
        "exec" => field("args").get(1..).map(|a| a.join(" ")),
        "image" => field("digest").first().map(|d| d.to_string()),
        "copy" => field("dest").first().map(|d| format!("to {d}")),
        "mkdir" => field("path").first().map(|d| d.to_string()),
        _ => None,
    };
    match detail {
        Some(d) if !d.is_empty() => format!("{kind}: {d}"),
        _ => kind,
    }
}

/// The cache index of a store; implements the solver's [`CacheIndex`].
pub struct StoreCacheIndex<'a> {
    store: &'a Store,
}

/// One record, as `rbuild cache du` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecordInfo {
    pub key: CacheKey,
    pub description: String,
    /// Bytes of the blobs the step added.
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    pub last_used: i64,
    /// An image in the store is made of the step's result (its layers
    /// start with the record's whole chain): `cache prune` keeps the
    /// record (only `-a` removes it), and removing it frees none of the
    /// image's layers.
    pub shared: bool,
}

/// `rbuild cache du`. Blob figures count each blob once however many
/// records name it, and only blobs present in the store (an imported
/// record's layers may not have been fetched).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Least recently used first.
    pub records: Vec<CacheRecordInfo>,
    /// Bytes of the distinct blobs the records name.
    pub total: u64,
    /// Of `total`, bytes an image in the store uses too (no prune frees
    /// them).
    pub shared: u64,
    /// Of `total`, bytes `cache prune` (no flags) frees: blobs neither an
    /// image nor a record that prune keeps (one sharing a layer with an
    /// image) still names.
    pub reclaimable: u64,
    /// Bytes in cache mounts (`RUN --mount=type=cache`); only
    /// `cache prune -a` removes them.
    pub cache_mounts: u64,
}

/// `rbuild cache prune`, following `docker builder prune`.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Every record (and cache mounts), not only those whose layers no
    /// image uses.
    pub all: bool,
    /// Remove least recently used records only until the records take at
    /// most this many bytes (`--keep-storage`).
    pub keep_storage: Option<u64>,
    /// Only records not used for at least this long (`--filter until=`).
    pub until: Option<Duration>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub records_removed: u64,
    /// The records removed, as [`StoreCacheIndex::usage`] lists them.
    pub removed: Vec<CacheRecordInfo>,
    pub cache_mounts_removed: u64,
    /// The store's garbage collection that followed.
    pub gc: GcStats,
    /// Bytes freed on disk: blobs, cache mounts and the removed records
    /// themselves.
    pub bytes_reclaimed: u64,
}

impl<'a> StoreCacheIndex<'a> {
    pub fn new(store: &'a Store) -> StoreCacheIndex<'a> {
        StoreCacheIndex { store }
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        keys_dir(self.store.dir()).join(format!("{}.json", key.digest().hex()))
    }

    fn read(&self, path: &Path) -> Result<Option<Record>, BuildError> {
        // Written by this process, held back until its layers' blobs are
        // (see `write`), or on disk.
        let bytes = match self.store.pending_file(path) {
            Some(bytes) => bytes,
            None => match fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BuildError::io(path)(e)),
            },
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    fn write(&self, path: &Path, record: &Record) -> Result<(), BuildError> {
        let dir = path.parent().expect("records live in a directory");
        fs::create_dir_all(dir).map_err(BuildError::io(dir))?;
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        // Atomic (a reader sees the old record or the new one) but not
        // fsynced: a build writes one record per step, and two fsyncs per
        // step (file, directory) were on every step's critical path, tens
        // of ms each on a disk busy with other writes. What a power loss can
        // do to an unsynced record is empty or drop it, and either is a
        // miss (`read`: a record that does not parse is `None`; `system
        // check` reports it). The blobs a record names were made durable
        // before it was written, so a record that survives is never ahead
        // of its layers: a record of a RUN step whose blob is still being
        // written in the background waits for it (in memory, where this
        // process's lookups find it).
        let blobs: Vec<Digest> = record
            .layers
            .iter()
            .filter_map(|l| l.digest.parse().ok())
            .collect();
        self.store
            .replace_file_after_blobs(path, bytes, &blobs)
            .map_err(BuildError::from)
    }

    /// The record of `key`, if any (unreadable ones are `None`).
    pub(crate) fn read_record(&self, key: &CacheKey) -> Result<Option<Record>, BuildError> {
        self.read(&self.record_path(key))
    }

    /// Writes `record` under its key (cache import).
    pub(crate) fn write_record(&self, key: &CacheKey, record: &Record) -> Result<(), BuildError> {
        self.write(&self.record_path(key), record)
    }

    fn all_records(&self) -> Result<Vec<(PathBuf, Record)>, BuildError> {
        read_records(self.store.dir())
    }

    /// Every record with its size and use, and the totals.
    ///
    /// `reclaimable` follows what [`StoreCacheIndex::prune`] with default
    /// options does: it keeps records that share a layer with an image,
    /// and the store's gc keeps every blob an image or a kept record
    /// names (all of a record's layers, not only those it added).
    pub fn usage(&self) -> Result<CacheUsage, BuildError> {
        let images = self.image_layers()?;
        let image_blobs = &images.blobs;
        let all = self.all_records()?;
        let mut records: Vec<CacheRecordInfo> = Vec::new();
        // Every present blob a record names, once, with its size.
        let mut blobs: BTreeMap<&str, u64> = BTreeMap::new();
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        for (_, r) in &all {
            let shared = r.shares_with(&images);
            for l in &r.layers {
                if !blobs.contains_key(l.digest.as_str())
                    && l.digest
                        .parse::<Digest>()
                        .is_ok_and(|d| self.store.has_blob(&d))
                {
                    blobs.insert(&l.digest, l.size);
                }
                if shared {
                    kept.insert(&l.digest);
                }
            }
            if let Some(info) = r.info(shared) {
                records.push(info);
            }
        }
        records.sort_by_key(|r| (r.last_used, r.key));
        let sum = |f: &dyn Fn(&str) -> bool| -> u64 {
            blobs.iter().filter(|(d, _)| f(d)).map(|(_, s)| s).sum()
        };
        Ok(CacheUsage {
            records,
            total: sum(&|_| true),
            shared: sum(&|d| image_blobs.contains(d)),
            reclaimable: sum(&|d| !image_blobs.contains(d) && !kept.contains(d)),
            cache_mounts: cache_mount::usage(self.store.dir()),
        })
    }

    /// Removes records as `opts` says (cache mounts too with `all`), then
    /// collects the store's garbage. Must not run while a worker on the
    /// same `Store` is alive (it holds a write session gc waits for).
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, BuildError> {
        let images = self.image_layers()?;
        let now = time::now_secs();
        let mut records = self.all_records()?;
        records.sort_by_key(|(_, r)| r.last_used);
        // How many kept records name each blob, anywhere in their chain:
        // gc keeps every layer of a kept record, so a blob is freed (and
        // stops counting towards --keep-storage) only when the last
        // record naming it is gone, and never while an image uses it.
        let mut refs: std::collections::HashMap<&str, (usize, u64)> =
            std::collections::HashMap::new();
        for (_, r) in &records {
            for l in &r.layers {
                if !images.blobs.contains(&l.digest) {
                    refs.entry(l.digest.as_str()).or_insert((0, l.size)).0 += 1;
                }
            }
        }
        let mut stored: u64 = refs.values().map(|(_, size)| size).sum();
        let mut report = PruneReport::default();
        for (path, r) in &records {
            if opts.keep_storage.is_some_and(|keep| stored <= keep) {
                break;
            }
            let shared = r.shares_with(&images);
            let old_enough = opts
                .until
                .is_none_or(|u| now.saturating_sub(r.last_used) >= u.as_secs() as i64);
            if (shared && !opts.all) || !old_enough {
                continue;
            }
            let record_bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(path).map_err(BuildError::io(path))?;
            report.bytes_reclaimed += record_bytes;
            report.removed.extend(r.info(shared));
            for l in &r.layers {
                if let Some((count, size)) = refs.get_mut(l.digest.as_str()) {
                    *count -= 1;
                    if *count == 0 {
                        stored = stored.saturating_sub(*size);
                    }
                }
            }
            report.records_removed += 1;
        }
        if opts.all && opts.keep_storage.is_none() && opts.until.is_none() {
            let (count, bytes) = cache_mount::prune(self.store)?;
            report.cache_mounts_removed = count;
            report.bytes_reclaimed += bytes;
        }
        report.gc = self.store.gc(&CacheIndexRoots)?;
        report.bytes_reclaimed += report.gc.bytes_freed;
        Ok(report)
    }

    /// The blobs and layer chains images in the store use.
    fn image_layers(&self) -> Result<ImageLayers, BuildError> {
        let mut images = ImageLayers {
            blobs: BTreeSet::new(),
            chains: std::collections::HashSet::new(),
        };
        for image in self.store.scan_images()?.images {
            let digests: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
            for n in 1..=digests.len() {
                images
                    .chains
                    .insert(chain_key(digests[..n].iter().map(String::as_str)));
            }
            images.blobs.extend(digests);
        }
        Ok(images)
    }
}

impl CacheIndex<StepOutput, BuildError> for StoreCacheIndex<'_> {
    fn lookup(&self, key: &CacheKey) -> Result<Option<StepOutput>, BuildError> {
        let path = self.record_path(key);
        let Some(record) = self.read(&path)? else {
            return Ok(None);
        };
        let Some(output) = record.output() else {
            return Ok(None);
        };
        if !output
            .layers
            .iter()
            .all(|l| self.store.has_blob(&l.info.digest))
        {
            return Ok(None);
        }
        // The last use is the file's mtime (newer than `last_used` once
        // hit): one timestamp update instead of rewriting and syncing the
        // record on every hit. It only orders pruning, so a failed update
        // must not fail a build.
        let _ = fs::File::open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(output))
    }

    fn record(
        &self,
        key: &CacheKey,
        parts: &KeyParts,
        result: &StepOutput,
    ) -> Result<(), BuildError> {
        let now = time::now_secs();
        let record = Record {
            key: key.to_string(),
            description: describe(parts),
            created: now,
            last_used: now,
            size: result.added_size(),
            layers: result
                .layers
                .iter()
                .map(|l| RecordLayer {
                    digest: l.info.digest.to_string(),
                    diff_id: l.info.diff_id.to_string(),
                    size: l.info.size,
                    media_type: l.info.media_type.clone(),
                    created: l.created.clone(),
                })
                .collect(),
            added: result.added,
            parts: StepFingerprint::new(key, parts, Default::default()),
        };
        self.write(&self.record_path(key), &record)
    }
}

/// One damaged cache-index record [`check_records`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRecord {
    /// The record file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Finds cache-index records that cannot serve a build: files that do not
/// parse, and records naming a layer blob the store lacks (a build would
/// miss on them anyway). With `repair`, removes them (their steps run
/// again next time). For `system check`.
pub fn check_records(store: &Store, repair: bool) -> Result<Vec<DamagedRecord>, BuildError> {
    let dir = keys_dir(store.dir());
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BuildError::io(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BuildError::io(&dir))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BuildError::io(&path)(e)),
        };
        let reason = match serde_json::from_slice::<Record>(&bytes) {
            Err(e) => Some(format!("does not parse: {e}")),
            Ok(r) => r
                .layers
                .iter()
                .find(|l| {
                    l.digest
                        .parse::<rbuild_oci::Digest>()
                        .map_or(true, |d| !store.has_blob(&d))
                })
                .map(|l| format!("names layer {} which the store lacks", l.digest)),
        };
        if let Some(reason) = reason {
            if repair {
                fs::remove_file(&path).map_err(BuildError::io(&path))?;
            }
            out.push(DamagedRecord { path, reason });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn read_records(store_dir: &Path) -> Result<Vec<(PathBuf, Record)>, BuildError> {
    let dir = keys_dir(store_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BuildError::io(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BuildError::io(&dir))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        // A damaged record is skipped (a miss), never fatal; one that
        // cannot be read is an error (gc must not free what it names).
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BuildError::io(&path)(e)),
        };
        if let Ok(mut r) = serde_json::from_slice::<Record>(&bytes) {
            // Hits touch the file rather than rewrite it (see `lookup`).
            if let Some(touched) = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            {
                r.last_used = r.last_used.max(touched.as_secs() as i64);
            }
            out.push((path, r));
        }
    }
    Ok(out)
}

/// The cache index as [`Store::gc`]'s roots: every layer a record names
/// stays until `cache prune` removes the record. An unreadable keys
/// directory or record file is an error (gc then removes nothing); a
/// record that does not parse is a miss for lookups, and keeps nothing.
pub struct CacheIndexRoots;

impl GcRoots for CacheIndexRoots {
    fn live_layers(
        &self,
        store: &Store,
    ) -> Result<Vec<LayerInfo>, Box<dyn std::error::Error + Send + Sync>> {
        let mut out: BTreeMap<Digest, LayerInfo> = BTreeMap::new();
        for (_, r) in read_records(store.dir())? {
            if let Some(o) = r.output() {
                for l in o.layers {
                    out.insert(l.info.digest, l.info);
                }
            }
        }
        Ok(out.into_values().collect())
    }
}
