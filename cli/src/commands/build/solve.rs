//! The build itself: plan the Dockerfile, solve the graph with the
//! executor's worker and persistent cache index, explain misses, and
//! write the image to the store.
//!
//! The image config's times come from the layers, not the clock: each
//! layer keeps the time it was first built (in the cache index), history
//! entries take their layer's time, and the image's `created` is the
//! newest layer's. So a fully cached rebuild writes a byte-identical
//! config and gets the same image ID, as BuildKit does.
//! `SOURCE_DATE_EPOCH` overrides all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::time::Instant;

use anyhow::Context as _;
use rbuild_context::{Context, IgnoreRules};
use rbuild_solver::explain::{MissReason as Why, StepFingerprint, explain};
use rbuild_solver::graph::StepId;
use rbuild_solver::image_config::History;
use rbuild_solver::op::Op;
use rbuild_solver::plan::Plan;
use rbuild_solver::scheduler::{Outcome, SolveEvents, SolveOptions, StepRecord, solve};
use rbuild_solver::{Digest, KeyedOp as _};
use rbuild_store::{Store, StoreError};
use rbuild_worker::cache_registry::RegistryTransport;
use rbuild_worker::cache_transfer::{
    self, CacheTransferError, CacheTransport, ExportMode, ImportedCache, ImportingCacheIndex,
    LazyFetchError, LocalDirTransport,
};
use rbuild_worker::{
    BlobFetcher as _, BuildContext, BuildError, BuildWorker, CACHE_INDEX_VERSION, LineageStore,
    LogSink, Secrets, StepOutput, StoreResolver, WorkerConfig, rfc3339,
};

use super::failure::{self, Reported, StepFailure};
use super::options::{CacheFromSpec, CacheToSpec};
use super::progress::{self, Event, Progress, Summary, VertexId};
use super::report::{BuildInfo, BuildReport, MissReason, StepReport, display_name};
use super::{BuildOutcome, BuildRequest};
use crate::commands::dockerfile_input::DockerfileInput;

/// Plans and solves the build, writes the image to the store, and returns
/// it with the per-step report; progress events go to `progress`.
pub(super) fn run(
    request: &BuildRequest,
    input: &DockerfileInput,
    dockerfile: &rbuild_parser::Dockerfile,
    store: &Store,
    progress: &dyn Progress,
) -> anyhow::Result<BuildOutcome> {
    let started = Instant::now();
    let started_at = rfc3339(crate::commands::timestamp::now().0);
    // FROM of an image not in the store pulls it; `--pull` re-checks tags.
    // Shared with the registry cache transport, whose lazy blob readers
    // outlive this borrow.
    let client = std::sync::Arc::new(rbuild_registry::Client::new(
        rbuild_registry::ClientOptions::for_store(store)?,
    ));
    let registry_cache = RegistryTransport::new(client.clone());
    let pull_progress = progress::PullReporter::new(progress);
    let resolver = StoreResolver::with_registry(store, &client, request.pull, &pull_progress);
    let plan = rbuild_solver::plan::plan(dockerfile, &request.plan, &resolver)
        .map_err(|e| anyhow::Error::new(e).context(input.display_name.clone()))?;
    for w in &plan.warnings {
        progress.event(&Event::Warning {
            message: &w.message,
            line: w.line,
        });
    }

    let rules = IgnoreRules::load(&request.context, input.path.as_deref())?;
    let stat_cache = stat_cache_path(store, &request.context);
    let context = Context::open(&request.context, rules, Some(&stat_cache))?;
    let mut secrets = Secrets::new();
    for s in &request.secrets {
        secrets.insert(s.id.clone(), s.read()?);
    }
    // SIGINT/SIGTERM: running steps are killed, no new one starts.
    let cancel = rbuild_sandbox::cancel_on_interrupt();

    // FROM shows the image it resolved to, as BuildKit does.
    let names: Vec<String> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(n, i)| match plan.graph.op(plan.graph.step_at(n)) {
            Op::Image(img) => display_name(
                &i.stage,
                i.position,
                &format!("FROM {}@{}", img.reference, img.digest),
            ),
            _ => display_name(&i.stage, i.position, &i.instruction),
        })
        .collect();
    let log = ProgressLog { progress };
    let events = Events {
        progress,
        names: &names,
        keys: Mutex::new(HashMap::new()),
    };
    check_cache_to(request)?;
    let imports = open_cache_imports(request, store, &registry_cache, progress);
    let index = ImportingCacheIndex::new(store, imports);
    let skip = |id: StepId| {
        request.no_cache
            || request
                .no_cache_filter
                .contains(&plan.steps[id.index()].stage.to_ascii_lowercase())
    };
    let options = SolveOptions {
        jobs: request.jobs,
        skip_cache: &skip,
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
        cancel,
    })?
    // Imported hits' blobs arrive only when a step reads them.
    .with_fetcher(&index);
    let solved = solve(
        &plan.graph,
        &[plan.target],
        &worker,
        &index,
        &events,
        &options,
    );
    let solved = match solved {
        Ok(s) => s,
        Err(err) => {
            let id = VertexId(err.step.index());
            let message = match &err.source {
                BuildError::CacheFetch(e) => fetch_failure(e, &events.step_names()),
                other => error_chain_any(other),
            };
            progress.event(&Event::Failed {
                id,
                error: &message,
            });
            let info = &plan.steps[err.step.index()];
            let tail = err.source.last_lines().to_vec();
            let file = Path::new(&input.display_name).file_name().map_or_else(
                || input.display_name.clone(),
                |n| n.to_string_lossy().into_owned(),
            );
            let text = failure::render(&StepFailure {
                step_name: &names[err.step.index()],
                output_tail: &tail,
                dockerfile_name: &file,
                source: &input.bytes,
                lines: (info.line, info.line),
                error: &message,
            });
            progress.event(&Event::Summary(&Summary {
                steps: plan.steps.len(),
                cached: 0,
                executed: 0,
                duration: started.elapsed(),
                image_id: None,
                tags: Vec::new(),
            }));
            eprint!("{text}");
            return Err(Reported.into());
        }
    };

    let imported = index.imported_hits();

    // Why each executed step missed, then remember this build's keys.
    let identity = build_identity(&request.context, input);
    let lineage = LineageStore::new(store);
    let mut steps: Vec<&StepRecord> = solved.steps.iter().collect();
    steps.sort_by_key(|r| r.id);
    let name_of_key: std::collections::HashMap<String, &str> = steps
        .iter()
        .map(|r| (r.key.to_string(), names[r.id.index()].as_str()))
        .collect();
    let mut reports = Vec::with_capacity(steps.len());
    for record in steps {
        let info = &plan.steps[record.id.index()];
        let files = record
            .parts
            .content
            .and_then(|c| worker.files_for(&c))
            .unwrap_or_default();
        let current = StepFingerprint::new(&record.key, &record.parts, &files);
        let reason = if record.outcome == Outcome::Executed {
            Some(miss_reason(
                request,
                skip(record.id),
                lineage.load(&identity, &info.lineage)?,
                &current,
                &name_of_key,
            ))
        } else {
            None
        };
        lineage.save(&identity, &info.lineage, &current)?;
        let output = solved.results[record.id.index()].as_ref();
        let layer_size = output.filter(|o| o.added > 0).map(StepOutput::added_size);
        let mut step = StepReport::from_record(record, info, layer_size, reason);
        if imported.contains(&record.key) {
            step.source = Some("imported".to_string());
        }
        reports.push(step);
    }
    drop(worker);
    context.save()?;

    let target = &solved.outputs[0];
    // The image's layers must be in the store (and the inline cache reads
    // their records): imported hits' blobs no step needed are fetched now.
    let target_blobs: Vec<Digest> = target.layers.iter().map(|l| l.info.digest).collect();
    lazy_fetch(index.ensure(&target_blobs), &events)?;
    let keys_of = |ids: &[StepId]| -> Vec<rbuild_solver::CacheKey> {
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
                .context("--cache-to type=inline")?,
        )
    } else {
        None
    };
    let image = write_image(store, &plan, &solved.results, target, inline)?;
    for spec in &request.cache_to {
        let (transport, reference, mode, mounts): (&dyn CacheTransport, String, _, _) = match spec {
            CacheToSpec::Inline => continue,
            CacheToSpec::Local { dest, mode, mounts } => (
                &LocalDirTransport,
                dest.display().to_string(),
                *mode,
                *mounts,
            ),
            CacheToSpec::Registry {
                reference,
                mode,
                mounts,
            } => (&registry_cache, reference.clone(), *mode, *mounts),
        };
        let keys = match mode {
            ExportMode::Min => keys_of(&chain),
            ExportMode::Max => keys_of(&all_ids),
        };
        let mount_ids = if mounts {
            cache_transfer::cache_mount_ids(&plan.graph, &all_ids)
        } else {
            Vec::new()
        };
        // The export copies blobs from the store.
        lazy_fetch(index.fetch_records(&keys), &events)?;
        cache_transfer::export(store, &keys, &mount_ids, transport, &reference)
            .with_context(|| format!("--cache-to: exporting the cache to {reference}"))?;
    }
    let report = BuildReport::new(
        BuildInfo {
            dockerfile: dockerfile_in_context(&request.context, input),
            context: request.context.display().to_string(),
            target: request.plan.target.clone(),
            started: started_at,
            duration_seconds: started.elapsed().as_secs_f64(),
            image_id: Some(image.id.to_string()),
        },
        reports,
    );
    progress.event(&Event::Summary(&Summary {
        steps: report.totals.steps,
        cached: report.totals.hits,
        executed: report.totals.misses,
        duration: started.elapsed(),
        image_id: Some(image.id.to_string()),
        tags: request.tags.iter().map(|t| t.to_string()).collect(),
    }));
    Ok(BuildOutcome {
        image,
        report,
        client,
    })
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
fn dockerfile_in_context(context: &Path, input: &DockerfileInput) -> String {
    input
        .path
        .as_ref()
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| {
            p.strip_prefix(context)
                .ok()
                .map(|r| r.display().to_string())
        })
        .unwrap_or_else(|| input.display_name.clone())
}

/// Names "the same build" across runs, for finding a step's previous key.
fn build_identity(context: &Path, input: &DockerfileInput) -> String {
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
    name_of_key: &std::collections::HashMap<String, &str>,
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

/// The image config (the plan's, with layers, history and times filled
/// in) and manifest, written to the store untagged.
fn write_image(
    store: &Store,
    plan: &Plan,
    results: &[Option<StepOutput>],
    target: &StepOutput,
    inline_cache: Option<serde_json::Value>,
) -> anyhow::Result<rbuild_store::Image> {
    let epoch = source_date_epoch()?;
    let layers = target.layer_infos();
    let mut config = plan.config.clone();
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let built_times: Vec<&str> = target
        .layers
        .iter()
        .filter_map(|l| l.created.as_deref())
        .collect();
    let created = match epoch {
        Some(e) => rfc3339(e),
        None => built_times
            .iter()
            .max()
            .map(|s| s.to_string())
            .or_else(|| config.created.clone())
            .unwrap_or_else(|| rfc3339(crate::commands::timestamp::now().0)),
    };
    let mut last_time = created.clone();
    let mut planned = Vec::with_capacity(plan.history.len());
    for h in &plan.history {
        let added = h
            .layer_step
            .and_then(|s| results.get(s.index()).and_then(Option::as_ref))
            .map(|o| o.added_layers())
            .unwrap_or_default();
        if let Some(t) = added.last().and_then(|l| l.created.clone()) {
            last_time = t;
        }
        planned.push(History {
            created: Some(match epoch {
                Some(e) => rfc3339(e),
                None => last_time.clone(),
            }),
            created_by: Some(h.created_by.clone()),
            author: None,
            comment: Some("buildkit.dockerfile.v0".to_string()),
            empty_layer: added.is_empty(),
        });
    }
    config.history.extend(planned);
    config.created = Some(created);
    let bytes = match inline_cache {
        None => serde_json::to_vec(&config).context("serializing the image config")?,
        Some(cache) => {
            // A top-level field of its own, as BuildKit's
            // `moby.buildkit.cache.v0`: image readers ignore it.
            let mut value =
                serde_json::to_value(&config).context("serializing the image config")?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert(cache_transfer::INLINE_CACHE_FIELD.to_string(), cache);
            }
            serde_json::to_vec(&value).context("serializing the image config")?
        }
    };
    Ok(store.write_image_raw(&bytes, &layers, &[])?)
}

/// Refuses, before building, `--cache-to` destinations this build cannot
/// write: a registry reference that does not parse would otherwise fail
/// only after the whole build.
fn check_cache_to(request: &BuildRequest) -> anyhow::Result<()> {
    for spec in &request.cache_to {
        if let CacheToSpec::Registry { reference, .. } = spec {
            rbuild_oci::reference::ImageRef::parse(reference)
                .with_context(|| format!("--cache-to type=registry,ref={reference}"))?;
        }
    }
    Ok(())
}

/// Opens every `--cache-from` and restores cache mounts (`mounts=true`).
/// A cache that cannot be read is a warning, not an error, as with
/// BuildKit: the build can always be done without it.
fn open_cache_imports(
    request: &BuildRequest,
    store: &Store,
    registry: &RegistryTransport,
    progress: &dyn Progress,
) -> Vec<ImportedCache> {
    let warn = |message: String| {
        progress.event(&Event::Warning {
            message: &message,
            line: None,
        })
    };
    let mut out = Vec::new();
    for spec in &request.cache_from {
        let (opened, mounts) = match spec {
            CacheFromSpec::Local { src, mounts } => (
                LocalDirTransport
                    .pull_layout(&src.display().to_string())
                    .and_then(ImportedCache::open)
                    .map_err(|e| {
                        format!("--cache-from {}: {}", src.display(), error_chain_any(&e))
                    }),
                *mounts,
            ),
            CacheFromSpec::Registry { reference, mounts } => (
                registry
                    .pull_layout(reference)
                    .and_then(ImportedCache::open)
                    .map_err(|e| {
                        format!(
                            "--cache-from type=registry,ref={reference}: {}; building without it",
                            error_chain_any(&e)
                        )
                    }),
                *mounts,
            ),
            CacheFromSpec::Image { reference } => (
                rbuild_oci::reference::ImageRef::parse(reference)
                    .map_err(|e| error_chain_any(&e))
                    .and_then(|r| store.resolve_ref(&r).map_err(|e| error_chain_any(&e)))
                    .and_then(|image| {
                        ImportedCache::from_image(store, &image).map_err(|e| error_chain_any(&e))
                    })
                    .map_err(|e| format!("--cache-from {reference}: {e}")),
                false,
            ),
        };
        match opened {
            Ok(cache) => {
                if mounts {
                    if let Err(e) = cache.restore_mounts(store) {
                        warn(format!(
                            "--cache-from {}: cache mounts not restored: {}",
                            cache.location(),
                            error_chain_any(&e)
                        ));
                    }
                }
                out.push(cache);
            }
            Err(message) => warn(message),
        }
    }
    out
}

/// The error of a failed fetch of an imported hit's blob, naming the step
/// as the user sees it and how to go on.
fn fetch_failure(err: &LazyFetchError, names: &HashMap<rbuild_solver::CacheKey, String>) -> String {
    let named = LazyFetchError {
        location: err.location.clone(),
        digest: err.digest,
        key: err.key,
        step: names
            .get(&err.key)
            .cloned()
            .unwrap_or_else(|| err.step.clone()),
        source: err.source.clone(),
    };
    let damaged = match err.source.as_ref() {
        CacheTransferError::Mismatch { .. } => true,
        CacheTransferError::Store(e) => matches!(**e, StoreError::DigestMismatch { .. }),
        _ => false,
    };
    let hint = if damaged {
        format!(
            "the cache at {} is damaged; build again without that --cache-from",
            err.location
        )
    } else {
        format!(
            "a blob of the cache at {} could not be fetched; build again (or without that --cache-from)",
            err.location
        )
    };
    format!("{}\nhint: {hint}", error_chain_any(&named))
}

/// A lazy fetch's result, its failure reported as [`fetch_failure`].
fn lazy_fetch(result: Result<(), BuildError>, events: &Events<'_>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(BuildError::CacheFetch(e)) => Err(anyhow::anyhow!(
            "{}",
            fetch_failure(&e, &events.step_names())
        )),
        Err(e) => Err(e.into()),
    }
}

/// An error and its causes on one line: `copying files failed: "/x": not found`.
fn error_chain_any(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `SOURCE_DATE_EPOCH` (seconds), when set.
fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.parse().map(Some).with_context(|| {
            format!("invalid SOURCE_DATE_EPOCH {v:?}: expected seconds since 1970")
        }),
        _ => Ok(None),
    }
}

/// Step output → progress events.
struct ProgressLog<'a> {
    progress: &'a dyn Progress,
}

impl LogSink for ProgressLog<'_> {
    fn output(&self, step: StepId, stream: rbuild_worker::Stream, bytes: &[u8]) {
        let stream = match stream {
            rbuild_worker::Stream::Stdout => progress::Stream::Stdout,
            rbuild_worker::Stream::Stderr => progress::Stream::Stderr,
        };
        self.progress.event(&Event::Output {
            id: VertexId(step.index()),
            stream,
            data: bytes,
        });
    }
}

/// Scheduler events → progress events.
struct Events<'a> {
    progress: &'a dyn Progress,
    names: &'a [String],
    /// Step index by cache key, of the steps finished so far.
    keys: Mutex<HashMap<rbuild_solver::CacheKey, usize>>,
}

impl Events<'_> {
    /// The display names of the steps finished so far, by cache key.
    fn step_names(&self) -> HashMap<rbuild_solver::CacheKey, String> {
        self.keys
            .lock()
            .expect("keys lock")
            .iter()
            .filter_map(|(k, &i)| Some((*k, self.names.get(i)?.clone())))
            .collect()
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
        match record.outcome {
            Outcome::Cached => self.progress.event(&Event::Cached { id }),
            Outcome::Executed => self.progress.event(&Event::Finished {
                id,
                duration: record.duration,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn failure(source: CacheTransferError) -> String {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let err = LazyFetchError {
            location: "registry.lan/cache".into(),
            digest,
            key: rbuild_solver::CacheKey::from_digest(digest),
            step: "exec: make".into(),
            source: Arc::new(source),
        };
        fetch_failure(&err, &HashMap::new())
    }

    #[test]
    fn only_a_digest_mismatch_calls_the_cache_damaged() {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let actual: Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        let damaged = failure(CacheTransferError::Mismatch {
            location: "registry.lan/cache".into(),
            digest,
            actual,
        });
        assert!(damaged.contains("is damaged"), "{damaged}");
        let unreachable = failure(CacheTransferError::Io {
            path: "/x".into(),
            source: std::io::Error::other("connection reset"),
        });
        assert!(
            unreachable.contains("could not be fetched"),
            "{unreachable}"
        );
        assert!(!unreachable.contains("damaged"), "{unreachable}");
    }
}
