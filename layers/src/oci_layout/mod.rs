//! The one writer of OCI image layouts on disk (image-spec `image-layout.md`): an `oci-layout`
//! file (`{"imageLayoutVersion":"1.0.0"}`), `index.json`, and `blobs/<alg>/<hex>`. Both the
//! image outputs (`--output type=oci`, [`crate::output::oci`]) and the local cache export
//! (`--cache-to type=local`, in the registry crate) write through it; what the index holds and
//! which blobs a layout keeps are theirs to decide.
//!
//! A [`LayoutWriter`] either builds a layout in a directory no one else sees yet
//! ([`LayoutWriter::create_private`], renamed into place by the caller) or changes an existing
//! one under an exclusive flock ([`LayoutWriter::open_locked`]). Guarantees:
//! - every file is written through one atomic write (temp file, fsync, rename, directory
//!   fsync; see `atomic.rs`), so a crash leaves the old file or the new one;
//! - a blob is copied streamed and verified against its digest and size, or hard-linked from
//!   a source that offers a path, and skipped when a file of its size is already there;
//! - `index.json` is committed by the caller after its blobs, so it never names a blob that is
//!   not on disk; [`LayoutWriter::remove_unreferenced`] runs after the commit.
//!
//! The one reader of layouts is here too ([`LayoutReader`], [`LayoutBlobs`], in `reader.rs`):
//! `FROM oci-layout://…` and the local cache import read through it. Also for readers:
//! [`blob_path`], [`REF_NAME_ANNOTATION`] and [`read_index`].

mod atomic;
mod error;
mod lock;
mod reader;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use error::LayoutError;
pub use lock::LockOn;
pub use reader::{LayoutBlobs, LayoutReadError, LayoutReader, Select};

use atomic::{fsync_dir, parent_of, write_atomic};
use lock::LayoutLock;

use crate::digest::Algorithm;
use crate::image::verified::{blob_size, open_verified};
use crate::image::{BlobSource, ImageIndex};
use crate::{Descriptor, Digest};

/// The annotation naming an entry of `index.json` (image-spec `annotations.md`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The `oci-layout` file's content.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Prefix of the temp files a writer creates in the layout (a crashed writer's are removed by
/// [`LayoutWriter::remove_unreferenced`]).
pub const TEMP_PREFIX: &str = ".rbuild-tmp-";
/// Mode of regular files written (tools reading a layout may run as another user).
pub(crate) const FILE_MODE: u32 = 0o644;
/// Mode of directories created for a layout.
pub(crate) const DIR_MODE: u32 = 0o755;

/// The path of blob `digest` in the layout at `root`: `blobs/<alg>/<hex>`.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// The layout's `index.json`, or `None` when there is none.
pub fn read_index(root: &Path) -> Result<Option<ImageIndex>, LayoutError> {
    let path = root.join("index.json");
    match fs::File::open(&path) {
        Ok(f) => ImageIndex::from_reader(f)
            .map(Some)
            .map_err(|source| LayoutError::Index {
                path: root.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LayoutError::io("opening", &path)(e)),
    }
}

/// Adds `new` entries to `index`: a named entry ([`REF_NAME_ANNOTATION`]) replaces the entry
/// with the same name (in place), an unnamed entry is skipped if the same manifest is already
/// there unnamed; anything else is appended.
pub fn merge_entries(index: &mut ImageIndex, new: Vec<Descriptor>) {
    for d in new {
        let name = d.annotations.get(REF_NAME_ANNOTATION).cloned();
        let digest = d.digest.clone();
        let same = |e: &Descriptor| match &name {
            Some(n) => e.annotations.get(REF_NAME_ANNOTATION) == Some(n),
            None => !e.annotations.contains_key(REF_NAME_ANNOTATION) && e.digest == digest,
        };
        match index.manifests.iter().position(same) {
            Some(i) => {
                index.manifests[i] = d;
                // Drop any further duplicates of the name an earlier tool may have left.
                let mut seen = false;
                index.manifests.retain(|e| {
                    let dup = same(e);
                    let keep = !dup || !seen;
                    seen |= dup;
                    keep
                });
            }
            None => index.manifests.push(d),
        }
    }
}

/// A layout being written (see the module doc).
#[derive(Debug)]
pub struct LayoutWriter {
    root: PathBuf,
    _lock: Option<LayoutLock>,
}

impl LayoutWriter {
    /// Starts a layout in `root`, a directory only this writer uses (e.g. a temp directory the
    /// caller renames into place when done): creates `blobs/sha256`, takes no lock.
    pub fn create_private(root: &Path) -> Result<LayoutWriter, LayoutError> {
        let w = LayoutWriter {
            root: root.to_path_buf(),
            _lock: None,
        };
        w.create_blob_dir()?;
        Ok(w)
    }

    /// Opens the layout in `root` (created if missing, with `blobs/sha256`) for changing, and
    /// holds an exclusive lock `on` it until dropped.
    pub fn open_locked(root: &Path, on: LockOn) -> Result<LayoutWriter, LayoutError> {
        let mut w = LayoutWriter {
            root: root.to_path_buf(),
            _lock: None,
        };
        w.create_blob_dir()?;
        w._lock = Some(LayoutLock::acquire(root, on)?);
        Ok(w)
    }

    fn create_blob_dir(&self) -> Result<(), LayoutError> {
        // image-layout: `blobs` must exist even when empty.
        let sha_dir = self.root.join("blobs").join(Algorithm::Sha256.as_str());
        fs::create_dir_all(&sha_dir).map_err(LayoutError::io("creating directory", &sha_dir))
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks the existing `oci-layout` file names the version this writer writes.
    pub fn check_layout_file(&self) -> Result<(), LayoutError> {
        let bad = |reason: String| LayoutError::BadLayout {
            path: self.root.clone(),
            reason,
        };
        let path = self.root.join("oci-layout");
        let bytes = fs::read(&path).map_err(LayoutError::io("reading", &path))?;
        let layout: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("oci-layout is not JSON: {e}")))?;
        if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(bad(format!(
                "oci-layout has imageLayoutVersion {}, expected \"1.0.0\"",
                layout["imageLayoutVersion"]
            )));
        }
        Ok(())
    }

    /// Writes the `oci-layout` file unless there is one.
    pub fn ensure_layout_file(&self) -> Result<(), LayoutError> {
        let path = self.root.join("oci-layout");
        if path.is_file() {
            return Ok(());
        }
        write_atomic_bytes(&path, OCI_LAYOUT_FILE, || {})
    }

    /// Whether the layout has a file for blob `digest` of `size` bytes (its content is not
    /// checked: names are digests, and readers verify).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::symlink_metadata(blob_path(&self.root, digest))
            .is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Puts blob `digest` from `source` in the layout, unless a file of the right size is
    /// already there. Hard-links from the source when it offers a path on the same filesystem
    /// ([`BlobSource::blob_path`]), else copies, streamed and verified, atomically.
    pub fn put_blob(&self, digest: &Digest, source: &dyn BlobSource) -> Result<(), LayoutError> {
        let dest = blob_path(&self.root, digest);
        let dir = parent_of(&dest);
        fs::create_dir_all(&dir).map_err(LayoutError::io("creating directory", &dir))?;
        if self.has_blob(digest, blob_size(source, digest)?) {
            return Ok(());
        }
        if let Some(src) = source.blob_path(digest) {
            // A failed link (other filesystem, permissions, a stale file in the way) falls back
            // to copying, which replaces whatever is there.
            if fs::hard_link(&src, &dest).is_ok() {
                return Ok(());
            }
        }
        write_atomic(
            &dest,
            || {},
            |file| {
                let (size, mut r) = open_verified(source, digest)?;
                // A read error from the source is reported against the destination: the message
                // names the blob either way.
                io::copy(&mut r, file).map_err(LayoutError::io("copying blob into", &dest))?;
                Ok(r.finish(digest, size)?)
            },
        )
    }

    /// fsyncs `blobs/<alg>/` and `blobs/`, so that the blobs put (and their directories) are
    /// durable before an `index.json` names them.
    pub fn sync_blob_dirs(&self) -> Result<(), LayoutError> {
        let blobs = self.root.join("blobs");
        for alg_dir in fs::read_dir(&blobs)
            .map_err(LayoutError::io("listing", &blobs))?
            .flatten()
        {
            fsync_dir(&alg_dir.path())?;
        }
        fsync_dir(&blobs)
    }

    /// Replaces `index.json` with `index` atomically; `before_rename` runs once the new file is
    /// durable and before it replaces the old one (a crash-test failpoint).
    pub fn commit_index(
        &self,
        index: &ImageIndex,
        before_rename: impl FnOnce(),
    ) -> Result<(), LayoutError> {
        let path = self.root.join("index.json");
        write_atomic_bytes(&path, &index.to_canonical_json(), before_rename)
    }

    /// Removes the files of `blobs/sha256/` that are sha256 digests not in `keep`, and temp
    /// files ([`TEMP_PREFIX`]) a crashed writer left there and in the layout's root (the lock is
    /// held, so no live writer owns one). Other files are left alone. Call it after
    /// [`Self::commit_index`], so that the index on disk never names a removed blob.
    pub fn remove_unreferenced<'a>(
        &self,
        keep: impl IntoIterator<Item = &'a Digest>,
    ) -> Result<(), LayoutError> {
        let keep: BTreeSet<&str> = keep
            .into_iter()
            .filter(|d| d.algorithm() == Algorithm::Sha256)
            .map(Digest::hex)
            .collect();
        let sha_dir = self.root.join("blobs").join(Algorithm::Sha256.as_str());
        remove_where(&sha_dir, |name| {
            let is_digest = name.len() == 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            (is_digest && !keep.contains(name)) || name.starts_with(TEMP_PREFIX)
        })?;
        remove_where(&self.root, |name| name.starts_with(TEMP_PREFIX))
    }
}

/// [`atomic::write_atomic`] of a byte string.
fn write_atomic_bytes(
    dest: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(),
) -> Result<(), LayoutError> {
    write_atomic(dest, before_rename, |file| {
        file.write_all(bytes)
            .map_err(LayoutError::io("writing", dest))
    })
}

/// Removes the files of `dir` whose names `doomed` picks, then fsyncs `dir`.
fn remove_where(dir: &Path, doomed: impl Fn(&str) -> bool) -> Result<(), LayoutError> {
    let entries = fs::read_dir(dir).map_err(LayoutError::io("listing", dir))?;
    for entry in entries {
        let entry = entry.map_err(LayoutError::io("listing", dir))?;
        if !entry.file_name().to_str().is_some_and(&doomed) {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LayoutError::io("removing", &path)(e)),
        }
    }
    fsync_dir(dir)
}

#[cfg(test)]
mod tests;
