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
    /// A path in the source tree.
    Source(String),
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

/// A destination path: its components joined by `/`, ordered component
/// by component (so a directory sorts right before its children: `a/b`
/// before `a-b`, where byte order would put it after). One allocation per
/// entry, where a `Vec<String>` key took one per component: a
/// 100,000-file COPY holds every key at once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathKey(String);

impl PathKey {
    fn of(components: &[String]) -> PathKey {
        PathKey(components.join("/"))
    }

    fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The keys of the directories above this one, outermost first.
    fn parents(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(|(i, _)| &self.0[..i])
    }
}

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The layer's entries by destination path.
pub(crate) struct Plan<'a> {
    dest: &'a LayeredFs,
    entries: BTreeMap<PathKey, Entry>,
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
            entries: BTreeMap::new(),
            parent_seen: None,
        }
    }

    pub(crate) fn contains(&self, key: &[String]) -> bool {
        self.entries.contains_key(&PathKey::of(key))
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
        let existing_is_dir = match self.entries.get(&key) {
            Some(e) => Some(matches!(e.kind, Kind::Dir)),
            None => self
                .dest_kind_under_parent(&key.0)?
                .map(|k| k == EntryKind::Dir),
        };
        match (existing_is_dir, new_is_dir) {
            (Some(true), false) => Err(CopyError::ReplaceDirectory {
                path: display(&key.0),
            }),
            (Some(false), true) => Err(CopyError::NotADirectory {
                path: display(&key.0),
            }),
            _ => {
                self.entries.insert(key, entry);
                Ok(())
            }
        }
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
        for key in self.entries.keys() {
            for parent in key.parents() {
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
                if self.entries.contains_key(&parent) || missing.contains_key(&parent) {
                    continue;
                }
                let entry = self.parent_entry(&parent.0, created)?;
                missing.insert(parent, entry);
            }
        }
        self.entries.extend(missing);
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
        let output = |source| CopyError::Output { source };
        // Hashed on a thread of its own: sha256 of every byte was a fifth
        // of a large COPY's time on the thread that also reads and writes.
        let mut out = ThreadHashingWriter::new(out);
        let mut first_links: HashMap<(u64, u64, u64), Vec<u8>> = HashMap::new();
        let mut host_files: HashMap<PathBuf, File> = HashMap::new();
        for (key, entry) in &self.entries {
            let mut path = rbuild_oci::path_text::to_bytes(&key.0).into_owned();
            let kind = match &entry.kind {
                Kind::Dir => {
                    path.push(b'/');
                    TarKind::Directory
                }
                Kind::File { size, link, .. } => {
                    match link.as_deref().and_then(|l| first_links.get(l)) {
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
            tar_writer::write_header(&mut out, &header).map_err(output)?;
            let (TarKind::Regular { size }, Kind::File { data, link, .. }) = (&kind, &entry.kind)
            else {
                continue;
            };
            if let Some(l) = link {
                first_links.insert(**l, path);
            }
            let display_path = || display(&key.0);
            match data {
                Data::Source(p) => {
                    let src = src.ok_or(CopyError::NoSourceFs)?;
                    let mut file = src.open(p).map_err(|source| CopyError::Source {
                        path: p.clone(),
                        source,
                    })?;
                    copy_exact(&mut file, *size, &mut out).map_err(|source| CopyError::Source {
                        path: p.clone(),
                        source,
                    })?;
                }
                Data::Inline(content) => {
                    out.write_all(content.as_bytes()).map_err(output)?;
                }
                Data::Host { path, offset } => {
                    if !host_files.contains_key(path) {
                        let f = File::open(path).map_err(|source| CopyError::Io {
                            path: path.clone(),
                            source,
                        })?;
                        host_files.insert(path.clone(), f);
                    }
                    let file = host_files.get_mut(path).expect("just inserted");
                    add::copy_range(file, *offset, *size, &mut out).map_err(|source| {
                        CopyError::Io {
                            path: display_path().into(),
                            source,
                        }
                    })?;
                }
            }
            tar_writer::write_padding(&mut out, *size).map_err(output)?;
        }
        tar_writer::write_trailer(&mut out).map_err(output)?;
        let (diff_id, size) = out.finish().map_err(output)?;
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
        let deep = key("a/b/c");
        let parents: Vec<&str> = deep.parents().collect();
        assert_eq!(parents, ["a", "a/b"]);
    }
}
