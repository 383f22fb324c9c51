//! [`write_archive`]: images from the store → one docker-archive and/or
//! OCI layout tar.
//!
//! Every entry is written with uid/gid 0 and mtime 0, blobs in the order
//! the images name them (config, layers bottom first, manifest), each
//! once; so the same images give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use rbuild_oci::Digest;
use rbuild_oci::reference::ImageRef;
use serde_json::json;

use super::{ArchiveError, ArchiveFormat};
use crate::layout::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_MANIFEST, OCI_LAYOUT,
    canonical_json,
};
use crate::{Image, Store};

/// Writes `images` (each with the name it is saved under, if any) as one
/// archive in `format` to `out`. The caller holds leases on the images
/// (so gc cannot remove a blob midway) and puts `out` in place once this
/// returns.
///
/// The OCI index names each image by `org.opencontainers.image.ref.name`
/// (its tag) and containerd's `io.containerd.image.name` (the full name);
/// the docker-archive's `manifest.json` by `RepoTags`.
pub fn write_archive(
    store: &Store,
    images: &[(Image, Option<ImageRef>)],
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<(), ArchiveError> {
    write_archive_described(store, images, format, out, &ManifestDescription::default())
}

/// How [`write_archive_described`] describes each image's manifest in the
/// archive's `index.json`.
#[derive(Debug, Clone, Default)]
pub struct ManifestDescription {
    /// The manifests' media type (a converted image may be Docker schema
    /// 2); `None` is OCI.
    pub media_type: Option<String>,
    /// Extra descriptor annotations (buildx's `manifest-descriptor`).
    pub annotations: BTreeMap<String, String>,
    /// The images are the platforms of this image index (in the store):
    /// `index.json` lists the index (named as the first image is), not
    /// each manifest; a docker-archive's `manifest.json` lists only the
    /// first image (what `docker load` can hold under one name). The
    /// index's other entries (attestation manifests) are written too,
    /// each with its config and layers.
    pub index: Option<crate::ImageIndex>,
}

/// [`write_archive`] with the manifest descriptors' media type and
/// annotations given.
pub fn write_archive_described(
    store: &Store,
    images: &[(Image, Option<ImageRef>)],
    format: ArchiveFormat,
    out: &mut dyn Write,
    description: &ManifestDescription,
) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, dir, std::io::empty())
            .map_err(|source| ArchiveError::WriteEntry {
                entry: dir.to_string(),
                source,
            })?;
    }
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index = Index::default();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (n, (image, tag)) in images.iter().enumerate() {
        let in_index = description.index.is_some();
        let blobs = std::iter::once(image.id)
            .chain(image.layers.iter().map(|l| l.digest))
            .chain(std::iter::once(image.manifest_digest));
        for d in blobs {
            if written.insert(d) {
                append_blob(store, &mut tar, &d, || image_name(image, tag.as_ref()))?;
            }
        }
        let mut desc = Descriptor {
            media_type: description
                .media_type
                .clone()
                .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string()),
            digest: image.manifest_digest.to_string(),
            size: image.manifest_size,
            annotations: description.annotations.clone(),
            platform: None,
        };
        if in_index && n > 0 {
            continue;
        }
        if let Some(t) = tag {
            desc.annotations
                .insert(ANNOTATION_IMAGE_NAME.to_string(), t.to_string());
            desc.annotations.insert(
                ANNOTATION_REF_NAME.to_string(),
                t.tag().unwrap_or("latest").to_string(),
            );
            if let Some(top) = image.layers.last() {
                repositories
                    .entry(t.familiar_repository())
                    .or_default()
                    .insert(t.tag().unwrap_or("latest").to_string(), top.diff_id.hex());
            }
        }
        index.manifests.push(desc);
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", image.id.hex()),
            "RepoTags": tag.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
            "Layers": image.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
    }
    if let Some(image_index) = &description.index {
        // The index's entries the images are not (attestation manifests),
        // each as its config, layers, then itself.
        for entry in &image_index.manifests {
            let Ok(m) = entry.digest.parse::<Digest>() else {
                continue;
            };
            if written.contains(&m) {
                continue;
            }
            let manifest = store.read_manifest(&m)?;
            let children = std::iter::once(&manifest.config)
                .chain(&manifest.layers)
                .filter_map(|d| d.digest.parse::<Digest>().ok());
            for d in children.chain(std::iter::once(m)) {
                if written.insert(d) {
                    append_blob(store, &mut tar, &d, || {
                        format!("index {}", image_index.digest)
                    })?;
                }
            }
        }
        let d = image_index.digest;
        if written.insert(d) {
            let bytes = store.read_blob(&d)?;
            let mut h = header(tar::EntryType::Regular, bytes.len() as u64);
            h.set_cksum();
            tar.append_data(
                &mut h,
                format!("blobs/sha256/{}", d.hex()),
                bytes.as_slice(),
            )
            .map_err(|source| ArchiveError::WriteEntry {
                entry: format!("blobs/sha256/{}", d.hex()),
                source,
            })?;
        }
        // The index stands for every image: it takes the first one's
        // descriptor annotations (its name), per-manifest ones stay in it.
        let named = index
            .manifests
            .pop()
            .map(|m| m.annotations)
            .unwrap_or_default();
        let mut desc = image_index.descriptor();
        desc.annotations = named;
        index.manifests = vec![desc];
    }
    let mut small = |name: &str, data: &[u8]| -> Result<(), ArchiveError> {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
            .map_err(|source| ArchiveError::WriteEntry {
                entry: name.to_string(),
                source,
            })
    };
    small("index.json", &canonical_json(&index))?;
    if format == ArchiveFormat::Docker {
        // Serializing JSON values and string maps cannot fail.
        small(
            "manifest.json",
            &serde_json::to_vec(&docker_manifest).expect("JSON values serialize"),
        )?;
        if !repositories.is_empty() {
            small(
                "repositories",
                &serde_json::to_vec(&repositories).expect("string maps serialize"),
            )?;
        }
    }
    small("oci-layout", OCI_LAYOUT.as_bytes())?;
    tar.finish()
        .map_err(|source| ArchiveError::Finish { source })?;
    Ok(())
}

/// Appends blob `d` from the store, verified as it streams: a blob
/// damaged on disk fails the save (naming `what`, the image) instead of
/// being written out.
fn append_blob(
    store: &Store,
    tar: &mut tar::Builder<&mut dyn Write>,
    d: &Digest,
    what: impl FnOnce() -> String,
) -> Result<(), ArchiveError> {
    let path = store.blob_path(d);
    let mut file = store.open_blob_verified(d)?;
    let mut h = header(tar::EntryType::Regular, file.size());
    h.set_cksum();
    let appended = tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), &mut file);
    if let Some(source) = file.corrupt_error() {
        return Err(ArchiveError::CorruptImage {
            image: what(),
            source: Box::new(source),
        });
    }
    appended.map_err(|source| ArchiveError::ArchiveBlob { path, source })
}

/// An image as `rbuild images` shows it: the name it is saved under (or
/// its first tag) and its ID.
fn image_name(image: &Image, tag: Option<&ImageRef>) -> String {
    let name = tag
        .or(image.tags.first())
        .map(|t| t.familiar())
        .unwrap_or_else(|| "<none>".to_string());
    format!("{name} (ID {})", image.id.short())
}

/// A ustar header owned by root, mode 0644, mtime 0.
fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}
