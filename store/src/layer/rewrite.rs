//! [`super::clamp_mtimes`]: a layer tar stream → the same stream with every
//! modification time newer than an epoch set to it (BuildKit's
//! `rewrite-timestamp=true`), rewritten header by header while streaming.
//!
//! Only headers change: the ustar `mtime` field (and its checksum) and a
//! pax `mtime=` record where one is present; file data, names, modes,
//! owners and xattrs are copied as they are. Times at or before the
//! epoch stay, so files that came in older (a COPY of a file last changed
//! in 2019) keep their time, as BuildKit does.

use std::io::{self, Read, Write};

use super::{HashingWriter, LayerError, PackStats};

const BLOCK: usize = 512;

pub(super) fn clamp_mtimes(
    input: &mut dyn Read,
    out: &mut dyn Write,
    epoch: u64,
) -> Result<PackStats, LayerError> {
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, out));
    let output = |source| LayerError::Output { source };
    let input_err = |source| LayerError::Input { source };
    let mut block = [0u8; BLOCK];
    loop {
        if !read_block(input, &mut block).map_err(input_err)? {
            break;
        }
        if block.iter().all(|b| *b == 0) {
            // The end-of-archive blocks and any padding: as they are.
            out.write_all(&block).map_err(output)?;
            io::copy(input, &mut out).map_err(output)?;
            break;
        }
        let size = parse_numeric(&block[124..136]).ok_or_else(|| malformed(&block, "size"))?;
        let typ = block[156];
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if typ == b'x' {
            // A pax header: its records may carry `mtime=`.
            let mut data = vec![0u8; padded as usize];
            input.read_exact(&mut data).map_err(input_err)?;
            data.truncate(size as usize);
            let records = clamp_pax_mtime(&data, epoch);
            let mut header = block;
            set_octal(&mut header[124..136], records.len() as u64);
            set_checksum(&mut header);
            out.write_all(&header).map_err(output)?;
            out.write_all(&records).map_err(output)?;
            let pad = (BLOCK - records.len() % BLOCK) % BLOCK;
            out.write_all(&vec![0u8; pad]).map_err(output)?;
            continue;
        }
        let mtime = parse_numeric(&block[136..148]).ok_or_else(|| malformed(&block, "mtime"))?;
        if mtime > epoch {
            set_octal(&mut block[136..148], epoch);
            set_checksum(&mut block);
        }
        out.write_all(&block).map_err(output)?;
        let copied = io::copy(&mut input.take(padded), &mut out).map_err(output)?;
        if copied != padded {
            return Err(LayerError::Input {
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "tar entry data cut short"),
            });
        }
    }
    out.flush().map_err(output)?;
    let (diff_id, size) = out.finish();
    Ok(PackStats { diff_id, size })
}

/// Reads one block; false at a clean end of input.
fn read_block(input: &mut dyn Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream ends inside a header block",
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn malformed(block: &[u8; BLOCK], field: &str) -> LayerError {
    let name_end = block[..100].iter().position(|b| *b == 0).unwrap_or(100);
    LayerError::Malformed {
        after: String::from_utf8_lossy(&block[..name_end]).into_owned(),
        problem: "a header field is unreadable",
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable {field} field"),
        ),
    }
}

/// A numeric header field: octal (NUL/space padded) or GNU base-256.
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// Writes `value` as zero-padded octal ending in NUL (a clamp only ever
/// lowers a value, so it fits where the old one did).
fn set_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// The header checksum: the byte sum with the checksum field as spaces,
/// written as six octal digits, NUL, space.
fn set_checksum(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
}

/// pax records (`LEN key=value\n`) with an `mtime` above `epoch` set to
/// it; other records unchanged.
fn clamp_pax_mtime(data: &[u8], epoch: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|b| *b == b' ') else {
            out.extend_from_slice(rest);
            break;
        };
        let len: usize = match std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(n) if n > space && n <= rest.len() => n,
            _ => {
                out.extend_from_slice(rest);
                break;
            }
        };
        let record = &rest[..len];
        let body = &record[space + 1..len - 1];
        let clamped = body
            .strip_prefix(b"mtime=")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
            .filter(|t| *t > epoch);
        match clamped {
            Some(_) => out.extend_from_slice(&pax_record("mtime", &epoch.to_string())),
            None => out.extend_from_slice(record),
        }
        rest = &rest[len..];
    }
    out
}

/// One pax record, its length prefix counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, mtime: u64, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_cksum();
        builder.append_data(&mut h, name, data).unwrap();
    }

    #[test]
    fn only_times_newer_than_the_epoch_are_clamped() {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, "old", 1_000, b"old data");
        entry(&mut b, "new", 2_000_000_000, b"new data");
        b.append_pax_extensions([("mtime", b"1900000000.5".as_slice())])
            .unwrap();
        entry(&mut b, "paxed", 1_900_000_000, b"pax");
        let tar = b.into_inner().unwrap();
        let mut out = Vec::new();
        let stats = clamp_mtimes(&mut tar.as_slice(), &mut out, 1_500_000_000).unwrap();
        assert_eq!(stats.size, out.len() as u64);
        assert_eq!(stats.diff_id, rbuild_oci::Digest::of(&out));
        let mut archive = tar::Archive::new(out.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mtime = e.header().mtime().unwrap();
            let pax_mtime = e
                .pax_extensions()
                .unwrap()
                .and_then(|mut p| p.find(|x| x.as_ref().unwrap().key() == Ok("mtime")))
                .map(|x| x.unwrap().value().unwrap().to_string());
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            seen.push((name, mtime, pax_mtime, data));
        }
        assert_eq!(
            seen,
            vec![
                ("old".into(), 1_000, None, "old data".into()),
                ("new".into(), 1_500_000_000, None, "new data".into()),
                (
                    "paxed".into(),
                    1_500_000_000,
                    Some("1500000000".into()),
                    "pax".into()
                ),
            ]
        );
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("mtime", "1"), b"11 mtime=1\n");
        assert_eq!(pax_record("mtime", "1500000000").len(), 20);
    }
}
