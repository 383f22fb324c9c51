//! The persistent stat cache: a file's content digest, remembered with the
//! stat fields that change whenever its content may have, so an unchanged
//! file is never read again.
//!
//! File format (all integers little-endian), versioned by its first line:
//!
//! ```text
//! "rbuild context stat cache v1\n"
//! u64 entry count
//! per entry: u32 path length, path bytes, u64 size, i64 mtime ns,
//!            i64 ctime ns, u64 inode, u64 device, i64 recorded ns,
//!            32 bytes sha256 of the content
//! 32 bytes: sha256 of everything above
//! ```
//!
//! A file that is missing, of another version, truncated or corrupt
//! (checksum mismatch) is treated as empty: it is only a cache.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::ContextError;

const HEADER: &[u8] = b"rbuild context stat cache v1\n";
/// Bytes of an entry besides its path.
const FIXED: usize = 4 + 8 * 6 + 32;

/// The stat fields a cached digest is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatKey {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

/// One remembered digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: StatKey,
    /// When the content was read (the kernel's coarse clock, the one file
    /// timestamps come from), to spot racy entries.
    pub recorded_ns: i64,
    pub digest: [u8; 32],
}

impl Entry {
    /// Whether this entry answers for a file that stats as `key`. A file
    /// whose mtime is not older than the moment it was read may have been
    /// written again within the same timestamp tick after the read, with
    /// stat fields identical to the ones recorded, so it is re-read.
    pub fn answers(&self, key: &StatKey) -> bool {
        self.key == *key && key.mtime_ns < self.recorded_ns && key.ctime_ns < self.recorded_ns
    }
}

/// How loading the cache file went (for reports and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLoad {
    /// No stat cache was asked for.
    Disabled,
    /// The file did not exist yet.
    Missing,
    /// Read, with this many entries.
    Loaded(usize),
    /// Present but unusable (other version, truncated, corrupt or
    /// unreadable), so ignored.
    Discarded,
}

/// Entries loaded from a cache file, sorted by path (as the file stores
/// them), looked up by binary search: loading builds no hash table.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Loaded(Vec<(String, Entry)>);

impl Loaded {
    pub fn get(&self, path: &str) -> Option<&Entry> {
        let i = self
            .0
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()?;
        Some(&self.0[i].1)
    }
}

/// Reads the cache file at `path`; never fails (see [`CacheLoad`]).
pub(crate) fn load(path: &Path) -> (Loaded, CacheLoad) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (Loaded::default(), CacheLoad::Missing);
        }
        Err(_) => return (Loaded::default(), CacheLoad::Discarded),
    };
    match decode(&bytes) {
        Some(loaded) => {
            let n = loaded.0.len();
            (loaded, CacheLoad::Loaded(n))
        }
        None => (Loaded::default(), CacheLoad::Discarded),
    }
}

fn decode(bytes: &[u8]) -> Option<Loaded> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader(body.strip_prefix(HEADER)?);
    let count = r.u64()?;
    // Each entry takes at least FIXED bytes: refuse absurd counts before
    // reserving memory for them.
    if count > (r.0.len() / FIXED) as u64 {
        return None;
    }
    let mut entries: Vec<(String, Entry)> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let key = StatKey {
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            ino: r.u64()?,
            dev: r.u64()?,
        };
        let recorded_ns = r.u64()? as i64;
        let digest = r.take(32)?.try_into().ok()?;
        // Strictly increasing, as `encode` writes them, or it is not ours.
        if entries.last().is_some_and(|(last, _)| *last >= path) {
            return None;
        }
        let entry = Entry {
            key,
            recorded_ns,
            digest,
        };
        entries.push((path, entry));
    }
    r.0.is_empty().then_some(Loaded(entries))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// Encodes `entries` (sorted by path, so equal caches are equal files).
fn encode(entries: &HashMap<String, Entry>) -> Vec<u8> {
    let mut sorted: Vec<(&String, &Entry)> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let size: usize = sorted.iter().map(|(p, _)| p.len() + FIXED).sum();
    let mut out = Vec::with_capacity(HEADER.len() + 8 + size + 32);
    out.extend_from_slice(HEADER);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    for (path, e) in sorted {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        for v in [
            e.key.size,
            e.key.mtime_ns as u64,
            e.key.ctime_ns as u64,
            e.key.ino,
            e.key.dev,
            e.recorded_ns as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&e.digest);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Writes `entries` to `path` atomically: a temporary file in the same
/// directory, then a rename, so a reader sees the old or the new file
/// whole. Creates the parent directory. Not fsync'd: a file lost or cut
/// short by a crash fails its checksum and is ignored next time.
pub(crate) fn save(path: &Path, entries: &HashMap<String, Entry>) -> Result<(), ContextError> {
    let bytes = encode(entries);
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // Unique per save, not only per process: bake builds several targets
    // at once in one process, and targets sharing a context save the same
    // stat cache from different threads.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(&bytes));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(ContextError::Io { path: tmp, source });
    }
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ContextError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry {
            key: StatKey {
                size: n,
                mtime_ns: -(n as i64),
                ctime_ns: n as i64 * 3,
                ino: n + 7,
                dev: 42,
            },
            recorded_ns: 99,
            digest: [n as u8; 32],
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let entries: HashMap<String, Entry> =
            (0..50).map(|n| (format!("dir/ü{n}"), entry(n))).collect();
        let bytes = encode(&entries);
        let mut sorted: Vec<(String, Entry)> = entries.clone().into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let loaded = decode(&bytes).unwrap();
        assert_eq!(loaded, Loaded(sorted));
        assert_eq!(loaded.get("dir/ü7"), Some(&entry(7)));
        assert_eq!(loaded.get("dir/ü"), None);
        assert_eq!(decode(&encode(&HashMap::new())), Some(Loaded::default()));
        // Truncated, flipped, other version, empty: all ignored.
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        let mut flipped = bytes.clone();
        flipped[HEADER.len() + 20] ^= 1;
        assert_eq!(decode(&flipped), None);
        let mut v2 = bytes.clone();
        v2[HEADER.len() - 2] = b'2';
        assert_eq!(decode(&v2), None);
        assert_eq!(decode(b""), None);
    }

    /// Regression: the temporary file was named by process id only, so
    /// two threads saving the same stat cache at once (bake's targets
    /// sharing a context) wrote one file and the second rename failed.
    #[test]
    fn concurrent_saves_in_one_process_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctx.stat");
        let entries: HashMap<String, Entry> =
            (0..2000).map(|n| (format!("f{n}"), entry(n))).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..20)
                            .map(|_| save(&path, &entries))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert!(decode(&std::fs::read(&path).unwrap()).is_some());
    }

    #[test]
    fn racy_entries_do_not_answer() {
        let e = entry(1);
        assert!(e.answers(&e.key));
        let mut racy = e;
        racy.key.ctime_ns = 99;
        racy.recorded_ns = 99;
        assert!(!racy.answers(&racy.key));
        let mut other = e.key;
        other.ino += 1;
        assert!(!e.answers(&other));
    }
}
