//! Alpine packages: apk's installed database (`/lib/apk/db/installed`):
//! paragraphs of one-letter keys (`P` name, `V` version, `A` arch, `L`
//! license, `o` origin, `m` maintainer, `F` a directory, `R` a file in
//! the last `F`).

use crate::rootfs::RootFs;
use crate::{Distro, Ecosystem, Package, paragraphs, purl};

const INSTALLED: &str = "/lib/apk/db/installed";

pub(crate) fn scan(fs: &RootFs, distro: &Distro) -> Vec<Package> {
    let Some(text) = fs.read_to_string(INSTALLED) else {
        return Vec::new();
    };
    let mut out = parse_installed(&text, distro, INSTALLED);
    for p in &mut out {
        p.files.retain(|f| fs.is_regular_file(f));
    }
    out
}

/// The packages apk's installed database lists, their files as listed.
pub(crate) fn parse_installed(text: &str, distro: &Distro, found_in: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in paragraphs(text) {
        let (mut name, mut version, mut arch, mut license, mut origin, mut maint) =
            (None, None, None, None, None, None);
        let mut dir = String::new();
        let mut files = Vec::new();
        for line in para.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => name = Some(v.to_string()),
                "V" => version = Some(v.to_string()),
                "A" => arch = Some(v.to_string()),
                "L" => license = Some(v.to_string()),
                "o" => origin = Some(v.to_string()),
                "m" => maint = Some(v.to_string()),
                "F" => dir = v.to_string(),
                "R" => files.push(if dir.is_empty() {
                    format!("/{v}")
                } else {
                    format!("/{dir}/{v}")
                }),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        let namespace = distro.id.as_deref().unwrap_or("alpine");
        let distro_q = distro.qualifier();
        let upstream = origin.filter(|o| *o != name);
        let purl = purl::purl(
            "apk",
            Some(namespace),
            &name,
            &version,
            &[
                ("arch", arch.as_deref()),
                ("distro", distro_q.as_deref()),
                ("upstream", upstream.as_deref()),
            ],
        );
        files.sort();
        files.dedup();
        out.push(Package {
            ecosystem: Ecosystem::Apk,
            name,
            version,
            purl,
            license,
            supplier: maint,
            files,
            found_in: found_in.to_string(),
        });
    }
    out
}
