//! overlayfs upper dir → layer (pack_diff) and whiteouts on unpack.
//! Making 0/0 char devices and trusted.* xattrs needs root; without it these
//! tests say `SKIPPED` and return early.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rbuild_store::layer::{self, PackOptions, UnpackOptions, WhiteoutMode};
use rustix::fs::{CWD, FileType, Mode, XattrFlags};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

use rbuild_testkit::skipped;

fn whiteout_dev(path: &Path) {
    rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

fn has_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(path, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// Lower content as earlier layers left it.
fn make_lower(root: &Path) {
    fs::create_dir_all(root.join("etc/old.d")).unwrap();
    fs::write(root.join("etc/old.d/a.conf"), b"a").unwrap();
    fs::write(root.join("etc/gone"), b"bye").unwrap();
    fs::create_dir_all(root.join("var/cache/apt")).unwrap();
    fs::write(root.join("var/cache/apt/pkgcache"), b"lots").unwrap();
    fs::write(root.join("var/cache/keep"), b"stays").unwrap();
    fs::create_dir_all(root.join("opq")).unwrap();
    fs::write(root.join("opq/lower-file"), b"hidden").unwrap();
    fs::create_dir_all(root.join("opq/lower-dir")).unwrap();
}

/// What an overlay upper dir looks like after `rm etc/gone; rm -r
/// var/cache/apt; rm -r opq && mkdir opq && echo new > opq/-first`.
fn make_upper(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    whiteout_dev(&root.join("etc/gone"));
    fs::create_dir_all(root.join("var/cache")).unwrap();
    whiteout_dev(&root.join("var/cache/apt"));
    set_xattr(&root.join("var/cache"), "trusted.overlay.origin", b"\0junk");
    fs::create_dir(root.join("opq")).unwrap();
    set_xattr(&root.join("opq"), "trusted.overlay.opaque", b"y");
    // "-" sorts before "." of the opaque marker: must survive it anyway.
    fs::write(root.join("opq/-first"), b"new").unwrap();
    fs::write(root.join("opq/new"), b"new").unwrap();
    fs::create_dir(root.join("useropq")).unwrap();
    set_xattr(&root.join("useropq"), "user.overlay.opaque", b"y");
    set_xattr(&root.join("useropq"), "user.kept", b"1");
}

fn names(tar_bytes: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

#[test]
fn pack_diff_writes_whiteouts_and_opaque_markers() {
    if !is_root() {
        skipped(
            "pack_diff_writes_whiteouts_and_opaque_markers",
            "needs root (0/0 character devices, trusted.* xattrs)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    make_upper(tmp.path());
    let mut out = Vec::new();
    layer::pack_diff(tmp.path(), &mut out, &PackOptions::default()).unwrap();
    assert_eq!(
        names(&out),
        [
            "etc/",
            "etc/.wh.gone",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/-first",
            "opq/new",
            "useropq/",
            "useropq/.wh..wh..opq",
            "var/",
            "var/cache/",
            "var/cache/.wh.apt",
        ]
    );
    // No overlay xattr leaks into the layer; other xattrs stay.
    let mut ar = tar::Archive::new(out.as_slice());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let keys: Vec<String> = e
            .pax_extensions()
            .unwrap()
            .map(|p| {
                p.map(|r| String::from_utf8_lossy(r.unwrap().key_bytes()).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            keys.iter().all(|k| !k.contains(".overlay.")),
            "{path}: {keys:?}"
        );
        if path == "useropq/" {
            assert_eq!(keys, ["SCHILY.xattr.user.kept"]);
        }
        if path.ends_with(".wh.gone") {
            assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
            assert_eq!(e.size(), 0);
        }
    }
    // A plain pack_dir keeps the device as a device and writes no marker.
    let mut plain = Vec::new();
    layer::pack_dir(tmp.path(), &mut plain, &PackOptions::default()).unwrap();
    let plain_names = names(&plain);
    assert!(plain_names.contains(&"etc/gone".to_string()));
    assert!(!plain_names.iter().any(|n| n.contains(".wh.")));
}

#[test]
fn whiteouts_apply_to_lower_content_on_unpack() {
    if !is_root() {
        skipped(
            "whiteouts_apply_to_lower_content_on_unpack",
            "needs root (0/0 character devices, trusted.* xattrs)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    let dest = tmp.path().join("dest");
    make_upper(&upper);
    make_lower(&dest);
    let mut out = Vec::new();
    layer::pack_diff(&upper, &mut out, &PackOptions::default()).unwrap();
    layer::unpack(&mut out.as_slice(), &dest).unwrap();

    assert!(!dest.join("etc/gone").exists());
    assert!(dest.join("etc/old.d/a.conf").exists(), "siblings kept");
    assert!(!dest.join("var/cache/apt").exists(), "whole dir removed");
    assert_eq!(fs::read(dest.join("var/cache/keep")).unwrap(), b"stays");
    assert!(!dest.join("opq/lower-file").exists(), "opaque hides lower");
    assert!(!dest.join("opq/lower-dir").exists());
    assert_eq!(fs::read(dest.join("opq/-first")).unwrap(), b"new");
    assert_eq!(fs::read(dest.join("opq/new")).unwrap(), b"new");
    assert!(!dest.join("etc/.wh.gone").exists(), "markers are not files");
    assert!(!dest.join("opq/.wh..wh..opq").exists());
    assert_eq!(has_xattr(&dest.join("opq"), "trusted.overlay.opaque"), None);
}

#[test]
fn whiteouts_can_be_kept_in_overlay_form() {
    if !is_root() {
        skipped(
            "whiteouts_can_be_kept_in_overlay_form",
            "needs root (0/0 character devices, trusted.* xattrs)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    let dest = tmp.path().join("dest");
    make_upper(&upper);
    fs::create_dir(&dest).unwrap();
    let mut out = Vec::new();
    layer::pack_diff(&upper, &mut out, &PackOptions::default()).unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Overlay,
    };
    layer::unpack_with(&mut out.as_slice(), &dest, &opts).unwrap();
    let gone = fs::symlink_metadata(dest.join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert_eq!(
        has_xattr(&dest.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(dest.join("opq/-first")).unwrap(), b"new");
    // Packing the snapshot as an upper dir again gives the same layer.
    let mut again = Vec::new();
    layer::pack_diff(&dest, &mut again, &PackOptions::default()).unwrap();
    assert_eq!(names(&again), names(&out));
}

#[test]
fn archive_cannot_set_overlay_xattrs() {
    // A layer carrying trusted.overlay.* must not steer a later overlay
    // mount (e.g. a forged opaque or redirect).
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_path("d/").unwrap();
    h.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
            ("SCHILY.xattr.user.ok", &b"1"[..]),
        ])
        .unwrap();
    builder.append(&h, std::io::empty()).unwrap();
    let bytes = builder.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    layer::unpack(&mut bytes.as_slice(), tmp.path()).unwrap();
    assert_eq!(
        has_xattr(&tmp.path().join("d"), "trusted.overlay.opaque"),
        None
    );
    assert_eq!(
        has_xattr(&tmp.path().join("d"), "user.ok").as_deref(),
        Some(&b"1"[..])
    );
}

#[test]
fn aufs_metadata_entries_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(".wh.plnk"), b"lower").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(0);
    b.append_data(&mut h.clone(), ".wh..wh.plnk", std::io::empty())
        .unwrap();
    b.append_data(&mut h, "kept", std::io::empty()).unwrap();
    let bytes = b.into_inner().unwrap();
    layer::unpack(&mut bytes.as_slice(), tmp.path()).unwrap();
    assert!(tmp.path().join(".wh.plnk").exists(), "not a whiteout of it");
    assert!(!tmp.path().join(".wh..wh.plnk").exists());
    assert!(tmp.path().join("kept").exists());
}
