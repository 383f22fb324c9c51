//! Directory tree → deterministic tar stream ([`super::pack_dir`],
//! [`super::pack_diff`]).
//!
//! Order: a depth-first walk, siblings sorted by name bytes, every directory
//! before its children (the order Go's `filepath.Walk` gives Docker and
//! BuildKit). The root itself is not written. Symlinks are never followed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::tar_writer::{self, EntryHeader, Kind};
use super::{LayerError, PackOptions};

/// Copy buffer for file data; large enough that sha256 and the writer see
/// big slices, small enough to stay far from the memory budget.
const COPY_BUF: usize = 256 * 1024;

/// xattrs overlayfs keeps for itself: meaningless in a layer, and harmful if
/// an unpacked snapshot is later used as an overlay lower dir.
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// xattrs never written to a layer (nor copied by COPY): overlay's own, and
/// SELinux labels, which belong to the host.
pub fn is_skipped_xattr(name: &[u8]) -> bool {
    is_overlay_xattr(name) || name == b"security.selinux"
}

pub(crate) struct Packer<'a> {
    out: &'a mut dyn Write,
    clamp_mtime: Option<u64>,
    owners: Option<super::OwnerMap>,
    /// overlayfs upper dir: translate whiteouts and opaque dirs.
    diff: bool,
    /// (dev, ino) of files with more than one link → first path written.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    xattr_list: Vec<u8>,
    xattr_value: Vec<u8>,
}

impl<'a> Packer<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, opts: &PackOptions, diff: bool) -> Self {
        Packer {
            out,
            clamp_mtime: opts.clamp_mtime,
            owners: opts.owners.clone(),
            diff,
            hardlinks: HashMap::new(),
            buf: vec![0; COPY_BUF],
            xattr_list: vec![0; 64 * 1024],
            xattr_value: vec![0; 64 * 1024],
        }
    }

    /// Writes every entry under `root`, then the end-of-archive marker.
    pub(crate) fn pack(&mut self, root: &Path) -> Result<(), LayerError> {
        // The root path itself may be a symlink (the caller's choice); every
        // entry below it is read without following any.
        let meta = fs::metadata(root).map_err(|source| io_err(root, source))?;
        if !meta.is_dir() {
            return Err(LayerError::Io {
                path: root.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        self.walk(root, &mut Vec::new())?;
        tar_writer::write_trailer(self.out).map_err(output_err)
    }

    /// Writes the children of directory `dir`, whose path in the layer is
    /// `rel` (empty or ending in `/`).
    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> Result<(), LayerError> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .map_err(|source| io_err(dir, source))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|source| io_err(dir, source))?;
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let rel_len = rel.len();
        for name in names {
            let path = dir.join(&name);
            rel.truncate(rel_len);
            rel.extend_from_slice(&name.into_vec());
            let is_dir = self.entry(&path, rel, rel_len)?;
            if is_dir {
                rel.push(b'/');
                self.walk(&path, rel)?;
            }
        }
        rel.truncate(rel_len);
        Ok(())
    }

    /// Writes one entry; returns whether it is a directory to descend into.
    fn entry(&mut self, path: &Path, rel: &[u8], parent_len: usize) -> Result<bool, LayerError> {
        let meta = fs::symlink_metadata(path).map_err(|source| io_err(path, source))?;
        let ft = meta.file_type();
        let mut mtime = meta.mtime();
        if let Some(clamp) = self.clamp_mtime {
            mtime = mtime.min(i64::try_from(clamp).unwrap_or(i64::MAX));
        }
        let mut header = EntryHeader {
            path: rel.to_vec(),
            kind: Kind::Directory,
            mode: meta.mode() & 0o7777,
            uid: u64::from(
                self.owners
                    .as_ref()
                    .map_or(meta.uid(), |m| m.uid(meta.uid())),
            ),
            gid: u64::from(
                self.owners
                    .as_ref()
                    .map_or(meta.gid(), |m| m.gid(meta.gid())),
            ),
            mtime,
            xattrs: Vec::new(),
        };
        let mut opaque = false;
        if !ft.is_symlink() {
            opaque = self.read_xattrs(path, &mut header.xattrs)?;
        }

        if ft.is_dir() {
            header.path.push(b'/');
            self.write_header(&header)?;
            if self.diff && opaque {
                let mut marker = header.clone();
                marker.path.extend_from_slice(b".wh..wh..opq");
                marker.kind = Kind::Regular { size: 0 };
                marker.mode &= 0o777;
                marker.xattrs.clear();
                self.write_header(&marker)?;
            }
            return Ok(true);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|source| io_err(path, source))?;
            header.kind = Kind::Symlink {
                target: target.into_os_string().into_vec(),
            };
        } else if ft.is_char_device() && self.diff && meta.rdev() == 0 {
            // overlayfs whiteout: a 0/0 char device means "NAME was deleted".
            let mut wh = rel[..parent_len].to_vec();
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(&rel[parent_len..]);
            header.path = wh;
            header.kind = Kind::Regular { size: 0 };
            header.mode = 0o600;
            header.xattrs.clear();
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = (
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            );
            header.kind = if ft.is_char_device() {
                Kind::Char { major, minor }
            } else {
                Kind::Block { major, minor }
            };
        } else if ft.is_fifo() {
            header.kind = Kind::Fifo;
        } else if ft.is_socket() {
            // Sockets cannot be archived; Docker skips them too.
            return Ok(false);
        } else {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.hardlinks.get(&key) {
                    header.kind = Kind::HardLink {
                        target: first.clone(),
                    };
                    self.write_header(&header)?;
                    return Ok(false);
                }
                self.hardlinks.insert(key, rel.to_vec());
            }
            header.kind = Kind::Regular { size: meta.len() };
            self.write_header(&header)?;
            self.copy_file(path, meta.len())?;
            return Ok(false);
        }
        self.write_header(&header)?;
        Ok(false)
    }

    fn write_header(&mut self, header: &EntryHeader) -> Result<(), LayerError> {
        tar_writer::write_header(self.out, header).map_err(output_err)
    }

    /// Copies exactly `size` bytes of `path` plus padding. A file that
    /// shrank since it was stat'ed is an error (the header already promised
    /// `size` bytes); bytes past `size` are ignored.
    fn copy_file(&mut self, path: &Path, size: u64) -> Result<(), LayerError> {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| io_err(path, source))?;
        let mut left = size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io_err(
                        path,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while it was being packed",
                        ),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(io_err(path, source)),
            };
            self.out.write_all(&self.buf[..n]).map_err(output_err)?;
            left -= n as u64;
        }
        tar_writer::write_padding(self.out, size).map_err(output_err)
    }

    /// Reads the xattrs of `path` (sorted by name) into `into`, leaving out
    /// host-only and overlay ones. Returns whether overlay marks the
    /// directory opaque.
    fn read_xattrs(
        &mut self,
        path: &Path,
        into: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<bool, LayerError> {
        let len = match rustix::fs::llistxattr(path, &mut self.xattr_list[..]) {
            Ok(len) => len,
            Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(false),
            Err(e) => return Err(io_err(path, e.into())),
        };
        let mut opaque = false;
        let list = &self.xattr_list[..len];
        for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let is_opaque_key = name == b"trusted.overlay.opaque" || name == b"user.overlay.opaque";
            if is_skipped_xattr(name) && !is_opaque_key {
                continue;
            }
            let cname = std::ffi::CString::new(name).expect("xattr names have no NUL");
            let vlen = match rustix::fs::lgetxattr(path, &cname, &mut self.xattr_value[..]) {
                Ok(n) => n,
                // Removed between list and get.
                Err(e) if e == rustix::io::Errno::NODATA => continue,
                Err(e) => return Err(io_err(path, e.into())),
            };
            let value = &self.xattr_value[..vlen];
            if is_opaque_key {
                opaque |= value == b"y";
                continue;
            }
            into.push((name.to_vec(), value.to_vec()));
        }
        into.sort();
        Ok(opaque)
    }
}

fn io_err(path: &Path, source: io::Error) -> LayerError {
    LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn output_err(source: io::Error) -> LayerError {
    LayerError::Output { source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_and_selinux_xattrs_are_not_packed() {
        assert!(is_skipped_xattr(b"trusted.overlay.origin"));
        assert!(is_skipped_xattr(b"user.overlay.redirect"));
        assert!(is_skipped_xattr(b"security.selinux"));
        assert!(!is_skipped_xattr(b"security.capability"));
        assert!(!is_skipped_xattr(b"user.mime_type"));
    }
}
