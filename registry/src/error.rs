//! The one error type of the registry client. Every variant names the registry and, where there
//! was one, the request (method and path — never a query string with credentials, never a token
//! or password) and the HTTP status.

use std::path::PathBuf;

use rbuild_layers::{Digest, MediaType};

/// An error talking to a registry or reading credentials for it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: {method} {path}: HTTP {status}{detail}")]
    Status {
        registry: String,
        method: &'static str,
        path: String,
        status: u16,
        /// The registry's error code and message (distribution-spec error body), if any.
        detail: String,
    },
    #[error("registry {registry}: {method} {path}: {attempts} attempt(s) failed: {source}")]
    Transport {
        registry: String,
        method: &'static str,
        path: String,
        attempts: u32,
        #[source]
        source: Box<crate::client::http::HttpError>,
    },
    #[error("registry {registry}: {method} {path}: authentication failed (HTTP {status}) with credentials from {credential_source}; check the user name and password (e.g. `rbuild login {registry}`)")]
    Unauthorized {
        registry: String,
        method: &'static str,
        path: String,
        status: u16,
        credential_source: String,
    },
    #[error("registry {registry}: {what} {reference} not found (HTTP 404 on {path})")]
    NotFound {
        registry: String,
        what: &'static str,
        reference: String,
        path: String,
    },
    #[error("registry {registry}: {path}: content digest {actual} does not match the expected {expected}; the content was rejected")]
    DigestMismatch {
        registry: String,
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("registry {registry}: {path}: the blob is {size} bytes, more than the {max} bytes rbuild reads into memory for it")]
    TooLarge {
        registry: String,
        path: String,
        size: u64,
        max: u64,
    },
    #[error("registry {registry}: {path}: unexpected media type {media_type}")]
    UnexpectedMediaType {
        registry: String,
        path: String,
        media_type: MediaType,
    },
    #[error("registry {registry}: {path}: invalid document: {source}")]
    Document {
        registry: String,
        path: String,
        #[source]
        source: Box<rbuild_layers::image::ImageError>,
    },
    #[error("registry {registry}: {path}: bad header {header}: {value:?}")]
    BadHeader {
        registry: String,
        path: String,
        header: &'static str,
        value: String,
    },
    #[error("registry {registry}: {what}")]
    Protocol { registry: String, what: String },
    /// A small blob whose body is not the size its descriptor says (retried once, as a wrong
    /// digest is).
    #[error("registry {registry}: {what}")]
    BlobSize { registry: String, what: String },
    #[error("registry {registry}: storing {digest} fetched from {path}: {source}")]
    Store {
        registry: String,
        path: String,
        digest: Digest,
        #[source]
        source: Box<rbuild_layers::store::StoreError>,
    },
    #[error("local store: {0}")]
    LocalStore(#[source] Box<rbuild_layers::store::StoreError>),
    #[error("{image}: no manifest for platform {platform} in the index (it has: {available})")]
    NoPlatform {
        image: String,
        platform: String,
        available: String,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// `registries.conf` cannot be read, or forbids the pull.
    #[error(transparent)]
    RegistriesConf(#[from] crate::registries_conf::ConfError),
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    CredentialHelper {
        helper: String,
        registry: String,
        reason: String,
    },
    #[error("registry {registry}: not a valid registry host ({reason}); write it as HOST[:PORT]")]
    InvalidHost { registry: String, reason: String },
    #[error("TLS setup for {registry}: {reason}")]
    Tls { registry: String, reason: String },
}

impl RegistryError {
    /// Whether the registry could not be reached at all (as opposed to answering with an error):
    /// the FROM policy falls back to a previously pulled copy only then.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
            || matches!(self, RegistryError::Status { status, .. } if *status >= 500)
    }
}

impl From<rbuild_layers::store::StoreError> for RegistryError {
    fn from(e: rbuild_layers::store::StoreError) -> Self {
        RegistryError::LocalStore(Box::new(e))
    }
}
