//! `rbuild save IMAGE… [-o FILE] [--format docker|oci]`: images to a tar
//! (written by `rbuild_store::archive::write_archive`).
//!
//! The default archive is both a docker-archive and an OCI image layout
//! sharing the same blobs, as Docker ≥ 25 writes it, so `docker load`,
//! skopeo's `docker-archive:` and OCI tools all read it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rbuild_oci::reference::ImageRef;
use rbuild_store::Image;
use rbuild_store::archive::{self, ArchiveFormat};

use super::output::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// docker-archive and OCI layout in one tar
    Docker,
    /// a pure OCI image layout tar
    Oci,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to save (name, name:tag, or ID)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,
    /// Platform (os/arch[/variant]): of a multi-platform image, that platform's image
    #[arg(long, value_name = "OS/ARCH", value_parser = rbuild_builder::spec::parse::parse_platform)]
    pub platform: Option<rbuild_oci::Platform>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    // (image, the tag the user named it by, if any)
    let mut selected: Vec<(Image, Option<ImageRef>)> = Vec::new();
    for name in &args.images {
        let image = store.resolve_for(name.as_str(), args.platform.as_ref())?;
        let tag = ImageRef::parse(name)
            .ok()
            .filter(|r| image.tags.contains(r));
        selected.push((image, tag));
    }
    let _leases = selected
        .iter()
        .map(|(i, _)| store.lease(i))
        .collect::<Result<Vec<_>, _>>()?;
    let format = match args.format {
        Format::Docker => ArchiveFormat::Docker,
        Format::Oci => ArchiveFormat::Oci,
    };
    // One multi-platform tag and no --platform: every platform under its
    // index (in a docker archive, `manifest.json` names the host's image,
    // what `docker load` can hold under the name).
    if let [(image, tag)] = selected.as_slice() {
        if let (Some(index), None) = (&image.index, &args.platform) {
            let host = rbuild_oci::Platform::host();
            let mut platforms = index.platforms();
            platforms.sort_by_key(|p| *p != host);
            let mut all = Vec::new();
            for p in platforms {
                all.push((store.for_platform(image.clone(), &p)?, tag.clone()));
            }
            let leases = all
                .iter()
                .map(|(i, _)| store.lease(i))
                .collect::<Result<Vec<_>, _>>()?;
            let description = archive::ManifestDescription {
                media_type: None,
                annotations: Default::default(),
                index: Some(index.clone()),
            };
            let mut out = Output::open(args.output.as_deref())?;
            archive::write_archive_described(&store, &all, format, &mut out, &description)?;
            out.finish()?;
            drop(leases);
            saved(root, &selected);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut out = Output::open(args.output.as_deref())?;
    archive::write_archive(&store, &selected, format, &mut out)?;
    out.finish()?;
    saved(root, &selected);
    Ok(ExitCode::SUCCESS)
}

/// docker's `save` event, one per image (actor and `name=`: the image ID).
fn saved(root: &Path, selected: &[(Image, Option<ImageRef>)]) {
    for (image, _) in selected {
        let id = image.id.to_string();
        rbuild_container::events::record(root, "image", "save", &id, &[("name", &id)]);
    }
}
