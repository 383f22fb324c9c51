//! `pull`: one image from a registry into the store.
//!
//! Order matters for crash safety: blobs first (each verified against its
//! digest while it streams into a staging area, and each layer read
//! through the unpacker's checks before it moves into the store, so a
//! wrong, truncated or hostile blob never becomes visible; the diffIDs
//! are checked against the config before anything is tagged), then the manifest exactly as the
//! registry sent it (so the manifest digest and the image ID, the config
//! digest, stay the registry's), then the tag. A pull interrupted at any
//! point leaves only complete, verified blobs, and a retry skips them.

use std::io::Write;

use rbuild_oci::Digest;
use rbuild_oci::Platform;

use super::{Client, MEDIA_TYPE_DOCKER_MANIFEST_LIST, PARALLEL_BLOBS, RegistryError, Repository};
use rbuild_oci::reference::ImageRef;
use rbuild_store::layout::{
    Index, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, Manifest,
};
use rbuild_store::{Image, Staging, Store, StoreError};

/// What happens during a pull, for progress output.
#[derive(Debug, Clone, Copy)]
pub enum PullEvent<'a> {
    /// A pull of `reference` begins; the first event of every pull.
    Started { reference: &'a ImageRef },
    /// The manifest to pull is known.
    Resolved { manifest: &'a Digest },
    /// A blob is needed: `exists` when the store has it already; `layer`
    /// is false for the image config.
    Blob {
        digest: &'a Digest,
        layer: bool,
        size: u64,
        exists: bool,
    },
    /// `bytes` more of a blob arrived.
    Progress { digest: &'a Digest, bytes: u64 },
    /// A blob was verified and stored.
    Stored { digest: &'a Digest },
    /// The pull ended; the last event of every pull. `error` is the
    /// failure's message (the caller gets the error itself too).
    Finished { error: Option<&'a str> },
}

/// Receives [`PullEvent`]s, possibly from several download threads.
pub trait PullProgress: Sync {
    fn event(&self, event: PullEvent<'_>);
}

/// Ignores all events.
impl PullProgress for () {
    fn event(&self, _: PullEvent<'_>) {}
}

/// The result of [`pull`].
#[derive(Debug)]
pub struct PullOutcome {
    /// The image as the store now has it (tagged with the reference).
    pub image: Image,
    /// The digest of the manifest list the reference named, when it named
    /// one (what `Digest:` shows, as in docker), else the manifest's.
    pub reference_digest: Digest,
    /// Blobs that were downloaded (0: everything was present).
    pub downloaded: usize,
    /// True when the reference already named this manifest in the store.
    pub up_to_date: bool,
}

/// Pulls `reference` for `platform` from its registry into `store` and
/// tags it with `reference`. Events go to `progress`, between
/// [`PullEvent::Started`] and [`PullEvent::Finished`].
pub fn pull(
    store: &Store,
    client: &Client,
    reference: &ImageRef,
    platform: &Platform,
    progress: &dyn PullProgress,
) -> Result<PullOutcome, RegistryError> {
    progress.event(PullEvent::Started { reference });
    let result = pull_image(store, client, reference, platform, progress);
    let error = result
        .as_ref()
        .err()
        .map(|e| rbuild_oci::error_chain_line(e));
    progress.event(PullEvent::Finished {
        error: error.as_deref(),
    });
    result
}

fn pull_image(
    store: &Store,
    client: &Client,
    reference: &ImageRef,
    platform: &Platform,
    progress: &dyn PullProgress,
) -> Result<PullOutcome, RegistryError> {
    let repo = Repository::of(reference);
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => rbuild_oci::reference::DEFAULT_TAG.to_string(),
    };
    let (mut bytes, mut media_type, reference_digest) = client.get_manifest(&repo, &wanted)?;
    let mut manifest_digest = reference_digest;
    if media_type == MEDIA_TYPE_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST {
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json {
                what: format!("index of {}", reference.familiar()),
                source,
            })?;
        let chosen = super::select_manifest(&index.manifests, platform).map_err(|available| {
            RegistryError::NoPlatform {
                reference: reference.familiar(),
                wanted: platform.to_string(),
                available: if available.is_empty() {
                    "no platforms".to_string()
                } else {
                    available.join(", ")
                },
            }
        })?;
        (bytes, media_type, manifest_digest) = client.get_manifest(&repo, &chosen.digest)?;
    }
    if media_type != MEDIA_TYPE_MANIFEST && media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(RegistryError::UnsupportedManifest {
            reference: reference.familiar(),
            media_type,
        });
    }
    progress.event(PullEvent::Resolved {
        manifest: &manifest_digest,
    });
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json {
            what: format!("manifest of {}", reference.familiar()),
            source,
        })?;
    let up_to_date = store
        .resolve_ref(reference)
        .is_ok_and(|img| img.manifest_digest == manifest_digest);

    // Held until the tag points at the manifest, so a concurrent gc cannot
    // take blobs this pull stored but the index does not reach yet.
    let _session = store.write_session()?;
    // Blobs land in a staging area and enter the store only once the
    // image checked out (digests, every new layer unpackable, diffIDs):
    // a refused or cut pull leaves nothing behind.
    let staging = store.staging()?;
    let parse = |text: &str| {
        text.parse::<Digest>()
            .map_err(|_| RegistryError::BadDigest {
                what: format!("manifest of {}", reference.familiar()),
                text: text.to_string(),
            })
    };
    let mut blobs = vec![(parse(&manifest.config.digest)?, manifest.config.size)];
    for l in &manifest.layers {
        let d = parse(&l.digest)?;
        // A layer listed twice (old images repeat the empty layer) is
        // fetched once.
        if !blobs.iter().any(|(b, _)| *b == d) {
            blobs.push((d, l.size));
        }
    }
    // The config's rootfs must name as many layers as the manifest, or the
    // store could not read the image back; check before anything is tagged.
    let downloaded = std::sync::atomic::AtomicUsize::new(0);
    let layer_index = |d: &Digest| {
        manifest
            .layers
            .iter()
            .position(|l| l.digest == d.to_string())
    };
    let diff_ids = std::sync::Mutex::new(std::collections::BTreeMap::new());
    super::for_each_parallel(
        &blobs,
        PARALLEL_BLOBS,
        |(digest, size)| -> Result<(), RegistryError> {
            let exists = staging.has(digest);
            progress.event(PullEvent::Blob {
                digest,
                layer: *digest != blobs[0].0,
                size: *size,
                exists,
            });
            if exists {
                return Ok(());
            }
            fetch_into_store(&staging, client, &repo, digest, *size, progress)?;
            // A layer must unpack before it enters the store; whole,
            // checked blobs enter at once so a retry skips them.
            if let Some(i) = layer_index(digest) {
                let diff_id = staging
                    .check_layer(digest, &manifest.layers[i].media_type, i == 0)
                    .map_err(|source| RegistryError::BadLayer {
                        reference: reference.familiar(),
                        source: Box::new(source),
                    })?;
                diff_ids
                    .lock()
                    .expect("diff_ids lock")
                    .insert(*digest, diff_id);
            }
            staging.publish_one(digest)?;
            downloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            progress.event(PullEvent::Stored { digest });
            Ok(())
        },
    )?;
    let config: rbuild_oci::ImageConfig = serde_json::from_slice(&staging.read(&blobs[0].0)?)
        .map_err(|source| RegistryError::Json {
            what: format!("image config of {}", reference.familiar()),
            source,
        })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(StoreError::LayerMismatch {
            declared: config.rootfs.diff_ids.len(),
            given: manifest.layers.len(),
        }
        .into());
    }
    let mut layers = Vec::new();
    for (l, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        layers.push(rbuild_store::LayerInfo {
            digest: parse(&l.digest)?,
            diff_id: diff_id.parse().map_err(|_| RegistryError::BadDigest {
                what: format!("image config of {}", reference.familiar()),
                text: diff_id.clone(),
            })?,
            size: l.size,
            media_type: l.media_type.clone(),
        });
    }
    // Layers downloaded now must hash to the config's diffIDs.
    let diff_ids = diff_ids.into_inner().expect("diff_ids lock");
    for l in &layers {
        if let Some(actual) = diff_ids.get(&l.digest)
            && *actual != l.diff_id
        {
            return Err(RegistryError::BadLayer {
                reference: reference.familiar(),
                source: Box::new(rbuild_store::StagedLayerError::DiffId {
                    digest: l.digest,
                    expected: l.diff_id,
                    actual: *actual,
                }),
            });
        }
    }
    store.put_blob(&mut bytes.as_slice(), Some(manifest_digest))?;
    // Tagged with the media type it was served with: a Docker v2
    // manifest stays one in index.json. The image is read back from the
    // store below, which also checks it.
    store.tag_manifest(&manifest_digest, bytes.len() as u64, &media_type, reference)?;
    let image = store.resolve_ref(reference)?;
    Ok(PullOutcome {
        image,
        reference_digest,
        downloaded: downloaded.into_inner(),
        up_to_date,
    })
}

/// Downloads one blob into the staging area, verified against `digest`
/// and `size`; a body cut short (reset, stalled, fewer bytes) is fetched
/// again from the start, at most [`crate::RETRIES`] more times.
fn fetch_into_store(
    store: &Staging<'_>,
    client: &Client,
    repo: &Repository,
    digest: &Digest,
    size: u64,
    progress: &dyn PullProgress,
) -> Result<(), RegistryError> {
    let mut attempt = 0;
    loop {
        match fetch_once(store, client, repo, digest, size, progress) {
            Err(e @ (RegistryError::Cut { .. } | RegistryError::BlobSize { .. }))
                if attempt < crate::RETRIES =>
            {
                if let RegistryError::BlobSize {
                    actual, expected, ..
                } = &e
                    && actual >= expected
                {
                    return Err(e);
                }
                attempt += 1;
                let url = client.blob_url(repo, digest);
                client.announce_retry("GET", &url, attempt, &rbuild_oci::error_chain(&e));
            }
            other => return other,
        }
    }
}

fn fetch_once(
    store: &Staging<'_>,
    client: &Client,
    repo: &Repository,
    digest: &Digest,
    size: u64,
    progress: &dyn PullProgress,
) -> Result<(), RegistryError> {
    let mut writer = Reporting {
        inner: store.writer(Some(*digest))?,
        digest,
        progress,
        pending: 0,
    };
    let got = client
        .fetch_blob(repo, digest, &mut writer)
        .map_err(|e| match e {
            // Writing what arrived failed: the disk, not the registry.
            RegistryError::Io { source } => StoreError::io(store.dir())(source).into(),
            e => e,
        })?;
    writer.flush_progress();
    if got != size {
        return Err(RegistryError::BlobSize {
            repository: repo.display(),
            digest: *digest,
            expected: size,
            actual: got,
        });
    }
    writer.inner.commit().map_err(|source| match source {
        StoreError::DigestMismatch { .. } => RegistryError::BlobDigest {
            repository: repo.display(),
            digest: *digest,
            source: Box::new(source),
        },
        e => e.into(),
    })?;
    Ok(())
}

/// Passes bytes to the blob writer and reports progress every 256 KiB.
struct Reporting<'a, W> {
    inner: W,
    digest: &'a Digest,
    progress: &'a dyn PullProgress,
    pending: u64,
}

impl<W> Reporting<'_, W> {
    fn flush_progress(&mut self) {
        if self.pending > 0 {
            self.progress.event(PullEvent::Progress {
                digest: self.digest,
                bytes: self.pending,
            });
            self.pending = 0;
        }
    }
}

impl<W: Write> Write for Reporting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        if self.pending >= 256 << 10 {
            self.flush_progress();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
