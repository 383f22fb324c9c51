//! Multi-platform builds (issue 15): `--platform linux/amd64,linux/arm64`
//! into one image index, arm64 steps under qemu-user (binfmt_misc), the
//! index in the store, in an OCI archive and on a registry. The arm64
//! busybox comes from Debian's busybox-static:arm64
//! (testdata/make-busybox-multiarch); skipped, saying so, without it or
//! without a usable qemu-aarch64 registration.

mod support;

use std::collections::HashMap;

use serde_json::Value;
use support::registry::Registry;
use support::{Rbuild, repo_root, s, skipped, tool};

/// A store holding busybox:multiarch (linux/amd64 + linux/arm64), or
/// `None` when this machine cannot build it (said as SKIPPED).
fn multiarch(test: &str) -> Option<Rbuild> {
    let emu = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    let flags = emu.lines().find(|l| l.starts_with("flags:")).unwrap_or("");
    if !emu.starts_with("enabled") || !flags.contains('F') {
        skipped(
            test,
            "no qemu-aarch64 registered with binfmt_misc (F flag); run scripts/install-deps as root",
        );
        return None;
    }
    let rb = Rbuild::new();
    let out = std::process::Command::new(repo_root().join("testdata/make-busybox-multiarch"))
        .arg(support::bin())
        .arg(rb.root())
        .output()
        .unwrap();
    if out.status.code() == Some(3) {
        skipped(test, &String::from_utf8_lossy(&out.stderr));
        return None;
    }
    assert!(
        out.status.success(),
        "make-busybox-multiarch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(rb)
}

const DOCKERFILE: &str = "\
FROM --platform=$BUILDPLATFORM busybox:multiarch AS host
ARG BUILDPLATFORM
RUN echo \"built on $BUILDPLATFORM $(uname -m)\" > /host.txt
FROM busybox:multiarch
ARG TARGETPLATFORM TARGETARCH
COPY --from=host /host.txt /
RUN uname -m > /arch.txt && echo \"$TARGETPLATFORM $TARGETARCH\" > /target.txt
";

fn ok(rb: &Rbuild, args: &[&str]) -> support::Run {
    let r = rb.run(args);
    assert_eq!(r.code, 0, "rbuild {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// `#N DONE` lines per step name in plain progress.
fn executed(stderr: &str) -> HashMap<String, usize> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    for line in stderr.lines() {
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        if rest.starts_with('[') {
            names.insert(id.to_string(), rest.to_string());
        } else if rest.starts_with("DONE")
            && let Some(n) = names.get(id)
        {
            *done.entry(n.clone()).or_default() += 1;
        }
    }
    done
}

#[test]
fn two_platform_build_makes_an_index_runs_arm64_under_qemu_and_shares_the_build_platform_stage() {
    let Some(rb) = multiarch("two_platform_build") else {
        return;
    };
    let ctx = rb.tree("ctx", &[("Dockerfile", DOCKERFILE)]);
    let oci = rb.path("app.tar");
    let r = ok(
        &rb,
        &[
            "build",
            "--progress=plain",
            "--no-cache",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "app:multi",
            "-o",
            &format!("type=oci,dest={}", s(&oci)),
            s(&ctx),
        ],
    );
    // Steps named with their platform, as BuildKit shows them.
    assert!(
        r.stderr.contains("[linux/arm64 stage-1 3/3] RUN uname -m"),
        "{}",
        r.stderr
    );
    // The $BUILDPLATFORM stage ran once for both platforms.
    let done = executed(&r.stderr);
    let host_runs: usize = done
        .iter()
        .filter(|(n, _)| n.contains("host 2/2] RUN"))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(host_runs, 1, "{done:?}\n{}", r.stderr);

    // One index, two manifests with the right config architectures.
    for (platform, arch, uname) in [
        ("linux/amd64", "amd64", "x86_64"),
        ("linux/arm64", "arm64", "aarch64"),
    ] {
        let inspect = ok(&rb, &["inspect", "--platform", platform, "app:multi"]).stdout;
        let v: Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(v[0]["Architecture"], arch, "{inspect}");
        let out = ok(
            &rb,
            &[
                "run",
                "--platform",
                platform,
                "app:multi",
                "cat",
                "/arch.txt",
                "/target.txt",
                "/host.txt",
            ],
        )
        .stdout;
        assert_eq!(
            out,
            format!("{uname}\n{platform} {arch}\nbuilt on linux/amd64 x86_64\n"),
            "{platform}"
        );
    }
    // Without --platform: the host's.
    assert_eq!(
        ok(&rb, &["run", "app:multi", "cat", "/arch.txt"]).stdout,
        "x86_64\n"
    );

    // The OCI archive holds the index with both platforms.
    let dir = rb.path("oci");
    std::fs::create_dir_all(&dir).unwrap();
    tool("tar", &["-xf", s(&oci), "-C", s(&dir)]);
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let top = &index["manifests"][0];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    let hex = top["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let inner: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let archs: Vec<&str> = inner["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci-archive:{}", s(&oci))],
    );
    assert!(raw.contains("\"arm64\""), "{raw}");
}

#[test]
fn pushed_index_is_pulled_for_arm64_by_a_fresh_root_and_runs() {
    let Some(rb) = multiarch("pushed_index") else {
        return;
    };
    let reg = Registry::start(None);
    let ctx = rb.tree("ctx", &[("Dockerfile", DOCKERFILE)]);
    let name = format!("{}/app:multi", reg.host());
    ok(
        &rb,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &name,
            "--push",
            s(&ctx),
        ],
    );
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    let v: Value = serde_json::from_str(&raw).unwrap();
    // Docker media types by default: a manifest list.
    assert_eq!(
        v["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json",
        "{raw}"
    );
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let fresh = Rbuild::new();
    ok(&fresh, &["pull", "-q", "--platform", "linux/arm64", &name]);
    let out = ok(
        &fresh,
        &[
            "run",
            "--platform",
            "linux/arm64",
            &name,
            "cat",
            "/arch.txt",
        ],
    )
    .stdout;
    assert_eq!(out, "aarch64\n");
    let out = ok(&fresh, &["run", &name, "uname", "-m"]).stdout;
    assert_eq!(out, "aarch64\n", "the pulled image is the arm64 one");

    // Regression: `rbuild push` of a multi-platform tag pushed the host's
    // image only. It pushes every platform and the index.
    let again = format!("{}/app:pushed-later", reg.host());
    ok(&rb, &["tag", &name, &again]);
    ok(&rb, &["push", "-q", &again]);
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{again}"),
        ],
    );
    let v: Value = serde_json::from_str(&raw).unwrap();
    let archs: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{raw}");
}

#[test]
fn bad_platforms_fail_naming_the_flag_or_the_image_and_tag_nothing() {
    let Some(rb) = multiarch("bad_platforms") else {
        return;
    };
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox:multiarch\nCOPY Dockerfile /\n")],
    );
    let r = rb.run(&[
        "build",
        "--platform",
        "linux/amd64,linux/foo",
        "-t",
        "bad:1",
        s(&ctx),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--platform") && r.stderr.contains("linux/foo"),
        "{}",
        r.stderr
    );
    let r = rb.run(&[
        "build",
        "--platform",
        "linux/amd64,linux/s390x",
        "-t",
        "bad:1",
        s(&ctx),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("no match for platform in manifest")
            && r.stderr.contains("busybox:multiarch"),
        "{}",
        r.stderr
    );
    // A RUN for a platform with no emulator: refused before anything runs.
    let run_ctx = rb.tree(
        "run",
        &[("Dockerfile", "FROM busybox:multiarch\nRUN true\n")],
    );
    let r = rb.run(&[
        "build",
        "--platform",
        "linux/amd64,linux/sparc64",
        "-t",
        "bad:1",
        s(&run_ctx),
    ]);
    assert_ne!(r.code, 0);
    let r = rb.run(&[
        "build",
        "--platform",
        "linux/amd64,linux/mips64le",
        "-t",
        "bad:1",
        s(&run_ctx),
    ]);
    assert_ne!(r.code, 0);
    if !std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-mips64el").exists() {
        assert!(
            r.stderr.contains("linux/mips64le") && r.stderr.contains("qemu-user-static"),
            "{}",
            r.stderr
        );
    }
    let images = rb.run(&["images"]).stdout;
    assert!(!images.contains("bad"), "{images}");
}

/// InvalidBaseImagePlatform during a build (no emulation needed: the
/// Dockerfile runs nothing): a single-platform arm64 base in an amd64
/// build warns, in an arm64 build it does not.
#[test]
fn a_base_image_of_another_platform_is_warned_about_during_the_build() {
    let rb = Rbuild::new();
    let tree = rb.tree("rootfs", &[("etc/hello", "hi\n")]);
    ok(
        &rb,
        &["import", "--platform", "linux/arm64", s(&tree), "armonly:1"],
    );
    let inspect = ok(&rb, &["inspect", "armonly:1"]).stdout;
    assert!(inspect.contains("\"Architecture\": \"arm64\""), "{inspect}");
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM armonly:1\nCOPY Dockerfile /\n")],
    );
    let r = ok(
        &rb,
        &[
            "build",
            "--progress=plain",
            "--platform",
            "linux/amd64",
            s(&ctx),
        ],
    );
    assert!(
        r.stderr.contains(
            "InvalidBaseImagePlatform: Base image armonly:1 was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build (line 1)"
        ),
        "{}",
        r.stderr
    );
    let r = ok(
        &rb,
        &[
            "build",
            "--progress=plain",
            "--platform",
            "linux/arm64",
            s(&ctx),
        ],
    );
    assert!(
        !r.stderr.contains("InvalidBaseImagePlatform"),
        "{}",
        r.stderr
    );
    // A single-platform image asked for as another platform.
    let r = rb.run(&["run", "--platform", "linux/s390x", "armonly:1", "true"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("does not match the specified platform"),
        "{}",
        r.stderr
    );
}

/// A tag naming an index: listed once (the host's image, or
/// `--platform`'s), retagged and removed as a whole, and gc keeps every
/// platform's blobs while a tag names the index.
#[test]
fn an_index_tag_is_listed_tagged_removed_and_kept_by_gc_as_a_whole() {
    let Some(rb) = multiarch("index_tag") else {
        return;
    };
    let ctx = rb.tree("ctx", &[("Dockerfile", DOCKERFILE)]);
    let meta = rb.path("meta.json");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "app:multi",
            "--metadata-file",
            s(&meta),
            s(&ctx),
        ],
    );
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{meta}"
    );
    let listed = ok(&rb, &["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout;
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("app:")).count(),
        1,
        "{listed}"
    );
    assert!(!listed.contains("<none>"), "{listed}");
    let arm = ok(&rb, &["images", "-q", "--platform", "linux/arm64", "app"]).stdout;
    let amd = ok(&rb, &["images", "-q", "--platform", "linux/amd64", "app"]).stdout;
    assert_ne!(arm, amd, "each platform's image has its own ID");
    assert_eq!(
        ok(&rb, &["images", "-q", "--platform", "linux/s390x"]).stdout,
        ""
    );
    ok(&rb, &["tag", "app:multi", "app:copy"]);
    ok(&rb, &["rmi", "app:multi"]);
    ok(&rb, &["image", "prune", "-f"]);
    ok(&rb, &["cache", "prune", "-a", "-f"]);
    let check = ok(&rb, &["system", "check"]).stdout;
    assert!(check.contains("0 problems"), "{check}");
    for (p, uname) in [("linux/arm64", "aarch64\n"), ("linux/amd64", "x86_64\n")] {
        assert_eq!(
            ok(
                &rb,
                &["run", "--platform", p, "app:copy", "cat", "/arch.txt"]
            )
            .stdout,
            uname
        );
    }
    let saved = rb.path("arm.tar");
    ok(
        &rb,
        &[
            "save",
            "--platform",
            "linux/arm64",
            "-o",
            s(&saved),
            "app:copy",
        ],
    );
    let fresh = Rbuild::new();
    ok(&fresh, &["load", "-i", s(&saved)]);
    let inspect = ok(&fresh, &["inspect", "app:copy"]).stdout;
    assert!(inspect.contains("\"Architecture\": \"arm64\""), "{inspect}");

    // Regression: `save` of a multi-platform tag without --platform wrote
    // the host's image only. The archive holds the index and every
    // platform's manifest, config and layers.
    let all = rb.path("all.tar");
    ok(&rb, &["save", "--format", "oci", "-o", s(&all), "app:copy"]);
    let dir = rb.path("all");
    std::fs::create_dir_all(&dir).unwrap();
    tool("tar", &["-xf", s(&all), "-C", s(&dir)]);
    let blob = |d: &str| {
        let hex = d.trim_start_matches("sha256:");
        std::fs::read_to_string(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let top: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(top["manifests"].as_array().unwrap().len(), 1, "{top}");
    let index: Value =
        serde_json::from_str(&blob(top["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut archs = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let manifest: Value = serde_json::from_str(&blob(m["digest"].as_str().unwrap())).unwrap();
        let config: Value =
            serde_json::from_str(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        for l in manifest["layers"].as_array().unwrap() {
            let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            assert!(dir.join("blobs/sha256").join(hex).exists(), "layer {hex}");
        }
        archs.push(config["architecture"].as_str().unwrap().to_string());
    }
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"]);
}

/// A bake target with several `platforms` is one multi-platform build.
#[test]
fn a_bake_target_with_two_platforms_makes_an_index() {
    let Some(rb) = multiarch("bake_platforms") else {
        return;
    };
    let ctx = rb.tree(
        "bake",
        &[
            ("Dockerfile", DOCKERFILE),
            (
                "docker-bake.hcl",
                "target \"default\" {\n  tags = [\"bk:multi\"]\n  platforms = [\"linux/amd64\", \"linux/arm64\"]\n}\n",
            ),
        ],
    );
    let mut c = rb.command(&["bake", "--progress=plain"]);
    c.current_dir(&ctx);
    let r = support::run_command(c, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("[default linux/arm64 stage-1 3/3] RUN"),
        "{}",
        r.stderr
    );
    assert_eq!(
        ok(
            &rb,
            &[
                "run",
                "--platform",
                "linux/arm64",
                "bk:multi",
                "cat",
                "/arch.txt"
            ]
        )
        .stdout,
        "aarch64\n"
    );
}

/// Attestations of a two-platform build: one attestation manifest per
/// platform in the index, in BuildKit's layout, in an OCI archive and in
/// a push (they were refused).
#[test]
fn a_two_platform_build_carries_an_attestation_manifest_per_platform() {
    let Some(rb) = multiarch("attested_index") else {
        return;
    };
    let reg = Registry::start(None);
    let ctx = rb.tree("ctx", &[("Dockerfile", DOCKERFILE)]);
    let name = format!("{}/app:attested", reg.host());
    let tar = rb.path("attested.tar");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "--provenance=mode=max",
            "--sbom=true",
            "-t",
            &name,
            "--push",
            "-o",
            &format!("type=oci,dest={}", s(&tar)),
            s(&ctx),
        ],
    );
    let check = |index: &Value, blob: &dyn Fn(&str) -> String| {
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 4, "{index}");
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let images: Vec<&Value> = entries
            .iter()
            .filter(|e| e["platform"]["os"] == "linux")
            .collect();
        let atts: Vec<&Value> = entries
            .iter()
            .filter(|e| e["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
            .collect();
        assert_eq!((images.len(), atts.len()), (2, 2), "{index}");
        for img in &images {
            let digest = img["digest"].as_str().unwrap();
            let att = atts
                .iter()
                .find(|a| a["annotations"]["vnd.docker.reference.digest"] == digest)
                .unwrap_or_else(|| panic!("no attestation of {digest}: {index}"));
            let manifest: Value =
                serde_json::from_str(&blob(att["digest"].as_str().unwrap())).unwrap();
            let mut types: Vec<String> = Vec::new();
            for l in manifest["layers"].as_array().unwrap() {
                let statement: Value =
                    serde_json::from_str(&blob(l["digest"].as_str().unwrap())).unwrap();
                assert_eq!(
                    statement["subject"][0]["digest"]["sha256"],
                    digest.trim_start_matches("sha256:"),
                    "the statement is about its platform's manifest"
                );
                types.push(
                    l["annotations"]["in-toto.io/predicate-type"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            types.sort();
            assert_eq!(
                types,
                [
                    "https://slsa.dev/provenance/v0.2",
                    "https://spdx.dev/Document"
                ],
                "{manifest}"
            );
        }
    };
    // The OCI archive.
    let dir = rb.path("attested");
    std::fs::create_dir_all(&dir).unwrap();
    tool("tar", &["-xf", s(&tar), "-C", s(&dir)]);
    let from_tar = |d: &str| {
        std::fs::read_to_string(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let top: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let index: Value =
        serde_json::from_str(&from_tar(top["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    check(&index, &from_tar);
    // The registry.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    // Manifests and blobs alike: distribution keeps them all as blobs.
    let from_registry = |d: &str| std::fs::read_to_string(reg.blob_data(d)).unwrap();
    check(&index, &from_registry);
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `oci-image-tool validate` (Debian's 1.0.0-rc1) over an unpacked OCI
/// layout; its tar mode cannot walk any archive (skopeo's neither), so
/// the tests unpack first.
fn oci_image_tool(args: &[&str]) -> support::Run {
    let mut c = std::process::Command::new("oci-image-tool");
    c.args(args);
    support::run_command(c, None)
}

fn unpacked(rb: &Rbuild, tar: &std::path::Path, name: &str) -> std::path::PathBuf {
    let dir = rb.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    tool("tar", &["-xf", s(tar), "-C", s(&dir)]);
    dir
}

#[test]
fn oci_image_tool_validates_and_umoci_unpacks_what_rbuild_writes() {
    if !on_path("oci-image-tool") || !on_path("umoci") {
        skipped(
            "oci_image_tool_validates",
            "oci-image-tool or umoci missing; run scripts/install-deps",
        );
        return;
    }
    let Some(rb) = multiarch("oci_image_tool_validates") else {
        return;
    };
    let ctx = rb.tree("ctx", &[("Dockerfile", DOCKERFILE)]);
    // Single platform, bare manifest; two platforms; two platforms with
    // attestations.
    let cases: [(&str, &[&str]); 3] = [
        ("single", &["--platform", "linux/amd64"]),
        ("multi", &["--platform", "linux/amd64,linux/arm64"]),
        (
            "attested",
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "--provenance=mode=max",
                "--sbom=true",
            ],
        ),
    ];
    for (name, flags) in cases {
        let tar = rb.path(&format!("{name}.tar"));
        let mut args = vec!["build", "-q", "-t"];
        let tag = format!("app:{name}");
        args.push(&tag);
        args.extend_from_slice(flags);
        let out = format!("type=oci,dest={}", s(&tar));
        args.extend(["-o", &out, s(&ctx)]);
        ok(&rb, &args);
        let dir = unpacked(&rb, &tar, name);
        if name != "attested" {
            // The whole layout: index.json, every manifest, config and
            // layer.
            let r = oci_image_tool(&["validate", "--type", "image", s(&dir)]);
            assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
            assert!(r.stdout.contains("Validation succeeded"), "{}", r.stdout);
            continue;
        }
        // rc1 predates OCI 1.1's artifact layers: its layout walk refuses
        // `application/vnd.in-toto+json` layers (BuildKit's layout fails
        // the same way), so each blob is validated against its schema.
        let top: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap())
                .unwrap();
        let blob = |d: &str| {
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let index_digest = top["manifests"][0]["digest"].as_str().unwrap();
        let r = oci_image_tool(&["validate", "--type", "imageIndex", s(&blob(index_digest))]);
        assert_eq!(r.code, 0, "index: {}\n{}", r.stdout, r.stderr);
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(blob(index_digest)).unwrap()).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 4);
        for m in entries {
            let path = blob(m["digest"].as_str().unwrap());
            let r = oci_image_tool(&["validate", "--type", "manifest", s(&path)]);
            assert_eq!(r.code, 0, "{m}: {}\n{}", r.stdout, r.stderr);
            let manifest: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let config = blob(manifest["config"]["digest"].as_str().unwrap());
            let r = oci_image_tool(&["validate", "--type", "config", s(&config)]);
            assert_eq!(r.code, 0, "config of {m}: {}\n{}", r.stdout, r.stderr);
        }
    }

    // umoci 0.4.7 (and its current source: casext.ResolveReference
    // collects every manifest under the tag) refuses a tag naming an
    // index of more than one manifest: "tag is ambiguous".
    let multi = unpacked(&rb, &rb.path("multi.tar"), "multi-umoci");
    let r = {
        let mut c = std::process::Command::new("umoci");
        c.args([
            "unpack",
            "--image",
            &format!("{}:multi", s(&multi)),
            s(&rb.path("bundle-x")),
        ]);
        support::run_command(c, None)
    };
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("tag is ambiguous"), "{}", r.stderr);
    // What works: one platform's image, by `rbuild save --platform` …
    let arm = rb.path("arm64.tar");
    ok(
        &rb,
        &[
            "save",
            "--format",
            "oci",
            "--platform",
            "linux/arm64",
            "-o",
            s(&arm),
            "app:attested",
        ],
    );
    let arm_dir = unpacked(&rb, &arm, "arm64");
    let umoci_unpack = |layout: &std::path::Path, tag: &str, bundle: &str| {
        let mut c = std::process::Command::new("umoci");
        c.args(["unpack"]);
        if tool("id", &["-u"]).trim() != "0" {
            c.arg("--rootless");
        }
        c.args([
            "--image",
            &format!("{}:{tag}", s(layout)),
            s(&rb.path(bundle)),
        ]);
        let r = support::run_command(c, None);
        assert_eq!(r.code, 0, "umoci unpack {tag}: {}", r.stderr);
        std::fs::read_to_string(rb.path(bundle).join("rootfs/target.txt")).unwrap()
    };
    assert_eq!(
        umoci_unpack(&arm_dir, "attested", "bundle-arm"),
        "linux/arm64 arm64\n"
    );
    // … or by skopeo choosing a platform out of the multi-platform
    // archive into an OCI directory.
    let picked = rb.path("picked");
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            "--override-os",
            "linux",
            "--override-arch",
            "arm64",
            &format!("oci-archive:{}:multi", s(&rb.path("multi.tar"))),
            &format!("oci:{}:arm64", s(&picked)),
        ],
    );
    assert_eq!(
        umoci_unpack(&picked, "arm64", "bundle-picked"),
        "linux/arm64 arm64\n"
    );
}
