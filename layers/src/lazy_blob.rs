//! Lazy blobs: a layer stored as its plain tar now, compressed only when something needs it.
//!
//! A build writes the layers of a stage that no output image contains (a compiler stage read
//! only by `COPY --from`) as uncompressed tar blobs: the blob's digest is the layer's diffID,
//! and writing it costs no compression (BuildKit likewise keeps such a layer as a snapshot and
//! never compresses it). When an output, a push or a cache export needs the layer compressed,
//! [`compressed`] produces that form from the stored tar, once per (diffID, algorithm, level):
//!
//! * **Same bytes as an eager write.** The stored tar is exactly the stream the eager path feeds
//!   its compressor, and the compressors of [`crate::compression`] give the same output for the
//!   same input whatever the thread count and however the input is chunked. So the compressed
//!   digest — and every image digest naming it — is the one the eager path would have written.
//! * **Done once, kept.** The result is remembered in the record
//!   `cache/compressed-layer/<key>.json` ([`record_key`] of diffID, algorithm and effective
//!   level); the record's `"blobs"` keep the compressed blob alive in `prune`. A record whose
//!   blob is gone (or that cannot be read) is ignored and the blob made again.
//! * **Crash-safe.** The blob is committed (atomic rename) before the record is written
//!   (atomic rename): a killed compression leaves a temp file that opening the store reclaims,
//!   or an unreferenced blob that `prune` removes; never a record naming a missing blob.
//! * **Streaming.** The tar is read through the compressor into the store in bounded chunks.
//!
//! Which layers are deferred is the caller's decision (the build engine marks them); a layer
//! that is a plain tar for any other reason (a base image's, an `compression=uncompressed`
//! output) must never be passed here.

use std::io;

use serde::{Deserialize, Serialize};

use crate::compression::{compressor_with_threads, default_threads, CompressionError};
use crate::compression::{DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
use crate::store::{Store, StoreError};
use crate::{Compression, Descriptor, Digest};

/// The record kind of the diffID + (algorithm, level) → compressed blob mapping.
pub const RECORD: &str = "compressed-layer";

/// Why a deferred layer could not be compressed.
#[derive(Debug, thiserror::Error)]
pub enum LazyBlobError {
    #[error("compressing deferred layer {diff_id}: reading its tar blob")]
    Store {
        diff_id: Digest,
        #[source]
        source: StoreError,
    },
    #[error("compressing deferred layer {diff_id}")]
    Compressor {
        diff_id: Digest,
        #[source]
        source: CompressionError,
    },
    #[error("compressing deferred layer {diff_id}: streaming its tar blob")]
    Io {
        diff_id: Digest,
        #[source]
        source: io::Error,
    },
}

/// What the record keeps: the compressed descriptor of one layer at one (algorithm, level).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mapping {
    diff_id: Digest,
    compression: String,
    level: i32,
    digest: Digest,
    size: u64,
    /// Read by the store's prune: the compressed blob stays while this record does.
    blobs: Vec<Digest>,
}

/// The level a compressor actually uses (`None` = its default), so that "default" and the
/// default's number share one record.
fn effective_level(kind: Compression, level: Option<i32>) -> i32 {
    match (kind, level) {
        (_, Some(l)) => l,
        (Compression::Gzip, None) => DEFAULT_GZIP_LEVEL as i32,
        (Compression::Zstd, None) => DEFAULT_ZSTD_LEVEL,
        (Compression::None, None) => 0,
    }
}

fn kind_name(kind: Compression) -> &'static str {
    match kind {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

/// The record key of `diff_id` compressed with `kind` at `level`.
pub fn record_key(diff_id: &Digest, kind: Compression, level: Option<i32>) -> Digest {
    let id = format!(
        "rbuild-compressed-layer-v1\0{diff_id}\0{}\0{}",
        kind_name(kind),
        effective_level(kind, level)
    );
    Digest::sha256_of(id.as_bytes())
}

/// The compressed form of the deferred layer whose tar blob (digest = `diff_id`) is in `store`:
/// from the record when it was made before, else compressed now and recorded. For
/// `Compression::None` the tar blob itself.
pub fn compressed(
    store: &Store,
    diff_id: &Digest,
    kind: Compression,
    level: Option<i32>,
) -> Result<Descriptor, LazyBlobError> {
    compressed_with_threads(store, diff_id, kind, level, default_threads())
}

/// [`compressed`] with an explicit compressor thread count (the bytes do not depend on it).
pub fn compressed_with_threads(
    store: &Store,
    diff_id: &Digest,
    kind: Compression,
    level: Option<i32>,
    threads: usize,
) -> Result<Descriptor, LazyBlobError> {
    let media_type = kind.oci_layer_media_type();
    if kind == Compression::None {
        let size = store
            .blob_size(diff_id)
            .ok_or_else(|| LazyBlobError::Store {
                diff_id: diff_id.clone(),
                source: StoreError::BlobNotFound {
                    digest: diff_id.clone(),
                    path: store.blob_path(diff_id),
                },
            })?;
        return Ok(Descriptor::new(media_type, diff_id.clone(), size));
    }
    let key = record_key(diff_id, kind, level);
    if let Some(m) = lookup(store, &key) {
        return Ok(Descriptor::new(media_type, m.digest, m.size));
    }
    let (digest, size) = compress_blob(store, diff_id, kind, level, threads)?;
    let mapping = Mapping {
        diff_id: diff_id.clone(),
        compression: kind_name(kind).to_string(),
        level: effective_level(kind, level),
        digest: digest.clone(),
        size,
        blobs: vec![digest.clone()],
    };
    // Best effort: without the record the layer is compressed again when next needed.
    if let Ok(json) = serde_json::to_vec(&mapping) {
        let _ = store.put_record(RECORD, &key, &json);
    }
    Ok(Descriptor::new(media_type, digest, size))
}

/// The recorded mapping, when its blob is still in the store.
fn lookup(store: &Store, key: &Digest) -> Option<Mapping> {
    let bytes = store.get_record(RECORD, key).ok()??;
    let m: Mapping = serde_json::from_slice(&bytes).ok()?;
    (store.blob_size(&m.digest) == Some(m.size)).then_some(m)
}

/// Streams the tar blob `diff_id` through the compressor into a new blob (the reader verifies
/// the tar's digest at its end: a corrupt tar never becomes a compressed blob).
fn compress_blob(
    store: &Store,
    diff_id: &Digest,
    kind: Compression,
    level: Option<i32>,
    threads: usize,
) -> Result<(Digest, u64), LazyBlobError> {
    let store_err = |source| LazyBlobError::Store {
        diff_id: diff_id.clone(),
        source,
    };
    let io_err = |source| LazyBlobError::Io {
        diff_id: diff_id.clone(),
        source,
    };
    let mut tar = store.open_blob(diff_id).map_err(store_err)?;
    let blob = store.begin_blob().map_err(store_err)?;
    let mut comp = compressor_with_threads(kind, level, threads, blob).map_err(|source| {
        LazyBlobError::Compressor {
            diff_id: diff_id.clone(),
            source,
        }
    })?;
    io::copy(&mut tar, &mut comp).map_err(io_err)?;
    let blob = comp.finish().map_err(io_err)?;
    blob.commit(None, None).map_err(store_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::{entries_from_dir, write_layer, DirOptions, LayerOptions};
    use crate::PruneOptions;

    /// A tree of a few MiB, part compressible, part not, across many gzip blocks.
    fn tree(dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let text: String = (0..200_000).map(|i| format!("{i}\n")).collect();
        std::fs::write(dir.join("seq.txt"), &text).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..700_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join("sub/noise.bin"), noise).unwrap();
        std::fs::write(dir.join("sub/small"), b"hi").unwrap();
    }

    fn write(
        store: &Store,
        src: &std::path::Path,
        kind: Compression,
        level: Option<i32>,
        threads: usize,
    ) -> crate::LayerInfo {
        let entries = entries_from_dir(src, &DirOptions::default()).unwrap();
        let opts = LayerOptions {
            compression: kind,
            level,
            source_date_epoch: Some(0),
            threads: Some(threads),
        };
        write_layer(store, entries, &opts).unwrap()
    }

    #[test]
    fn a_deferred_layer_compresses_to_the_bytes_an_eager_write_makes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        tree(&src);
        let store = Store::open(&t.path().join("store")).unwrap();
        let tar = write(&store, &src, Compression::None, None, 1);
        assert_eq!(
            tar.digest, tar.diff_id,
            "an uncompressed blob is named by its diffID"
        );
        for (kind, level) in [
            (Compression::Gzip, None),
            (Compression::Gzip, Some(1)),
            (Compression::Gzip, Some(9)),
            (Compression::Zstd, None),
            (Compression::Zstd, Some(7)),
        ] {
            let eager = write(&store, &src, kind, level, 3);
            assert_eq!(eager.diff_id, tar.diff_id);
            for threads in [1, 2, 5] {
                let lazy =
                    compressed_with_threads(&store, &tar.diff_id, kind, level, threads).unwrap();
                assert_eq!(
                    lazy.digest, eager.digest,
                    "{kind:?} {level:?} {threads} threads"
                );
                assert_eq!(lazy.size, eager.size);
                assert_eq!(lazy.media_type, kind.oci_layer_media_type());
                // Forget the mapping, so that the next thread count compresses again.
                store
                    .remove_record(RECORD, &record_key(&tar.diff_id, kind, level))
                    .unwrap();
            }
        }
        let none = compressed(&store, &tar.diff_id, Compression::None, None).unwrap();
        assert_eq!((none.digest, none.size), (tar.digest, tar.size));
    }

    #[test]
    fn the_mapping_is_reused_and_keeps_its_blob_through_prune() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        tree(&src);
        let store = Store::open(&t.path().join("store")).unwrap();
        let tar = write(&store, &src, Compression::None, None, 1);
        let first = compressed(&store, &tar.diff_id, Compression::Gzip, None).unwrap();
        // The default level and its number are one mapping.
        assert_eq!(
            record_key(&tar.diff_id, Compression::Gzip, None),
            record_key(&tar.diff_id, Compression::Gzip, Some(6))
        );
        assert_ne!(
            record_key(&tar.diff_id, Compression::Gzip, None),
            record_key(&tar.diff_id, Compression::Zstd, None)
        );
        // Prune (without --all) keeps the compressed blob the record names; the tar, which no
        // record names here, goes.
        let report = store.prune(PruneOptions::default()).unwrap();
        assert!(report.removed_blobs.contains(&tar.diff_id));
        assert!(store.has_blob(&first.digest));
        // Without the tar, the record answers.
        let again = compressed(&store, &tar.diff_id, Compression::Gzip, Some(6)).unwrap();
        assert_eq!(again, first);
        // A record whose blob is gone is not trusted: the layer is compressed again (here
        // impossible, the tar is gone too).
        std::fs::remove_file(store.blob_path(&first.digest)).unwrap();
        assert!(matches!(
            compressed(&store, &tar.diff_id, Compression::Gzip, None),
            Err(LazyBlobError::Store { .. })
        ));
        assert!(store.fsck().unwrap().corrupt.is_empty());
    }
}
