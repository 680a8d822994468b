//! From the sandbox's overlay upper directory to the step's layer entries: what overlay only
//! copied up, and the directories made only to hold mount points, are left out.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use rbuild_layers::tar::{EntryKind, LayerEntry};

use crate::solver::rootfs::RootFs;

/// Drops directories overlay only copied up (same mode and owner as below, nothing changed
/// under them) and directories made only to hold an excluded mount point.
pub fn prune_copied_up(
    entries: Vec<LayerEntry>,
    rootfs: &RootFs,
    exclude: &[&str],
) -> Vec<LayerEntry> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let depth = |p: &str| p.matches('/').count();
    order.sort_by_key(|&i| std::cmp::Reverse(depth(&entries[i].path)));
    let mut has_child: HashSet<String> = HashSet::new();
    let mut keep = vec![true; entries.len()];
    for i in order {
        let e = &entries[i];
        if matches!(e.kind, EntryKind::Dir) && !has_child.contains(&e.path) {
            let holds_mount_point = exclude
                .iter()
                .any(|x| x.starts_with(&format!("{}/", e.path)));
            let unchanged = rootfs
                .lookup(&e.path)
                .filter(|f| f.is_dir())
                .and_then(|f| std::fs::symlink_metadata(f.real?).ok())
                .is_some_and(|meta| {
                    meta.is_dir()
                        && meta.mode() & 0o7777 == e.mode
                        && u64::from(meta.uid()) == e.uid
                        && u64::from(meta.gid()) == e.gid
                });
            if holds_mount_point || unchanged {
                keep[i] = false;
                continue;
            }
        }
        if let Some((parent, _)) = e.path.rsplit_once('/') {
            has_child.insert(parent.to_string());
        }
    }
    entries
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn copied_up_directories_and_mount_point_parents_are_pruned() {
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir(lower.path().join("etc")).unwrap();
        let meta = std::fs::metadata(lower.path().join("etc")).unwrap();
        let fs = RootFs {
            lowers: vec![lower.path().to_path_buf()],
        };
        let dir = |p: &str, mode: u32| LayerEntry {
            path: p.into(),
            kind: EntryKind::Dir,
            mode,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: 0,
            xattrs: BTreeMap::new(),
        };
        let m = meta.mode() & 0o7777;
        let entries = vec![
            dir("etc", m),
            dir("new", 0o755),
            dir("mnt", 0o755),
            dir("x", 0o700),
        ];
        let kept = prune_copied_up(entries, &fs, &["mnt/cache"]);
        let paths: Vec<&str> = kept.iter().map(|e| e.path.as_str()).collect();
        // etc: copied up unchanged; mnt: only holds a mount point; x and new: created.
        assert_eq!(paths, ["new", "x"]);
    }
}
