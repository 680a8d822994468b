//! A build-wide bound on what the engine keeps in memory per step: image configs (whose
//! history repeats the build args in scope in every `RUN` entry), the configs cloned into each
//! step's cache-export outcome and stage results, and the key inputs kept to explain misses.
//!
//! The expansion limits ([`crate::dockerfile::limits`]) bound one scope to 4 MiB, but a scope
//! that size is repeated by every step: a kilobyte of `RUN true` lines under a 4 MiB ARG scope
//! would otherwise keep gigabytes (each RUN's history entry holds the args, and each step's
//! outcome clones the whole config so far). The project rule is that no input under 1 MB may
//! drive memory past 1 GiB, so every step charges what it keeps against one budget,
//! [`MAX_KEPT_BYTES`], and the build stops with an error naming the step when it runs out.
//! Real builds keep a few kilobytes per step; the bound is far above them.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::dockerfile::limits::{mib, LIMIT_HINT};

/// The most bytes of configs, history and key inputs one build may keep.
pub const MAX_KEPT_BYTES: usize = 256 << 20;

/// The build kept more than [`MAX_KEPT_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image configs, history and cache records of this build would exceed {limit} (each RUN repeats the build args in scope in its history and cache key, and each step keeps the config so far): {LIMIT_HINT}", limit = mib(MAX_KEPT_BYTES))]
pub struct BudgetExceeded;

/// What the build has kept so far.
#[derive(Debug, Default)]
pub struct KeptBytes(AtomicUsize);

impl KeptBytes {
    /// Adds the serialised size of `value` (a config or key inputs), or fails once the total
    /// passes [`MAX_KEPT_BYTES`].
    pub fn charge(&self, value: &impl Serialize) -> Result<(), BudgetExceeded> {
        self.charge_bytes(serialized_len(value))
    }

    fn charge_bytes(&self, bytes: usize) -> Result<(), BudgetExceeded> {
        let before = self.0.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > MAX_KEPT_BYTES {
            return Err(BudgetExceeded);
        }
        Ok(())
    }
}

/// The length of `value`'s JSON, counted without building it.
fn serialized_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and configs and key inputs always serialise; a value
    // that did not would count what was written before the failure.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_to_the_bound_and_fail_past_it() {
        let kept = KeptBytes::default();
        let mb = "x".repeat(1 << 20);
        let mut ok = 0;
        while kept.charge(&mb).is_ok() {
            ok += 1;
            assert!(ok < 1000, "the bound was never reached");
        }
        // Each charge is 1 MiB plus two quotes.
        assert_eq!(ok, 255);
    }

    #[test]
    fn serialized_len_is_the_json_length() {
        let v = vec!["a".to_string(), "bc".into()];
        assert_eq!(
            serialized_len(&v),
            serde_json::to_vec(&v).map(|j| j.len()).unwrap_or(0)
        );
    }
}
