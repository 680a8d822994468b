//! Importing build caches, beyond the four-run pipeline of cache_pipeline.rs: the counting proxy
//! really sees what a cold run downloads (so "no layer downloaded" is not vacuous), a cache map
//! of an unknown version, of another platform or not JSON at all is refused with a warning and
//! never fails the build, `--cache-from` sources are tried in order, and
//! `RUN --mount=type=cache` contents travel with `cache-mounts=ID`.

use std::collections::BTreeSet;

use crate::cache_pipeline::CACHE_CONFIG_TYPE;
use crate::registry_roundtrip::registry;
use rbuild_tests::build::{build_cmd, metadata};
use rbuild_tests::fault_proxy::{self, Fault};
use rbuild_tests::pipeline::{Pipeline, TAG};
use rbuild_tests::{registry_http, run, scratch};

#[test]
fn cache_counting_proxy_sees_the_base_layers_a_cold_run_pulls() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, "counter") else {
        return;
    };
    let r = p.run("app", &[]).ok();
    assert_eq!(r.steps.len(), 4, "{:?}", r.step_table());
    let base: BTreeSet<String> =
        registry_http::layer_digests(&p.manifest("busybox", "1").expect("base pushed"))
            .into_iter()
            .collect();
    let gets = r.layer_gets(&base);
    assert_eq!(
        gets.len(),
        base.len(),
        "a cold run in an empty store downloads each base layer once: {:?}",
        r.blob_gets()
    );
    let base_manifest = p.manifest("busybox", "1").expect("base pushed");
    let expected: u64 = base_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let got: u64 = gets.iter().map(|g| g.body_bytes).sum();
    assert_eq!(got, expected, "the proxy counts every byte of the bodies");
    assert!(gets.iter().all(|g| g
        .blob_get()
        .is_some_and(|(repo, _)| repo == p.path("busybox"))));
    // The registry's own log (tests/run.sh runs it at info level) agrees with the proxy.
    if let Ok(log) = std::env::var("RBUILD_TEST_REGISTRY_LOG") {
        let log = std::fs::read_to_string(log).unwrap();
        for g in &gets {
            let uri = format!("http.request.uri=\"{}\"", g.path);
            assert!(
                log.lines()
                    .any(|l| l.contains("http.request.method=GET") && l.contains(&uri)),
                "the registry logged {uri}"
            );
        }
    }
}

/// Pushes a cache manifest whose config (the cache map) is `map` to `<ns>/app-cache:<tag>`;
/// returns its reference.
fn push_cache_map(p: &Pipeline, tag: &str, map: &[u8]) -> String {
    let repo = p.path("app-cache");
    let config = registry_http::put_blob(&p.registry, &repo, map);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": CACHE_CONFIG_TYPE, "digest": config, "size": map.len()},
        "layers": [],
    });
    let status = registry_http::put_manifest(
        &p.registry,
        &repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    assert_eq!(status, 201, "PUT the cache manifest {tag}");
    format!("{}:{tag}", p.repo("app-cache"))
}

#[test]
fn cache_maps_of_an_unknown_version_another_platform_or_not_json_warn_and_the_build_succeeds() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, "corrupt") else {
        return;
    };
    let plain = p.run("app", &[]).ok();
    let refs = [
        // A later rbuild's format: refused by version, not misread.
        push_cache_map(
            &p,
            "version-99",
            br#"{"version":99,"platform":"linux/amd64","entries":{}}"#,
        ),
        // A cache built for another platform: its keys can never match; rbuild says so.
        push_cache_map(
            &p,
            "other-platform",
            br#"{"version":1,"platform":"linux/s390x","entries":{}}"#,
        ),
        push_cache_map(&p, "not-json", b"\x00 this is not a cache map"),
    ];
    let mut args = Vec::new();
    for r in &refs {
        args.push("--cache-from".to_string());
        args.push(format!("type=registry,ref={r}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = p.run("app-imported", &args).ok();
    for cache in &refs {
        r.assert_cache_warning(cache);
    }
    assert!(r.steps.iter().all(|s| !s.cached), "{:?}", r.step_table());
    assert_eq!(
        r.digests(),
        plain.digests(),
        "the same image as without them"
    );
}

#[test]
fn cache_from_sources_are_tried_in_order_a_missing_one_only_warns() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, "repeated") else {
        return;
    };
    let good = format!("{}:{TAG}", p.repo("app-cache"));
    let missing = format!("{}:missing", p.repo("app-cache"));
    let r1 = p
        .run(
            "app",
            &["--cache-to", &format!("type=registry,ref={good},mode=max")],
        )
        .ok();
    let r2 = p
        .run(
            "app",
            &[
                "--cache-from",
                &format!("type=registry,ref={missing}"),
                "--cache-from",
                &format!("type=registry,ref={good}"),
            ],
        )
        .ok();
    r2.assert_cache_warning(&missing);
    assert!(
        r2.steps.iter().all(|s| s.cached),
        "the second source hits: {:?}",
        r2.step_table()
    );
    assert_eq!(r2.digests(), r1.digests());
}

/// Run 1 exports the `pip` cache mount with the cache; a fresh runner whose requirements
/// changed reruns the install and finds the wheels run 1 put in the mount.
fn cache_mount_round_trip(name: &str, to: &str, from: &str) {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, name) else {
        return;
    };
    let to = to
        .replace("{REF}", &format!("{}:{TAG}", p.repo("app-cache")))
        .replace("{DIR}", &p.dir.join("cache").display().to_string());
    let from = from
        .replace("{REF}", &format!("{}:{TAG}", p.repo("app-cache")))
        .replace("{DIR}", &p.dir.join("cache").display().to_string());
    let r1 = p.run("app", &["--cache-to", &to]).ok();
    for pkg in ["flask", "gunicorn", "requests"] {
        assert!(
            r1.run.stderr.contains(&format!("pip-cache miss: {pkg}")),
            "a fresh store starts with an empty cache mount: {}",
            r1.run.stderr
        );
    }
    let req = p.src.join("requirements.txt");
    let mut text = std::fs::read_to_string(&req).unwrap();
    text.push_str("click==8.1.7\n");
    std::fs::write(&req, text).unwrap();
    let r2 = p.run("app", &["--cache-from", &from]).ok();
    assert!(
        !r2.cached("RUN --mount=type=cache,id=pip"),
        "requirements.txt changed, so the install reruns: {:?}",
        r2.step_table()
    );
    for pkg in ["flask", "gunicorn", "requests"] {
        assert!(
            r2.run.stderr.contains(&format!("pip-cache hit: {pkg}")),
            "{pkg} is in the imported cache mount: {}",
            r2.run.stderr
        );
    }
    assert!(
        r2.run.stderr.contains("pip-cache miss: click"),
        "a new requirement is not: {}",
        r2.run.stderr
    );
}

#[test]
fn cache_mounts_exported_to_a_registry_are_seen_by_a_later_fresh_runner() {
    cache_mount_round_trip(
        "mounts-registry",
        "type=registry,ref={REF},mode=max,cache-mounts=pip",
        "type=registry,ref={REF}",
    );
}

#[test]
fn cache_mounts_exported_to_a_directory_are_seen_by_a_later_fresh_runner() {
    cache_mount_round_trip(
        "mounts-local",
        "type=local,dest={DIR},mode=max,cache-mounts=pip",
        "type=local,src={DIR}",
    );
}

#[test]
fn cache_layers_that_do_not_verify_when_fetched_make_rbuild_build_again_without_the_cache() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, "corrupt-blobs") else {
        return;
    };
    let cache = format!("{}:{TAG}", p.repo("app-cache"));
    p.run(
        "app",
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    )
    .ok();
    // A second way into the same registry that corrupts one of the cache's layers only: the
    // cache map reads fine and every HEAD says the layers are there, but a layer that
    // is downloaded does not verify — after its steps were already taken as cached.
    let layers = registry_http::layer_digests(&p.manifest("app-cache", TAG).expect("cache pushed"));
    let layer = layers.first().expect("the cache has layers");
    let bad = fault_proxy::start(
        &reg,
        Fault::CorruptBlobsIn(format!("/{}/blobs/{layer}", p.path("app-cache"))),
    );
    // The base through the good proxy: its name is part of the FROM step's key.
    let base = p.base.clone();
    let cache_bad = cache.replace(&p.proxy.addr, &bad.addr);
    let build = |name: &str, extra: &[&str]| {
        let meta = dir.path().join(format!("{name}.json"));
        let out = run(build_cmd(&dir.path().join(name), &p.src)
            .args(["--target", "production"])
            .args(["--build-arg", &format!("BASE={base}")])
            // An OCI directory needs every layer's bytes.
            .args([
                "--output",
                &format!(
                    "type=oci,dest={},tar=false",
                    dir.path().join(format!("{name}-oci")).display()
                ),
            ])
            .args(["--metadata-file", meta.to_str().unwrap()])
            .args(extra));
        (out, meta)
    };
    let (clean, clean_meta) = build("clean", &[]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    let (r, meta) = build(
        "imported",
        &["--cache-from", &format!("type=registry,ref={cache_bad}")],
    );
    assert_eq!(
        r.code, 0,
        "a broken cache never fails the build:\n{}",
        r.stderr
    );
    assert!(
        bad.injected.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "a cache layer was downloaded (and corrupted):\n{}",
        r.stderr
    );
    assert!(
        r.stderr.lines().any(|l| l.starts_with("WARNING: ")
            && l.contains("building again without the imported cache")),
        "{}",
        r.stderr
    );
    assert_eq!(
        metadata(&meta)["containerimage.digest"],
        metadata(&clean_meta)["containerimage.digest"],
        "the image is the one built without the cache"
    );
}

#[test]
fn cache_fsck_counts_lazily_held_layers_as_fetchable_not_broken() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, "fsck-lazy") else {
        return;
    };
    let cache = format!("{}:{TAG}", p.repo("app-cache"));
    p.run(
        "app",
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    )
    .ok();
    let r2 = p
        .run(
            "app",
            &["--cache-from", &format!("type=registry,ref={cache}")],
        )
        .ok();
    assert!(r2.steps.iter().all(|s| s.cached), "{:?}", r2.step_table());
    // Run 2's store tags images whose layers it never downloaded.
    let out = run(rbuild_tests::rbuild(&dir.path().join("store-2")).arg("fsck"));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("held in their registry"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("broken tag"), "{}", out.stdout);
}
