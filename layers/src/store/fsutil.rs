//! Small filesystem primitives the store is built on: `flock`, temp files that are locked while
//! alive (so a cleaner can tell a dead writer's leftovers from a live one's), and atomic
//! replace-by-rename with the store's temps.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::atomic::{self, AtomicError, AtomicFile};

/// `flock(2)` with `EINTR` retried.
pub(crate) fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether a non-blocking exclusive lock on `file` would conflict with someone else's.
pub(crate) fn would_block(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Opens (creating if needed) a lock file.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Creates a new, exclusively locked temp file in `tmp_dir`, named after this process (see
/// `temps`). The lock lives as long as the file handle, so it disappears with the process however
/// that process dies.
pub(crate) fn create_locked_temp(tmp_dir: &Path, tag: &str) -> io::Result<(File, PathBuf)> {
    let (file, path) = super::temps::create_owned_file(tmp_dir, tag)?;
    flock(&file, libc::LOCK_EX)?;
    Ok((file, path))
}

/// How old an unlocked temp file whose name names no owner (older rbuild versions) must be
/// before it is removed. Such a writer created its file and locked it a moment later; the grace
/// keeps a cleaner out of that window.
pub(crate) const STALE_TEMP_GRACE: Duration = Duration::from_secs(10);

/// Writes `bytes` to `dest` atomically (see [`crate::atomic`]) through a locked, owner-named temp
/// file in `tmp_dir` (the store's convention, so that a cleaner can tell whose it is), then fsyncs
/// the destination directory. `before_rename` runs once the temp file is durable (a crash-test
/// failpoint, see [`crate::failpoint`]).
pub(crate) fn write_atomic(
    tmp_dir: &Path,
    dest: &Path,
    bytes: &[u8],
    before_rename: fn(),
) -> Result<(), AtomicError> {
    let (file, tmp) = create_locked_temp(tmp_dir, "atomic").map_err(|source| AtomicError {
        op: "creating a temporary file in",
        path: tmp_dir.to_path_buf(),
        source,
    })?;
    let mut file = AtomicFile::from_temp(
        file,
        tmp,
        dest,
        atomic::Options::new().before_rename(before_rename),
    );
    file.write_all(bytes).map_err(|source| AtomicError {
        op: "writing",
        path: dest.to_path_buf(),
        source,
    })?;
    file.commit()
}
