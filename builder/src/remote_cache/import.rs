//! `--cache-from`: caches exported by other builds (a registry cache manifest, an image's
//! inline cache, or an OCI layout directory), consulted when the local store misses.
//!
//! Loading reads only the cache maps. A lookup that finds a step's key trusts it only once its
//! layer is confirmed: in a registry by a `HEAD` of the blob (no bytes move — the layer is
//! fetched, verified by digest, only if something later needs it); in a directory by copying it
//! into the store, verified. Every problem — a missing ref, an unreadable or foreign-version map,
//! another platform, a blob that is gone — is one warning per cache, never a failed build: the
//! step is built instead. Sources are tried in the order given.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use rbuild_layers::store::Store;
use rbuild_layers::tar::INDEX_RECORD;
use rbuild_layers::{Descriptor, Digest, Platform};
use rbuild_registry::cache_map::{CacheLayer, CacheMap};
use rbuild_registry::Registry;

use crate::errors::error_chain;
use crate::lazy_pull::LayerFetcher;
use crate::progress::Progress;
use crate::remote_cache::spec::{CacheImportSource, CacheImportSpec};
use crate::solver::record::StepResult;
use crate::solver::LayerRef;
use rbuild_registry::Registries;

/// Where an imported cache's blobs are.
enum Location {
    Registry {
        reg: Arc<Registry>,
        host: String,
        repository: String,
    },
    Layout(PathBuf),
}

struct Source {
    /// The ref or directory as the user gave it (for warnings).
    label: String,
    map: CacheMap,
    /// Definition key → the key of the map's entry that lists it.
    by_definition: BTreeMap<Digest, Digest>,
    location: Location,
}

impl Source {
    fn new(label: String, map: CacheMap, location: Location) -> Source {
        Source {
            label,
            by_definition: map.definition_index(),
            map,
            location,
        }
    }
}

/// The caches given with `--cache-from`, in order.
pub struct ImportedCaches {
    sources: Sources,
    /// (source, blob) → whether the blob is available there.
    checked: Mutex<BTreeMap<(usize, Digest), bool>>,
    warned: Mutex<BTreeSet<usize>>,
    steps: AtomicUsize,
    /// Whether steps the caches carry by key only (`CacheMap::key_only`) are taken as done;
    /// turned off for good once a build needed such a step's layer (see
    /// [`ImportedCaches::refuse_key_only`]).
    key_only: AtomicBool,
    progress: Option<Progress>,
    /// Told which layers came from an imported cache (and the bytes copied from a directory).
    fetcher: Option<Arc<LayerFetcher>>,
}

/// The loaded sources, or the thread still reading their maps (see
/// [`ImportedCaches::load_in_background`]); the first use waits for it.
struct Sources {
    loaded: OnceLock<Vec<Source>>,
    loading: Mutex<Option<JoinHandle<Vec<Source>>>>,
}

impl Sources {
    fn ready(sources: Vec<Source>) -> Sources {
        Sources {
            loaded: OnceLock::from(sources),
            loading: Mutex::new(None),
        }
    }

    fn get(&self) -> &[Source] {
        self.loaded.get_or_init(|| {
            let handle = self
                .loading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            // A panicked loader has printed its panic; the build goes on without the caches.
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        })
    }
}

fn platform_string(p: &Platform) -> String {
    crate::graph::platform::platform_string(p)
}

impl ImportedCaches {
    /// No imported cache.
    pub fn none() -> ImportedCaches {
        ImportedCaches {
            sources: Sources::ready(Vec::new()),
            checked: Mutex::new(BTreeMap::new()),
            warned: Mutex::new(BTreeSet::new()),
            steps: AtomicUsize::new(0),
            key_only: AtomicBool::new(true),
            progress: None,
            fetcher: None,
        }
    }

    /// Reads the cache map of every `--cache-from` (a source that cannot be used is a warning),
    /// on a background thread: the maps are read while the build hashes its context and
    /// resolves its base images, and the first lookup waits for them.
    pub fn load_in_background(
        specs: Vec<CacheImportSpec>,
        platforms: Vec<Platform>,
        fetcher: Arc<LayerFetcher>,
        progress: Progress,
    ) -> ImportedCaches {
        let p = progress.clone();
        let registries = fetcher.registries().clone();
        let spawned = std::thread::Builder::new()
            .name("cache-import".into())
            .spawn(move || load_sources(&specs, &platforms, &registries, &p));
        match spawned {
            Ok(handle) => ImportedCaches::with_sources(
                Sources {
                    loaded: OnceLock::new(),
                    loading: Mutex::new(Some(handle)),
                },
                &progress,
                fetcher,
            ),
            Err(e) => {
                progress.warn(format!(
                    "could not start reading the imported caches: {e}; building without them"
                ));
                ImportedCaches::none()
            }
        }
    }

    fn with_sources(
        sources: Sources,
        progress: &Progress,
        fetcher: Arc<LayerFetcher>,
    ) -> ImportedCaches {
        ImportedCaches {
            sources,
            checked: Mutex::new(BTreeMap::new()),
            warned: Mutex::new(BTreeSet::new()),
            steps: AtomicUsize::new(0),
            key_only: AtomicBool::new(true),
            progress: Some(progress.clone()),
            fetcher: Some(fetcher),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.get().is_empty()
    }

    /// Steps taken from an imported cache so far.
    pub fn steps(&self) -> usize {
        self.steps.load(Ordering::Relaxed)
    }

    /// From now on, steps the caches carry by key only are not taken (they are built): a build
    /// needed the bytes of such a step's layer, which no cache has.
    pub fn refuse_key_only(&self) {
        self.key_only.store(false, Ordering::Relaxed);
    }

    fn warn_once(&self, source: usize, message: String) {
        let first = self
            .warned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source);
        if first {
            if let Some(p) = &self.progress {
                p.warn(message);
            }
        }
    }

    /// Whether blob `desc` of source `i` can be had; on success the store knows where to fetch
    /// it from (registry) or has it (directory).
    fn available(&self, i: usize, store: &Store, desc: &Descriptor) -> bool {
        let memo = (i, desc.digest.clone());
        if let Some(&known) = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&memo)
        {
            return known;
        }
        let s = &self.sources.get()[i];
        let ok = if store.blob_size(&desc.digest) == Some(desc.size) {
            true
        } else {
            match &s.location {
                Location::Registry {
                    reg,
                    host,
                    repository,
                } => match reg.has_blob(repository, &desc.digest) {
                    Ok(true) => {
                        rbuild_registry::pull::record_source(store, host, repository, &desc.digest);
                        if let Some(f) = &self.fetcher {
                            f.mark_imported(&desc.digest);
                        }
                        true
                    }
                    Ok(false) => {
                        self.warn_once(
                            i,
                            format!(
                                "cache {}: layer {} is missing from the registry; the steps that made it are built again",
                                s.label, desc.digest
                            ),
                        );
                        false
                    }
                    Err(e) => {
                        self.warn_once(
                            i,
                            format!(
                                "cache {}: checking layer {}: {}; the steps that made it are built again",
                                s.label,
                                desc.digest,
                                error_chain(&e)
                            ),
                        );
                        false
                    }
                },
                Location::Layout(dir) => {
                    match rbuild_registry::cache_map::layout::import_layout_blob(dir, store, desc) {
                        Ok(()) => {
                            if let Some(f) = &self.fetcher {
                                f.count_imported(desc.size);
                            }
                            true
                        }
                        Err(e) => {
                            self.warn_once(
                                i,
                                format!(
                                    "cache {}: layer {}: {}; the steps that made it are built again",
                                    s.label,
                                    desc.digest,
                                    error_chain(&e)
                                ),
                            );
                            false
                        }
                    }
                }
            }
        };
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(memo, ok);
        ok
    }

    /// The imported result of step `key`, from the first cache that has it and whose layer is
    /// available; else, while those are taken, from the first that has it by key only.
    pub fn lookup(&self, store: &Store, key: &Digest) -> Option<StepResult> {
        let n = self.sources.get().len();
        (0..n)
            .find_map(|i| self.result_of(i, store, key))
            .or_else(|| (0..n).find_map(|i| self.key_only_result(i, key)))
    }

    /// The imported result of the step whose definition key is `definition`, with the step's
    /// own key: from the first cache that lists the definition key and whose layer is
    /// available.
    pub fn lookup_definition(
        &self,
        store: &Store,
        definition: &Digest,
    ) -> Option<(Digest, StepResult)> {
        self.sources.get().iter().enumerate().find_map(|(i, s)| {
            let key = s.by_definition.get(definition)?;
            let result = self
                .result_of(i, store, key)
                .or_else(|| self.key_only_result(i, key))?;
            Some((key.clone(), result))
        })
    }

    /// Source `i`'s entry for `key`, once its layer is known to be available (counted as a
    /// step taken from the imported cache).
    fn result_of(&self, i: usize, store: &Store, key: &Digest) -> Option<StepResult> {
        let e = self.sources.get()[i].map.entries.get(key)?;
        let mut result = match &e.layer {
            None => StepResult::new(None),
            Some(l) if self.available(i, store, &l.descriptor) => {
                save_index(store, l);
                StepResult::new(Some(layer_ref(l)))
            }
            Some(_) => return None,
        };
        result.created = e.created;
        self.steps.fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    /// Source `i`'s key-only entry for `key`, while those are taken: the step is done, its
    /// layer known by diffID only (see [`LayerRef::key_only`]).
    fn key_only_result(&self, i: usize, key: &Digest) -> Option<StepResult> {
        if !self.key_only.load(Ordering::Relaxed) {
            return None;
        }
        let e = self.sources.get()[i].map.key_only.get(key)?;
        let layer = e.layer.as_ref().map(|l| LayerRef {
            key_only: true,
            ..layer_ref(l)
        });
        self.steps.fetch_add(1, Ordering::Relaxed);
        let mut result = StepResult::new(layer);
        result.created = e.created;
        Some(result)
    }

    /// The contents of cache mount `id` from the first cache that exported it and whose blob is
    /// available (its source is recorded; the caller fetches it).
    pub fn cache_mount(&self, store: &Store, id: &str) -> Option<CacheLayer> {
        for (i, s) in self.sources.get().iter().enumerate() {
            if let Some(m) = s.map.cache_mounts.get(id) {
                if self.available(i, store, &m.layer.descriptor) {
                    return Some(m.layer.clone());
                }
            }
        }
        None
    }

    /// The ids of every imported cache mount (an export carries forward the ones this build
    /// did not use).
    pub fn cache_mount_ids(&self) -> BTreeSet<String> {
        self.sources
            .get()
            .iter()
            .flat_map(|s| s.map.cache_mounts.keys().cloned())
            .collect()
    }
}

impl crate::solver::seams::ImportedRecords for ImportedCaches {
    fn step(&self, store: &Store, key: &Digest) -> Option<StepResult> {
        self.lookup(store, key)
    }

    fn step_by_definition(
        &self,
        store: &Store,
        definition: &Digest,
    ) -> Option<(Digest, StepResult)> {
        self.lookup_definition(store, definition)
    }

    fn cache_mount(&self, store: &Store, id: &str) -> Option<LayerRef> {
        ImportedCaches::cache_mount(self, store, id).map(|l| layer_ref(&l))
    }
}

/// Reads the cache map of every `--cache-from`; a source that cannot be used is a warning.
/// A build for several platforms reads a registry cache once per platform (an index of images
/// with inline caches has one per platform; a cache manifest is read once, the same manifest
/// for every platform).
fn load_sources(
    specs: &[CacheImportSpec],
    platforms: &[Platform],
    registries: &Registries,
    progress: &Progress,
) -> Vec<Source> {
    let wanted: Vec<String> = platforms.iter().map(platform_string).collect();
    let mut sources = Vec::new();
    for spec in specs {
        let mut loaded: Vec<Result<Source, String>> = Vec::new();
        match &spec.source {
            CacheImportSource::Registry(r) => {
                let label = r.to_string();
                let mut seen: Vec<Digest> = Vec::new();
                for platform in platforms {
                    // Mirrors first, as for base images; the cache's blobs come from the
                    // source that served its manifest.
                    let one = registries
                        .pull_from(
                            r,
                            |e| format!("cache {label}: {}", error_chain(&e)),
                            |reg, source| {
                                rbuild_registry::cache_map::remote::fetch_cache(
                                    &reg, source, platform,
                                )
                                .map(|c| (reg, c))
                                .map_err(|e| error_chain(&e))
                            },
                        )
                        .map(|(reg, c)| (c.manifest_digest.clone(), reg, c));
                    match one {
                        Ok((digest, _, _)) if seen.contains(&digest) => {}
                        Ok((digest, reg, c)) => {
                            seen.push(digest);
                            loaded.push(Ok(Source::new(
                                label.clone(),
                                c.map,
                                Location::Registry {
                                    reg,
                                    host: c.registry,
                                    repository: c.repository,
                                },
                            )));
                        }
                        Err(why) => loaded.push(Err(why)),
                    }
                }
            }
            CacheImportSource::Local(dir) => {
                let label = dir.display().to_string();
                loaded.push(
                    match rbuild_registry::cache_map::layout::read_layout_cache(dir) {
                        Ok(c) => Ok(Source::new(label, c.map, Location::Layout(c.dir))),
                        Err(e) => Err(error_chain(&e)),
                    },
                );
            }
        }
        for l in loaded {
            match l {
                // Keys include each step's platform, so entries of another platform never
                // match: the map's platforms say so up front.
                Ok(s) if !map_platforms(&s.map).any(|p| wanted.iter().any(|w| w == p)) => progress
                    .warn(format!(
                        "cache {}: it was built for {}, this build is for {}; not using it",
                        s.label,
                        s.map.platform,
                        wanted.join(",")
                    )),
                Ok(s) => sources.push(s),
                Err(why) => progress.warn(format!("{why}; building without it")),
            }
        }
    }
    sources
}

/// The platforms a cache map carries steps of (`platform` is a comma-separated list when the
/// exporting build had several).
fn map_platforms(map: &CacheMap) -> impl Iterator<Item = &str> {
    map.platform.split(',').map(str::trim)
}

/// Keeps the imported layer's path index in the store, so lookups on top of the layer need not
/// fetch it. An index the store already has (written with the layer here, or imported before)
/// is kept: a cache cannot replace what this machine knows about a layer. Best effort — without
/// an index the layer is fetched and unpacked when a lookup reaches it.
fn save_index(store: &Store, l: &CacheLayer) {
    if let Some(index) = &l.index {
        if !store.has_record(INDEX_RECORD, &l.diff_id) {
            let _ = index.save(store, &l.diff_id);
        }
    }
}

fn layer_ref(l: &CacheLayer) -> LayerRef {
    let mut descriptor = l.descriptor.clone();
    descriptor.annotations.clear();
    LayerRef::new(descriptor, l.diff_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::tar::PathIndex;
    use rbuild_layers::MediaType;

    #[test]
    fn an_imported_index_is_kept_unless_the_store_has_one_for_that_layer() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let diff_id = Digest::sha256_of(b"diff");
        let imported = PathIndex::from_json(br#"{"app":"d"}"#).unwrap();
        let layer = CacheLayer {
            descriptor: Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(b"b"), 1),
            diff_id: diff_id.clone(),
            index: Some(imported.clone()),
        };
        save_index(&store, &layer);
        assert_eq!(PathIndex::load(&store, &diff_id), Some(imported));

        // This machine's own index of the layer wins over any cache's.
        let local = PathIndex::from_json(br#"{"etc":"d"}"#).unwrap();
        local.save(&store, &diff_id).unwrap();
        save_index(&store, &layer);
        assert_eq!(PathIndex::load(&store, &diff_id), Some(local));
    }
}
