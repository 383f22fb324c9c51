//! Each database parser on fixtures written here, then a whole root.

use std::io::Write;
use std::path::Path;

use super::*;

const DPKG_STATUS: &str = "\
Package: base-files
Status: install ok installed
Priority: required
Essential: yes
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
";

const APK_INSTALLED: &str = "\
C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
F:lib
R:ld-musl-x86_64.so.1
R:libc.musl-x86_64.so.1

P:busybox-binsh
V:1.36.1-r15
A:x86_64
L:GPL-2.0-only
o:busybox
F:bin
R:sh
";

fn debian() -> Distro {
    Distro {
        id: Some("debian".into()),
        version_id: Some("12".into()),
    }
}

#[test]
fn dpkg_status_lists_installed_packages_only() {
    let pkgs = dpkg::parse_status(DPKG_STATUS, &debian(), "/var/lib/dpkg/status");
    let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["base-files", "libc6"]);
    assert_eq!(
        pkgs[0].purl,
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        pkgs[1].purl,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
    );
    assert_eq!(
        pkgs[0].supplier.as_deref(),
        Some("Santiago Vila <sanvila@debian.org>")
    );
}

#[test]
fn dpkg_status_d_has_no_status_field() {
    let text = "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n";
    let pkgs = dpkg::parse_status(text, &debian(), "/var/lib/dpkg/status.d/tzdata");
    assert_eq!(pkgs.len(), 1);
    assert_eq!(pkgs[0].version, "2024a-0+deb12u1");
}

#[test]
fn apk_installed_with_files() {
    let alpine = Distro {
        id: Some("alpine".into()),
        version_id: Some("3.19.1".into()),
    };
    let pkgs = apk::parse_installed(APK_INSTALLED, &alpine, "/lib/apk/db/installed");
    assert_eq!(pkgs.len(), 2);
    assert_eq!(
        pkgs[0].purl,
        "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1"
    );
    assert_eq!(
        pkgs[0].files,
        ["/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1"]
    );
    assert_eq!(pkgs[0].license.as_deref(), Some("MIT"));
    assert_eq!(
        pkgs[1].purl,
        "pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1&upstream=busybox"
    );
}

#[test]
fn python_metadata_and_record() {
    let meta = "Metadata-Version: 2.1\nName: Typing_Extensions\nVersion: 4.9.0\nLicense: PSF-2.0\n\nName: not-a-header\n";
    let p = python::parse_metadata(meta, "/x/METADATA").unwrap();
    assert_eq!(p.name, "Typing_Extensions");
    assert_eq!(p.purl, "pkg:pypi/typing-extensions@4.9.0");
    assert_eq!(p.license.as_deref(), Some("PSF-2.0"));
    let record = "typing_extensions.py,sha256=abc,1234\n\"odd,name.py\",,\ntyping_extensions-4.9.0.dist-info/METADATA,,\n../../../bin/tool,,\n";
    assert_eq!(
        python::record_files(record, "/usr/lib/python3/site-packages"),
        [
            "/usr/bin/tool",
            "/usr/lib/python3/site-packages/odd,name.py",
            "/usr/lib/python3/site-packages/typing_extensions-4.9.0.dist-info/METADATA",
            "/usr/lib/python3/site-packages/typing_extensions.py",
        ]
    );
}

#[test]
fn npm_package_json_scoped_and_license_object() {
    let p = npm::parse(
        br#"{"name":"@babel/core","version":"7.23.0","license":{"type":"MIT"}}"#,
        "/app/node_modules/@babel/core/package.json",
    )
    .unwrap();
    assert_eq!(p.purl, "pkg:npm/%40babel/core@7.23.0");
    assert_eq!(p.license.as_deref(), Some("MIT"));
    assert!(npm::parse(br#"{"name":"x"}"#, "/p").is_none());
}

/// A Go ≥ 1.18 build info blob: header, then the version and module info
/// as uvarint-prefixed strings, the module info between sentinels.
fn go_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
    let mut b = b"\xff Go buildinf:".to_vec();
    b.push(8); // pointer size
    b.push(2); // flags: inline strings
    b.resize(32, 0);
    // Go's sentinels (runtime/debug's infoStart and infoEnd): not UTF-8.
    let mut m = b"\x30\x77\xaf\x0c\x92\x74\x08\x02\x41\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    m.extend_from_slice(modinfo.as_bytes());
    m.extend_from_slice(b"\xf9\x32\x43\x31\x86\x18\x20\x72\x00\x82\x42\x10\x41\x16\xd8\xf2");
    for s in [version.as_bytes(), &m] {
        let mut n = s.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                b.push(byte);
                break;
            }
            b.push(byte | 0x80);
        }
        b.extend_from_slice(s);
    }
    b
}

const GO_MODINFO: &str = "path\texample.com/hello\nmod\texample.com/hello\t(devel)\t\ndep\tgithub.com/spf13/cobra\tv1.8.0\th1:abc=\ndep\tgolang.org/x/text\tv0.3.7\th1:def=\n=>\tgolang.org/x/text\tv0.14.0\th1:ghi=\nbuild\t-compiler=gc\n";

#[test]
fn go_buildinfo_modules_with_replacement() {
    let blob = go_buildinfo("go1.21.5", GO_MODINFO);
    let pkgs = gobin::packages(&blob, "/usr/local/bin/hello");
    let purls: Vec<&str> = pkgs.iter().map(|p| p.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:golang/example.com/hello@%28devel%29",
            "pkg:golang/github.com/spf13/cobra@v1.8.0",
            "pkg:golang/golang.org/x/text@v0.14.0",
            "pkg:golang/stdlib@go1.21.5",
        ]
    );
}

/// A minimal 64-bit little-endian ELF file holding `sections`.
pub(crate) fn elf_with(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    let mut names = vec![0u8];
    let mut placed = Vec::new();
    for (name, data) in sections {
        let name_off = names.len() as u32;
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        placed.push((name_off, out.len() as u64, data.len() as u64));
        out.extend_from_slice(data);
    }
    let shstr_name = names.len() as u32;
    names.extend_from_slice(b".shstrtab\0");
    let shstr_off = out.len() as u64;
    out.extend_from_slice(&names);
    let shoff = out.len() as u64;
    let sh = |out: &mut Vec<u8>, name: u32, kind: u32, off: u64, size: u64| {
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(&name.to_le_bytes());
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[24..32].copy_from_slice(&off.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&h);
    };
    sh(&mut out, 0, 0, 0, 0);
    for (name, off, size) in &placed {
        sh(&mut out, *name, 1, *off, *size);
    }
    sh(&mut out, shstr_name, 3, shstr_off, names.len() as u64);
    let shnum = (placed.len() + 2) as u16;
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    out[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    out[0x3C..0x3E].copy_from_slice(&shnum.to_le_bytes());
    out[0x3E..0x40].copy_from_slice(&(shnum - 1).to_le_bytes());
    out
}

fn auditable_section() -> Vec<u8> {
    let json = br#"{"packages":[{"name":"tool","version":"0.1.0","source":"local","root":true,"dependencies":[1]},{"name":"serde","version":"1.0.195","source":"crates.io"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).unwrap();
    z.finish().unwrap()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    fs_err::write(p, data).unwrap();
}

fn exec(root: &Path, rel: &str, data: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    write(root, rel, data);
    let p = root.join(rel.trim_start_matches('/'));
    fs_err::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A root holding one package of each ecosystem.
fn fixture_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    );
    write(r, "/var/lib/dpkg/status", DPKG_STATUS.as_bytes());
    write(
        r,
        "/var/lib/dpkg/info/base-files.list",
        b"/.\n/etc\n/etc/debian_version\n/etc/host.conf\n",
    );
    write(r, "/etc/debian_version", b"12.5\n");
    fs_err::os::unix::fs::symlink("/nonexistent", r.join("etc/host.conf")).unwrap();
    write(r, "/lib/apk/db/installed", APK_INSTALLED.as_bytes());
    write(r, "/lib/ld-musl-x86_64.so.1", b"not really");
    write(
        r,
        "/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
        b"Name: six\nVersion: 1.16.0\nLicense: MIT\n",
    );
    write(
        r,
        "/usr/lib/python3/dist-packages/six-1.16.0.dist-info/RECORD",
        b"six.py,,\n",
    );
    write(r, "/usr/lib/python3/dist-packages/six.py", b"# six\n");
    write(
        r,
        "/usr/lib/python3/dist-packages/chardet-5.1.0.egg-info",
        b"Metadata-Version: 1.1\nName: chardet\nVersion: 5.1.0\nLicense: LGPL\n",
    );
    write(
        r,
        "/app/package.json",
        br#"{"name":"app","version":"1.0.0"}"#,
    );
    write(
        r,
        "/app/node_modules/left-pad/package.json",
        br#"{"name":"left-pad","version":"1.3.0","license":"WTFPL"}"#,
    );
    exec(
        r,
        "/usr/local/bin/hello",
        &elf_with(&[(".go.buildinfo", &go_buildinfo("go1.21.5", GO_MODINFO))]),
    );
    exec(
        r,
        "/usr/local/bin/tool",
        &elf_with(&[(".text", b"\x90\x90"), (".dep-v0", &auditable_section())]),
    );
    dir
}

#[test]
fn scan_finds_every_ecosystem() {
    let root = fixture_root();
    let s = scan(root.path()).unwrap();
    assert_eq!(s.distro, debian());
    let purls: Vec<&str> = s.packages.iter().map(|p| p.purl.as_str()).collect();
    for want in [
        "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12",
        "pkg:cargo/serde@1.0.195",
        "pkg:cargo/tool@0.1.0",
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
        "pkg:golang/github.com/spf13/cobra@v1.8.0",
        "pkg:npm/left-pad@1.3.0",
        "pkg:pypi/chardet@5.1.0",
        "pkg:pypi/six@1.16.0",
    ] {
        assert!(purls.contains(&want), "{want} missing from {purls:#?}");
    }
    // An application's own package.json is not an installed package.
    assert!(!purls.iter().any(|p| p.starts_with("pkg:npm/app@")));
    let base = s.packages.iter().find(|p| p.name == "base-files").unwrap();
    // Directories and links are not files of the package.
    assert_eq!(base.files, ["/etc/debian_version"]);
    let six = s.packages.iter().find(|p| p.name == "six").unwrap();
    assert_eq!(six.files, ["/usr/lib/python3/dist-packages/six.py"]);
    let mut sorted = s.packages.clone();
    sorted.sort_by(|a, b| a.purl.cmp(&b.purl));
    assert_eq!(sorted, s.packages);
}

#[test]
fn links_never_leave_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "/status",
        b"Package: host-secret\nStatus: install ok installed\nVersion: 1\n",
    );
    let r = dir.path();
    fs_err::create_dir_all(r.join("var/lib/dpkg")).unwrap();
    fs_err::os::unix::fs::symlink(outside.path().join("status"), r.join("var/lib/dpkg/status"))
        .unwrap();
    // A relative link climbing out stops at the root too.
    fs_err::create_dir_all(r.join("lib/apk/db")).unwrap();
    let climb = format!("../../../../../../..{}/status", outside.path().display());
    fs_err::os::unix::fs::symlink(climb, r.join("lib/apk/db/installed")).unwrap();
    let s = scan(r).unwrap();
    assert!(s.packages.is_empty(), "{:?}", s.packages);
}

#[test]
fn spdx_document_is_deterministic_and_related() {
    let root = fixture_root();
    let s = scan(root.path()).unwrap();
    let info = spdx::DocumentInfo {
        name: "example:1".into(),
        created: "2024-01-01T00:00:00Z".into(),
        tool: "Tool: rbuild-test".into(),
    };
    let fs = RootFs::new(root.path());
    let a = serde_json::to_string(&spdx::document(&s, &fs, &info)).unwrap();
    let b =
        serde_json::to_string(&spdx::document(&scan(root.path()).unwrap(), &fs, &info)).unwrap();
    assert_eq!(a, b);
    let doc: spdx::Document = serde_json::from_str(&a).unwrap();
    assert_eq!(doc.spdx_version, "SPDX-2.3");
    let root_id = &doc.packages[0].spdx_id;
    assert!(
        doc.relationships
            .iter()
            .any(|r| r.spdx_element_id == "SPDXRef-DOCUMENT"
                && r.relationship_type == "DESCRIBES"
                && &r.related_spdx_element == root_id)
    );
    assert_eq!(
        doc.relationships
            .iter()
            .filter(|r| &r.spdx_element_id == root_id && r.relationship_type == "CONTAINS")
            .count(),
        s.packages.len()
    );
    let f = doc
        .files
        .iter()
        .find(|f| f.file_name == "./etc/debian_version")
        .unwrap();
    assert_eq!(f.checksums[0].algorithm, "SHA1");
    let base = doc
        .packages
        .iter()
        .find(|p| p.name == "base-files")
        .unwrap();
    assert!(base.files_analyzed);
    // sha1 of the one file's sha1, as SPDX's verification code is made.
    assert_eq!(
        base.package_verification_code
            .as_ref()
            .unwrap()
            .package_verification_code_value,
        "a4d7e01ffe916709cb2ecd9682675c30333cd09d"
    );
    // sha1("12.5\n")
    assert_eq!(
        f.checksums[0].checksum_value,
        "9a29af6fcf105a511ef632311c6fdfbff5ab47cb"
    );
    for id in doc
        .packages
        .iter()
        .map(|p| &p.spdx_id)
        .chain(doc.files.iter().map(|f| &f.spdx_id))
    {
        assert!(
            id.strip_prefix("SPDXRef-").is_some_and(|r| r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')),
            "{id}"
        );
    }
    // A free-text license is not an SPDX expression: it goes to the comment.
    let lp = doc.packages.iter().find(|p| p.name == "left-pad").unwrap();
    assert_eq!(lp.license_declared.as_deref(), Some("NOASSERTION"));
    assert_eq!(lp.license_comments.as_deref(), Some("declared: WTFPL"));
    let rows = spdx::rows(&doc);
    assert!(rows.contains(&["six".into(), "1.16.0".into(), "python".into()]));
}
