//! npm packages: `node_modules/NAME/package.json` and
//! `node_modules/@SCOPE/NAME/package.json`, nested at any depth (a
//! `package.json` elsewhere is an application's, not an installed
//! package's).

use serde::Deserialize;

use crate::rootfs::RootFs;
use crate::{Ecosystem, Package, purl};

#[derive(Deserialize)]
struct PackageJson {
    name: Option<String>,
    version: Option<String>,
    license: Option<serde_json::Value>,
}

/// The package whose `package.json` is at `path`, when it is installed.
pub(crate) fn scan(fs: &RootFs, path: &str) -> Vec<Package> {
    let segs: Vec<&str> = path.split('/').collect();
    let n = segs.len();
    let installed = (n >= 3 && segs[n - 3] == "node_modules")
        || (n >= 4 && segs[n - 4] == "node_modules" && segs[n - 3].starts_with('@'));
    if !installed {
        return Vec::new();
    }
    fs.read_max(path, 4 << 20)
        .and_then(|bytes| parse(&bytes, path))
        .into_iter()
        .collect()
}

/// A package from a `package.json`'s `name`, `version` and `license`.
pub(crate) fn parse(bytes: &[u8], found_in: &str) -> Option<Package> {
    let pj: PackageJson = serde_json::from_slice(bytes).ok()?;
    let name = pj.name.filter(|n| !n.is_empty())?;
    let version = pj.version.filter(|v| !v.is_empty())?;
    let license = match pj.license {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Object(o)) => {
            o.get("type").and_then(|t| t.as_str()).map(str::to_string)
        }
        _ => None,
    };
    let (ns, short) = match name.split_once('/') {
        Some((scope, n)) if scope.starts_with('@') => (Some(scope), n),
        _ => (None, name.as_str()),
    };
    Some(Package {
        ecosystem: Ecosystem::Npm,
        purl: purl::purl("npm", ns, short, &version, &[]),
        name: name.clone(),
        version,
        license,
        supplier: None,
        files: vec![found_in.to_string()],
        found_in: found_in.to_string(),
    })
}
