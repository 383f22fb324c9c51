//! The build's report: per-step records (cache hit or miss, why, layer
//! sizes) and totals, which `rbuild build --report FILE` writes as JSON
//! and `--explain` shows as text. A model of its own, so that every front
//! end writes the same document.
//!
//! # Schema (version 1)
//!
//! ```json
//! {
//!   "version": 1,
//!   "build": {
//!     "dockerfile": "Dockerfile",          // relative to the context when inside it; "<stdin>" for -f -
//!     "context": "/abs/path/to/context",
//!     "target": "build",                   // --target, or null for the last stage
//!     "started": "2024-05-01T12:00:00.5Z", // RFC 3339, UTC
//!     "duration_seconds": 3.402,
//!     "image_id": "sha256:…"               // null when the build failed
//!   },
//!   "steps": [                             // needed steps, in build-graph order
//!     {
//!       "id": 4,                           // the build graph's step index
//!       "stage": "build",                  // stage name, or its index as text
//!       "position": {"index": 2, "count": 4},  // as in [build 2/4]
//!       "line": 7,                         // 1-based Dockerfile line
//!       "instruction": "RUN make",
//!       "cache_key": "sha256:…",
//!       "status": "cached",                // or "executed"
//!       "reason": null,                    // for executed steps: {"message": "…", "detail": {…}}
//!       "duration_seconds": 0.001,
//!       "layer_size": 1234,                // bytes of the step's layer blob; null when none
//!       "timing": {                        // seconds since the build started
//!         "ready_seconds": 0.2,            // its last input was done
//!         "started_seconds": 0.2,          // a job took it (queued_seconds between)
//!         "queued_seconds": 0.0,
//!         "phases": [                      // key, lookup, execute, record; the worker's
//!           {"name": "process", "within": "execute", "started_seconds": 0.21, "seconds": 1.5}
//!         ]                                //   unpack, mounts, sandbox, process, pack, commit, snapshot
//!       }
//!     }
//!   ],
//!   "totals": {
//!     "steps": 9, "hits": 7, "misses": 2,
//!     "hit_ratio": 0.778,                  // hits / steps, 3 decimals; 0 when no steps
//!     "bytes_reused": 5000000,             // layer bytes of cached steps
//!     "bytes_written": 1234                // layer bytes of executed steps
//!   },
//!   "timing": {
//!     "phases": [{"name": "plan", "started_seconds": 0.0, "seconds": 0.05}],  // plan, solve, export
//!     "critical_path": {"steps": [0, 3, 4], "seconds": 2.9},  // the chain that set the solve's length
//!     "memory": {"peak_rss_bytes": 14000000,   // rbuild's own peak RSS
//!                "run_peak_rss_bytes": 250000000}  // the largest RUN process tree's
//!   }
//! }
//! ```
//!
//! A miss's `reason.message` is one line of plain text (what `--explain`
//! prints); `reason.detail` is the worker's explanation object as is
//! (e.g. which key field or which file changed), so its shape is owned by
//! the solver's explain module, not by this schema.

use std::time::Duration;

use rbuild_solver::plan::StepInfo;
use rbuild_solver::scheduler::{Outcome, StepRecord};
use serde::{Deserialize, Serialize};

use crate::timing::{BuildTiming, StepTiming};

/// Version of the report schema; bumped on incompatible changes.
pub const REPORT_VERSION: u32 = 1;

/// The whole `--report` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    pub version: u32,
    pub build: BuildInfo,
    pub steps: Vec<StepReport>,
    pub totals: Totals,
    /// The build's phases and critical path (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<BuildTiming>,
}

/// What was built and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The Dockerfile as the user named it (`<stdin>` for `-f -`).
    pub dockerfile: String,
    /// The context directory, absolute.
    pub context: String,
    /// `--target`, if given.
    pub target: Option<String>,
    /// RFC 3339 start time (UTC).
    pub started: String,
    pub duration_seconds: f64,
    /// `sha256:…` of the image config; `None` when the build failed.
    pub image_id: Option<String>,
    /// The Dockerfile has one stage, which step names leave unnamed
    /// (`[2/4] RUN make`), as BuildKit's do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_stage: bool,
}

/// `[build 2/4]`: 1-based position in the stage and its instruction count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub index: usize,
    pub count: usize,
}

/// Whether a step's result came from the cache index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Cached,
    Executed,
}

/// Why a step missed the cache index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissReason {
    /// One line of plain text, e.g. `file "src/main.c" changed`.
    pub message: String,
    /// The worker's structured explanation, embedded as is.
    pub detail: serde_json::Value,
}

/// One needed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The build graph's step index.
    pub id: usize,
    pub stage: String,
    pub position: Position,
    pub line: usize,
    pub instruction: String,
    pub cache_key: String,
    pub status: StepStatus,
    /// For executed steps, when known.
    pub reason: Option<MissReason>,
    pub duration_seconds: f64,
    /// Bytes of the layer blob the step produced (or reused); `None` when
    /// it made no layer.
    pub layer_size: Option<u64>,
    /// For a cached step: `local` (this store's cache index) or `imported`
    /// (a `--cache-from` cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it ran and where its time went (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<StepTiming>,
}

/// Sums over the steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub steps: usize,
    pub hits: usize,
    pub misses: usize,
    pub hit_ratio: f64,
    pub bytes_reused: u64,
    pub bytes_written: u64,
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl StepReport {
    /// From the scheduler's record of the step and the planner's
    /// description of it.
    pub fn from_record(
        record: &StepRecord,
        info: &StepInfo,
        layer_size: Option<u64>,
        reason: Option<MissReason>,
    ) -> StepReport {
        StepReport {
            id: record.id.index(),
            stage: info.stage.clone(),
            position: Position {
                index: info.position.0,
                count: info.position.1,
            },
            line: info.line,
            instruction: info.instruction.clone(),
            cache_key: record.key.to_string(),
            status: match record.outcome {
                Outcome::Cached => StepStatus::Cached,
                Outcome::Executed => StepStatus::Executed,
            },
            reason,
            duration_seconds: seconds(record.duration),
            layer_size,
            source: (record.outcome == Outcome::Cached).then(|| "local".to_string()),
            timing: None,
        }
    }

    /// How progress shows the step: `[build 2/4] RUN make`; an unnamed
    /// stage is `stage-N`, as BuildKit shows it.
    pub fn display_name(&self) -> String {
        display_name(
            &self.stage,
            (self.position.index, self.position.count),
            &self.instruction,
        )
    }
}

/// `[build 2/4] RUN make` from a stage (name or index as text; empty for
/// the only stage of a Dockerfile, which BuildKit does not name), position
/// and instruction; the name progress and reports use for a step.
pub fn display_name(stage: &str, position: (usize, usize), instruction: &str) -> String {
    let stage = if !stage.is_empty() && stage.bytes().all(|b| b.is_ascii_digit()) {
        format!("stage-{stage} ")
    } else if stage.is_empty() {
        String::new()
    } else {
        format!("{stage} ")
    };
    format!("[{stage}{}/{}] {instruction}", position.0, position.1)
}

impl Totals {
    /// Counts and sums over `steps`.
    pub fn of(steps: &[StepReport]) -> Totals {
        let hits = steps
            .iter()
            .filter(|s| s.status == StepStatus::Cached)
            .count();
        let bytes = |status| {
            steps
                .iter()
                .filter(|s| s.status == status)
                .filter_map(|s| s.layer_size)
                .sum()
        };
        let hit_ratio = if steps.is_empty() {
            0.0
        } else {
            (hits as f64 / steps.len() as f64 * 1000.0).round() / 1000.0
        };
        Totals {
            steps: steps.len(),
            hits,
            misses: steps.len() - hits,
            hit_ratio,
            bytes_reused: bytes(StepStatus::Cached),
            bytes_written: bytes(StepStatus::Executed),
        }
    }
}

impl BuildReport {
    /// A report over `steps`, totals computed.
    pub fn new(build: BuildInfo, steps: Vec<StepReport>) -> BuildReport {
        let totals = Totals::of(&steps);
        BuildReport {
            version: REPORT_VERSION,
            build,
            steps,
            totals,
            timing: None,
        }
    }

    /// `--explain`: one line per executed step, in Dockerfile order:
    /// `[build 2/4] RUN make (Dockerfile:7): file "src/main.c" changed`,
    /// then a count line. Empty text when nothing was executed but for a
    /// line saying so.
    pub fn explain(&self) -> String {
        let mut missed: Vec<&StepReport> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Executed)
            .collect();
        missed.sort_by_key(|s| (s.line, s.id));
        if missed.is_empty() {
            return format!("all {} steps were cached\n", self.steps.len());
        }
        // As BuildKit names the file in messages: its base name.
        let file = std::path::Path::new(&self.build.dockerfile)
            .file_name()
            .map_or_else(
                || self.build.dockerfile.clone(),
                |n| n.to_string_lossy().into_owned(),
            );
        let mut out = String::new();
        for s in &missed {
            let reason = s
                .reason
                .as_ref()
                .map_or("no cached result for this step", |r| r.message.as_str());
            let name = if self.build.single_stage && s.stage == "0" {
                display_name("", (s.position.index, s.position.count), &s.instruction)
            } else {
                s.display_name()
            };
            out.push_str(&format!("{name} ({}:{}): {reason}\n", file, s.line));
        }
        out.push_str(&format!(
            "{} of {} steps executed\n",
            missed.len(),
            self.steps.len()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(
        id: usize,
        line: usize,
        instr: &str,
        status: StepStatus,
        size: Option<u64>,
    ) -> StepReport {
        StepReport {
            id,
            stage: "build".into(),
            position: Position {
                index: id,
                count: 4,
            },
            line,
            instruction: instr.into(),
            cache_key: format!("sha256:{}", "0".repeat(64)),
            status,
            reason: None,
            duration_seconds: 0.5,
            layer_size: size,
            source: None,
            timing: None,
        }
    }

    fn report() -> BuildReport {
        let mut run = step(3, 7, "RUN make", StepStatus::Executed, Some(100));
        run.reason = Some(MissReason {
            message: "file \"src/main.c\" changed".into(),
            detail: json!({"kind": "content", "path": "src/main.c"}),
        });
        BuildReport::new(
            BuildInfo {
                dockerfile: "Dockerfile".into(),
                context: "/ctx".into(),
                target: None,
                started: "2024-05-01T12:00:00Z".into(),
                duration_seconds: 3.4,
                image_id: Some("sha256:abc".into()),
                single_stage: false,
            },
            vec![
                step(1, 1, "FROM busybox", StepStatus::Cached, None),
                step(2, 3, "COPY . /src", StepStatus::Cached, Some(4000)),
                run,
                step(4, 9, "RUN strip app", StepStatus::Executed, Some(50)),
            ],
        )
    }

    #[test]
    fn the_json_shape_is_the_documented_one() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(
            v["build"],
            json!({"dockerfile": "Dockerfile", "context": "/ctx", "target": null,
                "started": "2024-05-01T12:00:00Z", "duration_seconds": 3.4,
                "image_id": "sha256:abc"})
        );
        assert_eq!(
            v["steps"][2],
            json!({"id": 3, "stage": "build", "position": {"index": 3, "count": 4},
                "line": 7, "instruction": "RUN make",
                "cache_key": format!("sha256:{}", "0".repeat(64)),
                "status": "executed",
                "reason": {"message": "file \"src/main.c\" changed",
                    "detail": {"kind": "content", "path": "src/main.c"}},
                "duration_seconds": 0.5, "layer_size": 100})
        );
        assert_eq!(v["steps"][0]["reason"], json!(null));
        assert_eq!(v["steps"][0]["layer_size"], json!(null));
        assert_eq!(
            v["totals"],
            json!({"steps": 4, "hits": 2, "misses": 2, "hit_ratio": 0.5,
                "bytes_reused": 4000, "bytes_written": 150})
        );
        // It reads back.
        let back: BuildReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report());
    }

    #[test]
    fn totals_of_nothing_are_zero() {
        let t = Totals::of(&[]);
        assert_eq!((t.steps, t.hits, t.misses, t.hit_ratio), (0, 0, 0, 0.0));
        let three = [
            step(1, 1, "A", StepStatus::Cached, None),
            step(2, 2, "B", StepStatus::Cached, None),
            step(3, 3, "C", StepStatus::Executed, None),
        ];
        assert_eq!(Totals::of(&three).hit_ratio, 0.667);
    }

    #[test]
    fn explain_lists_missed_steps_with_their_reasons() {
        assert_eq!(
            report().explain(),
            "[build 3/4] RUN make (Dockerfile:7): file \"src/main.c\" changed\n\
             [build 4/4] RUN strip app (Dockerfile:9): no cached result for this step\n\
             2 of 4 steps executed\n"
        );
        let mut all_cached = report();
        for s in &mut all_cached.steps {
            s.status = StepStatus::Cached;
        }
        assert_eq!(all_cached.explain(), "all 4 steps were cached\n");
    }

    #[test]
    fn display_names_follow_buildkit() {
        assert_eq!(
            display_name("build", (2, 4), "RUN make"),
            "[build 2/4] RUN make"
        );
        assert_eq!(display_name("1", (1, 3), "FROM x"), "[stage-1 1/3] FROM x");
        assert_eq!(display_name("", (1, 3), "FROM x"), "[1/3] FROM x");
    }
}
