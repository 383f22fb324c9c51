//! Build progress: the renderers that show a build's events
//! ([`rbuild_builder::Event`]) on stderr, chosen by `--progress`:
//!
//! - `tty` ([`TtyRenderer`], indicatif): one spinner line per running
//!   step, parallel steps one under the other, the last few output lines
//!   of each running step below it, finished steps printed above as
//!   `=> [build 2/4] RUN make  1.2s` or `=> CACHED [...]`.
//! - `plain` ([`PlainRenderer`]): BuildKit's plain log: `#5 [build 2/4]
//!   RUN make`, `#5 0.123 output line`, `#5 CACHED`, `#5 DONE 1.2s`,
//!   `#5 ERROR: …`; the header is repeated when output switches between
//!   parallel steps; warnings and a summary at the end.
//! - `json` ([`JsonRenderer`]): one JSON object per event and line.
//!
//! Events arrive from the scheduler's threads, so renderers are `Sync`
//! and lock their own state. Each started step gets a display number
//! (`#1`, `#2`…) in the order steps start.
//!
//! Base images pulled while planning show as a step of their own,
//! `[internal] pull REF`, with an [`Event::Transfer`] per downloaded
//! blob: BuildKit's `#2 sha256:… 1.20MB / 3.40MB 0.2s` lines (`… done` at
//! the end) in plain, a bar per blob in tty, `transfer` objects in json.
//!
//! Dockerfile warnings, the interrupt handler and pushes are not progress:
//! [`super::frontend`] handles those events; renderers ignore them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_builder::events::{BuildEvents, Event, Stream, Summary, VertexId};
use serde::Serialize;

use crate::commands::size::human_bytes;

/// Which renderer (`--progress`, with `auto` resolved; `-q` is `Quiet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Tty,
    Plain,
    Json,
    Quiet,
}

/// The renderer for `mode`, writing to stderr.
pub fn renderer(mode: ProgressMode) -> Box<dyn BuildEvents> {
    match mode {
        ProgressMode::Tty => Box::new(TtyRenderer::new(ProgressDrawTarget::stderr())),
        ProgressMode::Plain => Box::new(PlainRenderer::new(Box::new(std::io::stderr()))),
        ProgressMode::Json => Box::new(JsonRenderer::new(Box::new(std::io::stderr()))),
        ProgressMode::Quiet => Box::new(QuietRenderer),
    }
}

/// Shows nothing (`-q`).
pub struct QuietRenderer;

impl BuildEvents for QuietRenderer {
    fn event(&self, _event: &Event<'_>) {}
}

/// Time since the renderer was made; injectable for tests.
type Clock = Box<dyn Fn() -> Duration + Send + Sync>;

fn real_clock() -> Clock {
    let start = Instant::now();
    Box::new(move || start.elapsed())
}

/// `1.2s` (BuildKit's one decimal).
pub fn format_duration(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Splits output chunks into lines, keeping an unterminated tail for the
/// next chunk; `\r\n` ends a line like `\n`.
#[derive(Debug, Default)]
struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.partial.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        lines
    }

    fn flush(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            line
        })
    }
}

struct PlainVertex {
    number: usize,
    name: String,
    started: Duration,
    lines: LineBuffer,
}

struct PlainState {
    out: Box<dyn Write + Send>,
    vertices: HashMap<VertexId, PlainVertex>,
    next: usize,
    /// The vertex whose lines were printed last; another's needs a header.
    last: Option<VertexId>,
    printed: bool,
    warnings: Vec<(String, Option<usize>)>,
    /// Per transfer: when it started and when its last line was printed.
    transfers: HashMap<(VertexId, String), (Duration, Duration)>,
}

/// Plain output prints a running transfer's line at most this often.
const PLAIN_TRANSFER_INTERVAL: Duration = Duration::from_secs(1);

/// BuildKit's `--progress=plain` format.
pub struct PlainRenderer {
    state: Mutex<PlainState>,
    clock: Clock,
}

impl PlainRenderer {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> PlainRenderer {
        PlainRenderer::with_clock(out, real_clock())
    }

    fn with_clock(out: Box<dyn Write + Send>, clock: Clock) -> PlainRenderer {
        PlainRenderer {
            state: Mutex::new(PlainState {
                out,
                vertices: HashMap::new(),
                next: 1,
                last: None,
                printed: false,
                warnings: Vec::new(),
                transfers: HashMap::new(),
            }),
            clock,
        }
    }
}

impl PlainState {
    /// Makes `id` the current vertex, printing a blank line and its header
    /// when another vertex printed last.
    fn switch_to(&mut self, id: VertexId) {
        if self.last == Some(id) {
            return;
        }
        let Some(v) = self.vertices.get(&id) else {
            return;
        };
        let header = format!("#{} {}", v.number, v.name);
        if self.printed {
            let _ = writeln!(self.out);
        }
        let _ = writeln!(self.out, "{header}");
        self.printed = true;
        self.last = Some(id);
    }

    fn line(&mut self, id: VertexId, text: &str) {
        self.switch_to(id);
        if let Some(v) = self.vertices.get(&id) {
            let _ = writeln!(self.out, "#{} {text}", v.number);
        }
    }

    fn flush_partial(&mut self, id: VertexId, now: Duration) {
        let Some(v) = self.vertices.get_mut(&id) else {
            return;
        };
        if let Some(rest) = v.lines.flush() {
            let t = now.saturating_sub(v.started);
            self.line(id, &format!("{:.3} {rest}", t.as_secs_f64()));
        }
    }
}

impl BuildEvents for PlainRenderer {
    fn event(&self, event: &Event<'_>) {
        let now = (self.clock)();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *event {
            Event::Started { id, name } => {
                let number = st.next;
                st.next += 1;
                st.vertices.insert(
                    id,
                    PlainVertex {
                        number,
                        name: name.to_string(),
                        started: now,
                        lines: LineBuffer::default(),
                    },
                );
                st.last = None;
                st.switch_to(id);
            }
            Event::Cached { id } => st.line(id, "CACHED"),
            Event::Output { id, data, .. } => {
                let Some(v) = st.vertices.get_mut(&id) else {
                    return;
                };
                let t = now.saturating_sub(v.started).as_secs_f64();
                for line in v.lines.push(data) {
                    st.line(id, &format!("{t:.3} {line}"));
                }
            }
            Event::Finished { id, duration } => {
                st.flush_partial(id, now);
                st.line(id, &format!("DONE {}", format_duration(duration)));
            }
            Event::Failed { id, error } => {
                st.flush_partial(id, now);
                st.line(id, &format!("ERROR: {error}"));
            }
            Event::Cancelled { id } => {
                st.flush_partial(id, now);
                st.line(id, "CANCELED");
            }
            Event::Transfer {
                id,
                name,
                current,
                total,
                done,
            } => {
                let key = (id, name.to_string());
                let (started, last) = *st.transfers.entry(key.clone()).or_insert((now, now));
                let first = started == last && current == 0;
                if !(first || done || now.saturating_sub(last) >= PLAIN_TRANSFER_INTERVAL) {
                    return;
                }
                st.transfers.insert(key, (started, now));
                let mut text = format!("{name} {} / {}", human_bytes(current), human_bytes(total));
                if current > 0 || done {
                    text.push_str(&format!(
                        " {}",
                        format_duration(now.saturating_sub(started))
                    ));
                }
                if done {
                    text.push_str(" done");
                }
                st.line(id, &text);
            }
            Event::Warning { message, line } => st.warnings.push((message.to_string(), line)),
            Event::Summary(s) => {
                if st.printed {
                    let _ = writeln!(st.out);
                }
                let text = summary_text(s, &st.warnings);
                let _ = write!(st.out, "{text}");
            }
            // Not progress: the build command shows these itself.
            Event::DockerfileWarning(_)
            | Event::Solving
            | Event::PushStarted { .. }
            | Event::Push(_)
            | Event::Pushed { .. } => return,
        }
        let _ = st.out.flush();
    }
}

/// The summary lines shared by `plain` and `tty`: warnings (BuildKit's
/// ` N warnings found:` list), then the counts, the image and its tags.
pub fn summary_text(s: &Summary, warnings: &[(String, Option<usize>)]) -> String {
    let mut out = String::new();
    if !warnings.is_empty() {
        let n = warnings.len();
        out.push_str(&format!(
            " {n} warning{} found:\n",
            if n == 1 { "" } else { "s" }
        ));
        for (message, line) in warnings {
            match line {
                Some(l) => out.push_str(&format!(" - {message} (line {l})\n")),
                None => out.push_str(&format!(" - {message}\n")),
            }
        }
    }
    if !s.slowest.is_empty() {
        out.push_str("Slowest steps:\n");
        for (name, seconds) in &s.slowest {
            out.push_str(&format!(
                "{:>8}  {name}\n",
                format_duration(Duration::from_secs_f64(*seconds))
            ));
        }
    }
    let verb = if s.image_id.is_some() {
        "Built"
    } else if s.cancelled {
        "Cancelled"
    } else {
        "Failed"
    };
    out.push_str(&format!(
        "{verb} in {}: {} step{}, {} cached, {} executed\n",
        format_duration(s.duration),
        s.steps,
        if s.steps == 1 { "" } else { "s" },
        s.cached,
        s.executed
    ));
    if let Some(id) = &s.image_id {
        out.push_str(&format!("writing image {id}\n"));
        for t in &s.tags {
            out.push_str(&format!("naming to {t}\n"));
        }
    }
    out
}

/// Seconds with three decimals, as the report shows times.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// One line of `--progress=json`.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonEvent<'a> {
    Started {
        step: VertexId,
        name: &'a str,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Cached {
        step: VertexId,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Output {
        step: VertexId,
        stream: Stream,
        /// The bytes as text (invalid UTF-8 replaced).
        data: String,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Finished {
        step: VertexId,
        #[serde(serialize_with = "seconds")]
        duration: Duration,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Failed {
        step: VertexId,
        error: &'a str,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Cancelled {
        step: VertexId,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Transfer {
        step: VertexId,
        name: &'a str,
        current: u64,
        total: u64,
        done: bool,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Warning {
        message: &'a str,
        line: Option<usize>,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
    Summary {
        #[serde(flatten)]
        summary: &'a Summary,
        #[serde(serialize_with = "seconds")]
        time: Duration,
    },
}

/// `--progress=json`: one object per event, e.g.
/// `{"event":"started","step":3,"name":"[build 2/4] RUN make","time":0.012}`;
/// `time` is seconds since the build started; `step` is the [`VertexId`].
pub struct JsonRenderer {
    out: Mutex<Box<dyn Write + Send>>,
    clock: Clock,
}

impl JsonRenderer {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> JsonRenderer {
        JsonRenderer::with_clock(out, real_clock())
    }

    fn with_clock(out: Box<dyn Write + Send>, clock: Clock) -> JsonRenderer {
        JsonRenderer {
            out: Mutex::new(out),
            clock,
        }
    }
}

impl BuildEvents for JsonRenderer {
    fn event(&self, event: &Event<'_>) {
        let time = (self.clock)();
        let json = match *event {
            Event::Started { id, name } => JsonEvent::Started {
                step: id,
                name,
                time,
            },
            Event::Cached { id } => JsonEvent::Cached { step: id, time },
            Event::Output { id, stream, data } => JsonEvent::Output {
                step: id,
                stream,
                data: String::from_utf8_lossy(data).into_owned(),
                time,
            },
            Event::Finished { id, duration } => JsonEvent::Finished {
                step: id,
                duration,
                time,
            },
            Event::Failed { id, error } => JsonEvent::Failed {
                step: id,
                error,
                time,
            },
            Event::Cancelled { id } => JsonEvent::Cancelled { step: id, time },
            Event::Transfer {
                id,
                name,
                current,
                total,
                done,
            } => JsonEvent::Transfer {
                step: id,
                name,
                current,
                total,
                done,
                time,
            },
            Event::Warning { message, line } => JsonEvent::Warning {
                message,
                line,
                time,
            },
            Event::Summary(summary) => JsonEvent::Summary { summary, time },
            // Not progress: the build command shows these itself.
            Event::DockerfileWarning(_)
            | Event::Solving
            | Event::PushStarted { .. }
            | Event::Push(_)
            | Event::Pushed { .. } => return,
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(line) = serde_json::to_string(&json) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Output lines kept under a running step in the tty view.
const TTY_TAIL_LINES: usize = 5;

struct TtyStep {
    name: String,
    bar: ProgressBar,
    tail: Vec<ProgressBar>,
    /// A bar per running transfer, under the step's line.
    transfers: HashMap<String, ProgressBar>,
    lines: LineBuffer,
    started: Instant,
}

struct TtyState {
    steps: HashMap<VertexId, TtyStep>,
    warnings: Vec<(String, Option<usize>)>,
}

/// `--progress=tty`: live spinners for running steps (indicatif).
pub struct TtyRenderer {
    multi: MultiProgress,
    state: Mutex<TtyState>,
    /// The terminal's width in columns, asked for at each line (the
    /// window may be resized); `None` when not drawing to a terminal.
    width: fn() -> Option<usize>,
}

/// stderr's terminal width, if it is one.
fn stderr_width() -> Option<usize> {
    console::Term::stderr()
        .size_checked()
        .map(|(_, cols)| usize::from(cols))
}

/// The line a finished step leaves above the live area, its name cut to
/// fit `width` columns (the terminal's, when known) with the time kept,
/// as BuildKit cuts its lines: a line that wrapped would break the live
/// area's redraw.
pub fn tty_done_line(
    name: &str,
    status: TtyStatus,
    duration: Duration,
    width: Option<usize>,
) -> String {
    let (prefix, suffix) = match status {
        TtyStatus::Cached => ("=> CACHED ", String::new()),
        TtyStatus::Done => ("=> ", format!("  {}", format_duration(duration))),
        TtyStatus::Error => ("=> ERROR ", format!("  {}", format_duration(duration))),
        TtyStatus::Cancelled => ("=> CANCELED ", format!("  {}", format_duration(duration))),
    };
    let name = match width {
        // One column spare: a line that fills the last column makes some
        // terminals wrap before the next one.
        Some(w) => console::truncate_str(
            name,
            w.saturating_sub(1 + prefix.len() + suffix.len()).max(8),
            "…",
        ),
        None => name.into(),
    };
    format!("{prefix}{name}{suffix}")
}

/// `line` cut to `width` columns (less one), when the width is known.
fn fit(line: &str, width: Option<usize>) -> String {
    match width {
        Some(w) => console::truncate_str(line, w.saturating_sub(1).max(8), "…").into_owned(),
        None => line.to_string(),
    }
}

/// How a step ended, for [`tty_done_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyStatus {
    Cached,
    Done,
    Error,
    Cancelled,
}

impl TtyRenderer {
    /// Draws to `target` (stderr; hidden in tests).
    pub fn new(target: ProgressDrawTarget) -> TtyRenderer {
        TtyRenderer {
            multi: MultiProgress::with_draw_target(target),
            state: Mutex::new(TtyState {
                steps: HashMap::new(),
                warnings: Vec::new(),
            }),
            width: stderr_width,
        }
    }

    fn end(&self, st: &mut TtyState, id: VertexId, status: TtyStatus, extra: &[String]) {
        let Some(mut step) = st.steps.remove(&id) else {
            return;
        };
        for t in step
            .tail
            .drain(..)
            .chain(step.transfers.drain().map(|(_, b)| b))
        {
            t.finish_and_clear();
            self.multi.remove(&t);
        }
        step.bar.finish_and_clear();
        self.multi.remove(&step.bar);
        let width = (self.width)();
        let _ = self.multi.println(tty_done_line(
            &step.name,
            status,
            step.started.elapsed(),
            width,
        ));
        for line in extra {
            let _ = self.multi.println(fit(&format!("   {line}"), width));
        }
    }
}

impl BuildEvents for TtyRenderer {
    fn event(&self, event: &Event<'_>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *event {
            Event::Started { id, name } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {wide_msg} {elapsed:.dim}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                st.steps.insert(
                    id,
                    TtyStep {
                        name: name.to_string(),
                        bar,
                        tail: Vec::new(),
                        transfers: HashMap::new(),
                        lines: LineBuffer::default(),
                        started: Instant::now(),
                    },
                );
            }
            Event::Cached { id } => self.end(&mut st, id, TtyStatus::Cached, &[]),
            Event::Output { id, data, .. } => {
                let Some(step) = st.steps.get_mut(&id) else {
                    return;
                };
                for line in step.lines.push(data) {
                    if step.tail.len() == TTY_TAIL_LINES {
                        // Oldest line off the top: shift texts up.
                        let texts: Vec<String> =
                            step.tail.iter().skip(1).map(|b| b.message()).collect();
                        for (b, t) in step.tail.iter().zip(texts) {
                            b.set_message(t);
                        }
                        if let Some(last) = step.tail.last() {
                            last.set_message(line);
                        }
                    } else {
                        let after = step.tail.last().unwrap_or(&step.bar).clone();
                        let b = self.multi.insert_after(&after, ProgressBar::new_spinner());
                        b.set_style(
                            ProgressStyle::with_template("    {wide_msg:.dim}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        b.set_message(line);
                        step.tail.push(b);
                    }
                }
            }
            Event::Transfer {
                id,
                name,
                current,
                total,
                done,
            } => {
                let Some(step) = st.steps.get_mut(&id) else {
                    return;
                };
                let bar = step.transfers.entry(name.to_string()).or_insert_with(|| {
                    let b = self.multi.insert_after(&step.bar, ProgressBar::new(total));
                    b.set_style(
                        ProgressStyle::with_template(
                            "    {prefix} [{bar:30}] {bytes}/{total_bytes} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    // The digest's first 12 hex digits, as docker pull shows.
                    let short = name.strip_prefix("sha256:").unwrap_or(name);
                    b.set_prefix(short.chars().take(12).collect::<String>());
                    b
                });
                bar.set_length(total);
                bar.set_position(current);
                if done {
                    bar.finish_with_message("done");
                }
            }
            Event::Finished { id, .. } => self.end(&mut st, id, TtyStatus::Done, &[]),
            Event::Failed { id, error } => {
                let mut extra: Vec<String> = st
                    .steps
                    .get(&id)
                    .map(|s| s.tail.iter().map(|b| b.message()).collect())
                    .unwrap_or_default();
                extra.push(format!("ERROR: {error}"));
                self.end(&mut st, id, TtyStatus::Error, &extra);
            }
            Event::Cancelled { id } => self.end(&mut st, id, TtyStatus::Cancelled, &[]),
            Event::Warning { message, line } => st.warnings.push((message.to_string(), line)),
            Event::Summary(s) => {
                let ids: Vec<VertexId> = st.steps.keys().copied().collect();
                for id in ids {
                    if let Some(step) = st.steps.remove(&id) {
                        for t in step.tail.into_iter().chain(step.transfers.into_values()) {
                            t.finish_and_clear();
                        }
                        step.bar.finish_and_clear();
                    }
                }
                let _ = self.multi.clear();
                // The slowest steps cut to the width like the step lines;
                // the rest not: the live area is gone, and the image ID is
                // worth its whole width.
                let width = (self.width)();
                let slowest: Vec<String> = s
                    .slowest
                    .iter()
                    .map(|(name, _)| format!("  {name}"))
                    .collect();
                for line in summary_text(s, &st.warnings).lines() {
                    if slowest.iter().any(|n| line.ends_with(n.as_str())) {
                        let _ = self.multi.println(fit(line, width));
                    } else {
                        let _ = self.multi.println(line);
                    }
                }
            }
            // Not progress: the build command shows these itself.
            Event::DockerfileWarning(_)
            | Event::Solving
            | Event::PushStarted { .. }
            | Event::Push(_)
            | Event::Pushed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A writer tests read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A clock tests move by hand, in milliseconds.
    fn fake_clock() -> (Arc<AtomicU64>, Clock) {
        let ms = Arc::new(AtomicU64::new(0));
        let m = ms.clone();
        (
            ms,
            Box::new(move || Duration::from_millis(m.load(Ordering::SeqCst))),
        )
    }

    /// What `script` makes a renderer (built by `new` on a fake clock) write.
    fn rendered<R: BuildEvents>(
        new: impl FnOnce(Box<dyn Write + Send>, Clock) -> R,
        script: fn(&dyn BuildEvents, &AtomicU64),
    ) -> String {
        let buf = Buf::default();
        let (ms, clock) = fake_clock();
        let p = new(Box::new(buf.clone()), clock);
        script(&p, &ms);
        buf.text()
    }

    /// The JSON renderer's events for `script`, one object per line.
    fn json_events(script: fn(&dyn BuildEvents, &AtomicU64)) -> Vec<serde_json::Value> {
        rendered(JsonRenderer::with_clock, script)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn summary() -> Summary {
        Summary {
            steps: 3,
            cached: 1,
            executed: 2,
            duration: Duration::from_millis(2345),
            image_id: Some("sha256:abc".into()),
            tags: vec!["docker.io/library/app:1.0".into()],
            cancelled: false,
            slowest: vec![],
        }
    }

    fn script(p: &dyn BuildEvents, ms: &AtomicU64) {
        let (a, b, c) = (VertexId(0), VertexId(4), VertexId(7));
        p.event(&Event::Started {
            id: a,
            name: "[1/3] FROM docker.io/library/busybox:latest",
        });
        p.event(&Event::Cached { id: a });
        p.event(&Event::Started {
            id: b,
            name: "[build 2/3] RUN make",
        });
        ms.store(120, Ordering::SeqCst);
        p.event(&Event::Output {
            id: b,
            stream: Stream::Stdout,
            data: b"cc -o app\r\nlinking",
        });
        p.event(&Event::Started {
            id: c,
            name: "[docs 2/2] RUN doc",
        });
        ms.store(300, Ordering::SeqCst);
        p.event(&Event::Output {
            id: c,
            stream: Stream::Stderr,
            data: b"warning: x\n",
        });
        p.event(&Event::Output {
            id: b,
            stream: Stream::Stdout,
            data: b" done\n",
        });
        ms.store(1500, Ordering::SeqCst);
        p.event(&Event::Finished {
            id: b,
            duration: Duration::from_millis(1380),
        });
        p.event(&Event::Output {
            id: c,
            stream: Stream::Stdout,
            data: b"no newline",
        });
        p.event(&Event::Failed {
            id: c,
            error: "process \"/bin/sh -c doc\" did not complete successfully: exit code: 2",
        });
        p.event(&Event::Warning {
            message: "FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
            line: Some(3),
        });
        p.event(&Event::Summary(&summary()));
    }

    #[test]
    fn plain_output_is_buildkits_format() {
        let want = "\
#1 [1/3] FROM docker.io/library/busybox:latest
#1 CACHED

#2 [build 2/3] RUN make
#2 0.120 cc -o app

#3 [docs 2/2] RUN doc
#3 0.180 warning: x

#2 [build 2/3] RUN make
#2 0.300 linking done
#2 DONE 1.4s

#3 [docs 2/2] RUN doc
#3 1.380 no newline
#3 ERROR: process \"/bin/sh -c doc\" did not complete successfully: exit code: 2

 1 warning found:
 - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 3)
Built in 2.3s: 3 steps, 1 cached, 2 executed
writing image sha256:abc
naming to docker.io/library/app:1.0
";
        assert_eq!(rendered(PlainRenderer::with_clock, script), want);
    }

    /// A pull step with one blob of 3.4 MB arriving over 2.5 s, events
    /// every 0.5 s.
    fn transfer_script(p: &dyn BuildEvents, ms: &AtomicU64) {
        let id = VertexId::pull(1);
        let name = "sha256:c6a83fedfae6ed8a4f5f7cbb6a7b6f1c1ec3d86fea8cb9e5ba2e5e6673fde9f6";
        p.event(&Event::Started {
            id,
            name: "[internal] pull 127.0.0.1:5000/base:latest",
        });
        for step in 0..=5u64 {
            ms.store(step * 500, Ordering::SeqCst);
            p.event(&Event::Transfer {
                id,
                name,
                current: step * 680_000,
                total: 3_400_000,
                done: step == 5,
            });
        }
        p.event(&Event::Finished {
            id,
            duration: Duration::from_millis(2600),
        });
    }

    #[test]
    fn plain_shows_a_pulled_blob_like_buildkit_at_most_once_a_second() {
        let d = "sha256:c6a83fedfae6ed8a4f5f7cbb6a7b6f1c1ec3d86fea8cb9e5ba2e5e6673fde9f6";
        assert_eq!(
            rendered(PlainRenderer::with_clock, transfer_script),
            format!(
                "#1 [internal] pull 127.0.0.1:5000/base:latest
#1 {d} 0B / 3.40MB
#1 {d} 1.36MB / 3.40MB 1.0s
#1 {d} 2.72MB / 3.40MB 2.0s
#1 {d} 3.40MB / 3.40MB 2.5s done
#1 DONE 2.6s
"
            )
        );
    }

    #[test]
    fn json_and_tty_show_transfers() {
        let lines = json_events(transfer_script);
        assert_eq!(lines.len(), 8);
        assert_eq!(
            lines[6],
            serde_json::json!({"event": "transfer", "step": rbuild_builder::events::PULL_STEP_BASE + 1,
                "name": "sha256:c6a83fedfae6ed8a4f5f7cbb6a7b6f1c1ec3d86fea8cb9e5ba2e5e6673fde9f6",
                "current": 3_400_000, "total": 3_400_000, "done": true, "time": 2.5})
        );
        // The tty renderer draws a bar per blob and clears it with its step.
        let t = TtyRenderer::new(ProgressDrawTarget::hidden());
        transfer_script(&t, &AtomicU64::new(0));
        assert!(t.state.lock().unwrap().steps.is_empty());
    }

    #[test]
    fn json_output_is_one_object_per_event() {
        let lines = json_events(script);
        assert_eq!(lines.len(), 12);
        assert_eq!(
            lines[0],
            serde_json::json!({"event": "started", "step": 0,
                "name": "[1/3] FROM docker.io/library/busybox:latest", "time": 0.0})
        );
        assert_eq!(lines[1]["event"], "cached");
        assert_eq!(lines[3]["event"], "output");
        assert_eq!(lines[3]["stream"], "stdout");
        assert_eq!(lines[3]["data"], "cc -o app\r\nlinking");
        assert_eq!(lines[3]["time"], 0.12);
        assert_eq!(lines[7]["event"], "finished");
        assert_eq!(lines[7]["duration"], 1.38);
        assert_eq!(lines[9]["event"], "failed");
        assert_eq!(lines[10]["line"], 3);
        let s = &lines[11];
        assert_eq!(s["event"], "summary");
        assert_eq!(s["steps"], 3);
        assert_eq!(s["image_id"], "sha256:abc");
        assert_eq!(s["duration"], 2.345);
    }

    #[test]
    fn tty_renderer_handles_a_whole_build_off_screen() {
        let p = TtyRenderer::new(ProgressDrawTarget::hidden());
        let ms = AtomicU64::new(0);
        // Many output lines: the tail stays bounded.
        p.event(&Event::Started {
            id: VertexId(1),
            name: "[1/1] RUN seq 100",
        });
        for i in 0..100 {
            p.event(&Event::Output {
                id: VertexId(1),
                stream: Stream::Stdout,
                data: format!("{i}\n").as_bytes(),
            });
        }
        {
            let st = p.state.lock().unwrap();
            let tail = &st.steps[&VertexId(1)].tail;
            assert_eq!(tail.len(), TTY_TAIL_LINES);
            assert_eq!(tail[0].message(), "95");
            assert_eq!(tail[4].message(), "99");
        }
        p.event(&Event::Finished {
            id: VertexId(1),
            duration: Duration::from_secs(1),
        });
        script(&p, &ms);
        assert!(p.state.lock().unwrap().steps.is_empty());
    }

    #[test]
    fn tty_lines_for_finished_steps() {
        let d = Duration::from_millis(1234);
        assert_eq!(
            tty_done_line("[2/3] RUN make", TtyStatus::Done, d, None),
            "=> [2/3] RUN make  1.2s"
        );
        assert_eq!(
            tty_done_line("[2/3] RUN make", TtyStatus::Cached, d, None),
            "=> CACHED [2/3] RUN make"
        );
        assert_eq!(
            tty_done_line("[2/3] RUN make", TtyStatus::Error, d, None),
            "=> ERROR [2/3] RUN make  1.2s"
        );
        // Cut to the width, less one column, keeping the time.
        let line = tty_done_line(
            "[2/3] RUN make all the things",
            TtyStatus::Done,
            d,
            Some(24),
        );
        assert_eq!(line, "=> [2/3] RUN mak…  1.2s");
        assert_eq!(console::measure_text_width(&line), 23);
    }

    #[test]
    fn a_failed_build_summary_names_no_image() {
        let s = Summary {
            image_id: None,
            tags: vec![],
            cancelled: false,
            slowest: vec![("[2/2] RUN make".into(), 12.345)],
            steps: 1,
            cached: 0,
            executed: 1,
            duration: Duration::from_millis(50),
        };
        assert_eq!(
            summary_text(&s, &[]),
            "Slowest steps:\n   12.3s  [2/2] RUN make\nFailed in 0.1s: 1 step, 0 cached, 1 executed\n"
        );
    }

    #[test]
    fn line_buffer_reassembles_chunks() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"ab").is_empty());
        assert_eq!(b.push(b"c\nd\r\ne"), ["abc", "d"]);
        assert_eq!(b.flush().as_deref(), Some("e"));
        assert_eq!(b.flush(), None);
    }
}
