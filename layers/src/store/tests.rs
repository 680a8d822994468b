use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::MediaType;

/// Env var that turns [`child_process_entry`] into a helper process (see its doc).
const CHILD_ENV: &str = "RBUILD_STORE_TEST_CHILD";

fn big_blob() -> Vec<u8> {
    (0..4u32 << 20).map(|i| (i % 251) as u8).collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn spawn_child(mode: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Child body for `layer:<store>|<tree>`: write a layer like a build step would, then tag it.
fn layer_child(dir: &str) {
    let (store_dir, tree) = dir.split_once('|').unwrap();
    let store = Store::open(Path::new(store_dir)).unwrap();
    let entries =
        crate::entries_from_dir(Path::new(tree), &crate::tar::DirOptions::default()).unwrap();
    let info = crate::write_layer(&store, entries, &crate::LayerOptions::default()).unwrap();
    let desc = Descriptor::new(info.media_type, info.digest, info.size);
    store
        .set_ref(&format!("child-{}", std::process::id()), &desc)
        .unwrap();
}

/// Not a test on its own: when the env var is set, this is the body of a helper process.
/// `same:<dir>` writes [`big_blob`] in small pieces and tags it with the pid;
/// `slow:<dir>` writes a blob slowly forever (the parent kills it);
/// `scratch:<dir>` makes a scratch directory with a file `data` and waits to be killed.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, dir) = spec.split_once(':').unwrap();
    if mode == "layer" {
        return layer_child(dir);
    }
    let store = Store::open(Path::new(dir)).unwrap();
    match mode {
        "same" => {
            let data = big_blob();
            let mut w = store.begin_blob().unwrap();
            for chunk in data.chunks(64 * 1024) {
                w.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let (d, size) = w.commit(Some(&Digest::sha256_of(&data)), None).unwrap();
            let desc = Descriptor::new(MediaType::OciLayerTar, d, size);
            store
                .set_ref(&format!("child-{}", std::process::id()), &desc)
                .unwrap();
        }
        "scratch" => {
            let scratch = store.scratch_dir("run").unwrap();
            fs::write(scratch.path().join("data"), b"in use").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "slow" => {
            let mut w = store.begin_blob().unwrap();
            loop {
                w.write_all(&[7u8; 4096]).unwrap();
                w.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn open_creates_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        fs::read(dir.path().join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));
    for sub in [
        "blobs/sha256",
        "tmp",
        "cache",
        "snapshots",
        "statcache",
        "locks",
    ] {
        assert!(dir.path().join(sub).is_dir(), "{sub}");
    }
    drop(store);
    // Re-opening keeps what is there.
    Store::open(dir.path()).unwrap();
}

#[test]
fn put_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let desc = store.put_bytes(MediaType::OciImageConfig, b"{}").unwrap();
    assert_eq!(desc.digest, Digest::sha256_of(b"{}"));
    assert_eq!(desc.size, 2);
    assert!(store.has_blob(&desc.digest));
    assert_eq!(store.blob_size(&desc.digest), Some(2));
    assert_eq!(store.read_blob(&desc.digest).unwrap(), b"{}");
    let mode = fs::metadata(store.blob_path(&desc.digest))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
    assert!(entries(&store.tmp_dir()).is_empty());
}

#[test]
fn commit_rejects_wrong_digest_or_size_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wrong = Digest::sha256_of(b"something else");
    let mut w = store.begin_blob().unwrap();
    w.write_all(b"hello").unwrap();
    let err = w.commit(Some(&wrong), None).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");

    let mut w = store.begin_blob().unwrap();
    w.write_all(b"hello").unwrap();
    let err = w.commit(None, Some(6)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 6,
                actual: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(entries(&dir.path().join("blobs/sha256")).is_empty());
    assert!(entries(&store.tmp_dir()).is_empty());
    // An abandoned writer cleans up too.
    let mut w = store.begin_blob().unwrap();
    w.write_all(b"x").unwrap();
    drop(w);
    assert!(entries(&store.tmp_dir()).is_empty());
}

fn corrupt(store: &Store, digest: &Digest) {
    let path = store.blob_path(digest);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"tampered").unwrap();
}

#[test]
fn corrupt_blob_is_detected_on_read_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let desc = store
        .put_bytes(MediaType::OciImageConfig, b"{\"a\":1}")
        .unwrap();
    corrupt(&store, &desc.digest);
    let mut r = store.open_blob(&desc.digest).unwrap();
    let mut buf = Vec::new();
    let err = r.read_to_end(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(matches!(
        StoreError::from_io(&err),
        Some(StoreError::CorruptBlob { .. })
    ));
    assert!(
        !store.has_blob(&desc.digest),
        "corrupt blob must be removed"
    );
    assert!(matches!(
        store.read_blob(&desc.digest),
        Err(StoreError::BlobNotFound { .. })
    ));
}

#[test]
fn fsck_reports_and_removes_corrupt_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = store.put_bytes(MediaType::OciImageConfig, b"good").unwrap();
    let bad = store.put_bytes(MediaType::OciImageConfig, b"bad").unwrap();
    corrupt(&store, &bad.digest);
    let report = store.fsck().unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt, vec![bad.digest.clone()]);
    assert!(store.has_blob(&good.digest));
    assert!(!store.has_blob(&bad.digest));
}

#[test]
fn concurrent_writers_of_the_same_blob_in_threads_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = big_blob();
    let want = Digest::sha256_of(&data);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut w = store.begin_blob().unwrap();
                for chunk in data.chunks(100_000) {
                    w.write_all(chunk).unwrap();
                }
                let (d, n) = w.commit(Some(&want), Some(data.len() as u64)).unwrap();
                assert_eq!(d, want);
                assert_eq!(n, data.len() as u64);
            });
        }
    });
    store.verify_blob(&want).unwrap();
    assert!(entries(&store.tmp_dir()).is_empty());
}

#[test]
fn two_processes_writing_the_same_blob_and_tagging_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = spawn_child("same", dir.path());
    let mut b = spawn_child("same", dir.path());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let store = Store::open(dir.path()).unwrap();
    let want = Digest::sha256_of(&big_blob());
    store.verify_blob(&want).unwrap();
    let refs = store.list_refs().unwrap();
    let names: Vec<&str> = refs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, {
        let mut v = vec![format!("child-{}", a.id()), format!("child-{}", b.id())];
        v.sort();
        v
    });
    assert!(refs.iter().all(|(_, d)| d.digest == want));
    assert!(entries(&store.tmp_dir()).is_empty());
}

#[test]
fn killed_writer_leaves_only_a_temp_file_that_open_removes() {
    let dir = tempfile::tempdir().unwrap();
    // Create the layout first so the child's store exists.
    drop(Store::open(dir.path()).unwrap());
    let mut child = spawn_child("slow", dir.path());
    let tmp = dir.path().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let has_data = fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false));
        if has_data {
            break;
        }
        assert!(Instant::now() < deadline, "child never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(entries(&dir.path().join("blobs/sha256")).is_empty());
    let leftovers = entries(&tmp);
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // The name says whose it was; that process is gone, so the very next open removes it
    // (before, a fresh leftover was kept for a grace period and a build right after the kill
    // kept it).
    assert!(
        temps::Owner::from_name(&leftovers[0]).is_some(),
        "{leftovers:?}"
    );
    let store = Store::open(dir.path()).unwrap();
    assert!(entries(&tmp).is_empty());
    assert_eq!(store.reclaimed_at_open().entries, leftovers);
    assert!(store.reclaimed_at_open().bytes > 0);
    assert!(entries(&dir.path().join("blobs/sha256")).is_empty());
}

#[test]
fn ownerless_temp_file_is_removed_after_the_grace_only() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    // A name that names no owner.
    let legacy = tmp.join("blob-legacy.tmp");
    fs::write(&legacy, b"partial").unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert_eq!(entries(&tmp).len(), 1);
    let old = SystemTime::now() - fsutil::STALE_TEMP_GRACE - Duration::from_secs(1);
    filetime::set_file_mtime(&legacy, filetime::FileTime::from(old)).unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert!(entries(&tmp).is_empty());
}

#[test]
fn live_writers_temp_file_is_not_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut w = store.begin_blob().unwrap();
    w.write_all(b"in progress").unwrap();
    w.flush().unwrap();
    let name = entries(&store.tmp_dir()).pop().unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    filetime::set_file_mtime(store.tmp_dir().join(name), filetime::FileTime::from(old)).unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert_eq!(
        entries(&store.tmp_dir()).len(),
        1,
        "locked temp file must survive"
    );
    w.commit(None, None).unwrap();
}

#[test]
fn refs_round_trip_and_keep_other_processes_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m1 = store.put_bytes(MediaType::OciImageManifest, b"{}").unwrap();
    let m2 = store
        .put_bytes(MediaType::OciImageManifest, b"{ }")
        .unwrap();
    std::thread::scope(|s| {
        for i in 0..8 {
            let (m1, m2, path) = (&m1, &m2, dir.path());
            s.spawn(move || {
                let st = Store::open(path).unwrap();
                st.set_ref(&format!("img:{i}"), if i % 2 == 0 { m1 } else { m2 })
                    .unwrap();
            });
        }
    });
    assert_eq!(store.list_refs().unwrap().len(), 8);
    store.set_ref("img:0", &m2).unwrap();
    let got = store.get_ref("img:0").unwrap().unwrap();
    assert_eq!(got.digest, m2.digest);
    assert_eq!(
        got.annotations
            .get("org.opencontainers.image.ref.name")
            .unwrap(),
        "img:0"
    );
    assert!(store.remove_ref("img:0").unwrap());
    assert!(store.get_ref("img:0").unwrap().is_none());
    assert!(matches!(
        store.set_ref("bad name", &m1),
        Err(StoreError::BadRefName(_))
    ));
}

#[test]
fn records_round_trip_and_validate_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Digest::sha256_of(b"key");
    assert_eq!(store.get_record("run", &key).unwrap(), None);
    store.put_record("run", &key, b"{\"x\":1}").unwrap();
    assert_eq!(
        store.get_record("run", &key).unwrap().unwrap(),
        b"{\"x\":1}"
    );
    assert!(matches!(
        store.put_record("../evil", &key, b"{}"),
        Err(StoreError::BadRecordKind(_))
    ));
    assert!(store.remove_record("run", &key).unwrap());
}

/// The inode of `path` (an atomic rewrite replaces it).
fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[test]
fn saving_an_unchanged_record_or_tag_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Digest::sha256_of(b"key");
    let record = dir
        .path()
        .join("cache/run")
        .join(format!("{}.json", key.hex()));
    store.put_record("run", &key, b"{\"x\":1}").unwrap();
    let first = inode(&record);
    store.put_record("run", &key, b"{\"x\":1}").unwrap();
    assert_eq!(
        inode(&record),
        first,
        "the same bytes are not written again"
    );
    store.put_record("run", &key, b"{\"x\":2}").unwrap();
    assert_ne!(inode(&record), first);
    assert_eq!(
        store.get_record("run", &key).unwrap().unwrap(),
        b"{\"x\":2}"
    );

    let index = dir.path().join("index.json");
    let m1 = store.put_bytes(MediaType::OciImageManifest, b"{}").unwrap();
    let m2 = store
        .put_bytes(MediaType::OciImageManifest, b"{ }")
        .unwrap();
    store.set_ref("img:1", &m1).unwrap();
    let tagged = inode(&index);
    store.set_ref("img:1", &m1).unwrap();
    assert_eq!(inode(&index), tagged, "the same tag is not written again");
    store.set_ref("img:1", &m2).unwrap();
    assert_ne!(inode(&index), tagged);
    assert_eq!(store.get_ref("img:1").unwrap().unwrap().digest, m2.digest);
}

fn age(store: &Store, d: &Digest, secs_ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs_ago);
    filetime::set_file_mtime(store.blob_path(d), filetime::FileTime::from(t)).unwrap();
}

#[test]
fn prune_removes_unreferenced_blobs_lru_first_and_keeps_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let put = |s: &str| {
        store
            .put_bytes(MediaType::OciLayerTar, s.as_bytes())
            .unwrap()
    };
    let kept_by_record = put("layer kept by a record");
    let layer = put("layer kept by the tagged manifest");
    let manifest_json = format!(
        r#"{{"schemaVersion":2,"layers":[{{"mediaType":"x","digest":"{}","size":1}}]}}"#,
        layer.digest
    );
    let manifest = store
        .put_bytes(MediaType::OciImageManifest, manifest_json.as_bytes())
        .unwrap();
    store.set_ref("app:latest", &manifest).unwrap();
    let key = Digest::sha256_of(b"step");
    store
        .put_record(
            "run",
            &key,
            format!(r#"{{"blobs":["{}"]}}"#, kept_by_record.digest).as_bytes(),
        )
        .unwrap();
    let oldest = put("garbage, least recently used");
    let newer = put("garbage, used more recently");
    age(&store, &oldest.digest, 300);
    age(&store, &newer.digest, 100);

    let usage = store.disk_usage().unwrap();
    assert_eq!(usage.blobs, 5);
    let limit = usage.total_bytes() - 1;
    let report = store
        .prune(PruneOptions {
            keep_storage: Some(limit),
            all: false,
        })
        .unwrap();
    assert_eq!(report.removed_blobs, vec![oldest.digest.clone()]);
    assert!(store.has_blob(&newer.digest));

    let report = store.prune(PruneOptions::default()).unwrap();
    assert_eq!(report.removed_blobs, vec![newer.digest.clone()]);
    for d in [&kept_by_record, &layer, &manifest] {
        assert!(store.has_blob(&d.digest));
    }

    let report = store
        .prune(PruneOptions {
            keep_storage: None,
            all: true,
        })
        .unwrap();
    assert_eq!(report.removed_records, 1);
    assert_eq!(report.removed_blobs, vec![kept_by_record.digest.clone()]);
    // Tags are never pruned.
    assert!(store.has_blob(&layer.digest) && store.has_blob(&manifest.digest));
    assert!(store.get_record("run", &key).unwrap().is_none());
}

#[test]
fn prune_removes_unkept_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for name in ["aaaa", "bbbb"] {
        let d = store.snapshots_dir().join(name).join("etc");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("f"), name).unwrap();
    }
    let key = Digest::sha256_of(b"k");
    store
        .put_record("snap", &key, br#"{"snapshots":["aaaa"]}"#)
        .unwrap();
    let report = store.prune(PruneOptions::default()).unwrap();
    assert_eq!(report.removed_snapshots, vec!["bbbb".to_string()]);
    assert!(store.snapshots_dir().join("aaaa/etc/f").exists());
}

/// `RUN --mount=type=cache` directories count in `du` and go only with `prune --all`, after
/// the cache records, least recently changed first under `--keep-storage`.
#[test]
fn cache_mounts_are_counted_and_pruned_only_with_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mounts = store.cache_mounts_dir();
    for (name, age) in [("old", 100), ("new", 10)] {
        let d = mounts.join(name);
        fs::create_dir_all(d.join("pkgs")).unwrap();
        fs::write(d.join("pkgs/a.deb"), vec![7u8; 4096]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age);
        fs::File::open(&d).unwrap().set_modified(t).unwrap();
    }
    // Another id mapping's set (a rootless user's, beside root's): not this process's to
    // count or remove, as with snapshots.
    let other = dir.path().join("cache-mounts-userns-0123456789abcdef/x");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("f"), "f").unwrap();
    let du = store.disk_usage().unwrap();
    assert_eq!((du.cache_mounts, du.cache_mount_bytes), (2, 8192));
    assert!(du.to_string().contains("cache mounts"), "{du}");
    let report = store.prune(PruneOptions::default()).unwrap();
    assert_eq!(report.removed_cache_mounts, 0);
    assert!(mounts.join("old").exists() && mounts.join("new").exists());
    // Over the limit by one mount: the least recently changed goes.
    let report = store
        .prune(PruneOptions {
            keep_storage: Some(5000),
            all: true,
        })
        .unwrap();
    assert_eq!(report.removed_cache_mounts, 1);
    assert!(!mounts.join("old").exists() && mounts.join("new").exists());
    let report = store
        .prune(PruneOptions {
            keep_storage: None,
            all: true,
        })
        .unwrap();
    assert_eq!(report.removed_cache_mounts, 1);
    assert_eq!(store.disk_usage().unwrap().cache_mounts, 0);
    assert!(
        other.join("f").exists(),
        "another mapping's cache mounts stay"
    );
}

#[test]
fn prune_refuses_while_another_handle_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let other = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.prune(PruneOptions::default()),
        Err(StoreError::InUse { .. })
    ));
    drop(other);
    store.prune(PruneOptions::default()).unwrap();
    // After pruning the store is shared again: another handle can open it.
    let _again = Store::open(dir.path()).unwrap();
}

#[test]
fn disk_usage_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .put_bytes(MediaType::OciImageConfig, &[b'x'; 2048])
        .unwrap();
    let du = store.disk_usage().unwrap();
    assert_eq!(du.blob_bytes, 2048);
    assert_eq!(du.referenced_blob_bytes, 0);
    let text = du.to_string();
    assert!(text.contains("blobs"), "{text}");
    assert!(text.contains("2.0 KiB"), "{text}");
}

#[test]
fn two_processes_writing_the_same_layer_into_one_store_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    for i in 0..40 {
        let d = tree.join(format!("d{}", i % 5));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join(format!("f{i}")),
            format!("file {i}\n").repeat(2000 * (i + 1)),
        )
        .unwrap();
    }
    let store_dir = dir.path().join("store");
    let spec = format!("{}|{}", store_dir.display(), tree.display());
    let mut a = spawn_child("layer", Path::new(&spec));
    let mut b = spawn_child("layer", Path::new(&spec));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let store = Store::open(&store_dir).unwrap();
    let refs = store.list_refs().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(
        refs[0].1.digest, refs[1].1.digest,
        "same tree, same layer digest"
    );
    store.verify_blob(&refs[0].1.digest).unwrap();
    assert!(entries(&store.tmp_dir()).is_empty());
    assert_eq!(entries(&store_dir.join("blobs/sha256")).len(), 1);
}

mod temp_reclaim {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A scratch tree as a killed RUN step leaves it: overlay `work/work` with mode 000, files
    /// and directories made read-only, and a symlink pointing out of the store.
    fn fill_like_a_run_step(dir: &Path, outside: &Path) {
        fs::create_dir_all(dir.join("upper/etc/ro")).unwrap();
        fs::write(dir.join("upper/etc/ro/file"), vec![7u8; 4096]).unwrap();
        fs::set_permissions(
            dir.join("upper/etc/ro/file"),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        fs::set_permissions(dir.join("upper/etc/ro"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::create_dir_all(dir.join("work/work")).unwrap();
        fs::set_permissions(dir.join("work/work"), fs::Permissions::from_mode(0o000)).unwrap();
        std::os::unix::fs::symlink(outside, dir.join("upper/escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("canary"), dir.join("upper/canary-link")).unwrap();
    }

    /// A scratch directory named after a process that has exited.
    fn dead_scratch(tmp: &Path) -> PathBuf {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = temps::Owner::current().unwrap().start;
        child.wait().unwrap();
        let p = tmp.join(format!("run-{pid}-{start}-0-dead"));
        fs::create_dir(&p).unwrap();
        p
    }

    #[test]
    fn killed_run_steps_scratch_dir_is_reclaimed_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("canary"), b"keep").unwrap();
        drop(Store::open(dir.path()).unwrap());
        let scratch = dead_scratch(&dir.path().join("tmp"));
        fill_like_a_run_step(&scratch, outside.path());

        let store = Store::open(dir.path()).unwrap();
        assert!(entries(&store.tmp_dir()).is_empty());
        assert_eq!(store.reclaimed_at_open().entries.len(), 1);
        assert!(store.reclaimed_at_open().bytes >= 4096);
        assert_eq!(fs::read(outside.path().join("canary")).unwrap(), b"keep");
    }

    #[test]
    fn a_snapshot_unpack_killed_midway_is_reclaimed_and_committed_snapshots_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let snaps = dir.path().join("snapshots");
        let dead = dead_scratch(&dir.path().join("tmp"));
        let partial = snaps.join(
            dead.file_name()
                .unwrap()
                .to_string_lossy()
                .replacen("run-", "tmp-", 1),
        );
        fs::rename(&dead, &partial).unwrap();
        fs::write(partial.join("half-written"), vec![1u8; 1000]).unwrap();
        let committed = snaps.join("ab".repeat(32));
        fs::create_dir(&committed).unwrap();
        let legacy = snaps.join("tmp-AbC123");
        fs::create_dir(&legacy).unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert!(!partial.exists());
        assert!(committed.exists() && legacy.exists());
        assert_eq!(store.reclaimed_at_open().entries.len(), 1);
        // A live creator's directory (this process) is left alone.
        let cache = crate::SnapshotCache::new(&snaps).unwrap();
        let chain = Digest::sha256_of(b"chain");
        cache
            .get_or_create(&chain, |d| {
                let owner = d.parent().unwrap();
                let name = owner.file_name().unwrap().to_string_lossy().into_owned();
                assert!(temps::Owner::from_name(&name).is_some(), "{name}");
                drop(Store::open(dir.path()).unwrap());
                assert!(d.exists());
                fs::write(d.join("f"), b"x").map(|()| Vec::new())
            })
            .unwrap();
        assert!(cache.path(&chain).join("f").exists());
    }

    #[test]
    fn a_recycled_pid_is_not_mistaken_for_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        // Our own PID, but a start time that is not ours: the owner that wrote it is gone.
        let me = temps::Owner::current().unwrap();
        let p = dir
            .path()
            .join(format!("tmp/run-{}-{}-0-old", me.pid, me.start + 1));
        fs::create_dir(&p).unwrap();
        drop(Store::open(dir.path()).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn live_concurrent_builds_scratch_dir_is_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let tmp = dir.path().join("tmp");
        let mut child = spawn_child("scratch", dir.path());
        let deadline = Instant::now() + Duration::from_secs(30);
        let theirs = loop {
            let found = fs::read_dir(&tmp)
                .unwrap()
                .flatten()
                .find(|e| e.path().join("data").exists());
            if let Some(e) = found {
                break e.path();
            }
            assert!(
                Instant::now() < deadline,
                "child never made its scratch dir"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // A second build starting, and an fsck, while the first is alive: nothing is touched.
        let store = Store::open(dir.path()).unwrap();
        assert!(store.reclaimed_at_open().is_empty());
        assert!(store.fsck().unwrap().stale_temps.is_empty());
        assert_eq!(fs::read(theirs.join("data")).unwrap(), b"in use");
        // Our own scratch dir goes away when dropped.
        let mine = store.scratch_dir("run").unwrap();
        let mine_path = mine.path().to_path_buf();
        drop(mine);
        assert!(!mine_path.exists());
        // Once the owner is killed, the next open reclaims its dir.
        child.kill().unwrap();
        child.wait().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(!theirs.exists());
        assert_eq!(store.reclaimed_at_open().entries.len(), 1);
    }

    #[test]
    fn a_locked_entry_with_a_dead_looking_name_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let p = dead_scratch(&dir.path().join("tmp"));
        let lock = fs::File::open(&p).unwrap();
        fsutil::flock(&lock, libc::LOCK_EX).unwrap();
        drop(Store::open(dir.path()).unwrap());
        assert!(p.exists());
        drop(lock);
        drop(Store::open(dir.path()).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn a_mount_point_inside_a_stale_tree_is_not_entered() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let p = dead_scratch(&dir.path().join("tmp"));
        let m = p.join("mnt");
        fs::create_dir(&m).unwrap();
        // A private mount namespace for this test thread would need unshare before threads;
        // mount for real and always unmount.
        let c = |s: &Path| std::ffi::CString::new(s.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: plain mount/umount syscalls with valid C strings.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c(&m).as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            eprintln!("SKIPPED: mount refused");
            return;
        }
        fs::write(m.join("other-fs"), b"not ours").unwrap();
        let res = temps::remove_tree(&p);
        // Opening the store goes on regardless, and says what it could not remove.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.reclaimed_at_open().failed.len(), 1);
        let survived = fs::read(m.join("other-fs")).ok();
        // SAFETY: as above.
        unsafe { libc::umount2(c(&m).as_ptr(), libc::MNT_DETACH) };
        assert!(
            res.is_err(),
            "a tree with a mount point inside is not removed"
        );
        assert_eq!(survived.as_deref(), Some(&b"not ours"[..]));
        temps::remove_tree(&p).unwrap();
    }
}

#[test]
fn snapshots_of_the_format_with_real_device_nodes_are_pruned_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let legacy = "ab".repeat(32);
    let current = format!("v3-{}", "cd".repeat(32));
    for name in [&legacy, &current] {
        let d = store.snapshots_dir().join(name).join("tree");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("f"), vec![0u8; 10_000]).unwrap();
    }
    fs::write(store.snapshots_dir().join(&current).join("boot"), "synced").unwrap();
    // The current-format snapshot is the least recently used by time; the legacy one still
    // goes first.
    filetime::set_file_mtime(
        store.snapshots_dir().join(&current),
        filetime::FileTime::from_unix_time(1_000_000, 0),
    )
    .unwrap();
    let report = store
        .prune(PruneOptions {
            keep_storage: Some(15_000),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed_snapshots, vec![legacy.clone()]);
    assert!(store.snapshots_dir().join(&current).is_dir());
}

#[test]
fn snapshots_of_an_earlier_boot_or_the_synced_v2_format_are_pruned_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let v2 = format!("v2-{}", "ab".repeat(32));
    let other_boot = format!("v3-{}", "cd".repeat(32));
    let this_boot = format!("v3-{}", "ef".repeat(32));
    for name in [&v2, &other_boot, &this_boot] {
        let d = store.snapshots_dir().join(name).join("tree");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("f"), vec![0u8; 10_000]).unwrap();
    }
    fs::write(
        store.snapshots_dir().join(&other_boot).join("boot"),
        "not-this-boot",
    )
    .unwrap();
    fs::write(
        store.snapshots_dir().join(&this_boot).join("boot"),
        "synced",
    )
    .unwrap();
    // The usable snapshot is the least recently used by time; the other two still go first.
    filetime::set_file_mtime(
        store.snapshots_dir().join(&this_boot),
        filetime::FileTime::from_unix_time(1_000_000, 0),
    )
    .unwrap();
    let mut report = store
        .prune(PruneOptions {
            keep_storage: Some(15_000),
            ..PruneOptions::default()
        })
        .unwrap();
    report.removed_snapshots.sort();
    let mut expected = vec![v2, other_boot];
    expected.sort();
    assert_eq!(report.removed_snapshots, expected);
    assert!(store.snapshots_dir().join(&this_boot).is_dir());
}

#[test]
fn each_user_namespace_mapping_keeps_its_own_snapshots() {
    use super::snapshots_subdir;
    let identity = "         0          0 4294967295\n";
    assert_eq!(
        snapshots_subdir(Some(identity), Some(identity)),
        "snapshots"
    );
    assert_eq!(snapshots_subdir(None, None), "snapshots");
    let rootless = "0 1000 1\n1 100000 65536\n";
    let single = "0 1000 1\n";
    let a = snapshots_subdir(Some(rootless), Some(rootless));
    assert!(a.starts_with("snapshots-userns-"), "{a}");
    // Spacing does not matter; the mapping does.
    assert_eq!(
        snapshots_subdir(Some("  0  1000 1\n 1 100000  65536"), Some(rootless)),
        a
    );
    assert_ne!(snapshots_subdir(Some(single), Some(single)), a);
    assert_ne!(snapshots_subdir(Some(rootless), Some(single)), a);
    assert_eq!(super::cache_mounts_subdir("snapshots"), "cache-mounts");
    assert_eq!(
        super::cache_mounts_subdir(&a),
        a.replacen("snapshots", "cache-mounts", 1)
    );
}
