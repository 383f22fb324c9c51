//! End-to-end tests of `rbuild cache du` and `rbuild cache prune`: the
//! figures they print against what the store holds and frees on disk.

mod support;

use std::path::Path;

use rbuild_solver::scheduler::{CacheIndex, KeyParts};
use rbuild_solver::{CacheKey, Digest};
use rbuild_store::{LayerInfo, Store};
use rbuild_worker::{BuiltLayer, StepOutput, StoreCacheIndex};
use support::Rbuild;

/// docker's (go-units) decimal size with 3 significant digits, as rbuild
/// prints it.
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// Bytes of every regular file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            total += disk_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// A stored blob of `size` bytes of `fill`, as a layer.
fn blob(store: &Store, fill: u8, size: usize) -> LayerInfo {
    let data = vec![fill; size];
    let digest = store.put_blob_bytes(&data).unwrap();
    LayerInfo {
        digest,
        diff_id: digest,
        size: size as u64,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    }
}

fn record(store: &Store, name: &str, layers: &[&LayerInfo], added: usize) {
    let output = StepOutput {
        layers: layers
            .iter()
            .map(|l| BuiltLayer {
                info: (*l).clone(),
                created: None,
            })
            .collect(),
        added,
    };
    let key = CacheKey::from_digest(Digest::of(name.as_bytes()));
    StoreCacheIndex::new(store)
        .record(&key, &KeyParts::default(), &output)
        .unwrap();
}

/// The value of a summary line such as `Total:         1.2MB`.
fn figure(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} line in:\n{text}"))
        .trim()
        .to_string()
}

/// Regression: `cache du` printed Reclaimable = Total and counted a blob
/// once per record naming it; `cache prune` printed the removed records'
/// sizes summed instead of what it freed.
#[test]
fn du_and_prune_figures_count_shared_blobs_once_and_match_the_disk() {
    let rb = Rbuild::new();
    rb.import_tree("img:1", &[("etc/data", &"i".repeat(20_000))]);
    let store = Store::open(&rb.root()).unwrap();
    let image_layer = store.scan_images().unwrap().images[0].layers[0].clone();
    let a = blob(&store, b'a', 300_000);
    let b = blob(&store, b'b', 500_000);
    let c = blob(&store, b'c', 70_000);
    // The image's own step: the image is made of its result, so prune
    // keeps it. A step on it that added `c` is not in any image: it goes,
    // and `c` with it.
    record(&store, "image", &[&image_layer], 1);
    record(&store, "on-image", &[&image_layer, &c], 1);
    // Two steps that produced the same layer `a`, and one that made `b`.
    record(&store, "a-1", &[&image_layer, &a], 1);
    record(&store, "a-2", &[&a], 1);
    record(&store, "b", &[&b], 1);
    drop(store);

    let du = rb.ok(&["cache", "du"]);
    let img = image_layer.size;
    assert_eq!(figure(&du, "Total:"), human(img + a.size + b.size + c.size));
    assert_eq!(figure(&du, "Shared:"), human(img));
    assert_eq!(figure(&du, "Private:"), human(a.size + b.size + c.size));
    assert_eq!(
        figure(&du, "Reclaimable:"),
        human(a.size + b.size + c.size),
        "prune frees a, b and c:\n{du}"
    );
    assert_eq!(
        du.lines().filter(|l| l.contains(" true ")).count(),
        4,
        "{du}"
    );
    assert_eq!(
        du.lines().filter(|l| l.contains(" false ")).count(),
        1,
        "{du}"
    );

    let before = disk_bytes(&rb.root());
    let out = rb.ok(&["cache", "prune", "-f"]);
    let freed = before - disk_bytes(&rb.root());
    assert_eq!(
        out.lines().filter(|l| l.len() == 12).count(),
        4,
        "four records deleted:\n{out}"
    );
    assert_eq!(
        figure(&out, "Total reclaimed space:"),
        human(freed),
        "{out}"
    );
    // The blobs were freed once each; the rest is the removed records.
    let private = a.size + b.size + c.size;
    assert!(
        (private..private + 20_000).contains(&freed),
        "freed {freed}"
    );
    let store = Store::open(&rb.root()).unwrap();
    assert!(!store.has_blob(&a.digest) && !store.has_blob(&b.digest));
    assert!(!store.has_blob(&c.digest) && store.has_blob(&image_layer.digest));

    let du = rb.ok(&["cache", "du"]);
    assert_eq!(figure(&du, "Total:"), human(img));
    assert_eq!(figure(&du, "Reclaimable:"), "0B");
    let out = rb.ok(&["cache", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
}

/// Regression: `--keep-storage` subtracted a removed record's whole size,
/// even when another record still held its layer, and stopped while the
/// cache on disk was still above the limit.
#[test]
fn keep_storage_counts_a_shared_layer_until_its_last_record_goes() {
    let rb = Rbuild::new();
    let store = Store::open(&rb.root()).unwrap();
    let a = blob(&store, b'a', 300_000);
    let b = blob(&store, b'b', 500_000);
    // Oldest first (last use is kept in seconds): both `a` records go
    // before `b` is considered.
    record(&store, "a-1", &[&a], 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    record(&store, "a-2", &[&a], 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    record(&store, "b", &[&b], 1);
    drop(store);

    rb.ok(&["cache", "prune", "-a", "-f", "--keep-storage", "600kB"]);
    let blobs = rb.root().join("store-v1/blobs/sha256");
    let kept: u64 = [&a, &b]
        .iter()
        .filter(|l| blobs.join(l.digest.hex()).exists())
        .map(|l| l.size)
        .sum();
    assert!(kept <= 600_000, "{kept} bytes of cache kept, above 600kB");
    assert!(
        blobs.join(b.digest.hex()).exists(),
        "b, the newest, is kept"
    );
}

/// Regression: `--keep-storage` counted only the layer each record added,
/// while gc keeps every layer of a kept record's chain: a record of a small
/// step on a big layer whose own record was pruned kept the big layer on
/// disk, uncounted, and prune stopped far above the limit.
#[test]
fn keep_storage_counts_the_layers_under_a_kept_record() {
    let rb = Rbuild::new();
    let store = Store::open(&rb.root()).unwrap();
    let big = blob(&store, b'x', 500_000);
    let small = blob(&store, b'y', 10_000);
    record(&store, "big", &[&big], 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    record(&store, "small-on-big", &[&big, &small], 1);
    drop(store);

    rb.ok(&["cache", "prune", "-a", "-f", "--keep-storage", "100kB"]);
    let held = disk_bytes(&rb.root().join("store-v1/blobs/sha256"));
    assert!(held <= 100_000, "{held} bytes of blobs kept, above 100kB");
}

/// Regression: a default `cache prune` kept every record one of whose
/// added layers an image also had, and gc kept that record's whole chain.
/// A WORKDIR's empty layer (or a COPY of unchanged files) is the same blob
/// on top of any parent, so each old build's RUN layers under it stayed
/// on disk for as long as the newest image was tagged. BuildKit keeps a
/// record only when an image is made of its whole chain.
#[test]
fn a_default_prune_frees_old_builds_under_a_layer_the_new_image_shares() {
    let rb = Rbuild::new();
    rb.busybox();
    let ctx = rb.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG N\nRUN echo $N > /n && head -c 200000 /dev/urandom > /r\nWORKDIR /w\n",
    )
    .unwrap();
    let run_layer = |tag: &str| -> String {
        let out = rb.ok(&["inspect", "--format", "{{json .RootFS.Layers}}", tag]);
        let layers: Vec<String> = serde_json::from_str(out.trim()).unwrap();
        layers[layers.len() - 2].clone()
    };
    let ctx = ctx.to_str().unwrap();
    rb.ok(&["build", "-q", "--build-arg", "N=1", "-t", "t:1", ctx]);
    rb.ok(&["build", "-q", "--build-arg", "N=2", "-t", "t:2", ctx]);
    let (old, new) = (run_layer("t:1"), run_layer("t:2"));
    assert_ne!(old, new);
    rb.ok(&["rmi", "t:1"]);
    rb.ok(&["cache", "prune", "-f"]);
    assert!(!rb.has_blob(&old), "the old build's RUN layer was kept");
    assert!(rb.has_blob(&new), "the tagged image's layer went");
    // The tagged image's own steps are still cached.
    let r = rb.run(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        "N=2",
        "-t",
        "t:2",
        ctx,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr.matches("CACHED").count(), 3, "{}", r.stderr);
}

/// `cache prune` and `system check` wait while a build holds the store;
/// they say which process they wait for, and for how long.
#[test]
fn prune_and_check_say_which_process_they_wait_for() {
    use std::time::Duration;

    let rb = Rbuild::new();
    rb.ok(&["images"]);
    for args in [&["cache", "prune", "-f"][..], &["system", "check"][..]] {
        // This test process plays the build: a write session holds the
        // store's gc lock shared.
        let store = Store::open(&rb.root()).unwrap();
        let session = store.write_session().unwrap();
        let child = rb
            .command(args)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(session);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        let waiting = format!(
            "waiting for the store (running builds, loads and pulls hold it): held by pid {} (",
            std::process::id()
        );
        assert!(stderr.contains(&waiting), "{args:?}: {stderr}");
        let waited = stderr
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("waited ")?;
                rest.split_once("s for the store").map(|(t, _)| t)
            })
            .unwrap_or_else(|| panic!("{args:?}: {stderr}"));
        assert!(waited.parse::<f64>().unwrap() >= 1.0, "{args:?}: {stderr}");
    }
}
