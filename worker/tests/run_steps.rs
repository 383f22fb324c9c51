//! RUN steps without root: the worker with a [`FakeRunner`] in place of
//! the sandbox, on a temporary store with a small base image made here.
//! Each test asserts what the command saw (its spec, its files) and what
//! the step's layer holds, read back through the store. The same
//! semantics on the real sandbox (root, busybox) are in `build.rs`.

mod common;

use common::{entries, layer_bytes};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_context::{Context, IgnoreRules};
use rbuild_solver::Digest;
use rbuild_solver::graph::{BuildGraph, StepId};
use rbuild_solver::op::{CacheSharing, ExecMount, ExecMountKind, ExecNetwork, ExecOp, ImageOp, Op};
use rbuild_solver::scheduler::{NoEvents, SolveOptions, SolveReport, solve};
use rbuild_store::layer::{PackOptions, pack_dir};
use rbuild_store::{LayerInfo, Store};
use rbuild_worker::testing::FakeRunner;
use rbuild_worker::{
    BuildContext, BuildError, BuildWorker, LogSink, MountSource, NoLog, Secrets, StepOutput,
    StoreCacheIndex, Stream, WorkerConfig, WorkerInputs,
};

/// A store with `base:latest`: one layer with /etc/passwd and /etc/group
/// (root, nobody, app), /bin, /tmp and /var, and nothing to run.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    base: Digest,
}

impl Fixture {
    /// A base image with the mount points every real image has (/dev,
    /// /proc, /sys), so a RUN's layer holds only what the command wrote.
    fn new() -> Fixture {
        Fixture::with_dirs(&["bin", "etc", "tmp", "var", "dev", "proc", "sys"])
    }

    /// A base image with these top-level directories (and /etc files).
    fn with_dirs(dirs: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in dirs.iter().chain(&["etc"]) {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             app:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        let mut w = store.blob_writer(None).unwrap();
        let stats = pack_dir(&rootfs, &mut w, &PackOptions::default()).unwrap();
        let (digest, size) = w.commit().unwrap();
        let layer = LayerInfo {
            digest,
            diff_id: stats.diff_id,
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        };
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [stats.diff_id.to_string()]},
        });
        let tag = rbuild_oci::reference::ImageRef::parse("base").unwrap();
        let image = store
            .write_image_raw(&serde_json::to_vec(&config).unwrap(), &[layer], &[tag])
            .unwrap();
        Fixture {
            base: image.manifest_digest,
            store,
            dir,
        }
    }

    fn image_op(&self) -> Op {
        Op::Image(ImageOp {
            reference: "docker.io/library/base:latest".into(),
            digest: self.base,
            platform: "linux/amd64".into(),
        })
    }

    /// A directory for a build context, with `files` (path, content).
    fn context_dir(&self, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join("context");
        for (path, content) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    /// The store's scratch entries (a finished step leaves none).
    /// What is left in scratch space once the snapshots the steps adopted
    /// are published (until then they wait there).
    fn leftovers(&self) -> Vec<PathBuf> {
        self.store.publish_snapshots().unwrap();
        fs::read_dir(self.store.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

/// A RUN of `argv` as root in `/`, with `PATH` set and no network.
fn exec(argv: &[&str]) -> ExecOp {
    ExecOp {
        args: argv.iter().map(|a| a.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: String::new(),
        network: ExecNetwork::None,
        mounts: Vec::new(),
        proxy_env: Vec::new(),
        display: format!("RUN {}", argv.join(" ")),
    }
}

fn with_mount(mut op: ExecOp, target: &str, kind: ExecMountKind) -> ExecOp {
    op.mounts.push(ExecMount {
        target: target.into(),
        kind,
    });
    op
}

/// What a build is given besides its graph.
#[derive(Default)]
struct Inputs<'a> {
    context: Option<&'a Path>,
    secrets: Secrets,
    log: Option<&'a dyn LogSink>,
    cancel: Option<&'a AtomicBool>,
    /// Named contexts and ssh agents.
    more: Option<&'a WorkerInputs<'a>>,
}

/// Solves `target` of `g` with `runner` in place of the sandbox.
fn solve_with(
    fx: &Fixture,
    runner: &FakeRunner,
    g: &BuildGraph<Op>,
    target: StepId,
    inputs: &Inputs<'_>,
) -> Result<SolveReport<StepOutput>, BuildError> {
    let context = inputs
        .context
        .map(|dir| {
            Context::open(
                dir,
                IgnoreRules::from_patterns(&["secret.txt"]).unwrap(),
                None,
            )
        })
        .transpose()
        .unwrap();
    let not_cancelled = AtomicBool::new(false);
    let worker = BuildWorker::new(WorkerConfig {
        store: &fx.store,
        context: context
            .as_ref()
            .zip(inputs.context)
            .map(|(fs, root)| BuildContext {
                fs: fs as &dyn rbuild_context::copy::SourceFs,
                root,
            }),
        secrets: &inputs.secrets,
        log: inputs.log.unwrap_or(&NoLog),
        cancel: inputs.cancel.unwrap_or(&not_cancelled),
    })
    .unwrap()
    .with_runner(runner);
    let worker = match inputs.more {
        Some(more) => worker.with_inputs(more),
        None => worker,
    };
    solve(
        g,
        &[target],
        &worker,
        &StoreCacheIndex::new(&fx.store),
        &NoEvents,
        &SolveOptions::default(),
    )
    .map_err(|e| e.source)
}

/// FROM base, then `op`: the RUN's result.
fn run_one(
    fx: &Fixture,
    runner: &FakeRunner,
    op: ExecOp,
    inputs: &Inputs<'_>,
) -> Result<StepOutput, BuildError> {
    let mut g = BuildGraph::new();
    let base = g.add(fx.image_op(), &[]);
    let last = g.add(Op::Exec(op), &[base]);
    solve_with(fx, runner, &g, last, inputs).map(|mut r| r.outputs.remove(0))
}

/// The entries of the one layer a RUN added.
fn added_entries(fx: &Fixture, out: &StepOutput) -> Vec<String> {
    assert_eq!(out.added, 1, "the step adds one layer: {out:?}");
    entries(&fx.store, &out.layers.last().unwrap().info)
}

/// A file of the layer a RUN added, read from its snapshot.
fn added_file(fx: &Fixture, out: &StepOutput, path: &str) -> String {
    let snap = fx
        .store
        .snapshot_layer(&out.layers.last().unwrap().info)
        .unwrap();
    fs::read_to_string(snap.join(path)).unwrap()
}

#[derive(Default)]
struct Collect(Mutex<Vec<u8>>);

impl LogSink for Collect {
    fn output(&self, _: StepId, _: Stream, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

#[test]
fn context_bind_mount_is_read_only_and_not_in_the_layer() {
    let fx = Fixture::new();
    let ctx = fx.context_dir(&[("src/main.c", "int main;"), ("secret.txt", "ignored")]);
    let runner = FakeRunner::new().on(&["cc"], |p| {
        assert!(!p.exists("/ctx/secret.txt"), ".dockerignore applies");
        let err = p.write("/ctx/src/main.c", b"changed").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem);
        let source = p.read("/ctx/src/main.c")?;
        p.write("/out", &source)?;
        Ok(0)
    });
    let op = with_mount(
        exec(&["cc"]),
        "/ctx",
        ExecMountKind::Context {
            source: ".".into(),
            readonly: true,
        },
    );
    let inputs = Inputs {
        context: Some(&ctx),
        ..Inputs::default()
    };
    let out = run_one(&fx, &runner, op, &inputs).unwrap();
    // The mount point /ctx the runner made is gone from the layer.
    assert_eq!(added_entries(&fx, &out), ["out"]);
    assert_eq!(added_file(&fx, &out, "out"), "int main;");
    let mounts = &runner.runs()[0].mounts;
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        (mounts[0].target.as_path(), mounts[0].readonly),
        (Path::new("/ctx"), true)
    );
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn context_bind_mount_rw_writes_a_copy_and_its_content_is_in_the_key() {
    let fx = Fixture::new();
    let ctx = fx.context_dir(&[("conf/app.conf", "v1")]);
    let runner = FakeRunner::new().on(&["configure"], |p| {
        let conf = p.read_to_string("/src/conf/app.conf")?;
        p.write("/src/conf/app.conf", b"rewritten")?;
        p.write("/conf", conf.as_bytes())?;
        Ok(0)
    });
    let op = with_mount(
        exec(&["configure"]),
        "/src",
        ExecMountKind::Context {
            source: ".".into(),
            readonly: false,
        },
    );
    let mut g = BuildGraph::new();
    let base = g.add(fx.image_op(), &[]);
    let last = g.add(Op::Exec(op), &[base]);
    let inputs = Inputs {
        context: Some(&ctx),
        ..Inputs::default()
    };
    let out = solve_with(&fx, &runner, &g, last, &inputs)
        .unwrap()
        .outputs
        .remove(0);
    assert_eq!(added_entries(&fx, &out), ["conf"]);
    // The command wrote to a copy: the user's file is untouched.
    assert_eq!(fs::read_to_string(ctx.join("conf/app.conf")).unwrap(), "v1");
    // Nothing changed: a cache hit, the command does not run again.
    solve_with(&fx, &runner, &g, last, &inputs).unwrap();
    assert_eq!(runner.runs().len(), 1);
    // A mounted file changed: the step runs again and sees it.
    fs::write(ctx.join("conf/app.conf"), "v2").unwrap();
    let out = solve_with(&fx, &runner, &g, last, &inputs)
        .unwrap()
        .outputs
        .remove(0);
    assert_eq!(runner.runs().len(), 2);
    assert_eq!(added_file(&fx, &out, "conf"), "v2");
}

#[test]
fn stage_bind_mount_shows_only_the_mounted_subtree() {
    let fx = Fixture::new();
    let runner = FakeRunner::new()
        .on(&["make"], |p| {
            p.mkdir("/build")?;
            p.write("/build/app.bin", b"ELF")?;
            p.write("/build.log", b"built")?;
            Ok(0)
        })
        .on(&["install"], |p| {
            assert!(!p.exists("/mnt/build.log"), "only /build is mounted");
            assert!(
                !p.exists("/build"),
                "the stage's files are not in the rootfs"
            );
            let bin = p.read("/mnt/app.bin")?;
            p.write("/installed", &bin)?;
            Ok(0)
        });
    let mut g = BuildGraph::new();
    let base = g.add(fx.image_op(), &[]);
    let stage = g.add(Op::Exec(exec(&["make"])), &[base]);
    let mount = |source: &str| ExecMountKind::Input {
        input: 1,
        source: source.into(),
        readonly: true,
    };
    let install = with_mount(exec(&["install"]), "/mnt", mount("/build"));
    let last = g.add(Op::Exec(install), &[base, stage]);
    let out = solve_with(&fx, &runner, &g, last, &Inputs::default())
        .unwrap()
        .outputs
        .remove(0);
    assert_eq!(out.layers.len(), 2, "base and the RUN's layer: {out:?}");
    assert_eq!(added_entries(&fx, &out), ["installed"]);
    assert_eq!(added_file(&fx, &out, "installed"), "ELF");

    // A source the stage does not have fails the step before it runs.
    let missing = with_mount(exec(&["install"]), "/mnt", mount("/nope"));
    let last = g.add(Op::Exec(missing), &[base, stage]);
    let err = solve_with(&fx, &runner, &g, last, &Inputs::default())
        .err()
        .expect("the mount source is missing");
    assert!(
        matches!(&err, BuildError::MountSource { source_path, .. } if source_path == "/nope"),
        "{err:?}"
    );
    assert_eq!(runner.runs().len(), 2, "make and one install");
}

#[test]
fn cache_mount_persists_across_runs_and_stays_out_of_layers() {
    let fx = Fixture::new();
    let count = |p: &rbuild_worker::testing::FakeProcess<'_>| {
        p.append("/var/cache/app/runs", b"x\n")?;
        let n = p.read_to_string("/var/cache/app/runs")?.lines().count();
        p.write("/count", n.to_string().as_bytes())?;
        Ok(0)
    };
    let runner = FakeRunner::new()
        .on(&["count", "1"], count)
        .on(&["count", "2"], count);
    let cached = |argv: &[&str]| {
        with_mount(
            exec(argv),
            "/var/cache/app",
            ExecMountKind::Cache {
                id: "app".into(),
                sharing: CacheSharing::Locked,
                mode: 0o755,
                uid: 0,
                gid: 0,
                readonly: false,
                seed: None,
            },
        )
    };
    let first = run_one(&fx, &runner, cached(&["count", "1"]), &Inputs::default()).unwrap();
    let second = run_one(&fx, &runner, cached(&["count", "2"]), &Inputs::default()).unwrap();
    assert_eq!(added_file(&fx, &first, "count"), "1");
    assert_eq!(added_file(&fx, &second, "count"), "2", "the cache survived");
    // Neither the cache's files nor its mount point (nor /var, copied up
    // to hold it) are in the layers.
    assert_eq!(added_entries(&fx, &first), ["count"]);
    assert_eq!(added_entries(&fx, &second), ["count"]);
    // Both runs got the same directory, outside the run's scratch space.
    let runs = runner.runs();
    let source = |i: usize| match &runs[i].mounts[0].source {
        MountSource::Bind(dir) => dir.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(source(0), source(1));
    assert!(source(0).starts_with(fx.store.dir()));
    assert_eq!(
        fs::read_to_string(source(0).join("runs")).unwrap(),
        "x\nx\n"
    );
}

#[test]
fn tmpfs_mount_starts_empty_and_leaves_nothing() {
    let fx = Fixture::new();
    let runner = FakeRunner::new()
        .on(&["scratch"], |p| {
            assert!(!p.exists("/scratch/t/file"), "a fresh tmpfs each run");
            p.mkdir("/scratch/t")?;
            p.write("/scratch/t/file", b"temp")?;
            p.write("/kept", b"kept")?;
            Ok(0)
        })
        .on(&["only-tmpfs"], |p| {
            assert!(!p.exists("/deep/scratch/file"));
            p.write("/deep/scratch/file", b"temp")?;
            Ok(0)
        });
    let tmpfs = ExecMountKind::Tmpfs { size: None };
    let op = with_mount(exec(&["scratch"]), "/scratch", tmpfs.clone());
    let out = run_one(&fx, &runner, op, &Inputs::default()).unwrap();
    assert_eq!(added_entries(&fx, &out), ["kept"]);
    // A RUN that wrote only to its tmpfs adds a layer with nothing in it
    // (BuildKit gives every RUN a layer), though its mount point (and a
    // parent) had to be made.
    let op = with_mount(exec(&["only-tmpfs"]), "/deep/scratch", tmpfs);
    let out = run_one(&fx, &runner, op, &Inputs::default()).unwrap();
    assert!(added_entries(&fx, &out).is_empty());
    assert!(matches!(
        runner.runs()[1].mounts[0].source,
        MountSource::Tmpfs
    ));
}

#[test]
fn runtime_mount_points_stay_in_the_layer_when_the_base_lacks_them() {
    // BuildKit's runtime makes /dev, /proc and /sys in the rootfs of every
    // RUN and keeps them in the layer (0755, root) when the image has none,
    // so even `RUN true` on such a base adds a layer; mount points of
    // `--mount` targets are still removed.
    let fx = Fixture::with_dirs(&["bin", "tmp", "proc"]);
    let runner = FakeRunner::new().on(&["true"], |_| Ok(0));
    let tmpfs = ExecMountKind::Tmpfs { size: None };
    let op = with_mount(exec(&["true"]), "/scratch", tmpfs);
    let out = run_one(&fx, &runner, op, &Inputs::default()).unwrap();
    assert_eq!(added_entries(&fx, &out), ["dev/", "sys/"]);
    let snap = fx
        .store
        .snapshot_layer(&out.layers.last().unwrap().info)
        .unwrap();
    for d in ["dev", "sys"] {
        let m = fs::metadata(snap.join(d)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{d}");
    }
}

#[test]
fn secret_as_file_and_env_is_seen_and_never_in_the_layer() {
    let fx = Fixture::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let runner = FakeRunner::new().on(&["deploy"], {
        let seen = seen.clone();
        move |p| {
            let mut seen = seen.lock().unwrap();
            seen.push(p.read_to_string("/run/secrets/tok")?);
            seen.push(p.read_to_string("/etc/tok")?);
            seen.push(p.env("TOKEN").unwrap_or_default().to_string());
            p.write("/done", b"ok")?;
            Ok(0)
        }
    });
    let secret = |env: Option<&str>| ExecMountKind::Secret {
        id: "tok".into(),
        env: env.map(String::from),
        required: true,
        mode: 0o400,
        uid: 0,
        gid: 0,
    };
    let mut op = exec(&["deploy"]);
    op = with_mount(op, "", secret(None));
    op = with_mount(op, "/etc/tok", secret(None));
    op = with_mount(op, "", secret(Some("TOKEN")));
    let mut secrets = Secrets::new();
    secrets.insert("tok", b"s3cret-value".to_vec());
    let inputs = Inputs {
        secrets,
        ..Inputs::default()
    };
    let mut g = BuildGraph::new();
    let base = g.add(fx.image_op(), &[]);
    let last = g.add(Op::Exec(op), &[base]);
    let report = solve_with(&fx, &runner, &g, last, &inputs).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["s3cret-value", "s3cret-value", "s3cret-value"]
    );
    let out = &report.outputs[0];
    // /run/secrets was made for the mount and removed; /etc/tok too.
    assert_eq!(added_entries(&fx, out), ["done"]);
    let needle = b"s3cret-value";
    let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!has(&layer_bytes(&fx.store, &out.layers[1].info)));
    for e in fs::read_dir(fx.store.dir().join("cache-v1/keys")).unwrap() {
        assert!(
            !has(&fs::read(e.unwrap().path()).unwrap()),
            "in a cache record"
        );
    }
    for s in &report.steps {
        assert!(
            !format!("{:?}", s.parts).contains("s3cret"),
            "in a key part"
        );
    }
    // The env form adds no file; the file forms are read-only and never
    // a file of the host: the runner holds them in memory the kernel
    // frees when the run ends, even on kill -9.
    let run = &runner.runs()[0];
    assert!(run.env.contains(&"TOKEN=s3cret-value".to_string()));
    let targets: Vec<&Path> = run.mounts.iter().map(|m| m.target.as_path()).collect();
    assert_eq!(
        targets,
        [Path::new("/run/secrets/tok"), Path::new("/etc/tok")]
    );
    for m in &run.mounts {
        let MountSource::File(file) = &m.source else {
            panic!("{m:?}")
        };
        assert!(m.readonly);
        assert_eq!(
            (file.data.as_slice(), file.mode),
            (&b"s3cret-value"[..], 0o400)
        );
        assert!(
            !format!("{m:?}").contains("s3cret"),
            "Debug shows no secret: {m:?}"
        );
    }
}

#[test]
fn missing_secret_fails_only_when_required() {
    let fx = Fixture::new();
    let runner = FakeRunner::new().on(&["npm"], |p| {
        assert!(!p.exists("/root/.npmrc"));
        Ok(0)
    });
    let secret = |required| ExecMountKind::Secret {
        id: "npmrc".into(),
        env: None,
        required,
        mode: 0o400,
        uid: 0,
        gid: 0,
    };
    let op = with_mount(exec(&["npm"]), "/root/.npmrc", secret(true));
    let err = run_one(&fx, &runner, op, &Inputs::default()).unwrap_err();
    assert!(
        matches!(&err, BuildError::MissingSecret { id } if id == "npmrc"),
        "{err:?}"
    );
    assert!(runner.runs().is_empty(), "the command never ran");
    let op = with_mount(exec(&["npm"]), "/root/.npmrc", secret(false));
    run_one(&fx, &runner, op, &Inputs::default()).unwrap();
    assert!(runner.runs()[0].mounts.is_empty());
}

#[test]
fn heredoc_file_mount_is_readable_and_not_in_the_layer() {
    let fx = Fixture::new();
    let runner = FakeRunner::new().on(&["/bin/sh", "/dev/pipes/EOF"], |p| {
        let script = p.read_to_string("/dev/pipes/EOF")?;
        p.write("/out", script.to_uppercase().as_bytes())?;
        Ok(0)
    });
    let op = with_mount(
        exec(&["/bin/sh", "/dev/pipes/EOF"]),
        "/dev/pipes/EOF",
        ExecMountKind::File {
            content: "echo hi\n".into(),
            mode: 0o755,
        },
    );
    let out = run_one(&fx, &runner, op, &Inputs::default()).unwrap();
    assert_eq!(added_entries(&fx, &out), ["out"]);
    assert_eq!(added_file(&fx, &out, "out"), "ECHO HI\n");
    let run = &runner.runs()[0];
    assert!(run.mounts[0].readonly);
    let MountSource::File(file) = &run.mounts[0].source else {
        panic!("{:?}", run.mounts[0])
    };
    assert_eq!(
        (file.data.as_slice(), file.mode),
        (&b"echo hi\n"[..], 0o755)
    );
}

#[test]
fn user_env_cwd_and_network_reach_the_process() {
    let fx = Fixture::new();
    let seen = Arc::new(Mutex::new(None));
    let runner = FakeRunner::new().on(&["whoami"], {
        let seen = seen.clone();
        move |p| {
            let id = p.identity();
            *seen.lock().unwrap() = Some((id.uid, id.gid, id.groups.clone()));
            // Relative to the working directory, which did not exist.
            p.write("out.txt", b"here")?;
            Ok(0)
        }
    });
    let mut op = exec(&["whoami"]);
    op.user = "app".into();
    op.cwd = "/home/app/src".into();
    op.env.push("GREETING=hi there".into());
    op.proxy_env.push("HTTP_PROXY=http://proxy:3128".into());
    op.network = ExecNetwork::Host;
    let out = run_one(&fx, &runner, op, &Inputs::default()).unwrap();
    // BuildKit: the memberships in /etc/group, not the primary gid.
    assert_eq!(*seen.lock().unwrap(), Some((1000, 1000, vec![10])));
    assert_eq!(
        added_entries(&fx, &out),
        [
            "home/",
            "home/app/",
            "home/app/src/",
            "home/app/src/out.txt"
        ]
    );
    let run = &runner.runs()[0];
    assert_eq!(run.args, ["whoami"]);
    assert_eq!(
        run.env,
        [
            "PATH=/bin",
            "GREETING=hi there",
            "HTTP_PROXY=http://proxy:3128"
        ]
    );
    assert_eq!(
        (run.user.as_str(), run.cwd.as_str()),
        ("app", "/home/app/src")
    );
    assert_eq!(run.network, ExecNetwork::Host);
    assert_eq!(run.hostname, "buildkitsandbox");
    assert!(run.rootfs.upper.starts_with(fx.store.tmp_dir()));
    assert_eq!(run.rootfs.lowers.len(), 1, "the base image's snapshot");

    // A user the image does not have fails the step as the sandbox does.
    let mut op = exec(&["whoami"]);
    op.user = "ghost".into();
    let err = run_one(&fx, &runner, op, &Inputs::default()).unwrap_err();
    assert!(err.to_string().contains("cannot run \"whoami\""), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("unable to find user ghost"), "{source}");
}

#[test]
fn failing_command_reports_its_exit_code_and_last_lines() {
    let fx = Fixture::new();
    let runner = FakeRunner::new().on(&["test"], |p| {
        for i in 1..=12 {
            p.stdout(format!("line{i}\n").as_bytes());
        }
        p.write("/partial", b"written before failing")?;
        p.stderr(b"oo");
        p.stderr(b"ps\r\nno newline at the end");
        Ok(3)
    });
    let log = Collect::default();
    let inputs = Inputs {
        log: Some(&log),
        ..Inputs::default()
    };
    let err = run_one(&fx, &runner, exec(&["test"]), &inputs).unwrap_err();
    let BuildError::ExitCode {
        command,
        code,
        last_lines,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((command.as_str(), *code), ("test", 3));
    assert_eq!(last_lines.len(), 10);
    assert_eq!(last_lines[0], "line5");
    assert_eq!(last_lines[7..], ["line12", "oops", "no newline at the end"]);
    assert!(err.to_string().contains("exit code: 3"), "{err}");
    let logged = String::from_utf8(log.0.into_inner().unwrap()).unwrap();
    assert!(
        logged.starts_with("line1\nline2\n"),
        "the sink saw everything"
    );
    // No layer, no record, no scratch dir.
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert_eq!(
        fs::read_dir(fx.store.dir().join("cache-v1/keys"))
            .unwrap()
            .count(),
        1
    );

    // A command the image does not have: docker's 127.
    let err = run_one(&fx, &runner, exec(&["tset"]), &Inputs::default()).unwrap_err();
    let BuildError::Sandbox { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.exit_code(), 127);
}

#[test]
fn a_cached_step_does_not_run_again() {
    let fx = Fixture::new();
    let runner = FakeRunner::new().on(&["gen"], |p| {
        p.write("/generated", b"1")?;
        Ok(0)
    });
    let mut g = BuildGraph::new();
    let base = g.add(fx.image_op(), &[]);
    let last = g.add(Op::Exec(exec(&["gen"])), &[base]);
    let first = solve_with(&fx, &runner, &g, last, &Inputs::default()).unwrap();
    let second = solve_with(&fx, &runner, &g, last, &Inputs::default()).unwrap();
    assert_eq!((first.executed(), second.executed()), (2, 0));
    assert_eq!(second.outputs, first.outputs);
    assert_eq!(runner.runs().len(), 1);
}

#[test]
fn cancel_stops_the_running_step() {
    let fx = Fixture::new();
    let runner = FakeRunner::new().on(&["sleep"], |p| {
        p.write("/started", b"")?;
        while !p.cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(0)
    });
    let cancel = AtomicBool::new(false);
    let inputs = Inputs {
        cancel: Some(&cancel),
        ..Inputs::default()
    };
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            cancel.store(true, Ordering::Relaxed);
        });
        run_one(&fx, &runner, exec(&["sleep"]), &inputs).unwrap_err()
    });
    assert!(matches!(err, BuildError::Cancelled), "{err:?}");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn a_from_step_starts_unpacking_its_base_before_any_step_needs_it() {
    use rbuild_solver::scheduler::Worker as _;
    let fx = Fixture::new();
    let image = fx.store.image_by_manifest(&fx.base).unwrap();
    let snapshot = fx.store.snapshot_path(&image.layers[0].diff_id);
    assert!(!snapshot.exists(), "a just-loaded image has no snapshot");
    let secrets = Secrets::new();
    let cancel = AtomicBool::new(false);
    let worker = BuildWorker::new(WorkerConfig {
        store: &fx.store,
        context: None,
        secrets: &secrets,
        log: &NoLog,
        cancel: &cancel,
    })
    .unwrap();
    let mut g = BuildGraph::new();
    let from = g.add(fx.image_op(), &[]);
    let out = worker.execute(from, &fx.image_op(), &[]).unwrap();
    // Nothing asked for the snapshot, yet it comes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !snapshot.is_dir() {
        assert!(std::time::Instant::now() < deadline, "never unpacked");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A step on it uses that snapshot (and says whether it had to wait).
    let runner = FakeRunner::new().on(&["true"], |_| Ok(0));
    let worker = worker.with_runner(&runner);
    let run = g.add(Op::Exec(exec(&["true"])), &[from]);
    worker
        .execute(run, &Op::Exec(exec(&["true"])), &[&out])
        .unwrap();
    assert_eq!(worker.unpack_wait(run), None, "it was done already");
    drop(worker);
    assert_eq!(fx.leftovers(), Vec::<PathBuf>::new());
}

/// A fake agent that answers every identities request with one key.
fn fake_agent(dir: &Path) -> PathBuf {
    use std::io::{Read, Write};
    let path = dir.join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { continue };
            let mut req = [0u8; 5];
            while c.read_exact(&mut req).is_ok() {
                let _ = c.write_all(&[0, 0, 0, 5, 12, 0, 0, 0, 1]);
            }
        }
    });
    path
}

#[test]
fn ssh_mount_is_a_forwarding_socket_for_the_step_only() {
    let fx = Fixture::new();
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = fake_agent(agent_dir.path());
    let mut more = WorkerInputs::default();
    more.ssh.insert("default", agent.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let runner = FakeRunner::new().on(&["ssh-add", "-l"], move |p| {
        let sock = p.env("SSH_AUTH_SOCK").unwrap_or_default().to_string();
        let mount = p
            .spec()
            .mounts
            .iter()
            .find(|m| m.target == Path::new(&sock))
            .expect("a mount at SSH_AUTH_SOCK");
        let MountSource::Bind(host) = &mount.source else {
            panic!("a bind mount")
        };
        // The step's own socket, not the agent's, and it answers.
        assert_ne!(host, &agent);
        let keys = rbuild_worker::ssh::probe(host).unwrap();
        let mode = fs::metadata(host).unwrap().permissions().mode() & 0o777;
        record
            .lock()
            .unwrap()
            .push((sock, keys, mode, host.clone()));
        Ok(0)
    });
    let ssh = |id: &str, required| ExecMountKind::Ssh {
        id: id.into(),
        required,
        mode: 0o600,
        uid: 0,
        gid: 0,
    };
    let op = with_mount(
        exec(&["ssh-add", "-l"]),
        "/run/buildkit/ssh_agent.0",
        ssh("default", false),
    );
    let inputs = Inputs {
        more: Some(&more),
        ..Inputs::default()
    };
    let out = run_one(&fx, &runner, op, &inputs).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (sock, keys, mode, host) = &seen[0];
    assert_eq!(sock, "/run/buildkit/ssh_agent.0");
    assert_eq!((*keys, *mode), (1, 0o600));
    assert!(!host.exists(), "the step's socket is gone after it");
    // The step's layer (every RUN has one, as in BuildKit) holds nothing
    // of the mount: no socket, no stub of its target.
    let names = added_entries(&fx, &out);
    assert!(
        !names
            .iter()
            .any(|n| n.contains("ssh_agent") || n.contains("buildkit")),
        "nothing of the mount is in a layer: {names:?}"
    );

    // A required id that was not given fails the step, naming it; an
    // optional one still gets SSH_AUTH_SOCK (as BuildKit) and no mount.
    let op = with_mount(exec(&["ssh-add", "-l"]), "/run/s", ssh("deploy", true));
    let e = run_one(&fx, &runner, op, &inputs).unwrap_err();
    assert!(
        matches!(&e, BuildError::MissingSsh { id } if id == "deploy"),
        "{e}"
    );
    let runner = FakeRunner::new().on(&["true"], |p| {
        assert_eq!(p.env("SSH_AUTH_SOCK"), Some("/run/s"));
        assert!(p.spec().mounts.is_empty());
        Ok(0)
    });
    let op = with_mount(exec(&["true"]), "/run/s", ssh("other", false));
    run_one(&fx, &runner, op, &inputs).unwrap();
    assert_eq!(runner.runs().len(), 1);
}

/// `COPY SRC DEST` from the build context.
fn copy_from_context(src: &str, dest: &str) -> Op {
    Op::Copy(rbuild_solver::op::CopyOp {
        display: format!("COPY {src} {dest}"),
        ..rbuild_solver::op::CopyOp::plain(rbuild_solver::op::CopySource::Context, &[src], dest)
    })
}

/// A COPY's layer is a blob only until a step reads it: the build that
/// ends with the COPY (most do) creates none of its files a second time,
/// and a RUN on it later unpacks it then and sees the copied files.
#[test]
fn a_copy_layer_is_unpacked_only_when_a_later_step_reads_it() {
    let fx = Fixture::new();
    let context = fx.context_dir(&[("src/a.txt", "alpha"), ("src/b/c.txt", "gamma")]);
    let inputs = Inputs {
        context: Some(&context),
        ..Inputs::default()
    };
    let runner = FakeRunner::new().on(&["cat"], |p| {
        let a = p.read_to_string("/app/a.txt")?;
        let c = p.read_to_string("/app/b/c.txt")?;
        p.write("/seen", format!("{a} {c}").as_bytes())?;
        Ok(0)
    });

    let mut g = BuildGraph::new();
    let base = g.add(fx.image_op(), &[]);
    let copy = g.add(copy_from_context("src", "/app/"), &[base]);
    let out = solve_with(&fx, &runner, &g, copy, &inputs)
        .unwrap()
        .outputs
        .remove(0);
    let layer = out.layers.last().unwrap().info.clone();
    assert_eq!(
        entries(&fx.store, &layer),
        ["app/", "app/a.txt", "app/b/", "app/b/c.txt"]
    );
    assert!(
        !fx.store.snapshot_path(&layer.diff_id).exists(),
        "nothing read the COPY's layer, yet it was unpacked"
    );
    assert_eq!(fx.leftovers(), Vec::<PathBuf>::new());

    // A RUN on it (the COPY is cached now) unpacks it and sees its files.
    let run = g.add(Op::Exec(exec(&["cat"])), &[copy]);
    let out = solve_with(&fx, &runner, &g, run, &inputs)
        .unwrap()
        .outputs
        .remove(0);
    assert_eq!(runner.runs().len(), 1);
    assert_eq!(runner.runs()[0].rootfs.lowers.len(), 2);
    assert!(fx.store.snapshot_path(&layer.diff_id).is_dir());
    assert_eq!(added_file(&fx, &out, "seen"), "alpha gamma");
}
