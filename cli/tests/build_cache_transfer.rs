//! `--cache-to` / `--cache-from` end to end: one store ("machine A")
//! exports its cache, a fresh store ("machine B") with the same base image
//! builds the same context from it.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Rbuild, Run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn build(rb: &Rbuild, ctx: &Path, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    all.push(s(ctx));
    let r = rb.run(&all);
    assert_eq!(
        r.code,
        0,
        "build of {} failed:\n{}\n{}",
        ctx.display(),
        r.stdout,
        r.stderr
    );
    r
}

/// A build with `--report`; returns (report, stderr).
fn build_report(rb: &Rbuild, ctx: &Path, args: &[&str], name: &str) -> (Value, String) {
    let path = rb.path(name);
    let mut all = args.to_vec();
    all.extend_from_slice(&["--report", s(&path)]);
    let r = build(rb, ctx, &all);
    (
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
        r.stderr,
    )
}

fn steps(report: &Value) -> &Vec<Value> {
    report["steps"].as_array().unwrap()
}

fn executed(report: &Value) -> Vec<String> {
    steps(report)
        .iter()
        .filter(|s| s["status"] == "executed")
        .map(|s| s["instruction"].as_str().unwrap().to_string())
        .collect()
}

/// Machine B: a fresh store with A's base image (saved and loaded, so the
/// manifest digest is the same).
fn machine_b(a: &Rbuild, images: &[&str]) -> Rbuild {
    let b = Rbuild::new();
    for image in images {
        let tar = a.path(&format!("{}.tar", image.replace([':', '/'], "_")));
        a.ok(&["save", image, "-o", s(&tar)]);
        b.ok(&["load", "-i", s(&tar)]);
    }
    b
}

/// The records of an exported cache directory.
fn exported_records(dir: &Path) -> Vec<Value> {
    let blob = |d: &str| -> Value {
        let hex = d.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.rbuild.cache.config.v1+json"
    );
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["version"], 1);
    config["records"].as_array().unwrap().clone()
}

const TWO_STAGES: &str = "\
FROM busybox AS base
COPY a.txt /a.txt
RUN --mount=type=cache,target=/cache,id=pkgs echo from-a > /cache/note && cp /a.txt /built

FROM base AS final
RUN --mount=type=cache,target=/cache,id=pkgs cat /cache/note > /seen || echo missing > /seen
CMD [\"cat\", \"/seen\"]
";

fn two_stage_context(rb: &Rbuild) -> PathBuf {
    rb.tree(
        "ctx",
        &[("Dockerfile", TWO_STAGES), ("a.txt", "hello from a\n")],
    )
}

#[test]
fn a_local_cache_gives_a_fresh_store_every_step_and_the_cache_mounts() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = two_stage_context(&a);
    let cache = a.path("cache");
    let (report_a, _) = build_report(
        &a,
        &ctx_a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max,mounts=true", s(&cache)),
        ],
        "a.json",
    );
    assert_eq!(a.ok(&["run", "--rm", "app:1"]), "from-a\n");
    assert!(cache.join("oci-layout").is_file());
    assert!(cache.join("index.json").is_file());

    let b = machine_b(&a, &["busybox"]);
    let ctx_b = two_stage_context(&b);
    let from = format!("type=local,src={},mounts=true", s(&cache));
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:1", "--cache-from", &from],
        "b.json",
    );
    assert_eq!(executed(&report_b), Vec::<String>::new(), "{report_b}");
    assert_eq!(report_b["totals"]["misses"], 0);
    for step in steps(&report_b) {
        assert_eq!(step["status"], "cached", "{step}");
    }
    assert!(
        steps(&report_b).iter().any(|s| s["source"] == "imported"),
        "{report_b}"
    );
    assert_eq!(
        report_b["build"]["image_id"], report_a["build"]["image_id"],
        "the same image ID on both machines"
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "from-a\n");

    // A RUN that executes on B sees the cache mount A filled.
    let (report_b2, _) = build_report(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:2",
            "--cache-from",
            &from,
            "--no-cache-filter",
            "final",
        ],
        "b2.json",
    );
    assert_eq!(executed(&report_b2).len(), 1, "{report_b2}");
    assert_eq!(b.ok(&["run", "--rm", "app:2"]), "from-a\n");
}

#[test]
fn without_mounts_true_the_cache_mounts_stay_behind() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = two_stage_context(&a);
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &["--cache-to", &format!("type=local,dest={}", s(&cache))],
    );
    let b = machine_b(&a, &["busybox"]);
    let ctx_b = two_stage_context(&b);
    build(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=local,src={},mounts=true", s(&cache)),
            "--no-cache-filter",
            "final",
        ],
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "missing\n");
}

#[test]
fn mode_min_exports_fewer_records_and_still_hits_the_final_stage() {
    let a = Rbuild::new();
    a.busybox();
    let src = support::repo_root().join("testdata/contexts/multi-stage");
    let ctx = a.path("ctx");
    support::tool("cp", &["-a", s(&src), s(&ctx)]);
    let max = a.path("max");
    let min = a.path("min");
    let (report_a, _) = build_report(
        &a,
        &ctx,
        &[
            "-t",
            "ms:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&max)),
            "--cache-to",
            &format!("type=local,dest={},mode=min", s(&min)),
        ],
        "a.json",
    );
    let (n_max, n_min) = (exported_records(&max).len(), exported_records(&min).len());
    assert!(n_min < n_max, "min {n_min} records, max {n_max}");
    assert_eq!(n_max, steps(&report_a).len(), "max: every step");

    let b = machine_b(&a, &["busybox"]);
    let ctx_b = b.path("ctx");
    support::tool("cp", &["-a", s(&src), s(&ctx_b)]);
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &[
            "-t",
            "ms:1",
            "--cache-from",
            &format!("type=local,src={}", s(&min)),
        ],
        "b.json",
    );
    let final_stage: Vec<&Value> = steps(&report_b)
        .iter()
        .filter(|s| s["stage"] != "build")
        .collect();
    assert!(!final_stage.is_empty());
    for step in final_stage {
        assert_eq!(step["status"], "cached", "{step}");
    }
    assert_eq!(report_b["build"]["image_id"], report_a["build"]["image_id"]);
    assert_eq!(
        b.ok(&["run", "--rm", "ms:1"]),
        a.ok(&["run", "--rm", "ms:1"])
    );
}

/// Corrupts every layer blob of an exported cache (same size, other bytes).
fn corrupt_layers(dir: &Path) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let hex = |d: &Value| {
        d.as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()
            .to_string()
    };
    let blobs = dir.join("blobs/sha256");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(hex(&index["manifests"][0]["digest"]))).unwrap(),
    )
    .unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let path = blobs.join(hex(&layer["digest"]));
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn a_corrupted_blob_fails_the_build_naming_the_cache_and_the_blob() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = two_stage_context(&a);
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    corrupt_layers(&cache);

    let b = machine_b(&a, &["busybox"]);
    let ctx_b = two_stage_context(&b);
    let from = format!("type=local,src={}", s(&cache));
    // Every step hits; the image's layers are fetched (and refused) when
    // the image is written.
    let r = b.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        "--cache-from",
        &from,
        s(&ctx_b),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    for needle in [
        "does not match its digest",
        s(&cache),
        "sha256:",
        "cached step",
        "build again without that --cache-from",
    ] {
        assert!(r.stderr.contains(needle), "{needle:?} in:\n{}", r.stderr);
    }
    // Nothing damaged or half-written entered B's store, nothing is tagged.
    b.ok(&["system", "check"]);
    assert!(b.run(&["inspect", "app:1"]).code != 0);
    assert_no_scratch_files(&b);
    // Without the damaged cache the build works.
    build(&b, &ctx_b, &["-t", "app:1"]);
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "from-a\n");
}

#[test]
fn a_corrupted_blob_a_running_step_needs_fails_that_step() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = lazy_context(&a);
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    corrupt_layers(&cache);
    let b = machine_b(&a, &["busybox"]);
    let ctx_b = lazy_context(&b);
    // The last RUN executes, on the (damaged) COPY layer and side stage.
    let r = b.run(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        "FLAVOR=spicy",
        "--cache-from",
        &format!("type=local,src={}", s(&cache)),
        s(&ctx_b),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("ERROR: failed to solve: fetching blob sha256:")
            && r.stderr.contains("does not match its digest")
            && r.stderr.contains("build again without that --cache-from"),
        "{}",
        r.stderr
    );
    // The step shown failing is the one that needed the blob.
    assert!(
        r.stderr.contains(">>> RUN --mount=type=bind,from=side"),
        "{}",
        r.stderr
    );
    b.ok(&["system", "check"]);
    assert_no_scratch_files(&b);
}

/// No file is left in the store's scratch space (a refused blob leaves
/// nothing behind).
fn assert_no_scratch_files(rb: &Rbuild) {
    let tmp = rb.root().join("store-v1/tmp");
    let out = support::tool("find", &[s(&tmp), "-type", "f"]);
    let files: Vec<&str> = out.lines().filter(|l| !l.ends_with(".lock")).collect();
    assert!(files.is_empty(), "scratch files left: {files:?}");
}

/// A copy of `testdata/contexts/lazy-side`: a side stage read only
/// through `RUN --mount=type=bind,from=side` (a 3 MB random layer), and a
/// final RUN that `--build-arg FLAVOR` changes.
fn lazy_context(rb: &Rbuild) -> PathBuf {
    let src = support::repo_root().join("testdata/contexts/lazy-side");
    let ctx = rb.path("ctx");
    support::tool("cp", &["-a", s(&src), s(&ctx)]);
    ctx
}

/// The blob digest of the layer the side stage's RUN made, from the
/// exported cache's records.
fn side_layer(cache: &Path) -> String {
    let record = exported_records(cache)
        .into_iter()
        .find(|r| r["description"].as_str().unwrap().contains("head -c"))
        .expect("the side stage's RUN is exported");
    let layers = record["layers"].as_array().unwrap();
    layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn has_blob(rb: &Rbuild, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    rb.root().join("store-v1/blobs/sha256").join(hex).is_file()
}

#[test]
fn an_imported_hit_downloads_only_the_layers_the_final_image_needs() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = lazy_context(&a);
    let cache = a.path("cache");
    let (report_a, _) = build_report(
        &a,
        &ctx_a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
        "a.json",
    );
    assert_eq!(a.ok(&["run", "--rm", "app:1"]), "app\nside-tool\nplain\n");
    let side = side_layer(&cache);
    assert!(has_blob(&a, &side));

    let b = machine_b(&a, &["busybox"]);
    let ctx_b = lazy_context(&b);
    let from = format!("type=local,src={}", s(&cache));
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:1", "--cache-from", &from],
        "b.json",
    );
    assert_eq!(executed(&report_b), Vec::<String>::new(), "{report_b}");
    for step in steps(&report_b) {
        assert_eq!(step["status"], "cached", "{step}");
    }
    assert_eq!(report_b["build"]["image_id"], report_a["build"]["image_id"]);
    assert!(
        !has_blob(&b, &side),
        "the side stage's layer was downloaded"
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "app\nside-tool\nplain\n");
    b.ok(&["system", "check"]);

    // Without --cache-from: the final image's steps hit locally (their
    // records were written with their blobs); the side stage, whose blob
    // B never fetched, executes again.
    let (report_b2, _) = build_report(&b, &ctx_b, &["-t", "app:2"], "b2.json");
    for step in steps(&report_b2) {
        if step["status"] == "executed" {
            assert_eq!(step["stage"], "side", "{report_b2}");
        }
    }
    assert_eq!(
        report_b2["build"]["image_id"],
        report_a["build"]["image_id"]
    );
    assert_eq!(b.ok(&["run", "--rm", "app:2"]), "app\nside-tool\nplain\n");
    b.ok(&["system", "check"]);
}

#[test]
fn a_step_that_executes_on_imported_hits_fetches_its_inputs() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = lazy_context(&a);
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    let side = side_layer(&cache);
    let b = machine_b(&a, &["busybox"]);
    let ctx_b = lazy_context(&b);
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:spicy",
            "--build-arg",
            "FLAVOR=spicy",
            "--cache-from",
            &format!("type=local,src={}", s(&cache)),
        ],
        "b.json",
    );
    let ran = executed(&report_b);
    assert_eq!(ran.len(), 1, "{report_b}");
    assert!(
        ran[0].starts_with("RUN --mount=type=bind,from=side"),
        "{ran:?}"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "app:spicy"]),
        "app\nside-tool\nspicy\n"
    );
    assert!(has_blob(&b, &side), "the bind mount's source was fetched");
    b.ok(&["system", "check"]);
    // Everything is local now: a build without --cache-from runs nothing.
    let (report_b2, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:spicy", "--build-arg", "FLAVOR=spicy"],
        "b2.json",
    );
    assert_eq!(executed(&report_b2), Vec::<String>::new(), "{report_b2}");
}

#[test]
fn re_exporting_an_imported_cache_fetches_what_it_exports() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = lazy_context(&a);
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    let b = machine_b(&a, &["busybox"]);
    let ctx_b = lazy_context(&b);
    let again = b.path("again");
    build(
        &b,
        &ctx_b,
        &[
            "--cache-from",
            &format!("type=local,src={}", s(&cache)),
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&again)),
        ],
    );
    let keys = |dir: &Path| -> Vec<String> {
        let mut k: Vec<String> = exported_records(dir)
            .iter()
            .map(|r| r["key"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&again), keys(&cache), "every record is exported again");
    let side = side_layer(&cache);
    let hex = side.strip_prefix("sha256:").unwrap();
    assert!(again.join("blobs/sha256").join(hex).is_file());
    b.ok(&["system", "check"]);
}

#[test]
fn inline_cache_round_trips_through_an_image() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = two_stage_context(&a);
    build(&a, &ctx_a, &["-t", "app:1", "--cache-to", "type=inline"]);
    let config: Value = serde_json::from_str(&a.ok(&["inspect", "app:1"])).unwrap();
    assert!(config.is_array());

    let b = machine_b(&a, &["busybox", "app:1"]);
    let ctx_b = two_stage_context(&b);
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:2", "--cache-from", "app:1"],
        "b.json",
    );
    assert_eq!(executed(&report_b), Vec::<String>::new(), "{report_b}");
    assert_eq!(b.ok(&["run", "--rm", "app:2"]), "from-a\n");

    // An image without one is a warning, not an error.
    let (_, stderr) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:3", "--cache-from", "busybox"],
        "b2.json",
    );
    assert!(stderr.contains("no inline cache"), "{stderr}");
}

#[test]
fn bad_cache_flags_name_the_flag_and_key() {
    let rb = Rbuild::new();
    let ctx = rb.tree("ctx", &[("Dockerfile", "FROM scratch\n")]);
    let r = rb.run(&[
        "build",
        "--cache-to",
        "type=local,dest=x,colour=blue",
        s(&ctx),
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--cache-to") && r.stderr.contains("colour"),
        "{}",
        r.stderr
    );
}

#[test]
fn outputs_of_a_build_from_imported_hits_hold_every_layer() {
    let a = Rbuild::new();
    a.busybox();
    let ctx_a = lazy_context(&a);
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    let b = machine_b(&a, &["busybox"]);
    let ctx_b = lazy_context(&b);
    let out = b.path("out");
    let oci = b.path("img.tar");
    let (report, _) = build_report(
        &b,
        &ctx_b,
        &[
            "--cache-from",
            &format!("type=local,src={}", s(&cache)),
            "-o",
            &format!("type=local,dest={}", s(&out)),
            "-o",
            &format!("type=oci,dest={}", s(&oci)),
        ],
        "b.json",
    );
    assert_eq!(executed(&report), Vec::<String>::new(), "{report}");
    assert_eq!(
        std::fs::read_to_string(out.join("from-side")).unwrap(),
        "side-tool\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("app.txt")).unwrap(),
        "app\n"
    );
    // The OCI archive loads into a third store and runs.
    let c = Rbuild::new();
    c.ok(&["load", "-i", s(&oci)]);
    let id = report["build"]["image_id"].as_str().unwrap();
    assert_eq!(c.ok(&["run", "--rm", id]), "app\nside-tool\nplain\n");
    b.ok(&["system", "check"]);
}
