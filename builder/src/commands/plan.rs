//! Reading the Dockerfile and making the build plan: shared by `build`, `check` and `explain`.

use std::collections::BTreeMap;

use super::Failure;
use crate::cli::PlanOptions;
use crate::dockerfile::lint::secrets_in_args_or_env;
use crate::dockerfile::Dockerfile;
use crate::graph::platform::host_platform;
use crate::graph::{platform_args, BuildPlan};
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
    /// Build-check warnings (`SecretsUsedInArgOrEnv`), ready to print: `build` and `check`
    /// both show them.
    pub warnings: Vec<String>,
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
    let file = path
        .file_name()
        .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
    let warnings = secrets_in_args_or_env(&dockerfile, build_args.keys().map(String::as_str))
        .iter()
        .map(|w| w.render(&file))
        .collect();
    Ok(LoadedPlan {
        dockerfile,
        source,
        plans,
        build_args,
        warnings,
    })
}

impl LoadedPlan {
    /// The first target platform's plan: the stages and targets, which every platform's plan
    /// names alike (targets are chosen by name or index).
    pub fn plan(&self) -> &BuildPlan {
        &self.plans[0].plan
    }
}
