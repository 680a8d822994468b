use std::fs;

use super::*;
use crate::image::MAX_MANIFEST_BYTES;
use crate::MediaType;

/// A layout in a temp dir whose blobs are written as given (no verification), so that tests
/// can plant corrupt ones.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir");
        Fixture { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` as a blob; returns its descriptor.
    fn blob(&self, media_type: MediaType, bytes: &[u8]) -> Descriptor {
        let d = Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64);
        fs::write(blob_path(self.root(), &d.digest), bytes).expect("write blob");
        d
    }

    fn index(&self, entries: &[Descriptor]) {
        let mut index = ImageIndex::new_oci();
        index.manifests = entries.to_vec();
        fs::write(self.root().join("index.json"), index.to_canonical_json()).expect("write");
    }
}

fn tagged(mut d: Descriptor, tag: &str) -> Descriptor {
    d.annotations
        .insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
    d
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

#[test]
fn entries_resolve_by_tag_by_digest_or_as_the_only_one() {
    let f = Fixture::new();
    let a = f.blob(MediaType::OciImageManifest, b"{\"a\":1}");
    let b = f.blob(MediaType::OciImageManifest, b"{\"b\":2}");
    f.index(&[tagged(a.clone(), "one"), tagged(b.clone(), "two")]);
    let r = LayoutReader::open(f.root()).expect("open");
    assert_eq!(r.root(), f.root());
    assert_eq!(r.index().manifests.len(), 2);
    assert_eq!(r.resolve(Select::Tag("two")).expect("tag").digest, b.digest);
    let by_digest = r
        .resolve(Select::Digest(&a.digest.to_string()))
        .expect("digest");
    assert_eq!(by_digest.digest, a.digest);

    let e = r.resolve(Select::Tag("three")).expect_err("no such tag");
    assert!(matches!(e, LayoutReadError::TagNotFound { .. }), "{e}");
    let index = f.root().join("index.json").display().to_string();
    assert_eq!(
        e.to_string(),
        format!("no image tagged \"three\" in {index}")
    );
    let other = Digest::sha256_of(b"other").to_string();
    let e = r
        .resolve(Select::Digest(&other))
        .expect_err("no such digest");
    assert_eq!(e.to_string(), format!("no manifest {other} in {index}"));
    let e = r.resolve(Select::Only).expect_err("two entries");
    assert!(matches!(e, LayoutReadError::NotOne { count: 2, .. }), "{e}");

    f.index(std::slice::from_ref(&a));
    let r = LayoutReader::open(f.root()).expect("open");
    assert_eq!(r.resolve(Select::Only).expect("only").digest, a.digest);
}

#[test]
fn a_missing_layout_or_index_is_no_index_and_a_bad_index_names_the_file() {
    let f = Fixture::new();
    for root in [f.root().join("nope"), f.root().to_path_buf()] {
        let e = LayoutReader::open(&root).expect_err("no index");
        assert!(matches!(e, LayoutReadError::NoIndex { .. }), "{e}");
        assert!(e.to_string().contains(&root.display().to_string()), "{e}");
        assert!(e.to_string().contains("is it an OCI image layout?"), "{e}");
    }
    fs::write(f.root().join("index.json"), b"{\"schemaVersion\":").expect("write");
    let e = LayoutReader::open(f.root()).expect_err("bad index");
    assert!(matches!(e, LayoutReadError::Index { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&f.root().join("index.json").display().to_string()),
        "{e}"
    );
}

#[test]
fn an_oversized_index_is_refused_unread() {
    let f = Fixture::new();
    let mut big = b"{\"schemaVersion\":2,\"manifests\":[],\"x\":\"".to_vec();
    big.resize(MAX_MANIFEST_BYTES as usize + 10, b'a');
    big.extend_from_slice(b"\"}");
    fs::write(f.root().join("index.json"), big).expect("write");
    let e = LayoutReader::open(f.root()).expect_err("too big");
    assert!(
        matches!(
            e,
            LayoutReadError::Index {
                source: ImageError::TooLarge { .. },
                ..
            }
        ),
        "{e}"
    );
}

/// A digest is never a path: an index entry whose digest would climb out of `blobs/` does not
/// parse, and a digest asked for by text only ever matches an entry.
#[test]
fn path_traversal_in_a_digest_is_refused() {
    let f = Fixture::new();
    let evil = format!("sha256:../../../{}", "0".repeat(55));
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{evil}","size":2}}]}}"#
    );
    fs::write(f.root().join("index.json"), index).expect("write");
    let e = LayoutReader::open(f.root()).expect_err("traversal in index.json");
    assert!(matches!(e, LayoutReadError::Index { .. }), "{e}");

    let a = f.blob(MediaType::OciImageManifest, b"{}");
    f.index(std::slice::from_ref(&a));
    let r = LayoutReader::open(f.root()).expect("open");
    let e = r
        .resolve(Select::Digest("sha256:../../index.json"))
        .expect_err("traversal asked for");
    assert!(matches!(e, LayoutReadError::DigestNotFound { .. }), "{e}");
}

#[test]
fn documents_are_read_verified_and_capped() {
    let f = Fixture::new();
    let blobs = LayoutBlobs::new(f.root());
    let good = f.blob(MediaType::OciImageConfig, b"{\"config\":true}");
    assert_eq!(
        blobs.read_document(&good, 1024).expect("read"),
        b"{\"config\":true}"
    );
    assert!(blobs.has(&good));

    // Larger than the cap: refused before the file is opened.
    let e = blobs.read_document(&good, 4).expect_err("oversized");
    assert!(
        matches!(
            e,
            LayoutReadError::TooLarge {
                size: 15,
                max: 4,
                ..
            }
        ),
        "{e}"
    );

    // Same size, other bytes.
    let path = blob_path(f.root(), &good.digest);
    fs::write(&path, b"{\"config\":fals}").expect("corrupt");
    let e = blobs.read_document(&good, 1024).expect_err("corrupt");
    assert!(matches!(e, LayoutReadError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    // A descriptor claiming fewer bytes than the file has.
    fs::write(&path, b"{\"config\":true}").expect("restore");
    let mut short = good.clone();
    short.size -= 1;
    let e = blobs.read_document(&short, 1024).expect_err("longer file");
    assert!(matches!(e, LayoutReadError::Corrupt { .. }), "{e}");
    assert!(!blobs.has(&short));

    // Only sha256.
    let sha512: Digest = format!("sha512:{}", "a".repeat(128))
        .parse()
        .expect("digest");
    let other = Descriptor::new(MediaType::OciImageConfig, sha512, 2);
    let e = blobs.read_document(&other, 1024).expect_err("sha512");
    assert!(matches!(e, LayoutReadError::NotSha256 { .. }), "{e}");
}

#[test]
fn a_blob_imports_verified_and_a_corrupt_one_stores_nothing() {
    let f = Fixture::new();
    let blobs = LayoutBlobs::new(f.root());
    let layer = f.blob(MediaType::OciLayerGzip, &b"layer bytes ".repeat(10_000));
    let (_s, store) = new_store();
    blobs
        .import(&store, &layer.digest, Some(layer.size))
        .expect("import");
    store.verify_blob(&layer.digest).expect("stored intact");
    // Present: nothing to read (even if the layout's copy is gone now).
    fs::remove_file(blob_path(f.root(), &layer.digest)).expect("remove");
    blobs
        .import(&store, &layer.digest, Some(layer.size))
        .expect("already there");
    blobs
        .import(&store, &layer.digest, None)
        .expect("already there, size unknown");

    let bad = f.blob(MediaType::OciLayerGzip, b"rotten layer");
    let path = blob_path(f.root(), &bad.digest);
    fs::write(&path, b"rotten lay3r").expect("corrupt, same size");
    let (_s2, fresh) = new_store();
    for size in [Some(bad.size), None] {
        let e = blobs
            .import(&fresh, &bad.digest, size)
            .expect_err("corrupt");
        assert!(
            matches!(
                e,
                LayoutReadError::Store {
                    source: StoreError::DigestMismatch { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(!fresh.has_blob(&bad.digest), "nothing was stored");
    }

    // Truncated on disk: its size is wrong.
    let whole = f.blob(MediaType::OciLayerGzip, b"a whole layer");
    fs::write(blob_path(f.root(), &whole.digest), b"a whole").expect("truncate");
    let e = blobs
        .import(&fresh, &whole.digest, Some(whole.size))
        .expect_err("truncated");
    assert!(matches!(e, LayoutReadError::Store { .. }), "{e}");
    assert!(!fresh.has_blob(&whole.digest));

    let absent = Digest::sha256_of(b"never written");
    let e = blobs.import(&fresh, &absent, Some(3)).expect_err("missing");
    assert!(matches!(e, LayoutReadError::MissingBlob { .. }), "{e}");
    assert!(e.to_string().contains("is missing from the layout"), "{e}");
}
