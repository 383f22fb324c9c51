//! Crash safety, concurrency and `system check`: SIGKILL in the middle of
//! an import or a save leaves a consistent store; concurrent imports both
//! land; corruption is found and repaired.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Rbuild, tool};

/// A directory holding one file of `mb` megabytes of random bytes.
fn big_tree(rb: &Rbuild, name: &str, mb: u32) -> PathBuf {
    let dir = rb.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    tool(
        "sh",
        &[
            "-c",
            &format!("head -c {mb}M /dev/urandom > {}/random.bin", dir.display()),
        ],
    );
    dir
}

/// The largest file under `dir` whose name satisfies `pick`, recursively.
fn largest(dir: &Path, pick: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                largest(&p, pick)
            } else if pick(&e.file_name().to_string_lossy()) {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0)
}

/// Waits until `cond` holds (or the child exits), then SIGKILLs the child.
/// Returns false when the child finished before the condition held.
fn kill_when(child: &mut Child, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if cond() {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("condition never held");
}

#[test]
fn sigkill_during_import_then_check_is_clean_and_retry_works() {
    let rb = Rbuild::new();
    rb.ok(&["info"]);
    let dir = big_tree(&rb, "big", 300);
    let tmp = rb.root().join("store-v1/tmp");
    let mut child = rb
        .command(&["import", dir.to_str().unwrap(), "big:latest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = kill_when(&mut child, || {
        largest(&tmp, &|n| n.starts_with("blob")) > 50 << 20
    });
    assert!(killed, "import finished before it could be killed");
    // No partial blob is visible under its digest and no image was named.
    let check = rb.run(&["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("0 problems"), "{}", check.stdout);
    assert_eq!(
        largest(&tmp, &|_| true),
        0,
        "the dead import's scratch was swept"
    );
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "");

    let id = rb.ok(&["import", dir.to_str().unwrap(), "big:latest"]);
    assert_eq!(rb.ok(&["images", "-q", "--no-trunc"]).trim(), id.trim());
    rb.ok(&["system", "check"]);
}

#[test]
fn sigkill_during_save_leaves_no_archive_and_a_clean_store() {
    let rb = Rbuild::new();
    let dir = big_tree(&rb, "big", 300);
    rb.ok(&["import", dir.to_str().unwrap(), "big"]);
    let out = rb.path("out.tar");
    let mut child = rb
        .command(&["save", "big", "-o", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parent = rb.dir.path().to_path_buf();
    let killed = kill_when(&mut child, || {
        largest(&parent, &|n| n.starts_with(".out.tar.rbuild-tmp")) > 30 << 20
    });
    assert!(killed, "save finished before it could be killed");
    assert!(
        !out.exists(),
        "a killed save must not leave a truncated archive"
    );
    let check = rb.run(&["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    rb.ok(&["save", "big", "-o", out.to_str().unwrap()]);
    let listing = tool("tar", &["-tf", out.to_str().unwrap()]);
    assert!(listing.contains("manifest.json"));
}

#[test]
fn two_concurrent_imports_into_one_root_both_succeed() {
    let rb = Rbuild::new();
    let a = big_tree(&rb, "a", 40);
    let b = big_tree(&rb, "b", 40);
    let spawn = |dir: &Path, name: &str| {
        rb.command(&["import", dir.to_str().unwrap(), name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ca = spawn(&a, "first");
    let cb = spawn(&b, "second");
    let ra = support::to_run(ca.wait_with_output().unwrap());
    let rb_ = support::to_run(cb.wait_with_output().unwrap());
    assert_eq!(ra.code, 0, "{}", ra.stderr);
    assert_eq!(rb_.code, 0, "{}", rb_.stderr);
    let listing = rb.ok(&["images"]);
    assert!(
        listing.contains("first") && listing.contains("second"),
        "{listing}"
    );
    rb.ok(&["system", "check"]);
}

#[test]
fn system_check_finds_a_flipped_byte_and_repair_fixes_the_store() {
    let rb = Rbuild::new();
    rb.busybox();
    let keep = rb.import_tree("keep", &[("f", "unharmed")]);
    let layer = rb.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "busybox"]);
    let layer = layer.trim();
    let blob = rb
        .root()
        .join("store-v1/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();

    let r = rb.run(&["system", "check"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("blob {layer}: content hashes to")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("image docker.io/library/busybox:latest"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("--repair"), "{}", r.stderr);

    let r = rb.run(&["system", "check", "--repair"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("repaired:"), "{}", r.stdout);
    rb.ok(&["system", "check"]);
    assert_eq!(rb.ok(&["images", "-q", "--no-trunc"]).trim(), keep);
    // The image can be made again.
    rb.busybox();
    rb.ok(&["system", "check"]);
}

#[test]
fn prune_and_rmi_leave_an_image_in_use_by_another_process() {
    let rb = Rbuild::new();
    let id = rb.busybox();
    // A save writing into a pipe nobody reads blocks while holding its
    // lease on the image.
    let mut saver = rb
        .command(&["save", "busybox"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leases = rb.root().join("store-v1/leases");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&leases).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "save never took its lease");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));

    let r = rb.fails(&["rmi", "busybox"]);
    assert!(
        r.stderr.contains("being used by a running process"),
        "{}",
        r.stderr
    );
    let out = rb.ok(&["image", "prune", "-a", "-f"]);
    assert!(!out.contains("deleted:"), "{out}");
    assert_eq!(rb.ok(&["images", "-q", "--no-trunc"]).trim(), id);

    // Once the user is gone, the same commands work.
    let mut pipe = saver.stdout.take().unwrap();
    std::io::copy(&mut pipe, &mut std::io::sink()).unwrap();
    assert!(saver.wait().unwrap().success());
    let out = rb.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
}

#[test]
fn a_damaged_config_does_not_hide_the_other_images() {
    let rb = Rbuild::new();
    let good = rb.import_tree("good", &[("f", "g")]);
    let bad = rb.import_tree("bad", &[("f", "b")]);
    std::fs::remove_file(
        rb.root()
            .join("store-v1/blobs/sha256")
            .join(bad.trim_start_matches("sha256:")),
    )
    .unwrap();
    let r = rb.run(&["images", "-q", "--no-trunc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), good);
    assert!(
        r.stderr.contains("warning: skipping bad:latest"),
        "{}",
        r.stderr
    );
    assert_eq!(rb.ok(&["inspect", "-f", "{{.Id}}", "good"]).trim(), good);
    let check = rb.run(&["system", "check"]);
    assert_eq!(check.code, 1);
    assert!(check.stdout.contains("is missing"), "{}", check.stdout);
    rb.ok(&["system", "check", "--repair"]);
    let r = rb.run(&["images", "-q", "--no-trunc"]);
    assert_eq!((r.stdout.trim(), r.stderr.as_str()), (good.as_str(), ""));
}
