//! The copy-based snapshotter, used when overlayfs cannot be mounted (for
//! example when the store lives on a filesystem overlay refuses as upper
//! dir). The lowers are merged into a plain directory (`<work>/merged`),
//! the sandbox runs on it, and afterwards the changes are written to the
//! upper dir in overlayfs's format (new and changed entries copied, deleted
//! ones as 0:0 character-device whiteouts), so callers see the same result
//! as with overlayfs.
//!
//! Change detection uses (inode, ctime) recorded right after the copy: any
//! write, chmod, chown or rename of an entry changes its ctime.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// (inode, ctime seconds, ctime nanoseconds) of every entry after the copy.
pub(crate) type Manifest = HashMap<PathBuf, (u64, i64, i64)>;

/// The merged directory for a given overlay work dir.
pub(crate) fn merged_dir(work: &Path) -> PathBuf {
    work.join("merged")
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
}

fn set_times(p: &Path, m: &fs::Metadata) -> io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let ts = [
        libc::timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        libc::timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    ];
    // SAFETY: NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies one entry (not recursing) from `src` to `dst`, keeping type,
/// mode, owner and times. Ownership errors are ignored when not root.
fn copy_entry(src: &Path, dst: &Path, m: &fs::Metadata) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_dir() {
        match fs::create_dir(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if ft.is_file() {
        fs::copy(src, dst)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    } else {
        let c = CString::new(dst.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: NUL-terminated path; mode and dev come from lstat.
        if unsafe { libc::mknod(c.as_ptr(), m.mode(), m.rdev()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = lchown(dst, m.uid(), m.gid());
    if ft.is_dir() || ft.is_file() {
        // chown clears setuid bits; restore the mode.
        let _ = fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777));
    }
    set_times(dst, m)
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_opaque(p: &Path) -> bool {
    let c = match CString::new(p.as_os_str().as_bytes()) {
        Ok(c) => c,
        Err(_) => return false,
    };
    let mut buf = [0u8; 1];
    for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        // SAFETY: NUL-terminated strings and a 1-byte buffer.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 1) };
        if n == 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}

/// Applies one lower dir (a layer snapshot, whiteouts included) on top of
/// `dst`.
fn apply_layer(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let s = entry.path();
        let d = dst.join(entry.file_name());
        let m = fs::symlink_metadata(&s)?;
        if is_whiteout(&m) {
            remove_any(&d)?;
            continue;
        }
        let existing = fs::symlink_metadata(&d).ok();
        if let Some(e) = &existing {
            // Replace unless both are dirs and the new one is not opaque.
            if !(e.is_dir() && m.is_dir()) || is_opaque(&s) {
                remove_any(&d)?;
            }
        }
        copy_entry(&s, &d, &m)?;
        if m.is_dir() {
            apply_layer(&s, &d)?;
            set_times(&d, &m)?;
        }
    }
    Ok(())
}

fn record(dir: &Path, rel: &Path, out: &mut Manifest) -> io::Result<()> {
    for entry in fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let r = rel.join(entry.file_name());
        let m = fs::symlink_metadata(dir.join(&r))?;
        out.insert(r.clone(), (m.ino(), m.ctime(), m.ctime_nsec()));
        if m.is_dir() {
            record(dir, &r, out)?;
        }
    }
    Ok(())
}

/// Merges `lowers` (top first) into `merged` and records its manifest.
pub(crate) fn copy_merged(lowers: &[PathBuf], merged: &Path) -> io::Result<Manifest> {
    if merged.exists() {
        fs::remove_dir_all(merged)?;
    }
    fs::create_dir_all(merged)?;
    for lower in lowers.iter().rev() {
        apply_layer(lower, merged)?;
    }
    let mut manifest = Manifest::new();
    record(merged, Path::new(""), &mut manifest)?;
    Ok(manifest)
}

/// Writes what changed in `merged` since `manifest` into `upper`, in
/// overlayfs's format.
pub(crate) fn diff_into(merged: &Path, manifest: &Manifest, upper: &Path) -> io::Result<()> {
    let mut now = Manifest::new();
    record(merged, Path::new(""), &mut now)?;
    let mut changed: Vec<&PathBuf> = now
        .iter()
        .filter(|(p, v)| manifest.get(*p) != Some(v))
        .map(|(p, _)| p)
        .collect();
    changed.sort();
    for rel in changed {
        let src = merged.join(rel);
        let dst = upper.join(rel);
        if let Some(parent) = rel.parent() {
            ensure_parents(merged, upper, parent)?;
        }
        let m = fs::symlink_metadata(&src)?;
        if fs::symlink_metadata(&dst).is_ok() && !m.is_dir() {
            remove_any(&dst)?;
        }
        copy_entry(&src, &dst, &m)?;
    }
    let mut deleted: Vec<&PathBuf> = manifest.keys().filter(|p| !now.contains_key(*p)).collect();
    deleted.sort();
    for rel in deleted {
        // A deleted directory's children need no whiteouts of their own.
        if rel
            .ancestors()
            .skip(1)
            .any(|a| !a.as_os_str().is_empty() && manifest.contains_key(a) && !now.contains_key(a))
        {
            continue;
        }
        if let Some(parent) = rel.parent() {
            ensure_parents(merged, upper, parent)?;
        }
        let c = CString::new(upper.join(rel).as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: NUL-terminated path; a 0:0 char device is overlay's whiteout.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn ensure_parents(merged: &Path, upper: &Path, rel: &Path) -> io::Result<()> {
    let mut cur = PathBuf::new();
    for comp in rel.components() {
        cur.push(comp);
        let dst = upper.join(&cur);
        if fs::symlink_metadata(&dst).is_err() {
            let m = fs::symlink_metadata(merged.join(&cur))?;
            copy_entry(&merged.join(&cur), &dst, &m)?;
        }
    }
    Ok(())
}

/// Copies what `rel` (relative; empty for the whole tree) is in the union
/// of `layers` (top first, overlayfs format: whiteouts and opaque dirs, as
/// layer snapshots and a container's upper dir are) to `dest`, which must
/// not exist. Returns false when `rel` does not exist there. A symlink on
/// the way to `rel` is not followed (nothing outside the layers is read):
/// the path then does not exist.
pub fn copy_merged_path(layers: &[PathBuf], rel: &Path, dest: &Path) -> io::Result<bool> {
    let mut present = false;
    for layer in layers.iter().rev() {
        // What this layer says about the parents of `rel`.
        let mut hidden = false;
        let mut blocked = false;
        let mut cur = layer.clone();
        for comp in rel.parent().into_iter().flat_map(|p| p.components()) {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(m) if is_whiteout(&m) || !m.is_dir() => {
                    hidden = true;
                    blocked = true;
                    break;
                }
                Ok(_) if is_opaque(&cur) => hidden = true,
                Ok(_) => {}
                Err(_) => {
                    blocked = true;
                    break;
                }
            }
        }
        if hidden && present {
            remove_any(dest)?;
            present = false;
        }
        if blocked {
            continue;
        }
        let src = layer.join(rel);
        let m = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if is_whiteout(&m) {
            if present {
                remove_any(dest)?;
                present = false;
            }
            continue;
        }
        let merge = present && m.is_dir() && dest.is_dir() && !is_opaque(&src);
        if !merge {
            if present {
                remove_any(dest)?;
            }
            copy_entry(&src, dest, &m)?;
        }
        if m.is_dir() {
            apply_layer(&src, dest)?;
            set_times(dest, &m)?;
        }
        present = true;
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_then_diff_reports_new_changed_and_deleted() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/keep"), "k").unwrap();
        fs::write(lower.join("etc/change"), "c").unwrap();
        fs::write(lower.join("gone"), "g").unwrap();
        let merged = t.path().join("merged");
        let upper = t.path().join("upper");
        fs::create_dir(&upper).unwrap();
        let manifest = copy_merged(std::slice::from_ref(&lower), &merged).unwrap();
        fs::write(merged.join("etc/change"), "changed").unwrap();
        fs::write(merged.join("new"), "n").unwrap();
        fs::remove_file(merged.join("gone")).unwrap();
        diff_into(&merged, &manifest, &upper).unwrap();
        assert_eq!(
            fs::read_to_string(upper.join("etc/change")).unwrap(),
            "changed"
        );
        assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "n");
        assert!(!upper.join("etc/keep").exists());
        let wh = fs::symlink_metadata(upper.join("gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert_eq!(fs::read_to_string(lower.join("gone")).unwrap(), "g");
    }
}
