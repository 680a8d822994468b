//! Reading the Dockerfile and making the build plan: shared by `build`, `check` and `explain`.

use std::collections::BTreeMap;
use std::path::Path;

use super::Failure;
use crate::cli::PlanOptions;
use crate::dockerfile::Dockerfile;
use crate::graph::platform::host_platform;
use crate::graph::{platform_args, BuildPlan};
use crate::lint;
use rbuild_layers::Platform;

/// The plan for one target platform: the global scope (`TARGETPLATFORM`, …) differs per
/// platform, so the stages a target needs, their bases and platforms may too.
pub struct PlatformPlan {
    pub platform: Platform,
    pub plan: BuildPlan,
    /// The automatic platform ARGs of this target platform.
    pub platform_vars: BTreeMap<String, String>,
}

/// A parsed Dockerfile and its plans.
pub struct LoadedPlan {
    pub dockerfile: Dockerfile,
    pub source: String,
    /// One per target platform, in `--platform` order (never empty).
    pub plans: Vec<PlatformPlan>,
    /// `--build-arg` values that are set (a bare `K` with no such environment variable is
    /// dropped, as Docker does).
    pub build_args: BTreeMap<String, String>,
}

/// Reads and parses the Dockerfile and plans the build; every failure is a usage error (exit 2)
/// that names the file and line.
pub fn load_plan(opts: &PlanOptions) -> Result<LoadedPlan, Failure> {
    let path = &opts.dockerfile;
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Usage(format!("error: cannot read {}: {e}", path.display())))?;
    let source = String::from_utf8(bytes).map_err(|e| {
        Failure::Usage(format!(
            "error: {} is not valid UTF-8 (byte {}): save it as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let name = opts.dockerfile_shown();
    let dockerfile =
        crate::dockerfile::parse(&source).map_err(|e| Failure::Usage(e.render(&name, &source)))?;
    let build_args: BTreeMap<String, String> = opts
        .build_args
        .iter()
        .filter_map(|a| a.value.clone().map(|v| (a.key.clone(), v)))
        .collect();
    let plans = opts
        .platforms
        .iter()
        .map(|platform| {
            let platform_vars = platform_args(platform, &host_platform());
            let mut plan = BuildPlan::new(&dockerfile, &opts.targets, &build_args, &platform_vars)
                .map_err(|e| Failure::Usage(format!("error: {}", e.render(&name))))?;
            plan.apply_named_contexts(&opts.named_contexts);
            Ok(PlatformPlan {
                platform: platform.clone(),
                plan,
                platform_vars,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(LoadedPlan {
        dockerfile,
        source,
        plans,
        build_args,
    })
}

/// The Dockerfile's name in check output, as buildx shows it: the `-f` path as given, else
/// `Dockerfile` (the name of the file in the context).
pub fn check_file_name(given: Option<&Path>, opts: &PlanOptions) -> String {
    match given {
        Some(p) if p != Path::new("-") => p.display().to_string(),
        _ => opts
            .dockerfile
            .file_name()
            .filter(|_| !opts.stdin.as_ref().is_some_and(|s| s.dockerfile_is_stdin))
            .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned()),
    }
}

/// Runs the build checks (`crate::lint`) on a plan: every stage when `all_stages`
/// (`--call check` without `--target`, as BuildKit's lint), else the stages the targets need.
/// `skip`: paths the context scan leaves out (the store, outputs); `bases`: what the resolved
/// base images told (see `commands::bases`). An invalid check configuration is a usage error,
/// as BuildKit's "failed to parse check options" (see [`check_config`]).
#[allow(clippy::too_many_arguments)]
pub fn run_checks(
    dockerfile: &Dockerfile,
    plans: &[PlatformPlan],
    build_args: &BTreeMap<String, String>,
    opts: &PlanOptions,
    all_stages: bool,
    skip: &[std::path::PathBuf],
    bases: &lint::Bases,
) -> Result<lint::Report, Failure> {
    let build_arg_names: Vec<&str> = opts.build_args.iter().map(|a| a.key.as_str()).collect();
    let local = opts.context.is_dir() && opts.git_context.is_none();
    let input = lint::Input {
        dockerfile,
        plan: &plans[0].plan,
        build_args,
        build_arg_names,
        // The checks read the first target platform's plan (the rules do not depend on it).
        platform_vars: &plans[0].platform_vars,
        all_stages,
        context: local.then_some((opts.context.as_path(), opts.dockerfile.as_path())),
        skip,
        bases,
    };
    lint::run(&input).map_err(|e| config_failure(build_args, e))
}

/// Checks the build checks' configuration (`# check=`, `BUILDKIT_DOCKERFILE_CHECK`) before
/// anything is written: the checks themselves run once the bases are resolved.
pub fn check_config(
    dockerfile: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    lint::Config::for_build(
        dockerfile.directives.check.as_deref(),
        build_args.get(lint::CHECK_BUILD_ARG).map(String::as_str),
    )
    .map(drop)
    .map_err(|e| config_failure(build_args, e))
}

fn config_failure(build_args: &BTreeMap<String, String>, e: lint::ConfigError) -> Failure {
    let what = if build_args.contains_key(lint::CHECK_BUILD_ARG) {
        format!("failed to parse {}", lint::CHECK_BUILD_ARG)
    } else {
        "failed to parse check options".to_string()
    };
    Failure::Usage(format!("error: {what}: {e}"))
}

impl LoadedPlan {
    /// The first target platform's plan: the stages and targets, which every platform's plan
    /// names alike (targets are chosen by name or index).
    pub fn plan(&self) -> &BuildPlan {
        &self.plans[0].plan
    }
}
