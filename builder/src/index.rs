//! Image index assembly: the one place an image index is made, for the
//! store (`-t`), archives (`-o type=oci|docker`), pushes (the build's
//! and `rbuild push`'s) and `rbuild save`. It takes one manifest per
//! platform (each converted as the output's format asks: compressed
//! layers, media types, annotations), the predicates stated about each
//! (an attestation manifest per platform, after the image manifests, as
//! BuildKit lays them out: [`crate::attest::layout`]) and the index's own
//! annotations, and writes the index: an OCI index, or a Docker manifest
//! list when every manifest is Docker schema 2 and nothing is attested,
//! as BuildKit does.
//!
//! A single-platform build goes through here too whenever it has
//! something only an index can carry (attestations, `index:`
//! annotations); otherwise its outputs name the bare manifest.

use std::collections::BTreeMap;

use rbuild_oci::reference::ImageRef;
use rbuild_oci::{Digest, Platform};
use rbuild_store::image_index::{MEDIA_TYPE_DOCKER_MANIFEST_LIST, platform_json};
use rbuild_store::layout::{MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use rbuild_store::variants::ManifestFormat;
use rbuild_store::{Descriptor, Image, ImageIndex, ImageLease, Store, StoreError};

use crate::attest::{Predicate, Subject};

/// One platform's manifest in an index.
#[derive(Debug, Clone)]
pub struct PlatformManifest {
    pub platform: Platform,
    /// The manifest (in the store); its `platform` is set from
    /// [`platform`](Self::platform) when the index is written.
    pub descriptor: Descriptor,
    /// What its attestation manifest states about it (none: no
    /// attestation manifest).
    pub predicates: Vec<Predicate>,
}

/// What an index carries besides its platforms' manifests.
#[derive(Debug, Clone, Copy)]
pub struct IndexParts<'a> {
    /// The image's names, the statements' subjects (`_` when empty).
    pub names: &'a [ImageRef],
    /// The index's own annotations (buildx's `index:`).
    pub annotations: &'a BTreeMap<String, String>,
}

/// Writes the image index over `manifests` (in order), each attested
/// manifest followed — after all of them — by its attestation manifest,
/// with `parts`' annotations; with `tags`, lists it in the store under
/// them (an empty list: dangling); `None`: only the blob (an archive's or
/// a push's index).
pub fn assemble_index(
    store: &Store,
    manifests: &[PlatformManifest],
    parts: IndexParts<'_>,
    tags: Option<&[ImageRef]>,
) -> Result<ImageIndex, StoreError> {
    let attested = manifests.iter().any(|m| !m.predicates.is_empty());
    let docker = !attested
        && !manifests.is_empty()
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
    if attested {
        let mut subjects = Vec::new();
        for m in manifests {
            let digest: Digest =
                m.descriptor
                    .digest
                    .parse()
                    .map_err(|_| StoreError::BadDigest {
                        what: "image index entry".to_string(),
                        text: m.descriptor.digest.clone(),
                    })?;
            subjects.push((
                Subject {
                    digest,
                    size: m.descriptor.size,
                    media_type: m.descriptor.media_type.clone(),
                    platform: m.platform.clone(),
                },
                m.predicates.clone(),
            ));
        }
        entries.extend(crate::attest::layout::attestation_manifests(
            store,
            &subjects,
            parts.names,
        )?);
    }
    store.write_image_index(media_type, &entries, parts.annotations, tags)
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

/// One platform of an index to make: its image (as stored) and the
/// predicates to state about it in the index's form (empty: none).
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: Platform,
    pub image: Image,
    pub predicates: Vec<Predicate>,
}

/// Converts each platform's image as `format_of` asks and assembles the
/// index over them (see [`assemble_index`]), listed under `tags`. The
/// attestations are about the converted manifests: what the output
/// holds.
pub fn convert_and_assemble(
    store: &Store,
    images: &[PlatformImage],
    format_of: &FormatOf<'_>,
    parts: IndexParts<'_>,
    tags: Option<&[ImageRef]>,
) -> Result<ConvertedIndex, StoreError> {
    let mut manifests = Vec::new();
    let mut converted = Vec::new();
    let mut leases = Vec::new();
    for one in images {
        let (format, descriptor_annotations) = format_of(&one.platform);
        let (c, lease, media_type) = match format {
            Some(format) => store.convert_image(&one.image, &format)?,
            None => (
                one.image.clone(),
                store.lease(&one.image)?,
                stored_media_type(store, &one.image.manifest_digest),
            ),
        };
        manifests.push(PlatformManifest {
            platform: one.platform.clone(),
            descriptor: Descriptor {
                media_type: media_type.to_string(),
                digest: c.manifest_digest.to_string(),
                size: c.manifest_size,
                annotations: descriptor_annotations,
                platform: None,
            },
            predicates: one.predicates.clone(),
        });
        converted.push(c);
        leases.push(lease);
    }
    let index = assemble_index(store, &manifests, parts, tags)?;
    Ok(ConvertedIndex {
        index,
        images: converted,
        _leases: leases,
    })
}

/// The media type a stored manifest declares (OCI when it says none).
fn stored_media_type(store: &Store, digest: &Digest) -> &'static str {
    match store.read_manifest(digest) {
        Ok(m) if m.media_type.as_deref() == Some(MEDIA_TYPE_DOCKER_MANIFEST) => {
            MEDIA_TYPE_DOCKER_MANIFEST
        }
        _ => MEDIA_TYPE_MANIFEST,
    }
}

/// The platforms of the stored `index` that `image` (one of them, read
/// through the index) stands for, each with the predicates its stored
/// attestation manifest states (none when it has none): what pushing or
/// saving the index in another form states again about the new
/// manifests.
pub fn stored_platforms(
    store: &Store,
    image: &Image,
    index: &ImageIndex,
) -> Result<Vec<PlatformImage>, StoreError> {
    let mut out = Vec::new();
    for p in index.platforms() {
        let one = store.for_platform(image.clone(), &p)?;
        let predicates =
            crate::attest::layout::stored_predicates(store, index, &one.manifest_digest)?;
        out.push(PlatformImage {
            platform: p,
            image: one,
            predicates,
        });
    }
    Ok(out)
}
