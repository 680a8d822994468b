//! `rbuild check`: parse and validate the Dockerfile, print the build plan (per target platform
//! when there are several) and the build checks' report (in buildx's `--call check` format),
//! build nothing.
//!
//! Unlike `rbuild build --check` (which exits 1 when a check fires, as buildx does), `rbuild
//! check` exits 0 with warnings: it is the plan inspector, and a warning does not make the
//! plan wrong. It fails (exit 1) when `error=true` turns the warnings into an error, as a
//! build would.

use std::io::Write;

use super::Failure;
use crate::cli::args::CheckArgs;
use crate::cli::PlanOptions;
use crate::dockerfile::Dockerfile;
use crate::graph::platform::platform_string;
use crate::graph::{Base, BuildPlan};

use super::plan::{check_file_name, load_plan, run_checks, LoadedPlan};
use crate::lint;
use crate::solver::early_bases::EarlyBases;
use rbuild_layers::store::Store;

pub fn run(a: &CheckArgs) -> Result<(), Failure> {
    // `check` has no --store; standard input (`-f -`, context `-`) is unpacked in the store
    // RBUILD_STORE names, else the default one.
    let store = std::env::var_os("RBUILD_STORE").map(std::path::PathBuf::from);
    let opts = PlanOptions::from_args(&a.plan, store.as_deref())?;
    let loaded = load_plan(&opts)?;
    // The store is never part of the context (as in a build).
    let skip: Vec<std::path::PathBuf> = crate::cli::options::store_dir(store.as_deref())
        .ok()
        .into_iter()
        .collect();
    let every = opts.targets.is_empty();
    // The bases are resolved (not pulled: manifests and configs only) for the checks that
    // read them, as a build's checks do.
    let registry = crate::cli::registry::registry_options(&a.registry)?;
    let early = resolve_bases(&loaded, &skip, registry, every);
    let facts = super::bases::facts(
        &loaded.dockerfile,
        &loaded.plans,
        &early,
        every,
        opts.platforms_given,
    );
    let report = run_checks(
        &loaded.dockerfile,
        &loaded.plans,
        &loaded.build_args,
        &opts,
        every,
        &skip,
        &facts,
    )?;
    let LoadedPlan {
        dockerfile,
        plans,
        source,
        ..
    } = &loaded;
    let mut out = String::new();
    out.push_str(&format!("Dockerfile: {}\n", opts.dockerfile_shown()));
    // The plan per target platform: which stages a target needs, their bases and platforms
    // may differ between them (`FROM base-$TARGETARCH`, `FROM --platform=$BUILDPLATFORM`).
    for p in plans {
        if plans.len() > 1 {
            out.push_str(&format!("Platform: {}\n", platform_string(&p.platform)));
        }
        describe_plan(&mut out, dockerfile, &p.plan, plans.len() > 1);
    }
    let plan = loaded.plan();
    for unused in &plan.unused_build_args {
        out.push_str(&format!(
            "warning: build-arg {unused} is not declared by any ARG\n"
        ));
    }
    out.push('\n');
    let file = check_file_name(a.plan.file.as_deref(), &opts);
    out.push_str(&lint::report::check_output(&report, &file, source));
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    match report.violation() {
        Some(v) => Err(Failure::Build(anyhow::anyhow!(v))),
        None => Ok(()),
    }
}

/// The bases of the checked stages, resolved in the store (`skip`'s first path, the one a build
/// uses) when it exists; a base that cannot be resolved is said on standard error, and its
/// stage is checked without its image's ENV or platform.
fn resolve_bases(
    loaded: &LoadedPlan,
    skip: &[std::path::PathBuf],
    registry: rbuild_registry::ClientOptions,
    every: bool,
) -> EarlyBases {
    if super::bases::wanted(&loaded.plans, every).is_empty() {
        return EarlyBases::default();
    }
    // No store yet: nothing was built here, and `check` creates none; the manifests and
    // configs go to a scratch store removed on return.
    let scratch = tempfile::Builder::new().prefix("rbuild-check-").tempdir();
    let dir = match (skip.first(), &scratch) {
        (Some(dir), _) if dir.exists() => dir.clone(),
        (_, Ok(t)) => t.path().join("store"),
        (_, Err(e)) => {
            eprintln!(
                "note: the base images are not resolved: no store and no scratch directory: {e}"
            );
            return EarlyBases::default();
        }
    };
    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "note: the base images are not resolved: opening the store {}: {e}",
                dir.display()
            );
            return EarlyBases::default();
        }
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let registries = rbuild_registry::Registries::new(registry);
    super::bases::resolve_for_check(&store, &registries, &loaded.plans, every, &cwd, false)
}

/// The targets, stages and build order of one platform's plan. `platforms`: whether each
/// stage's platform is said (a build for several platforms).
fn describe_plan(out: &mut String, dockerfile: &Dockerfile, plan: &BuildPlan, platforms: bool) {
    let targets: Vec<String> = plan
        .targets
        .iter()
        .map(|&t| plan.stages[t].display_name())
        .collect();
    out.push_str(&format!("Targets: {}\n", targets.join(", ")));
    out.push_str("Stages:\n");
    for (stage, planned) in dockerfile.stages.iter().zip(&plan.stages) {
        let base = match &planned.base {
            Base::Scratch => "scratch".to_string(),
            Base::Stage(i) => plan.stages[*i].display_name(),
            Base::Image(r) => r.clone(),
        };
        let needed = if plan.is_needed(planned.index) {
            "needed"
        } else {
            "not needed for the chosen targets: skipped"
        };
        let on = match platforms && plan.is_needed(planned.index) {
            true => format!(" on {}", platform_string(&planned.platform)),
            false => String::new(),
        };
        out.push_str(&format!(
            "  [{}] {} (FROM {base}){on} - {needed}\n",
            planned.index,
            planned.display_name()
        ));
        if !planned.reads.is_empty() {
            let reads: Vec<String> = planned
                .reads
                .iter()
                .map(|&r| plan.stages[r].display_name())
                .collect();
            out.push_str(&format!("      reads: {}\n", reads.join(", ")));
        }
        for (n, ins) in stage.instructions.iter().enumerate() {
            out.push_str(&format!(
                "      {:>2}. line {:<4} {}\n",
                n + 1,
                ins.line,
                ins.node
            ));
        }
    }
    let order: Vec<String> = plan
        .order
        .iter()
        .map(|&i| plan.stages[i].display_name())
        .collect();
    out.push_str(&format!("Build order: {}\n", order.join(" -> ")));
}
