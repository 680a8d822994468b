//! rbuild-layers: everything rbuild knows about bytes at rest.
//!
//! This crate owns digests, the content-addressed store, deterministic layer tars (with OCI
//! whiteouts), compression, and applying layers to a directory safely. It knows nothing of HTTP
//! or Dockerfiles; the `registry` crate and the `rbuild` builder sit on top of it.

pub mod atomic;
pub mod descriptor;
pub mod device;
pub mod digest;
pub mod failpoint;
pub mod media_type;
pub mod oci_layout;
#[cfg(feature = "oci-spec")]
pub mod oci_spec;
pub mod platform;
pub mod whiteout;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestError, Sha256Hasher};
pub use media_type::{Compression, MediaType};
pub mod compression;
pub mod image;
pub mod lazy_blob;
pub mod output;
pub use compression::{compressor, decompressor, decompressor_auto, Compressor};
pub mod store;
pub use store::{BlobWriter, PruneOptions, Store, StoreError, VerifyingReader};
pub mod tar;
pub use crate::tar::{
    entries_from_dir, entries_from_overlay_upper, write_layer, EntryKind, LayerEntry, LayerError,
    LayerInfo, LayerOptions,
};
pub mod apply;
pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyReport, DeviceMode, WhiteoutMode};
pub mod snapshot;
pub use snapshot::{chain_id, chain_ids, SnapshotCache, SnapshotError};
// Oracles for the cargo-fuzz targets in `tests/fuzz` and the corpus regression tests; not API.
#[doc(hidden)]
pub mod fuzz;
