//! `rbuild sbom IMAGE`: the packages in a stored image: the SBOM
//! attestation stored with it (`--sbom=true` on a named build) when it
//! has one, else what the attestation would list (rbuild's own scanner
//! over the image's filesystem): SPDX 2.3 JSON, or a table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_store::{Image, Store};

use super::table::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SPDX 2.3 JSON, as the attestation's predicate
    SpdxJson,
    /// NAME, VERSION and TYPE of each package
    Table,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (name, name:tag, name@digest, or ID)
    pub image: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::SpdxJson)]
    pub format: Format,
    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let image = store.resolve(&args.image)?;
    let doc = match stored_document(&store, &image)? {
        Some(doc) => doc,
        None => document(&store, &image, &args.image)?,
    };
    let text = match args.format {
        Format::SpdxJson => serde_json::to_string_pretty(&doc)? + "\n",
        Format::Table => {
            let mut table = Table::new(&["NAME", "VERSION", "TYPE"]);
            for row in rbuild_sbom::spdx::rows(&doc) {
                table.row(row.to_vec());
            }
            table.render()
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The SPDX document the image's stored attestation manifest holds, if
/// it was read through an index that has one about its manifest.
pub fn stored_document(
    store: &Store,
    image: &Image,
) -> anyhow::Result<Option<rbuild_sbom::spdx::Document>> {
    let Some(index) = &image.index else {
        return Ok(None);
    };
    let predicates =
        rbuild_builder::attest::layout::stored_predicates(store, index, &image.manifest_digest)?;
    let Some(p) = predicates
        .into_iter()
        .find(|p| p.predicate_type == rbuild_sbom::spdx::PREDICATE_TYPE)
    else {
        return Ok(None);
    };
    let doc = serde_json::from_value(p.predicate)
        .context("the image's stored SBOM attestation is not an SPDX document")?;
    Ok(Some(doc))
}

/// The SPDX document of `image`, named `name` (the image's full name
/// when `name` resolves to a tag), dated `SOURCE_DATE_EPOCH` when set,
/// else the image's creation time, so the same image gives the same
/// document.
pub fn document(
    store: &Store,
    image: &Image,
    name: &str,
) -> anyhow::Result<rbuild_sbom::spdx::Document> {
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => rbuild_oci::time::rfc3339(
            v.parse()
                .with_context(|| format!("invalid SOURCE_DATE_EPOCH {v:?}: expected seconds"))?,
        ),
        _ => image
            .created()
            .and_then(rbuild_oci::time::parse_rfc3339)
            .map(rbuild_oci::time::rfc3339)
            .unwrap_or_else(|| rbuild_oci::time::rfc3339(rbuild_oci::time::now_secs())),
    };
    let name = image
        .tags
        .iter()
        .find(|t| t.familiar() == name || t.to_string() == name)
        .map(|t| t.to_string())
        .unwrap_or_else(|| name.to_string());
    Ok(rbuild_builder::attest::sbom_document(
        store, image, &name, &created,
    )?)
}
