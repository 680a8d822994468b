//! Errors of writing (and reading the index of) an OCI image layout.

use std::io;
use std::path::PathBuf;

use crate::image::{BlobReadError, ImageError};

/// What went wrong in a layout; messages name the operation and the path or blob.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A blob could not be read intact from the source it is copied from.
    #[error(transparent)]
    Blob(#[from] BlobReadError),
    /// The layout's `oci-layout` file is unreadable or names another version.
    #[error("OCI layout at {}: {reason}", path.display())]
    BadLayout { path: PathBuf, reason: String },
    /// The layout's `index.json` is not a valid image index.
    #[error("OCI layout at {}: index.json: {source}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
}

impl LayoutError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> LayoutError {
        let path = path.into();
        move |source| LayoutError::Io { op, path, source }
    }
}
