//! Test helpers: the real registry tests/run.sh starts (`RBUILD_TEST_REGISTRY`, a plain-HTTP
//! CNCF distribution on 127.0.0.1 with deletes enabled), unique repository names, and small
//! images built in a store.

use std::sync::atomic::{AtomicUsize, Ordering};

use rbuild_layers::image::config::{History, ImageConfig};
use rbuild_layers::image::manifest::ImageManifest;
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest, MediaType, Platform};

use crate::cache::{CacheEntry, CacheLayer, CacheMap};
use crate::{ClientOptions, Registry};

/// The test registry, or `None` (with the reason printed) when none is configured; under
/// `RBUILD_REQUIRE_TOOLS=1` a missing registry fails the test instead.
pub fn registry() -> Option<Registry> {
    match std::env::var("RBUILD_TEST_REGISTRY") {
        Ok(host) if !host.is_empty() => {
            Some(Registry::connect(&host, &ClientOptions::default()).expect("connect"))
        }
        _ => {
            assert!(
                std::env::var("RBUILD_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "RBUILD_TEST_REGISTRY is required (RBUILD_REQUIRE_TOOLS=1): run bash tests/run.sh"
            );
            eprintln!(
                "SKIPPED: RBUILD_TEST_REGISTRY is not set (bash tests/run.sh starts a registry)"
            );
            None
        }
    }
}

/// A repository name no other test (or earlier run) uses.
pub fn repo(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "rbuild-test/{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn linux_amd64() -> Platform {
    Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        os_version: None,
        variant: None,
    }
}

/// A fresh store in a temp dir (the dir lives as long as the returned guard).
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// Puts a fake layer blob (the registry does not look inside layers) into `store`.
pub fn layer(store: &Store, seed: &str) -> CacheLayer {
    let bytes = format!("layer {seed} ").repeat(100).into_bytes();
    let descriptor = store
        .put_bytes(MediaType::OciLayerGzip, &bytes)
        .expect("put layer");
    CacheLayer {
        descriptor,
        diff_id: Digest::sha256_of(format!("diff {seed}").as_bytes()),
        index: None,
    }
}

/// A map with one entry per layer, chained by parent keys.
pub fn map_of(layers: &[CacheLayer]) -> CacheMap {
    let mut m = CacheMap::new("linux/amd64");
    let mut parent = None;
    for (i, l) in layers.iter().enumerate() {
        let key = Digest::sha256_of(format!("key {} {i}", l.descriptor.digest).as_bytes());
        m.entries.insert(
            key.clone(),
            CacheEntry {
                parent: parent.clone(),
                layer: Some(l.clone()),
                config: None,
                description: format!("[stage {i}] RUN step {i}"),
            },
        );
        parent = Some(key);
    }
    m
}

/// An image of `layers` in `store` (its config carrying `inline` as an inline cache, if
/// given); returns the manifest's descriptor.
pub fn image(store: &Store, layers: &[CacheLayer], inline: Option<&CacheMap>) -> Descriptor {
    let mut config = ImageConfig::new("linux", "amd64");
    for l in layers {
        config.add_layer(l.diff_id.clone(), History::new("RUN test"));
    }
    if let Some(m) = inline {
        m.embed_in(&mut config);
    }
    let config = store
        .put_bytes(MediaType::OciImageConfig, &config.to_canonical_json())
        .expect("put config");
    let manifest = ImageManifest::new_oci(
        config,
        layers.iter().map(|l| l.descriptor.clone()).collect(),
    );
    store
        .put_bytes(MediaType::OciImageManifest, &manifest.to_canonical_json())
        .expect("put manifest")
}
