//! Just enough ELF to read named sections out of a binary: the header,
//! the section header table and its name table, for 32- and 64-bit,
//! little- and big-endian files. Nothing is mapped or executed.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use crate::rootfs::RootFs;

/// Largest section read (Go build info and cargo-auditable data are a
/// few KiB).
const MAX_SECTION: u64 = 16 << 20;

/// The sections of the ELF file at `path` whose names are in `wanted`;
/// `None` when it is not an ELF file or has none of them.
pub(crate) fn read_sections(
    fs: &RootFs,
    path: &str,
    wanted: &[&str],
) -> Option<BTreeMap<String, Vec<u8>>> {
    let mut f = fs.open(path)?;
    let mut ident = [0u8; 64];
    f.read_exact(&mut ident).ok()?;
    if &ident[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match ident[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let be = match ident[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let r = Reader { be };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            r.u64(&ident[0x28..]),
            r.u16(&ident[0x3A..]) as u64,
            r.u16(&ident[0x3C..]) as u64,
            r.u16(&ident[0x3E..]) as u64,
        )
    } else {
        (
            r.u32(&ident[0x20..]) as u64,
            r.u16(&ident[0x2E..]) as u64,
            r.u16(&ident[0x30..]) as u64,
            r.u16(&ident[0x32..]) as u64,
        )
    };
    let min_ent = if wide { 64 } else { 40 };
    if shnum == 0 || shnum > 65_000 || shentsize < min_ent || shstrndx >= shnum {
        return None;
    }
    let mut table = vec![0u8; (shentsize * shnum) as usize];
    f.seek(SeekFrom::Start(shoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    // (name offset, type, file offset, size)
    let sections: Vec<(u32, u32, u64, u64)> = table
        .chunks_exact(shentsize as usize)
        .map(|h| {
            if wide {
                (r.u32(h), r.u32(&h[4..]), r.u64(&h[24..]), r.u64(&h[32..]))
            } else {
                (
                    r.u32(h),
                    r.u32(&h[4..]),
                    r.u32(&h[16..]) as u64,
                    r.u32(&h[20..]) as u64,
                )
            }
        })
        .collect();
    let (_, _, stroff, strsize) = sections[shstrndx as usize];
    let names = read_at(&mut f, stroff, strsize)?;
    let mut out = BTreeMap::new();
    for (name_off, kind, off, size) in &sections {
        // SHT_NOBITS has no bytes in the file.
        if *kind == 8 {
            continue;
        }
        let start = *name_off as usize;
        if start >= names.len() {
            continue;
        }
        let end = names[start..]
            .iter()
            .position(|b| *b == 0)
            .map(|e| start + e)?;
        let name = std::str::from_utf8(&names[start..end]).ok()?;
        if wanted.contains(&name) && !out.contains_key(name) {
            if let Some(data) = read_at(&mut f, *off, *size) {
                out.insert(name.to_string(), data);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn read_at(f: &mut fs_err::File, off: u64, size: u64) -> Option<Vec<u8>> {
    if size > MAX_SECTION {
        return None;
    }
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut buf = vec![0u8; size as usize];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

struct Reader {
    be: bool,
}

impl Reader {
    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.be {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn u64(&self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.be {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }
}
