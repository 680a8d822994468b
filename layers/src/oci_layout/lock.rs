//! The exclusive lock a writer holds while it changes an existing layout, so that two writers
//! to one directory do not interleave (each one's `index.json` is then complete, and the last
//! one wins or merges, as its caller decides).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::LayoutError;

/// What a writer flocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOn {
    /// The layout directory itself: nothing is added to a layout other tools read.
    Directory,
    /// A lock file of this name inside the layout, created if missing (and left there).
    File(&'static str),
}

/// An exclusive flock, released when dropped (closing the descriptor releases it).
#[derive(Debug)]
pub(crate) struct LayoutLock(#[allow(dead_code)] File);

impl LayoutLock {
    /// Takes the lock `on` for the layout at `root`, waiting for it.
    pub(crate) fn acquire(root: &Path, on: LockOn) -> Result<LayoutLock, LayoutError> {
        let (file, path) = match on {
            LockOn::Directory => (
                File::open(root).map_err(LayoutError::io("opening for locking", root))?,
                root.to_path_buf(),
            ),
            LockOn::File(name) => {
                let path = root.join(name);
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(LayoutError::io("opening", &path))?;
                (file, path)
            }
        };
        flock_exclusive(&file).map_err(LayoutError::io("locking", path))?;
        Ok(LayoutLock(file))
    }
}

/// Takes an exclusive flock on `f`, waiting for it. (libc rather than `File::lock`, which is
/// newer than the workspace's minimum Rust version.)
fn flock_exclusive(f: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor `f` owns and keeps open for the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
