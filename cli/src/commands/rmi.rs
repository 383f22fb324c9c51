//! `rbuild rmi [-f] IMAGE…` / `rbuild image rm`: untag, and delete images
//! left without tags, like `docker rmi`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use rbuild_oci::reference::ImageRef;
use rbuild_store::{Image, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to remove (name, name:tag, or ID)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an image referenced by several tags, or in use, by ID
    #[arg(short, long)]
    pub force: bool,
    /// Accepted for compatibility (rbuild keeps no parent images)
    #[arg(long)]
    pub no_prune: bool,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store_saying_waits(root)?;
    let mut failed = false;
    for name in &args.images {
        if let Err(e) = remove_one(&store, name, args.force) {
            eprintln!("error: {e:#}");
            failed = true;
        }
    }
    let stats = store.gc(&rbuild_worker::CacheIndexRoots)?;
    let _ = stats;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// True when `name` selects the image itself (by ID, ID prefix, or
/// `name@digest`) rather than one of its tags.
fn names_the_image(name: &str, image: &Image) -> bool {
    match ImageRef::parse(name) {
        Ok(r) => r.digest().is_some() || !image.tags.contains(&r),
        Err(_) => true,
    }
}

fn remove_one(store: &Store, name: &str, force: bool) -> anyhow::Result<()> {
    let image = store.resolve(name)?;
    let in_use = store.is_in_use(&image)?;
    if names_the_image(name, &image) {
        if image.tags.len() > 1 && !force {
            bail!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories\nhint: remove it by name, or pass -f to remove every tag",
                image.id.short()
            );
        }
        if in_use && !force {
            bail!(
                "conflict: unable to delete {} (must be forced) - image is being used by a running process",
                image.id.short()
            );
        }
        for t in &image.tags {
            println!("Untagged: {}", t.familiar());
        }
        store.remove(&image)?;
        println!("Deleted: {}", image.id);
        return Ok(());
    }
    let r = ImageRef::parse(name)?;
    if in_use && image.tags.len() == 1 && !force {
        bail!(
            "conflict: unable to remove repository reference {:?} (must force) - image {} is being used by a running process",
            name,
            image.id.short()
        );
    }
    let (image, removed) = store.untag(&r)?;
    println!("Untagged: {}", r.familiar());
    if removed {
        println!("Deleted: {}", image.id);
    }
    Ok(())
}
