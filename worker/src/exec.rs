//! RUN: the worker's [`Runner`](crate::Runner) (the sandbox, in builds)
//! on input 0's snapshots with a fresh upper dir, the step's mounts made
//! here, output streamed to the log sink; the upper dir becomes the
//! step's layer.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_solver::graph::StepId;
use rbuild_solver::op::{ExecMountKind, ExecOp};

use super::cache_mount::{self, NewDir};
use super::runner::{MountSource, RunIo, RunMount, RunRootfs, RunSpec, RunStatus};
use super::scratch::ScratchDir;
use super::ssh::AgentProxy;
use super::tree_copy::{clean_rel, copy_tree};
use super::upper_dir::{add_runtime_mount_points, remove_placeholders};
use super::{BuildError, BuildWorker, BuiltLayer, StepOutput, Stream, input};
use rbuild_context::copy::{LayeredFs, SourceFs as _};
use rbuild_sandbox as sandbox;
use rbuild_store::layer::{PackOptions, pack_diff};

/// How many output lines a failed step's error keeps.
const TAIL_LINES: usize = 10;
/// Longest line kept for the error (longer ones are cut).
const TAIL_LINE_BYTES: usize = 4096;
/// The hostname RUN steps see, as with BuildKit.
const HOSTNAME: &str = "buildkitsandbox";

/// Runs `op` on `base` and returns the layer of its changes (a layer with
/// no entries when it changed nothing, as BuildKit's).
pub(super) fn run(
    w: &BuildWorker<'_>,
    step: StepId,
    op: &ExecOp,
    base: &StepOutput,
    inputs: &[&StepOutput],
) -> Result<BuiltLayer, BuildError> {
    let store = w.cfg.store;
    let scratch = ScratchDir::new(store, "run")?;
    let lowers = w.snapshots(base)?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    for d in [&upper, &work] {
        fs::create_dir(d).map_err(BuildError::io(d))?;
    }

    let mounts_started = std::time::Instant::now();
    let mut env = op.env.clone();
    env.extend(op.proxy_env.iter().cloned());
    let mut mounts = Vec::new();
    let mut held = Vec::new();
    let mut proxies = Vec::new();
    let mut ssh_dir: Option<ScratchDir> = None;
    for (i, m) in op.mounts.iter().enumerate() {
        let target = PathBuf::from(&m.target);
        let bind = |source: PathBuf, target: PathBuf, readonly: bool| RunMount {
            target,
            source: MountSource::Bind(source),
            readonly,
        };
        match &m.kind {
            ExecMountKind::Context { source, readonly }
            | ExecMountKind::Named {
                source, readonly, ..
            } => {
                let ctx = match &m.kind {
                    ExecMountKind::Named { name, .. } => w.named(name)?,
                    _ => w.cfg.context.ok_or(BuildError::NoContext)?,
                };
                let dest = scratch.path().join(format!("mount-{i}"));
                // Hard links only where writes cannot reach the user's files.
                let links = readonly.then_some(ctx.root);
                copy_tree(ctx.fs, &clean_rel(source), &dest, links)?;
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
                let rel = clean_rel(source);
                if view.lstat(&rel).ok().flatten().is_none() {
                    return Err(BuildError::MountSource {
                        what: format!("mount input {n}"),
                        source_path: source.clone(),
                    });
                }
                copy_tree(&view, &rel, &dest, None)?;
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
                    copy_tree(&view, &clean_rel(source), dest, None)
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
            ExecMountKind::Tmpfs { size: _ } => mounts.push(RunMount {
                target,
                source: MountSource::Tmpfs,
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
                // Never written to a directory: the runner keeps it in
                // memory the kernel frees when the run ends, even on kill -9.
                if let Some(t) = file_target {
                    mounts.push(memory_file(value, *mode, *uid, *gid, PathBuf::from(t)));
                }
            }
            ExecMountKind::File { content, mode } => {
                mounts.push(memory_file(content.as_bytes(), *mode, 0, 0, target));
            }
            ExecMountKind::Ssh {
                id,
                required,
                mode,
                uid,
                gid,
            } => {
                // As BuildKit: the first ssh mount is SSH_AUTH_SOCK unless
                // the step's environment sets it, even when an optional
                // agent was not given (a client then finds no socket).
                if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    env.push(format!("SSH_AUTH_SOCK={}", m.target));
                }
                let Some(agent) = w.ssh_agent(id) else {
                    if *required {
                        return Err(BuildError::MissingSsh { id: id.clone() });
                    }
                    continue;
                };
                // The step's sockets: a private directory on the runtime
                // tmpfs, gone with the step.
                if ssh_dir.is_none() {
                    ssh_dir = Some(ScratchDir::new_in(&sandbox::runtime_dir(), "ssh")?);
                }
                let dir = ssh_dir.as_ref().expect("made above").path();
                let sock = dir.join(format!("ssh-{i}.sock"));
                proxies.push(AgentProxy::start(&sock, agent, *mode, *uid, *gid)?);
                mounts.push(bind(sock, target, false));
            }
        }
    }
    super::phases::record("mounts", mounts_started);
    let targets: Vec<PathBuf> = mounts.iter().map(|m| m.target.clone()).collect();
    let spec = RunSpec {
        args: op.args.clone(),
        env,
        cwd: op.cwd.clone(),
        user: op.user.clone(),
        network: op.network,
        hostname: HOSTNAME.to_string(),
        rootfs: RunRootfs {
            lowers: lowers.clone(),
            upper: upper.clone(),
            work,
        },
        mounts,
    };
    let result = run_process(w, step, &spec);
    drop(spec);
    drop(proxies);
    drop(ssh_dir);
    drop(held);
    result?;

    remove_placeholders(&upper, &lowers, &targets);
    add_runtime_mount_points(&upper, &lowers)?;
    // A RUN that changed nothing still adds a layer (with no entries), as
    // in BuildKit, where every RUN step has one.
    let opts = PackOptions {
        owners: rootless_owners(),
        ..PackOptions::default()
    };
    // As root, the upper dir holds overlay's own whiteouts and opaque
    // marks, the format snapshots are unpacked into: it becomes the
    // layer's snapshot as it is (no unpacking of the blob just packed).
    // Rootless snapshots apply whiteouts instead, so they are unpacked.
    let tree = rustix::process::geteuid()
        .is_root()
        .then_some(upper.as_path());
    // The snapshot is made durable by the one syncfs that publishes the
    // build's snapshots (`Store::publish_snapshots`); starting the
    // writeback of what the command wrote now lets the disk work while the
    // layer is packed and while later steps run, so that syncfs has little
    // left to wait for. Only a head start: the step does not wait for it.
    if let Some(dir) = tree.and_then(|t| fs::File::open(t).ok()) {
        let _ = std::thread::Builder::new()
            .name("upper-writeback".into())
            .spawn(move || rustix::fs::syncfs(&dir));
    }
    let pack = |out: &mut dyn std::io::Write| {
        pack_diff(&upper, out, &opts).map_err(|source| BuildError::Pack { source })
    };
    match tree {
        Some(tree) if w.is_last_step(step) => w.tree_layer_now(tree, pack),
        Some(tree) => w.tree_layer_deferred(tree, opts.clone()),
        None => w.write_layer(pack),
    }
}

/// A read-only mount at `target` of a file holding `data`, owned
/// `uid:gid` with `mode`, that exists only in the run's memory.
fn memory_file(data: &[u8], mode: u32, uid: u32, gid: u32, target: PathBuf) -> RunMount {
    RunMount {
        target,
        source: MountSource::File(sandbox::MountFile {
            data: data.to_vec(),
            mode,
            uid,
            gid,
        }),
        readonly: true,
    }
}

/// The last lines of a step's output: both streams' lines in the order
/// they were completed, each stream's unfinished line kept apart.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    /// Each stream's unfinished line (stdout, stderr).
    partial: [Vec<u8>; 2],
}

impl Tail {
    /// Adds a chunk of `stream`'s output.
    fn extend(&mut self, stream: Stream, chunk: &[u8]) {
        let i = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial[i]);
                self.push(&line);
                line.clear();
                self.partial[i] = line;
            } else if self.partial[i].len() < TAIL_LINE_BYTES {
                self.partial[i].push(b);
            }
        }
    }

    fn push(&mut self, line: &[u8]) {
        let line = &line[..line.len().min(TAIL_LINE_BYTES)];
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(text);
    }

    /// The kept lines, each stream's unfinished line last.
    fn finish(mut self) -> Vec<String> {
        for i in 0..self.partial.len() {
            let line = std::mem::take(&mut self.partial[i]);
            if !line.is_empty() {
                self.push(&line);
            }
        }
        self.lines.into()
    }
}

/// Runs `spec` with the worker's runner, its output streamed to the log
/// sink. A non-zero exit is an error with the last lines.
fn run_process(w: &BuildWorker<'_>, step: StepId, spec: &RunSpec) -> Result<(), BuildError> {
    let tail = Mutex::new(Tail::default());
    let output = |stream: Stream, chunk: &[u8]| {
        w.cfg.log.output(step, stream, chunk);
        tail.lock().expect("tail lock").extend(stream, chunk);
    };
    let io = RunIo {
        output: &output,
        cancel: w.cfg.cancel,
    };
    let status = w.runner.run(spec, &io);
    let last_lines = tail.into_inner().expect("tail lock").finish();
    let command = || spec.args.join(" ");
    match status {
        Ok(RunStatus::Cancelled) => Err(BuildError::Cancelled),
        Ok(RunStatus::Exited(0)) => Ok(()),
        Ok(RunStatus::Exited(code)) => Err(BuildError::ExitCode {
            command: command(),
            code,
            last_lines,
        }),
        Err(source) => Err(BuildError::Sandbox {
            command: command(),
            last_lines,
            source: Box::new(source),
        }),
    }
}

/// When RUN steps run rootless, the files they write are owned on the host
/// by the user (container root) or its subordinate ids: the layer records
/// the ids the container saw, as a root build would.
fn rootless_owners() -> Option<rbuild_store::layer::OwnerMap> {
    use rbuild_store::layer::{IdRange, OwnerMap};
    let m = rbuild_sandbox::rootless_mapping()?;
    let one = |host| IdRange {
        container: 0,
        host,
        count: 1,
    };
    let sub = |r: rbuild_sandbox::SubRange| IdRange {
        container: 1,
        host: r.start,
        count: r.count,
    };
    let mut map = OwnerMap {
        uids: vec![one(m.uid)],
        gids: vec![one(m.gid)],
    };
    if let Some((u, g)) = m.subids {
        map.uids.push(sub(u));
        map.gids.push(sub(g));
    }
    Some(map)
}
