//! Registry caches, lazy pulls and pushes of blobs the store lacks, against the real
//! registry of tests/run.sh (skipped with a printed reason when there is none).

use std::sync::atomic::{AtomicUsize, Ordering};

use rbuild_layers::image::manifest::ImageManifest;
use rbuild_layers::{Descriptor, MediaType};

use super::*;
use crate::cache_map::{CacheFormatError, CacheLoadError};
use crate::pull::{pull_with, source_of, PullOptions};
use crate::push::{push, push_with, PushOptions};
use crate::testutil::{self, image, layer, linux_amd64, map_of};

fn reference(reg: &Registry, repo: &str, tag: &str) -> Reference {
    format!("{}/{repo}:{tag}", reg.host())
        .parse()
        .expect("valid reference")
}

fn no_progress() -> PushOptions<'static> {
    PushOptions {
        on_bytes: &|_| {},
        fetch_missing: None,
        sent_ahead: &[],
    }
}

#[test]
fn the_cache_manifest_is_deterministic_and_lists_every_blob_once() {
    let (_d1, s1) = testutil::store();
    let (_d2, s2) = testutil::store();
    let layers = [layer(&s1, "a"), layer(&s1, "b")];
    let mut map = map_of(&layers);
    // A cache mount sharing a step's blob is listed once.
    map.cache_mounts.insert(
        "pip".into(),
        crate::cache_map::CacheMountLayer {
            layer: layers[0].clone(),
        },
    );
    let m1 = store_cache_manifest(&s1, &map).expect("store");
    let m2 = store_cache_manifest(&s2, &map).expect("store");
    assert_eq!(m1, m2, "same map, same manifest digest on another machine");
    let parsed =
        ImageManifest::from_slice(&s1.read_blob(&m1.digest).expect("read")).expect("parse");
    assert_eq!(parsed.media_type, Some(MediaType::OciImageManifest));
    assert_eq!(parsed.artifact_type, None, "ECR/GCR refuse artifact caches");
    assert_eq!(parsed.config.media_type, MediaType::RbuildCacheConfig);
    assert_eq!(parsed.layers, map.layer_descriptors());
    assert_eq!(parsed.layers.len(), 2);
    assert_eq!(
        CacheMap::from_slice(&s1.read_blob(&parsed.config.digest).expect("config")).expect("map"),
        map
    );
}

#[test]
fn push_cache_then_fetch_cache_round_trips_without_fetching_layers() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d, store) = testutil::store();
    let layers = [layer(&store, "c1"), layer(&store, "c2")];
    let map = map_of(&layers);
    let r = reference(&reg, &testutil::repo("cache-rt"), "buildcache");
    let report = push_cache(&reg, &store, &r, &map, &no_progress()).expect("push cache");
    assert_eq!(
        report.blobs_uploaded, 3,
        "two layers and the map: {report:?}"
    );
    let again = push_cache(&reg, &store, &r, &map, &no_progress()).expect("push again");
    assert_eq!((again.blobs_uploaded, again.blobs_existing), (0, 3));

    let got = fetch_cache(&reg, &r, &linux_amd64()).expect("fetch cache");
    assert_eq!(got.kind, CacheKind::Manifest);
    assert_eq!(got.map, map);
    assert_eq!(got.registry, reg.host());
    assert_eq!(got.repository, r.repository());
    assert_eq!(
        Some(got.manifest_digest.clone()),
        report.digest,
        "the pushed manifest is the one read back"
    );

    // The sources it records let a later push mount the layers.
    let (_d2, other) = testutil::store();
    got.record_sources(&other);
    assert_eq!(
        source_of(&other, &layers[0].descriptor.digest),
        Some((reg.host().to_string(), r.repository().to_string()))
    );
}

#[test]
fn an_image_with_an_inline_cache_is_read_from_its_config() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d, store) = testutil::store();
    let layers = [layer(&store, "i1"), layer(&store, "i2")];
    let map = map_of(&layers);
    let top = image(&store, &layers, Some(&map));
    let repo = testutil::repo("inline");
    push(&reg, &store, &repo, &top, &["v1".to_string()]).expect("push image");

    let got = fetch_cache(&reg, &reference(&reg, &repo, "v1"), &linux_amd64()).expect("fetch");
    assert_eq!(got.kind, CacheKind::Inline);
    assert_eq!(
        got.map, map,
        "configs are left out of inline maps; this one had none"
    );
    assert_eq!(got.manifest_digest, top.digest);
}

#[test]
fn an_image_without_the_inline_field_is_no_inline_cache() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d, store) = testutil::store();
    let layers = [layer(&store, "n1")];
    let top = image(&store, &layers, None);
    let repo = testutil::repo("no-inline");
    push(&reg, &store, &repo, &top, &["v1".to_string()]).expect("push image");
    let r = reference(&reg, &repo, "v1");
    let e = fetch_cache(&reg, &r, &linux_amd64()).expect_err("no cache");
    assert!(matches!(e, CacheLoadError::NoInlineCache { .. }), "{e}");
    assert!(e.to_string().contains(&r.to_string()), "names the ref: {e}");
    assert!(!e.is_not_found());
}

#[test]
fn an_inline_map_naming_a_layer_the_image_lacks_is_inconsistent() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d, store) = testutil::store();
    let layers = [layer(&store, "x1")];
    let stranger = layer(&store, "x2");
    let map = map_of(&[layers[0].clone(), stranger]);
    let top = image(&store, &layers, Some(&map));
    let repo = testutil::repo("inconsistent");
    push(&reg, &store, &repo, &top, &["v1".to_string()]).expect("push image");
    let e = fetch_cache(&reg, &reference(&reg, &repo, "v1"), &linux_amd64()).expect_err("bad");
    assert!(matches!(e, CacheLoadError::Inconsistent { .. }), "{e}");
}

#[test]
fn a_cache_map_of_an_unknown_version_is_a_format_error() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d, store) = testutil::store();
    let config = store
        .put_bytes(
            MediaType::RbuildCacheConfig,
            br#"{"version":2,"platform":"linux/amd64","entries":{}}"#,
        )
        .expect("put");
    let manifest = ImageManifest::new_oci(config, vec![]);
    let top = store
        .put_bytes(MediaType::OciImageManifest, &manifest.to_canonical_json())
        .expect("put");
    let repo = testutil::repo("future");
    push(&reg, &store, &repo, &top, &["cache".to_string()]).expect("push");
    let e = fetch_cache(&reg, &reference(&reg, &repo, "cache"), &linux_amd64()).expect_err("v2");
    assert!(
        matches!(
            e,
            CacheLoadError::Format {
                source: CacheFormatError::UnknownVersion { found: 2 },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_missing_cache_ref_is_not_found() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let r = reference(&reg, &testutil::repo("absent"), "cache");
    let e = fetch_cache(&reg, &r, &linux_amd64()).expect_err("absent");
    assert!(e.is_not_found(), "{e:?}");
}

/// The zero-download path: a base pulled lazily (manifest and config only) is pushed to
/// another repository of the same registry by mounting every blob.
#[test]
fn lazily_pulled_layers_are_mounted_not_downloaded_when_pushed() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d1, origin) = testutil::store();
    let layers = [layer(&origin, "m1"), layer(&origin, "m2")];
    let top = image(&origin, &layers, None);
    let base_repo = testutil::repo("base");
    push(&reg, &origin, &base_repo, &top, &["v1".to_string()]).expect("push base");

    let (_d2, store) = testutil::store();
    let downloaded = AtomicUsize::new(0);
    let pulled = pull_with(
        &reg,
        &store,
        &reference(&reg, &base_repo, "v1"),
        &linux_amd64(),
        &PullOptions {
            layers: false,
            on_bytes: &|n| {
                downloaded.fetch_add(n as usize, Ordering::Relaxed);
            },
        },
    )
    .expect("lazy pull");
    assert_eq!(pulled.manifest.digest, top.digest);
    assert!(store.has_blob(&pulled.parsed.config.digest));
    assert_eq!(
        downloaded.load(Ordering::Relaxed) as u64,
        pulled.parsed.config.size,
        "only the config was downloaded"
    );
    for l in &layers {
        assert!(!store.has_blob(&l.descriptor.digest), "no layer is stored");
        assert_eq!(
            source_of(&store, &l.descriptor.digest),
            Some((reg.host().to_string(), base_repo.clone()))
        );
    }

    let fetched = AtomicUsize::new(0);
    let fetch = |_: &Descriptor| -> Result<(), RegistryError> {
        fetched.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    let dest = testutil::repo("app");
    let report = push_with(
        &reg,
        &store,
        &dest,
        &pulled.manifest,
        &["v1".to_string()],
        &PushOptions {
            on_bytes: &|_| {},
            fetch_missing: Some(&fetch),
            sent_ahead: &[],
        },
    )
    .expect("push");
    assert_eq!(
        report.blobs_mounted, 3,
        "two layers and the config: {report:?}"
    );
    assert_eq!(report.blobs_uploaded, 0);
    assert_eq!(fetched.load(Ordering::Relaxed), 0, "nothing was fetched");
    for l in &layers {
        assert!(
            !store.has_blob(&l.descriptor.digest),
            "still not downloaded"
        );
        assert!(reg.has_blob(&dest, &l.descriptor.digest).expect("head"));
    }
    // Pushing again finds everything there.
    let again =
        push_with(&reg, &store, &dest, &pulled.manifest, &[], &no_progress()).expect("push again");
    assert_eq!(again.blobs_existing, 3);
}

#[test]
fn blobs_without_a_source_are_fetched_with_fetch_missing_then_uploaded() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d1, origin) = testutil::store();
    let layers = [layer(&origin, "f1"), layer(&origin, "f2")];
    let top = image(&origin, &layers, None);
    // A store with the documents only, and no record of where the layers are.
    let (_d2, store) = testutil::store();
    for d in [
        &top.digest,
        &ImageManifest::from_slice(&origin.read_blob(&top.digest).expect("m"))
            .expect("parse")
            .config
            .digest,
    ] {
        store
            .put_bytes(
                MediaType::OciImageManifest,
                &origin.read_blob(d).expect("read"),
            )
            .expect("copy document");
    }
    let repo = testutil::repo("fetched");
    let e = push(&reg, &store, &repo, &top, &[]).expect_err("no way to get the layers");
    assert!(
        e.to_string().contains("missing from the local store"),
        "{e}"
    );

    let fetched = AtomicUsize::new(0);
    let fetch = |d: &Descriptor| -> Result<(), RegistryError> {
        fetched.fetch_add(1, Ordering::Relaxed);
        store.put_bytes(d.media_type.clone(), &origin.read_blob(&d.digest)?)?;
        Ok(())
    };
    let report = push_with(
        &reg,
        &store,
        &repo,
        &top,
        &["v1".to_string()],
        &PushOptions {
            on_bytes: &|_| {},
            fetch_missing: Some(&fetch),
            sent_ahead: &[],
        },
    )
    .expect("push");
    assert_eq!(fetched.load(Ordering::Relaxed), 2);
    // The config went up in the failed attempt (it is local); the layers now.
    assert_eq!(
        (report.blobs_uploaded, report.blobs_existing),
        (2, 1),
        "{report:?}"
    );
    assert!(store.has_blob(&layers[1].descriptor.digest));
}

#[test]
fn a_declined_mount_is_false_and_small_blobs_are_verified_in_memory() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d, store) = testutil::store();
    let l = layer(&store, "d1");
    let repo = testutil::repo("mount-src");
    let empty = testutil::repo("mount-empty");
    let dest = testutil::repo("mount-dest");
    // The source repository does not have the blob: distribution answers 202.
    push(
        &reg,
        &store,
        &repo,
        &image(&store, std::slice::from_ref(&l), None),
        &[],
    )
    .expect("push");
    assert!(!reg
        .mount_blob(&dest, &l.descriptor.digest, &empty)
        .expect("declined"));
    assert!(!reg.has_blob(&dest, &l.descriptor.digest).expect("head"));
    assert!(reg
        .mount_blob(&dest, &l.descriptor.digest, &repo)
        .expect("mounted"));
    assert!(reg.has_blob(&dest, &l.descriptor.digest).expect("head"));

    let bytes = reg
        .get_blob_bytes(&repo, &l.descriptor, 1 << 20)
        .expect("small blob");
    assert_eq!(bytes, store.read_blob(&l.descriptor.digest).expect("read"));
    let e = reg
        .get_blob_bytes(&repo, &l.descriptor, l.descriptor.size - 1)
        .expect_err("over the cap");
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e}");
    let mut short = l.descriptor.clone();
    short.size -= 1;
    let e = reg
        .get_blob_bytes(&repo, &short, 1 << 20)
        .expect_err("longer than its descriptor");
    assert!(e.to_string().contains("descriptor says"), "{e}");
}

#[test]
fn a_declined_mount_falls_back_to_fetch_missing_and_upload() {
    let Some(reg) = testutil::registry() else {
        return;
    };
    let (_d1, origin) = testutil::store();
    let layers = [layer(&origin, "decl")];
    let top = image(&origin, &layers, None);
    let (_d2, store) = testutil::store();
    let manifest =
        ImageManifest::from_slice(&origin.read_blob(&top.digest).expect("m")).expect("parse");
    for d in [&top, &manifest.config] {
        store
            .put_bytes(
                d.media_type.clone(),
                &origin.read_blob(&d.digest).expect("read"),
            )
            .expect("copy document");
    }
    // The store believes the layer is in a repository that does not have it.
    let empty = testutil::repo("declines");
    crate::pull::record_source(&store, reg.host(), &empty, &layers[0].descriptor.digest);
    let fetched = AtomicUsize::new(0);
    let fetch = |d: &Descriptor| -> Result<(), RegistryError> {
        fetched.fetch_add(1, Ordering::Relaxed);
        store.put_bytes(d.media_type.clone(), &origin.read_blob(&d.digest)?)?;
        Ok(())
    };
    let report = push_with(
        &reg,
        &store,
        &testutil::repo("declined-dest"),
        &top,
        &[],
        &PushOptions {
            on_bytes: &|_| {},
            fetch_missing: Some(&fetch),
            sent_ahead: &[],
        },
    )
    .expect("push");
    assert_eq!(fetched.load(Ordering::Relaxed), 1);
    assert_eq!(
        (report.blobs_uploaded, report.blobs_mounted),
        (2, 0),
        "{report:?}"
    );
}
