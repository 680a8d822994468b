//! Cache mounts (`RUN --mount=type=cache,id=ID`) that travel with an exported cache
//! (`--cache-to …,cache-mounts=ID`): a mount's directory is written as a layer tar, and a later
//! build on a fresh store unpacks it before the first RUN that uses the id. BuildKit keeps cache
//! mounts on its own host only (moby/buildkit#1474); package-manager caches are what make
//! dependency steps cheap on ephemeral CI runners when they do miss. Importing is the engine's
//! (`solver::run::cache_dirs`), through `ImportedRecords::cache_mount`.

use rbuild_layers::store::Store;
use rbuild_layers::tar::{entries_from_dir, write_layer, DirOptions, LayerOptions};
use rbuild_layers::Compression;
use rbuild_registry::cache_map::CacheLayer;

use crate::solver::run::cache_mount_dir;

/// Writes cache mount `id`'s directory as a layer; `None` when this store has no such mount.
pub fn export_mount(
    store: &Store,
    id: &str,
    compression: Compression,
    level: Option<i32>,
) -> Result<Option<CacheLayer>, rbuild_layers::tar::LayerError> {
    let dir = cache_mount_dir(store, id);
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
