//! The read-only filesystem COPY/ADD read from.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use rbuild_solver::Digest;

/// The kind of a source entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Character/block devices, fifos; sockets are never listed.
    Other,
}

/// What COPY needs to know about a source entry (never its mtime for
/// keys; the mtime is carried only to be written into the layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMeta {
    pub kind: EntryKind,
    /// Permission bits and setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Device number for `Other` devices (`st_rdev`).
    pub rdev: u64,
    /// The host's stat identity of the entry, from trees that read a
    /// host directory with one stat per entry (the build context): lets
    /// the `*_of` methods of [`SourceFs`] answer without another stat.
    pub host: Option<HostStat>,
}

/// The stat fields that say which version of a host file an entry is
/// (with [`SourceMeta::size`]): what the context's stat cache is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

/// Extended attributes (name, value), sorted by name.
pub type Xattrs = Vec<(String, Vec<u8>)>;

/// A read-only tree that COPY sources come from. Paths are relative to
/// the tree's root, `/`-separated, without a leading `/` (`""` is the
/// root); implementations never follow a symlink out of the tree.
pub trait SourceFs: Sync {
    /// The entry at `path` without following a final symlink; `None` when
    /// it does not exist or is excluded (e.g. by `.dockerignore`).
    fn lstat(&self, path: &str) -> io::Result<Option<SourceMeta>>;
    /// Names in the directory at `path`, sorted by bytes, excluded
    /// entries left out. A directory whose own path is excluded may still
    /// list re-included children (`!` patterns), as Docker does.
    fn read_dir(&self, path: &str) -> io::Result<Vec<String>>;
    /// Opens a regular file for reading.
    fn open(&self, path: &str) -> io::Result<File>;
    /// The target of a symlink.
    fn read_link(&self, path: &str) -> io::Result<PathBuf>;
    /// Extended attributes to copy (name, value), sorted by name; overlay's
    /// own and `security.selinux` left out.
    fn xattrs(&self, _path: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }
    /// The sha256 of a regular file's content. Implementations may answer
    /// from a cache (the context's stat cache) instead of reading it.
    fn file_digest(&self, path: &str) -> io::Result<Digest>;
    /// An identity shared by all hard links of a regular file that has more
    /// than one (`(st_dev, st_ino)`), so COPY keeps them hard links; `None`
    /// for a file with a single link, or when the tree cannot tell.
    fn link_id(&self, _path: &str) -> io::Result<Option<(u64, u64)>> {
        Ok(None)
    }

    /// The entries of the directory at `path` with their metadata, as
    /// [`read_dir`](SourceFs::read_dir) then [`lstat`](SourceFs::lstat)
    /// of each name would give them (an entry gone meanwhile left out).
    /// Trees that can list and stat in one pass override it: walking a
    /// context is then one stat per entry.
    fn read_dir_meta(&self, path: &str) -> io::Result<Vec<(String, SourceMeta)>> {
        let mut out = Vec::new();
        for name in self.read_dir(path)? {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            if let Some(meta) = self.lstat(&child)? {
                out.push((name, meta));
            }
        }
        Ok(out)
    }

    /// [`file_digest`](SourceFs::file_digest) of an entry this tree just
    /// described as `meta`; implementations may use `meta` to skip a stat.
    fn file_digest_of(&self, path: &str, _meta: &SourceMeta) -> io::Result<Digest> {
        self.file_digest(path)
    }

    /// [`xattrs`](SourceFs::xattrs) of an entry this tree just described
    /// as `meta`; implementations may use `meta` to skip a stat, or know
    /// from it that there are none.
    fn xattrs_of(&self, path: &str, _meta: &SourceMeta) -> io::Result<Vec<(String, Vec<u8>)>> {
        self.xattrs(path)
    }

    /// [`file_digest_of`](SourceFs::file_digest_of) and
    /// [`xattrs_of`](SourceFs::xattrs_of) of a regular file together;
    /// trees that answer both from one cache entry override it.
    fn file_digest_and_xattrs_of(
        &self,
        path: &str,
        meta: &SourceMeta,
    ) -> io::Result<(Digest, Xattrs)> {
        Ok((
            self.file_digest_of(path, meta)?,
            self.xattrs_of(path, meta)?,
        ))
    }

    /// [`link_id`](SourceFs::link_id) of an entry this tree just described
    /// as `meta`.
    fn link_id_of(&self, path: &str, meta: &SourceMeta) -> io::Result<Option<(u64, u64)>> {
        match meta.host {
            Some(h) => Ok((meta.kind == EntryKind::File && h.nlink > 1).then_some((h.dev, h.ino))),
            None => self.link_id(path),
        }
    }
}
