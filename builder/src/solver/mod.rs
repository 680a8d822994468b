//! The build engine: turns a parsed Dockerfile, a build plan and a context into image states,
//! doing no work twice.
//!
//! * [`Engine::run`] builds the stages the plan needs, independent stages concurrently (one
//!   thread per ready stage; a stage waits only for the stages it reads).
//! * Each stage ([`stage`]) replays its instructions: metadata instructions edit the image
//!   config; filesystem instructions (COPY, ADD, WORKDIR, RUN) get a cache key ([`key`]) and
//!   either hit the store's cache records ([`record`]) or run and write a layer.
//! * Every miss is explained against the previous build of the same Dockerfile and target
//!   ([`explain`]).

pub mod base;
pub mod budget;
/// `--chmod` values are validated by the parser and applied by COPY.
pub use crate::dockerfile::chmod;
pub mod copy;
pub mod early_bases;
mod early_snapshot;
pub mod error;
pub mod explain;
pub mod in_root;
pub mod inputs;
pub mod key;
pub mod lazy_blobs;
pub mod lazy_rootfs;
pub mod meta;
pub mod named_dir;
pub mod parents;
pub mod record;
pub mod remote;
pub mod rootfs;
pub mod run;
pub mod seams;
pub mod shared;
pub mod stage;
pub mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use rbuild_layers::snapshot::SnapshotCache;
use rbuild_layers::store::Store;
use rbuild_layers::{Compression, Platform};

use crate::context::{Context, IgnoreRules};
use crate::dockerfile::Dockerfile;
use crate::executor::isolation::{Choice as IsolationChoice, IsolationError};
use crate::graph::BuildPlan;
use crate::progress::Progress;

pub use error::BuildError;
pub use seams::{FetchError, Seams};
pub use stage::{LayerRef, StageState};

/// What the engine is asked to build, besides the Dockerfile itself: typed inputs it owns
/// (the CLI and `commands::build` fill it in; nothing here is read from process-wide state).
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The target platform (`TARGETPLATFORM`); each stage's own is in the plan
    /// (`PlannedStage::platform`).
    pub platform: Platform,
    /// Whether progress lines name each stage's platform (`[linux/arm64 build 2/4]`, as
    /// BuildKit's): a build for several platforms.
    pub show_platform: bool,
    /// Predefined platform ARGs (`TARGETPLATFORM`, …).
    pub platform_vars: BTreeMap<String, String>,
    /// `--build-arg` values (unset `K` forms already dropped).
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Stage indices whose steps must not use the cache (`--no-cache-filter`).
    pub no_cache_stages: BTreeSet<usize>,
    /// Timestamp for created times and the mtimes of files rbuild writes.
    pub epoch: i64,
    /// Whether the epoch enters the keys of steps that write files. True when the user set
    /// `SOURCE_DATE_EPOCH`: they asked for those timestamps, so a layer cached with other ones
    /// must not be reused. False when the epoch is the commit time: dependency layers then stay
    /// cached across commits (they keep the timestamp of the build that wrote them).
    pub epoch_in_key: bool,
    /// Whether the epoch is the clock (no `SOURCE_DATE_EPOCH`, no git commit): then, as in
    /// BuildKit, a layer's history entry carries the time the layer was made (kept on cache
    /// hits), and the image's `created` is its last layer's (see `export::image_time`).
    pub clock_epoch: bool,
    /// The network of RUN steps that do not choose one (`rbuild --network`).
    pub default_network: crate::dockerfile::NetworkMode,
    /// `--add-host`: more lines of RUN steps' `/etc/hosts` (host, address), in order; part of
    /// every RUN's cache key when there are any, as BuildKit's `ExtraHosts`.
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// `--shm-size`: the size of RUN steps' `/dev/shm` (`None`: 64 MiB); in the RUN keys when
    /// given (see `executor::limits`).
    pub shm_size: Option<u64>,
    /// `--ulimit`s of RUN steps, normalised; in the RUN keys when given.
    pub ulimits: Vec<crate::executor::limits::Ulimit>,
    /// `--isolation`: the sandbox of RUN steps, chosen at the first RUN that runs.
    pub isolation: crate::executor::isolation::Isolation,
    /// `--pull`: every `FROM` name is resolved in its registry (see `base::resolve`).
    pub always_pull: bool,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    /// The stages whose layers this build needs compressed (the targets and the stages they are
    /// built `FROM`; all with a `mode=max` cache export): their layers are compressed while
    /// they are written. The other stages' layers are written as plain tars and compressed
    /// only when something needs them (see [`lazy_blobs`]). `None`: every layer is compressed
    /// while it is written.
    pub output_stages: Option<BTreeSet<usize>>,
    /// In a git work tree, the group/other write bits (what a umask decides) are cleared from
    /// file and directory modes, so that clones made with umask 022 or 002 build identical
    /// images; no mode is ever widened (a 0600 file stays 0600).
    pub normalize_modes: bool,
    /// `--secret` sources (never their values), for `RUN --mount=type=secret`.
    pub secrets: Vec<inputs::SecretSpec>,
    /// `--ssh` agent sockets, for `RUN --mount=type=ssh` (the engine connects to them; keys
    /// never pass through rbuild).
    pub ssh: Vec<inputs::SshSpec>,
    /// How registries are reached (`--insecure-registry`, `--registry-ca`, credentials): passed
    /// here, never through process-wide state.
    pub registry: rbuild_registry::ClientOptions,
    /// The working directory rbuild started in: `FROM oci-layout://DIR` is relative to it.
    pub workdir: std::path::PathBuf,
    /// The build context's directory.
    pub context_dir: std::path::PathBuf,
    /// The Dockerfile's path (`.dockerignore` beside it is preferred; build records are kept
    /// per Dockerfile).
    pub dockerfile: std::path::PathBuf,
    /// Absolute paths the context scan never reads (the store and the build's outputs, when
    /// they lie inside the context).
    pub context_skip: Vec<std::path::PathBuf>,
}

/// A build in progress.
pub struct Engine<'a> {
    pub store: &'a Store,
    pub df: &'a Dockerfile,
    pub plan: &'a BuildPlan,
    pub opts: &'a BuildRequest,
    pub context_dir: &'a Path,
    pub dockerfile: &'a Path,
    pub progress: Progress,
    pub snapshots: SnapshotCache,
    results: Mutex<BTreeMap<usize, Arc<StageState>>>,
    steps: Mutex<Vec<record::StepRecord>>,
    /// The steps of the previous build of this Dockerfile's targets, by (stage name, position),
    /// read once: what misses are explained against.
    previous: BTreeMap<(String, usize), record::StepRecord>,
    /// What the engine reaches outside itself through: registries, missing layers, imported
    /// cache records, uploads of layers while they are written.
    pub(crate) seams: Seams,
    /// What every filesystem step produced, for `--cache-to`.
    outcomes: Mutex<Vec<StepOutcome>>,
    /// What the build keeps per step, bounded (see [`budget`]).
    pub(crate) kept: budget::KeptBytes,
    /// The scratch directories of RUN steps that made a layer this build, by the layer's diffID:
    /// their overlay upper directory donates its files to the layer's snapshot when a later step
    /// needs it (see `rbuild_layers::apply::ApplyOptions::donor`); removed when taken or when
    /// the engine is dropped.
    donors: Mutex<HashMap<rbuild_layers::Digest, rbuild_layers::store::ScratchDir>>,
    /// Threads removing what donors left (joined when the engine is dropped).
    removals: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The sandbox of RUN steps, chosen at the first RUN that runs (`--isolation`).
    isolation: OnceLock<Result<IsolationChoice, IsolationError>>,
    /// `--isolation in-place`: the one container root RUN steps take turns on, and the paths of
    /// the container it keeps (found at the first step).
    pub(crate) in_place_root: run::in_place::RootLock,
    in_place_keep: OnceLock<Result<run::in_place::Keep, String>>,
    /// The directory `--build-context`s read so far, scanned once (see [`named_dir`]).
    pub(crate) named_scans: named_dir::Scans,
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        let removals = std::mem::take(&mut *self.removals.lock().expect("removals lock poisoned"));
        for r in removals {
            // A panicking removal only leaves a scratch directory for the next build to reclaim.
            let _ = r.join();
        }
    }
}

/// What one filesystem step produced, as a cache export records it.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub stage: usize,
    pub key: rbuild_layers::Digest,
    pub parent: Option<rbuild_layers::Digest>,
    pub layer: Option<LayerRef>,
    /// The image config after the step.
    pub config: rbuild_layers::image::config::ImageConfig,
    /// The step as progress showed it.
    pub description: String,
    /// The step's definition key, when it has one (`COPY --from`, see `copy::digest`): the
    /// cache export lists it with the entry, so an importer finds the step without its source.
    pub definition: Option<rbuild_layers::Digest>,
    /// When the step's layer was made, for a clock epoch (see `StepResult::created`).
    pub created: Option<i64>,
}

impl<'a> Engine<'a> {
    pub fn new(
        store: &'a Store,
        df: &'a Dockerfile,
        plan: &'a BuildPlan,
        opts: &'a BuildRequest,
        progress: Progress,
        seams: Seams,
    ) -> Result<Engine<'a>, BuildError> {
        let mut previous = BTreeMap::new();
        for &t in &plan.targets {
            let target = plan.stages[t].display_name();
            if let Some(rec) = record::load_build(store, &opts.dockerfile, &target) {
                for s in rec.steps {
                    previous.insert((s.stage_name.clone(), s.index), s);
                }
            }
        }
        Ok(Engine {
            store,
            df,
            plan,
            opts,
            context_dir: &opts.context_dir,
            dockerfile: &opts.dockerfile,
            progress,
            snapshots: SnapshotCache::new(&store.snapshots_dir())?,
            results: Mutex::new(BTreeMap::new()),
            steps: Mutex::new(Vec::new()),
            previous,
            seams,
            outcomes: Mutex::new(Vec::new()),
            kept: budget::KeptBytes::default(),
            donors: Mutex::new(HashMap::new()),
            removals: Mutex::new(Vec::new()),
            isolation: OnceLock::new(),
            in_place_root: Default::default(),
            in_place_keep: OnceLock::new(),
            named_scans: named_dir::Scans::default(),
        })
    }

    /// The sandbox of this build's RUN steps: probed and chosen once, at the first RUN that
    /// runs (a build whose RUN steps all come from the cache needs no privilege), and said
    /// once in the progress output.
    pub(crate) fn run_isolation(&self) -> Result<IsolationChoice, BuildError> {
        let choice = self.isolation.get_or_init(|| {
            let privilege = privilege();
            let choice =
                crate::executor::isolation::choose(self.opts.isolation, &privilege, || match self
                    .scratch_dir("probe")
                {
                    Ok(dir) => crate::executor::probe::probe(dir.path()),
                    Err(e) => crate::executor::isolation::ProbeReport::failed(&e.to_string()),
                });
            let choice = choice.and_then(|c| {
                let marker = run::in_place::MARKER;
                if c.mode == crate::executor::isolation::Mode::InPlace
                    && !std::fs::symlink_metadata(marker)
                        .is_ok_and(|m| m.is_file() && std::os::unix::fs::MetadataExt::uid(&m) == 0)
                {
                    return Err(IsolationError::InPlaceOutsideImage { marker });
                }
                Ok(c)
            });
            if let Ok(c) = &choice {
                self.progress.warn(format!(
                    "note: RUN steps run with --isolation {} ({})",
                    c.mode.as_str(),
                    c.reason
                ));
            }
            choice
        });
        match choice {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(BuildError::Isolation(e.clone())),
        }
    }

    /// The paths of this container that `--isolation in-place` keeps, found once; before they
    /// are first needed, the TLS roots are read (the root's files are about to be replaced).
    pub(crate) fn in_place_keep(&self) -> Result<run::in_place::Keep, BuildError> {
        let keep = self.in_place_keep.get_or_init(|| {
            rbuild_registry::client::transport::load_system_roots();
            run::in_place::Keep::discover(self.store.root())
                .map_err(|e| crate::errors::error_chain(&e))
        });
        keep.clone()
            .map_err(|e| BuildError::Run(run::RunError::InPlaceSetup(e)))
    }

    /// The sandbox RUN steps ran in, when one ran.
    pub fn isolation_choice(&self) -> Option<IsolationChoice> {
        self.isolation.get().and_then(|c| c.as_ref().ok()).cloned()
    }

    pub(crate) fn record_outcome(&self, o: StepOutcome) {
        self.outcomes
            .lock()
            .expect("outcomes lock poisoned")
            .push(o);
    }

    /// What every filesystem step produced, in stage and step order.
    pub fn outcomes(&self) -> Vec<StepOutcome> {
        self.outcomes
            .lock()
            .expect("outcomes lock poisoned")
            .clone()
    }

    /// Runs `work` while the missing blobs of `layers` are fetched in the background, so that
    /// unpacking the first layer of a base overlaps the download of the next ones. `work` is
    /// given `arrived`, which waits until one layer's blob is in the store (it polls: a blob
    /// appears by an atomic rename once verified, and the fetcher reports no per-layer
    /// completion). A failed fetch is the error, as with [`Engine::fetch_layers`].
    pub fn fetch_in_background<T>(
        &self,
        layers: &[LayerRef],
        work: impl FnOnce(&dyn Fn(&LayerRef) -> Result<(), BuildError>) -> Result<T, BuildError>,
    ) -> Result<T, BuildError> {
        const POLL: std::time::Duration = std::time::Duration::from_millis(5);
        let present =
            |l: &LayerRef| self.store.blob_size(&l.descriptor.digest) == Some(l.descriptor.size);
        if layers.iter().all(present) {
            return work(&|_| Ok(()));
        }
        std::thread::scope(|s| {
            let fetch = s.spawn(|| self.fetch_layers(layers));
            let worked = {
                let arrived = |l: &LayerRef| loop {
                    if present(l) {
                        return Ok(());
                    }
                    if fetch.is_finished() {
                        return if present(l) {
                            Ok(())
                        } else {
                            Err(BuildError::Internal(format!(
                                "layer {} was not fetched",
                                l.descriptor.digest
                            )))
                        };
                    }
                    std::thread::sleep(POLL);
                };
                work(&arrived)
            };
            let fetched = fetch
                .join()
                .unwrap_or_else(|_| Err(BuildError::Internal("the layer fetch panicked".into())));
            // The fetch's own error says why a layer never arrived.
            fetched.and(worked)
        })
    }

    /// Makes sure every layer is in the store, downloading the missing ones (one progress line
    /// for them all). A layer an imported cache named that cannot be had is
    /// [`BuildError::ImportedCache`]: the caller builds again without the cache.
    pub fn fetch_layers(&self, layers: &[LayerRef]) -> Result<(), BuildError> {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let is_missing =
            |l: &&LayerRef| self.store.blob_size(&l.descriptor.digest) != Some(l.descriptor.size);
        // A layer known by key only that is not here either cannot be had from anywhere.
        if let Some(l) = layers.iter().filter(is_missing).find(|l| l.key_only) {
            return Err(BuildError::KeyOnlyLayer {
                diff_id: l.diff_id.clone(),
            });
        }
        let missing: Vec<rbuild_layers::Descriptor> = layers
            .iter()
            .filter(is_missing)
            .map(|l| l.descriptor.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let total: u64 = missing.iter().map(|d| d.size).sum();
        let step = self.progress.step(format!(
            "fetching {} layer{}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" }
        ));
        let got = AtomicU64::new(0);
        let reported = AtomicU64::new(0);
        let on_bytes = |n: u64| {
            let now = got.fetch_add(n, Relaxed) + n;
            if now - reported.load(Relaxed) >= 4 << 20 || now == total {
                reported.store(now, Relaxed);
                step.progress(crate::progress::ProgressKind::Pulling, now, Some(total));
            }
        };
        match self.seams.layers.fetch(self.store, &missing, &on_bytes) {
            Ok(()) => {
                step.done();
                Ok(())
            }
            Err(e) => {
                step.failed(crate::errors::error_chain(&e));
                Err(self.fetch_error(e))
            }
        }
    }

    /// Classifies a failed fetch: a layer from an imported cache, or any other.
    pub fn fetch_error(&self, e: FetchError) -> BuildError {
        if self.seams.layers.named_by_imported_cache(e.digest()) {
            BuildError::ImportedCache {
                digest: e.digest().clone(),
                reason: crate::errors::error_chain(&e),
            }
        } else {
            BuildError::Fetch(e)
        }
    }

    /// The scanned build context, read once on first use (a build that copies nothing from
    /// the context never scans it).
    pub fn context(&self) -> Result<Arc<Context>, BuildError> {
        self.seams
            .shared
            .context
            .get_or_init(|| {
                let rules =
                    IgnoreRules::load(self.context_dir, self.dockerfile).map_err(Arc::new)?;
                let statcache = self.store.statcache_dir();
                let skip = &self.opts.context_skip;
                Context::scan_skipping(self.context_dir, &rules, Some(statcache.as_path()), skip)
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
            .map_err(BuildError::Context)
    }

    /// The finished state of stage `i` (only valid once it was built).
    pub fn stage_result(&self, i: usize) -> Option<Arc<StageState>> {
        self.results
            .lock()
            .expect("results lock poisoned")
            .get(&i)
            .cloned()
    }

    /// The previous build's step at this place, if one was recorded.
    pub(crate) fn previous_step(&self, stage: &str, index: usize) -> Option<&record::StepRecord> {
        self.previous.get(&(stage.to_string(), index))
    }

    pub(crate) fn record_step(&self, r: record::StepRecord) {
        self.steps.lock().expect("steps lock poisoned").push(r);
    }

    /// The steps run so far, for the build record and `rbuild explain`.
    pub fn step_records(&self) -> Vec<record::StepRecord> {
        let mut v = self.steps.lock().expect("steps lock poisoned").clone();
        v.sort_by_key(|s| (s.stage, s.index));
        v
    }

    /// A private scratch directory in the store's `tmp/`, named after this process and locked
    /// while it lives (removed when dropped; a killed build's is reclaimed by the next build,
    /// `fsck` or `prune`). `tag` is lower-case letters, e.g. `run`.
    pub fn scratch_dir(&self, tag: &str) -> Result<rbuild_layers::store::ScratchDir, BuildError> {
        Ok(self.store.scratch_dir(tag)?)
    }

    /// Keeps the scratch directory of the RUN step that made the layer with `diff_id`, whose
    /// `upper/` the layer was written from, until the layer's snapshot is made.
    pub(crate) fn offer_donor(
        &self,
        diff_id: rbuild_layers::Digest,
        scratch: rbuild_layers::store::ScratchDir,
    ) {
        self.donors
            .lock()
            .expect("donors lock poisoned")
            .insert(diff_id, scratch);
    }

    /// The scratch directory offered for the layer with `diff_id`, if any (given up to the
    /// caller, which makes the snapshot and drops it).
    pub(crate) fn take_donor(
        &self,
        diff_id: &rbuild_layers::Digest,
    ) -> Option<rbuild_layers::store::ScratchDir> {
        self.donors
            .lock()
            .expect("donors lock poisoned")
            .remove(diff_id)
    }

    /// Removes a donor's scratch directory (what the snapshot did not take: directories, files
    /// it could not adopt) on another thread, so that the next step does not wait for it.
    pub(crate) fn discard_donor(&self, donor: rbuild_layers::store::ScratchDir) {
        let removal = std::thread::Builder::new()
            .name("donor-remove".into())
            .spawn(move || drop(donor));
        if let Ok(handle) = removal {
            self.removals
                .lock()
                .expect("removals lock poisoned")
                .push(handle);
        }
        // Without a thread the directory was dropped (removed) by the failed spawn's closure.
    }

    /// Builds every stage the plan needs; returns each built stage's final state.
    pub fn run(&self) -> Result<BTreeMap<usize, Arc<StageState>>, BuildError> {
        let order = self.plan.order.clone();
        let mut pending: Vec<usize> = order.clone();
        let mut running: BTreeSet<usize> = BTreeSet::new();
        let mut first_error: Option<BuildError> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Result<StageState, BuildError>)>();
            loop {
                if first_error.is_none() {
                    let done: BTreeSet<usize> = self
                        .results
                        .lock()
                        .expect("results lock poisoned")
                        .keys()
                        .copied()
                        .collect();
                    let ready: Vec<usize> = pending
                        .iter()
                        .copied()
                        .filter(|&i| self.plan.stages[i].depends_on().all(|d| done.contains(&d)))
                        .collect();
                    for i in ready {
                        pending.retain(|&p| p != i);
                        running.insert(i);
                        let tx = tx.clone();
                        scope.spawn(move || {
                            let r = stage::build_stage(self, i);
                            // The receiver outlives every sender in this scope.
                            let _ = tx.send((i, r));
                        });
                    }
                }
                if running.is_empty() {
                    break;
                }
                let Ok((i, r)) = rx.recv() else { break };
                running.remove(&i);
                match r {
                    Ok(state) => {
                        self.results
                            .lock()
                            .expect("results lock poisoned")
                            .insert(i, Arc::new(state));
                    }
                    Err(e) => {
                        // A failure the engine's caller does not answer with another round
                        // stops the other stages, of every platform, before their next step.
                        if !e.is_key_only_layer() && !e.is_imported_cache_failure() {
                            self.seams.shared.cancel();
                        }
                        // The error to report is the step that failed, not one that stopped
                        // because of it.
                        if first_error.as_ref().is_none_or(|f| f.is_cancelled()) {
                            first_error = Some(e);
                        }
                    }
                }
            }
        });
        if let Some(e) = first_error {
            return Err(e);
        }
        if !pending.is_empty() {
            return Err(BuildError::Internal(format!(
                "stages {pending:?} could not be scheduled"
            )));
        }
        Ok(self.results.lock().expect("results lock poisoned").clone())
    }
}

/// Who this process runs as, for the choice of a RUN sandbox.
fn privilege() -> crate::executor::isolation::Privilege {
    use crate::executor::isolation::Privilege;
    use crate::executor::userns;
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Privilege::User;
    }
    match userns::own_maps() {
        Some((uids, _)) if !uids.is_initial() => Privilege::UserNamespace {
            map: uids.describe(),
            single: uids
                .is_single()
                .then(|| userns::single_map_why().unwrap_or_else(|| "no subordinate ids".into())),
        },
        _ => Privilege::Root,
    }
}
