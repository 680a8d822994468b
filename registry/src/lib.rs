//! rbuild-registry: talking to OCI distribution registries.
//!
//! This crate owns image references, and will own the distribution client (blobs, manifests,
//! retries), authentication with credential redaction, and the cache-manifest format used to move
//! build cache between pipeline runs. It knows nothing of Dockerfiles.

pub mod reference;

pub use rbuild_layers::Digest;
pub use reference::{Reference, ReferenceError, DEFAULT_REGISTRY};
