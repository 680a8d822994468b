//! rbuild-registry: talking to OCI distribution registries.
//!
//! This crate owns image references ([`reference`]), the distribution client ([`client`]:
//! blobs, manifests, retries, TLS), authentication with credential redaction ([`auth`]), and
//! pulling into / pushing from rbuild's store ([`pull`], [`push`]). Its API is synchronous:
//! callers run it on their own threads, and it uses a few threads per pull or push for blobs;
//! underneath, HTTP is `reqwest` on one process-wide tokio runtime ([`client::http`]). It
//! knows nothing of Dockerfiles.
//!
//! `oci-spec` at the boundary: the crate is re-exported ([`oci_spec`]), and rbuild's
//! [`Descriptor`](rbuild_layers::Descriptor), [`Platform`](rbuild_layers::Platform),
//! `ImageManifest` and `ImageIndex` convert to and from its types (`TryFrom`, in
//! [`rbuild_layers::oci_spec`]), so a library user can hand over oci-spec values; what is
//! pushed is always rbuild's canonical serialisation of them. Registry error bodies are read
//! as `oci_spec::distribution::ErrorResponse` (see `client::error_entries`).

pub mod auth;
pub mod cache_map;
pub mod client;
pub mod error;
// Oracles for the cargo-fuzz targets in `tests/fuzz` and the corpus regression tests; not API.
#[doc(hidden)]
pub mod fuzz;
pub mod parallel;
pub mod pool;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registries_conf;
#[cfg(test)]
pub(crate) mod testutil;

pub use auth::{Credential, CredentialSource, Secret};
pub use client::{ClientOptions, Registry};
pub use error::RegistryError;
pub use oci_spec;
pub use pool::Registries;
pub use rbuild_layers::oci_spec::OciSpecError;
pub use rbuild_layers::Digest;
pub use reference::{Reference, ReferenceError, DEFAULT_REGISTRY};
