//! Phase 2 of a build, planning: the engine's [`BuildRequest`], every target's image names and
//! which stages' layers are streamed to a registry while they are written. Still nothing is
//! written; a bad `--no-cache-filter` or `--tag` is a usage error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rbuild_layers::Compression;
use rbuild_registry::Reference;

use super::inputs::Inputs;
use crate::cli::cache_spec::{CacheExportSpec, CacheExportTarget, CacheMode};
use crate::cli::output::{Destination, OutputKind};
use crate::cli::BuildOptions;
use crate::commands::plan::PlatformPlan;
use crate::commands::Failure;
use crate::export::ahead::stage_destinations;
use crate::export::push::destinations;
use crate::export::tags::{default_repository, names_for_target};
use crate::graph::BuildPlan;
use crate::solver::BuildRequest;

/// What the build will make and where it goes.
pub(super) struct Planned {
    /// One per target platform, in `Inputs::plans` order.
    pub requests: Vec<BuildRequest>,
    /// Each target stage's image names.
    pub target_names: BTreeMap<usize, Vec<Reference>>,
    /// Stage → (registry host, repository) its layers are uploaded to while written.
    pub upload_ahead: BTreeMap<usize, (String, String)>,
}

pub(super) fn plan(inputs: &Inputs) -> Result<Planned, Failure> {
    let requests = inputs
        .plans
        .iter()
        .map(|p| request(inputs, p))
        .collect::<Result<Vec<_>, _>>()?;
    let target_names = target_names(inputs)?;
    let opts = &inputs.opts;
    let pushed_targets: Vec<(usize, (String, String))> = inputs
        .plan()
        .targets
        .iter()
        .filter_map(|t| {
            let names = target_names.get(t)?;
            let first = destinations(names, opts.push, &opts.outputs)
                .into_keys()
                .next()?;
            Some((*t, first))
        })
        .collect();
    // A stage's layers go to the first repository of a target built from it, whichever
    // platform's plan has it so.
    let mut upload_ahead = BTreeMap::new();
    for p in &inputs.plans {
        for (stage, dest) in stage_destinations(&p.plan, &pushed_targets) {
            upload_ahead.entry(stage).or_insert(dest);
        }
    }
    Ok(Planned {
        requests,
        target_names,
        upload_ahead,
    })
}

fn request(inputs: &Inputs, p: &PlatformPlan) -> Result<BuildRequest, Failure> {
    let opts = &inputs.opts;
    let first_output = opts.outputs.first();
    Ok(BuildRequest {
        registry: inputs.registry.clone(),
        platform: p.platform.clone(),
        show_platform: inputs.multi_platform(),
        platform_vars: p.platform_vars.clone(),
        build_args: inputs.build_args.clone(),
        no_cache: opts.no_cache,
        no_cache_stages: no_cache_stages(&opts.no_cache_filter, &p.plan)?,
        epoch: inputs.epoch,
        epoch_in_key: inputs.epoch_chosen,
        clock_epoch: inputs.clock_epoch(),
        default_network: match opts.network {
            crate::cli::values::NetworkMode::None => crate::dockerfile::NetworkMode::None,
            crate::cli::values::NetworkMode::Host => crate::dockerfile::NetworkMode::Host,
            crate::cli::values::NetworkMode::Default => crate::dockerfile::NetworkMode::Default,
        },
        isolation: opts.isolation,
        always_pull: opts.pull,
        extra_hosts: opts.extra_hosts.clone(),
        shm_size: opts.shm_size,
        ulimits: opts.ulimits.clone(),
        compression: first_output.map_or(Compression::Gzip, |o| o.compression),
        compression_level: first_output.and_then(|o| o.compression_level),
        output_stages: output_stages(&p.plan, &opts.cache_to),
        normalize_modes: inputs.git.is_some(),
        secrets: opts.secrets.clone(),
        ssh: opts.ssh.clone(),
        workdir: opts.workdir.clone(),
        context_dir: opts.plan.context.clone(),
        dockerfile: opts.plan.dockerfile.clone(),
        context_skip: context_skip(opts),
    })
}

/// The stages whose layers this build needs compressed: every target and the stages it is built
/// `FROM` (their layers are in its images), and every stage when a `--cache-to` carries every
/// step (`mode=max`). Their layers are compressed while written; the others' only when something
/// needs them, see `solver::lazy_blobs` (compressing a layer at the end that is certain to be
/// needed would only add a write and a read of its tar). `RBUILD_DEFER_COMPRESSION=0`
/// compresses every layer while it is written (to compare, or to have every blob ready).
fn output_stages(plan: &BuildPlan, cache_to: &[CacheExportSpec]) -> Option<BTreeSet<usize>> {
    let max_export = cache_to
        .iter()
        .any(|c| c.mode == CacheMode::Max && c.target != CacheExportTarget::Inline);
    if max_export || std::env::var("RBUILD_DEFER_COMPRESSION").as_deref() == Ok("0") {
        return None;
    }
    Some(
        plan.targets
            .iter()
            .flat_map(|&t| plan.from_chain(t))
            .collect(),
    )
}

/// `--no-cache-filter`: a stage's name, the `stage-N` rbuild shows for an unnamed one, or its
/// index.
fn no_cache_stages(given: &[String], plan: &BuildPlan) -> Result<BTreeSet<usize>, Failure> {
    given
        .iter()
        .map(|given| {
            let name = given.to_ascii_lowercase();
            plan.stages
                .iter()
                .find(|s| {
                    s.name.as_deref() == Some(name.as_str())
                        || s.display_name() == name
                        || s.index.to_string() == name
                })
                .map(|s| s.index)
                .ok_or_else(|| {
                    let stages: Vec<String> =
                        plan.stages.iter().map(|s| s.display_name()).collect();
                    Failure::Usage(format!(
                        "error: --no-cache-filter {given}: no such stage (stages: {})",
                        stages.join(", ")
                    ))
                })
        })
        .collect()
}

/// Each target's names, known before building (layers of pushed images are streamed to their
/// first repository while they are written, see `export::ahead`).
fn target_names(inputs: &Inputs) -> Result<BTreeMap<usize, Vec<Reference>>, Failure> {
    let plan = inputs.plan();
    let git = inputs.git.as_ref();
    let repo = default_repository(&repo_dir_name(&inputs.opts.plan.context, git));
    let default_tag = git.map(crate::git::default_tag);
    let multiple = plan.targets.len() > 1;
    let mut names = BTreeMap::new();
    for &t in &plan.targets {
        let target = plan.stages[t].display_name();
        let n = names_for_target(
            &target,
            multiple,
            &inputs.tag_specs,
            &repo,
            default_tag.as_deref(),
        )
        .map_err(|e| Failure::Usage(format!("error: --tag: {e}")))?;
        names.insert(t, n);
    }
    Ok(names)
}

fn repo_dir_name(context: &Path, git: Option<&crate::git::GitInfo>) -> String {
    let dir = git
        .and_then(|g| g.toplevel.clone())
        .or_else(|| std::fs::canonicalize(context).ok())
        .unwrap_or_else(|| context.to_path_buf());
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What rbuild itself writes during a build: the store, output destinations, local cache
/// exports, the metadata file and the image ID file. The context scan never reads these (see
/// `Context::scan_skipping`).
pub(super) fn context_skip(opts: &BuildOptions) -> Vec<PathBuf> {
    let outputs = opts.outputs.iter().filter_map(|o| match &o.kind {
        OutputKind::Oci(d) | OutputKind::Docker(d) | OutputKind::Tar(d) => match d {
            Destination::Directory(p) | Destination::Tarball(p) => Some(p.clone()),
            Destination::Stdout | Destination::Engine => None,
        },
        OutputKind::Local(p) => Some(p.clone()),
        OutputKind::Registry { .. } => None,
    });
    let caches = opts.cache_to.iter().filter_map(|c| match &c.target {
        CacheExportTarget::Local(p) => Some(p.clone()),
        _ => None,
    });
    std::iter::once(opts.store.clone())
        .chain(outputs)
        .chain(caches)
        .chain(opts.metadata_file.clone())
        .chain(opts.iidfile.clone())
        .collect()
}
