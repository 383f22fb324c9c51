//! The per-file digests behind a step's content digest — `(path,
//! digest)`, sorted by path, one per path — kept to explain a later miss
//! (which files changed) and saved with the step's fingerprint.
//!
//! A COPY of a large context has one per file: 100,000 files made about
//! 11 MB, held twice when a miss was explained (the previous build's
//! list beside the current one). Lists longer than [`RUN_LEN`] are
//! therefore built on disk when a spill directory is given: sorted runs
//! of [`RUN_LEN`] entries go to an anonymous temporary file, merged as
//! the list is read ([`FileDigests::iter`]), so a build holds one run in
//! memory whatever the file count. A list nobody reads (a cached step's,
//! whose saved fingerprint is current) is never merged.
//!
//! A spill file holds entries as `u32 path length (LE), path bytes, 32
//! digest bytes`. It is unlinked from the moment it is created
//! ([`tempfile::tempfile_in`]), so nothing is left behind whatever ends
//! the process.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::Digest;

/// Entries held in memory before a sorted run of them is spilled.
pub const RUN_LEN: usize = 8192;

/// Buffer size for each run read while merging, and for iteration.
const READ_BUF: usize = 32 * 1024;

/// Per-file digests, sorted by path with one entry per path; cheap to
/// clone (shared).
#[derive(Clone, Default)]
pub struct FileDigests(Arc<Repr>);

enum Repr {
    Memory(Vec<(String, Digest)>),
    /// Sorted runs in the spill format at `bounds` in `file`, in push
    /// order, then `tail` (the entries pushed last, sorted, in memory);
    /// their merge is the list, counted when first asked.
    Spilled {
        file: File,
        bounds: Vec<(u64, u64)>,
        tail: Vec<(String, Digest)>,
        len: std::sync::OnceLock<usize>,
    },
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Memory(Vec::new())
    }
}

impl FileDigests {
    /// The list of `files`, in any order; of entries with the same path
    /// the last one counts (as a map would keep).
    pub fn from_vec(files: Vec<(String, Digest)>) -> FileDigests {
        FileDigests(Arc::new(Repr::Memory(sorted_last_per_path(files))))
    }

    /// How many entries (for a spilled list, counted by reading it the
    /// first time; an unreadable one counts what could be read).
    pub fn len(&self) -> usize {
        match &*self.0 {
            Repr::Memory(v) => v.len(),
            Repr::Spilled { len, .. } => {
                *len.get_or_init(|| self.iter().take_while(Result::is_ok).count())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match &*self.0 {
            Repr::Memory(v) => v.is_empty(),
            // Spilled only past a run's worth of entries.
            Repr::Spilled { .. } => false,
        }
    }

    /// Whether the list is on disk rather than in memory.
    pub fn is_spilled(&self) -> bool {
        matches!(&*self.0, Repr::Spilled { .. })
    }

    /// All entries, in path order, in memory.
    pub fn to_vec(&self) -> io::Result<Vec<(String, Digest)>> {
        self.iter().collect()
    }

    /// The entries in path order. A spilled list's runs are merged as it
    /// goes; an error reading them ends the iteration with that error.
    pub fn iter(&self) -> Iter<'_> {
        Iter(match &*self.0 {
            Repr::Memory(v) => IterRepr::Memory(v.iter()),
            Repr::Spilled {
                file, bounds, tail, ..
            } => IterRepr::Spilled(Merge::new(file, bounds, tail)),
        })
    }
}

/// Iterator over a [`FileDigests`], in path order.
pub struct Iter<'a>(IterRepr<'a>);

enum IterRepr<'a> {
    Memory(std::slice::Iter<'a, (String, Digest)>),
    Spilled(Merge<'a>),
}

impl Iterator for Iter<'_> {
    type Item = io::Result<(String, Digest)>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Memory(it) => it.next().map(|e| Ok(e.clone())),
            IterRepr::Spilled(merge) => merge.next(),
        }
    }
}

/// The merge of sorted runs, the last entry of a path winning (runs are
/// in push order, the tail last).
struct Merge<'a> {
    runs: Vec<(BufReader<Section<'a>>, u64)>,
    tail: std::slice::Iter<'a, (String, Digest)>,
    /// The next entry of each run, for a max-heap to pop the smallest path
    /// and, of equal paths, the earlier run first.
    heads: BinaryHeap<Head>,
    started: bool,
    failed: bool,
}

impl<'a> Merge<'a> {
    fn new(file: &'a File, bounds: &[(u64, u64)], tail: &'a [(String, Digest)]) -> Merge<'a> {
        Merge {
            tail: tail.iter(),
            runs: bounds
                .iter()
                .map(|&(start, end)| {
                    (
                        BufReader::with_capacity(READ_BUF, Section::new(file, start, end)),
                        end - start,
                    )
                })
                .collect(),
            heads: BinaryHeap::with_capacity(bounds.len() + 1),
            started: false,
            failed: false,
        }
    }

    /// Moves run `run`'s next entry, if it has one left, to the heads
    /// (the tail is the run after the spilled ones).
    fn advance(&mut self, run: usize) -> io::Result<()> {
        if run == self.runs.len() {
            if let Some((path, digest)) = self.tail.next() {
                self.heads.push(Head {
                    path: path.clone(),
                    digest: *digest,
                    run,
                });
            }
            return Ok(());
        }
        let (reader, left) = &mut self.runs[run];
        if *left == 0 {
            return Ok(());
        }
        let (path, digest) = read_entry(reader)?;
        *left = left.saturating_sub(4 + path.len() as u64 + 32);
        self.heads.push(Head { path, digest, run });
        Ok(())
    }

    fn next_entry(&mut self) -> io::Result<Option<(String, Digest)>> {
        if !self.started {
            self.started = true;
            for run in 0..=self.runs.len() {
                self.advance(run)?;
            }
        }
        let Some(mut head) = self.heads.pop() else {
            return Ok(None);
        };
        self.advance(head.run)?;
        while self.heads.peek().is_some_and(|h| h.path == head.path) {
            let later = self.heads.pop().expect("peeked");
            self.advance(later.run)?;
            head = later;
        }
        Ok(Some((head.path, head.digest)))
    }
}

impl Iterator for Merge<'_> {
    type Item = io::Result<(String, Digest)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_entry();
        self.failed = next.is_err();
        next.transpose()
    }
}

impl PartialEq for FileDigests {
    fn eq(&self, other: &FileDigests) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|(a, b)| matches!((a, b), (Ok(a), Ok(b)) if a == b))
    }
}

impl Eq for FileDigests {}

impl fmt::Debug for FileDigests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Repr::Memory(v) => f.debug_list().entries(v).finish(),
            Repr::Spilled { bounds, .. } => {
                write!(f, "FileDigests({} spilled runs)", bounds.len())
            }
        }
    }
}

/// Stable sort by path, then only the last entry of each path.
fn sorted_last_per_path(mut files: Vec<(String, Digest)>) -> Vec<(String, Digest)> {
    if files.windows(2).all(|w| w[0].0 < w[1].0) {
        return files;
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.reverse();
    files.dedup_by(|later, earlier| later.0 == earlier.0);
    files.reverse();
    files
}

fn write_entry(out: &mut impl Write, path: &str, digest: &Digest) -> io::Result<u64> {
    let len = u32::try_from(path.len()).map_err(|_| io::Error::other("path too long"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(path.as_bytes())?;
    out.write_all(digest.as_bytes())?;
    Ok(4 + path.len() as u64 + 32)
}

fn read_entry(input: &mut impl Read) -> io::Result<(String, Digest)> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let mut path = vec![0u8; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut path)?;
    let mut digest = [0u8; 32];
    input.read_exact(&mut digest)?;
    let path = String::from_utf8(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a spilled path is not UTF-8"))?;
    Ok((path, Digest::from_bytes(digest)))
}

/// Part of a file, read by position: readers of one shared file do not
/// move each other.
struct Section<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl<'a> Section<'a> {
    fn new(file: &'a File, at: u64, end: u64) -> Section<'a> {
        Section { file, at, end }
    }
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.end.saturating_sub(self.at)) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Builds a [`FileDigests`] from entries pushed in any order, spilling
/// sorted runs to an anonymous file in its spill directory (when it has
/// one) instead of holding more than [`RUN_LEN`] of them. If the directory
/// cannot be written (a full disk), spilling stops and the rest is held in
/// memory: the list only explains misses, and a cached build must not
/// fail for want of a few megabytes of scratch space.
pub struct FileDigestsBuilder {
    /// `None` once a spill failed.
    spill_dir: Option<PathBuf>,
    buf: Vec<(String, Digest)>,
    runs: Option<Runs>,
}

/// The sorted runs spilled so far.
struct Runs {
    file: File,
    /// Start and end offset of each run, in order.
    bounds: Vec<(u64, u64)>,
    written: u64,
}

impl FileDigestsBuilder {
    /// A builder that spills into `spill_dir` (e.g. the store's temporary
    /// directory), or holds everything when `None`.
    pub fn new(spill_dir: Option<&Path>) -> FileDigestsBuilder {
        FileDigestsBuilder {
            spill_dir: spill_dir.map(Path::to_path_buf),
            buf: Vec::new(),
            runs: None,
        }
    }

    /// Adds an entry; of entries with the same path, the last one pushed
    /// counts.
    pub fn push(&mut self, path: String, digest: Digest) {
        self.buf.push((path, digest));
        if self.buf.len() >= RUN_LEN && self.spill_dir.is_some() && self.spill_run().is_err() {
            self.spill_dir = None;
        }
    }

    /// Adds every entry of `list`; fails only if `list` cannot be read.
    pub fn extend_from(&mut self, list: &FileDigests) -> io::Result<()> {
        for entry in list.iter() {
            let (path, digest) = entry?;
            self.push(path, digest);
        }
        Ok(())
    }

    /// Writes the held entries, sorted, as one more run: written whole
    /// and recorded, or not recorded and still held.
    fn spill_run(&mut self) -> io::Result<()> {
        self.buf = sorted_last_per_path(std::mem::take(&mut self.buf));
        let mut bytes = Vec::with_capacity(self.buf.iter().map(|(p, _)| 4 + p.len() + 32).sum());
        for (path, digest) in &self.buf {
            write_entry(&mut bytes, path, digest)?;
        }
        let runs = match &mut self.runs {
            Some(runs) => runs,
            None => {
                let dir = self
                    .spill_dir
                    .as_deref()
                    .expect("spilling needs a directory");
                self.runs.insert(Runs {
                    file: tempfile::tempfile_in(dir)?,
                    bounds: Vec::new(),
                    written: 0,
                })
            }
        };
        runs.file.write_all_at(&bytes, runs.written)?;
        let start = runs.written;
        runs.written += bytes.len() as u64;
        runs.bounds.push((start, runs.written));
        self.buf.clear();
        Ok(())
    }

    /// The list: in memory when nothing was spilled, else the spilled
    /// runs and what is still held (merged when read).
    pub fn finish(self) -> FileDigests {
        let tail = sorted_last_per_path(self.buf);
        match self.runs {
            None => FileDigests(Arc::new(Repr::Memory(tail))),
            Some(runs) => FileDigests(Arc::new(Repr::Spilled {
                file: runs.file,
                bounds: runs.bounds,
                tail,
                len: std::sync::OnceLock::new(),
            })),
        }
    }
}

/// The head of a run during a merge: ordered so that a max-heap pops the
/// smallest path first and, of equal paths, the earlier run first.
struct Head {
    path: String,
    digest: Digest,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Head) -> Ordering {
        (&other.path, other.run).cmp(&(&self.path, self.run))
    }
}

thread_local! {
    static SPILL_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Runs `f` with lists deserialized on this thread (a saved fingerprint
/// read back) built in `dir` as [`FileDigestsBuilder`] builds them, not
/// held in memory.
pub fn deserializing_into<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<PathBuf>);
    impl Drop for Reset {
        fn drop(&mut self) {
            SPILL_DIR.with(|d| *d.borrow_mut() = self.0.take());
        }
    }
    let _reset = Reset(SPILL_DIR.with(|d| d.borrow_mut().replace(dir.to_path_buf())));
    f()
}

/// Saved as `[[path, "sha256:…"], …]`.
impl serde::Serialize for FileDigests {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        // No length up front: a spilled list's would take a pass of its
        // own (JSON needs none).
        let mut seq = s.serialize_seq(None)?;
        for entry in self.iter() {
            let (path, digest) = entry.map_err(S::Error::custom)?;
            seq.serialize_element(&(path, DigestText(digest)))?;
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for FileDigests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FileDigests, D::Error> {
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = FileDigests;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of [path, digest] pairs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FileDigests, A::Error> {
                let dir = SPILL_DIR.with(|d| d.borrow().clone());
                let mut builder = FileDigestsBuilder::new(dir.as_deref());
                while let Some((path, DigestText(digest))) = seq.next_element()? {
                    builder.push(path, digest);
                }
                Ok(builder.finish())
            }
        }
        d.deserialize_seq(List)
    }
}

/// A digest read and written as its text, without a `String` each.
struct DigestText(Digest);

impl serde::Serialize for DigestText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DigestText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = DigestText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest (sha256:<64 hex characters>)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DigestText, E> {
                v.parse().map(DigestText).map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u64) -> Digest {
        Digest::of(&n.to_le_bytes())
    }

    fn collect(list: &FileDigests) -> Vec<(String, Digest)> {
        list.to_vec().unwrap()
    }

    /// A list of several runs, pushed out of order with paths repeated
    /// across runs, spills and reads back as the in-memory list of the
    /// same pushes: sorted, the last entry of a path winning.
    #[test]
    fn spilled_lists_equal_in_memory_ones() {
        let dir = tempfile::tempdir().unwrap();
        let n = RUN_LEN * 3 + 17;
        // A permutation of 0..n/2, twice, the second time with other
        // digests: every path in two runs.
        let pushes: Vec<(String, Digest)> = (0..n)
            .map(|i| {
                let p = (i * 7919) % (n / 2);
                (format!("dir/{p:06}"), d(i as u64))
            })
            .collect();
        let mut spilling = FileDigestsBuilder::new(Some(dir.path()));
        let mut holding = FileDigestsBuilder::new(None);
        for (p, dg) in &pushes {
            spilling.push(p.clone(), *dg);
            holding.push(p.clone(), *dg);
        }
        let spilled = spilling.finish();
        let held = holding.finish();
        assert!(spilled.is_spilled() && !held.is_spilled());
        assert_eq!(spilled.len(), n / 2);
        assert_eq!(collect(&spilled), collect(&held));
        assert_eq!(spilled, held);
        let mut last = std::collections::BTreeMap::new();
        for (p, dg) in pushes {
            last.insert(p, dg);
        }
        assert_eq!(collect(&held), last.into_iter().collect::<Vec<_>>());
        // Nothing is left in the directory: the files are anonymous.
        let left = dir.path().read_dir().unwrap().count();
        assert_eq!(left, 0);
    }

    /// A spill directory that cannot be written (missing here; a full
    /// disk in practice) leaves the list in memory, whole, and so does a
    /// write that fails after runs were spilled: they stay, and the rest
    /// is held.
    #[test]
    fn a_failed_spill_holds_the_rest_in_memory() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let pushes: Vec<(String, Digest)> = (0..RUN_LEN * 4 + 5)
            .map(|i| (format!("p{:05}", (i * 7) % (RUN_LEN * 2)), d(i as u64)))
            .collect();
        let want = FileDigests::from_vec(pushes.clone());

        let mut missing = FileDigestsBuilder::new(Some(&dir.path().join("missing")));
        for (p, dg) in &pushes {
            missing.push(p.clone(), *dg);
        }
        let list = missing.finish();
        assert!(!list.is_spilled());
        assert_eq!(list, want);

        let mut failing = FileDigestsBuilder::new(Some(dir.path()));
        for (i, (p, dg)) in pushes.iter().enumerate() {
            if i == RUN_LEN * 2 + 3 {
                // The runs' file, from now on open for reading only.
                let runs = failing.runs.as_mut().unwrap();
                assert_eq!(runs.bounds.len(), 2);
                let fd = format!("/proc/self/fd/{}", runs.file.as_raw_fd());
                // A test's own /proc path: an error naming it adds nothing.
                #[allow(clippy::disallowed_methods)]
                let read_only = File::open(fd).unwrap();
                runs.file = read_only;
            }
            failing.push(p.clone(), *dg);
        }
        assert!(
            failing.spill_dir.is_none(),
            "the failed write stops spilling"
        );
        assert_eq!(failing.runs.as_ref().unwrap().bounds.len(), 2);
        let list = failing.finish();
        assert!(list.is_spilled());
        assert_eq!(list.to_vec().unwrap(), want.to_vec().unwrap());
    }

    #[test]
    fn short_lists_stay_in_memory_and_round_trip_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = FileDigestsBuilder::new(Some(dir.path()));
        b.push("b".into(), d(1));
        b.push("a".into(), d(2));
        let list = b.finish();
        assert!(!list.is_spilled());
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, format!("[[\"a\",\"{}\"],[\"b\",\"{}\"]]", d(2), d(1)));
        assert_eq!(serde_json::from_str::<FileDigests>(&json).unwrap(), list);
    }

    /// Deserialized within [`deserializing_into`], a long list is spilled
    /// and equals the list it was saved from.
    #[test]
    fn long_lists_deserialize_into_the_spill_directory() {
        let dir = tempfile::tempdir().unwrap();
        let list = FileDigests::from_vec(
            (0..RUN_LEN * 2 + 1)
                .map(|i| (format!("f{i}"), d(i as u64)))
                .collect(),
        );
        let json = serde_json::to_vec(&list).unwrap();
        let read: FileDigests =
            deserializing_into(dir.path(), || serde_json::from_slice(&json).unwrap());
        assert!(read.is_spilled());
        assert_eq!(read, list);
        assert_eq!(serde_json::to_vec(&read).unwrap(), json);
        let held: FileDigests = serde_json::from_slice(&json).unwrap();
        assert!(!held.is_spilled(), "outside the scope nothing spills");
    }
}
