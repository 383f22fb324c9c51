//! COPY and ADD: selecting source files (Go `filepath.Match` globs,
//! `--exclude`, `--parents`), the content digest of a selection (the part
//! of a COPY step's cache key that names what it reads), and writing the
//! copied files as a layer on top of a destination filesystem with
//! Docker's directory-vs-file rules, `--chown`, `--chmod` and ADD's archive
//! extraction and URL downloads; and WORKDIR's directory creation.
//!
//! Sources are read through [`SourceFs`], implemented by the build context
//! (which applies `.dockerignore` and keeps a stat cache of file digests)
//! and by a stage's or image's layered filesystem ([`LayeredFs`]). The
//! destination is always a [`LayeredFs`] (empty for `--link`).
//!
//! Behaviour follows BuildKit's file op (fsutil's copy) where Docker's
//! documentation is silent; where this module chooses otherwise it says so:
//! a glob matching nothing is an error (BuildKit copies nothing; the
//! classic builder failed), and times BuildKit takes from the clock
//! (inline files, created directories, downloads without `Last-Modified`)
//! are 0 so layers are reproducible.

mod add;
mod chmod;
mod layered;
mod owner;
mod pattern;
mod plan;
mod select;
mod source;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use rbuild_solver::op::{CopyOp, CopySource, MkdirOp};
use rbuild_solver::{Digest, FileDigests, FileDigestsBuilder, KeyEncoder};

pub use chmod::InvalidChmod;
pub use layered::LayeredFs;
pub use layered::is_opaque;
pub(crate) use layered::read_xattrs;
pub use source::{EntryKind, HostStat, SourceFs, SourceMeta, Xattrs};

use chmod::Chmod;
use plan::{CreatedDirs, Data, Entry, Kind, LayerWriter, PathArena, Plan};
use rbuild_store::layer::PackStats;
use select::{Root, is_url, select_source};

/// Version of the content digest encoding; bump when the meaning of any
/// encoded field changes, so old cache entries miss instead of matching.
pub const CONTENT_DIGEST_VERSION: u64 = 1;

/// A COPY/ADD or WORKDIR could not be carried out; names the source or
/// destination path involved.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A destination path could not be read.
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A source path could not be read.
    #[error("cannot read source {}", rbuild_oci::path_text::quoted(path))]
    Source {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A literal source that does not exist (or is excluded by
    /// `.dockerignore`); BuildKit's wording.
    #[error(
        "\"/{}\": not found",
        rbuild_oci::path_text::display(&pattern::clean_components(path).join("/"))
    )]
    SourceNotFound { path: String },
    /// A source glob Go's `filepath.Match` would reject.
    #[error("syntax error in pattern {}", rbuild_oci::path_text::quoted(pattern))]
    BadPattern { pattern: String },
    /// An `--exclude` pattern, or the include pattern of `--parents`,
    /// that moby/patternmatcher would reject.
    #[error(transparent)]
    Pattern(#[from] crate::InvalidPattern),
    #[error(transparent)]
    InvalidChmod(#[from] InvalidChmod),
    /// A directory would have to go where the destination has a
    /// non-directory (or a path goes through one).
    #[error(
        "cannot copy to non-directory: {}",
        rbuild_oci::path_text::display(path)
    )]
    NotADirectory { path: String },
    #[error(
        "cannot replace directory {} with a file",
        rbuild_oci::path_text::display(path)
    )]
    ReplaceDirectory { path: String },
    #[error("cannot read archive {archive}")]
    Archive {
        archive: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "archive {archive} has entry {} outside the destination",
        rbuild_oci::path_text::quoted(entry)
    )]
    UnsafeArchiveEntry { archive: String, entry: String },
    #[error("downloading {url} failed")]
    Download {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("saving the download of {url} failed")]
    DownloadIo {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    /// The op reads local sources but no source filesystem was given.
    #[error("no source filesystem was given for the local sources of this copy")]
    NoSourceFs,
    #[error("writing the layer stream failed")]
    Output {
        #[source]
        source: std::io::Error,
    },
    /// The digests of a large selection, spilled to a temporary file,
    /// could not be read back.
    #[error("reading back the file digests spilled to a temporary file in {} failed", dir.display())]
    Spill {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The digest of exactly what a COPY/ADD reads, and the per-file digests
/// it was made from (kept to explain cache misses: which files changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    pub digest: Digest,
    /// (path relative to the source root — a URL or an inline file's name
    /// for those —, digest of that entry's content and metadata), sorted
    /// by path; on disk for a large selection when the digest was
    /// computed with a spill directory ([`content_digest_in`]).
    pub files: FileDigests,
}

/// What one op source selects.
enum Selected {
    Url(String),
    Local(Vec<Root>),
}

fn select_all(src: Option<&dyn SourceFs>, op: &CopyOp) -> Result<Vec<Selected>, CopyError> {
    op.sources
        .iter()
        .map(|s| {
            if op.add.is_some() && is_url(s) {
                Ok(Selected::Url(s.clone()))
            } else {
                let src = src.ok_or(CopyError::NoSourceFs)?;
                select_source(src, op, s).map(Selected::Local)
            }
        })
        .collect()
}

/// The content digest of what `op` reads: from `src` for local sources
/// (`None` is fine for inline files and URLs), the downloads of URLs
/// without a checksum (kept for [`write_layer`] in this process).
///
/// Encodes, per selected entry: its destination-relative path, kind, mode
/// bits, symlink target, xattrs, content digest (files; computed in
/// parallel), hard-link partner, and uid/gid only where the copy keeps
/// them (a stage or image source without `--chown`): the context's owners
/// never reach the layer, so they must not reach the key. Never mtimes.
pub fn content_digest(src: Option<&dyn SourceFs>, op: &CopyOp) -> Result<ContentDigest, CopyError> {
    content_digest_in(src, op, None)
}

/// [`content_digest`], with the per-file digests of a large selection
/// kept in anonymous temporary files in `spill_dir` (e.g. the store's
/// temporary directory) instead of in memory: a COPY of a 100,000-file
/// context then holds a few thousand entries at a time.
pub fn content_digest_in(
    src: Option<&dyn SourceFs>,
    op: &CopyOp,
    spill_dir: Option<&Path>,
) -> Result<ContentDigest, CopyError> {
    let keep_owner = matches!(op.source, CopySource::Input) && op.chown.is_none();
    let selected = select_all(src, op)?;

    let mut enc = KeyEncoder::new("copy-content");
    enc.u64("copy-content-version", CONTENT_DIGEST_VERSION);
    let mut files = FileDigestsBuilder::new(spill_dir);
    if let CopySource::Inline(inline) = &op.source {
        enc.u64("inline", inline.len() as u64);
        for (name, content) in inline {
            let d = Digest::of(content.as_bytes());
            enc.str("name", name).digest("content", &d);
            files.push(name.clone(), d);
        }
    }
    enc.u64("sources", selected.len() as u64);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for (sel, source) in selected.into_iter().zip(&op.sources) {
        enc.str("source", source);
        match sel {
            Selected::Url(url) => {
                let checksum = op.add.as_ref().and_then(|a| a.checksum);
                let d = match checksum {
                    Some(d) => d,
                    None => add::fetch(&url, None, true)?.digest,
                };
                enc.digest("url-content", &d);
                files.push(url, d);
            }
            Selected::Local(roots) => {
                let src = src.ok_or(CopyError::NoSourceFs)?;
                enc.u64("roots", roots.len() as u64);
                for root in roots {
                    enc.str("root", &root.name);
                    let mut digests = Digests {
                        src,
                        keep_owner,
                        links: &mut links,
                        batch: Vec::new(),
                        files: &mut files,
                        walk: WalkDigests::new(spill_dir),
                    };
                    if root.contents.is_some() {
                        // A directory root's own metadata does not reach
                        // the layer (only its contents are copied).
                        enc.str("root-kind", "dir");
                        root.for_each(src, |item| digests.push(item))?;
                    } else {
                        digests.push(select::Item {
                            rel: root.name,
                            path: root.path,
                            meta: root.meta,
                        })?;
                    }
                    digests.flush()?;
                    // The entries' digests, in walk order, are encoded
                    // once their count is known.
                    digests.walk.encode(&mut enc)?;
                }
            }
        }
    }
    Ok(ContentDigest {
        digest: enc.finish().digest(),
        files: files.finish(),
    })
}

/// The digests of one root's entries in walk order, until their count is
/// known and they are encoded: 32 bytes each, in memory up to
/// [`WalkDigests::HELD`] and then appended to an anonymous temporary file
/// when there is a spill directory. If that file cannot be written (a
/// full disk), what it has stays and the rest is held in memory.
struct WalkDigests {
    dir: Option<PathBuf>,
    /// A spill failed: the rest is held.
    failed: bool,
    held: Vec<Digest>,
    spilled: Option<(std::fs::File, u64)>,
    len: u64,
}

impl WalkDigests {
    const HELD: usize = 8192;

    fn new(dir: Option<&Path>) -> WalkDigests {
        WalkDigests {
            dir: dir.map(Path::to_path_buf),
            failed: false,
            held: Vec::new(),
            spilled: None,
            len: 0,
        }
    }

    fn push(&mut self, d: Digest) {
        self.len += 1;
        self.held.push(d);
        if self.held.len() >= Self::HELD
            && self.dir.is_some()
            && !self.failed
            && self.spill().is_err()
        {
            self.failed = true;
        }
    }

    /// Appends the held digests to the file: written whole and counted,
    /// or not counted and still held.
    fn spill(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let (file, written) = match &mut self.spilled {
            Some(spilled) => spilled,
            None => {
                let dir = self.dir.as_deref().expect("spilling needs a directory");
                self.spilled.insert((tempfile::tempfile_in(dir)?, 0))
            }
        };
        let bytes: Vec<u8> = self.held.iter().flat_map(|d| *d.as_bytes()).collect();
        file.write_all_at(&bytes, *written)?;
        *written += bytes.len() as u64;
        self.held.clear();
        Ok(())
    }

    /// Encodes the count, then each digest in the order pushed; fails only
    /// if the spilled ones cannot be read again.
    fn encode(self, enc: &mut KeyEncoder) -> Result<(), CopyError> {
        enc.u64("entries", self.len);
        let dir = self.dir.clone().unwrap_or_default();
        self.for_each(|d| {
            enc.digest("entry", d);
        })
        .map_err(|source| CopyError::Spill { dir, source })
    }

    fn for_each(self, mut f: impl FnMut(&Digest)) -> std::io::Result<()> {
        if let Some((file, written)) = &self.spilled {
            use std::io::Read;
            // Written by position only: the file's offset is still 0.
            let mut input = std::io::BufReader::with_capacity(64 * 1024, file).take(*written);
            let mut d = [0u8; 32];
            for _ in 0..written / 32 {
                input.read_exact(&mut d)?;
                f(&Digest::from_bytes(d));
            }
        }
        self.held.iter().for_each(f);
        Ok(())
    }
}

/// The digest of the tree at `rel` in `src` as a RUN bind mount shows it
/// (`RUN --mount=type=bind` from the context): every entry below it, with
/// its path relative to `rel`, kind, mode, owner (the mount shows the
/// context's owners), content, symlink target, hard-link partner and
/// xattrs, exactly the entries [`SourceFs`] lists (so `.dockerignore`d
/// files are neither mounted nor keyed). Never mtimes. `files` names
/// entries by their path in `src`, to explain a miss.
pub fn tree_digest(src: &dyn SourceFs, rel: &str) -> Result<ContentDigest, CopyError> {
    tree_digest_in(src, rel, None)
}

/// [`tree_digest`], with a large tree's per-file digests kept in
/// anonymous temporary files in `spill_dir`, as [`content_digest_in`]
/// keeps them. The tree is walked breadth first, as its entries were
/// always listed (the root, then each directory's entries in the order
/// read, directories expanded in the order they were listed), and digested
/// a batch at a time: only the directories still to read are held.
pub fn tree_digest_in(
    src: &dyn SourceFs,
    rel: &str,
    spill_dir: Option<&Path>,
) -> Result<ContentDigest, CopyError> {
    let io = |path: &str| {
        let path = path.to_string();
        move |source| CopyError::Source { path, source }
    };
    let Some(meta) = src.lstat(rel).map_err(io(rel))? else {
        return Err(CopyError::SourceNotFound {
            path: rel.to_string(),
        });
    };
    let mut files = FileDigestsBuilder::new(spill_dir);
    let mut links = HashMap::new();
    let mut digests = Digests {
        src,
        keep_owner: true,
        links: &mut links,
        batch: Vec::new(),
        files: &mut files,
        walk: WalkDigests::new(spill_dir),
    };
    // (path relative to the mount's root, path in src) of directories
    // still to read.
    let mut dirs: std::collections::VecDeque<(String, String)> = std::collections::VecDeque::new();
    if meta.kind == EntryKind::Dir {
        dirs.push_back((String::new(), rel.to_string()));
    }
    digests.push(select::Item {
        rel: String::new(),
        path: rel.to_string(),
        meta,
    })?;
    while let Some((mount_rel, path)) = dirs.pop_front() {
        for (name, meta) in src.read_dir_meta(&path).map_err(io(&path))? {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let child_rel = if mount_rel.is_empty() {
                name
            } else {
                format!("{mount_rel}/{name}")
            };
            if meta.kind == EntryKind::Dir {
                dirs.push_back((child_rel.clone(), child.clone()));
            }
            digests.push(select::Item {
                rel: child_rel,
                path: child,
                meta,
            })?;
        }
    }
    digests.flush()?;
    let mut enc = KeyEncoder::new("mount-content");
    enc.u64("copy-content-version", CONTENT_DIGEST_VERSION);
    digests.walk.encode(&mut enc)?;
    Ok(ContentDigest {
        digest: enc.finish().digest(),
        files: files.finish(),
    })
}

/// Entries of a walk whose digests [`entry_digests`] computes a batch at
/// a time (in parallel within a batch), adding them to `files` with their
/// source paths and to `walk` in walk order: the walk itself is never
/// held whole.
struct Digests<'a> {
    src: &'a dyn SourceFs,
    keep_owner: bool,
    links: &'a mut HashMap<(u64, u64), String>,
    batch: Vec<select::Item>,
    files: &'a mut FileDigestsBuilder,
    walk: WalkDigests,
}

impl Digests<'_> {
    /// Entries per batch: enough to keep every core busy between two
    /// batches, few enough that a batch is a small part of a large
    /// context's memory.
    const BATCH: usize = 8192;

    fn push(&mut self, item: select::Item) -> Result<(), CopyError> {
        self.batch.push(item);
        if self.batch.len() >= Self::BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CopyError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let digests = entry_digests(self.src, &self.batch, self.keep_owner, self.links)?;
        for (item, d) in self.batch.drain(..).zip(digests) {
            self.walk.push(d);
            // Only a tree digest's root has an empty path (the whole
            // source): named as the mount shows it.
            let name = if item.path.is_empty() {
                ".".to_string()
            } else {
                item.path
            };
            self.files.push(name, d);
        }
        Ok(())
    }
}

/// The digests of `entries` (see [`entry_digest`]), in order, computed in
/// parallel: reading file contents and xattrs is the expensive part.
/// Hard-link partners are settled first, in order, since a link names
/// the first entry of its group (across all sources, hence `links`).
fn entry_digests(
    src: &dyn SourceFs,
    entries: &[select::Item],
    keep_owner: bool,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<Vec<Digest>, CopyError> {
    let mut partners: Vec<(usize, String)> = Vec::new();
    for (i, item) in entries.iter().enumerate() {
        if item.meta.kind != EntryKind::File {
            continue;
        }
        let id = src
            .link_id_of(&item.path, &item.meta)
            .map_err(|source| CopyError::Source {
                path: item.path.clone(),
                source,
            })?;
        if let Some(id) = id {
            match links.get(&id) {
                Some(first) => partners.push((i, first.clone())),
                None => {
                    links.insert(id, item.path.clone());
                }
            }
        }
    }
    // Every entry's key starts with the same fields: hashed once.
    let mut prefix = KeyEncoder::new("copy-entry");
    prefix.u64("copy-content-version", CONTENT_DIGEST_VERSION);
    entries
        .par_iter()
        .enumerate()
        .map(|(i, item)| {
            let partner = partners
                .binary_search_by_key(&i, |(j, _)| *j)
                .ok()
                .map(|k| partners[k].1.as_str());
            entry_digest(src, prefix.clone(), item, keep_owner, partner)
        })
        .collect()
}

/// The digest of one selected entry: its destination-relative path,
/// kind, mode, owner when kept, content (files), hard-link partner,
/// symlink target or device number, and xattrs. `enc` has the fields
/// every entry starts with (see [`entry_digests`]).
fn entry_digest(
    src: &dyn SourceFs,
    mut enc: KeyEncoder,
    item: &select::Item,
    keep_owner: bool,
    link_partner: Option<&str>,
) -> Result<Digest, CopyError> {
    let (rel, path, meta) = (&*item.rel, &*item.path, &item.meta);
    let io = |source| CopyError::Source {
        path: path.to_string(),
        source,
    };
    enc.str("path", rel)
        .str(
            "kind",
            match meta.kind {
                EntryKind::File => "file",
                EntryKind::Dir => "dir",
                EntryKind::Symlink => "symlink",
                EntryKind::Other => "other",
            },
        )
        .u64("mode", u64::from(meta.mode));
    if keep_owner {
        enc.u64("uid", u64::from(meta.uid))
            .u64("gid", u64::from(meta.gid));
    }
    let xattrs = match meta.kind {
        EntryKind::File => {
            let (d, xattrs) = src.file_digest_and_xattrs_of(path, meta).map_err(io)?;
            enc.digest("content", &d);
            if let Some(first) = link_partner {
                enc.str("hardlink", first);
            }
            xattrs
        }
        EntryKind::Symlink => {
            let target = src.read_link(path).map_err(io)?;
            enc.bytes(
                "target",
                std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()),
            );
            src.xattrs_of(path, meta).map_err(io)?
        }
        EntryKind::Other => {
            enc.u64("rdev", meta.rdev);
            src.xattrs_of(path, meta).map_err(io)?
        }
        EntryKind::Dir => src.xattrs_of(path, meta).map_err(io)?,
    };
    enc.u64("xattrs", xattrs.len() as u64);
    for (name, value) in &xattrs {
        enc.str("xattr", name).bytes("value", value);
    }
    Ok(enc.finish().digest())
}

/// Ownership and mode rules of one copy.
struct Rules {
    chmod: Option<Chmod>,
    chown: Option<owner::Owner>,
    /// Keep the source's uid/gid (a stage or image source, no `--chown`).
    keep_owner: bool,
}

impl Rules {
    fn owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self.chown {
            Some(o) => (o.uid, o.gid),
            None if self.keep_owner => (uid, gid),
            None => (0, 0),
        }
    }

    fn mode(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.chmod {
            Some(c) => c.apply(mode, is_dir),
            None => mode,
        }
    }

    fn created(&self) -> CreatedDirs {
        let (uid, gid) = self.owner(0, 0);
        CreatedDirs {
            mode: self.chmod.as_ref().and_then(Chmod::octal).unwrap_or(0o755),
            uid,
            gid,
        }
    }
}

/// Writes the layer COPY/ADD `op` makes on top of `dest` (reading `src`,
/// or the op's inline files, or its URLs) to `out` as an uncompressed tar.
/// A COPY that selects nothing (an empty wildcard match) still writes a
/// layer, with no entries, as BuildKit does.
///
/// BuildKit's rules: the destination is a directory when it ends in `/`,
/// when a source is a directory (its contents are copied), or when it
/// already is one (after resolving symlinks inside `dest`); otherwise each
/// file source is written at that path, the last one winning. Parent directories that `dest` has are written with their
/// metadata; missing ones are created 0755 (or the octal `--chmod`),
/// owned by the `--chown` user, else root.
pub fn write_layer(
    dest: &LayeredFs,
    src: Option<&dyn SourceFs>,
    op: &CopyOp,
    out: &mut dyn Write,
) -> Result<PackStats, CopyError> {
    let rules = Rules {
        chmod: op.chmod.as_deref().map(Chmod::parse).transpose()?,
        chown: op
            .chown
            .as_deref()
            .map(|c| owner::resolve_owner(dest, c))
            .transpose()?,
        keep_owner: matches!(op.source, CopySource::Input),
    };
    let created = rules.created();
    let mut plan = Plan::new(dest);
    let dest_key = dest
        .resolve(&op.dest, true)
        .map_err(|source| CopyError::Io {
            path: op.dest.clone().into(),
            source,
        })?;
    let dest_kind = plan.dest_kind(&dest_key)?;

    let selected = select_all(src, op)?;
    let inline: &[(String, String)] = match &op.source {
        CopySource::Inline(files) => files,
        _ => &[],
    };
    // As BuildKit: only a trailing `/` or an existing directory makes the
    // destination a directory. Several sources to any other destination
    // are each copied to that same path, the last one winning (the classic
    // builder refused this; BuildKit never did, and images must match).
    let dest_is_dir = op.dest.ends_with('/') || dest_kind == Some(EntryKind::Dir);
    let file_target = |name: &str| -> Vec<String> {
        let mut key = dest_key.clone();
        if dest_is_dir {
            key.push(name.to_string());
        }
        key
    };

    for (name, content) in inline {
        let base = pattern::clean_components(name).pop().unwrap_or_default();
        let (uid, gid) = rules.owner(0, 0);
        plan.insert(
            file_target(&base),
            Entry {
                kind: Kind::File {
                    data: Data::Inline(Arc::new(content.clone())),
                    size: content.len() as u64,
                    link: None,
                },
                // BuildKit makes heredoc files 0644.
                mode: rules.mode(0o644, false),
                uid,
                gid,
                mtime: 0,
                xattrs: Box::default(),
            },
        )?;
    }

    // The most common large COPY, one directory's contents (`COPY .
    // /app`): its layer is written as the walk goes, without a plan of
    // it (see `stream_dir_root`).
    if let ([Selected::Local(roots)], []) = (selected.as_slice(), inline)
        && let [root] = roots.as_slice()
        && root.contents.is_some()
    {
        let src = src.ok_or(CopyError::NoSourceFs)?;
        dir_root_dest(&mut plan, dest_kind, &dest_key, created, root)?;
        let prefix = dest_key.join("/");
        return stream_dir_root(plan, src, root, &prefix, &rules, created, out);
    }

    // Downloads and archives must outlive the write.
    let mut downloads = Vec::new();
    let mut archives = Vec::new();
    for sel in selected {
        match sel {
            Selected::Url(url) => {
                let checksum = op.add.as_ref().and_then(|a| a.checksum);
                let download = add::fetch(&url, checksum, false)?;
                let (uid, gid) = rules.owner(0, 0);
                plan.insert(
                    file_target(&add::url_file_name(&url)),
                    Entry {
                        kind: Kind::File {
                            data: Data::Host {
                                path: download.path(),
                                offset: 0,
                            },
                            size: download.size,
                            link: None,
                        },
                        // Docker saves downloads 0600.
                        mode: rules.mode(0o600, false),
                        uid,
                        gid,
                        mtime: download.mtime,
                        xattrs: Box::default(),
                    },
                )?;
                downloads.push(download);
            }
            Selected::Local(roots) => {
                let src = src.ok_or(CopyError::NoSourceFs)?;
                for root in roots {
                    // Owned, so each item is freed as its entry goes into
                    // the plan rather than held to the end.
                    match &root.contents {
                        Some(_) => {
                            dir_root_dest(&mut plan, dest_kind, &dest_key, created, &root)?;
                            // Each entry goes into the plan as the walk
                            // hands it out: no list of the walk is held
                            // beside the plan.
                            let prefix = dest_key.join("/");
                            root.for_each(src, |item| {
                                let entry = source_entry(
                                    plan.paths_mut(),
                                    src,
                                    &item.path,
                                    &item.meta,
                                    &rules,
                                )?;
                                plan.insert_path(dest_path(&prefix, &item.rel), entry)
                            })?;
                        }
                        None => {
                            let unpack = op.add.as_ref().is_some_and(|a| a.unpack)
                                && root.meta.kind == EntryKind::File
                                && add::is_archive(src.open(&root.path).map_err(|source| {
                                    CopyError::Source {
                                        path: root.path.clone(),
                                        source,
                                    }
                                })?);
                            if unpack {
                                let file =
                                    src.open(&root.path).map_err(|source| CopyError::Source {
                                        path: root.path.clone(),
                                        source,
                                    })?;
                                let archive = add::index_archive(file, &root.path)?;
                                extract(
                                    &mut plan,
                                    &archive,
                                    archives.len() as u64 + 1,
                                    &dest_key,
                                    &rules,
                                )?;
                                archives.push(archive);
                            } else {
                                let entry = source_entry(
                                    plan.paths_mut(),
                                    src,
                                    &root.path,
                                    &root.meta,
                                    &rules,
                                )?;
                                plan.insert(file_target(&root.name), entry)?;
                            }
                        }
                    }
                }
            }
        }
    }
    plan.fill_parents(created)?;
    let stats = plan.write(src, out)?;
    drop(downloads);
    drop(archives);
    Ok(stats)
}

/// Checks the destination of a directory root's contents (`dest_key`,
/// whose kind in the destination is `dest_kind`) and adds it to `plan`
/// when the copy creates it.
fn dir_root_dest(
    plan: &mut Plan<'_>,
    dest_kind: Option<EntryKind>,
    dest_key: &[String],
    created: CreatedDirs,
    root: &Root,
) -> Result<(), CopyError> {
    match dest_kind {
        Some(EntryKind::Dir) => Ok(()),
        Some(_) => Err(CopyError::NotADirectory {
            path: format!("/{}", dest_key.join("/")),
        }),
        None if plan.contains(dest_key) => Ok(()),
        None => plan.insert(
            dest_key.to_vec(),
            Entry {
                kind: Kind::Dir,
                mode: created.mode,
                uid: created.uid,
                gid: created.gid,
                // BuildKit gives the new directory the source
                // directory's time.
                mtime: root.meta.mtime,
                xattrs: Box::default(),
            },
        ),
    }
}

/// Writes the layer of a copy whose only source is the directory `root`
/// to `out` as its walk hands out the entries, holding none of them: the
/// bytes a plan of every entry would write, in the same order.
///
/// `plan` holds what goes before the walk (the destination directory
/// when the copy creates it). The walk's order is the layer's (a
/// directory's entries sorted by name, each directory before its
/// contents, every directory leading to a selected entry handed out
/// before it), so the first entry and the plan's parents, added once
/// that entry is in (the destination directory and those above it), are
/// all that ever sorts before an entry still to come: the plan is
/// written then, and each later entry straight after its checks.
fn stream_dir_root(
    mut plan: Plan<'_>,
    src: &dyn SourceFs,
    root: &Root,
    prefix: &str,
    rules: &Rules,
    created: CreatedDirs,
    out: &mut dyn Write,
) -> Result<PackStats, CopyError> {
    let mut writer = LayerWriter::new(out);
    // Whether the plan (the first entry and what sorts before it) is
    // written; every later entry goes straight to `writer`.
    let mut head_written = false;
    // The current entry's source path.
    let mut scratch = PathArena::default();
    root.for_each(src, |item| {
        let key = dest_path(prefix, &item.rel);
        if head_written {
            scratch.clear();
            let entry = source_entry(&mut scratch, src, &item.path, &item.meta, rules)?;
            plan.check_new(&key, &entry)?;
            return writer.entry(&key, &entry, &scratch, Some(src));
        }
        let entry = source_entry(plan.paths_mut(), src, &item.path, &item.meta, rules)?;
        plan.insert_path(key, entry)?;
        plan.fill_parents(created)?;
        head_written = true;
        plan.write_to(&mut writer, Some(src))
    })?;
    if !head_written {
        // Nothing below the root: the plan is the layer.
        plan.fill_parents(created)?;
        plan.write_to(&mut writer, Some(src))?;
    }
    writer.finish()
}

/// The plan key of `rel` (a walk's relative path, components joined by
/// `/`) under the destination directory `prefix` (its key; empty for the
/// root).
fn dest_path(prefix: &str, rel: &str) -> String {
    let rel = rel.trim_matches('/');
    match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{rel}"),
    }
}

/// The layer entry for a source entry.
fn source_entry(
    paths: &mut PathArena,
    src: &dyn SourceFs,
    path: &str,
    meta: &SourceMeta,
    rules: &Rules,
) -> Result<Entry, CopyError> {
    let io = |source| CopyError::Source {
        path: path.to_string(),
        source,
    };
    let kind = match meta.kind {
        EntryKind::Dir => Kind::Dir,
        EntryKind::File => Kind::File {
            data: Data::Source(paths.push(path)),
            size: meta.size,
            link: src
                .link_id_of(path, meta)
                .map_err(io)?
                .map(|(d, i)| Box::new((0, d, i))),
        },
        EntryKind::Symlink => Kind::Symlink(
            rbuild_oci::path_text::from_os(src.read_link(path).map_err(io)?.as_os_str())
                .into_owned(),
        ),
        // SourceMeta keeps no file type for these: a device number means a
        // (character) device, none a fifo.
        EntryKind::Other if meta.rdev == 0 => Kind::Fifo,
        EntryKind::Other => Kind::Char(meta.rdev),
    };
    let (uid, gid) = rules.owner(meta.uid, meta.gid);
    let mode = match meta.kind {
        // chmod(2) does not apply to symlinks.
        EntryKind::Symlink => meta.mode,
        kind => rules.mode(meta.mode, kind == EntryKind::Dir),
    };
    Ok(Entry {
        kind,
        mode,
        uid,
        gid,
        mtime: meta.mtime,
        xattrs: src.xattrs_of(path, meta).map_err(io)?.into(),
    })
}

/// Adds an archive's members under `dest_key` (ADD's extraction: owners
/// and modes from the archive unless `--chown`; `--chmod` does not apply,
/// as in BuildKit).
fn extract(
    plan: &mut Plan<'_>,
    archive: &add::Archive,
    archive_no: u64,
    dest_key: &[String],
    rules: &Rules,
) -> Result<(), CopyError> {
    let key_of = |path: &[String]| {
        let mut key = dest_key.to_vec();
        key.extend(path.iter().cloned());
        key
    };
    let tar_path = archive.tar.path();
    let mut files: HashMap<Vec<String>, (u64, u64, usize)> = HashMap::new();
    for (index, m) in archive.members.iter().enumerate() {
        let (uid, gid) = match rules.chown {
            Some(o) => (o.uid, o.gid),
            None => (m.uid, m.gid),
        };
        let kind = match &m.kind {
            add::MemberKind::Dir => Kind::Dir,
            add::MemberKind::File { offset, size } => {
                files.insert(m.path.clone(), (*offset, *size, index));
                Kind::File {
                    data: Data::Host {
                        path: tar_path.clone(),
                        offset: *offset,
                    },
                    size: *size,
                    link: Some(Box::new((archive_no, index as u64, 0))),
                }
            }
            add::MemberKind::HardLink(target) => {
                let Some(&(offset, size, first)) = files.get(target) else {
                    return Err(CopyError::UnsafeArchiveEntry {
                        archive: archive.name.clone(),
                        entry: m.path.join("/"),
                    });
                };
                files.insert(m.path.clone(), (offset, size, first));
                Kind::File {
                    data: Data::Host {
                        path: tar_path.clone(),
                        offset,
                    },
                    size,
                    link: Some(Box::new((archive_no, first as u64, 0))),
                }
            }
            add::MemberKind::Symlink(target) => Kind::Symlink(target.clone()),
            add::MemberKind::Char(rdev) => Kind::Char(*rdev),
            add::MemberKind::Block(rdev) => Kind::Block(*rdev),
            add::MemberKind::Fifo => Kind::Fifo,
        };
        plan.insert(
            key_of(&m.path),
            Entry {
                kind,
                mode: m.mode,
                uid,
                gid,
                mtime: m.mtime,
                xattrs: m.xattrs.clone().into(),
            },
        )?;
    }
    Ok(())
}

/// Writes the layer WORKDIR's `op` makes on top of `dest`: the missing
/// directories of its path (resolved inside `dest`), 0755, owned by the
/// op's user (resolved from `dest`'s /etc/passwd and /etc/group; empty is
/// root), mtime 0. `None` when they all exist.
pub fn write_mkdir_layer(
    dest: &LayeredFs,
    op: &MkdirOp,
    out: &mut dyn Write,
) -> Result<PackStats, CopyError> {
    let key = dest
        .resolve(&op.path, true)
        .map_err(|source| CopyError::Io {
            path: op.path.clone().into(),
            source,
        })?;
    let owner = owner::resolve_owner(dest, &op.user)?;
    let created = CreatedDirs {
        mode: 0o755,
        uid: owner.uid,
        gid: owner.gid,
    };
    let mut plan = Plan::new(dest);
    for n in 1..=key.len() {
        match plan.dest_kind(&key[..n])? {
            Some(EntryKind::Dir) => continue,
            Some(_) => {
                return Err(CopyError::NotADirectory {
                    path: format!("/{}", key[..n].join("/")),
                });
            }
            None => {
                for m in n..=key.len() {
                    plan.insert(
                        key[..m].to_vec(),
                        Entry {
                            kind: Kind::Dir,
                            mode: created.mode,
                            uid: created.uid,
                            gid: created.gid,
                            mtime: 0,
                            xattrs: Box::default(),
                        },
                    )?;
                }
                break;
            }
        }
    }
    plan.fill_parents(created)?;
    plan.write(None, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk's digests come back in push order whether spilled, held,
    /// or spilled until a write failed (the file then open for reading
    /// only) and held after: a digest lost there would change a cache key.
    #[test]
    fn walk_digests_keep_their_order_through_a_failed_spill() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let n = WalkDigests::HELD * 4 + 5;
        let want: Vec<Digest> = (0..n as u64)
            .map(|i| Digest::of(&i.to_le_bytes()))
            .collect();
        for fail_at in [None, Some(WalkDigests::HELD * 2 + 3)] {
            let mut walk = WalkDigests::new(Some(dir.path()));
            for (i, d) in want.iter().enumerate() {
                if Some(i) == fail_at {
                    let (file, _) = walk.spilled.as_mut().unwrap();
                    let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
                    *file = std::fs::File::open(fd).unwrap();
                }
                walk.push(*d);
            }
            assert_eq!(walk.failed, fail_at.is_some());
            let mut got = Vec::new();
            walk.for_each(|d| got.push(*d)).unwrap();
            assert!(got == want, "failing at {fail_at:?}");
        }
    }
}
