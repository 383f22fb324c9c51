//! What the build library asks of `rbuild build`: [`Frontend`] takes the
//! build's events (progress to the `--progress` renderer; Dockerfile
//! warnings rendered as `rbuild check` does; push lines on stdout as
//! docker prints them; the interrupt handler installed when the steps
//! start) and [`CliHost`] is the exporters' host (files that appear once
//! complete, stdout for `dest=-`).

use std::path::Path;
use std::sync::Mutex;

use rbuild_builder::{BuildEvents, DockerfileSource, Event, ExportHost, ExportStream, HostError};
use rbuild_registry::PushProgress as _;
use rbuild_solver::Digest;

use crate::commands::output::Output;
use crate::commands::push;

/// The build's event sink.
pub struct Frontend<'a> {
    /// The `--progress` renderer.
    pub progress: Box<dyn BuildEvents>,
    /// `-q`: no Dockerfile warnings, only the digest line of a push.
    pub quiet: bool,
    /// For rendering Dockerfile warnings with their source lines.
    pub dockerfile: &'a DockerfileSource,
    /// The config blob of the running push (docker does not show it).
    pushing: Mutex<Option<Digest>>,
}

impl<'a> Frontend<'a> {
    pub fn new(
        progress: Box<dyn BuildEvents>,
        quiet: bool,
        dockerfile: &'a DockerfileSource,
    ) -> Frontend<'a> {
        Frontend {
            progress,
            quiet,
            dockerfile,
            pushing: Mutex::new(None),
        }
    }
}

impl BuildEvents for Frontend<'_> {
    fn event(&self, event: &Event<'_>) {
        match *event {
            Event::DockerfileWarning(warning) => {
                if !self.quiet {
                    eprint!(
                        "{}",
                        warning.render(&self.dockerfile.name, &self.dockerfile.bytes)
                    );
                }
            }
            // SIGINT/SIGTERM from now on: running steps are killed, no
            // new one starts (the flag is the build's cancel flag).
            Event::Solving => {
                rbuild_sandbox::cancel_on_interrupt();
            }
            Event::PushStarted { reference, config } => {
                *self.pushing.lock().unwrap_or_else(|e| e.into_inner()) = Some(*config);
                push::print_started(reference, self.quiet);
            }
            Event::Push(push_event) => {
                let config = *self.pushing.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(config) = config {
                    push::Printer {
                        quiet: self.quiet,
                        config,
                    }
                    .event(push_event);
                }
            }
            Event::Pushed {
                reference,
                digest,
                size,
            } => push::print_pushed(reference, digest, size),
            _ => self.progress.event(event),
        }
    }
}

/// Exports' streams (rootfs tars, image archives) where `rbuild save` and
/// `rbuild export` write theirs.
pub struct CliHost;

impl ExportStream for Output {
    fn finish(self: Box<Self>) -> Result<(), HostError> {
        Ok(Output::finish(*self)?)
    }
}

impl ExportHost for CliHost {
    fn open(&self, dest: &Path) -> Result<Box<dyn ExportStream + '_>, HostError> {
        Ok(Box::new(Output::open(Some(dest))?))
    }
}

#[cfg(test)]
mod tests {
    use rbuild_builder::OutputSpec;
    use rbuild_oci::reference::ImageRef;
    use rbuild_store::archive::{self, ImportOptions, RootFs};
    use rbuild_store::{Image, Store};
    use serde_json::json;

    use super::*;

    /// A store under a temp dir holding one imported image.
    fn store_with_image() -> (tempfile::TempDir, Store, Image) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/greeting"), "hello\n").unwrap();
        std::fs::write(tree.join("top"), "top\n").unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let options = ImportOptions {
            config: archive::config_from_changes(&[]).unwrap(),
            created: "2024-01-01T00:00:00Z".to_string(),
            comment: None,
            tags: vec![],
            platform: None,
        };
        let id = archive::import(&store, "tree", RootFs::Dir(&tree), &options).unwrap();
        let image = store.resolve(&id).unwrap();
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
    fn archives_are_oci_layouts_and_docker_archives() {
        let (d, store, image) = store_with_image();
        let names = vec![ImageRef::parse("app:1.0").unwrap()];
        let oci = d.path().join("oci.tar");
        let export = |output| rbuild_builder::export(&store, &image, &output, &names, &CliHost);
        export(OutputSpec::Oci {
            dest: oci.clone(),
            format: rbuild_builder::ImageFormat::default(),
        })
        .unwrap();
        let n = tar_names(&oci);
        assert!(n.contains(&"oci-layout".to_string()) && n.contains(&"index.json".to_string()));
        assert!(!n.contains(&"manifest.json".to_string()), "pure OCI: {n:?}");
        assert!(n.contains(&format!("blobs/sha256/{}", image.id.hex())));
        let docker = d.path().join("docker.tar");
        export(OutputSpec::Docker {
            dest: docker.clone(),
            format: rbuild_builder::ImageFormat::default(),
        })
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
    fn a_rootfs_tar_goes_through_the_cli_output() {
        let (d, store, image) = store_with_image();
        let tar_path = d.path().join("rootfs.tar");
        rbuild_builder::export(
            &store,
            &image,
            &OutputSpec::Tar {
                dest: tar_path.clone(),
            },
            &[],
            &CliHost,
        )
        .unwrap();
        let n = tar_names(&tar_path);
        assert!(n.contains(&"etc/greeting".to_string()), "{n:?}");
    }
}
