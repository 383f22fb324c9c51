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
