//! Build-cache export/import between CI pipeline runs (`--cache-to` / `--cache-from`), the four
//! runs of the issue, for each kind of cache: `type=registry` (mode=max), `type=local` (mode=max)
//! and `type=inline` (min mode, carried by the pushed image and imported with a plain image
//! reference). Every run is a fresh runner: a new empty store, the same registry, the same
//! `SOURCE_DATE_EPOCH` (so the same sources give bit-identical images).
//!
//! 1. cold: build development + production, push, export the cache;
//! 2. same sources: every step CACHED, identical digests, and no layer downloaded at all (the
//!    import is lazy, base images included, and pushing to the registry that holds the blobs
//!    needs no bytes) — counted at a proxy in front of the registry;
//! 3. one application file changed: only production's `COPY . .` reruns;
//! 4. a cache that does not exist, then one whose blobs were deleted: warnings, exit 0, and the
//!    image run 1 made (never a wrong one).

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::registry_roundtrip::registry;
use rbuild_tests::pipeline::{Pipeline, PipelineRun, TAG};
use rbuild_tests::{oci, registry_http, scratch};

/// The steps of the fixture that do work, in order: base's WORKDIR, COPY and RUN (the
/// dependencies), then production's `COPY . .`.
const DEPENDENCY_STEPS: [&str; 3] = [
    "WORKDIR /app",
    "COPY requirements.txt install-deps.sh",
    "RUN --mount=type=cache,id=pip",
];
const CODE_STEP: &str = "[production 1/1] COPY . .";

/// The config media type of rbuild's registry cache manifest.
pub const CACHE_CONFIG_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Registry,
    Local,
    Inline,
}

/// How one kind of cache is exported and imported in this pipeline.
struct Cache {
    kind: Kind,
    /// The cache (re-)exported by every run.
    to: String,
    /// Imports of the cache runs 1–3 export.
    from: Vec<String>,
    /// An import of a cache that does not exist, and the ref or directory its warning names.
    missing_from: String,
    missing_name: String,
    /// Export of run 4 (a different destination, so it does not overwrite the pipeline's).
    to_elsewhere: String,
    local_dir: PathBuf,
}

fn cache_for(p: &Pipeline, kind: Kind) -> Cache {
    let local_dir = p.dir.join("cache");
    match kind {
        Kind::Registry => {
            let r = format!("{}:{TAG}", p.repo("app-cache"));
            let missing = format!("{}:does-not-exist", p.repo("app-cache"));
            Cache {
                kind,
                to: format!("type=registry,ref={r},mode=max"),
                from: vec![format!("type=registry,ref={r}")],
                missing_from: format!("type=registry,ref={missing}"),
                missing_name: missing,
                to_elsewhere: format!("type=registry,ref={}:run4,mode=max", p.repo("app-cache")),
                local_dir,
            }
        }
        Kind::Local => {
            let missing = p.dir.join("no-such-cache").display().to_string();
            Cache {
                kind,
                to: format!("type=local,dest={},mode=max", local_dir.display()),
                from: vec![format!("type=local,src={}", local_dir.display())],
                missing_from: format!("type=local,src={missing}"),
                missing_name: missing,
                to_elsewhere: format!(
                    "type=local,dest={},mode=max",
                    p.dir.join("cache-run4").display()
                ),
                local_dir,
            }
        }
        Kind::Inline => {
            // min mode: production's image carries base's steps and its own; development's
            // carries base's. Both are listed, tried in order.
            let missing = format!("{}:{TAG}", p.repo("never-pushed"));
            Cache {
                kind,
                to: "type=inline".into(),
                from: vec![
                    format!("{}:{TAG}-production", p.repo("app")),
                    format!("{}:{TAG}-development", p.repo("app")),
                ],
                missing_from: missing.clone(),
                missing_name: missing,
                to_elsewhere: "type=inline".into(),
                local_dir,
            }
        }
    }
}

fn with_flags(to: &str, from: &[String]) -> Vec<String> {
    let mut v = vec!["--cache-to".to_string(), to.to_string()];
    for f in from {
        v.push("--cache-from".into());
        v.push(f.clone());
    }
    v
}

fn run_with(p: &Pipeline, image_repo: &str, flags: &[String]) -> PipelineRun {
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    p.run(image_repo, &args)
}

/// The layer blobs the cache itself refers to (registry: the cache manifest's layers; local:
/// the layers of every manifest in the directory's index; inline: the image's own layers).
fn cache_layers(p: &Pipeline, c: &Cache) -> BTreeSet<String> {
    match c.kind {
        Kind::Registry => {
            let m = p
                .manifest("app-cache", TAG)
                .expect("run 1 pushed the cache manifest");
            assert_eq!(
                m["config"]["mediaType"], CACHE_CONFIG_TYPE,
                "the registry cache is a manifest whose config is the cache map: {m}"
            );
            registry_http::layer_digests(&m).into_iter().collect()
        }
        Kind::Local => {
            let idx = oci::index(&c.local_dir);
            idx["manifests"]
                .as_array()
                .expect("the local cache's index.json lists manifests")
                .iter()
                .map(|d| oci::blob_json(&c.local_dir, d["digest"].as_str().expect("digest")))
                .flat_map(|m| registry_http::layer_digests(&m))
                .collect()
        }
        Kind::Inline => BTreeSet::new(),
    }
}

/// Makes the cache's layer blobs unavailable: deleted from the registry repository that holds
/// them (`DELETE /v2/<name>/blobs/<digest>`), or removed from the local directory.
fn delete_cache_blobs(p: &Pipeline, c: &Cache) -> usize {
    let (repo, reference) = match c.kind {
        Kind::Local => {
            let layers = cache_layers(p, c);
            for d in &layers {
                std::fs::remove_file(oci::blob_path(&c.local_dir, d)).unwrap();
            }
            return layers.len();
        }
        Kind::Registry => ("app-cache", TAG.to_string()),
        Kind::Inline => ("app", format!("{TAG}-production")),
    };
    let m = p.manifest(repo, &reference).expect("the cache exists");
    let layers = registry_http::layer_digests(&m);
    for d in &layers {
        let status = registry_http::delete_blob(&p.registry, &p.path(repo), d);
        assert!(
            status == 202 || status == 404,
            "DELETE {repo} blob {d}: {status}"
        );
    }
    layers.len()
}

fn pipeline(name: &str, kind: Kind) {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, name) else {
        return;
    };
    let c = cache_for(&p, kind);

    // Run 1, cold: nothing to import yet.
    let r1 = run_with(&p, "app", &with_flags(&c.to, &[])).ok();
    assert_eq!(r1.steps.len(), 4, "{:?}", r1.step_table());
    assert!(r1.steps.iter().all(|s| !s.cached), "{:?}", r1.step_table());
    let d1 = r1.digests();
    let mut layers = p.image_layers("app");
    layers.extend(cache_layers(&p, &c));
    assert!(!layers.is_empty());

    // Run 2, a fresh runner on the same commit: all from the imported cache, nothing downloaded.
    let r2 = run_with(&p, "app", &with_flags(&c.to, &c.from)).ok();
    assert!(
        r2.steps.iter().all(|s| s.cached),
        "every step comes from the imported cache: {:?}\n{}",
        r2.step_table(),
        r2.run.stderr
    );
    assert_eq!(r2.digests(), d1, "same sources, same images");
    let fetched = r2.layer_gets(&layers);
    assert!(
        fetched.is_empty(),
        "a fully cached run downloads no layer (base layers included); blob GETs:\n{}",
        r2.blob_gets().join("\n")
    );
    let n = r2.steps.len();
    let plural = format!("imported cache: {n} steps");
    assert!(
        r2.run.stdout.contains(&plural) || r2.run.stderr.contains(&plural),
        "the summary says how many steps came from the imported cache ({plural:?}):\n{}{}",
        r2.run.stdout,
        r2.run.stderr
    );
    for target in ["development", "production"] {
        assert_eq!(
            r2.meta[target]["rbuild.cache.imported.steps"], n,
            "{target}: {}",
            r2.meta
        );
        let bytes = r2.meta[target]["rbuild.cache.imported.bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("rbuild.cache.imported.bytes in {}", r2.meta));
        if kind != Kind::Local {
            assert!(
                bytes <= r2.bytes_received(),
                "{bytes} imported bytes but only {} came from the registry",
                r2.bytes_received()
            );
        }
    }
    assert!(r2.warnings().is_empty(), "{:?}", r2.warnings());

    // Run 3, one application file changed: the dependency steps hit, the code COPY reruns.
    p.edit_app();
    let r3 = run_with(&p, "app", &with_flags(&c.to, &c.from)).ok();
    for step in DEPENDENCY_STEPS {
        assert!(
            r3.cached(step),
            "{step} is a cache hit: {:?}",
            r3.step_table()
        );
    }
    assert!(
        !r3.cached(CODE_STEP),
        "the code COPY reruns: {:?}",
        r3.step_table()
    );
    assert!(
        !r3.run.stderr.contains("pip-cache"),
        "the dependency RUN did not run: {}",
        r3.run.stderr
    );
    let d3 = r3.digests();
    assert_eq!(d3.0, d1.0, "development has no application code");
    assert_ne!(d3.1, d1.1, "production has the edited file");
    // The new code layer goes to the registry once: the image push uploads it and a cache
    // export to the same registry mounts it from there.
    let mut uploads: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &r3.requests {
        if r.method == "PUT" && r.path.contains("/blobs/uploads/") {
            if let Some(d) = r.path.split("digest=").nth(1) {
                *uploads.entry(d.to_string()).or_default() += 1;
            }
        }
    }
    assert!(!uploads.is_empty(), "run 3 uploads its new layer");
    assert!(
        uploads.values().all(|&n| n == 1),
        "no blob is uploaded twice in one run: {uploads:?}"
    );

    // Run 4a, a cache that does not exist: a warning, a full build, run 1's images.
    p.restore_app();
    let r4 = run_with(
        &p,
        "app-run4a",
        &with_flags(&c.to_elsewhere, std::slice::from_ref(&c.missing_from)),
    )
    .ok();
    r4.assert_cache_warning(&c.missing_name);
    assert!(r4.steps.iter().all(|s| !s.cached), "{:?}", r4.step_table());
    assert_eq!(
        r4.digests(),
        d1,
        "without a cache the build is the reproducible one"
    );

    // Run 4b, the cache's blobs are gone: warnings, and still run 1's images — pushed to a new
    // repository, so the bytes are needed and cannot come from the broken cache.
    assert!(delete_cache_blobs(&p, &c) > 0, "the cache has layers");
    let r5 = run_with(&p, "app-run4b", &with_flags(&c.to_elsewhere, &c.from)).ok();
    assert!(
        r5.warnings().iter().any(|w| w.contains("cache")),
        "missing cache blobs are warned about: {}",
        r5.run.stderr
    );
    assert_eq!(
        r5.digests(),
        d1,
        "a broken cache never yields a wrong image: {:?}",
        r5.step_table()
    );
}

#[test]
fn cache_registry_max_pipeline_reuses_everything_downloads_no_layer_and_survives_broken_caches() {
    pipeline("registry", Kind::Registry);
}

#[test]
fn cache_local_max_pipeline_reuses_everything_downloads_no_layer_and_survives_broken_caches() {
    pipeline("local", Kind::Local);
}

#[test]
fn cache_inline_pipeline_reuses_everything_downloads_no_layer_and_survives_broken_caches() {
    pipeline("inline", Kind::Inline);
}

/// The CI run that matters most: only the application code changed, so the one step that
/// reruns is production's `COPY . .`. That COPY only asks whether /app and its parents exist
/// below it, which the imported layers' path indexes answer: a fresh runner downloads no layer
/// at all (not the dependency layer below the COPY, not the base), and still makes exactly the
/// image a cache-less build of the same sources makes.
#[test]
fn cache_registry_code_change_reruns_the_code_copy_without_downloading_any_layer() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let Some(p) = Pipeline::new(dir.path(), &reg, "code-change-no-download") else {
        return;
    };
    let c = cache_for(&p, Kind::Registry);
    let r1 = run_with(&p, "app", &with_flags(&c.to, &[])).ok();
    assert!(r1.steps.iter().all(|s| !s.cached), "{:?}", r1.step_table());
    let mut layers = p.image_layers("app");
    layers.extend(cache_layers(&p, &c));

    p.edit_app();
    let r3 = run_with(&p, "app", &with_flags(&c.to, &c.from)).ok();
    for step in DEPENDENCY_STEPS {
        assert!(
            r3.cached(step),
            "{step} is a cache hit: {:?}",
            r3.step_table()
        );
    }
    assert!(!r3.cached(CODE_STEP), "{:?}", r3.step_table());
    let fetched = r3.layer_gets(&layers);
    assert!(
        fetched.is_empty(),
        "the code COPY looks paths up in the imported layers' indexes, it does not fetch them; blob GETs:\n{}",
        r3.blob_gets().join("\n")
    );

    // The same sources built without any cache (a fresh store, another repository).
    let cold = p.run("app-cold", &[]).ok();
    assert_eq!(
        r3.digests(),
        cold.digests(),
        "an index-answered COPY makes the same image as a full build"
    );
}
