//! Layers of a pushed image are uploaded while they are written (one streamed `PATCH` per
//! layer, `export::ahead`), counted once by the push; a registry that refuses streamed uploads
//! gets them from the push instead. Every pushed image is copied back by skopeo, which verifies
//! each blob against its digest.

use std::sync::atomic::Ordering;

use crate::registry_roundtrip::registry;
use rbuild_tests::build::build;
use rbuild_tests::fault_proxy::{self, Fault, Request};
use rbuild_tests::registry_http::{layer_digests, manifest};
use rbuild_tests::scratch;

/// A context with two layers: 6 MiB of incompressible bytes (long enough to compress that an
/// upload can follow it), then a small file.
fn two_layer_context(dir: &std::path::Path, seed: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY big /big\nCOPY small /small\n",
    )
    .unwrap();
    let mut big = Vec::with_capacity(6 << 20);
    let mut x: u64 = seed.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    while big.len() < 6 << 20 {
        // xorshift64*: incompressible enough, and the same bytes for the same seed.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        big.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    std::fs::write(dir.join("big"), big).unwrap();
    std::fs::write(dir.join("small"), format!("{seed}\n")).unwrap();
}

/// Successful `PUT …/blobs/uploads/…?…digest=<d>` requests (completed uploads) of `d`.
fn completed_uploads(log: &[Request], digest: &str) -> usize {
    log.iter()
        .filter(|r| {
            r.method == "PUT"
                && r.status == 201
                && r.path.contains("/blobs/uploads/")
                && r.path.contains(&format!("digest={digest}"))
        })
        .count()
}

fn skopeo_copies(name: &str, dir: &std::path::Path) {
    if !rbuild_tests::have_tool("skopeo") {
        return;
    }
    rbuild_tests::run(
        std::process::Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:v1", dir.display())),
    )
    .success();
}

#[test]
fn a_pushed_build_streams_each_new_layer_once_while_writing_it() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let proxy = fault_proxy::start(&reg, Fault::None);
    let ctx = dir.path().join("ctx");
    // Unique bytes per run: the registry must not have these blobs yet.
    two_layer_context(&ctx, &format!("streamed {}", dir.path().display()));
    let name = format!("{}/e2e/ahead:v1", proxy.addr);
    let out = build(&dir.path().join("store"), &ctx, &["--tag", &name, "--push"]).success();
    // The push counts the streamed layers as uploaded (two layers and the config).
    assert!(
        out.stderr
            .contains("3 blob(s) uploaded, 0 mounted, 0 already there"),
        "{}",
        out.stderr
    );
    let log = proxy.requests();
    let streamed = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/v2/e2e/ahead/blobs/uploads/"))
        .count();
    assert_eq!(streamed, 2, "one streamed PATCH per layer: {log:#?}");
    let m = manifest(&reg, "e2e/ahead", "v1").expect("the image was pushed");
    let layers = layer_digests(&m);
    assert_eq!(layers.len(), 2);
    for l in &layers {
        assert_eq!(
            completed_uploads(&log, l),
            1,
            "layer {l} was uploaded once: {log:#?}"
        );
        // The push trusted the completed upload: it did not ask for the layer again.
        assert!(
            !log.iter()
                .any(|r| r.method == "HEAD" && r.path.ends_with(&format!("/blobs/{l}"))),
            "{log:#?}"
        );
    }
    skopeo_copies(&format!("{reg}/e2e/ahead:v1"), &dir.path().join("copied"));
}

#[test]
fn a_registry_that_refuses_streamed_uploads_gets_the_layers_from_the_push() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let proxy = fault_proxy::start(&reg, Fault::RefuseStreamedUploads);
    let ctx = dir.path().join("ctx");
    two_layer_context(&ctx, &format!("refused {}", dir.path().display()));
    let name = format!("{}/e2e/no-stream:v1", proxy.addr);
    let out = build(&dir.path().join("store"), &ctx, &["--tag", &name, "--push"]).success();
    assert_eq!(proxy.injected.load(Ordering::SeqCst), 2, "{}", out.stderr);
    // Nothing about the refusal reaches the user: the push simply uploads the layers.
    assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("3 blob(s) uploaded, 0 mounted, 0 already there"),
        "{}",
        out.stderr
    );
    let log = proxy.requests();
    let m = manifest(&reg, "e2e/no-stream", "v1").expect("the image was pushed");
    for l in layer_digests(&m) {
        assert_eq!(completed_uploads(&log, &l), 1, "{l}: {log:#?}");
    }
    skopeo_copies(
        &format!("{reg}/e2e/no-stream:v1"),
        &dir.path().join("copied"),
    );
}

#[test]
fn a_layer_two_pushed_targets_share_is_streamed_once_and_counted_once() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let proxy = fault_proxy::start(&reg, Fault::None);
    let ctx = dir.path().join("ctx");
    two_layer_context(&ctx, &format!("shared {}", dir.path().display()));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS base\nCOPY big /big\n\nFROM base AS app\nCOPY small /small\n",
    )
    .unwrap();
    let out = build(
        &dir.path().join("store"),
        &ctx,
        &[
            "--target",
            "base",
            "--target",
            "app",
            "--tag",
            &format!("{}/e2e/shared:v1", proxy.addr),
            "--push",
        ],
    )
    .success();
    // base: its layer and config; app: its own layer and config, base's layer already there.
    assert!(
        out.stderr
            .contains("2 blob(s) uploaded, 0 mounted, 0 already there"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("2 blob(s) uploaded, 0 mounted, 1 already there"),
        "{}",
        out.stderr
    );
    let log = proxy.requests();
    let m = manifest(&reg, "e2e/shared", "v1-app").expect("app was pushed");
    for l in layer_digests(&m) {
        assert_eq!(completed_uploads(&log, &l), 1, "{l}: {log:#?}");
    }
}

#[test]
fn without_streaming_a_cache_export_to_the_same_registry_waits_and_mounts_the_new_layers() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let proxy = fault_proxy::start(&reg, Fault::None);
    let ctx = dir.path().join("ctx");
    two_layer_context(&ctx, &format!("off {}", dir.path().display()));
    let out = rbuild_tests::run(
        rbuild_tests::build::build_cmd(&dir.path().join("store"), &ctx)
            .env("RBUILD_UPLOAD_AHEAD", "0")
            .args(["--tag", &format!("{}/e2e/off:v1", proxy.addr), "--push"])
            .args([
                "--cache-to",
                &format!("type=registry,ref={}/e2e/off-cache:v1,mode=max", proxy.addr),
            ]),
    )
    .success();
    let log = proxy.requests();
    assert!(
        !log.iter().any(|r| r.method == "PATCH"),
        "RBUILD_UPLOAD_AHEAD=0 streams nothing: {log:#?}"
    );
    let m = manifest(&reg, "e2e/off", "v1").expect("the image was pushed");
    for l in layer_digests(&m) {
        assert_eq!(
            completed_uploads(&log, &l),
            1,
            "{l} is uploaded by the push and mounted by the export: {}\n{log:#?}",
            out.stderr
        );
    }
}
