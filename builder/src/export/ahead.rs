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

use crate::graph::BuildPlan;
use rbuild_registry::Registries;

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
    /// False for [`UploadAhead::none`]: the push uploads every new layer.
    enabled: bool,
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
            enabled: true,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Uploads nothing ahead.
    pub fn none(registries: Arc<Registries>) -> UploadAhead {
        UploadAhead {
            enabled: false,
            ..UploadAhead::new(registries, BTreeMap::new())
        }
    }

    /// For a layer about to be written in `stage`: a hook that starts its upload (see
    /// `rbuild_layers::tar::WriteHooks::follow`), or `None` when the stage is not pushed.
    fn start(&self, stage: usize) -> Option<impl FnMut(GrowingBlob) + '_> {
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
        AheadReport {
            sent,
            failed,
            enabled: self.enabled,
        }
    }
}

impl crate::solver::seams::LayerUploads for UploadAhead {
    fn follower(&self, stage: usize) -> Option<Box<dyn FnMut(GrowingBlob) + '_>> {
        self.start(stage)
            .map(|f| Box::new(f) as Box<dyn FnMut(GrowingBlob) + '_>)
    }
}

/// What the uploads ahead did.
#[derive(Debug, Clone)]
pub struct AheadReport {
    pub sent: Vec<SentAhead>,
    /// Uploads that did not complete (their layers are uploaded by the push).
    pub failed: usize,
    /// Whether layers were streamed at all (not with [`UploadAhead::none`]).
    pub enabled: bool,
}

impl AheadReport {
    /// Whether every layer the build wrote into a pushed image is on its registry already: the
    /// push then uploads only configs and manifests, so nothing it sends can be a blob a cache
    /// export to the same registry would upload too.
    pub fn complete(&self) -> bool {
        self.enabled && self.failed == 0
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
        for i in plan.from_chain(*target) {
            out.entry(i).or_insert_with(|| dest.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::graph::{Base, PlannedStage};
    use crate::solver::seams::LayerUploads;

    fn stage(index: usize, base: Base) -> PlannedStage {
        PlannedStage {
            index,
            name: None,
            base,
            reads: BTreeSet::new(),
            read_images: BTreeSet::new(),
            platform: crate::graph::platform::host_platform(),
        }
    }

    fn plan(stages: Vec<PlannedStage>, targets: Vec<usize>) -> BuildPlan {
        BuildPlan {
            order: (0..stages.len()).collect(),
            stages,
            targets,
            global_vars: BTreeMap::new(),
            unused_build_args: Vec::new(),
            named: Default::default(),
        }
    }

    fn dest(repo: &str) -> (String, String) {
        ("reg:5000".to_string(), repo.to_string())
    }

    #[test]
    fn each_stage_of_a_from_chain_goes_to_the_first_pushed_target_that_holds_it() {
        // 0: base (scratch); 1: builder FROM scratch, only read by COPY --from;
        // 2: dev FROM base; 3: prod FROM dev.
        let mut prod = stage(3, Base::Stage(2));
        prod.reads.insert(1);
        let p = plan(
            vec![
                stage(0, Base::Scratch),
                stage(1, Base::Image("reg:5000/golang:1".into())),
                stage(2, Base::Stage(0)),
                prod,
            ],
            vec![2, 3],
        );
        let d = stage_destinations(&p, &[(2, dest("dev")), (3, dest("prod"))]);
        assert_eq!(d.get(&0), Some(&dest("dev")));
        assert_eq!(d.get(&2), Some(&dest("dev")));
        assert_eq!(d.get(&3), Some(&dest("prod")));
        // A stage no image holds has nothing to stream.
        assert_eq!(d.get(&1), None);
    }

    #[test]
    fn without_streaming_the_push_cannot_count_on_layers_being_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let registries = Arc::new(Registries::new(Default::default()));
        let off = UploadAhead::none(registries.clone());
        assert!(off.follower(0).is_none());
        assert!(!off.finish(&store).complete());
        let on = UploadAhead::new(registries, BTreeMap::from([(0, dest("app"))]));
        assert!(on.follower(1).is_none());
        assert!(on.follower(0).is_some());
        // Nothing was written, so nothing is missing.
        assert!(on.finish(&store).complete());
    }
}
