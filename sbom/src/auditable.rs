//! Rust crates from `cargo auditable`'s `.dep-v0` section: zlib-compressed
//! JSON, `{"packages": [{"name", "version", "source", "kind",
//! "dependencies", "root"}]}`, every crate the binary was built from.

use std::io::Read;

use serde::Deserialize;

use crate::{Ecosystem, Package, purl};

/// Largest JSON inflated (a hostile section could inflate without end).
const MAX_JSON: u64 = 8 << 20;

#[derive(Deserialize)]
struct VersionInfo {
    packages: Vec<Crate>,
}

#[derive(Deserialize)]
struct Crate {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

/// The crates in `data` (a `.dep-v0` section) of the binary at `path`.
pub(crate) fn packages(data: &[u8], path: &str) -> Vec<Package> {
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(data);
    if decoder.take(MAX_JSON).read_to_end(&mut json).is_err() {
        return Vec::new();
    }
    let Ok(info) = serde_json::from_slice::<VersionInfo>(&json) else {
        return Vec::new();
    };
    info.packages
        .into_iter()
        .map(|c| {
            let registry = c
                .source
                .as_deref()
                .filter(|s| *s != "crates.io" && *s != "local");
            Package {
                ecosystem: Ecosystem::Cargo,
                purl: purl::purl(
                    "cargo",
                    None,
                    &c.name,
                    &c.version,
                    &[("repository_url", registry)],
                ),
                name: c.name,
                version: c.version,
                license: None,
                supplier: None,
                files: vec![path.to_string()],
                found_in: path.to_string(),
            }
        })
        .collect()
}
