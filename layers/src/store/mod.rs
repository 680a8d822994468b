//! The content-addressed store: one directory holding an OCI image layout plus rbuild's own data.
//!
//! # On-disk format
//! ```text
//! <store>/
//!   oci-layout                 {"imageLayoutVersion":"1.0.0"}            (OCI image layout)
//!   index.json                 OCI image index; tags are entries annotated with
//!                              `org.opencontainers.image.ref.name`, sorted by name
//!   blobs/sha256/<hex>         blobs, named by the sha256 of their bytes, read-only (0444);
//!                              mtime = last use (for LRU pruning)
//!   cache/<kind>/<hex>.json    cache records: JSON written by the build engine, keyed by a digest.
//!                              A record keeps blobs and snapshots alive through optional top-level
//!                              fields `"blobs": ["sha256:…"]` and `"snapshots": ["<name>"]`;
//!                              mtime = last use
//!   snapshots/<name>/          unpacked layer trees (name: `v3-` and a chain ID's hex, holding
//!                              `tree/`, `placeholders` and `boot`, the boot it is valid in, see
//!                              `crate::snapshot`; `v2-` and bare hex names are earlier formats,
//!                              pruned first, as are other boots' snapshots); mtime of the directory =
//!                              last use; `tmp-<pid>-<start>-…` while one is being unpacked
//!                              (owner-named and locked, as in `tmp/`)
//!   statcache/                 file-stat cache of the build engine (format owned by the engine)
//!   locks/index.lock           flock: held exclusively while index.json is read-modified-written
//!   locks/gc.lock              flock: every open Store holds it shared; prune takes it exclusive
//!   tmp/<tag>-<pid>-<start>-…  files being written (`.tmp`) and scratch directories (RUN overlay
//!                              upper/work dirs); named after the owning process and its start
//!                              time, and flock-ed by it while alive (see `temps`)
//! ```
//!
//! # Guarantees
//! * Every write goes to a locked temp file in `tmp/`, is hashed while streaming, checked against
//!   the expected digest and size, fsynced, renamed into place and the directory fsynced: a
//!   reader never sees a partial blob. Two writers of the same blob both succeed (the rename of
//!   identical content is harmless).
//! * A blob is verified again while it is read ([`VerifyingReader`]): a blob whose bytes do not
//!   match its name is removed and reported as [`StoreError::CorruptBlob`], never used.
//! * A process killed mid-write leaves only temp files and scratch directories whose owner is
//!   gone and whose lock died with it; every [`Store::open`] (so the start of every build),
//!   `prune` and `fsck` remove them (see `temps`).
//! * `open` takes `locks/gc.lock` shared, so it waits while a prune runs, and a prune refuses
//!   to start while any other process has the store open.
//! * What is kept: blobs reachable from `index.json` or from a cache record, following the
//!   descriptors inside JSON blobs (index → manifest → config and layers). Everything else may be
//!   removed by [`Store::prune`], least recently used first.

mod error;
mod follow;
mod fsutil;
mod image_io;
mod prune;
mod records;
mod refs;
pub(crate) mod temps;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use error::StoreError;
pub use follow::{CommitWatch, GrowingBlob};
pub use prune::{DiskUsage, FsckReport, PruneOptions, PruneReport};
pub use temps::{Reclaimed, ScratchDir};

use crate::atomic::{self, AtomicFile};
use crate::digest::Algorithm;
use crate::{Descriptor, Digest, MediaType, Sha256Hasher};

// Content of the `oci-layout` file (image-spec `image-layout.md`).
use crate::oci_layout::OCI_LAYOUT_FILE as OCI_LAYOUT;

/// How a verified blob enters `blobs/sha256/`: read-only, renamed from its temp in `<store>/tmp/`,
/// the directory fsynced, with the crash-test points around the rename.
const BLOB_COMMIT: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Exact(0o444))
    .before_rename(|| crate::failpoint::hit("blob.before_rename"))
    .after_rename(|| crate::failpoint::hit("blob.after_rename"));

/// An open store. Cheap to share between threads (`&Store` is all the API needs).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// The shared `locks/gc.lock` held for the store's lifetime (see the module doc).
    gc_lock: Mutex<Option<File>>,
    /// Stale temp data that opening the store removed (reported by `fsck` and `prune`).
    reclaimed_at_open: Reclaimed,
    /// This process's snapshot directory (see [`snapshots_subdir`]).
    snapshots: PathBuf,
    /// This process's directory of cache mounts (beside its snapshots).
    cache_mounts: PathBuf,
}

/// The snapshot directory of a process with these `/proc/self/{uid,gid}_map`s. Snapshots are
/// trees on disk whose owners the kernel stores as host ids: a process in a user namespace
/// (a rootless build maps its 0 to the user, 1… to a subordinate range) sees other owners than
/// one outside, so each id mapping keeps its own snapshots — `snapshots/` for the initial
/// namespace, `snapshots-userns-<hash of the maps>/` otherwise. Blobs, records and tags are
/// bytes and shared by all.
pub fn snapshots_subdir(uid_map: Option<&str>, gid_map: Option<&str>) -> String {
    let norm = |m: &str| -> Vec<Vec<String>> {
        m.lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let identity = vec![vec!["0".to_string(), "0".into(), "4294967295".into()]];
    match (uid_map.map(norm), gid_map.map(norm)) {
        (Some(u), Some(g)) if u != identity || g != identity => {
            let text = format!("{u:?}\n{g:?}");
            let hex = Digest::sha256_of(text.as_bytes()).hex().to_string();
            format!("snapshots-userns-{}", &hex[..16])
        }
        _ => "snapshots".to_string(),
    }
}

/// The directory of `RUN --mount=type=cache` directories for snapshots directory `snaps`
/// (`cache-mounts/`, or `cache-mounts-userns-<hash>/` beside `snapshots-userns-<hash>/`): their
/// owners on disk depend on the id mapping too.
fn cache_mounts_subdir(snaps: &str) -> String {
    match snaps.strip_prefix("snapshots") {
        Some(suffix) => format!("cache-mounts{suffix}"),
        None => "cache-mounts".to_string(),
    }
}

fn own_snapshots_subdir() -> String {
    let read = |p: &str| fs::read_to_string(p).ok();
    snapshots_subdir(
        read("/proc/self/uid_map").as_deref(),
        read("/proc/self/gid_map").as_deref(),
    )
}

impl Store {
    /// The default store directory: `$XDG_CACHE_HOME/rbuild`, else `~/.cache/rbuild`; a relative
    /// `XDG_CACHE_HOME` or `HOME` is ignored (the XDG base directory spec: "consider the path
    /// invalid"). (`$RBUILD_STORE` and `--store` are handled by the CLI.)
    pub fn default_dir() -> Result<PathBuf, StoreError> {
        let xdg = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        if let Some(x) = xdg {
            return Ok(x.join("rbuild"));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .ok_or(StoreError::NoCacheDir)?;
        Ok(home.join(".cache").join("rbuild"))
    }

    /// Opens the store at `dir`, creating the layout if needed and removing temp files left by
    /// dead processes.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for sub in [
            "blobs/sha256",
            "cache",
            "snapshots",
            "statcache",
            "locks",
            "tmp",
        ] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(StoreError::io("creating store directory", &p))?;
        }
        let gc_path = dir.join("locks/gc.lock");
        let gc = fsutil::open_lock_file(&gc_path)
            .map_err(StoreError::io("opening lock file", &gc_path))?;
        fsutil::flock(&gc, libc::LOCK_SH).map_err(StoreError::io("locking", &gc_path))?;
        let tmp = dir.join("tmp");
        let mut reclaimed_at_open = temps::reclaim(&tmp, temps::ReclaimMode::Open)
            .map_err(StoreError::io("removing stale temporary data in", &tmp))?;
        // Snapshots being unpacked live beside the committed ones (a rename publishes them).
        let snaps_name = own_snapshots_subdir();
        let cache_mounts = dir.join(cache_mounts_subdir(&snaps_name));
        let snaps = dir.join(snaps_name);
        fs::create_dir_all(&snaps).map_err(StoreError::io("creating store directory", &snaps))?;
        reclaimed_at_open.add(
            temps::reclaim(&snaps, temps::ReclaimMode::OwnedOnly)
                .map_err(StoreError::io("removing stale temporary data in", &snaps))?,
        );
        let store = Store {
            root: dir.to_path_buf(),
            gc_lock: Mutex::new(Some(gc)),
            reclaimed_at_open,
            snapshots: snaps,
            cache_mounts,
        };
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            fsutil::write_atomic(&store.tmp_dir(), &layout, OCI_LAYOUT, || {})?;
        }
        store.init_index()?;
        Ok(store)
    }

    /// Stale temporary data (left by killed processes) that [`Store::open`] removed.
    pub fn reclaimed_at_open(&self) -> &Reclaimed {
        &self.reclaimed_at_open
    }

    /// A private scratch directory in `tmp/`, named after this process and locked while the
    /// value lives; dropping it removes it. `tag` (lower-case letters) says what it is for.
    pub fn scratch_dir(&self, tag: &str) -> Result<ScratchDir, StoreError> {
        let tmp = self.tmp_dir();
        ScratchDir::create(&tmp, tag)
            .map_err(StoreError::io("creating a scratch directory in", tmp))
    }

    /// A scratch directory in the `tmp/` of the store at `root` without opening the store: for
    /// input a command must read before its store opens (a build context on standard input).
    /// Named, locked and removed as [`Store::scratch_dir`]'s are, so a store opened later (or
    /// `prune`) leaves it alone while this process lives and reclaims it once it is gone.
    pub fn scratch_dir_at(root: &Path, tag: &str) -> Result<ScratchDir, StoreError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(StoreError::io("creating store directory", &tmp))?;
        ScratchDir::create(&tmp, tag)
            .map_err(StoreError::io("creating a scratch directory in", tmp))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where this process's unpacked snapshots live (`snapshots/<name>/`; in a user namespace
    /// `snapshots-userns-<maps>/<name>/`, see [`snapshots_subdir`]).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.snapshots.clone()
    }

    /// Where this process's `RUN --mount=type=cache` directories live (`cache-mounts/`, in a
    /// user namespace `cache-mounts-userns-<maps>/`: their owners on disk depend on the id
    /// mapping, like snapshots'). Not created here.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.cache_mounts.clone()
    }

    /// Where the build engine keeps its stat cache.
    pub fn statcache_dir(&self) -> PathBuf {
        self.root.join("statcache")
    }

    /// The directory for temp files; files created here by other modules must be renamed away or
    /// removed, and should be created through [`Store::begin_blob`] or kept locked while alive.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The path a blob has (or would have) in the store.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Starts writing a blob. Write its bytes, then [`BlobWriter::commit`].
    pub fn begin_blob(&self) -> Result<BlobWriter, StoreError> {
        let tmp = self.tmp_dir();
        let (file, path) = fsutil::create_locked_temp(&tmp, "blob")
            .map_err(StoreError::io("creating temp file in", &tmp))?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            temp_path: path,
            blobs_dir: self.root.join("blobs/sha256"),
            hasher: Sha256Hasher::new(),
            followers: None,
            written_back: 0,
        })
    }

    /// Stores a small blob (a JSON config or manifest) and returns its descriptor.
    pub fn put_bytes(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, StoreError> {
        let digest = Digest::sha256_of(bytes);
        let size = bytes.len() as u64;
        if self.blob_size(&digest) == Some(size) {
            self.touch_blob(&digest);
            return Ok(Descriptor::new(media_type, digest, size));
        }
        let mut w = self.begin_blob()?;
        w.write_all(bytes)
            .map_err(StoreError::io("writing temp file", w.temp_path.clone()))?;
        let (digest, size) = w.commit(Some(&digest), Some(size))?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// Whether the blob is present (its content is checked when it is read).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a present blob.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Opens a blob for reading; the reader verifies the digest at end of file (see
    /// [`VerifyingReader`]). Marks the blob as used for LRU pruning.
    pub fn open_blob(&self, digest: &Digest) -> Result<VerifyingReader, StoreError> {
        if digest.algorithm() != Algorithm::Sha256 {
            return Err(StoreError::UnsupportedAlgorithm(digest.clone()));
        }
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound {
                    digest: digest.clone(),
                    path,
                })
            }
            Err(e) => return Err(StoreError::io("opening blob", path)(e)),
        };
        self.touch_blob(digest);
        Ok(VerifyingReader {
            file,
            hasher: Sha256Hasher::new(),
            expected: digest.clone(),
            path,
            verified: false,
        })
    }

    /// Reads a whole (small) blob, verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut r = self.open_blob(digest)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| reader_error(e, "reading blob", &r.path))?;
        Ok(out)
    }

    /// Reads a blob to the end, checking its digest; a corrupt blob is removed and reported.
    pub fn verify_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let mut r = self.open_blob(digest)?;
        io::copy(&mut r, &mut io::sink()).map_err(|e| reader_error(e, "reading blob", &r.path))?;
        Ok(())
    }

    /// Marks a blob as just used (LRU). Best effort: a failure only affects prune order.
    fn touch_blob(&self, digest: &Digest) {
        let _ = filetime::set_file_mtime(self.blob_path(digest), filetime::FileTime::now());
    }

    /// Marks a blob as used for LRU pruning without reading it (e.g. a cache hit that only
    /// needs to know the blob is there). [`Store::open_blob`] does this itself.
    pub fn mark_blob_used(&self, digest: &Digest) {
        self.touch_blob(digest);
    }

    /// Marks snapshot `snapshots/<name>/` as used for LRU pruning. Best effort.
    pub fn mark_snapshot_used(&self, name: &str) {
        if !name.is_empty() && !name.contains('/') && name != "." && name != ".." {
            let _ = filetime::set_file_mtime(
                self.snapshots_dir().join(name),
                filetime::FileTime::now(),
            );
        }
    }
}

/// Turns an error from a [`VerifyingReader`] back into a [`StoreError`].
fn reader_error(e: io::Error, op: &'static str, path: &Path) -> StoreError {
    if let Some(StoreError::CorruptBlob { digest, path }) = StoreError::from_io(&e) {
        return StoreError::CorruptBlob {
            digest: digest.clone(),
            path: path.clone(),
        };
    }
    StoreError::io(op, path)(e)
}

/// A blob being written: hashes while writing into a locked temp file in `<store>/tmp/`.
/// Dropped without [`commit`](BlobWriter::commit), it removes its temp file.
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    temp_path: PathBuf,
    blobs_dir: PathBuf,
    hasher: Sha256Hasher,
    /// Set once something follows the write ([`BlobWriter::follow`]).
    followers: Option<std::sync::Arc<follow::Shared>>,
    /// Bytes of the file the kernel was asked to start writing out (see [`WRITE_BEHIND`]).
    written_back: u64,
}

/// Every this many bytes written to a blob's file, the kernel is asked to start writing them to
/// disk (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait): the disk then works
/// while the blob is still produced, and the `fsync` of the commit finds little left to write
/// instead of the whole blob (a 300 MB layer: about a second on these disks).
const WRITE_BEHIND: u64 = 8 << 20;

impl BlobWriter {
    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.hasher.len()
    }

    /// A reader of this blob as it is written (e.g. to upload a layer while it is compressed):
    /// see [`GrowingBlob`]. Call before the first write; the writer never waits for it.
    pub fn follow(&mut self) -> Result<GrowingBlob, StoreError> {
        let file = File::open(&self.temp_path)
            .map_err(StoreError::io("opening temp file", &self.temp_path))?;
        let shared = self
            .followers
            .get_or_insert_with(follow::Shared::new)
            .clone();
        Ok(GrowingBlob::new(file, shared))
    }

    /// Verifies the digest (and size) against what the caller expected, fsyncs, renames the blob
    /// into `blobs/sha256/<hex>` and fsyncs the directory. On a mismatch nothing is stored.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        let temp = self.temp_path.clone();
        let buffered = self.file.take().expect("commit consumes the writer");
        let file = buffered
            .into_inner()
            .map_err(|e| StoreError::io("writing temp file", &temp)(e.into_error()))?;
        let hasher = std::mem::take(&mut self.hasher);
        let size = hasher.len();
        let digest = hasher.finish();
        let check = || -> Result<(), StoreError> {
            if let Some(exp) = expected {
                if exp.algorithm() != Algorithm::Sha256 {
                    return Err(StoreError::UnsupportedAlgorithm(exp.clone()));
                }
                if *exp != digest {
                    return Err(StoreError::DigestMismatch {
                        expected: exp.clone(),
                        actual: digest.clone(),
                    });
                }
            }
            if let Some(exp) = expected_size {
                if exp != size {
                    return Err(StoreError::SizeMismatch {
                        digest: digest.clone(),
                        expected: exp,
                        actual: size,
                    });
                }
            }
            crate::failpoint::hit("blob.before_fsync");
            let dest = self.blobs_dir.join(digest.hex());
            AtomicFile::from_temp(file, temp.clone(), &dest, BLOB_COMMIT).commit()?;
            Ok(())
        };
        match check() {
            Ok(()) => {
                // Renamed away: nothing for Drop to remove.
                self.temp_path = PathBuf::new();
                if let Some(f) = self.followers.take() {
                    f.finish(follow::WriteStatus::Committed {
                        digest: digest.clone(),
                        size,
                    });
                }
                Ok((digest, size))
            }
            Err(e) => Err(e), // Drop removes the temp file.
        }
    }
}

impl BlobWriter {
    /// Starts the write-out of what reached the file since the last call, once that is
    /// [`WRITE_BEHIND`] bytes (advisory: an error only means the commit's `fsync` does it all).
    fn write_behind(&mut self) {
        use std::os::fd::AsRawFd;
        let Some(file) = self.file.as_ref() else {
            return;
        };
        let in_file = self.hasher.len() - file.buffer().len() as u64;
        let pending = in_file - self.written_back;
        if pending < WRITE_BEHIND {
            return;
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(self.written_back), i64::try_from(pending))
        else {
            return;
        };
        // SAFETY: a plain system call on a descriptor this writer owns; no memory is passed.
        let _ = unsafe {
            libc::sync_file_range(
                file.get_ref().as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        self.written_back = in_file;
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("the file lives until commit");
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.write_behind();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Not committed (a failed write or commit): followers must not take what they read.
        if let Some(f) = self.followers.take() {
            f.finish(follow::WriteStatus::Abandoned);
        }
        if !self.temp_path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Reads a blob and checks its digest at end of file. On a mismatch the blob is removed from the
/// store and the read fails with an `io::Error` of kind `InvalidData` wrapping
/// [`StoreError::CorruptBlob`] (see [`StoreError::from_io`]). Consumers must read to EOF before
/// trusting what they read (the layer applier does).
pub struct VerifyingReader {
    file: File,
    hasher: Sha256Hasher,
    expected: Digest,
    path: PathBuf,
    verified: bool,
}

impl VerifyingReader {
    /// The blob's path in the store.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        if buf.is_empty() || self.verified {
            return Ok(0);
        }
        let actual = self.hasher.clone().finish();
        if actual != self.expected {
            let _ = fs::remove_file(&self.path);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                StoreError::CorruptBlob {
                    digest: self.expected.clone(),
                    path: self.path.clone(),
                },
            ));
        }
        self.verified = true;
        Ok(0)
    }
}

#[cfg(test)]
mod tests;
