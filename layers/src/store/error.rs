//! The store's error type.

use std::io;
use std::path::PathBuf;

use crate::Digest;

/// Why a store operation failed. Every variant names the path or digest concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "blob {digest} at {path} does not match its digest (corrupt or truncated); it has been \
         removed, fetch or rebuild it again"
    )]
    CorruptBlob { digest: Digest, path: PathBuf },
    #[error("blob written to the store has digest {actual}, but {expected} was expected")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} written to the store has {actual} bytes, but {expected} were expected")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} uses an algorithm rbuild does not store (only sha256 is supported)")]
    UnsupportedAlgorithm(Digest),
    #[error("blob {digest} is not in the store ({path})")]
    BlobNotFound { digest: Digest, path: PathBuf },
    #[error("{path} is not a valid OCI image index; fix or delete it")]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cache record kind {0:?} is invalid: use lower-case letters, digits, '-' and '_'")]
    BadRecordKind(String),
    #[error("reference name {0:?} is invalid: it must be non-empty and contain no whitespace or control characters")]
    BadRefName(String),
    #[error(
        "the store {path} is in use by another rbuild process; prune needs it to itself, \
         retry when the other builds have finished"
    )]
    InUse { path: PathBuf },
    #[error("cannot find a cache directory: set XDG_CACHE_HOME or HOME, or pass --store DIR")]
    NoCacheDir,
}

/// A failed atomic write keeps its operation and path.
impl From<crate::atomic::AtomicError> for StoreError {
    fn from(e: crate::atomic::AtomicError) -> StoreError {
        StoreError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }

    /// The `StoreError` carried inside an `io::Error` returned by a store reader, if any
    /// (e.g. [`StoreError::CorruptBlob`] from [`super::VerifyingReader`]).
    pub fn from_io(err: &io::Error) -> Option<&StoreError> {
        err.get_ref().and_then(|e| e.downcast_ref::<StoreError>())
    }
}
