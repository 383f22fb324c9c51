use super::*;
use rbuild_oci::ImageConfig;
use rbuild_oci::image_config::RootFs;

fn layer_from(store: &Store, files: &[(&str, &[u8])]) -> LayerInfo {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, name, *data).unwrap();
    }
    let bytes = builder.into_inner().unwrap();
    let digest = store.put_blob_bytes(&bytes).unwrap();
    LayerInfo {
        digest,
        diff_id: digest,
        size: bytes.len() as u64,
        media_type: layout::MEDIA_TYPE_LAYER_TAR.to_string(),
    }
}

fn config_for(layers: &[LayerInfo], created: &str) -> ImageConfig {
    ImageConfig {
        created: Some(created.to_string()),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.to_string()).collect(),
        },
        ..ImageConfig::default()
    }
}

fn r(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

#[test]
fn write_resolve_tag_untag_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l = layer_from(&store, &[("hello.txt", b"hi")]);
    let id = store
        .write_image(
            &config_for(std::slice::from_ref(&l), "2024-01-01T00:00:00Z"),
            std::slice::from_ref(&l),
            &[r("busybox")],
        )
        .unwrap();
    let img = store.resolve("busybox").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.layers, vec![l]);
    assert_eq!(store.resolve(&id.hex()[..8]).unwrap().id, id);
    assert_eq!(store.resolve(&id.to_string()).unwrap().id, id);
    assert_eq!(
        store
            .resolve(&format!("busybox@{}", img.manifest_digest))
            .unwrap()
            .id,
        id
    );

    store.tag(&img, &r("other:v1")).unwrap();
    let img = store.resolve("other:v1").unwrap();
    assert_eq!(img.tags.len(), 2);

    let (_, removed) = store.untag(&r("busybox")).unwrap();
    assert!(!removed);
    assert!(matches!(
        store.resolve("busybox"),
        Err(StoreError::NotFound { .. })
    ));
    let (_, removed) = store.untag(&r("other:v1")).unwrap();
    assert!(removed);
    assert!(store.images().unwrap().is_empty());
    let stats = store.gc(&NoGcRoots).unwrap();
    assert_eq!(stats.blobs_removed, 3);
}

#[test]
fn retagging_leaves_previous_image_dangling() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = layer_from(&store, &[("a", b"a")]);
    let b = layer_from(&store, &[("b", b"b")]);
    let id_a = store
        .write_image(
            &config_for(std::slice::from_ref(&a), "x"),
            &[a],
            &[r("app")],
        )
        .unwrap();
    let id_b = store
        .write_image(
            &config_for(std::slice::from_ref(&b), "x"),
            &[b],
            &[r("app")],
        )
        .unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 2);
    let dangling: Vec<_> = images.iter().filter(|i| i.is_dangling()).collect();
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0].id, id_a);
    assert_eq!(store.resolve("app").unwrap().id, id_b);
}

#[test]
fn concurrent_index_updates_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Store::open(&root).unwrap();
    let l = layer_from(&store, &[("f", b"f")]);
    let cfg = config_for(std::slice::from_ref(&l), "x");
    store
        .write_image(&cfg, std::slice::from_ref(&l), &[])
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                // Each thread has its own Store: its own lock descriptions,
                // exactly like separate processes.
                let s = Store::open(&root).unwrap();
                let img = s.images().unwrap().remove(0);
                for j in 0..5 {
                    s.tag(&img, &r(&format!("t{i}:{j}"))).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let img = store.images().unwrap().remove(0);
    assert_eq!(img.tags.len(), 40);
}

#[test]
fn snapshot_unpacks_once_and_verifies_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l = layer_from(&store, &[("etc/hello", b"world")]);
    store
        .write_image(
            &config_for(std::slice::from_ref(&l), "x"),
            std::slice::from_ref(&l),
            &[r("s")],
        )
        .unwrap();
    let p = store.snapshot(&l.diff_id).unwrap();
    assert_eq!(fs::read(p.join("etc/hello")).unwrap(), b"world");
    assert_eq!(store.snapshot(&l.diff_id).unwrap(), p);

    let bad = LayerInfo {
        diff_id: Digest::of(b"not it"),
        ..l
    };
    assert!(matches!(
        store.snapshot_layer(&bad),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(!store.snapshot_path(&bad.diff_id).exists());
}

#[test]
fn leased_image_survives_removal_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l = layer_from(&store, &[("f", b"f")]);
    store
        .write_image(
            &config_for(std::slice::from_ref(&l), "x"),
            std::slice::from_ref(&l),
            &[r("busy")],
        )
        .unwrap();
    let img = store.resolve("busy").unwrap();
    let other = Store::open(dir.path()).unwrap();
    let lease = other.lease(&img).unwrap();
    assert!(store.is_in_use(&img).unwrap());
    store.remove(&img).unwrap();
    assert_eq!(store.gc(&NoGcRoots).unwrap().blobs_removed, 0);
    assert!(store.has_blob(&l.digest));
    drop(lease);
    assert!(!store.is_in_use(&img).unwrap());
    assert_eq!(store.gc(&NoGcRoots).unwrap().blobs_removed, 3);
}

#[test]
fn check_finds_flipped_byte_and_repair_drops_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = layer_from(&store, &[("g", b"good")]);
    let bad = layer_from(&store, &[("b", b"bad")]);
    store
        .write_image(
            &config_for(std::slice::from_ref(&good), "x"),
            &[good],
            &[r("good")],
        )
        .unwrap();
    store
        .write_image(
            &config_for(std::slice::from_ref(&bad), "x"),
            std::slice::from_ref(&bad),
            &[r("bad")],
        )
        .unwrap();
    assert!(store.check(false, &NoGcRoots).unwrap().problems.is_empty());

    let path = store.blob_path(&bad.digest);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, bytes).unwrap();

    let report = store.check(false, &NoGcRoots).unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    let report = store.check(true, &NoGcRoots).unwrap();
    assert!(!report.repaired.is_empty());
    assert!(store.check(false, &NoGcRoots).unwrap().problems.is_empty());
    assert!(store.resolve("good").is_ok());
    assert!(store.resolve("bad").is_err());
}

#[test]
fn open_sweeps_dead_sessions_but_not_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let live = Store::open(dir.path()).unwrap();
    fs::write(live.tmp_dir().join("partial"), b"x").unwrap();
    let dead_dir = dir.path().join("store-v1/tmp/999-1");
    fs::create_dir(&dead_dir).unwrap();
    fs::write(dead_dir.join("blob-0"), b"half").unwrap();
    fs::write(dir.path().join("store-v1/tmp/999-1.lock"), b"").unwrap();
    let other = Store::open(dir.path()).unwrap();
    assert!(dead_dir.exists(), "opening alone sweeps nothing");
    other.tmp_dir();
    assert!(!dead_dir.exists());
    assert!(!dir.path().join("store-v1/tmp/999-1.lock").exists());
    assert!(live.tmp_dir().join("partial").exists());
}

/// `rbuild run` and other read-only commands open the store once per
/// invocation: on an existing store that must create (and later delete)
/// nothing, since on ext4 with `-o discard` each removed directory costs a
/// synchronous discard.
#[test]
fn opening_an_existing_store_creates_nothing_until_scratch_space_is_used() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let tmp_root = dir.path().join("store-v1/tmp");
    let entries = || fs::read_dir(&tmp_root).unwrap().count();
    assert_eq!(entries(), 0, "a first open cleans up after itself");
    let store = Store::open(dir.path()).unwrap();
    let _ = store.read_index().unwrap();
    assert_eq!(entries(), 0);
    let scratch = store.tmp_dir().to_path_buf();
    assert!(scratch.is_dir(), "made on first use");
    assert_eq!(store.tmp_dir(), scratch, "and only once");
    fs::write(scratch.join("partial"), b"x").unwrap();
    drop(store);
    assert_eq!(
        entries(),
        0,
        "dropping the store removes its scratch dir and lock"
    );
}

#[test]
fn concurrent_first_opens_all_succeed() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let root = dir.path().to_path_buf();
                std::thread::spawn(move || Store::open(&root).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }
}

#[test]
fn write_image_refuses_a_config_that_names_other_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = layer_from(&store, &[("a", b"a")]);
    let b = layer_from(&store, &[("b", b"b")]);
    let err = store
        .write_image(&config_for(std::slice::from_ref(&a), "x"), &[b], &[r("x")])
        .unwrap_err();
    assert!(matches!(err, StoreError::LayerMismatch { .. }), "{err}");
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn open_layer_trusts_the_bytes_not_the_media_type() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let plain = layer_from(&store, &[("a.txt", b"alpha")]);
    let tar_bytes = store.read_blob(&plain.digest).unwrap();
    let read_names = |layer: &LayerInfo| -> Vec<String> {
        let mut archive = tar::Archive::new(store.open_layer(layer).unwrap());
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    };
    // An uncompressed tar labelled gzip (as skopeo can write it).
    let mislabelled = LayerInfo {
        media_type: layout::MEDIA_TYPE_DOCKER_LAYER_GZIP.to_string(),
        ..plain.clone()
    };
    assert_eq!(read_names(&mislabelled), ["a.txt"]);
    // A gzip blob labelled plain tar, and a zstd one labelled gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes).unwrap();
    let gz = gz.finish().unwrap();
    let gz_layer = LayerInfo {
        digest: store.put_blob_bytes(&gz).unwrap(),
        size: gz.len() as u64,
        ..plain.clone()
    };
    assert_eq!(read_names(&gz_layer), ["a.txt"]);
    let zst = zstd::encode_all(tar_bytes.as_slice(), 3).unwrap();
    let zst_layer = LayerInfo {
        digest: store.put_blob_bytes(&zst).unwrap(),
        size: zst.len() as u64,
        media_type: layout::MEDIA_TYPE_LAYER_GZIP.to_string(),
        ..plain.clone()
    };
    assert_eq!(read_names(&zst_layer), ["a.txt"]);
    // An unknown media type is still refused.
    let odd = LayerInfo {
        media_type: "application/x-something".to_string(),
        ..plain
    };
    assert!(matches!(
        store.open_layer(&odd),
        Err(StoreError::UnsupportedMediaType { .. })
    ));
}

#[test]
fn tag_manifest_keeps_a_docker_media_type_through_retagging() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l = layer_from(&store, &[("f", b"x")]);
    let config = serde_json::to_vec(&config_for(
        std::slice::from_ref(&l),
        "2024-01-01T00:00:00Z",
    ))
    .unwrap();
    let config_digest = store.put_blob_bytes(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": layout::MEDIA_TYPE_DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": layout::MEDIA_TYPE_DOCKER_LAYER_TAR,
                    "digest": l.digest.to_string(), "size": l.size}],
    });
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let digest = store.put_blob_bytes(&bytes).unwrap();
    let missing = Digest::of(b"no such manifest");
    assert!(matches!(
        store.tag_manifest(&missing, 1, layout::MEDIA_TYPE_DOCKER_MANIFEST, &r("x")),
        Err(StoreError::MissingBlob { .. })
    ));
    store
        .tag_manifest(
            &digest,
            bytes.len() as u64,
            layout::MEDIA_TYPE_DOCKER_MANIFEST,
            &r("pulled:1"),
        )
        .unwrap();
    let image = store.resolve("pulled:1").unwrap();
    assert_eq!(image.manifest_digest, digest);
    assert_eq!(image.id, config_digest);
    store.tag(&image, &r("again:2")).unwrap();
    let index = store.read_index().unwrap();
    assert_eq!(index.manifests.len(), 2);
    for d in &index.manifests {
        assert_eq!(d.media_type, layout::MEDIA_TYPE_DOCKER_MANIFEST, "{d:?}");
        assert_eq!(d.digest, digest.to_string());
    }
}

#[test]
fn a_tag_naming_an_index_resolves_per_platform_and_keeps_every_platform_through_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut manifests = Vec::new();
    let mut ids = Vec::new();
    for arch in ["amd64", "arm64"] {
        let l = layer_from(&store, &[("arch", arch.as_bytes())]);
        let mut config = config_for(std::slice::from_ref(&l), "2024-01-01T00:00:00Z");
        config.os = "linux".into();
        config.architecture = arch.into();
        let image = store
            .write_image_raw(
                &layout::canonical_json(&config),
                std::slice::from_ref(&l),
                &[],
            )
            .unwrap();
        ids.push(image.id);
        manifests.push(Descriptor {
            media_type: layout::MEDIA_TYPE_MANIFEST.to_string(),
            digest: image.manifest_digest.to_string(),
            size: image.manifest_size,
            annotations: Default::default(),
            platform: Some(serde_json::json!({"os": "linux", "architecture": arch})),
        });
    }
    let index = store
        .write_image_index(
            layout::MEDIA_TYPE_INDEX,
            &manifests,
            &Default::default(),
            Some(&[r("multi:1")]),
        )
        .unwrap();
    // One entry: the index (its platforms' dangling entries are gone).
    assert_eq!(store.read_index().unwrap().manifests.len(), 1);
    let arm = rbuild_oci::Platform::parse("linux/arm64").unwrap();
    let image = store.resolve_for("multi:1", Some(&arm)).unwrap();
    assert_eq!(image.id, ids[1]);
    assert_eq!(image.top_digest(), index.digest);
    assert_eq!(image.index.as_ref().unwrap().platforms().len(), 2);
    let s390x = rbuild_oci::Platform::parse("linux/s390x").unwrap();
    let err = store.resolve_for("multi:1", Some(&s390x)).unwrap_err();
    assert!(
        err.to_string()
            .contains("no match for platform in manifest"),
        "{err}"
    );
    // gc keeps both platforms while the tag names the index.
    store.gc(&NoGcRoots).unwrap();
    for id in &ids {
        assert!(store.has_blob(id), "config {id} kept");
    }
    // Tagging the image tags the index; removing the last tag drops it.
    store.tag(&image, &r("multi:2")).unwrap();
    assert_eq!(store.resolve("multi:2").unwrap().top_digest(), index.digest);
    store.untag(&r("multi:1")).unwrap();
    let (_, removed) = store.untag(&r("multi:2")).unwrap();
    assert!(removed);
    store.gc(&NoGcRoots).unwrap();
    assert!(!store.has_blob(&index.digest));
    assert!(!store.has_blob(&ids[0]));
}

#[test]
fn adopted_snapshots_are_used_from_scratch_space_until_published() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l = layer_from(&store, &[("etc/hello", b"world")]);
    let published = dir.path().join("store-v1/snapshots").join(l.diff_id.hex());
    // A tree in the snapshot format, as a RUN step's upper dir is.
    let tree = store.tmp_dir().join("upper");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hello"), "world").unwrap();

    let adopted = store.adopt_snapshot(&l.diff_id, &tree).unwrap();
    assert!(!tree.exists(), "the tree was moved, not copied");
    assert_ne!(adopted, published);
    assert!(
        !published.exists(),
        "not published before publish_snapshots"
    );
    // This process finds it where it waits.
    assert_eq!(store.snapshot_path(&l.diff_id), adopted);
    assert_eq!(store.snapshot_layer(&l).unwrap(), adopted);
    assert_eq!(fs::read(adopted.join("etc/hello")).unwrap(), b"world");
    // Adopting the same layer again keeps the first tree.
    let again = store.tmp_dir().join("upper2");
    fs::create_dir(&again).unwrap();
    assert_eq!(store.adopt_snapshot(&l.diff_id, &again).unwrap(), adopted);
    assert!(again.exists(), "left for the caller to remove");

    store.publish_snapshots().unwrap();
    assert_eq!(store.snapshot_path(&l.diff_id), published);
    assert!(!adopted.exists());
    assert_eq!(fs::read(published.join("etc/hello")).unwrap(), b"world");
}

#[test]
fn dropping_the_store_publishes_its_snapshots_and_a_crash_before_loses_only_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let published = |l: &LayerInfo| dir.path().join("store-v1/snapshots").join(l.diff_id.hex());
    let adopt = |store: &Store, l: &LayerInfo| {
        let tree = store.tmp_dir().join(format!("upper-{}", l.diff_id.hex()));
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/hello"), "world").unwrap();
        store.adopt_snapshot(&l.diff_id, &tree).unwrap();
    };

    let store = Store::open(dir.path()).unwrap();
    let kept = layer_from(&store, &[("etc/hello", b"world")]);
    adopt(&store, &kept);
    drop(store);
    assert!(
        published(&kept).is_dir(),
        "published when the store is dropped"
    );

    // A process killed before publishing (no drop): its adopted tree is
    // never published; the layer's committed blob is unpacked instead.
    let store = Store::open(dir.path()).unwrap();
    let lost = layer_from(&store, &[("etc/other", b"data")]);
    let tree = store.tmp_dir().join("upper-lost");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/other"), "data").unwrap();
    store.adopt_snapshot(&lost.diff_id, &tree).unwrap();
    std::mem::forget(store);
    assert!(!published(&lost).exists());
    let store = Store::open(dir.path()).unwrap();
    let unpacked = store.snapshot_layer(&lost).unwrap();
    assert_eq!(unpacked, published(&lost));
    assert_eq!(fs::read(unpacked.join("etc/other")).unwrap(), b"data");
}

#[test]
fn snapshots_unpacked_for_a_build_wait_unpublished_and_publish_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let published = |l: &LayerInfo| dir.path().join("store-v1/snapshots").join(l.diff_id.hex());
    let store = Store::open(dir.path()).unwrap();
    let l = layer_from(&store, &[("etc/hello", b"world")]);

    let unpacked = store.snapshot_layer_deferred(&l).unwrap();
    assert_ne!(unpacked, published(&l));
    assert!(
        unpacked.starts_with(store.tmp_dir()),
        "{}",
        unpacked.display()
    );
    assert!(
        !published(&l).exists(),
        "not published before publish_snapshots"
    );
    assert_eq!(fs::read(unpacked.join("etc/hello")).unwrap(), b"world");
    // Found where it waits, and not unpacked twice.
    assert_eq!(store.snapshot_path(&l.diff_id), unpacked);
    assert_eq!(store.snapshot_layer_deferred(&l).unwrap(), unpacked);
    assert_eq!(store.snapshot_layer(&l).unwrap(), unpacked);

    store.publish_snapshots().unwrap();
    assert!(!unpacked.exists());
    assert_eq!(store.snapshot_path(&l.diff_id), published(&l));
    assert_eq!(fs::read(published(&l).join("etc/hello")).unwrap(), b"world");
    // Published already: nothing is unpacked again.
    assert_eq!(store.snapshot_layer_deferred(&l).unwrap(), published(&l));

    // A process killed before publishing leaves only scratch space; the
    // next one unpacks the blob again.
    let lost = layer_from(&store, &[("etc/other", b"data")]);
    store.snapshot_layer_deferred(&lost).unwrap();
    std::mem::forget(store);
    assert!(!published(&lost).exists());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot_layer(&lost).unwrap(), published(&lost));
    assert_eq!(
        fs::read(published(&lost).join("etc/other")).unwrap(),
        b"data"
    );
}

/// A RUN step's upper dir as the worker hands it over: packed once into
/// nothing for its identity, then adopted as the layer's snapshot.
fn adopted_tree(
    store: &Store,
    name: &str,
    content: &str,
) -> (layer::PackStats, layer::StreamSum, PathBuf) {
    let tree = store.tmp_dir().join(name);
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hello"), content).unwrap();
    let mut first = layer::StreamCheck::new(io::sink());
    let stats = layer::pack_diff(&tree, &mut first, &layer::PackOptions::default()).unwrap();
    let snapshot = store.adopt_snapshot(&stats.diff_id, &tree).unwrap();
    (stats, first.sum(), snapshot)
}

fn temp_blobs(store: &Store) -> Vec<String> {
    fs::read_dir(store.tmp_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("blob"))
        .collect()
}

#[test]
fn a_layer_blob_written_in_the_background_is_waited_for_and_holds_back_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (stats, sum, snapshot) = adopted_tree(&store, "upper", "world");
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let opts = layer::PackOptions::default();
    store
        .write_layer_blob_deferred(
            stats.diff_id,
            sum,
            Box::new(move |out| {
                wait.recv().unwrap();
                layer::pack_diff_unhashed(&snapshot, out, &opts)
            }),
        )
        .unwrap();
    let blob_file = store.blob_path(&stats.diff_id);
    assert!(!blob_file.exists(), "not written yet");
    assert!(store.has_blob(&stats.diff_id), "counts as stored meanwhile");

    // A record naming the blob stays in memory until the blob is stored;
    // one naming only stored blobs is written at once.
    let record = dir.path().join("record.json");
    store
        .replace_file_after_blobs(&record, b"names it".to_vec(), &[stats.diff_id])
        .unwrap();
    assert!(!record.exists());
    assert_eq!(store.pending_file(&record).unwrap(), b"names it");
    let other = dir.path().join("other.json");
    let stored = layer_from(&store, &[("a", b"b")]);
    store
        .replace_file_after_blobs(&other, b"x".to_vec(), &[stored.digest])
        .unwrap();
    assert_eq!(fs::read(&other).unwrap(), b"x");

    // A front end asking whether the writes are over is told in time.
    let asked = std::time::Instant::now();
    assert!(!store.deferred_blobs_done_within(std::time::Duration::from_millis(50)));
    assert!(asked.elapsed() < std::time::Duration::from_secs(5));

    // Opening the blob waits for the write.
    std::thread::scope(|s| {
        let reader = s.spawn(|| store.read_blob(&stats.diff_id).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        go.send(()).unwrap();
        let bytes = reader.join().unwrap();
        assert_eq!(bytes.len() as u64, stats.size);
        assert_eq!(Digest::of(&bytes), stats.diff_id);
    });
    assert!(store.deferred_blobs_done_within(std::time::Duration::from_secs(60)));
    store.finish_deferred_blobs().unwrap();
    assert!(blob_file.is_file());
    assert_eq!(fs::read(&record).unwrap(), b"names it");
    assert!(store.pending_file(&record).is_none());
    assert!(temp_blobs(&store).is_empty(), "{:?}", temp_blobs(&store));
    store.publish_snapshots().unwrap();
    assert!(
        store
            .snapshot_path(&stats.diff_id)
            .join("etc/hello")
            .is_file()
    );
}

#[test]
fn a_background_blob_write_that_fails_fails_the_finish_and_nothing_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let published = |d: &Digest| dir.path().join("store-v1/snapshots").join(d.hex());
    let store = Store::open(dir.path()).unwrap();
    let record = dir.path().join("record.json");
    let failed = |err: StoreError| -> std::sync::Arc<StoreError> {
        match err {
            StoreError::DeferredBlob { source, .. } => source,
            other => panic!("{other:?}"),
        }
    };

    // The disk fills while the blob is written.
    let (full, full_sum, _) = adopted_tree(&store, "upper-full", "full");
    store
        .write_layer_blob_deferred(
            full.diff_id,
            full_sum,
            Box::new(|out| {
                out.write_all(b"some bytes").unwrap();
                Err(layer::LayerError::Output {
                    source: io::Error::from_raw_os_error(libc::ENOSPC),
                })
            }),
        )
        .unwrap();
    store
        .replace_file_after_blobs(&record, b"names it".to_vec(), &[full.diff_id])
        .unwrap();
    let err = failed(store.finish_deferred_blobs().unwrap_err());
    assert!(matches!(*err, StoreError::DiskFull { .. }), "{err:?}");

    // The tree packs to other bytes than the step announced, of the same
    // size: only the checksum tells.
    let (changed, changed_sum, changed_snapshot) = adopted_tree(&store, "upper-changed", "before");
    fs::write(changed_snapshot.join("etc/hello"), "after!").unwrap();
    let opts = layer::PackOptions::default();
    store
        .write_layer_blob_deferred(
            changed.diff_id,
            changed_sum,
            Box::new(move |out| layer::pack_diff_unhashed(&changed_snapshot, out, &opts)),
        )
        .unwrap();
    let err = failed(store.finish_deferred_blobs().unwrap_err());
    assert!(
        matches!(*err, StoreError::Repacked { diff_id } if diff_id == changed.diff_id),
        "{err:?}"
    );

    for d in [full.diff_id, changed.diff_id] {
        assert!(!store.has_blob(&d), "{d}");
        assert!(!store.blob_path(&d).exists(), "{d}");
        assert!(matches!(
            store.open_blob(&d),
            Err(StoreError::MissingBlob { .. })
        ));
    }
    assert!(
        !record.exists(),
        "a record naming a missing blob is never written"
    );
    assert!(store.pending_file(&record).is_none());
    assert!(temp_blobs(&store).is_empty(), "{:?}", temp_blobs(&store));
    // Neither snapshot is published: no blob vouches for it.
    store.publish_snapshots().unwrap();
    assert!(!published(&full.diff_id).exists());
    assert!(!published(&changed.diff_id).exists());
}

/// A packer that panics fails the finish instead of leaving the build
/// waiting for a blob that never comes.
#[test]
fn a_background_blob_write_that_panics_fails_the_finish() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (stats, sum, _) = adopted_tree(&store, "upper", "boom");
    store
        .write_layer_blob_deferred(
            stats.diff_id,
            sum,
            Box::new(|_| panic!("a bug in the packer")),
        )
        .unwrap();
    let err = store.finish_deferred_blobs().unwrap_err();
    assert!(format!("{err:?}").contains("panicked"), "{err:?}");
    assert!(!store.has_blob(&stats.diff_id));
    assert!(temp_blobs(&store).is_empty(), "{:?}", temp_blobs(&store));
}
