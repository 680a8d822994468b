//! The remote cache: the build cache beyond this machine's store (the store's own step
//! records are `solver::record`; the cache-map format is `rbuild_registry::cache_map`).
//!
//! * [`import`]: `--cache-from` — caches consulted when the store misses.
//! * [`export`]: `--cache-to` — the cache map of a build's steps, to a registry, a directory,
//!   or inline in the image config.
//! * [`mounts`]: `RUN --mount=type=cache` directories exported by id (imported by the engine).
//!
//! The format itself is `rbuild_registry::cache_map` (documented in `docs/cache-format.md`).

pub mod export;
pub mod import;
pub mod mounts;
pub mod spec;
