//! The store's public API as the sandbox and the build use it: write an
//! image from a packed directory, resolve it by name, snapshot its layer,
//! lease it against removal.

use std::fs;

use rbuild_oci::ImageConfig;
use rbuild_oci::image_config::RootFs;
use rbuild_oci::reference::ImageRef;
use rbuild_store::layer::{self, PackOptions};
use rbuild_store::layout::MEDIA_TYPE_LAYER_TAR;
use rbuild_store::{LayerInfo, Store, StoreError};

#[test]
fn pack_write_resolve_snapshot_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/motd"), "hello\n").unwrap();

    let store = Store::open(&tmp.path().join("root")).unwrap();
    let session = store.write_session().unwrap();
    let mut blob = store.blob_writer(None).unwrap();
    let stats = layer::pack_dir(&src, &mut blob, &PackOptions::default()).unwrap();
    let (digest, size) = blob.commit().unwrap();
    assert_eq!(digest, stats.diff_id);
    assert_eq!(size, stats.size);
    let layer = LayerInfo {
        digest,
        diff_id: stats.diff_id,
        size,
        media_type: MEDIA_TYPE_LAYER_TAR.to_string(),
    };
    let config = ImageConfig {
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![stats.diff_id.to_string()],
        },
        ..ImageConfig::default()
    };
    let tag = ImageRef::parse("example/motd:1").unwrap();
    let id = store
        .write_image(
            &config,
            std::slice::from_ref(&layer),
            std::slice::from_ref(&tag),
        )
        .unwrap();
    drop(session);

    let image = store.resolve("example/motd:1").unwrap();
    assert_eq!(image.id, id);
    assert_eq!(store.resolve(&tag).unwrap().id, id);
    assert_eq!(store.resolve(&id).unwrap().id, id);
    assert_eq!(store.resolve(&id.short()).unwrap().id, id);
    assert_eq!(image.tags, vec![tag]);
    assert_eq!(image.layers, vec![layer]);

    let snap = store.snapshot(&stats.diff_id).unwrap();
    assert_eq!(
        fs::read_to_string(snap.join("etc/motd")).unwrap(),
        "hello\n"
    );

    // Another process (here: another Store) removes the image while we hold
    // a lease: blobs and snapshot stay until the lease is dropped.
    let lease = store.lease(&image).unwrap();
    let other = Store::open(&tmp.path().join("root")).unwrap();
    other.remove(&image).unwrap();
    other.gc(&rbuild_store::NoGcRoots).unwrap();
    assert!(snap.join("etc/motd").exists());
    assert!(matches!(
        store.resolve("example/motd:1"),
        Err(StoreError::NotFound { .. })
    ));
    drop(lease);
    let blobs = tmp.path().join("root/store-v1/blobs/sha256");
    let blob_bytes: u64 = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let stats = other.gc(&rbuild_store::NoGcRoots).unwrap();
    assert_eq!(stats.snapshots_removed, 1);
    // What disappears from disk: every blob, and the snapshot's one file.
    assert_eq!(stats.bytes_freed, blob_bytes + "hello\n".len() as u64);
    assert!(!snap.exists());
}

#[test]
fn unknown_image_error_names_it_and_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let err = store.resolve("nothere:v9").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no such image: nothere:v9"), "{msg}");
    assert!(msg.contains("hint:"), "{msg}");
}
