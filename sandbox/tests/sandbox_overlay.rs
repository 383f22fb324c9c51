//! The sandbox library API on overlay rootfs: where writes land, whiteouts,
//! layer order, the copy-based snapshotter, errors, and concurrent runs
//! from a multi-threaded caller.
//!
//! `harness = false`: `sandbox::run` re-executes the current binary as the
//! init process, so this binary's `main` must dispatch `INIT_ARG` first,
//! exactly as rbuild's does.

use rbuild_sandbox::harness;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rbuild_sandbox as sandbox;
use rbuild_sandbox::{
    Limits, Mount, MountKind, Network, Process, Rootfs, SandboxError, SandboxSpec, SandboxStdio,
    SnapshotterKind,
};

fn main() {
    let tests: &[(&str, fn())] = &[
        (
            "writes_land_in_upper_and_lowers_are_untouched",
            writes_land_in_upper_and_lowers_are_untouched,
        ),
        (
            "delete_creates_a_whiteout_in_upper",
            delete_creates_a_whiteout_in_upper,
        ),
        ("top_lower_wins", top_lower_wins),
        (
            "copy_snapshotter_gives_the_same_upper",
            copy_snapshotter_gives_the_same_upper,
        ),
        (
            "errors_carry_docker_exit_codes",
            errors_carry_docker_exit_codes,
        ),
        ("concurrent_runs_from_threads", concurrent_runs_from_threads),
        (
            "many_lowers_still_use_overlayfs",
            many_lowers_still_use_overlayfs,
        ),
        (
            "ephemeral_rootfs_is_writable_and_leaves_nothing",
            ephemeral_rootfs_is_writable_and_leaves_nothing,
        ),
        (
            "ephemeral_rootfs_runs_are_isolated_from_each_other",
            ephemeral_rootfs_runs_are_isolated_from_each_other,
        ),
        (
            "ephemeral_rootfs_with_many_lowers_and_copy_fallback",
            ephemeral_rootfs_with_many_lowers_and_copy_fallback,
        ),
        (
            "killed_init_leaves_nothing_behind",
            killed_init_leaves_nothing_behind,
        ),
        (
            "an_image_with_no_layers_runs_on_both_rootfs_kinds",
            an_image_with_no_layers_runs_on_both_rootfs_kinds,
        ),
    ];
    harness::run(tests, None);
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    top: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    for d in ["bin", "etc", "tmp", "data/sub"] {
        fs::create_dir_all(base.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
    for a in ["sh", "echo", "cat", "rm", "ls", "id", "true", "sleep"] {
        symlink("/bin/busybox", base.join("bin").join(a)).unwrap();
    }
    fs::write(
        base.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    fs::write(base.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(base.join("hello"), "bottom\n").unwrap();
    fs::write(base.join("data/sub/f"), "f\n").unwrap();
    fs::set_permissions(base.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    let top = dir.path().join("top");
    fs::create_dir_all(&top).unwrap();
    fs::write(top.join("hello"), "top\n").unwrap();
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    fs::create_dir(&upper).unwrap();
    fs::create_dir(&work).unwrap();
    let out = dir.path().join("out");
    Fixture {
        base,
        top,
        upper,
        work,
        out,
        _dir: dir,
    }
}

fn spec(f: &Fixture, script: &str) -> SandboxSpec {
    SandboxSpec {
        rootfs: Rootfs::Overlay {
            lowers: vec![f.top.clone(), f.base.clone()],
            upper: f.upper.clone(),
            work: f.work.clone(),
        },
        process: Process {
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: String::new(),
            user: String::new(),
            tty: false,
            ..Default::default()
        },
        mounts: vec![],
        network: Network::None,
        hostname: String::new(),
        readonly_rootfs: false,
        limits: Limits::default(),
        cgroup: None,
    }
}

/// Runs `script` and returns (exit code, stdout).
fn run(f: &Fixture, script: &str) -> (i32, String) {
    let out = fs::File::create(&f.out).unwrap();
    let code = sandbox::run(
        &spec(f, script),
        SandboxStdio {
            stdout: Some(out.into()),
            ..Default::default()
        },
    )
    .unwrap();
    (code, fs::read_to_string(&f.out).unwrap())
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

fn writes_land_in_upper_and_lowers_are_untouched() {
    let f = fixture();
    let (code, _) = run(
        &f,
        "echo new > /etc/new && echo 'app:x:1000:1000::/:/bin/sh' >> /etc/passwd",
    );
    assert_eq!(code, 0);
    assert_eq!(
        fs::read_to_string(f.upper.join("etc/new")).unwrap(),
        "new\n"
    );
    assert!(
        fs::read_to_string(f.upper.join("etc/passwd"))
            .unwrap()
            .contains("app:x:1000")
    );
    assert!(
        !fs::read_to_string(f.base.join("etc/passwd"))
            .unwrap()
            .contains("app")
    );
    assert!(!f.base.join("etc/new").exists() && !f.top.join("etc").exists());
    // Generated files and mount points are not part of the changes.
    assert!(!f.upper.join("etc/hosts").exists());
    assert!(!f.upper.join("proc").exists() && !f.upper.join("dev").exists());
    assert_eq!(sandbox::snapshotter_kind(), SnapshotterKind::Overlay);
    // The work dir is left empty (overlay's mode-000 work/work removed).
    assert!(fs::read_dir(&f.work).unwrap().next().is_none());
}

fn delete_creates_a_whiteout_in_upper() {
    let f = fixture();
    let (code, _) = run(&f, "rm /etc/group && rm -r /data/sub");
    assert_eq!(code, 0);
    assert!(is_whiteout(&f.upper.join("etc/group")));
    assert!(is_whiteout(&f.upper.join("data/sub")));
    assert!(f.base.join("etc/group").exists() && f.base.join("data/sub/f").exists());
}

fn top_lower_wins() {
    let f = fixture();
    let (_, out) = run(&f, "cat /hello");
    assert_eq!(out, "top\n");
}

fn copy_snapshotter_gives_the_same_upper() {
    let f = fixture();
    // SAFETY: this test binary runs its tests on the main thread only; the
    // variable is read by the init process started below.
    unsafe { std::env::set_var("RBUILD_SNAPSHOTTER", "copy") };
    let res = std::panic::catch_unwind(|| {
        let (code, out) = run(
            &f,
            "cat /hello; echo new > /etc/new; rm /etc/group; rm -r /data/sub",
        );
        assert_eq!((code, out.as_str()), (0, "top\n"));
    });
    // SAFETY: as above.
    unsafe { std::env::remove_var("RBUILD_SNAPSHOTTER") };
    res.unwrap();
    assert_eq!(sandbox::snapshotter_kind(), SnapshotterKind::Copy);
    assert_eq!(
        fs::read_to_string(f.upper.join("etc/new")).unwrap(),
        "new\n"
    );
    assert!(is_whiteout(&f.upper.join("etc/group")));
    assert!(is_whiteout(&f.upper.join("data/sub")));
    assert!(
        !f.upper.join("hello").exists(),
        "unchanged files must not be in upper"
    );
    assert!(!f.upper.join("etc/hosts").exists());
    assert!(!f.work.join("merged").exists());
}

fn errors_carry_docker_exit_codes() {
    let f = fixture();
    let mut s = spec(&f, "true");
    s.process.user = "ghost".into();
    let e = sandbox::run(&s, SandboxStdio::default()).unwrap_err();
    assert!(matches!(e, SandboxError::UserNotFound { .. }), "{e}");
    assert_eq!(e.exit_code(), 125);
    let mut s = spec(&f, "true");
    s.process.args = vec!["/no/such".into()];
    let e = sandbox::run(&s, SandboxStdio::default()).unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
    let mut s = spec(&f, "true");
    s.rootfs = Rootfs::Overlay {
        lowers: vec![],
        upper: f.upper.clone(),
        work: f.work.clone(),
    };
    // An image with no layers is valid, and has no shell: docker's 127.
    let e = sandbox::run(&s, SandboxStdio::default()).unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
}

fn concurrent_runs_from_threads() {
    let fixtures: Vec<Fixture> = (0..4).map(|_| fixture()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = fixtures
            .iter()
            .enumerate()
            .map(|(i, f)| scope.spawn(move || run(f, &format!("echo {i} > /tmp/n; cat /tmp/n"))))
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), (0, format!("{i}\n")));
        }
    });
}

fn many_lowers_still_use_overlayfs() {
    // 50 lowers with 64-character names: too long for mount(2)'s one-page
    // options as absolute paths, so they are passed relative to their
    // common parent; overlayfs must still be used (not the copy fallback).
    let f = fixture();
    let snapshots = f._dir.path().join("snapshots");
    let mut lowers = Vec::new();
    for i in 0..49 {
        let dir = snapshots.join(format!("{i:064}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("layer{i}")), format!("{i}\n")).unwrap();
        lowers.push(dir);
    }
    lowers.reverse(); // top first: layer 48 on top
    let base = snapshots.join(format!("{:064}", 999));
    fs::rename(&f.base, &base).unwrap();
    lowers.push(base);
    let mut s = spec(&f, "cat /layer0 /layer48; ls / | grep -c '^layer'");
    s.rootfs = Rootfs::Overlay {
        lowers,
        upper: f.upper.clone(),
        work: f.work.clone(),
    };
    let out = fs::File::create(&f.out).unwrap();
    let code = sandbox::run(
        &s,
        SandboxStdio {
            stdout: Some(out.into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(fs::read_to_string(&f.out).unwrap(), "0\n48\n49\n");
    assert_eq!(sandbox::snapshotter_kind(), SnapshotterKind::Overlay);
}

/// `FROM scratch` with nothing in it: no lower dirs at all (the sandbox
/// supplies an empty one). The shell comes from a read-only bind mount.
fn an_image_with_no_layers_runs_on_both_rootfs_kinds() {
    let f = fixture();
    let bin = Mount {
        kind: MountKind::Bind,
        source: f.base.join("bin"),
        target: PathBuf::from("/bin"),
        readonly: true,
    };
    let script = "echo hi > /x && cat /x";
    let mut overlay = spec(&f, script);
    overlay.rootfs = Rootfs::Overlay {
        lowers: vec![],
        upper: f.upper.clone(),
        work: f.work.clone(),
    };
    overlay.mounts = vec![bin.clone()];
    assert_eq!(run_spec(&overlay, &f.out), (0, "hi\n".to_string()));
    assert_eq!(fs::read_to_string(f.upper.join("x")).unwrap(), "hi\n");
    let mut ephemeral = ephemeral_spec(vec![], script);
    ephemeral.mounts = vec![bin];
    assert_eq!(run_spec(&ephemeral, &f.out), (0, "hi\n".to_string()));
}

fn ephemeral_spec(lowers: Vec<PathBuf>, script: &str) -> SandboxSpec {
    SandboxSpec {
        rootfs: Rootfs::Ephemeral { lowers },
        process: Process {
            args: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        },
        mounts: vec![],
        network: Network::None,
        hostname: String::new(),
        readonly_rootfs: false,
        limits: Limits::default(),
        cgroup: None,
    }
}

fn run_spec(s: &SandboxSpec, out: &Path) -> (i32, String) {
    let file = fs::File::create(out).unwrap();
    let code = sandbox::run(
        s,
        SandboxStdio {
            stdout: Some(file.into()),
            ..Default::default()
        },
    )
    .unwrap();
    (code, fs::read_to_string(out).unwrap())
}

/// Host mounts whose source or target mention `needle`.
fn host_mounts_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Per-run state dirs in the runtime dir (`sandbox-XXXXXX`: only made
/// when the shared tmpfs mount point is unusable). Other entries belong to
/// other users of the runtime dir (the build worker, other tests).
fn runtime_entries() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(sandbox::runtime_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sandbox-"))
        .collect();
    names.sort();
    names
}

fn ephemeral_rootfs_is_writable_and_leaves_nothing() {
    let f = fixture();
    let before = runtime_entries();
    let s = ephemeral_spec(
        vec![f.top.clone(), f.base.clone()],
        "echo new > /etc/new && rm /etc/group && cat /etc/new /hello && \
         (test -e /etc/group || echo gone) && cat /etc/hostname",
    );
    let (code, out) = run_spec(&s, &f.out);
    assert_eq!((code, out.as_str()), (0, "new\ntop\ngone\nsandbox\n"));
    assert_eq!(sandbox::snapshotter_kind(), SnapshotterKind::Overlay);
    // The lowers are untouched and no upper/work dir appeared beside them.
    assert!(f.base.join("etc/group").exists() && !f.base.join("etc/new").exists());
    assert!(!f.top.join("etc").exists());
    // Nothing on the host: no new runtime entries, the shared tmpfs
    // mount point is empty, and no mount of ours is visible.
    let after = runtime_entries();
    assert!(after.iter().all(|e| before.contains(e)), "{after:?}");
    let mnt = sandbox::runtime_dir().join("scratch-mnt");
    assert!(fs::read_dir(&mnt).unwrap().next().is_none());
    assert!(host_mounts_mentioning(&mnt).is_empty());
    assert!(host_mounts_mentioning(f._dir.path()).is_empty());
    // A second run starts from the image again.
    let (code, out) = run_spec(&ephemeral_spec(vec![f.base.clone()], "ls /etc"), &f.out);
    assert_eq!(code, 0);
    assert!(!out.contains("new") && out.contains("group"), "{out}");
}

fn ephemeral_rootfs_runs_are_isolated_from_each_other() {
    let f = fixture();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = ephemeral_spec(
                    vec![f.base.clone()],
                    &format!("echo {i} > /n; sleep 0.2; cat /n; ls /tmp | wc -l"),
                );
                let out = f._dir.path().join(format!("out{i}"));
                scope.spawn(move || run_spec(&s, &out))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), (0, format!("{i}\n0\n")));
        }
    });
}

fn ephemeral_rootfs_with_many_lowers_and_copy_fallback() {
    let f = fixture();
    let snapshots = f._dir.path().join("snapshots");
    let mut lowers = Vec::new();
    for i in 0..49 {
        let dir = snapshots.join(format!("{i:064}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("layer{i}")), format!("{i}\n")).unwrap();
        lowers.push(dir);
    }
    lowers.reverse();
    let base = snapshots.join(format!("{:064}", 999));
    fs::rename(&f.base, &base).unwrap();
    lowers.push(base);
    let script = "cat /layer0 /layer48; echo x > /layer0; cat /layer0";
    let s = ephemeral_spec(lowers.clone(), script);
    assert_eq!(run_spec(&s, &f.out), (0, "0\n48\nx\n".to_string()));
    assert_eq!(sandbox::snapshotter_kind(), SnapshotterKind::Overlay);
    // SAFETY: this test binary runs its tests on the main thread only; the
    // variable is read by the init process started below.
    unsafe { std::env::set_var("RBUILD_SNAPSHOTTER", "copy") };
    let res = std::panic::catch_unwind(|| run_spec(&s, &f.out));
    // SAFETY: as above.
    unsafe { std::env::remove_var("RBUILD_SNAPSHOTTER") };
    assert_eq!(res.unwrap(), (0, "0\n48\nx\n".to_string()));
    assert_eq!(sandbox::snapshotter_kind(), SnapshotterKind::Copy);
    assert_eq!(
        fs::read_to_string(lowers[48].join("layer0")).unwrap(),
        "0\n"
    );
    // An empty image: the root is mounted, the command is not found.
    let e = sandbox::run(&ephemeral_spec(vec![], "true"), SandboxStdio::default()).unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
}

/// Regression for leaks: SIGKILL the init process mid-run; its tmpfs, the
/// rootfs mount and the container go with it.
fn killed_init_leaves_nothing_behind() {
    let f = fixture();
    let before = runtime_entries();
    let s = ephemeral_spec(vec![f.base.clone()], "echo up; exec sleep 37.25");
    let out = fs::File::create(&f.out).unwrap();
    let sb = sandbox::spawn(
        &s,
        SandboxStdio {
            stdout: Some(out.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs::read_to_string(&f.out).unwrap() != "up\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "container did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    sb.signal(libc::SIGKILL).unwrap();
    assert!(sb.wait().is_err(), "a killed init reports an error");
    // pid 1 dies with its parent (PDEATHSIG); give the kernel a moment.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = runtime_entries();
    assert!(after.iter().all(|e| before.contains(e)), "{after:?}");
    assert!(host_mounts_mentioning(f._dir.path()).is_empty());
    let sleeping = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read_to_string(e.unwrap().path().join("cmdline")).ok())
        .any(|c| c.ends_with("sleep\x0037.25\x00"));
    assert!(!sleeping, "the container's process survived");
}
