//! Resolving a build's base images before its checks (`build`, `build --call check`,
//! `rbuild check`), as BuildKit's frontend resolves every reachable `FROM` before it runs its
//! checks: which bases to resolve ([`wanted`]), and what the checks learn from them
//! ([`facts`]: each stage's image ENV for UndefinedVar, the platform mismatches for
//! InvalidBaseImagePlatform). The resolved bases then go to the engines
//! (`solver::early_bases`), so nothing is resolved twice.

use rbuild_layers::image::config::ImageConfig;
use rbuild_layers::Platform;

use crate::commands::plan::PlatformPlan;
use crate::dockerfile::Dockerfile;
use crate::executor::binfmt;
use crate::graph::platform::platform_string;
use crate::graph::{Base, BuildPlan};
use crate::lint::{Bases, PlatformMismatch};
use crate::solver::early_bases::EarlyBases;

/// The stages of `plan` whose checks count: every stage for `--call check` without a target
/// (BuildKit's lint dispatches them all), else those the targets need.
fn considered(plan: &BuildPlan, all_stages: bool) -> impl Iterator<Item = usize> + '_ {
    (0..plan.stages.len()).filter(move |&i| all_stages || plan.is_needed(i))
}

/// A stage's base image name, unless it is no image (scratch, a stage, a directory context).
fn image_base(plan: &BuildPlan, i: usize) -> Option<&str> {
    match &plan.stages[i].base {
        Base::Image(name) if plan.named.dir(name).is_none() => Some(name),
        _ => None,
    }
}

/// Every base image the considered stages start from, with the platform each is resolved
/// for, over every target platform.
pub fn wanted(plans: &[PlatformPlan], all_stages: bool) -> Vec<(String, Platform)> {
    let mut out = Vec::new();
    for p in plans {
        for i in considered(&p.plan, all_stages) {
            if let Some(name) = image_base(&p.plan, i) {
                out.push((name.to_string(), p.plan.stages[i].platform.clone()));
            }
        }
    }
    out
}

/// Resolves the bases of a check that builds nothing (`--call check`, `rbuild check`) and says
/// on standard error which could not be resolved: their stages are checked without their
/// image's ENV or platform (a build would fail at that `FROM`).
pub fn resolve_for_check(
    store: &rbuild_layers::store::Store,
    registries: &rbuild_registry::Registries,
    plans: &[PlatformPlan],
    all_stages: bool,
    cwd: &std::path::Path,
    always_pull: bool,
) -> EarlyBases {
    let wanted = wanted(plans, all_stages);
    let early = EarlyBases::resolve_all(store, registries, &wanted, cwd, always_pull);
    for (name, platform) in &wanted {
        if let Some(why) = early.failure(name, platform) {
            eprintln!(
                "note: FROM {name}: {why}; the checks of its stage do not know its ENV or platform"
            );
        }
    }
    early
}

/// What the checks learn from the resolved `bases`. `platforms_given`: the target platform
/// was chosen (`--platform`), so BuildKit does not follow a single-platform base's own
/// platform (its `autoDetectPlatform`, for an implicit target only).
pub fn facts(
    df: &Dockerfile,
    plans: &[PlatformPlan],
    bases: &EarlyBases,
    all_stages: bool,
    platforms_given: bool,
) -> Bases {
    let mut out = Bases::default();
    let host = rbuild_layers::platform::host_platform();
    // The checks read the first platform's plan for the variables (its stages are every
    // platform's); the platform check is made on every platform's.
    for (n, p) in plans.iter().enumerate() {
        for i in considered(&p.plan, all_stages) {
            let Some(name) = image_base(&p.plan, i) else {
                continue;
            };
            let expected = &p.plan.stages[i].platform;
            let Some(image) = bases.get(name, expected) else {
                continue;
            };
            if n == 0 {
                let env = image.config.config.as_ref().map(|c| c.env.clone());
                out.env.insert(i, env.unwrap_or_default());
            }
            // BuildKit: an image without layers is `scratch` (no check); a stage with no
            // `FROM --platform` under an implicit target takes the image's own platform when
            // this host runs it (natively or through a registered emulator).
            if image.layers.is_empty() {
                continue;
            }
            let actual = config_platform(&image.config);
            let from_platform = df
                .stages
                .get(i)
                .is_some_and(|s| s.from.node.platform.is_some());
            let implicit = !platforms_given && !from_platform;
            let runs_here = || binfmt::emulation(&actual, &host).is_ok();
            if same_platform(expected, &actual) || (implicit && runs_here()) {
                continue;
            }
            // A named context's image is not checked (BuildKit loads it without this check).
            if p.plan.named.provides_image(name) {
                continue;
            }
            let m = PlatformMismatch {
                stage: i,
                image: name.to_string(),
                expected: platform_string(expected),
                actual: platform_string(&actual),
            };
            if !out.platform_mismatches.contains(&m) {
                out.platform_mismatches.push(m);
            }
        }
    }
    out
}

/// BuildKit compares os and architecture only (`validateBaseImagePlatform`).
fn same_platform(a: &Platform, b: &Platform) -> bool {
    a.os == b.os && a.architecture == b.architecture
}

fn config_platform(config: &ImageConfig) -> Platform {
    Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
        os_version: config.os_version.clone(),
    }
}
