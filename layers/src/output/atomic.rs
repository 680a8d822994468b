//! Crash-safe file writing for the outputs: temp file + fsync + rename. (Verified blob reads
//! are in `crate::image::verified`; OCI layout directories are written by
//! [`crate::oci_layout`].)

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::OutputError;
pub(crate) use crate::oci_layout::{DIR_MODE, FILE_MODE};

/// fsyncs a directory so that renames and new entries in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), OutputError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(OutputError::io("syncing directory", dir))
}

/// The directory containing `path` (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
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

/// A temp file next to `dest`, mode [`FILE_MODE`], to be filled and then [`persist`]ed.
pub(crate) fn temp_file_for(dest: &Path) -> Result<tempfile::NamedTempFile, OutputError> {
    let dir = parent_of(dest);
    let tmp = tempfile::Builder::new()
        .prefix(".rbuild-tmp-")
        .tempfile_in(&dir)
        .map_err(OutputError::io("creating a temporary file in", &dir))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(OutputError::io("setting permissions of", tmp.path()))?;
    Ok(tmp)
}

/// fsyncs `tmp`, renames it to `dest` and fsyncs the directory.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), OutputError> {
    tmp.as_file()
        .sync_all()
        .map_err(OutputError::io("syncing", tmp.path()))?;
    tmp.persist(dest)
        .map_err(|e| OutputError::io("renaming a temporary file to", dest)(e.error))?;
    fsync_dir(&parent_of(dest))
}
