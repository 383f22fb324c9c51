//! What a build tells its front end while it runs: the [`Event`]s and the
//! [`BuildEvents`] sink they go to. The library never prints; a front end
//! renders these (the CLI's `--progress` renderers, a JSON stream, an API).
//!
//! Events arrive from the scheduler's threads, so sinks are `Sync` and
//! lock their own state. Steps are named by [`VertexId`]: the build
//! graph's step index, or numbers beyond any graph for steps outside it.
//!
//! Base images pulled while planning (FROM of an image the store lacks,
//! or `--pull`) show as a step of their own, `[internal] pull REF`, with
//! an [`Event::Transfer`] per downloaded blob; [`PullReporter`] turns the
//! registry client's pull events into these.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rbuild_oci::reference::ImageRef;
use rbuild_registry::{PullEvent, PullProgress, PushEvent};
use rbuild_solver::Digest;
use serde::Serialize;

/// Names a step in events: the build graph's step index
/// (`StepId::index()`), or any number unique within the build for
/// steps outside the graph (pulls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VertexId(pub usize);

impl VertexId {
    /// The step of the `n`th pull of the build (1-based): counted up from
    /// [`PULL_STEP_BASE`], so it never meets a build-graph step's index.
    pub fn pull(n: usize) -> VertexId {
        VertexId(PULL_STEP_BASE + n)
    }
}

/// Where pull steps' ids start: beyond any build graph (2^40 steps), and
/// below 2^53, so JSON readers that parse numbers as doubles (JavaScript,
/// older jq) still tell one pull step from the next.
pub const PULL_STEP_BASE: usize = 1 << 40;
const _: () = assert!(PULL_STEP_BASE + (1 << 20) < 1 << 53);

/// The step the progress shows while the build waits for the layer blobs
/// its RUN steps left to write in the background, when that takes long
/// enough to notice (BuildKit's "exporting layers"): in the pull range,
/// at a number no pull reaches.
pub const EXPORT_LAYERS_STEP: VertexId = VertexId(PULL_STEP_BASE + (1 << 31));

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The end of a build, for the summary line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Steps the build needed.
    pub steps: usize,
    /// Of which found in the cache index.
    pub cached: usize,
    /// Of which executed.
    pub executed: usize,
    /// Wall time of the whole build.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// The built image's ID (`sha256:…`), when the build succeeded.
    pub image_id: Option<String>,
    /// The build was interrupted (SIGINT/SIGTERM), not failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// The executed steps that took longest (up to 3, at least 0.1 s
    /// each), longest first: display name and seconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<(String, f64)>,
    /// Tags given to it (full references).
    pub tags: Vec<String>,
}

/// Seconds with three decimals, as the report and JSON progress show times.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Something that happened during a build.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A finding of the Dockerfile's syntax layer, with its span; sent
    /// right after parsing, before anything else. Front ends show it at
    /// once with its source line (as `rbuild check`), unlike
    /// [`Event::Warning`]s, which BuildKit lists at the end.
    DockerfileWarning(&'a rbuild_parser::ast::Warning),
    /// Planning is over and the steps are about to run: from now on the
    /// cancel flag is honoured (running steps are killed, no new one
    /// starts). A front end that cancels on an interrupt starts listening
    /// here; before it, nothing would notice the flag.
    Solving,
    /// A step started; `name` is how it is shown, e.g. `[build 2/4] RUN make`.
    Started { id: VertexId, name: &'a str },
    /// The step's result came from the cache index (ends the step).
    Cached { id: VertexId },
    /// Bytes a running step wrote, in any chunking (a line may span events).
    Output {
        id: VertexId,
        stream: Stream,
        data: &'a [u8],
    },
    /// The step executed successfully in `duration`.
    Finished { id: VertexId, duration: Duration },
    /// The step failed with `error` (one line, e.g. `process "/bin/sh -c
    /// make" did not complete successfully: exit code: 2`).
    Failed { id: VertexId, error: &'a str },
    /// The step was running when the build was interrupted and was
    /// stopped (BuildKit's `CANCELED`).
    Cancelled { id: VertexId },
    /// Bytes of one transfer within a running step (a blob download):
    /// `current` of `total`, `done` once it is complete and verified.
    /// `name` is what moves, e.g. the blob's digest.
    Transfer {
        id: VertexId,
        name: &'a str,
        current: u64,
        total: u64,
        done: bool,
    },
    /// A non-fatal finding, shown at the end (as BuildKit does).
    Warning {
        message: &'a str,
        line: Option<usize>,
    },
    /// The build is over (solved, image written, or failed); the last
    /// event but for exports' pushes.
    Summary(&'a Summary),
    /// A push of the built image to `reference` starts; `config` is the
    /// image's config blob (which docker's output does not show).
    PushStarted {
        reference: &'a ImageRef,
        config: &'a Digest,
    },
    /// A blob of the running push, from the registry client.
    Push(PushEvent<'a>),
    /// The push to `reference` is done: the manifest's digest and size.
    Pushed {
        reference: &'a ImageRef,
        digest: &'a Digest,
        size: u64,
    },
}

impl<'a> Event<'a> {
    /// This event with its step's id replaced by `f(id)`; events of no
    /// step as they are. For adapters that run several builds into one
    /// progress (platforms, bake targets), each in an id range of its own:
    /// every step event is moved, none is forgotten.
    pub fn with_id(&self, f: impl Fn(VertexId) -> VertexId) -> Event<'a> {
        match *self {
            Event::Started { id, name } => Event::Started { id: f(id), name },
            Event::Cached { id } => Event::Cached { id: f(id) },
            Event::Output { id, stream, data } => Event::Output {
                id: f(id),
                stream,
                data,
            },
            Event::Finished { id, duration } => Event::Finished {
                id: f(id),
                duration,
            },
            Event::Failed { id, error } => Event::Failed { id: f(id), error },
            Event::Cancelled { id } => Event::Cancelled { id: f(id) },
            Event::Transfer {
                id,
                name,
                current,
                total,
                done,
            } => Event::Transfer {
                id: f(id),
                name,
                current,
                total,
                done,
            },
            other => other,
        }
    }
}

/// Receives a build's events. Implementations lock their own state:
/// events come from several threads.
pub trait BuildEvents: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Discards every event.
impl BuildEvents for () {
    fn event(&self, _event: &Event<'_>) {}
}

/// Turns the registry client's [`PullEvent`]s into build [`Event`]s: a
/// step `[internal] pull REF` per pulled image and a throttled
/// [`Event::Transfer`] per downloaded blob (blobs the store has are not
/// shown, as BuildKit). Pulls happen one at a time while planning; the
/// events of a pull go to the step its `Started` opened.
pub struct PullReporter<'a> {
    events: &'a dyn BuildEvents,
    state: Mutex<PullReporterState>,
}

#[derive(Default)]
struct PullReporterState {
    /// Pulls started so far: they number the pull steps.
    pulls: usize,
    /// The running pull's step and when it started.
    current: Option<(VertexId, Instant)>,
    /// Per blob being downloaded: (bytes so far, total, last event sent).
    blobs: HashMap<Digest, (u64, u64, Instant)>,
}

/// A running transfer is reported at most this often.
const TRANSFER_EVENT_INTERVAL: Duration = Duration::from_millis(100);

impl<'a> PullReporter<'a> {
    /// Reports to `events`.
    pub fn new(events: &'a dyn BuildEvents) -> PullReporter<'a> {
        PullReporter {
            events,
            state: Mutex::new(PullReporterState::default()),
        }
    }
}

impl PullProgress for PullReporter<'_> {
    fn event(&self, event: PullEvent<'_>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let transfer = |id, digest: &Digest, current, total, done| {
            self.events.event(&Event::Transfer {
                id,
                name: &digest.to_string(),
                current,
                total,
                done,
            });
        };
        match event {
            PullEvent::Started { reference } => {
                st.pulls += 1;
                let id = VertexId::pull(st.pulls);
                st.current = Some((id, Instant::now()));
                st.blobs.clear();
                let name = format!("[internal] pull {reference}");
                self.events.event(&Event::Started { id, name: &name });
            }
            PullEvent::Resolved { .. } => {}
            PullEvent::Blob {
                digest,
                size,
                exists,
                ..
            } => {
                let Some((id, _)) = st.current else { return };
                if !exists {
                    st.blobs.insert(*digest, (0, size, Instant::now()));
                    transfer(id, digest, 0, size, false);
                }
            }
            PullEvent::Progress { digest, bytes } => {
                let Some((id, _)) = st.current else { return };
                let Some((current, total, last)) = st.blobs.get_mut(digest) else {
                    return;
                };
                *current += bytes;
                if last.elapsed() >= TRANSFER_EVENT_INTERVAL {
                    *last = Instant::now();
                    let (c, t) = (*current, *total);
                    transfer(id, digest, c, t, false);
                }
            }
            PullEvent::Stored { digest } => {
                let Some((id, _)) = st.current else { return };
                if let Some((_, total, _)) = st.blobs.remove(digest) {
                    transfer(id, digest, total, total, true);
                }
            }
            PullEvent::Finished { error } => {
                let Some((id, started)) = st.current.take() else {
                    return;
                };
                match error {
                    None => self.events.event(&Event::Finished {
                        id,
                        duration: started.elapsed(),
                    }),
                    Some(error) => self.events.event(&Event::Failed { id, error }),
                }
            }
        }
    }
}
