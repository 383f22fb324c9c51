//! A layer checked before it enters the store ([`super::validate`]): the
//! tar stream is read once, front to back, through the checks the
//! unpacker applies, so a layer that could never be unpacked is refused at
//! `import`, `load` or `pull` (naming the entry) instead of being tagged
//! and failing every run.
//!
//! Refused: a path climbing out with `..`; an entry (or a hardlink
//! target) whose path goes through a symlink the layer made (relative or
//! absolute: the unpacker never follows one); a hardlink whose target climbs out or, in the
//! bottom layer, is not in the layer; an entry whose header promises more
//! bytes than the archive holds (cut short); a sparse file whose map is
//! inconsistent or runs past its data; an entry type the unpacker does
//! not know. Sparse files are read as stored (their holes are not
//! expanded). A missing end-of-archive marker is
//! accepted, as Go's archive/tar (Docker) accepts it.

use std::collections::HashSet;
use std::io::{self, Read};

use rbuild_oci::Digest;

use super::hash_thread::ThreadHashingReader;
use super::sparse::{self, FileData, Tap};
use super::unpack::{OPAQUE_MARKER, WHITEOUT_PREFIX, clean};
use super::{LayerError, ValidateStats};

/// Which paths a layer has made so far: symlinks (nothing may be written
/// through them) and everything else (hardlink targets).
#[derive(Default)]
struct Tree {
    symlinks: HashSet<Vec<u8>>,
    paths: HashSet<Vec<u8>>,
}

impl Tree {
    /// The first proper prefix of `comps` that is a symlink of this layer.
    fn through_symlink(&self, comps: &[&[u8]]) -> Option<Vec<u8>> {
        if self.symlinks.is_empty() {
            return None;
        }
        (1..comps.len())
            .map(|i| comps[..i].join(&b'/'))
            .find(|p| self.symlinks.contains(p))
    }

    fn remove_under(&mut self, key: &[u8]) {
        let under =
            |p: &Vec<u8>| p == key || (p.starts_with(key) && p.get(key.len()) == Some(&b'/'));
        self.symlinks.retain(|p| !under(p));
        self.paths.retain(|p| !under(p));
    }
}

pub(crate) fn validate(input: &mut dyn Read, bottom: bool) -> Result<ValidateStats, LayerError> {
    let mut reader = ThreadHashingReader::new(io::BufReader::with_capacity(256 << 10, input));
    let mut stats = ValidateStats {
        diff_id: Digest::of(b""),
        size: 0,
        entries: 0,
        file_bytes: 0,
    };
    let mut tree = Tree::default();
    let mut buf = vec![0u8; 256 << 10];
    {
        let tap = Tap::new(&mut reader);
        let mut archive = tar::Archive::new(tap.clone());
        let mut entries = archive
            .entries()
            .map_err(|source| LayerError::malformed("<start of archive>", source))?;
        let mut last = String::from("<start of archive>");
        loop {
            tap.start_journal();
            let Some(entry) = entries.next() else { break };
            let mut entry = entry.map_err(|source| LayerError::malformed(&last, source))?;
            let layout = sparse::entry_layout(&mut entry, &tap)
                .map_err(|source| LayerError::malformed(&last, source))?;
            tap.stop_journal();
            let (raw, data) = match layout {
                Ok(l) => l,
                Err(reason) => {
                    return Err(LayerError::UnsafeEntry {
                        entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                        reason,
                    });
                }
            };
            last = String::from_utf8_lossy(&raw).into_owned();
            let unsafe_entry = |reason: String| LayerError::UnsafeEntry {
                entry: String::from_utf8_lossy(&raw).into_owned(),
                reason,
            };
            check_entry(&mut entry, &raw, &mut tree, bottom).map_err(unsafe_entry)?;
            // Read the body: a header promising more than the archive
            // holds is refused here, not when a run needs the file. A
            // sparse file's data is read as stored, holes not expanded.
            let (declared, mut body): (u64, Box<dyn Read + '_>) = match data {
                FileData::Plain => (entry.size(), Box::new(&mut entry)),
                FileData::Sparse {
                    data_len,
                    raw: true,
                    ..
                } => (data_len, Box::new(tap.raw(data_len))),
                FileData::Sparse {
                    data_len,
                    raw: false,
                    ..
                } => (data_len, Box::new(&mut entry)),
            };
            let mut got = 0u64;
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(LayerError::malformed(&last, source)),
                }
            }
            if got < declared {
                return Err(LayerError::Truncated {
                    entry: last,
                    declared,
                    actual: got,
                });
            }
            stats.file_bytes += got;
            stats.entries += 1;
        }
    }
    // The end-of-archive blocks and padding belong to the diffID too.
    io::copy(&mut reader, &mut io::sink())
        .map_err(|source| LayerError::malformed("<end of archive>", source))?;
    let (diff_id, size) = reader.finish();
    stats.diff_id = diff_id;
    stats.size = size;
    Ok(stats)
}

/// The unpacker's rules for one entry, on paths only.
fn check_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw: &[u8],
    tree: &mut Tree,
    bottom: bool,
) -> Result<(), String> {
    use tar::EntryType as T;
    let ty = entry.header().entry_type();
    if matches!(ty, T::XGlobalHeader) {
        return Ok(());
    }
    let comps =
        clean(raw).map_err(|_| "path climbs out of the destination with \"..\"".to_string())?;
    let Some((name, _)) = comps.split_last() else {
        return Ok(());
    };
    if let Some(link) = tree.through_symlink(&comps) {
        return Err(format!(
            "path goes through {:?}, which is a symlink",
            String::from_utf8_lossy(&link)
        ));
    }
    let key = comps.join(&b'/');
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        let opaque = target == &OPAQUE_MARKER[WHITEOUT_PREFIX.len()..];
        if !opaque
            && !target.starts_with(WHITEOUT_PREFIX)
            && (target.is_empty() || target == b"." || target == b"..")
        {
            return Err("whiteout names no file".into());
        }
        if !opaque && !target.starts_with(WHITEOUT_PREFIX) {
            let mut gone = comps[..comps.len() - 1].join(&b'/');
            if !gone.is_empty() {
                gone.push(b'/');
            }
            gone.extend_from_slice(target);
            tree.remove_under(&gone);
        }
        return Ok(());
    }
    match ty {
        T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Char | T::Block | T::Fifo => {
            tree.symlinks.remove(&key);
        }
        T::Symlink => {
            tree.remove_under(&key);
            tree.symlinks.insert(key.clone());
        }
        T::Link => {
            let target = link_target(entry)?;
            let outside = || {
                format!(
                    "hardlink target {:?} points outside the destination",
                    String::from_utf8_lossy(&target)
                )
            };
            let tcomps = clean(&target).map_err(|_| outside())?;
            if tcomps.is_empty() {
                return Err("hardlink to the root directory".into());
            }
            if let Some(link) = tree.through_symlink(&tcomps) {
                return Err(format!(
                    "hardlink target {:?} goes through {:?}, which is a symlink",
                    String::from_utf8_lossy(&target),
                    String::from_utf8_lossy(&link)
                ));
            }
            let tkey = tcomps.join(&b'/');
            if bottom && !tree.paths.contains(&tkey) {
                return Err(format!(
                    "hardlink target {:?} is not in the archive before it",
                    String::from_utf8_lossy(&target)
                ));
            }
            tree.symlinks.remove(&key);
        }
        other => {
            return Err(format!(
                "unsupported entry type {:?}",
                other.as_byte() as char
            ));
        }
    }
    tree.paths.insert(key);
    Ok(())
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Vec<u8>, String> {
    match entry.link_name_bytes() {
        Some(name) if !name.is_empty() => Ok(name.into_owned()),
        _ => Err("link entry without a target".into()),
    }
}
