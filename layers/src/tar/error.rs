//! The layer writer's error type.

use std::io;
use std::path::PathBuf;

use crate::compression::CompressionError;
use crate::StoreError;

/// Why a layer could not be listed or written. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer entry path {path:?} is invalid: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("layer entry {path:?} appears twice")]
    DuplicatePath { path: String },
    #[error(
        "hard link {path:?} points at {target:?}, which is not a regular file earlier in the layer"
    )]
    HardlinkTarget { path: String, target: String },
    #[error("extended attribute name {name:?} of {path:?} cannot be stored in a tar PAX record")]
    BadXattrName { path: String, name: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file any more")]
    NotRegular { path: PathBuf },
    #[error("{path} changed size while it was being added to the layer ({expected} bytes expected, {actual} read); retry once nothing writes to it")]
    FileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("writing the layer to the store")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LayerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| LayerError::Io { op, path, source }
    }
}
