//! Cache export (`--cache-to`): which steps and cache mounts are exported
//! ([`ExportMode`], [`target_chain`], [`cache_mount_ids`]), writing them
//! from the store as an OCI layout ([`write_layout`]) or as an inline
//! cache ([`inline_cache`]), and publishing a layout through a transport
//! ([`export`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rbuild_solver::graph::{BuildGraph, StepId};
use rbuild_solver::op::{ExecMountKind, Op};
use rbuild_solver::{CacheKey, Digest};

use super::format::{CacheConfig, ExportedRecord};
use super::{
    ANNOTATION_MOUNT_GID, ANNOTATION_MOUNT_ID, ANNOTATION_MOUNT_MODE, ANNOTATION_MOUNT_UID,
    CACHE_FORMAT_VERSION, LAYOUT_TAG, MEDIA_TYPE_CACHE_CONFIG, MEDIA_TYPE_CACHE_MOUNT,
};
use super::{CacheTransferError, CacheTransport, io_err};
use crate::cache_index::StoreCacheIndex;
use crate::{BuildError, cache_mount};
use rbuild_store::layer::{self, HashingWriter, PackOptions};
use rbuild_store::layout::{
    ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, OCI_LAYOUT, canonical_json,
};
use rbuild_store::variants::{LayerCompression, layer_media_type};
use rbuild_store::{Descriptor, FileLock, Index, LayerEncoding, LockMode, Manifest, Store};

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
            Op::Image(_) | Op::Scratch | Op::Local(_) | Op::Git(_) => {}
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

/// How an exported cache encodes its layers (`--cache-to`'s
/// `compression=`…, `oci-mediatypes=`): through the store's layer
/// variants, so the cache names the same blobs a push of the image does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerFormat {
    pub compression: LayerCompression,
    pub oci_media_types: bool,
}

impl Default for LayerFormat {
    /// gzip, OCI media types (BuildKit's cache defaults).
    fn default() -> Self {
        LayerFormat {
            compression: LayerCompression::default(),
            oci_media_types: true,
        }
    }
}

/// Writes the cache of `keys` (and with `mount_ids` those cache mounts)
/// as an OCI layout into `dir`, which must not exist yet. Every blob comes
/// from the store, each layer as `format` encodes it (the records name
/// the encoded blobs); a record whose blobs are gone is left out.
pub fn write_layout(
    store: &Store,
    keys: &[CacheKey],
    mount_ids: &[String],
    dir: &Path,
    format: &LayerFormat,
) -> Result<ExportSummary, CacheTransferError> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let mut summary = ExportSummary::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut written = BTreeSet::new();
    let mut records = Vec::new();
    // Held until the layout is written: the variants made here are
    // referenced by nothing in the store yet.
    let _session = store.write_session()?;
    for mut record in local_records(store, keys)? {
        let output = record.output().expect("filtered by local_records");
        if !output.layers.iter().all(|l| store.has_blob(&l.info.digest)) {
            continue;
        }
        for (l, stored) in record.layers.iter_mut().zip(&output.layers) {
            let v = store.layer_variant(&stored.info, &format.compression)?;
            let encoding = LayerEncoding::from_media_type(&v.media_type)
                .expect("layer variants have layer media types");
            l.digest = v.digest.to_string();
            l.size = v.size;
            l.media_type = layer_media_type(encoding, format.oci_media_types).to_string();
        }
        let output = record.output().expect("filtered by local_records");
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

pub(super) fn write_blob(
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
/// the image config under [`INLINE_CACHE_FIELD`](super::INLINE_CACHE_FIELD). Only records whose
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

/// Exports the cache of `keys` (and the cache mounts `mount_ids`) through
/// `transport` to `reference`: writes the layout in the transport's
/// staging directory, then publishes it. Nothing is left half-written.
pub fn export(
    store: &Store,
    keys: &[CacheKey],
    mount_ids: &[String],
    transport: &dyn CacheTransport,
    reference: &str,
    format: &LayerFormat,
) -> Result<ExportSummary, CacheTransferError> {
    let staging = transport.staging_dir(store, reference);
    let result = write_layout(store, keys, mount_ids, &staging, format)
        .and_then(|summary| transport.push_layout(&staging, reference).map(|()| summary));
    if staging.exists() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}
