//! Where the sandbox keeps what must outlive one run's mount namespace: a
//! private directory on a tmpfs when the machine has one, as Docker and
//! runc keep theirs under `/run`. It holds the shared mount point of each
//! run's private tmpfs (the per-run files themselves, /etc/hosts, the
//! rootfs mount point and the overlay's upper dir, live on that tmpfs and
//! vanish with the run) and the init layer. Build-step secrets are not
//! kept here: they live on the run's private tmpfs only
//! ([`MountKind::File`](crate::MountKind::File)).
//!
//! An entry a process makes here for itself names its pid
//! (`sandbox-<pid>-…`, `init-layer-v1.tmp-<pid>`; `build-<what>-<pid>-<n>`
//! from older versions) and is swept once that process is gone
//! ([`stale_dirs`]): before this process's first sandbox, and by
//! `rbuild system check`.
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

/// A directory in the runtime dir left by a process that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleDir {
    pub path: PathBuf,
    /// The process that made it.
    pub pid: u32,
}

/// The pid that made the runtime dir entry `name`, for the names rbuild
/// gives per-process entries: `sandbox-<pid>-XXXXXX` (a sandbox's state
/// dir when the shared mount point is unusable), `init-layer-v1.tmp-<pid>`,
/// and `build-<what>-<pid>-<n>` (per-run dirs of the worker, which older
/// versions kept secrets in).
fn owner_pid(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix("sandbox-") {
        return rest.split_once('-')?.0.parse().ok();
    }
    if let Some(pid) = name.strip_prefix("init-layer-v1.tmp-") {
        return pid.parse().ok();
    }
    if name.starts_with("build-") {
        let mut parts = name.rsplitn(3, '-');
        let (_n, pid) = (parts.next()?.parse::<u64>().ok()?, parts.next()?);
        return pid.parse().ok();
    }
    None
}

/// When process `pid` started, in seconds since the epoch; `None` when
/// there is no such process.
fn process_start(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the
    // last `)`. starttime is field 22, the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    Some(boot as f64 + ticks as f64 / hz as f64)
}

/// Whether the entry at `path`, made by `pid`, outlived its maker: no
/// process `pid`, or one that started after the entry last changed (the
/// pid was reused). Boot time has a one-second resolution, so a process
/// started within two seconds of the entry's last change counts as its
/// maker: a live build's entry is never taken for stale.
fn outlived_maker(path: &Path, pid: u32) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let changed = meta.ctime() as f64 + meta.ctime_nsec() as f64 / 1e9;
    maker_gone(process_start(pid), changed)
}

/// The rule of [`outlived_maker`]: `start` of the process with the
/// maker's pid (if any), `changed` the entry's ctime, both in seconds.
fn maker_gone(start: Option<f64>, changed: f64) -> bool {
    start.is_none_or(|start| start > changed + 2.0)
}

/// The entries of `runtime` (a [`runtime_dir`]) whose maker is gone: the
/// per-run dirs of killed builds and sandboxes. Other entries (the shared
/// mount point, the init layer, anything unknown) are never listed.
pub fn stale_dirs(runtime: &Path) -> Vec<StaleDir> {
    let Ok(entries) = std::fs::read_dir(runtime) else {
        return Vec::new();
    };
    let mut out: Vec<StaleDir> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid = owner_pid(&name)?;
            let path = e.path();
            outlived_maker(&path, pid).then_some(StaleDir { path, pid })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Removes a stale entry and all it holds (making directories writable
/// first: overlayfs leaves its work dir with mode 000).
pub fn remove_stale(dir: &StaleDir) -> std::io::Result<()> {
    fn open_up(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
            if let Ok(entries) = std::fs::read_dir(path) {
                for e in entries.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(&dir.path);
    match std::fs::symlink_metadata(&dir.path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dir.path),
        Ok(_) => std::fs::remove_file(&dir.path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sweeps this user's runtime dir of entries whose maker is gone, once
/// per process (later calls do nothing); every rbuild command that starts
/// a sandbox calls it. Returns what was removed; failures are skipped (the
/// next sweep, or `rbuild system check`, tries again).
pub fn sweep_stale_once() -> Vec<PathBuf> {
    static DONE: std::sync::Once = std::sync::Once::new();
    let mut removed = Vec::new();
    DONE.call_once(|| {
        for dir in stale_dirs(&runtime_dir()) {
            if remove_stale(&dir).is_ok() {
                removed.push(dir.path);
            }
        }
    });
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_from_per_process_names_only() {
        assert_eq!(owner_pid("build-run-1234-7"), Some(1234));
        assert_eq!(owner_pid("build-cache-mount-99-0"), Some(99));
        assert_eq!(owner_pid("sandbox-42-aB3xYz"), Some(42));
        assert_eq!(owner_pid("init-layer-v1.tmp-5"), Some(5));
        for name in [
            "scratch-mnt",
            "init-layer-v1",
            "build-run-x-1",
            "sandbox-abc",
            "other",
        ] {
            assert_eq!(owner_pid(name), None, "{name}");
        }
    }

    #[test]
    fn only_dirs_of_dead_or_later_processes_are_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // Ours: live, never stale.
        let live = tmp.path().join(format!("build-run-{me}-0"));
        std::fs::create_dir(&live).unwrap();
        // A pid that cannot exist (above pid_max's ceiling).
        let dead = tmp.path().join("build-run-4194305-0");
        std::fs::create_dir_all(dead.join("work/work")).unwrap();
        std::fs::write(dead.join("secret-0"), "s3cret").unwrap();
        std::fs::set_permissions(
            dead.join("work/work"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        // pid 1 is alive but started long before this dir: a reused pid.
        let reused = tmp.path().join("sandbox-1-abcdef");
        std::fs::create_dir(&reused).unwrap();
        std::fs::create_dir(tmp.path().join("scratch-mnt")).unwrap();

        let stale = stale_dirs(tmp.path());
        let paths: Vec<&Path> = stale.iter().map(|d| d.path.as_path()).collect();
        // pid 1 started before the dir was made: it is its possible maker.
        assert_eq!(paths, [dead.as_path()]);
        for d in &stale {
            remove_stale(d).unwrap();
        }
        assert!(!dead.exists());
        assert!(live.exists() && reused.exists());
        assert!(tmp.path().join("scratch-mnt").exists());
    }

    #[test]
    fn a_pid_reused_by_a_later_process_does_not_keep_a_dir() {
        assert!(maker_gone(None, 1000.0), "no such process");
        assert!(maker_gone(Some(1003.0), 1000.0), "started after the dir");
        assert!(!maker_gone(Some(999.0), 1000.0), "started before it");
        assert!(
            !maker_gone(Some(1001.5), 1000.0),
            "within boot time's resolution"
        );
        // This process's start time is read right.
        let start = process_start(std::process::id()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }

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
