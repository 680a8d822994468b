//! A layer applied with a donor (the tree it was just written from, see `apply/donor.rs`) gives
//! the same snapshot as the layer applied alone: every attribute a later step could observe —
//! type, mode, owner, times, size, bytes, link target, device numbers, xattrs, link count,
//! sparseness — is compared, with donor files that must be refused (hard-linked, sparse), a
//! donor file changed after the layer was written, and xattrs the layer does not carry.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rbuild_layers::store::Store;
use rbuild_layers::tar::{entries_from_overlay_upper, write_layer, LayerOptions};
use rbuild_layers::whiteout::overlay::OverlayXattrs;
use rbuild_layers::{apply_layer, ApplyOptions, WhiteoutMode};

/// Everything observable about one path of a tree.
fn describe(path: &Path) -> String {
    let meta = std::fs::symlink_metadata(path).expect("lstat");
    let ft = meta.file_type();
    let mut xattrs = BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    if let Ok(n) = rustix::fs::llistxattr(path, names.as_mut_slice()) {
        for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let mut value = vec![0u8; 64 * 1024];
            let len = rustix::fs::lgetxattr(path, name, value.as_mut_slice()).unwrap_or(0);
            xattrs.insert(
                String::from_utf8_lossy(name).into_owned(),
                value[..len].to_vec(),
            );
        }
    }
    let body = if ft.is_file() {
        rbuild_layers::Digest::sha256_of(&std::fs::read(path).expect("read")).to_string()
    } else if ft.is_symlink() {
        format!("{:?}", std::fs::read_link(path).expect("readlink"))
    } else {
        String::new()
    };
    let dense = meta.blocks() * 512 >= meta.size();
    // An overlay whiteout (0:0 character device) is made at unpack time, with that time, by
    // either path.
    let whiteout = ft.is_char_device() && meta.rdev() == 0;
    let mtime = if whiteout {
        "(made at unpack)".to_string()
    } else {
        format!("{}.{}", meta.mtime(), meta.mtime_nsec())
    };
    format!(
        "mode={:o} uid={} gid={} mtime={mtime} size={} rdev={} nlink={} dense={dense} xattrs={xattrs:?} body={body}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        if ft.is_dir() { 0 } else { meta.size() },
        meta.rdev(),
        if ft.is_dir() { 0 } else { meta.nlink() },
    )
}

fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).expect("list") {
            let path = e.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            out.insert(rel, describe(&path));
            if std::fs::symlink_metadata(&path).expect("lstat").is_dir() {
                walk(root, &path, out);
            }
        }
    }
    // The root directory is the caller's, not the layer's.
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).expect("setxattr");
}

/// An overlay upper directory as a RUN leaves it.
fn make_upper(upper: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = upper.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, data).expect("write");
    };
    w("usr/bin/tool", &vec![7u8; 300_000]);
    w(
        "usr/lib/libbig.so",
        &(0..2_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    w("usr/lib/empty", b"");
    w("etc/conf", b"key=value\n");
    w("etc/changed-later", b"original bytes");
    w("etc/with-xattr", b"x");
    w("etc/overlay-origin", b"o");
    w("bin/suid", b"#!/bin/sh\n");
    std::fs::set_permissions(
        upper.join("bin/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");
    std::os::unix::fs::chown(upper.join("etc/conf"), Some(1234), Some(5678)).expect("chown");
    set_xattr(&upper.join("etc/with-xattr"), "user.kept", b"yes");
    // Hard links inside the layer: the donor file has two links, so it is written anew.
    w("data/a", b"linked");
    std::fs::hard_link(upper.join("data/a"), upper.join("data/b")).expect("link");
    // A sparse file would stay sparse if adopted; an unpacked one is dense.
    let sparse = std::fs::File::create(upper.join("data/sparse")).expect("create");
    sparse.set_len(1 << 20).expect("truncate");
    drop(sparse);
    std::os::unix::fs::symlink("../lib/libbig.so", upper.join("usr/bin/link")).expect("symlink");
    std::fs::create_dir_all(upper.join("private")).expect("mkdir");
    std::fs::set_permissions(
        upper.join("private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    // Overlay's deletions and opaque directories.
    let whiteout = upper.join("etc/removed");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &whiteout,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .expect("mknod whiteout");
    std::fs::create_dir_all(upper.join("var/cache")).expect("mkdir");
    set_xattr(&upper.join("var/cache"), "trusted.overlay.opaque", b"y");
    w("var/cache/fresh", b"f");
}

#[test]
fn a_donor_gives_the_snapshot_apply_layer_gives_alone() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (whiteouts, trusted xattrs, chown)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let upper = dir.path().join("upper");
    std::fs::create_dir(&upper).expect("mkdir");
    make_upper(&upper);
    let entries = entries_from_overlay_upper(&upper, &[], OverlayXattrs::Trusted).expect("entries");
    let info = write_layer(&store, entries, &LayerOptions::default()).expect("layer");

    // After the layer was written: a donor file's bytes change (same size), and xattrs the
    // layer does not carry appear (overlayfs sets its own on copied-up files).
    std::fs::write(upper.join("etc/changed-later"), b"CHANGED bytes!").expect("write");
    set_xattr(&upper.join("etc/with-xattr"), "user.not-in-layer", b"1");
    set_xattr(
        &upper.join("etc/overlay-origin"),
        "trusted.overlay.origin",
        b"\0fh",
    );

    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    };
    let alone = dir.path().join("alone");
    std::fs::create_dir(&alone).expect("mkdir");
    let plain = apply_layer(&alone, store.open_blob(&info.digest).expect("blob"), &opts)
        .expect("apply alone");
    assert_eq!(plain.adopted, 0);

    let adopted = dir.path().join("adopted");
    std::fs::create_dir(&adopted).expect("mkdir");
    let with_donor = ApplyOptions {
        donor: Some(upper.clone()),
        ..opts
    };
    let report = apply_layer(
        &adopted,
        store.open_blob(&info.digest).expect("blob"),
        &with_donor,
    )
    .expect("apply with donor");

    assert_eq!(report.diff_id, info.diff_id);
    let (got, want) = (tree(&adopted), tree(&alone));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (path, w) in &want {
        assert_eq!(&got[path], w, "{path}");
    }
    // tool, libbig.so, empty, conf, changed-later, with-xattr, overlay-origin, suid, fresh;
    // not data/a and data/b (two links) nor data/sparse.
    assert_eq!(report.adopted, 9);
    assert!(
        !upper.join("usr/lib/libbig.so").exists(),
        "moved, not copied"
    );
    assert!(
        upper.join("data/sparse").exists(),
        "a sparse donor file is left where it is"
    );
}

#[test]
fn a_missing_or_unusable_donor_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).expect("mkdir");
    std::fs::write(src.join("d/f"), b"contents").expect("write");
    let entries = entries_from_overlay_upper(&src, &[], OverlayXattrs::Trusted).expect("entries");
    let info = write_layer(&store, entries, &LayerOptions::default()).expect("layer");
    // The donor's file at the same path is a directory, then the donor does not exist.
    let odd = dir.path().join("odd");
    std::fs::create_dir_all(odd.join("d/f")).expect("mkdir");
    for donor in [odd, dir.path().join("absent")] {
        let out = tempfile::tempdir_in(dir.path()).expect("out");
        let opts = ApplyOptions {
            donor: Some(donor),
            ..ApplyOptions::default()
        };
        let report = apply_layer(
            out.path(),
            store.open_blob(&info.digest).expect("blob"),
            &opts,
        )
        .expect("apply");
        assert_eq!(report.adopted, 0);
        assert_eq!(
            std::fs::read(out.path().join("d/f")).expect("read"),
            b"contents"
        );
    }
}
