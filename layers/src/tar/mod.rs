//! Deterministic layer tars with OCI whiteouts.
//!
//! A layer is described by an explicit list of [`LayerEntry`]s, so the build engine can make a
//! `COPY` layer straight from context files ([`EntryKind::File`] names the source) without
//! staging copies; [`entries_from_dir`] and [`entries_from_overlay_upper`] build such lists from
//! a directory tree or from the upper directory of a `RUN` step's overlay mount.
//! [`write_layer`] sorts, validates and streams the entries into the store.
//!
//! # Determinism
//! The same entries and file contents give the same bytes on every run and machine: canonical
//! order (parents before children, whiteouts before their siblings, then byte order of names),
//! Go `archive/tar`-compatible USTAR/PAX headers (see `header`), empty uname/gname, no
//! atime/ctime, mtimes as given or clamped to `SOURCE_DATE_EPOCH`, and a compressor whose
//! output does not depend on timing or the thread count (see [`crate::compression`]).

mod entry;
mod error;
mod header;
mod index;
mod stream;
mod walk;
mod write;

pub use entry::{sort_entries, EntryKind, LayerEntry};
pub use error::LayerError;
pub use index::{DirOwner, IndexError, IndexKind, PathIndex, INDEX_RECORD, MAX_INDEX_ENTRIES};
pub use walk::{
    entries_from_changes, entries_from_dir, entries_from_overlay_upper, Change, DirOptions,
};
pub use write::{write_layer, write_layer_with, write_tar, LayerInfo, LayerOptions, WriteHooks};

#[cfg(test)]
mod tests;
