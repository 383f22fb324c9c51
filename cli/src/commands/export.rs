//! `rbuild export CONTAINER|IMAGE -o FILE`: the container's (as docker
//! export) or the image's flattened filesystem as a tar.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container, or an image (name, name:tag, or ID)
    pub image: String,
    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    // docker export takes a container; rbuild's images export too.
    if let Ok(c) = rbuild_container::Containers::open(root).and_then(|c| c.get(&args.image)) {
        return super::container::export(root, &c, args.output.as_deref());
    }
    let store = crate::root::open_store(root)?;
    let image = store.resolve(&args.image)?;
    let _lease = store.lease(&image)?;
    let mut out = Output::open(args.output.as_deref())?;
    rbuild_builder::export::write_rootfs_tar(&store, &image, &mut out)
        .with_context(|| format!("cannot export {}", args.image))?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
