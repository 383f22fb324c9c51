//! A small harness for end-to-end tests: runs the real `rbuild` binary
//! against a temporary `--root`.
#![allow(dead_code)]

pub mod cache;
pub mod dockerd;
pub mod pty;
pub mod registry;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary store and helpers to run rbuild against it.
pub struct Rbuild {
    pub dir: tempfile::TempDir,
}

/// What one run printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

#[allow(unused_imports)] // not every test binary including this module skips
pub use rbuild_testkit::skipped;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rbuild")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

impl Rbuild {
    pub fn new() -> Rbuild {
        Rbuild {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A scratch path next to the root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command with `--root` set, and buildx's default provenance off
    /// (`BUILDX_NO_DEFAULT_ATTESTATIONS=1`): most tests compare with
    /// docker 20.10's `docker build`, whose driver attaches none; the
    /// attestation tests remove the variable.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1");
        c
    }

    /// Runs and returns what happened.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    /// Runs with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Run {
        run_command(self.command(args), input)
    }

    /// A command with `--root` set that reads no configuration of the
    /// user running the tests: a private Docker config dir (credentials)
    /// and XDG config dir (rbuild's user config file), and no
    /// `RBUILD_INSECURE_REGISTRIES`.
    pub fn private_command(&self, args: &[&str]) -> Command {
        let mut c = self.command(args);
        c.env("DOCKER_CONFIG", self.path("docker-config"))
            .env_remove("RBUILD_INSECURE_REGISTRIES")
            .env("XDG_CONFIG_HOME", self.path("xdg-config"));
        c
    }

    /// Whether the store holds blob `digest`.
    pub fn has_blob(&self, digest: &str) -> bool {
        blob_path(&self.root().join("store-v1"), digest).is_file()
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "rbuild {args:?} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// Runs, asserts failure, returns the result.
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_ne!(
            r.code, 0,
            "rbuild {args:?} should have failed:\n{}",
            r.stdout
        );
        r
    }

    /// Imports busybox:latest with testdata/make-busybox; returns the ID.
    pub fn busybox(&self) -> String {
        busybox_into(&self.root())
    }

    /// Makes a directory tree from (path, contents) pairs.
    pub fn tree(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(name);
        for (p, content) in files {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, content).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Imports a small tree as `name`; returns the image ID.
    pub fn import_tree(&self, name: &str, files: &[(&str, &str)]) -> String {
        let dir = self.tree(&format!("tree-{}", name.replace([':', '/'], "_")), files);
        self.ok(&["import", dir.to_str().unwrap(), name])
            .trim()
            .to_string()
    }
}

/// Runs `c` with `input` on stdin (else none), capturing its output.
pub fn run_command(mut c: Command, input: Option<&[u8]>) -> Run {
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        // A thread: a child that exits without reading must not block us.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    to_run(child.wait_with_output().unwrap())
}

/// The file of blob `digest` (`sha256:…`) in an OCI layout at `layout`
/// (a store's `store-v1`, an exported cache directory).
/// Imports busybox:latest into the store under `root` with
/// testdata/make-busybox; returns the ID.
pub fn busybox_into(root: &Path) -> String {
    let out = Command::new(repo_root().join("testdata/make-busybox"))
        .arg(bin())
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-busybox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    layout.join("blobs/sha256").join(hex)
}

/// The path as a `&str`, for argument lists.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts that `text` contains each of `needles`.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
}

pub fn to_run(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs an external tool, asserting success.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
