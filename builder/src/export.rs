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

use std::io::Write;
use std::path::Path;

use rbuild_oci::reference::ImageRef;
use rbuild_registry as registry;
use rbuild_registry::{Client, PushEvent, PushProgress};
use rbuild_store::archive::{self, ArchiveFormat};
use rbuild_store::layer::{self, PackOptions};
use rbuild_store::layout::MEDIA_TYPE_MANIFEST;
use rbuild_store::{Image, Store};
use serde_json::json;

use crate::error::{BuildError, HostError};
use crate::events::{BuildEvents, Event};
use crate::request::BuildRequest;
use crate::spec::OutputSpec;

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

/// After a successful build: exports the image to each output, tags it
/// (always: `-t` names the image in the store whatever the outputs) and
/// pushes it when asked. Returns the names it got.
pub(crate) fn export_all(
    store: &Store,
    request: &BuildRequest,
    image: &Image,
    client: &Client,
    events: &dyn BuildEvents,
    host: &dyn ExportHost,
) -> Result<Vec<ImageRef>, BuildError> {
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
    for out in &request.outputs {
        export(store, image, out, &names, host)?;
    }
    if request
        .outputs
        .iter()
        .all(|o| !matches!(o, OutputSpec::Image { .. }))
    {
        let store_only = OutputSpec::Image {
            names: vec![],
            push: false,
        };
        export(store, image, &store_only, &names, host)?;
    }
    // `-o type=image,push=true` pushes like `--push`: to every name the
    // image exporter got (buildx hands it the `-t` tags as names too).
    let push = request.push
        || request
            .outputs
            .iter()
            .any(|o| matches!(o, OutputSpec::Image { push: true, .. }));
    if push {
        if names.is_empty() {
            return Err(BuildError::PushNeedsName);
        }
        for name in &names {
            push_image(store, client, image, name, events)?;
        }
    }
    Ok(names)
}

/// Exports `image` (already in `store`) to `output`; `names` are the
/// `-t` tags and `type=image,name=` names, normalized.
pub fn export(
    store: &Store,
    image: &Image,
    output: &OutputSpec,
    names: &[ImageRef],
    host: &dyn ExportHost,
) -> Result<(), BuildError> {
    let _lease = store.lease(image)?;
    match output {
        OutputSpec::Image { .. } => {
            for name in names {
                store.tag(image, name).map_err(|source| BuildError::Tag {
                    name: Box::new(name.clone()),
                    source,
                })?;
            }
            Ok(())
        }
        OutputSpec::Oci { dest } => {
            write_image_archive(store, image, names, ArchiveFormat::Oci, dest, host)
        }
        OutputSpec::Docker { dest } => {
            write_image_archive(store, image, names, ArchiveFormat::Docker, dest, host)
        }
        OutputSpec::Tar { dest } => {
            let mut out = host.open(dest).map_err(BuildError::Host)?;
            write_rootfs_tar(store, image, &mut out)?;
            out.finish().map_err(BuildError::Host)
        }
        OutputSpec::Local { dest } => {
            std::fs::create_dir_all(dest).map_err(|source| BuildError::OutputDir {
                path: dest.clone(),
                source,
            })?;
            unpack_layers(store, image, dest)
        }
    }
}

/// Writes `image` as an image archive in `format` to `dest`, listed once
/// per name in `names` (once without a name when there is none). The
/// caller holds a lease on the image.
fn write_image_archive(
    store: &Store,
    image: &Image,
    names: &[ImageRef],
    format: ArchiveFormat,
    dest: &Path,
    host: &dyn ExportHost,
) -> Result<(), BuildError> {
    let selected: Vec<(Image, Option<ImageRef>)> = if names.is_empty() {
        vec![(image.clone(), None)]
    } else {
        names
            .iter()
            .map(|n| (image.clone(), Some(n.clone())))
            .collect()
    };
    let mut out = host.open(dest).map_err(BuildError::Host)?;
    archive::write_archive(store, &selected, format, &mut out).map_err(|source| {
        BuildError::Archive {
            dest: dest.to_path_buf(),
            source,
        }
    })?;
    out.finish().map_err(BuildError::Host)
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

/// Pushes `image` to `target`, its progress as [`Event::PushStarted`],
/// [`Event::Push`] and [`Event::Pushed`].
fn push_image(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    events: &dyn BuildEvents,
) -> Result<(), BuildError> {
    events.event(&Event::PushStarted {
        reference: target,
        config: &image.id,
    });
    let lease = store.lease(image)?;
    let outcome =
        registry::push(store, client, image, target, &PushEvents(events)).map_err(|source| {
            BuildError::Push {
                reference: Box::new(target.clone()),
                source,
            }
        })?;
    drop(lease);
    events.event(&Event::Pushed {
        reference: target,
        digest: &outcome.digest,
        size: outcome.size,
    });
    Ok(())
}

/// The registry client's push events → build events.
struct PushEvents<'a>(&'a dyn BuildEvents);

impl PushProgress for PushEvents<'_> {
    fn event(&self, event: PushEvent<'_>) {
        self.0.event(&Event::Push(event));
    }
}

/// `--metadata-file`'s content for `image` named `names`, with buildx's
/// keys.
pub fn metadata(image: &Image, names: &[ImageRef]) -> serde_json::Value {
    let mut meta = json!({
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.digest": image.manifest_digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": MEDIA_TYPE_MANIFEST,
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest_size,
        },
    });
    if !names.is_empty() {
        let joined: Vec<String> = names.iter().map(ImageRef::to_string).collect();
        meta["image.name"] = json!(joined.join(","));
    }
    meta
}
