//! Base images for planning: from the store, pulled from their registry
//! when missing (or always, with `--pull`) when a registry client is given.

use rbuild_solver::ImageConfig;
use rbuild_solver::plan::{ImageResolver, Platform, ResolvedImage};

use rbuild_oci::reference::{ImageRef, ReferenceError};
use rbuild_registry::{Client, PullProgress, RegistryError};
use rbuild_store::{Store, StoreError};

/// A base image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "image {reference} is not in the store\nhint: add it with `rbuild pull`, `rbuild import` or `rbuild load`"
    )]
    NotFound { reference: String },
    #[error("pulling {reference} failed")]
    Pull {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("malformed image config of {reference}")]
    Config {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Resolves FROM and `--from` image references against a [`Store`].
pub struct StoreResolver<'a> {
    store: &'a Store,
    registry: Option<RegistryPull<'a>>,
}

/// How a [`StoreResolver`] pulls base images.
struct RegistryPull<'a> {
    client: &'a Client,
    /// `--pull`: re-resolve tags against the registry even when stored.
    always: bool,
    progress: &'a dyn PullProgress,
}

impl<'a> StoreResolver<'a> {
    /// Resolves from the store only.
    pub fn new(store: &'a Store) -> StoreResolver<'a> {
        StoreResolver {
            store,
            registry: None,
        }
    }

    /// Resolves from the store, pulling images that are missing through
    /// `client`; with `always` (`--pull`) a tag is checked against the
    /// registry every time (a digest reference found in the store is never
    /// re-fetched: its content cannot have changed).
    pub fn with_registry(
        store: &'a Store,
        client: &'a Client,
        always: bool,
        progress: &'a dyn PullProgress,
    ) -> StoreResolver<'a> {
        StoreResolver {
            store,
            registry: Some(RegistryPull {
                client,
                always,
                progress,
            }),
        }
    }
}

impl StoreResolver<'_> {
    fn pull(
        &self,
        reg: &RegistryPull<'_>,
        r: &ImageRef,
        platform: &Platform,
    ) -> Result<rbuild_store::Image, ResolveError> {
        rbuild_registry::pull(self.store, reg.client, r, platform, reg.progress)
            .map(|outcome| outcome.image)
            .map_err(|source| ResolveError::Pull {
                reference: r.familiar(),
                source: Box::new(source),
            })
    }
}

impl ImageResolver for StoreResolver<'_> {
    type Error = ResolveError;

    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, ResolveError> {
        let r = ImageRef::parse(reference)?;
        // Of an image index, the platform's image; a single-platform
        // image is used whatever its platform, as BuildKit does (the
        // InvalidBaseImagePlatform check warns).
        let stored = self
            .store
            .resolve_ref_for(&r, Some(platform))
            .or_else(|e| match e {
                StoreError::PlatformMismatch { .. } => self.store.resolve_ref(&r),
                e => Err(e),
            });
        let image = match (&self.registry, stored) {
            (Some(reg), Ok(_)) if reg.always && r.digest().is_none() => {
                self.pull(reg, &r, platform)?
            }
            (_, Ok(image)) => image,
            (Some(reg), Err(StoreError::NotFound { .. })) => self.pull(reg, &r, platform)?,
            (None, Err(StoreError::NotFound { .. })) => {
                return Err(ResolveError::NotFound {
                    reference: r.familiar(),
                });
            }
            (_, Err(e)) => return Err(ResolveError::Store(e)),
        };
        // The raw blob, not oci-spec's parse: that drops Docker's fields
        // (OnBuild, Shell, Healthcheck) the planner needs.
        let raw = self.store.read_blob(&image.id)?;
        let config: ImageConfig =
            serde_json::from_slice(&raw).map_err(|source| ResolveError::Config {
                reference: r.to_string(),
                source,
            })?;
        Ok(ResolvedImage {
            reference: r.to_string(),
            digest: image.manifest_digest,
            config,
        })
    }
}
