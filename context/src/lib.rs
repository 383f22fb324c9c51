//! The build context: the directory a build reads COPY/ADD sources from,
//! read in place (never copied or tarred whole), filtered by
//! `.dockerignore` ([`IgnoreRules`]), with a persistent stat cache of file
//! digests so an unchanged file is not read again on the next build.
//!
//! Every path is resolved from a directory fd of the context with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or, where `openat2` is
//! unavailable, one `O_NOFOLLOW` component at a time), so no symlink is
//! ever followed: a symlink in the context is an entry like any other,
//! whose target is only read ([`SourceFs::read_link`]), never entered. A
//! path that goes through a symlink does not exist here; following links
//! inside the tree, as Docker's COPY does for source paths, is the copy
//! engine's job, done with `lstat`/`read_link` and confined to this tree.
//!
//! Excluded entries are invisible (`lstat` says `None`, `open` says not
//! found) except an excluded directory that holds re-included entries
//! (`dir` then `!dir/keep`): it is listed and can be walked, and only the
//! re-included entries show in it, as with BuildKit's context walker.
//!
//! Names are bytes: a name that is not valid UTF-8 is handed out in its
//! lossless text form ([`rbuild_oci::path_text`]), which every path given
//! back is converted from before it reaches a syscall.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod copy;
mod ignore;
pub mod remote;
mod stat_cache;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rbuild_oci::path_text;
use rbuild_solver::Digest;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use crate::copy::{EntryKind, HostStat, SourceFs, SourceMeta};

pub use ignore::{IgnoreRules, InvalidPattern, MatchState, PatternErrorKind};
pub use stat_cache::CacheLoad;

use stat_cache::{Entry, StatKey};

/// Opening the context, reading its ignore file or saving its stat cache
/// failed. (Reads through [`SourceFs`] return `io::Error`s; the caller
/// knows the path it asked for.)
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("I/O error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}:{line}: invalid pattern {}", path_text::quoted(pattern))]
    Pattern {
        file: PathBuf,
        line: usize,
        pattern: String,
        #[source]
        reason: PatternErrorKind,
    },
}

/// What the context did so far: how many files were read to hash them
/// and how many digests the stat cache answered without reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextStats {
    /// Files whose content was read and hashed.
    pub files_hashed: u64,
    /// Bytes read for those.
    pub bytes_hashed: u64,
    /// Digests answered from the stat cache.
    pub files_from_cache: u64,
    /// How loading the stat cache file went.
    pub cache_load: CacheLoad,
}

/// A build context directory, filtered by its ignore rules; implements
/// [`SourceFs`] for COPY/ADD. Safe to share between threads.
#[derive(Debug)]
pub struct Context {
    dir: PathBuf,
    root: OwnedFd,
    ignore: IgnoreRules,
    cache_path: Option<PathBuf>,
    /// The loaded cache file (read while the walk starts), which of its
    /// entries this build used and the files it hashed: what `save`
    /// writes, so files not seen this build drop out; and how loading it
    /// went.
    cache: stat_cache::Pending,
    files_hashed: AtomicU64,
    bytes_hashed: AtomicU64,
    files_from_cache: AtomicU64,
    /// Excluded directories → whether they hold a re-included entry.
    reincluded: Mutex<HashMap<String, bool>>,
    /// Cleared the first time `openat2` turns out to be unavailable
    /// (old kernel, seccomp), so later resolutions walk directly.
    have_openat2: AtomicBool,
    /// Directories already resolved (confined, no symlinks) → an `O_PATH`
    /// fd, so the many entries of one directory are each one
    /// single-component `openat`/`statat` instead of a walk from the root.
    /// Bounded by [`DIR_FD_CACHE`] to stay far from the fd limit.
    dir_fds: Mutex<HashMap<String, std::sync::Arc<OwnedFd>>>,
}

/// Most directory fds [`Context`] keeps open.
const DIR_FD_CACHE: usize = 128;

const READ_BUF: usize = 256 * 1024;

impl Context {
    /// Opens the context at `dir` with `ignore` applied. With
    /// `stat_cache`, file digests are remembered in that file (the CLI
    /// uses `<root>/cache-v1/context/<sha256 of the context's absolute
    /// path>`); a missing, old or damaged cache file is ignored.
    pub fn open(
        dir: &Path,
        ignore: IgnoreRules,
        stat_cache: Option<&Path>,
    ) -> Result<Context, ContextError> {
        let root = rfs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ContextError::Io {
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Context {
            dir: dir.to_path_buf(),
            root,
            ignore,
            cache_path: stat_cache.map(Path::to_path_buf),
            cache: stat_cache::start_loading(stat_cache),
            files_hashed: AtomicU64::new(0),
            bytes_hashed: AtomicU64::new(0),
            files_from_cache: AtomicU64::new(0),
            reincluded: Mutex::new(HashMap::new()),
            have_openat2: AtomicBool::new(true),
            dir_fds: Mutex::new(HashMap::new()),
        })
    }

    /// The context directory as given to [`Context::open`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ignore rules in force.
    pub fn ignore(&self) -> &IgnoreRules {
        &self.ignore
    }

    /// Counters so far.
    pub fn stats(&self) -> ContextStats {
        ContextStats {
            files_hashed: self.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: self.bytes_hashed.load(Ordering::Relaxed),
            files_from_cache: self.files_from_cache.load(Ordering::Relaxed),
            cache_load: self.cache.1,
        }
    }

    /// Writes the stat cache (the digests of the files this build looked
    /// at; others are dropped) atomically. Does nothing without a cache
    /// file.
    pub fn save(&self) -> Result<(), ContextError> {
        let Some(path) = &self.cache_path else {
            return Ok(());
        };
        // Every entry came from the file and every file entry was used:
        // the file already says exactly this.
        let (cache, load) = &*self.cache;
        if cache.unchanged() && matches!(load, CacheLoad::Loaded(_)) {
            return Ok(());
        }
        stat_cache::save(path, cache)
    }

    /// Whether `rel` is hidden by the ignore rules, given whether it is a
    /// directory (an excluded directory stays visible when it holds a
    /// re-included entry).
    fn hidden(&self, rel: &str, is_dir: bool) -> io::Result<bool> {
        if self.ignore.is_empty() || rel.is_empty() {
            return Ok(false);
        }
        let (excluded, state) = self.ignore.evaluate_path(rel);
        if !excluded {
            return Ok(false);
        }
        Ok(!(is_dir && self.holds_included(rel, &state)?))
    }

    /// Whether the excluded directory `dir` (whose match state is
    /// `state`) holds an entry that the rules re-include, at any depth.
    fn holds_included(&self, dir: &str, state: &MatchState) -> io::Result<bool> {
        if !self.ignore.has_exceptions() || !self.ignore.may_reinclude_below(dir) {
            return Ok(false);
        }
        if let Some(&known) = self.lock_reincluded().get(dir) {
            return Ok(known);
        }
        let fd = match self.resolve(dir, dir_flags()) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut found = false;
        for (name, kind) in list(&fd)? {
            if kind == FileType::Socket {
                continue;
            }
            let child = format!("{dir}/{}", path_text::from_bytes(&name));
            let (excluded, child_state) = self.ignore.evaluate(&child, state);
            if !excluded
                || (kind == FileType::Directory && self.holds_included(&child, &child_state)?)
            {
                found = true;
                break;
            }
        }
        self.lock_reincluded().insert(dir.to_string(), found);
        Ok(found)
    }

    fn lock_reincluded(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.reincluded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens `rel` (cleaned, `""` for the root) beneath the context root
    /// without following any symlink, the last component included.
    fn resolve(&self, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if rel.is_empty() {
            return Ok(rfs::openat(&self.root, ".", flags, Mode::empty())?);
        }
        // The last component from its (cached) parent: O_NOFOLLOW refuses
        // a symlink there (ELOOP; ENOTDIR with O_DIRECTORY), as
        // RESOLVE_NO_SYMLINKS would. An O_PATH open without O_DIRECTORY
        // would return a symlink itself, so that case takes the walk.
        if let Some((parent, name)) = rel.rsplit_once('/')
            && (!flags.contains(OFlags::PATH) || flags.contains(OFlags::DIRECTORY))
        {
            let dir = self.dir_fd(parent)?;
            return Ok(rfs::openat(
                &*dir,
                &*path_text::to_bytes(name),
                flags,
                Mode::empty(),
            )?);
        }
        self.resolve_walk(rel, flags)
    }

    /// The directory `rel` (non-empty) as a cached `O_PATH` fd.
    fn dir_fd(&self, rel: &str) -> io::Result<std::sync::Arc<OwnedFd>> {
        if let Some(fd) = self.lock_dir_fds().get(rel) {
            return Ok(fd.clone());
        }
        let fd = std::sync::Arc::new(self.resolve_walk(
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        )?);
        let mut cache = self.lock_dir_fds();
        if cache.len() >= DIR_FD_CACHE {
            cache.clear();
        }
        cache.insert(rel.to_string(), fd.clone());
        Ok(fd)
    }

    fn lock_dir_fds(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::sync::Arc<OwnedFd>>> {
        self.dir_fds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves `rel` from the root, confined: `openat2` with
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, else a component walk.
    fn resolve_walk(&self, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
        if self.have_openat2.load(Ordering::Relaxed) {
            match rfs::openat2(
                &self.root,
                &*path_text::to_bytes(rel),
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOSYS | Errno::PERM) => {
                    self.have_openat2.store(false, Ordering::Relaxed);
                }
                // A concurrent rename somewhere in the tree: walk instead.
                Err(Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut cur: Option<OwnedFd> = None;
        let mut comps = rel.split('/').peekable();
        while let Some(comp) = comps.next() {
            let at = cur.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let step_flags = if comps.peek().is_some() {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            } else {
                flags
            };
            cur = Some(rfs::openat(
                at,
                &*path_text::to_bytes(comp),
                step_flags,
                Mode::empty(),
            )?);
        }
        cur.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// The raw stat of `rel` without following it, `None` when it is not
    /// an entry of the tree (missing, or its path goes through a symlink
    /// or a non-directory).
    fn stat_entry(&self, rel: &str) -> io::Result<Option<rfs::Stat>> {
        if rel.is_empty() {
            return Ok(Some(rfs::fstat(&self.root)?));
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let fd = if parent.is_empty() {
            None
        } else {
            match self.dir_fd(parent) {
                Ok(fd) => Some(fd),
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        let at = fd.as_deref().map_or(self.root.as_fd(), |fd| fd.as_fd());
        match rfs::statat(at, &*path_text::to_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the regular file `rel` for reading; refuses other kinds.
    fn open_file(&self, rel: &str) -> io::Result<(File, rfs::Stat)> {
        if self.hidden(rel, false)? {
            return Err(not_found(rel));
        }
        // O_NONBLOCK so a fifo cannot hang the open; it changes nothing
        // for reads of a regular file.
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path_text::quoted(rel)),
            ));
        }
        Ok((File::from(fd), st))
    }

    fn hash(&self, rel: &str, mut file: File, key: StatKey) -> io::Result<Digest> {
        // Taken before reading: a write after this moment gets an mtime
        // at or after it, which makes the entry untrusted (see
        // `Entry::answers`).
        let recorded_ns = coarse_now_ns();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; READ_BUF.min(key.size as usize + 1).max(4096)];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        let digest: [u8; 32] = hasher.finalize().into();
        self.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.bytes_hashed.fetch_add(total, Ordering::Relaxed);
        if self.cache_path.is_some() {
            // Whether the file has extended attributes, asked of the open
            // file: an entry that knows there are none spares the next
            // build's xattr reads (adding one changes the ctime).
            let no_xattrs = matches!(rfs::flistxattr_query(&file), Ok(0) | Err(Errno::NOTSUP));
            let entry = Entry {
                key,
                recorded_ns,
                digest,
                no_xattrs,
            };
            self.cache.0.record(rel, entry);
        }
        Ok(Digest::from_bytes(digest))
    }
}

impl SourceFs for Context {
    fn lstat(&self, path: &str) -> io::Result<Option<SourceMeta>> {
        let rel = clean(path)?;
        if !self.ignore.is_empty() && !self.ignore.has_exceptions() && self.hidden(&rel, false)? {
            // Nothing can be re-included: skip the stat.
            return Ok(None);
        }
        let Some(st) = self.stat_entry(&rel)? else {
            return Ok(None);
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Socket || self.hidden(&rel, kind == FileType::Directory)? {
            return Ok(None);
        }
        Ok(Some(source_meta(&st)))
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let rel = clean(path)?;
        let (excluded, state) = self.ignore.evaluate_path(&rel);
        if excluded && !self.holds_included(&rel, &state)? {
            return Err(not_found(&rel));
        }
        let fd = self.resolve(&rel, dir_flags())?;
        let mut names = Vec::new();
        for (name, kind) in list(&fd)? {
            if kind == FileType::Socket {
                continue;
            }
            let name = path_text::from_bytes(&name).into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if !self.ignore.is_empty() {
                let (excluded, child_state) = self.ignore.evaluate(&child, &state);
                if excluded
                    && !(kind == FileType::Directory
                        && self.holds_included(&child, &child_state)?)
                {
                    continue;
                }
            }
            names.push(name);
        }
        names.sort_unstable();
        Ok(names)
    }

    fn open(&self, path: &str) -> io::Result<File> {
        let rel = clean(path)?;
        Ok(self.open_file(&rel)?.0)
    }

    fn read_link(&self, path: &str) -> io::Result<PathBuf> {
        let rel = clean(path)?;
        if self.hidden(&rel, false)? {
            return Err(not_found(&rel));
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        if name.is_empty() {
            return Err(Errno::INVAL.into());
        }
        let fd = self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY)?;
        let target = rfs::readlinkat(&fd, &*path_text::to_bytes(name), Vec::new())?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    /// Extended attributes of regular files and directories; symlinks and
    /// devices report none. Read by name in the (confined, cached) parent
    /// directory without opening the file or following a final symlink:
    /// a fully cached build asks this of every file.
    fn xattrs(&self, path: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        let rel = clean(path)?;
        let Some(st) = self.stat_entry(&rel)? else {
            return Err(not_found(&rel));
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if self.hidden(&rel, kind == FileType::Directory)? {
            return Err(not_found(&rel));
        }
        if !matches!(kind, FileType::RegularFile | FileType::Directory) {
            return Ok(Vec::new());
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        let cached;
        let dir = if parent.is_empty() {
            self.root.as_fd()
        } else {
            cached = self.dir_fd(parent)?;
            cached.as_fd()
        };
        let name = if name.is_empty() { "." } else { name };
        let at = Path::new(&format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        ))
        .join(path_text::to_os(name));
        crate::copy::read_xattrs(&at).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading the xattrs of {}: {e}", path_text::quoted(&rel)),
            )
        })
    }

    fn read_dir_meta(&self, path: &str) -> io::Result<Vec<(String, SourceMeta)>> {
        let rel = clean(path)?;
        let (excluded, state) = self.ignore.evaluate_path(&rel);
        if excluded && !self.holds_included(&rel, &state)? {
            return Err(not_found(&rel));
        }
        let fd = self.resolve(&rel, dir_flags())?;
        let mut out = Vec::new();
        for entry in rfs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // One name in the open directory: nothing to resolve, no
            // symlink followed.
            let st = match rfs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since it was listed.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Socket {
                continue;
            }
            let name = path_text::from_bytes(name).into_owned();
            if !self.ignore.is_empty() {
                let child = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let (excluded, child_state) = self.ignore.evaluate(&child, &state);
                if excluded
                    && !(kind == FileType::Directory
                        && self.holds_included(&child, &child_state)?)
                {
                    continue;
                }
            }
            out.push((name, source_meta(&st)));
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Answered from the stat cache with `meta`'s stat fields (no
    /// syscall) when they still match; else as [`Context::file_digest`].
    fn file_digest_of(&self, path: &str, meta: &SourceMeta) -> io::Result<Digest> {
        if let Some(key) = meta_key(meta)
            && let Some(digest) = self.cached_digest(path, &key)
        {
            return Ok(digest);
        }
        self.file_digest(path)
    }

    /// None, without a syscall, for a regular file whose stat cache entry
    /// still matches and says it had none; symlinks and devices report
    /// none; else as [`Context::xattrs`].
    fn xattrs_of(&self, path: &str, meta: &SourceMeta) -> io::Result<Vec<(String, Vec<u8>)>> {
        if meta.host.is_some() && matches!(meta.kind, EntryKind::Symlink | EntryKind::Other) {
            return Ok(Vec::new());
        }
        if let Some(key) = meta_key(meta)
            && self.cache_path.is_some()
            && self.cache.0.lookup(path, &key).is_some_and(|e| e.no_xattrs)
        {
            return Ok(Vec::new());
        }
        self.xattrs(path)
    }

    /// One stat cache lookup answers both for an unchanged file: its
    /// digest, and whether it has extended attributes to read.
    fn file_digest_and_xattrs_of(
        &self,
        path: &str,
        meta: &SourceMeta,
    ) -> io::Result<(Digest, crate::copy::Xattrs)> {
        if let Some(key) = meta_key(meta)
            && let Some(entry) = self.cached_entry(path, &key)
        {
            let xattrs = if entry.no_xattrs {
                Vec::new()
            } else {
                self.xattrs(path)?
            };
            return Ok((Digest::from_bytes(entry.digest), xattrs));
        }
        Ok((self.file_digest(path)?, self.xattrs_of(path, meta)?))
    }

    fn file_digest(&self, path: &str) -> io::Result<Digest> {
        let rel = clean(path)?;
        // An unchanged file is answered from its stat alone: no open.
        if self.cache_path.is_some()
            && !self.hidden(&rel, false)?
            && let Some(st) = self.stat_entry(&rel)?
            && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && let Some(digest) = self.cached_digest(&rel, &stat_key(&st))
        {
            return Ok(digest);
        }
        let (file, st) = self.open_file(&rel)?;
        let key = stat_key(&st);
        if let Some(digest) = self.cached_digest(&rel, &key) {
            return Ok(digest);
        }
        self.hash(&rel, file, key)
    }

    /// Regular files with more than one link share `(st_dev, st_ino)`, so
    /// COPY keeps the context's hard links linked in the layer, as
    /// BuildKit does (a partner left out by `.dockerignore` or by the
    /// COPY's selection is simply not linked to).
    #[allow(clippy::unnecessary_cast)]
    fn link_id(&self, path: &str) -> io::Result<Option<(u64, u64)>> {
        let rel = clean(path)?;
        let Some(st) = self.stat_entry(&rel)? else {
            return Ok(None);
        };
        let file = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        Ok((file && st.st_nlink > 1).then_some((st.st_dev as u64, st.st_ino as u64)))
    }
}

impl Context {
    /// The digest the stat cache holds for `rel` when `key` still matches
    /// (from this build's entries, else the loaded file's).
    fn cached_digest(&self, rel: &str, key: &StatKey) -> Option<Digest> {
        self.cached_entry(rel, key)
            .map(|entry| Digest::from_bytes(entry.digest))
    }

    /// The stat cache entry that answers for `rel` stat'ed as `key`,
    /// counted as a digest answered from the cache.
    fn cached_entry(&self, rel: &str, key: &StatKey) -> Option<Entry> {
        self.cache_path.as_ref()?;
        let entry = self.cache.0.lookup(rel, key)?;
        self.files_from_cache.fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }
}

/// `path` as a cleaned relative path (`""` for the root): empty and `.`
/// components dropped; `..` refused, since nothing above the root exists.
fn clean(path: &str) -> io::Result<String> {
    let mut out = String::with_capacity(path.len());
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {} climbs out of the context", path_text::quoted(path)),
                ));
            }
            comp => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(comp);
            }
        }
    }
    Ok(out)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY
}

/// Errors that mean "no such entry in the tree": missing, or the path
/// goes through a symlink (`ELOOP` from `RESOLVE_NO_SYMLINKS` or
/// `O_NOFOLLOW`) or a non-directory.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
    )
}

fn not_found(rel: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{} is not in the build context (missing or excluded by .dockerignore)",
            path_text::quoted(rel)
        ),
    )
}

/// Names and types in the directory `fd`, without `.` and `..`.
fn list(fd: &OwnedFd) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let mut kind = entry.file_type();
        if kind == FileType::Unknown {
            // Some filesystems do not fill in d_type.
            kind =
                FileType::from_raw_mode(rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode);
        }
        out.push((name.to_vec(), kind));
    }
    Ok(out)
}

/// The kernel's coarse realtime clock in nanoseconds: the clock file
/// timestamps are taken from, so "mtime < this" means "written before".
fn coarse_now_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

// `Stat`'s field types differ between architectures; on some these casts
// change nothing.
#[allow(clippy::unnecessary_cast)]
fn stat_key(st: &rfs::Stat) -> StatKey {
    StatKey {
        size: st.st_size as u64,
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
        ino: st.st_ino as u64,
        dev: st.st_dev as u64,
    }
}

#[allow(clippy::unnecessary_cast)]
fn source_meta(st: &rfs::Stat) -> SourceMeta {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    SourceMeta {
        kind,
        mode: st.st_mode as u32 & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == EntryKind::File {
            st.st_size as u64
        } else {
            0
        },
        mtime: st.st_mtime as i64,
        rdev: st.st_rdev as u64,
        host: Some(HostStat {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
        }),
    }
}

/// The stat cache key of a regular file described by `meta`, when it
/// came from a stat of the host (the context's own entries).
fn meta_key(meta: &SourceMeta) -> Option<StatKey> {
    let h = meta.host?;
    (meta.kind == EntryKind::File).then_some(StatKey {
        size: meta.size,
        mtime_ns: h.mtime_ns,
        ctime_ns: h.ctime_ns,
        ino: h.ino,
        dev: h.dev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_refuses_climbing() {
        assert_eq!(clean("").unwrap(), "");
        assert_eq!(clean("./a//b/").unwrap(), "a/b");
        assert_eq!(clean("/a").unwrap(), "a");
        assert!(clean("a/../b").is_err());
    }
}
