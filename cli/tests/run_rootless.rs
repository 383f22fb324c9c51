//! `rbuild run` as a non-root user (nobody, via setpriv): a user namespace
//! maps the user to root. Works on a rootfs the user owns; otherwise the
//! error says exactly what is missing.

mod run_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use run_support::*;

const NOBODY: u32 = 65534;

/// A copy of the rbuild binary that nobody can execute (the build dir may
/// not be reachable for other users).
fn binary_for_nobody() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("rbuild");
    std::fs::copy(RBUILD, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

fn as_nobody(bin: &Path, args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin)
        .arg("run")
        .args(args)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
    o
}

fn chown_r(p: &Path, uid: u32) {
    let s = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(s.success());
}

fn nobody_has_subids() -> bool {
    let has = |f: &str| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("nobody:") || l.starts_with("65534:"))
    };
    has("/etc/subuid") && has("/etc/subgid")
}

#[test]
fn non_root_user_runs_on_a_rootfs_it_owns() {
    if !is_root() {
        eprintln!("needs root to switch to nobody; running as non-root covers the same path");
    }
    let r = busybox_rootfs();
    chown_r(r.path(), NOBODY);
    let (_d, bin) = binary_for_nobody();
    let root = r.path().to_str().unwrap();
    let o = as_nobody(
        &bin,
        &[
            "--network",
            "none",
            "--rootfs",
            root,
            "sh",
            "-c",
            "id -u; echo $$; grep CapEff /proc/self/status; ls /sys/class/net; mount -t tmpfs x /tmp 2>/dev/null || echo mount=refused",
        ],
    );
    assert_eq!(
        stdout(&o),
        "0\n1\nCapEff:\t00000000a80425fb\nlo\nmount=refused\n",
        "stderr: {}",
        stderr(&o)
    );
    // Regression: with --network host a non-root sandbox binds the host's
    // /sys and must remount that bind (not the dir under it) read-only.
    let o = as_nobody(
        &bin,
        &[
            "--network",
            "host",
            "--rootfs",
            root,
            "sh",
            "-c",
            "ls /sys/class/net | grep -c lo; touch /sys/x 2>/dev/null || echo sys=ro",
        ],
    );
    assert_eq!(stdout(&o), "1\nsys=ro\n", "stderr: {}", stderr(&o));
    let o = as_nobody(
        &bin,
        &[
            "--read-only",
            "--rootfs",
            root,
            "sh",
            "-c",
            "touch /x 2>/dev/null || echo rootfs=ro",
        ],
    );
    assert_eq!(stdout(&o), "rootfs=ro\n", "stderr: {}", stderr(&o));
    let o = as_nobody(
        &bin,
        &[
            "--rootfs",
            &format!("{root}:O"),
            "sh",
            "-c",
            "echo x > /etc/f; cat /etc/f",
        ],
    );
    assert_eq!(stdout(&o), "x\n", "stderr: {}", stderr(&o));
    assert!(!r.path().join("etc/f").exists());
}

#[test]
fn non_root_user_gets_a_precise_error_for_what_is_missing() {
    let r = busybox_rootfs(); // owned by root: nobody's namespace cannot create /proc in it
    let (_d, bin) = binary_for_nobody();
    let root = r.path().to_str().unwrap();
    let o = as_nobody(&bin, &["--rootfs", root, "true"]);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("rootless sandbox: cannot create the mount point /proc in the rootfs")
            && err.contains("hint: use a rootfs owned by your user"),
        "{err}"
    );

    chown_r(r.path(), NOBODY);
    let o = as_nobody(&bin, &["--rootfs", "-u", "nobody", root, "id", "-u"]);
    if nobody_has_subids() {
        assert_eq!(stdout(&o), "65534\n", "{}", stderr(&o));
    } else {
        let err = stderr(&o);
        assert!(
            err.contains("uid 65534 / gid 65534 is not mapped in the sandbox's user namespace")
                && err.contains("/etc/subuid"),
            "{err}"
        );
    }

    let o = as_nobody(&bin, &["--rootfs", "--memory", "64m", root, "true"]);
    assert!(stderr(&o).contains("resource limits"), "{}", stderr(&o));
}

/// The init process never runs from a binary the sandbox could write: a
/// root-owned binary nobody else may write is exec'd as is (no copy), one
/// the user owns is copied into a sealed memfd first.
#[test]
fn the_init_runs_from_a_binary_the_sandbox_cannot_write() {
    if !is_root() {
        skipped(
            "the_init_runs_from_a_binary_the_sandbox_cannot_write",
            "needs root (gives the binary to root and to nobody, runs as nobody)",
        );
        return;
    }
    let r = busybox_rootfs();
    chown_r(r.path(), NOBODY);
    for owner in [0, NOBODY] {
        let (_dir, bin) = binary_for_nobody();
        std::os::unix::fs::chown(&bin, Some(owner), Some(owner)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let mut child = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&bin)
            // (--network none: pasta would be a second child.)
            .args(["run", "--network", "none", "--rootfs", r.path().to_str().unwrap()])
            .args(["sh", "-c", "echo ready; sleep 5"])
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        await_ready(&mut child);
        let target = std::fs::read_link(format!("/proc/{}/exe", init_pid_of(child.id()))).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        if owner == 0 {
            assert_eq!(target, bin, "a root-owned binary is used as is");
        } else {
            assert!(
                target.to_string_lossy().starts_with("/memfd:"),
                "a binary nobody owns is copied first: {target:?}"
            );
        }
    }
}
