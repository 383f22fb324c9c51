//! Runs a [`BuildGraph`]: each needed step once its inputs are done, up to
//! `jobs` steps at a time, reusing results from the cache index where the
//! step's [`CacheKey`] is known.
//!
//! A step's key is its op's encoding, the keys of its inputs in order, and
//! (for ops that read files from an input, such as COPY) a digest of exactly
//! the content it reads, which the [`Worker`] computes. So editing a file
//! re-executes only the steps that read it, and a step whose inputs were
//! rebuilt to identical content is still reused.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cache_key::{CacheKey, KeyEncoder, KeyField};
use crate::digest::Digest;
use crate::graph::{BuildGraph, KeyedOp, StepId};

/// Executes ops. `rbuild-worker` implements this; tests use a fake.
pub trait Worker<O>: Sync {
    /// A handle to a step's result (e.g. a snapshot or an image config).
    type Output: Clone + Send + Sync;
    type Error: std::error::Error + Send + Sync + 'static;

    /// A digest of the content `op` reads from its inputs that is not
    /// already named by the inputs' keys (e.g. the checksum of the files a
    /// COPY selects), or `None` when there is none.
    fn content_digest(
        &self,
        op: &O,
        inputs: &[&Self::Output],
    ) -> Result<Option<Digest>, Self::Error>;

    /// Executes `op` (the op of step `step`) on its inputs' results.
    fn execute(
        &self,
        step: StepId,
        op: &O,
        inputs: &[&Self::Output],
    ) -> Result<Self::Output, Self::Error>;
}

/// Maps cache keys to results across builds. `rbuild-worker` persists it.
pub trait CacheIndex<R, E>: Sync {
    /// The result recorded for `key`, if it is still available.
    fn lookup(&self, key: &CacheKey) -> Result<Option<R>, E>;
    /// Records that `key` (made of `parts`) produced `result`.
    fn record(&self, key: &CacheKey, parts: &KeyParts, result: &R) -> Result<(), E>;
}

/// What a step's key was made of, kept so that a later miss can be
/// explained by comparing with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyParts {
    /// The op's fields, in encoding order ([`KeyEncoder::recording`]).
    pub fields: Vec<KeyField>,
    /// The keys of the step's inputs, in order.
    pub inputs: Vec<CacheKey>,
    /// The content digest the worker computed, if any.
    pub content: Option<Digest>,
}

/// Notified as steps start and finish, from the scheduler's threads.
pub trait SolveEvents<O>: Sync {
    fn started(&self, _id: StepId, _op: &O) {}
    fn finished(&self, _record: &StepRecord) {}
}

/// Ignores every event.
pub struct NoEvents;

impl<O> SolveEvents<O> for NoEvents {}

/// Options for one solve.
pub struct SolveOptions<'a> {
    /// Most steps executing at once (at least 1).
    pub jobs: usize,
    /// Steps for which the cache index is not consulted (`--no-cache`,
    /// `--no-cache-filter`); their new results are still recorded.
    pub skip_cache: &'a (dyn Fn(StepId) -> bool + Sync),
}

impl Default for SolveOptions<'_> {
    fn default() -> Self {
        SolveOptions {
            jobs: 1,
            skip_cache: &|_| false,
        }
    }
}

/// How a step's result was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Found in the cache index under its key.
    Cached,
    /// Executed by the worker.
    Executed,
}

/// What happened to one step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub id: StepId,
    pub description: String,
    pub key: CacheKey,
    pub outcome: Outcome,
    /// Time spent on the step, cache lookup included.
    pub duration: Duration,
    /// What the key was made of.
    pub parts: KeyParts,
    /// When the step's last input was done (it could have started).
    pub ready: Instant,
    /// When a scheduler thread took it.
    pub started: Instant,
    /// Where its time went: `key` (hashing its inputs and content),
    /// `lookup` (the cache index), `execute` (the worker) and `record`
    /// (the cache index entry of an executed step).
    pub phases: Vec<PhaseSpan>,
}

/// A named stretch of a step's time, for reports and traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSpan {
    pub name: &'static str,
    pub started: Instant,
    pub duration: Duration,
}

impl PhaseSpan {
    /// Runs `f`, recording how long it took under `name` in `phases`.
    pub fn time<T>(phases: &mut Vec<PhaseSpan>, name: &'static str, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        phases.push(PhaseSpan {
            name,
            started,
            duration: started.elapsed(),
        });
        out
    }
}

/// The result of a solve: a record per needed step, in completion order,
/// and the targets' results in the order they were asked for.
pub struct SolveReport<R> {
    pub steps: Vec<StepRecord>,
    pub outputs: Vec<R>,
    /// Every needed step's result, indexed by [`StepId::index`] (`None`
    /// for steps the targets did not need).
    pub results: Vec<Option<R>>,
}

impl<R> SolveReport<R> {
    /// How many steps the worker executed.
    pub fn executed(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.outcome == Outcome::Executed)
            .count()
    }
}

/// A step failed; carries the worker's or cache index's error.
#[derive(Debug, thiserror::Error)]
#[error("step {description:?} failed")]
pub struct SolveError<E: std::error::Error + 'static> {
    pub step: StepId,
    pub description: String,
    #[source]
    pub source: E,
}

struct State<R, E: std::error::Error + 'static> {
    ready: VecDeque<StepId>,
    /// When each step became ready (its last input done; the solve's
    /// start for steps without inputs).
    ready_at: Vec<Instant>,
    /// Inputs not yet done, per step (only meaningful for needed steps).
    pending_inputs: Vec<usize>,
    results: Vec<Option<(R, CacheKey)>>,
    remaining: usize,
    error: Option<SolveError<E>>,
    records: Vec<StepRecord>,
}

/// Solves the steps `targets` need and returns their results.
pub fn solve<O, W, C, V>(
    graph: &BuildGraph<O>,
    targets: &[StepId],
    worker: &W,
    index: &C,
    events: &V,
    options: &SolveOptions<'_>,
) -> Result<SolveReport<W::Output>, SolveError<W::Error>>
where
    O: KeyedOp + Sync,
    W: Worker<O>,
    C: CacheIndex<W::Output, W::Error>,
    V: SolveEvents<O>,
{
    let needed = graph.needed_by(targets);
    let mut pending_inputs = vec![0; graph.len()];
    let mut ready = VecDeque::new();
    for i in (0..graph.len()).filter(|&i| needed[i]) {
        let id = graph.step_at(i);
        // Count distinct inputs: a step reading one input twice waits once.
        let mut inputs = graph.inputs(id).to_vec();
        inputs.sort();
        inputs.dedup();
        pending_inputs[i] = inputs.len();
        if inputs.is_empty() {
            ready.push_back(id);
        }
    }
    let remaining = needed.iter().filter(|&&n| n).count();
    let solve_started = Instant::now();
    let state = Mutex::new(State {
        ready_at: vec![solve_started; graph.len()],
        ready,
        pending_inputs,
        results: (0..graph.len()).map(|_| None).collect(),
        remaining,
        error: None,
        records: Vec::with_capacity(remaining),
    });
    let wake = Condvar::new();
    let threads = options.jobs.max(1).min(remaining.max(1));

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                run_steps(
                    graph, &needed, worker, index, events, options, &state, &wake,
                )
            });
        }
    });

    let state = state.into_inner().expect("a scheduler thread panicked");
    if let Some(err) = state.error {
        return Err(err);
    }
    let outputs = targets
        .iter()
        .map(|t| {
            state.results[t.index()]
                .clone()
                .expect("every target was solved")
                .0
        })
        .collect();
    Ok(SolveReport {
        steps: state.records,
        outputs,
        results: state
            .results
            .into_iter()
            .map(|r| r.map(|(output, _)| output))
            .collect(),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_steps<O, W, C, V>(
    graph: &BuildGraph<O>,
    needed: &[bool],
    worker: &W,
    index: &C,
    events: &V,
    options: &SolveOptions<'_>,
    state: &Mutex<State<W::Output, W::Error>>,
    wake: &Condvar,
) where
    O: KeyedOp + Sync,
    W: Worker<O>,
    C: CacheIndex<W::Output, W::Error>,
    V: SolveEvents<O>,
{
    loop {
        // Take a ready step, with its inputs' results and keys.
        let (id, inputs) = {
            let mut st = state.lock().unwrap();
            loop {
                if st.error.is_some() || st.remaining == 0 {
                    return;
                }
                if let Some(id) = st.ready.pop_front() {
                    let inputs: Vec<(W::Output, CacheKey)> = graph
                        .inputs(id)
                        .iter()
                        .map(|i| st.results[i.index()].clone().expect("inputs finish first"))
                        .collect();
                    break (id, inputs);
                }
                st = wake.wait(st).unwrap();
            }
        };

        let op = graph.op(id);
        events.started(id, op);
        let started = Instant::now();
        let mut phases = Vec::new();
        let result = solve_step(
            id,
            op,
            &inputs,
            worker,
            index,
            (options.skip_cache)(id),
            &mut phases,
        );

        let mut st = state.lock().unwrap();
        match result {
            Ok((output, key, outcome, parts)) => {
                let record = StepRecord {
                    id,
                    description: op.describe(),
                    key,
                    outcome,
                    duration: started.elapsed(),
                    parts,
                    ready: st.ready_at[id.index()],
                    started,
                    phases,
                };
                events.finished(&record);
                st.records.push(record);
                st.results[id.index()] = Some((output, key));
                st.remaining -= 1;
                let mut dependents: Vec<StepId> =
                    graph.dependents(id).filter(|d| needed[d.index()]).collect();
                dependents.sort();
                let now = Instant::now();
                for dep in dependents {
                    st.pending_inputs[dep.index()] -= 1;
                    if st.pending_inputs[dep.index()] == 0 {
                        st.ready_at[dep.index()] = now;
                        st.ready.push_back(dep);
                    }
                }
            }
            Err(source) => {
                // Keep the first error; later ones are consequences or noise.
                if st.error.is_none() {
                    st.error = Some(SolveError {
                        step: id,
                        description: op.describe(),
                        source,
                    });
                }
            }
        }
        wake.notify_all();
    }
}

type Solved<R> = (R, CacheKey, Outcome, KeyParts);

fn solve_step<O, W, C>(
    id: StepId,
    op: &O,
    inputs: &[(W::Output, CacheKey)],
    worker: &W,
    index: &C,
    skip_cache: bool,
    phases: &mut Vec<PhaseSpan>,
) -> Result<Solved<W::Output>, W::Error>
where
    O: KeyedOp,
    W: Worker<O>,
    C: CacheIndex<W::Output, W::Error>,
{
    let input_outputs: Vec<&W::Output> = inputs.iter().map(|(o, _)| o).collect();
    let (key, parts) = PhaseSpan::time(phases, "key", || {
        // One pass: the op's fields are recorded for explanations, then
        // the inputs and content are hashed in without being recorded.
        let mut enc = KeyEncoder::recording(op.kind());
        op.encode(&mut enc);
        let fields = enc.take_fields();
        for (_, key) in inputs {
            enc.digest("input", &key.digest());
        }
        let content = worker.content_digest(op, &input_outputs)?;
        if let Some(content) = &content {
            enc.digest("content", content);
        }
        let key = enc.finish();
        let parts = KeyParts {
            fields,
            inputs: inputs.iter().map(|(_, k)| *k).collect(),
            content,
        };
        Ok::<_, W::Error>((key, parts))
    })?;
    if !skip_cache && let Some(output) = PhaseSpan::time(phases, "lookup", || index.lookup(&key))? {
        return Ok((output, key, Outcome::Cached, parts));
    }
    let output = PhaseSpan::time(phases, "execute", || worker.execute(id, op, &input_outputs))?;
    PhaseSpan::time(phases, "record", || index.record(&key, &parts, &output))?;
    Ok((output, key, Outcome::Executed, parts))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::graph::tests::{FakeOp, op};

    #[derive(Debug, thiserror::Error)]
    #[error("fake failure")]
    struct FakeError;

    /// Counts executions; "source" ops read content from `contents`.
    #[derive(Default)]
    struct FakeWorker {
        contents: Mutex<HashMap<&'static str, u64>>,
        executed: Mutex<Vec<&'static str>>,
        fail: Option<&'static str>,
        running: AtomicUsize,
        max_running: AtomicUsize,
        delay: Duration,
    }

    impl Worker<FakeOp> for FakeWorker {
        type Output = String;
        type Error = FakeError;

        fn content_digest(
            &self,
            op: &FakeOp,
            _inputs: &[&String],
        ) -> Result<Option<Digest>, FakeError> {
            let contents = self.contents.lock().unwrap();
            Ok(contents.get(op.name).map(|v| Digest::of(&v.to_le_bytes())))
        }

        fn execute(
            &self,
            _step: StepId,
            op: &FakeOp,
            inputs: &[&String],
        ) -> Result<String, FakeError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.executed.lock().unwrap().push(op.name);
            if self.fail == Some(op.name) {
                return Err(FakeError);
            }
            let inputs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
            Ok(format!("{}({})", op.name, inputs.join(",")))
        }
    }

    impl FakeWorker {
        fn take_executed(&self) -> Vec<&'static str> {
            let mut v = std::mem::take(&mut *self.executed.lock().unwrap());
            v.sort();
            v
        }
    }

    #[derive(Default)]
    struct FakeIndex(Mutex<HashMap<CacheKey, String>>);

    impl CacheIndex<String, FakeError> for FakeIndex {
        fn lookup(&self, key: &CacheKey) -> Result<Option<String>, FakeError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn record(
            &self,
            key: &CacheKey,
            _parts: &KeyParts,
            result: &String,
        ) -> Result<(), FakeError> {
            self.0.lock().unwrap().insert(*key, result.clone());
            Ok(())
        }
    }

    /// base → compile(src) → link; base → docs; plus an unused step.
    fn graph() -> (BuildGraph<FakeOp>, StepId, StepId) {
        let mut g = BuildGraph::new();
        let base = g.add(op("base"), &[]);
        let src = g.add(op("src"), &[]);
        let compile = g.add(op("compile"), &[base, src]);
        let docs = g.add(op("docs"), &[base]);
        let _unused = g.add(op("unused"), &[base]);
        let link = g.add(op("link"), &[compile, docs]);
        (g, link, docs)
    }

    fn run(
        g: &BuildGraph<FakeOp>,
        targets: &[StepId],
        w: &FakeWorker,
        idx: &FakeIndex,
        jobs: usize,
    ) -> Result<SolveReport<String>, SolveError<FakeError>> {
        solve(
            g,
            targets,
            w,
            idx,
            &NoEvents,
            &SolveOptions {
                jobs,
                ..SolveOptions::default()
            },
        )
    }

    #[test]
    fn second_build_executes_nothing() {
        let (g, link, _) = graph();
        let (w, idx) = (FakeWorker::default(), FakeIndex::default());
        let first = run(&g, &[link], &w, &idx, 2).unwrap();
        assert_eq!(
            first.outputs,
            vec!["link(compile(base(),src()),docs(base()))".to_string()]
        );
        assert_eq!(
            w.take_executed(),
            vec!["base", "compile", "docs", "link", "src"]
        );
        let second = run(&g, &[link], &w, &idx, 2).unwrap();
        assert_eq!(second.executed(), 0);
        assert!(w.take_executed().is_empty());
        assert_eq!(second.outputs, first.outputs);
    }

    #[test]
    fn unused_steps_never_execute() {
        let (g, link, _) = graph();
        let w = FakeWorker::default();
        let report = run(&g, &[link], &w, &FakeIndex::default(), 1).unwrap();
        assert!(!w.take_executed().contains(&"unused"));
        assert_eq!(report.steps.len(), 5);
    }

    #[test]
    fn changed_content_reexecutes_only_its_dependents() {
        let (g, link, _) = graph();
        let (w, idx) = (FakeWorker::default(), FakeIndex::default());
        w.contents.lock().unwrap().insert("src", 1);
        run(&g, &[link], &w, &idx, 2).unwrap();
        w.take_executed();
        w.contents.lock().unwrap().insert("src", 2);
        run(&g, &[link], &w, &idx, 2).unwrap();
        assert_eq!(w.take_executed(), vec!["compile", "link", "src"]);
    }

    #[test]
    fn skip_cache_reexecutes_and_records() {
        let (g, link, _) = graph();
        let (w, idx) = (FakeWorker::default(), FakeIndex::default());
        run(&g, &[link], &w, &idx, 2).unwrap();
        w.take_executed();
        let opts = SolveOptions {
            jobs: 2,
            skip_cache: &|_| true,
        };
        let report = solve(&g, &[link], &w, &idx, &NoEvents, &opts).unwrap();
        assert_eq!(report.executed(), 5);
    }

    #[test]
    fn independent_steps_run_at_the_same_time() {
        let mut g = BuildGraph::new();
        let a = g.add(op("a"), &[]);
        let b = g.add(op("b"), &[]);
        let w = FakeWorker {
            delay: Duration::from_millis(100),
            ..FakeWorker::default()
        };
        run(&g, &[a, b], &w, &FakeIndex::default(), 2).unwrap();
        assert_eq!(w.max_running.load(Ordering::SeqCst), 2);
        let w1 = FakeWorker {
            delay: Duration::from_millis(10),
            ..FakeWorker::default()
        };
        run(&g, &[a, b], &w1, &FakeIndex::default(), 1).unwrap();
        assert_eq!(
            w1.max_running.load(Ordering::SeqCst),
            1,
            "--jobs 1 runs one step at a time"
        );
    }

    #[test]
    fn a_failure_stops_dependents_and_names_the_step() {
        let (g, link, _) = graph();
        let w = FakeWorker {
            fail: Some("compile"),
            ..FakeWorker::default()
        };
        let err = run(&g, &[link], &w, &FakeIndex::default(), 1)
            .err()
            .expect("solve fails");
        assert_eq!(err.description, "compile");
        assert!(!w.take_executed().contains(&"link"));
    }

    #[test]
    fn a_shared_step_is_executed_once_for_several_targets() {
        let (g, link, docs) = graph();
        let w = FakeWorker::default();
        let report = run(&g, &[link, docs], &w, &FakeIndex::default(), 2).unwrap();
        assert_eq!(
            w.take_executed().iter().filter(|n| **n == "base").count(),
            1
        );
        assert_eq!(report.outputs[1], "docs(base())");
    }

    #[test]
    fn keys_are_the_same_for_the_same_inputs_and_differ_otherwise() {
        let (g, link, _) = graph();
        let k = |g: &BuildGraph<FakeOp>, t| {
            run(g, &[t], &FakeWorker::default(), &FakeIndex::default(), 1).unwrap()
        };
        let r1 = k(&g, link);
        let r2 = k(&g, link);
        let key = |r: &SolveReport<String>| {
            r.steps
                .iter()
                .find(|s| s.description == "link")
                .unwrap()
                .key
        };
        assert_eq!(key(&r1), key(&r2));
        let mut g2 = BuildGraph::new();
        let base = g2.add(
            FakeOp {
                name: "base",
                payload: 7,
            },
            &[],
        );
        let src = g2.add(op("src"), &[]);
        let compile = g2.add(op("compile"), &[base, src]);
        let docs = g2.add(op("docs"), &[base]);
        let link2 = g2.add(op("link"), &[compile, docs]);
        assert_ne!(key(&r1), key(&k(&g2, link2)));
    }
}
