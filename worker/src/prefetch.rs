//! Unpacking base images' snapshots ahead of the steps that need them.
//!
//! A FROM step knows its image's layers long before the first COPY or
//! RUN on it executes: the other stages' steps, the COPY's context
//! hashing and the cache lookups come first. The layers whose snapshots
//! are missing (an image just loaded, imported or pulled) are unpacked on
//! a thread of their own from then on, so the step that needs them waits
//! only for what is left (often nothing) instead of the whole unpack.
//!
//! Each thread works on a store handle of its own (the worker's borrows
//! its store); unpacking is all-or-nothing and ends in a rename, so a step
//! that finds a snapshot in place needs nothing more, and a failed
//! prefetch is retried on the step's own path, which reports the error.
//! The worker waits for running prefetches before it goes (no unpack is
//! cut short by the process's exit).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rbuild_oci::Digest;
use rbuild_store::{LayerInfo, Store};

/// A snapshot being unpacked: done once the thread finished it (whether
/// or not it succeeded).
#[derive(Default)]
struct Pending {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Pending {
    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits until done; whether it had to.
    fn wait(&self) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let waited = !*done;
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        waited
    }
}

thread_local! {
    /// Time this thread spent in [`Prefetch::wait_for`] since the last
    /// [`take_waited`].
    static WAITED: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// The time this thread waited for prefetches since the last call (a
/// step's execution runs on one thread: the wait of that step).
pub(crate) fn take_waited() -> Duration {
    WAITED.with(|w| w.replace(Duration::ZERO))
}

/// Most threads one image's prefetch uses.
const MAX_THREADS: usize = 3;

/// The prefetches of one worker.
#[derive(Default)]
pub(crate) struct Prefetch {
    /// By diffID: the snapshots started, finished or not.
    pending: Mutex<HashMap<Digest, Arc<Pending>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Prefetch {
    /// Starts unpacking the snapshots of `layers` (bottom first) that
    /// `store` lacks and no prefetch has started, on up to
    /// [`MAX_THREADS`] threads.
    pub(crate) fn start(&self, store: &Store, layers: &[LayerInfo]) {
        let mut todo = Vec::new();
        {
            let mut pending = self.lock_pending();
            for layer in layers {
                if pending.contains_key(&layer.diff_id)
                    || store.snapshot_path(&layer.diff_id).is_dir()
                {
                    continue;
                }
                let p = Arc::new(Pending::default());
                pending.insert(layer.diff_id, p.clone());
                todo.push((layer.clone(), p));
            }
        }
        if todo.is_empty() {
            return;
        }
        let Some(root) = store.dir().parent().map(PathBuf::from) else {
            todo.iter().for_each(|(_, p)| p.finish());
            return;
        };
        // Layers unpack independently: a few threads share them, taking
        // the bottom (first needed) ones first.
        let threads = todo.len().min(MAX_THREADS);
        let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(todo)));
        let mut spawned = 0;
        for _ in 0..threads {
            let (queue, root) = (queue.clone(), root.clone());
            let thread = std::thread::Builder::new()
                .name("snapshot-prefetch".into())
                .spawn(move || {
                    let store = Store::open(&root).ok();
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let Some((layer, p)) = next else { break };
                        if let Some(store) = &store {
                            // An error is met again, and reported, by the
                            // step that needs the snapshot.
                            let _ = store.snapshot_layer(&layer);
                        }
                        p.finish();
                    }
                });
            if let Ok(handle) = thread {
                spawned += 1;
                self.threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(handle);
            }
        }
        // No thread could start: the steps unpack for themselves.
        if spawned == 0 {
            let left: Vec<_> = queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            left.iter().for_each(|(_, p)| p.finish());
        }
    }

    /// Waits until the prefetches of `layers` that have started and whose
    /// snapshots are not in place yet are over;
    /// the time it took is added to this thread's [`take_waited`].
    pub(crate) fn wait_for(&self, store: &Store, layers: &[LayerInfo]) {
        let start = Instant::now();
        // A snapshot already in place needs no wait (its thread may still
        // be finishing its bookkeeping).
        let waits: Vec<Arc<Pending>> = {
            let pending = self.lock_pending();
            layers
                .iter()
                .filter_map(|l| pending.get(&l.diff_id).cloned().map(|p| (l, p)))
                .filter(|(l, _)| !store.snapshot_path(&l.diff_id).is_dir())
                .map(|(_, p)| p)
                .collect()
        };
        let mut waited = false;
        for p in waits {
            waited |= p.wait();
        }
        if waited {
            WAITED.with(|w| w.set(w.get() + start.elapsed()));
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Pending>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}
