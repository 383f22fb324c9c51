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
use rbuild_store::layer::{HashingWriter, PackStats};

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
        link: Option<(u64, u64, u64)>,
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
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Metadata of directories the copy creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CreatedDirs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The layer's entries by destination path components.
pub(crate) struct Plan<'a> {
    dest: &'a LayeredFs,
    entries: BTreeMap<Vec<String>, Entry>,
}

fn display(key: &[String]) -> String {
    format!("/{}", rbuild_oci::path_text::display(&key.join("/")))
}

impl<'a> Plan<'a> {
    pub(crate) fn new(dest: &'a LayeredFs) -> Plan<'a> {
        Plan {
            dest,
            entries: BTreeMap::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn contains(&self, key: &[String]) -> bool {
        self.entries.contains_key(key)
    }

    /// The destination's own entry at `key` (no symlink followed).
    pub(crate) fn dest_kind(&self, key: &[String]) -> Result<Option<EntryKind>, CopyError> {
        if key.is_empty() {
            return Ok(Some(EntryKind::Dir));
        }
        let rel = key.join("/");
        Ok(self
            .dest
            .lstat(&rel)
            .map_err(|source| CopyError::Io {
                path: display(key).into(),
                source,
            })?
            .map(|m| m.kind))
    }

    /// Adds (or replaces) the entry at `key`. As BuildKit, a later entry
    /// replaces an earlier file, directories merge, and a file never
    /// replaces a directory nor a directory a non-directory.
    pub(crate) fn insert(&mut self, key: Vec<String>, entry: Entry) -> Result<(), CopyError> {
        let new_is_dir = matches!(entry.kind, Kind::Dir);
        let existing_is_dir = match self.entries.get(&key) {
            Some(e) => Some(matches!(e.kind, Kind::Dir)),
            None => self.dest_kind(&key)?.map(|k| k == EntryKind::Dir),
        };
        match (existing_is_dir, new_is_dir) {
            (Some(true), false) => Err(CopyError::ReplaceDirectory {
                path: display(&key),
            }),
            (Some(false), true) => Err(CopyError::NotADirectory {
                path: display(&key),
            }),
            _ => {
                self.entries.insert(key, entry);
                Ok(())
            }
        }
    }

    /// Adds every missing parent directory of the entries: the
    /// destination's own (with its metadata) or a created one.
    pub(crate) fn fill_parents(&mut self, created: CreatedDirs) -> Result<(), CopyError> {
        let mut missing: BTreeMap<Vec<String>, Entry> = BTreeMap::new();
        for key in self.entries.keys() {
            for n in 1..key.len() {
                let parent = &key[..n];
                if self.entries.contains_key(parent) || missing.contains_key(parent) {
                    continue;
                }
                let entry = self.parent_entry(parent, created)?;
                missing.insert(parent.to_vec(), entry);
            }
        }
        self.entries.extend(missing);
        Ok(())
    }

    fn parent_entry(&self, key: &[String], created: CreatedDirs) -> Result<Entry, CopyError> {
        let rel = key.join("/");
        let io = |source| CopyError::Io {
            path: display(key).into(),
            source,
        };
        match self.dest.lstat(&rel).map_err(io)? {
            Some(meta) if meta.kind == EntryKind::Dir => Ok(Entry {
                kind: Kind::Dir,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                mtime: meta.mtime,
                xattrs: self.dest.xattrs(&rel).map_err(io)?,
            }),
            Some(_) => Err(CopyError::NotADirectory { path: display(key) }),
            None => Ok(Entry {
                kind: Kind::Dir,
                mode: created.mode,
                uid: created.uid,
                gid: created.gid,
                mtime: 0,
                xattrs: Vec::new(),
            }),
        }
    }

    /// Writes the entries as an uncompressed tar to `out`; `None` (and
    /// nothing written) when there are none.
    pub(crate) fn write(
        &self,
        src: Option<&dyn SourceFs>,
        out: &mut dyn Write,
    ) -> Result<Option<PackStats>, CopyError> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let output = |source| CopyError::Output { source };
        let mut out = HashingWriter::new(out);
        let mut first_links: HashMap<(u64, u64, u64), Vec<u8>> = HashMap::new();
        let mut host_files: HashMap<PathBuf, File> = HashMap::new();
        for (key, entry) in &self.entries {
            let mut path = rbuild_oci::path_text::to_bytes(&key.join("/")).into_owned();
            let kind = match &entry.kind {
                Kind::Dir => {
                    path.push(b'/');
                    TarKind::Directory
                }
                Kind::File { size, link, .. } => match link.and_then(|l| first_links.get(&l)) {
                    Some(first) => TarKind::HardLink {
                        target: first.clone(),
                    },
                    None => TarKind::Regular { size: *size },
                },
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
                first_links.insert(*l, path);
            }
            let display_path = || display(key);
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
        let (diff_id, size) = out.finish();
        Ok(Some(PackStats { diff_id, size }))
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
