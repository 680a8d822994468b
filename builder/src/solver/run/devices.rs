//! The image's device nodes in a RUN step (see `rbuild_layers::device`): which placeholders of
//! the step's lower layers the sandbox may turn into real nodes, and, after the command, taking
//! back from the overlay upper directory the nodes it left untouched, so that the step's layer
//! holds a device only where the command changed, replaced or removed it (as with BuildKit,
//! whose lower layers hold the real nodes).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rbuild_layers::device::{placeholder_of, remove_if_untouched, NodeMeta, Placeholder};
use rbuild_layers::snapshot::placeholders_of;

use super::io;
use crate::executor::SandboxDevice;
use crate::solver::rootfs::RootFs;
use crate::solver::BuildError;

/// The placeholders any lower lists, one per path (the topmost lower's record wins: the
/// sandbox materializes a path only if that record is what it sees there). Paths that are not
/// UTF-8 stay placeholders: the engine could not look them up to take an untouched node back,
/// and a layer with an extra entry would differ from BuildKit's.
pub fn candidates(rootfs: &RootFs) -> Result<Vec<Placeholder>, BuildError> {
    let mut by_path = BTreeMap::new();
    for lower in &rootfs.lowers {
        for p in placeholders_of(lower)? {
            if std::str::from_utf8(&p.path).is_err() {
                continue;
            }
            by_path.insert(p.path.clone(), p);
        }
    }
    Ok(by_path.into_values().collect())
}

pub fn for_sandbox(candidates: &[Placeholder]) -> Vec<SandboxDevice> {
    candidates
        .iter()
        .map(SandboxDevice::from_placeholder)
        .collect()
}

/// Removes from `upper` each node the sandbox made that the command left as it was made (the
/// visible placeholder's record, owner and mtime), so the placeholder shows through again.
pub fn take_back_untouched(
    upper: &Path,
    rootfs: &RootFs,
    candidates: &[Placeholder],
) -> Result<(), BuildError> {
    for p in candidates {
        let Some(meta) = visible_placeholder(rootfs, p) else {
            continue;
        };
        remove_if_untouched(upper, p, &meta)
            .map_err(io("removing an untouched device node in", upper))?;
    }
    Ok(())
}

/// The metadata of the placeholder the merged view shows at `p`'s path, if it records `p`.
fn visible_placeholder(rootfs: &RootFs, p: &Placeholder) -> Option<NodeMeta> {
    let path = std::str::from_utf8(&p.path).ok()?;
    let real = rootfs.lookup(path)?.real?;
    let meta = std::fs::symlink_metadata(&real).ok()?;
    (placeholder_of(&real, &meta)? == p.record).then(|| NodeMeta {
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
    })
}
