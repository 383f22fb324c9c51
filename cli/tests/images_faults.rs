//! Data integrity under damage and bad input: blobs corrupted on disk are
//! detected on every read that uses them (and named by the image users
//! see), hostile or truncated archives are refused at the door with
//! nothing tagged and nothing left behind, orphaned blobs are counted and
//! reclaimed, and a failing registry is retried or named correctly.

mod support;

use std::path::{Path, PathBuf};

use support::cache::{build_fails, try_build};
use support::{Rbuild, Run, assert_contains_all, s};

/// The file of blob `digest` in `rb`'s store.
fn blob_file(rb: &Rbuild, digest: &str) -> PathBuf {
    support::blob_path(&rb.root().join("store-v1"), digest)
}

/// Flips the lowest bit of the first byte of `needle` in `path` (the
/// caller picks a needle whose flipped byte keeps the file valid JSON).
fn flip_bit_in(path: &Path, needle: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()));
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// The first layer's blob digest of `image`.
fn first_layer(rb: &Rbuild, image: &str) -> String {
    let m = rb.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", image]);
    m.trim().to_string()
}

fn assert_check_flags(rb: &Rbuild, needle: &str) -> Run {
    let r = rb.run(&["system", "check"]);
    assert_eq!(
        r.code, 1,
        "system check must fail:\n{}{}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.contains(needle), "{needle:?} in:\n{}", r.stdout);
    r
}

/// Regression (issue 13, item 7): a bit flipped in a base image's config
/// (still valid JSON) was read as is; the build succeeded and carried the
/// damage into a new, self-consistent image `system check` no longer
/// flagged.
#[test]
fn a_flipped_bit_in_a_base_config_fails_the_build_naming_the_image() {
    let rb = Rbuild::new();
    let id = rb.busybox();
    // "os":"linux" → "os":"minux": valid JSON, wrong content.
    flip_bit_in(&blob_file(&rb, &id), "linux");
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY a /a\n"), ("a", "x")],
    );
    let r = build_fails(&rb, &ctx, &["-t", "derived"]);
    let short = &id.trim_start_matches("sha256:")[..12];
    assert_contains_all(&r.stderr, &["busybox:latest", short, "corrupt"]);
    let images = rb.run(&["images"]);
    assert!(!images.stdout.contains("derived"), "{}", images.stdout);
    assert_check_flags(&rb, &format!("blob {id}: content hashes to"));
}

/// Regression (issue 13, item 7): `save` wrote a layer damaged on disk
/// into the archive without noticing.
#[test]
fn save_of_an_image_with_a_damaged_layer_fails_and_writes_nothing() {
    let rb = Rbuild::new();
    let id = rb.import_tree("victim:1", &[("f", &"payload ".repeat(4096))]);
    let layer = first_layer(&rb, "victim:1");
    flip_bit_in(&blob_file(&rb, &layer), "payload");
    let out = rb.path("out.tar");
    let r = rb.fails(&["save", "victim:1", "-o", s(&out)]);
    let short = &id.trim_start_matches("sha256:")[..12];
    assert_contains_all(
        &r.stderr,
        &["cannot save image victim:1", short, "is corrupt", &layer],
    );
    assert!(!out.exists(), "a failed save must not leave an archive");
    // To stdout: the command fails too (what was written is cut short).
    let r = rb.run(&["save", "victim:1"]);
    assert_ne!(r.code, 0);
    assert_check_flags(&rb, &format!("blob {layer}: content hashes to"));
}

/// Regression (issue 13, item 7): the first RUN or COPY on a base image
/// unpacks its layers; a damaged layer must fail that, not be built on.
#[test]
fn a_build_on_a_damaged_base_layer_fails() {
    let rb = Rbuild::new();
    rb.import_tree("base:1", &[("etc/data", &"payload ".repeat(4096))]);
    let layer = first_layer(&rb, "base:1");
    flip_bit_in(&blob_file(&rb, &layer), "payload");
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM base:1\nCOPY a /a\n"), ("a", "x")],
    );
    let out = rb.path("exported");
    let r = try_build(&rb, &ctx, &["-o", &format!("type=local,dest={}", s(&out))]);
    assert_ne!(
        r.code, 0,
        "build on a damaged layer succeeded:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(r.stderr.contains(&layer), "{}", r.stderr);
}

/// One raw ustar entry (names written byte for byte, so `../` goes in).
fn ustar(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8], size: u64) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..136].copy_from_slice(format!("{size:012o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

fn file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    ustar(out, name, b'0', "", data, data.len() as u64);
}

fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0; 1024]);
    out
}

fn sha256(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, data).unwrap();
    let out = support::tool("sha256sum", &[s(&p)]);
    out.split_whitespace().next().unwrap().to_string()
}

/// A docker-archive holding one image `name` with `layer` as its layer.
fn docker_archive(name: &str, layer: &[u8]) -> Vec<u8> {
    let hex = sha256(layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{hex}"]}}}}"#
    );
    let chex = sha256(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{chex}","RepoTags":["{name}"],"Layers":["blobs/sha256/{hex}"]}}]"#
    );
    let mut a = Vec::new();
    file(&mut a, &format!("blobs/sha256/{chex}"), config.as_bytes());
    file(&mut a, &format!("blobs/sha256/{hex}"), layer);
    file(&mut a, "manifest.json", manifest.as_bytes());
    end(a)
}

/// Hostile layers, each with the entry the error must name.
fn hostile_layers() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut climbing = Vec::new();
    file(&mut climbing, "ok", b"fine");
    file(&mut climbing, "../../escape", b"x");
    let mut through_link = Vec::new();
    ustar(&mut through_link, "etc", b'2', "/etc", b"", 0);
    file(&mut through_link, "etc/passwd", b"root::0:0::/:/bin/sh\n");
    let mut huge = Vec::new();
    file(&mut huge, "small", b"ok");
    ustar(&mut huge, "huge", b'0', "", b"", 10 << 30);
    vec![
        ("climbing", end(climbing), "../../escape"),
        ("through-symlink", end(through_link), "etc/passwd"),
        // Cut: no end-of-archive blocks, no body.
        ("truncated", huge, "huge"),
    ]
}

/// What the store holds: blob names, and whether scratch is empty.
fn store_blobs(rb: &Rbuild) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(rb.root().join("store-v1/blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn assert_nothing_left(rb: &Rbuild, before: &[String]) {
    assert_eq!(store_blobs(rb), before, "no blob may be left behind");
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "", "nothing may be tagged");
    let check = rb.run(&["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
}

/// Regression (issue 13, item 8): `import` of a tar with `../` entries,
/// a write through an absolute symlink, or a header promising 10 GiB with
/// no body exited 0 and tagged an image whose every run failed.
#[test]
fn import_refuses_hostile_and_truncated_tars_naming_the_entry() {
    for (what, layer, bad) in hostile_layers() {
        let rb = Rbuild::new();
        rb.ok(&["info"]);
        let before = store_blobs(&rb);
        let path = rb.path(&format!("{what}.tar"));
        std::fs::write(&path, &layer).unwrap();
        let r = rb.fails(&["import", s(&path), &format!("{what}:1")]);
        assert!(
            r.stderr.contains(&format!("{bad:?}")),
            "{what}: the error must name {bad:?}:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("nothing was imported"), "{}", r.stderr);
        assert_nothing_left(&rb, &before);
    }
}

/// Regression (issue 13, item 8): `load` of layers with `../` entries, a
/// write through an absolute symlink, or a header promising 10 GiB and no
/// body exited 0 and tagged the image.
#[test]
fn load_refuses_images_with_hostile_or_truncated_layers() {
    for (what, layer, bad) in hostile_layers() {
        let rb = Rbuild::new();
        rb.ok(&["info"]);
        let before = store_blobs(&rb);
        let path = rb.path(&format!("{what}.tar"));
        std::fs::write(&path, docker_archive(&format!("{what}:1"), &layer)).unwrap();
        let r = rb.fails(&["load", "-i", s(&path)]);
        assert_contains_all(
            &r.stderr,
            &[
                &format!("{bad:?}"),
                &format!("{what}:1"),
                "nothing was loaded",
            ],
        );
        assert_nothing_left(&rb, &before);
    }
}

/// A load cut off in the middle of the archive (a truncated download)
/// says so, and leaves no blob of the part that did arrive.
#[test]
fn a_load_cut_short_says_so_and_leaves_nothing() {
    let rb = Rbuild::new();
    rb.ok(&["info"]);
    let before = store_blobs(&rb);
    let mut layer = Vec::new();
    file(&mut layer, "data", &vec![b'x'; 100_000]);
    let archive = docker_archive("cut:1", &end(layer));
    let path = rb.path("cut.tar");
    std::fs::write(&path, &archive[..archive.len() / 2]).unwrap();
    let r = rb.fails(&["load", "-i", s(&path)]);
    assert!(r.stderr.contains("cut short"), "{}", r.stderr);
    assert_nothing_left(&rb, &before);
}

/// A layer whose content does not match the config's diff_id (an image
/// that could never be unpacked as a snapshot) is refused at load.
#[test]
fn load_refuses_a_layer_that_does_not_match_its_diff_id() {
    let rb = Rbuild::new();
    rb.ok(&["info"]);
    let before = store_blobs(&rb);
    let mut layer = Vec::new();
    file(&mut layer, "f", b"one");
    let layer = end(layer);
    let hex = sha256(&layer);
    let fake = "0".repeat(64);
    // The config names another diff_id than the layer's content.
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{fake}"]}}}}"#
    );
    let chex = sha256(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{chex}","RepoTags":["mismatch:1"],"Layers":["blobs/sha256/{hex}"]}}]"#
    );
    let mut a = Vec::new();
    file(&mut a, &format!("blobs/sha256/{chex}"), config.as_bytes());
    file(&mut a, &format!("blobs/sha256/{hex}"), &layer);
    file(&mut a, "manifest.json", manifest.as_bytes());
    let path = rb.path("mismatch.tar");
    std::fs::write(&path, end(a)).unwrap();
    let r = rb.fails(&["load", "-i", s(&path)]);
    assert!(
        r.stderr.contains("does not match the image config"),
        "{}",
        r.stderr
    );
    assert_nothing_left(&rb, &before);
}

/// Regression (issue 13, item 10): blobs no image or record references
/// (left after a full disk or a kill) were counted by neither `system
/// df` nor `cache du`; now both count them, `system check` reports them
/// and a prune removes them, keeping what images use.
#[test]
fn unreferenced_blobs_are_counted_reported_and_pruned() {
    let rb = Rbuild::new();
    let keep = rb.import_tree("keep:1", &[("f", "x")]);
    let data = vec![7u8; 3 << 20];
    let hex = sha256(&data);
    let orphan = rb.root().join("store-v1/blobs/sha256").join(&hex);
    std::fs::write(&orphan, &data).unwrap();

    let df = rb.ok(&["system", "df"]);
    let row = df
        .lines()
        .find(|l| l.starts_with("Unreferenced"))
        .unwrap_or_else(|| panic!("no Unreferenced row:\n{df}"));
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{df}");
    assert!(row.contains("MB"), "{row}");
    let du = rb.ok(&["cache", "du"]);
    assert!(
        du.contains("unreferenced:") && du.contains("in 1 blob "),
        "{du}"
    );
    let check = rb.run(&["system", "check"]);
    assert_eq!(check.code, 0, "orphans are not damage:\n{}", check.stdout);
    assert!(check.stdout.contains("unreferenced:"), "{}", check.stdout);

    rb.ok(&["image", "prune", "-f"]);
    assert!(!orphan.exists(), "prune must remove the unreferenced blob");
    assert_eq!(rb.ok(&["images", "-q", "--no-trunc"]).trim(), keep);
    let check = rb.ok(&["system", "check"]);
    assert!(!check.contains("unreferenced:"), "{check}");
    let df = rb.ok(&["system", "df"]);
    let row = df.lines().find(|l| l.starts_with("Unreferenced")).unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("0"), "{df}");
}

/// Regression (issue 13, item 8): `pull` stored and tagged images whose
/// layers could never be unpacked. The image is pushed by skopeo (rbuild
/// would refuse to load it); the pull refuses it naming the entry, tags
/// nothing, stores no bad layer, and the store checks clean.
#[test]
fn pull_refuses_images_with_hostile_or_truncated_layers() {
    let reg = support::registry::Registry::start(None);
    for (what, layer, bad) in hostile_layers() {
        let rb = Rbuild::new();
        let archive = rb.path(&format!("{what}.tar"));
        std::fs::write(&archive, docker_archive(&format!("{what}:1"), &layer)).unwrap();
        let name = format!("{}/{what}:1", reg.host());
        let copy = std::process::Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", s(&archive)))
            .arg(format!("docker://{name}"))
            .output()
            .expect("skopeo (scripts/install-deps)");
        if !copy.status.success() {
            // skopeo reads the archive itself; a truncated layer it cannot
            // push is no test of rbuild.
            assert_eq!(
                what,
                "truncated",
                "{}",
                String::from_utf8_lossy(&copy.stderr)
            );
            continue;
        }
        rb.ok(&["info"]);
        let before = store_blobs(&rb);
        let r = support::run_command(rb.private_command(&["pull", &name]), None);
        assert_ne!(r.code, 0, "{what}: pull must fail:\n{}", r.stdout);
        assert_contains_all(&r.stderr, &[&format!("{bad:?}"), "bad layer"]);
        let layer_digest = format!("sha256:{}", sha256(&layer));
        assert!(
            !rb.has_blob(&layer_digest),
            "{what}: the bad layer must not be stored"
        );
        assert_eq!(rb.ok(&["images", "-q"]).trim(), "", "nothing may be tagged");
        let check = rb.run(&["system", "check"]);
        assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
        // Whole, good blobs (the config) stay for a retry; prune takes them.
        rb.ok(&["image", "prune", "-f"]);
        assert_eq!(store_blobs(&rb), before);
    }
}

/// A damaged `index.json` is reported by every command that needs it,
/// flagged by `system check`, and `--repair` gives a working store.
#[test]
fn a_damaged_index_json_is_reported_and_repaired() {
    let rb = Rbuild::new();
    rb.import_tree("a:1", &[("f", "x")]);
    let index = rb.root().join("store-v1/index.json");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&index, bytes).unwrap();
    let r = rb.fails(&["images"]);
    assert!(r.stderr.contains("index.json"), "{}", r.stderr);
    let r = rb.run(&["system", "check"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("index.json"), "{}", r.stdout);
    rb.ok(&["system", "check", "--repair"]);
    rb.ok(&["system", "check"]);
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "");
    // What the lost index named is unreferenced now, and prune takes it.
    rb.ok(&["image", "prune", "-f"]);
    rb.import_tree("b:1", &[("f", "y")]);
    rb.ok(&["system", "check"]);
}

/// A damaged manifest blob (still valid JSON) is named by the image users
/// know, not only by a digest.
#[test]
fn a_damaged_manifest_names_the_image() {
    let rb = Rbuild::new();
    rb.import_tree("named:1", &[("f", "x")]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rb.root().join("store-v1/index.json")).unwrap())
            .unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    flip_bit_in(&blob_file(&rb, &manifest), "schemaVersion");
    let r = rb.fails(&["inspect", "named:1"]);
    assert_contains_all(&r.stderr, &["named:1", "corrupt", "manifest"]);
    assert_check_flags(&rb, &format!("blob {manifest}: content hashes to"));
}

/// Regression (issue 13): `system check` and prunes waited silently while
/// another process held the store; they say what they wait for, who holds
/// it, and how long the wait took.
#[test]
fn check_and_prune_say_which_process_they_wait_for() {
    let rb = Rbuild::new();
    rb.import_tree("a:1", &[("f", "x")]);
    let lock = rb.root().join("store-v1/locks/gc.lock");
    // A stand-in for a running build: holds the store (the gc lock,
    // shared) for a moment.
    let mut holder = std::process::Command::new("flock")
        .args(["--shared", s(&lock), "sleep", "2"])
        .spawn()
        .expect("flock (util-linux)");
    let start = std::time::Instant::now();
    while support::tool("cat", &["/proc/locks"])
        .lines()
        .all(|l| !l.contains(&holder.id().to_string()))
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = rb.run(&["system", "check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_contains_all(
        &r.stderr,
        &[
            "waiting for the store",
            &format!("pid {}", holder.id()),
            "waited ",
        ],
    );
    holder.wait().unwrap();
    let r = rb.run(&["image", "prune", "-f"]);
    assert!(
        !r.stderr.contains("waiting"),
        "no wait when nobody holds it:\n{}",
        r.stderr
    );
}

/// Damaged build cache records (a file that does not parse, or one
/// naming a layer the store lost) are reported by `system check` and
/// removed by `--repair`; the next build runs those steps again and is
/// right.
#[test]
fn damaged_build_cache_records_are_reported_and_repaired() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a /a\nCOPY b /b\n"),
            ("a", "x"),
            ("b", "y"),
        ],
    );
    support::cache::build(&rb, &ctx, &["-t", "app:1"]);
    let keys = rb.root().join("store-v1/cache-v1/keys");
    let mut records: Vec<PathBuf> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    records.sort();
    assert!(!records.is_empty());
    std::fs::write(&records[0], b"{ not json").unwrap();
    let r = rb.run(&["system", "check"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("build cache record"), "{}", r.stdout);
    assert!(r.stdout.contains("does not parse"), "{}", r.stdout);
    let r = rb.run(&["system", "check", "--repair"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!records[0].exists());
    rb.ok(&["system", "check"]);
    let out = rb.path("out");
    support::cache::build(&rb, &ctx, &["-o", &format!("type=local,dest={}", s(&out))]);
    assert_eq!(std::fs::read_to_string(out.join("b")).unwrap(), "y");
}

/// Cache-index records are replaced atomically but not fsynced (two
/// fsyncs per step were on every step's critical path): what a power loss
/// can leave of one is an empty file. Such records are misses, never
/// errors, and the build that runs their steps again writes them whole.
#[test]
fn build_cache_records_emptied_by_a_power_loss_are_misses_and_rewritten() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a /a\nRUN cat /a > /b\n"),
            ("a", "x"),
        ],
    );
    support::cache::build(&rb, &ctx, &["-t", "app:1"]);
    let keys = rb.root().join("store-v1/cache-v1/keys");
    let records: Vec<PathBuf> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(records.len() >= 2, "{records:?}");
    for r in &records {
        std::fs::write(r, b"").unwrap();
    }
    let (report, _) = support::cache::build_report(&rb, &ctx, &["-t", "app:2"], "r.json");
    assert_eq!(
        support::cache::executed(&report),
        ["FROM busybox", "COPY a /a", "RUN cat /a > /b"],
        "{report}"
    );
    assert_eq!(rb.ok(&["run", "--rm", "app:2", "cat", "/b"]), "x");
    for r in &records {
        let bytes = std::fs::read(r).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{} was not rewritten",
            r.display()
        );
    }
    rb.ok(&["system", "check"]);
    let (report, _) = support::cache::build_report(&rb, &ctx, &["-t", "app:3"], "r2.json");
    support::cache::assert_all_cached(&report);
}

/// An image listing one layer twice (old images repeat the empty layer)
/// loads, pushes and pulls: the repeated blob is staged, checked and
/// published once.
#[test]
fn an_image_repeating_a_layer_loads_and_pulls() {
    let reg = support::registry::Registry::start(None);
    let a = Rbuild::new();
    let mut layer = Vec::new();
    file(&mut layer, "f", b"same");
    let layer = end(layer);
    let hex = sha256(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{hex}","sha256:{hex}"]}}}}"#
    );
    let chex = sha256(config.as_bytes());
    let name = format!("{}/twice:1", reg.host());
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{chex}","RepoTags":["{name}"],"Layers":["blobs/sha256/{hex}","blobs/sha256/{hex}"]}}]"#
    );
    let mut t = Vec::new();
    file(&mut t, &format!("blobs/sha256/{chex}"), config.as_bytes());
    file(&mut t, &format!("blobs/sha256/{hex}"), &layer);
    file(&mut t, "manifest.json", manifest.as_bytes());
    let path = a.path("twice.tar");
    std::fs::write(&path, end(t)).unwrap();
    a.ok(&["load", "-i", s(&path)]);
    let push = support::run_command(a.private_command(&["push", &name]), None);
    assert_eq!(push.code, 0, "{}", push.stderr);
    let b = Rbuild::new();
    let pull = support::run_command(b.private_command(&["pull", &name]), None);
    assert_eq!(pull.code, 0, "{}{}", pull.stdout, pull.stderr);
    b.ok(&["system", "check"]);
}

/// A damaged layer under a RUN or `rbuild run` (unpacked into a
/// snapshot) is named as damaged on disk, even when the tar breaks before
/// the digest check at the blob's end could say so.
#[test]
fn a_run_on_a_damaged_layer_says_the_blob_is_damaged() {
    if support::tool("id", &["-u"]).trim() != "0" {
        support::skipped(
            "a_run_on_a_damaged_layer_says_the_blob_is_damaged",
            "rbuild run needs root here",
        );
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let layer = first_layer(&rb, "busybox");
    let path = blob_file(&rb, &layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let r = rb.fails(&["run", "--rm", "busybox", "echo", "hi"]);
    assert!(
        r.stderr.contains(&format!("blob {layer} is corrupt")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("malformed"), "{}", r.stderr);
    assert_check_flags(&rb, &format!("blob {layer}: content hashes to"));
}

/// Regression (issue 13, item 8): layers fetched from a `--cache-from`
/// source entered the store unchecked. A cache whose COPY layer was
/// replaced by a hostile one (`../` entry; digests made consistent, as a
/// malicious cache would) fails the build at that step, and nothing of
/// it enters the store.
#[test]
fn a_hostile_layer_in_an_imported_cache_is_refused() {
    let a = Rbuild::new();
    a.busybox();
    let ctx = a.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY a /a\n"), ("a", "x")],
    );
    let cache = a.path("cache");
    // Uncompressed, so that the test can read and forge the layer tars.
    support::cache::build(
        &a,
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={},compression=uncompressed", s(&cache)),
        ],
    );
    let blobs = cache.join("blobs/sha256");
    let hex_of = |d: &str| d.trim_start_matches("sha256:").to_string();
    let index_text = std::fs::read_to_string(cache.join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_str(&index_text).unwrap();
    let manifest_hex = hex_of(index["manifests"][0]["digest"].as_str().unwrap());
    let manifest_text = std::fs::read_to_string(blobs.join(&manifest_hex)).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    let config_hex = hex_of(manifest["config"]["digest"].as_str().unwrap());
    let config_text = std::fs::read_to_string(blobs.join(&config_hex)).unwrap();
    // The COPY layer: the one holding the file "a".
    let copy_hex = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hex_of(l["digest"].as_str().unwrap()))
        .find(|h| std::fs::read(blobs.join(h)).unwrap().starts_with(b"a\0"))
        .expect("the COPY layer");
    let old = std::fs::read(blobs.join(&copy_hex)).unwrap();
    // Same size, so only digests change.
    let mut hostile = Vec::new();
    file(&mut hostile, "../escape", b"x");
    let mut hostile = end(hostile);
    hostile.resize(old.len(), 0);
    let new_hex = sha256(&hostile);
    std::fs::remove_file(blobs.join(&copy_hex)).unwrap();
    std::fs::write(blobs.join(&new_hex), &hostile).unwrap();
    let config_text = config_text.replace(&copy_hex, &new_hex);
    let new_config_hex = sha256(config_text.as_bytes());
    std::fs::remove_file(blobs.join(&config_hex)).unwrap();
    std::fs::write(blobs.join(&new_config_hex), &config_text).unwrap();
    let manifest_text = manifest_text
        .replace(&copy_hex, &new_hex)
        .replace(&config_hex, &new_config_hex);
    let new_manifest_hex = sha256(manifest_text.as_bytes());
    std::fs::remove_file(blobs.join(&manifest_hex)).unwrap();
    std::fs::write(blobs.join(&new_manifest_hex), &manifest_text).unwrap();
    std::fs::write(
        cache.join("index.json"),
        index_text.replace(&manifest_hex, &new_manifest_hex),
    )
    .unwrap();

    let b = support::cache::machine_b(&a, &["busybox"]);
    let ctx_b = b.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nCOPY a /a\n"), ("a", "x")],
    );
    let r = support::cache::try_build(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=local,src={}", s(&cache)),
        ],
    );
    assert_ne!(r.code, 0, "a hostile cached layer was used:\n{}", r.stderr);
    assert!(r.stderr.contains("../escape"), "{}", r.stderr);
    assert!(
        !b.has_blob(&format!("sha256:{new_hex}")),
        "the layer must not be stored"
    );
    b.ok(&["system", "check"]);
    assert!(b.run(&["inspect", "app:1"]).code != 0);
}

/// What is not a snapshot in `snapshots/` (a file where a layer's
/// snapshot directory goes, a stray name) would stop that snapshot from
/// being made: `system check` flags it and `--repair` removes it.
#[test]
fn damaged_snapshot_entries_are_flagged_and_repaired() {
    let rb = Rbuild::new();
    rb.import_tree("a:1", &[("f", "x")]);
    let layer = first_layer(&rb, "a:1");
    let snaps = rb.root().join("store-v1/snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    let squatter = snaps.join(layer.trim_start_matches("sha256:"));
    std::fs::write(&squatter, b"not a directory").unwrap();
    std::fs::create_dir(snaps.join("stray")).unwrap();
    let r = rb.run(&["system", "check"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_contains_all(
        &r.stdout,
        &["is not a directory", "is not named by a layer diffID"],
    );
    rb.ok(&["system", "check", "--repair"]);
    assert!(!squatter.exists() && !snaps.join("stray").exists());
    rb.ok(&["system", "check"]);
}
