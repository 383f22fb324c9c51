//! [`RootFs`]: an image's root filesystem read as the image sees it.
//!
//! Paths are the image's (`/var/lib/dpkg/status`); symlinks are followed
//! as the kernel would inside the image's root: an absolute target starts
//! again at the root and `..` stops there, so nothing outside the root
//! is ever read whatever the image's links say.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Largest file read whole (a package database, a METADATA file).
pub const MAX_READ: u64 = 64 << 20;

/// An image's root filesystem in a directory of the host.
#[derive(Debug, Clone)]
pub struct RootFs {
    root: PathBuf,
}

impl RootFs {
    pub fn new(root: &Path) -> RootFs {
        RootFs {
            root: root.to_path_buf(),
        }
    }

    /// The host path of `path` (the image's), symlinks resolved inside
    /// the root; the last component's link is followed only when
    /// `follow_last`. `None` when links loop.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Option<PathBuf> {
        let mut pending: VecDeque<OsString> = components(Path::new(path));
        let mut cur: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            if pending.is_empty() && !follow_last {
                cur.push(c);
                break;
            }
            let mut candidate = self.root.clone();
            candidate.extend(&cur);
            candidate.push(&c);
            match fs_err::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    let target = fs_err::read_link(&candidate).ok()?;
                    if target.is_absolute() {
                        cur.clear();
                    }
                    let mut next = components(&target);
                    next.extend(pending);
                    pending = next;
                }
                _ => cur.push(c),
            }
        }
        let mut out = self.root.clone();
        out.extend(&cur);
        Some(out)
    }

    /// The bytes of the regular file at `path`, if it is one and no
    /// larger than `max`.
    pub fn read_max(&self, path: &str, max: u64) -> Option<Vec<u8>> {
        let host = self.resolve(path, true)?;
        let file = fs_err::File::open(&host).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > max {
            return None;
        }
        let mut out = Vec::with_capacity(meta.len() as usize);
        file.take(max).read_to_end(&mut out).ok()?;
        Some(out)
    }

    /// [`read_max`](Self::read_max) up to [`MAX_READ`] as text (invalid
    /// UTF-8 replaced).
    pub fn read_to_string(&self, path: &str) -> Option<String> {
        self.read_max(path, MAX_READ)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Opens the regular file at `path` (links followed inside the root).
    pub fn open(&self, path: &str) -> Option<fs_err::File> {
        let host = self.resolve(path, true)?;
        let file = fs_err::File::open(&host).ok()?;
        file.metadata().ok()?.is_file().then_some(file)
    }

    /// True when `path` itself (not a link to it) is a regular file.
    pub fn is_regular_file(&self, path: &str) -> bool {
        self.resolve(path, false)
            .and_then(|p| fs_err::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_file())
    }

    /// The names in the directory at `path`, sorted; empty when it is not
    /// one.
    pub fn read_dir(&self, path: &str) -> Vec<String> {
        let Some(host) = self.resolve(path, true) else {
            return Vec::new();
        };
        let Ok(entries) = fs_err::read_dir(&host) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// The host directory of the root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Joins an image directory and a name: `/a` + `b` = `/a/b`.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}
