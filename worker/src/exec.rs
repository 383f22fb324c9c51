//! RUN: a sandbox on input 0's snapshots with a fresh upper dir, the
//! step's mounts, output streamed to the log sink; the upper dir becomes
//! the step's layer.

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rbuild_solver::graph::StepId;
use rbuild_solver::op::{ExecMountKind, ExecNetwork, ExecOp};

use super::cache_mount::{self, NewDir};
use super::fsutil::{self, ScratchDir};
use super::{BuildError, BuildWorker, BuiltLayer, StepOutput, Stream, input};
use rbuild_context::copy::{LayeredFs, SourceFs as _};
use rbuild_sandbox as sandbox;
use rbuild_sandbox::{
    Limits, Mount, MountKind, Network, Process, Rootfs, SandboxSpec, SandboxStdio,
};
use rbuild_store::layer::{PackOptions, pack_diff};

/// How many output lines a failed step's error keeps.
const TAIL_LINES: usize = 10;
/// Longest line kept for the error (longer ones are cut).
const TAIL_LINE_BYTES: usize = 4096;
/// The hostname RUN steps see, as with BuildKit.
const HOSTNAME: &str = "buildkitsandbox";

/// Runs `op` on `base` and returns the layer of its changes (`None` when
/// it changed nothing).
pub(super) fn run(
    w: &BuildWorker<'_>,
    step: StepId,
    op: &ExecOp,
    base: &StepOutput,
    inputs: &[&StepOutput],
) -> Result<Option<BuiltLayer>, BuildError> {
    let store = w.cfg.store;
    let scratch = ScratchDir::new(store, "run")?;
    // Secrets and heredoc files: a private dir on the runtime tmpfs, never
    // the store's disk.
    let private = ScratchDir::new_in(&sandbox::runtime_dir(), "run")?;
    let lowers = w.snapshots(base)?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    for d in [&upper, &work] {
        fs::create_dir(d).map_err(BuildError::io(d))?;
    }

    let mut env = op.env.clone();
    env.extend(op.proxy_env.iter().cloned());
    let mut mounts = Vec::new();
    let mut held = Vec::new();
    for (i, m) in op.mounts.iter().enumerate() {
        let target = PathBuf::from(&m.target);
        let bind = |source: PathBuf, target: PathBuf, readonly: bool| Mount {
            kind: MountKind::Bind,
            source,
            target,
            readonly,
        };
        match &m.kind {
            ExecMountKind::Context { source, readonly } => {
                let ctx = w.cfg.context.ok_or(BuildError::NoContext)?;
                let dest = scratch.path().join(format!("mount-{i}"));
                // Hard links only where writes cannot reach the user's files.
                let links = readonly.then_some(ctx.root);
                fsutil::copy_tree(ctx.fs, &fsutil::clean_rel(source), &dest, links)?;
                mounts.push(bind(dest, target, *readonly));
            }
            ExecMountKind::Input {
                input: n,
                source,
                readonly,
            } => {
                let from = input(inputs, *n, "exec")?;
                let dest = scratch.path().join(format!("mount-{i}"));
                // Only the mounted subtree is materialized, read from the
                // snapshots through a merged view.
                let view = LayeredFs::new(w.snapshots(from)?);
                let rel = fsutil::clean_rel(source);
                if view.lstat(&rel).ok().flatten().is_none() {
                    return Err(BuildError::MountSource {
                        what: format!("mount input {n}"),
                        source_path: source.clone(),
                    });
                }
                fsutil::copy_tree(&view, &rel, &dest, None)?;
                mounts.push(bind(dest, target, *readonly));
            }
            ExecMountKind::Cache {
                id,
                sharing,
                mode,
                uid,
                gid,
                readonly,
                seed,
            } => {
                let seed_fn = |dest: &Path| -> Result<(), BuildError> {
                    let Some((n, source)) = seed else {
                        return Ok(());
                    };
                    let from = input(inputs, *n, "exec")?;
                    let view = LayeredFs::new(w.snapshots(from)?);
                    fsutil::copy_tree(&view, &fsutil::clean_rel(source), dest, None)
                };
                let new = NewDir {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    seed: seed.as_ref().map(|_| &seed_fn as &dyn Fn(&Path) -> _),
                };
                let dir = cache_mount::acquire(store, id, *sharing, &new)?;
                mounts.push(bind(dir.dir.clone(), target, *readonly));
                held.push(dir);
            }
            ExecMountKind::Tmpfs { size: _ } => mounts.push(Mount {
                kind: MountKind::Tmpfs,
                source: PathBuf::new(),
                target,
                readonly: false,
            }),
            ExecMountKind::Secret {
                id,
                env: var,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(value) = w.cfg.secrets.get(id) else {
                    if *required {
                        return Err(BuildError::MissingSecret { id: id.clone() });
                    }
                    continue;
                };
                let default = format!("/run/secrets/{id}");
                if let Some(var) = var {
                    env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                }
                // With env=, a file only when a target was also asked for.
                let file_target = match (var, m.target.as_str()) {
                    (None, "") => Some(default),
                    (None, t) => Some(t.to_string()),
                    (Some(_), t) if !t.is_empty() && t != default => Some(t.to_string()),
                    _ => None,
                };
                if let Some(t) = file_target {
                    let file = private.path().join(format!("secret-{i}"));
                    write_private_file(&file, value, *mode, *uid, *gid)?;
                    mounts.push(bind(file, PathBuf::from(t), true));
                }
            }
            ExecMountKind::File { content, mode } => {
                let file = private.path().join(format!("file-{i}"));
                write_private_file(&file, content.as_bytes(), *mode, 0, 0)?;
                mounts.push(bind(file, target, true));
            }
        }
    }
    let targets: Vec<PathBuf> = mounts.iter().map(|m| m.target.clone()).collect();
    let spec = SandboxSpec {
        rootfs: Rootfs::Overlay {
            lowers: lowers.clone(),
            upper: upper.clone(),
            work,
        },
        process: Process {
            args: op.args.clone(),
            env,
            cwd: op.cwd.clone(),
            user: op.user.clone(),
            tty: false,
        },
        mounts,
        network: match op.network {
            ExecNetwork::Host => Network::Host,
            ExecNetwork::None => Network::None,
        },
        hostname: HOSTNAME.to_string(),
        readonly_rootfs: false,
        limits: Limits::default(),
    };
    let result = run_streaming(w, step, &spec, &op.args.join(" "));
    drop(spec);
    drop(private);
    drop(held);
    result?;

    fsutil::remove_placeholders(&upper, &lowers, &targets);
    if fsutil::is_empty_dir(&upper)? {
        return Ok(None);
    }
    w.write_layer(|out| {
        pack_diff(&upper, out, &PackOptions::default())
            .map(Some)
            .map_err(|source| BuildError::Pack { source })
    })
}

/// Writes `data` to a new file only its owner can read while it is
/// written, then gives it `mode` and `uid:gid`.
fn write_private_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), BuildError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(BuildError::io(path))?;
    f.write_all(data).map_err(BuildError::io(path))?;
    drop(f);
    fsutil::chown_for_sandbox(path, uid, gid)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(BuildError::io(path))
}

/// The last lines of a step's output.
#[derive(Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &[u8]) {
        let line = &line[..line.len().min(TAIL_LINE_BYTES)];
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(text);
    }
}

/// Reads one output pipe to its end, passing chunks to the log sink and
/// complete lines to `tail`.
fn pump(w: &BuildWorker<'_>, step: StepId, stream: Stream, pipe: OwnedFd, tail: &Mutex<Tail>) {
    let mut file = fs::File::from(pipe);
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        w.cfg.log.output(step, stream, chunk);
        for &b in chunk {
            if b == b'\n' {
                tail.lock().expect("tail lock").push(&line);
                line.clear();
            } else if line.len() < TAIL_LINE_BYTES {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        tail.lock().expect("tail lock").push(&line);
    }
}

/// Runs `spec` with stdout/stderr streamed to the log sink; kills it when
/// the cancel flag is set. A non-zero exit is an error with the last lines.
fn run_streaming(
    w: &BuildWorker<'_>,
    step: StepId,
    spec: &SandboxSpec,
    command: &str,
) -> Result<(), BuildError> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| BuildError::Io {
            path: PathBuf::from("pipe"),
            source: e.into(),
        })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = SandboxStdio {
        stdin: Some(sandbox::dev_null().map_err(|e| BuildError::Sandbox {
            command: command.to_string(),
            last_lines: Vec::new(),
            source: Box::new(e),
        })?),
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    let tail = Mutex::new(Tail::default());
    let sandbox_err = |source, tail: &Mutex<Tail>| BuildError::Sandbox {
        command: command.to_string(),
        last_lines: tail.lock().expect("tail lock").0.iter().cloned().collect(),
        source: Box::new(source),
    };
    // The write ends went into the spawned process's stdio and are closed
    // here when `spawn` returns, so the readers see EOF when the
    // container's processes are gone.
    let sb = sandbox::spawn(spec, stdio).map_err(|e| sandbox_err(e, &tail))?;
    let pid = nix::unistd::Pid::from_raw(sb.pid() as i32);
    let done = AtomicBool::new(false);
    let cancelled = AtomicBool::new(false);
    let status = std::thread::scope(|s| {
        s.spawn(|| pump(w, step, Stream::Stdout, out_r, &tail));
        s.spawn(|| pump(w, step, Stream::Stderr, err_r, &tail));
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                if w.cfg.cancel.load(Ordering::Relaxed) {
                    cancelled.store(true, Ordering::Release);
                    // The init process dies; pid 1 follows it (PDEATHSIG),
                    // and with it the whole pid namespace.
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let status = sb.wait();
        done.store(true, Ordering::Release);
        status
    });
    if cancelled.load(Ordering::Acquire) {
        return Err(BuildError::Cancelled);
    }
    match status {
        Ok(0) => Ok(()),
        Ok(code) => Err(BuildError::ExitCode {
            command: command.to_string(),
            code,
            last_lines: tail.into_inner().expect("tail lock").0.into(),
        }),
        Err(e) => Err(sandbox_err(e, &tail)),
    }
}
