//! Attestations, as BuildKit attaches them to an image: SLSA provenance
//! ([`provenance`]) and an SPDX SBOM (rbuild's own scanner,
//! `rbuild-sbom`), each an in-toto statement about the image manifest,
//! stored as layers of an attestation manifest listed in the image's
//! index ([`layout`]).
//!
//! The flags are read by [`spec`]; the build captures what provenance
//! needs as it runs ([`Capture`]); the exporters ask [`predicates`] for
//! the statements' content once and then wrap it per output, since each
//! output's manifest (compression, media types) is a different subject.

pub mod layout;
pub mod provenance;
pub mod spec;

use std::path::Path;

use rbuild_oci::reference::ImageRef;
use rbuild_store::{Image, Store};

pub use layout::{Predicate, Subject};
pub use provenance::Capture;
pub use spec::{
    Attest, AttestFlag, AttestSpecError, Attestations, ProvenanceMode, ProvenanceSpec, SbomSpec,
    SlsaVersion,
};

use crate::error::BuildError;

/// The predicates `attestations` asks for about `image`: provenance from
/// `capture`, the SBOM from the image's filesystem; `created` (RFC 3339)
/// dates the SBOM.
pub fn predicates(
    store: &Store,
    image: &Image,
    attestations: &Attestations,
    capture: &Capture,
    name: &str,
    created: &str,
) -> Result<Vec<Predicate>, BuildError> {
    let mut out = Vec::new();
    if let Some(spec) = &attestations.sbom {
        let _ = spec;
        let doc = sbom_document(store, image, name, created)?;
        out.push(Predicate {
            predicate_type: rbuild_sbom::spdx::PREDICATE_TYPE.to_string(),
            predicate: serde_json::to_value(&doc).expect("SPDX documents serialize"),
            inline_only: false,
        });
    }
    if let Some(spec) = &attestations.provenance {
        let (kind, body) = provenance::predicate(capture, spec);
        out.push(Predicate {
            predicate_type: kind.to_string(),
            predicate: body,
            inline_only: spec.inline_only,
        });
    }
    Ok(out)
}

/// The SPDX document of `image`'s filesystem (its layers unpacked in a
/// scratch directory of the store, scanned, removed), named `name`.
pub fn sbom_document(
    store: &Store,
    image: &Image,
    name: &str,
    created: &str,
) -> Result<rbuild_sbom::spdx::Document, BuildError> {
    let _lease = store.lease(image)?;
    let work = tempfile::Builder::new()
        .prefix("sbom-")
        .tempdir_in(store.tmp_dir())
        .map_err(|source| BuildError::ScratchDir {
            path: store.tmp_dir().to_path_buf(),
            source,
        })?;
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).map_err(|source| BuildError::ScratchDir {
        path: root.clone(),
        source,
    })?;
    crate::export::unpack_layers(store, image, &root)?;
    let scan = rbuild_sbom::scan(&root).map_err(|source| BuildError::SbomScan { source })?;
    let fs = rbuild_sbom::RootFs::new(&root);
    let doc = rbuild_sbom::spdx::document(
        &scan,
        &fs,
        &rbuild_sbom::spdx::DocumentInfo {
            name: name.to_string(),
            created: created.to_string(),
            tool: format!("Tool: rbuild-{}", env!("CARGO_PKG_VERSION")),
        },
    );
    drop(fs);
    make_removable(&root);
    drop(work);
    Ok(doc)
}

/// Unpacked images may hold directories without write permission, which
/// a non-root user cannot empty: open them up before removal.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
}

/// The name an image's SBOM is about: its first name, else its ID.
pub fn subject_name(names: &[ImageRef], image: &Image) -> String {
    names
        .first()
        .map(|n| n.to_string())
        .unwrap_or_else(|| image.id.to_string())
}
