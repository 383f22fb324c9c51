//! Base images for planning, from the store (pulling is a later step).

use rbuild_solver::ImageConfig;
use rbuild_solver::plan::{ImageResolver, Platform, ResolvedImage};

use crate::reference::{ImageRef, ReferenceError};
use crate::store::{Store, StoreError};

/// A base image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "image {reference} is not in the store\nhint: rbuild does not pull yet; add it with `rbuild import` or `rbuild load`"
    )]
    NotFound { reference: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("malformed image config of {reference}")]
    Config {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "image {reference} is for {actual}, not {wanted}\nhint: rbuild does not cross-build; use an image for {wanted}"
    )]
    Platform {
        reference: String,
        actual: String,
        wanted: String,
    },
}

/// Resolves FROM and `--from` image references against a [`Store`].
pub struct StoreResolver<'a> {
    store: &'a Store,
}

impl<'a> StoreResolver<'a> {
    pub fn new(store: &'a Store) -> StoreResolver<'a> {
        StoreResolver { store }
    }
}

impl ImageResolver for StoreResolver<'_> {
    type Error = ResolveError;

    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, ResolveError> {
        let r = ImageRef::parse(reference)?;
        let image = self.store.resolve_ref(&r).map_err(|e| match e {
            StoreError::NotFound { .. } => ResolveError::NotFound {
                reference: r.familiar(),
            },
            e => ResolveError::Store(e),
        })?;
        // The raw blob, not oci-spec's parse: that drops Docker's fields
        // (OnBuild, Shell, Healthcheck) the planner needs.
        let raw = self.store.read_blob(&image.id)?;
        let config: ImageConfig =
            serde_json::from_slice(&raw).map_err(|source| ResolveError::Config {
                reference: r.to_string(),
                source,
            })?;
        let os_ok = config.os.is_empty() || config.os == platform.os;
        let arch_ok =
            config.architecture.is_empty() || config.architecture == platform.architecture;
        if !os_ok || !arch_ok {
            return Err(ResolveError::Platform {
                reference: r.familiar(),
                actual: format!("{}/{}", config.os, config.architecture),
                wanted: platform.to_string(),
            });
        }
        Ok(ResolvedImage {
            reference: r.to_string(),
            digest: image.manifest_digest,
            config,
        })
    }
}
