//! rbuild-layers: everything rbuild knows about bytes at rest.
//!
//! This crate owns digests, the content-addressed store, deterministic layer tars (with OCI
//! whiteouts), compression, and applying layers to a directory safely. It knows nothing of HTTP
//! or Dockerfiles; the `registry` crate and the `rbuild` builder sit on top of it.

pub mod descriptor;
pub mod digest;
pub mod media_type;
pub mod whiteout;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestError, Sha256Hasher};
pub use media_type::{Compression, MediaType};
pub mod apply;
pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyReport, WhiteoutMode};
pub mod snapshot;
pub use snapshot::{chain_id, chain_ids, SnapshotCache, SnapshotError};
