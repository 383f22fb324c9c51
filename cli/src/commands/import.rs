//! `rbuild import FILE|DIR|- [REF]`: a root filesystem (tar, plain or gzip,
//! or a directory) becomes a one-layer image, like `docker import`
//! (`rbuild_store::archive::import`); prints the new image's ID.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rbuild_oci::reference::ImageRef;
use rbuild_oci::time;
use rbuild_store::archive::{self, ImportOptions, RootFs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A tar archive (plain or gzip), a directory, or `-` for a tar on stdin
    pub source: String,
    /// Name and tag for the new image, e.g. busybox:latest
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT,
    /// ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message for the imported layer's history
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// The image's platform (default: this machine's)
    #[arg(long, value_name = "OS/ARCH", value_parser = rbuild_builder::spec::parse::parse_platform)]
    pub platform: Option<rbuild_oci::Platform>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let tag = args
        .reference
        .as_deref()
        .map(ImageRef::parse)
        .transpose()
        .with_context(|| "bad image name for import".to_string())?;
    let config = archive::config_from_changes(&args.changes)?;

    let store = crate::root::open_store_saying_waits(root)?;
    let source = args.source.as_str();
    let path = PathBuf::from(source);
    let rootfs = if source != "-" && path.is_dir() {
        RootFs::Dir(&path)
    } else if source == "-" {
        RootFs::Tar(Box::new(io::stdin().lock()))
    } else {
        RootFs::Tar(Box::new(
            File::open(&path).with_context(|| format!("cannot open {source}"))?,
        ))
    };
    let (secs, nanos) = time::now();
    let options = ImportOptions {
        config,
        created: time::rfc3339_nanos(secs, nanos),
        comment: args.message,
        tags: tag.into_iter().collect(),
        platform: args.platform,
    };
    let id = archive::import(&store, source, rootfs, &options)?;
    println!("{id}");
    let id = id.to_string();
    rbuild_container::events::record(root, "image", "import", &id, &[("name", &id)]);
    Ok(ExitCode::SUCCESS)
}
