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
//!
//! This file holds the [`Store`] type, its errors, the image and layer
//! types and opening; each job on the store is an `impl Store` in its own
//! module: `session` (scratch space, write sessions), `blobs`, `index`
//! (writing, tagging and reading images), `resolve` (finding an image by
//! name or ID), `lease`, `snapshot` (layer streams and unpacked layers),
//! `gc` (collection, disk usage, unreferenced blobs), `check` (verify and
//! repair) and `staging` (what `load` and `pull` receive, checked before
//! it enters `blobs/`).
//!
//! Integrity: small blobs are verified against their digest on every read
//! ([`Store::read_blob`]), layers whenever they are streamed
//! ([`Store::open_blob_verified`]); damage is named by the image as
//! `rbuild images` shows it.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod archive;
pub mod atomic;
pub mod layer;
pub mod layout;
mod lock;

mod blobs;
mod check;
mod deferred;
mod gc;
pub mod image_index;
mod index;
mod lease;
mod platform;
mod resolve;
mod session;
mod snapshot;
mod staging;
pub mod variants;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_oci::Digest;
use rbuild_oci::ImageConfig;

use crate::layer::LayerError;
use rbuild_oci::reference::{ImageRef, ReferenceError};

pub use atomic::BlobWriter;
pub use blobs::VerifiedBlob;
pub use check::{CheckReport, Problem};
pub use deferred::PackLayer;
pub use gc::{DiskUsage, GcRoots, GcStats, NoGcRoots, Unreferenced};
pub use image_index::ImageIndex;
pub use index::{BrokenImage, ImageScan};
pub use layout::{Descriptor, Index, LayerEncoding, Manifest};
pub use lease::ImageLease;
pub use lock::{FileLock, LockMode};
pub use platform::select_manifest;
pub use resolve::{ImageSelector, Selector};
pub use session::WriteSession;
pub use staging::{StagedLayerError, Staging};

use layout::canonical_json;
use session::SessionTmp;

/// The on-disk format version; the store lives in `<root>/store-v{VERSION}`.
pub const STORE_VERSION: u32 = 1;

/// A store operation failed; names the path, digest or reference involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read what the build cache index keeps; nothing was collected")]
    GcRoots {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "no space left on the device holding {path}\nhint: free space there (`rbuild image prune`, `rbuild cache prune`) and try again"
    )]
    DiskFull {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the input being stored (an archive, a download) failed.
    #[error("reading the input failed")]
    Input {
        #[source]
        source: io::Error,
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
    #[error(
        "blob {digest} is corrupt: its content hashes to {actual}\nhint: run `rbuild system check --repair`, then pull, load or build what needs it again"
    )]
    CorruptBlob { digest: Digest, actual: Digest },
    /// An image that cannot be used as stored; `image` is its name and ID
    /// as `rbuild images` shows them (or its manifest digest when even
    /// that cannot be read).
    #[error(
        "image {image} is corrupt: {reason}\nhint: run `rbuild system check --repair`, then pull, load or build it again"
    )]
    CorruptImage { image: String, reason: String },
    /// An image index without a manifest for the platform asked for.
    #[error(
        "no match for platform in manifest: {reference} has no image for {wanted} (it has {available})"
    )]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    /// A single-platform image asked for as another platform.
    #[error(
        "image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
    )]
    PlatformMismatch {
        reference: String,
        wanted: String,
        actual: String,
    },
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error(
        "the image config's rootfs.diff_ids ({declared}) do not match the {given} layers given"
    )]
    LayerMismatch { declared: usize, given: usize },
    #[error("layer {diff_id} is not part of any image in the store")]
    UnknownLayer { diff_id: Digest },
    /// Boxed: a second variant holding a `LayerError` inline would cost
    /// every `StoreError` (and the errors wrapping it) a tag word.
    #[error("compressing layer {diff_id} failed")]
    Compress {
        diff_id: Digest,
        #[source]
        source: Box<LayerError>,
    },
    /// Boxed, as `Compress` is.
    #[error("packing layer {diff_id} again to write its blob failed")]
    Pack {
        diff_id: Digest,
        #[source]
        source: Box<LayerError>,
    },
    /// The second pass over a layer's tree (see
    /// [`Store::write_layer_blob_deferred`]) wrote other bytes than the
    /// first, whose sha256 is the layer's diffID: the tree changed
    /// between the two, and no blob is stored.
    #[error(
        "layer {diff_id} packed to other bytes the second time: its snapshot changed after the step"
    )]
    Repacked { diff_id: Digest },
    /// A layer blob written in the background (see
    /// [`Store::write_layer_blob_deferred`]) could not be written.
    #[error("writing the blob of layer {digest} failed")]
    DeferredBlob {
        digest: Digest,
        #[source]
        source: std::sync::Arc<StoreError>,
    },
    #[error("unpacking layer {diff_id} failed")]
    Unpack {
        diff_id: Digest,
        #[source]
        source: LayerError,
    },
}

impl StoreError {
    /// A closure that wraps an `io::Error` with `path`.
    /// A full disk is [`StoreError::DiskFull`], so it is never mistaken
    /// for a problem with the input.
    pub fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| {
            if source.raw_os_error() == Some(libc::ENOSPC)
                || source.raw_os_error() == Some(libc::EDQUOT)
            {
                StoreError::DiskFull {
                    path: path.to_path_buf(),
                    source,
                }
            } else {
                StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
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
    /// The parsed config: rbuild's one config model, with Docker's fields
    /// (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`) and any field it
    /// does not model kept.
    pub config: ImageConfig,
    /// Size of the config blob.
    pub config_size: u64,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// The tags naming this image (empty for a dangling image).
    pub tags: Vec<ImageRef>,
    /// The image index (multi-platform image) this image was read
    /// through: the tags name the index, this is one platform of it.
    pub index: Option<ImageIndex>,
}

impl Image {
    /// Bytes of all layer blobs (what `docker images` shows as SIZE).
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The config's `created` timestamp (RFC 3339), if any.
    pub fn created(&self) -> Option<&str> {
        self.config.created.as_deref()
    }

    /// The digest `index.json` names this image by: its index's when it
    /// was read through one, else its manifest's.
    pub fn top_digest(&self) -> Digest {
        self.index
            .as_ref()
            .map_or(self.manifest_digest, |i| i.digest)
    }

    /// True when no tag names the image.
    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty()
    }
}

/// An opened store. Cheap to share by reference; all methods take `&self`.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    tmp: SessionTmp,
    writers: Mutex<(usize, Option<FileLock>)>,
    waits: WaitObserver,
    /// Snapshots this process adopted and has not published yet (see
    /// [`Store::adopt_snapshot`]): diffID → the tree in scratch space.
    unpublished: Mutex<std::collections::HashMap<Digest, PathBuf>>,
    /// Layer blobs being written in the background (see
    /// [`Store::write_layer_blob_deferred`]).
    deferred: deferred::Deferred,
}

impl Drop for Store {
    /// Publishes the snapshots this process adopted (before the scratch
    /// space they wait in is removed); a failure leaves them to be
    /// unpacked again from their blobs when next needed.
    fn drop(&mut self) {
        let _ = self.publish_snapshots();
    }
}

/// A lock another process holds, which this one waits for (see
/// [`Store::on_wait`]).
#[derive(Debug, Clone)]
pub struct LockWait<'a> {
    /// What the lock guards, in words (`the store's garbage collection`).
    pub what: &'a str,
    /// The processes holding it (pid, command line), when known.
    pub holders: &'a [(u32, String)],
    /// `None` when the wait begins; how long it took once it ended.
    pub waited: Option<std::time::Duration>,
}

type WaitFn = Box<dyn Fn(&LockWait<'_>) + Send + Sync>;

/// The observer of lock waits; `Debug` for [`Store`]'s sake.
#[derive(Default)]
struct WaitObserver(std::sync::OnceLock<WaitFn>);

impl std::fmt::Debug for WaitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "WaitObserver(set)"
        } else {
            "WaitObserver(none)"
        })
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
            waits: WaitObserver::default(),
            unpublished: Mutex::new(std::collections::HashMap::new()),
            deferred: deferred::Deferred::default(),
        })
    }

    /// Calls `observer` when this store waits for a lock another process
    /// holds (a build holding the store while `system check` or a prune
    /// wants it, or the reverse), and again when the wait ends, so a
    /// front end can say what it waits for and for how long.
    pub fn on_wait(&self, observer: impl Fn(&LockWait<'_>) + Send + Sync + 'static) {
        let _ = self.waits.0.set(Box::new(observer));
    }

    /// Takes the lock at `path`, telling the wait observer when another
    /// process holds it.
    pub(crate) fn acquire_lock(&self, path: &Path, mode: LockMode, what: &str) -> Result<FileLock> {
        if let Some(lock) = FileLock::try_acquire(path, mode)? {
            return Ok(lock);
        }
        let holders = FileLock::holders(path);
        let start = std::time::Instant::now();
        if let Some(observer) = self.waits.0.get() {
            observer(&LockWait {
                what,
                holders: &holders,
                waited: None,
            });
        }
        let lock = FileLock::acquire(path, mode)?;
        if let Some(observer) = self.waits.0.get() {
            observer(&LockWait {
                what,
                holders: &holders,
                waited: Some(start.elapsed()),
            });
        }
        Ok(lock)
    }

    /// The versioned store directory (`<root>/store-v1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This process's scratch directory inside the store (same
    /// filesystem), made on the first call; removed when the store is
    /// dropped (or, if the process dies, by the next process to make one).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }
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
