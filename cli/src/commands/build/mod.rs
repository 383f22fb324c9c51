//! `rbuild build [OPTIONS] PATH` (and `rbuild [OPTIONS] PATH`): docker
//! build's flags, then the build library, then the result files.
//!
//! The flow: [`BuildArgs`] (clap) → [`Invocation`] (validated: tags
//! normalized, build args resolved from the environment, secrets and
//! outputs parsed, the platform checked; the library's
//! [`BuildRequest`] plus what only the CLI does with the result) → the
//! Dockerfile read → [`rbuild_builder::build`] (events to the
//! `--progress` renderer through [`frontend::Frontend`]) → [`finish`]:
//! `--iidfile`, `--metadata-file`, `--report`, `--explain`, and `-q`'s
//! image id. A Dockerfile error or a failed step is shown in full and
//! exits 1.

pub mod failure;
pub mod frontend;
mod inputs;
pub mod options;
pub mod progress;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rbuild_builder::spec::parse::{
    parse_annotation, parse_build_arg, parse_cache_from, parse_cache_to, parse_label, parse_output,
    parse_platforms, parse_tag, resolve_build_args,
};
use rbuild_builder::{
    Annotation, BuildArg, BuildError, BuildOptions, BuildRequest, BuildResult, CacheFromSpec,
    CacheToSpec, DockerfileSource, ImageFormat, OutputSpec, SecretSpec,
};
use rbuild_oci::reference::ImageRef;
use rbuild_solver::plan::{PlanRequest, Platform};

use self::failure::StepFailure;
use self::options::{NetworkFlag, ProgressFlag, parse_secret};
use self::progress::ProgressMode;
use super::check;
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
    pub build_args: Vec<BuildArg>,
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
    /// Output destination: type=image|registry|oci|docker|tar|local[,dest=PATH]
    /// (`-o DIR` is type=local,dest=DIR); image, registry, oci and docker
    /// take compression=gzip|zstd|uncompressed, compression-level=N,
    /// force-compression=, oci-mediatypes=, rewrite-timestamp=,
    /// annotation.KEY=VALUE; repeatable
    #[arg(short = 'o', long = "output", value_name = "SPEC", value_parser = parse_output)]
    pub outputs: Vec<OutputSpec>,
    /// Type of progress output
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
    /// Platforms to build for, comma-separated (several make one image index; foreign ones run under qemu-user)
    #[arg(long, value_name = "OS/ARCH[,…]", value_parser = platform_list)]
    pub platform: Option<PlatformList>,
    /// Write a JSON report of every step (cache hits, misses and why) to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// After the build, print why each executed step missed the cache index
    #[arg(long)]
    pub explain: bool,
    /// Write a Chrome/Perfetto trace of the build (JSON trace events: steps
    /// on parallel tracks, their phases nested) to FILE
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Export the build's cache: type=local,dest=DIR | type=registry,ref=REF |
    /// type=inline [,mode=min|max][,mounts=true]; repeatable
    #[arg(long = "cache-to", value_name = "SPEC", value_parser = parse_cache_to)]
    pub cache_to: Vec<CacheToSpec>,
    /// Import a cache: type=local,src=DIR | type=registry,ref=REF
    /// [,mounts=true], or IMAGE (its inline cache); repeatable
    #[arg(long = "cache-from", value_name = "SPEC", value_parser = parse_cache_from)]
    pub cache_from: Vec<CacheFromSpec>,
    /// Expose an SSH agent or keys to RUN --mount=type=ssh:
    /// default|ID[=SOCKET|KEY[,KEY…]]; repeatable
    #[arg(long = "ssh", value_name = "SPEC", value_parser = rbuild_builder::spec::inputs::parse_ssh)]
    pub ssh: Vec<rbuild_builder::spec::inputs::SshSpec>,
    /// Additional build context: NAME=DIR|docker-image://REF|
    /// oci-layout://DIR[@DIGEST]|GIT-URL|TARBALL-URL; repeatable
    #[arg(long = "build-context", value_name = "NAME=VALUE", value_parser = rbuild_builder::spec::inputs::parse_build_context)]
    pub build_contexts: Vec<rbuild_builder::spec::inputs::NamedContextSpec>,
    /// Run the Dockerfile checks instead of building (= --call=check)
    #[arg(long)]
    pub check: bool,
    /// What to evaluate: build (default), check, outline or targets
    /// (buildx's METHOD[,format=text|json])
    #[arg(long, value_name = "METHOD", value_parser = check::parse_call)]
    pub call: Option<(check::Call, Option<check::Format>)>,
    /// Output format of --call: text or json
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<check::Format>,
    /// Add an annotation to the image: [TYPE[,TYPE][[PLATFORM]]:]KEY=VALUE,
    /// TYPE manifest (default) or manifest-descriptor; repeatable
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE", value_parser = parse_annotation_arg)]
    pub annotations: Vec<AnnotationArg>,
    /// Attestation parameters: type=provenance[,mode=min|max][,version=v0.2|v1]
    /// | type=sbom [,disabled=true]; attached to oci/docker archives and pushes;
    /// repeatable
    #[arg(long = "attest", value_name = "SPEC", value_parser = rbuild_builder::attest::spec::parse_attest)]
    pub attest: Vec<rbuild_builder::attest::Attest>,
    /// Shorthand for --attest=type=provenance (true, false or its attributes:
    /// mode=min|max, version=v1, …)
    #[arg(long, value_name = "VALUE", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = rbuild_builder::attest::spec::parse_provenance)]
    pub provenance: Option<rbuild_builder::attest::Attest>,
    /// Shorthand for --attest=type=sbom (true or false)
    #[arg(long, value_name = "VALUE", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = rbuild_builder::attest::spec::parse_sbom)]
    pub sbom: Option<rbuild_builder::attest::Attest>,
    /// The build context: a directory, a git or tarball URL, or `-` (a tar
    /// of the context, or a Dockerfile alone, on stdin)
    #[arg(value_name = "PATH|URL|-")]
    pub context: PathBuf,
}

/// `--platform a,b,…`: the platforms to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformList(pub Vec<Platform>);

fn platform_list(s: &str) -> Result<PlatformList, rbuild_builder::spec::parse::SpecError> {
    parse_platforms(s).map(PlatformList)
}

impl BuildArgs {
    /// `--attest`, then `--provenance` and `--sbom` (which win, as in
    /// buildx), one attestation of each type; then buildx's default
    /// provenance (`mode=min`, inline only) unless a flag said something
    /// about provenance or `BUILDX_NO_DEFAULT_ATTESTATIONS` is true.
    pub fn attestations(&self) -> anyhow::Result<rbuild_builder::attest::Attestations> {
        let mut out = rbuild_builder::attest::Attestations::default();
        for a in self.attest.iter().chain(&self.provenance).chain(&self.sbom) {
            out.apply(a.clone());
        }
        Ok(out.with_buildx_default(no_default_attestations().as_deref())?)
    }
}

/// `BUILDX_NO_DEFAULT_ATTESTATIONS`, as buildx reads it (set and empty
/// is a value, which does not parse).
pub fn no_default_attestations() -> Option<String> {
    std::env::var(rbuild_builder::attest::spec::NO_DEFAULT_ATTESTATIONS_ENV).ok()
}

/// One `--annotation`: one annotation per type and platform it names.
#[derive(Debug, Clone)]
pub struct AnnotationArg(pub Vec<Annotation>);

fn parse_annotation_arg(s: &str) -> Result<AnnotationArg, rbuild_builder::spec::parse::SpecError> {
    parse_annotation(s).map(AnnotationArg)
}

/// `SOURCE_DATE_EPOCH`'s value: whole seconds since 1970; `what` names
/// where it came from for the error.
fn parse_epoch(value: &str, what: &str) -> anyhow::Result<i64> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        _ => bail!(
            "invalid {what} {value:?}: expected a whole number of seconds since 1970-01-01 UTC\nhint: e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)"
        ),
    }
}

/// A validated `rbuild build`: the library's request and what the CLI
/// does around it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The build (its Dockerfile is filled in once read).
    pub request: BuildRequest,
    pub quiet: bool,
    pub progress: ProgressMode,
    pub iidfile: Option<PathBuf>,
    pub metadata_file: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub explain: bool,
    pub trace: Option<PathBuf>,
}

impl Invocation {
    /// Validates `args`; `env` is the process environment (injected for
    /// tests), `stderr_is_tty` picks `--progress auto`.
    pub fn from_args(
        args: &BuildArgs,
        env: impl Fn(&str) -> Option<String>,
        stderr_is_tty: bool,
    ) -> anyhow::Result<Invocation> {
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
                format: ImageFormat::default(),
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
        // As buildx: a --build-arg SOURCE_DATE_EPOCH wins; else the
        // environment's, which is passed on as that build arg.
        let mut build_args = resolve_build_args(&args.build_args, &env);
        let source_date_epoch = match build_args.get("SOURCE_DATE_EPOCH") {
            Some(v) if !v.is_empty() => Some(parse_epoch(v, "--build-arg SOURCE_DATE_EPOCH")?),
            Some(_) => None,
            None => match env("SOURCE_DATE_EPOCH") {
                Some(v) if !v.is_empty() => {
                    let epoch = parse_epoch(&v, "SOURCE_DATE_EPOCH (environment)")?;
                    build_args.insert("SOURCE_DATE_EPOCH".to_string(), v);
                    Some(epoch)
                }
                _ => None,
            },
        };
        Ok(Invocation {
            request: BuildRequest {
                dockerfile: DockerfileSource::default(),
                context,
                plan: PlanRequest {
                    build_args,
                    target: args.target.clone(),
                    platform: Some(
                        args.platform
                            .as_ref()
                            .and_then(|p| p.0.first().cloned())
                            .unwrap_or_else(Platform::host),
                    ),
                    labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
                    network: args.network.exec_network(),
                },
                platforms: args
                    .platform
                    .clone()
                    .map(|p| p.0)
                    .filter(|p| p.len() > 1)
                    .unwrap_or_default(),
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
                cache_to: args.cache_to.clone(),
                cache_from: args.cache_from.clone(),
                source_date_epoch,
                inputs: inputs::build_inputs(args)?,
                annotations: args.annotations.iter().flat_map(|a| a.0.clone()).collect(),
                attestations: args.attestations()?,
                attestation_context: None,
            },
            quiet: args.quiet,
            progress,
            iidfile: args.iidfile.clone(),
            metadata_file: args.metadata_file.clone(),
            report: args.report.clone(),
            explain: args.explain,
            trace: args.trace.clone(),
        })
    }
}

fn validate_context(path: &Path) -> anyhow::Result<PathBuf> {
    let text = path.to_string_lossy();
    // `run` fetches these into a directory before validating (see
    // `inputs::prepare_context`); a request made without it cannot use them.
    if text == "-" || text.contains("://") || text.starts_with("git@") {
        bail!("unable to prepare context {text}: it has not been fetched into a directory");
    }
    let meta = std::fs::metadata(path)
        .with_context(|| format!("unable to prepare context: path {text:?} not found"))?;
    if !meta.is_dir() {
        bail!("unable to prepare context: {text:?} is not a directory");
    }
    std::path::absolute(path).with_context(|| format!("cannot resolve {text}"))
}

/// Runs `rbuild build`.
pub fn run(root: &Path, mut args: BuildArgs) -> anyhow::Result<ExitCode> {
    // A URL or `-` becomes a temporary directory first.
    let given_context = args.context.to_string_lossy().into_owned();
    let prepared = inputs::prepare_context(&mut args)?;
    let mut invocation = Invocation::from_args(
        &args,
        |k| std::env::var(k).ok(),
        std::io::stderr().is_terminal(),
    )?;
    invocation.request.inputs.fetched_context = prepared.is_some();
    if prepared.is_some() && given_context != "-" {
        invocation.request.attestation_context = Some(given_context);
    }
    let input = match prepared.as_ref().and_then(|p| p.dockerfile.clone()) {
        Some(bytes) => DockerfileInput {
            bytes,
            display_name: "<stdin>".into(),
            path: None,
        },
        None => read_dockerfile(args.file.as_deref(), &invocation.request.context)?,
    };
    invocation.request.dockerfile = DockerfileSource {
        bytes: input.bytes,
        name: input.display_name,
        path: input.path,
    };
    // The Dockerfile checks (issue 17, `commands/check.rs`) run before
    // anything is built: `--call`/`--check` stop there, and so does a
    // failing check with `error=true`.
    let store = crate::root::open_store(root)?;
    if let Some(code) = check::call_instead_of_build(&args, &invocation.request, Some(&store))? {
        return Ok(code);
    }
    let check_arg = invocation
        .request
        .plan
        .build_args
        .get(check::CHECK_BUILD_ARG)
        .cloned();
    let lint = match check::before_build(
        &invocation.request.dockerfile,
        &invocation.request.context,
        check_arg,
        invocation.request.plan.target.as_deref(),
        Some(&check::StoreImages(&store)),
        &if invocation.request.platforms.is_empty() {
            invocation.request.plan.platform.iter().cloned().collect()
        } else {
            invocation.request.platforms.clone()
        },
    )? {
        Ok(report) => report,
        Err(code) => return Ok(code),
    };
    let request = &invocation.request;
    let events = frontend::Frontend::new(
        progress::renderer(invocation.progress),
        invocation.quiet,
        &request.dockerfile,
    );
    let options = BuildOptions {
        events: &events,
        cancel: &rbuild_sandbox::INTERRUPTED,
        host: &frontend::CliHost,
    };
    let outcome = rbuild_builder::build(&store, request, &options);
    check::show_build_warnings(invocation.progress, &lint);
    match outcome {
        Ok(result) => {
            finish(&invocation, &result, &lint)?;
            // docker's image exporter: a `tag` event per name given.
            let id = result.image.id.to_string();
            for name in &result.names {
                rbuild_container::events::record(
                    root,
                    "image",
                    "tag",
                    &id,
                    &[("name", &name.familiar())],
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildError::Parse { source, .. }) => {
            let dockerfile = &request.dockerfile;
            eprint!("{}", source.render(&dockerfile.name, &dockerfile.bytes));
            Ok(ExitCode::from(1))
        }
        // Interrupted: nothing failed, so no failure box; 128 + SIGINT, as
        // a shell reports a command stopped by Ctrl-C.
        Err(BuildError::Step(failure)) if failure.cancelled() => {
            eprintln!("ERROR: failed to solve: cancelled: the build was interrupted");
            Ok(ExitCode::from(130))
        }
        Err(BuildError::Step(failure)) => {
            eprint!("{}", render_failure(&request.dockerfile, &failure));
            Ok(ExitCode::from(1))
        }
        Err(err) => Err(err.into()),
    }
}

/// A failed step as BuildKit shows it, the Dockerfile named by its base
/// name.
pub(crate) fn render_failure(
    dockerfile: &DockerfileSource,
    failure: &rbuild_builder::StepFailure,
) -> String {
    let file = Path::new(&dockerfile.name).file_name().map_or_else(
        || dockerfile.name.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    failure::render(&StepFailure {
        step_name: &failure.step_name,
        output_tail: &failure.output_tail,
        dockerfile_name: &file,
        source: &dockerfile.bytes,
        lines: failure.lines,
        error: &failure.message,
    })
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

/// After a successful build (exported, tagged, pushed by the library):
/// writes `--iidfile`, `--metadata-file`, `--report` and `--trace`, prints the
/// `--explain` lines (stderr) and, with `-q`, the image ID (stdout).
fn finish(
    invocation: &Invocation,
    result: &BuildResult,
    lint: &rbuild_lint::Report,
) -> anyhow::Result<()> {
    let image = &result.image;
    if let Some(path) = &invocation.iidfile {
        write_file(path, image.id.to_string().as_bytes())?;
    }
    if let Some(path) = &invocation.metadata_file {
        write_file(path, &serde_json::to_vec_pretty(&result.metadata())?)?;
    }
    if let Some(path) = &invocation.report {
        let mut report = serde_json::to_value(&result.report)?;
        report["warnings"] = check::warnings_json(lint, &invocation.request.dockerfile.name);
        write_file(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    if let Some(path) = &invocation.trace
        && let Some(trace) = result.report.chrome_trace()
    {
        write_file(path, &serde_json::to_vec(&trace)?)?;
    }
    if invocation.explain {
        eprint!("{}", result.report.explain());
    }
    if invocation.quiet {
        println!("{}", image.id);
    }
    Ok(())
}

/// Writes a small result file (`--iidfile`, `--metadata-file`,
/// `--report`), naming it in errors.
fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
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

    fn request(argv: &[&str]) -> anyhow::Result<Invocation> {
        let dir = tempfile::tempdir().unwrap();
        let mut full: Vec<&str> = argv.to_vec();
        let ctx = dir.path().to_str().unwrap().to_string();
        full.push(&ctx);
        let args = parse(&full).map_err(|e| anyhow::anyhow!("{e}"))?;
        Invocation::from_args(&args, |k| (k == "FROM_ENV").then(|| "v".into()), false)
    }

    #[test]
    fn every_flag_is_parsed_with_docker_names() {
        let invocation = request(&[
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
            "--trace",
            "t.json",
        ])
        .unwrap();
        let r = &invocation.request;
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
        assert!(r.no_cache && r.pull && invocation.explain);
        assert_eq!(invocation.trace.as_deref(), Some(Path::new("t.json")));
        assert_eq!(r.no_cache_filter, ["deps"]);
        assert_eq!(r.jobs, 3);
        assert_eq!(invocation.progress, ProgressMode::Json);
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
        let invocation = request(&[]).unwrap();
        let r = &invocation.request;
        assert_eq!(
            r.outputs,
            [OutputSpec::Image {
                names: vec![],
                push: false,
                format: ImageFormat::default(),
            }]
        );
        assert_eq!(
            invocation.progress,
            ProgressMode::Plain,
            "auto without a terminal"
        );
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
        let m = msg(&["--platform", "linux/s390x-nope"]);
        assert!(
            m.contains("--platform") && m.contains("linux/s390x-nope"),
            "{m}"
        );
        let m = msg(&["--network", "bridge"]);
        assert!(m.contains("--network") && m.contains("bridge"), "{m}");
        let m = msg(&["--secret", "id=a,kind=x"]);
        assert!(m.contains("--secret") && m.contains("kind"), "{m}");
        let m = msg(&["-o", "type=tarball"]);
        assert!(m.contains("--output") && m.contains("tarball"), "{m}");
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
                Invocation::from_args(&args, |_| None, false).is_err(),
                "{bad}"
            );
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        let args = parse(&[f.path().to_str().unwrap()]).unwrap();
        let e = Invocation::from_args(&args, |_| None, false).unwrap_err();
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
