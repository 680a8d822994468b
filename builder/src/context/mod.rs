//! The build context: `.dockerignore` rules, scanning and content hashing.
//!
//! - [`ignore`]: `.dockerignore` files with Docker's exact semantics ([`patternmatcher`] is the
//!   port of `moby/patternmatcher`, [`gopath`] and [`goregex`] the Go library behaviour it relies on).
//! - [`scan`]: a parallel walk of the context directory that never descends into an excluded
//!   directory unless an exception could re-include something below it, plus COPY/ADD source
//!   selection.
//! - [`hash`]: path-independent content digests of selected entries (format documented there).
//! - [`statcache`]: a persistent stat cache so unchanged files are not re-read.

pub mod gopath;
pub mod goregex;
pub mod hash;
pub mod ignore;
pub mod patternmatcher;
pub mod scan;
pub mod statcache;

use std::io;
use std::path::PathBuf;

pub use ignore::IgnoreRules;
pub use scan::{Context, Entry, EntryKind, ScanStats};

/// Everything that can go wrong while reading a build context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("reading ignore file {path}")]
    ReadIgnore {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: invalid pattern {pattern:?}; fix or remove this line")]
    BadIgnorePattern {
        path: PathBuf,
        line: usize,
        pattern: String,
        #[source]
        source: patternmatcher::PatternError,
    },
    #[error("{path}: ignore file is not valid UTF-8")]
    IgnoreNotUtf8 { path: PathBuf },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: file name is not valid UTF-8; rbuild only supports UTF-8 paths in the build context")]
    NonUtf8Path { path: PathBuf },
    #[error("COPY/ADD source {source_path:?}: not found in build context (lstat: no such file or directory; is it excluded by .dockerignore?)")]
    SourceNotFound { source_path: String },
    #[error("COPY/ADD source {pattern:?}: no source files were specified (the wildcard matched nothing)")]
    NoSourceFiles { pattern: String },
    #[error("COPY/ADD source {pattern:?}: malformed wildcard pattern")]
    BadSourcePattern {
        pattern: String,
        #[source]
        source: gopath::BadPattern,
    },
    #[error("{rel:?} is not part of the scanned build context")]
    NotInContext { rel: String },
    #[error("{path} changed while it was being hashed (size {expected} at scan time, read at least {actual} bytes); retry the build")]
    ChangedDuringScan {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("writing stat cache {path}")]
    WriteStatCache {
        path: PathBuf,
        #[source]
        source: rbuild_layers::atomic::AtomicError,
    },
}
