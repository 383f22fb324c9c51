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
//! returns the extra index entries and the blobs they need (all written to
//! the store); [`image_index`] writes the index naming both. An attested
//! image is an index even for one platform.

use std::collections::BTreeMap;

use rbuild_oci::reference::ImageRef;
use rbuild_oci::{Digest, Platform};
use rbuild_store::layout::{
    Descriptor, Index, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, Manifest,
    canonical_json,
};
use rbuild_store::{Store, StoreError};
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
}

/// One platform's image manifest, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub platform: Platform,
}

impl Subject {
    fn descriptor(&self) -> Descriptor {
        let mut platform = json!({
            "architecture": self.platform.architecture,
            "os": self.platform.os,
        });
        if let Some(v) = &self.platform.variant {
            platform["variant"] = json!(v);
        }
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: self.size,
            annotations: BTreeMap::new(),
            platform: Some(platform),
        }
    }
}

/// What [`attestation_manifests`] made: the index entries to add after
/// the image manifests, and every blob they reach (configs, statements,
/// manifests), all in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestationManifests {
    pub descriptors: Vec<Descriptor>,
    /// The attestation manifests' digests (OCI image manifests).
    pub manifests: Vec<Digest>,
    /// The blobs they reference: statements and configs.
    pub blobs: Vec<Digest>,
}

/// For each image manifest in `subjects`, with the predicates stated
/// about it, an attestation manifest; `names` are the image's names
/// (each a statement subject `pkg:docker/NAME@TAG?platform=…`; `_`
/// when it has none).
pub fn attestation_manifests(
    store: &Store,
    subjects: &[(Subject, Vec<Predicate>)],
    names: &[ImageRef],
) -> Result<AttestationManifests, StoreError> {
    let mut out = AttestationManifests::default();
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
            out.blobs.push(d);
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
        out.blobs.push(config_digest);
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
        out.manifests.push(manifest_digest);
        out.descriptors.push(Descriptor {
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

/// An image index written to the store: its digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexBlob {
    pub digest: Digest,
    pub size: u64,
}

/// Writes the image index listing `subjects` (with their platforms),
/// then `attestations`' entries, annotated with `annotations` (buildx's
/// `index:` annotations).
pub fn image_index(
    store: &Store,
    subjects: &[Subject],
    attestations: &AttestationManifests,
    annotations: BTreeMap<String, String>,
) -> Result<IndexBlob, StoreError> {
    let mut index = Index {
        annotations,
        ..Index::default()
    };
    index.manifests = subjects.iter().map(Subject::descriptor).collect();
    index
        .manifests
        .extend(attestations.descriptors.iter().cloned());
    let bytes = canonical_json(&index);
    let digest = store.put_blob_bytes(&bytes)?;
    Ok(IndexBlob {
        digest,
        size: bytes.len() as u64,
    })
}

/// The media type of an image index.
pub const INDEX_MEDIA_TYPE: &str = MEDIA_TYPE_INDEX;
