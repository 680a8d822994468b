//! Phase 5 of a build, reporting: the build record each target leaves for cache-miss
//! explanations and `rbuild explain`, the summary, `--metadata-file`, and what stdout gets.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use rbuild_layers::atomic;

use super::inputs::Inputs;
use super::outputs::Exported;
use super::solve::{Session, Solved};
use crate::cli::values::ProgressMode;
use crate::commands::Failure;
use crate::export::push::Pushed;
use crate::export::BuiltImage;
use crate::progress::BuildSummary;
use crate::solver::record::{save_build, BuildRecord};

pub(super) fn report(
    inputs: &Inputs,
    session: &Session,
    solved: &Solved<'_>,
    exported: Exported,
    started: Instant,
    checks: &crate::lint::Report,
) -> Result<(), Failure> {
    let Exported {
        built,
        mut summaries,
        pushed,
    } = exported;
    let opts = &inputs.opts;
    // Remember this build for cache-miss explanations and `rbuild explain` (the steps of every
    // platform: their stage names say which, see `BuildRequest::show_platform`).
    for (summary, &t) in summaries.iter_mut().zip(&inputs.plan().targets) {
        let mut target_steps = Vec::new();
        for (p, s) in inputs.plans.iter().zip(&solved.platforms) {
            let needed = stages_needed_by(&p.plan, t);
            target_steps.extend(
                s.engine
                    .step_records()
                    .into_iter()
                    .filter(|s| needed.contains(&s.stage)),
            );
        }
        summary.steps_total = target_steps.len();
        summary.steps_cached = target_steps.iter().filter(|s| s.cached).count();
        let record = BuildRecord {
            version: 1,
            dockerfile: opts.plan.dockerfile.display().to_string(),
            target: summary.target.clone(),
            steps: target_steps,
        };
        if let Err(e) = save_build(&session.store, &record, &opts.plan.dockerfile) {
            session
                .progress
                .warn(format!("could not save the build record: {e}"));
        }
    }

    let summary = BuildSummary {
        targets: summaries,
        wall_time: started.elapsed(),
        imported_cache_steps: solved.imported_steps(),
        imported_cache_bytes: solved.fetcher.imported_bytes(),
    };
    if let Some(path) = &opts.metadata_file {
        let isolation = solved
            .platforms
            .iter()
            .find_map(|p| p.engine.isolation_choice());
        // The checks' warnings, under buildx's key and only when buildx would write them.
        let warnings = (crate::lint::report::metadata_warnings_enabled()
            && !checks.warnings.is_empty())
        .then(|| {
            crate::lint::report::metadata_warnings(checks, &inputs.check_file, &inputs.source)
        });
        write_metadata(
            path,
            &built,
            &opts.outputs,
            &pushed,
            &summary,
            isolation.as_ref(),
            warnings.as_ref(),
        )
        .map_err(Failure::Build)?;
    }
    if let Some(path) = &opts.iidfile {
        // One target (checked with the options): its image ID is its config's digest (its
        // index's, for several platforms, as buildx writes it).
        if let Some(b) = built.first() {
            let id = b.image_id().to_string();
            atomic::write(path, id.as_bytes(), IIDFILE_WRITE)
                .with_context(|| format!("writing --iidfile {}", path.display()))
                .map_err(Failure::Build)?;
        }
    }
    session.progress.summary(summary);
    // An output that went to standard output (`-o -`) owns it: the digests go to stderr, so
    // they never end up inside the tar the user is piping (buildx appends them to it).
    let mut out: Box<dyn Write> = if opts.outputs.iter().any(|o| o.kind.is_stdout()) {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    if opts.progress == ProgressMode::None {
        // buildx's `none`: not even the digests.
    } else if opts.progress == ProgressMode::Quiet {
        // buildx's `--quiet` prints the image ID (`getImageID`): the config's digest, the
        // index's for several platforms — what `--iidfile` holds.
        for b in &built {
            let _ = writeln!(out, "{}", b.image_id());
        }
    } else {
        for p in &pushed {
            let _ = writeln!(out, "pushed {}: digest: {}", p.reference, p.digest);
        }
    }
    Ok(())
}

fn stages_needed_by(plan: &crate::graph::BuildPlan, target: usize) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(plan.stages[i].depends_on());
        }
    }
    needed
}

/// `--metadata-file`: BuildKit's keys for one target; an object per target for several. The
/// build checks' warnings go in as buildx's `buildx.build.warnings` (with several targets, in
/// each target's object, as buildx bake writes them).
fn write_metadata(
    path: &Path,
    built: &[BuiltImage],
    outputs: &[crate::export::spec::OutputSpec],
    pushed: &[Pushed],
    summary: &BuildSummary,
    isolation: Option<&crate::executor::isolation::Choice>,
    warnings: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    let one = |b: &BuiltImage| {
        let pushed_refs: Vec<String> = pushed
            .iter()
            .filter(|p| p.target == b.target)
            // A push by digest names the digest already (`repository@digest`).
            .map(|p| match p.reference.digest() {
                Some(_) => p.reference.to_string(),
                None => format!("{}@{}", p.reference, p.digest),
            })
            .collect();
        // For several platforms BuildKit writes the index's digest and descriptor, and no
        // config digest (there is one per platform); with attestations the pushed index (an
        // index of the image manifests and their attestation manifests), as buildx reports it.
        let root = b.pushed_root();
        let mut v = serde_json::json!({
            "containerimage.digest": root.digest.to_string(),
            "containerimage.descriptor": root,
            "image.name": image_names(b, outputs).join(","),
        });
        if let Some(config) = b.config_digest() {
            v["containerimage.config.digest"] = serde_json::json!(config.to_string());
        }
        if !pushed_refs.is_empty() {
            v["rbuild.pushed"] = serde_json::json!(pushed_refs);
        }
        // Build-wide: what came from `--cache-from`.
        v["rbuild.cache.imported.steps"] = serde_json::json!(summary.imported_cache_steps);
        v["rbuild.cache.imported.bytes"] = serde_json::json!(summary.imported_cache_bytes);
        // The sandbox the RUN steps ran in (`--isolation`): `none` when no RUN ran.
        let (mode, reason) = match isolation {
            Some(c) => (c.mode.as_str(), c.reason.as_str()),
            None => ("none", "no RUN step ran"),
        };
        v["rbuild.isolation"] = serde_json::json!(mode);
        v["rbuild.isolation.reason"] = serde_json::json!(reason);
        if let Some(w) = warnings {
            v["buildx.build.warnings"] = w.clone();
        }
        v
    };
    let doc = if built.len() == 1 {
        one(&built[0])
    } else {
        let m: BTreeMap<String, serde_json::Value> =
            built.iter().map(|b| (b.target.clone(), one(b))).collect();
        serde_json::to_value(m)?
    };
    let bytes = serde_json::to_vec_pretty(&doc)?;
    atomic::write(path, &bytes, METADATA_WRITE)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// BuildKit's `image.name`: the image's names (`--tag`, and `name=` of its image outputs), each
/// once; with `name-canonical=true` on an output, its names as `repository@digest` too.
fn image_names(b: &BuiltImage, outputs: &[crate::export::spec::OutputSpec]) -> Vec<String> {
    use crate::export::spec::OutputKind;
    let mut names: Vec<String> = b.names.iter().map(|n| n.to_string()).collect();
    let mut add = |n: String| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    for o in outputs {
        for n in &o.names {
            add(n.to_string());
        }
        if let OutputKind::Registry {
            name_canonical: true,
            ..
        } = o.kind
        {
            for n in &o.names {
                let base = format!("{}/{}", n.registry(), n.repository());
                add(format!("{base}@{}", b.pushed_root().digest));
            }
        }
    }
    names
}

/// How `--iidfile` is written: as `std::fs::write` would (buildx's 0644 under the usual umask),
/// replaced whole, the directory not fsynced.
const IIDFILE_WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Umask)
    .prefix(".tmp")
    .without_dir_sync();

/// How `--metadata-file` is replaced: mode 0600, `.tmp` temps beside it, the directory not
/// fsynced (the file describes this build only; a crash loses the build as well).
const METADATA_WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Private)
    .prefix(".tmp")
    .without_dir_sync();
