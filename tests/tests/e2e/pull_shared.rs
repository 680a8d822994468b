//! Lazily pulled layers are downloaded once per build: two stages built at the same time on
//! one base (each with a `RUN`, so each needs the base's files) share the download instead of
//! fetching every layer twice (`lazy_pull::LayerFetcher` waits for a download in flight).

use rbuild_tests::build::{build, busybox_base_with, write_tree};
use rbuild_tests::fault_proxy::{self, Fault};
use rbuild_tests::{registry_http, scratch};

use crate::registry_roundtrip::registry;

#[test]
fn two_stages_on_one_pulled_base_download_each_of_its_layers_once() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let base = format!("{reg}/e2e/shared-base:v1");
    if !busybox_base_with(
        dir.path(),
        &dir.path().join("base-store"),
        &base,
        &["--push"],
    ) {
        return;
    }
    let manifest = registry_http::manifest(&reg, "e2e/shared-base", "v1").expect("the base");
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert!(!layers.is_empty());

    let proxy = fault_proxy::start(&reg, Fault::None);
    let ctx = dir.path().join("ctx");
    let from = format!("{}/e2e/shared-base:v1", proxy.addr);
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM {from} AS a\nRUN echo a > /a\n\
                 FROM {from} AS b\nRUN echo b > /b\n\
                 FROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
            ),
        )],
    );
    build(&dir.path().join("store"), &ctx, &[]).success();
    let log = proxy.requests();
    for l in &layers {
        let gets = log
            .iter()
            .filter(|r| r.blob_get().is_some_and(|(_, d)| d == l))
            .count();
        assert_eq!(gets, 1, "layer {l} downloaded once: {log:#?}");
    }
}
