//! Building one stage: resolve its base, run ONBUILD triggers, then replay its instructions
//! with BuildKit's variable scoping, hitting the cache wherever the key is unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use rbuild_layers::apply::{ApplyOptions, WhiteoutMode};
use rbuild_layers::image::config::{History, ImageConfig};
use rbuild_layers::snapshot::chain_id;
use rbuild_layers::tar::{EntryKind as LayerKind, LayerEntry, LayerOptions, PathIndex};
use rbuild_layers::Platform;
use rbuild_layers::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use super::base;
use super::copy::{self, CopyEnv, Source};
use super::explain;
use super::key::{self, KeyInputs};
use super::lazy_rootfs::{LazyRootFs, Lower};
use super::meta::{self, MetaState};
use super::record::{self, StepRecord, StepResult};
use super::rootfs::{components, RootFs};
use super::users::{resolve_owner, Owner};
use super::{BuildError, Engine};
use crate::dockerfile::expand::VarLookup;
use crate::dockerfile::limits::ScopeSize;
use crate::dockerfile::{CopyInstruction, Instruction};
use crate::graph::{is_proxy_arg, Base};

/// A layer of a stage: its blob descriptor and uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerRef {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// The blob is the plain tar of a layer whose compression was deferred (a stage no output
    /// contains, see [`super::lazy_blobs`]): whatever needs it compressed asks
    /// `lazy_blobs::compressed_layers`. False for every other layer, plain tars included.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    /// Known from an imported cache by its diffID only (see
    /// `rbuild_registry::cache_map::CacheMap::key_only`): the blob is nowhere, and whatever
    /// needs its bytes gets [`super::BuildError::KeyOnlyLayer`], upon which the build runs again
    /// building such steps. Never in a record of the store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_only: bool,
}

impl LayerRef {
    /// A layer whose blob is in its final form.
    pub fn new(descriptor: Descriptor, diff_id: Digest) -> LayerRef {
        LayerRef {
            descriptor,
            diff_id,
            deferred: false,
            key_only: false,
        }
    }
}

/// The base image a stage (ultimately) starts from, for the `base.name`/`base.digest`
/// annotations.
#[derive(Debug, Clone, Default)]
pub struct BaseInfo {
    pub name: Option<String>,
    pub digest: Option<Digest>,
}

/// A stage's state after some of its steps.
#[derive(Debug, Clone)]
pub struct StageState {
    pub index: usize,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
    /// The identity of the filesystem state: the base's digest chained with the diffID of
    /// every layer since (see `key::content_key`). A step's key names its parent by this, so a
    /// step that reruns and produces the same layer leaves later keys unchanged.
    pub key: Digest,
    /// ARG values in scope in this stage.
    pub args: BTreeMap<String, String>,
    pub base: BaseInfo,
    pub meta: MetaState,
}

/// Variables visible to expansion: ENV (from the config) wins over ARG of the same name.
struct StageVars<'a> {
    config: &'a ImageConfig,
    args: &'a BTreeMap<String, String>,
}

impl VarLookup for StageVars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.config
            .env_get(name)
            .or_else(|| self.args.get(name).map(String::as_str))
    }
}

fn rfc3339(epoch: i64) -> String {
    crate::progress::rfc3339(epoch, 0)
}

/// RFC 3339 time of a Unix timestamp, as written into configs and history.
pub fn created_time(epoch: i64) -> String {
    rfc3339(epoch)
}

const HISTORY_COMMENT: &str = "rbuild.dockerfile.v0";

/// The time of a history entry without a layer: the epoch; with a clock epoch none yet — the
/// image's time, known once the image is assembled (`export::image_time`), as in BuildKit.
fn empty_entry_time(opts: &super::BuildRequest) -> Option<String> {
    (!opts.clock_epoch).then(|| rfc3339(opts.epoch))
}

/// Layers smaller than this are written without a progress line.
const COMPRESS_PROGRESS_MIN_BYTES: u64 = 1 << 20;

/// Pull progress is reported every this many bytes.
const PULL_PROGRESS_EVERY: u64 = 4 << 20;

/// Selections smaller than this hash too fast to be worth a progress bar.
const HASH_PROGRESS_MIN_BYTES: u64 = 8 << 20;

fn history(created_by: String, epoch: i64) -> History {
    let mut h = History::new(created_by);
    h.created = Some(rfc3339(epoch));
    h.comment = Some(HISTORY_COMMENT.into());
    h
}

/// A stage's starting config with BuildKit's default `PATH` appended when its base has none
/// (BuildKit writes it into the image config, not only into RUN's environment).
fn with_default_path(mut config: ImageConfig) -> ImageConfig {
    if config.env_get("PATH").is_none() {
        config.env_set("PATH", crate::executor::DEFAULT_PATH);
    }
    config
}

fn is_op(ins: &Instruction) -> bool {
    matches!(
        ins,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

/// Per-stage bookkeeping while its steps run.
struct Runner<'e, 'a> {
    engine: &'e Engine<'a>,
    /// The stage's name in progress lines and build records.
    name: String,
    /// The stage's platform, when progress lines name it (a build for several platforms).
    platform: Option<Platform>,
    step_no: usize,
    steps_total: usize,
    first_miss: Option<String>,
    no_cache: bool,
}

impl Runner<'_, '_> {
    /// The stage's label for a step with `args` in scope: its name, after its platform in a
    /// build for several platforms — with BuildKit's `->arm64` when the step sees another
    /// target platform in its `TARGET*` ARGs (`dockerfile2llb` `prefixCommand`), so that the
    /// two platforms' steps of a `$BUILDPLATFORM` stage read apart once they differ.
    fn stage_label(&self, args: &BTreeMap<String, String>) -> String {
        match &self.platform {
            Some(p) => format!(
                "{}{} {}",
                crate::graph::platform::platform_string(p),
                cross_target(p, args),
                self.name
            ),
            None => self.name.clone(),
        }
    }

    /// The next step's position, progress label and stage label (see [`Runner::stage_label`]).
    fn step_name(
        &mut self,
        text: &str,
        args: &BTreeMap<String, String>,
    ) -> (usize, String, String) {
        self.step_no += 1;
        let stage = self.stage_label(args);
        (
            self.step_no - 1,
            format!("[{stage} {}/{}] {text}", self.step_no, self.steps_total),
            stage,
        )
    }
}

/// BuildKit's `formatTargetPlatform`: `->ARCH[/VARIANT]` (or `->OS/ARCH…` across systems) when
/// the `TARGET*` ARGs in scope name another platform than the stage's own, else nothing.
fn cross_target(stage: &Platform, args: &BTreeMap<String, String>) -> String {
    let target = match args.get("TARGETPLATFORM") {
        Some(t) => crate::graph::platform::parse_platform(t).ok(),
        None => {
            let (os, arch, variant) = (
                args.get("TARGETOS"),
                args.get("TARGETARCH"),
                args.get("TARGETVARIANT"),
            );
            (os.is_some() || arch.is_some() || variant.is_some()).then(|| Platform {
                os: os.cloned().unwrap_or_else(|| stage.os.clone()),
                architecture: arch.cloned().unwrap_or_else(|| stage.architecture.clone()),
                os_version: None,
                variant: variant.cloned().filter(|v| !v.is_empty()),
            })
        }
    };
    match target {
        Some(t) if t.os == stage.os && t.architecture != stage.architecture => match &t.variant {
            Some(v) => format!("->{}/{v}", t.architecture),
            None => format!("->{}", t.architecture),
        },
        Some(t) if t.os != stage.os => {
            format!("->{}", crate::graph::platform::platform_string(&t))
        }
        _ => String::new(),
    }
}

/// Builds stage `i` of the engine's plan.
pub fn build_stage(engine: &Engine<'_>, i: usize) -> Result<StageState, BuildError> {
    let stage = &engine.df.stages[i];
    let planned = &engine.plan.stages[i];
    let stage_platform = &planned.platform;
    let platform = crate::graph::platform::platform_string(stage_platform);
    let epoch = engine.opts.epoch;

    let mut runner = Runner {
        engine,
        name: planned.display_name(),
        // BuildKit's `[linux/arm64 build 2/4]` when a build has several platforms.
        platform: engine.opts.show_platform.then(|| stage_platform.clone()),
        step_no: 0,
        steps_total: 0,
        first_miss: None,
        no_cache: engine.opts.no_cache || engine.opts.no_cache_stages.contains(&i),
    };

    // 1. FROM
    let mut state = match &planned.base {
        Base::Scratch => StageState {
            index: i,
            config: {
                let mut c = ImageConfig::new(
                    stage_platform.os.clone(),
                    stage_platform.architecture.clone(),
                );
                c.variant = stage_platform.variant.clone();
                // BuildKit's empty image: the default PATH and WorkingDir `/`.
                c.config_mut().working_dir = Some("/".into());
                with_default_path(c)
            },
            layers: Vec::new(),
            key: KeyInputs::new("from", None, "FROM scratch".into(), platform.clone()).key(),
            args: BTreeMap::new(),
            base: BaseInfo::default(),
            meta: MetaState::default(),
        },
        Base::Stage(j) => {
            let parent = engine.stage_result(*j).ok_or_else(|| {
                BuildError::Internal(format!("stage {j} was not built before {i}"))
            })?;
            engine.kept.charge(&parent.config).map_err(|e| {
                let text = format!("FROM {}", stage.from.node.image);
                located(engine, stage.from.line, &text, e.into())
            })?;
            let mut s = (*parent).clone();
            s.index = i;
            // The ARG values in scope at the end of the parent stay in scope (BuildKit copies
            // the parent's build args into the child's dispatch state).
            s.meta = MetaState::default();
            s
        }
        Base::Image(name) => {
            // ONBUILD triggers are known only once the base is resolved; the total is
            // corrected below (it only matters for the `[stage i/n]` labels).
            runner.steps_total = 1 + stage.instructions.iter().filter(|s| is_op(&s.node)).count();
            let (idx, label, stage_label) =
                runner.step_name(&format!("FROM {name}"), &BTreeMap::new());
            let step = engine.progress.step(&label);
            let cwd = engine.opts.workdir.clone();
            // Pulled bytes, reported every few MiB as they arrive from the parallel fetches.
            let pulled = std::sync::atomic::AtomicU64::new(0);
            let reported = std::sync::atomic::AtomicU64::new(0);
            let on_bytes = |n: u64| {
                use std::sync::atomic::Ordering::Relaxed;
                let now = pulled.fetch_add(n, Relaxed) + n;
                if now - reported.load(Relaxed) >= PULL_PROGRESS_EVERY {
                    reported.store(now, Relaxed);
                    step.progress(crate::progress::ProgressKind::Pulling, now, None);
                }
            };
            // A directory `--build-context` is no image: no registry, no `base.name`.
            let named_dir = super::named_dir::base_image(engine, name, stage_platform);
            let from_dir = named_dir.is_some();
            let early = || engine.seams.shared.bases.take(name, stage_platform);
            let resolved = match named_dir.or_else(early).unwrap_or_else(|| {
                base::resolve_with_progress(
                    engine.store,
                    &engine.seams.registries,
                    name,
                    stage_platform,
                    &cwd,
                    engine.opts.always_pull,
                    &on_bytes,
                )
            }) {
                Ok(b) => b,
                Err(e) => {
                    step.failed(&e);
                    return Err(located(engine, stage.from.line, &format!("FROM {name}"), e));
                }
            };
            let inputs = KeyInputs::new("from", None, format!("FROM {name}"), platform.clone())
                .input("base", resolved.manifest_digest.to_string());
            let key = inputs.key();
            engine.record_step(StepRecord {
                stage: i,
                stage_name: stage_label,
                index: idx,
                name: format!("FROM {name}"),
                key: key.clone(),
                inputs,
                cached: true,
                miss_reason: None,
            });
            step.done();
            let mut config = with_default_path(resolved.config.derive_child());
            config.os = stage_platform.os.clone();
            StageState {
                index: i,
                config,
                layers: resolved.layers,
                key,
                args: BTreeMap::new(),
                base: if from_dir {
                    BaseInfo::default()
                } else {
                    BaseInfo {
                        name: Some(name.clone()),
                        digest: Some(resolved.manifest_digest),
                    }
                },
                meta: MetaState::default(),
            }
        }
    };

    // 2. ONBUILD triggers of the base run first, then are cleared (BuildKit).
    let triggers: Vec<String> = state
        .config
        .config
        .as_mut()
        .map(|c| std::mem::take(&mut c.on_build))
        .unwrap_or_default();
    let mut trigger_instructions = Vec::new();
    for t in &triggers {
        let df = crate::dockerfile::parse(&format!("FROM scratch\n{t}\n")).map_err(|e| {
            BuildError::OnbuildTrigger {
                trigger: t.clone(),
                rendered: e.render("ONBUILD", t),
            }
        })?;
        for s in df.stages.into_iter().flat_map(|s| s.instructions) {
            trigger_instructions.push((stage.from.line, s.node));
        }
    }
    let all: Vec<(usize, Instruction)> = trigger_instructions
        .into_iter()
        .chain(stage.instructions.iter().map(|s| (s.line, s.node.clone())))
        .collect();
    // FROM an image is step 1 of the stage; FROM scratch or a stage is not shown.
    let from_step = usize::from(matches!(planned.base, Base::Image(_)));
    runner.steps_total = from_step + all.iter().filter(|(_, i)| is_op(i)).count();

    let escape = engine.df.directives.escape;
    for (line, ins) in all {
        // Another step failed: stop here, as BuildKit cancels the rest of the solve.
        if engine.seams.shared.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        // URLs in COPY/ADD are shown with credentials masked (progress, errors, records).
        let text = match &ins {
            Instruction::Copy(_) | Instruction::Add(_) => {
                super::remote::shown_instruction(&ins.to_string())
            }
            _ => ins.to_string(),
        };
        let expanded = {
            let vars = StageVars {
                config: &state.config,
                args: &state.args,
            };
            ins.expand(&vars, escape)
                .map_err(|e| located(engine, line, &text, BuildError::Expand(e)))?
        };
        let result = run_instruction(
            &mut runner,
            &mut state,
            &expanded,
            &text,
            i,
            &platform,
            epoch,
        )
        .and_then(|()| check_scope(&state, &expanded));
        result.map_err(|e| located(engine, line, &text, e))?;
    }
    Ok(state)
}

/// After an ARG, ENV or LABEL: the stage's variables and labels stay within
/// [`MAX_SCOPE_BYTES`](crate::dockerfile::limits::MAX_SCOPE_BYTES), whatever the base image's
/// ENV and ONBUILD triggers added (the plan checked only what the Dockerfile says).
fn check_scope(state: &StageState, ins: &Instruction) -> Result<(), BuildError> {
    let name = match ins {
        Instruction::Arg(a) => a.args.last().map(|d| d.name.as_str()),
        Instruction::Env(kv) | Instruction::Label(kv) => kv.last().map(|(k, _)| k.as_str()),
        _ => return Ok(()),
    };
    let config = state.config.config.as_ref();
    let env = config.into_iter().flat_map(|c| {
        c.env
            .iter()
            .map(|e| e.split_once('=').unwrap_or((e.as_str(), "")))
    });
    let labels = config
        .into_iter()
        .flat_map(|c| c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let args = state.args.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    ScopeSize::of(env.chain(labels).chain(args)).check(ins.keyword(), name.unwrap_or_default())?;
    Ok(())
}

fn located(engine: &Engine<'_>, line: usize, text: &str, e: BuildError) -> BuildError {
    if matches!(e, BuildError::Step { .. }) {
        return e;
    }
    let name = engine
        .dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    BuildError::Step {
        location: format!("{name}:{line}"),
        step: text.to_string(),
        source: Box::new(e),
    }
}

/// Gives the in-place root back when dropped, if this thread took it.
struct ReleaseRoot<'e, 'a>(&'e Engine<'a>);

impl Drop for ReleaseRoot<'_, '_> {
    fn drop(&mut self) {
        self.0.in_place_root.release_if_held();
    }
}

fn run_instruction(
    runner: &mut Runner<'_, '_>,
    state: &mut StageState,
    ins: &Instruction,
    text: &str,
    stage_index: usize,
    platform: &str,
    epoch: i64,
) -> Result<(), BuildError> {
    let engine = runner.engine;
    match ins {
        Instruction::Arg(a) => {
            for def in &a.args {
                let value = engine
                    .opts
                    .build_args
                    .get(&def.name)
                    .cloned()
                    .or_else(|| def.default.clone())
                    .or_else(|| engine.plan.global_vars.get(&def.name).cloned());
                match value {
                    Some(v) => {
                        state.args.insert(def.name.clone(), v);
                    }
                    None if is_proxy_arg(&def.name) => {}
                    None => {}
                }
            }
            Ok(())
        }
        Instruction::Run(r) => {
            let prepared = super::run::prepare(engine, state, r, platform)?;
            let inputs = with_epoch(engine, prepared.inputs.clone());
            let scratch = engine.scratch_dir("run")?;
            let layers_before = state.layers.len();
            // In place, the step takes the container's root (`run::execute`); it is given back
            // once the layer has been written from it, also when the step failed.
            let _root = ReleaseRoot(engine);
            run_op(
                runner,
                state,
                stage_index,
                text,
                inputs,
                &prepared.created_by.clone(),
                Some(&scratch.path().join(super::run::UPPER)),
                |engine, state, step| {
                    // A foreign platform's step runs through a registered emulator, or not at
                    // all (checked before anything is unpacked).
                    let host = crate::graph::platform::host_platform();
                    let on = &engine.plan.stages[stage_index].platform;
                    crate::executor::binfmt::emulation(on, &host)
                        .map_err(|e| BuildError::Run(e.into()))?;
                    let rootfs = snapshot_rootfs(engine, &state.layers)?;
                    super::run::execute(engine, &prepared, &rootfs, scratch.path(), step)
                },
            )?;
            // The command ran (its upper directory exists) and made a layer: the layer's
            // snapshot can take its files from the upper directory instead of writing them
            // again — unless it was made while the layer was written (`early_snapshot`), or
            // exists already.
            if let Some(layer) = state.layers.get(layers_before) {
                let made = layer_chains(&state.layers)
                    .get(layers_before)
                    .is_some_and(|chain| engine.snapshots.get(chain).is_some());
                if made {
                    engine.discard_donor(scratch);
                } else if scratch.path().join(super::run::UPPER).is_dir() {
                    engine.offer_donor(layer.diff_id.clone(), scratch);
                }
            }
            Ok(())
        }
        Instruction::Workdir(path) => {
            let current = working_dir(state);
            let abs = format!("/{}", copy::absolute_dest(path, &current));
            state.config.config_mut().working_dir = Some(abs.clone());
            let user = state
                .config
                .config
                .as_ref()
                .and_then(|c| c.user.clone())
                .unwrap_or_default();
            let inputs = KeyInputs::new(
                "workdir",
                Some(state.key.clone()),
                format!("WORKDIR {abs}"),
                platform.to_string(),
            )
            .input("user", user.clone())
            .input(super::parents::KEY_INPUT.0, super::parents::KEY_INPUT.1);
            let inputs = with_epoch(engine, inputs);
            run_op(
                runner,
                state,
                stage_index,
                text,
                inputs,
                &format!("WORKDIR {abs}"),
                None,
                |engine, state, _step| {
                    let rootfs = lazy_rootfs(engine, &state.layers);
                    if rootfs.lookup(&abs)?.is_some() {
                        return Ok(Vec::new());
                    }
                    let owner = if user.is_empty() {
                        Owner { uid: 0, gid: 0 }
                    } else {
                        let passwd = rootfs.read_small_file("/etc/passwd")?;
                        let group = rootfs.read_small_file("/etc/group")?;
                        resolve_owner(&user, passwd.as_deref(), group.as_deref())?
                    };
                    let comps = components(&abs);
                    let mut entries = Vec::new();
                    for n in 1..=comps.len() {
                        let p = comps[..n].join("/");
                        if rootfs.lookup(&p)?.is_some() {
                            continue;
                        }
                        entries.push(LayerEntry {
                            path: p,
                            kind: LayerKind::Dir,
                            mode: 0o755,
                            uid: owner.uid,
                            gid: owner.gid,
                            mtime: epoch,
                            xattrs: BTreeMap::new(),
                        });
                    }
                    // /tmp stays 1777 under `WORKDIR /tmp/x` (see solver::parents).
                    let parents = super::parents::existing_parents(&rootfs, &entries, epoch)?;
                    entries.extend(parents);
                    Ok(entries)
                },
            )
        }
        Instruction::Copy(c) => {
            super::remote::remote_sources(c, false)?;
            run_copy(runner, state, stage_index, text, c, false, platform, epoch)
        }
        Instruction::Add(c) => {
            if c.from.is_some() {
                return Err(copy::CopyError::AddFrom.into());
            }
            if let Some(sources) = super::remote::remote_sources(c, true)? {
                return run_add_remote(runner, state, stage_index, text, c, sources, platform);
            }
            run_copy(runner, state, stage_index, text, c, true, platform, epoch)
        }
        other => {
            let mut meta_state = state.meta.clone();
            meta::apply(&mut state.config, &mut meta_state, other)?;
            state.meta = meta_state;
            state.config.add_empty_history(other.to_string());
            if let Some(h) = state.config.history.last_mut() {
                h.created = empty_entry_time(engine.opts);
                h.comment = Some(HISTORY_COMMENT.into());
            }
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_copy(
    runner: &mut Runner<'_, '_>,
    state: &mut StageState,
    stage_index: usize,
    text: &str,
    c: &CopyInstruction,
    is_add: bool,
    platform: &str,
    epoch: i64,
) -> Result<(), BuildError> {
    let engine = runner.engine;
    let workdir = working_dir(state);
    let env = CopyEnv {
        workdir: &workdir,
        epoch,
        normalize_modes: engine.opts.normalize_modes,
        is_add,
        layer_options: layer_options(engine),
    };
    let scratch = engine.scratch_dir("copy")?;
    let op = if is_add { "add" } else { "copy" };
    let canonical = Instruction::Copy(c.clone()).to_string();
    let canonical = if is_add {
        canonical.replacen("COPY", "ADD", 1)
    } else {
        canonical
    };

    // Where the sources come from: another stage (mounted read-only, and only once the content
    // key needs its files: a hit by the definition key needs none), or the context.
    // A directory `--build-context` is read as the build context is.
    let named_ctx = match &c.from {
        Some(name) => super::named_dir::context_for_from(engine, name, stage_index).transpose()?,
        None => None,
    };
    let from_stage = match (&c.from, &named_ctx) {
        (Some(name), None) => Some(resolve_from(engine, name, stage_index)?),
        _ => None,
    };
    let from_root: std::cell::OnceCell<SourceRoot> = std::cell::OnceCell::new();
    let ctx = match (&from_stage, named_ctx) {
        (Some(_), _) => None,
        (None, Some(named)) => Some(named),
        (None, None) => Some(engine.context()?),
    };
    let from_key = from_stage
        .as_ref()
        .map(|s| (c.from.as_deref().unwrap_or_default(), s.key.clone()));
    let created_by = format!("{canonical} # rbuild");
    let link = c.link;
    let parent = state.key.clone();
    let definition = from_key.as_ref().map(|(name, key)| {
        with_epoch(
            engine,
            copy::definition_inputs(
                &canonical,
                op,
                Some(parent.clone()),
                platform,
                c,
                &env,
                (name, key),
            )
            .input("chown", c.chown.clone().unwrap_or_default())
            .input("chmod", c.chmod.clone().unwrap_or_default()),
        )
    });
    // The step is shown while its sources are hashed (with a byte count), then as CACHED or
    // built: the key needs the hashes.
    let prepared: std::cell::OnceCell<copy::PreparedCopy> = std::cell::OnceCell::new();
    run_op_with(
        runner,
        state,
        stage_index,
        text,
        definition,
        |step| {
            let source = match (&from_stage, &ctx) {
                (Some(st), _) => Source::Dir(source_root(engine, st, scratch.path(), &from_root)?),
                (None, Some(ctx)) => Source::Context(ctx),
                (None, None) => {
                    return Err(BuildError::Internal("COPY has no source".into()));
                }
            };
            // Called once per file from the hashing threads: report big selections only,
            // about every 2%, so no renderer (json in particular) is flooded.
            let next = std::sync::atomic::AtomicU64::new(0);
            let hashing = |done: u64, total: u64| {
                use std::sync::atomic::Ordering::Relaxed;
                if total < HASH_PROGRESS_MIN_BYTES {
                    return;
                }
                if done >= next.load(Relaxed) || done >= total {
                    next.store(done + total / 50, Relaxed);
                    step.progress(crate::progress::ProgressKind::Hashing, done, Some(total));
                }
            };
            let p = copy::prepare(c, &source, &env, scratch.path(), &hashing)?;
            let inputs = with_epoch(
                engine,
                copy::key_inputs(&p, &canonical, op, Some(parent), platform, c)
                    .input("chown", c.chown.clone().unwrap_or_default())
                    .input("chmod", c.chmod.clone().unwrap_or_default()),
            );
            record::save_selection(engine.store, &p.selection_digest, || p.selection());
            let _ = prepared.set(p);
            Ok(inputs)
        },
        &created_by,
        None,
        |engine, state, _step| {
            let p = prepared
                .get()
                .ok_or_else(|| BuildError::Internal("COPY was not prepared".into()))?;
            // Only lookups (and /etc/passwd with --chown) below a COPY: no layer is unpacked
            // unless an answer needs it.
            if link {
                copy::entries(p, c, &env, &LazyRootFs::empty(), scratch.path())
            } else {
                let rootfs = lazy_rootfs(engine, &state.layers);
                copy::entries(p, c, &env, &rootfs, scratch.path())
            }
        },
    )
}

/// A source stage's merged filesystem while a `COPY --from` reads it.
struct SourceRoot {
    path: std::path::PathBuf,
    /// The read-only mount of a stage of several layers, removed when dropped.
    _mount: Option<super::rootfs::MountGuard>,
}

/// Fetches and unpacks the layers of `st` (those not in the store yet) and gives the directory
/// holding its filesystem, once: the first call fills `cell`.
fn source_root<'c>(
    engine: &Engine<'_>,
    st: &StageState,
    scratch: &std::path::Path,
    cell: &'c std::cell::OnceCell<SourceRoot>,
) -> Result<&'c std::path::Path, BuildError> {
    if cell.get().is_none() {
        let rootfs = snapshot_rootfs(engine, &st.layers)?;
        let root = if rootfs.lowers.len() == 1 {
            SourceRoot {
                path: rootfs_single(&rootfs),
                _mount: None,
            }
        } else {
            let dir = scratch.join("from");
            std::fs::create_dir_all(&dir).map_err(BuildError::io("creating", &dir))?;
            // Without the right to mount (chroot isolation), a merged copy.
            let guard = super::run::readonly_view(&rootfs, &dir, false)?;
            SourceRoot {
                path: dir,
                _mount: guard,
            }
        };
        let _ = cell.set(root);
    }
    cell.get()
        .map(|r| r.path.as_path())
        .ok_or_else(|| BuildError::Internal("the source stage was not mounted".into()))
}

/// `ADD` of URLs or git repositories (see [`super::remote`]): downloads and ref resolution
/// happen while the step is shown (they give the key); the git checkout only on a miss.
#[allow(clippy::too_many_arguments)]
fn run_add_remote(
    runner: &mut Runner<'_, '_>,
    state: &mut StageState,
    stage_index: usize,
    text: &str,
    c: &CopyInstruction,
    sources: Vec<crate::dockerfile::remote::RemoteSource>,
    platform: &str,
) -> Result<(), BuildError> {
    use super::remote;
    let engine = runner.engine;
    let workdir = working_dir(state);
    let scratch = engine.scratch_dir("addremote")?;
    let canonical = remote::shown_instruction(&Instruction::Add(c.clone()).to_string());
    let created_by = format!("{canonical} # rbuild");
    let parent = (!c.link).then(|| state.key.clone());
    let epoch = engine.opts.epoch;
    let prepared: std::cell::OnceCell<remote::PreparedRemote> = std::cell::OnceCell::new();
    run_op_with(
        runner,
        state,
        stage_index,
        text,
        None,
        |step| {
            // Downloaded bytes, every few MiB (a renderer must not be flooded).
            let next = std::cell::Cell::new(PULL_PROGRESS_EVERY);
            let on_bytes = |done: u64, total: Option<u64>| {
                if done >= next.get() {
                    next.set(done + PULL_PROGRESS_EVERY);
                    step.progress(crate::progress::ProgressKind::Pulling, done, total);
                }
            };
            let p = remote::prepare(
                engine.store,
                c,
                sources,
                &workdir,
                scratch.path(),
                &on_bytes,
            )?;
            let base = KeyInputs::new("add", parent, canonical.clone(), platform.to_string())
                .input("chown", c.chown.clone().unwrap_or_default())
                .input("chmod", c.chmod.clone().unwrap_or_default())
                .input("exclude", c.exclude.join("\n"));
            let inputs = with_epoch(engine, p.key_inputs(base, c));
            let _ = prepared.set(p);
            Ok(inputs)
        },
        &created_by,
        None,
        |engine, state, _step| {
            let p = prepared
                .get()
                .ok_or_else(|| BuildError::Internal("ADD was not prepared".into()))?;
            if c.link {
                remote::entries(
                    engine.store,
                    p,
                    c,
                    epoch,
                    &LazyRootFs::empty(),
                    scratch.path(),
                )
            } else {
                let rootfs = lazy_rootfs(engine, &state.layers);
                remote::entries(engine.store, p, c, epoch, &rootfs, scratch.path())
            }
        },
    )
}

/// Adds the epoch to the key of a step that writes files, when it was asked for explicitly.
fn with_epoch(engine: &Engine<'_>, inputs: KeyInputs) -> KeyInputs {
    if engine.opts.epoch_in_key {
        inputs.input("epoch", engine.opts.epoch.to_string())
    } else {
        inputs
    }
}

fn rootfs_single(r: &RootFs) -> std::path::PathBuf {
    r.lowers[0].clone()
}

fn layer_options(engine: &Engine<'_>) -> LayerOptions {
    LayerOptions {
        compression: engine.opts.compression,
        level: engine.opts.compression_level,
        source_date_epoch: Some(engine.opts.epoch),
        threads: None,
    }
}

/// How a step of `stage` writes its layer: compressed, or — in a stage whose compression is
/// deferred — as its plain tar (see [`super::lazy_blobs`]).
fn step_layer_options(engine: &Engine<'_>, stage: usize) -> LayerOptions {
    if super::lazy_blobs::defers(engine.opts, stage) {
        return LayerOptions {
            compression: rbuild_layers::Compression::None,
            level: None,
            ..layer_options(engine)
        };
    }
    LayerOptions {
        compression: engine.opts.compression,
        level: engine.opts.compression_level,
        source_date_epoch: Some(engine.opts.epoch),
        threads: None,
    }
}

/// Resolves `COPY --from=NAME` and `RUN --mount=…,from=NAME`: a stage of this Dockerfile (by
/// name, or by index for an earlier stage), else an image reference resolved like a `FROM` (its
/// manifest digest is what the step's key depends on), or a directory `--build-context` taken
/// as `FROM NAME` takes it (one layer of its files, keyed by their content).
pub(crate) fn resolve_from(
    engine: &Engine<'_>,
    name: &str,
    current: usize,
) -> Result<Arc<StageState>, BuildError> {
    if let Some(i) = engine.plan.stage_ref(name, current) {
        return engine.stage_result(i).ok_or_else(|| {
            BuildError::Internal(format!("stage {name} was not built before it was read"))
        });
    }
    let cwd = engine.opts.workdir.clone();
    let image_name = engine.plan.image_for_from(name, current);
    let name = image_name.as_str();
    let platform = &engine.opts.platform;
    let bases = &engine.seams.shared.bases;
    let image = match super::named_dir::base_image(engine, name, platform) {
        Some(dir) => dir?,
        None => match bases.get(name, platform) {
            Some(known) => known,
            None => {
                let image = base::resolve(
                    engine.store,
                    &engine.seams.registries,
                    name,
                    platform,
                    &cwd,
                    engine.opts.always_pull,
                )?;
                bases.keep(name, platform, &image);
                image
            }
        },
    };
    let platform = crate::graph::platform::platform_string(&engine.opts.platform);
    let key = KeyInputs::new("from", None, format!("FROM {name}"), platform)
        .input("base", image.manifest_digest.to_string())
        .key();
    Ok(Arc::new(StageState {
        index: current,
        config: image.config,
        layers: image.layers,
        key,
        args: BTreeMap::new(),
        base: BaseInfo {
            name: Some(name.to_string()),
            digest: Some(image.manifest_digest),
        },
        meta: MetaState::default(),
    }))
}

/// Unpacks (or reuses) every layer's snapshot and returns the stack.
///
/// Layers not in the store yet (a lazily pulled base, an imported cache) are fetched first,
/// only for the snapshots that do not exist. Unpacking checks each layer's diffID against what
/// the config or cache said, so a layer that is not what it claims never becomes a root.
pub fn snapshot_rootfs(engine: &Engine<'_>, layers: &[LayerRef]) -> Result<RootFs, BuildError> {
    let chains = layer_chains(layers);
    let unpacked: Vec<LayerRef> = layers
        .iter()
        .zip(&chains)
        .filter(|(_, c)| engine.snapshots.get(c).is_none())
        .map(|(l, _)| l.clone())
        .collect();
    // Each layer is unpacked as soon as its blob is here, while later ones still download.
    engine.fetch_in_background(&unpacked, |arrived| {
        let mut lowers = Vec::with_capacity(layers.len());
        for (l, chain) in layers.iter().zip(&chains) {
            if engine.snapshots.get(chain).is_none() {
                arrived(l)?;
            }
            let dir = unpack_layer(engine, l, chain, &lowers)?;
            lowers.push(dir);
        }
        Ok(RootFs { lowers })
    })
}

/// The filesystem below a step that only looks paths up (COPY's destination, WORKDIR): layers
/// already unpacked are used as they are, layers with a path index answer from it, and the
/// rest are fetched and unpacked only if a lookup reaches them (see [`LazyRootFs`]).
pub fn lazy_rootfs<'e>(engine: &'e Engine<'_>, layers: &[LayerRef]) -> LazyRootFs<'e> {
    let chains = layer_chains(layers);
    let lowers: Vec<Lower> = layers
        .iter()
        .zip(&chains)
        .map(|(l, chain)| {
            if let Some(dir) = engine.snapshots.get(chain) {
                Lower::Dir(dir)
            } else if let Some(index) = PathIndex::load(engine.store, &l.diff_id) {
                Lower::Index(Arc::new(index))
            } else {
                Lower::Lazy
            }
        })
        .collect();
    // A lookup that reaches a lower with no index goes on through every lower below it unless
    // it finds the path there, so the first such lower fetches the blobs of all of them at once
    // (in parallel, as a full materialization would); each is still unpacked only when reached.
    let lazy: Vec<bool> = lowers.iter().map(|l| matches!(l, Lower::Lazy)).collect();
    let prefetched = std::cell::Cell::new(false);
    let layers = layers.to_vec();
    LazyRootFs::new(
        lowers,
        Box::new(move |i| {
            let (l, chain) = layers.get(i).zip(chains.get(i)).ok_or_else(|| {
                BuildError::Internal(format!("lower {i} of a lazy filesystem does not exist"))
            })?;
            if lazy[i] && !prefetched.replace(true) {
                let below: Vec<LayerRef> = layers[..=i]
                    .iter()
                    .zip(&lazy)
                    .filter(|(_, is_lazy)| **is_lazy)
                    .map(|(l, _)| l.clone())
                    .collect();
                engine.fetch_layers(&below)?;
            } else {
                engine.fetch_layers(std::slice::from_ref(l))?;
            }
            // A snapshot is unpacked over the snapshots below it (see `unpack_layer`).
            let below = snapshot_rootfs(engine, &layers[..i])?;
            unpack_layer(engine, l, chain, &below.lowers)
        }),
    )
}

fn layer_chains(layers: &[LayerRef]) -> Vec<Digest> {
    let mut chains = Vec::with_capacity(layers.len());
    let mut parent: Option<Digest> = None;
    for l in layers {
        let chain = chain_id(parent.as_ref(), &l.diff_id);
        chains.push(chain.clone());
        parent = Some(chain);
    }
    chains
}

/// Unpacks (or reuses) the snapshot of one layer whose blob is in the store, checking its
/// diffID. `below` are the snapshots of the layers under it, bottom first: directories the
/// layer only implies take their metadata from them (containerd's `WithParents`), so a
/// snapshot depends only on its chain.
fn unpack_layer(
    engine: &Engine<'_>,
    l: &LayerRef,
    chain: &Digest,
    below: &[std::path::PathBuf],
) -> Result<std::path::PathBuf, BuildError> {
    let mismatch: std::cell::Cell<Option<Digest>> = std::cell::Cell::new(None);
    // The RUN that made this layer in this build, if any, gives its files up (what is left is
    // removed in the background once the snapshot exists).
    let donor = engine.take_donor(&l.diff_id);
    let created = engine.snapshots.get_or_create(chain, |dir| {
        let blob = engine
            .store
            .open_blob(&l.descriptor.digest)
            .map_err(std::io::Error::other)?;
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            parents: below.iter().rev().cloned().collect(),
            donor: donor.as_ref().map(|d| d.path().join(super::run::UPPER)),
            ..ApplyOptions::default()
        };
        let report =
            rbuild_layers::apply::apply_layer(dir, blob, &opts).map_err(std::io::Error::other)?;
        if report.diff_id != l.diff_id {
            mismatch.set(Some(report.diff_id));
            return Err(std::io::Error::other("the layer's diffID does not match"));
        }
        Ok(report.placeholders)
    });
    if let Some(d) = donor {
        engine.discard_donor(d);
    }
    match (created, mismatch.take()) {
        (Ok(path), _) => Ok(path),
        (Err(_), Some(actual))
            if engine
                .seams
                .layers
                .named_by_imported_cache(&l.descriptor.digest) =>
        {
            Err(BuildError::ImportedCache {
                digest: l.descriptor.digest.clone(),
                reason: format!(
                    "it unpacks to {actual}, not to the diffID {} the cache names",
                    l.diff_id
                ),
            })
        }
        (Err(_), Some(actual)) => Err(BuildError::LayerMismatch {
            digest: l.descriptor.digest.clone(),
            expected: l.diff_id.clone(),
            actual,
        }),
        (Err(e), None) => Err(e.into()),
    }
}

/// Writes a step's layer, reporting its progress to `report` and its growing blob to `follow`.
fn write_step_layer<'h>(
    engine: &Engine<'_>,
    entries: Vec<LayerEntry>,
    opts: &LayerOptions,
    report: &'h dyn Fn(u64),
    follow: Option<&'h mut dyn FnMut(rbuild_layers::store::GrowingBlob)>,
) -> Result<rbuild_layers::tar::LayerInfo, rbuild_layers::tar::LayerError> {
    rbuild_layers::tar::write_layer_with(
        engine.store,
        entries,
        opts,
        rbuild_layers::tar::WriteHooks {
            progress: Some(report),
            follow,
        },
    )
}

/// Runs a filesystem step: key → cache lookup → (on a miss) `make` the entries and write the
/// layer → record. Updates `state` with the layer and history. `donor` is the directory a
/// RUN's layer is written from (see `early_snapshot`).
#[allow(clippy::too_many_arguments)]
fn run_op(
    runner: &mut Runner<'_, '_>,
    state: &mut StageState,
    stage_index: usize,
    text: &str,
    inputs: KeyInputs,
    created_by: &str,
    donor: Option<&std::path::Path>,
    make: impl FnOnce(
        &Engine<'_>,
        &StageState,
        &crate::progress::StepHandle,
    ) -> Result<Vec<LayerEntry>, BuildError>,
) -> Result<(), BuildError> {
    run_op_with(
        runner,
        state,
        stage_index,
        text,
        None,
        |_| Ok(inputs),
        created_by,
        donor,
        make,
    )
}

/// [`run_op`] for a step whose key inputs take work to compute (hashing sources): `inputs`
/// runs after the step is shown, with its handle for progress. A step with a `definition` key
/// (`COPY --from`, see `copy::digest`) is looked up by it first: a hit never runs `inputs`; any
/// other outcome is recorded under it as well.
#[allow(clippy::too_many_arguments)]
fn run_op_with(
    runner: &mut Runner<'_, '_>,
    state: &mut StageState,
    stage_index: usize,
    text: &str,
    definition: Option<KeyInputs>,
    inputs: impl FnOnce(&crate::progress::StepHandle) -> Result<KeyInputs, BuildError>,
    created_by: &str,
    donor: Option<&std::path::Path>,
    make: impl FnOnce(
        &Engine<'_>,
        &StageState,
        &crate::progress::StepHandle,
    ) -> Result<Vec<LayerEntry>, BuildError>,
) -> Result<(), BuildError> {
    let engine = runner.engine;
    let (idx, label, stage_label) = runner.step_name(text, &state.args);
    let step = engine.progress.step(label.clone());
    let by_definition = match &definition {
        Some(d) if !runner.no_cache => cached_by_definition(engine, d),
        _ => None,
    };
    let found_by_definition = by_definition.is_some();
    // Held until the step's record is written: another platform's engine reaching the same
    // step waits, then finds it in the cache (see `shared`).
    let mut _running = None;
    let (key, inputs, cached) = match by_definition {
        Some((key, inputs, r)) => (key, inputs, Some(r)),
        None => {
            let inputs = match inputs(&step) {
                Ok(i) => i,
                Err(e) => {
                    step.failed(&e);
                    return Err(e);
                }
            };
            let key = inputs.key();
            let shared = &engine.seams.shared;
            let cached = if runner.no_cache {
                // Not from an earlier build; but a step another platform's engine of this
                // build ran is this build's own work.
                _running = Some(shared.lock_step(&key));
                shared
                    .built_here(&key)
                    .then(|| cached_by_key(engine, &key))
                    .flatten()
            } else {
                cached_by_key(engine, &key).or_else(|| {
                    _running = Some(shared.lock_step(&key));
                    cached_by_key(engine, &key)
                })
            };
            (key, inputs, cached)
        }
    };
    let mut miss_reason = None;
    let hit = cached.is_some();
    let result = match cached {
        Some(r) => {
            step.cached();
            r
        }
        None => {
            if let Some(prev) = engine.previous_step(&stage_label, idx) {
                let reason = if runner.no_cache {
                    "--no-cache was given".to_string()
                } else {
                    let against = explain::comparable(prev, &inputs, definition.as_ref());
                    explain::explain(engine.store, prev, against, runner.first_miss.as_deref())
                };
                step.cache_miss(&reason);
                miss_reason = Some(reason);
            }
            if runner.first_miss.is_none() {
                runner.first_miss = Some(text.to_string());
            }
            let entries = match make(engine, state, &step) {
                Ok(e) => e,
                Err(e) => {
                    step.failed(&e);
                    return Err(e);
                }
            };
            let r = if entries.is_empty() {
                StepResult::new(None)
            } else {
                // Small layers finish before a byte count means anything.
                let report = |bytes: u64| {
                    if bytes >= COMPRESS_PROGRESS_MIN_BYTES {
                        step.progress(crate::progress::ProgressKind::Compressing, bytes, None)
                    }
                };
                // A layer of a pushed image is uploaded while it is compressed; a deferred
                // layer is in no pushed image.
                let deferred = super::lazy_blobs::defers(engine.opts, stage_index);
                let mut upload = if deferred {
                    None
                } else {
                    engine.seams.uploads.follower(stage_index)
                };
                let layer_opts = step_layer_options(engine, stage_index);
                // A deferred RUN layer is unpacked into its snapshot as it is written (see
                // `early_snapshot`); any other layer is followed by its upload, if any.
                let early = donor
                    .filter(|_| deferred && upload.is_none())
                    .and_then(|d| {
                        super::early_snapshot::EarlySnapshot::new(engine, &state.layers, d)
                    });
                let written = match early {
                    Some(early) => early.write_with(|follow| {
                        write_step_layer(engine, entries, &layer_opts, &report, Some(follow))
                    }),
                    None => write_step_layer(
                        engine,
                        entries,
                        &layer_opts,
                        &report,
                        upload
                            .as_mut()
                            .map(|f| &mut **f as &mut dyn FnMut(rbuild_layers::store::GrowingBlob)),
                    )
                    .map_err(BuildError::from),
                };
                let info = match written {
                    Ok(i) => i,
                    Err(e) => {
                        step.failed(&e);
                        return Err(e);
                    }
                };
                let mut d =
                    Descriptor::new(info.media_type.clone(), info.digest.clone(), info.size);
                d.annotations.clear();
                let mut r = StepResult::new(Some(LayerRef {
                    descriptor: d,
                    diff_id: info.diff_id,
                    deferred,
                    key_only: false,
                }));
                if engine.opts.clock_epoch {
                    r.created = Some(engine.opts.epoch);
                }
                r
            };
            record::save(engine.store, &key, &r)?;
            engine.seams.shared.built(&key);
            step.done();
            r
        }
    };
    let definition = definition.map(|d| {
        let def_key = d.key();
        if !found_by_definition {
            // Found by its definition key from now on, without reading its sources.
            let d = record::DefinitionRecord {
                key: key.clone(),
                inputs: Some(inputs.clone()),
            };
            record::save_definition(engine.store, &def_key, &d);
        }
        def_key
    });
    match result.layer.clone() {
        Some(l) => {
            state.key = key::content_key(&state.key, &l.diff_id);
            let when = match result.created {
                Some(t) if engine.opts.clock_epoch => t,
                _ => engine.opts.epoch,
            };
            state
                .config
                .add_layer(l.diff_id.clone(), history(created_by.to_string(), when));
            state.layers.push(l);
        }
        None => {
            state.config.add_empty_history(created_by.to_string());
            if let Some(h) = state.config.history.last_mut() {
                h.created = empty_entry_time(engine.opts);
                h.comment = Some(HISTORY_COMMENT.into());
            }
        }
    }
    // The outcome below clones the config, and the step record keeps the inputs.
    engine.kept.charge(&state.config)?;
    engine.kept.charge(&inputs)?;
    engine.record_outcome(super::StepOutcome {
        stage: stage_index,
        key: key.clone(),
        parent: inputs.parent.clone(),
        layer: result.layer.clone(),
        config: state.config.clone(),
        description: label,
        definition,
        created: result.created,
    });
    engine.record_step(StepRecord {
        stage: stage_index,
        stage_name: stage_label,
        index: idx,
        name: text.to_string(),
        key,
        inputs,
        cached: hit,
        miss_reason,
    });
    Ok(())
}

/// A step's result by its own key: the store's record, else an imported cache's. An imported
/// hit is remembered in the store like a local one (it is used locally only once its layer is
/// here).
fn cached_by_key(engine: &Engine<'_>, key: &Digest) -> Option<StepResult> {
    record::lookup(engine.store, key).or_else(|| {
        let r = engine.seams.imported.step(engine.store, key)?;
        let _ = record::save(engine.store, key, &r);
        Some(r)
    })
}

/// A step's result by its definition key (see `copy::digest`), without reading its sources:
/// the step's own key, the inputs to record for it (its own when this store computed them,
/// else the definition's) and its result. An imported hit is remembered in the store under
/// both keys.
fn cached_by_definition(
    engine: &Engine<'_>,
    definition: &KeyInputs,
) -> Option<(Digest, KeyInputs, StepResult)> {
    let def_key = definition.key();
    if let Some((d, r)) = record::lookup_definition(engine.store, &def_key) {
        return Some((d.key, d.inputs.unwrap_or_else(|| definition.clone()), r));
    }
    let (key, r) = engine
        .seams
        .imported
        .step_by_definition(engine.store, &def_key)?;
    let _ = record::save(engine.store, &key, &r);
    let d = record::DefinitionRecord {
        key: key.clone(),
        inputs: None,
    };
    record::save_definition(engine.store, &def_key, &d);
    Some((key, definition.clone(), r))
}

/// The stage's working directory so far (`/` until a WORKDIR or the base image sets one).
fn working_dir(state: &StageState) -> String {
    state
        .config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BuildKit's `formatTargetPlatform` (`dockerfile2llb/convert.go`).
    #[test]
    fn a_step_seeing_another_target_platform_is_labelled_as_buildkit_labels_it() {
        let p = |s: &str| crate::graph::platform::parse_platform(s).unwrap();
        let args = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let amd64 = p("linux/amd64");
        assert_eq!(cross_target(&amd64, &args(&[])), "");
        assert_eq!(
            cross_target(&amd64, &args(&[("TARGETARCH", "arm64")])),
            "->arm64"
        );
        assert_eq!(cross_target(&amd64, &args(&[("TARGETARCH", "amd64")])), "");
        assert_eq!(
            cross_target(&amd64, &args(&[("TARGETPLATFORM", "linux/arm/v7")])),
            "->arm/v7"
        );
        assert_eq!(
            cross_target(&amd64, &args(&[("TARGETOS", "windows")])),
            "->windows/amd64"
        );
    }

    #[test]
    fn rfc3339_formats_epochs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
