//! Errors from the output writers.

use std::path::PathBuf;

use crate::image::{BlobReadError, ImageError};
use crate::oci_layout::LayoutError;
use crate::{Digest, MediaType};

/// What went wrong writing an output; messages name the operation and the path or blob.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the output stream ({op}): {source}")]
    Stream {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading blob {digest} from the store: {source}")]
    ReadBlob {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest} from the store is corrupt: its bytes hash to {actual} ({size} bytes, expected {expected_size})")]
    BlobCorrupt {
        digest: Digest,
        actual: Digest,
        size: u64,
        expected_size: u64,
    },
    #[error("output destination {} exists and is not an empty directory{what}; remove it or choose another dest", path.display())]
    DestNotEmpty { path: PathBuf, what: &'static str },
    #[error("existing OCI layout at {}: {reason}; remove it or choose another dest", path.display())]
    BadExistingLayout { path: PathBuf, reason: String },
    #[error("existing OCI layout at {}: index.json: {source}", path.display())]
    ExistingIndex {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error("reading image {digest}: {source}")]
    Image {
        digest: Digest,
        #[source]
        source: ImageError,
    },
    #[error("image name {name:?} is not a valid OCI layout reference name (image-layout `ref.name` grammar: components of [A-Za-z0-9] joined by - . _ : @ + or --, separated by /)")]
    InvalidRefName { name: String },
    #[error("image name {name:?} cannot be a Docker RepoTag: {reason}")]
    InvalidDockerTag { name: String, reason: &'static str },
    #[error("docker exporter does not currently support exporting manifest lists: the image has {platforms} platforms; use type=oci or build one platform")]
    DockerMultiPlatform { platforms: usize },
    #[error("`type=docker` writes a tar: dest must be a FILE.tar or `-`, not the directory {}", path.display())]
    DockerNeedsTar { path: PathBuf },
    #[error("`type=tar` writes a tar: dest must be a file or `-`, not the directory {}", path.display())]
    TarNeedsFile { path: PathBuf },
    /// What the caller adds to an output (attestation files) could not be written.
    #[error("{what}: {source}")]
    Addition {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{op}: {source}")]
    FsTar {
        op: &'static str,
        #[source]
        source: crate::tar::LayerError,
    },
    #[error("`type=local` writes a directory: dest {dest} is not one")]
    LocalNeedsDir { dest: String },
    #[error("layer {digest} has media type {media_type}, which is not a layer rbuild can unpack")]
    NotALayer {
        digest: Digest,
        media_type: MediaType,
    },
    #[error("applying layer {digest} to {}: {source}", root.display())]
    Apply {
        digest: Digest,
        root: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A failed atomic write keeps its operation and path.
impl From<crate::atomic::AtomicError> for OutputError {
    fn from(e: crate::atomic::AtomicError) -> OutputError {
        OutputError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl OutputError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> OutputError {
        let path = path.into();
        move |source| OutputError::Io { op, path, source }
    }
}

impl From<BlobReadError> for OutputError {
    fn from(e: BlobReadError) -> OutputError {
        match e {
            BlobReadError::Read { digest, source } => OutputError::ReadBlob { digest, source },
            BlobReadError::Corrupt {
                digest,
                actual,
                size,
                expected_size,
            } => OutputError::BlobCorrupt {
                digest,
                actual,
                size,
                expected_size,
            },
        }
    }
}

/// The layout writer's errors as the outputs have always reported them (an existing layout
/// is the `dest` the user named).
impl From<LayoutError> for OutputError {
    fn from(e: LayoutError) -> OutputError {
        match e {
            LayoutError::Io { op, path, source } => OutputError::Io { op, path, source },
            LayoutError::Blob(e) => e.into(),
            LayoutError::BadLayout { path, reason } => {
                OutputError::BadExistingLayout { path, reason }
            }
            LayoutError::Index { path, source } => OutputError::ExistingIndex { path, source },
        }
    }
}
