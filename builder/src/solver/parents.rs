//! The existing parent directories of what a step writes, carried into its layer unchanged.
//!
//! BuildKit's layers hold every parent directory of a changed path, with that directory's own
//! mode and owner (its differ walks up from each change). A layer without them is still right
//! when applied onto the merged tree (containerd, umoci), but wrong wherever a layer is applied
//! on its own — Docker's overlay2 graph driver, rbuild's overlay snapshots — where a missing
//! parent is re-created 0755 root and hides the real one: `WORKDIR /tmp/x` then made `/tmp`
//! 0755 in every later RUN (and in the image, once a RUN wrote below `/tmp`). So COPY, ADD and
//! WORKDIR write each existing parent as it is below them; directories they create get their
//! own metadata from the step.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_layers::tar::{EntryKind, LayerEntry};

use super::lazy_rootfs::{DirMeta, LazyRootFs};
use super::rootfs::components;
use super::BuildError;

/// A key input of the steps whose layers carry their parents, so layers written before they
/// did (with `/tmp` re-created 0755 in snapshots) are not reused from an old cache.
pub const KEY_INPUT: (&str, &str) = ("parents", "kept");

/// Entries for the parent directories of `entries` that exist below (in `rootfs`) and are not
/// written by the step itself, each with its existing mode and owner. A parent that is a
/// symlink ends the walk: what lies beyond it is reached through the link.
pub fn existing_parents(
    rootfs: &LazyRootFs<'_>,
    entries: &[LayerEntry],
    epoch: i64,
) -> Result<Vec<LayerEntry>, BuildError> {
    let written: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut known: BTreeMap<String, DirMeta> = BTreeMap::new();
    let mut out = Vec::new();
    for e in entries {
        let comps = components(&e.path);
        for i in 1..comps.len() {
            let p = comps[..i].join("/");
            // The step writes this directory itself (whatever was there is replaced).
            if written.contains(p.as_str()) {
                continue;
            }
            let meta = match known.get(&p) {
                Some(m) => *m,
                None => {
                    let m = rootfs.dir_meta(&p)?;
                    known.insert(p.clone(), m);
                    if let DirMeta::Dir { mode, uid, gid } = m {
                        out.push(LayerEntry {
                            path: p,
                            kind: EntryKind::Dir,
                            mode,
                            uid,
                            gid,
                            mtime: epoch,
                            xattrs: BTreeMap::new(),
                        });
                    }
                    m
                }
            };
            if matches!(meta, DirMeta::Symlink | DirMeta::NotDir) {
                break;
            }
        }
    }
    Ok(out)
}
