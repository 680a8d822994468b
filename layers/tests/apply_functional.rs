//! Functional behaviour of `apply_layer` and the snapshot cache: whiteouts and opaque
//! directories (OCI image-spec layer.md), metadata restoration, applying onto existing trees,
//! overlay-format snapshots, DiffIDs, and the chain-ID cache race.

mod apply_common;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use apply_common::*;
use rbuild_layers::{apply_layer, chain_id, ApplyOptions, Digest, SnapshotCache, WhiteoutMode};

fn overlay() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    }
}

fn lower() -> Vec<u8> {
    tar_of([
        H::dir("etc"),
        H::file("etc/passwd", "root"),
        H::file("etc/group", "root"),
        H::dir("var/cache"),
        H::file("var/cache/a", "a"),
        H::file("var/cache/sub/b", "b"),
        H::file("keep", "k"),
    ])
}

#[test]
fn whiteouts_delete_lower_files_and_directories() {
    let sb = Sandbox::new();
    sb.apply(&lower()).expect("lower");
    sb.apply(&tar_of([
        H::file("etc/.wh.group", ""),
        H::file("var/.wh.cache", ""),
    ]))
    .expect("upper");
    assert_eq!(tree(&sb.root), ["etc", "etc/passwd", "keep", "var"]);
}

#[test]
fn opaque_directory_hides_lower_contents_but_keeps_its_own() {
    let sb = Sandbox::new();
    sb.apply(&lower()).expect("lower");
    sb.apply(&tar_of([
        H::dir("var/cache"),
        H::file("var/cache/.wh..wh..opq", ""),
        H::file("var/cache/new", "n"),
    ]))
    .expect("upper");
    assert_eq!(tree(&sb.root.join("var")), ["cache", "cache/new"]);
}

#[test]
fn opaque_marker_after_siblings_keeps_this_layers_entries() {
    // Out of order (containerd tracks what the layer unpacked for the same reason).
    let sb = Sandbox::new();
    sb.apply(&lower()).expect("lower");
    sb.apply(&tar_of([
        H::file("var/cache/new", "n"),
        H::file("var/cache/sub/c", "c"),
        H::file("var/cache/.wh..wh..opq", ""),
    ]))
    .expect("upper");
    assert_eq!(tree(&sb.root.join("var/cache")), ["new", "sub", "sub/c"]);
}

#[test]
fn whiteout_does_not_hide_entries_of_its_own_layer() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([H::file("a", "mine"), H::file(".wh.a", "")]))
        .expect("valid");
    assert_eq!(std::fs::read(sb.root_path("a")).expect("read"), b"mine");
}

#[test]
fn whiteout_of_a_missing_entry_is_fine() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::file("nothing/.wh.here", ""),
        H::file(".wh.absent", ""),
    ]))
    .expect("valid");
    assert!(tree(&sb.root).is_empty());
}

#[test]
fn hardlinks_inside_the_layer_share_an_inode() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::file("bin/busybox", "bb").mode(0o755),
        H::hardlink("bin/sh", "bin/busybox"),
    ]))
    .expect("valid");
    let a = std::fs::metadata(sb.root_path("bin/busybox")).expect("stat");
    let b = std::fs::metadata(sb.root_path("bin/sh")).expect("stat");
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
}

#[test]
fn modes_owners_xattrs_and_times_are_restored() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.add(
        H::dir("d")
            .mode(0o2775)
            .owner(1000, 1001)
            .mtime(1_000_000_000),
    );
    t.add(H::dir("tmp").mode(0o1777).mtime(1_000_000_001));
    t.add(
        H::file("d/suid", "x")
            .mode(0o4755)
            .owner(1000, 1001)
            .mtime(1_234_567_890),
    );
    t.pax(&[
        ("SCHILY.xattr.user.note", b"hi\0there"),
        ("mtime", b"1700000000.25"),
    ]);
    t.add(H::file("d/xattr", "x"));
    t.add(
        H::symlink("d/link", "suid")
            .owner(7, 8)
            .mtime(1_100_000_000),
    );
    t.add(H::dir("ro").mode(0o555));
    t.add(H::file("ro/inside", "x").mode(0o400));
    let rep = sb.apply(&t.finish()).expect("valid");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);

    let md = |p: &str| std::fs::symlink_metadata(sb.root_path(p)).expect("lstat");
    let d = md("d");
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o2775, 1000, 1001));
    assert_eq!(
        d.mtime(),
        1_000_000_000,
        "directory mtime is set after its children"
    );
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    let suid = md("d/suid");
    assert_eq!(
        (suid.mode() & 0o7777, suid.uid()),
        (0o4755, 1000),
        "chmod after chown"
    );
    assert_eq!(suid.mtime(), 1_234_567_890);
    let x = md("d/xattr");
    assert_eq!((x.mtime(), x.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(
        xattr::get(sb.root_path("d/xattr"), "user.note").expect("getxattr"),
        Some(b"hi\0there".to_vec())
    );
    let l = md("d/link");
    assert!(l.file_type().is_symlink());
    assert_eq!((l.uid(), l.gid(), l.mtime()), (7, 8, 1_100_000_000));
    assert_eq!(md("ro").mode() & 0o7777, 0o555);
    assert!(md("ro/inside").is_file());
}

#[test]
fn ownership_is_left_alone_without_same_owner() {
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        same_owner: false,
        ..ApplyOptions::default()
    };
    sb.apply_with(&tar_of([H::file("f", "x").owner(1234, 1234)]), &opts)
        .expect("valid");
    assert_eq!(
        std::fs::metadata(sb.root_path("f")).expect("stat").uid(),
        rustix::process::geteuid().as_raw()
    );
}

#[test]
fn applying_onto_an_existing_tree() {
    let sb = Sandbox::new();
    sb.apply(&lower()).expect("lower");
    sb.apply(&tar_of([
        // A directory over a directory keeps its contents and takes the new metadata.
        H::dir("etc").mode(0o700),
        // A file over a directory removes the directory.
        H::file("var/cache", "now a file"),
        // A directory over a file replaces the file.
        H::dir("keep"),
        H::file("keep/inner", "i"),
        // A file over a file replaces its contents.
        H::file("etc/passwd", "new"),
    ]))
    .expect("upper");
    assert_eq!(
        tree(&sb.root),
        [
            "etc",
            "etc/group",
            "etc/passwd",
            "keep",
            "keep/inner",
            "var",
            "var/cache"
        ]
    );
    assert_eq!(
        std::fs::metadata(sb.root_path("etc")).expect("stat").mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::read(sb.root_path("etc/passwd")).expect("read"),
        b"new"
    );
    assert_eq!(
        std::fs::read(sb.root_path("var/cache")).expect("read"),
        b"now a file"
    );
}

#[test]
fn devices_and_fifos_are_created_as_root_when_asked_for_type_local() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    let mut null = H::new(CHAR, "dev/null").mode(0o666);
    null.dev = (1, 3);
    let opts = ApplyOptions {
        devices: rbuild_layers::DeviceMode::Create,
        ..ApplyOptions::default()
    };
    let rep = sb
        .apply_with(
            &tar_of([null, H::new(FIFO, "dev/initctl").mode(0o600)]),
            &opts,
        )
        .expect("valid");
    assert!(rep.warnings.is_empty());
    let md = std::fs::symlink_metadata(sb.root_path("dev/null")).expect("lstat");
    assert!(md.file_type().is_char_device());
    assert_eq!(
        (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())),
        (1, 3)
    );
    assert_eq!(md.mode() & 0o7777, 0o666);
    assert!(std::fs::symlink_metadata(sb.root_path("dev/initctl"))
        .expect("lstat")
        .file_type()
        .is_fifo());
}

#[test]
fn overlay_mode_writes_overlayfs_whiteouts_and_opaque_xattrs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    sb.apply_with(
        &tar_of([
            H::file("etc/.wh.group", ""),
            H::dir("var/cache"),
            H::file("var/cache/.wh..wh..opq", ""),
            H::file("var/cache/new", "n"),
        ]),
        &overlay(),
    )
    .expect("valid");
    let wh = std::fs::symlink_metadata(sb.root_path("etc/group")).expect("whiteout device");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(sb.root_path("var/cache"), "trusted.overlay.opaque").expect("getxattr"),
        Some(b"y".to_vec())
    );
    assert!(!sb.root_path("etc/.wh.group").exists());
    assert_eq!(tree(&sb.root.join("var/cache")), ["new"]);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn diff_id_is_the_sha256_of_the_uncompressed_stream() {
    let mut tar = lower();
    tar.extend_from_slice(&[0u8; 4096]); // trailing zeros after the end marker still count
    let expected = Digest::sha256_of(&tar);
    let compressed: Vec<Vec<u8>> = vec![
        tar.clone(),
        gzip(&tar),
        zstd::encode_all(&tar[..], 3).expect("zstd"),
    ];
    for c in compressed {
        let sb = Sandbox::new();
        let rep = sb.apply(&c).expect("valid");
        assert_eq!(rep.diff_id, expected);
        assert_eq!(rep.bytes, tar.len() as u64);
        assert_eq!(rep.entries, 7);
        assert_eq!(
            std::fs::read(sb.root_path("var/cache/sub/b")).expect("read"),
            b"b"
        );
    }
}

#[test]
fn layers_written_by_the_tar_crate_round_trip() {
    // GNU long names, long link targets and PAX headers as produced by a real writer.
    let long = format!("{}/file", "long-directory-name".repeat(8));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o640);
    h.set_size(5);
    b.append_data(&mut h, &long, &b"hello"[..]).expect("append");
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    b.append_link(&mut l, "link", &long).expect("append link");
    let data = b.into_inner().expect("finish");
    let sb = Sandbox::new();
    sb.apply(&data).expect("valid");
    assert_eq!(std::fs::read(sb.root.join(&long)).expect("read"), b"hello");
    assert_eq!(
        std::fs::read_link(sb.root_path("link"))
            .expect("readlink")
            .to_str(),
        Some(long.as_str())
    );
}

#[test]
fn snapshot_cache_race_has_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = SnapshotCache::new(dir.path()).expect("cache");
    let layer = gzip(&lower());
    let id = chain_id(None, &Digest::sha256_of(&lower()));
    let barrier = std::sync::Barrier::new(2);
    let paths: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    cache
                        .get_or_create(&id, |tmp: &Path| {
                            barrier.wait(); // both are creating at once
                            apply_layer(tmp, &layer[..], &overlay()).map(|r| r.placeholders)
                        })
                        .expect("snapshot")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(paths[0], paths[1]);
    let entry = format!("{}{}", rbuild_layers::snapshot::SNAPSHOT_PREFIX, id.hex());
    assert_eq!(paths[0], dir.path().join(&entry).join("tree"));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        [std::ffi::OsString::from(entry)],
        "temporaries removed"
    );
    assert_eq!(tree(&paths[0]).len(), 9);
    // A second call reuses the snapshot without creating.
    let again = cache
        .get_or_create(&id, |_: &Path| -> Result<Vec<_>, std::io::Error> {
            panic!("must not be called for a cached snapshot")
        })
        .expect("cached");
    assert_eq!(again, paths[0]);
}

#[test]
fn overlay_snapshots_stack_like_the_flattened_tree() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let upper = tar_of([
        H::file("etc/.wh.group", ""),
        H::dir("var/cache"),
        H::file("var/cache/.wh..wh..opq", ""),
        H::file("var/cache/new", "n"),
        H::file("added", "a"),
    ]);
    let flat = Sandbox::new();
    flat.apply(&lower()).expect("lower");
    flat.apply(&upper).expect("upper");

    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let cache = SnapshotCache::new(&dir.path().join("snapshots")).expect("cache");
    let l0 = Digest::sha256_of(&lower());
    let c0 = chain_id(None, &l0);
    let c1 = chain_id(Some(&c0), &Digest::sha256_of(&upper));
    let s0 = cache
        .get_or_create(&c0, |p: &Path| {
            apply_layer(p, &lower()[..], &overlay()).map(|r| r.placeholders)
        })
        .expect("s0");
    let s1 = cache
        .get_or_create(&c1, |p: &Path| {
            apply_layer(p, &upper[..], &overlay()).map(|r| r.placeholders)
        })
        .expect("s1");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let opts = format!("lowerdir={}:{}", s1.display(), s0.display());
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&mnt)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount overlayfs here");
        return;
    }
    let seen = tree(&mnt);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(seen, tree(&flat.root));
}
