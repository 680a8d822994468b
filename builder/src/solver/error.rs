//! The build engine's error type: every variant names what failed and where.

use std::path::PathBuf;

use rbuild_layers::Digest;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed; `location` is `Dockerfile:LINE` and `step` the instruction as written.
    #[error("{location}: `{step}`: {source}")]
    Step {
        location: String,
        step: String,
        #[source]
        source: Box<BuildError>,
    },
    #[error("reading the build context: {0}")]
    Context(String),
    #[error("{0}")]
    Expand(String),
    #[error("{0}")]
    Copy(String),
    #[error(transparent)]
    User(#[from] super::users::UserError),
    #[error("base image {reference:?}: {reason}")]
    Base { reference: String, reason: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] rbuild_layers::store::StoreError),
    #[error("writing a layer: {0}")]
    Layer(#[from] rbuild_layers::tar::LayerError),
    #[error("unpacking layer {digest}: {source}")]
    Apply {
        digest: Digest,
        #[source]
        source: rbuild_layers::apply::ApplyError,
    },
    #[error("snapshot: {0}")]
    Snapshot(#[from] rbuild_layers::snapshot::SnapshotError),
    #[error("image: {0}")]
    Image(#[from] rbuild_layers::image::ImageError),
    #[error("RUN is not supported by this version of rbuild yet: the sandboxed executor is still being built. Nothing was run on the host.")]
    RunUnsupported,
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuildError {
    pub fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { what, path, source }
    }
}
