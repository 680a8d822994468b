//! The one way this module puts a file into a layout, through [`crate::atomic`]: a temp file
//! next to it, filled, fsynced, renamed over the destination, and the directory fsynced; a
//! reader of the layout sees the old file or the new one, never part of one. Every file the
//! layout writer creates (`oci-layout`, `index.json`, copied blobs) goes through
//! [`write_atomic`].

use std::fs::File;
use std::path::Path;

pub(crate) use crate::atomic::parent_of;
use crate::atomic::{self, AtomicError, AtomicFile};

use super::{LayoutError, FILE_MODE, TEMP_PREFIX};

/// How the layout writes a file: mode [`FILE_MODE`], temps named [`TEMP_PREFIX`]`…`.
const WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Exact(FILE_MODE))
    .prefix(TEMP_PREFIX);

fn layout_err(e: AtomicError) -> LayoutError {
    LayoutError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    }
}

/// fsyncs a directory so that renames and new entries in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LayoutError> {
    atomic::sync_dir(dir).map_err(layout_err)
}

/// Writes `dest` atomically with what `fill` writes into the temp file. `before_rename` runs
/// once the temp file is durable (a crash-test failpoint, see [`crate::failpoint`]). On error
/// the temp file is removed and `dest` is untouched.
pub(crate) fn write_atomic(
    dest: &Path,
    before_rename: impl FnOnce(),
    fill: impl FnOnce(&mut File) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let mut tmp = AtomicFile::create(dest, WRITE).map_err(layout_err)?;
    fill(tmp.as_file_mut())?;
    // Durable before the hook, as the hook's contract says (commit's own fsync is then a no-op).
    tmp.as_file_mut()
        .sync_all()
        .map_err(LayoutError::io("syncing", tmp.temp_path()))?;
    before_rename();
    tmp.commit().map_err(layout_err)
}
