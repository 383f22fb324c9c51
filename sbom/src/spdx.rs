//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>): the subset
//! an image SBOM needs, as serde structs; [`document`] builds one from a
//! [`Scan`].
//!
//! Layout (as BuildKit's syft-based scanner writes it): the document
//! `DESCRIBES` one package standing for the image; the image `CONTAINS`
//! every package found; each package `CONTAINS` the files its database
//! lists, each with SHA-1 (which SPDX 2.3 requires) and SHA-256.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::rootfs::RootFs;
use crate::{Ecosystem, Scan};

/// The predicate type of an SPDX in-toto statement.
pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";

/// An SPDX 2.3 document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: String,
    pub data_license: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    #[serde(default)]
    pub packages: Vec<SpdxPackage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SpdxFile>,
    #[serde(default)]
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxPackage {
    pub name: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    pub download_location: String,
    pub files_analyzed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_concluded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_declared: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_comments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyright_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_verification_code: Option<VerificationCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
}

/// SPDX's digest over a package's files (their SHA-1s sorted and
/// concatenated, hashed with SHA-1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationCode {
    pub package_verification_code_value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: String,
    pub reference_type: String,
    pub reference_locator: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxFile {
    pub file_name: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub checksums: Vec<Checksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_concluded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyright_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    pub algorithm: String,
    pub checksum_value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: String,
    pub related_spdx_element: String,
}

/// What the document says about itself.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// The image: its name, or its ID when it has none.
    pub name: String,
    /// RFC 3339 UTC, whole seconds (`SOURCE_DATE_EPOCH` when set).
    pub created: String,
    /// `Tool: NAME-VERSION`.
    pub tool: String,
}

/// Largest file hashed for its checksums; larger ones get none listed.
const MAX_HASHED: u64 = 1 << 30;

/// The SPDX document for `scan`; `fs` is the root the scan read, for the
/// files' checksums (files it cannot read are left out).
pub fn document(scan: &Scan, fs: &RootFs, info: &DocumentInfo) -> Document {
    let root_id = format!("SPDXRef-DocumentRoot-Image-{}", id_part(&info.name));
    let mut packages = vec![SpdxPackage {
        name: info.name.clone(),
        spdx_id: root_id.clone(),
        version_info: None,
        supplier: None,
        download_location: "NOASSERTION".to_string(),
        files_analyzed: false,
        license_concluded: None,
        license_declared: None,
        license_comments: None,
        copyright_text: None,
        source_info: None,
        package_verification_code: None,
        primary_package_purpose: Some("CONTAINER".to_string()),
        external_refs: Vec::new(),
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".to_string(),
        relationship_type: "DESCRIBES".to_string(),
        related_spdx_element: root_id.clone(),
    }];
    let mut files: BTreeMap<String, SpdxFile> = BTreeMap::new();
    let mut file_rels = Vec::new();
    for p in &scan.packages {
        let id = format!(
            "SPDXRef-Package-{}-{}-{}",
            p.ecosystem.as_str(),
            id_part(&p.name),
            &short_hash(&format!("{}\0{}", p.purl, p.found_in))
        );
        let (declared, comments) = match p.license.as_deref() {
            Some(l) if is_simple_spdx_id(l) => (l.to_string(), None),
            Some(l) => ("NOASSERTION".to_string(), Some(format!("declared: {l}"))),
            None => ("NOASSERTION".to_string(), None),
        };
        packages.push(SpdxPackage {
            name: p.name.clone(),
            spdx_id: id.clone(),
            version_info: Some(p.version.clone()),
            supplier: p.supplier.as_deref().map(supplier),
            download_location: "NOASSERTION".to_string(),
            files_analyzed: false,
            license_concluded: Some("NOASSERTION".to_string()),
            license_declared: Some(declared),
            license_comments: comments,
            copyright_text: Some("NOASSERTION".to_string()),
            source_info: Some(format!(
                "{} found in {}",
                source_kind(p.ecosystem),
                p.found_in
            )),
            package_verification_code: None,
            primary_package_purpose: Some(
                if matches!(p.ecosystem, Ecosystem::Deb | Ecosystem::Apk) {
                    "OPERATING-SYSTEM"
                } else {
                    "LIBRARY"
                }
                .to_string(),
            ),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER".to_string(),
                reference_type: "purl".to_string(),
                reference_locator: p.purl.clone(),
            }],
        });
        relationships.push(Relationship {
            spdx_element_id: root_id.clone(),
            relationship_type: "CONTAINS".to_string(),
            related_spdx_element: id.clone(),
        });
        let mut sha1s = Vec::new();
        for f in &p.files {
            if !files.contains_key(f) {
                let Some(checksums) = checksums(fs, f) else {
                    continue;
                };
                let name = f.rsplit('/').next().unwrap_or(f);
                files.insert(
                    f.clone(),
                    SpdxFile {
                        // SPDX names files relative to the package root.
                        file_name: format!(".{f}"),
                        spdx_id: format!("SPDXRef-File-{}-{}", id_part(name), short_hash(f)),
                        checksums,
                        license_concluded: Some("NOASSERTION".to_string()),
                        copyright_text: Some("NOASSERTION".to_string()),
                    },
                );
            }
            file_rels.push(Relationship {
                spdx_element_id: id.clone(),
                relationship_type: "CONTAINS".to_string(),
                related_spdx_element: files[f].spdx_id.clone(),
            });
            sha1s.push(files[f].checksums[0].checksum_value.clone());
        }
        // A package with files listed is one whose files were analyzed,
        // which SPDX 2.3 says with a verification code over them.
        if !sha1s.is_empty() {
            sha1s.sort();
            let mut h = sha1::Sha1::new();
            for v in &sha1s {
                h.update(v.as_bytes());
            }
            let pkg = packages.last_mut().expect("just pushed");
            pkg.files_analyzed = true;
            pkg.package_verification_code = Some(VerificationCode {
                package_verification_code_value: hex::encode(h.finalize()),
            });
        }
    }
    relationships.extend(file_rels);
    relationships.sort_by(|a, b| {
        (
            &a.spdx_element_id,
            &a.relationship_type,
            &a.related_spdx_element,
        )
            .cmp(&(
                &b.spdx_element_id,
                &b.relationship_type,
                &b.related_spdx_element,
            ))
    });
    relationships.dedup();
    packages[1..].sort_by(|a, b| a.spdx_id.cmp(&b.spdx_id));
    let files: Vec<SpdxFile> = files.into_values().collect();
    // The namespace is unique per content: the same image scanned twice
    // gives the same document, a different one another namespace.
    let mut h = sha2::Sha256::new();
    for p in &packages {
        h.update(p.spdx_id.as_bytes());
        h.update(b"\0");
    }
    for f in &files {
        h.update(f.spdx_id.as_bytes());
        h.update(f.checksums[0].checksum_value.as_bytes());
    }
    let content = hex::encode(h.finalize());
    Document {
        spdx_version: "SPDX-2.3".to_string(),
        data_license: "CC0-1.0".to_string(),
        spdx_id: "SPDXRef-DOCUMENT".to_string(),
        name: info.name.clone(),
        document_namespace: format!(
            "https://rbuild.invalid/spdx/{}-{}",
            id_part(&info.name),
            &content[..32]
        ),
        creation_info: CreationInfo {
            created: info.created.clone(),
            creators: vec![info.tool.clone()],
        },
        packages,
        files,
        relationships,
    }
}

/// The packages of `doc` (the image's own left out) as rows: name,
/// version, type (from the purl).
pub fn rows(doc: &Document) -> Vec<[String; 3]> {
    let mut rows: Vec<[String; 3]> = doc
        .packages
        .iter()
        .filter(|p| p.primary_package_purpose.as_deref() != Some("CONTAINER"))
        .map(|p| {
            let purl = p
                .external_refs
                .iter()
                .find(|r| r.reference_type == "purl")
                .map(|r| r.reference_locator.as_str())
                .unwrap_or("");
            let kind = purl
                .strip_prefix("pkg:")
                .and_then(|r| r.split('/').next())
                .map(|t| match t {
                    "pypi" => "python",
                    "golang" => "go-module",
                    "cargo" => "rust-crate",
                    other => other,
                })
                .unwrap_or("")
                .to_string();
            [
                p.name.clone(),
                p.version_info.clone().unwrap_or_default(),
                kind,
            ]
        })
        .collect();
    rows.sort();
    rows.dedup();
    rows
}

fn source_kind(e: Ecosystem) -> &'static str {
    match e {
        Ecosystem::Deb => "dpkg database entry",
        Ecosystem::Apk => "apk database entry",
        Ecosystem::Python => "Python package metadata",
        Ecosystem::Npm => "npm package.json",
        Ecosystem::Go => "Go build info",
        Ecosystem::Cargo => "cargo auditable data",
    }
}

/// dpkg's `Name <mail>` as SPDX's `Person: Name (mail)`.
fn supplier(s: &str) -> String {
    match s.split_once('<') {
        Some((name, rest)) => format!(
            "Person: {} ({})",
            name.trim(),
            rest.trim_end_matches('>').trim()
        ),
        None => format!("Person: {}", s.trim()),
    }
}

/// Licenses that are a single SPDX identifier are kept as the declared
/// license; free text ("BSD License", "GPL v2 or later") would not be a
/// valid SPDX expression and goes to the comment instead.
fn is_simple_spdx_id(l: &str) -> bool {
    const KNOWN: &[&str] = &[
        "0BSD",
        "Apache-2.0",
        "Artistic-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "BSL-1.0",
        "CC0-1.0",
        "GPL-2.0-only",
        "GPL-2.0-or-later",
        "GPL-3.0-only",
        "GPL-3.0-or-later",
        "ISC",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
        "LGPL-3.0-only",
        "LGPL-3.0-or-later",
        "MIT",
        "MPL-2.0",
        "PSF-2.0",
        "Python-2.0",
        "Unlicense",
        "Zlib",
    ];
    KNOWN.contains(&l)
}

/// SHA-1 and SHA-256 of the regular file `path`, if readable.
fn checksums(fs: &RootFs, path: &str) -> Option<Vec<Checksum>> {
    let file = fs.open(path)?;
    if file.metadata().ok()?.len() > MAX_HASHED {
        return None;
    }
    let mut s1 = sha1::Sha1::new();
    let mut s256 = sha2::Sha256::new();
    let mut r = std::io::BufReader::with_capacity(1 << 16, file);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        s1.update(&buf[..n]);
        s256.update(&buf[..n]);
    }
    Some(vec![
        Checksum {
            algorithm: "SHA1".to_string(),
            checksum_value: hex::encode(s1.finalize()),
        },
        Checksum {
            algorithm: "SHA256".to_string(),
            checksum_value: hex::encode(s256.finalize()),
        },
    ])
}

/// `s` reduced to what an SPDX identifier may hold (`[A-Za-z0-9.-]`).
fn id_part(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "x".to_string()
    } else {
        out.chars().take(64).collect()
    }
}

fn short_hash(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))[..16].to_string()
}
