//! rbuild-layers: everything rbuild knows about bytes at rest.
//!
//! This crate owns digests, the content-addressed store, deterministic layer tars (with OCI
//! whiteouts), compression, and applying layers to a directory safely. It knows nothing of HTTP
//! or Dockerfiles; the `registry` crate and the `rbuild` builder sit on top of it.

pub mod digest;

pub use digest::{Digest, DigestError, Sha256Hasher};
