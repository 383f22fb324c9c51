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
//! Entries are sorted by path bytes. The file is not held in memory: it
//! is read once through its checksum when the build starts, keeping the
//! path and offset of every [`BLOCK`]th entry (a 100,000-file context's
//! 12 MB file leaves about 30 KB), and a lookup reads the one block its
//! path falls in (a few KB, found by binary search over the kept paths;
//! the last few blocks read are kept, so a walk in path order reads each
//! block once). Which entries a build used is one flag per entry. Entries
//! hashed this build are held apart, the last few thousand in memory and
//! earlier ones spilled as sorted runs in this same format to anonymous
//! files beside the cache (see [`StatCache`]); [`save`] merges them with
//! the used entries, streaming the old file.
//!
//! A file that is missing, of another version, truncated or corrupt
//! (checksum mismatch) is treated as empty: it is only a cache.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// Entries per block: the unit a lookup reads.
const BLOCK: usize = 64;

/// Blocks kept after a lookup read them.
const KEPT_BLOCKS: usize = 8;

/// The first entry of a block: its path and where the block starts.
#[derive(Debug, PartialEq)]
struct Mark {
    path: Box<[u8]>,
    at: u64,
}

/// One block of entries as read: its bytes and where each entry starts.
#[derive(Debug)]
struct Block {
    index: usize,
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Block {
    fn path(&self, i: usize) -> &[u8] {
        let at = self.offsets[i] as usize;
        let len = u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        &self.bytes[at + 4..at + 4 + len]
    }

    /// The serialized entry `i` (length, path, fixed fields).
    fn raw(&self, i: usize) -> &[u8] {
        let at = self.offsets[i] as usize;
        let end = self
            .offsets
            .get(i + 1)
            .map_or(self.bytes.len(), |&e| e as usize);
        &self.bytes[at..end]
    }

    fn entry(&self, i: usize) -> Entry {
        decode_entry(self.raw(i))
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.offsets.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.path(mid).cmp(path) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// The fixed fields of a serialized entry (after its length and path).
fn decode_entry(raw: &[u8]) -> Entry {
    let len = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")) as usize;
    let mut r = Reader(&raw[4 + len..]);
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

/// The entries of a cache file, sorted by path: the file, checked whole
/// when it was opened, and the first path of each block of [`BLOCK`].
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The file, kept open: a save that renames a new file over it does
    /// not change what this build reads.
    file: Option<std::fs::File>,
    marks: Vec<Mark>,
    len: usize,
    /// Where the entries end (the checksum follows).
    end: u64,
    /// The last blocks read, most recent last.
    blocks: std::sync::Mutex<Vec<std::sync::Arc<Block>>>,
}

impl Loaded {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Block `b`, read now unless it is one of the last read. `None` when
    /// the file cannot be read any more (a cache: the lookup misses).
    fn block(&self, b: usize) -> Option<std::sync::Arc<Block>> {
        let mut kept = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = kept.iter().position(|k| k.index == b) {
            let block = kept.remove(i);
            kept.push(std::sync::Arc::clone(&block));
            return Some(block);
        }
        drop(kept);
        let at = self.marks[b].at;
        let end = self.marks.get(b + 1).map_or(self.end, |m| m.at);
        let mut bytes = vec![0; usize::try_from(end - at).ok()?];
        std::os::unix::fs::FileExt::read_exact_at(self.file.as_ref()?, &mut bytes, at).ok()?;
        // Each entry's length was checked when the file was opened.
        let mut offsets = Vec::with_capacity(BLOCK);
        let mut pos = 0;
        while pos < bytes.len() {
            offsets.push(pos as u32);
            let len = u32::from_le_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?) as usize;
            pos += FIXED + len;
        }
        let block = std::sync::Arc::new(Block {
            index: b,
            bytes,
            offsets,
        });
        let mut kept = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= KEPT_BLOCKS {
            kept.remove(0);
        }
        kept.push(std::sync::Arc::clone(&block));
        Some(block)
    }

    /// The entry for `path` and its index.
    pub fn find(&self, path: &str) -> Option<(usize, Entry)> {
        let path = path.as_bytes();
        // The last block whose first path is not after `path`.
        let b = self
            .marks
            .partition_point(|m| &*m.path <= path)
            .checked_sub(1)?;
        let block = self.block(b)?;
        let i = block.find(path)?;
        Some((b * BLOCK + i, block.entry(i)))
    }

    #[cfg(test)]
    pub fn get(&self, path: &str) -> Option<Entry> {
        self.find(path).map(|(_, e)| e)
    }

    /// Calls `f` with each entry's index, path and serialized bytes, in
    /// order; stops at the first read that fails.
    fn for_each(
        &self,
        mut f: impl FnMut(usize, &[u8], &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        for b in 0..self.marks.len() {
            let block = self.block(b).ok_or_else(|| {
                std::io::Error::other("the stat cache file could not be read again")
            })?;
            for i in 0..block.offsets.len() {
                f(b * BLOCK + i, block.path(i), block.raw(i))?;
            }
        }
        Ok(())
    }
}

impl Loaded {
    /// Every entry, in order, as (path, serialized entry); an error when
    /// the file cannot be read again.
    fn entries(&self) -> impl Iterator<Item = RawEntry> + '_ {
        (0..self.marks.len()).flat_map(move |b| {
            let block = self.block(b).ok_or_else(|| {
                std::io::Error::other("a spilled stat cache run could not be read again")
            });
            let n = block.as_ref().map_or(1, |b| b.offsets.len());
            (0..n).map(move |i| match &block {
                Ok(block) => Ok((block.path(i).to_vec(), block.raw(i).to_vec())),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            })
        })
    }
}

/// The stat cache of one context during a build: the loaded file, which
/// of its entries this build used, and the entries it hashed anew — the
/// last [`FRESH_HELD`] in memory, earlier ones in sorted runs spilled to
/// anonymous files (each in this file's format, read as the loaded file
/// is), so a first build of a 100,000-file context holds a few thousand.
#[derive(Debug, Default)]
pub(crate) struct StatCache {
    loaded: Loaded,
    used: Vec<AtomicBool>,
    used_count: AtomicUsize,
    fresh: std::sync::Mutex<Fresh>,
    /// Entries recorded this build, spilled or not.
    fresh_count: AtomicUsize,
    /// Where runs are spilled (the cache file's directory); `None` keeps
    /// every fresh entry in memory.
    spill_dir: Option<std::path::PathBuf>,
}

/// Fresh entries: the ones in memory and the runs spilled before them,
/// oldest first.
#[derive(Debug, Default)]
struct Fresh {
    held: HashMap<String, Entry>,
    runs: Vec<Run>,
    /// A spill failed: the rest is held.
    unspillable: bool,
}

/// A spilled run and a Bloom filter of its paths: a lookup reads the run
/// only when the filter says the path may be in it (in a first build,
/// every file is looked up before it is hashed, and reading every run
/// for each of them cost more system time than the hashing).
#[derive(Debug)]
struct Run {
    loaded: Loaded,
    filter: Box<[u64]>,
}

impl Run {
    /// Bits per entry of the filter, and probes per path: about 0.2%
    /// false positives.
    const BITS: usize = 16;
    const PROBES: u64 = 4;

    fn probes(hash: u64, bits: usize) -> impl Iterator<Item = usize> {
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..Self::PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits as u64) as usize)
    }

    fn new<'p>(loaded: Loaded, paths: impl ExactSizeIterator<Item = &'p [u8]>) -> Run {
        let bits = (paths.len() * Self::BITS).max(64);
        let mut filter = vec![0u64; bits.div_ceil(64)].into_boxed_slice();
        let bits = filter.len() * 64;
        for path in paths {
            for bit in Self::probes(path_hash(path), bits) {
                filter[bit / 64] |= 1 << (bit % 64);
            }
        }
        Run { loaded, filter }
    }

    fn find(&self, path: &str, hash: u64) -> Option<Entry> {
        let bits = self.filter.len() * 64;
        if !Self::probes(hash, bits).all(|bit| self.filter[bit / 64] & (1 << (bit % 64)) != 0) {
            return None;
        }
        self.loaded.find(path).map(|(_, e)| e)
    }
}

/// The hash of a path for the runs' filters (the same in every run).
fn path_hash(path: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(path)
}

/// Fresh entries held in memory before they are spilled as a run.
const FRESH_HELD: usize = 8192;

impl StatCache {
    fn new(loaded: Loaded) -> StatCache {
        StatCache {
            used: (0..loaded.len()).map(|_| AtomicBool::new(false)).collect(),
            loaded,
            ..StatCache::default()
        }
    }

    /// Spills fresh entries into `dir` past [`FRESH_HELD`].
    fn spilling_into(mut self, dir: &Path) -> StatCache {
        self.spill_dir = Some(dir.to_path_buf());
        self
    }

    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, Fresh> {
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry that answers for `path` stat'ed as `key` (this build's,
    /// else the loaded file's, which is then kept by [`save`]).
    pub fn lookup(&self, path: &str, key: &StatKey) -> Option<Entry> {
        if self.fresh_count.load(Ordering::Acquire) > 0 {
            let fresh = self.lock_fresh();
            let entry = fresh.held.get(path).copied().or_else(|| {
                // The newest run first: a file hashed twice this build
                // (changed in between) answers with its last digest.
                let hash = path_hash(path.as_bytes());
                fresh.runs.iter().rev().find_map(|run| run.find(path, hash))
            });
            if let Some(entry) = entry.filter(|e| e.answers(key)) {
                return Some(entry);
            }
        }
        let (i, entry) = self.loaded.find(path)?;
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
        fresh.held.insert(path.to_string(), entry);
        self.fresh_count.fetch_add(1, Ordering::Release);
        if fresh.held.len() >= FRESH_HELD
            && !fresh.unspillable
            && let Some(dir) = &self.spill_dir
        {
            match spill_run(dir, &fresh.held) {
                Some(run) => {
                    fresh.held.clear();
                    fresh.held.shrink_to(FRESH_HELD);
                    fresh.runs.push(run);
                }
                // A full disk: held from now on, not tried again for
                // every file.
                None => fresh.unspillable = true,
            }
        }
    }

    /// Whether the file already says exactly what [`save`] would write:
    /// nothing was hashed and every loaded entry was used.
    pub fn unchanged(&self) -> bool {
        self.fresh_count.load(Ordering::Acquire) == 0
            && self.used_count.load(Ordering::Relaxed) == self.loaded.len()
    }
}

/// Writes `held` sorted, in the cache file's format, to an anonymous file
/// in `dir`, and opens it as a loaded file. `None` if that fails (the
/// entries then stay in memory: it is only a cache).
fn spill_run(dir: &Path, held: &HashMap<String, Entry>) -> Option<Run> {
    use std::io::Seek as _;
    let mut sorted: Vec<(&[u8], &Entry)> = held.iter().map(|(p, e)| (p.as_bytes(), e)).collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut file = tempfile::tempfile_in(dir).ok()?;
    write_file(&mut file, sorted.into_iter()).ok()?;
    file.rewind().ok()?;
    let len = file.metadata().ok()?.len();
    let scanned = scan(std::io::BufReader::with_capacity(256 * 1024, &file), len)?;
    Some(Run::new(
        scanned.loaded(file),
        held.keys().map(|p| p.as_bytes()),
    ))
}

/// Opens the cache file at `path` and checks it whole; never fails (see
/// [`CacheLoad`]).
pub(crate) fn load(path: &Path) -> (StatCache, CacheLoad) {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatCache::default(), CacheLoad::Missing);
        }
        Err(_) => return (StatCache::default(), CacheLoad::Discarded),
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return (StatCache::default(), CacheLoad::Discarded);
    };
    let scanned = scan(std::io::BufReader::with_capacity(256 * 1024, &file), len);
    match scanned.map(|s| s.loaded(file)) {
        Some(loaded) => {
            let n = loaded.len();
            (StatCache::new(loaded), CacheLoad::Loaded(n))
        }
        None => (StatCache::default(), CacheLoad::Discarded),
    }
}

/// [`load`], with fresh entries spilled next to the file (see
/// [`StatCache`]); its directory is made when missing.
fn load_spilling(path: &Path) -> (StatCache, CacheLoad) {
    let (cache, how) = load(path);
    match path.parent() {
        Some(dir) if std::fs::create_dir_all(dir).is_ok() => (cache.spilling_into(dir), how),
        _ => (cache, how),
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
        .spawn(move || load_spilling(&owned));
    match reader {
        // A reader that panicked: it is only a cache.
        Ok(handle) => Pending::new(Box::new(move || {
            handle
                .join()
                .unwrap_or_else(|_| (StatCache::default(), CacheLoad::Discarded))
        })),
        Err(_) => {
            let owned = path.to_path_buf();
            Pending::new(Box::new(move || load_spilling(&owned)))
        }
    }
}

/// What checking a cache file found: where its blocks start, how many
/// entries it has and where they end.
struct Scanned {
    marks: Vec<Mark>,
    len: usize,
    end: u64,
}

impl Scanned {
    fn loaded(self, file: std::fs::File) -> Loaded {
        Loaded {
            file: Some(file),
            marks: self.marks,
            len: self.len,
            end: self.end,
            blocks: Default::default(),
        }
    }
}

/// Reads a cache file of `len` bytes from its start: checks its header,
/// that every entry is whole, valid UTF-8 and after the one before, and
/// its checksum, keeping the first path of each block. `None` when it is
/// not a whole cache file of this version.
fn scan(input: impl std::io::Read, len: u64) -> Option<Scanned> {
    use std::io::Read as _;
    let body_len = len.checked_sub(32)?;
    let mut input = input;
    let mut body = rbuild_store::layer::HashingReader::new((&mut input).take(body_len));
    let mut header = [0; HEADER.len()];
    body.read_exact(&mut header).ok()?;
    if header != HEADER {
        return None;
    }
    let mut word = [0; 8];
    body.read_exact(&mut word).ok()?;
    let count = u64::from_le_bytes(word);
    // Each entry takes at least FIXED bytes: refuse absurd counts before
    // reserving memory for them.
    let entries_at = (HEADER.len() + 8) as u64;
    if count > (body_len.checked_sub(entries_at)?) / FIXED as u64 {
        return None;
    }
    let mut marks = Vec::with_capacity((count as usize).div_ceil(BLOCK));
    let mut at = entries_at;
    let mut last: Vec<u8> = Vec::new();
    let mut path: Vec<u8> = Vec::new();
    let mut fixed = [0; FIXED - 4];
    for i in 0..count as usize {
        let mut len_bytes = [0; 4];
        body.read_exact(&mut len_bytes).ok()?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len as u64 > body_len - at {
            return None;
        }
        path.clear();
        path.resize(len, 0);
        body.read_exact(&mut path).ok()?;
        std::str::from_utf8(&path).ok()?;
        body.read_exact(&mut fixed).ok()?;
        // Strictly increasing, as `save` writes them, or it is not ours.
        if i > 0 && last >= path {
            return None;
        }
        if i % BLOCK == 0 {
            marks.push(Mark {
                path: path.clone().into_boxed_slice(),
                at,
            });
        }
        std::mem::swap(&mut last, &mut path);
        at += (FIXED + len) as u64;
    }
    if at != body_len {
        return None;
    }
    let digest = body.digest();
    let mut sum = [0; 32];
    input.read_exact(&mut sum).ok()?;
    (*digest.as_bytes() == sum).then_some(Scanned {
        marks,
        len: count as usize,
        end: at,
    })
}

/// [`scan`] over `bytes`, as a file.
#[cfg(test)]
fn decode(bytes: Vec<u8>) -> Option<Loaded> {
    use std::io::{Seek as _, Write as _};
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bytes).unwrap();
    file.rewind().unwrap();
    let scanned = scan(std::io::BufReader::new(&file), bytes.len() as u64)?;
    Some(scanned.loaded(file))
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
}

/// Writes what `cache` holds after a build (the used loaded entries and
/// the fresh ones, sorted by path, so equal caches are equal files) to
/// `out`, streaming: the loaded file merged with the fresh entries, which
/// are merged from their spilled runs and the ones held.
fn encode(cache: &StatCache, out: impl Write) -> std::io::Result<()> {
    let fresh = cache.lock_fresh();
    let used = |i: usize| cache.used[i].load(Ordering::Relaxed);
    // The count comes first: one pass over the fresh entries alone finds
    // how many paths they have and how many used loaded entries they
    // replace.
    let (mut distinct, mut replaced) = (0, 0);
    for entry in FreshEntries::new(&fresh) {
        let (path, _) = entry?;
        distinct += 1;
        let path = std::str::from_utf8(&path).expect("checked or recorded as a str");
        if cache.loaded.find(path).is_some_and(|(i, _)| used(i)) {
            replaced += 1;
        }
    }
    let count = cache.used_count.load(Ordering::Relaxed) + distinct - replaced;
    let mut out = FileWriter::start(out, count)?;
    let mut next_fresh = FreshEntries::new(&fresh).peekable();
    let mut last_fresh: Option<Vec<u8>> = None;
    cache.loaded.for_each(|i, path, raw| {
        while let Some(entry) =
            next_fresh.next_if(|e| e.as_ref().map_or(true, |(p, _)| p.as_slice() <= path))
        {
            let (p, raw) = entry?;
            out.entry(&raw)?;
            last_fresh = Some(p);
        }
        // A fresh entry replaces a used loaded one of the same path.
        if used(i) && last_fresh.as_deref() != Some(path) {
            out.entry(raw)?;
        }
        Ok(())
    })?;
    for entry in next_fresh {
        out.entry(&entry?.1)?;
    }
    out.finish()
}

/// A cache file being written: the header, the count, then entries, then
/// the checksum of it all.
struct FileWriter<W: Write> {
    out: rbuild_store::layer::HashingWriter<std::io::BufWriter<W>>,
    count: usize,
    written: usize,
}

impl<W: Write> FileWriter<W> {
    fn start(out: W, count: usize) -> std::io::Result<FileWriter<W>> {
        let mut out = rbuild_store::layer::HashingWriter::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            out,
        ));
        out.write_all(HEADER)?;
        out.write_all(&(count as u64).to_le_bytes())?;
        Ok(FileWriter {
            out,
            count,
            written: 0,
        })
    }

    /// Writes a serialized entry (length, path, fixed fields).
    fn entry(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.written += 1;
        self.out.write_all(raw)
    }

    fn finish(self) -> std::io::Result<()> {
        if self.written != self.count {
            // Another thread of this build used an entry meanwhile: the
            // count written first is wrong, and so would the file be.
            return Err(std::io::Error::other(
                "the stat cache changed while it was saved",
            ));
        }
        let (out, (sum, _)) = self.out.into_parts();
        let mut out = out;
        out.write_all(sum.as_bytes())?;
        out.flush()
    }
}

/// Writes a whole cache file of `entries`, already sorted, to `out`.
fn write_file<'e>(
    out: impl Write,
    entries: impl ExactSizeIterator<Item = (&'e [u8], &'e Entry)>,
) -> std::io::Result<()> {
    let mut file = FileWriter::start(out, entries.len())?;
    for (path, e) in entries {
        file.entry(&raw_entry(path, e))?;
    }
    file.finish()
}

/// The serialized form of entry `e` of `path`.
fn raw_entry(path: &[u8], e: &Entry) -> Vec<u8> {
    let mut raw = Vec::with_capacity(FIXED + path.len());
    write_entry(&mut raw, path, e).expect("writing to memory");
    raw
}

/// An entry read from a cache file: (path, serialized entry).
type RawEntry = std::io::Result<(Vec<u8>, Vec<u8>)>;

/// The fresh entries in path order, one per path (the one recorded last),
/// as (path, serialized entry): the spilled runs, oldest first, and the
/// held ones merged.
struct FreshEntries<'a> {
    sources: Vec<Box<dyn Iterator<Item = RawEntry> + 'a>>,
    /// The next entry of each source, ordered for a max-heap to pop the
    /// smallest path and, of equal ones, the older source first.
    heads: std::collections::BinaryHeap<Head>,
    /// A source that failed to read: reported once, then the end.
    failed: Option<std::io::Error>,
    started: bool,
}

struct Head {
    path: Vec<u8>,
    raw: Vec<u8>,
    source: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Head) -> std::cmp::Ordering {
        (&other.path, other.source).cmp(&(&self.path, self.source))
    }
}

impl<'a> FreshEntries<'a> {
    fn new(fresh: &'a Fresh) -> FreshEntries<'a> {
        let mut sources: Vec<Box<dyn Iterator<Item = _> + 'a>> = fresh
            .runs
            .iter()
            .map(|run| Box::new(run.loaded.entries()) as Box<dyn Iterator<Item = _>>)
            .collect();
        let mut held: Vec<(&[u8], &Entry)> =
            fresh.held.iter().map(|(p, e)| (p.as_bytes(), e)).collect();
        held.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sources.push(Box::new(
            held.into_iter()
                .map(|(p, e)| Ok((p.to_vec(), raw_entry(p, e)))),
        ));
        FreshEntries {
            sources,
            heads: std::collections::BinaryHeap::new(),
            failed: None,
            started: false,
        }
    }

    /// Moves source `source`'s next entry to the heads.
    fn advance(&mut self, source: usize) {
        match self.sources[source].next() {
            Some(Ok((path, raw))) => self.heads.push(Head { path, raw, source }),
            Some(Err(e)) => self.failed = Some(e),
            None => {}
        }
    }
}

impl Iterator for FreshEntries<'_> {
    type Item = RawEntry;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            for source in 0..self.sources.len() {
                self.advance(source);
            }
        }
        let mut head = self.heads.pop()?;
        self.advance(head.source);
        // Of entries of the same path, the newest source's.
        while self.heads.peek().is_some_and(|h| h.path == head.path) {
            let newer = self.heads.pop().expect("peeked");
            self.advance(newer.source);
            head = newer;
        }
        match self.failed.take() {
            Some(e) => {
                self.heads.clear();
                Some(Err(e))
            }
            None => Some(Ok((head.path, head.raw))),
        }
    }
}

fn write_entry(out: &mut impl Write, path: &[u8], e: &Entry) -> std::io::Result<()> {
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
    out.write_all(&e.digest)
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
        assert!(decode(bytes[..bytes.len() - 1].to_vec()).is_none());
        let mut flipped = bytes.clone();
        flipped[HEADER.len() + 20] ^= 1;
        assert!(decode(flipped).is_none());
        let mut v1 = bytes.clone();
        v1[HEADER.len() - 2] = b'1';
        assert!(decode(v1).is_none());
        assert!(decode(Vec::new()).is_none());
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

    /// Fresh entries past [`FRESH_HELD`] go to runs in the spill
    /// directory: lookups still find them (a path's newest entry), and
    /// the saved file is byte for byte the one a cache holding them all
    /// writes, merged with the used loaded entries.
    #[test]
    fn spilled_fresh_entries_answer_and_save_as_held_ones() {
        let dir = tempfile::tempdir().unwrap();
        let old = bytes_of(&fresh_cache(100));
        let spilling = StatCache::new(decode(old.clone()).unwrap()).spilling_into(dir.path());
        let holding = StatCache::new(decode(old).unwrap());
        let n = FRESH_HELD as u64 * 2 + 100;
        for cache in [&spilling, &holding] {
            for i in 0..30 {
                cache.lookup(&format!("dir/ü{i}"), &entry(i).key).unwrap();
            }
            // A permutation of 0..n (7919 is prime and does not divide n).
            for i in 0..n {
                cache.record(&format!("f/{:06}", (i * 7919) % n), entry(i));
            }
            // Hashed again: a used loaded entry and a spilled one.
            cache.record("dir/ü10", entry(20));
            cache.record("f/000003", entry(7));
        }
        assert_eq!(spilling.lock_fresh().runs.len(), 2);
        assert!(holding.lock_fresh().runs.is_empty());
        assert_eq!(spilling.lookup("f/000000", &entry(0).key), Some(entry(0)));
        assert_eq!(spilling.lookup("f/000003", &entry(7).key), Some(entry(7)));
        assert_eq!(spilling.lookup("dir/ü10", &entry(20).key), Some(entry(20)));
        let bytes = bytes_of(&spilling);
        assert!(bytes == bytes_of(&holding), "spilled and held save alike");
        let saved = decode(bytes).unwrap();
        assert_eq!(saved.len(), 30 + n as usize);
        assert_eq!(saved.get("dir/ü10"), Some(entry(20)));
        assert_eq!(saved.get("dir/ü29"), Some(entry(29)));
        assert_eq!(saved.get("dir/ü30"), None, "not used");
        assert_eq!(saved.get("f/000003"), Some(entry(7)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A spill directory that cannot be written (a full disk) keeps the
    /// fresh entries in memory after one try, not one per file.
    #[test]
    fn a_failed_spill_holds_fresh_entries_and_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StatCache::default().spilling_into(&dir.path().join("missing"));
        let n = FRESH_HELD as u64 + 10;
        for i in 0..n {
            cache.record(&format!("f{i:06}"), entry(i));
        }
        let fresh = cache.lock_fresh();
        assert!(fresh.unspillable && fresh.runs.is_empty());
        assert_eq!(fresh.held.len(), n as usize);
        drop(fresh);
        assert_eq!(decode(bytes_of(&cache)).unwrap().len(), n as usize);
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

    /// Lookups read one block of the file, not the file: every entry of a
    /// file of many blocks is found through them, in any order, from
    /// threads at once, and a path between two entries is not.
    #[test]
    fn lookups_read_the_block_their_path_falls_in() {
        let n = (BLOCK * 5 + 7) as u64;
        let loaded = decode(bytes_of(&fresh_cache(n))).unwrap();
        assert_eq!(loaded.len(), n as usize);
        assert_eq!(loaded.marks.len(), 6);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let loaded = &loaded;
                s.spawn(move || {
                    // Each thread its own order: forwards, backwards, strided.
                    let order: Vec<u64> = match t {
                        0 => (0..n).collect(),
                        1 => (0..n).rev().collect(),
                        _ => (0..n).map(|i| (i * 37 + t) % n).collect(),
                    };
                    for i in order {
                        assert_eq!(loaded.get(&format!("dir/ü{i}")), Some(entry(i)), "{i}");
                        assert_eq!(loaded.get(&format!("dir/ü{i}-")), None);
                    }
                });
            }
        });
        assert_eq!(loaded.get("a"), None, "before the first entry");
        assert_eq!(loaded.get("zzz"), None, "after the last");
        let kept = loaded.blocks.lock().unwrap().len();
        assert!(kept <= KEPT_BLOCKS, "{kept} blocks kept");
    }

    /// Saving streams the old file merged with this build's entries: the
    /// result is what the used and fresh entries say, sorted, across block
    /// boundaries, with a fresh entry replacing a used one of its path.
    #[test]
    fn save_merges_the_old_file_with_fresh_entries_across_blocks() {
        // Entries read long after their files' times: they all answer.
        let entry = |n: u64| Entry {
            recorded_ns: i64::MAX,
            ..entry(n)
        };
        let n = (BLOCK * 3) as u64;
        let old = StatCache::default();
        for i in 0..n {
            old.record(&format!("dir/ü{i}"), entry(i));
        }
        let cache = StatCache::new(decode(bytes_of(&old)).unwrap());
        let mut want = std::collections::BTreeMap::new();
        for i in (0..n).step_by(3) {
            let path = format!("dir/ü{i}");
            assert_eq!(cache.lookup(&path, &entry(i).key), Some(entry(i)));
            want.insert(path, entry(i));
        }
        // Replacing used ones (1 of every 6), and new paths between the
        // old ones and at both ends.
        for i in (0..n).step_by(6) {
            let path = format!("dir/ü{i}");
            cache.record(&path, entry(i + 1000));
            want.insert(path, entry(i + 1000));
        }
        for path in [
            "a-first".to_string(),
            "zz-last".to_string(),
            format!("dir/ü{}x", BLOCK),
        ] {
            cache.record(&path, entry(7));
            want.insert(path, entry(7));
        }
        let saved = decode(bytes_of(&cache)).unwrap();
        assert_eq!(saved.len(), want.len());
        for (path, e) in &want {
            assert_eq!(saved.get(path), Some(*e), "{path}");
        }
        assert_eq!(saved.get("dir/ü1"), None, "an entry this build did not use");
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
