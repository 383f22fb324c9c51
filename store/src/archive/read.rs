//! [`load`]: a docker-archive or OCI layout tar (plain or gzip'd) → images
//! in the store.
//!
//! The tar is read once, front to back: every blob is stored as it streams
//! past (verified against its name when the name is a digest), then
//! `manifest.json` (docker-archive) or `index.json` (OCI) says which blobs
//! make which image. Config bytes are kept as they are, so the image ID
//! does not change across save and load.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use rbuild_oci::Digest;
use rbuild_oci::reference::ImageRef;
use serde::Deserialize;

use super::{ArchiveError, decompressed, host_arch};
use crate::layout::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_LAYER_TAR, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_ZSTD, Manifest,
};
use crate::{LayerInfo, Staging, Store, StoreError};

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// One image [`load`] wrote to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Its ID (the config digest, as in the archive).
    pub id: Digest,
    /// The names the archive gives it, now pointing at it in the store.
    pub tags: Vec<ImageRef>,
    /// Those of [`tags`](Self::tags) that named another image before, with
    /// that image's ID (Docker reports them as renamed to the empty
    /// string), in the order of `tags`.
    pub renamed: Vec<(ImageRef, Digest)>,
}

/// Loads the images of a docker-archive or OCI layout tar, plain or
/// gzip'd, read from `input` (named `name` in errors) into `store`, in the
/// order the archive lists them. An OCI index entry that is itself an
/// index gives the manifest for this machine's platform.
pub fn load(store: &Store, name: &str, input: impl Read) -> Result<Vec<LoadedImage>> {
    let input = decompressed(Box::new(input)).map_err(|source| ArchiveError::Read {
        name: name.to_string(),
        source,
    })?;
    let _session = store.write_session()?;
    // Everything lands in a staging area first and enters the store only
    // once every image in the archive checked out: a refused archive
    // leaves no blob and tags nothing.
    let staging = store.staging()?;
    let archive = read_stream(&staging, name, input)?;
    let images = if let Some(m) = &archive.manifest_json {
        docker_archive_images(&staging, &archive, m)?
    } else if let Some(i) = &archive.index_json {
        oci_images(&staging, i)?
    } else {
        return Err(ArchiveError::UnknownLayout {
            name: name.to_string(),
        });
    };
    for image in &images {
        staging
            .check_layers(&image.layers)
            .map_err(|source| ArchiveError::BadLayer {
                name: name.to_string(),
                image: image.label(),
                source: Box::new(source),
            })?;
    }
    staging.publish()?;
    images
        .into_iter()
        .map(|i| write_image(store, &i.config, &i.layers, i.tags))
        .collect()
}

/// An image read from an archive, not yet in the store.
struct PendingImage {
    config: Vec<u8>,
    layers: Vec<LayerInfo>,
    tags: Vec<ImageRef>,
}

impl PendingImage {
    /// The image as `rbuild images` will show it: a name and its ID.
    fn label(&self) -> String {
        let name = self
            .tags
            .first()
            .map(|t| t.familiar())
            .unwrap_or_else(|| "<none>".to_string());
        format!("{name} (ID {})", Digest::of(&self.config).short())
    }
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
    fn blob(&self, path: &str) -> Result<(Digest, u64)> {
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
        Err(ArchiveError::MissingFile {
            path: path.to_string(),
        })
    }
}

/// `path` with `.` and `..` resolved lexically, without a leading `/`.
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

/// Reads the whole tar, storing every blob as it streams past.
fn read_stream(staging: &Staging<'_>, name: &str, input: Box<dyn Read + '_>) -> Result<Archive> {
    let broken = |source| ArchiveError::Load {
        name: name.to_string(),
        source,
    };
    let mut archive = Archive::default();
    let mut tar = tar::Archive::new(input);
    for (seen, entry) in tar.entries().map_err(broken)?.enumerate() {
        // The tar crate's message for a non-tar quotes raw bytes; say what
        // it means instead when the very first header is bad.
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) if seen == 0 => {
                return Err(ArchiveError::NotTar {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(broken(e)),
        };
        let path = normalize(&entry.path().map_err(broken)?.to_string_lossy());
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name().map_err(broken)? else {
                    return Err(ArchiveError::LinkWithoutTarget {
                        name: name.to_string(),
                        path,
                    });
                };
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
                        entry.read_to_end(&mut buf).map_err(broken)?;
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
                        let declared = entry.size();
                        let mut exact = Exact {
                            inner: &mut entry,
                            left: declared,
                        };
                        let stored = match staging.put(&mut exact, expected) {
                            Ok(stored) => stored,
                            // The archive broke off: not this blob's fault.
                            Err(StoreError::Input { source }) => return Err(broken(source)),
                            // The disk is full (or other local trouble):
                            // not the archive's fault either.
                            Err(e @ (StoreError::DiskFull { .. } | StoreError::Io { .. })) => {
                                return Err(e.into());
                            }
                            Err(source) => {
                                return Err(ArchiveError::BadBlob {
                                    name: name.to_string(),
                                    path,
                                    source: Box::new(source),
                                });
                            }
                        };
                        archive.blobs.insert(path, stored);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(archive)
}

/// An archive entry's body that must hold as many bytes as its header
/// says: the tar reader ends a cut-short body quietly, which would read
/// as a blob with the wrong digest instead of a truncated archive.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ends {} bytes before this entry does",
                    self.left
                ),
            ));
        }
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

/// The OCI layer media type for a blob, from what the manifest says or,
/// for docker-archives, from the blob's first bytes.
fn layer_media_type(
    store: &Staging<'_>,
    digest: &Digest,
    declared: Option<&str>,
) -> Result<String> {
    Ok(match declared {
        Some(MEDIA_TYPE_DOCKER_LAYER_TAR) => MEDIA_TYPE_LAYER_TAR.to_string(),
        Some(MEDIA_TYPE_DOCKER_LAYER_GZIP) => MEDIA_TYPE_LAYER_GZIP.to_string(),
        Some(other) => other.to_string(),
        None => {
            let mut head = [0u8; 4];
            let mut f = store.open(digest)?;
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

/// The config's `rootfs.diff_ids`; `what` names the config in errors.
fn diff_ids(config: &[u8], what: &str) -> Result<Vec<Digest>> {
    let c: rbuild_oci::ImageConfig =
        serde_json::from_slice(config).map_err(|source| ArchiveError::Json {
            what: format!("image config {what}"),
            source,
        })?;
    c.rootfs
        .diff_ids
        .iter()
        .map(|d| {
            d.parse::<Digest>().map_err(|source| ArchiveError::Digest {
                what: format!("diff_id in {what}"),
                source,
            })
        })
        .collect()
}

fn docker_archive_images(
    store: &Staging<'_>,
    archive: &Archive,
    manifest: &[u8],
) -> Result<Vec<PendingImage>> {
    let entries: Vec<ArchiveManifest> =
        serde_json::from_slice(manifest).map_err(|source| ArchiveError::Json {
            what: "manifest.json".to_string(),
            source,
        })?;
    let mut out = Vec::new();
    for e in entries {
        let (config_digest, _) = archive.blob(&e.config)?;
        let config = store.read(&config_digest)?;
        let ids = diff_ids(&config, &e.config)?;
        if ids.len() != e.layers.len() {
            return Err(ArchiveError::DockerLayerCount {
                config: e.config,
                layers: e.layers.len(),
                diff_ids: ids.len(),
            });
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
            .map_err(|source| ArchiveError::Reference {
                what: "RepoTags in manifest.json".to_string(),
                source,
            })?;
        out.push(PendingImage {
            config,
            layers,
            tags,
        });
    }
    Ok(out)
}

/// Writes one image, noting which of its tags move off another image
/// (looked up before the write moves them).
fn write_image(
    store: &Store,
    config: &[u8],
    layers: &[LayerInfo],
    tags: Vec<ImageRef>,
) -> Result<LoadedImage> {
    let id = Digest::of(config);
    let renamed = tags
        .iter()
        .filter_map(|t| {
            let old = store.resolve(t).ok()?;
            (old.id != id).then(|| (t.clone(), old.id))
        })
        .collect();
    let image = store.write_image_raw(config, layers, &tags)?;
    Ok(LoadedImage {
        id: image.id,
        tags,
        renamed,
    })
}

/// Just enough of a manifest or index to tell them apart.
#[derive(Debug, Deserialize)]
struct AnyManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

fn oci_images(store: &Staging<'_>, index: &[u8]) -> Result<Vec<PendingImage>> {
    let index: Index = serde_json::from_slice(index).map_err(|source| ArchiveError::Json {
        what: "index.json".to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let tags = oci_tags(desc)?;
        let manifest = find_manifest(store, desc, 0)?;
        let config_digest: Digest =
            manifest
                .config
                .digest
                .parse()
                .map_err(|source| ArchiveError::Digest {
                    what: "config digest".to_string(),
                    source,
                })?;
        let config = store.read(&config_digest)?;
        let ids = diff_ids(&config, &manifest.config.digest)?;
        if ids.len() != manifest.layers.len() {
            return Err(ArchiveError::OciLayerCount {
                manifest: desc.digest.clone(),
                layers: manifest.layers.len(),
                diff_ids: ids.len(),
            });
        }
        let mut layers = Vec::new();
        for (l, diff_id) in manifest.layers.iter().zip(ids) {
            let digest: Digest = l.digest.parse().map_err(|source| ArchiveError::Digest {
                what: "layer digest".to_string(),
                source,
            })?;
            if !store.has(&digest) {
                return Err(ArchiveError::MissingLayer { digest });
            }
            layers.push(LayerInfo {
                digest,
                diff_id,
                size: l.size,
                media_type: layer_media_type(store, &digest, Some(&l.media_type))?,
            });
        }
        out.push(PendingImage {
            config,
            layers,
            tags,
        });
    }
    Ok(out)
}

/// The names an OCI index entry gives: containerd's full name, else the
/// ref.name annotation when it is a whole reference (not a bare tag).
fn oci_tags(desc: &Descriptor) -> Result<Vec<ImageRef>> {
    if let Some(n) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
        let name = ImageRef::parse(n).map_err(|source| ArchiveError::Reference {
            what: format!("image name {n:?} in index.json"),
            source,
        })?;
        return Ok(vec![name]);
    }
    match desc.annotations.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains([':', '/']) => Ok(ImageRef::parse(n).ok().into_iter().collect()),
        _ => Ok(Vec::new()),
    }
}

/// The image manifest a descriptor leads to, choosing this platform from
/// nested indexes.
fn find_manifest(store: &Staging<'_>, desc: &Descriptor, depth: usize) -> Result<Manifest> {
    if depth > 4 {
        return Err(ArchiveError::IndexTooDeep {
            digest: desc.digest.clone(),
        });
    }
    let digest: Digest = desc.digest.parse().map_err(|source| ArchiveError::Digest {
        what: "manifest digest in index".to_string(),
        source,
    })?;
    let bytes = store.read(&digest)?;
    let bad_manifest = |source| ArchiveError::Json {
        what: format!("manifest {digest}"),
        source,
    };
    let any: AnyManifest = serde_json::from_slice(&bytes).map_err(bad_manifest)?;
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
                    .find(|d| store.has(&d.digest.parse().unwrap_or(digest)))
            })
            .ok_or(ArchiveError::NoPlatform { digest, arch })?;
        return find_manifest(store, pick, depth + 1);
    }
    serde_json::from_slice(&bytes).map_err(bad_manifest)
}
