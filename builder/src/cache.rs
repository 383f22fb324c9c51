//! The build's side of cache transfer: opening `--cache-from` imports
//! before the solve (a cache that cannot be read is a warning, not an
//! error, as with BuildKit), refusing bad `--cache-to` destinations before
//! building, writing `--cache-to` exports after it, and the message of a
//! failed fetch of an imported hit's blob.

use rbuild_oci::error_chain;
use rbuild_oci::reference::ImageRef;
use rbuild_solver::CacheKey;
use rbuild_store::{Store, StoreError};
use rbuild_worker::BuildError as WorkerError;
use rbuild_worker::cache_registry::RegistryTransport;
use rbuild_worker::cache_transfer::{
    self, CacheTransferError, CacheTransport, ExportMode, ImportedCache, ImportingCacheIndex,
    LayerFormat, LazyFetchError, LocalDirTransport,
};

use crate::error::BuildError;
use crate::events::{BuildEvents, Event};
use crate::spec::{CacheFromSpec, CacheToSpec};

/// Refuses, before building, `--cache-to` destinations this build cannot
/// write: a registry reference that does not parse would otherwise fail
/// only after the whole build.
pub(crate) fn check_cache_to(cache_to: &[CacheToSpec]) -> Result<(), BuildError> {
    for spec in cache_to {
        if let CacheToSpec::Registry { reference, .. } = spec {
            ImageRef::parse(reference).map_err(|source| BuildError::CacheToReference {
                reference: reference.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Opens every `--cache-from` and restores cache mounts (`mounts=true`).
/// A cache that cannot be read is a warning, not an error, as with
/// BuildKit: the build can always be done without it.
pub(crate) fn open_cache_imports(
    cache_from: &[CacheFromSpec],
    store: &Store,
    registry: &RegistryTransport,
    events: &dyn BuildEvents,
) -> Vec<ImportedCache> {
    let warn = |message: String| {
        events.event(&Event::Warning {
            message: &message,
            line: None,
        })
    };
    let mut out = Vec::new();
    for spec in cache_from {
        let (opened, mounts) = match spec {
            CacheFromSpec::Local { src, mounts } => (
                LocalDirTransport
                    .pull_layout(&src.display().to_string())
                    .and_then(ImportedCache::open)
                    .map_err(|e| format!("--cache-from {}: {}", src.display(), error_chain(&e))),
                *mounts,
            ),
            CacheFromSpec::Registry { reference, mounts } => (
                registry
                    .pull_layout(reference)
                    .and_then(ImportedCache::open)
                    .map_err(|e| {
                        format!(
                            "--cache-from type=registry,ref={reference}: {}; building without it",
                            error_chain(&e)
                        )
                    }),
                *mounts,
            ),
            CacheFromSpec::Image { reference } => (
                ImageRef::parse(reference)
                    .map_err(|e| error_chain(&e))
                    .and_then(|r| store.resolve_ref(&r).map_err(|e| error_chain(&e)))
                    .and_then(|image| {
                        ImportedCache::from_image(store, &image).map_err(|e| error_chain(&e))
                    })
                    .map_err(|e| format!("--cache-from {reference}: {e}")),
                false,
            ),
        };
        match opened {
            Ok(cache) => {
                if mounts {
                    if let Err(e) = cache.restore_mounts(store) {
                        warn(format!(
                            "--cache-from {}: cache mounts not restored: {}",
                            cache.location(),
                            error_chain(&e)
                        ));
                    }
                }
                out.push(cache);
            }
            Err(message) => warn(message),
        }
    }
    out
}

/// Writes every `--cache-to` but `type=inline` (which the image config
/// carries): `keys` gives the records a mode exports (the target's steps
/// for `mode=min`, every needed step for `mode=max`), `mount_ids` the
/// cache mounts of the build's steps (for `mounts=true`).
pub(crate) fn export_caches(
    store: &Store,
    cache_to: &[CacheToSpec],
    index: &ImportingCacheIndex<'_>,
    registry: &RegistryTransport,
    keys: &dyn Fn(ExportMode) -> Vec<CacheKey>,
    mount_ids: &dyn Fn() -> Vec<String>,
    step_name: &dyn Fn(&CacheKey) -> Option<String>,
) -> Result<(), BuildError> {
    for spec in cache_to {
        let (transport, reference, mode, mounts, format): (&dyn CacheTransport, String, _, _, _) =
            match spec {
                CacheToSpec::Inline => continue,
                CacheToSpec::Local {
                    dest,
                    mode,
                    mounts,
                    layers,
                    oci_media_types,
                } => (
                    &LocalDirTransport,
                    dest.display().to_string(),
                    *mode,
                    *mounts,
                    LayerFormat {
                        compression: *layers,
                        oci_media_types: *oci_media_types,
                    },
                ),
                CacheToSpec::Registry {
                    reference,
                    mode,
                    mounts,
                    layers,
                    oci_media_types,
                } => (
                    registry,
                    reference.clone(),
                    *mode,
                    *mounts,
                    LayerFormat {
                        compression: *layers,
                        oci_media_types: *oci_media_types,
                    },
                ),
            };
        let keys = keys(mode);
        let mount_ids = if mounts { mount_ids() } else { Vec::new() };
        // The export copies blobs from the store.
        lazy_fetch(index.fetch_records(&keys), step_name)?;
        cache_transfer::export(store, &keys, &mount_ids, transport, &reference, &format)
            .map_err(|source| BuildError::CacheExport { reference, source })?;
    }
    Ok(())
}

/// A lazy fetch's result, its failure named as [`BuildError::CacheFetch`].
pub(crate) fn lazy_fetch(
    result: Result<(), WorkerError>,
    step_name: &dyn Fn(&CacheKey) -> Option<String>,
) -> Result<(), BuildError> {
    match result {
        Ok(()) => Ok(()),
        Err(WorkerError::CacheFetch(error)) => Err(BuildError::CacheFetch {
            step_name: step_name(&error.key),
            error,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The error of a failed fetch of an imported hit's blob, naming the step
/// as the user sees it (`step`, else the record's description) and how to
/// go on: `… does not match its digest …\nhint: the cache at … is damaged; …`.
pub(crate) fn fetch_failure_message(err: &LazyFetchError, step: Option<&str>) -> String {
    let named = LazyFetchError {
        location: err.location.clone(),
        digest: err.digest,
        key: err.key,
        step: step.map_or_else(|| err.step.clone(), str::to_string),
        source: err.source.clone(),
    };
    let damaged = match err.source.as_ref() {
        CacheTransferError::Mismatch { .. } => true,
        CacheTransferError::Store(e) => matches!(**e, StoreError::DigestMismatch { .. }),
        _ => false,
    };
    let hint = if damaged {
        format!(
            "the cache at {} is damaged; build again without that --cache-from",
            err.location
        )
    } else {
        format!(
            "a blob of the cache at {} could not be fetched; build again (or without that --cache-from)",
            err.location
        )
    };
    format!("{}\nhint: {hint}", error_chain(&named))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rbuild_solver::Digest;

    use super::*;

    fn failure(source: CacheTransferError) -> String {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let err = LazyFetchError {
            location: "registry.lan/cache".into(),
            digest,
            key: CacheKey::from_digest(digest),
            step: "exec: make".into(),
            source: Arc::new(source),
        };
        fetch_failure_message(&err, None)
    }

    #[test]
    fn only_a_digest_mismatch_calls_the_cache_damaged() {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let actual: Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        let damaged = failure(CacheTransferError::Mismatch {
            location: "registry.lan/cache".into(),
            digest,
            actual,
        });
        assert!(damaged.contains("is damaged"), "{damaged}");
        let unreachable = failure(CacheTransferError::Io {
            path: "/x".into(),
            source: std::io::Error::other("connection reset"),
        });
        assert!(
            unreachable.contains("could not be fetched"),
            "{unreachable}"
        );
        assert!(!unreachable.contains("damaged"), "{unreachable}");
    }
}
