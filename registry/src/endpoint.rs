//! Registry URLs: a registry's API base (`https://host/v2`, `http://` when
//! insecure, Docker Hub's API host), manifest and blob URLs, and upload
//! `Location` headers resolved against the registry.

use rbuild_oci::Digest;

use crate::{Client, Repository};

impl Client {
    /// The base URL of `registry`'s API: `https://host/v2`, or `http://`
    /// for loopback and insecure registries. Docker Hub's API lives on
    /// `registry-1.docker.io`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2")
    }

    /// `…/v2/<repo>/manifests/<reference>` (a tag or a digest).
    pub(crate) fn manifest_url(&self, repo: &Repository, reference: &str) -> String {
        format!(
            "{}/{}/manifests/{reference}",
            self.base_url(&repo.registry),
            repo.name
        )
    }

    /// `…/v2/<repo>/blobs/<digest>`.
    pub(crate) fn blob_url(&self, repo: &Repository, digest: &Digest) -> String {
        format!(
            "{}/{}/blobs/{digest}",
            self.base_url(&repo.registry),
            repo.name
        )
    }
}

/// Upload URLs carry state in their query; error messages don't need it.
pub(crate) fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Resolves a `Location` header (absolute, or a path on the registry).
pub(crate) fn absolute_url(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    // base is scheme://host/v2
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_locations_resolve_against_the_registry() {
        assert_eq!(
            absolute_url("http://127.0.0.1:5000/v2", "/v2/x/blobs/uploads/u?_state=s"),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u?_state=s"
        );
        assert_eq!(
            absolute_url("https://r/v2", "https://elsewhere/up"),
            "https://elsewhere/up"
        );
    }
}
