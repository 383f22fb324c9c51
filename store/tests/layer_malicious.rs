//! Hostile archives: each is refused, names the bad entry, writes nothing
//! outside the destination, and leaves a fresh destination empty.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rbuild_store::layer::{self, LayerError};

/// One raw ustar entry; `name`/`link` are written byte for byte, so `..`
/// and absolute paths go in unchanged (the tar crate's setters refuse them).
fn entry(out: &mut Vec<u8>, name: &str, ty: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(ty);
    h.set_mode(if ty == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    let bytes = h.as_mut_bytes();
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    bytes[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

fn device(out: &mut Vec<u8>, name: &str, major: u32, minor: u32) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_size(0);
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    let bytes = h.as_mut_bytes();
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0; 1024]);
    out
}

struct Case {
    _tmp: tempfile::TempDir,
    /// Where the archive is unpacked: `<tmp>/a/b/dest`.
    dest: std::path::PathBuf,
    /// A directory next to dest that must stay untouched.
    outside: std::path::PathBuf,
}

fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/dest");
    fs::create_dir_all(&dest).unwrap();
    let outside = tmp.path().join("a/outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep"), b"keep").unwrap();
    Case {
        _tmp: tmp,
        dest,
        outside,
    }
}

/// Everything under the temp root except `dest`, as a sorted listing.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Unpacks `archive` and checks the refusal: the error names `bad`, the
/// destination is empty again, and nothing appeared outside it.
fn assert_refused(archive: &[u8], bad: &str) -> LayerError {
    let c = case();
    let root = c.dest.parent().unwrap().parent().unwrap().to_path_buf();
    let before = listing(&root);
    let err = layer::unpack(&mut &archive[..], &c.dest).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(bad), "error {msg:?} does not name {bad:?}");
    assert_eq!(
        fs::read_dir(&c.dest).unwrap().count(),
        0,
        "fresh destination not left empty after {msg}"
    );
    assert_eq!(listing(&root), before, "something changed outside dest");
    assert_eq!(fs::read(c.outside.join("keep")).unwrap(), b"keep");
    err
}

#[test]
fn dot_dot_traversal_is_refused() {
    let mut a = Vec::new();
    entry(&mut a, "ok", tar::EntryType::Regular, "", b"fine");
    entry(
        &mut a,
        "../outside/x",
        tar::EntryType::Regular,
        "",
        b"pwned",
    );
    let err = assert_refused(&finish(a), "../outside/x");
    assert!(matches!(err, LayerError::UnsafeEntry { .. }));
}

#[test]
fn dot_dot_in_the_middle_climbing_out_is_refused() {
    let mut a = Vec::new();
    entry(&mut a, "d/../../x", tar::EntryType::Regular, "", b"pwned");
    assert_refused(&finish(a), "d/../../x");
}

#[test]
fn write_through_absolute_symlink_is_refused() {
    let c = case();
    let mut a = Vec::new();
    let target = c.outside.to_str().unwrap().to_string();
    entry(&mut a, "evil", tar::EntryType::Symlink, &target, b"");
    entry(&mut a, "evil/x", tar::EntryType::Regular, "", b"pwned");
    assert_refused(&finish(a), "evil/x");
    assert!(!c.outside.join("x").exists());
}

#[test]
fn absolute_symlink_alone_is_kept_as_is() {
    // An absolute target means the image's own root; it is stored, never
    // followed.
    let c = case();
    let mut a = Vec::new();
    entry(&mut a, "sh", tar::EntryType::Symlink, "/bin/busybox", b"");
    layer::unpack(&mut finish(a).as_slice(), &c.dest).unwrap();
    assert_eq!(
        fs::read_link(c.dest.join("sh")).unwrap(),
        Path::new("/bin/busybox")
    );
}

#[test]
fn relative_symlink_climbing_out_is_refused() {
    let mut a = Vec::new();
    entry(
        &mut a,
        "d/up",
        tar::EntryType::Symlink,
        "../../../outside",
        b"",
    );
    assert_refused(&finish(a), "d/up");
}

#[test]
fn hardlink_to_host_file_is_refused() {
    let mut a = Vec::new();
    entry(&mut a, "passwd", tar::EntryType::Link, "/etc/passwd", b"");
    let err = assert_refused(&finish(a), "passwd");
    assert!(err.to_string().contains("not in the destination"), "{err}");
}

#[test]
fn hardlink_climbing_out_is_refused() {
    let mut a = Vec::new();
    entry(
        &mut a,
        "keep",
        tar::EntryType::Link,
        "../../outside/keep",
        b"",
    );
    assert_refused(&finish(a), "keep");
}

#[test]
fn hardlink_through_symlink_is_refused() {
    let c = case();
    let mut a = Vec::new();
    let target = c.outside.to_str().unwrap().to_string();
    entry(&mut a, "out", tar::EntryType::Symlink, &target, b"");
    entry(&mut a, "stolen", tar::EntryType::Link, "out/keep", b"");
    assert_refused(&finish(a), "stolen");
}

#[test]
fn symlink_loop_then_write_is_refused() {
    let mut a = Vec::new();
    entry(&mut a, "loop1", tar::EntryType::Symlink, "loop2", b"");
    entry(&mut a, "loop2", tar::EntryType::Symlink, "loop1", b"");
    entry(&mut a, "loop1/x", tar::EntryType::Regular, "", b"data");
    assert_refused(&finish(a), "loop1/x");
}

#[test]
fn path_through_earlier_relative_symlink_is_refused() {
    // "link -> ." stays inside, but an entry under it still must not be
    // written through it.
    let mut a = Vec::new();
    entry(&mut a, "d/", tar::EntryType::Directory, "", b"");
    entry(&mut a, "d/link", tar::EntryType::Symlink, "..", b"");
    entry(&mut a, "d/link/x", tar::EntryType::Regular, "", b"data");
    assert_refused(&finish(a), "d/link/x");
}

#[test]
fn whiteout_through_symlink_is_refused() {
    let c = case();
    let mut a = Vec::new();
    let target = c.outside.to_str().unwrap().to_string();
    entry(&mut a, "out", tar::EntryType::Symlink, &target, b"");
    entry(&mut a, "out/.wh.keep", tar::EntryType::Regular, "", b"");
    assert_refused(&finish(a), "out/.wh.keep");
    assert!(c.outside.join("keep").exists());
}

#[test]
fn dot_dot_whiteout_is_refused() {
    let mut a = Vec::new();
    entry(&mut a, "d/.wh...", tar::EntryType::Regular, "", b"");
    assert_refused(&finish(a), "d/.wh...");
}

#[test]
fn device_node_is_created_inside_only() {
    // Docker's choice, followed here: device entries are created with
    // mknod when running as root (outside a user namespace) and skipped
    // otherwise. They never land outside the destination.
    let c = case();
    let mut a = Vec::new();
    device(&mut a, "dev/null", 1, 3);
    let stats = layer::unpack(&mut finish(a).as_slice(), &c.dest).unwrap();
    if rustix::process::geteuid().is_root() {
        let m = fs::symlink_metadata(c.dest.join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(stats.skipped_devices, 0);
    } else {
        assert!(!c.dest.join("dev/null").exists());
        assert_eq!(stats.skipped_devices, 1);
    }

    let mut a = Vec::new();
    device(&mut a, "../outside/null", 1, 3);
    assert_refused(&finish(a), "../outside/null");
}

#[test]
fn device_node_through_symlink_is_refused() {
    let c = case();
    let mut a = Vec::new();
    let target = c.outside.to_str().unwrap().to_string();
    entry(&mut a, "dev", tar::EntryType::Symlink, &target, b"");
    device(&mut a, "dev/sda", 8, 0);
    assert_refused(&finish(a), "dev/sda");
}

#[test]
fn truncated_archive_is_malformed_and_leaves_nothing() {
    let mut a = Vec::new();
    entry(&mut a, "first", tar::EntryType::Regular, "", b"one");
    entry(&mut a, "second", tar::EntryType::Regular, "", &[7u8; 4096]);
    a.truncate(a.len() - 2000);
    let err = assert_refused(&a, "second");
    assert!(
        matches!(
            err,
            LayerError::Entry { .. } | LayerError::Malformed { .. } | LayerError::Truncated { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn symlink_replacing_a_lower_dir_is_not_followed_later() {
    // Lower content: dest/d is a directory. The layer replaces it with a
    // symlink to the outside, then writes d/x: refused.
    let c = case();
    fs::create_dir(c.dest.join("d")).unwrap();
    let mut a = Vec::new();
    entry(
        &mut a,
        "d/y",
        tar::EntryType::Regular,
        "",
        b"warm the cache",
    );
    let target = c.outside.to_str().unwrap().to_string();
    entry(&mut a, "d", tar::EntryType::Symlink, &target, b"");
    entry(&mut a, "d/x", tar::EntryType::Regular, "", b"pwned");
    let err = layer::unpack(&mut finish(a).as_slice(), &c.dest).unwrap_err();
    assert!(err.to_string().contains("d/x"), "{err}");
    assert!(!c.outside.join("x").exists());
    // dest was not empty: entries before the error stay (documented).
    assert!(c.dest.join("d").is_symlink());
}

/// Random archives from a small pool of nasty names and link targets:
/// whatever unpack answers, nothing outside the destination changes.
#[test]
fn random_hostile_archives_never_escape() {
    let c = case();
    let root = c.dest.parent().unwrap().parent().unwrap().to_path_buf();
    let outside = c.outside.to_str().unwrap().to_string();
    let names = [
        "a",
        "b",
        "a/b",
        "a/b/c",
        "../a",
        "a/../../b",
        "/a",
        "./a/./b",
        "l",
        "l/x",
        "a/l",
        "a/l/y",
        ".wh.a",
        "a/.wh..wh..opq",
        ".wh..wh..opq",
        "l/.wh.keep",
        "d/",
        "..",
    ];
    let targets = [
        "a",
        "..",
        "../..",
        "/",
        "a/b",
        "l",
        "../outside",
        outside.as_str(),
        "/etc/passwd",
        "a/../..",
        ".",
        "l/x",
    ];
    let types = [
        tar::EntryType::Regular,
        tar::EntryType::Directory,
        tar::EntryType::Symlink,
        tar::EntryType::Link,
    ];
    let mut x = 0x853c_49e6_748f_ea9b_u64;
    let mut rand = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let before = listing(&root);
    let outside_before = listing(&c.outside);
    for round in 0..300 {
        let mut a = Vec::new();
        for _ in 0..1 + rand(8) {
            let ty = types[rand(types.len())];
            let link = if matches!(ty, tar::EntryType::Symlink | tar::EntryType::Link) {
                targets[rand(targets.len())]
            } else {
                ""
            };
            entry(&mut a, names[rand(names.len())], ty, link, b"data");
        }
        let _ = layer::unpack(&mut finish(a).as_slice(), &c.dest);
        assert_eq!(listing(&c.outside), outside_before, "round {round}");
        assert_eq!(fs::read(c.outside.join("keep")).unwrap(), b"keep");
        // Start each round from an empty destination again.
        fs::remove_dir_all(&c.dest).unwrap();
        fs::create_dir(&c.dest).unwrap();
    }
    assert_eq!(listing(&root), before);
}

/// Regression (issue 13, item 8): archives that can never be unpacked
/// were accepted by `import`/`load`/`pull`. `validate` (what they run)
/// refuses each, naming the entry, and the unpacker agrees.
#[test]
fn validate_refuses_what_unpack_refuses_naming_the_entry() {
    let mut climbing = Vec::new();
    entry(&mut climbing, "../evil", tar::EntryType::Regular, "", b"x");
    let mut through_absolute = Vec::new();
    entry(
        &mut through_absolute,
        "etc",
        tar::EntryType::Symlink,
        "/etc",
        b"",
    );
    entry(
        &mut through_absolute,
        "etc/passwd",
        tar::EntryType::Regular,
        "",
        b"x",
    );
    let mut escaping_link = Vec::new();
    entry(
        &mut escaping_link,
        "up",
        tar::EntryType::Symlink,
        "../../..",
        b"",
    );
    let mut hardlink_out = Vec::new();
    entry(
        &mut hardlink_out,
        "h",
        tar::EntryType::Link,
        "../outside/keep",
        b"",
    );
    let mut hardlink_missing = Vec::new();
    entry(
        &mut hardlink_missing,
        "h",
        tar::EntryType::Link,
        "nowhere",
        b"",
    );
    // A header promising 10 GiB, and no body.
    let mut huge = Vec::new();
    entry(&mut huge, "small", tar::EntryType::Regular, "", b"ok");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(10 << 30);
    h.as_mut_bytes()[..4].copy_from_slice(b"huge");
    h.set_cksum();
    huge.extend_from_slice(h.as_bytes());
    let cases = [
        (finish(climbing), "../evil", "climbs out"),
        (finish(through_absolute), "etc/passwd", "symlink"),
        (finish(escaping_link), "up", "points outside"),
        (finish(hardlink_out), "h", "outside"),
        (finish(hardlink_missing), "h", "not in the archive"),
        (huge, "huge", "cut short"),
    ];
    for (archive, name, why) in cases {
        let err = layer::validate(&mut &archive[..], true).unwrap_err();
        let text = rbuild_oci::error_chain(&err);
        assert!(
            text.contains(&format!("{name:?}")) && text.contains(why),
            "{name}: {text}"
        );
        let c = case();
        assert!(
            layer::unpack(&mut &archive[..], &c.dest).is_err(),
            "unpack must refuse {name} too"
        );
    }
    // A benign archive passes; its diffID is the stream's sha256.
    let mut good = Vec::new();
    entry(&mut good, "d/", tar::EntryType::Directory, "", b"");
    entry(&mut good, "d/f", tar::EntryType::Regular, "", b"data");
    entry(&mut good, "d/l", tar::EntryType::Symlink, "/etc", b"");
    entry(&mut good, "d/h", tar::EntryType::Link, "d/f", b"");
    let good = finish(good);
    let stats = layer::validate(&mut &good[..], true).unwrap();
    assert_eq!(stats.diff_id, rbuild_oci::Digest::of(&good));
    assert_eq!(stats.entries, 4);
}
