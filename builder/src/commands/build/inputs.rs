//! Phase 1 of a build, resolving its inputs: flags into validated options, the Dockerfile and
//! its plan, the context's git metadata and the build's epoch. Nothing is written yet: every
//! failure here is a usage error and leaves no trace.

use std::collections::BTreeMap;

use rbuild_registry::ClientOptions;

use crate::cli::args::BuildArgs;
use crate::cli::cache_spec::CacheExportTarget;
use crate::cli::output::OutputKind;
use crate::cli::BuildOptions;
use crate::commands::plan::{load_plan, LoadedPlan};
use crate::commands::Failure;
use crate::dockerfile::Dockerfile;
use crate::export::tags::TagSpec;
use crate::git::GitInfo;
use crate::graph::BuildPlan;

/// What a build starts from.
pub(super) struct Inputs {
    pub opts: BuildOptions,
    pub registry: ClientOptions,
    pub tag_specs: Vec<TagSpec>,
    pub df: Dockerfile,
    pub plan: BuildPlan,
    pub build_args: BTreeMap<String, String>,
    pub platform_vars: BTreeMap<String, String>,
    /// Build-check warnings, printed once the progress output exists.
    pub warnings: Vec<String>,
    pub git: Option<GitInfo>,
    /// Timestamp of created times and of the files rbuild writes.
    pub epoch: i64,
    /// Whether the user chose the epoch (`SOURCE_DATE_EPOCH`), see `BuildRequest::epoch_in_key`.
    pub epoch_chosen: bool,
}

pub(super) fn resolve(a: &BuildArgs) -> Result<Inputs, Failure> {
    let opts = BuildOptions::from_args(a)?;
    check_supported(&opts)?;
    let mut registry = crate::cli::registry::registry_options(&a.registry)?;
    registry.insecure_outputs = insecure_output_hosts(&opts);
    let tag_specs = a
        .tags
        .iter()
        .map(|t| {
            TagSpec::parse(t)
                .map_err(|e| Failure::Usage(format!("error: invalid --tag {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The default name (`<dir>:<commit>`) would go to Docker Hub; pushing needs a chosen name.
    if opts.push && tag_specs.is_empty() {
        return Err(Failure::Usage(
            "error: --push pushes the --tag names; give --tag REGISTRY/REPOSITORY[:TAG]".into(),
        ));
    }
    let LoadedPlan {
        dockerfile: df,
        plan,
        build_args,
        platform_vars,
        warnings,
        ..
    } = load_plan(&opts.plan)?;

    // A build that talks to a registry needs the system's TLS roots before its first request:
    // read them meanwhile (the git metadata below is a subprocess).
    if uses_registry(&opts, &plan) {
        rbuild_registry::client::transport::preload_system_roots();
    }
    // A context from standard input is a scratch directory under the store: any repository
    // around it is not the build's.
    let git = if opts.plan.context_is_stdin() {
        None
    } else {
        crate::git::git_info(&opts.plan.context)
            .map_err(|e| Failure::Usage(format!("error: reading git metadata: {e}")))?
    };
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let epoch = crate::git::build_epoch(sde.as_deref(), git.as_ref(), now_unix())
        .map_err(|e| Failure::Usage(format!("error: {e}")))?;
    Ok(Inputs {
        opts,
        registry,
        tag_specs,
        df,
        plan,
        build_args,
        platform_vars,
        warnings,
        git,
        epoch,
        epoch_chosen: sde.as_deref().is_some_and(|v| !v.is_empty()),
    })
}

/// The hosts of `--output type=registry|image,…,registry.insecure=true` (BuildKit's option:
/// plain HTTP or an unverified certificate for that output's registry). The build shares one
/// client per host, so a pull from the same host in this build goes the same way.
fn insecure_output_hosts(opts: &BuildOptions) -> Vec<String> {
    let mut hosts: Vec<String> = opts
        .outputs
        .iter()
        .filter(|o| matches!(o.kind, OutputKind::Registry { insecure: true, .. }))
        .flat_map(|o| o.names.iter().map(|n| n.registry().to_string()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Refuses, before any work, what this version cannot do, so nothing is half-built.
fn check_supported(opts: &BuildOptions) -> Result<(), Failure> {
    if opts
        .outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Registry { .. }) && o.names.is_empty())
    {
        return Err(Failure::Usage(
            "error: --output type=registry needs name=REGISTRY/REPOSITORY[:TAG]".into(),
        ));
    }
    let inline = opts
        .cache_to
        .iter()
        .any(|c| c.target == CacheExportTarget::Inline);
    if inline && !pushes(opts) {
        // BuildKit silently exports nothing here; saying so is kinder.
        return Err(Failure::Usage(
            "error: --cache-to type=inline puts the cache in the pushed image's config: add --push (or --output type=registry,name=…)".into(),
        ));
    }
    Ok(())
}

fn pushes(opts: &BuildOptions) -> bool {
    opts.push
        || opts
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Registry { .. }))
}

/// Whether any part of the build may talk to a registry.
fn uses_registry(opts: &BuildOptions, plan: &BuildPlan) -> bool {
    pushes(opts)
        || !opts.cache_from.is_empty()
        || opts
            .cache_to
            .iter()
            .any(|c| matches!(c.target, CacheExportTarget::Registry(_)))
        || plan.stages.iter().any(|s| {
            matches!(&s.base, crate::graph::Base::Image(n) if !n.starts_with("oci-layout://"))
                || !s.read_images.is_empty()
        })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
