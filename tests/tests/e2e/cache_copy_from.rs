//! Only the layers an output needs: a fully cached build fed by an imported cache does not
//! download a builder stage's layers to find its `COPY --from` in the cache (the step is looked
//! up by its definition key, which names the source stage by its content identity instead of
//! the copied files' digests). Pushing to the registry that holds the cache downloads no layer;
//! an OCI archive output downloads the final image's layers and nothing else.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cache_pipeline::CACHE_CONFIG_TYPE;
use crate::registry_roundtrip::registry;
use rbuild_tests::build::{build_cmd, metadata, write_tree};
use rbuild_tests::fault_proxy::{self, FaultProxy, Request};
use rbuild_tests::progress::{op_steps, Step};
use rbuild_tests::{registry_http, run, scratch, Run};

/// Bytes of the builder stage's big file: random, so its layer does not compress.
const BIG: usize = 4 << 20;

/// Deterministic incompressible bytes (xorshift64).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A builder stage that writes a big layer (the toolchain, the build output) and a final stage
/// that copies one small file out of it.
fn context(dir: &Path) {
    write_tree(
        dir,
        &[
            (
                "Dockerfile",
                "FROM scratch AS builder\n\
                 COPY big.bin app.txt /out/\n\
                 FROM scratch\n\
                 COPY --from=builder /out/app.txt /app.txt\n",
            ),
            ("app.txt", "hello from the builder\n"),
        ],
    );
    std::fs::write(dir.join("big.bin"), noise(BIG)).unwrap();
}

struct Built {
    run: Run,
    steps: Vec<Step>,
    meta: serde_json::Value,
    requests: Vec<Request>,
}

impl Built {
    fn digest(&self) -> &str {
        self.meta["containerimage.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest in {}", self.meta))
    }

    fn all_cached(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.cached)
    }

    fn imported_bytes(&self) -> u64 {
        self.meta["rbuild.cache.imported.bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("rbuild.cache.imported.bytes in {}", self.meta))
    }

    /// The `layers` the run downloaded (successful blob GETs; the cache map is a blob too).
    fn downloaded(&self, layers: &BTreeSet<String>) -> BTreeSet<String> {
        self.requests
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| r.blob_get().map(|(_, d)| d.to_string()))
            .filter(|d| layers.contains(d))
            .collect()
    }
}

fn build(proxy: &FaultProxy, store: &Path, ctx: &Path, args: &[&str]) -> Built {
    let meta = store.with_extension("meta.json");
    proxy.clear();
    let out = run(build_cmd(store, ctx)
        .args(["--metadata-file", meta.to_str().unwrap()])
        .args(args));
    assert_eq!(
        out.code, 0,
        "rbuild failed\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout, out.stderr
    );
    Built {
        // Build steps only (`[stage n/m] …`): a push is a progress step too.
        steps: op_steps(&out.stderr)
            .into_iter()
            .filter(|s| s.name.starts_with('['))
            .collect(),
        meta: metadata(&meta),
        requests: proxy.requests(),
        run: out,
    }
}

fn has_blob(store: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    store.join("blobs/sha256").join(hex).exists()
}

#[test]
fn cache_copy_from_hit_never_downloads_the_source_stage_layers() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let proxy = fault_proxy::start(&reg, fault_proxy::Fault::None);
    let ns = "e2e-cache/copy-from";
    let image = format!("{}/{ns}/app:main", proxy.addr);
    let cache = format!("{}/{ns}/app-cache:main", proxy.addr);
    let ctx = dir.path().join("ctx");
    context(&ctx);

    // Run 1 exports the cache of both stages.
    let cold = build(
        &proxy,
        &dir.path().join("store-1"),
        &ctx,
        &[
            "--tag",
            &image,
            "--push",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
        ],
    );
    assert!(cold.steps.iter().all(|s| !s.cached), "{:?}", cold.steps);
    let cache_manifest =
        registry_http::manifest(&reg, &format!("{ns}/app-cache"), "main").expect("cache pushed");
    assert_eq!(cache_manifest["config"]["mediaType"], CACHE_CONFIG_TYPE);
    let map = registry_http::request(
        &reg,
        "GET",
        &format!(
            "/v2/{ns}/app-cache/blobs/{}",
            cache_manifest["config"]["digest"].as_str().unwrap()
        ),
        &[],
        b"",
    );
    let map: serde_json::Value = serde_json::from_slice(&map.body).unwrap();
    let listed: Vec<&serde_json::Value> = map["entries"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e.get("definitionKeys").is_some())
        .collect();
    assert_eq!(
        listed.len(),
        1,
        "the COPY --from entry lists its definition key: {map}"
    );
    assert!(
        listed[0]["description"]
            .as_str()
            .unwrap()
            .contains("COPY --from=builder"),
        "{map}"
    );
    let final_layers: BTreeSet<String> = registry_http::layer_digests(
        &registry_http::manifest(&reg, &format!("{ns}/app"), "main").expect("image pushed"),
    )
    .into_iter()
    .collect();
    let builder_layers: BTreeSet<String> = registry_http::layer_digests(&cache_manifest)
        .into_iter()
        .filter(|d| !final_layers.contains(d))
        .collect();
    assert_eq!(
        builder_layers.len(),
        1,
        "the cache holds the builder's layer besides the image's: {cache_manifest}"
    );
    let builder_layer = builder_layers.iter().next().unwrap();
    let all_layers: BTreeSet<String> = final_layers.union(&builder_layers).cloned().collect();
    let from_cache = ["--cache-from", &format!("type=registry,ref={cache}")];

    // Run 2, a fresh runner pushing to the registry that holds the cache, and re-exporting the
    // cache there: nothing downloaded.
    let store2 = dir.path().join("store-2");
    let cache_to = format!(
        "type=registry,ref={}/{ns}/app-cache:rerun,mode=max",
        proxy.addr
    );
    let mut args = vec!["--tag", &image, "--push", "--cache-to", &cache_to];
    args.extend(from_cache);
    let pushed = build(&proxy, &store2, &ctx, &args);
    assert!(
        pushed.all_cached(),
        "{:?}\n{}",
        pushed.steps,
        pushed.run.stderr
    );
    assert_eq!(pushed.digest(), cold.digest(), "same sources, same image");
    assert_eq!(
        pushed.downloaded(&all_layers),
        BTreeSet::new(),
        "a cached COPY --from downloads no source layer, a push to the same registry no image layer"
    );
    assert_eq!(pushed.imported_bytes(), 0);
    let rerun = registry_http::manifest(&reg, &format!("{ns}/app-cache"), "rerun").unwrap();
    assert_eq!(
        rerun["config"], cache_manifest["config"],
        "a build that took its COPY --from by the definition key exports the same cache map \
         (the step under its own key, the definition key listed with it)"
    );
    assert!(!has_blob(&store2, builder_layer));
    assert!(
        !pushed.run.stderr.contains("fetching"),
        "no layer fetch is shown: {}",
        pushed.run.stderr
    );

    // Run 3, a fresh runner writing an OCI archive: the image's layers, and only them.
    let store3 = dir.path().join("store-3");
    let archive = dir.path().join("image.tar");
    let output = format!("type=oci,dest={}", archive.display());
    let mut args = vec!["--output", &output];
    args.extend(from_cache);
    let oci = build(&proxy, &store3, &ctx, &args);
    assert!(oci.all_cached(), "{:?}\n{}", oci.steps, oci.run.stderr);
    assert_eq!(
        oci.downloaded(&all_layers),
        final_layers,
        "exactly the image's layers"
    );
    let final_size: u64 = registry_http::manifest(&reg, &format!("{ns}/app"), "main").unwrap()
        ["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert_eq!(oci.imported_bytes(), final_size);
    assert!(!has_blob(&store3, builder_layer));
    assert!(archive.exists());

    // Run 4 on run 2's store (whose COPY --from was taken by its definition key): the copied
    // file changes, the builder reruns, the COPY --from misses and says why.
    std::fs::write(ctx.join("app.txt"), "hello again\n").unwrap();
    let mut args = vec!["--tag", &image, "--push"];
    args.extend(from_cache);
    let changed = build(&proxy, &store2, &ctx, &args);
    let copy = changed
        .steps
        .iter()
        .find(|s| s.name.contains("COPY --from=builder"))
        .expect("the COPY --from step");
    assert!(!copy.cached, "{:?}", changed.steps);
    assert_eq!(
        copy.miss.as_deref(),
        Some("stage builder changed"),
        "{}",
        changed.run.stderr
    );
    assert_ne!(changed.digest(), cold.digest());
}
