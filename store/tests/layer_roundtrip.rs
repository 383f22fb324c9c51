//! Packing is deterministic, and pack → unpack gives back the same tree.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use rbuild_store::layer::{self, PackOptions};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
use sha2::Digest as _;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

use rbuild_testkit::skipped;

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn long_name() -> String {
    format!("{}-long.txt", "n".repeat(120))
}

/// A tree with one of everything the layer format carries.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("dir/file.txt"), b"hello world\n").unwrap();
    fs::write(root.join("dir/sub/empty"), b"").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    symlink("dir/file.txt", root.join("rel-link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    fs::hard_link(root.join("dir/file.txt"), root.join("hard")).unwrap();
    fs::write(root.join(long_name()), b"long").unwrap();
    fs::write(root.join("ünïcødé-名前"), b"utf8").unwrap();
    symlink(
        format!("{}/{}", "x".repeat(150), "target"),
        root.join("long-link"),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        root.join("dir/file.txt"),
        "user.greeting",
        b"hi\0there",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    if is_root() {
        rustix::fs::mknodat(
            CWD,
            root.join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        std::os::unix::fs::lchown(root.join("dir/sub/empty"), Some(1234), Some(5678)).unwrap();
        // Above the 2097151 a ustar id field holds: written as pax records.
        std::os::unix::fs::lchown(root.join("big.bin"), Some(3_000_000), Some(2_500_000)).unwrap();
        rustix::fs::lsetxattr(
            root.join("setuid"),
            "security.capability",
            // VFS_CAP_REVISION_2, CAP_NET_BIND_SERVICE permitted+effective.
            &[
                0x01, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    // Fixed mtimes for every entry, directories last (writing children
    // changes them): two trees made across a second boundary must pack
    // alike.
    let long = long_name();
    let mut entries = vec![
        "dir/file.txt",
        "dir/sub/empty",
        "big.bin",
        "setuid",
        "rel-link",
        "abs-link",
        "fifo",
        &long,
        "ünïcødé-名前",
        "long-link",
    ];
    if is_root() {
        entries.push("null");
    }
    for p in entries {
        set_mtime(&root.join(p), 1_600_000_000);
    }
    for p in ["dir/sub", "dir", "tmp", ""] {
        set_mtime(&root.join(p), 1_500_000_000);
    }
}

fn pack(root: &Path, opts: &PackOptions) -> (Vec<u8>, layer::PackStats) {
    let mut out = Vec::new();
    let stats = layer::pack_dir(root, &mut out, opts).unwrap();
    (out, stats)
}

fn entry_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

#[test]
fn same_tree_packs_to_same_bytes_even_after_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    let (first, stats) = pack(&root, &PackOptions::default());
    // Reading every file (atime) and re-packing changes nothing.
    for e in fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && !p.is_symlink() && !fs::metadata(&p).unwrap().file_type().is_fifo() {
            let _ = fs::read(&p).unwrap();
        }
    }
    let (second, stats2) = pack(&root, &PackOptions::default());
    assert!(first == second, "two packs of one tree differ");
    assert_eq!(stats, stats2);
    assert_eq!(stats.size, first.len() as u64);
    assert_eq!(
        stats.diff_id.as_bytes(),
        sha2::Sha256::digest(&first).as_slice()
    );
    // The same content in another directory packs the same too.
    let root2 = tmp.path().join("copy");
    make_tree(&root2);
    let (third, _) = pack(&root2, &PackOptions::default());
    assert!(
        first == third,
        "identical trees in two places pack differently"
    );
}

#[test]
fn entries_are_sorted_parents_first_with_empty_owner_names() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let (bytes, _) = pack(tmp.path(), &PackOptions::default());
    let names = entry_names(&bytes);
    assert_eq!(names[0], "abs-link");
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("dir/") < pos("dir/file.txt"));
    assert!(pos("dir/file.txt") < pos("dir/sub/"));
    assert!(pos("dir/sub/") < pos("dir/sub/empty"));
    let mut ar = tar::Archive::new(bytes.as_slice());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
    }
    // The hardlink is written as a link to the first path in walk order.
    let mut ar = tar::Archive::new(bytes.as_slice());
    let link = ar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| &*e.path_bytes() == b"hard")
        .unwrap();
    assert_eq!(link.header().entry_type(), tar::EntryType::Link);
    assert_eq!(&*link.link_name_bytes().unwrap(), b"dir/file.txt");
}

#[test]
fn clamp_mtime_caps_every_entry() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let (bytes, _) = pack(
        tmp.path(),
        &PackOptions {
            clamp_mtime: Some(1_550_000_000),
            ..PackOptions::default()
        },
    );
    let mut ar = tar::Archive::new(bytes.as_slice());
    let mut seen_old = false;
    for e in ar.entries().unwrap() {
        let m = e.unwrap().header().mtime().unwrap();
        assert!(m <= 1_550_000_000);
        seen_old |= m == 1_500_000_000;
    }
    assert!(seen_old, "older mtimes stay as they are");
}

#[test]
fn an_owner_map_writes_the_ids_a_user_namespace_showed() {
    use rbuild_store::layer::{IdRange, OwnerMap};
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), "x").unwrap();
    let me = std::fs::metadata(tmp.path().join("f")).unwrap();
    // This process's ids are "root inside", as in a rootless sandbox.
    let owners = OwnerMap {
        uids: vec![IdRange {
            container: 0,
            host: me.uid(),
            count: 1,
        }],
        gids: vec![IdRange {
            container: 0,
            host: me.gid(),
            count: 1,
        }],
    };
    let (bytes, _) = pack(
        tmp.path(),
        &PackOptions {
            owners: Some(owners.clone()),
            ..PackOptions::default()
        },
    );
    let mut ar = tar::Archive::new(bytes.as_slice());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(
            (e.header().uid().unwrap(), e.header().gid().unwrap()),
            (0, 0)
        );
    }
    // An id in no range is the overflow id; a subordinate range maps on.
    let sub = OwnerMap {
        uids: vec![IdRange {
            container: 1,
            host: 100_000,
            count: 65536,
        }],
        gids: vec![],
    };
    assert_eq!(sub.uid(100_000), 1);
    assert_eq!(sub.uid(100_999), 1000);
    assert_eq!(sub.uid(5), 65534);
    assert_eq!(owners.gid(me.gid().wrapping_add(1)), 65534);
}

fn assert_same(a: &Path, b: &Path, rel: &str) {
    let ma = fs::symlink_metadata(a.join(rel)).unwrap();
    let mb = fs::symlink_metadata(b.join(rel)).unwrap();
    assert_eq!(ma.mode(), mb.mode(), "mode of {rel}");
    if !ma.is_dir() {
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {rel}");
    }
    if is_root() {
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "owner of {rel}");
    }
    if ma.is_file() {
        assert_eq!(
            fs::read(a.join(rel)).unwrap(),
            fs::read(b.join(rel)).unwrap()
        );
    }
    if ma.is_symlink() {
        assert_eq!(
            fs::read_link(a.join(rel)).unwrap(),
            fs::read_link(b.join(rel)).unwrap()
        );
    }
}

#[test]
fn pack_then_unpack_restores_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    make_tree(&src);
    fs::create_dir(&dst).unwrap();
    let (bytes, packed) = pack(&src, &PackOptions::default());
    let stats = layer::unpack(&mut bytes.as_slice(), &dst).unwrap();
    assert_eq!(stats.diff_id, Some(packed.diff_id));

    for rel in [
        "dir",
        "dir/sub",
        "dir/file.txt",
        "dir/sub/empty",
        "big.bin",
        "setuid",
        "tmp",
        "rel-link",
        "abs-link",
        "long-link",
        "hard",
        "fifo",
        "ünïcødé-名前",
        long_name().as_str(),
    ] {
        assert_same(&src, &dst, rel);
    }
    let m = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap();
    assert_eq!(m("setuid").mode() & 0o7777, 0o4755);
    assert_eq!(m("tmp").mode() & 0o7777, 0o1777);
    assert!(m("fifo").file_type().is_fifo());
    assert_eq!(m("hard").ino(), m("dir/file.txt").ino(), "hardlink kept");
    // Directory mtimes are set after their children were written.
    assert_eq!(m("dir").mtime(), 1_500_000_000);
    assert_eq!(m("dir/sub").mtime(), 1_500_000_000);
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(dst.join("dir/file.txt"), "user.greeting", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"hi\0there");
    if is_root() {
        assert!(m("null").file_type().is_char_device());
        assert_eq!(m("null").rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(
            (m("dir/sub/empty").uid(), m("dir/sub/empty").gid()),
            (1234, 5678)
        );
        let n =
            rustix::fs::lgetxattr(dst.join("setuid"), "security.capability", &mut buf[..]).unwrap();
        assert_eq!(n, 20, "file capability survives (set after chown)");
        assert_eq!(m("setuid").mode() & 0o7777, 0o4755, "setuid survives chown");
    } else {
        skipped(
            "pack_then_unpack_restores_the_tree",
            "its device, owner, file capability and setuid checks need root",
        );
    }
    // Packing the unpacked tree gives the same layer again.
    let (again, _) = pack(&dst, &PackOptions::default());
    assert!(again == bytes, "re-packing the unpacked tree differs");
}

#[test]
fn unpack_replaces_lower_files_and_keeps_lower_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/conf"), b"new").unwrap();
    let dst = tmp.path().join("dst");
    fs::create_dir_all(dst.join("etc")).unwrap();
    fs::write(dst.join("etc/other"), b"lower").unwrap();
    symlink("/nowhere", dst.join("etc/conf")).unwrap();
    // A lower dir replaced by a file, a lower file by a dir, a lower file
    // by a hardlink.
    fs::write(upper.join("was-dir"), b"file now").unwrap();
    fs::create_dir_all(upper.join("was-file")).unwrap();
    fs::write(upper.join("was-file/inner"), b"x").unwrap();
    fs::hard_link(upper.join("etc/conf"), upper.join("zlink")).unwrap();
    fs::create_dir_all(dst.join("was-dir/deep")).unwrap();
    fs::write(dst.join("was-dir/deep/f"), b"old").unwrap();
    fs::write(dst.join("was-file"), b"old").unwrap();
    fs::write(dst.join("zlink"), b"old").unwrap();
    let (bytes, _) = pack(&upper, &PackOptions::default());
    layer::unpack(&mut bytes.as_slice(), &dst).unwrap();
    assert_eq!(fs::read(dst.join("etc/conf")).unwrap(), b"new");
    assert_eq!(fs::read(dst.join("etc/other")).unwrap(), b"lower");
    assert_eq!(fs::read(dst.join("was-dir")).unwrap(), b"file now");
    assert_eq!(fs::read(dst.join("was-file/inner")).unwrap(), b"x");
    assert_eq!(fs::read(dst.join("zlink")).unwrap(), b"new");
}

#[test]
fn packing_a_missing_root_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = layer::pack_dir(&missing, &mut Vec::new(), &PackOptions::default()).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn read_only_directory_still_receives_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("ro")).unwrap();
    fs::write(src.join("ro/inside"), b"x").unwrap();
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let (bytes, _) = pack(&src, &PackOptions::default());
    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    layer::unpack(&mut bytes.as_slice(), &dst).unwrap();
    assert_eq!(fs::read(dst.join("ro/inside")).unwrap(), b"x");
    let mode = fs::metadata(dst.join("ro")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o555);
}

#[test]
fn archives_from_other_writers_unpack() {
    // GNU long names, a "./" root entry, "./"-prefixed paths and a file
    // whose parent directory has no entry of its own.
    let long = format!("./deep/{}/file", "d".repeat(130));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h.clone(), "./", std::io::empty())
        .unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_mode(0o640);
    f.set_size(5);
    f.set_mtime(1_234_567_890);
    b.append_data(&mut f.clone(), &long, &b"hello"[..]).unwrap();
    b.append_data(&mut f, "./implicit/parent/x", &b"world"[..])
        .unwrap();
    let bytes = b.into_inner().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let stats = layer::unpack(&mut bytes.as_slice(), tmp.path()).unwrap();
    assert_eq!(stats.bytes, 10);
    let file = tmp.path().join(long.trim_start_matches("./"));
    assert_eq!(fs::read(&file).unwrap(), b"hello");
    let m = fs::metadata(&file).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1_234_567_890);
    let parent = fs::metadata(tmp.path().join("implicit/parent")).unwrap();
    assert_eq!(parent.mode() & 0o7777, 0o755, "implicit parents get 0755");
}
