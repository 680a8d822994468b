//! Crash-safe file writing for the outputs (through [`crate::atomic`]), verified blob copies,
//! and a directory lock for updating an existing OCI layout.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::OutputError;
pub(crate) use crate::atomic::parent_of;
use crate::atomic::{self, AtomicFile};
use crate::image::BlobSource;
use crate::{Digest, Sha256Hasher};

/// Mode of regular files we write (tools reading a layout may run as another user).
pub(crate) const FILE_MODE: u32 = 0o644;
/// Mode of directories we create.
pub(crate) const DIR_MODE: u32 = 0o755;

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

/// Writes `bytes` to `dest` atomically.
pub(crate) fn write_file_atomic(dest: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    Ok(atomic::write(dest, bytes, WRITE)?)
}

/// A reader that hashes and counts what passes through, to verify a blob while streaming it.
pub(crate) struct Verifying<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> Verifying<R> {
    pub(crate) fn new(inner: R) -> Self {
        Verifying {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }

    /// Checks that exactly `expected_size` bytes hashing to `digest` were read.
    pub(crate) fn finish(self, digest: &Digest, expected_size: u64) -> Result<(), OutputError> {
        let size = self.hasher.len();
        let actual = self.hasher.finish();
        if &actual != digest || size != expected_size {
            return Err(OutputError::BlobCorrupt {
                digest: digest.clone(),
                actual,
                size,
                expected_size,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A blob being streamed out of the store with verification.
pub(crate) type BlobReader<'s> = Verifying<io::Take<Box<dyn Read + Send + 's>>>;

/// Opens a blob for streaming: its size, and a verifying reader capped one byte past it
/// (so that a blob longer than its recorded size is detected, not silently truncated).
pub(crate) fn open_verified<'s>(
    source: &'s dyn BlobSource,
    digest: &Digest,
) -> Result<(u64, BlobReader<'s>), OutputError> {
    let read_err = |source| OutputError::ReadBlob {
        digest: digest.clone(),
        source,
    };
    let size = source.blob_size(digest).map_err(read_err)?;
    let r = source.open_blob(digest).map_err(read_err)?;
    Ok((size, Verifying::new(r.take(size.saturating_add(1)))))
}

/// The path of `digest` inside an OCI layout rooted at `root`.
pub(crate) fn layout_blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// Puts blob `digest` at its place in the layout at `root`, unless a file of the right size is
/// already there. Hard-links from the store when it offers a path on the same filesystem,
/// else copies with verification through a temp file.
pub(crate) fn put_layout_blob(
    root: &Path,
    digest: &Digest,
    source: &dyn BlobSource,
) -> Result<(), OutputError> {
    let dest = layout_blob_path(root, digest);
    let dir = parent_of(&dest);
    fs::create_dir_all(&dir).map_err(OutputError::io("creating directory", &dir))?;
    let want = source
        .blob_size(digest)
        .map_err(|source| OutputError::ReadBlob {
            digest: digest.clone(),
            source,
        })?;
    if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == want) {
        return Ok(());
    }
    if let Some(src) = source.blob_path(digest) {
        // A failed link (other filesystem, permissions, a stale file in the way) falls back
        // to copying, which replaces whatever is there.
        if fs::hard_link(&src, &dest).is_ok() {
            return Ok(());
        }
    }
    let mut tmp = temp_file_for(&dest)?;
    let (size, mut r) = open_verified(source, digest)?;
    // A read error from the store is reported against the temp file too; the message
    // names the blob's destination either way.
    io::copy(&mut r, tmp.as_file_mut())
        .map_err(OutputError::io("copying blob into", dest.clone()))?;
    r.finish(digest, size)?;
    Ok(tmp.commit()?)
}

/// An exclusive advisory lock (flock) on a directory, released on drop.
pub(crate) struct DirLock(File);

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, OutputError> {
        let f = File::open(dir).map_err(OutputError::io("opening for locking", dir))?;
        // SAFETY: flock on a file descriptor we own and keep open for the lock's lifetime.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(OutputError::io("locking", dir)(io::Error::last_os_error()));
        }
        Ok(DirLock(f))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own open descriptor; closing it would release the lock anyway.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
