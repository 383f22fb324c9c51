//! Reproducible images: with `SOURCE_DATE_EPOCH` and
//! `rewrite-timestamp=true`, the same context and base built in two fresh
//! stores on "two machines" (another umask, uid, hostname, time zone, CPU
//! count and clock) give byte-identical image archives and the same
//! manifest digest; without them, what differs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Rbuild, Run, s, skipped, tool};

const EPOCH: &str = "1700000000";
const EPOCH_TIME: &str = "2023-11-14T22:13:20Z";

const DOCKERFILE: &str = "FROM busybox
COPY . /src/
RUN mkdir -p /out && echo hi > /out/a && touch /out/b && cat /src/f.txt > /out/c
CMD cat /out/a
";

fn is_root() -> bool {
    // The effective uid, from /proc (no libc call in this test binary).
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// The build context, its files' times set to `mtime` (seconds).
fn context(dir: &Path, mtime: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("f.txt"), "data\n").unwrap();
    std::fs::write(ctx.join("d/y"), "y\n").unwrap();
    for p in ["Dockerfile", "f.txt", "d/y", "d", "."] {
        tool(
            "touch",
            &["-h", "-d", &format!("@{mtime}"), s(&ctx.join(p))],
        );
    }
    ctx
}

/// Busybox, made once and loaded into each store so both start from the
/// same base image (make-busybox itself stamps the time it ran).
fn base_archive(dir: &Path) -> PathBuf {
    let maker = Rbuild::new();
    maker.busybox();
    let tar = dir.join("base.tar");
    maker.ok(&["save", "-o", s(&tar), "busybox"]);
    tar
}

/// `containerimage.digest` of a metadata file.
fn manifest_digest(meta: &Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    v["containerimage.digest"].as_str().unwrap().to_string()
}

fn build_args<'a>(out: &'a str, meta: &'a str, ctx: &'a str, rewrite: bool) -> Vec<String> {
    let output = if rewrite {
        format!("type=oci,dest={out},rewrite-timestamp=true")
    } else {
        format!("type=oci,dest={out}")
    };
    ["build", "-q", "-o", &output, "--metadata-file", meta, ctx]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn check(r: Run, what: &str) {
    assert_eq!(r.code, 0, "{what}:\n{}\n{}", r.stdout, r.stderr);
}

#[test]
fn two_fresh_stores_in_different_environments_give_the_same_digest() {
    const TEST: &str = "two_fresh_stores_in_different_environments_give_the_same_digest";
    let work = tempfile::tempdir().unwrap();
    let base = base_archive(work.path());

    // Machine A: as it comes, context checked out "now".
    let a = Rbuild::new();
    a.ok(&["load", "-i", s(&base)]);
    let ctx_a = context(&a.path("a"), &format!("{}", now() - 100));
    let (oci_a, meta_a) = (a.path("a.tar"), a.path("a.json"));
    let mut c = a.command(
        &build_args(s(&oci_a), s(&meta_a), s(&ctx_a), true)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    c.env("SOURCE_DATE_EPOCH", EPOCH).env("TZ", "UTC");
    check(support::run_command(c, None), "build on A");

    // Machine B: another checkout time, umask 077, Tokyo time, one CPU,
    // another hostname (a UTS namespace, as root), the epoch as a build
    // arg.
    let b = Rbuild::new();
    b.ok(&["load", "-i", s(&base)]);
    let ctx_b = context(&b.path("b"), &format!("{}", now() + 3600));
    let (oci_b, meta_b) = (b.path("b.tar"), b.path("b.json"));
    let mut inner = vec![
        support::bin().to_string(),
        "--root".into(),
        s(&b.root()).into(),
    ];
    inner.extend(build_args(s(&oci_b), s(&meta_b), s(&ctx_b), true));
    inner.insert(4, format!("--build-arg=SOURCE_DATE_EPOCH={EPOCH}"));
    let script = format!(
        "umask 077; {} exec taskset -c 0 \"$@\"",
        if is_root() {
            "hostname machine-b &&"
        } else {
            ""
        }
    );
    let mut c = if is_root() {
        let mut c = Command::new("unshare");
        c.args(["-u", "sh", "-c", &script, "sh"]);
        c
    } else {
        skipped(
            TEST,
            "another hostname needs root (unshare -u); the rest still runs",
        );
        let mut c = Command::new("sh");
        c.args(["-c", &script, "sh"]);
        c
    };
    c.args(&inner)
        .env("TZ", "Asia/Tokyo")
        .env_remove("SOURCE_DATE_EPOCH");
    check(support::run_command(c, None), "build on B");

    assert_eq!(manifest_digest(&meta_a), manifest_digest(&meta_b));
    assert_eq!(
        std::fs::read(&oci_a).unwrap(),
        std::fs::read(&oci_b).unwrap(),
        "the OCI archives (gzip layers) are byte for byte the same"
    );

    // Machine C: another uid (nobody, rootless: a user namespace maps it
    // to root), umask 027.
    if !is_root() {
        skipped(
            TEST,
            "a rootless build as another user needs root to switch to nobody",
        );
        return;
    }
    let c_dir = tempfile::tempdir().unwrap();
    let home = c_dir.path();
    let bin = home.join("rbuild");
    std::fs::copy(support::bin(), &bin).unwrap();
    std::fs::copy(&base, home.join("base.tar")).unwrap();
    let ctx_c = context(home, &format!("{}", now() - 7200));
    tool("chown", &["-R", "65534:65534", s(home)]);
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg("umask 027; exec \"$@\"")
        .arg("sh")
        .arg(&bin)
        .arg("--root")
        .arg(home.join("root"))
        .args(args)
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .current_dir(home);
        support::run_command(c, None)
    };
    let r = as_nobody(&["load", "-i", s(&home.join("base.tar"))]);
    check(r, "load as nobody");
    let (oci_c, meta_c) = (home.join("c.tar"), home.join("c.json"));
    let r = as_nobody(
        &build_args(s(&oci_c), s(&meta_c), s(&ctx_c), true)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    if r.code != 0 && r.stderr.contains("user namespace") {
        skipped(
            TEST,
            &format!("rootless builds do not work here: {}", r.stderr.trim()),
        );
        return;
    }
    check(r, "rootless build as nobody");
    assert_eq!(manifest_digest(&meta_a), manifest_digest(&meta_c));
    assert_eq!(
        std::fs::read(&oci_a).unwrap(),
        std::fs::read(&oci_c).unwrap()
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The image config of the image a metadata file names, from its store.
fn config(rb: &Rbuild, meta: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    let digest = v["containerimage.config.digest"].as_str().unwrap();
    serde_json::from_slice(
        &std::fs::read(support::blob_path(&rb.root().join("store-v1"), digest)).unwrap(),
    )
    .unwrap()
}

#[test]
fn without_the_epoch_times_come_from_the_build_and_digests_differ() {
    let work = tempfile::tempdir().unwrap();
    let base = base_archive(work.path());
    let ctx = context(work.path(), &format!("{}", now() - 100));
    let build = |rb: &Rbuild, name: &str, epoch: Option<&str>, rewrite: bool| -> PathBuf {
        rb.ok(&["load", "-i", s(&base)]);
        let (out, meta) = (
            rb.path(&format!("{name}.tar")),
            rb.path(&format!("{name}.json")),
        );
        let args = build_args(s(&out), s(&meta), s(&ctx), rewrite);
        let mut c = rb.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        c.env_remove("SOURCE_DATE_EPOCH");
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        check(support::run_command(c, None), name);
        meta
    };
    // No epoch: the config's times are the build's, and RUN's files carry
    // the time they were written, so two builds a second apart differ.
    let (a, b) = (Rbuild::new(), Rbuild::new());
    let meta_a = build(&a, "a", None, false);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let meta_b = build(&b, "b", None, false);
    assert_ne!(manifest_digest(&meta_a), manifest_digest(&meta_b));
    let (ca, cb) = (config(&a, &meta_a), config(&b, &meta_b));
    assert_ne!(ca["created"], cb["created"]);
    assert_ne!(ca["created"], EPOCH_TIME);
    assert_ne!(
        ca["rootfs"]["diff_ids"][2], cb["rootfs"]["diff_ids"][2],
        "the RUN layer holds its files' write times"
    );
    assert_eq!(
        ca["rootfs"]["diff_ids"][1], cb["rootfs"]["diff_ids"][1],
        "COPY keeps the context's times, the same here"
    );
    // The epoch alone fixes the config's times but not the files' times:
    // still different.
    let (c, d) = (Rbuild::new(), Rbuild::new());
    let meta_c = build(&c, "c", Some(EPOCH), false);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let meta_d = build(&d, "d", Some(EPOCH), false);
    let (cc, cd) = (config(&c, &meta_c), config(&d, &meta_d));
    assert_eq!(cc["created"], EPOCH_TIME);
    assert_eq!(cc["created"], cd["created"]);
    for h in cc["history"].as_array().unwrap().iter().skip(1) {
        assert_eq!(h["created"], EPOCH_TIME, "{h}");
    }
    assert_ne!(manifest_digest(&meta_c), manifest_digest(&meta_d));
    // With rewrite-timestamp the RUN layer's times are clamped: the same.
    let (e, f) = (Rbuild::new(), Rbuild::new());
    let meta_e = build(&e, "e", Some(EPOCH), true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let meta_f = build(&f, "f", Some(EPOCH), true);
    assert_eq!(manifest_digest(&meta_e), manifest_digest(&meta_f));
    // Only the build's own layers are rewritten: the base image's stays.
    let ce = config(&e, &meta_e);
    assert_eq!(ce["rootfs"]["diff_ids"][0], cc["rootfs"]["diff_ids"][0]);
}

#[test]
fn run_steps_and_containers_get_umask_0022_whatever_the_callers() {
    let rb = Rbuild::new();
    rb.busybox();
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "umask 077; exec \"$@\"",
        "sh",
        support::bin(),
        "--root",
    ])
    .arg(rb.root())
    .args(["run", "--rm", "busybox", "sh", "-c", "umask"]);
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "0022\n");
}
