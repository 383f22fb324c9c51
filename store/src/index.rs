//! Images in `index.json`: writing an image (config, manifest, index entry),
//! tagging, untagging and removing it, and reading images back from their
//! manifests and configs. Every rewrite of the index is a
//! read-modify-write under the exclusive index lock.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use rbuild_oci::Digest;
use rbuild_oci::ImageConfig;
use rbuild_oci::reference::ImageRef;

use crate::layout::{ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, canonical_json};
use crate::{
    Descriptor, FileLock, Image, Index, LayerInfo, LockMode, Manifest, Result, Store, StoreError,
    atomic,
};

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

impl Store {
    /// Writes `config` (serialized canonically), a manifest over `layers`
    /// (whose blobs must already be stored) and points `tags` at it. Returns
    /// the image ID (the config digest).
    pub fn write_image(
        &self,
        config: &ImageConfig,
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
        let parsed: ImageConfig =
            serde_json::from_slice(config).map_err(|source| StoreError::Json {
                what: "image config".to_string(),
                source,
            })?;
        let declared = &parsed.rootfs.diff_ids;
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
        if let Some(index) = &image.index {
            let desc = index.descriptor();
            return self.update_index(|i| set_tag(i, &desc, tag));
        }
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
                .any(|d| d.digest == image.top_digest().to_string());
        })?;
        Ok((image, removed))
    }

    /// Removes every index entry of `image` (all its tags). Its blobs go at
    /// the next [`Store::gc`] unless a lease or another image keeps them.
    pub fn remove(&self, image: &Image) -> Result<()> {
        let digest = image.top_digest().to_string();
        self.update_index(|index| index.manifests.retain(|d| d.digest != digest))
    }

    /// Read-modify-write of `index.json` under the exclusive index lock.
    pub(crate) fn update_index(&self, f: impl FnOnce(&mut Index)) -> Result<()> {
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

    /// Reads a manifest and its config into an [`Image`], both verified
    /// against their digests; a damaged one is [`StoreError::CorruptImage`]
    /// naming the image as `rbuild images` shows it.
    pub(crate) fn load_image(&self, desc: &Descriptor, tags: Vec<ImageRef>) -> Result<Image> {
        if crate::image_index::is_index_media_type(&desc.media_type) {
            return self.load_from_index(desc, tags, None);
        }
        let manifest_digest = parse_digest(&desc.digest, "index.json")?;
        let mut label = image_label(&tags, None, &manifest_digest);
        let corrupt = |label: &str, reason: String| StoreError::CorruptImage {
            image: label.to_string(),
            reason,
        };
        let blob_problem = |label: &str, what: &str, e: StoreError| match e {
            StoreError::CorruptBlob { digest, actual } => corrupt(
                label,
                format!("its {what} {digest} hashes to {actual} (damaged on disk)"),
            ),
            StoreError::MissingBlob { digest } => {
                corrupt(label, format!("its {what} {digest} is missing"))
            }
            e => e,
        };
        let bytes = self
            .read_blob(&manifest_digest)
            .map_err(|e| blob_problem(&label, "manifest", e))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&label, format!("manifest: {e}")))?;
        let config_digest = parse_digest(&manifest.config.digest, "manifest")?;
        label = image_label(&tags, Some(&config_digest), &manifest_digest);
        let config_bytes = self
            .read_blob(&config_digest)
            .map_err(|e| blob_problem(&label, "config", e))?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| corrupt(&label, format!("config {config_digest}: {e}")))?;
        let corrupt = |reason: String| corrupt(&label, reason);
        let diff_ids = config.rootfs.diff_ids.clone();
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
                    diff_id: parse_digest(&diff_id, "config")?,
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
            index: None,
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
}

/// Points `tag` at `desc`; the image it named before stays as a dangling
/// entry when nothing else names it.
pub(crate) fn set_tag(index: &mut Index, desc: &Descriptor, tag: &ImageRef) {
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

/// An image as `rbuild images` shows it: its first tag and its ID, or
/// its manifest digest while the ID is not known.
pub(crate) fn image_label(tags: &[ImageRef], id: Option<&Digest>, manifest: &Digest) -> String {
    let name = tags
        .first()
        .map(|t| t.familiar())
        .unwrap_or_else(|| "<none>".to_string());
    match id {
        Some(id) => format!("{name} (ID {})", id.short()),
        None => format!("{name} (manifest {manifest})"),
    }
}

fn parse_digest(text: &str, what: &str) -> Result<Digest> {
    text.parse().map_err(|_| StoreError::BadDigest {
        what: what.to_string(),
        text: text.to_string(),
    })
}
