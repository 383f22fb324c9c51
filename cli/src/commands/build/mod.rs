//! `rbuild build [OPTIONS] PATH` (and `rbuild [OPTIONS] PATH`): docker
//! build's flags, read and parse the Dockerfile, build, then export.
//!
//! The flow: [`BuildArgs`] (clap) → [`BuildRequest`] (validated: tags
//! normalized, build args resolved from the environment, secrets and
//! outputs parsed, the platform checked) → the Dockerfile read and parsed
//! (diagnostics as `rbuild check` prints them) → [`solve::run`] (planning
//! and solving) → [`finish`]: exporters, `--iidfile`, `--metadata-file`,
//! `--report`, `--explain`, and `-q`'s image id.

pub mod export;
pub mod failure;
pub mod options;
pub mod progress;
pub mod report;
mod solve;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rbuild_oci::reference::ImageRef;
use rbuild_solver::plan::{PlanRequest, Platform};
use rbuild_store::{Image, Store};

use self::options::{
    BuildArgFlag, CacheFromSpec, CacheToSpec, NetworkFlag, OutputSpec, ProgressFlag, SecretSpec,
    parse_build_arg, parse_cache_from, parse_cache_to, parse_label, parse_output, parse_platform,
    parse_secret, parse_tag,
};
use self::progress::ProgressMode;
use self::report::BuildReport;
use super::dockerfile_input::DockerfileInput;

/// Flags of `rbuild build`, named and behaving as docker build's.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (NAME[:TAG]); repeatable
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]", value_parser = parse_tag)]
    pub tags: Vec<ImageRef>,
    /// Name of the Dockerfile (default: PATH/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (NAME=VALUE, or NAME to pass it from the
    /// environment); repeatable
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]", value_parser = parse_build_arg)]
    pub build_args: Vec<BuildArgFlag>,
    /// Set the target build stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the cache index when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache index for the steps of STAGE; repeatable
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Always attempt to pull a newer version of base images
    #[arg(long)]
    pub pull: bool,
    /// Push the image to its registry under each -t name after the build
    #[arg(long)]
    pub push: bool,
    /// Set metadata for the image (KEY=VALUE); repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Networking mode for the RUN instructions
    #[arg(long, value_enum, value_name = "MODE", default_value_t = NetworkFlag::Default)]
    pub network: NetworkFlag,
    /// Secret to expose to the build: id=ID[,src=FILE|env=VAR][,type=file|env]
    #[arg(long = "secret", value_name = "SPEC", value_parser = parse_secret)]
    pub secrets: Vec<SecretSpec>,
    /// Most steps executing at once [default: number of cores]
    #[arg(long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// Suppress the build output and print the image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to FILE
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata (JSON, like buildx's) to FILE
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Output destination: type=image|oci|docker|tar|local[,dest=PATH]
    /// (`-o DIR` is type=local,dest=DIR); repeatable
    #[arg(short = 'o', long = "output", value_name = "SPEC", value_parser = parse_output)]
    pub outputs: Vec<OutputSpec>,
    /// Type of progress output
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
    /// Platform to build for (only the host's is supported)
    #[arg(long, value_name = "OS/ARCH", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Write a JSON report of every step (cache hits, misses and why) to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// After the build, print why each executed step missed the cache index
    #[arg(long)]
    pub explain: bool,
    /// Export the build's cache: type=local,dest=DIR | type=registry,ref=REF |
    /// type=inline [,mode=min|max][,mounts=true]; repeatable
    #[arg(long = "cache-to", value_name = "SPEC", value_parser = parse_cache_to)]
    pub cache_to: Vec<CacheToSpec>,
    /// Import a cache: type=local,src=DIR | type=registry,ref=REF
    /// [,mounts=true], or IMAGE (its inline cache); repeatable
    #[arg(long = "cache-from", value_name = "SPEC", value_parser = parse_cache_from)]
    pub cache_from: Vec<CacheFromSpec>,
    /// The build context directory
    #[arg(value_name = "PATH")]
    pub context: PathBuf,
}

/// A validated build: everything [`solve::run`] and [`finish`] need.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The context directory, absolute.
    pub context: PathBuf,
    /// What the planner gets: build args (resolved), target, platform,
    /// labels, network.
    pub plan: PlanRequest,
    /// `-t`, normalized, duplicates dropped.
    pub tags: Vec<ImageRef>,
    pub no_cache: bool,
    /// `--no-cache-filter` stage names (lowercased: stage names are).
    pub no_cache_filter: Vec<String>,
    pub pull: bool,
    /// `--push`: push to every tag after the build.
    pub push: bool,
    pub secrets: Vec<SecretSpec>,
    /// At least 1.
    pub jobs: usize,
    /// `-o` (default: one `type=image`).
    pub outputs: Vec<OutputSpec>,
    pub quiet: bool,
    pub progress: ProgressMode,
    pub iidfile: Option<PathBuf>,
    pub metadata_file: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub explain: bool,
    /// `--cache-to`, in the order given.
    pub cache_to: Vec<CacheToSpec>,
    /// `--cache-from`, consulted in the order given.
    pub cache_from: Vec<CacheFromSpec>,
}

impl BuildRequest {
    /// Validates `args`; `env` is the process environment (injected for
    /// tests), `stderr_is_tty` picks `--progress auto`.
    pub fn from_args(
        args: &BuildArgs,
        env: impl Fn(&str) -> Option<String>,
        stderr_is_tty: bool,
    ) -> anyhow::Result<BuildRequest> {
        let context = validate_context(&args.context)?;
        let mut tags: Vec<ImageRef> = Vec::new();
        for t in &args.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let mut secret_ids = std::collections::BTreeSet::new();
        for s in &args.secrets {
            if !secret_ids.insert(&s.id) {
                bail!(
                    "invalid value for --secret: the id {:?} is given twice",
                    s.id
                );
            }
        }
        let outputs = if args.outputs.is_empty() {
            vec![OutputSpec::Image {
                names: Vec::new(),
                push: false,
            }]
        } else {
            args.outputs.clone()
        };
        if outputs.iter().filter(|o| o.is_stdout()).count() > 1 {
            bail!("invalid value for --output: only one output can write to stdout (dest=-)");
        }
        if args.quiet && outputs.iter().any(OutputSpec::is_stdout) {
            bail!(
                "--quiet prints the image ID on stdout, which an output with dest=- also uses\nhint: write the output to a file"
            );
        }
        let progress = if args.quiet {
            ProgressMode::Quiet
        } else {
            match args.progress {
                ProgressFlag::Auto if stderr_is_tty => ProgressMode::Tty,
                ProgressFlag::Auto => ProgressMode::Plain,
                ProgressFlag::Tty => ProgressMode::Tty,
                ProgressFlag::Plain => ProgressMode::Plain,
                ProgressFlag::Json => ProgressMode::Json,
            }
        };
        let jobs = args
            .jobs
            .map(|n| n.get())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(BuildRequest {
            context,
            plan: PlanRequest {
                build_args: options::resolve_build_args(&args.build_args, env),
                target: args.target.clone(),
                platform: Some(args.platform.clone().unwrap_or_else(Platform::host)),
                labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
                network: args.network.exec_network(),
            },
            tags,
            no_cache: args.no_cache,
            no_cache_filter: args
                .no_cache_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            pull: args.pull,
            push: args.push,
            secrets: args.secrets.clone(),
            jobs,
            outputs,
            quiet: args.quiet,
            progress,
            iidfile: args.iidfile.clone(),
            metadata_file: args.metadata_file.clone(),
            report: args.report.clone(),
            explain: args.explain,
            cache_to: args.cache_to.clone(),
            cache_from: args.cache_from.clone(),
        })
    }
}

fn validate_context(path: &Path) -> anyhow::Result<PathBuf> {
    let text = path.to_string_lossy();
    if text == "-" {
        bail!(
            "reading the build context from stdin is not supported\nhint: pass a directory as PATH (a Dockerfile alone can come from stdin with -f -)"
        );
    }
    if text.contains("://") || text.starts_with("git@") {
        bail!(
            "remote build contexts ({text}) are not supported\nhint: clone it and pass the directory"
        );
    }
    let meta = std::fs::metadata(path)
        .with_context(|| format!("unable to prepare context: path {text:?} not found"))?;
    if !meta.is_dir() {
        bail!("unable to prepare context: {text:?} is not a directory");
    }
    std::path::absolute(path).with_context(|| format!("cannot resolve {text}"))
}

/// What a successful build produced.
pub struct BuildOutcome {
    /// The built image, written to the store (untagged: [`finish`] tags it).
    pub image: Image,
    /// Per-step record for `--report` and `--explain`.
    pub report: BuildReport,
    /// The registry client the build used (FROM pulls, registry caches),
    /// with its tokens and credentials, for `--push`.
    pub client: std::sync::Arc<rbuild_registry::Client>,
}

/// Runs `rbuild build`.
pub fn run(root: &Path, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let request = BuildRequest::from_args(
        &args,
        |k| std::env::var(k).ok(),
        std::io::stderr().is_terminal(),
    )?;
    let input = read_dockerfile(args.file.as_deref(), &request.context)?;
    let dockerfile = match rbuild_parser::parse(&input.bytes) {
        Ok(d) => d,
        Err(err) => {
            eprint!("{}", err.render(&input.display_name, &input.bytes));
            return Ok(ExitCode::from(1));
        }
    };
    if !request.quiet {
        for warning in &dockerfile.warnings {
            eprint!("{}", warning.render(&input.display_name, &input.bytes));
        }
    }
    let store = crate::root::open_store(root)?;
    let progress = progress::renderer(request.progress);
    let outcome = solve::run(&request, &input, &dockerfile, &store, progress.as_ref())?;
    finish(&store, &request, &outcome)?;
    Ok(ExitCode::SUCCESS)
}

/// `-f FILE`, else `PATH/Dockerfile`, else (as docker) `PATH/dockerfile`.
fn read_dockerfile(file: Option<&Path>, context: &Path) -> anyhow::Result<DockerfileInput> {
    let fallback = context.join("dockerfile");
    let file = match file {
        None if !context.join("Dockerfile").exists() && fallback.exists() => Some(fallback),
        other => other.map(Path::to_path_buf),
    };
    DockerfileInput::read(file.as_deref(), context)
}

/// After a successful build: exports the image to each `-o`, tags it,
/// writes `--iidfile`, `--metadata-file` and `--report`, prints the
/// `--explain` lines (stderr) and, with `-q`, the image ID (stdout).
pub fn finish(store: &Store, request: &BuildRequest, outcome: &BuildOutcome) -> anyhow::Result<()> {
    let image = &outcome.image;
    // Tagged whatever the outputs: the image is in the store already and
    // `-t` names it there (docker applies -t to its image exporter).
    let mut names = request.tags.clone();
    for out in &request.outputs {
        if let OutputSpec::Image { names: extra, .. } = out {
            names.extend(extra.iter().cloned());
        }
    }
    // `-t a -o type=image,name=a` names `a` once (dedup only drops
    // neighbours).
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_string()));
    for out in &request.outputs {
        export::export(store, image, out, &names)?;
    }
    if request
        .outputs
        .iter()
        .all(|o| !matches!(o, OutputSpec::Image { .. }))
    {
        let store_only = OutputSpec::Image {
            names: vec![],
            push: false,
        };
        export::export(store, image, &store_only, &names)?;
    }
    // `-o type=image,push=true` pushes like `--push`: to every name the
    // image exporter got (buildx hands it the `-t` tags as names too).
    let push = request.push
        || request
            .outputs
            .iter()
            .any(|o| matches!(o, OutputSpec::Image { push: true, .. }));
    if push {
        if names.is_empty() {
            anyhow::bail!(
                "pushing needs a name\nhint: add -t REGISTRY/NAME:TAG or -o type=image,name=REGISTRY/NAME:TAG,push=true"
            );
        }
        for name in &names {
            crate::commands::push::push_image(store, &outcome.client, image, name, request.quiet)?;
        }
    }
    if let Some(path) = &request.iidfile {
        export::write_file(path, image.id.to_string().as_bytes())?;
    }
    if let Some(path) = &request.metadata_file {
        let meta = export::metadata(image, &names);
        export::write_file(path, &serde_json::to_vec_pretty(&meta)?)?;
    }
    if let Some(path) = &request.report {
        export::write_file(path, &serde_json::to_vec_pretty(&outcome.report)?)?;
    }
    if request.explain {
        eprint!("{}", outcome.report.explain());
    }
    if request.quiet {
        println!("{}", image.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BuildArgs,
    }

    fn parse(argv: &[&str]) -> Result<BuildArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("build").chain(argv.iter().copied())).map(|w| w.args)
    }

    fn request(argv: &[&str]) -> anyhow::Result<BuildRequest> {
        let dir = tempfile::tempdir().unwrap();
        let mut full: Vec<&str> = argv.to_vec();
        let ctx = dir.path().to_str().unwrap().to_string();
        full.push(&ctx);
        let args = parse(&full).map_err(|e| anyhow::anyhow!("{e}"))?;
        BuildRequest::from_args(&args, |k| (k == "FROM_ENV").then(|| "v".into()), false)
    }

    #[test]
    fn every_flag_is_parsed_with_docker_names() {
        let r = request(&[
            "-t",
            "app:1.0",
            "--tag",
            "app:1.0",
            "-t",
            "other",
            "--build-arg",
            "A=1",
            "--build-arg",
            "FROM_ENV",
            "--build-arg",
            "UNSET",
            "--target",
            "build",
            "--no-cache",
            "--no-cache-filter",
            "Deps",
            "--pull",
            "--label",
            "k=v",
            "--network",
            "none",
            "--jobs",
            "3",
            "--iidfile",
            "id.txt",
            "--metadata-file",
            "m.json",
            "-o",
            "type=tar,dest=x.tar",
            "--progress",
            "json",
            "--platform",
            "local",
            "--report",
            "r.json",
            "--explain",
        ])
        .unwrap();
        assert_eq!(
            r.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
            ["app:1.0", "other:latest"]
        );
        assert_eq!(r.plan.build_args.len(), 2);
        assert_eq!(r.plan.build_args["FROM_ENV"], "v");
        assert_eq!(r.plan.target.as_deref(), Some("build"));
        assert_eq!(r.plan.labels["k"], "v");
        assert_eq!(r.plan.network, rbuild_solver::op::ExecNetwork::None);
        assert_eq!(r.plan.platform, Some(Platform::host()));
        assert!(r.no_cache && r.pull && r.explain);
        assert_eq!(r.no_cache_filter, ["deps"]);
        assert_eq!(r.jobs, 3);
        assert_eq!(r.progress, ProgressMode::Json);
        assert_eq!(
            r.outputs,
            [OutputSpec::Tar {
                dest: "x.tar".into()
            }]
        );
        assert!(r.context.is_absolute());
    }

    #[test]
    fn defaults_match_docker() {
        let r = request(&[]).unwrap();
        assert_eq!(
            r.outputs,
            [OutputSpec::Image {
                names: vec![],
                push: false
            }]
        );
        assert_eq!(r.progress, ProgressMode::Plain, "auto without a terminal");
        assert!(r.jobs >= 1);
        assert_eq!(r.plan.network, rbuild_solver::op::ExecNetwork::Host);
        let q = request(&["-q"]).unwrap();
        assert_eq!(q.progress, ProgressMode::Quiet);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_value() {
        let msg = |argv: &[&str]| format!("{:#}", request(argv).unwrap_err());
        let m = msg(&["-t", "Bad:1"]);
        assert!(m.contains("--tag") && m.contains("Bad:1"), "{m}");
        let m = msg(&["--platform", "linux/s390x"]);
        assert!(m.contains("--platform") && m.contains("linux/s390x"), "{m}");
        let m = msg(&["--network", "bridge"]);
        assert!(m.contains("--network") && m.contains("bridge"), "{m}");
        let m = msg(&["--secret", "id=a,kind=x"]);
        assert!(m.contains("--secret") && m.contains("kind"), "{m}");
        let m = msg(&["-o", "type=registry"]);
        assert!(m.contains("--output") && m.contains("registry"), "{m}");
        let m = msg(&["--progress", "fancy"]);
        assert!(m.contains("--progress") && m.contains("fancy"), "{m}");
        let m = msg(&["--jobs", "0"]);
        assert!(m.contains("--jobs") && m.contains('0'), "{m}");
        let m = msg(&["--secret", "id=a,src=/x", "--secret", "id=a,src=/y"]);
        assert!(m.contains("--secret") && m.contains("\"a\""), "{m}");
        let m = msg(&["-q", "-o", "-"]);
        assert!(m.contains("--quiet"), "{m}");
    }

    #[test]
    fn the_context_must_be_a_local_directory() {
        for bad in ["-", "https://github.com/x/y.git", "/no/such/dir"] {
            let args = parse(&[bad]).unwrap();
            assert!(
                BuildRequest::from_args(&args, |_| None, false).is_err(),
                "{bad}"
            );
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        let args = parse(&[f.path().to_str().unwrap()]).unwrap();
        let e = BuildRequest::from_args(&args, |_| None, false).unwrap_err();
        assert!(e.to_string().contains("not a directory"));
    }

    #[test]
    fn a_lowercase_dockerfile_is_found_when_dockerfile_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dockerfile"), "FROM scratch\n").unwrap();
        let input = read_dockerfile(None, dir.path()).unwrap();
        assert_eq!(input.bytes, b"FROM scratch\n");
    }
}
