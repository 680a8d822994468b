//! Caches in a directory (`--cache-to type=local,dest=DIR` / `--cache-from type=local,src=DIR`):
//! an OCI image layout (image-spec `image-layout.md`) holding the same cache manifest a
//! registry cache has ([`super::remote`]), tagged `latest` in `index.json`.
//!
//! Writing goes through the shared layout writer ([`rbuild_layers::oci_layout`]), so it is
//! crash-safe and exclusive: blobs and `index.json` go through a temp file that is fsynced and
//! renamed, the new `index.json` is in place before blobs it no longer references are removed,
//! and an flock on `<dir>/.rbuild-cache.lock` keeps two exports to one directory from
//! interleaving. Reading goes through the shared layout reader ([`LayoutReader`]), which verifies
//! every document parsed and every blob imported by digest and size, and caps how much it
//! reads: the directory may come from anywhere (a CI cache restored from elsewhere).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rbuild_layers::image::manifest::{ImageIndex, ImageManifest, MAX_MANIFEST_BYTES};
use rbuild_layers::image::{BlobReadError, BlobSource};
use rbuild_layers::oci_layout::{
    self, LayoutBlobs, LayoutError, LayoutReadError, LayoutReader, LayoutWriter, LockOn, Select,
    REF_NAME_ANNOTATION,
};
use rbuild_layers::store::{Store, StoreError};
use rbuild_layers::{Descriptor, Digest, MediaType};

use super::error::{CacheLoadError, CacheWriteError};
use super::format::{CacheMap, MAX_CACHE_MAP_BYTES};
use super::remote::{check_listed, put_cache_manifest};
use crate::push::FetchMissing;

/// The name of the cache's entry in `index.json`.
pub const CACHE_TAG: &str = "latest";
/// The lock file held while a cache is written.
pub const LOCK_FILE: &str = ".rbuild-cache.lock";

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
        LayoutBlobs::new(&self.dir).has(desc)
    }
}

fn what(dir: &Path) -> String {
    dir.display().to_string()
}

/// The layout reader's error as a cache load error, with the messages a cache import has
/// always given: a missing index is `NotFound`, an unparsable document `Document`, a document
/// that does not verify `Inconsistent`, the store's refusal `Store`.
fn load_err(dir: &Path) -> impl Fn(LayoutReadError) -> CacheLoadError + '_ {
    move |e| {
        let inconsistent = |reason: String| CacheLoadError::Inconsistent {
            what: what(dir),
            reason,
        };
        match e {
            LayoutReadError::NoIndex { .. } => CacheLoadError::NotFound { what: what(dir) },
            LayoutReadError::Index { path, source } => CacheLoadError::Document {
                what: what(dir),
                path,
                source: Box::new(source),
            },
            LayoutReadError::Io { op, path, source } => CacheLoadError::Io {
                what: what(dir),
                op,
                path,
                source,
            },
            LayoutReadError::MissingBlob { path, source, .. } => CacheLoadError::Io {
                what: what(dir),
                op: "opening",
                path,
                source,
            },
            LayoutReadError::Store { digest, source, .. } => CacheLoadError::Store {
                what: what(dir),
                digest,
                source,
            },
            LayoutReadError::NotSha256 { digest, .. } => {
                inconsistent(format!("{digest} is not a sha256 digest"))
            }
            LayoutReadError::TooLarge {
                digest, size, max, ..
            } => inconsistent(format!(
                "blob {digest} is {size} bytes, more than the {max} bytes rbuild reads for it"
            )),
            LayoutReadError::Corrupt { digest, size, .. } => inconsistent(format!(
                "blob {digest} does not match its digest and size ({size} bytes); the directory is corrupt"
            )),
            LayoutReadError::NotOne { count, .. } => inconsistent(format!(
                "index.json has {count} entries and none is named {CACHE_TAG:?} ({REF_NAME_ANNOTATION})"
            )),
            other => inconsistent(other.to_string()),
        }
    }
}

/// Reads the cache in `dir`: `index.json` → the entry named `latest` (else the only entry) →
/// the cache manifest → the map. Copies no layer.
pub fn read_layout_cache(dir: &Path) -> Result<LayoutCache, CacheLoadError> {
    let err = load_err(dir);
    let layout = LayoutReader::open(dir).map_err(&err)?;
    let entry = layout
        .resolve(Select::Tag(CACHE_TAG))
        .or_else(|_| layout.resolve(Select::Only))
        .map_err(&err)?;
    if !entry.media_type.is_manifest() {
        return Err(CacheLoadError::NotACache {
            what: what(dir),
            media_type: entry.media_type.clone(),
        });
    }
    let blobs = layout.blobs();
    let manifest_bytes = blobs
        .read_document(entry, MAX_MANIFEST_BYTES)
        .map_err(&err)?;
    let manifest =
        ImageManifest::from_slice(&manifest_bytes).map_err(|source| CacheLoadError::Document {
            what: what(dir),
            path: oci_layout::blob_path(dir, &entry.digest),
            source: Box::new(source),
        })?;
    if manifest.config.media_type != MediaType::RbuildCacheConfig {
        return Err(CacheLoadError::NotACache {
            what: what(dir),
            media_type: manifest.config.media_type,
        });
    }
    let map_bytes = blobs
        .read_document(&manifest.config, MAX_CACHE_MAP_BYTES)
        .map_err(&err)?;
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
    LayoutBlobs::new(dir)
        .import(store, &desc.digest, Some(desc.size))
        .map_err(load_err(dir))
}

/// The store as a source of the blobs a cache directory gets: always copied, never
/// hard-linked (the directory travels, e.g. as a CI cache, and must not share inodes with the
/// store).
struct CopyFromStore<'a>(&'a Store);

impl BlobSource for CopyFromStore<'_> {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        BlobSource::open_blob(self.0, digest)
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<u64> {
        BlobSource::blob_size(self.0, digest)
    }
}

/// A layout writer's error as a cache write error: a blob the store finds corrupt (its reader
/// checks the digest) or that does not match is `CorruptBlob`, the store's own errors are
/// `Store`.
fn layout_err(dir: &Path) -> impl Fn(LayoutError) -> CacheWriteError + '_ {
    move |e| {
        let corrupt = |digest: Digest| CacheWriteError::CorruptBlob {
            what: what(dir),
            digest,
        };
        match e {
            LayoutError::Io { op, path, source } => {
                if let Some(StoreError::CorruptBlob { digest, .. }) = StoreError::from_io(&source) {
                    return corrupt(digest.clone());
                }
                CacheWriteError::Io {
                    what: what(dir),
                    op,
                    path,
                    source,
                }
            }
            LayoutError::Blob(BlobReadError::Corrupt { digest, .. }) => corrupt(digest),
            LayoutError::Blob(BlobReadError::Read { source, digest }) => {
                match source.into_inner().map(|e| e.downcast::<StoreError>()) {
                    Some(Ok(source)) => CacheWriteError::Store {
                        what: what(dir),
                        source: *source,
                    },
                    _ => CacheWriteError::MissingBlob {
                        what: what(dir),
                        digest,
                    },
                }
            }
            other => CacheWriteError::Layout {
                what: what(dir),
                source: Box::new(other),
            },
        }
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
    let err = layout_err(dir);
    let layout = LayoutWriter::open_locked(dir, LockOn::File(LOCK_FILE)).map_err(&err)?;
    layout.ensure_layout_file().map_err(&err)?;
    let source = CopyFromStore(store);
    let layers = map.layer_descriptors();
    for d in &layers {
        if layout.has_blob(&d.digest, d.size) {
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
        layout.put_blob(&d.digest, &source).map_err(&err)?;
        rbuild_layers::failpoint::hit("cache_local.mid_blobs");
    }
    let (config, manifest) =
        put_cache_manifest(store, map).map_err(|source| CacheWriteError::Store {
            what: what(dir),
            source,
        })?;
    for d in [&config, &manifest] {
        layout.put_blob(&d.digest, &source).map_err(&err)?;
    }
    layout.sync_blob_dirs().map_err(&err)?;

    let mut entry = manifest.clone();
    entry.annotations = BTreeMap::from([(REF_NAME_ANNOTATION.to_string(), CACHE_TAG.to_string())]);
    let mut index = ImageIndex::new_oci();
    index.manifests.push(entry);
    layout
        .commit_index(&index, || {
            rbuild_layers::failpoint::hit("cache_local.before_index_rename")
        })
        .map_err(&err)?;

    let keep = layers
        .iter()
        .map(|d| &d.digest)
        .chain([&config.digest, &manifest.digest]);
    layout.remove_unreferenced(keep).map_err(&err)?;
    drop(layout);
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{self, layer, map_of};
    use crate::RegistryError;
    use std::collections::BTreeSet;
    use std::fs;

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
            oci_layout::OCI_LAYOUT_FILE
        );
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
            "latest"
        );
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
        // Copies, not hard links into the store: the directory travels on its own.
        for l in &layers {
            let path = oci_layout::blob_path(&dir, &l.descriptor.digest);
            let meta = fs::metadata(&path).expect("stat");
            assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1);
        }
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
        let dead_index = dir.join(format!("{}index", oci_layout::TEMP_PREFIX));
        let dead_blob = dir.join(format!("blobs/sha256/{}blob", oci_layout::TEMP_PREFIX));
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

    /// A layer that rotted in the local store is refused (the store's reader and the layout
    /// writer both check it) and no index naming it is written.
    #[test]
    fn a_corrupt_blob_in_the_store_is_not_written() {
        let (_d, store) = testutil::store();
        let l = layer(&store, "rot");
        let path = store.blob_path(&l.descriptor.digest);
        let mut bytes = fs::read(&path).expect("read");
        bytes[0] ^= 1;
        fs::remove_file(&path).expect("remove");
        fs::write(&path, &bytes).expect("corrupt, same size");
        let out = tempfile::tempdir().expect("tempdir");
        let e = write_layout_cache(out.path(), &store, &map_of(std::slice::from_ref(&l)), None)
            .expect_err("corrupt");
        assert!(matches!(e, CacheWriteError::CorruptBlob { .. }), "{e}");
        assert!(!out.path().join("index.json").exists());
        assert!(!oci_layout::blob_path(out.path(), &l.descriptor.digest).exists());
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
