//! Lazy blobs: the layers of a stage that no output contains are stored as plain tars and never
//! compressed during the build; a cache export (`mode=max`) compresses them then, into exactly
//! the blobs a build that compresses every layer while writing it makes, and the image is the
//! same either way (`RBUILD_DEFER_COMPRESSION=0` turns deferral off). A build that exports
//! every step itself compresses while writing.

use std::collections::BTreeSet;
use std::path::Path;

use rbuild_tests::build::{build, build_cmd, write_tree};
use rbuild_tests::{oci, rbuild, run, scratch};

const DOCKERFILE: &str = "\
FROM scratch AS builder
COPY big.txt /work/big.txt
COPY small.txt /work/small.txt
FROM scratch
COPY --from=builder /work/small.txt /app/small.txt
";

/// Every blob of a store: digest → whether it is gzip (magic `1f 8b`).
fn store_blobs(store: &Path) -> Vec<(String, bool)> {
    std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let head = std::fs::read(e.path()).unwrap();
            (
                format!("sha256:{}", e.file_name().to_string_lossy()),
                head.starts_with(&[0x1f, 0x8b]),
            )
        })
        .collect()
}

fn is_plain_tar(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.len() > 262 && &bytes[257..262] == b"ustar"
}

#[test]
fn a_stage_no_output_contains_is_not_compressed_until_a_cache_export_needs_it() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    // A few MB of compressible text.
    let big: String = (0..400_000).map(|i| format!("line {i}\n")).collect();
    write_tree(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("big.txt", &big),
            ("small.txt", "small\n"),
        ],
    );

    // 1. The default: the builder stage's layers are stored uncompressed.
    let lazy = dir.path().join("lazy");
    let out_lazy = dir.path().join("out-lazy");
    build(
        &lazy,
        &ctx,
        &[
            "--output",
            &format!("type=oci,dest={},tar=false", out_lazy.display()),
        ],
    )
    .success();
    let after_build = store_blobs(&lazy);
    let big_tar = after_build
        .iter()
        .map(|(d, _)| oci::blob_path(&lazy, d))
        .find(|p| is_plain_tar(p) && std::fs::metadata(p).unwrap().len() > big.len() as u64)
        .expect("the builder's big layer is a plain tar in the store");
    assert!(
        after_build
            .iter()
            .filter(|(_, gz)| *gz)
            .all(|(d, _)| std::fs::metadata(oci::blob_path(&lazy, d)).unwrap().len() < 64 * 1024),
        "no layer of the builder stage was compressed: {after_build:?}"
    );

    // 2. Compressing every layer while it is written makes the same image.
    let eager = dir.path().join("eager");
    let out_eager = dir.path().join("out-eager");
    run(build_cmd(&eager, &ctx)
        .args([
            "--output",
            &format!("type=oci,dest={},tar=false", out_eager.display()),
        ])
        .env("RBUILD_DEFER_COMPRESSION", "0"))
    .success();
    let digest = |layout: &Path| oci::index(layout)["manifests"][0]["digest"].clone();
    assert_eq!(digest(&out_lazy), digest(&out_eager));
    let eager_blobs: BTreeSet<String> = store_blobs(&eager).into_iter().map(|(d, _)| d).collect();

    // 3. A cache export (mode=max, every step cached) carries every layer, compressed: the
    //    builder's layers now, with the bytes the eager build wrote.
    let cache = dir.path().join("cache");
    let export = build(
        &lazy,
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
        ],
    )
    .success();
    assert!(
        export.stderr.contains("compressing 2 deferred layer(s)"),
        "{}",
        export.stderr
    );
    let layers: Vec<(String, String)> = oci::index(&cache)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| oci::blob_json(&cache, d["digest"].as_str().unwrap()))
        .flat_map(|m| m["layers"].as_array().cloned().unwrap_or_default())
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let distinct: BTreeSet<&String> = layers.iter().map(|(d, _)| d).collect();
    assert_eq!(
        distinct.len(),
        3,
        "two builder layers and the final one: {layers:?}"
    );
    let before: BTreeSet<&String> = after_build.iter().map(|(d, _)| d).collect();
    let mut compressed_later = 0;
    for (d, media_type) in &layers {
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        assert!(oci::blob_path(&cache, d).is_file(), "{d} is in the cache");
        assert!(
            eager_blobs.contains(d),
            "{d} has the bytes an eager write makes"
        );
        if !before.contains(d) {
            compressed_later += 1;
        }
    }
    assert!(
        compressed_later >= 2,
        "the builder's layers were compressed for the export, not during the build: {layers:?}"
    );
    assert!(big_tar.is_file(), "the tar stays for later snapshots");

    // 4. A cold build that exports every step (mode=max) compresses while writing: no tar.
    let max = dir.path().join("max");
    let cache2 = dir.path().join("cache2");
    let cold = build(
        &max,
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache2.display()),
        ],
    )
    .success();
    assert!(!cold.stderr.contains("deferred"), "{}", cold.stderr);
    assert!(
        store_blobs(&max)
            .iter()
            .all(|(d, _)| !is_plain_tar(&oci::blob_path(&max, d))),
        "a mode=max build defers nothing"
    );

    // The store is consistent with its new records.
    let fsck = run(rbuild(&lazy).arg("fsck"));
    assert_eq!(fsck.code, 0, "{}\n{}", fsck.stdout, fsck.stderr);
}
