//! `rbuild push IMAGE[:TAG]`: an image from the store to its registry,
//! with docker's output.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rbuild_oci::reference::ImageRef;
use rbuild_registry as registry;
use rbuild_registry::{BlobPush, Client, PushEvent, PushProgress};
use rbuild_store::{Image, Store};

use super::pull::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to push: NAME[:TAG]
    pub image: String,
    /// Suppress the progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// Reach this registry (HOST[:PORT]) over plain HTTP; repeatable (also
    /// RBUILD_INSECURE_REGISTRIES, comma-separated, and "insecure-registries"
    /// in rbuild's config.json)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let target = ImageRef::parse(&args.image)?;
    let store = crate::root::open_store(root)?;
    let image = store.resolve_ref(&target)?;
    let client = super::pull::client(Some(root), &args.insecure_registries)?;
    push_image(&store, &client, &image, &target, args.quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// Pushes `image` to `target` printing docker's lines.
pub fn push_image(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    quiet: bool,
) -> anyhow::Result<()> {
    print_started(target, quiet);
    let printer = Printer {
        quiet,
        config: image.id,
    };
    let lease = store.lease(image)?;
    let outcome = registry::push(store, client, image, target, &printer)
        .with_context(|| format!("cannot push {}", target.familiar()))?;
    drop(lease);
    print_pushed(target, &outcome.digest, outcome.size);
    Ok(())
}

/// docker's first line of a push (none with `quiet`); also `build --push`'s.
pub fn print_started(target: &ImageRef, quiet: bool) {
    if !quiet {
        println!(
            "The push refers to repository [{}]",
            target.familiar_repository()
        );
    }
}

/// docker's last line of a push, printed even with `quiet`.
pub fn print_pushed(target: &ImageRef, digest: &rbuild_solver::Digest, size: u64) {
    let tag = target.tag().unwrap_or("latest");
    println!("{tag}: digest: {digest} size: {size}");
}

/// Prints docker's line per layer blob of a push (`config` is the image's
/// config blob, which docker does not show).
pub struct Printer {
    pub quiet: bool,
    pub config: rbuild_solver::Digest,
}

impl PushProgress for Printer {
    fn event(&self, event: PushEvent<'_>) {
        // Docker shows layers only, never the config blob.
        match event {
            _ if self.quiet => {}
            PushEvent::Preparing { digest, .. } | PushEvent::Done { digest, .. }
                if *digest == self.config => {}
            PushEvent::Preparing { digest, .. } => println!("{}: Preparing", short(digest)),
            PushEvent::Done { digest, result } => {
                let status = match result {
                    BlobPush::Exists => "Layer already exists".to_string(),
                    BlobPush::Mounted { from } => format!("Mounted from {}", from.name),
                    BlobPush::Uploaded => "Pushed".to_string(),
                };
                println!("{}: {status}", short(digest));
            }
        }
    }
}
