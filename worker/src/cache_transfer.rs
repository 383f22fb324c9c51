//! Cache export and import (`--cache-to` / `--cache-from`): cache-index
//! records, the layer blobs they name and optionally the contents of cache
//! mounts, moved between machines as an OCI image layout.
//!
//! Cache keys never depend on the machine (see `rbuild_solver::cache_key`),
//! so records transfer as they are: a fresh store that imports another
//! machine's records hits them for the same Dockerfile and context.
//!
//! # The exported cache (format version 1)
//!
//! An OCI image layout directory:
//!
//! ```text
//! oci-layout
//! index.json          one manifest, tagged "cache" (org.opencontainers.image.ref.name)
//! blobs/sha256/…      the manifest, the cache config, layer blobs, cache-mount tars
//! ```
//!
//! The manifest is artifact-style: `config.mediaType` is
//! [`MEDIA_TYPE_CACHE_CONFIG`] (`application/vnd.rbuild.cache.config.v1+json`)
//! and `layers` lists every blob the cache holds: the record layers with
//! their own media types, then one gzip'd tar per cache mount
//! ([`MEDIA_TYPE_CACHE_MOUNT`]) annotated with the mount's id, uid, gid and
//! mode ([`ANNOTATION_MOUNT_ID`]…). The config is JSON:
//!
//! ```json
//! { "version": 1,
//!   "records": [ { "key": "sha256:…", "description": "exec: make",
//!                  "created": 1700000000,
//!                  "layers": [ { "digest": "sha256:…", "diff_id": "sha256:…",
//!                                "size": 1234, "media_type": "application/vnd.oci.image.layer.v1.tar",
//!                                "created": "2024-…Z" } ],
//!                  "added": 1,
//!                  "parts": { …what the key was made of, for explanations… } } ] }
//! ```
//!
//! `layers` is the step's whole result, bottom first (base image layers
//! included), `added` how many of the top ones the step made. A reader
//! refuses another `version`.
//!
//! # Inline cache
//!
//! `--cache-to type=inline` puts the same config object (records only, no
//! mounts) into the built image's config JSON under the top-level field
//! [`INLINE_CACHE_FIELD`] (`dev.rbuild.cache.v1`), as BuildKit does with
//! `moby.buildkit.cache.v0`. Its records name only the image's own layers,
//! so the image carries every blob they need.
//!
//! # Import
//!
//! [`ImportingCacheIndex`] wraps the store's cache index: a key missing
//! locally is looked up in the imported records, and a hit returns its
//! result at once, without fetching anything. The record's blobs the
//! store lacks are fetched (each verified against its digest, each once
//! even when several steps ask, several in parallel) only when something
//! needs them: a step that executes reads its inputs' snapshots, a `COPY
//! --from` or `RUN --mount=from=` reads a stage's files, the image is
//! written, or `--cache-to` exports the record (the worker and the CLI
//! call [`BlobFetcher::ensure`] / [`ImportingCacheIndex::fetch_records`]).
//! So a build downloads only the layers the final image and its executed
//! steps use: a stage read only through a bind mount by a cached step is
//! never downloaded. The hit's record is written to the local index once
//! its blobs are all in the store, and never otherwise, so the local
//! index never names a blob the store lacks.
//!
//! A blob that fails verification then fails the build
//! ([`LazyFetchError`], naming the cache, the blob and the step): the hit
//! was already taken, and the steps built on it cannot be undone. Nothing
//! of the blob enters the store; building again without that
//! `--cache-from` works.
//!
//! Cache mounts are restored into `cache-mounts/` by
//! [`ImportedCache::restore_mounts`] when the build starts, for each id whose
//! local directory is absent or empty (a local cache mount is never
//! overwritten).
//!
//! # Transports
//!
//! [`CacheTransport`] moves a layout: [`LocalDirTransport`] is
//! `type=local`; [`RegistryTransport`](super::cache_registry::RegistryTransport)
//! is `type=registry`: it pushes the layout's blobs and manifest and reads
//! blobs lazily through [`BlobSource`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use rbuild_solver::graph::{BuildGraph, StepId};
use rbuild_solver::op::{ExecMountKind, Op};
use rbuild_solver::scheduler::{CacheIndex, KeyParts};
use rbuild_solver::{CacheKey, Digest};

use super::cache_index::{Record, RecordLayer, StoreCacheIndex};
use super::{BlobFetcher, BuildError, StepOutput, cache_mount, fsutil::ScratchDir, time};
use rbuild_store::layer::{self, HashingReader, HashingWriter, LayerError, PackOptions};
use rbuild_store::layout::{
    ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, OCI_LAYOUT, canonical_json,
};
use rbuild_store::{Descriptor, FileLock, Image, Index, LockMode, Manifest, Store, StoreError};

/// Version of the exported cache config; also in its media type.
pub const CACHE_FORMAT_VERSION: u32 = 1;
/// `config.mediaType` of an exported cache's manifest.
pub const MEDIA_TYPE_CACHE_CONFIG: &str = "application/vnd.rbuild.cache.config.v1+json";
/// A cache mount's contents: a gzip'd tar of the directory.
pub const MEDIA_TYPE_CACHE_MOUNT: &str = "application/vnd.rbuild.cache.mount.v1.tar+gzip";
/// Annotation naming a cache mount blob's id.
pub const ANNOTATION_MOUNT_ID: &str = "dev.rbuild.cache.mount.id";
/// Annotation: the cache mount directory's owner uid (decimal).
pub const ANNOTATION_MOUNT_UID: &str = "dev.rbuild.cache.mount.uid";
/// Annotation: the cache mount directory's owner gid (decimal).
pub const ANNOTATION_MOUNT_GID: &str = "dev.rbuild.cache.mount.gid";
/// Annotation: the cache mount directory's mode (octal, e.g. `0755`).
pub const ANNOTATION_MOUNT_MODE: &str = "dev.rbuild.cache.mount.mode";
/// The tag of the cache manifest in an exported layout's `index.json`.
pub const LAYOUT_TAG: &str = "cache";
/// Top-level field of an image config carrying an inline cache.
pub const INLINE_CACHE_FIELD: &str = "dev.rbuild.cache.v1";

/// Exporting or importing a cache failed; names the path, digest or
/// cache involved.
#[derive(Debug, thiserror::Error)]
pub enum CacheTransferError {
    #[error("I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed {what} in {location}")]
    Json {
        what: &'static str,
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{location} is not an rbuild cache: {reason}")]
    NotACache { location: String, reason: String },
    #[error(
        "{location} holds cache format version {version}, this rbuild reads version {CACHE_FORMAT_VERSION}\nhint: export the cache again with this rbuild"
    )]
    Version { location: String, version: u32 },
    #[error("blob {digest} of the cache at {location} does not match its digest (got {actual})")]
    Mismatch {
        location: String,
        digest: Digest,
        actual: Digest,
    },
    #[error("packing cache mount {id:?} failed")]
    PackMount {
        id: String,
        #[source]
        source: LayerError,
    },
    #[error("restoring cache mount {id:?} failed")]
    RestoreMount {
        id: String,
        #[source]
        source: LayerError,
    },
    #[error(
        "image {reference} carries no inline cache\nhint: build it with --cache-to type=inline"
    )]
    NoInlineCache { reference: String },
    #[error("invalid cache reference {reference:?}")]
    Reference {
        reference: String,
        #[source]
        source: Box<rbuild_oci::reference::ReferenceError>,
    },
    #[error("registry cache {reference}")]
    Registry {
        reference: String,
        #[source]
        source: Box<rbuild_registry::RegistryError>,
    },
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(transparent)]
    Build(Box<BuildError>),
}

impl From<StoreError> for CacheTransferError {
    fn from(e: StoreError) -> Self {
        CacheTransferError::Store(Box::new(e))
    }
}

impl From<BuildError> for CacheTransferError {
    fn from(e: BuildError) -> Self {
        CacheTransferError::Build(Box::new(e))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheTransferError + '_ {
    move |source| CacheTransferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The exported cache config (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheConfig {
    version: u32,
    records: Vec<ExportedRecord>,
}

/// A cache-index record as exported: the local record without its local
/// use times.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExportedRecord {
    key: String,
    description: String,
    created: i64,
    layers: Vec<RecordLayer>,
    added: usize,
    parts: rbuild_solver::explain::StepFingerprint,
}

impl ExportedRecord {
    fn from_local(r: Record) -> ExportedRecord {
        ExportedRecord {
            key: r.key,
            description: r.description,
            created: r.created,
            layers: r.layers,
            added: r.added,
            parts: r.parts,
        }
    }

    /// The record to write into the local index on an import hit.
    fn to_local(&self, output: &StepOutput) -> Record {
        let now = time::now_secs();
        Record {
            key: self.key.clone(),
            description: self.description.clone(),
            created: now,
            last_used: now,
            size: output.added_size(),
            layers: self.layers.clone(),
            added: self.added,
            parts: self.parts.clone(),
        }
    }

    fn output(&self) -> Option<StepOutput> {
        Record {
            key: self.key.clone(),
            description: String::new(),
            created: 0,
            last_used: 0,
            size: 0,
            layers: self.layers.clone(),
            added: self.added,
            parts: self.parts.clone(),
        }
        .output()
    }
}

/// How much of the build `--cache-to` exports, as BuildKit's `mode=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportMode {
    /// Only the steps whose results make up the final image
    /// ([`target_chain`]).
    #[default]
    Min,
    /// Every step the build used, executed or cached.
    Max,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub records: usize,
    /// Layer blobs (not counting the manifest, config and mount tars).
    pub layers: usize,
    pub mounts: usize,
    /// Bytes of every blob written.
    pub bytes: u64,
}

/// The steps whose results make up `target`'s filesystem: `target`, its
/// input 0, that one's input 0, … down to the base image (both inputs of
/// a merge, whose layers are all in the result). Steps read only for
/// their files (`COPY --from`, bind mounts) are not in it. `mode=min`
/// exports these.
pub fn target_chain(graph: &BuildGraph<Op>, target: StepId) -> Vec<StepId> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        out.push(id);
        let inputs = graph.inputs(id);
        match graph.op(id) {
            Op::Merge => todo.extend(inputs.iter().take(2).copied()),
            Op::Image(_) | Op::Scratch => {}
            _ => todo.extend(inputs.first().copied()),
        }
    }
    out
}

/// The ids of the cache mounts (`RUN --mount=type=cache`) of `steps`.
pub fn cache_mount_ids(graph: &BuildGraph<Op>, steps: &[StepId]) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for &id in steps {
        if let Op::Exec(e) = graph.op(id) {
            for m in &e.mounts {
                if let ExecMountKind::Cache { id, .. } = &m.kind {
                    ids.insert(id.clone());
                }
            }
        }
    }
    ids.into_iter().collect()
}

/// The store's records for `keys` (missing ones skipped), in key order.
fn local_records(store: &Store, keys: &[CacheKey]) -> Result<Vec<ExportedRecord>, BuildError> {
    let index = StoreCacheIndex::new(store);
    let keys: BTreeSet<CacheKey> = keys.iter().copied().collect();
    let mut out = Vec::new();
    for key in keys {
        if let Some(r) = index.read_record(&key)?
            && r.output().is_some()
        {
            out.push(ExportedRecord::from_local(r));
        }
    }
    Ok(out)
}

/// Writes the cache of `keys` (and with `mount_ids` those cache mounts)
/// as an OCI layout into `dir`, which must not exist yet. Every blob comes
/// from the store; a record whose blobs are gone is left out.
pub fn write_layout(
    store: &Store,
    keys: &[CacheKey],
    mount_ids: &[String],
    dir: &Path,
) -> Result<ExportSummary, CacheTransferError> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let mut summary = ExportSummary::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut written = BTreeSet::new();
    let mut records = Vec::new();
    for record in local_records(store, keys)? {
        let output = record.output().expect("filtered by local_records");
        if !output.layers.iter().all(|l| store.has_blob(&l.info.digest)) {
            continue;
        }
        for l in &output.layers {
            if !written.insert(l.info.digest) {
                continue;
            }
            let from = store.blob_path(&l.info.digest);
            let to = blobs.join(l.info.digest.hex());
            summary.bytes += fs::copy(&from, &to).map_err(io_err(&to))?;
            summary.layers += 1;
            layers.push(Descriptor {
                media_type: l.info.media_type.clone(),
                digest: l.info.digest.to_string(),
                size: l.info.size,
                annotations: BTreeMap::new(),
                platform: None,
            });
        }
        records.push(record);
    }
    summary.records = records.len();
    for id in mount_ids {
        if let Some(desc) = write_mount(store, id, &blobs)? {
            summary.bytes += desc.size;
            summary.mounts += 1;
            layers.push(desc);
        }
    }
    let config = canonical_json(&CacheConfig {
        version: CACHE_FORMAT_VERSION,
        records,
    });
    let config_desc = write_blob(&blobs, &config, MEDIA_TYPE_CACHE_CONFIG)?;
    let manifest = canonical_json(&Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
        config: config_desc,
        layers,
        annotations: BTreeMap::new(),
    });
    let mut manifest_desc = write_blob(&blobs, &manifest, MEDIA_TYPE_MANIFEST)?;
    summary.bytes += (config.len() + manifest.len()) as u64;
    manifest_desc
        .annotations
        .insert(ANNOTATION_REF_NAME.to_string(), LAYOUT_TAG.to_string());
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_INDEX.to_string()),
        manifests: vec![manifest_desc],
        annotations: BTreeMap::new(),
    };
    let layout = dir.join("oci-layout");
    fs::write(&layout, OCI_LAYOUT).map_err(io_err(&layout))?;
    let index_path = dir.join("index.json");
    fs::write(&index_path, canonical_json(&index)).map_err(io_err(&index_path))?;
    Ok(summary)
}

fn write_blob(
    blobs: &Path,
    data: &[u8],
    media_type: &str,
) -> Result<Descriptor, CacheTransferError> {
    let digest = Digest::of(data);
    let path = blobs.join(digest.hex());
    fs::write(&path, data).map_err(io_err(&path))?;
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: data.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// Packs cache mount `id` into a gzip'd tar blob in `blobs`; `None` when
/// the store has no such cache mount.
fn write_mount(
    store: &Store,
    id: &str,
    blobs: &Path,
) -> Result<Option<Descriptor>, CacheTransferError> {
    let root = cache_mount::root(store.dir());
    let name = Digest::of(id.as_bytes()).hex();
    let dir = root.join(&name);
    if !dir.is_dir() {
        return Ok(None);
    }
    // Shared: concurrent shared users may keep writing (as they may while
    // any build reads the mount); locked and private users are excluded.
    let _lock = FileLock::acquire(&root.join(format!("{name}.lock")), LockMode::Shared)?;
    let meta = fs::metadata(&dir).map_err(io_err(&dir))?;
    let tmp = blobs.join(format!(".mount-{name}"));
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut hashing = HashingWriter::new(io::BufWriter::new(file));
    {
        let mut gz = flate2::write::GzEncoder::new(&mut hashing, flate2::Compression::fast());
        layer::pack_dir(&dir, &mut gz, &PackOptions::default()).map_err(|source| {
            CacheTransferError::PackMount {
                id: id.to_string(),
                source,
            }
        })?;
        gz.finish().map_err(io_err(&tmp))?;
    }
    hashing.flush().map_err(io_err(&tmp))?;
    let (digest, size) = hashing.finish();
    let dest = blobs.join(digest.hex());
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    let annotations = BTreeMap::from([
        (ANNOTATION_MOUNT_ID.to_string(), id.to_string()),
        (ANNOTATION_MOUNT_UID.to_string(), meta.uid().to_string()),
        (ANNOTATION_MOUNT_GID.to_string(), meta.gid().to_string()),
        (
            ANNOTATION_MOUNT_MODE.to_string(),
            format!("{:04o}", meta.permissions().mode() & 0o7777),
        ),
    ]);
    Ok(Some(Descriptor {
        media_type: MEDIA_TYPE_CACHE_MOUNT.to_string(),
        digest: digest.to_string(),
        size,
        annotations,
        platform: None,
    }))
}

/// The inline cache of `keys` (see the module docs): the value to put in
/// the image config under [`INLINE_CACHE_FIELD`]. Only records whose
/// layers are all among `image_layers` (the image's blob digests) are
/// kept, so the image carries everything the cache needs.
pub fn inline_cache(
    store: &Store,
    keys: &[CacheKey],
    image_layers: &[Digest],
) -> Result<serde_json::Value, CacheTransferError> {
    let records = local_records(store, keys)?
        .into_iter()
        .filter(|r| {
            r.output().is_some_and(|o| {
                o.layers
                    .iter()
                    .all(|l| image_layers.contains(&l.info.digest))
            })
        })
        .collect();
    Ok(serde_json::to_value(CacheConfig {
        version: CACHE_FORMAT_VERSION,
        records,
    })
    .expect("cache configs serialize"))
}

/// Reads blobs of an imported cache by digest. Implementations need not
/// verify: the importer checks every blob against its digest.
pub trait BlobSource: Send + Sync {
    /// Opens blob `digest` for reading.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError>;
    /// Where the blobs come from, for messages (a path or reference).
    fn location(&self) -> String;
}

/// A published cache: its manifest and its blobs.
pub trait CacheSource: BlobSource {
    /// The bytes of the cache's manifest (an OCI image manifest whose
    /// config is [`MEDIA_TYPE_CACHE_CONFIG`]).
    fn manifest(&self) -> Result<Vec<u8>, CacheTransferError>;
}

/// Moves an exported cache to where `--cache-to` says and opens the one
/// `--cache-from` names. `type=local` is [`LocalDirTransport`]; a registry
/// client implements it for `type=registry,ref=…`.
pub trait CacheTransport: Sync {
    /// Publishes the layout at `dir` (made by [`write_layout`], which this
    /// may consume) under `reference`, replacing what was there.
    fn push_layout(&self, dir: &Path, reference: &str) -> Result<(), CacheTransferError>;
    /// Opens the cache published under `reference`. Blobs should be
    /// fetched lazily, when [`BlobSource::open_blob`] asks for them.
    fn pull_layout(&self, reference: &str) -> Result<Box<dyn CacheSource>, CacheTransferError>;
    /// Where [`export`] writes the layout before pushing it.
    fn staging_dir(&self, store: &Store, reference: &str) -> PathBuf {
        let _ = reference;
        store
            .tmp_dir()
            .join(format!("cache-export-{}", time::unique()))
    }
}

/// `type=local`: the reference is a directory path.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalDirTransport;

impl CacheTransport for LocalDirTransport {
    /// Replaces the directory `reference` with `dir` at once (an exchange
    /// rename when it exists, so a reader sees the old or the new cache).
    fn push_layout(&self, dir: &Path, reference: &str) -> Result<(), CacheTransferError> {
        let dest = Path::new(reference);
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if fs::symlink_metadata(dest).is_ok() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                dir,
                rustix::fs::CWD,
                dest,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| io_err(dest)(e.into()))?;
            // `dir` now holds the old cache.
            fs::remove_dir_all(dir).map_err(io_err(dir))?;
        } else {
            fs::rename(dir, dest).map_err(io_err(dest))?;
        }
        Ok(())
    }

    fn pull_layout(&self, reference: &str) -> Result<Box<dyn CacheSource>, CacheTransferError> {
        Ok(Box::new(LayoutSource {
            dir: PathBuf::from(reference),
        }))
    }

    /// Next to the destination, so publishing is a rename.
    fn staging_dir(&self, _store: &Store, reference: &str) -> PathBuf {
        self.staging_dir_for(reference)
    }
}

impl LocalDirTransport {
    /// A fresh directory name beside `reference` (same filesystem).
    fn staging_dir_for(&self, reference: &str) -> PathBuf {
        let dest = Path::new(reference);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cache".to_string());
        dest.with_file_name(format!(
            ".{name}.rbuild-tmp-{}-{}",
            std::process::id(),
            time::unique()
        ))
    }
}

/// Exports the cache of `keys` (and the cache mounts `mount_ids`) through
/// `transport` to `reference`: writes the layout in the transport's
/// staging directory, then publishes it. Nothing is left half-written.
pub fn export(
    store: &Store,
    keys: &[CacheKey],
    mount_ids: &[String],
    transport: &dyn CacheTransport,
    reference: &str,
) -> Result<ExportSummary, CacheTransferError> {
    let staging = transport.staging_dir(store, reference);
    let result = write_layout(store, keys, mount_ids, &staging)
        .and_then(|summary| transport.push_layout(&staging, reference).map(|()| summary));
    if staging.exists() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// An OCI layout directory as a [`CacheSource`].
#[derive(Debug, Clone)]
pub struct LayoutSource {
    pub dir: PathBuf,
}

impl BlobSource for LayoutSource {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        let f = fs::File::open(&path).map_err(io_err(&path))?;
        Ok(Box::new(io::BufReader::new(f)))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

impl CacheSource for LayoutSource {
    fn manifest(&self) -> Result<Vec<u8>, CacheTransferError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|source| CacheTransferError::Json {
                what: "index.json",
                location: self.location(),
                source,
            })?;
        // The one tagged `cache`, else the only manifest.
        let desc = index
            .manifests
            .iter()
            .find(|d| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(LAYOUT_TAG)
            })
            .or_else(|| (index.manifests.len() == 1).then(|| &index.manifests[0]))
            .ok_or_else(|| CacheTransferError::NotACache {
                location: self.location(),
                reason: format!("index.json has no manifest tagged {LAYOUT_TAG:?}"),
            })?;
        let digest = parse_digest(&desc.digest, &self.location())?;
        read_verified(self, &digest)
    }
}

/// The store's own blobs (an inline cache's layers are the image's).
struct StoreBlobs {
    dir: PathBuf,
}

impl BlobSource for StoreBlobs {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        let f = fs::File::open(&path).map_err(io_err(&path))?;
        Ok(Box::new(f))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

fn parse_digest(text: &str, location: &str) -> Result<Digest, CacheTransferError> {
    text.parse().map_err(|_| CacheTransferError::NotACache {
        location: location.to_string(),
        reason: format!("invalid digest {text:?}"),
    })
}

/// Reads a whole (small) blob and checks its digest.
fn read_verified(source: &dyn BlobSource, digest: &Digest) -> Result<Vec<u8>, CacheTransferError> {
    let mut bytes = Vec::new();
    source
        .open_blob(digest)?
        .read_to_end(&mut bytes)
        .map_err(io_err(Path::new(&source.location())))?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(CacheTransferError::Mismatch {
            location: source.location(),
            digest: *digest,
            actual,
        });
    }
    Ok(bytes)
}

/// A cache mount carried by an imported cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedMount {
    pub id: String,
    pub digest: Digest,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// An imported cache: its records by key, its cache mounts, and where
/// their blobs are read from (lazily).
pub struct ImportedCache {
    records: BTreeMap<CacheKey, ExportedRecord>,
    mounts: Vec<ImportedMount>,
    blobs: Box<dyn BlobSource>,
}

impl std::fmt::Debug for ImportedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCache")
            .field("location", &self.blobs.location())
            .field("records", &self.records.len())
            .field("mounts", &self.mounts)
            .finish()
    }
}

impl ImportedCache {
    /// Reads an exported cache's manifest and config (verified against
    /// their digests); blobs are read later, when a hit needs them.
    pub fn open(source: Box<dyn CacheSource>) -> Result<ImportedCache, CacheTransferError> {
        let location = source.location();
        let bytes = source.manifest()?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| CacheTransferError::Json {
                what: "cache manifest",
                location: location.clone(),
                source,
            })?;
        if manifest.config.media_type != MEDIA_TYPE_CACHE_CONFIG {
            return Err(CacheTransferError::NotACache {
                location,
                reason: format!(
                    "its config media type is {:?}, not {MEDIA_TYPE_CACHE_CONFIG:?}",
                    manifest.config.media_type
                ),
            });
        }
        let config_digest = parse_digest(&manifest.config.digest, &location)?;
        let config = read_verified(&*source, &config_digest)?;
        let config = parse_config(&config, &location)?;
        let mut mounts = Vec::new();
        for l in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == MEDIA_TYPE_CACHE_MOUNT)
        {
            let ann = |k: &str| l.annotations.get(k).map(String::as_str);
            let Some(id) = ann(ANNOTATION_MOUNT_ID) else {
                continue;
            };
            mounts.push(ImportedMount {
                id: id.to_string(),
                digest: parse_digest(&l.digest, &location)?,
                uid: ann(ANNOTATION_MOUNT_UID)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                gid: ann(ANNOTATION_MOUNT_GID)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                mode: ann(ANNOTATION_MOUNT_MODE)
                    .and_then(|v| u32::from_str_radix(v, 8).ok())
                    .unwrap_or(0o755),
            });
        }
        Ok(ImportedCache {
            records: config,
            mounts,
            blobs: source,
        })
    }

    /// The inline cache of an image in `store` (`--cache-from IMAGE`).
    pub fn from_image(store: &Store, image: &Image) -> Result<ImportedCache, CacheTransferError> {
        let reference = image
            .tags
            .first()
            .map(|t| t.to_string())
            .unwrap_or_else(|| image.id.to_string());
        let config = store.read_blob(&image.id)?;
        let value: serde_json::Value =
            serde_json::from_slice(&config).map_err(|source| CacheTransferError::Json {
                what: "image config",
                location: reference.clone(),
                source,
            })?;
        let inline =
            value
                .get(INLINE_CACHE_FIELD)
                .ok_or_else(|| CacheTransferError::NoInlineCache {
                    reference: reference.clone(),
                })?;
        let records = parse_config(inline.to_string().as_bytes(), &reference)?;
        Ok(ImportedCache {
            records,
            mounts: Vec::new(),
            blobs: Box::new(StoreBlobs {
                dir: store.dir().to_path_buf(),
            }),
        })
    }

    /// How many records the cache holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the cache holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The cache mounts it carries.
    pub fn mounts(&self) -> &[ImportedMount] {
        &self.mounts
    }

    /// Where it was read from.
    pub fn location(&self) -> String {
        self.blobs.location()
    }

    /// Restores each cache mount whose directory in `store` is absent or
    /// empty (and not in use); returns the ids restored. A blob that fails
    /// verification restores nothing and is an error.
    pub fn restore_mounts(&self, store: &Store) -> Result<Vec<String>, CacheTransferError> {
        let root = cache_mount::root(store.dir());
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let mut restored = Vec::new();
        for m in &self.mounts {
            let name = Digest::of(m.id.as_bytes()).hex();
            let Some(_lock) =
                FileLock::try_acquire(&root.join(format!("{name}.lock")), LockMode::Exclusive)?
            else {
                continue;
            };
            let dir = root.join(&name);
            let empty = match fs::read_dir(&dir) {
                Ok(mut d) => d.next().is_none(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            if !empty {
                continue;
            }
            self.restore_mount(store, m, &dir)?;
            restored.push(m.id.clone());
        }
        Ok(restored)
    }

    fn restore_mount(
        &self,
        store: &Store,
        m: &ImportedMount,
        dir: &Path,
    ) -> Result<(), CacheTransferError> {
        let scratch = ScratchDir::new(store, "cache-import")?;
        let tmp = scratch.path().join("dir");
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let mut hashing = HashingReader::new(self.blobs.open_blob(&m.digest)?);
        {
            let mut gz = flate2::read::GzDecoder::new(&mut hashing);
            layer::unpack(&mut gz, &tmp).map_err(|source| CacheTransferError::RestoreMount {
                id: m.id.clone(),
                source,
            })?;
        }
        // The digest covers the whole blob, trailing bytes included.
        io::copy(&mut hashing, &mut io::sink())
            .map_err(io_err(Path::new(&self.blobs.location())))?;
        let (actual, _) = hashing.finish();
        if actual != m.digest {
            return Err(CacheTransferError::Mismatch {
                location: self.blobs.location(),
                digest: m.digest,
                actual,
            });
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(m.mode)).map_err(io_err(&tmp))?;
        std::os::unix::fs::chown(&tmp, Some(m.uid), Some(m.gid)).map_err(io_err(&tmp))?;
        if dir.exists() {
            // Empty (checked under the lock).
            fs::remove_dir(dir).map_err(io_err(dir))?;
        }
        fs::rename(&tmp, dir).map_err(io_err(dir))
    }
}

fn parse_config(
    bytes: &[u8],
    location: &str,
) -> Result<BTreeMap<CacheKey, ExportedRecord>, CacheTransferError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let json = |source| CacheTransferError::Json {
        what: "cache config",
        location: location.to_string(),
        source,
    };
    let v: Versioned = serde_json::from_slice(bytes).map_err(json)?;
    if v.version != CACHE_FORMAT_VERSION {
        return Err(CacheTransferError::Version {
            location: location.to_string(),
            version: v.version,
        });
    }
    let config: CacheConfig = serde_json::from_slice(bytes).map_err(json)?;
    Ok(config
        .records
        .into_iter()
        .filter_map(|r| {
            let key = CacheKey::from_digest(r.key.parse().ok()?);
            Some((key, r))
        })
        .collect())
}

/// Fetching a blob of an imported cache hit failed when something first
/// needed it (a step reading the hit's files, the image being written, a
/// `--cache-to` export). By then the hit was taken, so the build fails;
/// nothing of the blob stays in the store.
#[derive(Debug, thiserror::Error)]
#[error("fetching blob {digest} of the cached step {step:?} from the cache at {location} failed")]
pub struct LazyFetchError {
    /// The cache the blob comes from (a directory or a reference).
    pub location: String,
    pub digest: Digest,
    /// The key of the imported record that named the blob.
    pub key: CacheKey,
    /// The record's description (e.g. `exec: sh -c make`).
    pub step: String,
    #[source]
    pub source: Arc<CacheTransferError>,
}

/// Most blobs of imported hits fetched at once.
const FETCH_JOBS: usize = 4;

/// A blob that an imported hit names and the store lacked at lookup.
#[derive(Debug, Clone, Copy)]
struct LazyBlob {
    /// Index into `ImportingCacheIndex::imports`.
    import: usize,
    /// The first hit that named it (for messages).
    key: CacheKey,
}

/// What the importing index keeps between a hit and the fetch of its
/// blobs (under one lock, with a condition variable for waiters).
#[derive(Default)]
struct LazyState {
    /// Blobs hits named that are not fetched yet.
    lazy: BTreeMap<Digest, LazyBlob>,
    /// Blobs being fetched right now (by some thread).
    fetching: BTreeSet<Digest>,
    /// Blobs whose fetch failed; asking again fails the same way.
    failed: BTreeMap<Digest, Arc<CacheTransferError>>,
    /// Imported hits not yet in the local cache index: a record is written
    /// only once every blob it names is in the store.
    pending: BTreeMap<CacheKey, (Record, Vec<Digest>)>,
}

/// The store's cache index, falling back to imported caches on a miss
/// (see the module docs). Implements the solver's [`CacheIndex`] and the
/// worker's [`BlobFetcher`]: an imported hit returns its result at once,
/// and its blobs are fetched when first needed ([`BlobFetcher::ensure`],
/// [`ImportingCacheIndex::fetch_records`]), each once, in parallel.
pub struct ImportingCacheIndex<'a> {
    store: &'a Store,
    local: StoreCacheIndex<'a>,
    imports: Vec<ImportedCache>,
    hits: Mutex<BTreeSet<CacheKey>>,
    state: Mutex<LazyState>,
    fetched: Condvar,
}

impl<'a> ImportingCacheIndex<'a> {
    /// The cache index of `store`, with `imports` consulted in order.
    pub fn new(store: &'a Store, imports: Vec<ImportedCache>) -> ImportingCacheIndex<'a> {
        ImportingCacheIndex {
            store,
            local: StoreCacheIndex::new(store),
            imports,
            hits: Mutex::new(BTreeSet::new()),
            state: Mutex::new(LazyState::default()),
            fetched: Condvar::new(),
        }
    }

    /// Keys whose results came from an imported cache in this build.
    pub fn imported_hits(&self) -> BTreeSet<CacheKey> {
        self.hits.lock().expect("hits lock").clone()
    }

    /// Blobs that imported hits named and that were not fetched (nothing
    /// needed them), sorted.
    pub fn unfetched(&self) -> Vec<Digest> {
        let st = self.state.lock().expect("lazy state lock");
        st.lazy.keys().copied().collect()
    }

    /// Fetches the blobs of the imported hits among `keys` (for a
    /// `--cache-to` export, which copies blobs from the store), so their
    /// records are written to the local cache index.
    pub fn fetch_records(&self, keys: &[CacheKey]) -> Result<(), BuildError> {
        let digests: Vec<Digest> = {
            let st = self.state.lock().expect("lazy state lock");
            keys.iter()
                .filter_map(|k| st.pending.get(k))
                .flat_map(|(_, d)| d.iter().copied())
                .collect()
        };
        self.ensure_digests(&digests)
    }

    /// Takes an imported hit: its record is written locally now when the
    /// store holds every blob it names, else once they are fetched.
    fn adopt(
        &self,
        import: usize,
        key: &CacheKey,
        record: &ExportedRecord,
    ) -> Result<Option<StepOutput>, BuildError> {
        let Some(output) = record.output() else {
            return Ok(None);
        };
        let local = record.to_local(&output);
        let mut st = self.state.lock().expect("lazy state lock");
        let digests: Vec<Digest> = output.layers.iter().map(|l| l.info.digest).collect();
        let mut missing = false;
        for d in &digests {
            if st.lazy.contains_key(d) || !self.store.has_blob(d) {
                missing = true;
                st.lazy.entry(*d).or_insert(LazyBlob { import, key: *key });
            }
        }
        if missing {
            st.pending.insert(*key, (local, digests));
        } else {
            drop(st);
            self.local.write_record(key, &local)?;
        }
        Ok(Some(output))
    }

    /// Fetches `digests` that hits named and the store lacks (each once,
    /// even when several threads ask), then writes the records whose
    /// blobs are all in the store.
    fn ensure_digests(&self, digests: &[Digest]) -> Result<(), BuildError> {
        // Fetched blobs are named by no record until the pending ones are
        // written below: a concurrent gc must wait.
        let _session = self.store.write_session()?;
        let mut mine = Vec::new();
        {
            let mut st = self.state.lock().expect("lazy state lock");
            for d in digests {
                if st.fetching.contains(d) || st.failed.contains_key(d) || mine.contains(d) {
                    continue;
                }
                if st.lazy.contains_key(d) {
                    if self.store.has_blob(d) {
                        // Another process stored it meanwhile.
                        st.lazy.remove(d);
                    } else {
                        st.fetching.insert(*d);
                        mine.push(*d);
                    }
                }
            }
        }
        let results = self.fetch_all(&mine);
        let mut st = self.state.lock().expect("lazy state lock");
        for (d, result) in mine.iter().zip(results) {
            st.fetching.remove(d);
            match result {
                Ok(()) => {
                    st.lazy.remove(d);
                }
                Err(e) => {
                    st.failed.insert(*d, Arc::new(e));
                }
            }
        }
        self.fetched.notify_all();
        // Others' fetches of what this caller needs.
        while digests.iter().any(|d| st.fetching.contains(d)) {
            st = self.fetched.wait(st).expect("lazy state lock");
        }
        if let Some((d, e)) = digests
            .iter()
            .find_map(|d| st.failed.get(d).map(|e| (*d, e.clone())))
        {
            let blob = st.lazy.get(&d).copied();
            return Err(self.fetch_error(d, blob, e));
        }
        let ready: Vec<CacheKey> = st
            .pending
            .iter()
            .filter(|(_, (_, ds))| ds.iter().all(|d| !st.lazy.contains_key(d)))
            .map(|(k, _)| *k)
            .collect();
        let records: Vec<(CacheKey, Record)> = ready
            .into_iter()
            .filter_map(|k| st.pending.remove(&k).map(|(r, _)| (k, r)))
            .collect();
        drop(st);
        for (key, record) in records {
            self.local.write_record(&key, &record)?;
        }
        Ok(())
    }

    /// Fetches `digests` into the store, up to [`FETCH_JOBS`] at once;
    /// one result per digest, in order.
    fn fetch_all(&self, digests: &[Digest]) -> Vec<Result<(), CacheTransferError>> {
        if digests.len() <= 1 {
            return digests.iter().map(|d| self.fetch(d)).collect();
        }
        let mut out = Vec::with_capacity(digests.len());
        for chunk in digests.chunks(FETCH_JOBS) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|d| s.spawn(move || self.fetch(d)))
                    .collect();
                for h in handles {
                    out.push(h.join().expect("a blob fetch panicked"));
                }
            });
        }
        out
    }

    /// Copies one blob from the import that named it into the store,
    /// verified against its digest (a mismatch leaves nothing behind).
    fn fetch(&self, digest: &Digest) -> Result<(), CacheTransferError> {
        let blob = self
            .state
            .lock()
            .expect("lazy state lock")
            .lazy
            .get(digest)
            .copied()
            .expect("only blobs hits named are fetched");
        let import = &self.imports[blob.import];
        let mut reader = import.blobs.open_blob(digest)?;
        // The caller's error names the blob and the cache already.
        self.store.put_blob(&mut reader, Some(*digest))?;
        Ok(())
    }

    fn fetch_error(
        &self,
        digest: Digest,
        blob: Option<LazyBlob>,
        source: Arc<CacheTransferError>,
    ) -> BuildError {
        let (location, key, step) = match blob {
            Some(b) => {
                let import = &self.imports[b.import];
                let step = import
                    .records
                    .get(&b.key)
                    .map(|r| r.description.clone())
                    .unwrap_or_default();
                (import.location(), b.key, step)
            }
            None => (String::new(), CacheKey::from_digest(digest), String::new()),
        };
        BuildError::CacheFetch(Box::new(LazyFetchError {
            location,
            digest,
            key,
            step,
            source,
        }))
    }
}

impl BlobFetcher for ImportingCacheIndex<'_> {
    fn ensure(&self, digests: &[Digest]) -> Result<(), BuildError> {
        self.ensure_digests(digests)
    }
}

impl CacheIndex<StepOutput, BuildError> for ImportingCacheIndex<'_> {
    fn lookup(&self, key: &CacheKey) -> Result<Option<StepOutput>, BuildError> {
        if let Some(output) = self.local.lookup(key)? {
            return Ok(Some(output));
        }
        for (n, import) in self.imports.iter().enumerate() {
            let Some(record) = import.records.get(key) else {
                continue;
            };
            if let Some(output) = self.adopt(n, key, record)? {
                self.hits.lock().expect("hits lock").insert(*key);
                return Ok(Some(output));
            }
        }
        Ok(None)
    }

    fn record(
        &self,
        key: &CacheKey,
        parts: &KeyParts,
        result: &StepOutput,
    ) -> Result<(), BuildError> {
        self.local.record(key, parts, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blobs by digest, counting reads; `slow` makes each read wait so
    /// concurrent callers overlap.
    struct CountingSource {
        blobs: BTreeMap<Digest, Vec<u8>>,
        reads: Mutex<Vec<Digest>>,
        slow: bool,
    }

    impl BlobSource for Arc<CountingSource> {
        fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
            self.reads.lock().unwrap().push(*digest);
            if self.slow {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(Box::new(io::Cursor::new(self.blobs[digest].clone())))
        }

        fn location(&self) -> String {
            "/the/cache".to_string()
        }
    }

    fn record(key: CacheKey, layers: &[(Digest, u64)]) -> ExportedRecord {
        ExportedRecord {
            key: key.to_string(),
            description: "exec: make".to_string(),
            created: 0,
            layers: layers
                .iter()
                .map(|(d, size)| RecordLayer {
                    digest: d.to_string(),
                    diff_id: d.to_string(),
                    size: *size,
                    media_type: rbuild_store::layout::MEDIA_TYPE_LAYER_TAR.to_string(),
                    created: None,
                })
                .collect(),
            added: 1,
            parts: rbuild_solver::explain::StepFingerprint {
                key: key.to_string(),
                fields: Vec::new(),
                inputs: Vec::new(),
                content: None,
                files: Vec::new(),
            },
        }
    }

    /// A store, and an import whose one record (`key`) names two blobs;
    /// with `corrupt`, the second one's bytes do not match its digest.
    fn lazy_fixture(
        corrupt: bool,
    ) -> (
        tempfile::TempDir,
        Store,
        Arc<CountingSource>,
        CacheKey,
        [Digest; 2],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("root")).unwrap();
        let (one, two) = (b"layer one".to_vec(), b"layer two".to_vec());
        let digests = [Digest::of(&one), Digest::of(&two)];
        let two = if corrupt { b"layer 2!!".to_vec() } else { two };
        let source = Arc::new(CountingSource {
            blobs: BTreeMap::from([(digests[0], one), (digests[1], two)]),
            reads: Mutex::new(Vec::new()),
            slow: true,
        });
        let key = CacheKey::from_digest(Digest::of(b"key"));
        (tmp, store, source, key, digests)
    }

    fn importing<'a>(
        store: &'a Store,
        source: &Arc<CountingSource>,
        key: CacheKey,
        digests: &[Digest; 2],
    ) -> ImportingCacheIndex<'a> {
        let imported = ImportedCache {
            records: BTreeMap::from([(key, record(key, &[(digests[0], 9), (digests[1], 9)]))]),
            mounts: Vec::new(),
            blobs: Box::new(source.clone()),
        };
        ImportingCacheIndex::new(store, vec![imported])
    }

    #[test]
    fn an_imported_hit_fetches_nothing_until_asked_then_each_blob_once() {
        let (_tmp, store, source, key, digests) = lazy_fixture(false);
        let index = importing(&store, &source, key, &digests);
        let output = index.lookup(&key).unwrap().expect("an imported hit");
        assert_eq!(output.layers.len(), 2);
        assert!(source.reads.lock().unwrap().is_empty(), "nothing fetched");
        assert!(!digests.iter().any(|d| store.has_blob(d)));
        assert!(
            StoreCacheIndex::new(&store).lookup(&key).unwrap().is_none(),
            "no local record names blobs the store lacks"
        );
        let mut sorted = digests.to_vec();
        sorted.sort();
        assert_eq!(index.unfetched(), sorted);

        // Two callers at once: each blob is read once.
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| index.ensure(&digests).unwrap());
            }
        });
        let mut reads = source.reads.lock().unwrap().clone();
        reads.sort();
        assert_eq!(reads, sorted, "each blob read once");
        assert!(digests.iter().all(|d| store.has_blob(d)));
        assert!(index.unfetched().is_empty());
        assert_eq!(
            StoreCacheIndex::new(&store).lookup(&key).unwrap(),
            Some(output),
            "the record is local once its blobs are"
        );
    }

    #[test]
    fn a_blob_that_fails_verification_fails_every_caller_and_stores_nothing() {
        let (_tmp, store, source, key, digests) = lazy_fixture(true);
        let index = importing(&store, &source, key, &digests);
        index.lookup(&key).unwrap().expect("an imported hit");
        for _ in 0..2 {
            let err = index.fetch_records(&[key]).unwrap_err();
            let BuildError::CacheFetch(e) = &err else {
                panic!("{err}");
            };
            assert_eq!(e.digest, digests[1]);
            assert_eq!(e.location, "/the/cache");
            assert_eq!(e.step, "exec: make");
            assert!(
                matches!(&*e.source, CacheTransferError::Store(s)
                    if matches!(**s, StoreError::DigestMismatch { .. })),
                "{err}"
            );
        }
        assert_eq!(
            source.reads.lock().unwrap().len(),
            2,
            "one read per blob, the failure is remembered"
        );
        assert!(store.has_blob(&digests[0]) && !store.has_blob(&digests[1]));
        assert!(StoreCacheIndex::new(&store).lookup(&key).unwrap().is_none());
    }

    #[test]
    fn another_format_version_is_refused_by_name() {
        let err = parse_config(br#"{"version":2,"records":[]}"#, "/c").unwrap_err();
        assert!(
            matches!(err, CacheTransferError::Version { version: 2, .. }),
            "{err}"
        );
        let ok = parse_config(br#"{"version":1,"records":[]}"#, "/c").unwrap();
        assert!(ok.is_empty());
    }

    #[test]
    fn publishing_a_local_cache_replaces_the_old_one_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("cache");
        let dest_s = dest.to_str().unwrap();
        for content in ["old", "new"] {
            let staging = LocalDirTransport.staging_dir_for(dest_s);
            fs::create_dir_all(&staging).unwrap();
            fs::write(staging.join("index.json"), content).unwrap();
            LocalDirTransport.push_layout(&staging, dest_s).unwrap();
            assert!(!staging.exists(), "the staging dir is gone");
        }
        assert_eq!(fs::read_to_string(dest.join("index.json")).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "nothing left beside the cache");
    }

    #[test]
    fn a_layout_that_is_not_a_cache_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = tmp.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let config = write_blob(&blobs, b"{}", "application/vnd.oci.image.config.v1+json").unwrap();
        let manifest = canonical_json(&Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            config,
            layers: Vec::new(),
            annotations: BTreeMap::new(),
        });
        let desc = write_blob(&blobs, &manifest, MEDIA_TYPE_MANIFEST).unwrap();
        let index = Index {
            manifests: vec![desc],
            ..Index::default()
        };
        fs::write(tmp.path().join("index.json"), canonical_json(&index)).unwrap();
        let source = LocalDirTransport
            .pull_layout(tmp.path().to_str().unwrap())
            .unwrap();
        let err = ImportedCache::open(source).unwrap_err();
        assert!(err.to_string().contains("is not an rbuild cache"), "{err}");
    }
}
