//! Directory named contexts (`--build-context NAME=DIR`, a git checkout or a download, see
//! `graph::named`) in the engine, as BuildKit uses an `llb.Local` state for one:
//!
//! - `COPY --from=NAME` and `RUN --mount=from=NAME` read the directory as they read the build
//!   context ([`context`]): scanned once per build, filtered by its own `.dockerignore` (a local
//!   directory only), keyed by the content digests of what they select, never by mtimes;
//! - `FROM NAME` ([`base_image`]) starts from the directory's files as one layer, with the
//!   config of an empty image on the stage's platform (BuildKit's `emptyImage`: default `PATH`,
//!   `WorkingDir /`) and no `base.name` (no image was read). The layer is written as `COPY . /`
//!   from the build context would write it (owners 0:0, the build's epoch as mtimes), and kept
//!   in the store under a key made of the directory's content digest, so an unchanged directory
//!   gives the same layer whatever its mtimes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rbuild_layers::image::config::{History, ImageConfig};
use rbuild_layers::tar::LayerOptions;
use rbuild_layers::{Descriptor, Platform};

use super::base::BaseImage;
use super::copy::{self, CopyEnv, Source};
use super::key::KeyInputs;
use super::lazy_rootfs::LazyRootFs;
use super::record::{self, StepResult};
use super::{BuildError, Engine, LayerRef};
use crate::context::{Context, ContextError, IgnoreRules};
use crate::dockerfile::CopyInstruction;

/// The scanned directory contexts of one engine, by directory.
#[derive(Default)]
pub struct Scans(Mutex<BTreeMap<std::path::PathBuf, Arc<Context>>>);

/// The directory context a plan image name stands for (`None`: it names an image), scanned.
pub fn context(engine: &Engine<'_>, image: &str) -> Option<Result<Arc<Context>, BuildError>> {
    let (dir, dockerignore, name) = engine.plan.named.dir(image)?;
    Some(
        scan(engine, dir, dockerignore).map_err(|source| BuildError::NamedContext {
            name: name.to_string(),
            source: Arc::new(source),
        }),
    )
}

fn scan(engine: &Engine<'_>, dir: &Path, dockerignore: bool) -> Result<Arc<Context>, ContextError> {
    let mut scans = engine
        .named_scans
        .0
        .lock()
        .expect("named scans lock poisoned");
    if let Some(c) = scans.get(dir) {
        return Ok(c.clone());
    }
    let rules = if dockerignore {
        ignore_rules(dir)?
    } else {
        IgnoreRules::empty()
    };
    let statcache = engine.store.statcache_dir();
    let ctx = Arc::new(Context::scan(dir, &rules, Some(statcache.as_path()))?);
    scans.insert(dir.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// `DIR/.dockerignore`, as BuildKit reads a named local context's (`DefaultDockerignoreName`
/// at its root; no `NAME.dockerignore`).
fn ignore_rules(dir: &Path) -> Result<IgnoreRules, ContextError> {
    let path = dir.join(".dockerignore");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| ContextError::IgnoreNotUtf8 { path: path.clone() })?;
            IgnoreRules::parse(&text, &path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IgnoreRules::empty()),
        Err(source) => Err(ContextError::ReadIgnore { path, source }),
    }
}

/// `FROM NAME` for a directory context: `None` when `image` names an image.
pub fn base_image(
    engine: &Engine<'_>,
    image: &str,
    platform: &Platform,
) -> Option<Result<BaseImage, BuildError>> {
    let ctx = match context(engine, image)? {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    Some(layer_of(engine, image, &ctx, platform))
}

fn layer_of(
    engine: &Engine<'_>,
    image: &str,
    ctx: &Context,
    platform: &Platform,
) -> Result<BaseImage, BuildError> {
    let opts = engine.opts;
    let env = CopyEnv {
        workdir: "/",
        epoch: opts.epoch,
        normalize_modes: false,
        is_add: false,
        layer_options: LayerOptions {
            compression: opts.compression,
            level: opts.compression_level,
            source_date_epoch: Some(opts.epoch),
            threads: None,
        },
    };
    let all = CopyInstruction {
        sources: vec![".".into()],
        dest: "/".into(),
        heredocs: Vec::new(),
        from: None,
        chown: None,
        chmod: None,
        link: true,
        exclude: Vec::new(),
        parents: false,
        checksum: None,
        keep_git_dir: false,
    };
    let scratch = engine.scratch_dir("namedctx")?;
    let prepared = copy::prepare(
        &all,
        &Source::Context(ctx),
        &env,
        scratch.path(),
        &|_, _| {},
    )?;
    let platform_s = crate::graph::platform::platform_string(platform);
    let mut inputs = KeyInputs::new("context", None, image.to_string(), platform_s)
        .input("content", prepared.selection_digest.to_string())
        .input("compression", format!("{:?}", opts.compression));
    if opts.epoch_in_key {
        inputs = inputs.input("epoch", opts.epoch.to_string());
    }
    let key = inputs.key();
    let layer = match record::lookup(engine.store, &key) {
        Some(r) => r.layer,
        None => {
            let entries =
                copy::entries(&prepared, &all, &env, &LazyRootFs::empty(), scratch.path())?;
            let layer = if entries.is_empty() {
                None
            } else {
                let info =
                    rbuild_layers::tar::write_layer(engine.store, entries, &env.layer_options)?;
                let mut d =
                    Descriptor::new(info.media_type.clone(), info.digest.clone(), info.size);
                d.annotations.clear();
                Some(LayerRef {
                    descriptor: d,
                    diff_id: info.diff_id,
                    deferred: false,
                    key_only: false,
                })
            };
            record::save(engine.store, &key, &StepResult::new(layer.clone()))?;
            layer
        }
    };
    let mut config = ImageConfig::new(platform.os.clone(), platform.architecture.clone());
    config.variant = platform.variant.clone();
    config.config_mut().working_dir = Some("/".into());
    // BuildKit's exporter gives a layer without a history entry one of its own (appended;
    // first here, where the layer is).
    if let Some(l) = &layer {
        config.rootfs.diff_ids.push(l.diff_id.clone());
        config.history.push(History {
            created_by: Some(format!("{image} load from client")),
            comment: Some("buildkit.exporter.image.v0".into()),
            ..History::default()
        });
    }
    Ok(BaseImage {
        name: image.to_string(),
        manifest_digest: key,
        config,
        layers: layer.into_iter().collect(),
    })
}

/// The directory context a `--from=NAME` value reads (of `COPY` or `RUN --mount`), from stage
/// `current`: `None` when it names a stage of the Dockerfile or an image.
pub fn context_for_from(
    engine: &Engine<'_>,
    name: &str,
    current: usize,
) -> Option<Result<Arc<Context>, BuildError>> {
    if engine.plan.stage_ref(name, current).is_some() {
        return None;
    }
    context(engine, &engine.plan.image_for_from(name, current))
}
