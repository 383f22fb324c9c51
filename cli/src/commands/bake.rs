//! `rbuild bake [TARGET|GROUP…]`: buildx bake's flags. The bake files
//! are read by `rbuild-bake` (targets, groups, inherits, variables,
//! matrix, `--set`); each selected target becomes a [`BuildRequest`],
//! all of them validated before anything is built (a bad file or target
//! builds nothing); then every target builds at once, each in a thread
//! of its own through [`rbuild_builder::build_shared`] with one
//! [`StepGate`], so a stage two targets share (same content, same args:
//! same cache key) runs once while the other waits for it, as buildx's
//! single solve does.
//!
//! Progress: one renderer for all targets. Each target's steps are
//! numbered apart (its vertex ids offset) and named `[TARGET …]`, as
//! buildx names bake's vertices; the summaries are shown once every
//! target is done.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use rbuild_bake::{BakeFile, LoadOptions, Target};
use rbuild_builder::events::PULL_STEP_BASE;
use rbuild_builder::spec::parse::{
    parse_annotation, parse_cache_from, parse_cache_to, parse_output, parse_platform, parse_tag,
};
use rbuild_builder::{
    BuildError, BuildEvents, BuildOptions, BuildRequest, BuildResult, DockerfileSource, Event,
    OutputSpec, StepGate, Summary, VertexId,
};
use rbuild_oci::reference::ImageRef;
use rbuild_solver::plan::{PlanRequest, Platform};

use super::build::frontend::{CliHost, Frontend};
use super::build::options::{NetworkFlag, ProgressFlag, parse_secret};
use super::build::progress::{self, ProgressMode};

/// Flags of `rbuild bake`, named as buildx bake's.
#[derive(Debug, Clone, clap::Args)]
pub struct BakeArgs {
    /// Build definition file; repeatable; `-` reads stdin [default:
    /// compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml,
    /// docker-bake.json, docker-bake.hcl, docker-bake.override.json,
    /// docker-bake.override.hcl, every one present]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Override a target value: TARGETPATTERN.KEY=VALUE (or KEY+=VALUE
    /// to append); repeatable
    #[arg(long = "set", value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved targets as JSON, without building
    #[arg(long)]
    pub print: bool,
    /// List the targets (and groups) or the variables, without building:
    /// targets | variables | type=targets|variables[,format=json]
    #[arg(long, value_name = "TYPE")]
    pub list: Option<String>,
    /// Keep the images in the store (rbuild always does; buildx's
    /// shorthand for --set=*.output=type=docker)
    #[arg(long)]
    pub load: bool,
    /// Push every target's image under its tags after the build
    /// (shorthand for --set=*.output=type=registry)
    #[arg(long)]
    pub push: bool,
    /// Do not use the cache index when building
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of base images
    #[arg(long)]
    pub pull: bool,
    /// Type of progress output
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,
    /// Write build result metadata (JSON, per target, like buildx's) to FILE
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Most steps executing at once, per target [default: number of cores]
    #[arg(long, value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// Targets or groups to build (default: the `default` group); globs
    /// such as `app-*` match several
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// Runs `rbuild bake`.
pub fn run(root: &Path, args: BakeArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let env = |k: &str| std::env::var(k).ok();
    let files = read_files(&cwd, &args.files)?;
    let platform = Platform::host();
    let local_platform = platform_string(&platform);
    let definition = rbuild_bake::load(
        &files,
        &LoadOptions {
            env: &env,
            local_platform: &local_platform,
            dir: &cwd,
        },
    )?;
    if let Some(list) = &args.list {
        print!("{}", render_list(&definition, list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut sets = args.set.clone();
    if args.no_cache {
        sets.push("*.no-cache=true".to_string());
    }
    if args.pull {
        sets.push("*.pull=true".to_string());
    }
    if args.load {
        sets.push("*.load=true".to_string());
    }
    let resolved = definition.resolve(&args.targets, &sets, &env)?;
    if args.print {
        print!("{}", resolved.print_json());
        return Ok(ExitCode::SUCCESS);
    }
    if resolved.targets.is_empty() {
        bail!("no targets to build: the selected groups are empty");
    }
    // Every target is checked before anything builds.
    let mut requests = Vec::new();
    for (name, target) in &resolved.targets {
        let request = request_for(target, &cwd, &args, &env)
            .with_context(|| format!("target {name:?} ({})", target.pos))?;
        requests.push((name.clone(), request));
    }
    let mode = match args.progress {
        ProgressFlag::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressFlag::Auto | ProgressFlag::Plain => ProgressMode::Plain,
        ProgressFlag::Tty => ProgressMode::Tty,
        ProgressFlag::Json => ProgressMode::Json,
    };
    let store = crate::root::open_store(root)?;
    let shared: Arc<dyn BuildEvents> = Arc::from(progress::renderer(mode));
    let summaries: Arc<Mutex<Vec<(usize, Summary)>>> = Arc::default();
    let gate = StepGate::new();
    let results: Vec<Result<BuildResult, BuildError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, (name, request))| {
                let events = Frontend::new(
                    Box::new(TargetEvents {
                        inner: shared.clone(),
                        target: name.clone(),
                        index: i,
                        summaries: summaries.clone(),
                    }),
                    false,
                    &request.dockerfile,
                );
                let (store, gate) = (&store, &gate);
                scope.spawn(move || {
                    let options = BuildOptions {
                        events: &events,
                        cancel: &rbuild_sandbox::INTERRUPTED,
                        host: &CliHost,
                    };
                    rbuild_builder::build_shared(store, request, &options, gate)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bake build thread panicked"))
            .collect()
    });
    let mut summaries = std::mem::take(&mut *summaries.lock().unwrap_or_else(|e| e.into_inner()));
    summaries.sort_by_key(|(i, _)| *i);
    for (_, summary) in &summaries {
        shared.event(&Event::Summary(summary));
    }
    let mut failed = false;
    let mut metadata = serde_json::Map::new();
    for ((name, request), result) in requests.iter().zip(results) {
        match result {
            Ok(result) => {
                metadata.insert(name.clone(), result.metadata());
            }
            Err(err) => {
                failed = true;
                report_failure(name, request, err);
            }
        }
    }
    if let Some(path) = &args.metadata_file {
        std::fs::write(path, serde_json::to_vec_pretty(&metadata)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--list`: the targets and groups, or the variables, as a table or
/// JSON.
fn render_list(definition: &rbuild_bake::Definition, spec: &str) -> anyhow::Result<String> {
    let (mut kind, mut json) = (None, false);
    for field in spec.split(',') {
        match field.split_once('=') {
            None if kind.is_none() => kind = Some(field.to_string()),
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("format", "json")) => json = true,
            Some(("format", "table")) => json = false,
            _ => bail!(
                "invalid value for --list: {spec:?}: expected targets, variables or type=…,format=json|table"
            ),
        }
    }
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut table;
    match kind.as_deref() {
        Some("targets") => {
            table = super::table::Table::new(&["TARGET", "DESCRIPTION"]);
            let mut entries: Vec<(String, String, bool)> = definition
                .groups
                .iter()
                .map(|g| {
                    let d = g.description.clone().unwrap_or_else(|| g.targets.join(" "));
                    (g.name.clone(), d, true)
                })
                .chain(
                    definition
                        .targets
                        .iter()
                        .filter(|t| !t.name.starts_with('_'))
                        .map(|t| {
                            (
                                t.name.clone(),
                                t.description.clone().unwrap_or_default(),
                                false,
                            )
                        }),
                )
                .collect();
            entries.sort();
            for (name, description, group) in entries {
                rows.push(
                    serde_json::json!({"name": name, "description": description, "group": group}),
                );
                table.row(vec![name, description]);
            }
        }
        Some("variables") => {
            table = super::table::Table::new(&["VARIABLE", "TYPE", "VALUE", "DESCRIPTION"]);
            let mut vars = definition.variables.clone();
            vars.sort_by(|a, b| a.name.cmp(&b.name));
            for v in vars {
                let description = v.description.clone().unwrap_or_default();
                rows.push(serde_json::json!({"name": v.name, "type": v.kind, "value": v.value, "description": description}));
                table.row(vec![v.name, v.kind.to_string(), v.value, description]);
            }
        }
        _ => bail!("invalid value for --list: {spec:?}: expected targets or variables"),
    }
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&rows)?));
    }
    Ok(table.render())
}

fn report_failure(name: &str, request: &BuildRequest, err: BuildError) {
    let dockerfile = &request.dockerfile;
    match err {
        BuildError::Parse { source, .. } => {
            eprint!("{}", source.render(&dockerfile.name, &dockerfile.bytes));
            eprintln!("error: target {name:?}: the Dockerfile does not parse");
        }
        BuildError::Step(failure) => {
            eprint!("{}", super::build::render_failure(dockerfile, &failure));
            eprintln!("error: target {name:?} failed");
        }
        other => eprintln!("error: target {name:?}: {:#}", anyhow::Error::from(other)),
    }
}

/// `-f` files (`-` is stdin), or the default names present in `dir`.
fn read_files(dir: &Path, names: &[PathBuf]) -> anyhow::Result<Vec<BakeFile>> {
    if !names.iter().any(|n| n == Path::new("-")) {
        return Ok(rbuild_bake::read_files(dir, names)?);
    }
    let mut files = Vec::new();
    for n in names {
        if n == Path::new("-") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading the bake file from stdin")?;
            files.push(BakeFile {
                name: "<stdin>".to_string(),
                bytes,
            });
        } else {
            files.extend(rbuild_bake::read_files(dir, std::slice::from_ref(n))?);
        }
    }
    Ok(files)
}

/// A target's `contexts` and `ssh`, read as `--build-context` and
/// `--ssh` are (a relative directory is relative to `cwd`).
fn bake_inputs(t: &Target, cwd: &Path) -> anyhow::Result<rbuild_builder::BuildInputs> {
    use rbuild_builder::spec::inputs::{
        ContextSource, NamedContextSpec, parse_context_source, parse_ssh,
    };
    let mut contexts = Vec::new();
    for (name, value) in &t.contexts {
        if let Some(target) = value.strip_prefix("target:") {
            bail!(
                "contexts {name}=target:{target}: a context from another target is not supported yet\nhint: build {target} first and use docker-image://IMAGE"
            );
        }
        let source = match parse_context_source(value)
            .map_err(|e| anyhow::anyhow!("contexts {name}: {e}"))?
        {
            ContextSource::Local(_) => ContextSource::Local(
                std::path::absolute(cwd.join(value))
                    .with_context(|| format!("contexts {name}: cannot resolve {value:?}"))?,
            ),
            other => other,
        };
        contexts.push(NamedContextSpec {
            name: name.clone(),
            source,
        });
    }
    let mut ssh: Vec<rbuild_builder::spec::inputs::SshSpec> = Vec::new();
    for spec in t.ssh.iter().flatten() {
        let spec = parse_ssh(spec).map_err(|e| anyhow::anyhow!("ssh: {e}"))?;
        if ssh.iter().any(|s| s.id == spec.id) {
            bail!("ssh: the id {:?} is given twice", spec.id);
        }
        ssh.push(spec);
    }
    Ok(rbuild_builder::BuildInputs {
        ssh,
        contexts,
        fetched_context: false,
    })
}

fn platform_string(p: &Platform) -> String {
    p.to_string()
}

/// One target's build request: paths relative to the current directory
/// (the context) and to the context (the Dockerfile), specs parsed as
/// `rbuild build`'s flags parse them.
fn request_for(
    t: &Target,
    cwd: &Path,
    args: &BakeArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<BuildRequest> {
    if !t.unsupported.is_empty() {
        let keys: Vec<&str> = t.unsupported.keys().map(String::as_str).collect();
        bail!("{} not supported yet", keys.join(", "));
    }
    let inputs = bake_inputs(t, cwd)?;
    let context_text = t.context.as_deref().unwrap_or(".");
    if context_text.contains("://") || context_text.starts_with("git@") {
        bail!("context {context_text:?}: remote build contexts are not supported yet");
    }
    let context = std::path::absolute(cwd.join(context_text))
        .with_context(|| format!("cannot resolve context {context_text:?}"))?;
    if !context.is_dir() {
        bail!(
            "context {context_text:?}: {} is not a directory",
            context.display()
        );
    }
    let dockerfile = match &t.dockerfile_inline {
        Some(inline) => DockerfileSource {
            bytes: inline.as_bytes().to_vec(),
            name: "inline".to_string(),
            path: None,
        },
        None => {
            let name = t.dockerfile.as_deref().unwrap_or("Dockerfile");
            let path = context.join(name);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read Dockerfile {}", path.display()))?;
            DockerfileSource {
                bytes,
                name: name.to_string(),
                path: Some(path),
            }
        }
    };
    // Several platforms: one multi-platform build (an image index).
    let platforms: Vec<Platform> = t
        .platforms
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|p| parse_platform(p).map_err(|e| anyhow::anyhow!("platforms: {e}")))
        .collect::<anyhow::Result<_>>()?;
    let platform = platforms.first().cloned().unwrap_or_else(Platform::host);
    let mut tags: Vec<ImageRef> = Vec::new();
    for tag in t.tags.iter().flatten() {
        let tag = parse_tag(tag).map_err(|e| anyhow::anyhow!("tags: {e}"))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let mut outputs = Vec::new();
    for o in t.output.iter().flatten() {
        // buildx's registry exporter is the image exporter with a push.
        let spec = match o.strip_prefix("type=registry") {
            Some(rest) => format!("type=image,push=true{rest}"),
            None => o.clone(),
        };
        outputs.push(parse_output(&spec).map_err(|e| anyhow::anyhow!("output: {e}"))?);
    }
    if outputs.is_empty() {
        outputs.push(OutputSpec::Image {
            names: Vec::new(),
            push: false,
            format: Default::default(),
        });
    }
    if outputs.iter().filter(|o| o.is_stdout()).count() > 1 {
        bail!("output: only one output can write to stdout (dest=-)");
    }
    let mut secrets = Vec::new();
    for s in t.secret.iter().flatten() {
        let spec = parse_secret(s).map_err(|e| anyhow::anyhow!("secret: {e}"))?;
        if secrets
            .iter()
            .any(|x: &rbuild_builder::SecretSpec| x.id == spec.id)
        {
            bail!("secret: the id {:?} is given twice", spec.id);
        }
        secrets.push(spec);
    }
    let cache_from = t
        .cache_from
        .iter()
        .flatten()
        .map(|s| parse_cache_from(s).map_err(|e| anyhow::anyhow!("cache-from: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_to = t
        .cache_to
        .iter()
        .flatten()
        .map(|s| parse_cache_to(s).map_err(|e| anyhow::anyhow!("cache-to: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut annotations = Vec::new();
    for a in t.annotations.iter().flatten() {
        annotations.extend(parse_annotation(a).map_err(|e| anyhow::anyhow!("annotations: {e}"))?);
    }
    let mut attestations = rbuild_builder::attest::Attestations::default();
    for a in t.attest.iter().flatten() {
        attestations.apply(
            rbuild_builder::attest::spec::parse_attest(a)
                .map_err(|e| anyhow::anyhow!("attest: {e}"))?,
        );
    }
    let attestations =
        attestations.with_buildx_default(super::build::no_default_attestations().as_deref())?;
    let network = match t.network.as_deref() {
        None | Some("default") => NetworkFlag::Default,
        Some("host") => NetworkFlag::Host,
        Some("none") => NetworkFlag::None,
        Some(other) => bail!("network {other:?}: expected default, host or none"),
    };
    let jobs = args
        .jobs
        .map(|n| n.get())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let source_date_epoch = match env("SOURCE_DATE_EPOCH") {
        Some(v) if !v.is_empty() => Some(v.parse().with_context(|| {
            format!("invalid SOURCE_DATE_EPOCH {v:?}: expected seconds since 1970")
        })?),
        _ => None,
    };
    Ok(BuildRequest {
        platforms: if platforms.len() > 1 {
            platforms
        } else {
            Vec::new()
        },
        dockerfile,
        context,
        plan: PlanRequest {
            build_args: t.args.clone(),
            target: t.target.clone(),
            platform: Some(platform),
            labels: t.labels.clone().into_iter().collect::<BTreeMap<_, _>>(),
            network: network.exec_network(),
        },
        tags,
        no_cache: t.no_cache.unwrap_or(false),
        no_cache_filter: t
            .no_cache_filter
            .iter()
            .flatten()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        pull: t.pull.unwrap_or(false),
        push: args.push,
        secrets,
        jobs,
        outputs,
        cache_to,
        cache_from,
        source_date_epoch,
        inputs,
        annotations,
        attestations,
        attestation_context: None,
    })
}

/// One target's events into the shared renderer: vertex ids moved into
/// a range of the target's own, step names prefixed with the target's
/// name, the summary held back until every target is done.
struct TargetEvents {
    inner: Arc<dyn BuildEvents>,
    target: String,
    index: usize,
    summaries: Arc<Mutex<Vec<(usize, Summary)>>>,
}

/// Each target's ids: graph steps below 2^40 and pulls above it, moved
/// by `index` × 2^32 (fewer than 256 targets keep the two apart, and
/// every id below 2^53 for JSON readers). A multi-platform target's ids
/// come moved by a multiple of 2^41 per platform already, which this
/// keeps apart.
const TARGET_ID_STRIDE: usize = 1 << 32;

impl TargetEvents {
    fn id(&self, id: VertexId) -> VertexId {
        let offset = (self.index % 256) * TARGET_ID_STRIDE;
        debug_assert!(id.0 % (1 << 41) < PULL_STEP_BASE + TARGET_ID_STRIDE);
        VertexId(id.0 + offset)
    }
}

impl BuildEvents for TargetEvents {
    fn event(&self, event: &Event<'_>) {
        match *event {
            Event::Started { id, name } => {
                let name = match name.strip_prefix('[') {
                    Some(rest) => format!("[{} {rest}", self.target),
                    None => format!("[{}] {name}", self.target),
                };
                self.inner.event(&Event::Started {
                    id: self.id(id),
                    name: &name,
                });
            }
            Event::Summary(s) => self
                .summaries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.index, s.clone())),
            ref other => self.inner.event(&other.with_id(|id| self.id(id))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_builder::VertexId;

    /// Records the step ids of the events it gets.
    #[derive(Default)]
    struct Ids(Mutex<Vec<usize>>);

    impl BuildEvents for Ids {
        fn event(&self, event: &Event<'_>) {
            let id = match *event {
                Event::Started { id, .. }
                | Event::Cached { id }
                | Event::Finished { id, .. }
                | Event::Failed { id, .. }
                | Event::Cancelled { id } => id,
                _ => return,
            };
            self.0.lock().unwrap().push(id.0);
        }
    }

    /// Regression: a target's `Cancelled` reached the progress with the
    /// target's own id, not moved into its range like its other events,
    /// so Ctrl-C in a bake marked another target's step.
    #[test]
    fn every_step_event_of_a_target_is_moved_into_its_id_range() {
        let ids = Arc::new(Ids::default());
        let events = TargetEvents {
            inner: ids.clone(),
            target: "web".into(),
            index: 2,
            summaries: Arc::default(),
        };
        let id = VertexId(7);
        for e in [
            Event::Started {
                id,
                name: "[1/2] RUN x",
            },
            Event::Cached { id },
            Event::Finished {
                id,
                duration: std::time::Duration::ZERO,
            },
            Event::Failed { id, error: "e" },
            Event::Cancelled { id },
        ] {
            events.event(&e);
        }
        let moved = 7 + 2 * TARGET_ID_STRIDE;
        assert_eq!(*ids.0.lock().unwrap(), [moved; 5]);
    }
}
