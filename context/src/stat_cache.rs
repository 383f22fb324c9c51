//! The persistent stat cache: a file's content digest, remembered with the
//! stat fields that change whenever its content (or its extended
//! attributes) may have, so an unchanged file is never read again.
//!
//! File format (all integers little-endian), versioned by its first line:
//!
//! ```text
//! "rbuild context stat cache v2\n"
//! u64 entry count
//! per entry: u32 path length, path bytes, u64 size, i64 mtime ns,
//!            i64 ctime ns, u64 inode, u64 device, i64 recorded ns,
//!            u8 flags (bit 0: the file had no extended attributes),
//!            32 bytes sha256 of the content
//! 32 bytes: sha256 of everything above
//! ```
//!
//! Entries are sorted by path bytes. The file is kept in memory as read
//! (one buffer and one offset per entry, found by binary search), never
//! as a map of owned paths: a fully cached build of a 100,000-file
//! context looks up every entry and allocates nothing per file. Which
//! entries a build used is one flag per entry; entries hashed this build
//! are the only ones held apart, and [`save`] merges the two.
//!
//! A file that is missing, of another version, truncated or corrupt
//! (checksum mismatch) is treated as empty: it is only a cache.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use super::ContextError;

const HEADER: &[u8] = b"rbuild context stat cache v2\n";
/// Bytes of an entry besides its path.
const FIXED: usize = 4 + 8 * 6 + 1 + 32;
/// Flag bit: the file had no extended attributes when it was hashed
/// (setting or removing one changes its ctime, so the entry then no
/// longer answers).
const NO_XATTRS: u8 = 1;

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
    /// The file had no extended attributes when it was read.
    pub no_xattrs: bool,
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

/// The entries of a cache file: the file's bytes as read and where each
/// entry starts, sorted by path.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Loaded {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Loaded {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    fn path(&self, i: usize) -> &[u8] {
        let at = self.offsets[i] as usize;
        let len = u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        &self.bytes[at + 4..at + 4 + len]
    }

    fn entry(&self, i: usize) -> Entry {
        let at = self.offsets[i] as usize;
        let len = u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let mut r = Reader(&self.bytes[at + 4 + len..]);
        // `decode` checked every entry's length.
        let mut u = || r.u64().expect("checked by decode");
        let key = StatKey {
            size: u(),
            mtime_ns: u() as i64,
            ctime_ns: u() as i64,
            ino: u(),
            dev: u(),
        };
        let recorded_ns = u() as i64;
        let flags = r.take(1).expect("checked by decode")[0];
        let digest = r
            .take(32)
            .expect("checked by decode")
            .try_into()
            .expect("32 bytes");
        Entry {
            key,
            recorded_ns,
            digest,
            no_xattrs: flags & NO_XATTRS != 0,
        }
    }

    /// The index of the entry for `path`.
    pub fn find(&self, path: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.path(mid).cmp(path.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    #[cfg(test)]
    pub fn get(&self, path: &str) -> Option<Entry> {
        self.find(path).map(|i| self.entry(i))
    }
}

/// The stat cache of one context during a build: the loaded file, which
/// of its entries this build used, and the entries it hashed anew.
#[derive(Debug, Default)]
pub(crate) struct StatCache {
    loaded: Loaded,
    used: Vec<AtomicBool>,
    used_count: AtomicUsize,
    fresh: std::sync::Mutex<HashMap<String, Entry>>,
    fresh_count: AtomicUsize,
}

impl StatCache {
    fn new(loaded: Loaded) -> StatCache {
        StatCache {
            used: (0..loaded.len()).map(|_| AtomicBool::new(false)).collect(),
            loaded,
            ..StatCache::default()
        }
    }

    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry that answers for `path` stat'ed as `key` (this build's,
    /// else the loaded file's, which is then kept by [`save`]).
    pub fn lookup(&self, path: &str, key: &StatKey) -> Option<Entry> {
        if self.fresh_count.load(Ordering::Acquire) > 0
            && let Some(entry) = self.lock_fresh().get(path).filter(|e| e.answers(key))
        {
            return Some(*entry);
        }
        let i = self.loaded.find(path)?;
        let entry = self.loaded.entry(i);
        if !entry.answers(key) {
            return None;
        }
        if !self.used[i].swap(true, Ordering::Relaxed) {
            self.used_count.fetch_add(1, Ordering::Relaxed);
        }
        Some(entry)
    }

    /// Remembers the entry of a file hashed this build.
    pub fn record(&self, path: &str, entry: Entry) {
        let mut fresh = self.lock_fresh();
        fresh.insert(path.to_string(), entry);
        self.fresh_count.store(fresh.len(), Ordering::Release);
    }

    /// Whether the file already says exactly what [`save`] would write:
    /// nothing was hashed and every loaded entry was used.
    pub fn unchanged(&self) -> bool {
        self.fresh_count.load(Ordering::Acquire) == 0
            && self.used_count.load(Ordering::Relaxed) == self.loaded.len()
    }
}

/// Reads the cache file at `path`; never fails (see [`CacheLoad`]).
pub(crate) fn load(path: &Path) -> (StatCache, CacheLoad) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatCache::default(), CacheLoad::Missing);
        }
        Err(_) => return (StatCache::default(), CacheLoad::Discarded),
    };
    match decode(bytes) {
        Some(loaded) => {
            let n = loaded.len();
            (StatCache::new(loaded), CacheLoad::Loaded(n))
        }
        None => (StatCache::default(), CacheLoad::Discarded),
    }
}

/// A cache file being read on a thread of its own, so that reading and
/// checking it (a 100,000-file context's is about 12 MB, checksummed
/// whole) overlaps the walk of the context, which needs no digest; the
/// first use waits for it.
pub(crate) type Pending =
    std::sync::LazyLock<(StatCache, CacheLoad), Box<dyn FnOnce() -> (StatCache, CacheLoad) + Send>>;

/// Starts reading the cache file at `path` (`None`: no cache at all). If
/// no thread can be started it is read on first use instead.
pub(crate) fn start_loading(path: Option<&Path>) -> Pending {
    let Some(path) = path else {
        return Pending::new(Box::new(|| (StatCache::default(), CacheLoad::Disabled)));
    };
    let owned = path.to_path_buf();
    let reader = std::thread::Builder::new()
        .name("stat-cache".into())
        .spawn(move || load(&owned));
    match reader {
        // A reader that panicked: it is only a cache.
        Ok(handle) => Pending::new(Box::new(move || {
            handle
                .join()
                .unwrap_or_else(|_| (StatCache::default(), CacheLoad::Discarded))
        })),
        Err(_) => {
            let owned = path.to_path_buf();
            Pending::new(Box::new(move || load(&owned)))
        }
    }
}

fn decode(bytes: Vec<u8>) -> Option<Loaded> {
    let body_len = bytes.len().checked_sub(32)?;
    // Offsets are u32.
    if body_len > u32::MAX as usize {
        return None;
    }
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let entries_at = HEADER.len() + 8;
    let mut r = Reader(body.strip_prefix(HEADER)?);
    let count = r.u64()?;
    // Each entry takes at least FIXED bytes: refuse absurd counts before
    // reserving memory for them.
    if count > (r.0.len() / FIXED) as u64 {
        return None;
    }
    let mut offsets: Vec<u32> = Vec::with_capacity(count as usize);
    let mut at = entries_at;
    let mut last: Option<&[u8]> = None;
    for _ in 0..count {
        offsets.push(at as u32);
        let len = r.u32()? as usize;
        let path = r.take(len)?;
        std::str::from_utf8(path).ok()?;
        r.take(FIXED - 4)?;
        // Strictly increasing, as `save` writes them, or it is not ours.
        if last.is_some_and(|last| last >= path) {
            return None;
        }
        last = Some(path);
        at += FIXED + len;
    }
    if !r.0.is_empty() {
        return None;
    }
    let mut bytes = bytes;
    bytes.truncate(body_len);
    Some(Loaded { bytes, offsets })
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

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes what `cache` holds after a build (the used loaded entries and
/// the fresh ones, sorted by path, so equal caches are equal files) to
/// `out`, streaming.
fn encode(cache: &StatCache, out: impl Write) -> std::io::Result<()> {
    enum From<'a> {
        Loaded(usize),
        Fresh(&'a Entry),
    }
    let fresh = cache.lock_fresh();
    let mut sorted: Vec<(&[u8], From<'_>)> = (0..cache.loaded.len())
        .filter(|&i| cache.used[i].load(Ordering::Relaxed))
        .map(|i| (cache.loaded.path(i), From::Loaded(i)))
        .filter(|(path, _)| {
            fresh.is_empty() || std::str::from_utf8(path).map_or(true, |p| !fresh.contains_key(p))
        })
        .collect();
    sorted.extend(fresh.iter().map(|(p, e)| (p.as_bytes(), From::Fresh(e))));
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Hashing {
        inner: std::io::BufWriter::with_capacity(256 * 1024, out),
        hasher: Sha256::new(),
    };
    out.write_all(HEADER)?;
    out.write_all(&(sorted.len() as u64).to_le_bytes())?;
    for (path, from) in sorted {
        let e = match from {
            From::Loaded(i) => cache.loaded.entry(i),
            From::Fresh(e) => *e,
        };
        out.write_all(&(path.len() as u32).to_le_bytes())?;
        out.write_all(path)?;
        for v in [
            e.key.size,
            e.key.mtime_ns as u64,
            e.key.ctime_ns as u64,
            e.key.ino,
            e.key.dev,
            e.recorded_ns as u64,
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&[if e.no_xattrs { NO_XATTRS } else { 0 }])?;
        out.write_all(&e.digest)?;
    }
    let sum = out.hasher.finalize_reset();
    out.inner.write_all(&sum)?;
    out.inner.flush()
}

/// Writes the cache to `path` atomically: a temporary file in the same
/// directory, then a rename, so a reader sees the old or the new file
/// whole. Creates the parent directory. Not fsync'd: a file lost or cut
/// short by a crash fails its checksum and is ignored next time.
pub(crate) fn save(path: &Path, cache: &StatCache) -> Result<(), ContextError> {
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
    let n = SAVES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|f| encode(cache, f));
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
            no_xattrs: n % 2 == 0,
        }
    }

    fn bytes_of(cache: &StatCache) -> Vec<u8> {
        let mut out = Vec::new();
        encode(cache, &mut out).unwrap();
        out
    }

    fn fresh_cache(n: u64) -> StatCache {
        let cache = StatCache::default();
        for i in 0..n {
            cache.record(&format!("dir/ü{i}"), entry(i));
        }
        cache
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let bytes = bytes_of(&fresh_cache(50));
        let loaded = decode(bytes.clone()).unwrap();
        assert_eq!(loaded.len(), 50);
        assert_eq!(loaded.get("dir/ü7"), Some(entry(7)));
        assert_eq!(loaded.get("dir/ü8"), Some(entry(8)));
        assert_eq!(loaded.get("dir/ü"), None);
        assert_eq!(decode(bytes_of(&StatCache::default())).unwrap().len(), 0);
        // Truncated, flipped, other version, empty: all ignored.
        assert_eq!(decode(bytes[..bytes.len() - 1].to_vec()), None);
        let mut flipped = bytes.clone();
        flipped[HEADER.len() + 20] ^= 1;
        assert_eq!(decode(flipped), None);
        let mut v1 = bytes.clone();
        v1[HEADER.len() - 2] = b'1';
        assert_eq!(decode(v1), None);
        assert_eq!(decode(Vec::new()), None);
    }

    #[test]
    fn save_keeps_used_and_fresh_entries_only() {
        let cache = StatCache::new(decode(bytes_of(&fresh_cache(10))).unwrap());
        assert!(!cache.unchanged());
        assert_eq!(cache.lookup("dir/ü3", &entry(3).key), Some(entry(3)));
        // A changed file does not answer, and is hashed anew.
        assert_eq!(cache.lookup("dir/ü4", &entry(5).key), None);
        cache.record("dir/ü4", entry(5));
        cache.record("new", entry(6));
        assert_eq!(cache.lookup("dir/ü4", &entry(5).key), Some(entry(5)));
        let saved = decode(bytes_of(&cache)).unwrap();
        assert_eq!(saved.len(), 3);
        assert_eq!(saved.get("dir/ü3"), Some(entry(3)));
        assert_eq!(saved.get("dir/ü4"), Some(entry(5)));
        assert_eq!(saved.get("new"), Some(entry(6)));

        let all = StatCache::new(decode(bytes_of(&fresh_cache(3))).unwrap());
        for i in 0..3 {
            all.lookup(&format!("dir/ü{i}"), &entry(i).key).unwrap();
        }
        assert!(all.unchanged());
    }

    /// Regression: the temporary file was named by process id only, so
    /// two threads saving the same stat cache at once (bake's targets
    /// sharing a context) wrote one file and the second rename failed.
    #[test]
    fn concurrent_saves_in_one_process_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctx.stat");
        let cache = fresh_cache(2000);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..20)
                            .map(|_| save(&path, &cache))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert!(decode(std::fs::read(&path).unwrap()).is_some());
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
