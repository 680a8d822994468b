//! Cache mounts (`RUN --mount=type=cache,id=ID`) that travel with an exported cache
//! (`--cache-to …,cache-mounts=ID`): a mount's directory is written as a layer tar, and a later
//! build on a fresh store unpacks it before the first RUN that uses the id. BuildKit keeps cache
//! mounts on its own host only (moby/buildkit#1474); package-manager caches are what make
//! dependency steps cheap on ephemeral CI runners when they do miss.

use std::path::{Path, PathBuf};

use rbuild_layers::apply::{apply_layer, ApplyOptions};
use rbuild_layers::store::Store;
use rbuild_layers::tar::{entries_from_dir, write_layer, DirOptions, LayerOptions};
use rbuild_layers::{Compression, Digest};
use rbuild_registry::cache::CacheLayer;

use super::blobs::BlobFetcher;
use crate::solver::{BuildError, Engine, LayerRef};

/// The directory of shared (or locked) cache mount `id` in the store. The id is hashed into the
/// name: it is never a path on the host.
pub fn shared_dir(store: &Store, id: &str) -> PathBuf {
    store
        .root()
        .join("cache-mounts")
        .join(Digest::sha256_of(id.as_bytes()).hex())
}

/// Writes cache mount `id`'s directory as a layer; `None` when this store has no such mount.
pub fn export_mount(
    store: &Store,
    id: &str,
    compression: Compression,
    level: Option<i32>,
) -> Result<Option<CacheLayer>, rbuild_layers::tar::LayerError> {
    let dir = shared_dir(store, id);
    if !dir.is_dir() {
        return Ok(None);
    }
    let entries = entries_from_dir(&dir, &DirOptions::default())?;
    let info = write_layer(
        store,
        entries,
        &LayerOptions {
            compression,
            level,
            source_date_epoch: None,
            threads: None,
        },
    )?;
    Ok(Some(CacheLayer {
        descriptor: rbuild_layers::Descriptor::new(info.media_type, info.digest, info.size),
        diff_id: info.diff_id,
        index: None,
    }))
}

/// Fills the new cache directory `dir` with the imported contents of `layer` (fetched now).
pub fn import_mount(
    engine: &Engine<'_>,
    fetcher: &BlobFetcher,
    layer: &CacheLayer,
    dir: &Path,
) -> Result<(), BuildError> {
    engine.fetch_layers(&[LayerRef {
        descriptor: layer.descriptor.clone(),
        diff_id: layer.diff_id.clone(),
    }])?;
    let blob = engine.store.open_blob(&layer.descriptor.digest)?;
    let report =
        apply_layer(dir, blob, &ApplyOptions::default()).map_err(|source| BuildError::Apply {
            digest: layer.descriptor.digest.clone(),
            source,
        })?;
    if report.diff_id == layer.diff_id {
        Ok(())
    } else if fetcher.is_imported(&layer.descriptor.digest) {
        Err(BuildError::ImportedCache {
            digest: layer.descriptor.digest.clone(),
            reason: format!(
                "it unpacks to {}, not to the diffID {} the cache names",
                report.diff_id, layer.diff_id
            ),
        })
    } else {
        Err(BuildError::LayerMismatch {
            digest: layer.descriptor.digest.clone(),
            expected: layer.diff_id.clone(),
            actual: report.diff_id,
        })
    }
}
