//! Where attestations go, as BuildKit stores them (its
//! `docs/attestations/attestation-storage.md`): each platform's image
//! manifest gets an attestation manifest — config
//! `application/vnd.oci.image.config.v1+json` (`unknown/unknown`), one
//! layer per in-toto statement (`application/vnd.in-toto+json`, annotated
//! `in-toto.io/predicate-type`) — listed in the image index after the
//! image manifests with platform `unknown/unknown` and the annotations
//! `vnd.docker.reference.type=attestation-manifest` and
//! `vnd.docker.reference.digest=<the image manifest's digest>`.
//!
//! [`attestation_manifests`] takes the per-platform image manifests and
//! returns the extra index entries (their blobs written to the store);
//! [`crate::index::assemble_index`] writes the index naming both. An
//! attested image is an index even for one platform.
//! [`stored_predicates`] reads the statements back (`rbuild sbom`, and a
//! push or save that converts the manifests, which states them again
//! about the new ones).

use std::collections::BTreeMap;

use rbuild_oci::reference::ImageRef;
use rbuild_oci::{Digest, Platform};
use rbuild_store::layout::{
    Descriptor, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, Manifest, canonical_json,
};
use rbuild_store::{ImageIndex, Store, StoreError};
use serde_json::{Value, json};

/// The in-toto statement type BuildKit's image exporter writes.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";
/// The media type of an in-toto statement layer.
pub const MEDIA_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// The layer annotation naming a statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The index annotation saying what a manifest is.
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The index annotation naming the manifest an attestation is about.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// [`ANNOTATION_REFERENCE_TYPE`]'s value for attestation manifests.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// A predicate to state about an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub predicate_type: String,
    pub predicate: Value,
    /// BuildKit's `inline-only`: attached only by exporters that attach
    /// attestations inline (the image exporter, pushes), not by the
    /// `oci` and `docker` archives of a single-platform image (buildx's
    /// default provenance).
    pub inline_only: bool,
}

/// One platform's image manifest, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub platform: Platform,
}

/// For each image manifest in `subjects`, with the predicates stated
/// about it, an attestation manifest; `names` are the image's names
/// (each a statement subject `pkg:docker/NAME@TAG?platform=…`; `_`
/// when it has none).
pub fn attestation_manifests(
    store: &Store,
    subjects: &[(Subject, Vec<Predicate>)],
    names: &[ImageRef],
) -> Result<Vec<Descriptor>, StoreError> {
    let mut out = Vec::new();
    for (subject, predicates) in subjects {
        if predicates.is_empty() {
            continue;
        }
        let platform = subject.platform.to_string();
        let digest = json!({"sha256": subject.digest.hex()});
        let statement_subjects: Vec<Value> = if names.is_empty() {
            vec![json!({"name": "_", "digest": digest})]
        } else {
            names
                .iter()
                .map(|n| {
                    json!({
                        "name": super::provenance::image_purl(&n.to_string(), Some(&platform)),
                        "digest": digest,
                    })
                })
                .collect()
        };
        let mut layers = Vec::new();
        for p in predicates {
            let statement = json!({
                "_type": STATEMENT_TYPE,
                "predicateType": p.predicate_type,
                "subject": statement_subjects,
                "predicate": p.predicate,
            });
            let bytes = serde_json::to_vec(&statement).expect("JSON values serialize");
            let d = store.put_blob_bytes(&bytes)?;
            layers.push(Descriptor {
                media_type: MEDIA_TYPE_IN_TOTO.to_string(),
                digest: d.to_string(),
                size: bytes.len() as u64,
                annotations: [(
                    ANNOTATION_PREDICATE_TYPE.to_string(),
                    p.predicate_type.clone(),
                )]
                .into(),
                platform: None,
            });
        }
        // A valid image config (for registries and tools that expect one),
        // of no platform; its diff_ids are the statements' digests.
        let config = canonical_json(&json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            },
        }));
        let config_digest = store.put_blob_bytes(&config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            config: Descriptor {
                media_type: MEDIA_TYPE_CONFIG.to_string(),
                digest: config_digest.to_string(),
                size: config.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            },
            layers,
            annotations: BTreeMap::new(),
        };
        let bytes = canonical_json(&manifest);
        let manifest_digest = store.put_blob_bytes(&bytes)?;
        out.push(Descriptor {
            media_type: MEDIA_TYPE_MANIFEST.to_string(),
            digest: manifest_digest.to_string(),
            size: bytes.len() as u64,
            annotations: [
                (
                    ANNOTATION_REFERENCE_DIGEST.to_string(),
                    subject.digest.to_string(),
                ),
                (
                    ANNOTATION_REFERENCE_TYPE.to_string(),
                    ATTESTATION_MANIFEST.to_string(),
                ),
            ]
            .into(),
            platform: Some(json!({"architecture": "unknown", "os": "unknown"})),
        });
    }
    Ok(out)
}

/// The predicates the attestation manifest of `index` about `manifest`
/// states (empty when it has none), read from the store.
pub fn stored_predicates(
    store: &Store,
    index: &ImageIndex,
    manifest: &Digest,
) -> Result<Vec<Predicate>, StoreError> {
    let subject = manifest.to_string();
    let mut out = Vec::new();
    for entry in &index.manifests {
        let about = entry.annotations.get(ANNOTATION_REFERENCE_DIGEST);
        if entry
            .annotations
            .get(ANNOTATION_REFERENCE_TYPE)
            .map(String::as_str)
            != Some(ATTESTATION_MANIFEST)
            || about != Some(&subject)
        {
            continue;
        }
        let Ok(digest) = entry.digest.parse::<Digest>() else {
            continue;
        };
        let m = store.read_manifest(&digest)?;
        for layer in &m.layers {
            let Ok(d) = layer.digest.parse::<Digest>() else {
                continue;
            };
            let bytes = store.read_blob(&d)?;
            let statement: Value =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                    what: format!("in-toto statement {d}"),
                    source,
                })?;
            let Some(kind) = statement.get("predicateType").and_then(Value::as_str) else {
                continue;
            };
            out.push(Predicate {
                predicate_type: kind.to_string(),
                predicate: statement.get("predicate").cloned().unwrap_or(Value::Null),
                inline_only: false,
            });
        }
    }
    Ok(out)
}
