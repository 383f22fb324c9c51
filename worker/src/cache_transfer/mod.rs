//! Cache export and import (`--cache-to` / `--cache-from`): cache-index
//! records, the layer blobs they name and optionally the contents of cache
//! mounts, moved between machines as an OCI image layout.
//!
//! Cache keys never depend on the machine (see `rbuild_solver::cache_key`),
//! so records transfer as they are: a fresh store that imports another
//! machine's records hits them for the same Dockerfile and context.
//!
//! By job:
//!
//! - `format.rs`: the exported cache (format version
//!   [`CACHE_FORMAT_VERSION`]: an OCI layout whose manifest's config is
//!   [`MEDIA_TYPE_CACHE_CONFIG`]) and the inline cache (the same config in
//!   an image config under [`INLINE_CACHE_FIELD`]), described there;
//! - `export.rs`: what `--cache-to` exports ([`ExportMode`],
//!   [`target_chain`]) and writing it ([`write_layout`], [`inline_cache`],
//!   [`export()`]);
//! - `import.rs`: reading an exported or inline cache ([`ImportedCache`])
//!   and restoring its cache mounts;
//! - `local.rs`: `type=local` ([`LocalDirTransport`], [`LayoutSource`]);
//! - this file: the error type and the transport traits.
//!
//! A build consults imported caches through [`ImportingCacheIndex`], which
//! lives beside the store's cache index it wraps (`cache_index/importing.rs`,
//! re-exported here): an imported hit returns its result at once and its
//! blobs are fetched only when something needs them.
//!
//! # Transports
//!
//! [`CacheTransport`] moves a layout: [`LocalDirTransport`] is
//! `type=local`; [`RegistryTransport`](super::cache_registry::RegistryTransport)
//! is `type=registry`: it pushes the layout's blobs and manifest and reads
//! blobs lazily through [`BlobSource`].

mod export;
mod format;
mod import;
mod local;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rbuild_solver::Digest;

use crate::{BuildError, scratch};
use rbuild_store::layer::LayerError;
use rbuild_store::{Store, StoreError};

pub use crate::cache_index::{ImportingCacheIndex, LazyFetchError};
pub use export::{
    ExportMode, ExportSummary, LayerFormat, cache_mount_ids, export, inline_cache, target_chain,
    write_layout,
};
pub(crate) use format::ExportedRecord;
pub use format::{
    ANNOTATION_MOUNT_GID, ANNOTATION_MOUNT_ID, ANNOTATION_MOUNT_MODE, ANNOTATION_MOUNT_UID,
    CACHE_FORMAT_VERSION, INLINE_CACHE_FIELD, LAYOUT_TAG, MEDIA_TYPE_CACHE_CONFIG,
    MEDIA_TYPE_CACHE_MOUNT,
};
pub use import::{ImportedCache, ImportedMount};
pub use local::{LayoutSource, LocalDirTransport};

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
    /// Where [`export()`] writes the layout before pushing it.
    fn staging_dir(&self, store: &Store, reference: &str) -> PathBuf {
        let _ = reference;
        store
            .tmp_dir()
            .join(format!("cache-export-{}", scratch::unique()))
    }
}
