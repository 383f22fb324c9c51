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
use rbuild_store::archive::{self, ArchiveFormat, ManifestDescription};
use rbuild_store::layer::{self, PackOptions};
use rbuild_store::layout::MEDIA_TYPE_MANIFEST;
use rbuild_store::variants::ManifestFormat;
use rbuild_store::{Image, Store};
use serde_json::json;

use crate::attest::{self, Capture, Predicate};
use crate::error::{BuildError, HostError};
use crate::events::{BuildEvents, Event};
use crate::index::{ConvertedIndex, IndexParts, PlatformImage, convert_and_assemble};
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

/// What the exporters did: the names the image got, the manifest the
/// last output wrote (an archive's), named or pushed when it differs from
/// the stored one (a push's comes last, as buildx reports it), and the
/// index the names point at in the store when the image is attested.
pub(crate) struct Exported {
    pub(crate) names: Vec<ImageRef>,
    pub(crate) manifest: Option<ExportedManifest>,
    pub(crate) index: Option<rbuild_store::ImageIndex>,
}

/// The annotations of `kind` (`index:`, `index-descriptor:`) among
/// `--annotation`s and an output's own.
pub(crate) fn annotations_of(
    kind: AnnotationKind,
    request: &[Annotation],
    format: &ImageFormat,
) -> BTreeMap<String, String> {
    request
        .iter()
        .chain(&format.annotations)
        .filter(|a| a.kind == kind)
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect()
}

/// The predicates an output attaches: all of them for pushes, only those
/// that are not `inline-only` for `oci` and `docker` archives of one
/// platform (as BuildKit's exporters filter them) and for the store
/// (unless `attestation-inline=true`).
pub(crate) fn attached(predicates: &[Predicate], inline: bool) -> Vec<Predicate> {
    predicates
        .iter()
        .filter(|p| inline || !p.inline_only)
        .cloned()
        .collect()
}

/// One platform's export: the image, its names and what it states.
struct Single<'a> {
    store: &'a Store,
    image: &'a Image,
    names: &'a [ImageRef],
    annotations: &'a [Annotation],
    platform: &'a Platform,
    predicates: &'a [Predicate],
}

impl Single<'_> {
    /// The index over the image converted as `format` says, stating
    /// `predicates`, with the output's `index:` annotations; listed
    /// under `tags` when given. `None` when nothing calls for an index
    /// (no predicate, no index annotation); an index annotation alone is
    /// BuildKit's refusal.
    fn index(
        &self,
        format: Option<ManifestFormat>,
        descriptor: BTreeMap<String, String>,
        image_format: &ImageFormat,
        predicates: Vec<Predicate>,
        tags: Option<&[ImageRef]>,
    ) -> Result<Option<ConvertedIndex>, BuildError> {
        let index_annotations =
            annotations_of(AnnotationKind::Index, self.annotations, image_format);
        if predicates.is_empty() {
            if !index_annotations.is_empty() {
                return Err(BuildError::IndexAnnotationsSinglePlatform);
            }
            return Ok(None);
        }
        let images = [PlatformImage {
            platform: self.platform.clone(),
            image: self.image.clone(),
            predicates,
        }];
        let format_of = move |_: &Platform| (format.clone(), descriptor.clone());
        let parts = IndexParts {
            names: self.names,
            annotations: &index_annotations,
        };
        Ok(Some(convert_and_assemble(
            self.store, &images, &format_of, parts, tags,
        )?))
    }
}

pub(crate) fn exported_index(index: &rbuild_store::ImageIndex) -> ExportedManifest {
    ExportedManifest {
        digest: index.digest,
        size: index.size,
        media_type: index.media_type.clone(),
    }
}

/// After a successful build: exports the image to each output, tags it
/// (always: `-t` names the image in the store whatever the outputs) and
/// pushes it when asked, each push as its image output's format says
/// (gzip and Docker media types by default, as BuildKit); a pushed name
/// then names the pushed manifest in the store. An attested image is an
/// index in the store, the archives and the registry
/// ([`crate::index`]).
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
    let single = Single {
        store,
        image,
        names: &names,
        annotations: &request.annotations,
        platform: &platform,
        predicates: &predicates,
    };
    let mut manifest = None;
    let mut stored = None;
    for out in &request.outputs {
        if let Some(m) = export_output(&single, out, host, &mut stored)? {
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
        let m = export_output(&single, &store_only, host, &mut stored)?;
        if stored.is_some() && manifest.is_none() {
            manifest = m;
        }
    }
    // `-o type=image,push=true` pushes like `--push`: to every name the
    // image exporter got (buildx hands it the `-t` tags as names too).
    if push {
        if names.is_empty() {
            return Err(BuildError::PushNeedsName);
        }
        let format = image_output.unwrap_or_default();
        let (mut manifest_format, descriptor) =
            manifest_format(&format, false, &request.annotations, &platform);
        // BuildKit turns OCI media types on for attestations.
        manifest_format.oci_media_types |= !predicates.is_empty();
        let attach = attached(&predicates, format.attestation_inline.unwrap_or(true));
        // New compressed layers go up as they are made, to the first name.
        let streamed = if attach.is_empty() {
            registry::Streamed::default()
        } else {
            registry::stream_variants(store, client, &names[0], image, &manifest_format.layers)
                .map_err(|source| BuildError::Push {
                    reference: Box::new(names[0].clone()),
                    source,
                })?
        };
        match single.index(
            Some(manifest_format.clone()),
            descriptor,
            &format,
            attach,
            None,
        )? {
            Some(converted) => {
                for (i, name) in names.iter().enumerate() {
                    let sent = if i == 0 {
                        streamed.clone()
                    } else {
                        registry::Streamed::default()
                    };
                    push_converted_index(
                        store,
                        client,
                        &converted,
                        name,
                        stored.as_ref(),
                        &sent,
                        events,
                    )?;
                }
                manifest = Some(exported_index(&converted.index));
            }
            None => {
                for name in &names {
                    manifest = Some(push_image(
                        store,
                        client,
                        image,
                        name,
                        &manifest_format,
                        events,
                    )?);
                }
            }
        }
    }
    Ok(Exported {
        names,
        manifest,
        index: stored,
    })
}

/// Pushes `converted` (an index in its pushed form) to `name`, which then
/// names it in the store (replacing `stored`, the index as built);
/// `streamed` went up already ([`registry::stream_variants`]).
pub(crate) fn push_converted_index(
    store: &Store,
    client: &Client,
    converted: &ConvertedIndex,
    name: &ImageRef,
    stored: Option<&rbuild_store::ImageIndex>,
    streamed: &registry::Streamed,
    events: &dyn BuildEvents,
) -> Result<(), BuildError> {
    events.event(&Event::PushStarted {
        reference: name,
        config: &converted.index.digest,
    });
    let push_err = |source| BuildError::Push {
        reference: Box::new(name.clone()),
        source,
    };
    let outcome = registry::push_index_streamed(
        store,
        client,
        &converted.index,
        &converted.images,
        name,
        &PushEvents(events),
        streamed,
    )
    .map_err(push_err)?;
    events.event(&Event::Pushed {
        reference: name,
        digest: &outcome.digest,
        size: outcome.size,
    });
    // The name now stands for what the registry has.
    store
        .tag_index(&converted.index, name, stored)
        .map_err(|source| push_err(source.into()))
}

/// The store's manifest format for an image output, and the
/// manifest-descriptor annotations; `oci_default` is the exporter's
/// `oci-mediatypes` default. `extra` are `--annotation`s; those for
/// another platform than `platform` are left out, and so are the index
/// ones.
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
            AnnotationKind::Manifest => {
                manifest.insert(a.key.clone(), a.value.clone());
            }
            AnnotationKind::ManifestDescriptor => {
                descriptor.insert(a.key.clone(), a.value.clone());
            }
            AnnotationKind::Index | AnnotationKind::IndexDescriptor => {}
        }
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
    let single = Single {
        store,
        image,
        names,
        annotations: &[],
        platform: &Platform::host(),
        predicates: &[],
    };
    export_output(&single, output, host, &mut None).map(drop)
}

/// [`export`] of one platform's image with its `--annotation`s and
/// predicates; returns the manifest (or index) an archive holds, or the
/// one `type=image` named when it is not the stored one. The image
/// output's index goes in `stored`.
fn export_output(
    single: &Single<'_>,
    output: &OutputSpec,
    host: &dyn ExportHost,
    stored: &mut Option<rbuild_store::ImageIndex>,
) -> Result<Option<ExportedManifest>, BuildError> {
    let Single {
        store,
        image,
        names,
        annotations,
        platform,
        predicates,
    } = *single;
    let _lease = store.lease(image)?;
    match output {
        OutputSpec::Image { format, .. } => {
            let (mut manifest_format, descriptor) =
                manifest_format(format, false, annotations, platform);
            // The store, unlike buildx's containerd image store, keeps no
            // default (`inline-only`) provenance: it would make every
            // cached rebuild a new index and leave the last one dangling
            // (moby/moby#48391). Pushes attach it; `attestation-inline=true`
            // or an explicit `--provenance` keeps it here too.
            let attach = attached(predicates, format.attestation_inline.unwrap_or(false));
            // Named: an attested image is an index in the store (unnamed,
            // the bare manifest stays, as it was stored).
            if !names.is_empty() || attach.is_empty() {
                manifest_format.oci_media_types |= !attach.is_empty();
                let store_format =
                    (!manifest_format.annotations.is_empty()).then_some(manifest_format.clone());
                if let Some(converted) =
                    single.index(store_format, descriptor, format, attach, Some(names))?
                {
                    if converted.images[0].manifest_digest != image.manifest_digest {
                        store.drop_dangling(&image.manifest_digest)?;
                    }
                    let m = exported_index(&converted.index);
                    *stored = Some(converted.index);
                    return Ok(Some(m));
                }
            }
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
            let kind = if oci {
                ArchiveFormat::Oci
            } else {
                ArchiveFormat::Docker
            };
            let (mut f, mut descriptor) = manifest_format(format, oci, annotations, platform);
            let attach = attached(predicates, format.attestation_inline.unwrap_or(false));
            let index_descriptor =
                annotations_of(AnnotationKind::IndexDescriptor, annotations, format);
            // BuildKit turns OCI media types on for attestations.
            f.oci_media_types |= !attach.is_empty();
            let converted =
                single.index(Some(f.clone()), descriptor.clone(), format, attach, None)?;
            let mut out = host.open(dest).map_err(BuildError::Host)?;
            let written = match &converted {
                Some(c) => {
                    let selected = [(c.images[0].clone(), names.first().cloned())];
                    let description = ManifestDescription {
                        media_type: None,
                        annotations: index_descriptor,
                        index: Some(c.index.clone()),
                    };
                    archive::write_archive_described(store, &selected, kind, &mut out, &description)
                        .map(|()| exported_index(&c.index))
                }
                None => {
                    // One manifest: `index.json` names it, with the
                    // manifest- and index-descriptor annotations.
                    descriptor.extend(index_descriptor);
                    let (c, _lease, media_type) = store.convert_image(image, &f)?;
                    let selected: Vec<(Image, Option<ImageRef>)> = if names.is_empty() {
                        vec![(c.clone(), None)]
                    } else {
                        names.iter().map(|n| (c.clone(), Some(n.clone()))).collect()
                    };
                    let description = ManifestDescription {
                        media_type: Some(media_type.to_string()),
                        annotations: descriptor,
                        index: None,
                    };
                    archive::write_archive_described(store, &selected, kind, &mut out, &description)
                        .map(|()| ExportedManifest {
                            digest: c.manifest_digest,
                            size: c.manifest_size,
                            media_type: media_type.to_string(),
                        })
                }
            }
            .map_err(|source| BuildError::Archive {
                dest: dest.clone(),
                source,
            })?;
            out.finish().map_err(BuildError::Host)?;
            Ok(Some(written))
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

/// The predicates the request's attestations ask for (empty when none
/// is asked): provenance from `capture`, the SBOM from the image's
/// filesystem.
pub(crate) fn attestation_predicates(
    store: &Store,
    request: &BuildRequest,
    image: &Image,
    names: &[ImageRef],
    capture: &Capture,
) -> Result<Vec<Predicate>, BuildError> {
    if request.attestations.is_empty() {
        return Ok(Vec::new());
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
