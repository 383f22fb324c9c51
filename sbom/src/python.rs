//! Python packages: installed distributions' metadata, `NAME.dist-info/`
//! (wheels, pip: `METADATA`, files in `RECORD`) and `NAME.egg-info`
//! (setuptools: a directory with `PKG-INFO` and `installed-files.txt`,
//! or a file in `PKG-INFO`'s format, as Debian's python3-* packages ship).

use crate::rootfs::{RootFs, join};
use crate::{Ecosystem, Package, headers, purl};

/// A `*.dist-info` or `*.egg-info` directory at `dir`.
pub(crate) fn scan_dir(fs: &RootFs, dir: &str) -> Vec<Package> {
    let parent = dir.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
    let parent = if parent.is_empty() { "/" } else { parent };
    let (meta_path, record) = if dir.ends_with(".dist-info") {
        (
            join(dir, "METADATA"),
            fs.read_to_string(&join(dir, "RECORD")),
        )
    } else {
        (
            join(dir, "PKG-INFO"),
            fs.read_to_string(&join(dir, "installed-files.txt")),
        )
    };
    let Some(text) = fs.read_to_string(&meta_path) else {
        return Vec::new();
    };
    let Some(mut p) = parse_metadata(&text, &meta_path) else {
        return Vec::new();
    };
    if let Some(record) = record {
        // RECORD paths are relative to the site-packages directory,
        // installed-files.txt's to the egg-info directory.
        let base = if dir.ends_with(".dist-info") {
            parent
        } else {
            dir
        };
        p.files = record_files(&record, base)
            .into_iter()
            .filter(|f| fs.is_regular_file(f))
            .collect();
    }
    vec![p]
}

/// An `*.egg-info` file.
pub(crate) fn scan_file(fs: &RootFs, path: &str) -> Vec<Package> {
    fs.read_to_string(path)
        .and_then(|text| parse_metadata(&text, path))
        .into_iter()
        .collect()
}

/// A package from core metadata (`Name:`, `Version:`, `License:` or
/// `License-Expression:`).
pub(crate) fn parse_metadata(text: &str, found_in: &str) -> Option<Package> {
    // The headers end at the first blank line; the description follows.
    let head = text.split("\n\n").next().unwrap_or(text);
    let h = headers(head);
    let name = h.get("Name")?.clone();
    let version = h.get("Version")?.clone();
    let license = h
        .get("License-Expression")
        .or(h.get("License"))
        .filter(|l| !l.is_empty() && *l != "UNKNOWN")
        .cloned();
    let normalized = name.to_lowercase().replace(['_', '.'], "-");
    Some(Package {
        ecosystem: Ecosystem::Python,
        purl: purl::purl("pypi", None, &normalized, &version, &[]),
        name,
        version,
        license,
        supplier: None,
        files: Vec::new(),
        found_in: found_in.to_string(),
    })
}

/// The absolute paths of a `RECORD` (CSV, path first, maybe quoted) or an
/// `installed-files.txt` (one relative path a line), relative to `base`.
pub(crate) fn record_files(text: &str, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let rel = if let Some(rest) = line.strip_prefix('"') {
            rest.split('"').next().unwrap_or("")
        } else {
            line.split(',').next().unwrap_or("")
        };
        if rel.is_empty() {
            continue;
        }
        let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
        for seg in rel.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        out.push(format!("/{}", parts.join("/")));
    }
    out.sort();
    out.dedup();
    out
}
