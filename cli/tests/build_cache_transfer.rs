//! `--cache-to` / `--cache-from` end to end: one store ("machine A")
//! exports its cache, a fresh store ("machine B") with the same base image
//! builds the same context from it.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::cache::{
    TwoMachines, assert_all_cached, assert_fails_on_a_damaged_cache, build, build_fails,
    build_report, executed, lazy_context, machine_b, steps, testdata_context, two_stage_context,
};
use support::{Rbuild, blob_path, s};

/// The records of an exported cache directory.
fn exported_records(dir: &Path) -> Vec<Value> {
    let blob = |d: &str| -> Value {
        serde_json::from_slice(&std::fs::read(blob_path(dir, d)).unwrap()).unwrap()
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

#[test]
fn a_local_cache_gives_a_fresh_store_every_step_and_the_cache_mounts() {
    let a = Rbuild::new();
    let cache = a.path("cache");
    let TwoMachines {
        a,
        report_a,
        b,
        ctx_b,
        ..
    } = TwoMachines::new(
        a,
        two_stage_context,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max,mounts=true", s(&cache)),
        ],
    );
    assert_eq!(a.ok(&["run", "--rm", "app:1"]), "from-a\n");
    assert!(cache.join("oci-layout").is_file());
    assert!(cache.join("index.json").is_file());

    let from = format!("type=local,src={},mounts=true", s(&cache));
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:1", "--cache-from", &from],
        "b.json",
    );
    assert_all_cached(&report_b);
    assert_eq!(report_b["totals"]["misses"], 0);
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
    let cache = a.path("cache");
    let TwoMachines {
        a: _a, b, ctx_b, ..
    } = TwoMachines::new(
        a,
        two_stage_context,
        &["--cache-to", &format!("type=local,dest={}", s(&cache))],
    );
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
    let max = a.path("max");
    let min = a.path("min");
    let TwoMachines {
        a,
        report_a,
        b,
        ctx_b,
        ..
    } = TwoMachines::new(
        a,
        |rb| testdata_context(rb, "multi-stage"),
        &[
            "-t",
            "ms:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&max)),
            "--cache-to",
            &format!("type=local,dest={},mode=min", s(&min)),
        ],
    );
    let (n_max, n_min) = (exported_records(&max).len(), exported_records(&min).len());
    assert!(n_min < n_max, "min {n_min} records, max {n_max}");
    assert_eq!(n_max, steps(&report_a).len(), "max: every step");

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
    let blob = |d: &Value| blob_path(dir, d.as_str().unwrap());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&index["manifests"][0]["digest"])).unwrap())
            .unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let path = blob(&layer["digest"]);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn a_corrupted_blob_fails_the_build_naming_the_cache_and_the_blob() {
    let a = Rbuild::new();
    let cache = a.path("cache");
    let TwoMachines {
        a: _a, b, ctx_b, ..
    } = TwoMachines::new(
        a,
        two_stage_context,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    corrupt_layers(&cache);

    let from = format!("type=local,src={}", s(&cache));
    // Every step hits; the image's layers are fetched (and refused) when
    // the image is written.
    let r = build_fails(&b, &ctx_b, &["-t", "app:1", "--cache-from", &from]);
    assert_fails_on_a_damaged_cache(&r, s(&cache));
    assert!(r.stderr.contains("sha256:"), "{}", r.stderr);
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
    let (_a, cache, b, ctx_b) = lazy_export();
    corrupt_layers(&cache);
    // The last RUN executes, on the (damaged) COPY layer and side stage.
    let r = build_fails(
        &b,
        &ctx_b,
        &[
            "--build-arg",
            "FLAVOR=spicy",
            "--cache-from",
            &format!("type=local,src={}", s(&cache)),
        ],
    );
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

/// Machine A exported its cache of [`lazy_context`] (mode=max) to a local
/// directory; machine B has busybox and the context. Returns (A, the
/// cache directory, B, B's context); A holds the directory.
fn lazy_export() -> (Rbuild, PathBuf, Rbuild, PathBuf) {
    let a = Rbuild::new();
    let cache = a.path("cache");
    let m = TwoMachines::new(
        a,
        lazy_context,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    (m.a, cache, m.b, m.ctx_b)
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

#[test]
fn an_imported_hit_downloads_only_the_layers_the_final_image_needs() {
    let a = Rbuild::new();
    let cache = a.path("cache");
    let TwoMachines {
        a,
        report_a,
        b,
        ctx_b,
        ..
    } = TwoMachines::new(
        a,
        lazy_context,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", s(&cache)),
        ],
    );
    assert_eq!(a.ok(&["run", "--rm", "app:1"]), "app\nside-tool\nplain\n");
    let side = side_layer(&cache);
    assert!(a.has_blob(&side));

    let from = format!("type=local,src={}", s(&cache));
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:1", "--cache-from", &from],
        "b.json",
    );
    assert_all_cached(&report_b);
    assert_eq!(report_b["build"]["image_id"], report_a["build"]["image_id"]);
    assert!(!b.has_blob(&side), "the side stage's layer was downloaded");
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
    let (_a, cache, b, ctx_b) = lazy_export();
    let side = side_layer(&cache);
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
    assert!(b.has_blob(&side), "the bind mount's source was fetched");
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
    let (_a, cache, b, ctx_b) = lazy_export();
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
    assert!(blob_path(&again, &side).is_file());
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
    let (_, run) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:3", "--cache-from", "busybox"],
        "b2.json",
    );
    assert!(run.stderr.contains("no inline cache"), "{}", run.stderr);
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
    let (_a, cache, b, ctx_b) = lazy_export();
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
