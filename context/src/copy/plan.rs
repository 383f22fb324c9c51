//! The entries a COPY/ADD/WORKDIR layer holds, keyed by destination path,
//! and writing them as a deterministic tar (the layer codec's pax writer:
//! entries sorted component by component, so each directory comes right
//! before its children, as `pack_dir` orders them).
//!
//! Every entry's parent directories are written too: the ones the
//! destination already has with their existing metadata (a layer must not
//! change them), missing ones as the copy creates them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::CopyError;
use super::add;
use super::layered::LayeredFs;
use super::source::{EntryKind, SourceFs};
use rbuild_store::layer::tar_writer::{self, EntryHeader, Kind as TarKind};
use rbuild_store::layer::{PackStats, ThreadHashingWriter};

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    /// A path in the source tree, held in a [`PathArena`] (the plan's,
    /// or the one a streamed entry is written from).
    Source(PathRef),
    /// Inline content (a heredoc).
    Inline(Arc<String>),
    /// `size` bytes at `offset` of a host file (a download, or a member of
    /// a decompressed archive).
    Host { path: PathBuf, offset: u64 },
}

/// An entry's type and content.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Dir,
    File {
        data: Data,
        size: u64,
        /// Entries sharing a link id are hard links of one file: the first
        /// in layer order is written whole, the others link to it.
        /// Boxed: most files have none, and a large COPY holds every
        /// entry at once.
        link: Option<Box<(u64, u64, u64)>>,
    },
    Symlink(String),
    Char(u64),
    Block(u64),
    Fifo,
}

/// One layer entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// A boxed slice (two words, not three): a large COPY holds every
    /// entry at once.
    pub xattrs: Box<[(String, Vec<u8>)]>,
}

/// Metadata of directories the copy creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CreatedDirs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Paths held end to end in one buffer, each named by its place in it: a
/// 100,000-file COPY holds two paths per entry (where it goes, where it
/// comes from), and one allocation (a `String`'s 24 bytes plus the heap
/// block's rounding and header) per path was more than the paths.
#[derive(Debug, Default)]
pub(crate) struct PathArena {
    buf: String,
}

/// A path in a [`PathArena`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathRef {
    start: usize,
    end: usize,
}

impl PathArena {
    /// Stores `path`; it stays until the arena is dropped.
    pub(crate) fn push(&mut self, path: &str) -> PathRef {
        let start = self.buf.len();
        self.buf.push_str(path);
        PathRef {
            start,
            end: self.buf.len(),
        }
    }

    pub(crate) fn get(&self, path: PathRef) -> &str {
        &self.buf[path.start..path.end]
    }

    /// Forgets every path (the buffer is kept for the next ones).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Orders destination paths (components joined by `/`) component by
/// component, so a directory sorts right before its children: `a/b`
/// before `a-b`, where byte order would put it after.
fn cmp_paths(a: &str, b: &str) -> std::cmp::Ordering {
    fn components(p: &str) -> impl Iterator<Item = &str> {
        p.split('/').filter(|c| !c.is_empty())
    }
    components(a).cmp(components(b))
}

/// A destination path (components joined by `/`) as a map key, ordered
/// by [`cmp_paths`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathKey(String);

impl PathKey {
    fn of(components: &[String]) -> PathKey {
        PathKey(components.join("/"))
    }
}

/// The keys of the directories above `path`, outermost first.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(|(i, _)| &path[..i])
}

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_paths(&self.0, &other.0)
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Where [`Plan`] holds an entry, or would put a new one.
enum Slot {
    Sorted(usize),
    Others,
    /// Not held: a new entry goes at the end of `sorted` when it sorts
    /// after the last one (`at_end`), else into `others`.
    Missing {
        at_end: bool,
    },
}

/// The layer's entries by destination path.
///
/// A COPY of a directory inserts its entries in walk order, which is the
/// layer's order: those go at the end of `sorted`, one flat list, their
/// paths in `paths`. An entry that does not sort after the last one (a
/// second source, created parents, archive members) goes into `others`, a
/// map; the two never hold the same path, and [`Plan::write`] merges
/// them. (A map of every entry cost a large COPY about a third more
/// memory per entry: a node, a `String` key.)
pub(crate) struct Plan<'a> {
    dest: &'a LayeredFs,
    paths: PathArena,
    sorted: Vec<(PathRef, Entry)>,
    others: BTreeMap<PathKey, Entry>,
    /// The parent directory [`Plan::insert`] last looked up in the
    /// destination, and whether it is a directory there: a file under a
    /// parent the destination lacks is not there either, so a COPY of a
    /// new tree looks up each directory once instead of every file (one
    /// path walk through every layer of the destination per lookup).
    parent_seen: Option<(String, bool)>,
}

fn display(rel: &str) -> String {
    format!("/{}", rbuild_oci::path_text::display(rel))
}

impl<'a> Plan<'a> {
    pub(crate) fn new(dest: &'a LayeredFs) -> Plan<'a> {
        Plan {
            dest,
            paths: PathArena::default(),
            sorted: Vec::new(),
            others: BTreeMap::new(),
            parent_seen: None,
        }
    }

    /// Where the entry at `key` is held.
    fn slot(&self, key: &PathKey) -> Slot {
        let after_last = self
            .sorted
            .last()
            .is_none_or(|(last, _)| cmp_paths(&key.0, self.paths.get(*last)).is_gt());
        if !after_last
            && let Ok(i) = self
                .sorted
                .binary_search_by(|(p, _)| cmp_paths(self.paths.get(*p), &key.0))
        {
            return Slot::Sorted(i);
        }
        if self.others.contains_key(key) {
            Slot::Others
        } else {
            Slot::Missing { at_end: after_last }
        }
    }

    fn get(&self, key: &PathKey) -> Option<&Entry> {
        match self.slot(key) {
            Slot::Sorted(i) => Some(&self.sorted[i].1),
            Slot::Others => self.others.get(key),
            Slot::Missing { .. } => None,
        }
    }

    /// Every entry, in layer order.
    fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        let mut sorted = self
            .sorted
            .iter()
            .map(|(p, e)| (self.paths.get(*p), e))
            .peekable();
        let mut others = self
            .others
            .iter()
            .map(|(k, e)| (k.0.as_str(), e))
            .peekable();
        std::iter::from_fn(move || match (sorted.peek(), others.peek()) {
            (Some(a), Some(b)) if cmp_paths(a.0, b.0).is_gt() => others.next(),
            (Some(_), _) => sorted.next(),
            (None, _) => others.next(),
        })
    }

    pub(crate) fn contains(&self, key: &[String]) -> bool {
        self.get(&PathKey::of(key)).is_some()
    }

    /// The destination's own entry at `key` (no symlink followed).
    pub(crate) fn dest_kind(&self, key: &[String]) -> Result<Option<EntryKind>, CopyError> {
        self.dest_kind_at(&key.join("/"))
    }

    fn dest_kind_at(&self, rel: &str) -> Result<Option<EntryKind>, CopyError> {
        if rel.is_empty() {
            return Ok(Some(EntryKind::Dir));
        }
        Ok(self
            .dest
            .lstat(rel)
            .map_err(|source| CopyError::Io {
                path: display(rel).into(),
                source,
            })?
            .map(|m| m.kind))
    }

    /// Adds (or replaces) the entry at `key`. As BuildKit, a later entry
    /// replaces an earlier file, directories merge, and a file never
    /// replaces a directory nor a directory a non-directory.
    pub(crate) fn insert(&mut self, key: Vec<String>, entry: Entry) -> Result<(), CopyError> {
        self.insert_path(key.join("/"), entry)
    }

    /// [`Plan::insert`] with the key's components already joined by `/`
    /// (no empty ones): one allocation per entry of a large COPY, where a
    /// component list took one per component.
    pub(crate) fn insert_path(&mut self, key: String, entry: Entry) -> Result<(), CopyError> {
        let key = PathKey(key);
        let new_is_dir = matches!(entry.kind, Kind::Dir);
        let slot = self.slot(&key);
        let existing_is_dir = match &slot {
            Slot::Sorted(i) => Some(matches!(self.sorted[*i].1.kind, Kind::Dir)),
            Slot::Others => self.others.get(&key).map(|e| matches!(e.kind, Kind::Dir)),
            Slot::Missing { .. } => self
                .dest_kind_under_parent(&key.0)?
                .map(|k| k == EntryKind::Dir),
        };
        conflict(&key.0, existing_is_dir, new_is_dir)?;
        match slot {
            Slot::Sorted(i) => self.sorted[i].1 = entry,
            Slot::Others => {
                self.others.insert(key, entry);
            }
            Slot::Missing { at_end: true } => {
                let path = self.paths.push(&key.0);
                self.sorted.push((path, entry));
            }
            Slot::Missing { at_end: false } => {
                self.others.insert(key, entry);
            }
        }
        Ok(())
    }

    /// [`Plan::dest_kind_at`], answered without a lookup when the parent
    /// of `rel` is not a directory in the destination (then neither a
    /// lookup nor overlay would find anything below it).
    fn dest_kind_under_parent(&mut self, rel: &str) -> Result<Option<EntryKind>, CopyError> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            let parent_is_dir = match &self.parent_seen {
                Some((seen, is_dir)) if seen == parent => *is_dir,
                _ => {
                    let is_dir = self.dest_kind_at(parent)? == Some(EntryKind::Dir);
                    self.parent_seen = Some((parent.to_string(), is_dir));
                    is_dir
                }
            };
            if !parent_is_dir {
                return Ok(None);
            }
        }
        self.dest_kind_at(rel)
    }

    /// Adds every missing parent directory of the entries: the
    /// destination's own (with its metadata) or a created one.
    pub(crate) fn fill_parents(&mut self, created: CreatedDirs) -> Result<(), CopyError> {
        let mut missing: BTreeMap<PathKey, Entry> = BTreeMap::new();
        // Entries come in order, so a parent is most often the last one
        // checked or one of its ancestors (all checked before it): skip
        // the lookups (and key allocations) then.
        let mut last_checked = String::new();
        for (key, _) in self.entries() {
            for parent in parents(key) {
                let seen = last_checked
                    .strip_prefix(parent)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                    && !last_checked.is_empty();
                if parent.is_empty() || seen {
                    continue;
                }
                last_checked.clear();
                last_checked.push_str(parent);
                let parent = PathKey(parent.to_string());
                if self.get(&parent).is_some() || missing.contains_key(&parent) {
                    continue;
                }
                let entry = self.parent_entry(&parent.0, created)?;
                missing.insert(parent, entry);
            }
        }
        // Parents sort before the entries below them: none would go at
        // the end of `sorted`.
        self.others.extend(missing);
        Ok(())
    }

    fn parent_entry(&self, rel: &str, created: CreatedDirs) -> Result<Entry, CopyError> {
        let io = |source| CopyError::Io {
            path: display(rel).into(),
            source,
        };
        match self.dest.lstat(rel).map_err(io)? {
            Some(meta) if meta.kind == EntryKind::Dir => Ok(Entry {
                kind: Kind::Dir,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                mtime: meta.mtime,
                xattrs: self.dest.xattrs(rel).map_err(io)?.into(),
            }),
            Some(_) => Err(CopyError::NotADirectory { path: display(rel) }),
            None => Ok(Entry {
                kind: Kind::Dir,
                mode: created.mode,
                uid: created.uid,
                gid: created.gid,
                mtime: 0,
                xattrs: Box::default(),
            }),
        }
    }

    /// Writes the entries as an uncompressed tar to `out`; `None` (and
    /// nothing written) when there are none.
    pub(crate) fn write(
        &self,
        src: Option<&dyn SourceFs>,
        out: &mut dyn Write,
    ) -> Result<PackStats, CopyError> {
        // An empty plan still makes a layer (a tar with no entries):
        // BuildKit gives every COPY, ADD and WORKDIR step a layer, empty
        // or not.
        let mut writer = LayerWriter::new(out);
        self.write_to(&mut writer, src)?;
        writer.finish()
    }

    /// Writes the entries to `writer`, in layer order.
    pub(crate) fn write_to(
        &self,
        writer: &mut LayerWriter<'_>,
        src: Option<&dyn SourceFs>,
    ) -> Result<(), CopyError> {
        for (key, entry) in self.entries() {
            writer.entry(key, entry, &self.paths, src)?;
        }
        Ok(())
    }

    /// The arena [`Plan::source`] stores source paths in.
    pub(crate) fn paths_mut(&mut self) -> &mut PathArena {
        &mut self.paths
    }

    /// Checks that an entry that sorts after every entry of the plan may
    /// go at `key` (the destination's rules, as [`Plan::insert_path`]
    /// checks them), for a layer written without holding it.
    pub(crate) fn check_new(&mut self, key: &str, entry: &Entry) -> Result<(), CopyError> {
        let existing_is_dir = self
            .dest_kind_under_parent(key)?
            .map(|k| k == EntryKind::Dir);
        conflict(key, existing_is_dir, matches!(entry.kind, Kind::Dir))
    }
}

/// The rules [`Plan::insert_path`] applies: as BuildKit, a file never
/// replaces a directory nor a directory a non-directory.
fn conflict(key: &str, existing_is_dir: Option<bool>, new_is_dir: bool) -> Result<(), CopyError> {
    match (existing_is_dir, new_is_dir) {
        (Some(true), false) => Err(CopyError::ReplaceDirectory { path: display(key) }),
        (Some(false), true) => Err(CopyError::NotADirectory { path: display(key) }),
        _ => Ok(()),
    }
}

/// Writes layer entries as an uncompressed tar, one at a time, in layer
/// order: what [`Plan::write`] does with a whole plan, and what a COPY of
/// one directory does with each entry of its walk as it comes.
pub(crate) struct LayerWriter<'w> {
    /// Hashed on a thread of its own: sha256 of every byte was a fifth
    /// of a large COPY's time on the thread that also reads and writes.
    out: ThreadHashingWriter<&'w mut dyn Write>,
    /// The tar path of the first entry of each hard-link group written.
    first_links: HashMap<(u64, u64, u64), Vec<u8>>,
    host_files: HashMap<PathBuf, File>,
}

impl<'w> LayerWriter<'w> {
    pub(crate) fn new(out: &'w mut dyn Write) -> LayerWriter<'w> {
        LayerWriter {
            out: ThreadHashingWriter::new(out),
            first_links: HashMap::new(),
            host_files: HashMap::new(),
        }
    }

    /// Writes the entry at `key`, its source path (if any) in `paths`.
    pub(crate) fn entry(
        &mut self,
        key: &str,
        entry: &Entry,
        paths: &PathArena,
        src: Option<&dyn SourceFs>,
    ) -> Result<(), CopyError> {
        let output = |source| CopyError::Output { source };
        let out = &mut self.out;
        let mut path = rbuild_oci::path_text::to_bytes(key).into_owned();
        let kind = match &entry.kind {
            Kind::Dir => {
                path.push(b'/');
                TarKind::Directory
            }
            Kind::File { size, link, .. } => {
                match link.as_deref().and_then(|l| self.first_links.get(l)) {
                    Some(first) => TarKind::HardLink {
                        target: first.clone(),
                    },
                    None => TarKind::Regular { size: *size },
                }
            }
            Kind::Symlink(target) => TarKind::Symlink {
                target: rbuild_oci::path_text::to_bytes(target).into_owned(),
            },
            Kind::Char(rdev) | Kind::Block(rdev) => {
                let (major, minor) = (libc::major(*rdev), libc::minor(*rdev));
                if matches!(entry.kind, Kind::Char(_)) {
                    TarKind::Char { major, minor }
                } else {
                    TarKind::Block { major, minor }
                }
            }
            Kind::Fifo => TarKind::Fifo,
        };
        let header = EntryHeader {
            path: path.clone(),
            kind: kind.clone(),
            mode: entry.mode & 0o7777,
            uid: u64::from(entry.uid),
            gid: u64::from(entry.gid),
            mtime: entry.mtime,
            xattrs: entry
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone()))
                .collect(),
        };
        tar_writer::write_header(out, &header).map_err(output)?;
        let (TarKind::Regular { size }, Kind::File { data, link, .. }) = (&kind, &entry.kind)
        else {
            return Ok(());
        };
        if let Some(l) = link {
            self.first_links.insert(**l, path);
        }
        let display_path = || display(key);
        match data {
            Data::Source(p) => {
                let p = paths.get(*p);
                let src = src.ok_or(CopyError::NoSourceFs)?;
                let mut file = src.open(p).map_err(|source| CopyError::Source {
                    path: p.to_string(),
                    source,
                })?;
                copy_exact(&mut file, *size, out).map_err(|source| CopyError::Source {
                    path: p.to_string(),
                    source,
                })?;
            }
            Data::Inline(content) => {
                out.write_all(content.as_bytes()).map_err(output)?;
            }
            Data::Host { path, offset } => {
                if !self.host_files.contains_key(path) {
                    let f = File::open(path).map_err(|source| CopyError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    self.host_files.insert(path.clone(), f);
                }
                let file = self.host_files.get_mut(path).expect("just inserted");
                add::copy_range(file, *offset, *size, out).map_err(|source| CopyError::Io {
                    path: display_path().into(),
                    source,
                })?;
            }
        }
        tar_writer::write_padding(out, *size).map_err(output)
    }

    /// Ends the tar: its trailer, then the diff ID and size of it all.
    pub(crate) fn finish(mut self) -> Result<PackStats, CopyError> {
        let output = |source| CopyError::Output { source };
        tar_writer::write_trailer(&mut self.out).map_err(output)?;
        let (diff_id, size) = self.out.finish().map_err(output)?;
        Ok(PackStats { diff_id, size })
    }
}

/// Copies exactly `size` bytes of `input` (a file that shrank since it was
/// stat'ed is an error: the header already promised `size` bytes).
fn copy_exact(input: &mut File, size: u64, out: &mut dyn Write) -> io::Result<()> {
    let copied = io::copy(&mut Read::by_ref(input).take(size), out)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while it was being copied",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> PathKey {
        PathKey(s.to_string())
    }

    /// A 100,000-file COPY holds that many entries at once (its peak
    /// memory): keep them small.
    #[test]
    fn an_entry_stays_small() {
        let size = std::mem::size_of::<Entry>();
        assert!(size <= 88, "{size}");
    }

    #[test]
    fn keys_order_component_by_component_so_directories_precede_their_children() {
        let mut keys = [
            key("a-b"),
            key("a/c"),
            key("a"),
            key("a.txt"),
            key("a/b/c"),
            key("b"),
        ];
        keys.sort();
        let got: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(got, ["a", "a/b/c", "a/c", "a-b", "a.txt", "b"]);
        let parents: Vec<&str> = parents("a/b/c").collect();
        assert_eq!(parents, ["a", "a/b"]);
    }

    #[test]
    fn the_arena_gives_back_each_path_as_stored() {
        let mut arena = PathArena::default();
        let paths = ["", "a", "a/b.txt", "ü/\u{1F600}", "", "a/b.txt", "x/y/z"];
        let refs: Vec<PathRef> = paths.iter().map(|p| arena.push(p)).collect();
        for (path, r) in paths.iter().zip(&refs) {
            assert_eq!(arena.get(*r), *path);
        }
    }

    fn file(content: &str) -> Entry {
        Entry {
            kind: Kind::File {
                data: Data::Inline(Arc::new(content.to_string())),
                size: content.len() as u64,
                link: None,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Box::default(),
        }
    }

    fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Box::default(),
        }
    }

    /// The plan's paths in layer order, each with its file's content
    /// (`/` for a directory).
    fn listed(plan: &Plan<'_>) -> Vec<(String, String)> {
        plan.entries()
            .map(|(k, e)| {
                let what = match &e.kind {
                    Kind::File {
                        data: Data::Inline(c),
                        ..
                    } => c.to_string(),
                    _ => "/".to_string(),
                };
                (k.to_string(), what)
            })
            .collect()
    }

    /// Entries inserted in walk order, then out of it (a second source
    /// overlapping the first, a replaced file in either half): the plan
    /// lists and writes them exactly as one sorted map would.
    #[test]
    fn entries_come_out_in_layer_order_whatever_order_they_went_in() {
        let dest = LayeredFs::new(Vec::new());
        let walk = ["app", "app/a", "app/a/x", "app/a-b", "app/b", "app/b/y"];
        let later = [
            "app/a/w",
            "app/0",
            "app/b/y",
            "app/a/x",
            "app/c",
            "app/a/v/u",
        ];
        let mut want: BTreeMap<PathKey, String> = BTreeMap::new();
        let mut forward = Plan::new(&dest);
        for (n, path) in walk.iter().chain(&later).enumerate() {
            let is_dir = ["app", "app/a", "app/b"].contains(path);
            let entry = if is_dir { dir() } else { file(&n.to_string()) };
            let content = if is_dir {
                "/".to_string()
            } else {
                n.to_string()
            };
            forward.insert_path(path.to_string(), entry).unwrap();
            want.insert(key(path), content);
        }
        // Replaced entries stay where they are; `app/c` sorts after the
        // walk and joins the list; the other three go to the map.
        assert_eq!((forward.sorted.len(), forward.others.len()), (7, 3));
        assert_eq!(forward.sorted.len() + forward.others.len(), want.len());
        let want: Vec<(String, String)> = want.into_iter().map(|(k, v)| (k.0, v)).collect();
        assert_eq!(listed(&forward), want);

        // The same final entries inserted backwards: all but the first go
        // to the map; same listing, same tar.
        let mut backward = Plan::new(&dest);
        for (path, content) in want.iter().rev() {
            let entry = if content == "/" { dir() } else { file(content) };
            backward.insert_path(path.clone(), entry).unwrap();
        }
        assert_eq!(listed(&backward), want);
        forward
            .fill_parents(CreatedDirs {
                mode: 0o755,
                uid: 0,
                gid: 0,
            })
            .unwrap();
        backward
            .fill_parents(CreatedDirs {
                mode: 0o755,
                uid: 0,
                gid: 0,
            })
            .unwrap();
        assert!(listed(&forward).iter().any(|(k, _)| k == "app/a/v"));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let stats_a = forward.write(None, &mut a).unwrap();
        let stats_b = backward.write(None, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(stats_a.diff_id, stats_b.diff_id);
    }

    #[test]
    fn a_file_never_replaces_a_directory_in_either_half() {
        let dest = LayeredFs::new(Vec::new());
        let mut plan = Plan::new(&dest);
        plan.insert_path("d".into(), dir()).unwrap();
        plan.insert_path("e".into(), dir()).unwrap();
        plan.insert_path("c".into(), dir()).unwrap();
        assert!(plan.sorted.len() == 2 && plan.others.len() == 1);
        for path in ["d", "c"] {
            assert!(matches!(
                plan.insert_path(path.into(), file("x")),
                Err(CopyError::ReplaceDirectory { .. })
            ));
        }
        plan.insert_path("f".into(), file("x")).unwrap();
        assert!(matches!(
            plan.insert_path("f".into(), dir()),
            Err(CopyError::NotADirectory { .. })
        ));
    }
}
