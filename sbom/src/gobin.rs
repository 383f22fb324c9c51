//! Go modules from a Go binary's build info: the `.go.buildinfo`
//! section starts with `\xff Go buildinf:`, then pointer size and flags;
//! since Go 1.18 (flag bit 2) the Go version and the module info follow
//! the 32-byte header inline, each as a uvarint length and bytes. The
//! module info is `runtime/debug.BuildInfo`'s text (`path`, `mod`,
//! `dep`, `=>` replacing the line before it, `build`), between two
//! 16-byte sentinels. Older binaries (pointers into the data segment)
//! are not read.

use crate::{Ecosystem, Package, purl};

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Go's modules in `data` (a `.go.buildinfo` section) of the binary at
/// `path`: the main module, its dependencies (replacements applied) and
/// the toolchain as `stdlib`.
pub(crate) fn packages(data: &[u8], path: &str) -> Vec<Package> {
    let Some((go_version, modinfo)) = parse(data) else {
        return Vec::new();
    };
    let mut mods: Vec<(String, String)> = Vec::new();
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.first().copied() {
            Some("mod") | Some("dep") if f.len() >= 3 => {
                mods.push((f[1].to_string(), f[2].to_string()));
            }
            Some("=>") if f.len() >= 3 => {
                if let Some(last) = mods.last_mut() {
                    // A local replacement has a path and no version.
                    *last = (f[1].to_string(), f[2].to_string());
                }
            }
            _ => {}
        }
    }
    if !go_version.is_empty() {
        mods.push(("stdlib".to_string(), go_version));
    }
    mods.into_iter()
        .map(|(module, version)| {
            let (ns, name) = match module.rsplit_once('/') {
                Some((ns, n)) => (Some(ns), n),
                None => (None, module.as_str()),
            };
            Package {
                ecosystem: Ecosystem::Go,
                purl: purl::purl("golang", ns, name, &version, &[]),
                name: module.clone(),
                version,
                license: None,
                supplier: None,
                files: vec![path.to_string()],
                found_in: path.to_string(),
            }
        })
        .collect()
}

/// The Go version and module info text of a build info blob.
pub(crate) fn parse(data: &[u8]) -> Option<(String, String)> {
    let start = data.windows(MAGIC.len()).position(|w| w == MAGIC)?;
    let data = &data[start..];
    if data.len() < 32 || data[15] & 2 == 0 {
        return None;
    }
    let mut rest = &data[32..];
    let version = String::from_utf8(read_bytes(&mut rest)?.to_vec()).ok()?;
    let mut modinfo = read_bytes(&mut rest)?;
    // The sentinels are binary (not UTF-8): strip them as bytes.
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    Some((version, String::from_utf8_lossy(modinfo).into_owned()))
}

fn read_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    if len > rest.len() {
        return None;
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    Some(s)
}
