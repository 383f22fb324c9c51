//! The exported cache's format: its constants, the cache config and its
//! records, and reading a config back (refusing another version).
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
//! A record's layers are the cache index's own `RecordLayer`s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use rbuild_solver::{CacheKey, Digest};

use super::CacheTransferError;
use crate::StepOutput;
use crate::cache_index::{Record, RecordLayer};
use rbuild_oci::time;

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

/// The exported cache config (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CacheConfig {
    pub(super) version: u32,
    pub(super) records: Vec<ExportedRecord>,
}

/// A cache-index record as exported: the local record without its local
/// use times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExportedRecord {
    pub(crate) key: String,
    pub(crate) description: String,
    pub(crate) created: i64,
    pub(crate) layers: Vec<RecordLayer>,
    pub(crate) added: usize,
    pub(crate) parts: rbuild_solver::explain::StepFingerprint,
}

impl ExportedRecord {
    pub(super) fn from_local(r: Record) -> ExportedRecord {
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
    pub(crate) fn to_local(&self, output: &StepOutput) -> Record {
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

    pub(crate) fn output(&self) -> Option<StepOutput> {
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

pub(super) fn parse_digest(text: &str, location: &str) -> Result<Digest, CacheTransferError> {
    text.parse().map_err(|_| CacheTransferError::NotACache {
        location: location.to_string(),
        reason: format!("invalid digest {text:?}"),
    })
}

pub(super) fn parse_config(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
