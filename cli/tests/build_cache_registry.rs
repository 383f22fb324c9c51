//! `--cache-to type=registry` / `--cache-from type=registry` end to end
//! against a real registry (the CNCF distribution registry, `docker-registry`
//! Debian package, on 127.0.0.1 with temporary storage): machine A pushes
//! its cache, a fresh machine B builds the same context from it.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::Rbuild;
use support::cache::{
    TwoMachines, assert_all_cached, assert_fails_on_a_damaged_cache, build_fails, build_report,
    executed, executed_runs, lazy_context, two_stage_context,
};
use support::registry::{Registry, blob_gets};

/// Layer digests of `image`'s manifest in `rb`'s store.
fn image_layers(rb: &Rbuild, image: &str) -> BTreeSet<String> {
    let out = rb.ok(&["inspect", image]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();
    // The manifest naming this config, among the store's blobs.
    let store = std::fs::read_dir(rb.root())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("store-v"))
        .expect("a store under the root")
        .path();
    let blobs = store.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap().flatten() {
        let Ok(m) = serde_json::from_slice::<Value>(&std::fs::read(entry.path()).unwrap()) else {
            continue;
        };
        if m["config"]["digest"] == id.as_str() {
            return m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect();
        }
    }
    panic!("no manifest for {image} ({id}) in the store");
}

#[test]
fn a_registry_cache_gives_a_fresh_store_every_step_and_the_cache_mounts() {
    let registry = Registry::start(None);
    let cache_ref = format!("{}/cache:1", registry.host());

    let TwoMachines {
        a,
        report_a,
        b,
        ctx_b,
        ..
    } = TwoMachines::new(
        Rbuild::new(),
        two_stage_context,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max,mounts=true"),
        ],
    );
    assert_eq!(a.ok(&["run", "--rm", "app:1"]), "from-a\n");
    let pushed = registry.access_log();
    assert!(
        pushed.contains("PUT /v2/cache/manifests/1 "),
        "the manifest is tagged:\n{pushed}"
    );

    // Machine B: a fresh store with A's busybox.
    let from = format!("type=registry,ref={cache_ref},mounts=true");
    let before = registry.access_log().len();
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &["-t", "app:1", "--cache-from", &from],
        "b.json",
    );
    assert_all_cached(&report_b);
    assert_eq!(report_b["totals"]["misses"], 0, "{report_b}");
    assert_eq!(
        report_b["build"]["image_id"], report_a["build"]["image_id"],
        "the same image ID on both machines"
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "from-a\n");

    // B fetched the cache config, the cache mount and the final image's
    // layers busybox lacks, each once, and nothing else.
    let fetched: Vec<String> = blob_gets(&registry.access_log()[before..]);
    let unique: BTreeSet<String> = fetched.iter().cloned().collect();
    assert_eq!(unique.len(), fetched.len(), "each blob once: {fetched:?}");
    let final_layers = image_layers(&b, "app:1");
    let base_layers = image_layers(&b, "busybox");
    let needed: BTreeSet<String> = final_layers.difference(&base_layers).cloned().collect();
    let layers_fetched: BTreeSet<String> = unique.intersection(&final_layers).cloned().collect();
    assert_eq!(layers_fetched, needed, "fetched: {fetched:?}");
    // Besides the layers: the cache config and one cache mount tar.
    assert_eq!(
        unique.len(),
        needed.len() + 2,
        "only the image's layers, the cache config and the mount: {fetched:?}"
    );

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
fn a_missing_registry_cache_is_a_warning_and_a_second_export_uploads_nothing_new() {
    let registry = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let ctx = two_stage_context(&a);

    // Nothing pushed yet: the build goes on without the cache, as BuildKit's.
    let missing = format!("type=registry,ref={}/cache:nope", registry.host());
    let (report, run) = build_report(&a, &ctx, &["--cache-from", &missing], "first.json");
    assert_eq!(executed_runs(&report), 2, "{report}");
    assert!(
        run.stderr.contains("building without it") && run.stderr.contains("not found"),
        "{}",
        run.stderr
    );

    let to = format!(
        "type=registry,ref={}/cache:ci,mode=max,mounts=true",
        registry.host()
    );
    build_report(&a, &ctx, &["--cache-to", &to], "export1.json");
    let before = registry.access_log().len();
    build_report(&a, &ctx, &["--cache-to", &to], "export2.json");
    let log = registry.access_log()[before..].to_string();
    // Same records, same mount contents: every blob is already there
    // (HEAD), only the manifest is PUT again.
    assert!(!log.contains("POST /v2/cache/blobs/uploads"), "{log}");
    assert!(log.contains("HEAD /v2/cache/blobs/sha256:"), "{log}");
    assert!(log.contains("PUT /v2/cache/manifests/ci "), "{log}");
}

#[test]
fn a_layer_corrupted_in_the_registry_fails_the_build_naming_the_cache() {
    let registry = Registry::start(None);
    let cache_ref = format!("{}/cache:1", registry.host());
    let TwoMachines {
        a: _a, b, ctx_b, ..
    } = TwoMachines::new(
        Rbuild::new(),
        two_stage_context,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
        ],
    );
    // Same length, other bytes: the registry serves them without noticing.
    let manifest = registry.stored_manifest("cache", "1");
    let mut corrupted = 0;
    for l in manifest["layers"].as_array().unwrap() {
        let path = registry.blob_data(l["digest"].as_str().unwrap());
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![b'x'; len]).unwrap();
        corrupted += 1;
    }
    assert!(corrupted >= 3, "{manifest}");

    // Every step hits; the image's layers are refused when fetched.
    let from = format!("type=registry,ref={cache_ref}");
    let r = build_fails(&b, &ctx_b, &["-t", "app:1", "--cache-from", &from]);
    assert_fails_on_a_damaged_cache(&r, &cache_ref);
    // Nothing corrupted entered B's store; without the cache it builds.
    b.ok(&["system", "check"]);
    let (report, _) = build_report(&b, &ctx_b, &["-t", "app:1"], "b.json");
    assert_eq!(executed_runs(&report), 2, "{report}");
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "from-a\n");
}

#[test]
fn a_stage_read_only_through_a_bind_mount_is_never_downloaded() {
    let registry = Registry::start(None);
    let cache_ref = format!("{}/lazy:1", registry.host());
    let TwoMachines {
        a: _a,
        report_a,
        b,
        ctx_b,
        ..
    } = TwoMachines::new(
        Rbuild::new(),
        lazy_context,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
        ],
    );
    // Every layer blob the cache holds, as pushed.
    let pushed: BTreeSet<String> = registry.stored_manifest("lazy", "1")["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();

    let before = registry.access_log().len();
    let (report_b, _) = build_report(
        &b,
        &ctx_b,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=registry,ref={cache_ref}"),
        ],
        "b.json",
    );
    assert_eq!(executed(&report_b), Vec::<String>::new(), "{report_b}");
    assert_eq!(report_b["build"]["image_id"], report_a["build"]["image_id"]);
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "app\nside-tool\nplain\n");
    let fetched: BTreeSet<String> = blob_gets(&registry.access_log()[before..])
        .into_iter()
        .filter(|d| pushed.contains(d))
        .collect();
    let needed: BTreeSet<String> = image_layers(&b, "app:1")
        .difference(&image_layers(&b, "busybox"))
        .cloned()
        .collect();
    assert_eq!(
        fetched, needed,
        "only the final image's own layers are downloaded, not the side stage's"
    );
    assert!(
        pushed.len() > needed.len() + 1,
        "the cache holds more: {pushed:?}"
    );
    b.ok(&["system", "check"]);
}
