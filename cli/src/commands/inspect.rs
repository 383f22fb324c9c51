//! `rbuild inspect IMAGE…` / `rbuild image inspect`: Docker-compatible JSON.

use std::path::Path;
use std::process::ExitCode;

use rbuild_store::Image;
use rbuild_template::Template;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to inspect (name, name:tag, name@digest, or ID)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format each result with a Go template, e.g. '{{.Config.Env}}', or
    /// `json`
    #[arg(short, long)]
    pub format: Option<String>,
    /// Platform (os/arch[/variant]): of a multi-platform image, that platform's image
    #[arg(long, value_name = "OS/ARCH", value_parser = rbuild_builder::spec::parse::parse_platform)]
    pub platform: Option<rbuild_oci::Platform>,
}

pub fn run(root: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let store = crate::root::open_store(root)?;
    let template = match args.format.as_deref() {
        None | Some("json") => None,
        Some(t) => Some(Template::parse(t)?),
    };
    let mut results = Vec::new();
    let mut failed = false;
    let containers = rbuild_container::Containers::open(root)?;
    for name in &args.images {
        if let Ok(c) = containers.get(name) {
            results.push(super::container::inspect_json(root, &c));
            continue;
        }
        if let Ok(v) = rbuild_container::volume::get(root, name) {
            results.push(serde_json::json!({
                "CreatedAt": v.created, "Driver": "local", "Labels": v.labels,
                "Mountpoint": v.mountpoint, "Name": v.name, "Options": {}, "Scope": "local",
            }));
            continue;
        }
        match store.resolve_for(name.as_str(), args.platform.as_ref()) {
            // `{{json .SBOM}}`: the image's SBOM, scanned only when asked.
            Ok(image) if args.format.as_deref().is_some_and(|f| f.contains(".SBOM")) => {
                let mut v = inspect_json(&image);
                let doc = match super::sbom::stored_document(&store, &image)? {
                    Some(doc) => doc,
                    None => super::sbom::document(&store, &image, name)?,
                };
                v["SBOM"] = serde_json::to_value(&doc)?;
                results.push(v);
            }
            Ok(image) => results.push(inspect_json(&image)),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    match template {
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(results))?),
        Some(t) => {
            for r in &results {
                println!("{}", t.render(r)?);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The object `docker image inspect` prints for one image.
pub fn inspect_json(image: &Image) -> Value {
    let c = &image.config;
    let mut repo_digests: Vec<String> = image
        .tags
        .iter()
        .map(|t| format!("{}@{}", t.familiar_repository(), image.manifest_digest))
        .collect();
    repo_digests.dedup();
    let comment = c
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    let mut out = json!({
        "Id": image.id.to_string(),
        "RepoTags": image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": comment,
        "Created": c.created.clone().unwrap_or_default(),
        "DockerVersion": "",
        "Author": c.author.clone().unwrap_or_default(),
        "Config": serde_json::to_value(&c.config).expect("config serializes"),
        "Architecture": c.architecture.clone(),
        "Os": c.os.clone(),
        "Size": image.size(),
        "RootFS": {
            "Type": c.rootfs.kind,
            "Layers": c.rootfs.diff_ids,
        },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
        "Descriptor": {
            "mediaType": rbuild_store::layout::MEDIA_TYPE_MANIFEST,
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest_size,
        },
    });
    // Docker leaves Variant out unless the image names one.
    if let Some(v) = &c.variant {
        out["Variant"] = Value::String(v.clone());
    }
    out
}
