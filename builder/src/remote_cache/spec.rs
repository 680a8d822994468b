//! What a cache export or import is (`--cache-to`, `--cache-from`), as the remote cache code
//! takes it. `cache` owns these types; the CLI parses its flags into them (`cli::cache_spec`),
//! so `cache` never imports the CLI.

use std::path::PathBuf;

use rbuild_layers::Compression;
use rbuild_registry::Reference;

/// Which steps a cache export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Only the steps of the final images (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage that was built, intermediate stages included.
    Max,
}

/// Where a cache export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheExportTarget {
    Registry(Reference),
    Local(PathBuf),
    /// Carried in the pushed image's own config (min mode only).
    Inline,
}

/// A validated `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExportSpec {
    pub target: CacheExportTarget,
    pub mode: CacheMode,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    pub ignore_error: bool,
    /// `RUN --mount=type=cache` ids whose contents travel with the cache (opt-in per id).
    pub cache_mounts: Vec<String>,
}

/// Where a cache import comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImportSource {
    /// A registry cache manifest, or an image carrying inline cache.
    Registry(Reference),
    Local(PathBuf),
}

/// A validated `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImportSpec {
    pub source: CacheImportSource,
}
