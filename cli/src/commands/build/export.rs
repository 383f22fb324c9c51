//! Exporters: what `-o` does with the image a build wrote to the store,
//! plus the `--iidfile` and `--metadata-file` writers. The archive and
//! rootfs writers are `rbuild save`'s and `rbuild export`'s, shared.

use std::path::Path;

use anyhow::Context as _;
use rbuild_oci::reference::ImageRef;
use rbuild_store::layout::MEDIA_TYPE_MANIFEST;
use rbuild_store::{Image, Store};
use serde_json::json;

use super::options::OutputSpec;
use crate::commands::output::Output;
use crate::commands::save::{self, Format};

/// Exports `image` (already in `store`) to `output`; `names` are the
/// `-t` tags and `type=image,name=` names, normalized.
pub fn export(
    store: &Store,
    image: &Image,
    output: &OutputSpec,
    names: &[ImageRef],
) -> anyhow::Result<()> {
    let _lease = store.lease(image)?;
    match output {
        OutputSpec::Image { .. } => {
            for name in names {
                store
                    .tag(image, name)
                    .with_context(|| format!("cannot tag the image as {}", name.familiar()))?;
            }
            Ok(())
        }
        OutputSpec::Oci { dest } => archive(store, image, names, Format::Oci, dest),
        OutputSpec::Docker { dest } => archive(store, image, names, Format::Docker, dest),
        OutputSpec::Tar { dest } => {
            let mut out = Output::open(Some(dest))?;
            crate::commands::export::write_rootfs_tar(store, image, &mut out)?;
            out.finish()
        }
        OutputSpec::Local { dest } => {
            std::fs::create_dir_all(dest)
                .with_context(|| format!("cannot create output directory {}", dest.display()))?;
            crate::commands::export::unpack_layers(store, image, dest)
        }
    }
}

fn archive(
    store: &Store,
    image: &Image,
    names: &[ImageRef],
    format: Format,
    dest: &Path,
) -> anyhow::Result<()> {
    let selected: Vec<(Image, Option<ImageRef>)> = if names.is_empty() {
        vec![(image.clone(), None)]
    } else {
        names
            .iter()
            .map(|n| (image.clone(), Some(n.clone())))
            .collect()
    };
    let mut out = Output::open(Some(dest))?;
    save::write_archive(store, &selected, format, &mut out)
        .with_context(|| format!("cannot write the image archive {}", dest.display()))?;
    out.finish()
}

/// `--metadata-file`'s content, with buildx's keys.
pub fn metadata(image: &Image, names: &[ImageRef]) -> serde_json::Value {
    let mut meta = json!({
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.digest": image.manifest_digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": MEDIA_TYPE_MANIFEST,
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest_size,
        },
    });
    if !names.is_empty() {
        let joined: Vec<String> = names.iter().map(ImageRef::to_string).collect();
        meta["image.name"] = json!(joined.join(","));
    }
    meta
}

/// Writes a small result file (`--iidfile`, `--metadata-file`,
/// `--report`), naming it in errors.
pub fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A store under a temp dir holding one imported image.
    fn store_with_image() -> (tempfile::TempDir, Store, Image) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/greeting"), "hello\n").unwrap();
        std::fs::write(tree.join("top"), "top\n").unwrap();
        let root = dir.path().join("root");
        crate::commands::import::run(
            &root,
            crate::commands::import::Args {
                source: tree.to_str().unwrap().into(),
                reference: None,
                changes: vec![],
                message: None,
            },
        )
        .unwrap();
        let store = Store::open(&root).unwrap();
        let image = store.images().unwrap().remove(0);
        (dir, store, image)
    }

    fn tar_names(path: &Path) -> Vec<String> {
        let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
        let mut names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn image_output_tags_every_name() {
        let (_d, store, image) = store_with_image();
        let names = vec![
            ImageRef::parse("app:1.0").unwrap(),
            ImageRef::parse("app:latest").unwrap(),
        ];
        export(
            &store,
            &image,
            &OutputSpec::Image {
                names: vec![],
                push: false,
            },
            &names,
        )
        .unwrap();
        let tagged = store.resolve("app:1.0").unwrap();
        assert_eq!(tagged.id, image.id);
        assert_eq!(store.resolve("app").unwrap().id, image.id);
    }

    #[test]
    fn archives_are_oci_layouts_and_docker_archives() {
        let (d, store, image) = store_with_image();
        let names = vec![ImageRef::parse("app:1.0").unwrap()];
        let oci = d.path().join("oci.tar");
        export(
            &store,
            &image,
            &OutputSpec::Oci { dest: oci.clone() },
            &names,
        )
        .unwrap();
        let n = tar_names(&oci);
        assert!(n.contains(&"oci-layout".to_string()) && n.contains(&"index.json".to_string()));
        assert!(!n.contains(&"manifest.json".to_string()), "pure OCI: {n:?}");
        assert!(n.contains(&format!("blobs/sha256/{}", image.id.hex())));
        let docker = d.path().join("docker.tar");
        export(
            &store,
            &image,
            &OutputSpec::Docker {
                dest: docker.clone(),
            },
            &names,
        )
        .unwrap();
        let n = tar_names(&docker);
        assert!(n.contains(&"manifest.json".to_string()), "{n:?}");
        // docker load reads RepoTags from manifest.json.
        let mut a = tar::Archive::new(std::fs::File::open(&docker).unwrap());
        let manifest: serde_json::Value = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap() == Path::new("manifest.json"))
            .map(|e| serde_json::from_reader(e).unwrap())
            .unwrap();
        assert_eq!(manifest[0]["RepoTags"], json!(["app:1.0"]));
    }

    #[test]
    fn rootfs_outputs_hold_the_files() {
        let (d, store, image) = store_with_image();
        let tar_path = d.path().join("rootfs.tar");
        export(
            &store,
            &image,
            &OutputSpec::Tar {
                dest: tar_path.clone(),
            },
            &[],
        )
        .unwrap();
        let n = tar_names(&tar_path);
        assert!(n.contains(&"etc/greeting".to_string()), "{n:?}");
        let local: PathBuf = d.path().join("out/nested");
        export(
            &store,
            &image,
            &OutputSpec::Local {
                dest: local.clone(),
            },
            &[],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(local.join("etc/greeting")).unwrap(),
            "hello\n"
        );
        assert_eq!(std::fs::read_to_string(local.join("top")).unwrap(), "top\n");
    }

    #[test]
    fn metadata_has_buildx_keys() {
        let (_d, _store, image) = store_with_image();
        let m = metadata(
            &image,
            &[
                ImageRef::parse("app:1").unwrap(),
                ImageRef::parse("b").unwrap(),
            ],
        );
        assert_eq!(m["containerimage.config.digest"], image.id.to_string());
        assert_eq!(
            m["containerimage.digest"],
            image.manifest_digest.to_string()
        );
        assert_eq!(m["containerimage.descriptor"]["size"], image.manifest_size);
        assert_eq!(
            m["image.name"],
            "docker.io/library/app:1,docker.io/library/b:latest"
        );
        assert!(metadata(&image, &[]).get("image.name").is_none());
    }
}
