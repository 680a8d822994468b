//! `rbuild build` (the default command), in five phases, each its own module: resolve the
//! inputs ([`inputs`]), plan ([`plan`]), solve ([`solve`]), export ([`outputs`]) and report
//! ([`report`]). Usage errors come from the first two, before anything is written.

mod inputs;
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
    let planned = plan::plan(&inputs)?;
    let session = solve::open(&inputs, &planned)?;
    let solved = solve::solve(&inputs, &planned, &session)?;
    let exported = outputs::export(&inputs, &planned, &session, &solved)?;
    report::report(&inputs, &session, &solved, exported, started)
}
