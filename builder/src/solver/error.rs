//! The build engine's error type. Each message names what failed; the cause is the error's
//! `source()`, printed after it by the CLI (`error: Dockerfile:7: `COPY . .`: …: cause`), never
//! repeated inside the message.

use std::path::PathBuf;

use rbuild_layers::Digest;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed; `location` is `Dockerfile:LINE` and `step` the instruction as written.
    #[error("{location}: `{step}`")]
    Step {
        location: String,
        step: String,
        #[source]
        source: Box<BuildError>,
    },
    #[error("reading the build context")]
    Context(#[source] std::sync::Arc<crate::context::ContextError>),
    #[error("reading --build-context {name}")]
    NamedContext {
        name: String,
        #[source]
        source: std::sync::Arc<crate::context::ContextError>,
    },
    #[error(transparent)]
    Expand(#[from] crate::dockerfile::expand::ExpandError),
    #[error(transparent)]
    Scope(#[from] crate::dockerfile::limits::ScopeTooLarge),
    #[error(transparent)]
    Budget(#[from] super::budget::BudgetExceeded),
    #[error(transparent)]
    Meta(#[from] super::meta::MetaError),
    #[error(
        "the base image's ONBUILD trigger {trigger:?} is not a valid instruction:\n{rendered}"
    )]
    OnbuildTrigger { trigger: String, rendered: String },
    #[error(transparent)]
    Copy(#[from] super::copy::CopyError),
    #[error(transparent)]
    User(#[from] super::users::UserError),
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
    #[error("base image {reference:?}: {reason}")]
    Base { reference: String, reason: String },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] rbuild_layers::store::StoreError),
    #[error("writing a layer")]
    Layer(#[from] rbuild_layers::tar::LayerError),
    #[error(transparent)]
    LazyBlob(#[from] rbuild_layers::lazy_blob::LazyBlobError),
    #[error("unpacking layer {digest}")]
    Apply {
        digest: Digest,
        #[source]
        source: rbuild_layers::apply::ApplyError,
    },
    #[error("unpacking a layer snapshot")]
    Snapshot(#[from] rbuild_layers::snapshot::SnapshotError),
    #[error("assembling the image")]
    Image(#[from] rbuild_layers::image::ImageError),
    #[error("writing an output")]
    Output(#[from] rbuild_layers::output::OutputError),
    /// `--load` (the exporter's own error: `export` is above the solver).
    #[error(transparent)]
    Load(Box<dyn std::error::Error + Send + Sync>),
    /// Attestation files of a `type=local` output (the exporter's own error, as `Load`).
    #[error(transparent)]
    Attest(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Run(#[from] super::run::RunError),
    #[error(transparent)]
    Isolation(#[from] crate::executor::isolation::IsolationError),
    #[error(transparent)]
    Fetch(#[from] super::seams::FetchError),
    /// A layer an imported cache named could not be fetched or did not match: the cache was
    /// wrong, and the build is run again without it.
    #[error("the imported cache's layer {digest} cannot be used: {reason}")]
    ImportedCache { digest: Digest, reason: String },
    /// The bytes of a layer an imported cache carries by key only were needed (see
    /// `LayerRef::key_only`): the build is run again building the steps such layers come from.
    #[error("layer {diff_id} is in the imported cache by its key only (mode=min)")]
    KeyOnlyLayer { diff_id: Digest },
    #[error(
        "layer {digest} unpacks to {actual}, but the image config says its diffID is {expected}"
    )]
    LayerMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// Another step of the build failed (on this platform or another): this stage stopped
    /// before its next step, as BuildKit cancels the rest of a solve.
    #[error("cancelled: another step of this build failed")]
    Cancelled,
}

impl BuildError {
    /// Whether this stage only stopped because another step failed ([`BuildError::Cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        match self {
            BuildError::Cancelled => true,
            BuildError::Step { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }

    /// Whether the build needed a layer an imported cache has by key only (see
    /// [`BuildError::KeyOnlyLayer`]), however deep in a step's error.
    pub fn is_key_only_layer(&self) -> bool {
        match self {
            BuildError::KeyOnlyLayer { .. } => true,
            BuildError::Step { source, .. } => source.is_key_only_layer(),
            _ => false,
        }
    }

    /// Whether the build failed because an imported cache was wrong (see
    /// [`BuildError::ImportedCache`]), however deep in a step's error.
    pub fn is_imported_cache_failure(&self) -> bool {
        match self {
            BuildError::ImportedCache { .. } => true,
            BuildError::Step { source, .. } => source.is_imported_cache_failure(),
            _ => false,
        }
    }

    /// Whether the build failed on an error in the Dockerfile that only showed once the step's
    /// sources were expanded (several wildcard matches onto a destination that is not a
    /// directory, an ADD whose expanded sources mix URLs and local files): reported like one
    /// found while planning (exit 2), however deep in a step.
    pub fn is_dockerfile_error(&self) -> bool {
        match self {
            BuildError::Copy(super::copy::CopyError::DestNotDir(_)) => true,
            // Sources that only show what they are once their variables are expanded.
            BuildError::Remote(
                super::remote::RemoteError::Mixed
                | super::remote::RemoteError::CopyOfRemote(_)
                | super::remote::RemoteError::ChecksumSource
                | super::remote::RemoteError::Source(_),
            ) => true,
            BuildError::Step { source, .. } => source.is_dockerfile_error(),
            _ => false,
        }
    }

    pub fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { what, path, source }
    }
}
