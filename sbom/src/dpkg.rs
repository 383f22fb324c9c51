//! Debian packages: dpkg's status database (`/var/lib/dpkg/status`, one
//! paragraph per package, `Status: install ok installed` for installed
//! ones) and distroless images' `status.d/` (one file per package), with
//! each package's files from `/var/lib/dpkg/info/NAME[:ARCH].list`.

use crate::rootfs::{RootFs, join};
use crate::{Distro, Ecosystem, Package, headers, paragraphs, purl};

const STATUS: &str = "/var/lib/dpkg/status";
const STATUS_D: &str = "/var/lib/dpkg/status.d";
const INFO: &str = "/var/lib/dpkg/info";

pub(crate) fn scan(fs: &RootFs, distro: &Distro) -> Vec<Package> {
    let mut out = Vec::new();
    if let Some(text) = fs.read_to_string(STATUS) {
        out.extend(parse_status(&text, distro, STATUS));
    }
    for name in fs.read_dir(STATUS_D) {
        if name.ends_with(".md5sums") {
            continue;
        }
        let path = join(STATUS_D, &name);
        if let Some(text) = fs.read_to_string(&path) {
            out.extend(parse_status(&text, distro, &path));
        }
    }
    for p in &mut out {
        p.files = files(fs, p);
    }
    out
}

/// The installed packages a status file lists (without their files).
pub(crate) fn parse_status(text: &str, distro: &Distro, found_in: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in paragraphs(text) {
        let h = headers(para);
        let (Some(name), Some(version)) = (h.get("Package"), h.get("Version")) else {
            continue;
        };
        // status.d files have no Status field: everything there is installed.
        if let Some(status) = h.get("Status") {
            if !status.ends_with(" installed") || status.split_whitespace().next() == Some("purge")
            {
                continue;
            }
        }
        let arch = h.get("Architecture").map(String::as_str);
        let namespace = distro.id.as_deref().unwrap_or("debian");
        let distro_q = distro.qualifier();
        // `Source: name (version)` when the source version differs.
        let upstream = h
            .get("Source")
            .map(|s| s.split_whitespace().next().unwrap_or(s).to_string())
            .filter(|s| s != name);
        let purl = purl::purl(
            "deb",
            Some(namespace),
            name,
            version,
            &[
                ("arch", arch),
                ("distro", distro_q.as_deref()),
                ("upstream", upstream.as_deref()),
            ],
        );
        out.push(Package {
            ecosystem: Ecosystem::Deb,
            name: name.clone(),
            version: version.clone(),
            purl,
            license: None,
            supplier: h.get("Maintainer").cloned(),
            files: Vec::new(),
            found_in: found_in.to_string(),
        });
    }
    out
}

/// The regular files `info/NAME.list` (or `NAME:ARCH.list`) lists.
fn files(fs: &RootFs, p: &Package) -> Vec<String> {
    let arch = p
        .purl
        .split("arch=")
        .nth(1)
        .and_then(|a| a.split('&').next())
        .unwrap_or("");
    let candidates = [
        format!("{INFO}/{}.list", p.name),
        format!("{INFO}/{}:{arch}.list", p.name),
    ];
    let Some(text) = candidates.iter().find_map(|c| fs.read_to_string(c)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('/') && *l != "/.")
        .filter(|l| fs.is_regular_file(l))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}
