//! A minimal, deterministic POSIX (pax) tar writer.
//!
//! Writes ustar headers and, where a value does not fit a ustar field (long or
//! non-ASCII names, sizes ≥ 8 GiB, ids > 2097151, xattrs), a pax extended
//! header (`x`) right before the entry, with its records sorted by key. The
//! user and group names are always empty and no atime/ctime is written, so
//! the bytes depend only on what the caller passes in.

use std::io::{self, Write};

pub const BLOCK: usize = 512;

/// Largest value a 7-digit octal id field holds.
const MAX_OCTAL_ID: u64 = 0o7_777_777;
/// Largest value an 11-digit octal size/mtime field holds (8 GiB - 1).
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

/// The kind of a tar entry, with the data that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Regular { size: u64 },
    HardLink { target: Vec<u8> },
    Symlink { target: Vec<u8> },
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Directory,
    Fifo,
}

/// One header's worth of metadata. `path` has no leading `/` or `./`;
/// directories end in `/`.
#[derive(Debug, Clone)]
pub struct EntryHeader {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; negative values are written as 0.
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Writes the header block(s) for `h` to `out` (not the file data).
pub fn write_header(out: &mut dyn Write, h: &EntryHeader) -> io::Result<()> {
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut block = [0u8; BLOCK];

    let path_fits = h.path.len() <= 100 && h.path.is_ascii();
    if !path_fits {
        pax.push((b"path".to_vec(), h.path.clone()));
    }
    let name_len = h.path.len().min(100);
    block[..name_len].copy_from_slice(&h.path[..name_len]);

    write_octal(&mut block[100..108], u64::from(h.mode & 0o7777));
    for (value, range, key) in [(h.uid, 108..116, "uid"), (h.gid, 116..124, "gid")] {
        if value > MAX_OCTAL_ID {
            pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
            write_octal(&mut block[range], 0);
        } else {
            write_octal(&mut block[range], value);
        }
    }
    let size = match h.kind {
        Kind::Regular { size } => size,
        _ => 0,
    };
    if size > MAX_OCTAL_11 {
        pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        write_octal(&mut block[124..136], 0);
    } else {
        write_octal(&mut block[124..136], size);
    }
    let mtime = h.mtime.max(0) as u64;
    if mtime > MAX_OCTAL_11 {
        pax.push((b"mtime".to_vec(), mtime.to_string().into_bytes()));
        write_octal(&mut block[136..148], 0);
    } else {
        write_octal(&mut block[136..148], mtime);
    }
    block[156] = match h.kind {
        Kind::Regular { .. } => b'0',
        Kind::HardLink { .. } => b'1',
        Kind::Symlink { .. } => b'2',
        Kind::Char { .. } => b'3',
        Kind::Block { .. } => b'4',
        Kind::Directory => b'5',
        Kind::Fifo => b'6',
    };
    if let Kind::HardLink { target } | Kind::Symlink { target } = &h.kind {
        if target.len() > 100 || !target.is_ascii() {
            pax.push((b"linkpath".to_vec(), target.clone()));
        }
        let n = target.len().min(100);
        block[157..157 + n].copy_from_slice(&target[..n]);
    }
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    let (major, minor) = match h.kind {
        Kind::Char { major, minor } | Kind::Block { major, minor } => (major, minor),
        _ => (0, 0),
    };
    write_octal(&mut block[329..337], u64::from(major));
    write_octal(&mut block[337..345], u64::from(minor));
    for (name, value) in &h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax.push((key, value.clone()));
    }

    if !pax.is_empty() {
        pax.sort();
        write_pax_header(out, &h.path, &pax)?;
    }
    set_checksum(&mut block);
    out.write_all(&block)
}

/// Writes a pax extended header (`x`) whose data are `records`.
fn write_pax_header(
    out: &mut dyn Write,
    path: &[u8],
    records: &[(Vec<u8>, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        data.extend_from_slice(&pax_record(key, value));
    }
    let mut block = [0u8; BLOCK];
    // The name of the extended header itself is informational; a fixed
    // prefix plus a truncated entry name, like GNU tar, keeps it stable.
    let mut name = b"PaxHeaders/".to_vec();
    let base = path.rsplit(|&b| b == b'/').find(|s| !s.is_empty());
    name.extend(base.unwrap_or(b"").iter().copied().filter(u8::is_ascii));
    name.truncate(100);
    block[..name.len()].copy_from_slice(&name);
    write_octal(&mut block[100..108], 0o644);
    write_octal(&mut block[108..116], 0);
    write_octal(&mut block[116..124], 0);
    write_octal(&mut block[124..136], data.len() as u64);
    write_octal(&mut block[136..148], 0);
    block[156] = b'x';
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    set_checksum(&mut block);
    out.write_all(&block)?;
    out.write_all(&data)?;
    write_padding(out, data.len() as u64)
}

/// One `"<len> <key>=<value>\n"` record; `<len>` counts itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut rec = format!("{len} ").into_bytes();
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    debug_assert_eq!(rec.len(), len);
    rec
}

/// Zero bytes that round `len` bytes of data up to a whole block.
pub fn write_padding(out: &mut dyn Write, len: u64) -> io::Result<()> {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// The end-of-archive marker: two zero blocks.
pub fn write_trailer(out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// Writes `value` as zero-padded octal filling `field` but its last byte (NUL).
fn write_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    debug_assert_eq!(text.len(), digits, "value too large for octal field");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

fn set_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        // 9 bytes of key/value + 3 separators + 2 digits = 14.
        let rec = pax_record(b"path", b"abcde");
        assert_eq!(rec, b"14 path=abcde\n");
        // 99 bytes before the length: the length itself needs 3 digits.
        let rec = pax_record(b"k", &[b'x'; 95]);
        assert_eq!(rec.len(), 102);
        assert!(rec.starts_with(b"102 "));
    }

    #[test]
    fn header_readable_by_tar_crate() {
        let mut buf = Vec::new();
        let h = EntryHeader {
            path: "dir/ünïcode-".repeat(10).into_bytes(),
            kind: Kind::Regular { size: 3 },
            mode: 0o4755,
            uid: 3_000_000,
            gid: 7,
            mtime: 1_700_000_000,
            xattrs: vec![(b"user.k".to_vec(), b"v\0\x01".to_vec())],
        };
        write_header(&mut buf, &h).unwrap();
        buf.extend_from_slice(b"abc");
        write_padding(&mut buf, 3).unwrap();
        write_trailer(&mut buf).unwrap();
        let mut ar = tar::Archive::new(buf.as_slice());
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), h.path.as_slice());
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        let pax: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|r| (r.key_bytes().to_vec(), r.value_bytes().to_vec()))
            .collect();
        assert!(pax.contains(&(b"uid".to_vec(), b"3000000".to_vec())));
        assert!(pax.contains(&(b"SCHILY.xattr.user.k".to_vec(), b"v\0\x01".to_vec())));
        let mut data = String::new();
        std::io::Read::read_to_string(&mut e, &mut data).unwrap();
        assert_eq!(data, "abc");
        drop(e);
        assert!(entries.next().is_none());
    }

    #[test]
    fn huge_size_and_mtime_go_to_pax_records() {
        let mut buf = Vec::new();
        let h = EntryHeader {
            path: b"huge".to_vec(),
            kind: Kind::Regular { size: 9 << 30 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1 << 34,
            xattrs: Vec::new(),
        };
        write_header(&mut buf, &h).unwrap();
        // Only the headers: the tar crate reads the size without the data.
        let mut ar = tar::Archive::new(buf.as_slice());
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.size(), 9 << 30);
        let pax: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap().key().unwrap().to_string())
            .collect();
        assert_eq!(pax, ["mtime", "size"]);
    }

    #[test]
    fn short_ascii_entries_need_no_pax_header() {
        let mut buf = Vec::new();
        let h = EntryHeader {
            path: b"usr/bin/".to_vec(),
            kind: Kind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        };
        write_header(&mut buf, &h).unwrap();
        assert_eq!(buf.len(), BLOCK);
        assert_eq!(buf[156], b'5');
        assert_eq!(&buf[257..265], b"ustar\x0000");
    }
}
