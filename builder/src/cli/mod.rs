//! Command-line interface: clap arguments turned into validated options before any work starts
//! (the types of the layers below, e.g. `export::spec`, `solver::inputs`). `commands` runs them
//! and maps errors to exit codes; this module never calls into `commands`.

pub mod annotation;
pub mod args;
pub mod attest;
pub mod cache_spec;
pub mod csv;
pub mod git_context;
pub mod named_context;
pub mod options;
pub mod output;
pub mod registry;
pub mod secret;
pub mod ssh;
pub mod stdin;
pub mod url_context;
pub mod values;

pub use args::{Cli, Command};
pub use options::{BuildOptions, PlanOptions, UsageError};
