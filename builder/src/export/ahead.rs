//! Uploading a pushed image's new layers while they are written, not after the build.
//!
//! When a build pushes (`--push`, `--output type=registry`), each layer a step writes in a stage
//! that ends up in a pushed image is streamed to that image's first repository as it is
//! compressed (`BlobWriter::follow`, `Registry::upload_streamed`). The layer a code change
//! rebuilds — usually the last one — is then on the registry when the build ends, and the push
//! has only the config and manifest left; earlier layers upload while later steps run.
//!
//! Best effort: an upload that fails (a registry that refuses a streamed `PATCH`, a network
//! error) is dropped without a word, and the push uploads that blob from the store as it always
//! did. One that succeeded is counted as uploaded by the push, which does not ask for it again,
//! and is recorded as the blob's source, so pushes to other repositories of that registry (and a
//! cache export there) mount it. A step whose layer the registry already has (a rebuild that
//! reproduced it bit for bit) sends it again; the registry keeps one copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rbuild_layers::store::{GrowingBlob, Store};
use rbuild_layers::Digest;

use crate::cache::blobs::Registries;
use crate::graph::{Base, BuildPlan};

/// A layer uploaded ahead: where it went.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentAhead {
    pub host: String,
    pub repository: String,
    pub digest: Digest,
}

/// The uploads started while building, and where each stage's layers go.
pub struct UploadAhead {
    registries: Arc<Registries>,
    /// Stage index → (registry host, repository).
    destinations: BTreeMap<usize, (String, String)>,
    running: Mutex<Vec<JoinHandle<Option<SentAhead>>>>,
}

impl UploadAhead {
    /// Streams the layers of each stage in `destinations` to its (host, repository).
    pub fn new(
        registries: Arc<Registries>,
        destinations: BTreeMap<usize, (String, String)>,
    ) -> UploadAhead {
        UploadAhead {
            registries,
            destinations,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Uploads nothing ahead.
    pub fn none(registries: Arc<Registries>) -> UploadAhead {
        UploadAhead::new(registries, BTreeMap::new())
    }

    /// For a layer about to be written in `stage`: a hook that starts its upload (see
    /// `rbuild_layers::tar::WriteHooks::follow`), or `None` when the stage is not pushed.
    pub fn follower(&self, stage: usize) -> Option<impl FnMut(GrowingBlob) + '_> {
        let (host, repository) = self.destinations.get(&stage)?.clone();
        Some(move |blob: GrowingBlob| {
            let registries = self.registries.clone();
            let (host, repository) = (host.clone(), repository.clone());
            let spawned = std::thread::Builder::new()
                .name("upload-ahead".into())
                .spawn(move || {
                    let watch = blob.watch();
                    let reg = registries.get(&host).ok()?;
                    let (digest, _) = reg
                        .upload_streamed(&repository, Box::new(blob), &|| watch.committed())
                        .ok()?;
                    Some(SentAhead {
                        host,
                        repository,
                        digest,
                    })
                });
            // Without a thread the push uploads the layer afterwards, as it would anyway.
            if let Ok(handle) = spawned {
                self.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(handle);
            }
        })
    }

    /// Waits for every upload started so far; returns what they did. Each completed one is
    /// recorded in `store` as the blob's source on that registry (so other repositories there
    /// mount it).
    pub fn finish(&self, store: &Store) -> AheadReport {
        let handles = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        let started = handles.len();
        let mut sent: Vec<SentAhead> = handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect();
        let failed = started - sent.len();
        sent.sort();
        sent.dedup();
        for s in &sent {
            rbuild_registry::pull::record_source(store, &s.host, &s.repository, &s.digest);
        }
        AheadReport { sent, failed }
    }
}

/// What the uploads ahead did.
#[derive(Debug, Clone, Default)]
pub struct AheadReport {
    pub sent: Vec<SentAhead>,
    /// Uploads that did not complete (their layers are uploaded by the push).
    pub failed: usize,
}

impl AheadReport {
    /// Whether every layer the build wrote into a pushed image is on its registry already: the
    /// push then uploads only configs and manifests, so nothing it sends can be a blob a cache
    /// export to the same registry would upload too.
    pub fn complete(&self) -> bool {
        self.failed == 0
    }
}

/// Where each stage's new layers are streamed: for each pushed target in order (target stage,
/// its first destination), every stage of its `FROM` chain goes to that destination unless an
/// earlier target claimed it. Stages only read by `COPY --from` are not in any image.
pub fn stage_destinations(
    plan: &BuildPlan,
    pushed_targets: &[(usize, (String, String))],
) -> BTreeMap<usize, (String, String)> {
    let mut out = BTreeMap::new();
    for (target, dest) in pushed_targets {
        let mut stage = Some(*target);
        while let Some(i) = stage {
            out.entry(i).or_insert_with(|| dest.clone());
            stage = match plan.stages.get(i).map(|s| &s.base) {
                Some(Base::Stage(base)) => Some(*base),
                _ => None,
            };
        }
    }
    out
}
