//! `rbuild build` (the default command): validate, plan, build, export, summarise.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use rbuild_layers::atomic;
use rbuild_layers::store::Store;
use rbuild_layers::Compression;

use super::Failure;
use crate::cache::blobs::{BlobFetcher, Registries};
use crate::cache::export::{cache_map, export_all, stages_for, ExportInput};
use crate::cache::import::ImportedCaches;
use crate::cli::args::BuildArgs;
use crate::cli::cache_spec::{CacheExportTarget, CacheMode};
use crate::cli::output::OutputKind;
use crate::cli::values::ProgressMode;
use crate::cli::BuildOptions;
use crate::errors::error_chain;
use crate::export::ahead::{stage_destinations, UploadAhead};
use crate::export::push::destinations;
use crate::export::tags::{default_repository, names_for_target, TagSpec};
use crate::export::{assemble, image_annotations, write_outputs, BuiltImage};
use crate::progress::{self, BuildSummary, TargetSummary};
use crate::solver::record::{save_build, BuildRecord};
use crate::solver::{Engine, EngineOptions};

use super::plan::{load_plan, LoadedPlan};

/// Refuses, before any work, what this version cannot do, so nothing is half-built.
fn check_supported(opts: &BuildOptions) -> Result<(), Failure> {
    if opts
        .outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Registry { .. }) && o.names.is_empty())
    {
        return Err(Failure::Usage(
            "error: --output type=registry needs name=REGISTRY/REPOSITORY[:TAG]".into(),
        ));
    }
    let inline = opts
        .cache_to
        .iter()
        .any(|c| c.target == CacheExportTarget::Inline);
    let pushes = opts.push
        || opts
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Registry { .. }));
    if inline && !pushes {
        // BuildKit silently exports nothing here; saying so is kinder.
        return Err(Failure::Usage(
            "error: --cache-to type=inline puts the cache in the pushed image's config: add --push (or --output type=registry,name=…)".into(),
        ));
    }
    Ok(())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn run(a: &BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let opts = BuildOptions::from_args(a)?;
    check_supported(&opts)?;
    let registry_opts = crate::cli::registry::registry_options(&a.registry)?;
    let tag_specs = a
        .tags
        .iter()
        .map(|t| {
            TagSpec::parse(t)
                .map_err(|e| Failure::Usage(format!("error: invalid --tag {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The default name (`<dir>:<commit>`) would go to Docker Hub; pushing needs a chosen name.
    if opts.push && tag_specs.is_empty() {
        return Err(Failure::Usage(
            "error: --push pushes the --tag names; give --tag REGISTRY/REPOSITORY[:TAG]".into(),
        ));
    }
    let LoadedPlan {
        dockerfile: df,
        plan,
        build_args,
        platform_vars,
        warnings,
        ..
    } = load_plan(&opts.plan)?;

    // A build that talks to a registry needs the system's TLS roots before its first request:
    // read them meanwhile (the git metadata below is a subprocess).
    let uses_registry = opts.push
        || !opts.cache_from.is_empty()
        || opts
            .cache_to
            .iter()
            .any(|c| matches!(c.target, CacheExportTarget::Registry(_)))
        || opts
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Registry { .. }))
        || plan.stages.iter().any(|s| {
            matches!(&s.base, crate::graph::Base::Image(n) if !n.starts_with("oci-layout://"))
                || !s.read_images.is_empty()
        });
    if uses_registry {
        rbuild_registry::client::transport::preload_system_roots();
    }
    let git = crate::git::git_info(&opts.plan.context)
        .map_err(|e| Failure::Usage(format!("error: reading git metadata: {e}")))?;
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let epoch = crate::git::build_epoch(sde.as_deref(), git.as_ref(), now_unix())
        .map_err(|e| Failure::Usage(format!("error: {e}")))?;

    let compression = opts
        .outputs
        .first()
        .map_or(Compression::Gzip, |o| o.compression);
    let compression_level = opts.outputs.first().and_then(|o| o.compression_level);
    let no_cache_stages = opts
        .no_cache_filter
        .iter()
        .map(|given| {
            // A stage's name, the `stage-N` rbuild shows for an unnamed one, or its index.
            let name = given.to_ascii_lowercase();
            plan.stages
                .iter()
                .find(|s| {
                    s.name.as_deref() == Some(name.as_str())
                        || s.display_name() == name
                        || s.index.to_string() == name
                })
                .map(|s| s.index)
                .ok_or_else(|| {
                    let stages: Vec<String> =
                        plan.stages.iter().map(|s| s.display_name()).collect();
                    Failure::Usage(format!(
                        "error: --no-cache-filter {given}: no such stage (stages: {})",
                        stages.join(", ")
                    ))
                })
        })
        .collect::<Result<BTreeSet<usize>, Failure>>()?;
    let engine_opts = EngineOptions {
        registry: registry_opts.clone(),
        platform: opts.plan.platform.clone(),
        platform_vars,
        build_args,
        no_cache: opts.no_cache,
        no_cache_stages,
        epoch,
        epoch_in_key: sde.as_deref().is_some_and(|v| !v.is_empty()),
        default_network: match opts.network {
            crate::cli::values::NetworkMode::None => crate::dockerfile::NetworkMode::None,
            crate::cli::values::NetworkMode::Host => crate::dockerfile::NetworkMode::Host,
            crate::cli::values::NetworkMode::Default => crate::dockerfile::NetworkMode::Default,
        },
        compression,
        compression_level,
        normalize_modes: git.is_some(),
        secrets: opts.secrets.clone(),
        ssh: opts.ssh.clone(),
        workdir: opts.workdir.clone(),
        context_skip: context_skip(&opts),
    };

    let store = Store::open(&opts.store)
        .with_context(|| format!("opening the store {}", opts.store.display()))
        .map_err(Failure::Build)?;
    let mode = match opts.progress {
        ProgressMode::Plain | ProgressMode::Auto => progress::Mode::Plain,
        ProgressMode::Tty => progress::Mode::Tty,
        ProgressMode::Json => progress::Mode::Json,
        ProgressMode::Quiet => progress::Mode::Quiet,
    };
    // Secret values are masked in every line of output (they are read again, onto a tmpfs,
    // only by the sandbox that mounts them).
    let progress = progress::renderer(mode, Box::new(std::io::stderr()))
        .with_masks(secret_values(&opts.secrets));
    note_skipped_in_context(&opts, &engine_opts.context_skip, &progress);
    for w in warnings {
        progress.warn(w);
    }
    for unused in &plan.unused_build_args {
        progress.warn(format!(
            "build-arg {unused} was given but no ARG in the Dockerfile declares it"
        ));
    }

    let registries = Arc::new(Registries::new(registry_opts.clone()));
    let fetcher = Arc::new(BlobFetcher::new(registries.clone()));

    // Each target's names, known before building: layers of pushed images are streamed to
    // their first repository while they are written (see `export::ahead`).
    let repo = default_repository(&repo_dir_name(&opts.plan.context, git.as_ref()));
    let default_tag = git.as_ref().map(crate::git::default_tag);
    let multiple = plan.targets.len() > 1;
    let mut target_names = BTreeMap::new();
    for &t in &plan.targets {
        let target = plan.stages[t].display_name();
        let names = names_for_target(&target, multiple, &tag_specs, &repo, default_tag.as_deref())
            .map_err(|e| Failure::Usage(format!("error: --tag: {e}")))?;
        target_names.insert(t, names);
    }
    let pushed_targets: Vec<(usize, (String, String))> = plan
        .targets
        .iter()
        .filter_map(|t| {
            let names = target_names.get(t)?;
            let first = destinations(names, opts.push, &opts.outputs)
                .into_keys()
                .next()?;
            Some((*t, first))
        })
        .collect();
    // `RBUILD_UPLOAD_AHEAD=0` turns this off (for a proxy that mishandles chunked uploads, or
    // to compare): the push then uploads every new layer after the build.
    let ahead = Arc::new(
        if std::env::var("RBUILD_UPLOAD_AHEAD").as_deref() == Ok("0") {
            UploadAhead::none(registries.clone())
        } else {
            UploadAhead::new(
                registries.clone(),
                stage_destinations(&plan, &pushed_targets),
            )
        },
    );
    let mut imports = if opts.cache_from.is_empty() {
        ImportedCaches::none()
    } else {
        ImportedCaches::load_in_background(
            opts.cache_from.clone(),
            opts.plan.platform.clone(),
            registries.clone(),
            progress.clone(),
        )
    };
    // Outputs other than a registry need every layer's bytes here.
    let outputs_need_bytes = opts
        .outputs
        .iter()
        .any(|o| !matches!(o.kind, OutputKind::Registry { .. }));
    let (engine, states) = loop {
        let engine = Engine::new(
            &store,
            &df,
            &plan,
            &engine_opts,
            &opts.plan.context,
            &opts.plan.dockerfile,
            progress.clone(),
        )
        .map_err(|e| Failure::Build(anyhow::Error::new(e)))?
        .with_cache(fetcher.clone(), imports)
        .with_upload_ahead(ahead.clone());
        let built = engine.run().and_then(|states| {
            if outputs_need_bytes {
                for t in &plan.targets {
                    if let Some(s) = states.get(t) {
                        engine.fetch_layers(&s.layers)?;
                    }
                }
            }
            Ok(states)
        });
        match built {
            Ok(states) => break (engine, states),
            // The imported cache named something it could not deliver: it never fails the
            // build or decides the image — build again without it.
            Err(e) if e.is_imported_cache_failure() && !engine.imports.is_empty() => {
                progress.warn(format!(
                    "{}; building again without the imported cache",
                    error_chain(&e)
                ));
                imports = ImportedCaches::none();
            }
            Err(e) if e.is_dockerfile_error() => {
                return Err(Failure::Usage(format!("error: {}", error_chain(&e))))
            }
            Err(e) => return Err(Failure::Build(anyhow::Error::new(e))),
        }
    };
    let platform = crate::graph::platform::platform_string(&opts.plan.platform);
    let inline_cache = opts
        .cache_to
        .iter()
        .any(|c| c.target == CacheExportTarget::Inline);
    let built_stages: BTreeSet<usize> = states.keys().copied().collect();

    let mut built = Vec::new();
    let mut summaries = Vec::new();
    for &t in &plan.targets {
        let state = states
            .get(&t)
            .ok_or_else(|| Failure::Build(anyhow::anyhow!("target stage {t} was not built")))?;
        let target = plan.stages[t].display_name();
        let names = target_names.get(&t).cloned().unwrap_or_default();
        let annotations = image_annotations(state, git.as_ref(), epoch);
        let image = if inline_cache {
            // The image carries the cache map of its own steps (min mode), as BuildKit's
            // inline cache does.
            let stages = stages_for(&plan, &[t], CacheMode::Min, &built_stages);
            let map = cache_map(&engine.outcomes(), &stages, &platform, false);
            let mut with_cache = (**state).clone();
            map.embed_in(&mut with_cache.config);
            assemble(&store, &with_cache, annotations, epoch)
        } else {
            assemble(&store, state, annotations, epoch)
        }
        .map_err(|e| Failure::Build(e.into()))?;
        // Tags rbuild sets are marked as built here: FROM uses them without asking a registry.
        let mut local_desc = image.manifest_descriptor.clone();
        local_desc.annotations.insert(
            crate::solver::base::ORIGIN_ANNOTATION.to_string(),
            "build".to_string(),
        );
        for n in &names {
            store
                .set_ref(&n.to_string(), &local_desc)
                .with_context(|| format!("tagging {n} in the store"))
                .map_err(Failure::Build)?;
        }
        let size = image.manifest.layers.iter().map(|l| l.size).sum::<u64>()
            + image.config_descriptor.size
            + image.manifest_descriptor.size;
        summaries.push(TargetSummary {
            target: target.clone(),
            digest: image.manifest_descriptor.digest.to_string(),
            tags: names.iter().map(|n| n.familiar()).collect(),
            size,
            layers: image.manifest.layers.len(),
            steps_cached: 0,
            steps_total: 0,
        });
        built.push(BuiltImage {
            target,
            image,
            names,
        });
    }

    write_outputs(&store, &built, &opts.outputs).map_err(|e| Failure::Build(e.into()))?;
    // The layers streamed while building: the last ones may still be on their way.
    let ahead_report = ahead.finish(&store);
    // Pushing the images and exporting the cache run side by side, except when the cache goes
    // to a registry an image goes to and some new layer is not there yet (its upload ahead
    // failed): then the push goes first, so the export mounts that layer from the image's
    // repository instead of uploading it a second time.
    let push_hosts = crate::export::push::push_hosts(&built, opts.push, &opts.outputs);
    let push_first = !ahead_report.complete()
        && opts.cache_to.iter().any(|c| {
            matches!(&c.target, CacheExportTarget::Registry(r) if push_hosts.contains(r.registry()))
        });
    let export_input = ExportInput {
        store: &store,
        fetcher: &fetcher,
        imports: &engine.imports,
        plan: &plan,
        targets: &plan.targets,
        built: built_stages.clone(),
        outcomes: engine.outcomes(),
        platform: platform.clone(),
        progress: &progress,
    };
    let push = || {
        crate::export::push::push_images(
            &store,
            &built,
            opts.push,
            &opts.outputs,
            &fetcher,
            &ahead_report.sent,
            &progress,
        )
    };
    let (pushed, exported) = if push_first {
        let pushed = push();
        let exported = match &pushed {
            Ok(_) => export_all(&export_input, &opts.cache_to),
            Err(_) => Ok(()),
        };
        (pushed, exported)
    } else {
        std::thread::scope(|s| {
            let export = s.spawn(|| export_all(&export_input, &opts.cache_to));
            let pushed = push();
            (
                pushed,
                export.join().expect("the cache export thread panicked"),
            )
        })
    };
    let pushed = pushed.map_err(|e| Failure::Build(e.into()))?;
    exported.map_err(|e| Failure::Build(e.into()))?;

    // Remember this build for cache-miss explanations and `rbuild explain`.
    let steps = engine.step_records();
    for (summary, &t) in summaries.iter_mut().zip(&plan.targets) {
        let needed = stages_needed_by(&plan, t);
        let target_steps: Vec<_> = steps
            .iter()
            .filter(|s| needed.contains(&s.stage))
            .cloned()
            .collect();
        summary.steps_total = target_steps.len();
        summary.steps_cached = target_steps.iter().filter(|s| s.cached).count();
        let record = BuildRecord {
            version: 1,
            dockerfile: opts.plan.dockerfile.display().to_string(),
            target: summary.target.clone(),
            steps: target_steps,
        };
        if let Err(e) = save_build(&store, &record, &opts.plan.dockerfile) {
            progress.warn(format!("could not save the build record: {e}"));
        }
    }

    let summary = BuildSummary {
        targets: summaries,
        wall_time: started.elapsed(),
        imported_cache_steps: engine.imports.steps(),
        imported_cache_bytes: fetcher.imported_bytes(),
    };
    if let Some(path) = &opts.metadata_file {
        write_metadata(path, &built, &pushed, &summary).map_err(Failure::Build)?;
    }
    progress.summary(summary);
    if opts.progress != ProgressMode::Quiet {
        let mut out = std::io::stdout().lock();
        for p in &pushed {
            let _ = writeln!(out, "pushed {}: digest: {}", p.reference, p.digest);
        }
    }
    if opts.progress == ProgressMode::Quiet {
        let mut out = std::io::stdout().lock();
        for b in &built {
            let _ = writeln!(out, "{}", b.image.manifest_descriptor.digest);
        }
    }
    Ok(())
}

/// What rbuild itself writes during a build: the store, output destinations, local cache
/// exports and the metadata file. The context scan never reads these (see
/// `Context::scan_skipping`).
fn context_skip(opts: &BuildOptions) -> Vec<std::path::PathBuf> {
    let outputs = opts.outputs.iter().filter_map(|o| match &o.kind {
        OutputKind::Oci(d) | OutputKind::Docker(d) => match d {
            crate::cli::output::Destination::Directory(p)
            | crate::cli::output::Destination::Tarball(p) => Some(p.clone()),
            crate::cli::output::Destination::Stdout => None,
        },
        OutputKind::Local(p) => Some(p.clone()),
        OutputKind::Registry { .. } => None,
    });
    let caches = opts.cache_to.iter().filter_map(|c| match &c.target {
        CacheExportTarget::Local(p) => Some(p.clone()),
        _ => None,
    });
    std::iter::once(opts.store.clone())
        .chain(outputs)
        .chain(caches)
        .chain(opts.metadata_file.clone())
        .collect()
}

/// Says once which of `skip` lie inside the context, and so are left out of it.
fn note_skipped_in_context(
    opts: &BuildOptions,
    skip: &[std::path::PathBuf],
    progress: &progress::Progress,
) {
    let Ok(root) = std::fs::canonicalize(&opts.plan.context) else {
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

fn repo_dir_name(context: &Path, git: Option<&crate::git::GitInfo>) -> String {
    let dir = git
        .and_then(|g| g.toplevel.clone())
        .or_else(|| std::fs::canonicalize(context).ok())
        .unwrap_or_else(|| context.to_path_buf());
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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

/// `--metadata-file`: BuildKit's keys for one target; an object per target for several.
fn write_metadata(
    path: &Path,
    built: &[BuiltImage],
    pushed: &[crate::export::push::Pushed],
    summary: &BuildSummary,
) -> anyhow::Result<()> {
    let one = |b: &BuiltImage| {
        let pushed_refs: Vec<String> = pushed
            .iter()
            .filter(|p| p.target == b.target)
            .map(|p| format!("{}@{}", p.reference, p.digest))
            .collect();
        let mut v = serde_json::json!({
            "containerimage.digest": b.image.manifest_descriptor.digest.to_string(),
            "containerimage.config.digest": b.image.config_descriptor.digest.to_string(),
            "containerimage.descriptor": b.image.manifest_descriptor,
            "image.name": b.names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        });
        if !pushed_refs.is_empty() {
            v["rbuild.pushed"] = serde_json::json!(pushed_refs);
        }
        // Build-wide: what came from `--cache-from`.
        v["rbuild.cache.imported.steps"] = serde_json::json!(summary.imported_cache_steps);
        v["rbuild.cache.imported.bytes"] = serde_json::json!(summary.imported_cache_bytes);
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

/// How `--metadata-file` is replaced: mode 0600, `.tmp` temps beside it, the directory not
/// fsynced (the file describes this build only; a crash loses the build as well).
const METADATA_WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Private)
    .prefix(".tmp")
    .without_dir_sync();

/// The values of the given secrets, for masking output; unreadable ones are skipped here (the
/// step that mounts one reports the error).
fn secret_values(secrets: &[crate::cli::secret::SecretSpec]) -> Vec<Vec<u8>> {
    secrets
        .iter()
        .filter_map(|s| match &s.source {
            crate::cli::secret::SecretSource::File(p) => std::fs::read(p).ok(),
            crate::cli::secret::SecretSource::Env(v) => std::env::var_os(v)
                .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()),
        })
        .filter(|v| !v.is_empty())
        .collect()
}
