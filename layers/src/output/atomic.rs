//! Crash-safe file writing for the outputs, through [`crate::atomic`]. (Verified blob reads are
//! in `crate::image::verified`; OCI layout directories are written by [`crate::oci_layout`].)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::OutputError;
pub(crate) use crate::atomic::parent_of;
use crate::atomic::{self, AtomicFile};
pub(crate) use crate::oci_layout::{DIR_MODE, FILE_MODE};

/// fsyncs a directory so that renames and new entries in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), OutputError> {
    Ok(atomic::sync_dir(dir)?)
}

/// A temporary directory next to `dest` (same filesystem, so it can be renamed into place),
/// mode [`DIR_MODE`], named `.rbuild-<what>-…`.
pub(crate) fn temp_dir_for(dest: &Path, what: &str) -> Result<tempfile::TempDir, OutputError> {
    let parent = parent_of(dest);
    fs::create_dir_all(&parent).map_err(OutputError::io("creating directory", &parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".rbuild-{what}-"))
        .tempdir_in(&parent)
        .map_err(OutputError::io(
            "creating a temporary directory in",
            &parent,
        ))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(DIR_MODE))
        .map_err(OutputError::io("setting permissions of", tmp.path()))?;
    Ok(tmp)
}

/// How the outputs write a file: mode [`FILE_MODE`], the directory fsynced.
const WRITE: atomic::Options = atomic::Options::new().mode(atomic::Mode::Exact(FILE_MODE));

/// A temp file next to `dest`, to be filled and then [`AtomicFile::commit`]ted as [`FILE_MODE`].
pub(crate) fn temp_file_for(dest: &Path) -> Result<AtomicFile, OutputError> {
    Ok(AtomicFile::create(dest, WRITE)?)
}
