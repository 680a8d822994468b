//! Device nodes from an image are data in the store (SECURITY.md, "Device nodes and special
//! files from images"): a layer's `0666` block device with the host disk's major/minor must
//! never become a usable device node in a snapshot, and a layer written back from such a tree
//! must hold the same device entries, byte for byte.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod apply_common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use apply_common::*;
use rbuild_layers::{
    apply_layer, chain_id, entries_from_dir, write_layer, ApplyOptions, Compression, EntryKind,
    LayerEntry, LayerOptions, SnapshotCache, Store, WhiteoutMode,
};

fn entry(path: &str, kind: EntryKind, mode: u32) -> LayerEntry {
    LayerEntry {
        path: path.into(),
        kind,
        mode,
        uid: 0,
        gid: 6,
        mtime: 1_600_000_000,
        xattrs: BTreeMap::new(),
    }
}

/// A layer with the host's first disk as a world-writable block device, and `/dev/null`.
fn hostile_entries(data: &Path) -> Vec<LayerEntry> {
    std::fs::write(data, b"x\n").unwrap();
    vec![
        entry("dev", EntryKind::Dir, 0o755),
        entry("dev/sda", EntryKind::BlockDev { major: 8, minor: 0 }, 0o666),
        entry("dev/null", EntryKind::CharDev { major: 1, minor: 3 }, 0o666),
        entry("etc", EntryKind::Dir, 0o755),
        entry(
            "etc/x",
            EntryKind::File {
                source: data.to_path_buf(),
            },
            0o644,
        ),
    ]
}

/// Every block or character device under `dir` (not following symlinks), except overlayfs
/// whiteouts (0:0).
fn devices_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        if ft.is_dir() {
            out.extend(devices_under(&e.path()));
        } else if (ft.is_block_device() || ft.is_char_device()) && md.rdev() != 0 {
            out.push(e.path().display().to_string());
        }
    }
    out
}

/// The tar entries of a stored layer: (path, type, mode, major, minor).
fn tar_entries(
    store: &Store,
    digest: &rbuild_layers::Digest,
) -> Vec<(String, char, u32, u32, u32)> {
    let blob = store.open_blob(digest).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                char::from(h.entry_type().as_byte()),
                h.mode().unwrap(),
                h.device_major().unwrap().unwrap_or(0),
                h.device_minor().unwrap().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn block_device_from_a_layer_is_never_a_device_node_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let opts = LayerOptions {
        compression: Compression::Gzip,
        ..LayerOptions::default()
    };
    let layer = write_layer(&store, hostile_entries(&dir.path().join("x")), &opts).unwrap();

    // Unpacked as the build engine unpacks a base image layer: an overlay lower in the store.
    let snapshots = SnapshotCache::new(&store.snapshots_dir()).unwrap();
    let chain = chain_id(None, &layer.diff_id);
    let snap = snapshots
        .get_or_create(&chain, |d| {
            let opts = ApplyOptions {
                whiteouts: WhiteoutMode::Overlay,
                ..ApplyOptions::default()
            };
            apply_layer(d, store.open_blob(&layer.digest).unwrap(), &opts).map(|r| r.placeholders)
        })
        .unwrap();
    // And flattened, as ADD and cache mounts unpack into the store's scratch space.
    let flat = store.tmp_dir().join("flat");
    std::fs::create_dir(&flat).unwrap();
    apply_layer(
        &flat,
        store.open_blob(&layer.digest).unwrap(),
        &ApplyOptions::default(),
    )
    .unwrap();

    assert_eq!(devices_under(store.root()), Vec::<String>::new());
    let sda = std::fs::symlink_metadata(snap.join("dev/sda")).unwrap();
    assert!(sda.is_file() && sda.len() == 0 && sda.mode() & 0o7777 == 0);
    // The snapshot lists its placeholders, for a RUN to make real nodes of in its sandbox.
    let listed: Vec<String> = rbuild_layers::snapshot::placeholders_of(&snap)
        .unwrap()
        .iter()
        .map(|p| format!("{} {}", String::from_utf8_lossy(&p.path), p.record.encode()))
        .collect();
    assert_eq!(listed, ["dev/null c 1 3 666", "dev/sda b 8 0 666"]);

    // Written back from either tree, the layer is byte-identical: same device entries.
    for tree in [&snap, &flat] {
        let again = write_layer(
            &store,
            entries_from_dir(tree, &Default::default()).unwrap(),
            &opts,
        )
        .unwrap();
        assert_eq!(
            tar_entries(&store, &again.digest),
            tar_entries(&store, &layer.digest)
        );
        assert_eq!(again.diff_id, layer.diff_id, "{}", tree.display());
    }
    let devs: Vec<_> = tar_entries(&store, &layer.digest)
        .into_iter()
        .filter(|e| e.1 == '3' || e.1 == '4')
        .collect();
    assert_eq!(
        devs,
        vec![
            ("dev/null".to_string(), '3', 0o666, 1, 3),
            ("dev/sda".to_string(), '4', 0o666, 8, 0)
        ]
    );
}

#[test]
fn a_layer_cannot_forge_a_device_placeholder() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.pax(&[("SCHILY.xattr.user.rbuild.device", b"b 8 0 666")]);
    t.add(H::file("fake", "").mode(0));
    let rep = sb.apply(&t.finish()).expect("valid");
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.contains("user.rbuild.device")),
        "{:?}",
        rep.warnings
    );
    let entries = entries_from_dir(&sb.root, &Default::default()).unwrap();
    assert!(
        matches!(entries[0].kind, EntryKind::File { .. }),
        "{entries:?}"
    );
}
