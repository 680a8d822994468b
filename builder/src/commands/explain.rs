//! `rbuild explain`: the last build of a Dockerfile and target, step by step, with the reason
//! each step that was not cached missed.

use std::io::Write;

use anyhow::Context as _;
use rbuild_layers::store::Store;

use super::Failure;
use crate::cli::args::ExplainArgs;
use crate::cli::options::store_dir;
use crate::cli::PlanOptions;
use crate::solver::record::load_build;

use super::plan::load_plan;

pub fn run(a: &ExplainArgs) -> Result<(), Failure> {
    let opts = PlanOptions::from_args(&a.plan, a.store.store.as_deref())?;
    let loaded = load_plan(&opts)?;
    let dir = store_dir(a.store.store.as_deref())?;
    let store = Store::open(&dir)
        .with_context(|| format!("opening the store {}", dir.display()))
        .map_err(Failure::Build)?;
    let mut out = String::new();
    for &t in &loaded.plan().targets {
        let target = loaded.plan().stages[t].display_name();
        match load_build(&store, &opts.dockerfile, &target) {
            None => out.push_str(&format!(
                "{target}: no build of {} for this target is recorded in {}\n",
                opts.dockerfile.display(),
                dir.display()
            )),
            Some(rec) => {
                let cached = rec.steps.iter().filter(|s| s.cached).count();
                out.push_str(&format!(
                    "{target}: {cached}/{} steps cached in the last build\n",
                    rec.steps.len()
                ));
                for s in &rec.steps {
                    let status = if s.cached { "CACHED" } else { "built " };
                    out.push_str(&format!(
                        "  {status} [{} {}] {}",
                        s.stage_name,
                        s.index + 1,
                        s.name
                    ));
                    if let Some(r) = &s.miss_reason {
                        out.push_str(&format!(": {r}"));
                    } else if !s.cached && s.inputs.op != "from" {
                        out.push_str(": no earlier build of this step was recorded");
                    }
                    out.push('\n');
                }
            }
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}
