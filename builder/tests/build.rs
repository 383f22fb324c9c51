//! Builds through the library call alone (no CLI, no sandbox): a
//! `FROM scratch` Dockerfile with WORKDIR and COPY into a temporary store,
//! checked through the store API; a second build is fully cached and
//! gives the same image; exporters write the image's files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use rbuild_builder::report::StepStatus;
use rbuild_builder::{
    BuildEvents, BuildOptions, BuildRequest, BuildResult, DockerfileSource, Event, ExportHost,
    ExportStream, HostError, ImageFormat, OutputSpec,
};
use rbuild_oci::reference::ImageRef;
use rbuild_solver::op::ExecNetwork;
use rbuild_solver::plan::PlanRequest;
use rbuild_store::Store;

const DOCKERFILE: &str = "\
FROM scratch
WORKDIR /app
COPY hello.txt ./
COPY etc /etc
LABEL stage=final
";

/// Events as text, one line each: `started [1/3] WORKDIR /app`, `cached 2`.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl BuildEvents for Recorder {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::Started { name, .. } => format!("started {name}"),
            Event::Cached { id } => format!("cached {}", id.0),
            Event::Finished { id, .. } => format!("finished {}", id.0),
            Event::Failed { error, .. } => format!("failed {error}"),
            Event::Summary(s) => format!(
                "summary {} steps, {} cached, {} executed",
                s.steps, s.cached, s.executed
            ),
            Event::Warning { message, .. } => format!("warning {message}"),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Streams go to plain files.
struct FileHost;

struct FileStream(std::fs::File);

impl Write for FileStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ExportStream for FileStream {
    fn finish(self: Box<Self>) -> Result<(), HostError> {
        Ok(self.0.sync_all()?)
    }
}

impl ExportHost for FileHost {
    fn open(&self, dest: &Path) -> Result<Box<dyn ExportStream + '_>, HostError> {
        Ok(Box::new(FileStream(std::fs::File::create(dest)?)))
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("context");
        std::fs::create_dir_all(context.join("etc")).unwrap();
        std::fs::write(context.join("hello.txt"), "hello\n").unwrap();
        std::fs::write(context.join("etc/greeting"), "hi there\n").unwrap();
        std::fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        Fixture { dir, store }
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    fn request(&self) -> BuildRequest {
        let path = self.context().join("Dockerfile");
        BuildRequest {
            dockerfile: DockerfileSource {
                bytes: std::fs::read(&path).unwrap(),
                name: "Dockerfile".into(),
                path: Some(path),
            },
            context: self.context(),
            platforms: Vec::new(),
            plan: PlanRequest {
                build_args: BTreeMap::new(),
                target: None,
                platform: None,
                labels: [("via".to_string(), "library".to_string())].into(),
                network: ExecNetwork::Host,
            },
            tags: vec![ImageRef::parse("app:1").unwrap()],
            no_cache: false,
            no_cache_filter: vec![],
            pull: false,
            push: false,
            secrets: vec![],
            jobs: 2,
            outputs: vec![],
            cache_to: vec![],
            cache_from: vec![],
            source_date_epoch: None,
            inputs: Default::default(),
            annotations: vec![],
            attestations: Default::default(),
            attestation_context: None,
        }
    }

    fn build(&self, request: &BuildRequest, events: &Recorder) -> BuildResult {
        let cancel = AtomicBool::new(false);
        let options = BuildOptions {
            events,
            cancel: &cancel,
            host: &FileHost,
        };
        rbuild_builder::build(&self.store, request, &options).unwrap()
    }
}

#[test]
fn a_scratch_build_writes_the_image_and_a_rebuild_is_fully_cached() {
    let fx = Fixture::new();
    let events = Recorder::default();
    let first = fx.build(&fx.request(), &events);
    let log = events.take();
    assert!(
        log.contains(&"started [2/3] COPY hello.txt ./".to_string()),
        "{log:?}"
    );
    assert_eq!(log.last().unwrap(), "summary 4 steps, 0 cached, 4 executed");

    // The store names it by its tag; config and layers are the Dockerfile's.
    let image = fx.store.resolve("app:1").unwrap();
    assert_eq!(image.id, first.image.id);
    assert_eq!(first.names, [ImageRef::parse("app:1").unwrap()]);
    let config = &image.config.config;
    assert_eq!(config.working_dir.as_deref(), Some("/app"));
    let labels = config.labels.as_ref().unwrap();
    assert_eq!(labels["stage"], "final");
    assert_eq!(labels["via"], "library");
    // WORKDIR and both COPYs each add a layer; LABEL does not.
    assert_eq!(image.layers.len(), 3);
    let history = &image.config.history;
    assert_eq!(history.len(), 4);
    assert!(history[3].empty_layer);
    let rootfs = fx.dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    rbuild_builder::export::unpack_layers(&fx.store, &image, &rootfs).unwrap();
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap();
    assert_eq!(read("app/hello.txt"), "hello\n");
    assert_eq!(read("etc/greeting"), "hi there\n");

    // The report: every step executed, the first time with no earlier build.
    let report = &first.report;
    assert_eq!((report.totals.steps, report.totals.misses), (4, 4));
    let reason = report.steps[1].reason.as_ref().unwrap();
    assert_eq!(reason.detail["reason"], "first-build");
    assert_eq!(report.build.dockerfile, "Dockerfile");
    assert_eq!(report.build.image_id, Some(image.id.to_string()));

    // Again: every step from the cache index, the same image.
    let second = fx.build(&fx.request(), &events);
    let log = events.take();
    assert_eq!(log.last().unwrap(), "summary 4 steps, 4 cached, 0 executed");
    assert!(!log.iter().any(|l| l.starts_with("finished")), "{log:?}");
    assert_eq!(second.image.id, first.image.id);
    assert_eq!(second.report.totals.hits, 4);
    assert!(
        second
            .report
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Cached && s.source.as_deref() == Some("local"))
    );
    assert_eq!(second.report.explain(), "all 4 steps were cached\n");

    // A changed file reruns the COPY that reads it (the last step), and
    // the report says why.
    std::fs::write(fx.context().join("etc/greeting"), "changed\n").unwrap();
    let third = fx.build(&fx.request(), &events);
    let executed: Vec<_> = third
        .report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Executed)
        .collect();
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].instruction, "COPY etc /etc");
    let why = &executed[0].reason.as_ref().unwrap().message;
    assert!(why.contains("greeting"), "{why}");
    assert_ne!(third.image.id, first.image.id);
}

#[test]
fn exporters_tag_and_write_the_root_filesystem() {
    let fx = Fixture::new();
    let mut request = fx.request();
    let tar = fx.dir.path().join("rootfs.tar");
    let local = fx.dir.path().join("out/nested");
    request.outputs = vec![
        OutputSpec::Image {
            names: vec![
                ImageRef::parse("app:1").unwrap(),
                ImageRef::parse("other").unwrap(),
            ],
            push: false,
            format: ImageFormat::default(),
        },
        OutputSpec::Tar { dest: tar.clone() },
        OutputSpec::Local {
            dest: local.clone(),
        },
    ];
    let result = fx.build(&request, &Recorder::default());
    // `-t app:1` and `name=app:1` name it once.
    assert_eq!(
        result
            .names
            .iter()
            .map(ImageRef::familiar)
            .collect::<Vec<_>>(),
        ["app:1", "other:latest"]
    );
    assert_eq!(fx.store.resolve("other").unwrap().id, result.image.id);
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"etc/greeting".to_string()), "{names:?}");
    assert!(names.contains(&"app/hello.txt".to_string()), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(local.join("etc/greeting")).unwrap(),
        "hi there\n"
    );

    // The metadata buildx writes, with every name.
    let m = result.metadata();
    assert_eq!(
        m["containerimage.config.digest"],
        result.image.id.to_string()
    );
    assert_eq!(
        m["containerimage.digest"],
        result.image.manifest_digest.to_string()
    );
    assert_eq!(
        m["containerimage.descriptor"]["size"],
        result.image.manifest_size
    );
    assert_eq!(
        m["image.name"],
        "docker.io/library/app:1,docker.io/library/other:latest"
    );
    assert!(
        rbuild_builder::export::metadata(&result.image, &[])
            .get("image.name")
            .is_none()
    );
}

#[test]
fn image_archives_load_back_as_the_same_image() {
    let fx = Fixture::new();
    let mut request = fx.request();
    let oci = fx.dir.path().join("app.oci.tar");
    let docker = fx.dir.path().join("app.docker.tar");
    request.outputs = vec![
        OutputSpec::Oci {
            dest: oci.clone(),
            format: ImageFormat::default(),
        },
        OutputSpec::Docker {
            dest: docker.clone(),
            format: ImageFormat::default(),
        },
    ];
    let result = fx.build(&request, &Recorder::default());
    for archive in [oci, docker] {
        let fresh = Store::open(&fx.dir.path().join("fresh")).unwrap();
        let file = std::fs::File::open(&archive).unwrap();
        let loaded = rbuild_store::archive::load(&fresh, "archive", file).unwrap();
        assert_eq!(loaded.len(), 1, "{}", archive.display());
        assert_eq!(loaded[0].id, result.image.id, "{}", archive.display());
        assert_eq!(loaded[0].tags, [ImageRef::parse("app:1").unwrap()]);
    }
}

#[test]
fn a_dockerfile_error_and_a_missing_file_are_typed() {
    let fx = Fixture::new();
    let mut request = fx.request();
    request.dockerfile.bytes = b"FROM scratch\nCOPPY x /\n".to_vec();
    let cancel = AtomicBool::new(false);
    let options = BuildOptions {
        events: &(),
        cancel: &cancel,
        host: &FileHost,
    };
    let err = rbuild_builder::build(&fx.store, &request, &options).unwrap_err();
    assert!(
        matches!(err, rbuild_builder::BuildError::Parse { .. }),
        "{err:?}"
    );

    request.dockerfile.bytes = b"FROM scratch\nCOPY missing.txt /\n".to_vec();
    let events = Recorder::default();
    let options = BuildOptions {
        events: &events,
        ..options
    };
    match rbuild_builder::build(&fx.store, &request, &options).unwrap_err() {
        rbuild_builder::BuildError::Step(failure) => {
            assert_eq!(failure.step_name, "[1/1] COPY missing.txt /");
            assert_eq!(failure.lines, (2, 2));
            assert!(
                failure.message.contains("missing.txt"),
                "{}",
                failure.message
            );
        }
        other => panic!("{other:?}"),
    }
    let log = events.take();
    assert!(log.iter().any(|l| l.starts_with("failed ")), "{log:?}");
    // The scratch step ran and so did the failed COPY: both count.
    assert_eq!(log.last().unwrap(), "summary 2 steps, 0 cached, 2 executed");
}
