//! `--cache-to`: writes the cache map of this build's steps where the next build can find it.
//!
//! `mode=min` carries the steps whose layers are in the final images (the target stages and the
//! stages they are built `FROM`), and the other steps that lead to them by key only, without
//! their layers (see `CacheMap::key_only`), as BuildKit's `mode=min` does: a fresh runner then
//! resolves a `COPY --from` of a compiler stage without building it. `mode=max` carries every
//! step of every stage that was built with its layer, so any step of them hits.
//! Layers are exported as they were built (the `compression=` of a cache export applies to the
//! layers it writes itself: cache mounts), so the image and the cache share their blobs.
//!
//! Blobs go only where they are missing (`HEAD` first); a layer the store never downloaded
//! (lazily imported or pulled) is mounted from its repository on the same registry, and fetched
//! only when it must be uploaded elsewhere.

use std::collections::BTreeSet;

use rbuild_layers::store::Store;
use rbuild_layers::tar::PathIndex;
use rbuild_registry::cache_map::{CacheEntry, CacheLayer, CacheMap, CacheMountLayer};
use rbuild_registry::push::PushOptions;

use super::import::ImportedCaches;
use crate::errors::error_chain;
use crate::graph::BuildPlan;
use crate::lazy_pull::LayerFetcher;
use crate::progress::{LogStream, Progress};
use crate::remote_cache::spec::{CacheExportSpec, CacheExportTarget, CacheMode};
use crate::solver::StepOutcome;

/// Why a cache export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("exporting the cache to {target}")]
    Write {
        target: String,
        #[source]
        source: rbuild_registry::cache_map::CacheWriteError,
    },
    #[error("exporting the cache to {target}: connecting to the registry")]
    Connect {
        target: String,
        #[source]
        source: Box<rbuild_registry::RegistryError>,
    },
    #[error("exporting cache mount {id:?}")]
    Mount {
        id: String,
        #[source]
        source: rbuild_layers::tar::LayerError,
    },
}

/// The stages whose steps a cache export of `targets` carries.
pub fn stages_for(
    plan: &BuildPlan,
    targets: &[usize],
    mode: CacheMode,
    built: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    match mode {
        CacheMode::Max => built.clone(),
        CacheMode::Min => {
            let mut out = BTreeSet::new();
            for &t in targets {
                out.extend(plan.from_chain(t));
            }
            out
        }
    }
}

/// The stages a `mode=min` export of `targets` carries by key only (see
/// `CacheMap::key_only`): every stage `targets` need, directly or not, that is not in their
/// `FROM` chains — as BuildKit's `mode=min` cache carries the keys of every step that leads to
/// the image and the layers of the image's own. `mode=max` carries every layer: none.
pub fn key_only_stages_for(
    plan: &BuildPlan,
    targets: &[usize],
    mode: CacheMode,
    built: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    if mode == CacheMode::Max {
        return BTreeSet::new();
    }
    let full = stages_for(plan, targets, mode, built);
    let mut needed = BTreeSet::new();
    let mut todo: Vec<usize> = targets.to_vec();
    while let Some(s) = todo.pop() {
        if needed.insert(s) {
            if let Some(stage) = plan.stages.get(s) {
                todo.extend(stage.depends_on());
            }
        }
    }
    needed
        .into_iter()
        .filter(|s| built.contains(s) && !full.contains(s))
        .collect()
}

/// The cache map of the steps of `stages`, and of `key_only` stages by key only (as are steps
/// whose layer this build itself had by key only).
pub fn cache_map(
    outcomes: &[StepOutcome],
    stages: &BTreeSet<usize>,
    key_only: &BTreeSet<usize>,
    platform: &str,
    with_configs: bool,
) -> CacheMap {
    let mut map = CacheMap::new(platform);
    add_steps(&mut map, outcomes, stages, key_only, with_configs);
    map
}

/// Adds the steps of `stages` (and of `key_only` stages by key only) to `map`. Keys include
/// each step's platform, so the steps of several platforms share one map without clashing; a
/// step two platforms share (a `$BUILDPLATFORM` stage) is one entry.
fn add_steps(
    map: &mut CacheMap,
    outcomes: &[StepOutcome],
    stages: &BTreeSet<usize>,
    key_only: &BTreeSet<usize>,
    with_configs: bool,
) {
    for o in outcomes
        .iter()
        .filter(|o| stages.contains(&o.stage) || key_only.contains(&o.stage))
    {
        let by_key_only =
            key_only.contains(&o.stage) || o.layer.as_ref().is_some_and(|l| l.key_only);
        let entries = if by_key_only {
            &mut map.key_only
        } else {
            &mut map.entries
        };
        let entry = entries.entry(o.key.clone()).or_insert_with(|| CacheEntry {
            parent: o.parent.clone(),
            layer: o.layer.as_ref().map(|l| CacheLayer {
                descriptor: l.descriptor.clone(),
                diff_id: l.diff_id.clone(),
                index: None,
            }),
            config: (with_configs && !by_key_only).then(|| o.config.clone()),
            description: o.description.clone(),
            definition_keys: Default::default(),
            created: o.created,
        });
        // A `COPY --from` is found by its definition key too (no source needed to look it up).
        entry.definition_keys.extend(o.definition.iter().cloned());
    }
    // A step one platform carries in full and another by key only is carried in full.
    let full: Vec<_> = map
        .key_only
        .keys()
        .filter(|k| map.entries.contains_key(*k))
        .cloned()
        .collect();
    for k in full {
        map.key_only.remove(&k);
    }
}

/// Most bytes of path indexes one cache map carries: the map must stay well under the
/// importer's `MAX_CACHE_MAP_BYTES`, and an index is an optimisation (a layer without one is
/// fetched when a lookup reaches it).
pub const MAX_INDEX_BYTES_PER_MAP: usize = 8 * 1024 * 1024;

/// Fills each layer's path index from the store's `layer-index` record (written with the layer,
/// or imported with it), so an importing build can look paths up without fetching the layer.
/// Indexes past [`MAX_INDEX_BYTES_PER_MAP`] in all are left out.
pub fn attach_indexes(map: &mut CacheMap, store: &Store) {
    attach_indexes_within(map, store, MAX_INDEX_BYTES_PER_MAP);
}

fn attach_indexes_within(map: &mut CacheMap, store: &Store, mut budget: usize) {
    for l in map.entries.values_mut().filter_map(|e| e.layer.as_mut()) {
        if l.index.is_none() {
            l.index = PathIndex::load(store, &l.diff_id);
        }
        if let Some(index) = &l.index {
            let size = index.to_json().len();
            if size > budget {
                l.index = None;
            } else {
                budget -= size;
            }
        }
    }
}

/// Everything an export needs from the finished build.
pub struct ExportInput<'a> {
    pub store: &'a Store,
    pub fetcher: &'a LayerFetcher,
    pub imports: &'a ImportedCaches,
    /// One per target platform.
    pub platforms: Vec<PlatformSteps<'a>>,
    /// The build's platforms, comma-separated (the map's `platform`).
    pub platform: String,
    pub progress: &'a Progress,
}

/// What one platform's engine built, for a cache export.
pub struct PlatformSteps<'a> {
    pub plan: &'a BuildPlan,
    /// The stages it built (all of them ran or were found).
    pub built: BTreeSet<usize>,
    pub outcomes: Vec<StepOutcome>,
}

fn target_name(spec: &CacheExportSpec) -> String {
    match &spec.target {
        CacheExportTarget::Registry(r) => r.to_string(),
        CacheExportTarget::Local(d) => d.display().to_string(),
        CacheExportTarget::Inline => "the image (inline)".to_string(),
    }
}

/// Runs every registry and local `--cache-to` (inline ones are part of image assembly). An
/// export with `ignore-error=true` that fails is a warning; the first other failure is returned
/// after the rest have run.
pub fn export_all(input: &ExportInput<'_>, specs: &[CacheExportSpec]) -> Result<(), ExportError> {
    let mut first_error = None;
    for spec in specs {
        if spec.target == CacheExportTarget::Inline {
            continue;
        }
        let step = input
            .progress
            .step(format!("exporting cache to {}", target_name(spec)));
        match export_one(input, spec, &step) {
            Ok(()) => step.done(),
            Err(e) => {
                step.failed(error_chain(&e));
                if spec.ignore_error {
                    input
                        .progress
                        .warn(format!("{}; ignored (ignore-error=true)", error_chain(&e)));
                } else if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn export_one(
    input: &ExportInput<'_>,
    spec: &CacheExportSpec,
    step: &crate::progress::StepHandle,
) -> Result<(), ExportError> {
    let mut map = CacheMap::new(input.platform.as_str());
    for p in &input.platforms {
        let stages = stages_for(p.plan, &p.plan.targets, spec.mode, &p.built);
        let key_only = key_only_stages_for(p.plan, &p.plan.targets, spec.mode, &p.built);
        add_steps(&mut map, &p.outcomes, &stages, &key_only, true);
    }
    attach_indexes(&mut map, input.store);
    for id in &spec.cache_mounts {
        let layer =
            super::mounts::export_mount(input.store, id, spec.compression, spec.compression_level)
                .map_err(|source| ExportError::Mount {
                    id: id.clone(),
                    source,
                })?
                // Not used by this build: carry the imported one forward, so it is not lost.
                .or_else(|| input.imports.cache_mount(input.store, id));
        match layer {
            Some(layer) => {
                map.cache_mounts
                    .insert(id.clone(), CacheMountLayer { layer });
            }
            None => input.progress.warn(format!(
                "cache mount {id:?} was not used by this build and is in no imported cache; it is not exported"
            )),
        }
    }
    let fetch = input.fetcher.fetch_for_push(input.store);
    let target = target_name(spec);
    let sent = std::sync::atomic::AtomicU64::new(0);
    let on_bytes = |n: u64| {
        let now = sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        step.progress(crate::progress::ProgressKind::Pushing, now, None);
    };
    let write_err = |source| ExportError::Write {
        target: target.clone(),
        source,
    };
    match &spec.target {
        CacheExportTarget::Registry(r) => {
            let reg = input
                .fetcher
                .registries()
                .get(r.registry())
                .map_err(|source| ExportError::Connect {
                    target: target.clone(),
                    source: Box::new(source),
                })?;
            let opts = PushOptions {
                on_bytes: &on_bytes,
                fetch_missing: Some(&fetch),
                sent_ahead: &[],
            };
            let report =
                rbuild_registry::cache_map::remote::push_cache(&reg, input.store, r, &map, &opts)
                    .map_err(write_err)?;
            step.log(
                LogStream::Stdout,
                format!(
                    "{} step(s), {} blob(s) uploaded, {} mounted, {} already there",
                    map.entries.len(),
                    report.blobs_uploaded,
                    report.blobs_mounted,
                    report.blobs_existing
                ),
            );
        }
        CacheExportTarget::Local(dir) => {
            rbuild_registry::cache_map::layout::write_layout_cache(
                dir,
                input.store,
                &map,
                Some(&fetch),
            )
            .map_err(write_err)?;
            step.log(
                LogStream::Stdout,
                format!("{} step(s) written to {}", map.entries.len(), dir.display()),
            );
        }
        CacheExportTarget::Inline => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::image::config::ImageConfig;
    use rbuild_layers::{Descriptor, Digest, MediaType};

    fn outcome(stage: usize, seed: &str, layer: bool) -> StepOutcome {
        StepOutcome {
            stage,
            key: Digest::sha256_of(seed.as_bytes()),
            parent: None,
            layer: layer.then(|| {
                crate::solver::LayerRef::new(
                    Descriptor::new(
                        MediaType::OciLayerGzip,
                        Digest::sha256_of(format!("{seed}-blob").as_bytes()),
                        10,
                    ),
                    Digest::sha256_of(format!("{seed}-diff").as_bytes()),
                )
            }),
            config: ImageConfig::new("linux", "amd64"),
            description: seed.to_string(),
            definition: None,
            created: None,
        }
    }

    #[test]
    fn min_mode_follows_the_from_chain_and_max_mode_takes_every_built_stage() {
        let df = crate::dockerfile::parse(
            "FROM scratch AS deps\nCOPY a /a\n\
             FROM scratch AS compiler\nCOPY b /b\n\
             FROM deps AS runtime\nCOPY --from=compiler /b /b\n\
             FROM runtime AS production\nCOPY c /c\n",
        )
        .unwrap();
        let empty = std::collections::BTreeMap::new();
        let plan = BuildPlan::new(&df, &["production".to_string()], &empty, &empty).unwrap();
        let built: BTreeSet<usize> = [0, 1, 2, 3].into_iter().collect();
        // The image's layers come from production, runtime and deps; the compiler stage is
        // only read by a COPY --from, so min mode leaves it out (BuildKit's rule).
        assert_eq!(
            stages_for(&plan, &[3], CacheMode::Min, &built),
            [0, 2, 3].into_iter().collect()
        );
        assert_eq!(stages_for(&plan, &[3], CacheMode::Max, &built), built);
        // ... and carries the compiler stage by key only, as BuildKit's mode=min carries the
        // keys of every step that leads to the image; mode=max has every layer.
        assert_eq!(
            key_only_stages_for(&plan, &[3], CacheMode::Min, &built),
            [1].into_iter().collect()
        );
        assert!(key_only_stages_for(&plan, &[3], CacheMode::Max, &built).is_empty());
        // A stage the target does not depend on is never carried.
        assert!(key_only_stages_for(&plan, &[0], CacheMode::Min, &built).is_empty());
    }

    #[test]
    fn key_only_stages_and_key_only_layers_go_to_the_key_only_map_without_blobs() {
        let mut imported = outcome(0, "imported", true);
        if let Some(l) = imported.layer.as_mut() {
            l.key_only = true;
        }
        let outcomes = vec![
            imported,
            outcome(0, "a", true),
            outcome(1, "compiler", true),
            outcome(2, "final", true),
        ];
        let full: BTreeSet<usize> = [0, 2].into_iter().collect();
        let key_only: BTreeSet<usize> = [1].into_iter().collect();
        let m = cache_map(&outcomes, &full, &key_only, "linux/amd64", true);
        let keys = |map: &std::collections::BTreeMap<Digest, CacheEntry>| -> BTreeSet<Digest> {
            map.keys().cloned().collect()
        };
        assert_eq!(
            keys(&m.entries),
            [Digest::sha256_of(b"a"), Digest::sha256_of(b"final")]
                .into_iter()
                .collect()
        );
        assert_eq!(
            keys(&m.key_only),
            [
                Digest::sha256_of(b"imported"),
                Digest::sha256_of(b"compiler")
            ]
            .into_iter()
            .collect()
        );
        assert!(m.key_only.values().all(|e| e.config.is_none()));
        // Only the blobs of full entries are exported.
        assert_eq!(m.layer_descriptors().len(), 2);
    }

    #[test]
    fn maps_hold_only_the_chosen_stages_and_configs_only_when_asked() {
        let outcomes = vec![
            outcome(0, "a", true),
            outcome(1, "b", false),
            outcome(2, "c", true),
        ];
        let stages: BTreeSet<usize> = [0, 2].into_iter().collect();
        let m = cache_map(&outcomes, &stages, &BTreeSet::new(), "linux/amd64", false);
        assert_eq!(m.entries.len(), 2);
        assert!(m.entries.values().all(|e| e.config.is_none()));
        assert_eq!(m.layer_descriptors().len(), 2);
        let m = cache_map(&outcomes, &stages, &BTreeSet::new(), "linux/amd64", true);
        assert!(m.entries.values().all(|e| e.config.is_some()));
    }

    #[test]
    fn a_step_with_a_definition_key_is_exported_under_its_key_with_the_definition_listed() {
        let mut copy = outcome(1, "copy", true);
        let def = Digest::sha256_of(b"definition");
        copy.definition = Some(def.clone());
        // The same step met twice (two targets): one entry, its definition keys merged.
        let mut again = copy.clone();
        let def2 = Digest::sha256_of(b"definition 2");
        again.definition = Some(def2.clone());
        let outcomes = vec![outcome(0, "a", true), copy.clone(), again];
        let stages: BTreeSet<usize> = [0, 1].into_iter().collect();
        let m = cache_map(&outcomes, &stages, &BTreeSet::new(), "linux/amd64", false);
        assert_eq!(m.entries.len(), 2);
        assert_eq!(
            m.entries[&copy.key].definition_keys,
            [def.clone(), def2].into_iter().collect()
        );
        assert!(m.entries[&Digest::sha256_of(b"a")]
            .definition_keys
            .is_empty());
        assert_eq!(m.definition_index()[&def], copy.key);
    }

    #[test]
    fn exported_layers_carry_their_stored_index_within_a_budget() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let outcomes = vec![outcome(0, "a", true), outcome(0, "b", true)];
        let stages: BTreeSet<usize> = [0].into_iter().collect();
        let small = PathIndex::from_json(br#"{"app":"d"}"#).unwrap();
        let big = PathIndex::from_json(br#"{"app":"d","app/a":"f","app/b":"f"}"#).unwrap();
        small.save(&store, &Digest::sha256_of(b"a-diff")).unwrap();
        big.save(&store, &Digest::sha256_of(b"b-diff")).unwrap();
        let index_of = |m: &CacheMap, seed: &str| {
            m.entries[&Digest::sha256_of(seed.as_bytes())]
                .layer
                .as_ref()
                .and_then(|l| l.index.clone())
        };

        let mut m = cache_map(&outcomes, &stages, &BTreeSet::new(), "linux/amd64", false);
        attach_indexes(&mut m, &store);
        assert_eq!(index_of(&m, "a"), Some(small.clone()));
        assert_eq!(index_of(&m, "b"), Some(big.clone()));

        // Room for the small one only.
        let mut m = cache_map(&outcomes, &stages, &BTreeSet::new(), "linux/amd64", false);
        attach_indexes_within(&mut m, &store, small.to_json().len() + 5);
        assert_eq!(index_of(&m, "a"), Some(small));
        assert_eq!(index_of(&m, "b"), None);
    }
}
