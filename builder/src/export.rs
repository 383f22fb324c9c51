//! Exporters: what a build's outputs do with the image it wrote to the
//! store: tag it (`type=image`, pushing it with `push=true` or
//! `--push`), write it as an image archive (`oci`, `docker`), or write its
//! flattened root filesystem as a tar (`tar`) or into a directory
//! (`local`); and the buildx metadata of the result.
//!
//! Image archives are written by the store's codec
//! ([`rbuild_store::archive::write_archive`], `rbuild save`'s too). Where
//! a stream goes (a file that appears only once complete, or the front
//! end's stdout for `dest=-`) belongs to the front end and comes through
//! [`ExportHost`]: this crate never opens stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rbuild_oci::Platform;
use rbuild_oci::reference::ImageRef;
use rbuild_registry as registry;
use rbuild_registry::{Client, PushEvent, PushProgress};
use rbuild_store::archive::{self, ArchiveFormat, ManifestDescription, RootIndex};
use rbuild_store::layer::{self, PackOptions};
use rbuild_store::layout::MEDIA_TYPE_MANIFEST;
use rbuild_store::variants::ManifestFormat;
use rbuild_store::{Image, Store};
use serde_json::json;

use crate::attest::{self, Capture, Predicate, Subject};
use crate::error::{BuildError, HostError};
use crate::events::{BuildEvents, Event};
use crate::request::BuildRequest;
use crate::spec::{Annotation, AnnotationKind, ImageFormat, OutputSpec};

/// A stream export's destination, opened by [`ExportHost::open`]; what
/// was written becomes visible on [`finish`](ExportStream::finish).
pub trait ExportStream: Write {
    /// Flushes and puts the result in place.
    fn finish(self: Box<Self>) -> Result<(), HostError>;
}

/// What exporters need from the front end.
pub trait ExportHost: Sync {
    /// Opens `dest` for a stream (`-o type=tar|oci|docker`): a file that
    /// appears only once finished, or the front end's stdout for `-`.
    fn open(&self, dest: &Path) -> Result<Box<dyn ExportStream + '_>, HostError>;
}

/// The manifest an export wrote or a push sent when it is not the one
/// the build stored: its layers compressed, Docker media types,
/// annotations (see [`rbuild_store::variants`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedManifest {
    pub digest: rbuild_oci::Digest,
    pub size: u64,
    pub media_type: String,
}

/// What the exporters did: the names the image got, and the manifest the
/// last output wrote (an archive's), named or pushed when it differs from
/// the stored one (a push's comes last, as buildx reports it).
pub(crate) struct Exported {
    pub(crate) names: Vec<ImageRef>,
    pub(crate) manifest: Option<ExportedManifest>,
}

/// After a successful build: exports the image to each output, tags it
/// (always: `-t` names the image in the store whatever the outputs) and
/// pushes it when asked, each push as its image output's format says
/// (gzip and Docker media types by default, as BuildKit); a pushed name
/// then names the pushed manifest in the store.
pub(crate) fn export_all(
    store: &Store,
    request: &BuildRequest,
    image: &Image,
    client: &Client,
    events: &dyn BuildEvents,
    host: &dyn ExportHost,
    capture: &Capture,
) -> Result<Exported, BuildError> {
    // Tagged whatever the outputs: the image is in the store already and
    // `-t` names it there (docker applies -t to its image exporter).
    let mut names = request.tags.clone();
    for out in &request.outputs {
        if let OutputSpec::Image { names: extra, .. } = out {
            names.extend(extra.iter().cloned());
        }
    }
    // `-t a -o type=image,name=a` names `a` once (dedup only drops
    // neighbours).
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_string()));
    let platform = request.plan.platform.clone().unwrap_or_else(Platform::host);
    let push = request.push
        || request
            .outputs
            .iter()
            .any(|o| matches!(o, OutputSpec::Image { push: true, .. }));
    let predicates = attestation_predicates(store, request, image, &names, capture)?;
    let attested = predicates.as_deref().map(|p| Attested {
        predicates: p,
        names: &names,
    });
    let mut manifest = None;
    for out in &request.outputs {
        if let Some(m) = export_output(
            store,
            image,
            out,
            &names,
            host,
            &request.annotations,
            &platform,
            attested.as_ref(),
        )? {
            manifest = Some(m);
        }
    }
    let image_output = request.outputs.iter().find_map(|o| match o {
        OutputSpec::Image { format, .. } => Some(format.clone()),
        _ => None,
    });
    if image_output.is_none() {
        let store_only = OutputSpec::Image {
            names: vec![],
            push: false,
            format: ImageFormat::default(),
        };
        export_output(
            store,
            image,
            &store_only,
            &names,
            host,
            &request.annotations,
            &platform,
            None,
        )?;
    }
    // `-o type=image,push=true` pushes like `--push`: to every name the
    // image exporter got (buildx hands it the `-t` tags as names too).
    if push {
        if names.is_empty() {
            return Err(BuildError::PushNeedsName);
        }
        let format = image_output.unwrap_or_default();
        let (mut manifest_format, _) =
            manifest_format(&format, false, &request.annotations, &platform);
        for name in &names {
            manifest = Some(match &attested {
                Some(a) => {
                    // BuildKit turns OCI media types on for attestations.
                    manifest_format.oci_media_types = true;
                    push_attested(
                        store,
                        client,
                        image,
                        name,
                        &manifest_format,
                        a,
                        &platform,
                        events,
                    )?
                }
                None => push_image(store, client, image, name, &manifest_format, events)?,
            });
        }
    }
    Ok(Exported { names, manifest })
}

/// The store's manifest format for an image output, and the
/// manifest-descriptor annotations; `oci_default` is the exporter's
/// `oci-mediatypes` default. `extra` are `--annotation`s; those for
/// another platform than `platform` are left out.
pub(crate) fn manifest_format(
    format: &ImageFormat,
    oci_default: bool,
    extra: &[Annotation],
    platform: &Platform,
) -> (ManifestFormat, BTreeMap<String, String>) {
    let mut manifest = BTreeMap::new();
    let mut descriptor = BTreeMap::new();
    for a in extra.iter().chain(&format.annotations) {
        let applies = a.platform.as_ref().is_none_or(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && (p.variant.is_none() || p.variant == platform.variant)
        });
        if !applies {
            continue;
        }
        match a.kind {
            AnnotationKind::Manifest => manifest.insert(a.key.clone(), a.value.clone()),
            AnnotationKind::ManifestDescriptor => descriptor.insert(a.key.clone(), a.value.clone()),
        };
    }
    (
        ManifestFormat {
            layers: format.layer_compression(),
            oci_media_types: format.oci_media_types.unwrap_or(oci_default),
            annotations: manifest,
        },
        descriptor,
    )
}

/// Exports `image` (already in `store`) to `output`; `names` are the
/// `-t` tags and `type=image,name=` names, normalized. Image archives are
/// written as the output's format says (gzip by default).
pub fn export(
    store: &Store,
    image: &Image,
    output: &OutputSpec,
    names: &[ImageRef],
    host: &dyn ExportHost,
) -> Result<(), BuildError> {
    export_output(
        store,
        image,
        output,
        names,
        host,
        &[],
        &Platform::host(),
        None,
    )
    .map(drop)
}

/// [`export`] with `--annotation`s for the image of `platform`; returns
/// the manifest an archive holds (its index when `attested`), or the one
/// `type=image` named when it is not the stored one.
#[allow(clippy::too_many_arguments)]
fn export_output(
    store: &Store,
    image: &Image,
    output: &OutputSpec,
    names: &[ImageRef],
    host: &dyn ExportHost,
    annotations: &[Annotation],
    platform: &Platform,
    attested: Option<&Attested<'_>>,
) -> Result<Option<ExportedManifest>, BuildError> {
    let _lease = store.lease(image)?;
    match output {
        OutputSpec::Image { format, .. } => {
            let (manifest_format, _) = manifest_format(format, false, annotations, platform);
            if manifest_format.annotations.is_empty() {
                for name in names {
                    tag(store, image, name)?;
                }
                return Ok(None);
            }
            // Annotations live in a manifest of their own: the names
            // point at it (a push sends the same one).
            let (converted, _lease, media_type) = store.convert_image(image, &manifest_format)?;
            for name in names {
                store
                    .tag_converted(image, &converted, media_type, name)
                    .map_err(|source| BuildError::Tag {
                        name: Box::new(name.clone()),
                        source,
                    })?;
            }
            Ok(Some(ExportedManifest {
                digest: converted.manifest_digest,
                size: converted.manifest_size,
                media_type: media_type.to_string(),
            }))
        }
        OutputSpec::Oci { dest, format } | OutputSpec::Docker { dest, format } => {
            let oci = matches!(output, OutputSpec::Oci { .. });
            let (mut f, descriptor) = manifest_format(format, oci, annotations, platform);
            if attested.is_some() {
                // BuildKit turns OCI media types on for attestations.
                f.oci_media_types = true;
            }
            write_image_archive(
                store,
                image,
                names,
                if oci {
                    ArchiveFormat::Oci
                } else {
                    ArchiveFormat::Docker
                },
                dest,
                host,
                &f,
                descriptor,
                attested.map(|a| (a, platform)),
            )
            .map(Some)
        }
        OutputSpec::Tar { dest } => {
            let mut out = host.open(dest).map_err(BuildError::Host)?;
            write_rootfs_tar(store, image, &mut out)?;
            out.finish().map_err(BuildError::Host).map(|()| None)
        }
        OutputSpec::Local { dest } => {
            std::fs::create_dir_all(dest).map_err(|source| BuildError::OutputDir {
                path: dest.clone(),
                source,
            })?;
            unpack_layers(store, image, dest).map(|()| None)
        }
    }
}

fn tag(store: &Store, image: &Image, name: &ImageRef) -> Result<(), BuildError> {
    store.tag(image, name).map_err(|source| BuildError::Tag {
        name: Box::new(name.clone()),
        source,
    })
}

/// Writes `image` as an image archive in `format` to `dest`, its layers
/// and manifest as `manifest` says, listed once per name in `names` (once
/// without a name when there is none), each manifest descriptor with the
/// `descriptor` annotations. The caller holds a lease on the image.
#[allow(clippy::too_many_arguments)]
fn write_image_archive(
    store: &Store,
    image: &Image,
    names: &[ImageRef],
    format: ArchiveFormat,
    dest: &Path,
    host: &dyn ExportHost,
    manifest: &ManifestFormat,
    descriptor: BTreeMap<String, String>,
    attested: Option<(&Attested<'_>, &Platform)>,
) -> Result<ExportedManifest, BuildError> {
    let (converted, _lease, media_type) = store.convert_image(image, manifest)?;
    let root_index = match attested {
        Some((a, platform)) => Some(a.index(store, &converted, media_type, platform)?),
        None => None,
    };
    let selected: Vec<(Image, Option<ImageRef>)> = if names.is_empty() {
        vec![(converted.clone(), None)]
    } else {
        names
            .iter()
            .map(|n| (converted.clone(), Some(n.clone())))
            .collect()
    };
    let description = ManifestDescription {
        media_type: Some(media_type.to_string()),
        annotations: descriptor,
        index: None,
        root_index: root_index.clone(),
    };
    let mut out = host.open(dest).map_err(BuildError::Host)?;
    archive::write_archive_described(store, &selected, format, &mut out, &description).map_err(
        |source| BuildError::Archive {
            dest: dest.to_path_buf(),
            source,
        },
    )?;
    out.finish().map_err(BuildError::Host)?;
    Ok(match root_index {
        Some(r) => ExportedManifest {
            digest: r.digest,
            size: r.size,
            media_type: r.media_type,
        },
        None => ExportedManifest {
            digest: converted.manifest_digest,
            size: converted.manifest_size,
            media_type: media_type.to_string(),
        },
    })
}

/// The attestations an image output carries: the predicates (made once
/// per build) and the image's names (the statements' subjects).
struct Attested<'a> {
    predicates: &'a [Predicate],
    names: &'a [ImageRef],
}

impl Attested<'_> {
    /// Writes to the store the attestation manifest about `converted`
    /// (an output's form of the image) and the index listing both.
    fn build(
        &self,
        store: &Store,
        converted: &Image,
        media_type: &str,
        platform: &Platform,
    ) -> Result<(attest::AttestationManifests, attest::IndexBlob), BuildError> {
        let subject = Subject {
            digest: converted.manifest_digest,
            size: converted.manifest_size,
            media_type: media_type.to_string(),
            platform: platform.clone(),
        };
        let att = attest::layout::attestation_manifests(
            store,
            &[(subject.clone(), self.predicates.to_vec())],
            self.names,
        )?;
        let index = attest::layout::image_index(store, &[subject], &att, BTreeMap::new())?;
        Ok((att, index))
    }

    /// [`build`](Self::build) as an archive's root.
    fn index(
        &self,
        store: &Store,
        converted: &Image,
        media_type: &str,
        platform: &Platform,
    ) -> Result<RootIndex, BuildError> {
        let (att, index) = self.build(store, converted, media_type, platform)?;
        let mut extra_blobs = att.blobs;
        extra_blobs.extend(att.manifests);
        Ok(RootIndex {
            digest: index.digest,
            size: index.size,
            media_type: attest::layout::INDEX_MEDIA_TYPE.to_string(),
            extra_blobs,
        })
    }
}

/// True when an output of `request` carries attestations: an `oci` or
/// `docker` archive, or a push.
pub(crate) fn attestations_carried(request: &BuildRequest) -> bool {
    request.push
        || request.outputs.iter().any(|o| {
            matches!(
                o,
                OutputSpec::Oci { .. }
                    | OutputSpec::Docker { .. }
                    | OutputSpec::Image { push: true, .. }
            )
        })
}

/// The warning a build asking for attestations that no output carries
/// gets (before it starts, so that it is listed with the others).
pub(crate) const ATTESTATIONS_NOT_CARRIED: &str = "attestations are not kept in rbuild's image store: export them with -o type=oci|docker or --push";

/// The predicates the request's attestations ask for, when an output
/// carries them (an `oci` or `docker` archive, a push); `None` when none
/// is asked or none would carry them (the build warned of that before it
/// started: rbuild's store keeps single-platform manifests, not indexes,
/// for now).
pub(crate) fn attestation_predicates(
    store: &Store,
    request: &BuildRequest,
    image: &Image,
    names: &[ImageRef],
    capture: &Capture,
) -> Result<Option<Vec<Predicate>>, BuildError> {
    if request.attestations.is_empty() {
        return Ok(None);
    }
    if !attestations_carried(request) {
        return Ok(None);
    }
    let created = request
        .source_date_epoch
        .map(rbuild_oci::time::rfc3339)
        .unwrap_or_else(|| capture.finished.clone());
    attest::predicates(
        store,
        image,
        &request.attestations,
        capture,
        &attest::subject_name(names, image),
        &created,
    )
    .map(Some)
}

/// [`push_image`] of an attested image: the image (converted as `format`
/// says), its attestation manifest and the index naming both, the index
/// under `target`; `target` then names the pushed image manifest in the
/// store (which holds no indexes yet).
#[allow(clippy::too_many_arguments)]
fn push_attested(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    format: &ManifestFormat,
    attested: &Attested<'_>,
    platform: &Platform,
    events: &dyn BuildEvents,
) -> Result<ExportedManifest, BuildError> {
    let (mut converted, _lease, media_type) = store.convert_image(image, format)?;
    let (att, index) = attested.build(store, &converted, media_type, platform)?;
    converted.tags = image.tags.clone();
    events.event(&Event::PushStarted {
        reference: target,
        config: &image.id,
    });
    let manifests: Vec<(rbuild_oci::Digest, &str)> = att
        .manifests
        .iter()
        .map(|d| (*d, MEDIA_TYPE_MANIFEST))
        .collect();
    let push_err = |source| BuildError::Push {
        reference: Box::new(target.clone()),
        source,
    };
    let outcome = registry::push_attested_index(
        store,
        client,
        &converted,
        target,
        &att.blobs,
        &manifests,
        (&index.digest, attest::layout::INDEX_MEDIA_TYPE),
        &PushEvents(events),
    )
    .map_err(push_err)?;
    store
        .tag_converted(image, &converted, media_type, target)
        .map_err(|source| push_err(source.into()))?;
    events.event(&Event::Pushed {
        reference: target,
        digest: &outcome.digest,
        size: outcome.size,
    });
    Ok(ExportedManifest {
        digest: outcome.digest,
        size: outcome.size,
        media_type: attest::layout::INDEX_MEDIA_TYPE.to_string(),
    })
}

/// Writes the image's flattened filesystem as a tar to `out` (also
/// `rbuild export`'s). The caller holds a lease on the image.
pub fn write_rootfs_tar(
    store: &Store,
    image: &Image,
    out: &mut dyn Write,
) -> Result<(), BuildError> {
    // Scratch inside the store: swept if we die, same filesystem.
    let work = store.tmp_dir().join("export");
    std::fs::create_dir_all(&work).map_err(|source| BuildError::ScratchDir {
        path: work.clone(),
        source,
    })?;
    let result = unpack_layers(store, image, &work).and_then(|()| {
        layer::pack_dir(&work, out, &PackOptions::default())
            .map(drop)
            .map_err(|source| BuildError::Pack {
                path: work.clone(),
                source,
            })
    });
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Unpacks the image's layers, bottom first, into `dir` (which must
/// exist), applying whiteouts.
pub fn unpack_layers(store: &Store, image: &Image, dir: &Path) -> Result<(), BuildError> {
    for l in &image.layers {
        let mut input = store.open_layer(l)?;
        layer::unpack(&mut input, dir).map_err(|source| BuildError::Unpack {
            layer: l.digest,
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Pushes `image` to `target` encoded as `format` says, its progress as
/// [`Event::PushStarted`], [`Event::Push`] and [`Event::Pushed`]; `target`
/// then names the pushed manifest in the store.
fn push_image(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    format: &ManifestFormat,
    events: &dyn BuildEvents,
) -> Result<ExportedManifest, BuildError> {
    events.event(&Event::PushStarted {
        reference: target,
        config: &image.id,
    });
    let pushed = registry::push_as(
        store,
        client,
        image,
        target,
        Some(format),
        &PushEvents(events),
    )
    .map_err(|source| BuildError::Push {
        reference: Box::new(target.clone()),
        source,
    })?;
    events.event(&Event::Pushed {
        reference: target,
        digest: &pushed.outcome.digest,
        size: pushed.outcome.size,
    });
    Ok(ExportedManifest {
        digest: pushed.outcome.digest,
        size: pushed.outcome.size,
        media_type: pushed.media_type,
    })
}

/// The registry client's push events → build events.
pub(crate) struct PushEvents<'a>(pub(crate) &'a dyn BuildEvents);

impl PushProgress for PushEvents<'_> {
    fn event(&self, event: PushEvent<'_>) {
        self.0.event(&Event::Push(event));
    }
}

/// `--metadata-file`'s content for `image` named `names`, with buildx's
/// keys.
pub fn metadata(image: &Image, names: &[ImageRef]) -> serde_json::Value {
    metadata_of(image, names, None)
}

/// [`metadata`] naming `manifest` (what was pushed or tagged, when it is
/// not the stored manifest) as `containerimage.digest`, as buildx does.
pub fn metadata_of(
    image: &Image,
    names: &[ImageRef],
    manifest: Option<&ExportedManifest>,
) -> serde_json::Value {
    let (digest, size, media_type) = match manifest {
        Some(m) => (m.digest, m.size, m.media_type.as_str()),
        None => (
            image.manifest_digest,
            image.manifest_size,
            MEDIA_TYPE_MANIFEST,
        ),
    };
    let mut meta = json!({
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.digest": digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
        },
    });
    if !names.is_empty() {
        let joined: Vec<String> = names.iter().map(ImageRef::to_string).collect();
        meta["image.name"] = json!(joined.join(","));
    }
    meta
}
