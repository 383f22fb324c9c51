//! A read-only merged view of a stack of layer snapshots (overlay format:
//! a 0/0 character device is a whiteout, `trusted.overlay.opaque=y` or
//! `user.overlay.opaque=y` marks an opaque directory), as overlayfs would
//! show it, without mounting anything.
//!
//! A path is looked up layer by layer, top first, walking its components
//! with `lstat` (never through a symlink on the host): the first layer that
//! has a non-directory there decides; directories merge with the ones below
//! until a layer marks its copy opaque. A whiteout, or a non-directory at
//! a parent path, hides everything below it in lower layers.

use std::collections::{HashSet, VecDeque};
use std::ffi::CString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rbuild_oci::path_text;
use rbuild_solver::Digest;
use sha2::Digest as _;

use super::source::{EntryKind, SourceFs, SourceMeta};

/// A stack of snapshot directories, top first (overlay's lowerdir order).
#[derive(Debug, Clone)]
pub struct LayeredFs {
    layers: Vec<PathBuf>,
}

/// What one layer holds at a path.
enum Probe {
    /// Nothing there, and nothing hiding lower layers: look further down.
    Absent,
    /// A whiteout, a non-directory at a parent, or an opaque parent: lower
    /// layers are hidden here.
    Blocked,
    /// An entry; `opaque` when lower layers must not be merged into it.
    Found {
        path: PathBuf,
        meta: Box<Metadata>,
        opaque: bool,
    },
}

/// Where a path of the merged view lives.
struct Located {
    /// The topmost entry (the one whose metadata the view shows).
    path: PathBuf,
    meta: Metadata,
    /// For a directory: every layer's copy that merges into it, top first.
    dir_layers: Vec<PathBuf>,
}

impl LayeredFs {
    /// The view of `layers`, top first. An empty stack is an empty tree.
    pub fn new(layers: Vec<PathBuf>) -> LayeredFs {
        LayeredFs { layers }
    }

    /// The snapshot directories, top first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Resolves `path` (absolute or relative to the root) the way a process
    /// chrooted into this tree would: symlinks are followed inside the
    /// tree (an absolute target restarts at its root), `..` stops at the
    /// root, and a missing component ends resolution (the rest is kept as
    /// written). Returns the components of the resolved path. `follow_final`
    /// says whether a symlink as the last component is followed too.
    pub fn resolve(&self, path: &str, follow_final: bool) -> io::Result<Vec<String>> {
        resolve_in(self, path, follow_final)
    }

    /// The content of the regular file at the absolute `path` (resolved
    /// inside the tree), `None` when missing or not a regular file; used
    /// for `/etc/passwd` and `/etc/group`.
    pub fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let comps = self.resolve(path, true)?;
        let rel = comps.join("/");
        match self.locate(&rel)? {
            Some(l) if l.meta.is_file() => {
                let mut data = Vec::new();
                open_nofollow(&l.path)?
                    .read_to_end(&mut data)
                    .map_err(|e| with_path(&l.path, e))?;
                Ok(Some(data))
            }
            _ => Ok(None),
        }
    }

    fn locate(&self, rel: &str) -> io::Result<Option<Located>> {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut found: Option<Located> = None;
        for layer in &self.layers {
            match probe(layer, &comps)? {
                Probe::Absent => continue,
                Probe::Blocked => break,
                Probe::Found { path, meta, opaque } => {
                    match &mut found {
                        None => {
                            let is_dir = meta.is_dir();
                            found = Some(Located {
                                path: path.clone(),
                                meta: *meta,
                                dir_layers: if is_dir { vec![path] } else { Vec::new() },
                            });
                            if !is_dir {
                                break;
                            }
                        }
                        Some(f) => {
                            // A file below a directory is hidden by it.
                            if !meta.is_dir() {
                                break;
                            }
                            f.dir_layers.push(path);
                        }
                    }
                    if opaque {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    fn locate_existing(&self, rel: &str) -> io::Result<Located> {
        self.locate(rel)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} does not exist in the layered filesystem",
                    path_text::quoted(rel)
                ),
            )
        })
    }
}

/// Resolves `path` inside any [`SourceFs`] like a chroot would (see
/// [`LayeredFs::resolve`]); used for both COPY sources and destinations.
pub(crate) fn resolve_in(
    fs: &dyn SourceFs,
    path: &str,
    follow_final: bool,
) -> io::Result<Vec<String>> {
    /// Linux's limit on symlinks followed in one lookup.
    const MAX_LINKS: usize = 40;
    let mut out: Vec<String> = Vec::new();
    let mut rest: VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut links = 0;
    let mut missing = false;
    while let Some(c) = rest.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        out.push(c);
        if missing || (rest.is_empty() && !follow_final) {
            continue;
        }
        let joined = out.join("/");
        match fs.lstat(&joined)? {
            Some(meta) if meta.kind == EntryKind::Symlink => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {}",
                        path_text::quoted(path)
                    )));
                }
                let target = fs.read_link(&joined)?;
                let target = path_text::from_os(target.as_os_str()).into_owned();
                out.pop();
                if target.starts_with('/') {
                    out.clear();
                }
                for t in target.split('/').rev().filter(|c| !c.is_empty()) {
                    rest.push_front(t.to_string());
                }
            }
            Some(_) => {}
            None => missing = true,
        }
    }
    Ok(out)
}

fn probe(layer: &Path, comps: &[&str]) -> io::Result<Probe> {
    let mut path = layer.to_path_buf();
    let mut opaque_above = false;
    if comps.is_empty() {
        return match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(Probe::Found {
                opaque: meta.is_dir() && is_opaque(&path)?,
                path,
                meta: Box::new(meta),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Probe::Absent),
            Err(e) => Err(with_path(&path, e)),
        };
    }
    for (i, c) in comps.iter().enumerate() {
        path.push(path_text::to_os(c));
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(if opaque_above {
                    Probe::Blocked
                } else {
                    Probe::Absent
                });
            }
            Err(e) => return Err(with_path(&path, e)),
        };
        if is_whiteout(&meta) {
            return Ok(Probe::Blocked);
        }
        if i + 1 == comps.len() {
            let opaque = meta.is_dir() && (opaque_above || is_opaque(&path)?);
            return Ok(Probe::Found {
                path,
                meta: Box::new(meta),
                opaque,
            });
        }
        if !meta.is_dir() {
            return Ok(Probe::Blocked);
        }
        if is_opaque(&path)? {
            opaque_above = true;
        }
    }
    unreachable!("the loop returns at the last component")
}

/// overlayfs's whiteout: a character device 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether `dir` is an overlayfs opaque directory (either xattr name).
pub fn is_opaque(dir: &Path) -> io::Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let mut buf = [0u8; 4];
        match rustix::fs::lgetxattr(dir, name, &mut buf) {
            Ok(n) if &buf[..n] == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e)
                if e == rustix::io::Errno::NODATA
                    || e == rustix::io::Errno::NOTSUP
                    || e == rustix::io::Errno::RANGE => {}
            Err(e) => return Err(with_path(dir, e.into())),
        }
    }
    Ok(false)
}

/// The xattrs of `path` (not following a symlink), sorted, host-only and
/// overlay ones left out.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    use rustix::io::Errno;
    // Sized by asking first: most files have none, and this runs per entry.
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(with_path(path, e.into())),
    };
    let mut list = vec![0u8; size];
    let len = rustix::fs::llistxattr(path, &mut list[..]).map_err(|e| with_path(path, e.into()))?;
    let mut out = Vec::new();
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if rbuild_store::layer::is_skipped_xattr(name) {
            continue;
        }
        let cname = CString::new(name).expect("xattr names have no NUL");
        let value = match rustix::fs::lgetxattr_query(path, &cname) {
            Ok(0) => Vec::new(),
            Ok(n) => {
                let mut value = vec![0u8; n];
                let got = rustix::fs::lgetxattr(path, &cname, &mut value[..])
                    .map_err(|e| with_path(path, e.into()))?;
                value.truncate(got);
                value
            }
            // Removed meanwhile.
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(with_path(path, e.into())),
        };
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    out.sort();
    Ok(out)
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| with_path(path, e))
}

/// [`SourceMeta`] from host metadata.
pub(crate) fn source_meta(meta: &Metadata) -> SourceMeta {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    SourceMeta {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: if ft.is_file() { meta.len() } else { 0 },
        mtime: meta.mtime(),
        rdev: meta.rdev(),
        host: None,
    }
}

impl SourceFs for LayeredFs {
    fn lstat(&self, path: &str) -> io::Result<Option<SourceMeta>> {
        Ok(self.locate(path)?.map(|l| source_meta(&l.meta)))
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let located = self.locate_existing(path)?;
        if !located.meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path_text::quoted(path)),
            ));
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut names = Vec::new();
        for dir in &located.dir_layers {
            for entry in fs::read_dir(dir).map_err(|e| with_path(dir, e))? {
                let entry = entry.map_err(|e| with_path(dir, e))?;
                let name = path_text::from_os(&entry.file_name()).into_owned();
                if !seen.insert(name.clone()) {
                    continue;
                }
                // The topmost layer holding the name decides: a whiteout
                // hides it, anything else shows it (lower ones are below).
                let meta = entry.metadata().map_err(|e| with_path(&entry.path(), e))?;
                if !is_whiteout(&meta) {
                    names.push(name);
                }
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    fn open(&self, path: &str) -> io::Result<File> {
        let located = self.locate_existing(path)?;
        open_nofollow(&located.path)
    }

    fn read_link(&self, path: &str) -> io::Result<PathBuf> {
        let located = self.locate_existing(path)?;
        fs::read_link(&located.path).map_err(|e| with_path(&located.path, e))
    }

    fn xattrs(&self, path: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        let located = self.locate_existing(path)?;
        read_xattrs(&located.path)
    }

    fn file_digest(&self, path: &str) -> io::Result<Digest> {
        let mut file = self.open(path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
            };
            hasher.update(&buf[..n]);
        }
        Ok(Digest::from_bytes(hasher.finalize().into()))
    }

    fn link_id(&self, path: &str) -> io::Result<Option<(u64, u64)>> {
        let located = self.locate_existing(path)?;
        let m = &located.meta;
        Ok((m.is_file() && m.nlink() > 1).then(|| (m.dev(), m.ino())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rbuild_testkit::skipped;

    #[test]
    fn xattrs_are_read_whole_and_sorted_without_overlay_or_selinux_ones() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let set = |name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(&f, name, value, rustix::fs::XattrFlags::empty())
        };
        if set("user.b", b"").is_err() {
            skipped(
                "xattrs_are_read_whole_and_sorted_without_overlay_or_selinux_ones",
                "the temp filesystem has no user xattrs",
            );
            return;
        }
        let long = vec![b'v'; 3000];
        set("user.a", &long).unwrap();
        // Root only; left out of COPY either way.
        let _ = set("trusted.overlay.opaque", b"y");
        assert_eq!(
            read_xattrs(&f).unwrap(),
            [
                ("user.a".to_string(), long),
                ("user.b".to_string(), Vec::new())
            ]
        );
        let bare = dir.path().join("bare");
        std::fs::write(&bare, b"").unwrap();
        assert!(read_xattrs(&bare).unwrap().is_empty());
    }
}
