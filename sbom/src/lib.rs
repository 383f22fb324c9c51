//! rbuild-sbom: what software an image holds, as BuildKit's SBOM
//! attestation gives it, from rbuild's own scanner.
//!
//! [`scan`] reads an image's root filesystem (a directory: the image's
//! layers unpacked, whiteouts applied) and finds the packages its
//! package databases and binaries record:
//!
//! | ecosystem | where | module |
//! |---|---|---|
//! | Debian | `/var/lib/dpkg/status`, `/var/lib/dpkg/status.d/*` (distroless), file lists in `/var/lib/dpkg/info/*.list` | `dpkg` |
//! | Alpine | `/lib/apk/db/installed` | `apk` |
//! | Python | `*.dist-info/METADATA` (+ `RECORD`), `*.egg-info/PKG-INFO` or an `.egg-info` file | `python` |
//! | npm | `node_modules/[@scope/]NAME/package.json` | `npm` |
//! | Go | the build info in an ELF binary's `.go.buildinfo` section (Go ≥ 1.18: main module, dependencies, replacements, the toolchain as `stdlib`) | `gobin` |
//! | Rust | `cargo auditable`'s `.dep-v0` section (zlib-compressed JSON) | `auditable` |
//!
//! [`spdx::document`] then writes them as an SPDX 2.3 JSON document:
//! one package per finding with its purl (`pkg:deb/debian/…`,
//! `pkg:apk/alpine/…`, `pkg:pypi/…`, `pkg:npm/…`, `pkg:golang/…`,
//! `pkg:cargo/…`), its files with SHA-1 and SHA-256 checksums where the
//! database lists them, and `DESCRIBES`/`CONTAINS` relationships from
//! the document to the image and from the image to each package. The
//! output is deterministic: everything sorted, identifiers derived from
//! content, the creation time given by the caller (`SOURCE_DATE_EPOCH`).
//!
//! The SPDX model is a handful of serde structs of our own: the Rust
//! SPDX crates either model SPDX 3 or pull in license-expression parsers
//! and a large dependency tree for the 2.3 JSON subset written here.
//!
//! Reading an image is not trusting it: every path is resolved inside
//! the root ([`rootfs::RootFs`]), symlinks included, so a link to
//! `/etc/shadow` reads the image's file, never the host's; no binary is
//! executed; sizes are capped.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::disallowed_methods)]

mod apk;
mod auditable;
mod dpkg;
mod elf;
mod gobin;
mod npm;
mod purl;
mod python;
pub mod rootfs;
pub mod spdx;
mod walk;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use rootfs::RootFs;

/// Where a package comes from: its package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Deb,
    Apk,
    Python,
    Npm,
    Go,
    Cargo,
}

impl Ecosystem {
    /// The name tables show (syft's `TYPE` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go-module",
            Ecosystem::Cargo => "rust-crate",
        }
    }
}

/// One package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// The package URL (<https://github.com/package-url/purl-spec>).
    pub purl: String,
    /// A license as the database states it (free text for Python and npm).
    pub license: Option<String>,
    /// Who supplies it (dpkg's `Maintainer`), as written there.
    pub supplier: Option<String>,
    /// Absolute paths in the image of the files the database lists for
    /// it (regular files only), sorted.
    pub files: Vec<String>,
    /// The database or binary it was read from, absolute in the image.
    pub found_in: String,
}

/// The distribution an image says it is (`/etc/os-release`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distro {
    /// `ID` (`debian`, `ubuntu`, `alpine`).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `3.19.1`).
    pub version_id: Option<String>,
}

impl Distro {
    /// The purl `distro` qualifier: `debian-12`, `alpine-3.19.1`.
    fn qualifier(&self) -> Option<String> {
        match (&self.id, &self.version_id) {
            (Some(id), Some(v)) => Some(format!("{id}-{v}")),
            (Some(id), None) => Some(id.clone()),
            _ => None,
        }
    }
}

/// Why a scan failed. Databases that cannot be parsed are skipped, not
/// errors (a scanner reports what it can read); only the root itself
/// failing to read is.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read the image's root filesystem at {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub distro: Distro,
    /// Sorted by purl, then where found; each (purl, place) once.
    pub packages: Vec<Package>,
}

/// Finds the packages in the root filesystem at `root`.
pub fn scan(root: &std::path::Path) -> Result<Scan, ScanError> {
    fs_err::metadata(root).map_err(|source| ScanError::Root {
        path: root.to_path_buf(),
        source: std::io::Error::new(source.kind(), source.to_string()),
    })?;
    let fs = RootFs::new(root);
    let distro = read_os_release(&fs);
    let mut packages = Vec::new();
    packages.extend(dpkg::scan(&fs, &distro));
    packages.extend(apk::scan(&fs, &distro));
    walk::walk(&fs, &mut |path, kind| match kind {
        walk::Found::Dir(name) => {
            if name.ends_with(".dist-info") || name.ends_with(".egg-info") {
                packages.extend(python::scan_dir(&fs, path));
            }
        }
        walk::Found::File { name, executable } => {
            if name == "package.json" {
                packages.extend(npm::scan(&fs, path));
            } else if name.ends_with(".egg-info") {
                packages.extend(python::scan_file(&fs, path));
            } else if executable || name.contains(".so") {
                packages.extend(scan_binary(&fs, path));
            }
        }
    });
    packages.sort_by(|a, b| (&a.purl, &a.found_in).cmp(&(&b.purl, &b.found_in)));
    packages.dedup_by(|a, b| a.purl == b.purl && a.found_in == b.found_in);
    Ok(Scan { distro, packages })
}

/// Go build info and cargo-auditable data from an ELF binary.
fn scan_binary(fs: &RootFs, path: &str) -> Vec<Package> {
    let Some(sections) = elf::read_sections(fs, path, &[".go.buildinfo", ".dep-v0"]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(data) = sections.get(".go.buildinfo") {
        out.extend(gobin::packages(data, path));
    }
    if let Some(data) = sections.get(".dep-v0") {
        out.extend(auditable::packages(data, path));
    }
    out
}

/// `/etc/os-release`, else `/usr/lib/os-release`.
fn read_os_release(fs: &RootFs) -> Distro {
    let text = fs
        .read_to_string("/etc/os-release")
        .or_else(|| fs.read_to_string("/usr/lib/os-release"));
    let Some(text) = text else {
        return Distro::default();
    };
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "ID" => d.id = Some(v),
            "VERSION_ID" => d.version_id = Some(v),
            _ => {}
        }
    }
    d
}

/// Splits `text` into RFC 822-style paragraphs (dpkg status, apk's
/// installed db), separated by blank lines.
fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
}

/// The `Key: value` headers of a paragraph (continuation lines, which
/// start with a space, dropped), first occurrence of each key kept.
fn headers(paragraph: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for line in paragraph.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests;
