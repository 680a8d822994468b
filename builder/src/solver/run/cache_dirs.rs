//! The directories of `RUN --mount=type=cache`: where a shared one lives in the store, and how
//! a new one is filled — from a stage (`from=…,source=…`) or from the layer an imported cache
//! carried for its id (`--cache-to …,cache-mounts=ID`, see `remote_cache::mounts`).

use std::path::{Path, PathBuf};

use rbuild_layers::apply::{apply_layer, ApplyOptions};
use rbuild_layers::store::Store;
use rbuild_layers::Digest;

use super::mounts::io;
use super::RunError;
use crate::solver::stage::{LayerRef, StageState};
use crate::solver::{BuildError, Engine};

/// The directory of shared (or locked) cache mount `id` in the store (in this process's id
/// mapping's set, see `Store::cache_mounts_dir`). The id is hashed into the name: it is never a
/// path on the host.
pub fn shared_dir(store: &Store, id: &str) -> PathBuf {
    store
        .cache_mounts_dir()
        .join(Digest::sha256_of(id.as_bytes()).hex())
}

/// Fills the new cache directory `dir` with the contents of `layer` (fetched now).
pub(super) fn fill_from_layer(
    engine: &Engine<'_>,
    layer: &LayerRef,
    dir: &Path,
) -> Result<(), BuildError> {
    engine.fetch_layers(std::slice::from_ref(layer))?;
    let blob = engine.store.open_blob(&layer.descriptor.digest)?;
    let report =
        apply_layer(dir, blob, &ApplyOptions::default()).map_err(|source| BuildError::Apply {
            digest: layer.descriptor.digest.clone(),
            source,
        })?;
    if report.diff_id == layer.diff_id {
        Ok(())
    } else if engine
        .seams
        .layers
        .named_by_imported_cache(&layer.descriptor.digest)
    {
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

/// Fills a new cache directory with `rel` of stage `st` (`type=cache,from=…,source=…`): the
/// stage is mounted read-only in rbuild's private namespace and its tree copied, symlinks as
/// symlinks (never followed), ownership and modes kept.
pub(super) fn seed(
    engine: &Engine<'_>,
    st: &StageState,
    rel: &str,
    dir: &Path,
    scratch: &Path,
    n: usize,
) -> Result<(), BuildError> {
    let rootfs = crate::solver::stage::snapshot_rootfs(engine, &st.layers)?;
    let view = scratch.join(format!("cache-seed-{n}"));
    std::fs::create_dir_all(&view).map_err(io("creating", &view))?;
    let root = if rootfs.lowers.len() == 1 {
        rootfs.lowers[0].clone()
    } else {
        view.clone()
    };
    let _guard = if rootfs.lowers.len() > 1 {
        super::readonly_view(&rootfs, &view, false)?
    } else {
        None
    };
    let src = if rel == "." { root } else { root.join(rel) };
    let md = std::fs::symlink_metadata(&src).map_err(io("reading the cache seed", &src))?;
    if !md.is_dir() {
        return Err(BuildError::Run(RunError::CacheSeedNotDir(rel.to_string())));
    }
    copy_tree(&src, dir)
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(src).map_err(io("listing", src))? {
        let entry = entry.map_err(io("listing", src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from).map_err(io("reading", &from))?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(io("creating", &to))?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(io("reading link", &from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io("creating link", &to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io("copying", &from))?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))
            .map_err(io("setting the owner of", &to))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(io("setting the mode of", &to))?;
        }
    }
    Ok(())
}
