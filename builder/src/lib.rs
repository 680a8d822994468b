//! rbuild: a daemonless, BuildKit-style container image builder.
//!
//! The binary (`src/main.rs`) is a thin shell over this library: `cli` turns flags into
//! validated options; `dockerfile` parses; `graph` plans which stages a build needs; `context`
//! reads the build context; `solver` builds stages with content-addressed caching; `export`
//! turns built stages into images and outputs; `remote_cache` moves the build cache between
//! machines (`--cache-to`, `--cache-from`); `lazy_pull` fetches layers the store only knows the
//! source of; `progress` shows what happens; `git` reads the context's commit for tags, labels
//! and reproducible timestamps. ARCHITECTURE.md draws the layers.

pub mod attest;
pub mod cli;
pub mod commands;
pub mod context;
pub mod dockerfile;
pub mod errors;
pub mod executor;
pub mod export;
// Oracles for the cargo-fuzz targets in `tests/fuzz` and the corpus regression tests; not API.
#[doc(hidden)]
pub mod fuzz;
pub mod git;
pub mod graph;
pub mod lazy_pull;
pub mod lint;
pub mod progress;
pub mod remote_cache;
pub mod sandbox_init;
pub mod solver;
