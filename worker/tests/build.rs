//! The build worker end to end on a real sandbox (root): hand-built graphs
//! solved against a temporary store with a busybox base image made here
//! from the host's static busybox.
//!
//! `harness = false`: RUN steps re-execute this binary as the sandbox init
//! process, so `main` dispatches `INIT_ARG` first, as rbuild's does.

mod common;

use common::{entries, layer_bytes};
use rbuild_sandbox::harness;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use rbuild_context::copy::{EntryKind, SourceFs, SourceMeta};
use rbuild_solver::Digest;
use rbuild_solver::explain::{Change, MissReason, StepFingerprint, explain};
use rbuild_solver::graph::{BuildGraph, StepId};
use rbuild_solver::op::{CacheSharing, ExecMount, ExecMountKind, ExecNetwork, ExecOp, ImageOp, Op};
use rbuild_solver::plan::{ImageResolver, Platform};
use rbuild_solver::scheduler::{NoEvents, SolveError, SolveOptions, SolveReport, solve};
use rbuild_store::layer::{PackOptions, pack_dir};
use rbuild_store::{LayerInfo, Store};
use rbuild_worker::{
    BuildContext, BuildError, BuildWorker, LineageStore, LogSink, NoLog, PruneOptions, Secrets,
    StepOutput, StoreCacheIndex, StoreResolver, Stream, WorkerConfig,
};

fn main() {
    let tests: &[(&str, fn())] = &[
        ("run_layers_and_whiteouts", run_layers_and_whiteouts),
        ("exit_code_carries_last_lines", exit_code_carries_last_lines),
        (
            "second_solve_after_reopen_executes_nothing",
            second_solve_after_reopen_executes_nothing,
        ),
        (
            "cache_mount_persists_outside_layers",
            cache_mount_persists_outside_layers,
        ),
        (
            "secret_is_readable_and_leaves_no_trace",
            secret_is_readable_and_leaves_no_trace,
        ),
        (
            "missing_required_secret_names_it",
            missing_required_secret_names_it,
        ),
        ("network_none_sees_only_lo", network_none_sees_only_lo),
        (
            "mount_placeholders_stay_out_of_layers",
            mount_placeholders_stay_out_of_layers,
        ),
        (
            "gc_keeps_cached_layers_until_prune",
            gc_keeps_cached_layers_until_prune,
        ),
        (
            "explain_a_miss_between_two_builds",
            explain_a_miss_between_two_builds,
        ),
        ("resolver_finds_base_by_name", resolver_finds_base_by_name),
        (
            "cancel_kills_the_running_step",
            cancel_kills_the_running_step,
        ),
        (
            "context_mount_is_read_only_and_not_in_the_layer",
            context_mount_is_read_only_and_not_in_the_layer,
        ),
    ];
    let skip = (!nix::unistd::geteuid().is_root() || !Path::new("/bin/busybox").exists())
        .then_some("needs root and /bin/busybox (apt-get install busybox-static)");
    harness::run(tests, skip);
}

/// A store with `busybox:latest` (one layer: static busybox + applet
/// links, /etc/passwd, /etc/group, /tmp).
struct Fixture {
    dir: tempfile::TempDir,
    base: Digest,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let rootfs = dir.path().join("rootfs");
        // With the mount points every real image has, a RUN layer holds only what the command wrote.
        for d in ["bin", "etc", "tmp", "root", "dev", "proc", "sys"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let out = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .unwrap();
        for applet in String::from_utf8(out.stdout).unwrap().lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        )
        .unwrap();
        fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
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
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [stats.diff_id.to_string()]},
        });
        let tag = rbuild_oci::reference::ImageRef::parse("busybox").unwrap();
        let image = store
            .write_image_raw(&serde_json::to_vec(&config).unwrap(), &[layer], &[tag])
            .unwrap();
        Fixture {
            base: image.manifest_digest,
            dir,
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("root")).unwrap()
    }

    fn image_op(&self) -> Op {
        Op::Image(ImageOp {
            reference: "docker.io/library/busybox:latest".into(),
            digest: self.base,
            platform: "linux/amd64".into(),
        })
    }
}

fn exec(script: &str) -> ExecOp {
    ExecOp {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: String::new(),
        network: ExecNetwork::Host,
        mounts: Vec::new(),
        proxy_env: Vec::new(),
        display: format!("RUN {script}"),
    }
}

/// A chain FROM busybox → each op in turn; returns the graph and the
/// last step.
fn chain(fx: &Fixture, ops: Vec<ExecOp>) -> (BuildGraph<Op>, StepId) {
    let mut g = BuildGraph::new();
    let mut last = g.add(fx.image_op(), &[]);
    for op in ops {
        last = g.add(Op::Exec(op), &[last]);
    }
    (g, last)
}

#[derive(Default)]
struct Collect(Mutex<Vec<u8>>);

impl LogSink for Collect {
    fn output(&self, _: StepId, _: Stream, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

impl Collect {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[allow(clippy::result_large_err)] // the scheduler's error type, as returned
fn build_with(
    store: &Store,
    g: &BuildGraph<Op>,
    target: StepId,
    secrets: &Secrets,
    log: &dyn LogSink,
) -> Result<SolveReport<StepOutput>, SolveError<BuildError>> {
    let cancel = AtomicBool::new(false);
    let worker = BuildWorker::new(WorkerConfig {
        store,
        context: None,
        secrets,
        log,
        cancel: &cancel,
    })
    .unwrap();
    let solved = solve(
        g,
        &[target],
        &worker,
        &StoreCacheIndex::new(store),
        &NoEvents,
        &SolveOptions::default(),
    );
    // As the builder does once the steps are done: the RUN layers' blobs
    // written in the background, and their cache records with them.
    store.finish_deferred_blobs().unwrap();
    solved
}

fn build(store: &Store, g: &BuildGraph<Op>, target: StepId) -> SolveReport<StepOutput> {
    build_with(store, g, target, &Secrets::new(), &NoLog).unwrap()
}

fn run_layers_and_whiteouts() {
    let fx = Fixture::new();
    let store = fx.store();
    let (g, last) = chain(
        &fx,
        vec![
            exec("echo hi > /hello"),
            exec("cat /hello > /copy && rm /etc/group"),
            exec("test ! -e /etc/group && test \"$(cat /copy)\" = hi && ls /"),
        ],
    );
    let report = build(&store, &g, last);
    assert_eq!(report.executed(), 4);
    let out = &report.outputs[0];
    // base + three layers; the last RUN changed nothing, so its layer has
    // no entries (BuildKit gives every RUN a layer).
    assert_eq!(out.layers.len(), 4, "{out:?}");
    assert_eq!(out.added, 1);
    assert!(entries(&store, &out.layers[3].info).is_empty());
    assert_eq!(entries(&store, &out.layers[1].info), ["hello"]);
    let second = entries(&store, &out.layers[2].info);
    assert!(second.contains(&"copy".to_string()), "{second:?}");
    assert!(second.contains(&"etc/.wh.group".to_string()), "{second:?}");
    assert!(out.layers[1].created.as_deref().unwrap().ends_with('Z'));
    assert_eq!(out.layers[1].info.digest, out.layers[1].info.diff_id);
    // The RUN steps' upper dirs wait in scratch space as their snapshots
    // until published; then no scratch dirs are left behind.
    store.publish_snapshots().unwrap();
    for layer in &out.layers[1..] {
        let snapshot = store.snapshot_path(&layer.info.diff_id);
        assert!(
            snapshot.starts_with(store.dir().join("snapshots")),
            "{snapshot:?}"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(store.tmp_dir()).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn exit_code_carries_last_lines() {
    let fx = Fixture::new();
    let store = fx.store();
    let (g, last) = chain(
        &fx,
        vec![exec(
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; sleep 0.2; echo oops >&2; exit 3",
        )],
    );
    let log = Collect::default();
    let err = build_with(&store, &g, last, &Secrets::new(), &log)
        .err()
        .expect("the step fails");
    let BuildError::ExitCode {
        code, last_lines, ..
    } = &err.source
    else {
        panic!("{:?}", err.source)
    };
    assert_eq!(*code, 3);
    assert_eq!(last_lines.len(), 10);
    // stdout and stderr are separate pipes, so only output apart in time
    // (the sleep) keeps its order across the two.
    assert_eq!(last_lines.last().unwrap(), "oops", "{last_lines:?}");
    assert!(last_lines.contains(&"line12".to_string()), "{last_lines:?}");
    assert!(!last_lines.contains(&"line1".to_string()));
    assert!(err.source.to_string().contains("exit code: 3"));
    assert!(log.text().contains("line1\n"), "the sink saw everything");
}

fn second_solve_after_reopen_executes_nothing() {
    let fx = Fixture::new();
    let (g, last) = chain(&fx, vec![exec("echo a > /a"), exec("echo b > /b")]);
    let first = build(&fx.store(), &g, last);
    assert_eq!(first.executed(), 3);
    let second = build(&fx.store(), &g, last);
    assert_eq!(second.executed(), 0);
    assert_eq!(second.outputs, first.outputs);
}

fn cache_mount_persists_outside_layers() {
    let fx = Fixture::new();
    let cached = |script: &str| {
        let mut op = exec(script);
        op.mounts.push(ExecMount {
            target: "/var/cache/app".into(),
            kind: ExecMountKind::Cache {
                id: "app".into(),
                sharing: CacheSharing::Locked,
                mode: 0o755,
                uid: 0,
                gid: 0,
                readonly: false,
                seed: None,
            },
        });
        op
    };
    let (g, last) = chain(
        &fx,
        vec![cached(
            "echo x >> /var/cache/app/f; wc -l < /var/cache/app/f > /count1",
        )],
    );
    let out = build(&fx.store(), &g, last).outputs.remove(0);
    let store = fx.store();
    assert_eq!(entries(&store, &out.layers[1].info), ["count1"]);
    let (g, last) = chain(
        &fx,
        vec![cached(
            "echo y >> /var/cache/app/f; wc -l < /var/cache/app/f > /count2",
        )],
    );
    let out = build(&store, &g, last).outputs.remove(0);
    let snap = store.snapshot_layer(&out.layers[1].info).unwrap();
    assert_eq!(fs::read_to_string(snap.join("count2")).unwrap().trim(), "2");
    assert_eq!(entries(&store, &out.layers[1].info), ["count2"]);
}

fn secret_is_readable_and_leaves_no_trace() {
    let fx = Fixture::new();
    let store = fx.store();
    let mut op = exec(
        "test \"$(wc -c < /run/secrets/tok)\" = 12 && test \"$(cat /run/secrets/tok)\" = \"$TOKEN\" && echo ok > /done",
    );
    for (target, env) in [("", None), ("", Some("TOKEN".to_string()))] {
        op.mounts.push(ExecMount {
            target: target.into(),
            kind: ExecMountKind::Secret {
                id: "tok".into(),
                env,
                required: true,
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
        });
    }
    let (g, last) = chain(&fx, vec![op]);
    let mut secrets = Secrets::new();
    secrets.insert("tok", b"s3cret-value".to_vec());
    assert!(!format!("{secrets:?}").contains("s3cret"));
    let report = build_with(&store, &g, last, &secrets, &NoLog).unwrap();
    let out = &report.outputs[0];
    let layer = &out.layers[1].info;
    assert_eq!(entries(&store, layer), ["done"]);
    let needle = b"s3cret-value";
    let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!has(&layer_bytes(&store, layer)));
    let keys = store.dir().join("cache-v1/keys");
    for e in fs::read_dir(&keys).unwrap() {
        assert!(!has(&fs::read(e.unwrap().path()).unwrap()));
    }
    for s in &report.steps {
        assert!(!format!("{:?}", s.parts).contains("s3cret"));
    }
}

fn missing_required_secret_names_it() {
    let fx = Fixture::new();
    let store = fx.store();
    let mut op = exec("true");
    op.mounts.push(ExecMount {
        target: "/run/secrets/npm".into(),
        kind: ExecMountKind::Secret {
            id: "npm".into(),
            env: None,
            required: true,
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    });
    let (g, last) = chain(&fx, vec![op.clone()]);
    let err = build_with(&store, &g, last, &Secrets::new(), &NoLog)
        .err()
        .unwrap();
    assert!(matches!(&err.source, BuildError::MissingSecret { id } if id == "npm"));
    assert!(err.source.to_string().contains("\"npm\""));
    // Not required: the step runs without it.
    let ExecMountKind::Secret { required, .. } = &mut op.mounts[0].kind else {
        unreachable!()
    };
    *required = false;
    let (g, last) = chain(&fx, vec![op]);
    build(&store, &g, last);
}

fn network_none_sees_only_lo() {
    let fx = Fixture::new();
    let store = fx.store();
    let mut op = exec("ls /sys/class/net");
    op.network = ExecNetwork::None;
    let (g, last) = chain(&fx, vec![op]);
    let log = Collect::default();
    build_with(&store, &g, last, &Secrets::new(), &log).unwrap();
    assert_eq!(log.text().split_whitespace().collect::<Vec<_>>(), ["lo"]);
}

fn mount_placeholders_stay_out_of_layers() {
    let fx = Fixture::new();
    let store = fx.store();
    let mut op = exec("echo x > /kept && test -d /new/deep/tmp && test -f /etc/extra");
    op.mounts.push(ExecMount {
        target: "/new/deep/tmp".into(),
        kind: ExecMountKind::Tmpfs { size: None },
    });
    op.mounts.push(ExecMount {
        target: "/etc/extra".into(),
        kind: ExecMountKind::File {
            content: "heredoc".into(),
            mode: 0o644,
        },
    });
    let (g, last) = chain(&fx, vec![op]);
    let out = build(&store, &g, last).outputs.remove(0);
    assert_eq!(entries(&store, &out.layers[1].info), ["kept"]);
    // A RUN that only had mounts adds a layer with nothing in it: no
    // mount point is left behind.
    let mut op = exec("test -d /only/mount");
    op.mounts.push(ExecMount {
        target: "/only/mount".into(),
        kind: ExecMountKind::Tmpfs { size: None },
    });
    let (g, last) = chain(&fx, vec![op]);
    let out = build(&store, &g, last).outputs.remove(0);
    assert_eq!((out.layers.len(), out.added), (2, 1));
    assert!(entries(&store, &out.layers[1].info).is_empty());
}

fn gc_keeps_cached_layers_until_prune() {
    let fx = Fixture::new();
    let store = fx.store();
    let (g, last) = chain(&fx, vec![exec("echo data > /f")]);
    let out = build(&store, &g, last).outputs.remove(0);
    let built = out.layers[1].info.clone();
    let stats = store.gc(&rbuild_worker::CacheIndexRoots).unwrap();
    assert!(
        store.has_blob(&built.digest),
        "gc removed a cached layer: {stats:?}"
    );
    assert!(store.snapshot_path(&built.diff_id).is_dir());
    let index = StoreCacheIndex::new(&store);
    let du = index.usage().unwrap();
    assert_eq!(du.records.len(), 2);
    assert_eq!(du.total, built.size + out.layers[0].info.size);
    assert_eq!(du.reclaimable, built.size, "the base layer is an image's");
    assert!(
        du.records
            .iter()
            .any(|r| r.description == "exec: -c echo data > /f"
                || r.description.contains("echo data"))
    );
    // Default prune: only records no image shares.
    let report = index.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.records_removed, 1);
    assert!(!store.has_blob(&built.digest));
    assert!(
        store.has_blob(&out.layers[0].info.digest),
        "the image keeps its layer"
    );
    assert_eq!(build(&store, &g, last).executed(), 1, "the RUN runs again");
    let report = index
        .prune(&PruneOptions {
            all: true,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.records_removed, 2);
    assert!(report.gc.blobs_removed >= 1);
    assert!(!store.has_blob(&built.digest));
    assert_eq!(index.usage().unwrap().records.len(), 0);
}

fn explain_a_miss_between_two_builds() {
    let fx = Fixture::new();
    let store = fx.store();
    let lineages = LineageStore::new(&store);
    let identity = "/ctx:/ctx/Dockerfile";
    let fingerprint = |env: &str| {
        let mut op = exec("echo $V > /v");
        op.env.push(env.to_string());
        let (g, last) = chain(&fx, vec![op]);
        let report = build(&store, &g, last);
        let rec = report.steps.iter().find(|s| s.id == last).unwrap();
        StepFingerprint::new(&rec.key, &rec.parts, Default::default())
    };
    let before = fingerprint("V=1");
    lineages.save(identity, "0/2", &before).unwrap();
    let after = fingerprint("V=2");
    let saved = lineages.load(identity, "0/2").unwrap().unwrap();
    assert_eq!(saved, before);
    assert!(lineages.load("other", "0/2").unwrap().is_none());
    let MissReason::Changed { changes } = explain(&saved, &after) else {
        panic!()
    };
    assert!(
        matches!(&changes[..], [Change::Env { changed, .. }] if changed == &["V".to_string()]),
        "{changes:?}"
    );
}

fn resolver_finds_base_by_name() {
    let fx = Fixture::new();
    let store = fx.store();
    let platform = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let r = StoreResolver::new(&store)
        .resolve("busybox", &platform)
        .unwrap();
    assert_eq!(r.digest, fx.base);
    assert_eq!(r.reference, "docker.io/library/busybox:latest");
    assert_eq!(
        r.config.config.cmd.as_deref(),
        Some(&["sh".to_string()][..])
    );
    let err = StoreResolver::new(&store)
        .resolve("alpine:3", &platform)
        .unwrap_err();
    assert!(err.to_string().contains("rbuild import"), "{err}");
}

fn cancel_kills_the_running_step() {
    let fx = Fixture::new();
    let store = fx.store();
    let (g, last) = chain(&fx, vec![exec("sleep 30")]);
    let cancel = AtomicBool::new(false);
    let secrets = Secrets::new();
    let worker = BuildWorker::new(WorkerConfig {
        store: &store,
        context: None,
        secrets: &secrets,
        log: &NoLog,
        cancel: &cancel,
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        solve(
            &g,
            &[last],
            &worker,
            &StoreCacheIndex::new(&store),
            &NoEvents,
            &SolveOptions::default(),
        )
        .err()
        .expect("cancelled")
    });
    assert!(
        matches!(err.source, BuildError::Cancelled),
        "{:?}",
        err.source
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let leftovers: Vec<_> = fs::read_dir(store.tmp_dir()).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A context over a directory that leaves out `secret.txt` (as a
/// `.dockerignore` would).
struct DirContext(std::path::PathBuf);

impl DirContext {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.0.join(rel)
    }
}

impl SourceFs for DirContext {
    fn lstat(&self, path: &str) -> std::io::Result<Option<SourceMeta>> {
        use std::os::unix::fs::MetadataExt;
        if path.ends_with("secret.txt") {
            return Ok(None);
        }
        let m = fs::symlink_metadata(self.path(path))?;
        let kind = if m.is_dir() {
            EntryKind::Dir
        } else if m.is_file() {
            EntryKind::File
        } else {
            EntryKind::Symlink
        };
        Ok(Some(SourceMeta {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            mtime: m.mtime(),
            rdev: 0,
            host: None,
        }))
    }
    fn read_dir(&self, path: &str) -> std::io::Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(self.path(path))?
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "secret.txt")
            .collect();
        v.sort();
        Ok(v)
    }
    fn open(&self, path: &str) -> std::io::Result<fs::File> {
        fs::File::open(self.path(path))
    }
    fn read_link(&self, path: &str) -> std::io::Result<std::path::PathBuf> {
        fs::read_link(self.path(path))
    }
    fn file_digest(&self, path: &str) -> std::io::Result<Digest> {
        Ok(Digest::of(&fs::read(self.path(path))?))
    }
}

fn context_mount_is_read_only_and_not_in_the_layer() {
    let fx = Fixture::new();
    let store = fx.store();
    let ctx_dir = fx.dir.path().join("context");
    fs::create_dir_all(ctx_dir.join("src")).unwrap();
    fs::write(ctx_dir.join("src/main.c"), "int main;").unwrap();
    fs::write(ctx_dir.join("secret.txt"), "ignored").unwrap();
    let ctx = DirContext(ctx_dir.clone());
    let mut op = exec(
        "cat /ctx/src/main.c > /out && test ! -e /ctx/secret.txt && ! touch /ctx/src/main.c 2>/dev/null",
    );
    op.mounts.push(ExecMount {
        target: "/ctx".into(),
        kind: ExecMountKind::Context {
            source: ".".into(),
            readonly: true,
        },
    });
    let (g, last) = chain(&fx, vec![op]);
    let cancel = AtomicBool::new(false);
    let secrets = Secrets::new();
    let worker = BuildWorker::new(WorkerConfig {
        store: &store,
        context: Some(BuildContext {
            fs: &ctx,
            root: &ctx_dir,
        }),
        secrets: &secrets,
        log: &NoLog,
        cancel: &cancel,
    })
    .unwrap();
    let out = solve(
        &g,
        &[last],
        &worker,
        &StoreCacheIndex::new(&store),
        &NoEvents,
        &SolveOptions::default(),
    )
    .unwrap()
    .outputs
    .remove(0);
    assert_eq!(entries(&store, &out.layers[1].info), ["out"]);
    assert_eq!(
        fs::read_to_string(ctx_dir.join("src/main.c")).unwrap(),
        "int main;"
    );
}
