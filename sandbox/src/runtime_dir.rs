//! Where the sandbox keeps what must outlive one run's mount namespace: a
//! private directory on a tmpfs when the machine has one, as Docker and
//! runc keep theirs under `/run`. It holds the shared mount point of each
//! run's private tmpfs (the per-run files themselves, /etc/hosts, the
//! rootfs mount point and the overlay's upper dir, live on that tmpfs and
//! vanish with the run), the init layer, and build-step secrets.
//!
//! Why a tmpfs: on ext4 every small file or directory created and deleted
//! per run is expensive (the inode allocator scans recently deleted inodes,
//! and with `discard` each removal is a synchronous discard).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A directory only this user can write, on a tmpfs when one is available:
/// `$XDG_RUNTIME_DIR/rbuild`, `/run/rbuild` (root), or `/dev/shm/rbuild-UID`,
/// whichever is first on a tmpfs; else `rbuild-UID` in the temp directory.
pub fn runtime_dir() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    let mut candidates = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        candidates.push((PathBuf::from(xdg), "rbuild".to_string()));
    }
    if uid == 0 {
        candidates.push((PathBuf::from("/run"), "rbuild".to_string()));
    }
    candidates.push((PathBuf::from("/dev/shm"), format!("rbuild-{uid}")));
    for (parent, name) in candidates {
        if is_tmpfs(&parent)
            && let Some(dir) = private_dir(&parent.join(name), uid)
        {
            return dir;
        }
    }
    let fallback = std::env::temp_dir().join(format!("rbuild-{uid}"));
    private_dir(&fallback, uid).unwrap_or_else(std::env::temp_dir)
}

fn is_tmpfs(path: &Path) -> bool {
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    statfs(path).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC)
}

/// `path` as a directory owned by `uid` with mode 0700, creating it if
/// needed; `None` when it exists as anything else (a symlink, another
/// user's directory in a shared sticky directory such as /dev/shm).
fn private_dir(path: &Path, uid: u32) -> Option<PathBuf> {
    let _ = std::fs::DirBuilder::new().mode(0o700).create(path);
    let meta = std::fs::symlink_metadata(path).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0;
    private.then(|| path.to_path_buf())
}

/// The empty directory every sandbox of this user mounts its private tmpfs
/// on (see `init`): made once and never removed. Each sandbox mounts in its
/// own mount namespace, so they share the directory without seeing each
/// other's tmpfs, and the host never sees any. `None` when it exists as
/// something other than this user's private directory.
pub(crate) fn scratch_mount_point(runtime: &Path) -> Option<PathBuf> {
    private_dir(
        &runtime.join("scratch-mnt"),
        nix::unistd::geteuid().as_raw(),
    )
}

/// Directories and empty files the sandbox mounts over, relative to the
/// rootfs. Directories end in `/`.
const INIT_LAYER_ENTRIES: [&str; 16] = [
    "proc/",
    "sys/",
    "dev/",
    "dev/pts/",
    "dev/shm/",
    "dev/null",
    "dev/zero",
    "dev/full",
    "dev/random",
    "dev/urandom",
    "dev/tty",
    "dev/console",
    "etc/",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// A read-only overlay lower dir holding every mount point the sandbox
/// needs (Docker's "init layer"), shared by all sandboxes of this user and
/// made once. Placed above an image's layers, it means a container's upper
/// dir never gets mount points written into it (and a RUN step's layer
/// never captures them): on an image without /proc, /dev, /sys or
/// /etc/hosts that saved about 15 inodes created and deleted on disk per
/// run.
pub(crate) fn init_layer(runtime: &Path) -> std::io::Result<PathBuf> {
    let dest = runtime.join("init-layer-v1");
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = runtime.join(format!("init-layer-v1.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let build = || -> std::io::Result<()> {
        std::fs::DirBuilder::new().mode(0o755).create(&tmp)?;
        for entry in INIT_LAYER_ENTRIES {
            let path = tmp.join(entry.trim_end_matches('/'));
            if entry.ends_with('/') {
                std::fs::DirBuilder::new().mode(0o755).create(&path)?;
            } else {
                std::fs::File::create(&path)?;
            }
        }
        Ok(())
    };
    let result = build().and_then(|()| std::fs::rename(&tmp, &dest));
    match result {
        Ok(()) => Ok(dest),
        // Another sandbox made it first.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_dir_is_private_and_reused() {
        let dir = runtime_dir();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(runtime_dir(), dir);
    }

    #[test]
    fn init_layer_holds_every_mount_point_and_is_made_once() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = init_layer(tmp.path()).unwrap();
        for entry in INIT_LAYER_ENTRIES {
            let meta = std::fs::symlink_metadata(layer.join(entry.trim_end_matches('/'))).unwrap();
            assert_eq!(meta.is_dir(), entry.ends_with('/'), "{entry}");
        }
        std::fs::write(layer.join("marker"), "").unwrap();
        assert_eq!(init_layer(tmp.path()).unwrap(), layer);
        assert!(
            layer.join("marker").exists(),
            "an existing layer is reused, not rebuilt"
        );
    }

    #[test]
    fn a_foreign_or_symlinked_candidate_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert_eq!(private_dir(&link, nix::unistd::geteuid().as_raw()), None);
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        assert_eq!(private_dir(&open, nix::unistd::geteuid().as_raw()), None);
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(private_dir(&open, uid.wrapping_add(1)), None);
    }
}
