//! A full filesystem: the store's root on a small tmpfs (needs root to
//! mount it; skipped with a reason otherwise). `load`, `pull` and `build`
//! that run out of space fail saying the disk is full (not blaming the
//! archive or the registry), tag nothing, and leave a store that checks
//! clean with no blob of the failed write left behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::registry::Registry;
use support::{Rbuild, Run, run_command, s, skipped};

/// A tmpfs of `mb` MiB mounted on a fresh directory; unmounted on drop.
struct SmallFs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallFs {
    fn mount(test: &str, mb: u32) -> Option<SmallFs> {
        if !is_root() {
            skipped(test, "mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m"),
                "tmpfs",
                s(&path),
            ])
            .status()
            .is_ok_and(|st| st.success());
        if !ok {
            skipped(test, "cannot mount a tmpfs here");
            return None;
        }
        Some(SmallFs { _dir: dir, path })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A store root on `fs` holding the test busybox image.
fn busybox_root(fs: &SmallFs) -> PathBuf {
    let root = fs.path.join("root");
    support::busybox_into(&root);
    root
}

/// `rbuild build -t full:1 CTX` on the store at `root`.
fn build_full_on(root: &Path, ctx: &Path) -> Run {
    run_on(
        root,
        &["build", "--progress", "plain", "-t", "full:1", s(ctx)],
    )
}

/// After a failed `build -t full:1`: nothing tagged, and a store that
/// checks clean; the check's output.
fn assert_untagged_and_clean(root: &Path) -> Run {
    let images = run_on(root, &["images"]);
    assert!(!images.stdout.contains("full"), "{}", images.stdout);
    let check = run_on(root, &["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(": 0 problems"), "{}", check.stdout);
    check
}

fn is_root() -> bool {
    support::tool("id", &["-u"]).trim() == "0"
}

/// rbuild with `--root` on the small filesystem.
fn run_on(root: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(support::bin());
    c.arg("--root").arg(root).args(args);
    c.env("DOCKER_CONFIG", root.join("../docker-config"));
    run_command(c, None)
}

fn blobs(root: &Path) -> usize {
    std::fs::read_dir(root.join("store-v1/blobs/sha256"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn assert_full_disk_failure(root: &Path, r: &Run, blobs_before: usize) {
    assert_ne!(r.code, 0, "must fail on a full disk:\n{}", r.stdout);
    assert!(
        r.stderr.contains("no space left on the device"),
        "the error must say the disk is full:\n{}",
        r.stderr
    );
    assert!(!r.stderr.contains("bad blob"), "{}", r.stderr);
    assert!(!r.stderr.contains("cannot reach"), "{}", r.stderr);
    let images = run_on(root, &["images", "-q"]);
    assert_eq!(images.stdout.trim(), "", "nothing may be tagged");
    let check = run_on(root, &["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(": 0 problems"), "{}", check.stdout);
    if blobs(root) != blobs_before {
        // Only a pull keeps blobs that arrived whole and checked out (a
        // retry skips them); nothing references them, so they are
        // counted as such and a prune takes them.
        assert!(check.stdout.contains("unreferenced:"), "{}", check.stdout);
        let r = run_on(root, &["image", "prune", "-f"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(
        blobs(root),
        blobs_before,
        "no blob of the failed write may stay"
    );
}

/// A tree with `mb` MiB of random bytes, imported into `rb` as `name`.
fn big_image(rb: &Rbuild, name: &str, mb: u32) {
    let dir = rb.path(&format!("tree-{}", name.replace([':', '/'], "_")));
    std::fs::create_dir_all(&dir).unwrap();
    support::tool(
        "sh",
        &[
            "-c",
            &format!("head -c {mb}M /dev/urandom > {}/random.bin", s(&dir)),
        ],
    );
    rb.ok(&["import", s(&dir), name]);
}

/// Regression (issue 13): ENOSPC during `load` read `bad blob … in the
/// archive: … No space left on device`, blaming the archive.
#[test]
fn load_onto_a_full_disk_says_so_and_leaves_a_clean_store() {
    let Some(fs) = SmallFs::mount("load_onto_a_full_disk_says_so_and_leaves_a_clean_store", 8)
    else {
        return;
    };
    let a = Rbuild::new();
    big_image(&a, "big:1", 20);
    let archive = a.path("big.tar");
    a.ok(&["save", "big:1", "-o", s(&archive)]);
    let root = fs.path.join("root");
    run_on(&root, &["info"]);
    let before = blobs(&root);
    let r = run_on(&root, &["load", "-i", s(&archive)]);
    assert_full_disk_failure(&root, &r, before);
}

#[test]
fn pull_onto_a_full_disk_says_so_and_leaves_a_clean_store() {
    let Some(fs) = SmallFs::mount("pull_onto_a_full_disk_says_so_and_leaves_a_clean_store", 8)
    else {
        return;
    };
    let reg = Registry::start(None);
    let a = Rbuild::new();
    let name = format!("{}/big:1", reg.host());
    big_image(&a, &name, 20);
    a.ok(&["push", &name]);
    let root = fs.path.join("root");
    run_on(&root, &["info"]);
    let before = blobs(&root);
    let r = run_on(&root, &["pull", &name]);
    assert_full_disk_failure(&root, &r, before);
}

#[test]
fn build_onto_a_full_disk_fails_clearly_and_tags_nothing() {
    let Some(fs) = SmallFs::mount("build_onto_a_full_disk_fails_clearly_and_tags_nothing", 16)
    else {
        return;
    };
    let root = busybox_root(&fs);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY big /big\n",
    )
    .unwrap();
    support::tool(
        "sh",
        &[
            "-c",
            &format!("head -c 30M /dev/urandom > {}/big", s(ctx.path())),
        ],
    );
    let before = blobs(&root);
    let r = build_full_on(&root, ctx.path());
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.to_lowercase().contains("no space left"),
        "the error must say the disk is full:\n{}",
        r.stderr
    );
    assert_untagged_and_clean(&root);
    let _ = before;
}

/// A RUN step's layer blob is written in the background while later steps
/// run; the disk filling then must still fail the build, say why, tag
/// nothing, and leave no cache record naming the blob that is not there
/// (`system check` would count it as a problem) and no blob behind.
#[test]
fn a_run_layer_whose_blob_fills_the_disk_fails_the_build_and_leaves_a_clean_store() {
    let test = "a_run_layer_whose_blob_fills_the_disk_fails_the_build_and_leaves_a_clean_store";
    let Some(fs) = SmallFs::mount(test, 16) else {
        return;
    };
    let root = busybox_root(&fs);
    let ctx = tempfile::tempdir().unwrap();
    // 7 MiB fit as the step's upper dir; its blob, as much again, does not.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN head -c 7340032 /dev/urandom > /big\nRUN echo after > /after\n",
    )
    .unwrap();
    let before = blobs(&root);
    let r = build_full_on(&root, ctx.path());
    assert_ne!(r.code, 0, "{}", r.stdout);
    // The step itself ran: it is the blob written after it that failed.
    assert!(
        r.stderr.contains("writing the blob of layer")
            && r.stderr.contains("no space left on the device"),
        "the error must say the disk is full:\n{}",
        r.stderr
    );
    let check = assert_untagged_and_clean(&root);
    if blobs(&root) != before {
        // The later RUN's small blob was written; its record, naming the
        // lost layer under it too, was not: nothing references the blob.
        assert!(check.stdout.contains("unreferenced:"), "{}", check.stdout);
        let r = run_on(&root, &["image", "prune", "-f"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(blobs(&root), before, "no blob of the failed build may stay");
    let records = root.join("store-v1/cache-v1/keys");
    let names: Vec<String> = std::fs::read_dir(&records)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // The FROM's record may be there; no RUN's: both name the lost blob.
    for name in &names {
        let text = std::fs::read_to_string(records.join(name)).unwrap();
        assert!(!text.contains("exec"), "{name}: {text}");
    }
}

/// A fully cached build of a large context needs no space: its COPY's
/// per-file digests, which a build spills to the store's temporary
/// directory past a few thousand files, stay in memory when that
/// directory cannot be written, and the build succeeds on a full disk.
#[test]
fn a_cached_build_of_a_large_context_succeeds_on_a_full_disk() {
    let test = "a_cached_build_of_a_large_context_succeeds_on_a_full_disk";
    let Some(fs) = SmallFs::mount(test, 64) else {
        return;
    };
    let root = busybox_root(&fs);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nCOPY . /app\n").unwrap();
    for d in 0..40 {
        std::fs::create_dir(ctx.path().join(format!("d{d:02}"))).unwrap();
    }
    for i in 0..20_000 {
        let path = ctx.path().join(format!("d{:02}/f{i:05}", i % 40));
        std::fs::write(path, i.to_string()).unwrap();
    }
    let r = build_full_on(&root, ctx.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Fill what is left.
    let filler = fs.path.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", s(&filler)), "bs=1M"])
        .output();
    let probe = std::fs::write(fs.path.join("probe"), [0u8; 4096]);
    assert!(probe.is_err(), "the disk must be full");
    let r = build_full_on(&root, ctx.path());
    assert_eq!(r.code, 0, "a cached build needs no space:\n{}", r.stderr);
    assert!(r.stderr.contains("CACHED"), "{}", r.stderr);
}
