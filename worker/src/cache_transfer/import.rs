//! Cache import (`--cache-from`): an exported cache or an image's inline
//! cache read into an [`ImportedCache`] (its manifest and config verified
//! against their digests; its records by key; blobs read later, lazily,
//! by the importing cache index).
//!
//! Cache mounts are restored into `cache-mounts/` by
//! [`ImportedCache::restore_mounts`] when the build starts, for each id whose
//! local directory is absent or empty (a local cache mount is never
//! overwritten).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_solver::{CacheKey, Digest};

use super::format::{ExportedRecord, parse_config, parse_digest};
use super::{
    ANNOTATION_MOUNT_GID, ANNOTATION_MOUNT_ID, ANNOTATION_MOUNT_MODE, ANNOTATION_MOUNT_UID,
    BlobSource, CacheSource, CacheTransferError, INLINE_CACHE_FIELD, MEDIA_TYPE_CACHE_CONFIG,
    MEDIA_TYPE_CACHE_MOUNT, io_err,
};
use crate::{cache_mount, scratch::ScratchDir};
use rbuild_store::layer::{self, HashingReader};
use rbuild_store::{FileLock, Image, LockMode, Manifest, Store};

/// The store's own blobs (an inline cache's layers are the image's).
struct StoreBlobs {
    dir: PathBuf,
    /// The image's layers: its records name the uncompressed layers it
    /// was built with, which a pushed and pulled copy holds compressed
    /// (the same diffID).
    layers: Vec<rbuild_store::LayerInfo>,
}

impl BlobSource for StoreBlobs {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        match fs::File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(l) = self.layers.iter().find(|l| l.diff_id == *digest) else {
                    return Err(io_err(&path)(e));
                };
                let compressed = self.dir.join("blobs/sha256").join(l.digest.hex());
                let f = fs::File::open(&compressed).map_err(io_err(&compressed))?;
                layer::decompress_layer(Box::new(f)).map_err(io_err(&compressed))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Reads a whole (small) blob and checks its digest.
pub(super) fn read_verified(
    source: &dyn BlobSource,
    digest: &Digest,
) -> Result<Vec<u8>, CacheTransferError> {
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
    pub(crate) records: BTreeMap<CacheKey, ExportedRecord>,
    pub(crate) mounts: Vec<ImportedMount>,
    pub(crate) blobs: Box<dyn BlobSource>,
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
                layers: image.layers.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_store::Index;
    use rbuild_store::layout::{MEDIA_TYPE_MANIFEST, canonical_json};

    use crate::cache_transfer::export::write_blob;
    use crate::cache_transfer::{CacheTransport, LocalDirTransport};

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
