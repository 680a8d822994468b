//! What the engines of one build share when it builds several platforms (one engine per
//! target platform, running side by side):
//!
//! * a lock per step key: a step two platforms have in common (every step of a stage on
//!   `$BUILDPLATFORM` that does not read the target's ARGs, the cross-compilation pattern) is
//!   run by the first engine to reach it while the other waits, then takes it from the store's
//!   cache — so it is built once, as BuildKit's solver merges equal vertices;
//! * the scanned build context, read once;
//! * the base images resolved before the solve (`super::early_bases`);
//! * whether a step failed: the other stages, of every platform, stop before their next step.
//!
//! A build for one platform has one engine and never waits on these locks.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use rbuild_layers::Digest;

use crate::context::{Context, ContextError};

/// The scanned context, or why it could not be read.
pub(crate) type ScannedContext = Result<Arc<Context>, Arc<ContextError>>;

/// State shared by the engines of one build.
#[derive(Default)]
pub struct Shared {
    /// The keys of the steps running now.
    running: Mutex<HashSet<Digest>>,
    finished: Condvar,
    /// The keys of the steps this build ran (not took from a cache).
    ran: Mutex<HashSet<Digest>>,
    pub(crate) context: OnceLock<ScannedContext>,
    /// Bases resolved before the solve; each stage takes its own from here.
    pub bases: super::early_bases::EarlyBases,
    /// Set when a step failed for good (not a round the engine runs again).
    cancelled: std::sync::atomic::AtomicBool,
}

/// Held while a step with a given key runs; dropping it lets the next engine in.
pub struct StepGuard<'a> {
    shared: &'a Shared,
    key: Digest,
}

impl Shared {
    /// The shared state of a build whose bases were resolved before the solve.
    pub fn with_bases(bases: super::early_bases::EarlyBases) -> Shared {
        Shared {
            bases,
            ..Shared::default()
        }
    }

    /// Stops the build: every stage, of every platform, ends before its next step.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a step of this build failed (see [`Shared::cancel`]).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until no other engine of this build runs the step with `key`, then holds it.
    pub fn lock_step(&self, key: &Digest) -> StepGuard<'_> {
        // A step that panicked while holding the set left it consistent (one insert or remove).
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while running.contains(key) {
            running = self
                .finished
                .wait(running)
                .unwrap_or_else(|p| p.into_inner());
        }
        running.insert(key.clone());
        StepGuard {
            shared: self,
            key: key.clone(),
        }
    }
}

impl Shared {
    /// Notes that this build ran the step with `key` and recorded its result.
    pub fn built(&self, key: &Digest) {
        self.ran
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
    }

    /// Whether an engine of this build ran the step with `key` (with `--no-cache`, the other
    /// platforms take it from the cache: it is this build's work, not an earlier build's).
    pub fn built_here(&self, key: &Digest) -> bool {
        self.ran
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }
}

impl Drop for StepGuard<'_> {
    fn drop(&mut self) {
        let mut running = self
            .shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
        self.shared.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_engine_at_a_time_runs_a_step_and_other_keys_do_not_wait() {
        let shared = Arc::new(Shared::default());
        let key = Digest::sha256_of(b"step");
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (shared, key, inside, most) =
                    (shared.clone(), key.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    let _g = shared.lock_step(&key);
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Another key is free while one is held.
        let _held = shared.lock_step(&key);
        let other = shared.clone();
        std::thread::spawn(move || drop(other.lock_step(&Digest::sha256_of(b"other"))))
            .join()
            .unwrap();
    }
}
