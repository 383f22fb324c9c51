//! `rbuild push IMAGE[:TAG]`: an image from the store to its registry,
//! with docker's output.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rbuild_oci::reference::ImageRef;
use rbuild_registry as registry;
use rbuild_registry::{BlobPush, Client, PushEvent, PushProgress};
use rbuild_store::layer::Compression;
use rbuild_store::variants::{LayerCompression, ManifestFormat};
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
    /// Layer compression: gzip, zstd or uncompressed (podman's flag)
    /// [default: gzip for layers stored uncompressed; compressed layers
    /// go as they are]
    #[arg(long = "compression-format", value_name = "FORMAT", value_parser = parse_compression)]
    pub compression_format: Option<Compression>,
    /// Compression level: gzip 0-9, zstd 0-22
    #[arg(long = "compression-level", value_name = "N")]
    pub compression_level: Option<String>,
    /// Re-compress layers stored compressed another way
    #[arg(long = "force-compression")]
    pub force_compression: bool,
    /// Manifest format: v2s2 (Docker, the default) or oci (podman's flag)
    #[arg(long = "format", value_name = "FORMAT", value_parser = ["v2s2", "oci"])]
    pub format: Option<String>,
}

fn parse_compression(s: &str) -> anyhow::Result<Compression> {
    match s.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "uncompressed" | "none" => Ok(Compression::None),
        _ => bail!("unsupported compression {s:?}\nhint: gzip, zstd or uncompressed"),
    }
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let target = ImageRef::parse(&args.image)?;
    let compression = args.compression_format.unwrap_or(Compression::Gzip);
    let level = match &args.compression_level {
        None => None,
        Some(text) => {
            let n: i32 = text.trim().parse().map_err(|_| {
                anyhow::anyhow!("invalid --compression-level {text:?}: expected a number")
            })?;
            let range = match compression {
                Compression::Zstd => 0..=22,
                _ => 0..=9,
            };
            if !range.contains(&n) {
                bail!(
                    "invalid --compression-level {n}: levels for {compression:?} are {} to {}",
                    range.start(),
                    range.end()
                );
            }
            Some(n)
        }
    };
    let store = crate::root::open_store(root)?;
    let image = store.resolve_ref(&target)?;
    let client = super::pull::client(Some(root), &args.insecure_registries)?;
    let asked = args.compression_format.is_some()
        || level.is_some()
        || args.force_compression
        || args.format.is_some();
    // An image whose layers are all compressed (a pulled one, one pushed
    // before) goes as stored unless a flag says otherwise: its digest stays.
    let format = if asked || !registry::layers_compressed(&store, &image)? {
        Some(ManifestFormat {
            layers: LayerCompression {
                compression,
                level,
                force: args.force_compression,
            },
            oci_media_types: args.format.as_deref() == Some("oci"),
            annotations: Default::default(),
        })
    } else {
        None
    };
    // A multi-platform tag: every platform, then the index (docker
    // buildx imagetools' result), not only the host's image.
    if let Some(index) = image.index.clone() {
        push_index(&store, &client, &image, &index, &target, format, args.quiet)?;
        pushed(root, &target);
        return Ok(ExitCode::SUCCESS);
    }
    push_image(
        &store,
        &client,
        &image,
        &target,
        format.as_ref(),
        args.quiet,
    )?;
    pushed(root, &target);
    Ok(ExitCode::SUCCESS)
}

/// docker's `push` event: actor and `name=` the familiar reference.
fn pushed(root: &Path, target: &ImageRef) {
    let name = target.familiar();
    rbuild_container::events::record(root, "image", "push", &name, &[("name", &name)]);
}

/// Pushes every platform of `index` (whose tag resolved to `image`) as
/// `format` says (`None`: as stored), then the index under `target`.
fn push_index(
    store: &Store,
    client: &Client,
    image: &Image,
    index: &rbuild_store::ImageIndex,
    target: &ImageRef,
    format: Option<ManifestFormat>,
    quiet: bool,
) -> anyhow::Result<()> {
    use rbuild_builder::index::{IndexParts, convert_and_assemble, stored_platforms};
    let cannot = || format!("cannot push {}", target.familiar());
    // Each platform with what its stored attestation manifest states,
    // stated again about the manifest as pushed.
    let platforms = stored_platforms(store, image, index).with_context(cannot)?;
    let attested = platforms.iter().any(|p| !p.predicates.is_empty());
    let format = format.map(|mut f| {
        // Attestation manifests are OCI, and so is what they are about.
        f.oci_media_types |= attested;
        f
    });
    // New compressed layers go up as they are made.
    let mut streamed = registry::Streamed::default();
    if let Some(f) = &format {
        for p in &platforms {
            let _lease = store.lease(&p.image)?;
            streamed.extend(
                registry::stream_variants(store, client, target, &p.image, &f.layers)
                    .with_context(cannot)?,
            );
        }
    }
    let format_of = |_: &rbuild_oci::Platform| (format.clone(), Default::default());
    let parts = IndexParts {
        names: &image.tags,
        annotations: &index.annotations,
    };
    let converted =
        convert_and_assemble(store, &platforms, &format_of, parts, None).with_context(cannot)?;
    print_started(target, quiet);
    let printer = Printer {
        quiet,
        config: image.id,
    };
    let outcome = registry::push_index_streamed(
        store,
        client,
        &converted.index,
        &converted.images,
        target,
        &printer,
        &streamed,
    )
    .with_context(|| format!("cannot push {}", target.familiar()))?;
    print_pushed(target, &outcome.digest, outcome.size);
    Ok(())
}

/// Pushes `image` to `target` encoded as `format` says (`None`: as
/// stored), printing docker's lines.
pub fn push_image(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    format: Option<&ManifestFormat>,
    quiet: bool,
) -> anyhow::Result<()> {
    print_started(target, quiet);
    let printer = Printer {
        quiet,
        config: image.id,
    };
    let pushed = registry::push_as(store, client, image, target, format, &printer)
        .with_context(|| format!("cannot push {}", target.familiar()))?;
    print_pushed(target, &pushed.outcome.digest, pushed.outcome.size);
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
