//! Compressed layers on push, image archives and cache exports, as
//! BuildKit's exporters: `compression=gzip|zstd|uncompressed`,
//! `compression-level=`, `force-compression=`, `oci-mediatypes=`,
//! `type=registry`, `rbuild push --compression-format`, annotations; and
//! what a bad value does (names the flag, pushes and tags nothing).
//! Against a real registry (`docker-registry`) on 127.0.0.1, read back
//! with `skopeo` and a fresh rbuild store.

mod support;

use std::io::Read;

use serde_json::Value;
use support::registry::Registry;
use support::{Rbuild, Run, s, skipped, tool};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

fn rb_run(rb: &Rbuild, args: &[&str]) -> Run {
    support::run_command(rb.private_command(args), None)
}

fn ok(rb: &Rbuild, args: &[&str]) -> String {
    let r = rb_run(rb, args);
    assert_eq!(r.code, 0, "rbuild {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// A context whose image adds one ~2 MiB, very compressible layer on
/// busybox.
fn context(rb: &Rbuild) -> std::path::PathBuf {
    let line = "the same line of text, again and again, compresses well\n";
    rb.tree(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY data.txt /data.txt\nRUN echo built > /msg\nCMD cat /msg\n",
            ),
            ("data.txt", &line.repeat(2 * 1024 * 1024 / line.len())),
        ],
    )
}

/// `skopeo inspect --raw docker://NAME`: the manifest as the registry
/// serves it.
fn raw_manifest(name: &str) -> Value {
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    serde_json::from_str(&raw).unwrap()
}

/// The first bytes of blob `digest` in the registry.
fn blob_head(reg: &Registry, digest: &str) -> Vec<u8> {
    let mut head = [0u8; 4];
    std::fs::File::open(reg.blob_data(digest))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    head.to_vec()
}

fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Pulls `name` into a fresh store and runs it.
fn pull_and_run(name: &str) -> String {
    let fresh = Rbuild::new();
    ok(&fresh, &["pull", name]);
    ok(&fresh, &["run", "--rm", name])
}

#[test]
fn build_push_sends_gzip_layers_with_docker_media_types_by_default() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    let name = format!("{}/app:gz", reg.host());
    let meta = rb.path("meta.json");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-t",
            &name,
            "--push",
            "--metadata-file",
            s(&meta),
            s(&ctx),
        ],
    );
    let m = raw_manifest(&name);
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        layer_types(&m),
        vec!["application/vnd.docker.image.rootfs.diff.tar.gzip"; 3]
    );
    for d in layer_digests(&m) {
        assert_eq!(&blob_head(&reg, &d)[..2], GZIP_MAGIC);
    }
    // The 2 MiB data layer went out as a few KiB.
    let data_layer = m["layers"][1]["size"].as_u64().unwrap();
    assert!(data_layer < 64 * 1024, "{data_layer}");
    // The metadata names what was pushed; the tag in the store names it
    // too, with the same image ID.
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let pushed = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{name}"),
        ],
    );
    assert_eq!(meta["containerimage.digest"], pushed.trim());
    let inspect: Value = serde_json::from_str(&ok(&rb, &["inspect", &name])).unwrap();
    assert!(
        inspect[0]["RepoDigests"][0]
            .as_str()
            .unwrap()
            .ends_with(pushed.trim()),
        "{inspect}"
    );
    // The image is listed once, under its pushed manifest (no dangling
    // entry for the manifest the build wrote).
    let images = ok(&rb, &["images"]);
    assert!(!images.contains("<none>"), "{images}");
    // skopeo copies it (verifying every blob) and a fresh store runs it.
    let oci = rb.path("copied");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:x", oci.display()),
        ],
    );
    assert_eq!(pull_and_run(&name), "built\n");
}

#[test]
fn a_layer_is_compressed_once_then_reused_by_digest_and_mounted_across_repositories() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    let first = format!("{}/one/app:1", reg.host());
    ok(&rb, &["build", "-q", "-t", &first, "--push", s(&ctx)]);
    let layers = layer_digests(&raw_manifest(&first));
    // The store keeps the variants: nothing is compressed or uploaded
    // again, under another tag or another repository.
    let again = format!("{}/one/app:2", reg.host());
    ok(&rb, &["tag", &first, &again]);
    let out = ok(&rb, &["push", &again]);
    assert!(!out.contains("Pushed"), "{out}");
    let other = format!("{}/two/app:1", reg.host());
    ok(&rb, &["tag", &first, &other]);
    let out = ok(&rb, &["push", &other]);
    assert!(out.contains("Mounted from one/app"), "{out}");
    assert_eq!(layer_digests(&raw_manifest(&other)), layers);
    // A rebuild (fully cached) pushes the same manifest.
    let meta = rb.path("m.json");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-t",
            &first,
            "--push",
            "--metadata-file",
            s(&meta),
            s(&ctx),
        ],
    );
    assert_eq!(layer_digests(&raw_manifest(&first)), layers);
    // A cache export names the very blobs the image uses.
    let cache = rb.path("cache");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-t",
            &first,
            "--cache-to",
            &format!("type=local,dest={}", cache.display()),
            s(&ctx),
        ],
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(cache.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let cache_manifest: Value = serde_json::from_slice(
        &std::fs::read(support::blob_path(&cache, manifest_digest)).unwrap(),
    )
    .unwrap();
    let cached = layer_digests(&cache_manifest);
    for l in &layers {
        assert!(cached.contains(l), "{l} in the cache's {cached:?}");
    }
    ok(&rb, &["system", "check"]);
}

#[test]
fn zstd_and_uncompressed_outputs_and_rbuild_push_flags() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    // zstd with OCI media types: what rbuild (and containerd) pull.
    let z = format!("{}/app:zstd", reg.host());
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-o",
            &format!(
                "type=registry,name={z},compression=zstd,compression-level=9,oci-mediatypes=true,force-compression=true"
            ),
            s(&ctx),
        ],
    );
    let m = raw_manifest(&z);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        layer_types(&m),
        vec!["application/vnd.oci.image.layer.v1.tar+zstd"; 3]
    );
    for d in layer_digests(&m) {
        assert_eq!(blob_head(&reg, &d), ZSTD_MAGIC);
    }
    assert_eq!(pull_and_run(&z), "built\n");
    // zstd with Docker media types (the registry output's default), as
    // BuildKit and containerd name it; the layers are the same blobs.
    let zd = format!("{}/app:zstd-docker", reg.host());
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-o",
            &format!("type=registry,name={zd},compression=zstd,compression-level=9"),
            s(&ctx),
        ],
    );
    let md = raw_manifest(&zd);
    assert_eq!(
        layer_types(&md),
        vec!["application/vnd.docker.image.rootfs.diff.tar.zstd"; 3]
    );
    assert_eq!(
        layer_digests(&md),
        layer_digests(&m),
        "the variants are reused"
    );
    assert_eq!(pull_and_run(&zd), "built\n");

    // Uncompressed: each layer's digest is its diffID.
    let u = format!("{}/app:plain", reg.host());
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-o",
            &format!("type=image,name={u},push=true,compression=uncompressed"),
            s(&ctx),
        ],
    );
    let m = raw_manifest(&u);
    assert_eq!(
        layer_types(&m),
        vec!["application/vnd.docker.image.rootfs.diff.tar"; 3]
    );
    let config: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{u}"),
        ],
    ))
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        layer_digests(&m)
    );
    assert_eq!(pull_and_run(&u), "built\n");

    // `rbuild push` of a built image: gzip by default; podman's flags.
    let local = "local-app:1";
    ok(&rb, &["build", "-q", "-t", local, s(&ctx)]);
    let p = format!("{}/pushed:1", reg.host());
    ok(&rb, &["tag", local, &p]);
    ok(&rb, &["push", "-q", &p]);
    assert_eq!(
        layer_types(&raw_manifest(&p)),
        vec!["application/vnd.docker.image.rootfs.diff.tar.gzip"; 3]
    );
    let pz = format!("{}/pushed:zstd", reg.host());
    ok(&rb, &["tag", local, &pz]);
    ok(
        &rb,
        &[
            "push",
            "-q",
            "--compression-format",
            "zstd",
            "--format",
            "oci",
            "--force-compression",
            &pz,
        ],
    );
    assert_eq!(
        layer_types(&raw_manifest(&pz)),
        vec!["application/vnd.oci.image.layer.v1.tar+zstd"; 3]
    );
}

#[test]
fn image_archives_carry_compressed_layers_and_annotations() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    let oci = rb.path("app.oci.tar");
    let meta = rb.path("oci.json");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "--metadata-file",
            s(&meta),
            "-t",
            "app:1",
            "--annotation",
            "org.opencontainers.image.title=app",
            "--annotation",
            "manifest-descriptor:com.example.where=index",
            "--annotation",
            "manifest[linux/s390x]:com.example.other=not-ours",
            "-o",
            &format!(
                "type=oci,dest={},annotation.com.example.attr=yes",
                oci.display()
            ),
            s(&ctx),
        ],
    );
    let dir = rb.path("oci");
    std::fs::create_dir_all(&dir).unwrap();
    tool("tar", &["-xf", s(&oci), "-C", s(&dir)]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let desc = &index["manifests"][0];
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(desc["annotations"]["com.example.where"], "index");
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.digest"], desc["digest"],
        "the metadata names the archive's manifest"
    );
    let m: Value = serde_json::from_slice(
        &std::fs::read(support::blob_path(&dir, desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        layer_types(&m),
        vec!["application/vnd.oci.image.layer.v1.tar+gzip"; 3]
    );
    assert_eq!(m["annotations"]["org.opencontainers.image.title"], "app");
    assert_eq!(m["annotations"]["com.example.attr"], "yes");
    assert!(m["annotations"].get("com.example.other").is_none(), "{m}");
    // OCI tools read it, and a fresh store loads and runs it.
    tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}:1", oci.display())],
    );
    let fresh = Rbuild::new();
    ok(&fresh, &["load", "-i", s(&oci)]);
    assert_eq!(ok(&fresh, &["run", "--rm", "app:1"]), "built\n");

    // A docker archive: Docker media types by default, gzip layers.
    let docker = rb.path("app.docker.tar");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-t",
            "app:1",
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            s(&ctx),
        ],
    );
    let fresh = Rbuild::new();
    ok(&fresh, &["load", "-i", s(&docker)]);
    assert_eq!(ok(&fresh, &["run", "--rm", "app:1"]), "built\n");
    let dir = rb.path("docker");
    std::fs::create_dir_all(&dir).unwrap();
    tool("tar", &["-xf", s(&docker), "-C", s(&dir)]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

/// Every request the registry got that writes something.
fn writes(reg: &Registry) -> Vec<String> {
    reg.access_log()
        .lines()
        .filter(|l| l.contains("\"PUT ") || l.contains("\"POST ") || l.contains("\"PATCH "))
        .map(str::to_string)
        .collect()
}

#[test]
fn bad_compression_values_and_epochs_name_the_flag_and_push_or_tag_nothing() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    let name = format!("{}/bad:1", reg.host());
    // (flags, environment, what stderr says)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["-o", "type=registry,compression=lz4"],
            &[],
            "--output compression=\"lz4\"",
        ),
        (
            &["-o", "type=registry,compression-level=fast"],
            &[],
            "--output compression-level=\"fast\": expected a number",
        ),
        (
            &["-o", "type=registry,compression-level=10"],
            &[],
            "gzip levels are 0 to 9",
        ),
        (
            &[
                "--push",
                "--cache-to",
                "type=local,dest=/tmp/x,compression=xz",
            ],
            &[],
            "--cache-to compression=\"xz\"",
        ),
        (
            &["--push"],
            &[("SOURCE_DATE_EPOCH", "yesterday")],
            "invalid SOURCE_DATE_EPOCH (environment) \"yesterday\"",
        ),
        (
            &["--push", "--build-arg", "SOURCE_DATE_EPOCH=1.5e9"],
            &[],
            "invalid --build-arg SOURCE_DATE_EPOCH \"1.5e9\"",
        ),
        (
            &["-o", "type=registry,rewrite-timestamp=true"],
            &[],
            "rewrite-timestamp=true needs SOURCE_DATE_EPOCH",
        ),
        (
            &["--push", "--annotation", "index:a=b"],
            &[],
            "index annotations not supported for single platform export",
        ),
    ];
    for (flags, env, want) in cases {
        let mut args = vec!["build", "-q", "-t", name.as_str()];
        args.extend_from_slice(flags);
        args.push(s(&ctx));
        let mut c = rb.private_command(&args);
        c.env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in *env {
            c.env(k, v);
        }
        let r = support::run_command(c, None);
        assert_ne!(r.code, 0, "{args:?} should fail");
        assert!(
            r.stderr.contains(want),
            "{args:?}: {want:?} in:\n{}",
            r.stderr
        );
        assert!(!ok(&rb, &["images"]).contains("bad"), "{args:?} tagged");
    }
    // `rbuild push` flags too.
    ok(&rb, &["tag", "busybox", &name]);
    for (flags, want) in [
        (
            &["--compression-format", "lz4"][..],
            "unsupported compression \"lz4\"",
        ),
        (
            &["--compression-level", "max"][..],
            "invalid --compression-level \"max\"",
        ),
        (
            &["--compression-format", "zstd", "--compression-level", "23"][..],
            "invalid --compression-level 23",
        ),
    ] {
        let mut args = vec!["push"];
        args.extend_from_slice(flags);
        args.push(&name);
        let r = rb_run(&rb, &args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(want), "{want:?} in {}", r.stderr);
    }
    assert_eq!(writes(&reg), Vec::<String>::new(), "nothing was pushed");
}

/// docker 20.10 (a private daemon the test starts) pulls and runs what
/// rbuild pushed with gzip.
#[test]
fn docker_pulls_and_runs_what_rbuild_pushed_with_gzip() {
    const TEST: &str = "docker_pulls_and_runs_what_rbuild_pushed_with_gzip";
    let dockerd = match support::dockerd::Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            skipped(TEST, &why);
            return;
        }
    };
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = context(&rb);
    // docker reaches 127.0.0.0/8 over plain HTTP without configuration.
    let name = format!("{}/docker-reads:1", reg.host());
    ok(&rb, &["build", "-q", "-t", &name, "--push", s(&ctx)]);
    let docker = |args: &[&str]| {
        let o = dockerd.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    docker(&["pull", &name]);
    let out = docker(&["run", "--rm", "--network", "none", &name]);
    assert_eq!(out, "built\n");
}

#[test]
fn an_inline_cache_survives_a_compressed_push_and_pull() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let name = format!("{}/inline:1", reg.host());
    ok(
        &a,
        &[
            "build",
            "-q",
            "-t",
            &name,
            "--cache-to",
            "type=inline",
            "--push",
            s(&context(&a)),
        ],
    );
    // Another machine with the same base pulls the (gzip) image and
    // builds from its inline cache, whose records name the layers as they
    // were built (uncompressed).
    let base = a.path("base.tar");
    ok(&a, &["save", "-o", s(&base), "busybox"]);
    let b = Rbuild::new();
    ok(&b, &["load", "-i", s(&base)]);
    ok(&b, &["pull", &name]);
    let report = b.path("r.json");
    ok(
        &b,
        &[
            "build",
            "-q",
            "-t",
            "again:1",
            "--cache-from",
            &name,
            "--report",
            s(&report),
            s(&context(&b)),
        ],
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let executed: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "executed")
        .collect();
    assert!(executed.is_empty(), "{report}");
    assert_eq!(ok(&b, &["run", "--rm", "again:1"]), "built\n");
    ok(&b, &["system", "check"]);
}
