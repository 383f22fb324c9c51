//! save/load round trips and interoperability with skopeo and umoci.

mod support;

use support::{Rbuild, tool};

fn id_of(rb: &Rbuild, name: &str) -> String {
    rb.ok(&["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[test]
fn save_then_load_into_a_fresh_root_keeps_the_image_id() {
    let rb = Rbuild::new();
    let id = rb.busybox();
    let archive = rb.path("bb.tar");
    rb.ok(&["save", "busybox", "-o", archive.to_str().unwrap()]);

    let fresh = Rbuild::new();
    let out = fresh.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    assert_eq!(id_of(&fresh, "busybox"), id);
    assert_eq!(
        fresh
            .ok(&["inspect", "-f", "{{json .Config.Cmd}}", "busybox"])
            .trim(),
        "[\"sh\"]"
    );
    // The loaded layer unpacks: system check is clean.
    fresh.ok(&["system", "check"]);
}

/// Regression: `save -o` (and `-o type=oci|docker,dest=`) wrote a temp file
/// and renamed it onto the destination, so a fifo or device (`-o >(gzip …)`,
/// `/dev/null`; a test once hit `/dev/full`) was replaced by a regular file
/// and its reader got nothing. It is written in place now.
#[test]
fn save_writes_into_a_fifo_in_place() {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let rb = Rbuild::new();
    rb.busybox();
    let fifo = rb.path("pipe");
    tool("mkfifo", &[fifo.to_str().unwrap()]);
    // Open the read end first without blocking, so rbuild's open for
    // writing succeeds at once, and drain it while rbuild writes.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut child = rb
        .command(&["save", "busybox", "-o", fifo.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) | Err(_) => {
                if child.try_wait().unwrap().is_some() {
                    // Drain what is left after the writer closed.
                    while let Ok(n) = reader.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
    assert!(child.wait().unwrap().success());
    let meta = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(
        meta.file_type().is_fifo(),
        "the fifo was replaced: {meta:?}"
    );
    let mut names = Vec::new();
    for e in tar::Archive::new(got.as_slice()).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
}

#[test]
fn several_images_per_archive_via_stdout_and_gzip_stdin() {
    let rb = Rbuild::new();
    let a = rb.import_tree("one:1", &[("f", "1")]);
    let b = rb.import_tree("two:2", &[("f", "2")]);
    let mut save = rb.command(&["save", "one:1", "two:2"]);
    let out = save.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &out.stdout).unwrap();
    let gz = gz.finish().unwrap();

    let fresh = Rbuild::new();
    let r = fresh.run_with_stdin(&["load"], Some(&gz));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Loaded image: one:1"), "{}", r.stdout);
    assert!(r.stdout.contains("Loaded image: two:2"), "{}", r.stdout);
    assert_eq!(id_of(&fresh, "one:1"), a);
    assert_eq!(id_of(&fresh, "two:2"), b);
}

#[test]
fn skopeo_reads_the_docker_archive() {
    let rb = Rbuild::new();
    rb.busybox();
    let archive = rb.path("bb.tar");
    rb.ok(&["save", "busybox:latest", "-o", archive.to_str().unwrap()]);
    let spec = format!("docker-archive:{}", archive.display());
    let inspect: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &spec])).unwrap();
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
    let oci_dir = rb.path("ocidir");
    tool(
        "skopeo",
        &["copy", &spec, &format!("oci:{}:latest", oci_dir.display())],
    );
    assert!(oci_dir.join("index.json").is_file());
}

#[test]
fn umoci_unpacks_the_oci_format() {
    let rb = Rbuild::new();
    rb.busybox();
    let archive = rb.path("oci.tar");
    rb.ok(&[
        "save",
        "--format",
        "oci",
        "busybox",
        "-o",
        archive.to_str().unwrap(),
    ]);
    let layout = rb.path("layout");
    std::fs::create_dir(&layout).unwrap();
    tool(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-xf",
            archive.to_str().unwrap(),
        ],
    );
    assert!(
        !layout.join("manifest.json").exists(),
        "pure OCI has no manifest.json"
    );
    let bundle = rb.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(bundle.join("config.json").is_file());
}

#[test]
fn an_oci_archive_written_by_skopeo_loads() {
    let rb = Rbuild::new();
    rb.busybox();
    let archive = rb.path("bb.tar");
    rb.ok(&["save", "busybox", "-o", archive.to_str().unwrap()]);
    let oci = rb.path("skopeo-oci.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", archive.display()),
            &format!("oci-archive:{}:example.com/tools/busybox:v2", oci.display()),
        ],
    );
    let fresh = Rbuild::new();
    let out = fresh.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example.com/tools/busybox:v2");
    // skopeo compressed the layer; the store reads it back through gzip.
    let media = fresh.ok(&["system", "check"]);
    assert!(media.contains("0 problems"), "{media}");
    let exported = fresh.path("fs.tar");
    fresh.ok(&[
        "export",
        "example.com/tools/busybox:v2",
        "-o",
        exported.to_str().unwrap(),
    ]);
    let listing = tool("tar", &["-tf", exported.to_str().unwrap()]);
    assert!(listing.contains("bin/busybox"));
}

#[test]
fn load_rejects_a_blob_that_does_not_match_its_name() {
    let rb = Rbuild::new();
    rb.import_tree("app", &[("f", "content")]);
    let archive = rb.path("a.tar");
    rb.ok(&["save", "app", "-o", archive.to_str().unwrap()]);
    let dir = rb.path("x");
    std::fs::create_dir(&dir).unwrap();
    tool(
        "tar",
        &[
            "-C",
            dir.to_str().unwrap(),
            "-xf",
            archive.to_str().unwrap(),
        ],
    );
    // Corrupt the layer (the biggest blob).
    let blobs = dir.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    let bad = rb.path("bad.tar");
    tool(
        "tar",
        &[
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            bad.to_str().unwrap(),
            ".",
        ],
    );
    let fresh = Rbuild::new();
    let r = fresh.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert!(
        r.stderr.contains("does not match its digest"),
        "{}",
        r.stderr
    );
    assert_eq!(fresh.ok(&["images", "-q"]).trim(), "");
}

/// Docker before 25 wrote `<id>/layer.tar`, `<config hex>.json`, and
/// symlinks between layer directories for shared layers.
#[test]
fn legacy_docker_archive_with_symlinked_layers_loads() {
    use rbuild_solver::Digest;
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    layer
        .append_data(&mut h, "hello.txt", &b"hi\n"[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let config_digest = Digest::of(config.as_bytes());
    let config2 = config.replace("\"sh\"", "\"ls\"");
    let config2_digest = Digest::of(config2.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["legacy:1"],"Layers":["aaa/layer.tar"]}},{{"Config":"{}.json","RepoTags":["legacy:2"],"Layers":["bbb/layer.tar"]}}]"#,
        config_digest.hex(),
        config2_digest.hex()
    );

    let mut out = tar::Builder::new(Vec::new());
    let file = |out: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, name, data).unwrap();
    };
    file(&mut out, "aaa/VERSION", b"1.0");
    file(&mut out, "aaa/json", b"{}");
    file(&mut out, "aaa/layer.tar", &layer);
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    out.append_link(&mut link, "bbb/layer.tar", "../aaa/layer.tar")
        .unwrap();
    file(
        &mut out,
        &format!("{}.json", config_digest.hex()),
        config.as_bytes(),
    );
    file(
        &mut out,
        &format!("{}.json", config2_digest.hex()),
        config2.as_bytes(),
    );
    file(&mut out, "manifest.json", manifest.as_bytes());
    file(&mut out, "repositories", b"{}");
    let archive = out.into_inner().unwrap();

    let rb = Rbuild::new();
    let r = rb.run_with_stdin(&["load"], Some(&archive));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Loaded image: legacy:1\nLoaded image: legacy:2\n");
    assert_eq!(id_of(&rb, "legacy:1"), config_digest.to_string());
    assert_eq!(id_of(&rb, "legacy:2"), config2_digest.to_string());
    let fs_tar = rb.path("fs.tar");
    rb.ok(&["export", "legacy:2", "-o", fs_tar.to_str().unwrap()]);
    assert!(tool("tar", &["-tf", fs_tar.to_str().unwrap()]).contains("hello.txt"));
    rb.ok(&["system", "check"]);
}

#[test]
fn loading_over_an_existing_tag_says_the_old_image_is_renamed() {
    let rb = Rbuild::new();
    let first = rb.import_tree("app", &[("f", "1")]);
    let archive = rb.path("a.tar");
    rb.ok(&["save", "app", "-o", archive.to_str().unwrap()]);
    let second = rb.import_tree("app", &[("f", "2")]);
    let out = rb.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "The image app:latest already exists, renaming the old one with ID {second} to empty string\nLoaded image: app:latest\n"
        )
    );
    assert_eq!(id_of(&rb, "app"), first);
    // Loading the same archive again changes nothing and says only "Loaded".
    assert_eq!(
        rb.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: app:latest\n"
    );
}

#[test]
fn load_of_something_that_is_not_a_tar_says_so() {
    let rb = Rbuild::new();
    let junk = rb.path("junk");
    std::fs::write(&junk, "root:x:0:0:root:/root:/bin/sh\n".repeat(40)).unwrap();
    let r = rb.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert!(r.stderr.contains("not a tar archive"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("root:x"),
        "no raw bytes in the message: {}",
        r.stderr
    );
}
