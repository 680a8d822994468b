//! Errors of reading and writing caches. `what` is always the cache as the user named it (the
//! registry reference, or the layout directory), so a message says which `--cache-from` /
//! `--cache-to` failed. Registry errors never carry credentials (see [`RegistryError`]).

use std::io;
use std::path::PathBuf;

use rbuild_layers::image::ImageError;
use rbuild_layers::store::StoreError;
use rbuild_layers::{Digest, MediaType};

use super::format::CacheFormatError;
use crate::error::RegistryError;

/// Why a cache could not be read (`--cache-from`).
#[derive(Debug, thiserror::Error)]
pub enum CacheLoadError {
    #[error("cache {what} does not exist")]
    NotFound { what: String },
    #[error("reading cache {what}: {source}")]
    Registry {
        what: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("cache {what}: {source}")]
    Format {
        what: String,
        #[source]
        source: CacheFormatError,
    },
    #[error("{what} is not an rbuild cache: its manifest's config has media type {media_type} (expected an rbuild cache map or an image config)")]
    NotACache { what: String, media_type: MediaType },
    #[error("image {what} carries no inline cache (no {field} field in its config); build it with --cache-to type=inline", field = super::INLINE_FIELD)]
    NoInlineCache { what: String },
    #[error("cache {what} is inconsistent: {reason}")]
    Inconsistent { what: String, reason: String },
    #[error("cache {what}: invalid {}: {source}", path.display())]
    Document {
        what: String,
        path: PathBuf,
        #[source]
        source: Box<ImageError>,
    },
    #[error("cache {what}: {op} {}: {source}", path.display())]
    Io {
        what: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache {what}: blob {digest}: {source}")]
    Store {
        what: String,
        digest: Digest,
        #[source]
        source: StoreError,
    },
}

impl CacheLoadError {
    /// Whether the cache simply does not exist yet (the first build with a `--cache-from`
    /// that a later `--cache-to` will create): callers say so quietly rather than warn.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CacheLoadError::NotFound { .. })
            || matches!(self, CacheLoadError::Registry { source, .. } if matches!(**source, RegistryError::NotFound { .. }))
    }
}

/// Why a cache could not be written (`--cache-to`).
#[derive(Debug, thiserror::Error)]
pub enum CacheWriteError {
    #[error("writing cache {what}: {source}")]
    Registry {
        what: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("writing cache {what}: the local store: {source}")]
    Store {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("writing cache {what}: blob {digest} is not in the local store and cannot be fetched")]
    MissingBlob { what: String, digest: Digest },
    #[error("writing cache {what}: {op} {}: {source}", path.display())]
    Io {
        what: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing cache {what}: blob {digest} in the local store does not match its digest or size; it was not written")]
    CorruptBlob { what: String, digest: Digest },
}
