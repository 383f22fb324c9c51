//! Built images read by other tools: skopeo (docker-archive and OCI),
//! umoci (unpacks the OCI layout, applying our whiteouts), and podman
//! (`podman load` of `rbuild save`, into a throw-away podman root).

mod support;

use std::path::Path;

use support::{Rbuild, tool};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Builds `testdata/contexts/interop` as `interop:1`: busybox + two RUN
/// layers (one deleting a file and replacing a directory) + a COPY layer.
fn built(rb: &Rbuild) {
    rb.busybox();
    let ctx = support::repo_root().join("testdata/contexts/interop");
    rb.ok(&["build", "-q", "-t", "interop:1", s(&ctx)]);
    assert_eq!(
        rb.ok(&["run", "--rm", "interop:1"]),
        "hello from an rbuild image\ntwo\nnew\n"
    );
}

#[test]
fn skopeo_inspects_and_copies_a_built_image() {
    let rb = Rbuild::new();
    built(&rb);
    let archive = rb.path("interop.tar");
    rb.ok(&["save", "interop:1", "-o", s(&archive)]);
    let spec = format!("docker-archive:{}", archive.display());
    let inspect: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &spec])).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 4, "{inspect}");
    assert_eq!(inspect["Os"], "linux");
    let config: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "--config", &spec])).unwrap();
    let history = config["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["created_by"] == "COPY hello.txt /hello.txt # buildkit"),
        "{config}"
    );
    let oci = rb.path("oci-copy");
    tool(
        "skopeo",
        &["copy", &spec, &format!("oci:{}:interop", oci.display())],
    );
    assert!(oci.join("index.json").is_file());
}

#[test]
fn umoci_unpacks_a_built_image_with_its_deletions_applied() {
    let rb = Rbuild::new();
    built(&rb);
    let archive = rb.path("oci.tar");
    rb.ok(&["save", "--format", "oci", "interop:1", "-o", s(&archive)]);
    let layout = rb.path("layout");
    std::fs::create_dir(&layout).unwrap();
    tool("tar", &["-C", s(&layout), "-xf", s(&archive)]);
    let bundle = rb.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            // `save --format oci` names the manifest by the tag.
            &format!("{}:1", layout.display()),
            s(&bundle),
        ],
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "hello from an rbuild image\n"
    );
    assert!(rootfs.join("data/b").is_file());
    assert!(!rootfs.join("data/a").exists(), "the whiteout removed it");
    assert!(
        !rootfs.join("data/dir/old").exists(),
        "the replaced directory's old content is gone"
    );
    assert!(rootfs.join("data/dir/new").is_file());
}

#[test]
fn podman_loads_a_saved_build() {
    let rb = Rbuild::new();
    built(&rb);
    let archive = rb.path("docker.tar");
    rb.ok(&["save", "interop:1", "-o", s(&archive)]);
    // A private podman store (vfs: no mounts), so the host's is untouched.
    let root = rb.path("podman-root");
    let runroot = rb.path("podman-run");
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            s(&root),
            "--runroot",
            s(&runroot),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        tool("podman", &all)
    };
    podman(&["load", "-i", s(&archive)]);
    let inspect: serde_json::Value = serde_json::from_str(&podman(&[
        "image",
        "inspect",
        "docker.io/library/interop:1",
    ]))
    .unwrap();
    let id = rb.ok(&["inspect", "--format", "{{.Id}}", "interop:1"]);
    assert_eq!(
        format!("sha256:{}", inspect[0]["Id"].as_str().unwrap()),
        id.trim(),
        "podman computes the same image ID"
    );
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 4);
}
