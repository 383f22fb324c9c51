//! `rbuild load [-i FILE]`: images from a docker-archive or OCI layout tar
//! (plain or gzip'd), from a file or stdin.
//!
//! The tar is read once, front to back: every blob is stored as it streams
//! past (verified against its name when the name is a digest), then
//! `manifest.json` (docker-archive) or `index.json` (OCI) says which blobs
//! make which image. Config bytes are kept as they are, so the image ID
//! does not change across save and load.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use rbuild_oci::reference::ImageRef;
use rbuild_solver::Digest;
use rbuild_store::layout::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_LAYER_TAR, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_ZSTD, Manifest,
};
use rbuild_store::{LayerInfo, Store};
use serde::Deserialize;

use super::import::{decompressed, host_arch};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read from FILE instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What the stream held: stored blobs by archive path, symlinks, and the
/// small metadata files.
#[derive(Default)]
struct Archive {
    blobs: BTreeMap<String, (Digest, u64)>,
    links: BTreeMap<String, String>,
    manifest_json: Option<Vec<u8>>,
    index_json: Option<Vec<u8>>,
}

impl Archive {
    /// The blob stored for archive path `path`, following symlinks.
    fn blob(&self, path: &str) -> anyhow::Result<(Digest, u64)> {
        let mut p = normalize(path);
        for _ in 0..16 {
            if let Some(b) = self.blobs.get(&p) {
                return Ok(*b);
            }
            match self.links.get(&p) {
                Some(target) => p = target.clone(),
                None => break,
            }
        }
        Err(anyhow!("the archive has no file {path:?}"))
    }
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
    let input = decompressed(input).with_context(|| format!("cannot read {name}"))?;
    let store = crate::root::open_store(root)?;
    let _session = store.write_session()?;
    let archive = read_archive(&store, input).with_context(|| format!("cannot load {name}"))?;
    let loaded = if let Some(m) = &archive.manifest_json {
        load_docker_archive(&store, &archive, m)
    } else if let Some(i) = &archive.index_json {
        load_oci(&store, &archive, i)
    } else {
        Err(anyhow!(
            "{name} is neither a docker-archive nor an OCI layout: no manifest.json or index.json"
        ))
    }?;
    if !args.quiet {
        for line in loaded {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

fn read_archive(store: &Store, input: Box<dyn Read + '_>) -> anyhow::Result<Archive> {
    let mut archive = Archive::default();
    let mut tar = tar::Archive::new(input);
    for (seen, entry) in tar.entries()?.enumerate() {
        // The tar crate's message for a non-tar quotes raw bytes; say what
        // it means instead when the very first header is bad.
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) if seen == 0 => bail!(
                "not a tar archive (plain or gzip)\nhint: `rbuild load` reads what `rbuild save`, `docker save` or `skopeo copy … oci-archive:…` write"
            ),
            Err(e) => return Err(e.into()),
        };
        let path = normalize(&entry.path()?.to_string_lossy());
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| anyhow!("link {path:?} has no target"))?;
                let target = target.to_string_lossy();
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    let parent = Path::new(&path).parent().unwrap_or(Path::new(""));
                    normalize(&parent.join(&*target).to_string_lossy())
                } else {
                    normalize(&target)
                };
                archive.links.insert(path, resolved);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let file_name = path.rsplit('/').next().unwrap_or_default();
                match path.as_str() {
                    "manifest.json" | "index.json" => {
                        let mut buf = Vec::new();
                        entry.read_to_end(&mut buf)?;
                        if path == "manifest.json" {
                            archive.manifest_json = Some(buf);
                        } else {
                            archive.index_json = Some(buf);
                        }
                    }
                    "repositories" | "oci-layout" => {}
                    _ if file_name == "VERSION" || file_name == "json" => {}
                    _ => {
                        let expected = path
                            .strip_prefix("blobs/sha256/")
                            .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok());
                        let stored = store
                            .put_blob(&mut entry, expected)
                            .with_context(|| format!("bad blob {path:?} in the archive"))?;
                        archive.blobs.insert(path, stored);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(archive)
}

/// The OCI layer media type for a blob, from what the manifest says or,
/// for docker-archives, from the blob's first bytes.
fn layer_media_type(
    store: &Store,
    digest: &Digest,
    declared: Option<&str>,
) -> anyhow::Result<String> {
    Ok(match declared {
        Some(MEDIA_TYPE_DOCKER_LAYER_TAR) => MEDIA_TYPE_LAYER_TAR.to_string(),
        Some(MEDIA_TYPE_DOCKER_LAYER_GZIP) => MEDIA_TYPE_LAYER_GZIP.to_string(),
        Some(other) => other.to_string(),
        None => {
            let mut head = [0u8; 4];
            let mut f = store.open_blob(digest)?;
            let n = f.read(&mut head).unwrap_or(0);
            if head[..n].starts_with(&[0x1f, 0x8b]) {
                MEDIA_TYPE_LAYER_GZIP.to_string()
            } else if head[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
                MEDIA_TYPE_LAYER_ZSTD.to_string()
            } else {
                MEDIA_TYPE_LAYER_TAR.to_string()
            }
        }
    })
}

fn diff_ids(config: &[u8], what: &str) -> anyhow::Result<Vec<Digest>> {
    let c: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(config).with_context(|| format!("bad image config {what}"))?;
    c.rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse::<Digest>()
                .with_context(|| format!("bad diff_id in {what}"))
        })
        .collect()
}

fn load_docker_archive(
    store: &Store,
    archive: &Archive,
    manifest: &[u8],
) -> anyhow::Result<Vec<String>> {
    let entries: Vec<ArchiveManifest> =
        serde_json::from_slice(manifest).context("bad manifest.json")?;
    let mut out = Vec::new();
    for e in entries {
        let (config_digest, _) = archive.blob(&e.config)?;
        let config = store.read_blob(&config_digest)?;
        let ids = diff_ids(&config, &e.config)?;
        if ids.len() != e.layers.len() {
            bail!(
                "manifest.json lists {} layers for {} but its config has {}",
                e.layers.len(),
                e.config,
                ids.len()
            );
        }
        let mut layers = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(ids) {
            let (digest, size) = archive.blob(path)?;
            layers.push(LayerInfo {
                digest,
                diff_id,
                size,
                media_type: layer_media_type(store, &digest, None)?,
            });
        }
        let tags = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| ImageRef::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .context("bad RepoTags in manifest.json")?;
        out.extend(renames(store, &config, &tags));
        let image = store.write_image_raw(&config, &layers, &tags)?;
        report(&mut out, &image.id, &tags);
    }
    Ok(out)
}

/// Docker's notice when a loaded tag moves off another image.
fn renames(store: &Store, config: &[u8], tags: &[ImageRef]) -> Vec<String> {
    let id = Digest::of(config);
    tags.iter()
        .filter_map(|t| {
            let old = store.resolve(t).ok()?;
            (old.id != id).then(|| {
                format!(
                    "The image {} already exists, renaming the old one with ID {} to empty string",
                    t.familiar(),
                    old.id
                )
            })
        })
        .collect()
}

fn report(out: &mut Vec<String>, id: &Digest, tags: &[ImageRef]) {
    if tags.is_empty() {
        out.push(format!("Loaded image ID: {id}"));
    }
    for t in tags {
        out.push(format!("Loaded image: {}", t.familiar()));
    }
}

#[derive(Debug, Deserialize)]
struct AnyManifest {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

fn load_oci(store: &Store, archive: &Archive, index: &[u8]) -> anyhow::Result<Vec<String>> {
    let index: rbuild_store::Index = serde_json::from_slice(index).context("bad index.json")?;
    let _ = archive;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let tags = oci_tags(desc)?;
        let manifest = find_manifest(store, desc, 0)?;
        let config_digest: Digest = manifest
            .config
            .digest
            .parse()
            .context("bad config digest")?;
        let config = store.read_blob(&config_digest)?;
        let ids = diff_ids(&config, &manifest.config.digest)?;
        if ids.len() != manifest.layers.len() {
            bail!(
                "manifest {} has {} layers but its config has {} diff_ids",
                desc.digest,
                manifest.layers.len(),
                ids.len()
            );
        }
        let mut layers = Vec::new();
        for (l, diff_id) in manifest.layers.iter().zip(ids) {
            let digest: Digest = l.digest.parse().context("bad layer digest")?;
            if !store.has_blob(&digest) {
                bail!("the archive lacks layer {digest}");
            }
            layers.push(LayerInfo {
                digest,
                diff_id,
                size: l.size,
                media_type: layer_media_type(store, &digest, Some(&l.media_type))?,
            });
        }
        out.extend(renames(store, &config, &tags));
        let image = store.write_image_raw(&config, &layers, &tags)?;
        report(&mut out, &image.id, &tags);
    }
    Ok(out)
}

/// The names an OCI index entry gives: containerd's full name, else the
/// ref.name annotation when it is a whole reference (not a bare tag).
fn oci_tags(desc: &Descriptor) -> anyhow::Result<Vec<ImageRef>> {
    if let Some(n) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
        return Ok(vec![
            ImageRef::parse(n).with_context(|| format!("bad image name {n:?} in index.json"))?,
        ]);
    }
    match desc.annotations.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains([':', '/']) => Ok(ImageRef::parse(n).ok().into_iter().collect()),
        _ => Ok(Vec::new()),
    }
}

/// The image manifest a descriptor leads to, choosing this platform from
/// nested indexes.
fn find_manifest(store: &Store, desc: &Descriptor, depth: usize) -> anyhow::Result<Manifest> {
    if depth > 4 {
        bail!("index nesting is too deep at {}", desc.digest);
    }
    let digest: Digest = desc
        .digest
        .parse()
        .context("bad manifest digest in index")?;
    let bytes = store.read_blob(&digest)?;
    let any: AnyManifest =
        serde_json::from_slice(&bytes).with_context(|| format!("bad manifest {digest}"))?;
    if let Some(list) = any.manifests {
        let arch = host_arch().to_string();
        let pick = list
            .iter()
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    p.get("os").and_then(|v| v.as_str()) == Some("linux")
                        && p.get("architecture").and_then(|v| v.as_str()) == Some(arch.as_str())
                })
            })
            .or_else(|| {
                list.iter()
                    .find(|d| store.has_blob(&d.digest.parse().unwrap_or(digest)))
            })
            .ok_or_else(|| anyhow!("index {digest} has no manifest for linux/{arch}"))?;
        return find_manifest(store, pick, depth + 1);
    }
    let _ = any.media_type;
    serde_json::from_slice(&bytes).with_context(|| format!("bad manifest {digest}"))
}
