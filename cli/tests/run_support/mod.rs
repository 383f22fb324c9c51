//! Shared fixture for the `rbuild run` tests: a busybox root filesystem in a
//! temp dir, and helpers to run the real binary on it.

#![allow(dead_code)]

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// A busybox rootfs: /bin/busybox, its applet symlinks, /etc/passwd with
/// root and nobody, /etc/group, /tmp 1777, and `/bin/euid`, a static
/// setuid-root program printing its effective uid (when a C compiler is
/// available; `has_suid_probe` says).
pub struct Rootfs {
    pub dir: tempfile::TempDir,
    pub has_suid_probe: bool,
}

impl Rootfs {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn busybox_rootfs() -> Rootfs {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-test-rootfs-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let p = root.join(applet);
        if p.exists() || p.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink("/bin/busybox", &p).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let has_suid_probe =
        build_suid_probe(&root.join("bin/euid")) && compile(SYSPROBE_C, &root.join("bin/sysprobe"));
    Rootfs {
        dir,
        has_suid_probe,
    }
}

/// Prints `name=errno` (0 on success) for system calls the seccomp
/// filter decides on.
const SYSPROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>
static void p(const char *n, long r) { printf("%s=%d\n", n, r < 0 ? errno : 0); }
int main(void) {
  p("clone3", syscall(SYS_clone3, 0, 0));
  p("unshare_user", unshare(CLONE_NEWUSER));
  p("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  p("keyctl", syscall(SYS_keyctl, 0, -1, 0));
  p("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -2));
  p("bpf", syscall(SYS_bpf, 0, 0, 0));
  p("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
  p("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
  p("init_module", syscall(SYS_init_module, 0, 0, ""));
  p("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, 0, 0));
  p("personality_addr_no_randomize", personality(ADDR_NO_RANDOMIZE) == -1 ? -1 : 0);
  p("personality_query", personality(0xffffffff) == -1 ? -1 : 0);
  p("getpid", getpid());
  return 0;
}
"#;

fn compile(source: &str, out: &Path) -> bool {
    let src = out.with_extension("c");
    std::fs::write(&src, source).unwrap();
    let ok = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(&src)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let _ = std::fs::remove_file(&src);
    ok
}

fn build_suid_probe(out: &Path) -> bool {
    let ok = compile(
        "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n",
        out,
    );
    if ok {
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o4755)).unwrap();
    }
    ok
}

/// `rbuild run --rootfs <rootfs> <args...>` with stdin closed.
pub fn run(rootfs: &Path, args: &[&str]) -> Output {
    run_with(rootfs, &[], args)
}

/// `rbuild run <flags...> --rootfs <rootfs> <args...>`.
pub fn run_with(rootfs: &Path, flags: &[&str], args: &[&str]) -> Output {
    Command::new(RBUILD)
        .arg("run")
        .args(flags)
        .arg("--rootfs")
        .arg(rootfs)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `sh -c script` and returns stdout, asserting success.
pub fn sh(rootfs: &Path, script: &str) -> String {
    let o = run(rootfs, &["sh", "-c", script]);
    assert!(
        o.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The mount points (field 5) of /proc/self/mountinfo.
pub fn host_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap_or("").to_string())
        .collect()
}

#[allow(unused_imports)] // not every test binary including this module skips
pub use rbuild_testkit::skipped;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn path_of(p: &Path) -> PathBuf {
    p.to_path_buf()
}

/// Reads the first line a spawned `rbuild run` prints (its stdout piped)
/// and checks that the container said `ready`.
pub fn await_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
}

/// The pid of the sandbox's init process: the one child of the `rbuild`
/// process `pid`.
pub fn init_pid_of(pid: u32) -> String {
    let mut init = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let c = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        init.extend(c.split_whitespace().map(str::to_string));
    }
    assert_eq!(init.len(), 1, "one init process: {init:?}");
    init.remove(0)
}
