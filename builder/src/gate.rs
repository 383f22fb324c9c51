//! Several builds at once sharing their steps: [`StepGate`] makes a step
//! that two concurrent builds both need (same cache key: same op, same
//! inputs, same content) execute once. The first build to miss the cache
//! index on a key claims it and runs the step; a build that looks the
//! key up meanwhile waits until the step's result is recorded, then
//! finds it in the cache index like any cached step. This is what
//! BuildKit gets from solving every bake target in one graph, where
//! equal vertices are merged.
//!
//! It sits between the scheduler and the cache index (`GatedIndex`),
//! so neither the solver nor the worker knows about it. No deadlock: a
//! claim is taken by the scheduler thread that then executes the step at
//! once (lookup, execute, record run in one thread with nothing to wait
//! for in between), and a failed or abandoned claim is released when the
//! build that holds it ends, waking its waiters, who then claim and run
//! the step themselves.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use rbuild_solver::CacheKey;
use rbuild_solver::scheduler::{CacheIndex, KeyParts};

/// Keys being computed by one of the builds sharing the gate.
#[derive(Default)]
pub struct StepGate {
    /// Key → the build (its `GatedIndex::build` number) computing it.
    running: Mutex<HashMap<CacheKey, usize>>,
    done: Condvar,
    /// Build numbers handed out.
    builds: Mutex<usize>,
    /// Keys whose result a build sharing the gate recorded: what a
    /// `--no-cache` build may still take from another (it was built now).
    recorded: Mutex<HashSet<CacheKey>>,
}

impl StepGate {
    pub fn new() -> StepGate {
        StepGate::default()
    }

    fn next_build(&self) -> usize {
        let mut n = self.builds.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    }

    fn release(&self, key: &CacheKey) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(key);
        self.done.notify_all();
    }

    fn release_build(&self, build: usize) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|_, b| *b != build);
        self.done.notify_all();
    }
}

/// One build's view of its cache index through a [`StepGate`].
pub(crate) struct GatedIndex<'a, C> {
    inner: &'a C,
    gate: &'a StepGate,
    build: usize,
    /// `--no-cache`: only results recorded through the gate (built by
    /// this run's builds) are found; the cache index's older ones are not.
    fresh: bool,
}

impl<'a, C> GatedIndex<'a, C> {
    pub fn new(inner: &'a C, gate: &'a StepGate) -> GatedIndex<'a, C> {
        GatedIndex {
            inner,
            gate,
            build: gate.next_build(),
            fresh: false,
        }
    }

    /// For a `--no-cache` build: see [`GatedIndex::fresh`].
    pub fn fresh(mut self) -> Self {
        self.fresh = true;
        self
    }
}

impl<C> Drop for GatedIndex<'_, C> {
    fn drop(&mut self) {
        // Claims of steps that failed or never ran: let waiters try.
        self.gate.release_build(self.build);
    }
}

impl<R, E, C: CacheIndex<R, E>> CacheIndex<R, E> for GatedIndex<'_, C> {
    fn lookup(&self, key: &CacheKey) -> Result<Option<R>, E> {
        let mut running = self.gate.running.lock().unwrap_or_else(|e| e.into_inner());
        // Another build (or another step of this one) is computing it:
        // wait for its record.
        while running.contains_key(key) {
            running = self
                .gate
                .done
                .wait(running)
                .unwrap_or_else(|e| e.into_inner());
        }
        // Claimed while looking up, so that a concurrent lookup of the
        // same key waits for this one's answer or execution.
        running.insert(*key, self.build);
        drop(running);
        if self.fresh
            && !self
                .gate
                .recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(key)
        {
            return Ok(None);
        }
        match self.inner.lookup(key) {
            Ok(Some(found)) => {
                self.gate.release(key);
                Ok(Some(found))
            }
            // A miss keeps the claim: this thread executes the step now.
            Ok(None) => Ok(None),
            Err(e) => {
                self.gate.release(key);
                Err(e)
            }
        }
    }

    fn record(&self, key: &CacheKey, parts: &KeyParts, result: &R) -> Result<(), E> {
        let recorded = self.inner.record(key, parts, result);
        if recorded.is_ok() {
            self.gate
                .recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*key);
        }
        self.gate.release(key);
        recorded
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Index {
        map: Mutex<HashMap<CacheKey, u32>>,
    }

    impl CacheIndex<u32, ()> for Index {
        fn lookup(&self, key: &CacheKey) -> Result<Option<u32>, ()> {
            Ok(self.map.lock().unwrap().get(key).copied())
        }
        fn record(&self, key: &CacheKey, _parts: &KeyParts, result: &u32) -> Result<(), ()> {
            self.map.lock().unwrap().insert(*key, *result);
            Ok(())
        }
    }

    fn key() -> CacheKey {
        let mut enc = rbuild_solver::cache_key::KeyEncoder::recording("test");
        enc.str("x", "shared");
        enc.finish()
    }

    #[test]
    fn a_key_two_builds_miss_at_once_executes_once() {
        let index = Index::default();
        let gate = StepGate::new();
        let executed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let gated = GatedIndex::new(&index, &gate);
                    let k = key();
                    if gated.lookup(&k).unwrap().is_none() {
                        executed.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        gated.record(&k, &KeyParts::default(), &7).unwrap();
                    }
                });
            }
        });
        assert_eq!(executed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_no_cache_build_finds_only_what_this_run_built() {
        let index = Index::default();
        let k = key();
        index.record(&k, &KeyParts::default(), &1).unwrap();
        let gate = StepGate::new();
        let first = GatedIndex::new(&index, &gate).fresh();
        assert_eq!(
            first.lookup(&k).unwrap(),
            None,
            "an older result is not used"
        );
        first.record(&k, &KeyParts::default(), &2).unwrap();
        let second = GatedIndex::new(&index, &gate).fresh();
        assert_eq!(second.lookup(&k).unwrap(), Some(2), "built by this run");
    }

    #[test]
    fn a_claim_abandoned_by_a_failed_build_lets_the_waiter_run() {
        let index = Index::default();
        let gate = StepGate::new();
        let k = key();
        let failed = GatedIndex::new(&index, &gate);
        assert!(failed.lookup(&k).unwrap().is_none(), "claimed");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let gated = GatedIndex::new(&index, &gate);
                gated.lookup(&k).unwrap()
            });
            std::thread::sleep(Duration::from_millis(30));
            drop(failed);
            assert_eq!(
                waiter.join().unwrap(),
                None,
                "the waiter misses and runs it"
            );
        });
    }
}
