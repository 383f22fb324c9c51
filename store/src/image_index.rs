//! Image indexes (multi-platform images) in the store: writing one over
//! stored manifests, tagging it, and choosing a platform's manifest when
//! a tag names an index.
//!
//! A tag in `index.json` may point at an image index (OCI index or Docker
//! manifest list) instead of a manifest. Reading such a tag yields the
//! [`Image`] of one platform (the host's unless asked otherwise) with
//! [`Image::index`] set, so that every command that works on an image
//! (`run`, `inspect`, `images`) keeps working and the ones that work on the
//! name (`tag`, `rmi`, `save`, `push`) can reach the whole index. Garbage
//! collection keeps every manifest an index names (see `gc.rs`).

use std::collections::BTreeMap;

use rbuild_oci::{Digest, Platform};

use crate::layout::{MEDIA_TYPE_INDEX, canonical_json};
use crate::platform::select_manifest;
use crate::{Descriptor, Image, Index, Result, Store, StoreError};

/// Docker's manifest list media type.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// An image index a tag names: what [`Image::index`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    /// Digest of the index blob.
    pub digest: Digest,
    /// Size of the index blob.
    pub size: u64,
    /// `application/vnd.oci.image.index.v1+json` or Docker's manifest list.
    pub media_type: String,
    /// Its entries as written: one manifest per platform, and whatever
    /// else it carries (attestation manifests with an `unknown` platform).
    pub manifests: Vec<Descriptor>,
    /// The index's own annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// The platforms of its image manifests, in index order (entries with
    /// an `unknown` platform, attestations, left out).
    pub fn platforms(&self) -> Vec<Platform> {
        self.manifests
            .iter()
            .filter_map(descriptor_platform)
            .filter(|p| p.os != "unknown" && p.architecture != "unknown")
            .collect()
    }

    /// The descriptor of the index itself, as `index.json` lists it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: self.size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// Whether a media type is an image index (OCI) or manifest list (Docker).
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// The platform a descriptor names, if it names one.
pub fn descriptor_platform(d: &Descriptor) -> Option<Platform> {
    let p = d.platform.as_ref()?;
    let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let variant = field("variant");
    Some(Platform {
        os: field("os"),
        architecture: field("architecture"),
        variant: (!variant.is_empty()).then_some(variant),
    })
}

/// A descriptor's `platform` object for `p`.
pub fn platform_json(p: &Platform) -> serde_json::Value {
    let mut v = serde_json::json!({"os": p.os, "architecture": p.architecture});
    if let Some(variant) = &p.variant {
        v["variant"] = serde_json::Value::String(variant.clone());
    }
    v
}

impl Store {
    /// Writes an image index over `manifests` (each already stored: image
    /// manifests with their `platform`, and any extra descriptors such as
    /// attestation manifests) and, with `tags`, lists it in `index.json`
    /// under them (an empty list: as a dangling image); `None` writes
    /// only the blob (an archive's or a push's index). `media_type` is
    /// the index's own (OCI index or Docker manifest list).
    pub fn write_image_index(
        &self,
        media_type: &str,
        manifests: &[Descriptor],
        annotations: &BTreeMap<String, String>,
        tags: Option<&[rbuild_oci::reference::ImageRef]>,
    ) -> Result<ImageIndex> {
        let _session = self.write_session()?;
        for d in manifests {
            let digest: Digest = d.digest.parse().map_err(|_| StoreError::BadDigest {
                what: "image index entry".to_string(),
                text: d.digest.clone(),
            })?;
            if !self.has_blob(&digest) {
                return Err(StoreError::MissingBlob { digest });
            }
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            manifests: manifests.to_vec(),
            annotations: annotations.clone(),
        };
        let bytes = canonical_json(&index);
        let digest = self.put_blob_bytes(&bytes)?;
        let image_index = ImageIndex {
            digest,
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
            manifests: manifests.to_vec(),
            annotations: annotations.clone(),
        };
        let Some(tags) = tags else {
            return Ok(image_index);
        };
        let desc = image_index.descriptor();
        let children: Vec<&str> = manifests.iter().map(|d| d.digest.as_str()).collect();
        self.update_index(|index| {
            // Its platforms' images are reached through it now: no
            // dangling entries of their own.
            index.manifests.retain(|d| {
                !children.contains(&d.digest.as_str())
                    || d.annotations
                        .contains_key(crate::layout::ANNOTATION_REF_NAME)
            });
            if tags.is_empty() {
                if !index.manifests.iter().any(|d| d.digest == desc.digest) {
                    index.manifests.push(desc.clone());
                }
            } else {
                for tag in tags {
                    crate::index::set_tag(index, &desc, tag);
                }
            }
        })?;
        Ok(image_index)
    }

    /// Drops the untagged `index.json` entry of `digest` (an image now
    /// listed through an index that names a converted form of it), so the
    /// image is listed once.
    pub fn drop_dangling(&self, digest: &Digest) -> Result<()> {
        let d = digest.to_string();
        self.update_index(|index| {
            index.manifests.retain(|m| {
                m.digest != d
                    || m.annotations
                        .contains_key(crate::layout::ANNOTATION_REF_NAME)
            });
        })
    }

    /// Reads the manifest blob `digest` (verified): an image's or an
    /// attestation manifest an index lists.
    pub fn read_manifest(&self, digest: &Digest) -> Result<crate::layout::Manifest> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("manifest {digest}"),
            source,
        })
    }

    /// Reads the image index blob `digest` (verified).
    pub fn read_image_index(&self, digest: &Digest, media_type: &str) -> Result<ImageIndex> {
        let bytes = self.read_blob(digest)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("image index {digest}"),
            source,
        })?;
        Ok(ImageIndex {
            digest: *digest,
            size: bytes.len() as u64,
            media_type: index
                .media_type
                .clone()
                .unwrap_or_else(|| media_type.to_string()),
            manifests: index.manifests,
            annotations: index.annotations,
        })
    }

    /// The image of `platform` in the index `desc` names (the host's when
    /// `None`, else the first image manifest), with [`Image::index`] set.
    pub(crate) fn load_from_index(
        &self,
        desc: &Descriptor,
        tags: Vec<rbuild_oci::reference::ImageRef>,
        platform: Option<&Platform>,
    ) -> Result<Image> {
        let digest: Digest = desc.digest.parse().map_err(|_| StoreError::BadDigest {
            what: "index.json".to_string(),
            text: desc.digest.clone(),
        })?;
        let index = self.read_image_index(&digest, &desc.media_type)?;
        let chosen = match platform {
            Some(p) => select_manifest(&index.manifests, p).map_err(|available| {
                StoreError::NoMatchingPlatform {
                    reference: tags
                        .first()
                        .map(|t| t.familiar())
                        .unwrap_or_else(|| digest.to_string()),
                    wanted: p.to_string(),
                    available: available.join(", "),
                }
            })?,
            None => match select_manifest(&index.manifests, &Platform::host()) {
                Ok(d) => d,
                Err(_) => index
                    .manifests
                    .iter()
                    .find(|d| {
                        descriptor_platform(d)
                            .is_none_or(|p| p.os != "unknown" && p.architecture != "unknown")
                    })
                    .cloned()
                    .ok_or_else(|| StoreError::CorruptImage {
                        image: digest.to_string(),
                        reason: "the image index lists no image manifest".to_string(),
                    })?,
            },
        };
        let mut image = self.load_image(&chosen, tags)?;
        image.index = Some(index);
        Ok(image)
    }

    /// Points `tag` at the stored index `index` (a pushed one); the
    /// entry of `replaces` (the index as built) goes when no tag names it
    /// any more, so the image is listed once, by what was pushed.
    pub fn tag_index(
        &self,
        index: &ImageIndex,
        tag: &rbuild_oci::reference::ImageRef,
        replaces: Option<&ImageIndex>,
    ) -> Result<()> {
        if !self.has_blob(&index.digest) {
            return Err(StoreError::MissingBlob {
                digest: index.digest,
            });
        }
        let desc = index.descriptor();
        let old = replaces.map(|r| r.digest.to_string());
        self.update_index(|i| {
            crate::index::set_tag(i, &desc, tag);
            if let Some(old) = old
                && old != desc.digest
                && !i.manifests.iter().any(|d| {
                    d.digest == old
                        && d.annotations
                            .contains_key(crate::layout::ANNOTATION_REF_NAME)
                })
            {
                i.manifests.retain(|d| d.digest != old);
            }
        })
    }
}
