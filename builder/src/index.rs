//! Image index assembly: the one place a multi-platform build's image
//! index is made, for the store (`-t`), archives (`-o type=oci|docker`)
//! and pushes. It takes one manifest per platform (each converted as the
//! output's format asks: compressed layers, media types, annotations)
//! plus any extra descriptors (attestation manifests, later) and writes
//! the index: an OCI index when the manifests are OCI, a Docker manifest
//! list when they are Docker schema 2, as BuildKit does.

use std::collections::BTreeMap;

use rbuild_oci::Platform;
use rbuild_oci::reference::ImageRef;
use rbuild_store::image_index::{MEDIA_TYPE_DOCKER_MANIFEST_LIST, platform_json};
use rbuild_store::layout::{MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use rbuild_store::variants::ManifestFormat;
use rbuild_store::{Descriptor, Image, ImageIndex, ImageLease, Store, StoreError};

/// One platform's manifest in an index.
#[derive(Debug, Clone)]
pub struct PlatformManifest {
    pub platform: Platform,
    /// The manifest (in the store); its `platform` is set from
    /// [`platform`](Self::platform) when the index is written.
    pub descriptor: Descriptor,
}

/// Writes the image index over `manifests` (in order) and `extra`
/// descriptors (appended as given: attestation manifests) with the
/// index `annotations`, and, with `tags`, lists it in the store under
/// them (`None`: only the blob, for an archive or a push). Its media type follows
/// the manifests': Docker's manifest list over Docker manifests, else an
/// OCI index.
pub fn assemble_index(
    store: &Store,
    manifests: &[PlatformManifest],
    extra: &[Descriptor],
    annotations: &BTreeMap<String, String>,
    tags: Option<&[ImageRef]>,
) -> Result<ImageIndex, StoreError> {
    let docker = !manifests.is_empty()
        && manifests
            .iter()
            .all(|m| m.descriptor.media_type == MEDIA_TYPE_DOCKER_MANIFEST);
    let media_type = if docker {
        MEDIA_TYPE_DOCKER_MANIFEST_LIST
    } else {
        MEDIA_TYPE_INDEX
    };
    let mut entries: Vec<Descriptor> = manifests
        .iter()
        .map(|m| {
            let mut d = m.descriptor.clone();
            d.platform = Some(platform_json(&m.platform));
            d
        })
        .collect();
    entries.extend(extra.iter().cloned());
    store.write_image_index(media_type, &entries, annotations, tags)
}

/// The platforms' images converted as an output's format says, with
/// leases keeping them until the caller is done, and the index over
/// them.
pub struct ConvertedIndex {
    pub index: ImageIndex,
    /// The converted images, in index order.
    pub images: Vec<Image>,
    _leases: Vec<ImageLease>,
}

/// Per platform: the manifest format (`None`: the manifest as stored)
/// and the manifest-descriptor annotations.
pub type FormatOf<'a> =
    dyn Fn(&Platform) -> (Option<ManifestFormat>, BTreeMap<String, String>) + 'a;

/// Converts each platform's image as `format_of` asks and assembles the
/// index over them (see [`assemble_index`]), listed under `tags`.
pub fn convert_and_assemble(
    store: &Store,
    images: &[(Platform, Image)],
    format_of: &FormatOf<'_>,
    tags: Option<&[ImageRef]>,
) -> Result<ConvertedIndex, StoreError> {
    let mut manifests = Vec::new();
    let mut converted = Vec::new();
    let mut leases = Vec::new();
    for (platform, image) in images {
        let (format, descriptor_annotations) = format_of(platform);
        let (c, lease, media_type) = match format {
            Some(format) => store.convert_image(image, &format)?,
            None => (image.clone(), store.lease(image)?, MEDIA_TYPE_MANIFEST),
        };
        manifests.push(PlatformManifest {
            platform: platform.clone(),
            descriptor: Descriptor {
                media_type: media_type.to_string(),
                digest: c.manifest_digest.to_string(),
                size: c.manifest_size,
                annotations: descriptor_annotations,
                platform: None,
            },
        });
        converted.push(c);
        leases.push(lease);
    }
    let index = assemble_index(store, &manifests, &[], &BTreeMap::new(), tags)?;
    Ok(ConvertedIndex {
        index,
        images: converted,
        _leases: leases,
    })
}
