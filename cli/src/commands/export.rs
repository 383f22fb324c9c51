//! `rbuild export IMAGE -o FILE`: the image's flattened filesystem as a tar.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rbuild_executor::layer::{self, PackOptions};

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
    // Scratch inside the store: swept if we die, same filesystem.
    let work = store.tmp_dir().join("export");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = (|| -> anyhow::Result<()> {
        for l in &image.layers {
            let mut input = store.open_layer(l)?;
            layer::unpack(&mut input, &work)
                .with_context(|| format!("cannot unpack layer {}", l.digest))?;
        }
        let mut out = Output::open(args.output.as_deref())?;
        layer::pack_dir(&work, &mut out, &PackOptions::default())
            .with_context(|| format!("cannot export {}", args.image))?;
        out.finish()
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(ExitCode::SUCCESS)
}
