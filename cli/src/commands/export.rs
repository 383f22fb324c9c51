//! `rbuild export IMAGE -o FILE`: the image's flattened filesystem as a tar.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rbuild_store::layer::{self, PackOptions};
use rbuild_store::{Image, Store};

use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (name, name:tag, or ID)
    pub image: String,
    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let image = store.resolve(&args.image)?;
    let _lease = store.lease(&image)?;
    let mut out = Output::open(args.output.as_deref())?;
    write_rootfs_tar(&store, &image, &mut out)
        .with_context(|| format!("cannot export {}", args.image))?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the image's flattened filesystem as a tar to `out`; shared with
/// `rbuild build -o type=tar`. The caller holds a lease on the image.
pub(crate) fn write_rootfs_tar(
    store: &Store,
    image: &Image,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // Scratch inside the store: swept if we die, same filesystem.
    let work = store.tmp_dir().join("export");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = (|| -> anyhow::Result<()> {
        unpack_layers(store, image, &work)?;
        layer::pack_dir(&work, out, &PackOptions::default())
            .with_context(|| format!("cannot pack {}", work.display()))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// Unpacks the image's layers, bottom first, into `dir` (which must
/// exist), applying whiteouts; shared with `rbuild build -o type=local`.
pub(crate) fn unpack_layers(store: &Store, image: &Image, dir: &Path) -> anyhow::Result<()> {
    for l in &image.layers {
        let mut input = store.open_layer(l)?;
        layer::unpack(&mut input, dir)
            .with_context(|| format!("cannot unpack layer {} into {}", l.digest, dir.display()))?;
    }
    Ok(())
}
