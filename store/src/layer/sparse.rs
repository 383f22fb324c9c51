//! Sparse files in layers: GNU sparse entries (type `S`, the old GNU
//! format, with extension blocks) and PAX sparse files (GNU tar's
//! formats 0.0, 0.1 and 1.0, `GNU.sparse.*` records), read into one
//! [`SparseMap`] and written with holes as holes (seek and set the
//! length, never zero bytes), so what a layer writes to disk is bounded by
//! the data it carries.
//!
//! The `tar` crate expands a GNU sparse entry into zeros and keeps the
//! extension blocks of its map to itself; reading a 10 GiB hole that way
//! costs 10 GiB of copying. So the archive is read through a [`Tap`]: it
//! keeps the raw bytes of each header sequence (to read the extension
//! blocks) and lets the data of a GNU sparse entry be read raw, telling
//! the `tar` crate's later skip of those bytes to take them as read.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

/// One data region of a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub offset: u64,
    pub len: u64,
}

/// Where a sparse file's data goes, and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseMap {
    pub real_size: u64,
    pub regions: Vec<Region>,
}

impl SparseMap {
    /// Checks the map against the `data` bytes the archive holds for it:
    /// regions in order, not overlapping, inside the file, and exactly
    /// as much data as they describe.
    pub fn check(&self, data: u64) -> Result<(), String> {
        let mut end = 0u64;
        let mut total = 0u64;
        for r in &self.regions {
            let stop = r
                .offset
                .checked_add(r.len)
                .ok_or("sparse map region overflows")?;
            if r.offset < end {
                return Err("sparse map regions overlap or are out of order".into());
            }
            if stop > self.real_size {
                return Err(format!(
                    "sparse map region {}+{} lies beyond the file's size {}",
                    r.offset, r.len, self.real_size
                ));
            }
            end = stop;
            total += r.len;
        }
        if total != data {
            return Err(format!(
                "sparse map describes {total} bytes of data but the archive holds {data}"
            ));
        }
        Ok(())
    }
}

/// Writes a sparse file: each region's bytes read from `data` at its
/// offset, holes left as holes, the length set last. Returns the data
/// bytes written: fewer than the map describes when `data` ends early
/// (the caller reports the entry as cut short).
pub(crate) fn write_sparse(
    file: &mut File,
    data: &mut dyn Read,
    map: &SparseMap,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut written = 0;
    for r in &map.regions {
        file.seek(SeekFrom::Start(r.offset))?;
        let mut left = r.len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => return Ok(written),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&buf[..n])?;
            left -= n as u64;
            written += n as u64;
        }
    }
    file.set_len(map.real_size)?;
    Ok(written)
}

/// How an entry's file data is laid out.
pub(crate) enum FileData {
    /// As the `tar` crate reads it.
    Plain,
    /// A sparse file: `data_len` bytes of data for `map`, read raw from
    /// the [`Tap`] (`raw`: a GNU sparse entry) or from the entry.
    Sparse {
        map: SparseMap,
        data_len: u64,
        raw: bool,
    },
}

/// An entry's real name (a PAX sparse file's `GNU.sparse.name`, else its
/// path) and how its data is laid out. For a format 1.0 sparse file the
/// map is read from the entry here. `Err(reason)` for a sparse map that
/// is inconsistent; `io::Error` for a stream that breaks.
pub(crate) fn entry_layout<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    tap: &Tap<'_>,
) -> io::Result<Result<(Vec<u8>, FileData), String>> {
    let path = entry.path_bytes().into_owned();
    if entry.header().entry_type() == tar::EntryType::GNUSparse {
        // The extension blocks are what the tar crate read after the
        // header to hand out this entry (its `raw_file_position` does not
        // count them).
        let header_pos = entry.raw_header_position();
        let ext = tap.journaled(header_pos + 512, tap.pos());
        let map = gnu_map(entry.header(), &ext)?;
        let data_len = entry.header().entry_size()?;
        if let Err(why) = map.check(data_len) {
            return Ok(Err(why));
        }
        return Ok(Ok((
            path,
            FileData::Sparse {
                map,
                data_len,
                raw: true,
            },
        )));
    }
    let Some(pax) = pax_sparse(entry)? else {
        return Ok(Ok((path, FileData::Plain)));
    };
    let mut data_len = entry.size();
    let regions = match pax.map {
        Some(regions) => regions,
        None => {
            let (regions, used) = read_map_1_0(entry, data_len)?;
            data_len -= used;
            regions
        }
    };
    let map = SparseMap {
        real_size: pax.real_size,
        regions,
    };
    if let Err(why) = map.check(data_len) {
        return Ok(Err(why));
    }
    Ok(Ok((
        pax.name.unwrap_or(path),
        FileData::Sparse {
            map,
            data_len,
            raw: false,
        },
    )))
}

/// A number in a tar header field: octal, or base-256 when the high bit
/// of the first byte is set.
fn header_number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| bad("number too large"))?;
        }
        return Ok(v);
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad("bad octal number in a sparse map"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Appends the regions of `count` 24-byte slots at `slots` (empty slots
/// end the list).
fn push_slots(regions: &mut Vec<Region>, slots: &[u8], count: usize) -> io::Result<()> {
    for i in 0..count {
        let slot = &slots[i * 24..i * 24 + 24];
        if slot.iter().all(|&b| b == 0) {
            break;
        }
        regions.push(Region {
            offset: header_number(&slot[..12])?,
            len: header_number(&slot[12..])?,
        });
    }
    Ok(())
}

/// The map of a GNU sparse entry: the header's four slots and the
/// extension blocks `ext` (21 slots each) that followed it.
pub(crate) fn gnu_map(header: &tar::Header, ext: &[u8]) -> io::Result<SparseMap> {
    let raw = header.as_bytes();
    let mut regions = Vec::new();
    push_slots(&mut regions, &raw[386..482], 4)?;
    for block in ext.chunks(512) {
        if block.len() == 512 {
            push_slots(&mut regions, &block[..504], 21)?;
        }
    }
    Ok(SparseMap {
        real_size: header_number(&raw[483..495])?,
        regions,
    })
}

/// A PAX sparse file's description (GNU tar `--format=posix --sparse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaxSparse {
    /// `GNU.sparse.name`, the real name (the entry's name is a
    /// placeholder); `None` in format 0.0, where the path is real.
    pub name: Option<Vec<u8>>,
    pub real_size: u64,
    /// The map from the records (0.0, 0.1); `None` in 1.0, where it
    /// leads the entry's data.
    pub map: Option<Vec<Region>>,
}

/// The PAX sparse records of an entry, if it is a PAX sparse file.
pub(crate) fn pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Option<PaxSparse>> {
    let Some(pax) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let mut found = false;
    let mut name = None;
    let mut real_size = None;
    let mut major = None;
    let mut offsets: Vec<u64> = Vec::new();
    let mut lens: Vec<u64> = Vec::new();
    let mut map_text = None;
    let num = |v: &[u8]| -> io::Result<u64> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("bad number in a GNU.sparse record"))
    };
    for rec in pax {
        let rec = rec?;
        let key = rec.key_bytes();
        let Some(k) = key.strip_prefix(b"GNU.sparse.") else {
            continue;
        };
        found = true;
        let v = rec.value_bytes();
        match k {
            b"name" => name = Some(v.to_vec()),
            b"size" | b"realsize" => real_size = Some(num(v)?),
            b"major" => major = Some(num(v)?),
            b"offset" => offsets.push(num(v)?),
            b"numbytes" => lens.push(num(v)?),
            b"map" => map_text = Some(v.to_vec()),
            _ => {}
        }
    }
    if !found {
        return Ok(None);
    }
    let real_size = real_size.ok_or_else(|| bad("a PAX sparse file without its size"))?;
    let map = if major == Some(1) {
        None
    } else if let Some(text) = map_text {
        let nums = std::str::from_utf8(&text)
            .map_err(|_| bad("bad GNU.sparse.map"))?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| num(s.as_bytes()))
            .collect::<io::Result<Vec<u64>>>()?;
        if nums.len() % 2 != 0 {
            return Err(bad("GNU.sparse.map has an odd count"));
        }
        Some(
            nums.chunks(2)
                .map(|p| Region {
                    offset: p[0],
                    len: p[1],
                })
                .collect(),
        )
    } else {
        if offsets.len() != lens.len() {
            return Err(bad("GNU.sparse.offset and numbytes do not pair up"));
        }
        Some(
            offsets
                .into_iter()
                .zip(lens)
                .map(|(offset, len)| Region { offset, len })
                .collect(),
        )
    };
    Ok(Some(PaxSparse {
        name,
        real_size,
        map,
    }))
}

/// Reads the map that leads a format 1.0 entry's data (decimal numbers,
/// one a line: the count, then offset and length pairs, padded to a
/// 512-byte block). Returns the regions and the bytes the map took.
pub(crate) fn read_map_1_0(data: &mut dyn Read, limit: u64) -> io::Result<(Vec<Region>, u64)> {
    let mut consumed = 0u64;
    let mut line = Vec::new();
    let mut next = |consumed: &mut u64| -> io::Result<u64> {
        line.clear();
        let mut b = [0u8; 1];
        loop {
            if *consumed >= limit {
                return Err(bad("the sparse map runs past the entry"));
            }
            data.read_exact(&mut b)?;
            *consumed += 1;
            if b[0] == b'\n' {
                break;
            }
            if line.len() > 20 {
                return Err(bad("a sparse map number is too long"));
            }
            line.push(b[0]);
        }
        std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad number in the sparse map"))
    };
    let count = next(&mut consumed)?;
    if count > limit / 4 {
        return Err(bad("the sparse map is longer than the entry"));
    }
    let mut regions = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let offset = next(&mut consumed)?;
        let len = next(&mut consumed)?;
        regions.push(Region { offset, len });
    }
    let pad = consumed.next_multiple_of(512) - consumed;
    io::copy(&mut data.take(pad), &mut io::sink())?;
    Ok((regions, consumed + pad))
}

struct TapState<'a> {
    inner: &'a mut dyn Read,
    /// Bytes the `tar` crate still has to skip that were read raw: served
    /// as zeros without reading.
    credit: u64,
    /// The `tar` crate's position (raw reads excluded, credit included).
    tar_pos: u64,
    journal: Vec<u8>,
    journal_start: u64,
    /// Journaling is on only while the `tar` crate reads headers.
    journaling: bool,
}

/// The archive stream between the hasher and the `tar` crate; see the
/// module docs. Cloned handles share one state.
#[derive(Clone)]
pub(crate) struct Tap<'a>(Rc<RefCell<TapState<'a>>>);

impl<'a> Tap<'a> {
    pub fn new(inner: &'a mut dyn Read) -> Tap<'a> {
        Tap(Rc::new(RefCell::new(TapState {
            inner,
            credit: 0,
            tar_pos: 0,
            journal: Vec::new(),
            journal_start: 0,
            journaling: false,
        })))
    }

    /// Starts keeping what the `tar` crate reads (before asking it for
    /// the next entry).
    pub fn start_journal(&self) {
        let mut s = self.0.borrow_mut();
        s.journal.clear();
        s.journal_start = s.tar_pos;
        s.journaling = true;
    }

    /// Stops keeping what is read (bodies are not journaled).
    pub fn stop_journal(&self) {
        self.0.borrow_mut().journaling = false;
    }

    /// The `tar` crate's position in the archive.
    pub fn pos(&self) -> u64 {
        self.0.borrow().tar_pos
    }

    /// The raw bytes the `tar` crate read between archive positions
    /// `from` and `to`, when journaled.
    pub fn journaled(&self, from: u64, to: u64) -> Vec<u8> {
        let s = self.0.borrow();
        let (a, b) = (
            from.saturating_sub(s.journal_start) as usize,
            to.saturating_sub(s.journal_start) as usize,
        );
        s.journal
            .get(a..b.min(s.journal.len()))
            .unwrap_or_default()
            .to_vec()
    }

    /// Reads up to `len` bytes raw (an entry's data the `tar` crate would
    /// expand), crediting them to its later skip.
    pub fn raw(&self, len: u64) -> RawData<'_, 'a> {
        RawData {
            tap: self,
            left: len,
        }
    }
}

impl Read for Tap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        if s.credit > 0 {
            let n = buf.len().min(s.credit.min(usize::MAX as u64) as usize);
            buf[..n].fill(0);
            s.credit -= n as u64;
            s.tar_pos += n as u64;
            return Ok(n);
        }
        let n = s.inner.read(buf)?;
        s.tar_pos += n as u64;
        // The journal keeps the last MiB or so read: the header sequence
        // (and extension blocks) of the entry being handed out is at its
        // end, whatever body or padding was skipped before it.
        if !s.journaling {
            return Ok(n);
        }
        s.journal.extend_from_slice(&buf[..n]);
        if s.journal.len() > 2 << 20 {
            let cut = s.journal.len() - (1 << 20);
            s.journal.drain(..cut);
            s.journal_start += cut as u64;
        }
        Ok(n)
    }
}

/// Raw data of one entry; see [`Tap::raw`].
pub(crate) struct RawData<'t, 'a> {
    tap: &'t Tap<'a>,
    left: u64,
}

impl Read for RawData<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let mut s = self.tap.0.borrow_mut();
        let n = s.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        s.credit += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_checked_against_the_data() {
        let map = SparseMap {
            real_size: 100,
            regions: vec![
                Region { offset: 0, len: 10 },
                Region {
                    offset: 50,
                    len: 10,
                },
            ],
        };
        assert!(map.check(20).is_ok());
        assert!(map.check(21).is_err());
        let overlap = SparseMap {
            real_size: 100,
            regions: vec![Region { offset: 0, len: 10 }, Region { offset: 5, len: 1 }],
        };
        assert!(overlap.check(11).is_err());
        let beyond = SparseMap {
            real_size: 10,
            regions: vec![Region { offset: 5, len: 10 }],
        };
        assert!(beyond.check(10).is_err());
    }

    #[test]
    fn a_1_0_map_is_read_and_its_padding_skipped() {
        let mut data = b"2\n0\n5\n4096\n3\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"hello");
        let mut r = &data[..];
        let (regions, used) = read_map_1_0(&mut r, 1024).unwrap();
        assert_eq!(used, 512);
        assert_eq!(
            regions,
            vec![
                Region { offset: 0, len: 5 },
                Region {
                    offset: 4096,
                    len: 3
                }
            ]
        );
        assert_eq!(r, b"hello");
    }
}
