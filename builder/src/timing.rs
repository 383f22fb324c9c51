//! Where a build's time went: per-step phases (waiting for a free job,
//! hashing the key, the cache lookup, and inside the worker unpacking
//! snapshots, preparing mounts, starting the sandbox, the process,
//! packing the layer, committing the blob, making a RUN's upper dir its
//! snapshot; other layers are unpacked by the first step that reads
//! them, in that step's `unpack`), the
//! build's own phases (plan, solve, export), the critical path, and the
//! same data as a Chrome/Perfetto trace (`rbuild build --trace FILE`).
//!
//! Times are seconds since the build started, with millisecond
//! precision in the report and microseconds in the trace.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rbuild_solver::scheduler::{PhaseSpan, StepRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::report::{BuildReport, StepStatus, display_name};

/// A stretch of time with a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// `key`, `lookup`, `execute`, `record`; inside `execute`: `unpack`,
    /// `mounts`, `sandbox`, `process`, `pack`, `commit`, `snapshot`; for
    /// the build: `plan`, `solve`, `export`, `blobs`.
    pub name: String,
    /// The phase this one is part of (`execute` for the worker's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// Seconds since the build started.
    pub started_seconds: f64,
    pub seconds: f64,
}

/// When a step could start, when it did, and where its time went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// When its last input was done (the solve's start for a step
    /// without inputs), seconds since the build started.
    pub ready_seconds: f64,
    /// When a job took it.
    pub started_seconds: f64,
    /// Waiting for a free job (`--jobs`) between the two.
    pub queued_seconds: f64,
    pub phases: Vec<PhaseReport>,
}

/// The build's own phases and its critical path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildTiming {
    /// `plan` (parse, plan, resolve base images, open the context),
    /// `solve` (the steps), `export` (explanations, image, cache exports)
    /// and within it `blobs` (waiting for the RUN layers' blobs still
    /// being written in the background).
    pub phases: Vec<PhaseReport>,
    pub critical_path: CriticalPath,
    /// Peak memory so far (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// Peak resident memory: rbuild's own, apart from the processes its RUN
/// steps ran (which `/usr/bin/time` would count as rbuild's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// rbuild's own peak RSS, in bytes.
    pub peak_rss_bytes: u64,
    /// The peak RSS of the largest process a RUN step ran (its sandbox
    /// and everything it started), in bytes; 0 when no step ran one.
    pub run_peak_rss_bytes: u64,
}

impl Memory {
    /// The peaks so far.
    pub fn now() -> Memory {
        use nix::sys::resource::{UsageWho, getrusage};
        // Linux reports kilobytes.
        let peak = |who| getrusage(who).map_or(0, |u| u.max_rss().max(0) as u64 * 1024);
        Memory {
            peak_rss_bytes: peak(UsageWho::RUSAGE_SELF),
            run_peak_rss_bytes: peak(UsageWho::RUSAGE_CHILDREN),
        }
    }
}

/// The chain of steps that set the solve's length: from the target back
/// through, at each step, the input that finished last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// Step ids, first to last.
    pub steps: Vec<usize>,
    /// Their durations added up.
    pub seconds: f64,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Seconds from `origin` to `t` (0 for times before it).
pub(crate) fn offset(origin: Instant, t: Instant) -> f64 {
    secs(t.saturating_duration_since(origin))
}

fn phase(origin: Instant, span: &PhaseSpan, within: Option<&str>) -> PhaseReport {
    PhaseReport {
        name: span.name.to_string(),
        within: within.map(str::to_string),
        started_seconds: offset(origin, span.started),
        seconds: secs(span.duration),
    }
}

/// A phase of the build itself, from `started` for `duration`.
pub(crate) fn build_phase(origin: Instant, name: &str, started: Instant) -> PhaseReport {
    PhaseReport {
        name: name.to_string(),
        within: None,
        started_seconds: offset(origin, started),
        seconds: secs(started.elapsed()),
    }
}

/// A step's timing from the scheduler's record and the worker's phases
/// of its `execute`.
pub(crate) fn step_timing(
    origin: Instant,
    record: &StepRecord,
    worker: &[PhaseSpan],
) -> StepTiming {
    let mut phases: Vec<PhaseReport> = record
        .phases
        .iter()
        .map(|p| phase(origin, p, None))
        .collect();
    phases.extend(worker.iter().map(|p| phase(origin, p, Some("execute"))));
    phases.sort_by(|a, b| a.started_seconds.total_cmp(&b.started_seconds));
    StepTiming {
        ready_seconds: offset(origin, record.ready),
        started_seconds: offset(origin, record.started),
        queued_seconds: secs(record.started.saturating_duration_since(record.ready)),
        phases,
    }
}

/// The critical path ending at `target`: `inputs` gives each step's
/// inputs; steps without a record (not needed) are skipped.
pub(crate) fn critical_path(
    records: &[&StepRecord],
    inputs: impl Fn(usize) -> Vec<usize>,
    target: usize,
) -> CriticalPath {
    let by_id: HashMap<usize, &StepRecord> = records.iter().map(|r| (r.id.index(), *r)).collect();
    let finish = |r: &StepRecord| r.started + r.duration;
    let mut steps = Vec::new();
    let mut current = by_id.get(&target).copied();
    while let Some(r) = current {
        steps.push(r.id.index());
        current = inputs(r.id.index())
            .into_iter()
            .filter_map(|i| by_id.get(&i).copied())
            .max_by_key(|r| finish(r));
    }
    steps.reverse();
    let seconds = secs(steps.iter().map(|i| by_id[i].duration).sum());
    CriticalPath { steps, seconds }
}

/// Microseconds, as trace events count time.
fn micros(seconds: f64) -> i64 {
    (seconds * 1_000_000.0).round() as i64
}

impl BuildReport {
    /// The build as a Chrome trace (the JSON object format, which
    /// Perfetto and `chrome://tracing` open): the build's phases on track
    /// 0, each step on a track of its own among those overlapping it in
    /// time (so parallel steps sit side by side), its phases nested in it.
    /// `None` when the report has no timing (an older report).
    pub fn chrome_trace(&self) -> Option<Value> {
        let timing = self.timing.as_ref()?;
        let mut events = vec![
            json!({"ph": "M", "name": "process_name", "pid": 1, "tid": 0,
                   "args": {"name": format!("rbuild build {}", self.build.context)}}),
            json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": 0,
                   "args": {"name": "build"}}),
        ];
        let span = |name: &str, cat: &str, tid: usize, started: f64, seconds: f64, args: Value| {
            json!({"ph": "X", "name": name, "cat": cat, "pid": 1, "tid": tid,
                   "ts": micros(started), "dur": micros(seconds).max(1), "args": args})
        };
        for p in &timing.phases {
            events.push(span(
                &p.name,
                "build",
                0,
                p.started_seconds,
                p.seconds,
                json!({}),
            ));
        }
        // Tracks: each step goes on the first one free at its start.
        let mut steps: Vec<_> = self
            .steps
            .iter()
            .filter_map(|s| Some((s, s.timing.as_ref()?)))
            .collect();
        steps.sort_by(|a, b| a.1.started_seconds.total_cmp(&b.1.started_seconds));
        let mut track_ends: Vec<f64> = Vec::new();
        let on_path: std::collections::HashSet<usize> =
            timing.critical_path.steps.iter().copied().collect();
        for (step, t) in steps {
            let track = match track_ends.iter().position(|&end| end <= t.started_seconds) {
                Some(i) => i,
                None => {
                    track_ends.push(0.0);
                    track_ends.len() - 1
                }
            };
            track_ends[track] = t.started_seconds + step.duration_seconds;
            let tid = track + 1;
            let stage = if self.build.single_stage && step.stage == "0" {
                ""
            } else {
                &step.stage
            };
            let name = display_name(
                stage,
                (step.position.index, step.position.count),
                &step.instruction,
            );
            let status = match step.status {
                StepStatus::Cached => "cached",
                StepStatus::Executed => "executed",
            };
            events.push(span(
                &name,
                "step",
                tid,
                t.started_seconds,
                step.duration_seconds,
                json!({"status": status, "line": step.line, "cache_key": step.cache_key,
                       "queued_seconds": t.queued_seconds,
                       "critical_path": on_path.contains(&step.id),
                       "reason": step.reason.as_ref().map(|r| r.message.clone())}),
            ));
            for p in &t.phases {
                events.push(span(
                    &p.name,
                    "phase",
                    tid,
                    p.started_seconds,
                    p.seconds,
                    json!({}),
                ));
            }
        }
        for tid in 1..=track_ends.len() {
            events.push(
                json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": tid,
                               "args": {"name": format!("steps {tid}")}}),
            );
        }
        Some(json!({"traceEvents": events, "displayTimeUnit": "ms"}))
    }

    /// The `n` executed steps that took longest, longest first, as
    /// (display name, seconds).
    pub fn slowest(&self, n: usize) -> Vec<(String, f64)> {
        let mut executed: Vec<_> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Executed)
            .collect();
        executed.sort_by(|a, b| b.duration_seconds.total_cmp(&a.duration_seconds));
        executed
            .into_iter()
            .take(n)
            .map(|s| {
                let stage = if self.build.single_stage && s.stage == "0" {
                    ""
                } else {
                    &s.stage
                };
                let name =
                    display_name(stage, (s.position.index, s.position.count), &s.instruction);
                (name, s.duration_seconds)
            })
            .collect()
    }
}
