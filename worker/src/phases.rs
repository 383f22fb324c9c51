//! Where a step's time goes inside the worker: named stretches (unpacking
//! snapshots, preparing mounts, starting the sandbox, the process, packing
//! the layer, committing the blob, unpacking its snapshot) recorded on
//! the thread that executes the step, for reports and traces.
//!
//! A step runs on one scheduler thread from key to result, so the spans
//! are collected in a thread-local while [`collect`] runs; code deeper in
//! the worker calls [`record`] or [`time`] without passing a recorder
//! around, and nothing is recorded outside a step.

use std::cell::RefCell;
use std::time::Instant;

use rbuild_solver::scheduler::PhaseSpan;

thread_local! {
    static SPANS: RefCell<Option<Vec<PhaseSpan>>> = const { RefCell::new(None) };
}

/// Runs `f`, returning what it returned and the spans recorded meanwhile
/// on this thread.
pub(crate) fn collect<T>(f: impl FnOnce() -> T) -> (T, Vec<PhaseSpan>) {
    let outer = SPANS.with(|s| s.replace(Some(Vec::new())));
    let out = f();
    let spans = SPANS.with(|s| s.replace(outer)).unwrap_or_default();
    (out, spans)
}

/// Records a span `name` from `started` to now.
pub(crate) fn record(name: &'static str, started: Instant) {
    SPANS.with(|s| {
        if let Some(spans) = s.borrow_mut().as_mut() {
            spans.push(PhaseSpan {
                name,
                started,
                duration: started.elapsed(),
            });
        }
    });
}

/// Runs `f` as the span `name`.
pub(crate) fn time<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    record(name, started);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_collected_per_call_and_only_inside_it() {
        record("outside", Instant::now());
        let (n, spans) = collect(|| {
            time("a", || ());
            let (_, inner) = collect(|| time("nested", || ()));
            assert_eq!(inner.len(), 1);
            time("b", || 7)
        });
        assert_eq!(n, 7);
        let names: Vec<&str> = spans.iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
