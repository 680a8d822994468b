//! `mode=min` caches (the default, and every inline cache) carry the steps of a compiler stage
//! by key only, as BuildKit's do: a fresh runner importing one resolves the final stage's
//! `COPY --from` without building the compiler stage; when a step needs such a layer's bytes
//! after all (a later step of that stage changed), the build goes round again and builds it —
//! never failing, never making another image.

use std::path::Path;

use crate::registry_roundtrip::registry;
use rbuild_tests::build::{build, busybox_base, metadata, write_tree};
use rbuild_tests::progress::op_steps;
use rbuild_tests::{oci, scratch};

const BASE: &str = "localhost/rbuild-keyonly/busybox:1";

/// Each RUN prints a marker its command line does not contain (progress shows the command).
const DOCKERFILE: &str = "\
FROM localhost/rbuild-keyonly/busybox:1 AS build
RUN echo one > /one.txt && echo STEP$((10+1))RAN
ARG V=1
RUN cat /one.txt > /out.txt && echo $V >> /out.txt && echo STEP$((10+2))RAN
FROM localhost/rbuild-keyonly/busybox:1
COPY --from=build /out.txt /out.txt
";

/// A store with the base image (each fresh runner makes its own; the base is not cached).
fn fresh_store(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let store = dir.join(name);
    let base_ctx = dir.join(format!("{name}-base"));
    std::fs::create_dir_all(&base_ctx).unwrap();
    busybox_base(&base_ctx, &store, BASE).then_some(store)
}

fn digest_of(layout: &Path) -> String {
    oci::index(layout)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_min_cache_resolves_copy_from_without_building_the_compiler_stage() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(&ctx, &[("Dockerfile", DOCKERFILE)]);
    let Some(first) = fresh_store(dir.path(), "first") else {
        return;
    };
    let cache = dir.path().join("cache");
    let out1 = dir.path().join("out1");
    let made = build(
        &first,
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={}", cache.display()),
            "--output",
            &format!("type=oci,dest={},tar=false", out1.display()),
        ],
    )
    .success();
    assert!(made.stderr.contains("STEP12RAN"), "{}", made.stderr);

    // The cache map lists the compiler stage's two RUNs by key only, and holds no blob of them.
    let map = oci::index(&cache)["manifests"][0]["digest"]
        .as_str()
        .map(|d| oci::blob_json(&cache, d))
        .unwrap();
    let config = oci::blob_json(&cache, map["config"]["digest"].as_str().unwrap());
    let key_only = config["keyOnly"].as_object().expect("keyOnly entries");
    assert_eq!(key_only.len(), 2, "{config}");
    for e in key_only.values() {
        let blob = e["layer"]["descriptor"]["digest"].as_str().unwrap();
        assert!(
            !oci::blob_path(&cache, blob).exists(),
            "{blob} not exported"
        );
    }

    // 1. A fresh runner: every step from the cache, neither RUN runs, the same image.
    let Some(second) = fresh_store(dir.path(), "second") else {
        return;
    };
    let out2 = dir.path().join("out2");
    let meta = dir.path().join("meta2.json");
    let hit = build(
        &second,
        &ctx,
        &[
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
            "--output",
            &format!("type=oci,dest={},tar=false", out2.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    )
    .success();
    assert!(
        !hit.stderr.contains("STEP11RAN") && !hit.stderr.contains("STEP12RAN"),
        "{}",
        hit.stderr
    );
    let steps = op_steps(&hit.stderr);
    assert!(
        steps
            .iter()
            .filter(|s| s.name.starts_with('['))
            .all(|s| s.cached),
        "{}",
        hit.stderr
    );
    assert_eq!(digest_of(&out2), digest_of(&out1));
    assert!(metadata(&meta)["containerimage.digest"].is_string());

    // 2. Another fresh runner with the second RUN changed: it needs the first RUN's layer,
    //    which the cache has by key only; the build goes round again and builds both.
    let Some(third) = fresh_store(dir.path(), "third") else {
        return;
    };
    let out3 = dir.path().join("out3");
    let rebuilt = build(
        &third,
        &ctx,
        &[
            "--build-arg",
            "V=2",
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
            "--output",
            &format!("type=local,dest={}", out3.display()),
        ],
    )
    .success();
    assert!(rebuilt.stderr.contains("by key only"), "{}", rebuilt.stderr);
    assert!(rebuilt.stderr.contains("STEP11RAN"), "{}", rebuilt.stderr);
    assert_eq!(
        std::fs::read_to_string(out3.join("out.txt")).unwrap(),
        "one\n2\n"
    );
}

#[test]
fn an_inline_cache_in_a_pushed_image_resolves_copy_from_on_a_fresh_runner() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(&ctx, &[("Dockerfile", DOCKERFILE)]);
    let Some(first) = fresh_store(dir.path(), "first") else {
        return;
    };
    let image = format!("{reg}/e2e/keyonly:inline");
    build(
        &first,
        &ctx,
        &["--tag", &image, "--push", "--cache-to", "type=inline"],
    )
    .success();
    let Some(fresh) = fresh_store(dir.path(), "fresh") else {
        return;
    };
    let hit = build(
        &fresh,
        &ctx,
        &[
            "--tag",
            &image,
            "--push",
            "--cache-from",
            &format!("type=registry,ref={image}"),
        ],
    )
    .success();
    assert!(
        !hit.stderr.contains("STEP11RAN") && !hit.stderr.contains("STEP12RAN"),
        "{}",
        hit.stderr
    );
    assert!(
        op_steps(&hit.stderr)
            .iter()
            .filter(|s| s.name.starts_with('['))
            .all(|s| s.cached),
        "{}",
        hit.stderr
    );
}
