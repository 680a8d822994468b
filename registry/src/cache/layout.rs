//! Caches in a directory (`--cache-to type=local,dest=DIR` / `--cache-from type=local,src=DIR`):
//! an OCI image layout (image-spec `image-layout.md`) holding the same cache manifest a
//! registry cache has ([`super::remote`]), tagged `latest` in `index.json`.
//!
//! Writing is crash-safe and exclusive: blobs and `index.json` go through a temp file that is
//! fsynced and renamed, the new `index.json` is in place before blobs it no longer references
//! are removed, and an flock on `<dir>/.rbuild-cache.lock` keeps two exports to one directory
//! from interleaving. Reading verifies every document it parses and every blob it imports by
//! digest and size, and caps how much it reads: the directory may come from anywhere (a CI
//! cache restored from elsewhere).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use rbuild_layers::atomic::{self, AtomicError, AtomicFile};
use rbuild_layers::digest::Algorithm;
use rbuild_layers::image::manifest::{read_capped, ImageIndex, ImageManifest, MAX_MANIFEST_BYTES};
use rbuild_layers::store::{Store, StoreError};
use rbuild_layers::{Descriptor, Digest, MediaType};

use super::error::{CacheLoadError, CacheWriteError};
use super::format::{CacheMap, MAX_CACHE_MAP_BYTES};
use super::remote::{check_listed, put_cache_manifest};
use crate::push::FetchMissing;

/// `index.json`'s annotation naming an entry (image-spec `annotations.md`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The name of the cache's entry in `index.json`.
pub const CACHE_TAG: &str = "latest";
/// The lock file held while a cache is written.
pub const LOCK_FILE: &str = ".rbuild-cache.lock";
/// Prefix of temp files in the layout (removed by the next writer if a crash left them).
const TEMP_PREFIX: &str = atomic::TEMP_PREFIX;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// How files are written into the layout: mode 0644 (another user may restore or read it),
/// temps named with [`TEMP_PREFIX`]; each directory is synced once, after all its files.
const WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Exact(0o644))
    .prefix(TEMP_PREFIX)
    .without_dir_sync();

/// A cache map read from a layout directory.
#[derive(Debug, Clone)]
pub struct LayoutCache {
    pub map: CacheMap,
    pub dir: PathBuf,
    pub manifest_digest: Digest,
}

impl LayoutCache {
    /// Whether the layout holds blob `desc` (by name and size; [`import_layout_blob`] verifies
    /// the content). A key match is used only when its layer is there.
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        blob_path(&self.dir, &desc.digest)
            .and_then(|p| fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == desc.size)
    }
}

fn what(dir: &Path) -> String {
    dir.display().to_string()
}

/// `<dir>/blobs/sha256/<hex>`; the store and this layout hold sha256 blobs only.
fn blob_path(dir: &Path, digest: &Digest) -> Option<PathBuf> {
    (digest.algorithm() == Algorithm::Sha256)
        .then(|| dir.join("blobs").join("sha256").join(digest.hex()))
}

/// Reads a small blob of the layout, checking its size against `max` first and its size and
/// digest against `desc` after.
fn read_verified(dir: &Path, desc: &Descriptor, max: u64) -> Result<Vec<u8>, CacheLoadError> {
    let inconsistent = |reason: String| CacheLoadError::Inconsistent {
        what: what(dir),
        reason,
    };
    let path = blob_path(dir, &desc.digest)
        .ok_or_else(|| inconsistent(format!("{} is not a sha256 digest", desc.digest)))?;
    if desc.size > max {
        return Err(inconsistent(format!(
            "blob {} is {} bytes, more than the {max} bytes rbuild reads for it",
            desc.digest, desc.size
        )));
    }
    let io_err = |op| {
        let path = path.clone();
        move |source| CacheLoadError::Io {
            what: what(dir),
            op,
            path,
            source,
        }
    };
    let mut bytes = Vec::new();
    File::open(&path)
        .map_err(io_err("opening"))?
        .take(desc.size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err("reading"))?;
    if bytes.len() as u64 != desc.size || Digest::sha256_of(&bytes) != desc.digest {
        return Err(inconsistent(format!(
            "blob {} does not match its digest and size ({} bytes); the directory is corrupt",
            desc.digest, desc.size
        )));
    }
    Ok(bytes)
}

/// Reads the cache in `dir`: `index.json` → the entry named `latest` (else the only entry) →
/// the cache manifest → the map. Copies no layer.
pub fn read_layout_cache(dir: &Path) -> Result<LayoutCache, CacheLoadError> {
    let index_path = dir.join("index.json");
    let file = match File::open(&index_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CacheLoadError::NotFound { what: what(dir) })
        }
        Err(source) => {
            return Err(CacheLoadError::Io {
                what: what(dir),
                op: "opening",
                path: index_path,
                source,
            })
        }
    };
    let document = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheLoadError::Document {
            what: what(dir),
            path,
            source: Box::new(source),
        }
    };
    let bytes =
        read_capped(file, MAX_MANIFEST_BYTES, "image index").map_err(document(&index_path))?;
    let index = ImageIndex::from_slice(&bytes).map_err(document(&index_path))?;
    let named = index
        .manifests
        .iter()
        .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(CACHE_TAG));
    let entry = match (named, index.manifests.as_slice()) {
        (Some(e), _) => e,
        (None, [only]) => only,
        (None, all) => {
            return Err(CacheLoadError::Inconsistent {
                what: what(dir),
                reason: format!(
                    "index.json has {} entries and none is named {CACHE_TAG:?} ({REF_NAME})",
                    all.len()
                ),
            })
        }
    };
    if !entry.media_type.is_manifest() {
        return Err(CacheLoadError::NotACache {
            what: what(dir),
            media_type: entry.media_type.clone(),
        });
    }
    let manifest_bytes = read_verified(dir, entry, MAX_MANIFEST_BYTES)?;
    let manifest_path = blob_path(dir, &entry.digest).unwrap_or_default();
    let manifest = ImageManifest::from_slice(&manifest_bytes).map_err(document(&manifest_path))?;
    if manifest.config.media_type != MediaType::RbuildCacheConfig {
        return Err(CacheLoadError::NotACache {
            what: what(dir),
            media_type: manifest.config.media_type,
        });
    }
    let map_bytes = read_verified(dir, &manifest.config, MAX_CACHE_MAP_BYTES)?;
    let map = CacheMap::from_slice(&map_bytes).map_err(|source| CacheLoadError::Format {
        what: what(dir),
        source,
    })?;
    check_listed(&map, &manifest.layers, &what(dir), "the cache manifest")?;
    Ok(LayoutCache {
        map,
        dir: dir.to_path_buf(),
        manifest_digest: entry.digest.clone(),
    })
}

/// Copies blob `desc` from the layout in `dir` into `store`, streaming, verified by digest
/// and size (a corrupt or truncated blob is refused and nothing is stored). Nothing to do when
/// the store has it.
pub fn import_layout_blob(
    dir: &Path,
    store: &Store,
    desc: &Descriptor,
) -> Result<(), CacheLoadError> {
    if store.blob_size(&desc.digest) == Some(desc.size) {
        store.mark_blob_used(&desc.digest);
        return Ok(());
    }
    let path = blob_path(dir, &desc.digest).ok_or_else(|| CacheLoadError::Inconsistent {
        what: what(dir),
        reason: format!("{} is not a sha256 digest", desc.digest),
    })?;
    let io_err = |op| {
        let path = path.clone();
        move |source| CacheLoadError::Io {
            what: what(dir),
            op,
            path,
            source,
        }
    };
    let store_err = |source| CacheLoadError::Store {
        what: what(dir),
        digest: desc.digest.clone(),
        source,
    };
    let file = File::open(&path).map_err(io_err("opening"))?;
    let mut w = store.begin_blob().map_err(store_err)?;
    io::copy(&mut file.take(desc.size.saturating_add(1)), &mut w).map_err(io_err("copying"))?;
    w.commit(Some(&desc.digest), Some(desc.size))
        .map_err(store_err)?;
    Ok(())
}

/// Takes an exclusive flock on `f`, waiting for it; released when `f` is closed. (libc rather
/// than `File::lock`, which is newer than the workspace's minimum Rust version.)
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

/// A write in progress: the directory and its `what` for errors.
struct Writer<'a> {
    dir: &'a Path,
    blobs: PathBuf,
}

impl Writer<'_> {
    fn io_err(&self, op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheWriteError {
        let what = what(self.dir);
        let path = path.to_path_buf();
        move |source| CacheWriteError::Io {
            what,
            op,
            path,
            source,
        }
    }

    /// Keeps a failed atomic write's operation and path, naming this cache.
    fn atomic_err(&self, e: AtomicError) -> CacheWriteError {
        self.io_err(e.op, &e.path)(e.source)
    }

    /// Writes `bytes` to `dest` atomically (the directory is synced later, see [`WRITE`]);
    /// `before_rename` runs once the temp file is durable (a crash-test failpoint, see
    /// [`rbuild_layers::failpoint`]).
    fn write_atomic(
        &self,
        dest: &Path,
        bytes: &[u8],
        before_rename: fn(),
    ) -> Result<(), CacheWriteError> {
        atomic::write(dest, bytes, WRITE.before_rename(before_rename))
            .map_err(|e| self.atomic_err(e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), CacheWriteError> {
        atomic::sync_dir(dir).map_err(|e| self.atomic_err(e))
    }

    /// Copies blob `desc` from the store into the layout, verified, unless a file of its size
    /// is there already (blob names are digests; a reader verifies them anyway).
    fn put_blob(&self, store: &Store, desc: &Descriptor) -> Result<(), CacheWriteError> {
        let dest =
            blob_path(self.dir, &desc.digest).ok_or_else(|| CacheWriteError::MissingBlob {
                what: what(self.dir),
                digest: desc.digest.clone(),
            })?;
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == desc.size) {
            return Ok(());
        }
        let corrupt = || CacheWriteError::CorruptBlob {
            what: what(self.dir),
            digest: desc.digest.clone(),
        };
        let mut r = store
            .open_blob(&desc.digest)
            .map_err(|source| CacheWriteError::Store {
                what: what(self.dir),
                source,
            })?;
        let mut tmp = AtomicFile::create(&dest, WRITE).map_err(|e| self.atomic_err(e))?;
        // The store's reader checks the digest at end of file; one byte past the size catches
        // a longer blob.
        let n = match io::copy(
            &mut (&mut r).take(desc.size.saturating_add(1)),
            tmp.as_file_mut(),
        ) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    StoreError::from_io(&e),
                    Some(StoreError::CorruptBlob { .. })
                ) =>
            {
                return Err(corrupt())
            }
            Err(e) => return Err(self.io_err("copying a blob into", &dest)(e)),
        };
        if n != desc.size {
            return Err(corrupt());
        }
        tmp.commit().map_err(|e| self.atomic_err(e))
    }

    /// Removes blobs `keep` does not name, and temp files a crashed writer left in `blobs/`
    /// and next to `index.json` (the lock is held, so no live writer owns one). Only names that
    /// are sha256 digests or start with [`TEMP_PREFIX`] are touched.
    fn remove_unreferenced(&self, keep: &BTreeSet<&str>) -> Result<(), CacheWriteError> {
        self.remove_where(&self.blobs, |name| {
            let is_digest = name.len() == 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            (is_digest && !keep.contains(name)) || name.starts_with(TEMP_PREFIX)
        })?;
        self.remove_where(self.dir, |name| name.starts_with(TEMP_PREFIX))
    }

    /// Removes the files of `dir` whose names `doomed` picks, then syncs `dir`.
    fn remove_where(
        &self,
        dir: &Path,
        doomed: impl Fn(&str) -> bool,
    ) -> Result<(), CacheWriteError> {
        let entries = fs::read_dir(dir).map_err(self.io_err("listing", dir))?;
        for entry in entries {
            let entry = entry.map_err(self.io_err("listing", dir))?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(&doomed) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err("removing", &path)(e)),
            }
        }
        self.sync_dir(dir)
    }
}

/// Writes `map` as the cache in `dir` (created if needed), replacing what was there: blobs the
/// layout lacks are copied from `store` (those the store lacks are first fetched with
/// `fetch_missing`), then the map and manifest, then `index.json`, then blobs the new index
/// does not reference are removed. Returns the manifest's descriptor.
pub fn write_layout_cache(
    dir: &Path,
    store: &Store,
    map: &CacheMap,
    fetch_missing: Option<FetchMissing<'_>>,
) -> Result<Descriptor, CacheWriteError> {
    let w = Writer {
        dir,
        blobs: dir.join("blobs").join("sha256"),
    };
    fs::create_dir_all(&w.blobs).map_err(w.io_err("creating directory", &w.blobs))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(w.io_err("opening", &lock_path))?;
    flock_exclusive(&lock).map_err(w.io_err("locking", &lock_path))?;

    let layout = dir.join("oci-layout");
    if !layout.is_file() {
        w.write_atomic(&layout, OCI_LAYOUT, || {})?;
    }
    let layers = map.layer_descriptors();
    for d in &layers {
        let present = blob_path(dir, &d.digest)
            .and_then(|p| fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == d.size);
        if present {
            continue;
        }
        if store.blob_size(&d.digest) != Some(d.size) {
            if let Some(fetch) = fetch_missing {
                fetch(d).map_err(|source| CacheWriteError::Registry {
                    what: what(dir),
                    source: Box::new(source),
                })?;
            }
            if store.blob_size(&d.digest) != Some(d.size) {
                return Err(CacheWriteError::MissingBlob {
                    what: what(dir),
                    digest: d.digest.clone(),
                });
            }
        }
        w.put_blob(store, d)?;
        rbuild_layers::failpoint::hit("cache_local.mid_blobs");
    }
    let (config, manifest) =
        put_cache_manifest(store, map).map_err(|source| CacheWriteError::Store {
            what: what(dir),
            source,
        })?;
    w.put_blob(store, &config)?;
    w.put_blob(store, &manifest)?;
    w.sync_dir(&w.blobs)?;

    let mut entry = manifest.clone();
    entry.annotations = BTreeMap::from([(REF_NAME.to_string(), CACHE_TAG.to_string())]);
    let mut index = ImageIndex::new_oci();
    index.manifests.push(entry);
    w.write_atomic(&dir.join("index.json"), &index.to_canonical_json(), || {
        rbuild_layers::failpoint::hit("cache_local.before_index_rename")
    })?;
    w.sync_dir(dir)?;

    let keep: BTreeSet<&str> = layers
        .iter()
        .map(|d| d.digest.hex())
        .chain([config.digest.hex(), manifest.digest.hex()])
        .collect();
    w.remove_unreferenced(&keep)?;
    drop(lock);
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{self, layer, map_of};
    use crate::RegistryError;

    fn files_in(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir.join("blobs/sha256"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_written_cache_reads_back_and_its_blobs_import_verified() {
        let (_d, store) = testutil::store();
        let layers = [layer(&store, "l1"), layer(&store, "l2")];
        let map = map_of(&layers);
        let out = tempfile::tempdir().expect("tempdir");
        let dir = out.path().join("cache");
        let desc = write_layout_cache(&dir, &store, &map, None).expect("write");
        assert_eq!(
            fs::read(dir.join("oci-layout")).expect("oci-layout"),
            OCI_LAYOUT
        );
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "latest");
        assert_eq!(index["manifests"][0]["digest"], desc.digest.to_string());

        let got = read_layout_cache(&dir).expect("read");
        assert_eq!(got.map, map);
        assert!(layers.iter().all(|l| got.has_blob(&l.descriptor)));
        assert!(!got.has_blob(&layer(&store, "elsewhere").descriptor));
        assert_eq!(got.manifest_digest, desc.digest);
        assert_eq!(got.dir, dir);

        let (_d2, fresh) = testutil::store();
        for l in &layers {
            import_layout_blob(&dir, &fresh, &l.descriptor).expect("import");
            fresh.verify_blob(&l.descriptor.digest).expect("verified");
        }
        // Writing the same map again changes nothing.
        assert_eq!(
            write_layout_cache(&dir, &store, &map, None).expect("rewrite"),
            desc
        );
        assert_eq!(files_in(&dir).len(), 4, "two layers, the map, the manifest");
    }

    #[test]
    fn a_rewrite_removes_blobs_the_new_cache_does_not_reference() {
        let (_d, store) = testutil::store();
        let [a, b, c] = [layer(&store, "a"), layer(&store, "b"), layer(&store, "c")];
        let out = tempfile::tempdir().expect("tempdir");
        let dir = out.path();
        let old =
            write_layout_cache(dir, &store, &map_of(&[a.clone(), b.clone()]), None).expect("first");
        fs::write(dir.join("blobs/sha256/README"), b"not a blob").expect("write");
        let new = write_layout_cache(dir, &store, &map_of(&[b.clone(), c.clone()]), None)
            .expect("second");
        let files = files_in(dir);
        assert!(!files.contains(a.descriptor.digest.hex()), "{files:?}");
        assert!(!files.contains(old.digest.hex()), "{files:?}");
        assert!(files.contains(b.descriptor.digest.hex()));
        assert!(files.contains(c.descriptor.digest.hex()));
        assert!(files.contains(new.digest.hex()));
        assert!(files.contains("README"), "only digest names are removed");
        assert_eq!(files.len(), 5);
        assert_eq!(
            read_layout_cache(dir).expect("read").manifest_digest,
            new.digest
        );
    }

    /// A writer killed after writing `index.json`'s temp file and before renaming it (crash
    /// script failpoint `cache_local.before_index_rename`) left that temp file in the cache
    /// directory itself; the next write removes it, as it does those in `blobs/`.
    #[test]
    fn a_temp_index_left_by_a_killed_writer_is_removed_by_the_next_write() {
        let (_d, store) = testutil::store();
        let out = tempfile::tempdir().expect("tempdir");
        let dir = out.path();
        let map = map_of(&[layer(&store, "a")]);
        write_layout_cache(dir, &store, &map, None).expect("first");
        let dead_index = dir.join(format!("{TEMP_PREFIX}index"));
        let dead_blob = dir.join(format!("blobs/sha256/{TEMP_PREFIX}blob"));
        fs::write(&dead_index, b"{\"half\":").expect("write");
        fs::write(&dead_blob, b"half a blob").expect("write");
        fs::write(dir.join("notes.txt"), b"the user's").expect("write");
        write_layout_cache(dir, &store, &map, None).expect("second");
        assert!(
            !dead_index.exists(),
            "the dead writer's temp index.json is removed"
        );
        assert!(
            !dead_blob.exists(),
            "the dead writer's temp blob is removed"
        );
        assert!(dir.join("notes.txt").exists(), "other files are left alone");
    }

    #[test]
    fn a_corrupt_blob_in_the_layout_is_refused_on_import() {
        let (_d, store) = testutil::store();
        let l = layer(&store, "bad");
        let out = tempfile::tempdir().expect("tempdir");
        write_layout_cache(out.path(), &store, &map_of(std::slice::from_ref(&l)), None)
            .expect("write");
        let path = out
            .path()
            .join("blobs/sha256")
            .join(l.descriptor.digest.hex());
        let mut bytes = fs::read(&path).expect("read");
        bytes[0] ^= 1;
        fs::remove_file(&path).expect("remove");
        fs::write(&path, &bytes).expect("corrupt, same size");

        let (_d2, fresh) = testutil::store();
        let e = import_layout_blob(out.path(), &fresh, &l.descriptor).expect_err("corrupt");
        assert!(
            matches!(
                e,
                CacheLoadError::Store {
                    source: StoreError::DigestMismatch { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains(&out.path().display().to_string()),
            "{e}"
        );
        assert!(!fresh.has_blob(&l.descriptor.digest), "nothing was stored");
    }

    #[test]
    fn a_missing_directory_or_index_is_not_found() {
        let out = tempfile::tempdir().expect("tempdir");
        let e = read_layout_cache(&out.path().join("nope")).expect_err("missing");
        assert!(e.is_not_found(), "{e}");
        let e = read_layout_cache(out.path()).expect_err("no index");
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn a_corrupt_manifest_or_a_layout_of_an_image_is_refused() {
        let (_d, store) = testutil::store();
        let l = layer(&store, "m");
        let out = tempfile::tempdir().expect("tempdir");
        let desc = write_layout_cache(out.path(), &store, &map_of(std::slice::from_ref(&l)), None)
            .expect("write");
        let path = out.path().join("blobs/sha256").join(desc.digest.hex());
        let mut bytes = fs::read(&path).expect("read");
        bytes.push(b' ');
        fs::remove_file(&path).expect("remove");
        fs::write(&path, &bytes).expect("write");
        let e = read_layout_cache(out.path()).expect_err("corrupt manifest");
        assert!(matches!(e, CacheLoadError::Inconsistent { .. }), "{e}");

        // An image layout (config is an image config) is not a cache.
        let img = tempfile::tempdir().expect("tempdir");
        let top = testutil::image(&store, &[l], None);
        let manifest =
            ImageManifest::from_slice(&store.read_blob(&top.digest).expect("m")).expect("parse");
        let blobs = img.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).expect("mkdir");
        for d in [&top.digest, &manifest.config.digest] {
            fs::write(blobs.join(d.hex()), store.read_blob(d).expect("read")).expect("write");
        }
        let mut index = ImageIndex::new_oci();
        index.manifests.push(top);
        fs::write(img.path().join("index.json"), index.to_canonical_json()).expect("write");
        let e = read_layout_cache(img.path()).expect_err("an image");
        assert!(matches!(e, CacheLoadError::NotACache { .. }), "{e}");
    }

    #[test]
    fn blobs_the_store_lacks_are_fetched_first_or_the_write_fails_untouched() {
        let (_d, origin) = testutil::store();
        let l = layer(&origin, "remote");
        let map = map_of(std::slice::from_ref(&l));
        let (_d2, store) = testutil::store();
        let out = tempfile::tempdir().expect("tempdir");
        let e = write_layout_cache(out.path(), &store, &map, None).expect_err("missing");
        assert!(matches!(e, CacheWriteError::MissingBlob { .. }), "{e}");
        assert!(
            !out.path().join("index.json").exists(),
            "no index was written"
        );

        let fetch = |d: &Descriptor| -> Result<(), RegistryError> {
            store.put_bytes(d.media_type.clone(), &origin.read_blob(&d.digest)?)?;
            Ok(())
        };
        write_layout_cache(out.path(), &store, &map, Some(&fetch)).expect("write");
        assert_eq!(read_layout_cache(out.path()).expect("read").map, map);
    }

    #[test]
    fn concurrent_writers_to_one_directory_leave_one_consistent_cache() {
        let (_d, store) = testutil::store();
        let maps: Vec<CacheMap> = (0..4)
            .map(|i| map_of(&[layer(&store, &format!("w{i}")), layer(&store, "shared")]))
            .collect();
        let out = tempfile::tempdir().expect("tempdir");
        std::thread::scope(|s| {
            for m in &maps {
                let (dir, store) = (out.path(), &store);
                s.spawn(move || write_layout_cache(dir, store, m, None).expect("write"));
            }
        });
        let got = read_layout_cache(out.path()).expect("read");
        assert!(maps.contains(&got.map));
        // Exactly the winner's blobs remain, and every one of them imports.
        assert_eq!(files_in(out.path()).len(), 4, "two layers, map, manifest");
        let (_d2, fresh) = testutil::store();
        for d in got.map.layer_descriptors() {
            import_layout_blob(out.path(), &fresh, &d).expect("import");
        }
    }
}
