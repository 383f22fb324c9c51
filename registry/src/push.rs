//! `push`: one image from the store to a registry.
//!
//! Blobs first (config and layers, in parallel): a blob the registry has
//! is skipped (`HEAD`), one another repository of the same registry holds
//! is mounted from there, anything else is uploaded (`POST`, then one
//! `PUT` with the digest). The manifest goes last, byte for byte as the
//! store has it, so its digest is the one `rbuild images --digests` and a
//! later pull see. [`push`] sends the image as stored; [`push_as`] first
//! converts it (compressed layer variants, media types, annotations) and
//! then names the pushed manifest in the store under the target.

use std::collections::BTreeSet;

use rbuild_oci::Digest;

use super::{Client, PARALLEL_BLOBS, RegistryError, Repository};
use rbuild_oci::reference::ImageRef;
use rbuild_store::layout::MEDIA_TYPE_MANIFEST;
use rbuild_store::{Image, Store, StoreError};

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry had it.
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted { from: Repository },
    /// Uploaded.
    Uploaded,
}

/// What happens during a push, for progress output.
#[derive(Debug, Clone, Copy)]
pub enum PushEvent<'a> {
    /// A blob is about to be checked and pushed.
    Preparing { digest: &'a Digest, size: u64 },
    /// A blob is on the registry.
    Done {
        digest: &'a Digest,
        result: &'a BlobPush,
    },
}

/// Receives [`PushEvent`]s, possibly from several upload threads.
pub trait PushProgress: Sync {
    fn event(&self, event: PushEvent<'_>);
}

/// Ignores all events.
impl PushProgress for () {
    fn event(&self, _: PushEvent<'_>) {}
}

/// The result of [`push`].
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// The manifest's digest on the registry.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
    /// Blobs uploaded (not skipped or mounted).
    pub uploaded: usize,
}

/// Pushes `image` from `store` to `target` (a tag, or a digest which must
/// be the image's manifest digest).
pub fn push(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    progress: &dyn PushProgress,
) -> Result<PushOutcome, RegistryError> {
    push_inner(store, client, image, target, progress, &BTreeSet::new())
}

/// [`push`], where the blobs in `streamed` went up already (streamed
/// while they were compressed): reported as uploaded, not sent again.
fn push_inner(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    progress: &dyn PushProgress,
    streamed: &BTreeSet<Digest>,
) -> Result<PushOutcome, RegistryError> {
    let repo = Repository::of(target);
    // Another repository on the same registry this image came from or was
    // pushed to (its other tags) may hold the blobs: mount from it.
    let mount_from = image
        .tags
        .iter()
        .map(Repository::of)
        .find(|r| r.registry == repo.registry && r.name != repo.name);
    let mut blobs = vec![(image.id, image.config_size)];
    blobs.extend(image.layers.iter().map(|l| (l.digest, l.size)));
    let uploaded = std::sync::atomic::AtomicUsize::new(0);
    super::for_each_parallel(
        &blobs,
        PARALLEL_BLOBS,
        |(digest, size)| -> Result<(), RegistryError> {
            progress.event(PushEvent::Preparing {
                digest,
                size: *size,
            });
            if streamed.contains(digest) {
                uploaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                progress.event(PushEvent::Done {
                    digest,
                    result: &BlobPush::Uploaded,
                });
                return Ok(());
            }
            // Verified as it streams: the read that would end a blob
            // damaged on disk fails, so the registry never gets it whole.
            let mut file = store.open_blob_verified(digest)?;
            let size = file.size();
            let result = client.push_blob(&repo, digest, size, &mut file, mount_from.as_ref());
            if let Some(source) = file.corrupt_error() {
                return Err(RegistryError::CorruptImage {
                    image: image_label(image),
                    source: Box::new(source),
                });
            }
            let result = result?;
            if result == BlobPush::Uploaded {
                uploaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            progress.event(PushEvent::Done {
                digest,
                result: &result,
            });
            Ok(())
        },
    )?;
    let bytes = store.read_blob(&image.manifest_digest)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string());
    let reference = match (target.tag(), target.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => rbuild_oci::reference::DEFAULT_TAG.to_string(),
    };
    let digest = client.put_manifest(&repo, &reference, &media_type, &bytes)?;
    Ok(PushOutcome {
        digest,
        size: bytes.len() as u64,
        uploaded: uploaded.into_inner(),
    })
}

/// What [`push_as`] pushed: the outcome, and the media type of the
/// manifest it pushed.
#[derive(Debug, Clone)]
pub struct FormattedPush {
    pub outcome: PushOutcome,
    pub media_type: String,
}

/// Pushes `image` encoded as `format` says: its layers as the store's
/// compressed variants ([`Store::convert_image`]: each compressed once and
/// reused by digest, so a second push uploads nothing and another
/// repository of the registry mounts them), its manifest with the asked
/// media types and annotations. `None` pushes the stored manifest as it
/// is. Afterwards `target` names the pushed manifest in the store too, as
/// docker records the digest a push got (the image ID is unchanged).
pub fn push_as(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    format: Option<&rbuild_store::variants::ManifestFormat>,
    progress: &dyn PushProgress,
) -> Result<FormattedPush, RegistryError> {
    let Some(format) = format else {
        let _lease = store.lease(image)?;
        let outcome = push(store, client, image, target, progress)?;
        let media_type = stored_media_type(store, &image.manifest_digest)?;
        return Ok(FormattedPush {
            outcome,
            media_type,
        });
    };
    let _lease = store.lease(image)?;
    let streamed = stream_variants(store, client, target, image, &format.layers)?;
    let (mut converted, _lease, media_type) =
        store
            .convert_image(image, format)
            .map_err(|e| match corrupt_blob(&e) {
                // Compressing read a damaged layer: named as the plain
                // push names it.
                Some(source) => RegistryError::CorruptImage {
                    image: image_label(image),
                    source: Box::new(source),
                },
                None => e.into(),
            })?;
    // The names of every manifest of this image (the stored one, ones
    // pushed before) tell which repository can mount the blobs from.
    converted.tags = image.tags.clone();
    if let Ok(images) = store.images() {
        for other in images.into_iter().filter(|i| i.id == image.id) {
            converted.tags.extend(other.tags);
        }
    }
    let outcome = push_inner(store, client, &converted, target, progress, &streamed.0)?;
    if target.digest().is_none() {
        store.tag_converted(image, &converted, media_type, target)?;
    }
    Ok(FormattedPush {
        outcome,
        media_type: media_type.to_string(),
    })
}

/// A store error naming `image` when it is a damaged blob (as a plain
/// push names it).
fn named_corrupt(e: StoreError, image: &Image) -> RegistryError {
    match corrupt_blob(&e) {
        Some(source) => RegistryError::CorruptImage {
            image: image_label(image),
            source: Box::new(source),
        },
        None => e.into(),
    }
}

/// Layer blobs a push already sent while they were compressed
/// ([`stream_variants`]): the push that follows reports them uploaded
/// instead of sending them again.
#[derive(Debug, Clone, Default)]
pub struct Streamed(BTreeSet<Digest>);

impl Streamed {
    /// Adds what another image's streaming sent.
    pub fn extend(&mut self, other: Streamed) {
        self.0.extend(other.0);
    }
}

/// Before a push of `image` converted to `want`: each layer with no
/// variant of that encoding yet is compressed and uploaded to `target`'s
/// repository at once, the bytes streaming to the registry as they are
/// made (docker's and skopeo's way), instead of compressing the whole
/// layer into the store first and reading it back to upload it. The
/// caller holds a lease on `image`.
pub fn stream_variants(
    store: &Store,
    client: &Client,
    target: &ImageRef,
    image: &Image,
    want: &rbuild_store::variants::LayerCompression,
) -> Result<Streamed, RegistryError> {
    let repo = Repository::of(target);
    let mut streamed = BTreeSet::new();
    for layer in &image.layers {
        if store
            .variant_missing(layer, want)
            .map_err(|e| named_corrupt(e, image))?
        {
            streamed.insert(stream_variant(store, client, &repo, image, layer, want)?);
        }
    }
    Ok(Streamed(streamed))
}

/// Compresses `layer` into a new variant in the store and uploads it to
/// `repo` at once (a thread compresses into a bounded pipe the upload
/// reads); returns the variant's digest.
fn stream_variant(
    store: &Store,
    client: &Client,
    repo: &Repository,
    image: &Image,
    layer: &rbuild_store::LayerInfo,
    want: &rbuild_store::variants::LayerCompression,
) -> Result<Digest, RegistryError> {
    let (mut writer, mut reader) = pipe();
    std::thread::scope(|scope| {
        let compressing = scope.spawn(move || {
            let made = store.layer_variant_teed(layer, want, &mut writer);
            drop(writer);
            made
        });
        let mut compressing = Some(compressing);
        let mut made = None;
        let mut finish = || -> Result<Digest, RegistryError> {
            let handle = compressing.take().expect("finish is called once");
            let v = handle
                .join()
                .expect("the compression thread panicked")
                .map_err(|e| named_corrupt(e, image))?;
            made = Some(v.digest);
            Ok(v.digest)
        };
        let sent = client.push_blob_streamed(repo, &mut reader, &mut finish);
        drop(reader);
        // The upload failed before the stream ended: the compression
        // stops at its next write; its result (an error) is dropped.
        if let Some(handle) = compressing.take() {
            let _ = handle.join();
        }
        sent?;
        Ok(made.expect("a finished upload has its digest"))
    })
}

/// Bytes in flight between the compressing thread and the upload.
const PIPE_CHUNK: usize = 256 * 1024;
const PIPE_CHUNKS: usize = 4;

/// A bounded in-memory pipe (at most [`PIPE_CHUNKS`] chunks waiting).
fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = std::sync::mpsc::sync_channel(PIPE_CHUNKS);
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(PIPE_CHUNK),
        },
        PipeReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        },
    )
}

struct PipeWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl PipeWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        self.tx
            .send(full)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl std::io::Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PIPE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIPE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

struct PipeReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                // The writer is gone: the end.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `image` as `rbuild images` shows it: its first name and its ID.
fn image_label(image: &Image) -> String {
    format!(
        "{} (ID {})",
        image
            .tags
            .first()
            .map(|t| t.familiar())
            .unwrap_or_else(|| "<none>".to_string()),
        image.id.short()
    )
}

/// The corrupt blob `e` reports, directly or through the I/O error of a
/// verified read.
fn corrupt_blob(e: &StoreError) -> Option<StoreError> {
    let found = match e {
        StoreError::Io { source, .. } => source.get_ref()?.downcast_ref::<StoreError>()?,
        other => other,
    };
    match found {
        StoreError::CorruptBlob { digest, actual } => Some(StoreError::CorruptBlob {
            digest: *digest,
            actual: *actual,
        }),
        _ => None,
    }
}

/// True when every layer of `image` is stored compressed: pushing it as
/// stored already sends no uncompressed bytes.
pub fn layers_compressed(store: &Store, image: &Image) -> Result<bool, RegistryError> {
    for l in &image.layers {
        if store.blob_encoding(&l.digest)? == rbuild_store::LayerEncoding::Tar {
            return Ok(false);
        }
    }
    Ok(true)
}

fn stored_media_type(store: &Store, manifest: &Digest) -> Result<String, RegistryError> {
    let bytes = store.read_blob(manifest)?;
    Ok(serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string()))
}

/// Pushes an image index: each of `images` (the image manifests the
/// index `index` names, all in the store) by digest, then every other
/// manifest it lists (attestation manifests: their config and layers,
/// then themselves, by digest), then the index itself under `target`'s
/// tag, byte for byte as the store has it. The outcome names the index.
pub fn push_index(
    store: &Store,
    client: &Client,
    index: &rbuild_store::ImageIndex,
    images: &[Image],
    target: &ImageRef,
    progress: &dyn PushProgress,
) -> Result<PushOutcome, RegistryError> {
    push_index_streamed(
        store,
        client,
        index,
        images,
        target,
        progress,
        &Streamed::default(),
    )
}

/// [`push_index`] after [`stream_variants`] sent `streamed`.
pub fn push_index_streamed(
    store: &Store,
    client: &Client,
    index: &rbuild_store::ImageIndex,
    images: &[Image],
    target: &ImageRef,
    progress: &dyn PushProgress,
    streamed: &Streamed,
) -> Result<PushOutcome, RegistryError> {
    let repo = Repository::of(target);
    let mut uploaded = 0;
    for image in images {
        let _lease = store.lease(image)?;
        let by_digest = target.with_digest(image.manifest_digest);
        uploaded += push_inner(store, client, image, &by_digest, progress, &streamed.0)?.uploaded;
    }
    for entry in &index.manifests {
        let Ok(digest) = entry.digest.parse::<Digest>() else {
            continue;
        };
        if images.iter().any(|i| i.manifest_digest == digest) {
            continue;
        }
        uploaded += push_manifest_tree(store, client, &repo, &digest, &entry.media_type, progress)?;
    }
    let bytes = store.read_blob(&index.digest)?;
    let reference = match (target.tag(), target.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => rbuild_oci::reference::DEFAULT_TAG.to_string(),
    };
    let digest = client.put_manifest(&repo, &reference, &index.media_type, &bytes)?;
    Ok(PushOutcome {
        digest,
        size: bytes.len() as u64,
        uploaded,
    })
}

/// Pushes a manifest that is no image of the store (an attestation
/// manifest): its config and layers, then itself by digest; returns how
/// many blobs were uploaded.
fn push_manifest_tree(
    store: &Store,
    client: &Client,
    repo: &Repository,
    manifest: &Digest,
    media_type: &str,
    progress: &dyn PushProgress,
) -> Result<usize, RegistryError> {
    let parsed = store.read_manifest(manifest)?;
    let mut uploaded = 0;
    for d in std::iter::once(&parsed.config).chain(&parsed.layers) {
        let Ok(digest) = d.digest.parse::<Digest>() else {
            continue;
        };
        let mut file = store.open_blob_verified(&digest)?;
        let size = file.size();
        progress.event(PushEvent::Preparing {
            digest: &digest,
            size,
        });
        let result = client.push_blob(repo, &digest, size, &mut file, None);
        if let Some(source) = file.corrupt_error() {
            return Err(source.into());
        }
        let result = result?;
        if result == BlobPush::Uploaded {
            uploaded += 1;
        }
        progress.event(PushEvent::Done {
            digest: &digest,
            result: &result,
        });
    }
    let bytes = store.read_blob(manifest)?;
    client.put_manifest(repo, &manifest.to_string(), media_type, &bytes)?;
    Ok(uploaded)
}
