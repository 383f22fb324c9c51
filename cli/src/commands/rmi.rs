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
    let users = super::container::images_in_use(root);
    for name in &args.images {
        if let Err(e) = remove_one(root, &store, name, args.force, &users) {
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

/// Prints docker's `Untagged: NAME` and records the `untag` event (docker
/// names the image ID in both its actor and `name=`).
fn untagged(root: &Path, image: &Image, tag: &ImageRef) {
    println!("Untagged: {}", tag.familiar());
    let id = image.id.to_string();
    rbuild_container::events::record(root, "image", "untag", &id, &[("name", &id)]);
}

/// Prints docker's `Deleted: ID` and records the `delete` event.
fn deleted(root: &Path, image: &Image) {
    println!("Deleted: {}", image.id);
    let id = image.id.to_string();
    rbuild_container::events::record(root, "image", "delete", &id, &[("name", &id)]);
}

fn remove_one(
    root: &Path,
    store: &Store,
    name: &str,
    force: bool,
    users: &[(String, String)],
) -> anyhow::Result<()> {
    let image = store.resolve(name)?;
    let in_use = store.is_in_use(&image)?;
    // A container's image is one of its roots: refused without -f, and
    // with -f only untagged (the container still runs on it), as docker.
    let (manifest, config_id) = (image.manifest_digest.to_string(), image.id.to_string());
    let user = users
        .iter()
        .find(|(m, _)| *m == manifest || *m == config_id)
        .map(|(_, id)| id);
    // Untagging one of several tags never touches the image.
    let last_name = names_the_image(name, &image) || image.tags.len() <= 1;
    if let Some(id) = user.filter(|_| last_name) {
        if !force {
            if names_the_image(name, &image) {
                bail!(
                    "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                    image.id.short(),
                    &id[..12]
                );
            }
            bail!(
                "conflict: unable to remove repository reference {:?} (must force) - container {} is using its referenced image {}",
                name,
                &id[..12],
                image.id.short()
            );
        }
        let tags = if names_the_image(name, &image) {
            image.tags.clone()
        } else {
            vec![ImageRef::parse(name)?]
        };
        for t in &tags {
            let (img, removed) = store.untag(t)?;
            untagged(root, &img, t);
            if removed {
                // Kept as a dangling image for the container.
                let config = store.read_blob(&img.id)?;
                store.write_image_raw(&config, &img.layers, &[])?;
            }
        }
        return Ok(());
    }
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
        store.remove(&image)?;
        for t in &image.tags {
            untagged(root, &image, t);
        }
        deleted(root, &image);
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
    untagged(root, &image, &r);
    if removed {
        deleted(root, &image);
    }
    Ok(())
}
