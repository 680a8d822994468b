//! The build cache beyond this machine's store.
//!
//! * [`blobs`]: fetching layers the store only knows the source of (lazily pulled base images,
//!   imported caches), with a registry connection pool shared by the whole build.
//! * [`import`]: `--cache-from` — caches consulted when the store misses.
//! * [`export`]: `--cache-to` — the cache map of a build's steps, to a registry, a directory,
//!   or inline in the image config.
//! * [`mounts`]: `RUN --mount=type=cache` directories exported and imported by id.
//!
//! The format itself is `rbuild_registry::cache` (documented in `docs/cache-format.md`).

pub mod blobs;
pub mod export;
pub mod import;
pub mod mounts;
pub mod spec;
