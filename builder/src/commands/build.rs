//! `rbuild build` (the default command).

use crate::cli::args::BuildArgs;
use crate::cli::{BuildOptions, Failure};

pub fn run(a: &BuildArgs) -> Result<(), Failure> {
    let _opts = BuildOptions::from_args(a)?;
    Err(Failure::Build(anyhow::anyhow!(
        "building is not available in this revision of rbuild yet"
    )))
}
