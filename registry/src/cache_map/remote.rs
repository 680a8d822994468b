//! Caches in a registry: `--cache-to type=registry` / `type=inline` and `--cache-from`.
//!
//! A registry cache is an ordinary OCI image manifest whose config blob is the cache map
//! (media type `application/vnd.rbuild.cache.config.v1+json`) and whose layers are every blob
//! the map names — BuildKit's `image-manifest=true` form, which registries that refuse indexes
//! or unknown artifact types (ECR, GCR) accept, and whose layers keep the blobs alive there.
//! An inline cache is the map inside an image's config (field [`super::INLINE_FIELD`]), its layers
//! being the image's own. Reading either fetches the manifest and the config only: layers are
//! fetched (or mounted by a later push) only when a key matches.

use rbuild_layers::image::config::ImageConfig;
use rbuild_layers::image::manifest::{ImageIndex, ImageManifest, MAX_CONFIG_BYTES};
use rbuild_layers::store::{Store, StoreError};
use rbuild_layers::{Descriptor, Digest, MediaType, Platform};

use super::error::{CacheLoadError, CacheWriteError};
use super::format::{CacheMap, MAX_CACHE_MAP_BYTES};
use crate::client::Registry;
use crate::error::RegistryError;
use crate::pull::{choose, record_source};
use crate::push::{push_then_tag, PushOptions, PushReport};
use crate::Reference;

/// Where a registry cache's map was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// A cache manifest (`--cache-to type=registry`).
    Manifest,
    /// The config of an image (`--cache-to type=inline`).
    Inline,
}

/// A cache map read from a registry, and where its blobs are.
#[derive(Debug, Clone)]
pub struct RemoteCache {
    pub map: CacheMap,
    /// The registry host its blobs are on.
    pub registry: String,
    /// The repository its blobs are in.
    pub repository: String,
    /// The digest of the (platform-specific) manifest the map came from.
    pub manifest_digest: Digest,
    pub kind: CacheKind,
}

impl RemoteCache {
    /// Records every blob of the map as coming from this cache's repository, so that a build
    /// reusing a step can fetch its layer later and a push to the same registry can mount it
    /// without downloading it ([`crate::push::push_with`]).
    pub fn record_sources(&self, store: &Store) {
        for d in self.map.layer_descriptors() {
            record_source(store, &self.registry, &self.repository, &d.digest);
        }
    }
}

/// Checks that every blob the map names is listed by the manifest that carries it: a blob the
/// manifest does not list is not kept alive by the registry and may be gone.
pub(crate) fn check_listed(
    map: &CacheMap,
    listed: &[Descriptor],
    what: &str,
    listed_by: &str,
) -> Result<(), CacheLoadError> {
    for d in map.layer_descriptors() {
        if !listed
            .iter()
            .any(|l| l.digest == d.digest && l.size == d.size)
        {
            return Err(CacheLoadError::Inconsistent {
                what: what.to_string(),
                reason: format!(
                    "the cache map names layer {} ({} bytes), which {listed_by} does not list",
                    d.digest, d.size
                ),
            });
        }
    }
    Ok(())
}

/// Reads the cache map of `reference` (a cache manifest, or an image with an inline cache; for
/// an index, its entry for `platform`). Fetches no layer.
pub fn fetch_cache(
    reg: &Registry,
    reference: &Reference,
    platform: &Platform,
) -> Result<RemoteCache, CacheLoadError> {
    let what = reference.to_string();
    let registry = |source| CacheLoadError::Registry {
        what: what.clone(),
        source: Box::new(source),
    };
    let repo = reference.repository();
    let wanted = match (reference.digest(), reference.tag_or_latest()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let document = |path: String, source| {
        registry(RegistryError::Document {
            registry: reg.host().to_string(),
            path,
            source: Box::new(source),
        })
    };
    let top = reg.get_manifest(repo, &wanted).map_err(registry)?;
    let fetched = if top.is_index() {
        let index = ImageIndex::from_slice(&top.bytes)
            .map_err(|e| document(format!("/v2/{repo}/manifests/{wanted}"), e))?;
        let entry = choose(&index, platform, &what).map_err(registry)?;
        let child = reg
            .get_manifest(repo, &entry.digest.to_string())
            .map_err(registry)?;
        if child.is_index() {
            return Err(CacheLoadError::Inconsistent {
                what,
                reason: format!("index entry {} is itself an index", entry.digest),
            });
        }
        child
    } else {
        top
    };
    let manifest = ImageManifest::from_slice(&fetched.bytes)
        .map_err(|e| document(format!("/v2/{repo}/manifests/{}", fetched.digest), e))?;
    let (map, kind) = match &manifest.config.media_type {
        MediaType::RbuildCacheConfig => {
            let bytes = reg
                .get_blob_bytes(repo, &manifest.config, MAX_CACHE_MAP_BYTES)
                .map_err(registry)?;
            let map = CacheMap::from_slice(&bytes).map_err(|source| CacheLoadError::Format {
                what: what.clone(),
                source,
            })?;
            check_listed(&map, &manifest.layers, &what, "the cache manifest")?;
            (map, CacheKind::Manifest)
        }
        MediaType::OciImageConfig | MediaType::DockerImageConfig => {
            let bytes = reg
                .get_blob_bytes(repo, &manifest.config, MAX_CONFIG_BYTES)
                .map_err(registry)?;
            let config: ImageConfig =
                serde_json::from_slice(&bytes).map_err(|e| CacheLoadError::Inconsistent {
                    what: what.clone(),
                    reason: format!(
                        "the image config {} is not valid: {e}",
                        manifest.config.digest
                    ),
                })?;
            let map = CacheMap::from_image_config(&config)
                .ok_or_else(|| CacheLoadError::NoInlineCache { what: what.clone() })?
                .map_err(|source| CacheLoadError::Format {
                    what: what.clone(),
                    source,
                })?;
            check_listed(&map, &manifest.layers, &what, "the image's manifest")?;
            (map, CacheKind::Inline)
        }
        other => {
            return Err(CacheLoadError::NotACache {
                what,
                media_type: other.clone(),
            })
        }
    };
    Ok(RemoteCache {
        map,
        registry: reg.host().to_string(),
        repository: repo.to_string(),
        manifest_digest: fetched.digest,
        kind,
    })
}

/// The cache manifest for `map`: the config blob is the map, the layers are its blobs, in
/// digest order. No `artifactType`, no annotations: the same map always gives the same bytes.
pub fn cache_manifest(config: Descriptor, map: &CacheMap) -> ImageManifest {
    ImageManifest::new_oci(config, map.layer_descriptors())
}

/// Writes `map` (config blob) and its cache manifest into `store`; returns the manifest's
/// descriptor. Deterministic: the same map gives the same digest.
pub fn store_cache_manifest(store: &Store, map: &CacheMap) -> Result<Descriptor, CacheWriteError> {
    put_cache_manifest(store, map)
        .map(|(_, manifest)| manifest)
        .map_err(|source| CacheWriteError::Store {
            what: "manifest (in the local store)".to_string(),
            source,
        })
}

/// Stores the map and its cache manifest; returns their descriptors (config, manifest).
pub(crate) fn put_cache_manifest(
    store: &Store,
    map: &CacheMap,
) -> Result<(Descriptor, Descriptor), StoreError> {
    let config = store.put_bytes(MediaType::RbuildCacheConfig, &map.to_vec())?;
    let manifest = cache_manifest(config.clone(), map);
    let manifest = store.put_bytes(MediaType::OciImageManifest, &manifest.to_canonical_json())?;
    Ok((config, manifest))
}

/// Pushes `map` as a cache manifest to `reference` (its tag, `latest` by default). Blobs the
/// store lacks are mounted or fetched as [`crate::push::push_with`] does.
pub fn push_cache(
    reg: &Registry,
    store: &Store,
    reference: &Reference,
    map: &CacheMap,
    opts: &PushOptions,
) -> Result<PushReport, CacheWriteError> {
    let what = reference.to_string();
    let (_, top) = put_cache_manifest(store, map).map_err(|source| CacheWriteError::Store {
        what: what.clone(),
        source,
    })?;
    let tags: Vec<String> = reference
        .tag_or_latest()
        .map(str::to_string)
        .into_iter()
        .collect();
    push_then_tag(
        reg,
        store,
        reference.repository(),
        &top,
        &tags,
        opts,
        || rbuild_layers::failpoint::hit("cache.before_manifest"),
    )
    .map_err(|source| CacheWriteError::Registry {
        what,
        source: Box::new(source),
    })
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
