//! rbuild-registry: talking to OCI distribution registries.
//!
//! This crate will own image references, the distribution client (blobs, manifests, retries),
//! authentication and credential redaction, and the cache-manifest format used to move build
//! cache between pipeline runs. It knows nothing of Dockerfiles. The client itself lands with the
//! registry issue; today the crate holds only what the layer store needs to name a source.

pub use rbuild_layers::Digest;
