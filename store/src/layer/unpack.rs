//! Tar stream → directory, safely ([`super::unpack`]).
//!
//! Every path is resolved from a directory fd of the destination, one
//! component at a time or with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so no symlink is ever followed and nothing can be
//! created outside the destination, whatever the archive holds:
//!
//! - names are cleaned lexically; a leading `/` is stripped (as Docker does)
//!   but a `..` that climbs above the root is refused;
//! - an entry whose parent path goes through a symlink (or a non-directory)
//!   is refused;
//! - a symlink's target is kept as written, relative or absolute, even one
//!   that climbs above the root (`ln -s ../etc /x`, which BuildKit and
//!   Docker keep): a target is never followed here, and in a container
//!   `..` at the root stays at the root;
//! - a hardlink target is resolved inside the destination like any path;
//! - device nodes are created when running as root, as Docker does, and
//!   skipped (counted in [`UnpackStats::skipped_devices`]) otherwise;
//! - `trusted.overlay.*` / `user.overlay.*` xattrs in an archive are ignored
//!   (a layer must not steer the overlay mount that later stacks it).

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use super::hash_thread::ThreadHashingReader;
use super::sparse::{self, FileData, Tap, write_sparse};
use super::{LayerError, UnpackOptions, UnpackStats, WhiteoutMode};

const COPY_BUF: usize = 256 * 1024;
pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(super) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Why a path could not be resolved beneath the destination.
pub(super) enum Resolve {
    Unsafe(String),
    Io(io::Error),
    /// The body ended before the size its header promised.
    Truncated {
        declared: u64,
        actual: u64,
    },
}

impl From<Errno> for Resolve {
    fn from(e: Errno) -> Self {
        Resolve::Io(e.into())
    }
}

/// Metadata of one entry, decoded from its header and pax records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

pub(crate) fn unpack(
    input: &mut dyn Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let io_dest = |source: io::Error| LayerError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let was_empty = std::fs::read_dir(dest).map_err(io_dest)?.next().is_none();
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_dest(e.into()))?;
    let mut unpacker = Unpacker {
        root,
        dest: dest.to_path_buf(),
        is_root: rustix::process::geteuid().is_root(),
        whiteouts: opts.whiteouts,
        created: HashSet::new(),
        dirs: Vec::new(),
        cache: None,
        cache_epoch: 0,
        buf: vec![0; COPY_BUF],
        stats: UnpackStats::default(),
    };
    let mut reader = ThreadHashingReader::new(BufReader::with_capacity(COPY_BUF, input));
    match unpacker.run(&mut reader) {
        Ok(()) => {
            let (diff_id, _) = reader.finish();
            unpacker.stats.diff_id = Some(diff_id);
            Ok(unpacker.stats)
        }
        Err(err) => {
            if was_empty {
                // All-or-nothing for a fresh destination: leave it empty.
                // The first error is the one reported.
                let _ = unpacker.clear_root();
            }
            Err(err)
        }
    }
}

struct Unpacker {
    root: OwnedFd,
    dest: PathBuf,
    is_root: bool,
    whiteouts: WhiteoutMode,
    /// Paths (cleaned, `/`-joined) this layer created: an opaque marker
    /// keeps them and removes only what lower layers put there.
    created: HashSet<Vec<u8>>,
    /// Directories with their mode and mtime, applied after all children
    /// are written.
    dirs: Vec<(Vec<u8>, u32, i64)>,
    /// The last parent directory resolved, by cleaned path.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Bumped whenever something is removed: a parent fd taken out of the
    /// cache before that is not put back.
    cache_epoch: u64,
    buf: Vec<u8>,
    stats: UnpackStats,
}

impl Unpacker {
    fn run<R: Read>(&mut self, reader: &mut ThreadHashingReader<R>) -> Result<(), LayerError> {
        {
            let tap = Tap::new(&mut *reader);
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
                self.entry(&mut entry, &raw, data, &tap)
                    .map_err(|e| match e {
                        Resolve::Unsafe(reason) => LayerError::UnsafeEntry {
                            entry: last.clone(),
                            reason,
                        },
                        // The stream broke (a damaged blob), not the write.
                        Resolve::Io(source)
                            if source
                                .get_ref()
                                .and_then(|e| e.downcast_ref::<crate::StoreError>())
                                .is_some() =>
                        {
                            LayerError::Input { source }
                        }
                        Resolve::Io(source) => LayerError::Entry {
                            entry: last.clone(),
                            dest: self.dest.clone(),
                            source,
                        },
                        Resolve::Truncated { declared, actual } => LayerError::Truncated {
                            entry: last.clone(),
                            declared,
                            actual,
                        },
                    })?;
                self.stats.entries += 1;
            }
        }
        // Read the rest (end-of-archive blocks, padding) so the diffID covers
        // the whole stream.
        io::copy(reader, &mut io::sink())
            .map_err(|source| LayerError::malformed("<end of archive>", source))?;
        self.finish_dirs().map_err(|source| LayerError::Io {
            path: self.dest.clone(),
            source,
        })
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        data: FileData,
        tap: &Tap<'_>,
    ) -> Result<(), Resolve> {
        use tar::EntryType as T;
        let ty = entry.header().entry_type();
        if matches!(ty, T::XGlobalHeader) {
            return Ok(());
        }
        let comps = clean(raw)?;
        let Some((name, parent)) = comps.split_last() else {
            // The root itself ("./"): its metadata stays the destination's.
            return Ok(());
        };
        let parent_key = parent.join(&b'/');
        let key = comps.join(&b'/');

        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parent, &parent_key, target);
        }

        let meta = read_meta(entry)?;
        let epoch = self.cache_epoch;
        let parent_fd = self.parent(parent, &parent_key)?;
        match ty {
            T::Regular | T::Continuous | T::GNUSparse => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = self.create(parent_fd.as_fd(), name, false, || {
                    rfs::openat(&parent_fd, *name, flags, Mode::from_raw_mode(0o600))
                })?;
                let mut file = File::from(fd.expect("only directories are kept"));
                match data {
                    FileData::Sparse { map, data_len, raw } => {
                        // Holes stay holes: only the data is written.
                        let got = if raw {
                            write_sparse(&mut file, &mut tap.raw(data_len), &map)
                        } else {
                            write_sparse(&mut file, entry, &map)
                        }
                        .map_err(Resolve::Io)?;
                        if got < data_len {
                            return Err(Resolve::Truncated {
                                declared: data_len,
                                actual: got,
                            });
                        }
                        self.stats.bytes += got;
                    }
                    FileData::Plain => {
                        let declared = entry.size();
                        let mut got = 0u64;
                        loop {
                            let n = match entry.read(&mut self.buf) {
                                Ok(0) => break,
                                Ok(n) => n,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                Err(e) => return Err(Resolve::Io(e)),
                            };
                            got += n as u64;
                            file.write_all(&self.buf[..n]).map_err(Resolve::Io)?;
                            self.stats.bytes += n as u64;
                        }
                        if got < declared {
                            return Err(Resolve::Truncated {
                                declared,
                                actual: got,
                            });
                        }
                    }
                }
                self.set_owner_fd(&file, &meta)?;
                rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))?;
                set_xattrs(file.as_fd(), &meta.xattrs)?;
                rfs::futimens(&file, &times(meta.mtime))?;
            }
            T::Directory => {
                // An existing directory is kept (its lower content too).
                self.create(parent_fd.as_fd(), name, true, || {
                    rfs::mkdirat(&parent_fd, *name, Mode::from_raw_mode(0o700))
                })?;
                let fd = rfs::openat(
                    &parent_fd,
                    *name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                self.set_owner_fd(&fd, &meta)?;
                set_xattrs(fd.as_fd(), &meta.xattrs)?;
                // Mode and mtime once the children are in: a read-only
                // directory must still take them when not running as root.
                self.dirs.push((key.clone(), meta.mode, meta.mtime));
            }
            T::Symlink => {
                let target = link_name(entry)?;
                self.create(parent_fd.as_fd(), name, false, || {
                    rfs::symlinkat(target.as_slice(), &parent_fd, *name)
                })?;
                self.set_owner_at(parent_fd.as_fd(), name, &meta)?;
                rfs::utimensat(
                    &parent_fd,
                    *name,
                    &times(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            T::Link => {
                let target = link_name(entry)?;
                let tcomps = clean(&target).map_err(|_| {
                    Resolve::Unsafe(format!(
                        "hardlink target {:?} points outside the destination",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(Resolve::Unsafe("hardlink to the root directory".into()));
                };
                let missing = || {
                    Resolve::Unsafe(format!(
                        "hardlink target {:?} is not in the destination",
                        String::from_utf8_lossy(&target)
                    ))
                };
                let tparent_fd = match self.resolve(tparent, false) {
                    Err(Resolve::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                        return Err(missing());
                    }
                    other => other?,
                };
                let linked = self.create(parent_fd.as_fd(), name, false, || {
                    rfs::linkat(&tparent_fd, *tname, &parent_fd, *name, AtFlags::empty())
                });
                match linked {
                    Ok(_) => {}
                    Err(Resolve::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                        return Err(missing());
                    }
                    Err(e) => return Err(e),
                }
            }
            T::Char | T::Block | T::Fifo => {
                let (file_type, dev) = match ty {
                    T::Char => (FileType::CharacterDevice, device(entry)?),
                    T::Block => (FileType::BlockDevice, device(entry)?),
                    _ => (FileType::Fifo, 0),
                };
                if file_type != FileType::Fifo && !self.is_root {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                let made = self.create(parent_fd.as_fd(), name, false, || {
                    rfs::mknodat(
                        &parent_fd,
                        *name,
                        file_type,
                        Mode::from_raw_mode(0o600),
                        dev,
                    )
                });
                match made {
                    Ok(_) => {}
                    // A user namespace cannot make devices; Docker skips them too.
                    Err(Resolve::Io(e))
                        if file_type != FileType::Fifo && e.raw_os_error() == Some(libc::EPERM) =>
                    {
                        self.stats.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                self.set_owner_at(parent_fd.as_fd(), name, &meta)?;
                // Just created by mknodat above, so not a symlink.
                rfs::chmodat(
                    &parent_fd,
                    *name,
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )?;
                rfs::utimensat(
                    &parent_fd,
                    *name,
                    &times(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            other => {
                return Err(Resolve::Unsafe(format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                )));
            }
        }
        self.created.insert(key);
        self.keep_parent(parent_key, parent_fd, epoch);
        Ok(())
    }

    /// Applies `.wh.NAME` (delete NAME) or `.wh..wh..opq` (empty the
    /// directory of lower content), or records them as overlay whiteouts.
    fn whiteout(
        &mut self,
        parent: &[&[u8]],
        parent_key: &[u8],
        target: &[u8],
    ) -> Result<(), Resolve> {
        let opaque = target == &OPAQUE_MARKER[WHITEOUT_PREFIX.len()..];
        if !opaque && target.starts_with(WHITEOUT_PREFIX) {
            // `.wh..wh.*` other than the opaque marker: aufs metadata
            // (`.wh..wh.plnk`, `.wh..wh.aufs`), ignored as Docker does.
            return Ok(());
        }
        if !opaque && (target.is_empty() || target == b"." || target == b"..") {
            return Err(Resolve::Unsafe("whiteout names no file".into()));
        }
        match self.whiteouts {
            WhiteoutMode::Apply => {
                let parent_fd = match self.resolve(parent, false) {
                    // Nothing below to delete.
                    Err(Resolve::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                    other => other?,
                };
                self.invalidate_cache();
                if opaque {
                    for child in list_dir(parent_fd.as_fd())? {
                        let mut key = parent_key.to_vec();
                        if !key.is_empty() {
                            key.push(b'/');
                        }
                        key.extend_from_slice(&child);
                        if !self.created.contains(&key) {
                            remove_all_at(parent_fd.as_fd(), &child)?;
                        }
                    }
                } else {
                    remove_all_at(parent_fd.as_fd(), target)?;
                }
            }
            WhiteoutMode::Overlay => {
                let parent_fd = self.parent(parent, parent_key)?;
                if opaque {
                    rfs::fsetxattr(
                        &parent_fd,
                        "trusted.overlay.opaque",
                        b"y",
                        XattrFlags::empty(),
                    )?;
                } else {
                    match rfs::statat(&parent_fd, target, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(_) => {
                            remove_all_at(parent_fd.as_fd(), target)?;
                            self.invalidate_cache();
                        }
                        Err(Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rfs::mknodat(
                        &parent_fd,
                        target,
                        FileType::CharacterDevice,
                        Mode::empty(),
                        0,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Runs `create` for `name` in `parent`. If the name is taken, removes
    /// what is there — unless `keep_dir` and it is a directory, which is
    /// kept (`Ok(None)`) — and runs `create` once more.
    fn create<T>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        keep_dir: bool,
        mut create: impl FnMut() -> rustix::io::Result<T>,
    ) -> Result<Option<T>, Resolve> {
        match create() {
            Ok(t) => return Ok(Some(t)),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if keep_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Ok(None);
        }
        remove_all_at(parent, name)?;
        self.invalidate_cache();
        Ok(Some(create()?))
    }

    /// The parent directory of an entry, creating missing directories (mode
    /// 0755, as Docker does); cached for runs of siblings.
    fn parent(&mut self, comps: &[&[u8]], key: &[u8]) -> Result<OwnedFd, Resolve> {
        if let Some((cached, _)) = &self.cache {
            if cached == key {
                let (_, fd) = self.cache.take().expect("checked just above");
                return Ok(fd);
            }
        }
        self.resolve(comps, true)
    }

    /// Puts a parent fd back for the next sibling, unless something was
    /// removed meanwhile (the path might now name another directory).
    fn keep_parent(&mut self, key: Vec<u8>, fd: OwnedFd, epoch: u64) {
        if self.cache_epoch == epoch {
            self.cache = Some((key, fd));
        }
    }

    fn invalidate_cache(&mut self) {
        self.cache = None;
        self.cache_epoch += 1;
    }

    /// Opens the directory `comps` beneath the root without following any
    /// symlink; with `create`, makes missing directories.
    fn resolve(&mut self, comps: &[&[u8]], create: bool) -> Result<OwnedFd, Resolve> {
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if comps.is_empty() {
            return self.root.try_clone().map_err(Resolve::Io);
        }
        let joined = comps.join(&b'/');
        match rfs::openat2(
            &self.root,
            joined.as_slice(),
            dir_flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::LOOP | Errno::XDEV | Errno::NOTDIR) => {
                // Find which component is at fault with the walk below.
            }
            Err(Errno::NOENT) if !create => return Err(Errno::NOENT.into()),
            // Missing parents (walk creates them), no openat2 (old kernel
            // or seccomp), or a concurrent rename (EAGAIN): walk instead.
            Err(Errno::NOENT | Errno::NOSYS | Errno::PERM | Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
        let mut cur = self.root.try_clone().map_err(Resolve::Io)?;
        for (i, comp) in comps.iter().enumerate() {
            let next = match rfs::openat(&cur, *comp, dir_flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    let made = match rfs::mkdirat(&cur, *comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) => true,
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(e.into()),
                    };
                    self.created.insert(comps[..=i].join(&b'/'));
                    let fd = rfs::openat(&cur, *comp, dir_flags, Mode::empty())?;
                    if made {
                        // 0755 whatever the umask, so the result is stable.
                        rfs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
                    }
                    fd
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(Resolve::Unsafe(format!(
                        "path goes through {:?}, which is a symlink or not a directory",
                        String::from_utf8_lossy(&comps[..=i].join(&b'/'))
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn set_owner_fd(&self, fd: impl AsFd, meta: &Meta) -> Result<(), Resolve> {
        if self.is_root {
            rfs::fchown(fd, Some(uid(meta)), Some(gid(meta)))?;
        }
        Ok(())
    }

    fn set_owner_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), Resolve> {
        if self.is_root {
            rfs::chownat(
                parent,
                name,
                Some(uid(meta)),
                Some(gid(meta)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    /// Sets directory modes and mtimes once no child will be added any
    /// more: children before parents (reverse archive order), and for a
    /// directory listed twice, the later entry wins.
    fn finish_dirs(&mut self) -> io::Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        let mut done = HashSet::new();
        for (key, mode, mtime) in dirs.into_iter().rev() {
            if !done.insert(key.clone()) {
                continue;
            }
            let comps: Vec<&[u8]> = key.split(|&b| b == b'/').collect();
            let fd = match self.resolve(&comps, false) {
                Ok(fd) => fd,
                // Removed or replaced later in the same layer.
                Err(_) => continue,
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            rfs::futimens(&fd, &times(mtime))?;
        }
        Ok(())
    }

    /// Removes everything under the root (used on error for a fresh root).
    fn clear_root(&self) -> io::Result<()> {
        for child in list_dir(self.root.as_fd()).map_err(resolve_io)? {
            remove_all_at(self.root.as_fd(), &child).map_err(resolve_io)?;
        }
        Ok(())
    }
}

fn uid(meta: &Meta) -> rfs::Uid {
    rfs::Uid::from_raw(meta.uid)
}

fn gid(meta: &Meta) -> rfs::Gid {
    rfs::Gid::from_raw(meta.gid)
}

fn resolve_io(e: Resolve) -> io::Error {
    match e {
        Resolve::Io(e) => e,
        Resolve::Unsafe(reason) => io::Error::other(reason),
        Resolve::Truncated { declared, actual } => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("cut short: {actual} of {declared} bytes"),
        ),
    }
}

/// Splits `raw` into clean components: no empty, `.` or `..` parts; a
/// leading `/` is dropped; a `..` above the root is refused.
pub(super) fn clean(raw: &[u8]) -> Result<Vec<&[u8]>, Resolve> {
    let mut comps: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if comps.pop().is_none() {
                    return Err(Resolve::Unsafe(
                        "path climbs out of the destination with \"..\"".into(),
                    ));
                }
            }
            _ => comps.push(comp),
        }
    }
    Ok(comps)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Vec<u8>, Resolve> {
    match entry.link_name_bytes() {
        Some(name) if !name.is_empty() => Ok(name.into_owned()),
        _ => Err(Resolve::Unsafe("link entry without a target".into())),
    }
}

fn device<R: Read>(entry: &tar::Entry<'_, R>) -> Result<rfs::Dev, Resolve> {
    let h = entry.header();
    let major = h.device_major().map_err(Resolve::Io)?.unwrap_or(0);
    let minor = h.device_minor().map_err(Resolve::Io)?.unwrap_or(0);
    Ok(rfs::makedev(major, minor))
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, Resolve> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode().map_err(Resolve::Io)? & 0o7777,
        // An empty numeric field reads as 0, as Go's archive/tar does.
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions().map_err(Resolve::Io)? {
        for rec in pax {
            let rec = rec.map_err(Resolve::Io)?;
            let key = rec.key_bytes();
            let value = rec.value_bytes();
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
            };
            match key {
                b"uid" => meta.uid = num().unwrap_or(i64::from(meta.uid)) as u32,
                b"gid" => meta.gid = num().unwrap_or(i64::from(meta.gid)) as u32,
                b"mtime" => meta.mtime = num().unwrap_or(meta.mtime),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        if name.starts_with(b"trusted.overlay.")
                            || name.starts_with(b"user.overlay.")
                        {
                            continue;
                        }
                        if let Ok(name) = CString::new(name) {
                            meta.xattrs.push((name, value.to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(meta)
}

fn set_xattrs(fd: BorrowedFd<'_>, xattrs: &[(CString, Vec<u8>)]) -> Result<(), Resolve> {
    for (name, value) in xattrs {
        match rfs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty()) {
            // Not supported by the filesystem, or not allowed to an
            // unprivileged user (trusted.*): skipped, as Docker does.
            Ok(()) | Err(Errno::NOTSUP | Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Names in directory `dir`, without `.` and `..`.
fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Resolve> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` in `parent` and, for a directory, everything below it,
/// never following a symlink. A missing `name` is not an error.
fn remove_all_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Resolve> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let fd = rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for child in list_dir(fd.as_fd())? {
            remove_all_at(fd.as_fd(), &child)?;
        }
        rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(parent, name, AtFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(raw: &str) -> Option<String> {
        clean(raw.as_bytes())
            .ok()
            .map(|c| String::from_utf8(c.join(&b'/')).unwrap())
    }

    #[test]
    fn clean_strips_root_and_refuses_escapes() {
        assert_eq!(cleaned("/etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(cleaned("./a//b/./c/").as_deref(), Some("a/b/c"));
        assert_eq!(cleaned("a/../b").as_deref(), Some("b"));
        assert_eq!(cleaned("../x"), None);
        assert_eq!(cleaned("a/../../x"), None);
        assert_eq!(cleaned("/../x"), None);
    }
}
