//! The codecs against each other: an imported image saved in either
//! format and loaded into a fresh store keeps its ID, names and layers.

use std::io::Read;
use std::path::Path;

use super::*;
use crate::{Image, Store};
use rbuild_oci::reference::ImageRef;

fn r(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn options(tags: &[&str]) -> ImportOptions {
    ImportOptions {
        config: config_from_changes(&[r#"CMD ["/bin/true"]"#.to_string()]).unwrap(),
        created: "2024-01-01T00:00:00Z".to_string(),
        comment: None,
        tags: tags.iter().map(|t| r(t)).collect(),
        platform: None,
    }
}

/// A store under `dir` holding one image imported from a small tree.
fn store_with_image(dir: &Path, tags: &[&str]) -> (Store, Image) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/greeting"), "hello\n").unwrap();
    let store = Store::open(&dir.join("root")).unwrap();
    let id = import(&store, "tree", RootFs::Dir(&tree), &options(tags)).unwrap();
    let image = store.resolve(&id).unwrap();
    (store, image)
}

fn save(store: &Store, image: &Image, name: Option<&str>, format: ArchiveFormat) -> Vec<u8> {
    let mut out = Vec::new();
    write_archive(store, &[(image.clone(), name.map(r))], format, &mut out).unwrap();
    out
}

fn entry_names(archive: &[u8]) -> Vec<String> {
    tar::Archive::new(archive)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_docker_archive_round_trip_keeps_the_image_id_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = store_with_image(dir.path(), &["app:1.0"]);
    let archive = save(&store, &image, Some("app:1.0"), ArchiveFormat::Docker);
    let names = entry_names(&archive);
    for n in ["manifest.json", "repositories", "index.json", "oci-layout"] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }

    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let loaded = load(&fresh, "app.tar", &archive[..]).unwrap();
    assert_eq!(
        loaded,
        vec![LoadedImage {
            id: image.id,
            tags: vec![r("app:1.0")],
            renamed: vec![],
        }]
    );
    let back = fresh.resolve("app:1.0").unwrap();
    assert_eq!(back.id, image.id);
    assert_eq!(back.manifest_digest, image.manifest_digest);
    assert_eq!(back.layers, image.layers);
}

#[test]
fn an_oci_archive_round_trip_keeps_the_image_id_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = store_with_image(dir.path(), &["example.com/tools/app:v2"]);
    let archive = save(
        &store,
        &image,
        Some("example.com/tools/app:v2"),
        ArchiveFormat::Oci,
    );
    let names = entry_names(&archive);
    assert!(!names.contains(&"manifest.json".to_string()), "{names:?}");

    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let loaded = load(&fresh, "app.tar", &archive[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, image.id);
    assert_eq!(loaded[0].tags, vec![r("example.com/tools/app:v2")]);
    assert_eq!(
        fresh.resolve("example.com/tools/app:v2").unwrap().layers,
        image.layers
    );
}

#[test]
fn a_gzipped_unnamed_archive_loads_as_a_dangling_image() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = store_with_image(dir.path(), &[]);
    let archive = save(&store, &image, None, ArchiveFormat::Docker);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &archive).unwrap();
    let gz = gz.finish().unwrap();

    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let loaded = load(&fresh, "app.tar.gz", &gz[..]).unwrap();
    assert_eq!(loaded[0].id, image.id);
    assert!(loaded[0].tags.is_empty());
    assert!(fresh.resolve(&image.id).unwrap().is_dangling());
}

#[test]
fn the_same_images_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = store_with_image(dir.path(), &["app"]);
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        assert_eq!(
            save(&store, &image, Some("app"), format),
            save(&store, &image, Some("app"), format)
        );
    }
}

#[test]
fn loading_a_name_held_by_another_image_reports_the_rename() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = store_with_image(dir.path(), &["app"]);
    let archive = save(&store, &image, Some("app"), ArchiveFormat::Docker);
    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    // Any tar is a root filesystem; the archive itself will do.
    let other = import(
        &fresh,
        "other",
        RootFs::Tar(Box::new(&archive[..])),
        &options(&["app"]),
    )
    .unwrap();
    let loaded = load(&fresh, "app.tar", &archive[..]).unwrap();
    assert_eq!(loaded[0].renamed, vec![(r("app"), other)]);
    // Loading it again moves nothing.
    let again = load(&fresh, "app.tar", &archive[..]).unwrap();
    assert!(again[0].renamed.is_empty());
}

#[test]
fn an_imported_tar_is_the_layer_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hi.txt", &b"hi\n"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = import(&store, "-", RootFs::Tar(Box::new(&tar[..])), &options(&[])).unwrap();
    let image = store.resolve(&id).unwrap();
    let mut layer = Vec::new();
    store
        .open_blob(&image.layers[0].digest)
        .unwrap()
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(layer, tar);
    let history = &image.config.history;
    assert_eq!(history[0].comment.as_deref(), Some("Imported from -"));
    assert_eq!(image.config.config.cmd, Some(vec!["/bin/true".to_string()]));
}

#[test]
fn what_is_not_an_archive_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let junk = b"root:x:0:0:root:/root:/bin/sh\n".repeat(40);
    let err = load(&store, "passwd", &junk[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::NotTar { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot load passwd: not a tar archive")
    );
    let err = import(
        &store,
        "passwd",
        RootFs::Tar(Box::new(&junk[..])),
        &options(&[]),
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::ImportNotTar { .. }), "{err:?}");
    // An empty tar is neither layout.
    let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
    let err = load(&store, "empty.tar", &empty[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::UnknownLayout { .. }), "{err:?}");
}
