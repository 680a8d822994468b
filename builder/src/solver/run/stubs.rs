//! What the sandbox's own mount points leave in a RUN step's layer, as with BuildKit.
//!
//! BuildKit runs the command with runc, which creates the mount points of `/dev`, `/proc` and
//! `/sys` in the root (`mkdir` 0755, owned by root) when the image lacks them; BuildKit's
//! `MountStubsCleaner` (executor/stubs.go) removes only the stubs of `/etc/hosts`,
//! `/etc/resolv.conf` and of the step's `--mount` targets, so those three directories stay in
//! the layer (Docker 20.10 and current BuildKit alike). The stubs it does remove are left out by
//! the upper-directory diff ([`super::diff`]), with their parents as current BuildKit's
//! recursive clean-up does.

use rbuild_layers::tar::{sort_entries, EntryKind, LayerEntry};

use crate::solver::rootfs::RootFs;

/// The mount points runc creates in the root and nobody removes.
const RUNC_MOUNT_POINTS: [&str; 3] = ["dev", "proc", "sys"];

/// A key input of RUN steps, so layers written before the sandbox matched runc's (without these
/// mount points, with a `/run` tmpfs and an `/etc/hostname` that hid what the command wrote
/// there) are not reused from an old cache.
pub const KEY_INPUT: (&str, &str) = ("mount-points", "runc");

/// Adds to `entries` the mount points runc would have created: each of `/dev`, `/proc`, `/sys`
/// that `rootfs` lacks, as a directory 0755 owned by 0:0 with mtime `epoch`.
pub fn add_runc_mount_points(entries: &mut Vec<LayerEntry>, rootfs: &RootFs, epoch: i64) {
    let before = entries.len();
    for path in RUNC_MOUNT_POINTS {
        if rootfs.lookup(path).is_some() || entries.iter().any(|e| e.path == path) {
            continue;
        }
        entries.push(LayerEntry {
            path: path.to_string(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: epoch,
            xattrs: Default::default(),
        });
    }
    if entries.len() != before {
        sort_entries(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(entries: &[LayerEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn only_the_mount_points_the_root_lacks_are_added_as_root_owned_0755_dirs() {
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir(lower.path().join("proc")).unwrap();
        let fs = RootFs {
            lowers: vec![lower.path().to_path_buf()],
        };
        let file = LayerEntry {
            path: "x".into(),
            kind: EntryKind::File {
                source: std::path::PathBuf::from("/dev/null"),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 7,
            xattrs: Default::default(),
        };
        let mut entries = vec![file];
        add_runc_mount_points(&mut entries, &fs, 42);
        assert_eq!(paths(&entries), ["dev", "sys", "x"]);
        for e in &entries[..2] {
            assert!(matches!(e.kind, EntryKind::Dir));
            assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o755, 0, 0, 42));
        }
    }
}
