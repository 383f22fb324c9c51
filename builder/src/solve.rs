//! The build itself: parse and plan the Dockerfile, solve the graph with
//! `rbuild-worker`'s worker and persistent cache index (with `--cache-from`
//! imports), explain each executed step's miss against its last build,
//! write the image to the store and the `--cache-to` exports. Progress
//! goes to the request's [`BuildEvents`]; the scheduler's and worker's
//! callbacks are adapted to them here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rbuild_context::{Context, IgnoreRules};
use rbuild_oci::error_chain;
use rbuild_oci::time::{now_secs, rfc3339};
use rbuild_registry::{Client, ClientOptions};
use rbuild_solver::explain::{MissReason as Why, StepFingerprint, explain};
use rbuild_solver::graph::StepId;
use rbuild_solver::op::Op;
use rbuild_solver::scheduler::{Outcome, PhaseSpan, SolveEvents, SolveOptions, StepRecord, solve};
use rbuild_solver::{CacheKey, Digest, KeyedOp as _};
use rbuild_store::{Image, Store};
use rbuild_worker::cache_registry::RegistryTransport;
use rbuild_worker::cache_transfer::{self, ExportMode, ImportingCacheIndex};
use rbuild_worker::{
    BlobFetcher as _, BuildContext, BuildError as WorkerError, BuildWorker, CACHE_INDEX_VERSION,
    LineageStore, LogSink, Secrets, SharedFiles, StepOutput, StoreResolver, WorkerConfig,
    WorkerInputs,
};

use crate::cache::{self, fetch_failure_message};
use crate::error::{BuildError, StepFailure};
use crate::events::{BuildEvents, Event, PullReporter, Stream, Summary, VertexId};
use crate::gate::{GatedIndex, StepGate};
use crate::report::{BuildInfo, BuildReport, MissReason, StepReport, display_name};
use crate::request::{BuildOptions, BuildRequest, DockerfileSource};
use crate::spec::CacheToSpec;

/// What the solve produced: the image (in the store, untagged), the
/// report, and the registry client for pushes.
pub(crate) struct Solved {
    pub image: Image,
    pub report: BuildReport,
    /// The client the build used (FROM pulls, registry caches), with its
    /// tokens and credentials, for pushes.
    pub client: Arc<Client>,
    /// What provenance attestations record about this build.
    pub capture: crate::attest::Capture,
}

/// Plans and solves the build, writes the image and the cache exports,
/// and returns the image with the per-step report.
pub(crate) fn run(
    store: &Store,
    request: &BuildRequest,
    options: &BuildOptions<'_>,
    gate: &StepGate,
) -> Result<Solved, BuildError> {
    let progress = options.events;
    let input = &request.dockerfile;
    let dockerfile = rbuild_parser::parse(&input.bytes).map_err(|source| BuildError::Parse {
        dockerfile: input.name.clone(),
        source: Box::new(source),
    })?;
    for warning in &dockerfile.warnings {
        progress.event(&Event::DockerfileWarning(warning));
    }
    let started = Instant::now();
    check_frontend(&dockerfile, input, progress)?;
    let started_at = rfc3339(now_secs());
    // FROM of an image not in the store pulls it; `--pull` re-checks tags.
    // Shared with the registry cache transport, whose lazy blob readers
    // outlive this borrow.
    let client = Arc::new(Client::new(ClientOptions::for_store(store)?));
    let registry_cache = RegistryTransport::new(client.clone());
    let pull_progress = PullReporter::new(progress);
    let resolver = StoreResolver::with_registry(store, &client, request.pull, &pull_progress);
    // Secrets are read once, for RUN mounts and git credentials alike.
    let mut secrets = Secrets::new();
    for s in &request.secrets {
        secrets.insert(s.id.clone(), s.read()?);
    }
    let ready = crate::inputs::prepare(
        store,
        &request.inputs.ssh,
        &request.inputs.contexts,
        &|k| std::env::var(k).ok(),
        &|id| secrets.get_value(id),
    )?;
    let plan = rbuild_solver::plan::plan_with_contexts(
        &dockerfile,
        &request.plan,
        &resolver,
        &ready.named,
    )
    .map_err(|source| BuildError::Plan {
        dockerfile: input.name.clone(),
        source,
    })?;
    for w in &plan.warnings {
        progress.event(&Event::Warning {
            message: &w.message,
            line: w.line,
        });
    }

    let (rules, stat_cache) = if request.inputs.fetched_context {
        (IgnoreRules::none(), None)
    } else {
        (
            IgnoreRules::load(&request.context, input.path.as_deref())?,
            Some(stat_cache_path(store, &request.context)),
        )
    };
    let context = Context::open(&request.context, rules, stat_cache.as_deref())?;
    // Named local contexts: each with its own root `.dockerignore` only.
    let mut named_fs = Vec::new();
    for (key, dir) in &ready.dirs {
        let fs = if ready.fetched.contains(key) {
            Context::open(dir, IgnoreRules::none(), None)?
        } else {
            let rules = IgnoreRules::load(dir, None)?;
            Context::open(dir, rules, Some(&stat_cache_path(store, dir)))?
        };
        named_fs.push((key, dir, fs));
    }
    let worker_inputs = WorkerInputs {
        named: named_fs
            .iter()
            .map(|(key, dir, fs)| {
                (
                    (*key).clone(),
                    BuildContext {
                        fs: fs as &dyn rbuild_context::copy::SourceFs,
                        root: dir.as_path(),
                    },
                )
            })
            .collect(),
        ssh: ready.ssh.sockets.clone(),
    };
    progress.event(&Event::Solving);

    // FROM shows the image it resolved to, as BuildKit does; the only
    // stage of a Dockerfile is not named.
    let single_stage = dockerfile.stages.len() == 1;
    let names: Vec<String> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let stage = if single_stage && i.stage == "0" {
                ""
            } else {
                &i.stage
            };
            match plan.graph.op(plan.graph.step_at(n)) {
                Op::Image(img) => display_name(
                    stage,
                    i.position,
                    &format!("FROM {}@{}", img.reference, img.digest),
                ),
                // The source steps behind an ADD of git or a named context.
                op @ (Op::Git(_) | Op::Local(_)) => display_name(stage, i.position, &op.describe()),
                _ => display_name(stage, i.position, &i.instruction),
            }
        })
        .collect();
    let log = ProgressLog { progress };
    let events = Events {
        progress,
        names: &names,
        keys: Mutex::new(HashMap::new()),
        cached: AtomicUsize::new(0),
        executed: AtomicUsize::new(0),
    };
    cache::check_cache_to(&request.cache_to)?;
    let imports = cache::open_cache_imports(&request.cache_from, store, &registry_cache, progress);
    let index = ImportingCacheIndex::new(store, imports);
    let skip = |id: StepId| {
        request.no_cache
            || request
                .no_cache_filter
                .contains(&plan.steps[id.index()].stage.to_ascii_lowercase())
    };
    // `--no-cache` is the gate's fresh mode rather than a skipped lookup,
    // so that builds sharing the gate (bake's targets) still run a step
    // they share once; reports still say why (`skip`).
    let skip_lookup = |id: StepId| !request.no_cache && skip(id);
    let solve_options = SolveOptions {
        jobs: request.jobs,
        skip_cache: &skip_lookup,
    };
    // One write session for the whole build, not only the solve: an
    // imported hit's record is written (and its already-local layers become
    // reachable from it) only after the solve, when its lazy blobs arrive;
    // until the image and the cache exports are written, a concurrent gc
    // must not delete those layers.
    let _session = store.write_session()?;
    let worker = BuildWorker::new(WorkerConfig {
        store,
        context: Some(BuildContext {
            fs: &context,
            root: &request.context,
        }),
        secrets: &secrets,
        log: &log,
        cancel: options.cancel,
    })?
    // Imported hits' blobs arrive only when a step reads them.
    .with_fetcher(&index)
    .with_last_steps(
        (0..plan.graph.len())
            .map(|i| plan.graph.step_at(i))
            .filter(|&s| plan.graph.dependents(s).next().is_none()),
    )
    .with_inputs(&worker_inputs);
    let planned = crate::timing::build_phase(started, "plan", started);
    let solve_started = Instant::now();
    // Steps another build sharing the gate is running are waited for,
    // not run twice (bake's targets); alone, the gate changes nothing.
    let gated = GatedIndex::new(&index, gate);
    let gated = if request.no_cache {
        gated.fresh()
    } else {
        gated
    };
    let solved = solve(
        &plan.graph,
        &[plan.target],
        &worker,
        &gated,
        &events,
        &solve_options,
    );
    drop(gated);
    let solve_phase = crate::timing::build_phase(started, "solve", solve_started);
    let export_started = Instant::now();
    let solved = match solved {
        Ok(s) => s,
        Err(err) => {
            let id = VertexId(err.step.index());
            let message = match &err.source {
                WorkerError::CacheFetch(e) => {
                    fetch_failure_message(e, events.step_name(&e.key).as_deref())
                }
                other => error_chain(other),
            };
            let cancelled = matches!(err.source, WorkerError::Cancelled);
            if cancelled {
                progress.event(&Event::Cancelled { id });
            } else {
                progress.event(&Event::Failed {
                    id,
                    error: &message,
                });
            }
            let info = &plan.steps[err.step.index()];
            // What ran before the failure, and the failed step itself.
            let (cached, executed) = events.counts();
            progress.event(&Event::Summary(&Summary {
                steps: plan.steps.len(),
                cached,
                executed: executed + 1,
                duration: started.elapsed(),
                image_id: None,
                tags: Vec::new(),
                cancelled,
                slowest: Vec::new(),
            }));
            let message = match sandbox_refusal_hint(&err.source) {
                Some(hint) => format!("{message}\nhint: {hint}"),
                None => message,
            };
            return Err(BuildError::Step(Box::new(StepFailure {
                step_name: names[err.step.index()].clone(),
                output_tail: err.source.last_lines().to_vec(),
                lines: (info.line, info.line),
                message,
                error: err.source,
            })));
        }
    };

    let blobs_phase = finish_layer_blobs(store, progress, started)?;

    let imported = index.imported_hits();
    // What the explanations and the provenance need from the worker is
    // taken, then the worker goes and the contexts' stat caches are saved
    // and freed: each holds its file as read (12 MB for a 100,000-file
    // context), and explaining a large COPY's miss loads the previous
    // build's per-file digests (as many again) beside the current ones.
    let capture = capture_provenance(request, &plan, &solved.steps, &worker, &started_at);
    let step_phases: HashMap<StepId, Vec<PhaseSpan>> = solved
        .steps
        .iter()
        .map(|r| (r.id, worker.phases(r.id)))
        .collect();
    let step_files: HashMap<Digest, SharedFiles> = solved
        .steps
        .iter()
        .filter_map(|r| r.parts.content)
        .filter_map(|c| Some((c, worker.files_for(&c)?)))
        .collect();
    drop(worker);
    context.save()?;
    drop(context);
    for (_, _, fs) in &named_fs {
        fs.save()?;
    }
    // The steps' per-file lists are freed, on the threads that ran them:
    // what follows (explaining misses, the export) starts from what is
    // live instead of adding to their arenas' peaks.
    rbuild_sandbox::trim_malloc_arenas();

    // Why each executed step missed, then remember this build's keys.
    let identity = build_identity(&request.context, input);
    let lineage = LineageStore::new(store);
    let mut steps: Vec<&StepRecord> = solved.steps.iter().collect();
    steps.sort_by_key(|r| r.id);
    let steps_by_id = steps.clone();
    let name_of_key: HashMap<String, &str> = steps
        .iter()
        .map(|r| (r.key.to_string(), names[r.id.index()].as_str()))
        .collect();
    let mut reports = Vec::with_capacity(steps.len());
    for record in steps {
        let info = &plan.steps[record.id.index()];
        let executed = record.outcome == Outcome::Executed;
        // Whether the saved fingerprint has this step's key: then a cached
        // step needs none made (for a COPY of a large context, a list of
        // every file), none is saved, and a miss is "evicted" without the
        // saved one being read (megabytes of JSON for such a COPY).
        let saved_is_current =
            lineage.is_current(&identity, &info.lineage, &record.key.to_string());
        let reason = if !executed && saved_is_current {
            None
        } else {
            let files = record
                .parts
                .content
                .and_then(|c| step_files.get(&c).cloned())
                .unwrap_or_default();
            let current = StepFingerprint::new(&record.key, &record.parts, files);
            let reason = if executed {
                // Not read when the cache was not asked either.
                let previous = if skip(record.id) {
                    None
                } else if saved_is_current {
                    Some(current.clone())
                } else {
                    lineage.load(&identity, &info.lineage)?
                };
                Some(miss_reason(
                    request,
                    skip(record.id),
                    previous,
                    &current,
                    &name_of_key,
                ))
            } else {
                None
            };
            if !saved_is_current {
                lineage.save(&identity, &info.lineage, &current)?;
            }
            reason
        };
        let output = solved.results[record.id.index()].as_ref();
        let layer_size = output.filter(|o| o.added > 0).map(StepOutput::added_size);
        let mut step = StepReport::from_record(record, info, layer_size, reason);
        if imported.contains(&record.key) {
            step.source = Some("imported".to_string());
        }
        step.timing = Some(crate::timing::step_timing(
            started,
            record,
            step_phases.get(&record.id).map_or(&[][..], Vec::as_slice),
        ));
        reports.push(step);
    }
    let critical_path = crate::timing::critical_path(
        &steps_by_id,
        |i| {
            plan.graph
                .inputs(plan.graph.step_at(i))
                .iter()
                .map(|s| s.index())
                .collect()
        },
        plan.target.index(),
    );
    drop(step_files);

    let target = &solved.outputs[0];
    let step_name = |key: &CacheKey| events.step_name(key);
    // The image's layers must be in the store (and the inline cache reads
    // their records): imported hits' blobs no step needed are fetched now.
    let target_blobs: Vec<Digest> = target.layers.iter().map(|l| l.info.digest).collect();
    cache::lazy_fetch(index.ensure(&target_blobs), &step_name)?;
    let keys_of = |ids: &[StepId]| -> Vec<CacheKey> {
        solved
            .steps
            .iter()
            .filter(|r| ids.contains(&r.id))
            .map(|r| r.key)
            .collect()
    };
    let all_ids: Vec<StepId> = solved.steps.iter().map(|r| r.id).collect();
    let chain = cache_transfer::target_chain(&plan.graph, plan.target);
    let inline = if request.cache_to.contains(&CacheToSpec::Inline) {
        Some(
            cache_transfer::inline_cache(store, &keys_of(&chain), &target_blobs)
                .map_err(|source| BuildError::InlineCache { source })?,
        )
    } else {
        None
    };
    let image = crate::image::write_image(
        store,
        &plan,
        &solved.results,
        target,
        request.source_date_epoch,
        request
            .outputs
            .iter()
            .any(|o| o.format().is_some_and(|f| f.rewrite_timestamp)),
        inline,
    )?;
    cache::export_caches(
        store,
        &request.cache_to,
        &index,
        &registry_cache,
        &|mode| match mode {
            ExportMode::Min => keys_of(&chain),
            ExportMode::Max => keys_of(&all_ids),
        },
        &|| cache_transfer::cache_mount_ids(&plan.graph, &all_ids),
        &step_name,
    )?;
    let mut report = BuildReport::new(
        BuildInfo {
            dockerfile: dockerfile_in_context(&request.context, input),
            context: request.context.display().to_string(),
            target: request.plan.target.clone(),
            started: started_at,
            duration_seconds: started.elapsed().as_secs_f64(),
            image_id: Some(image.id.to_string()),
            single_stage,
        },
        reports,
    );
    report.timing = Some(crate::timing::BuildTiming {
        phases: vec![
            planned,
            solve_phase,
            crate::timing::build_phase(started, "export", export_started),
            blobs_phase,
        ],
        critical_path,
        memory: Some(crate::timing::Memory::now()),
    });
    progress.event(&Event::Summary(&Summary {
        steps: report.totals.steps,
        cached: report.totals.hits,
        executed: report.totals.misses,
        duration: started.elapsed(),
        image_id: Some(image.id.to_string()),
        tags: request.tags.iter().map(|t| t.to_string()).collect(),
        cancelled: false,
        slowest: report
            .slowest(3)
            .into_iter()
            .filter(|(_, seconds)| *seconds >= 0.1)
            .collect(),
    }));
    Ok(Solved {
        image,
        report,
        client,
        capture,
    })
}

/// A hint for a RUN that failed after the sandbox refused it something:
/// its last output lines report EPERM ("Operation not permitted"), which
/// inside a build usually comes from the seccomp profile or a capability
/// the step does not have, not from the tool itself.
fn sandbox_refusal_hint(error: &WorkerError) -> Option<&'static str> {
    let WorkerError::ExitCode { last_lines, .. } = error else {
        return None;
    };
    last_lines
        .iter()
        .any(|l| l.to_ascii_lowercase().contains("operation not permitted"))
        .then_some(
            "the step's output reports \"Operation not permitted\": RUN steps are sandboxed as \
             docker runs them, with Docker's default seccomp profile and capabilities (no \
             CAP_SYS_ADMIN, CAP_NET_ADMIN or CAP_SYS_PTRACE), so calls such as mount, unshare, \
             ptrace or setting the clock are refused; do that work outside the build or use a \
             mode of the tool that does not need it",
        )
}

/// Waits for the blobs RUN steps left to write in the background while
/// later steps ran (see `Store::write_layer_blob_deferred`): the image, the
/// cache exports and the records' hits need them. A write that failed (a
/// full disk) fails the build here, before anything names the blob. A wait
/// long enough to notice shows as a step of its own, so the build does not
/// go quiet after its last step. Returns the `blobs` phase (within
/// `export`).
fn finish_layer_blobs(
    store: &Store,
    progress: &dyn BuildEvents,
    build_started: Instant,
) -> Result<crate::timing::PhaseReport, BuildError> {
    let started = Instant::now();
    let shown = !store.deferred_blobs_done_within(std::time::Duration::from_millis(300));
    let id = crate::events::EXPORT_LAYERS_STEP;
    if shown {
        progress.event(&Event::Started {
            id,
            name: "exporting layers",
        });
    }
    let finished = store.finish_deferred_blobs();
    if shown {
        match &finished {
            Ok(()) => progress.event(&Event::Finished {
                id,
                duration: started.elapsed(),
            }),
            Err(e) => progress.event(&Event::Failed {
                id,
                error: &error_chain(e),
            }),
        }
    }
    finished?;
    let mut phase = crate::timing::build_phase(build_started, "blobs", started);
    phase.within = Some("export".to_string());
    Ok(phase)
}

/// The step showing which frontend the `# syntax=` line selected: the
/// first number of the pull range, which pulls (counted from 1) never use.
const FRONTEND_STEP: VertexId = VertexId(crate::events::PULL_STEP_BASE);

/// `# syntax=`: an official `docker/dockerfile` name selects rbuild's
/// own parser (BuildKit would pull that image and run it), shown as an
/// `[internal]` step; any other frontend image is refused.
fn check_frontend(
    dockerfile: &rbuild_parser::Dockerfile,
    input: &DockerfileSource,
    progress: &dyn BuildEvents,
) -> Result<(), BuildError> {
    let Some(directive) = &dockerfile.directives.syntax else {
        return Ok(());
    };
    match rbuild_parser::directive::frontend(&directive.value) {
        rbuild_parser::directive::Frontend::BuiltIn { name } => {
            let name = format!("[internal] using the built-in Dockerfile frontend for {name}");
            progress.event(&Event::Started {
                id: FRONTEND_STEP,
                name: &name,
            });
            progress.event(&Event::Finished {
                id: FRONTEND_STEP,
                duration: std::time::Duration::ZERO,
            });
            Ok(())
        }
        rbuild_parser::directive::Frontend::Other { image } => Err(BuildError::Frontend {
            dockerfile: input.name.clone(),
            line: directive.span.start_line,
            image,
        }),
    }
}

/// Where the context's stat cache lives: one file per context directory.
fn stat_cache_path(store: &Store, context: &Path) -> PathBuf {
    let digest = Digest::of(context.as_os_str().as_encoded_bytes());
    store
        .dir()
        .join(format!("cache-v{CACHE_INDEX_VERSION}/context"))
        .join(format!("{}.stat", digest.hex()))
}

/// The Dockerfile's name for reports: relative to the context when it is
/// inside it (`Dockerfile`, `docker/app.Dockerfile`), else as given.
fn dockerfile_in_context(context: &Path, input: &DockerfileSource) -> String {
    input
        .path
        .as_ref()
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| {
            p.strip_prefix(context)
                .ok()
                .map(|r| r.display().to_string())
        })
        .unwrap_or_else(|| input.name.clone())
}

/// Names "the same build" across runs, for finding a step's previous key.
fn build_identity(context: &Path, input: &DockerfileSource) -> String {
    let dockerfile = match &input.path {
        Some(p) => std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        None => "<stdin>".to_string(),
    };
    format!("{}\n{dockerfile}", context.display())
}

fn miss_reason(
    request: &BuildRequest,
    cache_skipped: bool,
    previous: Option<StepFingerprint>,
    current: &StepFingerprint,
    name_of_key: &HashMap<String, &str>,
) -> MissReason {
    let plain = |message: &str, kind: &str| MissReason {
        message: message.to_string(),
        detail: serde_json::json!({ "reason": kind }),
    };
    if cache_skipped && request.no_cache {
        return plain("the cache index was not used (--no-cache)", "no-cache");
    }
    if cache_skipped {
        return plain(
            "the cache index was not used for this stage (--no-cache-filter)",
            "no-cache-filter",
        );
    }
    let Some(previous) = previous else {
        return plain("no earlier build of this step", "first-build");
    };
    let why = explain(&previous, current);
    if matches!(why, Why::Unchanged) {
        return MissReason {
            message: "same key as the last build, but its result was no longer in the store"
                .to_string(),
            detail: serde_json::json!({ "reason": "evicted" }),
        };
    }
    // Name the earlier steps whose results changed, as the user sees them.
    let mut message = why.to_string();
    if let Why::Changed { changes } = &why {
        for change in changes {
            if let rbuild_solver::explain::Change::Input { current, .. } = change
                && let Some(name) = name_of_key.get(current)
            {
                message.push_str(&format!("; it changed: {name}"));
            }
        }
    }
    MissReason {
        message,
        detail: serde_json::to_value(&why).unwrap_or(serde_json::Value::Null),
    }
}

/// Step output → build events.
struct ProgressLog<'a> {
    progress: &'a dyn BuildEvents,
}

impl LogSink for ProgressLog<'_> {
    fn output(&self, step: StepId, stream: rbuild_worker::Stream, bytes: &[u8]) {
        let stream = match stream {
            rbuild_worker::Stream::Stdout => Stream::Stdout,
            rbuild_worker::Stream::Stderr => Stream::Stderr,
        };
        self.progress.event(&Event::Output {
            id: VertexId(step.index()),
            stream,
            data: bytes,
        });
    }
}

/// Scheduler events → build events.
struct Events<'a> {
    progress: &'a dyn BuildEvents,
    names: &'a [String],
    /// Step index by cache key, of the steps finished so far.
    keys: Mutex<HashMap<CacheKey, usize>>,
    /// Steps finished so far from the cache, and by running.
    cached: AtomicUsize,
    executed: AtomicUsize,
}

impl Events<'_> {
    /// The display name of the finished step whose key is `key`.
    fn step_name(&self, key: &CacheKey) -> Option<String> {
        let keys = self.keys.lock().expect("keys lock");
        keys.get(key).and_then(|&i| self.names.get(i)).cloned()
    }

    /// (cached, executed) steps finished so far.
    fn counts(&self) -> (usize, usize) {
        (
            self.cached.load(Ordering::Relaxed),
            self.executed.load(Ordering::Relaxed),
        )
    }
}

impl SolveEvents<Op> for Events<'_> {
    fn started(&self, id: StepId, op: &Op) {
        let name = self
            .names
            .get(id.index())
            .cloned()
            .unwrap_or_else(|| op.describe());
        self.progress.event(&Event::Started {
            id: VertexId(id.index()),
            name: &name,
        });
    }

    fn finished(&self, record: &StepRecord) {
        self.keys
            .lock()
            .expect("keys lock")
            .insert(record.key, record.id.index());
        let id = VertexId(record.id.index());
        let counter = match record.outcome {
            Outcome::Cached => &self.cached,
            Outcome::Executed => &self.executed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match record.outcome {
            Outcome::Cached => self.progress.event(&Event::Cached { id }),
            Outcome::Executed => self.progress.event(&Event::Finished {
                id,
                duration: record.duration,
            }),
        }
    }
}

/// What provenance records about a solved build: its materials (the base
/// images and git sources the steps it needed read, git by the commit its
/// ref resolved to), the frontend options, and the secret and ssh ids RUN
/// steps mounted (never their values).
fn capture_provenance(
    request: &BuildRequest,
    plan: &rbuild_solver::plan::Plan,
    steps: &[StepRecord],
    worker: &BuildWorker<'_>,
    started: &str,
) -> crate::attest::Capture {
    use crate::attest::provenance::ImageMaterial;
    use rbuild_solver::op::ExecMountKind;
    let commits = worker.git_commits();
    let mut capture = crate::attest::Capture {
        // BuildKit's `filename`: relative to the context (a Dockerfile
        // outside it by its name only: never a host path).
        dockerfile: {
            let d = dockerfile_in_context(&request.context, &request.dockerfile);
            match Path::new(&d).file_name() {
                Some(n) if Path::new(&d).is_absolute() => n.to_string_lossy().into_owned(),
                _ => d,
            }
        },
        build_args: request.plan.build_args.clone(),
        labels: request.plan.labels.clone(),
        target: request.plan.target.clone(),
        platform: request.plan.platform.clone(),
        started: started.to_string(),
        finished: rfc3339(now_secs()),
        invocation_id: build_invocation_id(request, started),
        context_url: request.attestation_context.clone(),
        ..Default::default()
    };
    if !request.inputs.fetched_context {
        capture.locals.push("context".to_string());
    }
    if request.dockerfile.path.is_some() {
        capture.locals.push("dockerfile".to_string());
    }
    for record in steps {
        match plan.graph.op(record.id) {
            Op::Image(img) => capture.images.push(ImageMaterial {
                reference: img.reference.clone(),
                digest: img.digest,
                platform: img.platform.clone(),
            }),
            Op::Git(g) => {
                let commit = g.checksum.clone().or_else(|| {
                    commits
                        .get(&(g.remote.clone(), g.reference.clone()))
                        .cloned()
                });
                if let Some(c) = commit {
                    capture.git.push((g.remote.clone(), c.to_ascii_lowercase()));
                }
            }
            Op::Local(l) => capture.locals.push(l.name.clone()),
            Op::Exec(e) => {
                if e.network != rbuild_solver::op::ExecNetwork::None {
                    capture.network = true;
                }
                for m in &e.mounts {
                    match &m.kind {
                        ExecMountKind::Secret { id, required, .. } => {
                            capture.secrets.insert(id.clone(), !required);
                        }
                        ExecMountKind::Ssh { id, required, .. } => {
                            capture.ssh.insert(id.clone(), !required);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    capture.locals.sort();
    capture.locals.dedup();
    capture
}

/// An id for this build's invocation: unique per build (the start time
/// and process), not a secret.
fn build_invocation_id(request: &BuildRequest, started: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{started}\0{}\0{}\0{nanos}",
        std::process::id(),
        request.context.display()
    );
    rbuild_oci::Digest::of(seed.as_bytes()).hex()[..26].to_string()
}
