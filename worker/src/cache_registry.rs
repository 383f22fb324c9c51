//! `--cache-to type=registry,ref=…` and `--cache-from type=registry,ref=…`:
//! the exported cache layout (see [`super::cache_transfer`]) moved through
//! a registry.
//!
//! Pushing uploads every blob of the layout (those the registry already
//! has are skipped by a `HEAD`), then PUTs the layout's manifest bytes
//! unchanged under the reference's tag, so the manifest digest is the same
//! in the layout and in the registry. Pulling GETs that manifest and
//! streams blobs only when the importer asks for them: a build downloads
//! the layers its cache hits need, not the whole cache. The importer
//! verifies every blob against its digest, so nothing here does.
//!
//! The manifest is an OCI image manifest with a custom `config.mediaType`
//! ([`super::cache_transfer::MEDIA_TYPE_CACHE_CONFIG`]), the "artifact"
//! shape the OCI image spec 1.1 allows; distribution 2.8 accepts it as is.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rbuild_solver::Digest;

use super::cache_transfer::{
    BlobSource, CacheSource, CacheTransferError, CacheTransport, LayoutSource,
};
use rbuild_oci::reference::ImageRef;
use rbuild_registry::{Access, Client, RegistryError, Repository, RequestBody};
use rbuild_store::Manifest;
use rbuild_store::layout::MEDIA_TYPE_MANIFEST;

/// `type=registry`: the reference is an image reference
/// (`host[:port]/repo[:tag]`); the tag defaults to `latest` as for images.
#[derive(Clone)]
pub struct RegistryTransport {
    client: Arc<Client>,
}

impl RegistryTransport {
    /// A transport using `client` (its credentials and insecure
    /// registries).
    pub fn new(client: Arc<Client>) -> RegistryTransport {
        RegistryTransport { client }
    }
}

/// The repository and the tag or digest a cache reference names.
fn parse_reference(reference: &str) -> Result<(Repository, String), CacheTransferError> {
    let r = ImageRef::parse(reference).map_err(|source| CacheTransferError::Reference {
        reference: reference.to_string(),
        source: Box::new(source),
    })?;
    let tag = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    Ok((Repository::of(&r), tag))
}

fn registry_err(reference: &str) -> impl FnOnce(RegistryError) -> CacheTransferError + '_ {
    move |source| CacheTransferError::Registry {
        reference: reference.to_string(),
        source: Box::new(source),
    }
}

impl CacheTransport for RegistryTransport {
    fn push_layout(&self, dir: &Path, reference: &str) -> Result<(), CacheTransferError> {
        let (repo, tag) = parse_reference(reference)?;
        let layout = LayoutSource {
            dir: dir.to_path_buf(),
        };
        let manifest_bytes = layout.manifest()?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| CacheTransferError::Json {
                what: "cache manifest",
                location: dir.display().to_string(),
                source,
            })?;
        // The config last: a registry that garbage-collects untagged blobs
        // keeps what a tagged manifest names, so the order only matters
        // for readers racing the push, who see the old manifest until the
        // PUT below.
        let blobs = manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config));
        for desc in blobs {
            let digest: Digest =
                desc.digest
                    .parse()
                    .map_err(|_| CacheTransferError::NotACache {
                        location: dir.display().to_string(),
                        reason: format!("invalid digest {:?}", desc.digest),
                    })?;
            let mut blob = layout.open_blob(&digest)?;
            self.client
                .push_blob(&repo, &digest, desc.size, &mut blob, None)
                .map_err(registry_err(reference))?;
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string());
        self.client
            .put_manifest(&repo, &tag, &media_type, &manifest_bytes)
            .map_err(registry_err(reference))?;
        Ok(())
    }

    fn pull_layout(&self, reference: &str) -> Result<Box<dyn CacheSource>, CacheTransferError> {
        let (repo, tag) = parse_reference(reference)?;
        Ok(Box::new(RegistrySource {
            client: self.client.clone(),
            repo,
            tag,
            reference: reference.to_string(),
        }))
    }
}

/// A cache published in a registry, read on demand.
struct RegistrySource {
    client: Arc<Client>,
    repo: Repository,
    tag: String,
    reference: String,
}

impl BlobSource for RegistrySource {
    /// Streams the blob straight from the registry's response body.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CacheTransferError> {
        let url = format!(
            "{}/{}/blobs/{digest}",
            self.client.base_url(&self.repo.registry),
            self.repo.name
        );
        let resp = self
            .client
            .request(
                "GET",
                &url,
                &self.repo,
                Access::Pull,
                &[],
                &[],
                RequestBody::Empty,
            )
            .map_err(registry_err(&self.reference))?;
        if !resp.status().is_success() {
            return Err(registry_err(&self.reference)(RegistryError::Status {
                method: "GET".to_string(),
                url,
                status: resp.status().as_u16(),
                detail: String::new(),
            }));
        }
        Ok(Box::new(resp.into_body().into_reader()))
    }

    fn location(&self) -> String {
        self.reference.clone()
    }
}

impl CacheSource for RegistrySource {
    fn manifest(&self) -> Result<Vec<u8>, CacheTransferError> {
        let (bytes, _, _) = self
            .client
            .get_manifest(&self.repo, &self.tag)
            .map_err(registry_err(&self.reference))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_without_a_tag_means_latest() {
        let (repo, tag) = parse_reference("127.0.0.1:5000/team/cache").unwrap();
        assert_eq!(repo.registry, "127.0.0.1:5000");
        assert_eq!(repo.name, "team/cache");
        assert_eq!(tag, "latest");
        let (_, tag) = parse_reference("127.0.0.1:5000/cache:ci").unwrap();
        assert_eq!(tag, "ci");
    }

    #[test]
    fn an_invalid_reference_is_refused_by_name() {
        let err = parse_reference("Not A Ref").unwrap_err();
        assert!(err.to_string().contains("Not A Ref"), "{err}");
    }
}
