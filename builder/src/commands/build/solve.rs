//! Phase 3 of a build, solving: opens the store and the progress output, wires the engine's
//! seams (lazy layer fetches, `--cache-from` records, uploads ahead of a push) and runs an
//! engine per target platform — side by side when the CPU allows, sharing the steps they have
//! in common — each once more without the imported cache if that cache named something it
//! could not deliver.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use rbuild_layers::store::Store;
use rbuild_registry::Registries;

use super::inputs::Inputs;
use super::plan::Planned;
use crate::cli::output::OutputKind;
use crate::cli::values::ProgressMode;
use crate::commands::Failure;
use crate::errors::error_chain;
use crate::export::ahead::UploadAhead;
use crate::lazy_pull::LayerFetcher;
use crate::progress::{self, Progress};
use crate::remote_cache::import::ImportedCaches;
use crate::solver::early_bases::EarlyBases;
use crate::solver::inputs::{SecretSource, SecretSpec};
use crate::solver::shared::Shared;
use crate::solver::{BuildError, Engine, Seams, StageState};

/// The store, progress output and registry clients of one build.
pub(super) struct Session {
    pub store: Store,
    pub progress: Progress,
    pub registries: Arc<Registries>,
}

/// Opens the store, the progress output and the registry clients, and shows the notes
/// gathered so far.
pub(super) fn open(inputs: &Inputs, planned: &Planned) -> Result<Session, Failure> {
    let opts = &inputs.opts;
    let store = Store::open(&opts.store)
        .with_context(|| format!("opening the store {}", opts.store.display()))
        .map_err(Failure::Build)?;
    let mode = match opts.progress {
        ProgressMode::Plain | ProgressMode::Auto => progress::Mode::Plain,
        ProgressMode::Tty => progress::Mode::Tty,
        ProgressMode::Json => progress::Mode::Json,
        ProgressMode::Rawjson => progress::Mode::RawJson,
        ProgressMode::Quiet => progress::Mode::Quiet,
        ProgressMode::None => progress::Mode::None,
    };
    // Secret values are masked in every line of output (they are read again, onto a tmpfs,
    // only by the sandbox that mounts them).
    let progress = progress::renderer(mode, Box::new(std::io::stderr()))
        .with_masks(secret_values(&opts.secrets));
    note_skipped_in_context(inputs, &planned.requests[0].context_skip, &progress);
    for n in &inputs.notes {
        progress.warn(n.clone());
    }
    for unused in &inputs.plan().unused_build_args {
        progress.warn(format!(
            "build-arg {unused} was given but no ARG in the Dockerfile declares it"
        ));
    }
    let registries = Arc::new(Registries::new(inputs.registry.clone()));
    Ok(Session {
        store,
        progress,
        registries,
    })
}

/// One platform's engine after a successful run.
pub(super) struct PlatformSolved<'a> {
    pub engine: Engine<'a>,
    pub states: BTreeMap<usize, Arc<StageState>>,
    /// The imported caches the successful run used (none after a retry without them).
    pub imports: Arc<ImportedCaches>,
}

/// Every platform's engine after a successful run, and the seams they ran with.
pub(super) struct Solved<'a> {
    /// One per target platform, in `Inputs::plans` order.
    pub platforms: Vec<PlatformSolved<'a>>,
    pub fetcher: Arc<LayerFetcher>,
    pub ahead: Arc<UploadAhead>,
}

impl Solved<'_> {
    /// The first platform's run (a single-platform build's only one).
    pub fn first(&self) -> &PlatformSolved<'_> {
        &self.platforms[0]
    }

    /// Steps taken from imported caches, over every platform (the platforms share one set of
    /// imported caches unless one had to build again without them).
    pub fn imported_steps(&self) -> usize {
        let mut seen: Vec<*const ImportedCaches> = Vec::new();
        let mut steps = 0;
        for p in &self.platforms {
            let ptr = Arc::as_ptr(&p.imports);
            if !seen.contains(&ptr) {
                seen.push(ptr);
                steps += p.imports.steps();
            }
        }
        steps
    }
}

/// What the platforms of a build share while they are solved.
struct Common {
    registries: Arc<Registries>,
    fetcher: Arc<LayerFetcher>,
    ahead: Arc<UploadAhead>,
    imports: Arc<ImportedCaches>,
    shared: Arc<Shared>,
    /// Outputs other than a registry need every layer's bytes here.
    outputs_need_bytes: bool,
}

pub(super) fn solve<'a>(
    inputs: &'a Inputs,
    planned: &'a Planned,
    session: &'a Session,
    bases: EarlyBases,
) -> Result<Solved<'a>, Failure> {
    let opts = &inputs.opts;
    let progress = &session.progress;
    let registries = session.registries.clone();
    let fetcher = Arc::new(LayerFetcher::new(registries.clone()));
    // `RBUILD_UPLOAD_AHEAD=0` turns this off (for a proxy that mishandles chunked uploads, or
    // to compare): the push then uploads every new layer after the build.
    let ahead = Arc::new(
        if std::env::var("RBUILD_UPLOAD_AHEAD").as_deref() == Ok("0") {
            UploadAhead::none(registries.clone())
        } else {
            UploadAhead::new(registries.clone(), planned.upload_ahead.clone())
        },
    );
    let imports = Arc::new(if opts.cache_from.is_empty() {
        ImportedCaches::none()
    } else {
        ImportedCaches::load_in_background(
            opts.cache_from.clone(),
            opts.plan.platforms.clone(),
            fetcher.clone(),
            progress.clone(),
        )
    });
    let common = Common {
        registries,
        fetcher: fetcher.clone(),
        ahead: ahead.clone(),
        imports,
        shared: Arc::new(Shared::with_bases(bases)),
        outputs_need_bytes: opts
            .outputs
            .iter()
            .any(|o| !matches!(o.kind, OutputKind::Registry { .. })),
    };
    let one = |i: usize| solve_platform(inputs, planned, session, &common, i);
    // The platforms build side by side when the CPU allows (steps they share are built once,
    // see `solver::shared`); `--isolation in-place` has one container root, so one at a time.
    let side_by_side = inputs.multi_platform()
        && opts.isolation != crate::executor::isolation::Isolation::InPlace
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let results: Vec<Result<PlatformSolved<'a>, Failure>> = if side_by_side {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..inputs.plans.len())
                .map(|i| s.spawn(move || one(i)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Failure::Build(anyhow::anyhow!(
                            "a platform's build panicked"
                        )))
                    })
                })
                .collect()
        })
    } else {
        let mut out = Vec::new();
        for i in 0..inputs.plans.len() {
            let r = one(i);
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    };
    // A platform that stopped because another failed is not what the user needs to read.
    let cancelled = |r: &Result<PlatformSolved<'a>, Failure>| match r {
        Err(Failure::Build(e)) => e
            .downcast_ref::<BuildError>()
            .is_some_and(BuildError::is_cancelled),
        _ => false,
    };
    let mut results = results;
    if let Some(i) = results.iter().position(|r| r.is_err() && !cancelled(r)) {
        results.swap_remove(i)?;
    }
    let platforms = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Solved {
        platforms,
        fetcher,
        ahead,
    })
}

/// Runs platform `i`'s engine — once more without the imported cache if that cache named
/// something it could not deliver.
fn solve_platform<'a>(
    inputs: &'a Inputs,
    planned: &'a Planned,
    session: &'a Session,
    common: &Common,
    i: usize,
) -> Result<PlatformSolved<'a>, Failure> {
    let progress = &session.progress;
    let plan = &inputs.plans[i].plan;
    let mut imports = common.imports.clone();
    // Set once a round needed a layer the imported caches have by key only (at most one more
    // round follows, taking no such step).
    let mut key_only_refused = false;
    loop {
        let seams = Seams {
            registries: common.registries.clone(),
            layers: common.fetcher.clone(),
            imported: imports.clone(),
            uploads: common.ahead.clone(),
            shared: common.shared.clone(),
        };
        let engine = Engine::new(
            &session.store,
            &inputs.df,
            plan,
            &planned.requests[i],
            progress.clone(),
            seams,
        )
        .map_err(|e| Failure::Build(anyhow::Error::new(e)))?;
        let built = engine.run().and_then(|states| {
            // An image is made of real layers: one its target took from a cache by key only
            // sends the build round again, building that step.
            let key_only = plan
                .targets
                .iter()
                .filter_map(|t| states.get(t))
                .flat_map(|s| s.layers.iter())
                .find(|l| l.key_only);
            if let Some(l) = key_only {
                return Err(BuildError::KeyOnlyLayer {
                    diff_id: l.diff_id.clone(),
                });
            }
            if common.outputs_need_bytes {
                for t in &plan.targets {
                    if let Some(s) = states.get(t) {
                        engine.fetch_layers(&s.layers)?;
                    }
                }
            }
            Ok(states)
        });
        match built {
            Ok(states) => {
                return Ok(PlatformSolved {
                    engine,
                    states,
                    imports,
                })
            }
            // A step taken by key only had to be built after all (BuildKit's mode=min cache
            // has no layers for it either): again, building those steps; the store keeps what
            // the first round built.
            Err(e) if e.is_key_only_layer() && !key_only_refused => {
                progress.warn(format!(
                    "{}: building the steps the imported cache has by key only",
                    error_chain(&e)
                ));
                imports.refuse_key_only();
                key_only_refused = true;
            }
            // The imported cache named something it could not deliver: it never fails the
            // build or decides the image — build again without it.
            Err(e) if e.is_imported_cache_failure() && !imports.is_empty() => {
                progress.warn(format!(
                    "{}; building again without the imported cache",
                    error_chain(&e)
                ));
                imports = Arc::new(ImportedCaches::none());
            }
            Err(e) if e.is_dockerfile_error() => {
                return Err(Failure::Usage(format!("error: {}", error_chain(&e))))
            }
            Err(e) => return Err(Failure::Build(anyhow::Error::new(e))),
        }
    }
}

/// Says once which of `skip` lie inside the context, and so are left out of it.
fn note_skipped_in_context(inputs: &Inputs, skip: &[std::path::PathBuf], progress: &Progress) {
    let Ok(root) = std::fs::canonicalize(&inputs.opts.plan.context) else {
        return;
    };
    let inside: Vec<String> = skip
        .iter()
        .filter_map(|p| crate::context::scan::relative_inside(&root, p))
        .collect();
    if !inside.is_empty() {
        progress.warn(format!(
            "note: {} inside the build context: rbuild's store and outputs are left out of the context (never sent, hashed or copied), as if listed in .dockerignore",
            inside.join(", ")
        ));
    }
}

/// The values of the given secrets, for masking output; unreadable ones are skipped here (the
/// step that mounts one reports the error).
fn secret_values(secrets: &[SecretSpec]) -> Vec<Vec<u8>> {
    secrets
        .iter()
        .filter_map(|s| match &s.source {
            SecretSource::File(p) => std::fs::read(p).ok(),
            SecretSource::Env(v) => std::env::var_os(v)
                .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()),
        })
        .filter(|v| !v.is_empty())
        .collect()
}
