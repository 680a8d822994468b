use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;

use super::*;
use crate::compression::decompressor;
use crate::whiteout::overlay::OverlayXattrs;
use crate::{Compression, Digest, Store};

/// One entry as read back from a tar with the `tar` crate (PAX values applied).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadBack {
    path: String,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    link: String,
    dev: (u32, u32),
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
    uname_empty: bool,
    had_pax: bool,
}

fn read_layer(store: &Store, info: &LayerInfo, kind: Compression) -> (Vec<u8>, Vec<ReadBack>) {
    let blob = store.open_blob(&info.digest).unwrap();
    let mut raw = Vec::new();
    decompressor(kind, blob)
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(Digest::sha256_of(&raw), info.diff_id);
    assert_eq!(raw.len() as u64, info.uncompressed_size);
    let mut out = Vec::new();
    let mut ar = ::tar::Archive::new(&raw[..]);
    // Raw mode: PAX headers are parsed here, by record length. The `tar` crate's own PAX parser
    // splits records at '\n' and so rejects binary xattr values containing 0x0a.
    let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut had_pax = false;
    for e in ar.entries().unwrap().raw(true) {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if h.entry_type().as_byte() == b'x' {
            pax = parse_pax(&data);
            had_pax = true;
            continue;
        }
        let num = |key: &str, raw: u64| -> u64 {
            pax.get(key)
                .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
                .unwrap_or(raw)
        };
        let mtime = pax
            .get("mtime")
            .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
            .unwrap_or(h.mtime().unwrap() as i64);
        let xattrs = pax
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("SCHILY.xattr.")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        let path = pax
            .get("path")
            .cloned()
            .unwrap_or_else(|| h.path_bytes().to_vec());
        let link = pax
            .get("linkpath")
            .cloned()
            .unwrap_or_else(|| h.link_name_bytes().unwrap_or_default().to_vec());
        out.push(ReadBack {
            path: String::from_utf8(path).unwrap(),
            typeflag: h.entry_type().as_byte(),
            mode: h.mode().unwrap(),
            uid: num("uid", h.uid().unwrap()),
            gid: num("gid", h.gid().unwrap()),
            mtime,
            link: String::from_utf8(link).unwrap(),
            dev: (
                h.device_major().unwrap().unwrap_or(0),
                h.device_minor().unwrap().unwrap_or(0),
            ),
            data,
            xattrs,
            uname_empty: h.username_bytes().is_none_or(|b| b.is_empty())
                && h.groupname_bytes().is_none_or(|b| b.is_empty()),
            had_pax,
        });
        pax.clear();
        had_pax = false;
    }
    (raw, out)
}

/// Parses PAX records (`"<len> key=value\n"`) by their length prefix.
fn parse_pax(mut data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&data[..sp]).unwrap().parse().unwrap();
        let rec = &data[sp + 1..len];
        assert_eq!(data[len - 1], b'\n');
        let eq = rec.iter().position(|&b| b == b'=').unwrap();
        out.insert(
            String::from_utf8(rec[..eq].to_vec()).unwrap(),
            rec[eq + 1..rec.len() - 1].to_vec(),
        );
        data = &data[len..];
    }
    out
}

fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o644, libc::makedev(major, minor)) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const LONG_DIR: &str =
    "a-directory-name-that-is-quite-long-to-push-the-path-past-one-hundred-bytes";

/// A tree with every file type, xattrs, long names and a large uid.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::set_permissions(root.join("etc/hosts"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("bin-ping"), b"\x7fELF").unwrap();
    fs::hard_link(root.join("bin-ping"), root.join("z-hardlink")).unwrap();
    fs::hard_link(root.join("bin-ping"), root.join("a-hardlink")).unwrap();
    symlink("etc/hosts", root.join("link")).unwrap();
    let long = root.join(LONG_DIR).join(LONG_DIR).join(LONG_DIR);
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("file-with-a-long-name.txt"), b"deep").unwrap();
    fs::write(root.join("ünïcode"), b"u").unwrap();
    let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    xattr::set(root.join("etc/hosts"), "user.comment", b"hello").unwrap();
    xattr::set(root.join("etc"), "user.dir", b"d").unwrap();
    // A capability set (v2, cap_net_raw) as setcap writes it.
    let cap = [0, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    xattr::set(root.join("bin-ping"), "security.capability", &cap).unwrap();
    let _ = xattr::set(root.join("etc/hosts"), "trusted.build-host", b"drop me");
    if is_root() {
        mknod(&root.join("null"), libc::S_IFCHR, 1, 3);
        mknod(&root.join("loop9"), libc::S_IFBLK, 7, 9);
        std::os::unix::fs::lchown(root.join("etc/hosts"), Some(3_000_000), Some(3_000_001))
            .unwrap();
    }
    // Fixed mtimes: the tree is copied elsewhere for the determinism test.
    set_mtimes(root, 1_700_000_000);
}

fn set_mtimes(root: &Path, t: i64) {
    let ft = filetime::FileTime::from_unix_time(t, 0);
    for p in walk_paths(root) {
        filetime::set_symlink_file_times(&p, ft, ft).unwrap();
    }
}

fn walk_paths(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk_paths(&p));
        }
        out.push(p);
    }
    out
}

fn opts(compression: Compression, threads: usize) -> LayerOptions {
    LayerOptions {
        compression,
        threads: Some(threads),
        ..LayerOptions::default()
    }
}

#[test]
fn every_file_type_round_trips_with_pax_and_empty_owner_names() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let store = Store::open(&dir.path().join("store")).unwrap();
    let entries = entries_from_dir(&tree, &DirOptions::default()).unwrap();
    let info = write_layer(&store, entries, &opts(Compression::Gzip, 2)).unwrap();
    assert_eq!(info.media_type, crate::MediaType::OciLayerGzip);
    assert_eq!(store.blob_size(&info.digest), Some(info.size));
    let (_, got) = read_layer(&store, &info, Compression::Gzip);
    let by: BTreeMap<&str, &ReadBack> = got.iter().map(|e| (e.path.as_str(), e)).collect();

    assert!(
        got.iter().all(|e| e.uname_empty),
        "uname/gname must be empty"
    );
    assert!(got.iter().all(|e| e.mtime == 1_700_000_000));
    assert_eq!(by["etc/"].typeflag, b'5');
    let hosts = by["etc/hosts"];
    assert_eq!((hosts.typeflag, hosts.mode), (b'0', 0o600));
    assert_eq!(hosts.data, b"127.0.0.1 localhost\n");
    assert_eq!(hosts.xattrs.get("user.comment").unwrap(), b"hello");
    assert!(!hosts.xattrs.contains_key("trusted.build-host"));
    assert!(by["bin-ping"].xattrs.contains_key("security.capability"));
    // Hard links point at the first path in layer order; the data is stored once.
    assert_eq!(by["a-hardlink"].typeflag, b'0');
    assert_eq!(by["a-hardlink"].data, b"\x7fELF");
    for l in ["bin-ping", "z-hardlink"] {
        assert_eq!((by[l].typeflag, by[l].link.as_str()), (b'1', "a-hardlink"));
        assert!(by[l].data.is_empty());
    }
    assert_eq!(
        (by["link"].typeflag, by["link"].link.as_str()),
        (b'2', "etc/hosts")
    );
    assert_eq!(by["fifo"].typeflag, b'6');
    let deep = format!("{LONG_DIR}/{LONG_DIR}/{LONG_DIR}/file-with-a-long-name.txt");
    assert!(by[deep.as_str()].had_pax, "long path needs a PAX record");
    assert_eq!(by[deep.as_str()].data, b"deep");
    assert!(by["ünïcode"].had_pax, "non-ASCII path needs a PAX record");
    if is_root() {
        assert_eq!(
            (by["etc/hosts"].uid, by["etc/hosts"].gid),
            (3_000_000, 3_000_001)
        );
        assert_eq!((by["null"].typeflag, by["null"].dev), (b'3', (1, 3)));
        assert_eq!((by["loop9"].typeflag, by["loop9"].dev), (b'4', (7, 9)));
    } else {
        println!("not root: device nodes and large uids not tested");
    }
    // Canonical order: parents first, then byte order.
    let names: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|p| p.trim_end_matches('/').split('/').collect::<Vec<_>>());
    assert_eq!(names, sorted);
}

#[test]
fn gnu_tar_lists_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let store = Store::open(&dir.path().join("store")).unwrap();
    let entries = entries_from_dir(&tree, &DirOptions::default()).unwrap();
    let info = write_layer(&store, entries, &opts(Compression::None, 1)).unwrap();
    let out = Command::new("tar")
        .arg("-tf")
        .arg(store.blob_path(&info.digest))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    let deep = format!("{LONG_DIR}/{LONG_DIR}/{LONG_DIR}/file-with-a-long-name.txt");
    assert!(listing.lines().any(|l| l == deep), "{listing}");
    assert!(listing.lines().any(|l| l == "ünïcode"), "{listing}");
    assert!(!listing.contains("PaxHeaders"), "{listing}");
}

#[test]
fn same_tree_gives_same_digests_across_paths_threads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    make_tree(&a);
    let b = dir.path().join("elsewhere/b");
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap()
        .success());
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut diff_ids = Vec::new();
    for kind in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut infos = Vec::new();
        for (root, threads) in [(&a, 1), (&a, 4), (&b, 2), (&a, 1)] {
            let entries = entries_from_dir(root, &DirOptions::default()).unwrap();
            infos.push(write_layer(&store, entries, &opts(kind, threads)).unwrap());
        }
        assert!(
            infos.windows(2).all(|w| w[0] == w[1]),
            "{kind:?}: {infos:#?}"
        );
        diff_ids.push(infos[0].diff_id.clone());
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_plain_tar_is_the_uncompressed_layer_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let store = Store::open(&dir.path().join("store")).unwrap();
    for sde in [None, Some(1_600_000_000)] {
        let entries = entries_from_dir(&tree, &DirOptions::default()).unwrap();
        let mut o = opts(Compression::None, 1);
        o.source_date_epoch = sde;
        let info = write_layer(&store, entries.clone(), &o).unwrap();
        let layer = fs::read(store.blob_path(&info.digest)).unwrap();
        // Given out of order: write_tar sorts them as a layer does.
        let mut reversed = entries;
        reversed.reverse();
        let plain = write_tar(reversed, Vec::new(), sde).unwrap();
        assert_eq!(plain.len(), layer.len());
        assert!(plain == layer, "{sde:?}: the bytes differ");
    }
}

#[test]
fn a_plain_tar_refuses_invalid_entries() {
    let e = |path: &str| LayerEntry {
        path: path.into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    };
    assert!(write_tar(vec![e("a"), e("a")], Vec::new(), None).is_err());
    assert!(write_tar(vec![e("../x")], Vec::new(), None).is_err());
}

#[test]
fn source_date_epoch_clamps_only_later_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("old"), b"o").unwrap();
    fs::write(tree.join("new"), b"n").unwrap();
    filetime::set_file_mtime(
        tree.join("old"),
        filetime::FileTime::from_unix_time(1000, 0),
    )
    .unwrap();
    filetime::set_file_mtime(
        tree.join("new"),
        filetime::FileTime::from_unix_time(9000, 0),
    )
    .unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let entries = entries_from_dir(&tree, &DirOptions::default()).unwrap();
    let mut o = opts(Compression::Gzip, 1);
    o.source_date_epoch = Some(5000);
    let info = write_layer(&store, entries, &o).unwrap();
    let (_, got) = read_layer(&store, &info, Compression::Gzip);
    let m: BTreeMap<&str, i64> = got.iter().map(|e| (e.path.as_str(), e.mtime)).collect();
    assert_eq!(m["old"], 1000);
    assert_eq!(m["new"], 5000);
}

#[test]
fn unreadable_source_fails_naming_it_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let missing = dir.path().join("missing.txt");
    let entries = vec![LayerEntry {
        path: "a".into(),
        kind: EntryKind::File {
            source: missing.clone(),
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    }];
    let err = write_layer(&store, entries, &opts(Compression::Gzip, 2)).unwrap_err();
    assert!(
        matches!(&err, LayerError::Io { op: "opening", path, .. } if *path == missing),
        "{err}"
    );
    assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn empty_layer_is_two_zero_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for kind in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let info = write_layer(&store, Vec::new(), &opts(kind, 2)).unwrap();
        assert_eq!(info.uncompressed_size, 1024);
        assert_eq!(info.diff_id, Digest::sha256_of(&[0u8; 1024]));
        let (raw, entries) = read_layer(&store, &info, kind);
        assert_eq!(raw, vec![0u8; 1024]);
        assert!(entries.is_empty());
    }
}

#[test]
fn overlay_upper_dir_becomes_oci_whiteouts() {
    if !is_root() {
        println!("skipped: mknod of whiteout devices needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    fs::create_dir_all(upper.join("etc/opaque/sub")).unwrap();
    fs::create_dir_all(upper.join("proc")).unwrap();
    fs::write(upper.join("etc/opaque/sub/f"), b"x").unwrap();
    fs::write(upper.join("etc/added"), b"a").unwrap();
    fs::write(upper.join("proc/ignored"), b"p").unwrap();
    mknod(&upper.join("etc/deleted"), libc::S_IFCHR, 0, 0);
    mknod(&upper.join("real-null"), libc::S_IFCHR, 1, 3);
    xattr::set(upper.join("etc/opaque"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(upper.join("etc/opaque"), "user.keep", b"1").unwrap();
    xattr::set(upper.join("etc/added"), "trusted.overlay.origin", b"junk").unwrap();
    let entries = entries_from_overlay_upper(&upper, &["proc"], OverlayXattrs::Trusted).unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let info = write_layer(&store, entries, &opts(Compression::Gzip, 2)).unwrap();
    let (_, got) = read_layer(&store, &info, Compression::Gzip);
    let names: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/.wh.deleted",
            "etc/added",
            "etc/opaque/",
            "etc/opaque/.wh..wh..opq",
            "etc/opaque/sub/",
            "etc/opaque/sub/f",
            "real-null",
        ]
    );
    let by: BTreeMap<&str, &ReadBack> = got.iter().map(|e| (e.path.as_str(), e)).collect();
    assert_eq!(by["etc/.wh.deleted"].typeflag, b'0');
    assert!(by["etc/.wh.deleted"].data.is_empty());
    assert_eq!(by["real-null"].typeflag, b'3');
    let opaque_dir = &by["etc/opaque/"].xattrs;
    assert_eq!(opaque_dir.keys().collect::<Vec<_>>(), ["user.keep"]);
    assert!(by["etc/added"].xattrs.is_empty());
}

/// A `trusted.` overlay mount copies a lower directory's `user.overlay.opaque` up as plain
/// data (a snapshot unpacked without `CAP_SYS_ADMIN` carries it): the copy is not opaque and
/// must not hide the lower directory's files in the layer. Under `userxattr` it is the mark.
#[test]
fn only_the_mounts_own_opaque_xattr_makes_an_upper_directory_opaque() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    fs::create_dir_all(upper.join("copied")).unwrap();
    fs::write(upper.join("copied/new"), b"n").unwrap();
    xattr::set(upper.join("copied"), "user.overlay.opaque", b"y").unwrap();
    let opaque = |x: OverlayXattrs| -> Vec<String> {
        entries_from_overlay_upper(&upper, &[], x)
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e.kind, EntryKind::OpaqueWhiteout))
            .map(|e| e.path)
            .collect()
    };
    assert_eq!(opaque(OverlayXattrs::Trusted), Vec::<String>::new());
    assert_eq!(opaque(OverlayXattrs::User), ["copied"]);
}

#[test]
fn real_overlay_mount_upper_dir() {
    if !is_root() {
        println!("skipped: overlay mounts need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|n| {
        let p = dir.path().join(n);
        fs::create_dir_all(&p).unwrap();
        p
    });
    fs::create_dir_all(lower.join("d")).unwrap();
    fs::write(lower.join("d/old"), b"o").unwrap();
    fs::write(lower.join("gone"), b"g").unwrap();
    let opts_str = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts_str])
        .arg(&merged)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("skipped: cannot mount overlayfs here");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        fs::remove_file(merged.join("gone")).unwrap();
        fs::remove_dir_all(merged.join("d")).unwrap();
        fs::create_dir(merged.join("d")).unwrap();
        fs::write(merged.join("d/new"), b"n").unwrap();
    });
    let _ = Command::new("umount").arg(&merged).status();
    result.unwrap();
    let entries = entries_from_overlay_upper(&upper, &[], OverlayXattrs::Trusted).unwrap();
    let names: Vec<String> = entries.iter().map(LayerEntry::tar_path).collect();
    assert_eq!(names, [".wh.gone", "d/", "d/.wh..wh..opq", "d/new"]);
}

/// Random entry lists for the property test: unique paths under a few directories.
fn arb_entries() -> impl Strategy<Value = Vec<(String, u8, u64, i64, Vec<u8>, bool)>> {
    let name = prop_oneof![
        "[a-z]{1,8}",
        "[a-zA-Z0-9_-][a-zA-Z0-9._-]{99,179}",
        "[é漢a-z]{1,6}",
    ];
    let path = prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"));
    prop::collection::vec(
        (
            path,
            0u8..7,
            prop_oneof![Just(0u64), Just(1000u64), 0u64..u64::from(u32::MAX) * 4],
            prop_oneof![Just(0i64), -100_000i64..0, 0i64..(1i64 << 40)],
            prop::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        ),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_entry_lists_round_trip(spec in arb_entries()) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let mut entries = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, (path, k, id, mtime, data, xa)) in spec.into_iter().enumerate() {
            if !seen.insert(path.clone()) { continue; }
            let kind = match k {
                0 => {
                    let src = dir.path().join(format!("src{i}"));
                    fs::write(&src, &data).unwrap();
                    EntryKind::File { source: src }
                }
                1 => EntryKind::Dir,
                2 => EntryKind::Symlink { target: format!("../{}", "t".repeat(data.len())) },
                3 => EntryKind::Fifo,
                4 => EntryKind::Whiteout,
                5 => EntryKind::OpaqueWhiteout,
                _ => EntryKind::CharDev { major: (id % 4096) as u32, minor: (id % 1_000_000) as u32 },
            };
            let mut xattrs = BTreeMap::new();
            if xa { xattrs.insert("user.data".to_string(), data.clone()); }
            entries.push(LayerEntry {
                path, kind, mode: (id as u32) & 0o7777, uid: id, gid: id / 2, mtime, xattrs,
            });
        }
        let info = write_layer(&store, entries.clone(), &opts(Compression::Gzip, 2)).unwrap();
        let (_, got) = read_layer(&store, &info, Compression::Gzip);
        let mut want = entries;
        sort_entries(&mut want);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(&g.path, &w.tar_path());
            prop_assert_eq!(g.uid, w.uid);
            prop_assert_eq!(g.gid, w.gid);
            prop_assert_eq!(g.mtime, w.mtime);
            prop_assert_eq!(g.mode, w.mode);
            prop_assert_eq!(&g.xattrs, &w.xattrs);
            match &w.kind {
                EntryKind::File { source } => prop_assert_eq!(&g.data, &fs::read(source).unwrap()),
                EntryKind::Symlink { target } => prop_assert_eq!(&g.link, target),
                EntryKind::CharDev { major, minor } => prop_assert_eq!(g.dev, (*major, *minor)),
                _ => prop_assert!(g.data.is_empty()),
            }
        }
    }
}

/// Cross-check with the reference implementation: Go's `archive/tar`, as containerd and
/// BuildKit use it (`Format = PAX`), re-encodes our layer to the very same bytes.
#[test]
fn go_archive_tar_reencodes_our_layer_byte_for_byte() {
    let Ok(go) = which_go() else {
        println!("skipped: no `go` toolchain on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("retar");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tar/testdata/retar.go");
    let built = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.path().join("gocache"))
        .env("GO111MODULE", "off")
        .status()
        .unwrap();
    assert!(built.success(), "go build of the re-encoder failed");

    let tree = dir.path().join("tree");
    make_tree(&tree);
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut entries = entries_from_dir(&tree, &DirOptions::default()).unwrap();
    for (path, kind) in [
        ("etc/gone", EntryKind::Whiteout),
        ("etc", EntryKind::OpaqueWhiteout),
    ] {
        entries.push(LayerEntry {
            path: path.into(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            xattrs: BTreeMap::new(),
        });
    }
    let info = write_layer(&store, entries, &opts(Compression::None, 1)).unwrap();
    let ours = fs::read(store.blob_path(&info.digest)).unwrap();
    let out = Command::new(&bin)
        .stdin(fs::File::open(store.blob_path(&info.digest)).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout != ours {
        let at = ours
            .iter()
            .zip(&out.stdout)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(out.stdout.len()));
        panic!(
            "Go re-encoding differs at byte {at} (block {}, offset {}); ours {} bytes, Go {}",
            at / 512,
            at % 512,
            ours.len(),
            out.stdout.len()
        );
    }
}

fn which_go() -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
        .ok_or(())
}
