//! `rbuild tag SOURCE TARGET`: another name for an image.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rbuild_oci::reference::ImageRef;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to name (name, name:tag, or ID)
    pub source: String,
    /// The new name, e.g. myapp:v1
    pub target: String,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let target = ImageRef::parse(&args.target).context("bad target name")?;
    if target.digest().is_some() {
        anyhow::bail!(
            "refusing to create a tag with a digest reference: {}\nhint: give a name and tag such as myapp:v1",
            args.target
        );
    }
    let store = crate::root::open_store(root)?;
    let image = store.resolve(&args.source)?;
    store.tag(&image, &target)?;
    let name = target.familiar();
    rbuild_container::events::record(
        root,
        "image",
        "tag",
        &image.id.to_string(),
        &[("name", &name)],
    );
    Ok(ExitCode::SUCCESS)
}
