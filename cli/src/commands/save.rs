//! `rbuild save IMAGE… [-o FILE] [--format docker|oci]`: images to a tar.
//!
//! The default archive is both a docker-archive (`manifest.json`,
//! `repositories`) and an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) sharing the same blobs, as Docker ≥ 25 writes it, so
//! `docker load`, skopeo's `docker-archive:` and OCI tools all read it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rbuild_oci::reference::ImageRef;
use rbuild_solver::Digest;
use rbuild_store::layout::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_MANIFEST, OCI_LAYOUT,
    canonical_json,
};
use rbuild_store::{Image, Store};
use serde_json::json;

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
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    // (image, the tag the user named it by, if any)
    let mut selected: Vec<(Image, Option<ImageRef>)> = Vec::new();
    for name in &args.images {
        let image = store.resolve(name)?;
        let tag = ImageRef::parse(name)
            .ok()
            .filter(|r| image.tags.contains(r));
        selected.push((image, tag));
    }
    let _leases = selected
        .iter()
        .map(|(i, _)| store.lease(i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Output::open(args.output.as_deref())?;
    write_archive(&store, &selected, args.format, &mut out)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `selected` images (each with the tag it is saved under, if any)
/// as one archive in `format`; shared with `rbuild build -o
/// type=oci|docker`. The caller holds leases on the images.
pub(crate) fn write_archive(
    store: &Store,
    selected: &[(Image, Option<ImageRef>)],
    format: Format,
    out: &mut Output,
) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index = Index::default();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, tag) in selected {
        let blobs = std::iter::once(image.id)
            .chain(image.layers.iter().map(|l| l.digest))
            .chain(std::iter::once(image.manifest_digest));
        for d in blobs {
            if written.insert(d) {
                let path = store.blob_path(&d);
                let file = store.open_blob(&d)?;
                let len = file
                    .metadata()
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .len();
                let mut h = header(tar::EntryType::Regular, len);
                h.set_cksum();
                tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), file)
                    .with_context(|| format!("cannot archive {}", path.display()))?;
            }
        }
        let mut desc = Descriptor {
            media_type: MEDIA_TYPE_MANIFEST.to_string(),
            digest: image.manifest_digest.to_string(),
            size: image.manifest_size,
            annotations: BTreeMap::new(),
            platform: None,
        };
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
    let mut small = |name: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        h.set_cksum();
        tar.append_data(&mut h, name, data)?;
        Ok(())
    };
    small("index.json", &canonical_json(&index))?;
    if format == Format::Docker {
        small("manifest.json", &serde_json::to_vec(&docker_manifest)?)?;
        if !repositories.is_empty() {
            small("repositories", &serde_json::to_vec(&repositories)?)?;
        }
    }
    small("oci-layout", OCI_LAYOUT.as_bytes())?;
    tar.finish()?;
    Ok(())
}

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
