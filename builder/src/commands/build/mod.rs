//! `rbuild build` (the default command), in phases, each its own module: resolve the inputs
//! ([`inputs`]), plan ([`plan`]), resolve the bases and run the build checks ([`checks`]),
//! solve ([`solve`]), export ([`outputs`]) and report ([`report`]). Usage errors come from
//! the first two, before anything is written. `--call`/`--check` stop after the inputs
//! ([`call`]); under the build checks' `error=true`, a check that fired stops the build once
//! its warnings are shown.

mod attest;
mod call;
mod checks;
mod inputs;
mod outline;
mod outputs;
mod plan;
mod report;
mod solve;

use std::time::Instant;

use super::Failure;
use crate::cli::args::BuildArgs;

pub fn run(a: &BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let inputs = inputs::resolve(a)?;
    if let Some(call) = &inputs.call {
        return call::run(&inputs, call);
    }
    // A failed build leaves no image ID of an earlier one behind (as buildx).
    if let Some(p) = &inputs.opts.iidfile {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Failure::Build(anyhow::anyhow!(
                    "removing the old --iidfile {}: {e}",
                    p.display()
                )))
            }
            _ => {}
        }
    }
    let planned = plan::plan(&inputs)?;
    let session = solve::open(&inputs, &planned)?;
    let bases = checks::resolve_bases(&inputs, &session.store, &session.registries);
    let checks = checks::run(&inputs, &bases)?;
    checks::show(&checks, &session.progress);
    // `error=true`: the checks' warnings (just shown) fail the build before any step runs.
    if let Some(violation) = checks.violation() {
        return Err(Failure::Build(anyhow::anyhow!(violation)));
    }
    let solved = solve::solve(&inputs, &planned, &session, bases)?;
    let exported = outputs::export(&inputs, &planned, &session, &solved, started)?;
    report::report(&inputs, &session, &solved, exported, started, &checks)
}
