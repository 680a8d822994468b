//! Getting layers into the store only when something needs their bytes: the engine's
//! [`LayerSource`], also used by pushes and cache exports for blobs the store lacks.
//!
//! Base images are pulled lazily (manifest and config only) and an imported cache names layers
//! that stay in their registry. Each such layer has a source record in the store (registry and
//! repository, see `rbuild_registry::pull::source_of`); [`LayerFetcher::ensure`] downloads it —
//! verified by digest while streaming — when a step that missed needs it in its root, or an
//! output needs its bytes. A push to the same registry mounts it instead and never downloads.
//!
//! Layers that came from an imported cache are marked: if one of them cannot be fetched or does
//! not match, the cache was wrong, and the caller builds again without it rather than failing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest};
use rbuild_registry::{Registries, RegistryError};

use crate::solver::seams::{FetchError, LayerSource};

/// Blobs fetched at once.
const PARALLEL_FETCHES: usize = 3;

/// Fetches missing blobs from where the store says they are; counts what it moved.
pub struct LayerFetcher {
    registries: Arc<Registries>,
    imported: Mutex<BTreeSet<Digest>>,
    /// Bytes downloaded for layers named by an imported cache.
    imported_bytes: AtomicU64,
    /// Bytes downloaded for other layers (lazily pulled base images).
    other_bytes: AtomicU64,
    /// Blobs being downloaded now: a second caller waits for the first instead of downloading
    /// the same bytes again (two stages built at once on one base fetch its layers together).
    in_flight: Mutex<BTreeMap<Digest, Arc<Download>>>,
}

/// One download in flight, which other callers of [`LayerFetcher::ensure`] wait for.
#[derive(Default)]
struct Download {
    finished: Mutex<bool>,
    changed: Condvar,
}

impl Download {
    fn wait(&self) {
        let mut done = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = self.changed.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Ends a download when dropped — after success, an error or a panic — so that nobody waits
/// for it forever.
struct Downloading<'f> {
    fetcher: &'f LayerFetcher,
    digest: &'f Digest,
    download: Arc<Download>,
}

impl Drop for Downloading<'_> {
    fn drop(&mut self) {
        self.fetcher
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.digest);
        *self
            .download
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
        self.download.changed.notify_all();
    }
}

impl LayerFetcher {
    pub fn new(registries: Arc<Registries>) -> LayerFetcher {
        LayerFetcher {
            registries,
            imported: Mutex::new(BTreeSet::new()),
            imported_bytes: AtomicU64::new(0),
            other_bytes: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn registries(&self) -> &Arc<Registries> {
        &self.registries
    }

    /// Marks `digest` as named by an imported cache.
    pub fn mark_imported(&self, digest: &Digest) {
        self.imported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone());
    }

    /// Whether `digest` came from an imported cache.
    pub fn is_imported(&self, digest: &Digest) -> bool {
        self.imported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest)
    }

    /// Adds bytes copied for an imported cache outside this fetcher (a local cache directory).
    pub fn count_imported(&self, bytes: u64) {
        self.imported_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes downloaded for imported-cache layers so far.
    pub fn imported_bytes(&self) -> u64 {
        self.imported_bytes.load(Ordering::Relaxed)
    }

    /// Bytes downloaded for other layers so far.
    pub fn other_bytes(&self) -> u64 {
        self.other_bytes.load(Ordering::Relaxed)
    }

    /// Puts blob `desc` in the store unless it is there; returns whether this call downloaded
    /// it. While another caller downloads the same blob, this one waits for it (and downloads
    /// it itself only if that one failed).
    pub fn ensure(
        &self,
        store: &Store,
        desc: &Descriptor,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<bool, FetchError> {
        loop {
            if store.blob_size(&desc.digest) == Some(desc.size) {
                return Ok(false);
            }
            let (download, ours) = {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                match in_flight.get(&desc.digest) {
                    Some(d) => (d.clone(), false),
                    None => {
                        let d = Arc::new(Download::default());
                        in_flight.insert(desc.digest.clone(), d.clone());
                        (d, true)
                    }
                }
            };
            if !ours {
                download.wait();
                continue;
            }
            let _ending = Downloading {
                fetcher: self,
                digest: &desc.digest,
                download,
            };
            return self.download(store, desc, on_bytes);
        }
    }

    /// Downloads blob `desc` from the registry the store names as its source.
    fn download(
        &self,
        store: &Store,
        desc: &Descriptor,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<bool, FetchError> {
        let (host, repository) =
            rbuild_registry::pull::source_of(store, &desc.digest).ok_or_else(|| {
                FetchError::NoSource {
                    digest: desc.digest.clone(),
                }
            })?;
        let fail = |source: RegistryError| FetchError::Registry {
            digest: desc.digest.clone(),
            registry: host.clone(),
            repository: repository.clone(),
            source: Box::new(source),
        };
        let counter = if self.is_imported(&desc.digest) {
            &self.imported_bytes
        } else {
            &self.other_bytes
        };
        let count = |n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
            on_bytes(n);
        };
        // A blob recorded as coming from a registry with mirrors is asked of the mirrors first
        // (by digest: content-addressed, verified while stored).
        match format!("{host}/{repository}").parse::<rbuild_registry::Reference>() {
            Ok(r) => self.registries.pull_from(
                &r.with_digest(desc.digest.clone()),
                fail,
                |reg, source| {
                    reg.fetch_blob(store, source.repository(), desc, &count)
                        .map_err(fail)
                },
            ),
            Err(_) => self
                .registries
                .get(&host)
                .and_then(|reg| reg.fetch_blob(store, &repository, desc, &count))
                .map_err(fail),
        }
    }

    /// [`LayerFetcher::ensure`] for several blobs, a few at a time; the first error stops the
    /// rest from starting.
    pub fn ensure_all(
        &self,
        store: &Store,
        descs: &[Descriptor],
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), FetchError> {
        let missing: Vec<&Descriptor> = descs
            .iter()
            .filter(|d| store.blob_size(&d.digest) != Some(d.size))
            .collect();
        rbuild_registry::parallel::try_for_each(&missing, PARALLEL_FETCHES, |d| {
            self.ensure(store, d, on_bytes)
        })
        .map(|_| ())
    }

    /// A `fetch_missing` callback for the registry client's push.
    pub fn fetch_for_push<'s>(
        &'s self,
        store: &'s Store,
    ) -> impl Fn(&Descriptor) -> Result<(), RegistryError> + Sync + 's {
        move |d: &Descriptor| {
            self.ensure(store, d, &|_| {})
                .map(|_| ())
                .map_err(|e| match e {
                    FetchError::Registry { source, .. } => *source,
                    FetchError::NoSource { digest } => RegistryError::Protocol {
                        registry: "local store".into(),
                        what: format!(
                            "blob {digest} is missing from the local store and no registry is known to have it"
                        ),
                    },
                })
        }
    }
}

impl LayerSource for LayerFetcher {
    fn fetch(
        &self,
        store: &Store,
        layers: &[Descriptor],
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), FetchError> {
        self.ensure_all(store, layers, on_bytes)
    }

    fn named_by_imported_cache(&self, digest: &Digest) -> bool {
        self.is_imported(digest)
    }
}
