//! rbuild: a daemonless, BuildKit-style container image builder.
//!
//! The binary (`src/main.rs`) is a thin shell over this library: `cli` turns flags into
//! validated options; `dockerfile` parses; `graph` plans which stages a build needs; `context`
//! reads the build context; `solver` builds stages with content-addressed caching; `export`
//! turns built stages into images and outputs; `cache` moves the build cache between machines
//! (`--cache-to`, `--cache-from`) and fetches lazily pulled layers; `progress` shows what happens; `git` reads the
//! context's commit for tags, labels and reproducible timestamps.

pub mod cache;
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
pub mod progress;
pub mod sandbox_init;
pub mod solver;
