//! A [`Runner`] for tests, so RUN semantics are tested fast and without
//! root: [`FakeRunner`] starts no process and enters no namespace. It
//! records every [`RunSpec`] it is given and calls the script registered
//! for the argv with a [`FakeProcess`], which reads and writes the run's
//! filesystem the way the sandbox would show it to the command: a mount's
//! files at its target (bind sources on the host, read-only ones refusing
//! writes; a tmpfs in a temporary directory, gone afterwards), everything
//! else in the upper dir over the lowers, copied up on write. Like the
//! sandbox, it first creates missing mount targets and the working
//! directory in the upper dir (so the worker's cleanup of mount
//! placeholders is exercised too), and resolves the user from the root
//! filesystem's `/etc/passwd` and `/etc/group`.
//!
//! Not used by rbuild itself. What it does not model: symlinks inside the
//! root filesystem (paths are taken as written), deletions (no whiteouts),
//! permissions (files are written with the caller's rights, whatever the
//! user), and the network.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use rbuild_context::copy::{EntryKind, LayeredFs, SourceFs};
use rbuild_sandbox::{Identity, SandboxError};

use crate::Stream;
use crate::runner::{MountSource, RunIo, RunSpec, RunStatus, Runner};

/// What a fake command does: its effects through the [`FakeProcess`], and
/// its exit code. An error ends the command the way a failing tool would:
/// the error on stderr, exit code 1.
pub type Script = Box<dyn Fn(&FakeProcess<'_>) -> io::Result<i32> + Send + Sync>;

/// A [`Runner`] that runs scripts instead of processes (see the module
/// documentation). An argv with no script fails as a missing command
/// does in the sandbox ([`SandboxError::Exec`], not found).
#[derive(Default)]
pub struct FakeRunner {
    scripts: Vec<(Vec<String>, Script)>,
    runs: Mutex<Vec<RunSpec>>,
}

impl FakeRunner {
    /// A runner that knows no command yet.
    pub fn new() -> FakeRunner {
        FakeRunner::default()
    }

    /// Runs `script` for processes whose argv is exactly `argv`.
    pub fn on(
        mut self,
        argv: &[&str],
        script: impl Fn(&FakeProcess<'_>) -> io::Result<i32> + Send + Sync + 'static,
    ) -> FakeRunner {
        let argv = argv.iter().map(|a| a.to_string()).collect();
        self.scripts.push((argv, Box::new(script)));
        self
    }

    /// The spec of every run so far, in order (also those whose argv had
    /// no script).
    pub fn runs(&self) -> Vec<RunSpec> {
        self.runs.lock().expect("runs lock").clone()
    }
}

impl Runner for FakeRunner {
    fn run(&self, spec: &RunSpec, io: &RunIo<'_>) -> Result<RunStatus, SandboxError> {
        self.runs.lock().expect("runs lock").push(spec.clone());
        let Some((_, script)) = self.scripts.iter().find(|(argv, _)| *argv == spec.args) else {
            return Err(SandboxError::Exec {
                program: spec.args.first().cloned().unwrap_or_default(),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        };
        let process = FakeProcess::new(spec, io)?;
        let code = match script(&process) {
            Ok(code) => code,
            Err(e) => {
                process.stderr(format!("{e}\n").as_bytes());
                1
            }
        };
        if io.cancel.load(Ordering::Relaxed) {
            return Ok(RunStatus::Cancelled);
        }
        Ok(RunStatus::Exited(code))
    }
}

/// The name of a file mount's file in its directory.
const FILE_MOUNT_NAME: &str = "file";

/// Where a path of the run's filesystem lives.
enum Place {
    /// In a mount: this host path.
    Mount { host: PathBuf, readonly: bool },
    /// In the root filesystem: this path relative to it.
    Root(String),
}

/// The view a fake command has of its run: its spec, its filesystem,
/// its output, its cancel flag. Paths are absolute in the run's root
/// filesystem, or relative to the working directory.
pub struct FakeProcess<'a> {
    spec: &'a RunSpec,
    io: &'a RunIo<'a>,
    /// One directory per tmpfs or file mount (`None` for bind mounts).
    tmpfs: Vec<Option<tempfile::TempDir>>,
    /// The user the command runs as, from the rootfs's /etc/passwd.
    identity: Identity,
}

impl<'a> FakeProcess<'a> {
    fn new(spec: &'a RunSpec, io: &'a RunIo<'a>) -> Result<FakeProcess<'a>, SandboxError> {
        let setup = |step: &str, path: &Path| {
            let (step, path) = (step.to_string(), path.to_path_buf());
            move |source| SandboxError::Setup {
                step,
                path: Some(path),
                source,
            }
        };
        let mut tmpfs = Vec::new();
        for m in &spec.mounts {
            if !m.target.is_absolute() {
                return Err(SandboxError::InvalidSpec {
                    reason: format!("mount target {} is not absolute", m.target.display()),
                });
            }
            tmpfs.push(match &m.source {
                MountSource::Tmpfs => {
                    Some(tempfile::tempdir().map_err(setup("mount tmpfs", &m.target))?)
                }
                // The file in a directory of its own, as the sandbox keeps
                // it on its private tmpfs; gone with the run.
                MountSource::File(file) => {
                    let dir = tempfile::tempdir().map_err(setup("mount file", &m.target))?;
                    let path = dir.path().join(FILE_MOUNT_NAME);
                    fs::write(&path, &file.data).map_err(setup("write mounted file", &path))?;
                    if rustix::process::geteuid().is_root() {
                        std::os::unix::fs::chown(&path, Some(file.uid), Some(file.gid))
                            .map_err(setup("chown mounted file", &path))?;
                    }
                    fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
                        .map_err(setup("chmod mounted file", &path))?;
                    Some(dir)
                }
                MountSource::Bind(_) => None,
            });
        }
        let mut process = FakeProcess {
            spec,
            io,
            tmpfs,
            // Root until resolved below, once the mounts are in place.
            identity: Identity {
                uid: 0,
                gid: 0,
                groups: Vec::new(),
                home: String::new(),
            },
        };
        // Mount points, in mount order: a target inside an earlier mount
        // is made in that mount's source, as the sandbox's would be.
        for (i, m) in spec.mounts.iter().enumerate() {
            let dir = match &m.source {
                MountSource::Bind(source) => fs::metadata(source)
                    .map_err(setup("bind mount source", source))?
                    .is_dir(),
                MountSource::Tmpfs => true,
                MountSource::File(_) => false,
            };
            process
                .create_missing(&m.target, i, dir)
                .map_err(setup("create mount point", &m.target))?;
        }
        let cwd = Path::new(if spec.cwd.is_empty() { "/" } else { &spec.cwd });
        process
            .create_missing(cwd, spec.mounts.len(), true)
            .map_err(setup("create working directory", cwd))?;
        // Through the mounts, as pid 1 reads them after pivoting.
        let text = |path: &str| {
            let data = process.read(path).unwrap_or_default();
            String::from_utf8_lossy(&data).into_owned()
        };
        process.identity =
            rbuild_sandbox::resolve_user(&spec.user, &text("/etc/passwd"), &text("/etc/group"))?;
        Ok(process)
    }

    /// The spec this run was given.
    pub fn spec(&self) -> &RunSpec {
        self.spec
    }

    /// The user, group and groups the command runs as, resolved from the
    /// root filesystem's `/etc/passwd` and `/etc/group` as the sandbox
    /// resolves them (an unknown name fails the run the same way).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The value of the environment variable `key` (the last entry wins).
    pub fn env(&self, key: &str) -> Option<&str> {
        self.spec
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }

    /// True once the run was asked to stop (a long-running script polls it).
    pub fn cancelled(&self) -> bool {
        self.io.cancel.load(Ordering::Relaxed)
    }

    /// Writes `bytes` to the command's stdout.
    pub fn stdout(&self, bytes: &[u8]) {
        (self.io.output)(Stream::Stdout, bytes);
    }

    /// Writes `bytes` to the command's stderr.
    pub fn stderr(&self, bytes: &[u8]) {
        (self.io.output)(Stream::Stderr, bytes);
    }

    /// True when `path` exists.
    pub fn exists(&self, path: &str) -> bool {
        match self.place(path, self.spec.mounts.len()) {
            Ok(Place::Mount { host, .. }) => fs::symlink_metadata(host).is_ok(),
            Ok(Place::Root(rel)) => self.merged().lstat(&rel).is_ok_and(|m| m.is_some()),
            Err(_) => false,
        }
    }

    /// The content of the file at `path`.
    pub fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{path}: {e}"));
        match self.place(path, self.spec.mounts.len())? {
            Place::Mount { host, .. } => fs::read(host).map_err(named),
            Place::Root(rel) => {
                let mut data = Vec::new();
                io::Read::read_to_end(&mut self.merged().open(&rel).map_err(named)?, &mut data)
                    .map_err(named)?;
                Ok(data)
            }
        }
    }

    /// The content of the file at `path` as text.
    pub fn read_to_string(&self, path: &str) -> io::Result<String> {
        String::from_utf8(self.read(path)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
    }

    /// Creates or replaces the file at `path` (its directory must exist).
    pub fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let host = self.writable(path, false)?;
        fs::write(&host, data).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
    }

    /// Appends `data` to the file at `path`, creating it when missing.
    pub fn append(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let host = self.writable(path, true)?;
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&host)
            .and_then(|mut f| f.write_all(data))
            .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
    }

    /// Creates the directory `path` (its parent must exist).
    pub fn mkdir(&self, path: &str) -> io::Result<()> {
        let host = self.writable(path, false)?;
        fs::create_dir(&host).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
    }

    /// The upper dir over the lowers, as one tree.
    fn merged(&self) -> LayeredFs {
        let rootfs = &self.spec.rootfs;
        let mut layers = vec![rootfs.upper.clone()];
        layers.extend(rootfs.lowers.iter().cloned());
        LayeredFs::new(layers)
    }

    /// Where `path` lives when only the first `mounts` mounts are made.
    fn place(&self, path: &str, mounts: usize) -> io::Result<Place> {
        let mut abs = PathBuf::from("/");
        if !path.starts_with('/') {
            abs.push(&self.spec.cwd);
        }
        abs.push(path);
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(n) => clean.push(n),
                Component::ParentDir => {
                    clean.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        // The last mount at or above the path hides the ones before it.
        for (i, m) in self.spec.mounts[..mounts].iter().enumerate().rev() {
            let Ok(rest) = clean.strip_prefix(&m.target) else {
                continue;
            };
            let file_mount;
            let source = match (&m.source, &self.tmpfs[i]) {
                (MountSource::Bind(source), _) => source.as_path(),
                (MountSource::Tmpfs, Some(dir)) => dir.path(),
                (MountSource::File(_), Some(dir)) => {
                    file_mount = dir.path().join(FILE_MOUNT_NAME);
                    file_mount.as_path()
                }
                (MountSource::Tmpfs | MountSource::File(_), None) => {
                    unreachable!("each tmpfs and file mount has a directory")
                }
            };
            let host = if rest.as_os_str().is_empty() {
                source.to_path_buf()
            } else {
                source.join(rest)
            };
            return Ok(Place::Mount {
                host,
                readonly: m.readonly,
            });
        }
        let rel = clean.strip_prefix("/").unwrap_or(&clean);
        let rel = rel.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{path}: not UTF-8"))
        })?;
        Ok(Place::Root(rel.to_string()))
    }

    /// The host path to write `path` at: in a writable mount, or in the
    /// upper dir with its parent directories copied up (and the file
    /// itself with `copy_file`).
    fn writable(&self, path: &str, copy_file: bool) -> io::Result<PathBuf> {
        match self.place(path, self.spec.mounts.len())? {
            Place::Mount { readonly: true, .. } => Err(io::Error::new(
                io::ErrorKind::ReadOnlyFilesystem,
                format!("{path}: read-only file system"),
            )),
            Place::Mount { host, .. } => Ok(host),
            Place::Root(rel) => self.copy_up(&rel, copy_file),
        }
    }

    /// Makes `rel`'s parent directories exist in the upper dir with the
    /// modes the merged view gives them (overlayfs's copy-up), and with
    /// `copy_file` the file itself when only a lower has it.
    fn copy_up(&self, rel: &str, copy_file: bool) -> io::Result<PathBuf> {
        let upper = &self.spec.rootfs.upper;
        let merged = self.merged();
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let Some((_, parents)) = comps.split_last() else {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "/: is a directory",
            ));
        };
        let mut at = String::new();
        for c in parents {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(c);
            let host = upper.join(&at);
            if fs::symlink_metadata(&host).is_ok() {
                continue;
            }
            let meta = merged.lstat(&at)?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("/{at}: no such directory"))
            })?;
            if meta.kind != EntryKind::Dir {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("/{at}: not a directory"),
                ));
            }
            fs::DirBuilder::new().mode(0o700).create(&host)?;
            fs::set_permissions(&host, fs::Permissions::from_mode(meta.mode))?;
            if rustix::process::geteuid().is_root() {
                std::os::unix::fs::lchown(&host, Some(meta.uid), Some(meta.gid))?;
            }
        }
        let host = upper.join(rel);
        if copy_file && fs::symlink_metadata(&host).is_err() {
            if let Some(meta) = merged.lstat(rel)? {
                io::copy(&mut merged.open(rel)?, &mut fs::File::create(&host)?)?;
                fs::set_permissions(&host, fs::Permissions::from_mode(meta.mode))?;
            }
        }
        Ok(host)
    }

    /// Creates `path` (a directory, or an empty file) when it is missing
    /// where the first `mounts` mounts leave it, with missing parent
    /// directories, as the sandbox does for mount points and the working
    /// directory.
    fn create_missing(&self, path: &Path, mounts: usize, dir: bool) -> io::Result<()> {
        let path = path
            .to_str()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let host = match self.place(path, mounts)? {
            Place::Mount { host, .. } => {
                if fs::symlink_metadata(&host).is_ok() {
                    return Ok(());
                }
                if let Some(parent) = host.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent)?;
                }
                host
            }
            Place::Root(rel) => {
                let merged = self.merged();
                if rel.is_empty() || merged.lstat(&rel)?.is_some() {
                    return Ok(());
                }
                // Missing parents are made as the sandbox makes them (0755);
                // existing ones are copied up to hold the new entry.
                let parents: Vec<&str> = rel.match_indices('/').map(|(at, _)| &rel[..at]).collect();
                for parent in parents {
                    if merged.lstat(parent)?.is_none() {
                        make(&self.copy_up(parent, false)?, true)?;
                    }
                }
                self.copy_up(&rel, false)?
            }
        };
        make(&host, dir)
    }
}

/// Creates an empty directory (0755) or an empty file (0644) at `host`.
fn make(host: &Path, dir: bool) -> io::Result<()> {
    if dir {
        fs::create_dir(host)?;
        fs::set_permissions(host, fs::Permissions::from_mode(0o755))
    } else {
        fs::File::create(host)?;
        fs::set_permissions(host, fs::Permissions::from_mode(0o644))
    }
}
