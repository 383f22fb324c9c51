//! End-to-end tests of import, images, inspect, history, tag, rmi, prune,
//! df, export and info against the real binary.

mod support;

use support::Rbuild;

#[test]
fn import_directory_shows_up_in_images_inspect_and_history() {
    let rb = Rbuild::new();
    let dir = rb.tree(
        "rootfs",
        &[("etc/hello", "world\n"), ("bin/tool", "#!/bin/sh\n")],
    );
    let id = rb
        .ok(&[
            "import",
            dir.to_str().unwrap(),
            "myapp:v1",
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            "ENV A=1",
            "-c",
            "WORKDIR /srv",
            "-c",
            "LABEL team=build",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let short = &id[7..19];

    let images = rb.ok(&["images"]);
    let lines: Vec<&str> = images.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{images}"
    );
    assert!(lines[1].starts_with("myapp        v1        "), "{images}");
    assert!(lines[1].contains(short), "{images}");
    assert!(lines[1].contains("ago"), "{images}");
    assert_eq!(rb.ok(&["image", "ls", "-q"]).trim(), short);
    assert_eq!(rb.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    assert!(rb.ok(&["images", "--digests"]).contains("DIGEST"));
    let json: serde_json::Value =
        serde_json::from_str(rb.ok(&["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Repository"], "myapp");
    assert_eq!(json["Tag"], "v1");
    assert_eq!(
        rb.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .trim(),
        "myapp:v1"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&rb.ok(&["inspect", "myapp:v1"])).unwrap();
    let i = &inspect[0];
    assert_eq!(i["Id"], id.as_str());
    assert_eq!(i["RepoTags"], serde_json::json!(["myapp:v1"]));
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(i["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(i["Config"]["WorkingDir"], "/srv");
    assert_eq!(i["Config"]["Labels"]["team"], "build");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(i["Size"].as_u64().unwrap() > 0);
    assert_eq!(
        rb.ok(&["inspect", "--format", "{{.Config.Env}}", "myapp:v1"])
            .trim(),
        "[A=1]"
    );
    assert_eq!(
        rb.ok(&[
            "inspect",
            "-f",
            "{{json .Config.Cmd}} {{index .Config.Labels \"team\"}}",
            short
        ])
        .trim(),
        "[\"sh\"] build"
    );

    let history = rb.ok(&["history", "myapp:v1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("IMAGE          CREATED"), "{history}");
    assert!(
        lines[0].contains("CREATED BY") && lines[0].ends_with("COMMENT"),
        "{history}"
    );
    assert!(
        lines[1].starts_with(short) && lines[1].contains("Imported from"),
        "{history}"
    );
    assert_eq!(rb.ok(&["history", "-q", "myapp:v1"]).trim(), short);
}

#[test]
fn import_of_tar_gzip_tar_and_stdin_give_the_same_layer() {
    let rb = Rbuild::new();
    let dir = rb.tree("rootfs", &[("a/b", "c")]);
    let tar_path = rb.path("root.tar");
    support::tool(
        "tar",
        &[
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            tar_path.to_str().unwrap(),
            ".",
        ],
    );
    let gz_path = rb.path("root.tar.gz");
    support::tool(
        "sh",
        &[
            "-c",
            &format!("gzip -c {} > {}", tar_path.display(), gz_path.display()),
        ],
    );
    rb.ok(&["import", tar_path.to_str().unwrap(), "plain"]);
    rb.ok(&["import", gz_path.to_str().unwrap(), "gz"]);
    let r = rb.run_with_stdin(
        &["import", "-", "stdin"],
        Some(&std::fs::read(&gz_path).unwrap()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let layer = |name: &str| rb.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", name]);
    assert_eq!(layer("plain"), layer("gz"));
    assert_eq!(layer("plain"), layer("stdin"));
    assert!(rb.ok(&["history", "stdin"]).contains("Imported from -"));
}

#[test]
fn tag_and_rmi_follow_docker_rules() {
    let rb = Rbuild::new();
    let id = rb.import_tree("app", &[("f", "1")]);
    let short = &id[7..19];
    rb.ok(&["tag", "app", "app:v2"]);
    rb.ok(&["tag", short, "localhost:5000/team/app:x"]);
    let listing = rb.ok(&["images"]);
    assert!(listing.contains("localhost:5000/team/app"), "{listing}");
    assert_eq!(listing.lines().count(), 4, "{listing}");

    let r = rb.fails(&["rmi", short]);
    assert!(r.stderr.contains("must be forced"), "{}", r.stderr);
    assert!(
        r.stderr.contains("referenced in multiple repositories"),
        "{}",
        r.stderr
    );

    let out = rb.ok(&["rmi", "app:v2"]);
    assert_eq!(out.trim(), "Untagged: app:v2");
    let out = rb.ok(&["rmi", "-f", short]);
    assert!(out.contains("Untagged: app:latest"), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "");
    // Blobs are gone too.
    let blobs = std::fs::read_dir(rb.root().join("store-v1/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);

    let r = rb.fails(&["rmi", "app"]);
    assert!(r.stderr.contains("no such image: app"), "{}", r.stderr);
}

#[test]
fn retagging_makes_a_dangling_image_that_prune_removes() {
    let rb = Rbuild::new();
    let old = rb.import_tree("app", &[("f", "old")]);
    let new = rb.import_tree("app", &[("f", "new")]);
    let listing = rb.ok(&["images"]);
    assert!(listing.contains("<none>       <none>"), "{listing}");
    assert_eq!(
        rb.ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"])
            .trim(),
        old
    );
    assert_eq!(
        rb.ok(&["images", "-q", "--no-trunc", "-f", "dangling=false"])
            .trim(),
        new
    );
    assert_eq!(
        rb.ok(&["images", "-q", "--no-trunc", "-f", "reference=ap*"])
            .trim(),
        new
    );

    // until=24h keeps what was created just now.
    let out = rb.ok(&["image", "prune", "-f", "--filter", "until=24h"]);
    assert!(!out.contains("deleted:"), "{out}");
    let out = rb.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {old}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(rb.ok(&["images", "-q", "--no-trunc"]).trim(), new);
    let out = rb.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("deleted: {new}")), "{out}");
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn system_df_and_info_describe_the_store() {
    let rb = Rbuild::new();
    rb.busybox();
    let df = rb.ok(&["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert!(lines[0].starts_with("TYPE"), "{df}");
    assert!(
        lines[1].starts_with("Images") && lines[1].contains(" 1 "),
        "{df}"
    );
    let v = rb.ok(&["system", "df", "-v"]);
    assert!(
        v.contains("Images space usage") && v.contains("busybox"),
        "{v}"
    );
    let info = rb.ok(&["info"]);
    assert!(
        info.contains(&format!("Root Dir: {}", rb.root().display())),
        "{info}"
    );
    assert!(info.contains("Images: 1"), "{info}");
    assert!(info.contains("version 1"), "{info}");
}

#[test]
fn export_writes_the_flattened_filesystem() {
    let rb = Rbuild::new();
    rb.busybox();
    let out = rb.path("fs.tar");
    rb.ok(&["export", "busybox", "-o", out.to_str().unwrap()]);
    let listing = support::tool("tar", &["-tf", out.to_str().unwrap()]);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "etc/passwd")
    );
}

#[test]
fn bad_references_and_missing_images_are_named_with_a_hint() {
    let rb = Rbuild::new();
    let r = rb.fails(&["inspect", "nosuch:tag"]);
    assert!(
        r.stderr.contains("no such image: nosuch:tag"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    let r = rb.fails(&["history", "Busybox"]);
    assert!(r.stderr.contains("must be lowercase"), "{}", r.stderr);
    let dir = rb.tree("t", &[("f", "x")]);
    let r = rb.fails(&["import", dir.to_str().unwrap(), "app:-bad"]);
    assert!(
        r.stderr.contains("tag \"-bad\" is not valid"),
        "{}",
        r.stderr
    );
    let r = rb.fails(&["import", dir.to_str().unwrap(), "x", "--change", "RUN true"]);
    assert!(r.stderr.contains("RUN is not supported"), "{}", r.stderr);
}

#[test]
fn rmi_by_digest_reference_removes_the_image() {
    let rb = Rbuild::new();
    let id = rb.import_tree("app", &[("f", "1")]);
    let repo_digest = rb.ok(&["inspect", "-f", "{{index .RepoDigests 0}}", "app"]);
    let repo_digest = repo_digest.trim();
    assert!(repo_digest.starts_with("app@sha256:"), "{repo_digest}");
    assert_eq!(rb.ok(&["inspect", "-f", "{{.Id}}", repo_digest]).trim(), id);
    let out = rb.ok(&["rmi", repo_digest]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn import_refuses_a_file_that_is_not_a_tar() {
    let rb = Rbuild::new();
    let junk = rb.path("junk.txt");
    std::fs::write(
        &junk,
        "this is not a tar archive, just some text that is long enough ".repeat(20),
    )
    .unwrap();
    let r = rb.fails(&["import", junk.to_str().unwrap(), "junk"]);
    assert!(r.stderr.contains("not a valid tar archive"), "{}", r.stderr);
    assert_eq!(rb.ok(&["images", "-q"]).trim(), "");
    rb.ok(&["system", "check"]);
}

#[test]
fn before_and_since_filters_order_by_creation_time() {
    let rb = Rbuild::new();
    let a = rb.import_tree("a", &[("f", "a")]);
    let b = rb.import_tree("b", &[("f", "b")]);
    let c = rb.import_tree("c", &[("f", "c")]);
    let q = |f: &str| rb.ok(&["images", "-q", "--no-trunc", "--filter", f]);
    assert_eq!(q("before=b").trim(), a);
    assert_eq!(q("since=b").trim(), c);
    // Newest first, like docker.
    assert_eq!(
        rb.ok(&["images", "-q", "--no-trunc"]),
        format!("{c}\n{b}\n{a}\n")
    );
    let r = rb.fails(&["images", "--filter", "colour=red"]);
    assert!(r.stderr.contains("invalid filter"), "{}", r.stderr);
}

/// Regression: `images --filter before=b` (and `inspect b`) resolved `b`
/// as an ID prefix when another image's ID started with "b", instead of
/// the image tagged `b` — docker looks the tag up first.
#[test]
fn a_tag_that_looks_like_an_id_prefix_names_the_tagged_image() {
    let rb = Rbuild::new();
    let x = rb.import_tree("x", &[("f", "x")]);
    let prefix = &x.strip_prefix("sha256:").unwrap()[..3];
    let y = rb.import_tree(prefix, &[("f", "y")]);
    assert_ne!(x, y);
    let id = |what: &str| rb.ok(&["inspect", "--format", "{{.Id}}", what]);
    assert_eq!(id(prefix).trim(), y, "the tag wins over the ID prefix");
    assert_eq!(
        id(&format!("sha256:{prefix}")).trim(),
        x,
        "sha256: is an ID"
    );
    assert_eq!(id(&x[7..19]).trim(), x, "an untagged prefix is still an ID");
}
