//! Real toolchains and C libraries in the sandbox. The seccomp filter is
//! checked call by call against Docker's profile in its unit tests; these
//! run what users run, whose system calls no list of ours chose: a Go build
//! (the Go runtime calls `fstat` directly, as `os.File.Stat` does) and a
//! static musl binary (every Alpine image's libc).
//!
//! Regression: `fstat` was refused with EPERM, so `go build` and musl's
//! `fstat` failed in every RUN and `rbuild run`.

mod run_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use run_support::*;

/// musl's `fstat` (through `fstatat(fd, "", AT_EMPTY_PATH)`, which musl
/// turns into the `fstat` system call), `stat`, `lstat` and `fstatat`.
const MUSL_PROBE_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
  struct stat st;
  int fd = open("/etc/passwd", O_RDONLY);
  printf("open=%d\n", fd >= 0);
  int ok = fstat(fd, &st) == 0;
  printf("fstat=%d size=%d\n", ok, st.st_size > 0);
  printf("stat=%d\n", stat("/etc/passwd", &st) == 0);
  printf("lstat=%d\n", lstat("/bin/sh", &st) == 0 && S_ISLNK(st.st_mode));
  printf("fstatat=%d\n", fstatat(AT_FDCWD, "/etc", &st, 0) == 0 && S_ISDIR(st.st_mode));
  return 0;
}
"#;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_static_musl_binary_can_stat_files() {
    if !have("musl-gcc") {
        skipped(
            "a_static_musl_binary_can_stat_files",
            "needs musl-gcc (apt musl-tools)",
        );
        return;
    }
    let r = busybox_rootfs();
    let src = r.path().join("probe.c");
    std::fs::write(&src, MUSL_PROBE_C).unwrap();
    let st = Command::new("musl-gcc")
        .args(["-static", "-O1", "-o"])
        .arg(r.path().join("bin/muslprobe"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "musl-gcc failed");
    let o = run(r.path(), &["/bin/muslprobe"]);
    assert_eq!(
        stdout(&o),
        "open=1\nfstat=1 size=1\nstat=1\nlstat=1\nfstatat=1\n",
        "{}",
        stderr(&o)
    );
}

/// The host's Go installation: (GOROOT, and the directories its symlinks
/// point into, which must be mounted at the same paths). Debian's GOROOT
/// `/usr/lib/go-1.19` links `src`, `api` … into `/usr/share/go-1.19`.
fn go_installation() -> Option<Vec<PathBuf>> {
    let out = Command::new("go").args(["env", "GOROOT"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let goroot = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let mut dirs = vec![goroot.clone()];
    for entry in std::fs::read_dir(&goroot).ok()? {
        let path = entry.ok()?.path();
        if path.symlink_metadata().ok()?.file_type().is_symlink() {
            let target = std::fs::canonicalize(&path).ok()?;
            let parent = target.parent()?.to_path_buf();
            if !parent.starts_with(&goroot) && !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
    }
    // Debian's go and its tools are linked against the host's glibc: its
    // loader and libraries go in at their paths too.
    let go = goroot.join("bin/go");
    let ldd = Command::new("ldd").arg(&go).output().ok()?;
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if let Some(parent) = Path::new(word).parent().filter(|_| word.starts_with('/')) {
            for dir in [
                parent.to_path_buf(),
                std::fs::canonicalize(word).ok()?.parent()?.into(),
            ] {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    Some(dirs)
}

#[test]
fn go_builds_and_runs_a_program_in_the_sandbox() {
    let Some(dirs) = go_installation() else {
        skipped(
            "go_builds_and_runs_a_program_in_the_sandbox",
            "needs go (apt golang-go)",
        );
        return;
    };
    let r = busybox_rootfs();
    let app = r.path().join("src/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("go.mod"), "module example.com/app\n\ngo 1.19\n").unwrap();
    std::fs::write(
        app.join("main.go"),
        r#"package main

import (
	"fmt"
	"os"
)

func main() {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	st, err := f.Stat()
	if err != nil {
		fmt.Println("stat:", err)
		os.Exit(1)
	}
	fmt.Println("go stat ok", st.Size() > 0)
}
"#,
    )
    .unwrap();
    let goroot = &dirs[0];
    let mut flags: Vec<String> = Vec::new();
    for d in &dirs {
        for f in [
            "-v".to_string(),
            format!("{}:{}:ro", d.display(), d.display()),
        ] {
            flags.push(f);
        }
    }
    for e in [
        "HOME=/tmp",
        "GOCACHE=/tmp/gocache",
        "CGO_ENABLED=0",
        "GOFLAGS=-mod=mod",
    ] {
        flags.push("-e".into());
        flags.push(e.into());
    }
    flags.extend(["-w".into(), "/src/app".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let go = Path::new(goroot).join("bin/go");
    let script = format!("{} build -o /tmp/hello . && /tmp/hello", go.display());
    let o = run_with(r.path(), &flags, &["sh", "-c", &script]);
    assert!(
        o.status.success(),
        "go build in the sandbox failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(stdout(&o), "go stat ok true\n", "{}", stderr(&o));
}
