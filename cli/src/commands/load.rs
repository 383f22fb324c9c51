//! `rbuild load [-i FILE]`: images from a docker-archive or OCI layout tar
//! (plain or gzip'd), from a file or stdin, read by
//! `rbuild_store::archive::load`; one line per image as Docker prints it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rbuild_store::archive::{self, LoadedImage};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read from FILE instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let (input, name): (Box<dyn Read>, String) = match &args.input {
        Some(p) if p != Path::new("-") => (
            Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?),
            p.display().to_string(),
        ),
        _ => {
            use std::io::IsTerminal;
            if io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is a terminal\nhint: use -i FILE or pipe an archive in"
                );
            }
            (Box::new(io::stdin().lock()), "stdin".to_string())
        }
    };
    let store = crate::root::open_store_saying_waits(root)?;
    let loaded = archive::load(&store, &name, input)?;
    // docker's `load` event: actor and `name=` the image ID.
    for image in &loaded {
        let id = image.id.to_string();
        rbuild_container::events::record(root, "image", "load", &id, &[("name", &id)]);
    }
    if !args.quiet {
        for image in &loaded {
            print!("{}", render(image));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's lines for one loaded image: a notice per name moved off
/// another image, then the names (or the ID when it has none).
fn render(image: &LoadedImage) -> String {
    let mut out = String::new();
    for (name, old) in &image.renamed {
        out.push_str(&format!(
            "The image {} already exists, renaming the old one with ID {old} to empty string\n",
            name.familiar()
        ));
    }
    if image.tags.is_empty() {
        out.push_str(&format!("Loaded image ID: {}\n", image.id));
    }
    for t in &image.tags {
        out.push_str(&format!("Loaded image: {}\n", t.familiar()));
    }
    out
}
