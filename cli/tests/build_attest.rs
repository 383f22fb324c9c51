//! Attestations as BuildKit attaches them: `--provenance[=mode=…]`,
//! `--sbom=true` and `--attest type=…` put an attestation manifest in an
//! image index beside the image (oci/docker archives, pushes), its
//! layers in-toto statements about the image manifest; bad values name
//! the flag and tag nothing; `rbuild sbom` lists an image's packages —
//! on a debootstrap'd Debian, exactly what `dpkg-query -W` lists.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::registry::Registry;
use support::{Rbuild, s, skipped, tool};

const SECRET: &str = "s3cr3t-value-never-in-provenance";

/// A busybox build reading a build arg and a secret.
fn context(rb: &Rbuild) -> PathBuf {
    rb.busybox();
    std::fs::write(rb.path("token"), SECRET).unwrap();
    rb.tree(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nARG GREETING=hi\nRUN --mount=type=secret,id=token,required=true cat /run/secrets/token >/dev/null && echo \"$GREETING\" > /greeting\n",
        )],
    )
}

/// An OCI archive unpacked: its blobs by digest.
struct Layout(PathBuf);

impl Layout {
    fn unpack(tar: &Path, dir: &Path) -> Layout {
        std::fs::create_dir_all(dir).unwrap();
        tool("tar", &["-xf", s(tar), "-C", s(dir)]);
        Layout(dir.to_path_buf())
    }
    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.bytes(digest)).unwrap()
    }
    fn bytes(&self, digest: &str) -> Vec<u8> {
        std::fs::read(support::blob_path(&self.0, digest)).unwrap()
    }
    fn index_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.0.join("index.json")).unwrap()).unwrap()
    }
}

fn digest(v: &Value) -> &str {
    v["digest"].as_str().unwrap()
}

/// The image index's two entries (image, attestation) and the
/// attestation's statements, checked for BuildKit's layout.
fn check_attested_index(index: &Value, blob: &dyn Fn(&str) -> Value) -> (String, Vec<Value>) {
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{index:#}");
    let image = &m[0];
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(image["platform"]["os"], "linux");
    let att = &m[1];
    assert_eq!(
        att["platform"],
        serde_json::json!({"architecture": "unknown", "os": "unknown"})
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image["digest"]
    );
    let att_manifest = blob(digest(att));
    assert_eq!(
        att_manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let mut statements = Vec::new();
    for layer in att_manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        let st = blob(digest(layer));
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v0.1");
        assert_eq!(
            layer["annotations"]["in-toto.io/predicate-type"],
            st["predicateType"]
        );
        let subject = &st["subject"][0];
        assert_eq!(
            format!("sha256:{}", subject["digest"]["sha256"].as_str().unwrap()),
            digest(image)
        );
        statements.push(st);
    }
    (digest(image).to_string(), statements)
}

fn predicate<'a>(statements: &'a [Value], kind: &str) -> &'a Value {
    &statements
        .iter()
        .find(|s| s["predicateType"] == kind)
        .unwrap_or_else(|| panic!("no {kind} statement"))["predicate"]
}

#[test]
fn oci_archive_carries_max_provenance_and_sbom_in_buildkits_layout() {
    let rb = Rbuild::new();
    let ctx = context(&rb);
    let tar = rb.path("x.tar");
    let meta = rb.path("meta.json");
    rb.ok(&[
        "build",
        "-q",
        "-t",
        "attested:1",
        "--build-arg",
        "GREETING=hello",
        "--secret",
        &format!("id=token,src={}", s(&rb.path("token"))),
        "--provenance=mode=max",
        "--sbom=true",
        "--metadata-file",
        s(&meta),
        "-o",
        &format!("type=oci,dest={}", s(&tar)),
        s(&ctx),
    ]);
    let layout = Layout::unpack(&tar, &rb.path("x"));
    let top = layout.index_json();
    let root = &top["manifests"][0];
    assert_eq!(root["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        root["annotations"]["io.containerd.image.name"],
        "docker.io/library/attested:1"
    );
    let index = layout.json(digest(root));
    let (image, statements) = check_attested_index(&index, &|d| layout.json(d));
    assert_eq!(
        statements[0]["subject"][0]["name"]
            .as_str()
            .unwrap()
            .split('?')
            .next(),
        Some("pkg:docker/attested@1")
    );

    let prov = predicate(&statements, "https://slsa.dev/provenance/v0.2");
    assert_eq!(prov["buildType"], "https://mobyproject.org/buildkit@v1");
    assert_eq!(
        prov["invocation"]["configSource"]["entryPoint"],
        "Dockerfile"
    );
    let params = &prov["invocation"]["parameters"];
    assert_eq!(params["frontend"], "dockerfile.v0");
    assert_eq!(params["args"]["build-arg:GREETING"], "hello");
    assert_eq!(params["secrets"], serde_json::json!([{"id": "token"}]));
    let material = &prov["materials"][0];
    assert!(
        material["uri"]
            .as_str()
            .unwrap()
            .starts_with("pkg:docker/busybox@latest?platform="),
        "{material}"
    );
    let busybox = rb.ok(&["inspect", "--format", "{{json .RepoDigests}}", "busybox"]);
    assert!(
        busybox.contains(material["digest"]["sha256"].as_str().unwrap()),
        "{busybox} vs {material}"
    );
    assert!(prov["metadata"]["buildStartedOn"].is_string());
    assert_eq!(prov["metadata"]["completeness"]["parameters"], true);

    let sbom = predicate(&statements, "https://spdx.dev/Document");
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");

    // No blob of the archive holds the secret's value.
    for entry in std::fs::read_dir(layout.0.join("blobs/sha256")).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret leaked into a blob"
        );
    }
    // --metadata-file names the index, as buildx does.
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], root["digest"]);
    assert_ne!(meta["containerimage.digest"].as_str().unwrap(), image);
}

#[test]
fn default_provenance_is_min_and_leaves_out_values_and_secret_ids() {
    let rb = Rbuild::new();
    let ctx = context(&rb);
    let tar = rb.path("min.tar");
    rb.ok(&[
        "build",
        "-q",
        "--build-arg",
        "GREETING=private-greeting",
        "--secret",
        &format!("id=token,src={}", s(&rb.path("token"))),
        "--provenance",
        "-o",
        &format!("type=oci,dest={}", s(&tar)),
        s(&ctx),
    ]);
    let layout = Layout::unpack(&tar, &rb.path("min"));
    let index = layout.json(digest(&layout.index_json()["manifests"][0]));
    let (_, statements) = check_attested_index(&index, &|d| layout.json(d));
    assert_eq!(statements.len(), 1, "provenance only");
    // No name: the subject is `_`.
    assert_eq!(statements[0]["subject"][0]["name"], "_");
    let prov = predicate(&statements, "https://slsa.dev/provenance/v0.2");
    let text = prov.to_string();
    assert!(!text.contains("private-greeting"), "{text}");
    assert!(!text.contains("\"token\""), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert_eq!(prov["metadata"]["completeness"]["parameters"], false);
}

#[test]
fn provenance_v1_through_attest() {
    let rb = Rbuild::new();
    let ctx = context(&rb);
    let tar = rb.path("v1.tar");
    rb.ok(&[
        "build",
        "-q",
        "--secret",
        &format!("id=token,src={}", s(&rb.path("token"))),
        "--attest",
        "type=provenance,mode=max,version=v1,builder-id=https://ci.example/run/1",
        "-o",
        &format!("type=docker,dest={}", s(&tar)),
        s(&ctx),
    ]);
    let layout = Layout::unpack(&tar, &rb.path("v1"));
    let index = layout.json(digest(&layout.index_json()["manifests"][0]));
    let (_, statements) = check_attested_index(&index, &|d| layout.json(d));
    let prov = predicate(&statements, "https://slsa.dev/provenance/v1");
    assert_eq!(
        prov["buildDefinition"]["buildType"],
        "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
    );
    assert_eq!(
        prov["runDetails"]["builder"]["id"],
        "https://ci.example/run/1"
    );
    assert_eq!(
        prov["buildDefinition"]["externalParameters"]["request"]["secrets"][0]["id"],
        "token"
    );
    // A docker archive still lists the image for `docker load`.
    let manifest_json: Value =
        serde_json::from_slice(&std::fs::read(layout.0.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest_json.as_array().unwrap().len(), 1);
}

#[test]
fn bad_attestation_values_name_the_flag_and_tag_nothing() {
    let rb = Rbuild::new();
    let ctx = context(&rb);
    for (args, message) in [
        (
            vec!["--attest", "type=vex"],
            "--attest: unknown attestation type \"vex\"",
        ),
        (
            vec!["--provenance=mode=full"],
            "--provenance: invalid mode=\"full\"",
        ),
        (
            vec!["--attest", "type=provenance,mode=max,colour=red"],
            "unknown provenance attestation attribute \"colour\"",
        ),
        (
            vec![
                "--attest",
                "type=sbom,generator=docker/buildkit-syft-scanner",
            ],
            "unknown sbom attestation attribute \"generator\"",
        ),
        (vec!["--attest", "mode=max"], "--attest: type= is required"),
        (vec!["--sbom=perhaps"], "--sbom"),
    ] {
        let mut full = vec!["build", "-q", "-t", "never:tagged"];
        full.extend(args.iter().copied());
        full.push(s(&ctx));
        let r = rb.fails(&full);
        assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
    }
    let images = rb.ok(&["images", "--format", "json"]);
    assert!(!images.contains("never"), "{images}");
}

/// The store's `index.json` entry naming `tag` (`NAME:TAG`) and the blob
/// it names.
fn stored(rb: &Rbuild, tag: &str) -> (Value, Value) {
    let store = rb.root().join("store-v1");
    let top: Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag))
        .unwrap_or_else(|| panic!("{tag} not in {top:#}"))
        .clone();
    let blob =
        serde_json::from_slice(&std::fs::read(support::blob_path(&store, digest(&entry))).unwrap())
            .unwrap();
    (entry, blob)
}

#[test]
fn the_store_keeps_attestations_and_every_image_command_handles_them() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    let ctx = context(&rb);
    let name = format!("{}/kept:1", reg.host());
    let meta = rb.path("meta.json");
    rb.ok(&[
        "build",
        "-q",
        "--secret",
        &format!("id=token,src={}", s(&rb.path("token"))),
        "-t",
        &name,
        "--sbom",
        "--provenance=mode=max",
        "--metadata-file",
        s(&meta),
        s(&ctx),
    ]);
    // The tag names an index: the image manifest, then its attestation
    // manifest; --metadata-file names the index.
    let (entry, index) = stored(&rb, &name.clone());
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let blob = |d: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(support::blob_path(&rb.root().join("store-v1"), d)).unwrap(),
        )
        .unwrap()
    };
    let (image, statements) = check_attested_index(&index, &blob);
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], entry["digest"]);
    // images: one row, by the index; run and inspect take the platform's
    // manifest, not the attestation.
    let listed = rb.ok(&["images"]);
    assert_eq!(
        listed.lines().filter(|l| l.contains("kept")).count(),
        1,
        "{listed}"
    );
    assert_eq!(
        rb.ok(&["run", "--rm", &name, "cat", "/greeting"]).trim(),
        "hi"
    );
    let platform = rb.ok(&["inspect", "--format", "{{.Os}}/{{.Architecture}}", &name]);
    assert!(
        platform.starts_with("linux/") && !platform.contains("unknown"),
        "{platform}"
    );
    // sbom reads the stored SPDX document: the statement's, byte for byte
    // the same JSON.
    let stored_sbom = predicate(&statements, "https://spdx.dev/Document").clone();
    let listed: Value = serde_json::from_str(&rb.ok(&["sbom", &name])).unwrap();
    assert_eq!(listed, stored_sbom);
    // save carries the attestation manifest.
    let tar = rb.path("saved.tar");
    rb.ok(&["save", "--format", "oci", "-o", s(&tar), &name]);
    let layout = Layout::unpack(&tar, &rb.path("saved"));
    let root = &layout.index_json()["manifests"][0];
    assert_eq!(root["digest"], entry["digest"]);
    check_attested_index(&layout.json(digest(root)), &|d| layout.json(d));
    // push sends the stored index: the same attestation (its layers
    // compressed now, so about the pushed manifest).
    rb.ok(&["push", "-q", &name]);
    let raw: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    ))
    .unwrap();
    let (pushed_image, pushed_statements) = check_attested_index(&raw, &|d| {
        serde_json::from_slice(&std::fs::read(reg.blob_data(d)).unwrap()).unwrap()
    });
    assert_ne!(pushed_image, image, "layers compressed on push");
    assert_eq!(
        predicate(&pushed_statements, "https://spdx.dev/Document"),
        &stored_sbom
    );
    let fresh = Rbuild::new();
    fresh.ok(&["pull", &name]);
    assert_eq!(
        fresh.ok(&["run", "--rm", &name, "cat", "/greeting"]).trim(),
        "hi"
    );
}

/// `rbuild` with buildx's default provenance left on.
fn with_default(rb: &Rbuild, args: &[&str], no_default: Option<&str>) -> support::Run {
    let mut c = rb.command(args);
    c.env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS");
    if let Some(v) = no_default {
        c.env("BUILDX_NO_DEFAULT_ATTESTATIONS", v);
    }
    support::run_command(c, None)
}

#[test]
fn default_provenance_goes_with_pushes_not_into_the_store_or_single_platform_archives() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")],
    );
    let tar = rb.path("x.tar");
    let build = |rb: &Rbuild| {
        let r = with_default(
            rb,
            &[
                "build",
                "-q",
                "-t",
                "dflt:1",
                "-o",
                &format!("type=oci,dest={}", s(&tar)),
                "-o",
                "type=image",
                s(&ctx),
            ],
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    // The store keeps no default provenance (unlike docker's containerd
    // store, moby/moby#48391): the tag is the bare manifest, and a cached
    // rebuild is the same image, leaving nothing dangling.
    let first = build(&rb);
    assert_eq!(build(&rb), first);
    let (entry, _) = stored(&rb, "docker.io/library/dflt:1");
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(
        !rb.ok(&["images"]).contains("<none>"),
        "{}",
        rb.ok(&["images"])
    );
    let blob = |d: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(support::blob_path(&rb.root().join("store-v1"), d)).unwrap(),
        )
        .unwrap()
    };
    let min_provenance = |statements: &[Value]| {
        assert_eq!(statements.len(), 1);
        let prov = predicate(statements, "https://slsa.dev/provenance/v0.2");
        assert!(
            prov["invocation"]["parameters"]
                .get("args")
                .is_none_or(|a| a.as_object().is_none_or(|o| o.is_empty())),
            "min mode: {prov:#}"
        );
    };
    // attestation-inline=true on the image output keeps it in the store.
    let r = with_default(
        &rb,
        &[
            "build",
            "-q",
            "-t",
            "inline:1",
            "-o",
            "type=image,attestation-inline=true",
            s(&ctx),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (entry, index) = stored(&rb, "docker.io/library/inline:1");
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    min_provenance(&check_attested_index(&index, &blob).1);
    // A push carries mode=min provenance, as buildx's.
    let name = format!("{}/dflt:1", reg.host());
    let r = with_default(&rb, &["build", "-q", "-t", &name, "--push", s(&ctx)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pushed: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    ))
    .unwrap();
    assert_eq!(
        pushed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let (_, statements) = check_attested_index(&pushed, &|d| {
        serde_json::from_slice(&std::fs::read(reg.blob_data(d)).unwrap()).unwrap()
    });
    min_provenance(&statements);
    // The oci exporter leaves inline-only provenance out of a
    // single-platform archive: a bare manifest, as BuildKit writes it.
    let layout = Layout::unpack(&tar, &rb.path("x"));
    assert_eq!(
        layout.index_json()["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // ... unless attestation-inline=true.
    let tar2 = rb.path("y.tar");
    let r = with_default(
        &rb,
        &[
            "build",
            "-q",
            "-o",
            &format!("type=oci,dest={},attestation-inline=true", s(&tar2)),
            s(&ctx),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let layout = Layout::unpack(&tar2, &rb.path("y"));
    assert_eq!(
        layout.index_json()["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    // --provenance=false, and BUILDX_NO_DEFAULT_ATTESTATIONS=1: a bare
    // manifest under the tag.
    for (args, env) in [
        (vec!["--provenance=false"], None),
        (vec![], Some("1")),
        (vec![], Some("true")),
    ] {
        let mut all = vec!["build", "-q", "-t", "bare:1"];
        all.extend(args.iter().copied());
        all.push(s(&ctx));
        let r = with_default(&rb, &all, env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let (entry, _) = stored(&rb, "docker.io/library/bare:1");
        assert_eq!(
            entry["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{args:?} {env:?}"
        );
    }
    // A value that is not a boolean is an error naming the variable.
    let r = with_default(&rb, &["build", "-q", "-t", "bad:1", s(&ctx)], Some("maybe"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("invalid BUILDX_NO_DEFAULT_ATTESTATIONS \"maybe\""),
        "{}",
        r.stderr
    );
}

#[test]
fn index_annotations_go_wherever_an_index_is_written() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")],
    );
    let tar = rb.path("x.tar");
    rb.ok(&[
        "build",
        "-q",
        "-t",
        "ann:1",
        "--provenance=true",
        "--annotation",
        "index:org.example.index=i",
        "--annotation",
        "index-descriptor:org.example.desc=d",
        "--annotation",
        "manifest-descriptor:org.example.mdesc=m",
        "--annotation",
        "org.example.manifest=x",
        "-o",
        &format!("type=oci,dest={}", s(&tar)),
        "-o",
        "type=image",
        s(&ctx),
    ]);
    let layout = Layout::unpack(&tar, &rb.path("x"));
    let root = &layout.index_json()["manifests"][0];
    assert_eq!(root["annotations"]["org.example.desc"], "d");
    let index = layout.json(digest(root));
    assert_eq!(index["annotations"]["org.example.index"], "i");
    assert_eq!(
        index["manifests"][0]["annotations"]["org.example.mdesc"],
        "m"
    );
    let manifest = layout.json(digest(&index["manifests"][0]));
    assert_eq!(manifest["annotations"]["org.example.manifest"], "x");
    // The stored index has them too.
    let (_, stored_index) = stored(&rb, "docker.io/library/ann:1");
    assert_eq!(stored_index["annotations"]["org.example.index"], "i");
    // With nothing to make an index of, BuildKit's refusal; nothing tagged.
    let r = rb.run(&[
        "build",
        "-q",
        "-t",
        "noindex:1",
        "--annotation",
        "index:k=v",
        s(&ctx),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("index annotations not supported for single platform export"),
        "{}",
        r.stderr
    );
    assert!(!rb.ok(&["images"]).contains("noindex"));
    let r = rb.run(&["build", "--annotation", "index[linux/amd64]:k=v", s(&ctx)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("takes no platform"), "{}", r.stderr);
}

#[test]
fn push_sends_the_index_with_its_attestation_manifest() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    let ctx = context(&rb);
    let name = format!("{}/attested:1", reg.host());
    let meta = rb.path("meta.json");
    rb.ok(&[
        "build",
        "-q",
        "-t",
        &name,
        "--secret",
        &format!("id=token,src={}", s(&rb.path("token"))),
        "--provenance=mode=max",
        "--sbom",
        "--push",
        "--metadata-file",
        s(&meta),
        s(&ctx),
    ]);
    let inspect = |r: &str| -> Value {
        serde_json::from_str(&tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{r}"),
            ],
        ))
        .unwrap()
    };
    let index = inspect(&name);
    let repo = format!("{}/attested", reg.host());
    let (image, statements) = check_attested_index(&index, &|d| {
        if let Ok(v) = serde_json::from_slice(&std::fs::read(reg.blob_data(d)).unwrap()) {
            v
        } else {
            panic!("blob {d} of {repo}")
        }
    });
    let prov = predicate(&statements, "https://slsa.dev/provenance/v0.2");
    assert!(!prov.to_string().contains(SECRET));
    assert_eq!(
        statements[0]["subject"][0]["name"]
            .as_str()
            .unwrap()
            .split('?')
            .next()
            .unwrap(),
        format!("pkg:docker/{}/attested@1", reg.host().replace(':', "%3A"))
    );
    // The image manifest is there by digest; a fresh store pulls and runs
    // the index (picking the host platform, not the attestation).
    let m = inspect(&format!("{repo}@{image}"));
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let pushed = meta["containerimage.digest"].as_str().unwrap();
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    assert_eq!(pushed, format!("sha256:{}", sha256_hex(raw.as_bytes())));
    let fresh = Rbuild::new();
    fresh.ok(&["pull", &name]);
    assert_eq!(
        fresh.ok(&["run", "--rm", &name, "cat", "/greeting"]).trim(),
        "hi"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    let out = tool_stdin("sha256sum", data);
    out.split_whitespace().next().unwrap().to_string()
}

fn tool_stdin(program: &str, data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// Package rows of `rbuild sbom --format table`, header dropped.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn sbom_command_lists_an_images_packages() {
    let rb = Rbuild::new();
    rb.import_tree(
        "pkgs:1",
        &[
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            (
                "var/lib/dpkg/status",
                "Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0+deb12u1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n",
            ),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                "Name: six\nVersion: 1.16.0\n",
            ),
            (
                "srv/node_modules/left-pad/package.json",
                "{\"name\":\"left-pad\",\"version\":\"1.3.0\"}",
            ),
        ],
    );
    let table = rb.ok(&["sbom", "--format", "table", "pkgs:1"]);
    assert_eq!(
        table_rows(&table),
        vec![
            vec!["left-pad", "1.3.0", "npm"],
            vec!["six", "1.16.0", "python"],
            vec!["tzdata", "2024a-0+deb12u1", "deb"],
        ],
        "{table}"
    );
    let doc: Value = serde_json::from_str(&rb.ok(&["sbom", "pkgs:1"])).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["name"], "docker.io/library/pkgs:1");
    let purls: BTreeSet<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().into_iter().flatten())
        .map(|r| r["referenceLocator"].as_str().unwrap())
        .collect();
    assert!(
        purls.contains("pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12"),
        "{purls:?}"
    );
    // The same image gives the same document.
    assert_eq!(rb.ok(&["sbom", "pkgs:1"]), rb.ok(&["sbom", "pkgs:1"]));
    // And inspect can show it.
    let via_inspect: Value =
        serde_json::from_str(&rb.ok(&["inspect", "--format", "{{json .SBOM}}", "pkgs:1"])).unwrap();
    assert_eq!(via_inspect, doc);
}

/// A debootstrap'd Debian bookworm (testdata/make-debian, cached where
/// the benchmarks cache it).
fn debian_tar() -> Result<PathBuf, String> {
    let tar = std::env::var_os("RBUILD_DEBIAN_TAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/rbuild-bench/debian-bookworm.tar"));
    if tar.is_file() {
        return Ok(tar);
    }
    if !nix_is_root() {
        return Err("needs root (debootstrap) or a cached tar in RBUILD_DEBIAN_TAR".into());
    }
    let out = std::process::Command::new(support::repo_root().join("testdata/make-debian"))
        .arg(&tar)
        .output()
        .map_err(|e| format!("testdata/make-debian: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "testdata/make-debian failed (no mirror?): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(tar)
}

fn nix_is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

#[test]
fn debian_sbom_lists_what_dpkg_query_lists() {
    let tar = match debian_tar() {
        Ok(t) => t,
        Err(why) => return skipped("debian_sbom_lists_what_dpkg_query_lists", &why),
    };
    let rb = Rbuild::new();
    rb.ok(&["import", s(&tar), "debian:bookworm"]);
    // What dpkg itself says, inside the image.
    let r = rb.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "debian:bookworm",
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Status} ${Package} ${Version}\\n",
    ]);
    if r.code != 0 {
        return skipped(
            "debian_sbom_lists_what_dpkg_query_lists",
            &format!("cannot run a container here: {}", r.stderr.trim()),
        );
    }
    let want: BTreeSet<(String, String)> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(|l| {
            let (p, v) = l.split_once(' ').unwrap();
            (p.to_string(), v.to_string())
        })
        .collect();
    assert!(want.len() > 50, "{want:?}");
    let table = rb.ok(&["sbom", "--format", "table", "debian:bookworm"]);
    let got: BTreeSet<(String, String)> = table_rows(&table)
        .into_iter()
        .filter(|r| r[2] == "deb")
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(got, want);
    // Every package has its purl and files with checksums.
    let doc: Value = serde_json::from_str(&rb.ok(&["sbom", "debian:bookworm"])).unwrap();
    let bash = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bash")
        .unwrap();
    let purl = bash["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(purl.starts_with("pkg:deb/debian/bash@"), "{purl}");
    assert!(purl.contains("distro=debian-12"), "{purl}");
    let files = doc["files"].as_array().unwrap();
    let bin_bash = files
        .iter()
        .find(|f| f["fileName"] == "./bin/bash" || f["fileName"] == "./usr/bin/bash")
        .expect("bash's binary is a file of the document");
    assert_eq!(bin_bash["checksums"][0]["algorithm"], "SHA1");
}

#[test]
fn sbom_reads_a_real_go_binarys_build_info() {
    let go = std::process::Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return skipped(
            "sbom_reads_a_real_go_binarys_build_info",
            "no go toolchain (golang-go)",
        );
    }
    let rb = Rbuild::new();
    let src = rb.tree(
        "gosrc",
        &[
            ("go.mod", "module example.com/hello\n\ngo 1.19\n"),
            (
                "main.go",
                "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n",
            ),
        ],
    );
    let root = rb.path("goroot");
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    let out = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(root.join("usr/local/bin/hello"))
        .arg(".")
        .current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOCACHE", rb.path("gocache"))
        .env("GOPATH", rb.path("gopath"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rb.ok(&["import", s(&root), "gobin:1"]);
    let rows = table_rows(&rb.ok(&["sbom", "--format", "table", "gobin:1"]));
    assert!(
        rows.contains(&vec![
            "example.com/hello".into(),
            "(devel)".into(),
            "go-module".into()
        ]),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r[0] == "stdlib" && r[1].starts_with("go1.") && r[2] == "go-module"),
        "{rows:?}"
    );
}

#[test]
fn bake_targets_take_attest() {
    let rb = Rbuild::new();
    let ctx = context(&rb);
    let tar = rb.path("bake.tar");
    let file = rb.path("docker-bake.hcl");
    std::fs::write(
        &file,
        format!(
            "target \"app\" {{\n  context = \"{}\"\n  secret = [\"id=token,src={}\"]\n  attest = [\"type=provenance,mode=max\", \"type=sbom\"]\n  output = [\"type=oci,dest={}\"]\n}}\n",
            s(&ctx),
            s(&rb.path("token")),
            s(&tar)
        ),
    )
    .unwrap();
    rb.ok(&["bake", "-f", s(&file), "app"]);
    let layout = Layout::unpack(&tar, &rb.path("bake"));
    let index = layout.json(digest(&layout.index_json()["manifests"][0]));
    let (_, statements) = check_attested_index(&index, &|d| layout.json(d));
    assert_eq!(statements.len(), 2);
    let prov = predicate(&statements, "https://slsa.dev/provenance/v0.2");
    assert_eq!(
        prov["invocation"]["parameters"]["secrets"][0]["id"],
        "token"
    );
    // A bad value fails the bake naming the key.
    std::fs::write(
        &file,
        format!(
            "target \"app\" {{\n  context = \"{}\"\n  attest = [\"type=provenance,mode=full\"]\n}}\n",
            s(&ctx)
        ),
    )
    .unwrap();
    let r = rb.fails(&["bake", "-f", s(&file), "app"]);
    assert!(
        r.stderr.contains("attest: --attest: invalid mode=\"full\""),
        "{}",
        r.stderr
    );
}
