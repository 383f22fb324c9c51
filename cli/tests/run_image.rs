//! `rbuild run IMAGE` on images from the store: layers become overlay lower
//! dirs, the image config is honoured like docker run, and whiteouts in
//! upper layers hide what lower layers hold.

mod support;

use std::path::Path;

use support::Rbuild;

#[test]
fn runs_a_stored_image_and_passes_exit_codes_through() {
    let rb = Rbuild::new();
    rb.busybox();
    assert_eq!(rb.ok(&["run", "--rm", "busybox", "echo", "hi"]), "hi\n");
    for code in [0, 1, 42] {
        let r = rb.run(&["run", "busybox", "sh", "-c", &format!("exit {code}")]);
        assert_eq!(r.code, code, "{}", r.stderr);
    }
    let r = rb.run(&["run", "busybox", "no-such-command"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
}

#[test]
fn honours_the_image_config_and_run_flags() {
    let rb = Rbuild::new();
    rb.busybox();
    let rootfs = rb.tree("extra", &[("srv/hello", "from the image\n")]);
    // A second image built on the same files, with config changes.
    rb.ok(&[
        "export",
        "busybox",
        "-o",
        rb.path("bb.tar").to_str().unwrap(),
    ]);
    let merged = rb.path("merged");
    support::tool("mkdir", &["-p", merged.to_str().unwrap()]);
    support::tool(
        "tar",
        &[
            "-xf",
            rb.path("bb.tar").to_str().unwrap(),
            "-C",
            merged.to_str().unwrap(),
        ],
    );
    support::tool(
        "cp",
        &[
            "-a",
            &format!("{}/.", rootfs.display()),
            merged.to_str().unwrap(),
        ],
    );
    rb.ok(&[
        "import",
        merged.to_str().unwrap(),
        "app:1",
        "--change",
        "ENV GREETING=hello",
        "--change",
        "WORKDIR /srv",
        "--change",
        r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
        "--change",
        r#"CMD ["echo $GREETING from $(pwd); cat hello"]"#,
    ]);
    assert_eq!(
        rb.ok(&["run", "app:1"]),
        "hello from /srv\nfrom the image\n"
    );
    // CMD replaced, ENTRYPOINT kept.
    assert_eq!(
        rb.ok(&["run", "app:1", "echo $GREETING again"]),
        "hello again\n"
    );
    assert_eq!(
        rb.ok(&["run", "-e", "GREETING=bye", "app:1", "echo $GREETING"]),
        "bye\n"
    );
    assert_eq!(
        rb.ok(&[
            "run",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "app:1",
            "echo $(pwd) $(id -u)"
        ]),
        "/tmp 65534\n"
    );
    assert_eq!(
        rb.ok(&["run", "--entrypoint", "cat", "app:1", "/srv/hello"]),
        "from the image\n"
    );
}

#[test]
fn container_writes_never_reach_the_image() {
    let rb = Rbuild::new();
    rb.busybox();
    rb.ok(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "echo scribble > /etc/passwd; rm /bin/ls",
    ]);
    let out = rb.ok(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "grep -c root /etc/passwd; test -e /bin/ls && echo ls-present",
    ]);
    assert_eq!(out, "1\nls-present\n");
    assert_eq!(
        rb.ok(&["system", "check"])
            .lines()
            .last()
            .map(str::is_empty),
        Some(false)
    );
}

#[test]
fn info_names_the_snapshotter() {
    let rb = Rbuild::new();
    let out = rb.ok(&["info"]);
    assert!(
        out.contains("Snapshotter: overlayfs") || out.contains("Snapshotter: copy"),
        "{out}"
    );
}

#[test]
fn a_missing_image_exits_125_with_a_hint() {
    let rb = Rbuild::new();
    let r = rb.run(&["run", "nosuch:1", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}

/// A tar of (path, contents) regular files.
fn layer_tar(path: &Path, files: &[(&str, &[u8])]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.finish().unwrap();
}

fn diff_id(path: &Path) -> String {
    rbuild_solver::Digest::of(&std::fs::read(path).unwrap()).to_string()
}

/// Regression: snapshots used as overlay lower dirs must keep an upper
/// layer's whiteouts as overlay whiteouts; applying them while unpacking
/// would leave the lower layer's file visible.
#[test]
fn whiteouts_and_opaque_dirs_in_upper_layers_hide_lower_content() {
    if !nix::unistd::geteuid().is_root() {
        support::skipped(
            "whiteouts_and_opaque_dirs_in_upper_layers_hide_lower_content",
            "overlay whiteouts in snapshots need root",
        );
        return;
    }
    let rb = Rbuild::new();
    rb.busybox();
    let archive = rb.path("archive");
    std::fs::create_dir(&archive).unwrap();
    let base = archive.join("base.tar");
    rb.ok(&["export", "busybox", "-o", base.to_str().unwrap()]);
    let top = archive.join("top.tar");
    layer_tar(
        &top,
        &[
            ("etc/.wh.group", b""),
            ("hello.txt", b"hello from layer 2\n"),
            ("usr/.wh..wh..opq", b""),
            ("usr/marker", b"only this\n"),
        ],
    );
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id(&base), diff_id(&top)]},
    });
    std::fs::write(archive.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["two:layers"],
        "Layers": ["base.tar", "top.tar"],
    }]);
    std::fs::write(archive.join("manifest.json"), manifest.to_string()).unwrap();
    let tarball = rb.path("two.tar");
    support::tool(
        "tar",
        &[
            "-cf",
            tarball.to_str().unwrap(),
            "-C",
            archive.to_str().unwrap(),
            ".",
        ],
    );
    rb.ok(&["load", "-i", tarball.to_str().unwrap()]);

    let out = rb.ok(&[
        "run",
        "two:layers",
        "sh",
        "-c",
        "test -e /etc/group && echo group-visible; test -e /etc/passwd && echo passwd-visible; cat /hello.txt; ls /usr",
    ]);
    assert_eq!(out, "passwd-visible\nhello from layer 2\nmarker\n");
}

/// Regression: `rbuild run` creates nothing in the store (no per-process
/// tmp dir, no upper/work dirs: the writable layer is on a tmpfs private
/// to the sandbox), and leaves nothing behind, with or without `--memory`
/// (which puts the writable layer on disk in the store's tmp dir).
#[test]
fn runs_leave_nothing_in_the_store_or_the_mount_table() {
    let rb = Rbuild::new();
    rb.busybox();
    let tmp = rb.root().join("store-v1/tmp");
    let entries = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(entries(), Vec::<String>::new());
    let script = "head -c 1048576 /dev/zero > /big && wc -c < /big && \
                  grep -c ' - overlay ' /proc/self/mountinfo";
    for extra in [&[][..], &["--memory", "256m"][..]] {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend(["busybox", "sh", "-c", script]);
        assert_eq!(rb.ok(&args), "1048576\n1\n", "{extra:?}");
        assert_eq!(entries(), Vec::<String>::new(), "{extra:?}");
    }
    let root = rb.root().to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&root), "{mountinfo}");
}
