//! The image store: an OCI image layout under the root, unpacked layer
//! snapshots, atomic writes, locking.
//!
//! Layout (versioned so a future format can live beside this one):
//!
//! ```text
//! <root>/store-v1/
//!   oci-layout                 {"imageLayoutVersion":"1.0.0"}
//!   index.json                 one entry per (manifest, tag); the tag is the
//!                              full normalized reference in the
//!                              org.opencontainers.image.ref.name annotation;
//!                              an entry without it is a dangling image
//!   blobs/sha256/<hex>         manifests, configs, layers (content-addressed)
//!   snapshots/<diffID hex>/    unpacked layers, made lazily, all-or-nothing
//!   leases/<manifest hex>.lock shared-locked by processes using an image
//!   locks/{index,gc,tmp}.lock  flock files
//!   tmp/<session>/             per-process scratch, swept when its owner died
//! ```
//!
//! A layer is named twice: by its blob digest (what is stored, possibly
//! compressed; the manifest records its media type) and by its diffID (the
//! sha256 of the uncompressed tar; snapshots are keyed by it). Keeping the two
//! apart is what lets a compressed variant of a layer be stored next to the
//! uncompressed one later without touching snapshots.
//!
//! Concurrency: `index.json` is only rewritten under the exclusive index
//! lock (read-modify-write). Writers (imports, loads, snapshots) hold the gc
//! lock shared for the whole sequence from first blob to index update (a
//! [`WriteSession`]); garbage collection holds it exclusive, so it never
//! deletes a blob that is about to be referenced. Processes using an image
//! hold an [`ImageLease`]; `rmi`/`prune` skip leased images and gc keeps
//! everything they reach.

#![forbid(unsafe_code)]

pub mod archive;
pub mod atomic;
pub mod layer;
pub mod layout;
mod lock;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use oci_spec::image::ImageConfiguration;
use rbuild_oci::Digest;

use crate::layer::{HashingReader, LayerError};
use rbuild_oci::reference::{ImageRef, ReferenceError};

pub use atomic::BlobWriter;
pub use layout::{Descriptor, Index, LayerEncoding, Manifest};
pub use lock::{FileLock, LockMode};

use layout::{ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, canonical_json};

/// The on-disk format version; the store lives in `<root>/store-v{VERSION}`.
pub const STORE_VERSION: u32 = 1;

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

/// A store operation failed; names the path, digest or reference involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read what the build cache index keeps; nothing was collected")]
    GcRoots {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed JSON in {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is missing from the store\nhint: run `rbuild system check --repair`")]
    MissingBlob { digest: Digest },
    #[error("{what} names an invalid digest {text:?}")]
    BadDigest { what: String, text: String },
    #[error(
        "no such image: {reference}\nhint: `rbuild images` lists the images in this store; `rbuild import` or `rbuild load` adds one"
    )]
    NotFound { reference: String },
    #[error(
        "image ID prefix {prefix:?} is ambiguous: it matches {count} images\nhint: give more characters of the ID"
    )]
    Ambiguous { prefix: String, count: usize },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("image {manifest} is corrupt: {reason}\nhint: run `rbuild system check --repair`")]
    CorruptImage { manifest: Digest, reason: String },
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error(
        "the image config's rootfs.diff_ids ({declared}) do not match the {given} layers given"
    )]
    LayerMismatch { declared: usize, given: usize },
    #[error("layer {diff_id} is not part of any image in the store")]
    UnknownLayer { diff_id: Digest },
    #[error("unpacking layer {diff_id} failed")]
    Unpack {
        diff_id: Digest,
        #[source]
        source: LayerError,
    },
}

impl StoreError {
    /// A closure that wraps an `io::Error` with `path`.
    pub fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the stored blob (compressed or not).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Size of the stored blob in bytes.
    pub size: u64,
    /// The blob's media type, e.g. `application/vnd.oci.image.layer.v1.tar`.
    pub media_type: String,
}

/// An image in the store: its manifest, config, layers and tags.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image ID: the digest of its config blob (as Docker's).
    pub id: Digest,
    /// Digest of the manifest blob.
    pub manifest_digest: Digest,
    /// Size of the manifest blob.
    pub manifest_size: u64,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// Size of the config blob.
    pub config_size: u64,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// The tags naming this image (empty for a dangling image).
    pub tags: Vec<ImageRef>,
}

impl Image {
    /// Bytes of all layer blobs (what `docker images` shows as SIZE).
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The config's `created` timestamp (RFC 3339), if any.
    pub fn created(&self) -> Option<&str> {
        self.config.created().as_deref()
    }

    /// True when no tag names the image.
    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty()
    }
}

/// The result of [`Store::scan_images`].
#[derive(Debug, Default)]
pub struct ImageScan {
    /// Images that were read.
    pub images: Vec<Image>,
    /// Index entries that could not be read.
    pub broken: Vec<BrokenImage>,
}

/// An index entry whose manifest or config could not be read.
#[derive(Debug)]
pub struct BrokenImage {
    /// The manifest digest as the index names it.
    pub manifest: String,
    /// Its tags.
    pub tags: Vec<ImageRef>,
    /// Why it could not be read.
    pub error: StoreError,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    pub blobs_removed: u64,
    /// Bytes of the blobs and of the unpacked snapshots removed.
    pub bytes_freed: u64,
    pub snapshots_removed: u64,
}

/// One problem found by [`Store::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is damaged (a path, digest, or reference).
    pub subject: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of [`Store::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Blobs whose content was hashed.
    pub blobs_checked: u64,
    /// Index entries checked.
    pub images_checked: u64,
    /// Everything found broken.
    pub problems: Vec<Problem>,
    /// With repair: what was dropped.
    pub repaired: Vec<String>,
}

/// Bytes used by the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUsage {
    pub blobs: u64,
    pub blob_count: u64,
    pub snapshots: u64,
    pub snapshot_count: u64,
}

/// Proof that this process is using an image: while held, `rmi`/`prune` in
/// any process leave the image's blobs and snapshots alone.
#[derive(Debug)]
pub struct ImageLease {
    _lock: FileLock,
}

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

/// An opened store. Cheap to share by reference; all methods take `&self`.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    tmp: SessionTmp,
    writers: Mutex<(usize, Option<FileLock>)>,
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
struct SessionTmp {
    store_dir: PathBuf,
    path: PathBuf,
    /// Set once the session was made (the lock proving it is live) or
    /// making it failed (why, kept for every later caller).
    made: OnceLock<std::result::Result<FileLock, String>>,
}

impl SessionTmp {
    fn new(store_dir: &Path) -> SessionTmp {
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
    fn ensure(&self) -> Result<&Path> {
        let made = self.made.get_or_init(|| {
            Store::make_session_tmp(&self.store_dir, self).map_err(|e| error_chain(&e))
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
    /// Opens (creating when missing) the store under `root`. Creates
    /// nothing in an existing store: this process's scratch directory is
    /// made, and temporary files left by processes that died are swept, on
    /// the first use of [`Store::tmp_dir`] (or of a method writing through
    /// it).
    pub fn open(root: &Path) -> Result<Store> {
        let dir = root.join(format!("store-v{STORE_VERSION}"));
        for sub in ["blobs/sha256", "snapshots", "leases", "locks", "tmp"] {
            let p = dir.join(sub);
            // One syscall each in the common case of an existing store (a
            // non-directory in the way fails the first use, naming it).
            match fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => fs::create_dir_all(&p).map_err(StoreError::io(&p))?,
            }
        }
        let tmp = SessionTmp::new(&dir);
        let layout = dir.join("oci-layout");
        let index = dir.join("index.json");
        if !layout.exists() || !index.exists() {
            // Written through scratch space, which this makes: a
            // concurrent open's sweep never touches a live session's files.
            let tmp = tmp.ensure()?;
            let _l = FileLock::acquire(&dir.join("locks/index.lock"), LockMode::Exclusive)?;
            if !layout.exists() {
                atomic::write_file(tmp, &layout, layout::OCI_LAYOUT.as_bytes())?;
            }
            if !index.exists() {
                atomic::write_file(tmp, &index, &canonical_json(&Index::default()))?;
            }
        }
        Ok(Store {
            dir,
            tmp,
            writers: Mutex::new((0, None)),
        })
    }

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

    /// The versioned store directory (`<root>/store-v1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Where the snapshot of layer `diff_id` is (or would be).
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("snapshots").join(diff_id.hex())
    }

    /// This process's scratch directory inside the store (same
    /// filesystem), made on the first call; removed when the store is
    /// dropped (or, if the process dies, by the next process to make one).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Starts (or joins) a write session; see [`WriteSession`].
    pub fn write_session(&self) -> Result<WriteSession<'_>> {
        let mut state = self.writers.lock().expect("writers lock");
        if state.1.is_none() {
            state.1 = Some(FileLock::acquire(
                &self.dir.join("locks/gc.lock"),
                LockMode::Shared,
            )?);
        }
        state.0 += 1;
        Ok(WriteSession { store: self })
    }

    /// True when the blob exists.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: *digest }
            } else {
                StoreError::Io { path, source: e }
            }
        })
    }

    /// Reads a whole (small) blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut out)
            .map_err(StoreError::io(&path))?;
        Ok(out)
    }

    /// A writer for a new blob; call [`BlobWriter::commit`] to store it.
    /// Hold a [`WriteSession`] until the blob is referenced by the index.
    pub fn blob_writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        BlobWriter::new(&self.tmp, &self.blobs_dir(), expected)
    }

    /// Stores the bytes read from `input`, verifying them against `expected`
    /// when given. Returns the digest and size.
    pub fn put_blob(
        &self,
        input: &mut dyn Read,
        expected: Option<Digest>,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && let Ok(meta) = fs::metadata(self.blob_path(&d))
        {
            // Already stored (and verified when it was written).
            io::copy(input, &mut io::sink()).map_err(StoreError::io(&self.tmp))?;
            return Ok((d, meta.len()));
        }
        let _session = self.write_session()?;
        let mut w = self.blob_writer(expected)?;
        io::copy(input, &mut w).map_err(StoreError::io(&self.tmp))?;
        w.commit()
    }

    /// Stores `data` as a blob and returns its digest.
    pub fn put_blob_bytes(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if !self.has_blob(&digest) {
            self.put_blob(&mut &data[..], Some(digest))?;
        }
        Ok(digest)
    }

    /// Writes `config` (serialized canonically), a manifest over `layers`
    /// (whose blobs must already be stored) and points `tags` at it. Returns
    /// the image ID (the config digest).
    pub fn write_image(
        &self,
        config: &ImageConfiguration,
        layers: &[LayerInfo],
        tags: &[ImageRef],
    ) -> Result<Digest> {
        let bytes = canonical_json(config);
        Ok(self.write_image_raw(&bytes, layers, tags)?.id)
    }

    /// Like [`Store::write_image`] but keeps the config bytes exactly as
    /// given (loading an image must not change its ID).
    pub fn write_image_raw(
        &self,
        config: &[u8],
        layers: &[LayerInfo],
        tags: &[ImageRef],
    ) -> Result<Image> {
        let _session = self.write_session()?;
        for l in layers {
            if !self.has_blob(&l.digest) {
                return Err(StoreError::MissingBlob { digest: l.digest });
            }
        }
        // Refuse an image that could not be read back: the config must parse
        // and name exactly these layers' diffIDs, in order.
        let parsed: ImageConfiguration =
            serde_json::from_slice(config).map_err(|source| StoreError::Json {
                what: "image config".to_string(),
                source,
            })?;
        let declared = parsed.rootfs().diff_ids();
        let given: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        if *declared != given {
            return Err(StoreError::LayerMismatch {
                declared: declared.len(),
                given: given.len(),
            });
        }
        let config_digest = self.put_blob_bytes(config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            config: Descriptor {
                media_type: MEDIA_TYPE_CONFIG.to_string(),
                digest: config_digest.to_string(),
                size: config.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            },
            layers: layers
                .iter()
                .map(|l| Descriptor {
                    media_type: l.media_type.clone(),
                    digest: l.digest.to_string(),
                    size: l.size,
                    annotations: BTreeMap::new(),
                    platform: None,
                })
                .collect(),
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = canonical_json(&manifest);
        let manifest_digest = self.put_blob_bytes(&manifest_bytes)?;
        let desc = Descriptor {
            media_type: MEDIA_TYPE_MANIFEST.to_string(),
            digest: manifest_digest.to_string(),
            size: manifest_bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        };
        self.update_index(|index| {
            if tags.is_empty() {
                if !index.manifests.iter().any(|d| d.digest == desc.digest) {
                    index.manifests.push(desc.clone());
                }
            } else {
                for tag in tags {
                    set_tag(index, &desc, tag);
                }
            }
        })?;
        self.load_image(&desc, tags.to_vec())
    }

    /// Points `tag` at `image` (moving it from any other image). The index
    /// entry keeps the manifest's media type when the store already lists
    /// it (a pulled Docker v2 manifest stays one).
    pub fn tag(&self, image: &Image, tag: &ImageRef) -> Result<()> {
        let digest = image.manifest_digest.to_string();
        self.update_index(|index| {
            let media_type = index
                .manifests
                .iter()
                .find(|d| d.digest == digest)
                .map(|d| d.media_type.clone())
                .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string());
            let desc = Descriptor {
                media_type,
                digest: digest.clone(),
                size: image.manifest_size,
                annotations: BTreeMap::new(),
                platform: None,
            };
            set_tag(index, &desc, tag)
        })
    }

    /// Points `tag` at the manifest blob `digest` (already in the store),
    /// recording `media_type` in `index.json` so that a Docker v2 manifest
    /// pulled from a registry is not mislabelled as OCI (its bytes, and so
    /// its digest, are kept as pulled). Fails when the blob is missing.
    pub fn tag_manifest(
        &self,
        digest: &Digest,
        size: u64,
        media_type: &str,
        tag: &ImageRef,
    ) -> Result<()> {
        if !self.has_blob(digest) {
            return Err(StoreError::MissingBlob { digest: *digest });
        }
        let desc = Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        self.update_index(|index| set_tag(index, &desc, tag))
    }

    /// Removes `tag`. Returns the image it named and whether that image was
    /// removed from the index because no tag was left (its blobs go at the
    /// next [`Store::gc`]). `NotFound` when the tag does not exist.
    pub fn untag(&self, tag: &ImageRef) -> Result<(Image, bool)> {
        let image = self.resolve_ref(tag)?;
        let name = tag.to_string();
        let mut removed = false;
        self.update_index(|index| {
            index
                .manifests
                .retain(|d| d.annotations.get(ANNOTATION_REF_NAME) != Some(&name));
            removed = !index
                .manifests
                .iter()
                .any(|d| d.digest == image.manifest_digest.to_string());
        })?;
        Ok((image, removed))
    }

    /// Removes every index entry of `image` (all its tags). Its blobs go at
    /// the next [`Store::gc`] unless a lease or another image keeps them.
    pub fn remove(&self, image: &Image) -> Result<()> {
        let digest = image.manifest_digest.to_string();
        self.update_index(|index| index.manifests.retain(|d| d.digest != digest))
    }

    /// Read-modify-write of `index.json` under the exclusive index lock.
    fn update_index(&self, f: impl FnOnce(&mut Index)) -> Result<()> {
        let _l = FileLock::acquire(&self.dir.join("locks/index.lock"), LockMode::Exclusive)?;
        let before = self.read_index()?;
        let mut index = before.clone();
        f(&mut index);
        // Re-tagging an image with the tag it has (a cached rebuild) writes
        // nothing: no temp file, no sync, no rename.
        if index == before {
            return Ok(());
        }
        atomic::write_file(
            &self.tmp,
            &self.dir.join("index.json"),
            &canonical_json(&index),
        )
    }

    /// The current `index.json`.
    pub fn read_index(&self) -> Result<Index> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(StoreError::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })
    }

    /// Every image in the store (one per manifest), in index order. Fails
    /// on the first image that cannot be read; see [`Store::scan_images`]
    /// to list around damage.
    pub fn images(&self) -> Result<Vec<Image>> {
        let scan = self.scan_images()?;
        match scan.broken.into_iter().next() {
            Some(b) => Err(b.error),
            None => Ok(scan.images),
        }
    }

    /// Every readable image, plus the index entries that could not be read
    /// (missing or corrupt manifest or config), so one damaged image does
    /// not hide the others.
    pub fn scan_images(&self) -> Result<ImageScan> {
        let index = self.read_index()?;
        let mut order: Vec<Descriptor> = Vec::new();
        let mut tags: BTreeMap<String, Vec<ImageRef>> = BTreeMap::new();
        for d in &index.manifests {
            if !tags.contains_key(&d.digest) {
                order.push(d.clone());
                tags.insert(d.digest.clone(), Vec::new());
            }
            if let Some(name) = d.annotations.get(ANNOTATION_REF_NAME)
                && let Ok(r) = ImageRef::parse(name)
            {
                tags.get_mut(&d.digest).expect("inserted above").push(r);
            }
        }
        let mut scan = ImageScan::default();
        for d in order {
            let t = tags.remove(&d.digest).unwrap_or_default();
            match self.load_image(&d, t.clone()) {
                Ok(image) => scan.images.push(image),
                Err(error) => scan.broken.push(BrokenImage {
                    manifest: d.digest.clone(),
                    tags: t,
                    error,
                }),
            }
        }
        Ok(scan)
    }

    /// Reads a manifest and its config into an [`Image`].
    fn load_image(&self, desc: &Descriptor, tags: Vec<ImageRef>) -> Result<Image> {
        let manifest_digest = parse_digest(&desc.digest, "index.json")?;
        let corrupt = |reason: String| StoreError::CorruptImage {
            manifest: manifest_digest,
            reason,
        };
        let bytes = self.read_blob(&manifest_digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("manifest: {e}")))?;
        let config_digest = parse_digest(&manifest.config.digest, "manifest")?;
        let config_bytes = self.read_blob(&config_digest)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| corrupt(format!("config {config_digest}: {e}")))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers.len() {
            return Err(corrupt(format!(
                "{} layers in the manifest but {} diff_ids in the config",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let layers = manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(l, diff_id)| {
                Ok(LayerInfo {
                    digest: parse_digest(&l.digest, "manifest")?,
                    diff_id: parse_digest(diff_id, "config")?,
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Image {
            id: config_digest,
            manifest_digest,
            manifest_size: bytes.len() as u64,
            config_size: config_bytes.len() as u64,
            config,
            layers,
            tags,
        })
    }

    /// The image whose manifest is `digest`, read directly from its
    /// blobs (no index scan; its `tags` are left empty). `MissingBlob`
    /// when the manifest is not stored.
    pub fn image_by_manifest(&self, digest: &Digest) -> Result<Image> {
        let path = self.blob_path(digest);
        let size = fs::metadata(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    StoreError::MissingBlob { digest: *digest }
                } else {
                    StoreError::io(&path)(e)
                }
            })?
            .len();
        let desc = Descriptor {
            media_type: MEDIA_TYPE_MANIFEST.to_string(),
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        self.load_image(&desc, Vec::new())
    }

    /// Finds an image by what a user typed (`busybox`, `name:tag`,
    /// `name@sha256:…`, a full image ID `sha256:…`, or a unique ID prefix),
    /// by a parsed [`ImageRef`], or by an image ID [`Digest`].
    pub fn resolve<S: ImageSelector + ?Sized>(&self, what: &S) -> Result<Image> {
        match what.selector() {
            Selector::Text(text) => self.resolve_text(text),
            Selector::Ref(r) => self.resolve_ref(r),
            Selector::Id(id) => self.resolve_text(&id.to_string()),
        }
    }

    fn resolve_text(&self, text: &str) -> Result<Image> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        let is_hex = !hex_part.is_empty()
            && hex_part.len() <= 64
            && hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        // As docker: a name that is a tag wins over an ID prefix (`b` is
        // the image tagged `b`, even when another image's ID starts with
        // b); a full ID or `sha256:` is always an ID.
        if is_hex
            && !text.starts_with("sha256:")
            && hex_part.len() < 64
            && let Ok(r) = ImageRef::parse(text)
            && let Ok(image) = self.resolve_ref(&r)
        {
            return Ok(image);
        }
        if is_hex {
            let images = self.scan_images()?.images;
            let mut ids: Vec<&Image> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(hex_part))
                .collect();
            ids.dedup_by_key(|i| i.id);
            let distinct: BTreeSet<Digest> = ids.iter().map(|i| i.id).collect();
            match distinct.len() {
                1 => return Ok(ids[0].clone()),
                0 if text.starts_with("sha256:") || hex_part.len() == 64 => {
                    return Err(StoreError::NotFound {
                        reference: text.to_string(),
                    });
                }
                0 => {}
                count => {
                    return Err(StoreError::Ambiguous {
                        prefix: text.to_string(),
                        count,
                    });
                }
            }
        }
        let r = ImageRef::parse(text)?;
        self.resolve_ref(&r).map_err(|e| match e {
            StoreError::NotFound { .. } => StoreError::NotFound {
                reference: text.to_string(),
            },
            e => e,
        })
    }

    /// Finds the image a normalized reference names.
    pub fn resolve_ref(&self, r: &ImageRef) -> Result<Image> {
        if r.digest().is_none() {
            // By tag: one index read and the one image's blobs, not every
            // image in the store.
            let index = self.read_index()?;
            let name = r.to_string();
            let Some(desc) = index
                .manifests
                .iter()
                .find(|d| d.annotations.get(ANNOTATION_REF_NAME) == Some(&name))
            else {
                return Err(StoreError::NotFound {
                    reference: r.familiar(),
                });
            };
            let tags = index
                .manifests
                .iter()
                .filter(|d| d.digest == desc.digest)
                .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME))
                .filter_map(|n| ImageRef::parse(n).ok())
                .collect();
            return self.load_image(desc, tags);
        }
        let images = self.scan_images()?.images;
        let found = images.into_iter().find(|img| match (r.digest(), r.tag()) {
            (Some(d), _) => {
                img.manifest_digest == d
                    && img.tags.iter().any(|t| t.repository() == r.repository())
            }
            (None, _) => img.tags.iter().any(|t| t == r),
        });
        found.ok_or_else(|| StoreError::NotFound {
            reference: r.familiar(),
        })
    }

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

    /// Deletes blobs and snapshots that no index entry, no lease and no
    /// build cache-index record reaches.
    /// Waits for running write sessions of other processes to finish. Must
    /// not be called while this `Store` has a [`WriteSession`] open.
    ///
    /// `roots` names the layers kept beyond images and leases (the build
    /// cache index's records); when they cannot be read, nothing is removed.
    pub fn gc(&self, gc_roots: &dyn GcRoots) -> Result<GcStats> {
        let _gc = FileLock::acquire(&self.dir.join("locks/gc.lock"), LockMode::Exclusive)?;
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
        for (path, _lock) in &held {
            let _ = fs::remove_file(path);
        }
        drop(held);

        let mut keep_blobs = BTreeSet::new();
        let mut keep_snapshots = BTreeSet::new();
        for manifest in roots {
            keep_blobs.insert(manifest);
            let Ok(bytes) = self.read_blob(&manifest) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            if let Ok(c) = m.config.digest.parse::<Digest>() {
                keep_blobs.insert(c);
                if let Ok(cfg) = self.read_blob(&c).and_then(|b| {
                    serde_json::from_slice::<ImageConfiguration>(&b).map_err(|source| {
                        StoreError::Json {
                            what: c.to_string(),
                            source,
                        }
                    })
                }) {
                    for id in cfg.rootfs().diff_ids() {
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
        let mut stats = GcStats::default();
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

    /// Like [`Store::snapshot`] for a layer already looked up.
    pub fn snapshot_layer(&self, layer: &LayerInfo) -> Result<PathBuf> {
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
            crate::layer::unpack_with(&mut hashing, &work, &opts).map_err(|source| {
                StoreError::Unpack {
                    diff_id: layer.diff_id,
                    source,
                }
            })?;
            io::copy(&mut hashing, &mut io::sink())
                .map_err(StoreError::io(&self.blob_path(&layer.digest)))?;
            let actual = hashing.digest();
            if actual != layer.diff_id {
                return Err(StoreError::DigestMismatch {
                    expected: layer.diff_id,
                    actual,
                });
            }
            match fs::rename(&work, &dest) {
                Ok(()) => atomic::sync_dir(&self.dir.join("snapshots")),
                // Another process finished the same snapshot first.
                Err(_) if dest.is_dir() => Ok(()),
                Err(e) => Err(StoreError::io(&dest)(e)),
            }
        })();
        if work.exists() {
            let _ = fs::remove_dir_all(&work);
        }
        result.map(|()| dest)
    }

    /// The uncompressed tar stream of `layer`, decoding gzip or zstd as
    /// the blob's first bytes say (the media type must still be a layer
    /// type rbuild knows). The caller verifies the diffID if it needs to (see
    /// [`HashingReader`]).
    pub fn open_layer(&self, layer: &LayerInfo) -> Result<Box<dyn Read + Send>> {
        if LayerEncoding::from_media_type(&layer.media_type).is_none() {
            return Err(StoreError::UnsupportedMediaType {
                digest: layer.digest,
                media_type: layer.media_type.clone(),
            });
        }
        let path = self.blob_path(&layer.digest);
        let mut blob = io::BufReader::with_capacity(1 << 20, self.open_blob(&layer.digest)?);
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

    /// Verifies every blob against its digest and every reference from the
    /// index to manifests, configs and layers. With `repair`, drops broken
    /// blobs and the index entries that need them, then collects garbage.
    /// Also sweeps the scratch space of processes that died (which opening
    /// alone no longer does).
    ///
    /// A repair ends with [`Store::gc`] over `roots`.
    pub fn check(&self, repair: bool, roots: &dyn GcRoots) -> Result<CheckReport> {
        self.tmp.ensure()?;
        let mut report = CheckReport::default();
        let _gc = FileLock::acquire(&self.dir.join("locks/gc.lock"), LockMode::Exclusive)?;
        let blobs = self.blobs_dir();
        let mut good = BTreeSet::new();
        for entry in fs::read_dir(&blobs).map_err(StoreError::io(&blobs))? {
            let entry = entry.map_err(StoreError::io(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            report.blobs_checked += 1;
            let Ok(expected) = format!("sha256:{name}").parse::<Digest>() else {
                report.problems.push(Problem {
                    subject: entry.path().display().to_string(),
                    reason: "file name is not a sha256 digest".into(),
                });
                if repair {
                    fs::remove_file(entry.path()).map_err(StoreError::io(&entry.path()))?;
                    report
                        .repaired
                        .push(format!("removed {}", entry.path().display()));
                }
                continue;
            };
            let mut f = File::open(entry.path()).map_err(StoreError::io(&entry.path()))?;
            let mut h = HashingReader::new(&mut f);
            io::copy(&mut h, &mut io::sink()).map_err(StoreError::io(&entry.path()))?;
            let actual = h.digest();
            if actual == expected {
                good.insert(expected);
            } else {
                report.problems.push(Problem {
                    subject: format!("blob {expected}"),
                    reason: format!("content hashes to {actual}"),
                });
                if repair {
                    fs::remove_file(entry.path()).map_err(StoreError::io(&entry.path()))?;
                    report
                        .repaired
                        .push(format!("removed corrupt blob {expected}"));
                }
            }
        }

        let _il = FileLock::acquire(&self.dir.join("locks/index.lock"), LockMode::Exclusive)?;
        let index = match self.read_index() {
            Ok(i) => i,
            Err(e) => {
                report.problems.push(Problem {
                    subject: "index.json".into(),
                    reason: error_chain(&e),
                });
                if repair {
                    report
                        .repaired
                        .push("reset index.json to an empty index".into());
                    atomic::write_file(
                        &self.tmp,
                        &self.dir.join("index.json"),
                        &canonical_json(&Index::default()),
                    )?;
                }
                return Ok(report);
            }
        };
        let mut kept = Vec::new();
        let mut dropped = false;
        for desc in index.manifests {
            report.images_checked += 1;
            let name = desc
                .annotations
                .get(ANNOTATION_REF_NAME)
                .cloned()
                .unwrap_or_else(|| format!("<none> ({})", desc.digest));
            match self.check_manifest(&desc, &good) {
                Ok(()) => kept.push(desc),
                Err(reason) => {
                    report.problems.push(Problem {
                        subject: format!("image {name}"),
                        reason,
                    });
                    dropped = true;
                    if repair {
                        report.repaired.push(format!("dropped index entry {name}"));
                    }
                }
            }
        }
        if repair && dropped {
            let index = Index {
                manifests: kept,
                ..index_header(&self.read_index()?)
            };
            atomic::write_file(
                &self.tmp,
                &self.dir.join("index.json"),
                &canonical_json(&index),
            )?;
        }
        drop(_il);
        drop(_gc);
        if repair && !report.problems.is_empty() {
            self.gc(roots)?;
        }
        Ok(report)
    }

    /// Why an index entry is broken, if it is.
    fn check_manifest(
        &self,
        desc: &Descriptor,
        good: &BTreeSet<Digest>,
    ) -> std::result::Result<(), String> {
        let present = |d: &Digest, what: &str| {
            if good.contains(d) {
                Ok(())
            } else if self.has_blob(d) {
                Err(format!("{what} {d} is corrupt"))
            } else {
                Err(format!("{what} {d} is missing"))
            }
        };
        let md: Digest = desc
            .digest
            .parse()
            .map_err(|_| format!("invalid manifest digest {:?}", desc.digest))?;
        present(&md, "manifest")?;
        let image = self
            .load_image(desc, Vec::new())
            .map_err(|e| error_chain(&e))?;
        present(&image.id, "config")?;
        for l in &image.layers {
            present(&l.digest, "layer")?;
            if LayerEncoding::from_media_type(&l.media_type).is_none() {
                return Err(format!(
                    "layer {} has unsupported media type {:?}",
                    l.digest, l.media_type
                ));
            }
        }
        Ok(())
    }
}

/// What [`Store::resolve`] accepts: `str`/`String` (as typed by a user),
/// [`ImageRef`], or an image ID [`Digest`].
pub trait ImageSelector {
    /// How to look the image up.
    fn selector(&self) -> Selector<'_>;
}

/// One way of naming an image; see [`ImageSelector`].
#[derive(Debug, Clone, Copy)]
pub enum Selector<'a> {
    Text(&'a str),
    Ref(&'a ImageRef),
    Id(&'a Digest),
}

impl ImageSelector for str {
    fn selector(&self) -> Selector<'_> {
        Selector::Text(self)
    }
}

impl ImageSelector for String {
    fn selector(&self) -> Selector<'_> {
        Selector::Text(self)
    }
}

impl ImageSelector for ImageRef {
    fn selector(&self) -> Selector<'_> {
        Selector::Ref(self)
    }
}

impl ImageSelector for Digest {
    fn selector(&self) -> Selector<'_> {
        Selector::Id(self)
    }
}

/// The index's header fields with no manifests.
fn index_header(index: &Index) -> Index {
    Index {
        manifests: Vec::new(),
        ..index.clone()
    }
}

/// A layer blob's compression from its magic number (gzip `1f 8b`, zstd
/// `28 b5 2f fd`); anything else is read as a plain tar, whose first
/// bytes are a file name.
fn sniff_layer_encoding(head: &[u8]) -> LayerEncoding {
    if head.starts_with(&[0x1f, 0x8b]) {
        LayerEncoding::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        LayerEncoding::Zstd
    } else {
        LayerEncoding::Tar
    }
}

/// Points `tag` at `desc`; the image it named before stays as a dangling
/// entry when nothing else names it.
fn set_tag(index: &mut Index, desc: &Descriptor, tag: &ImageRef) {
    let name = tag.to_string();
    let mut previous = None;
    index.manifests.retain(|d| {
        if d.annotations.get(ANNOTATION_REF_NAME) == Some(&name) {
            previous = Some(d.clone());
            false
        } else {
            true
        }
    });
    // An untagged entry for this manifest is superseded by the tagged one.
    index
        .manifests
        .retain(|d| d.digest != desc.digest || d.annotations.contains_key(ANNOTATION_REF_NAME));
    if let Some(mut prev) = previous
        && prev.digest != desc.digest
        && !index.manifests.iter().any(|d| d.digest == prev.digest)
    {
        prev.annotations.remove(ANNOTATION_REF_NAME);
        index.manifests.push(prev);
    }
    let mut entry = desc.clone();
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.to_string(), name);
    index.manifests.push(entry);
}

fn parse_digest(text: &str, what: &str) -> Result<Digest> {
    text.parse().map_err(|_| StoreError::BadDigest {
        what: what.to_string(),
        text: text.to_string(),
    })
}

/// An error and its sources on one line.
/// `error: its source: …` on one line (the first line of the whole), for
/// messages kept or shown in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.lines().next().unwrap_or_default().to_string()
}

/// Bytes of regular files under `path` (not following symlinks).
pub fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0)
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
