//! The build checks of a build (`crate::lint`), run once its base images are resolved, as
//! BuildKit runs them while its frontend resolves every reachable `FROM`: a stage's
//! variables include its image's ENV, and a base pulled for another platform is reported.
//! The resolved bases go on to the engines (`solver::early_bases`).

use rbuild_layers::store::Store;
use rbuild_registry::Registries;

use super::inputs::Inputs;
use crate::commands::bases;
use crate::commands::plan::run_checks;
use crate::commands::Failure;
use crate::lint::Report;
use crate::progress::Progress;
use crate::solver::early_bases::EarlyBases;

/// Resolves the bases of the stages the checks look at (see `Inputs::checks_every_stage`),
/// side by side.
pub(super) fn resolve_bases(inputs: &Inputs, store: &Store, registries: &Registries) -> EarlyBases {
    let wanted = bases::wanted(&inputs.plans, inputs.checks_every_stage());
    EarlyBases::resolve_all(
        store,
        registries,
        &wanted,
        &inputs.opts.workdir,
        inputs.opts.pull,
    )
}

/// Runs the checks with what the resolved `early` bases tell.
pub(super) fn run(inputs: &Inputs, early: &EarlyBases) -> Result<Report, Failure> {
    let every = inputs.checks_every_stage();
    let facts = bases::facts(
        &inputs.df,
        &inputs.plans,
        early,
        every,
        inputs.opts.plan.platforms_given,
    );
    run_checks(
        &inputs.df,
        &inputs.plans,
        &inputs.build_args,
        &inputs.opts.plan,
        every,
        &super::plan::context_skip(&inputs.opts),
        &facts,
    )
}

/// Shows the warnings in the progress output.
pub(super) fn show(report: &Report, progress: &Progress) {
    for w in &report.warnings {
        progress.warn(w.short());
    }
}

/// `--call check`: opens the store and the registries for the bases (nothing is built), runs
/// the checks and says on standard error which bases could not be resolved (the checks of
/// their stages then do not know the image's ENV or platform).
pub(super) fn for_call(inputs: &Inputs) -> Result<Report, Failure> {
    let store = Store::open(&inputs.opts.store)
        .map_err(|e| anyhow::anyhow!("opening the store {}: {e}", inputs.opts.store.display()))
        .map_err(Failure::Build)?;
    let registries = Registries::new(inputs.registry.clone());
    let early = bases::resolve_for_check(
        &store,
        &registries,
        &inputs.plans,
        inputs.checks_every_stage(),
        &inputs.opts.workdir,
        inputs.opts.pull,
    );
    run(inputs, &early)
}
