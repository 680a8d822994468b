//! `rbuild check`: parse and validate the Dockerfile, print the build plan and the build
//! checks' report (in buildx's `--call check` format), build nothing.
//!
//! Unlike `rbuild build --check` (which exits 1 when a check fires, as buildx does), `rbuild
//! check` exits 0 with warnings: it is the plan inspector, and a warning does not make the
//! plan wrong. It fails (exit 1) when `error=true` turns the warnings into an error, as a
//! build would.

use std::io::Write;

use super::Failure;
use crate::cli::args::CheckArgs;
use crate::cli::PlanOptions;
use crate::graph::Base;

use super::plan::{check_file_name, load_plan, run_checks, LoadedPlan};
use crate::lint;

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
    let report = run_checks(&loaded, &opts, opts.targets.is_empty(), &skip)?;
    let LoadedPlan {
        dockerfile,
        plan,
        source,
        ..
    } = &loaded;
    let mut out = String::new();
    out.push_str(&format!("Dockerfile: {}\n", opts.dockerfile_shown()));
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
        out.push_str(&format!(
            "  [{}] {} (FROM {base}) - {needed}\n",
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
