use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::image::BlobReadError;
use crate::MediaType;

/// Blobs in memory; optionally offers a file path per blob (to test hard-linking) and can lie
/// about a blob's bytes (to test verification).
#[derive(Default)]
struct Mem {
    blobs: RefCell<BTreeMap<Digest, Vec<u8>>>,
    paths: BTreeMap<Digest, PathBuf>,
}

impl Mem {
    fn add(&self, bytes: &[u8]) -> Digest {
        let d = Digest::sha256_of(bytes);
        self.blobs.borrow_mut().insert(d.clone(), bytes.to_vec());
        d
    }
}

impl BlobSource for Mem {
    fn open_blob(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        let b = self.blobs.borrow().get(d).cloned();
        Ok(Box::new(io::Cursor::new(b.ok_or(io::ErrorKind::NotFound)?)))
    }
    fn blob_size(&self, d: &Digest) -> io::Result<u64> {
        let b = self.blobs.borrow();
        Ok(b.get(d).ok_or(io::ErrorKind::NotFound)?.len() as u64)
    }
    fn blob_path(&self, d: &Digest) -> Option<PathBuf> {
        self.paths.get(d).cloned()
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn named(d: &Digest, name: Option<&str>) -> Descriptor {
    let mut desc = Descriptor::new(MediaType::OciImageManifest, d.clone(), 1);
    if let Some(name) = name {
        desc.annotations
            .insert(REF_NAME_ANNOTATION.into(), name.into());
    }
    desc
}

#[test]
fn a_private_layout_gets_its_files_in_the_spec_places_with_fixed_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("layout");
    fs::create_dir(&root).expect("mkdir");
    let src = Mem::default();
    let d = src.add(b"hello");
    let w = LayoutWriter::create_private(&root).expect("create");
    w.put_blob(&d, &src).expect("put");
    w.sync_blob_dirs().expect("sync");
    w.ensure_layout_file().expect("oci-layout");
    let mut index = ImageIndex::new_oci();
    index.manifests.push(named(&d, Some("v1")));
    w.commit_index(&index, || {}).expect("commit");

    assert_eq!(
        fs::read(root.join("oci-layout")).expect("read"),
        OCI_LAYOUT_FILE
    );
    assert_eq!(
        fs::read(root.join("index.json")).expect("read"),
        index.to_canonical_json()
    );
    let blob = blob_path(&root, &d);
    assert_eq!(blob, root.join("blobs/sha256").join(d.hex()));
    assert_eq!(fs::read(&blob).expect("blob"), b"hello");
    for f in [&blob, &root.join("index.json"), &root.join("oci-layout")] {
        let mode = fs::metadata(f).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE, "{}", f.display());
    }
    assert_eq!(
        names_in(&root),
        BTreeSet::from(["blobs".into(), "index.json".into(), "oci-layout".into()]),
        "no temp file is left behind"
    );
    assert_eq!(read_index(&root).expect("read"), Some(index));
}

#[test]
fn a_corrupt_source_blob_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = Mem::default();
    let d = src.add(b"good");
    // Same size, other bytes.
    src.blobs.borrow_mut().insert(d.clone(), b"evil".to_vec());
    let w = LayoutWriter::create_private(tmp.path()).expect("create");
    let e = w.put_blob(&d, &src).expect_err("corrupt");
    assert!(
        matches!(e, LayoutError::Blob(BlobReadError::Corrupt { .. })),
        "{e}"
    );
    assert!(
        names_in(&tmp.path().join("blobs/sha256")).is_empty(),
        "neither the blob nor a temp file is there"
    );
}

#[test]
fn a_present_blob_is_skipped_and_a_wrong_sized_one_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = Mem::default();
    let d = src.add(b"content");
    let w = LayoutWriter::create_private(tmp.path()).expect("create");
    let path = blob_path(tmp.path(), &d);
    // A file of the right size is trusted (names are digests; readers verify).
    fs::write(&path, b"CONTENT").expect("write");
    w.put_blob(&d, &src).expect("put");
    assert_eq!(fs::read(&path).expect("read"), b"CONTENT");
    assert!(w.has_blob(&d, 7));
    assert!(!w.has_blob(&d, 8));
    // A truncated one is replaced.
    fs::write(&path, b"cont").expect("write");
    w.put_blob(&d, &src).expect("put");
    assert_eq!(fs::read(&path).expect("read"), b"content");
}

#[test]
fn a_source_offering_a_path_is_hard_linked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("stored");
    fs::write(&file, b"linked").expect("write");
    let mut src = Mem::default();
    let d = src.add(b"linked");
    src.paths.insert(d.clone(), file.clone());
    let root = tmp.path().join("layout");
    let w = LayoutWriter::create_private(&root).expect("create");
    w.put_blob(&d, &src).expect("put");
    let ino = |p: &Path| fs::metadata(p).expect("stat").ino();
    assert_eq!(ino(&blob_path(&root, &d)), ino(&file));
}

#[test]
fn the_failpoint_hook_runs_with_the_new_index_durable_but_not_yet_in_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = LayoutWriter::open_locked(tmp.path(), LockOn::File(".lock")).expect("open");
    let old = ImageIndex::new_oci();
    w.commit_index(&old, || {}).expect("commit");
    let mut new = ImageIndex::new_oci();
    new.manifests
        .push(named(&Digest::sha256_of(b"m"), Some("x")));
    let root = tmp.path().to_path_buf();
    let seen = RefCell::new(None);
    w.commit_index(&new, || {
        let temps: Vec<String> = names_in(&root)
            .into_iter()
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect();
        let index = fs::read(root.join("index.json")).expect("read");
        *seen.borrow_mut() = Some((temps.len(), index));
    })
    .expect("commit");
    let (temps, index_then) = seen.into_inner().expect("hook ran");
    assert_eq!(temps, 1, "the new index is a temp file");
    assert_eq!(
        index_then,
        old.to_canonical_json(),
        "the old index is in place"
    );
    assert_eq!(read_index(&root).expect("read"), Some(new));
    assert!(tmp.path().join(".lock").is_file(), "the lock file is kept");
}

#[test]
fn unreferenced_blobs_and_dead_temp_files_are_removed_others_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let src = Mem::default();
    let [a, b] = [src.add(b"a"), src.add(b"b")];
    let w = LayoutWriter::open_locked(root, LockOn::Directory).expect("open");
    w.put_blob(&a, &src).expect("put");
    w.put_blob(&b, &src).expect("put");
    let sha = root.join("blobs/sha256");
    for f in [
        sha.join(format!("{TEMP_PREFIX}blob")),
        sha.join("README"),
        root.join(format!("{TEMP_PREFIX}index")),
        root.join("notes.txt"),
    ] {
        fs::write(f, b"x").expect("write");
    }
    w.remove_unreferenced([&b]).expect("remove");
    assert_eq!(
        names_in(&sha),
        BTreeSet::from([b.hex().to_string(), "README".into()])
    );
    assert_eq!(
        names_in(root),
        BTreeSet::from(["blobs".into(), "notes.txt".into()])
    );
}

#[test]
fn the_layout_file_is_checked_and_written_only_when_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = LayoutWriter::open_locked(tmp.path(), LockOn::Directory).expect("open");
    assert!(matches!(w.check_layout_file(), Err(LayoutError::Io { .. })));
    w.ensure_layout_file().expect("write");
    w.check_layout_file().expect("valid");
    fs::write(
        tmp.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .expect("write");
    w.ensure_layout_file().expect("kept");
    let e = w.check_layout_file().expect_err("other version");
    assert!(e.to_string().contains("2.0.0"), "{e}");
    fs::write(tmp.path().join("index.json"), b"{").expect("write");
    assert!(matches!(
        read_index(tmp.path()),
        Err(LayoutError::Index { .. })
    ));
    assert_eq!(read_index(&tmp.path().join("none")).expect("missing"), None);
}

#[test]
fn writers_holding_the_lock_take_turns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let inside = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let _w = LayoutWriter::open_locked(root, LockOn::File(".lock")).expect("open");
                let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(n, 0, "another writer holds the lock");
                std::thread::sleep(std::time::Duration::from_millis(20));
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
}

#[test]
fn merge_replaces_same_name_in_place_and_keeps_others() {
    let d = |n: u8| Digest::sha256_of(&[n]);
    let mut idx = ImageIndex::new_oci();
    idx.manifests = vec![
        named(&d(1), Some("a")),
        named(&d(2), None),
        named(&d(3), Some("b")),
        named(&d(4), Some("a")),
    ];
    merge_entries(
        &mut idx,
        vec![
            named(&d(5), Some("a")),
            named(&d(2), None),
            named(&d(6), Some("c")),
            named(&d(7), None),
        ],
    );
    assert_eq!(
        idx.manifests,
        vec![
            named(&d(5), Some("a")),
            named(&d(2), None),
            named(&d(3), Some("b")),
            named(&d(6), Some("c")),
            named(&d(7), None)
        ]
    );
}
