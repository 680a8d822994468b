//! The one way this module puts a file into a layout: a temp file next to it, filled, fsynced,
//! renamed over the destination, and the directory fsynced; a reader of the layout sees the
//! old file or the new one, never part of one. Every file the layout writer creates
//! (`oci-layout`, `index.json`, copied blobs) goes through [`write_atomic`].

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{LayoutError, FILE_MODE, TEMP_PREFIX};

/// The directory containing `path` (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so that renames and new entries in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LayoutError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(LayoutError::io("syncing directory", dir))
}

/// Writes `dest` atomically with what `fill` writes into the temp file (named
/// [`TEMP_PREFIX`]`…`, mode [`FILE_MODE`], in `dest`'s directory). `before_rename` runs once the
/// temp file is durable (a crash-test failpoint, see [`crate::failpoint`]). On error the temp
/// file is removed and `dest` is untouched.
pub(crate) fn write_atomic(
    dest: &Path,
    before_rename: impl FnOnce(),
    fill: impl FnOnce(&mut File) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let dir = parent_of(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(&dir)
        .map_err(LayoutError::io("creating a temporary file in", &dir))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(LayoutError::io("setting permissions of", tmp.path()))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .map_err(LayoutError::io("syncing", tmp.path()))?;
    before_rename();
    tmp.persist(dest)
        .map_err(|e| LayoutError::io("renaming a temporary file to", dest)(e.error))?;
    fsync_dir(&dir)
}
