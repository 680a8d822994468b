//! Errors of reading and writing caches. `what` is always the cache as the user named it (the
//! registry reference, or the layout directory), so a message says which `--cache-from` /
//! `--cache-to` failed. Registry errors never carry credentials (see [`RegistryError`]).

use std::io;
use std::path::PathBuf;

use rbuild_layers::image::ImageError;
use rbuild_layers::oci_layout::LayoutError;
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
    #[error("cache {what}: importing blob {digest} into the local store: {source}")]
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
    #[error("writing cache {what}: {source}")]
    Layout {
        what: String,
        #[source]
        source: Box<LayoutError>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_map::CacheFormatError;

    /// Every message names the cache (ref or directory) and says what to do where it can.
    #[test]
    fn messages_name_the_cache() {
        let d = Digest::sha256_of(b"blob");
        let dir = "/ci/cache".to_string();
        let r = "registry.example/app:buildcache".to_string();
        let load = [
            CacheLoadError::NotFound { what: dir.clone() },
            CacheLoadError::Registry {
                what: r.clone(),
                source: Box::new(RegistryError::NotFound {
                    registry: "registry.example".into(),
                    what: "manifest",
                    reference: "app:buildcache".into(),
                    path: "/v2/app/manifests/buildcache".into(),
                }),
            },
            CacheLoadError::Format {
                what: r.clone(),
                source: CacheFormatError::UnknownVersion { found: 2 },
            },
            CacheLoadError::NotACache {
                what: r.clone(),
                media_type: MediaType::Other("application/vnd.example+json".into()),
            },
            CacheLoadError::NoInlineCache { what: r.clone() },
            CacheLoadError::Inconsistent {
                what: dir.clone(),
                reason: format!("blob {d} does not match its digest and size (3 bytes); the directory is corrupt"),
            },
            CacheLoadError::Io {
                what: dir.clone(),
                op: "opening",
                path: format!("{dir}/blobs/sha256/{}", d.hex()).into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            CacheLoadError::Store {
                what: dir.clone(),
                digest: d.clone(),
                source: StoreError::DigestMismatch {
                    expected: d.clone(),
                    actual: Digest::sha256_of(b"other"),
                },
            },
        ];
        let write = [
            CacheWriteError::MissingBlob {
                what: dir.clone(),
                digest: d.clone(),
            },
            CacheWriteError::CorruptBlob {
                what: dir.clone(),
                digest: d.clone(),
            },
            CacheWriteError::Io {
                what: dir.clone(),
                op: "locking",
                path: format!("{dir}/.rbuild-cache.lock").into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
        ];
        let text: Vec<String> = load
            .iter()
            .map(|e| format!("{e} [not found: {}]", e.is_not_found()))
            .chain(write.iter().map(ToString::to_string))
            .collect();
        insta::assert_snapshot!(text.join("\n"));
    }
}
