//! rbuild: a daemonless, BuildKit-style container image builder.
//!
//! The binary (`src/main.rs`) is a thin shell over this library: `cli` turns flags into validated
//! options, `dockerfile` parses, `context` reads the build context, and the build engine turns
//! both into images.

pub mod cli;
pub mod commands;
pub mod context;
pub mod dockerfile;
pub mod git;
pub mod progress;
