//! Phase 4 of a build, exporting: each target becomes an image (with its inline cache when
//! asked), is tagged in the store, written to the `--output`s, pushed, and the build's cache
//! is exported — push and cache export side by side where they cannot step on each other.

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::inputs::Inputs;
use super::plan::Planned;
use super::solve::{PlatformSolved, Session, Solved};
use crate::cli::cache_spec::{CacheExportTarget, CacheMode};
use crate::commands::Failure;
use crate::export::push::Pushed;
use crate::export::{assemble, image_annotations, write_outputs, BuiltImage};
use crate::graph::platform::platform_string;
use crate::progress::TargetSummary;
use crate::remote_cache::export::{
    cache_map, export_all, key_only_stages_for, stages_for, ExportInput, PlatformSteps,
};
use crate::solver::{lazy_blobs, StepOutcome};
use rbuild_layers::image::Image;

/// The images a build made and where they went.
pub(super) struct Exported {
    pub built: Vec<BuiltImage>,
    /// One per target, in target order (step counts are filled in by the report).
    pub summaries: Vec<TargetSummary>,
    pub pushed: Vec<Pushed>,
}

pub(super) fn export(
    inputs: &Inputs,
    planned: &Planned,
    session: &Session,
    solved: &Solved<'_>,
    started: std::time::Instant,
) -> Result<Exported, Failure> {
    let (mut built, summaries) = images(inputs, planned, session, solved)?;
    let opts = &inputs.opts;
    let store = &session.store;
    let progress = &session.progress;
    let source_date_epoch = inputs.epoch_chosen.then_some(inputs.epoch);
    // Attestations first: pushed images and OCI layouts carry them in an index, `type=local`
    // outputs as files.
    super::attest::attach(inputs, session, solved, &mut built, started)?;
    write_outputs(store, &built, &opts.outputs, source_date_epoch)
        .map_err(|e| Failure::Build(e.into()))?;
    // The layers streamed while building: the last ones may still be on their way.
    let ahead_report = solved.ahead.finish(store);
    // Pushing the images and exporting the cache run side by side, except when the cache goes
    // to a registry an image goes to and some new layer is not there yet (its upload ahead
    // failed): then the push goes first, so the export mounts that layer from the image's
    // repository instead of uploading it a second time.
    let push_hosts = crate::export::push::push_hosts(&built, opts.push, &opts.outputs);
    let push_first = !ahead_report.complete()
        && opts.cache_to.iter().any(|c| {
            matches!(&c.target, CacheExportTarget::Registry(r) if push_hosts.contains(r.registry()))
        });
    // Compressing the deferred layers a cache export carries runs beside the push too.
    let export_cache = || -> Result<(), Failure> {
        let mut platforms = Vec::new();
        for (i, p) in solved.platforms.iter().enumerate() {
            platforms.push(PlatformSteps {
                plan: &inputs.plans[i].plan,
                built: p.states.keys().copied().collect(),
                outcomes: exported_outcomes(inputs, i, p)?,
            });
        }
        let input = ExportInput {
            store,
            fetcher: &solved.fetcher,
            imports: &solved.first().imports,
            platforms,
            platform: platforms_shown(inputs),
            progress,
        };
        export_all(&input, &opts.cache_to).map_err(|e| Failure::Build(e.into()))
    };
    let push = || {
        crate::export::push::push_images(
            store,
            &built,
            opts.push,
            &opts.outputs,
            &solved.fetcher,
            &ahead_report.sent,
            progress,
        )
    };
    let (pushed, exported) = if push_first {
        let pushed = push();
        let exported = match &pushed {
            Ok(_) => export_cache(),
            Err(_) => Ok(()),
        };
        (pushed, exported)
    } else {
        std::thread::scope(|s| {
            let export = s.spawn(export_cache);
            let pushed = push();
            (
                pushed,
                export.join().expect("the cache export thread panicked"),
            )
        })
    };
    let pushed = pushed.map_err(|e| Failure::Build(e.into()))?;
    exported?;
    Ok(Exported {
        built,
        summaries,
        pushed,
    })
}

/// The steps of platform `i` a `--cache-to` may carry, with the deferred layers of the stages
/// some export carries compressed (see `solver::lazy_blobs`; with the build's compression, as
/// the layers of the images are).
fn exported_outcomes(
    inputs: &Inputs,
    i: usize,
    solved: &PlatformSolved<'_>,
) -> Result<Vec<StepOutcome>, Failure> {
    let plan = &inputs.plans[i].plan;
    let built: BTreeSet<usize> = solved.states.keys().copied().collect();
    let outcomes = solved.engine.outcomes();
    let stages: BTreeSet<usize> = inputs
        .opts
        .cache_to
        .iter()
        .filter(|c| c.target != CacheExportTarget::Inline)
        .flat_map(|c| stages_for(plan, &plan.targets, c.mode, &built))
        .collect();
    if stages.is_empty() {
        return Ok(outcomes);
    }
    let deferred = outcomes
        .iter()
        .filter(|o| stages.contains(&o.stage))
        .filter(|o| o.layer.as_ref().is_some_and(|l| l.deferred))
        .count();
    let opts = solved.engine.opts;
    let compress = || {
        lazy_blobs::compressed_outcomes(
            solved.engine.store,
            outcomes,
            &stages,
            opts.compression,
            opts.compression_level,
        )
    };
    shown_as_step(&solved.engine.progress, deferred, compress)
}

/// Runs `compress` (of `deferred` layers) as a progress step when there is anything to do, so
/// that the time it takes is not a silent gap.
fn shown_as_step<T>(
    progress: &crate::progress::Progress,
    deferred: usize,
    compress: impl FnOnce() -> Result<T, crate::solver::BuildError>,
) -> Result<T, Failure> {
    if deferred == 0 {
        return compress().map_err(|e| Failure::Build(e.into()));
    }
    let step = progress.step(format!("compressing {deferred} deferred layer(s)"));
    match compress() {
        Ok(v) => {
            step.done();
            Ok(v)
        }
        Err(e) => {
            step.failed(crate::errors::error_chain(&e));
            Err(Failure::Build(e.into()))
        }
    }
}

/// The build's platforms, as a cache map names them (comma-separated, in `--platform` order).
fn platforms_shown(inputs: &Inputs) -> String {
    inputs
        .plans
        .iter()
        .map(|p| platform_string(&p.platform))
        .collect::<Vec<_>>()
        .join(",")
}

/// Assembles each target's image (one per platform, in an index when there are several) and
/// tags it in the store.
fn images(
    inputs: &Inputs,
    planned: &Planned,
    session: &Session,
    solved: &Solved<'_>,
) -> Result<(Vec<BuiltImage>, Vec<TargetSummary>), Failure> {
    let store = &session.store;
    let mut built = Vec::new();
    let mut summaries = Vec::new();
    for &t in &inputs.plan().targets {
        let per_platform = solved
            .platforms
            .iter()
            .enumerate()
            .map(|(i, p)| platform_image(inputs, session, p, i, t))
            .collect::<Result<Vec<_>, _>>()?;
        let target = inputs.plan().stages[t].display_name();
        let names = planned.target_names.get(&t).cloned().unwrap_or_default();
        let user = inputs.opts.annotations.first().cloned().unwrap_or_default();
        let image = crate::export::index_of(store, per_platform, &user)
            .map_err(|e| Failure::Build(e.into()))?;
        // `oci-mediatypes=false` (every image output says it, see `inputs`): Docker's types.
        let image = if inputs.opts.docker_media_types() {
            image
                .to_docker_media_types(store)
                .context("giving the image Docker's media types (oci-mediatypes=false)")
                .map_err(Failure::Build)?
        } else {
            image
        };
        // Tags rbuild sets are marked as built here: FROM uses them without asking a registry.
        let mut local_desc = image.descriptor().clone();
        local_desc.annotations.insert(
            crate::solver::base::ORIGIN_ANNOTATION.to_string(),
            "build".to_string(),
        );
        for n in &names {
            store
                .set_ref(&n.to_string(), &local_desc)
                .with_context(|| format!("tagging {n} in the store"))
                .map_err(Failure::Build)?;
        }
        let images = image.images();
        let size = images
            .iter()
            .map(|i| {
                i.manifest.layers.iter().map(|l| l.size).sum::<u64>()
                    + i.config_descriptor.size
                    + i.manifest_descriptor.size
            })
            .sum::<u64>();
        summaries.push(TargetSummary {
            target: target.clone(),
            digest: image.descriptor().digest.to_string(),
            tags: names.iter().map(|n| n.familiar()).collect(),
            size,
            layers: images.iter().map(|i| i.manifest.layers.len()).sum(),
            steps_cached: 0,
            steps_total: 0,
        });
        built.push(BuiltImage {
            target,
            image,
            names,
            predicates: Vec::new(),
        });
    }
    Ok((built, summaries))
}

/// Assembles target `t`'s image for platform `i` of the build.
fn platform_image(
    inputs: &Inputs,
    session: &Session,
    solved: &PlatformSolved<'_>,
    i: usize,
    t: usize,
) -> Result<Image, Failure> {
    let plan = &inputs.plans[i].plan;
    let store = &session.store;
    let inline_cache = inputs
        .opts
        .cache_to
        .iter()
        .any(|c| c.target == CacheExportTarget::Inline);
    let built_stages: BTreeSet<usize> = solved.states.keys().copied().collect();
    let opts = solved.engine.opts;
    let built_state = solved
        .states
        .get(&t)
        .ok_or_else(|| Failure::Build(anyhow::anyhow!("target stage {t} was not built")))?;
    // A layer this stage reached through a step record written where its compression was
    // deferred is compressed now (see `solver::lazy_blobs`).
    let mut state = (**built_state).clone();
    let deferred = state.layers.iter().filter(|l| l.deferred).count();
    state.layers = shown_as_step(&session.progress, deferred, || {
        lazy_blobs::compressed_layers(
            store,
            &state.layers,
            opts.compression,
            opts.compression_level,
        )
    })?;
    if inputs.opts.plan.platforms_given {
        crate::export::set_target_platform(&mut state.config, &opts.platform);
    }
    let created = crate::export::image_time(&state, inputs.epoch, inputs.clock_epoch());
    let annotations = image_annotations(&state, inputs.git.as_ref(), &created);
    if inline_cache {
        // The image carries the cache map of its own steps (min mode), as BuildKit's
        // inline cache does.
        let stages = stages_for(plan, &[t], CacheMode::Min, &built_stages);
        let key_only = key_only_stages_for(plan, &[t], CacheMode::Min, &built_stages);
        let outcomes = lazy_blobs::compressed_outcomes(
            store,
            solved.engine.outcomes(),
            &stages,
            opts.compression,
            opts.compression_level,
        )
        .map_err(|e| Failure::Build(e.into()))?;
        let map = cache_map(
            &outcomes,
            &stages,
            &key_only,
            &platform_string(&opts.platform),
            false,
        );
        map.embed_in(&mut state.config);
    }
    let user = inputs.opts.annotations.get(i).cloned().unwrap_or_default();
    assemble(
        store,
        &state,
        annotations,
        &user,
        &inputs.opts.labels,
        &created,
    )
    .map_err(|e| Failure::Build(e.into()))
}
