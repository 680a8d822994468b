//! The engine's seams: what a build needs from outside the engine, as traits the engine
//! defines and the layers above it implement (see ARCHITECTURE.md). The engine never names
//! the remote cache or the exporters; `commands::build` wires the implementations in.
//!
//! * [`LayerSource`]: where a layer that is not in the store comes from (a lazily pulled base
//!   image's registry, an imported cache) — `lazy_pull::LayerFetcher`.
//! * [`ImportedRecords`]: step results and cache-mount contents of `--cache-from` caches,
//!   consulted after the store's own records — `remote_cache::import::ImportedCaches`.
//! * [`LayerUploads`]: where a layer may be streamed while it is written (upload ahead of a
//!   push) — `export::ahead::UploadAhead`.
//!
//! Registries themselves are reached through `rbuild_registry::Registries` (base images are
//! resolved by the engine), and progress through `crate::progress`.

use std::sync::Arc;

use rbuild_layers::store::{GrowingBlob, Store};
use rbuild_layers::{Descriptor, Digest};
use rbuild_registry::{Registries, RegistryError};

use super::record::StepResult;
use super::stage::LayerRef;

/// Why a layer could not be put in the store.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("layer {digest} is not in the local store and no registry is known to have it")]
    NoSource { digest: Digest },
    #[error("fetching layer {digest} from {registry}/{repository}")]
    Registry {
        digest: Digest,
        registry: String,
        repository: String,
        #[source]
        source: Box<RegistryError>,
    },
}

impl FetchError {
    pub fn digest(&self) -> &Digest {
        match self {
            FetchError::NoSource { digest } | FetchError::Registry { digest, .. } => digest,
        }
    }
}

/// Where layers that are not in the store yet come from.
pub trait LayerSource: Send + Sync {
    /// Puts every blob of `layers` in the store (verified by digest), a few at a time;
    /// `on_bytes` is told each chunk's size as it arrives.
    fn fetch(
        &self,
        store: &Store,
        layers: &[Descriptor],
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), FetchError>;

    /// Whether `digest` was named by an imported cache: if it cannot be had or does not match,
    /// the cache was wrong, and the build runs again without it rather than failing.
    fn named_by_imported_cache(&self, digest: &Digest) -> bool;
}

/// Step results and cache mounts from caches other builds exported.
pub trait ImportedRecords: Send + Sync {
    /// The imported result of the step with cache key `key`, once its layer is known to be
    /// available (the store then knows where to fetch it from).
    fn step(&self, store: &Store, key: &Digest) -> Option<StepResult>;

    /// The imported result of the step whose *definition key* is `definition` (a second key,
    /// known without reading the step's sources: see `copy::digest`), with the step's own key.
    fn step_by_definition(
        &self,
        store: &Store,
        definition: &Digest,
    ) -> Option<(Digest, StepResult)>;

    /// The layer holding cache mount `id`'s imported contents, if a cache carried it.
    fn cache_mount(&self, store: &Store, id: &str) -> Option<LayerRef>;
}

/// Where a layer may be streamed while the engine writes it.
pub trait LayerUploads: Send + Sync {
    /// For a layer about to be written in `stage`: a hook that starts its upload (see
    /// `rbuild_layers::tar::WriteHooks::follow`), or `None` when that stage's layers go nowhere.
    fn follower(&self, stage: usize) -> Option<Box<dyn FnMut(GrowingBlob) + '_>>;
}

/// No imported cache.
pub struct NoImports;

impl ImportedRecords for NoImports {
    fn step(&self, _: &Store, _: &Digest) -> Option<StepResult> {
        None
    }

    fn step_by_definition(&self, _: &Store, _: &Digest) -> Option<(Digest, StepResult)> {
        None
    }

    fn cache_mount(&self, _: &Store, _: &str) -> Option<LayerRef> {
        None
    }
}

/// Layers go nowhere while they are written.
pub struct NoUploads;

impl LayerUploads for NoUploads {
    fn follower(&self, _: usize) -> Option<Box<dyn FnMut(GrowingBlob) + '_>> {
        None
    }
}

/// The implementations one build uses.
#[derive(Clone)]
pub struct Seams {
    /// Clients of the registries base images are resolved against.
    pub registries: Arc<Registries>,
    pub layers: Arc<dyn LayerSource>,
    pub imported: Arc<dyn ImportedRecords>,
    pub uploads: Arc<dyn LayerUploads>,
    /// What the engines of a build for several platforms share (see `solver::shared`).
    pub shared: Arc<super::shared::Shared>,
}
