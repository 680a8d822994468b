//! The build graph: which stages exist, what each one reads, and which ones the chosen targets
//! need (BuildKit's rule: only stages reachable from a target are built).
//!
//! A stage depends on the stage its `FROM` names, and on every stage a `COPY --from` or
//! `RUN --mount=...,from=` names (by name, case-insensitive, or by index). Stage references are
//! resolved after expanding the global `ARG`s (for `FROM`) or the stage's own `ARG`/`ENV` values
//! known before the build (for `--from`), as BuildKit does when it builds its dispatch states.

mod checks;
#[cfg(test)]
mod limits_tests;
pub mod named;
pub mod platform;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::dockerfile::chmod::ChmodError;
use crate::dockerfile::expand::{expand_word, ExpandError, VarLookup};
use crate::dockerfile::limits::{ScopeSize, ScopeTooLarge};
use crate::dockerfile::{Dockerfile, Instruction, MountSpec};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: no layers.
    Scratch,
    /// An earlier stage of this Dockerfile.
    Stage(usize),
    /// An image reference (`oci-layout://…`, a local store tag, or a registry image), expanded.
    Image(String),
}

/// One stage of the plan.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    /// Stages read by `COPY --from` / `RUN --mount from=` (not the base stage).
    pub reads: BTreeSet<usize>,
    /// Images read by `COPY --from=<image>` (expanded references).
    pub read_images: BTreeSet<String>,
    /// The platform the stage is built for (see [`platform::stage_platforms`]).
    pub platform: rbuild_layers::Platform,
}

impl PlannedStage {
    /// The stage's name for progress lines: its `AS` name, else `stage-N` (as BuildKit prints).
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }

    /// Every stage this one needs built first.
    pub fn depends_on(&self) -> impl Iterator<Item = usize> + '_ {
        let base = match self.base {
            Base::Stage(i) => Some(i),
            _ => None,
        };
        base.into_iter().chain(self.reads.iter().copied())
    }
}

/// The stages of a Dockerfile and the subset the targets need, in build order.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub stages: Vec<PlannedStage>,
    /// The stages asked for, in the order given.
    pub targets: Vec<usize>,
    /// Needed stages in a valid build order (dependencies first).
    pub order: Vec<usize>,
    /// The global scope used to expand `FROM`: predefined platform args and global `ARG`s.
    pub global_vars: BTreeMap<String, String>,
    /// `--build-arg` names that no `ARG` declares (BuildKit warns about them).
    pub unused_build_args: Vec<String>,
    /// `--build-context` images, once applied ([`BuildPlan::apply_named_contexts`]).
    pub named: named::NamedContexts,
}

/// Why a plan could not be made. The message leaves out the line; [`PlanError::render`] puts
/// it after the file name (`Dockerfile:LINE:`).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the Dockerfile has no FROM instruction: add `FROM <image>` (or `FROM scratch`)")]
    NoStages,
    #[error("target stage {target:?} is not defined (stages: {available})")]
    UnknownTarget { target: String, available: String },
    #[error("{what}: {source}")]
    Expand {
        line: usize,
        what: String,
        #[source]
        source: ExpandError,
    },
    #[error("{source}")]
    Scope {
        line: usize,
        #[source]
        source: ScopeTooLarge,
    },
    #[error("FROM needs an image name, but {image:?} expands to nothing")]
    EmptyFrom { line: usize, image: String },
    #[error("stage {index} refers to itself or to a later stage {name:?}; a stage can only use stages defined before it")]
    ForwardReference {
        line: usize,
        index: usize,
        name: String,
    },
    #[error("stage name {name:?} is used twice")]
    DuplicateStage { line: usize, name: String },
    #[error("{source}")]
    BadChmod {
        line: usize,
        #[source]
        source: ChmodError,
    },
    #[error("FROM --platform: {reason}")]
    BadFromPlatform { line: usize, reason: String },
}

impl PlanError {
    /// The Dockerfile line the error is about, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PlanError::NoStages | PlanError::UnknownTarget { .. } => None,
            PlanError::Expand { line, .. }
            | PlanError::Scope { line, .. }
            | PlanError::EmptyFrom { line, .. }
            | PlanError::ForwardReference { line, .. }
            | PlanError::DuplicateStage { line, .. }
            | PlanError::BadChmod { line, .. }
            | PlanError::BadFromPlatform { line, .. } => Some(*line),
        }
    }

    /// `FILE:LINE: message` (or `FILE: message`), with the whole cause chain.
    pub fn render(&self, file: &str) -> String {
        let message = crate::errors::error_chain(self);
        match self.line() {
            Some(line) => format!("{file}:{line}: {message}"),
            None => format!("{file}: {message}"),
        }
    }
}

/// `expand_word` for a pre-pass that may skip a value it cannot expand yet (BuildKit reports
/// those when the step runs), but never a size limit: that would let the pass go on growing.
fn expand_or_skip(
    word: &str,
    vars: &dyn VarLookup,
    escape: char,
    line: usize,
    what: impl FnOnce() -> String,
) -> Result<Option<String>, PlanError> {
    match expand_word(word, vars, escape) {
        Ok(v) => Ok(Some(v)),
        Err(source) if source.kind.is_limit() => Err(PlanError::Expand {
            line,
            what: what(),
            source,
        }),
        Err(_) => Ok(None),
    }
}

/// Sets `name` in a plan-time scope, keeping its size within [`ScopeSize`]'s bound.
fn set_var(
    vars: &mut BTreeMap<String, String>,
    size: &mut ScopeSize,
    instruction: &'static str,
    name: &str,
    value: String,
    line: usize,
) -> Result<(), PlanError> {
    size.set(
        instruction,
        name,
        vars.get(name).map(String::as_str),
        &value,
    )
    .map_err(|source| PlanError::Scope { line, source })?;
    vars.insert(name.to_owned(), value);
    Ok(())
}

/// The built-in platform ARGs (BuildKit's "automatic platform ARGs in the global scope").
pub fn platform_args(
    p: &rbuild_layers::Platform,
    build: &rbuild_layers::Platform,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let fmt = |p: &rbuild_layers::Platform| match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    };
    m.insert("TARGETPLATFORM".into(), fmt(p));
    m.insert("TARGETOS".into(), p.os.clone());
    m.insert("TARGETARCH".into(), p.architecture.clone());
    m.insert(
        "TARGETVARIANT".into(),
        p.variant.clone().unwrap_or_default(),
    );
    m.insert("BUILDPLATFORM".into(), fmt(build));
    m.insert("BUILDOS".into(), build.os.clone());
    m.insert("BUILDARCH".into(), build.architecture.clone());
    m.insert(
        "BUILDVARIANT".into(),
        build.variant.clone().unwrap_or_default(),
    );
    m
}

struct Vars<'a>(&'a BTreeMap<String, String>);

impl VarLookup for Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Expands the global `ARG`s in order: a `--build-arg` overrides a declared default; an `ARG`
/// without a default and without a build arg stays unset.
pub fn global_scope(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    platform_vars: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, PlanError> {
    let mut vars = platform_vars.clone();
    let mut size = ScopeSize::of(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for arg in &df.global_args {
        for def in &arg.node.args {
            let value = match (build_args.get(&def.name), &def.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(
                    expand_word(d, &Vars(&vars), df.directives.escape).map_err(|source| {
                        PlanError::Expand {
                            line: arg.line,
                            what: format!("global ARG {}", def.name),
                            source,
                        }
                    })?,
                ),
                (None, None) => None,
            };
            if let Some(v) = value {
                set_var(&mut vars, &mut size, "ARG", &def.name, v, arg.line)?;
            }
        }
    }
    Ok(vars)
}

impl BuildPlan {
    /// `stage` and the stages it is built `FROM`, in turn (the layers of its image, top down).
    /// Stages only read by `COPY --from` are not in it.
    pub fn from_chain(&self, stage: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(stage), |&i| {
            match self.stages.get(i).map(|s| &s.base) {
                Some(Base::Stage(base)) => Some(*base),
                _ => None,
            }
        })
    }

    /// Resolves stages and dependencies, and picks the stages `targets` need (default: the
    /// last stage).
    pub fn new(
        df: &Dockerfile,
        targets: &[String],
        build_args: &BTreeMap<String, String>,
        platform_vars: &BTreeMap<String, String>,
    ) -> Result<BuildPlan, PlanError> {
        if df.stages.is_empty() {
            return Err(PlanError::NoStages);
        }
        let escape = df.directives.escape;
        let global_vars = global_scope(df, build_args, platform_vars)?;
        let target = platform::target_of(platform_vars);
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut stages = Vec::with_capacity(df.stages.len());
        // Each stage's variables after its last instruction.
        let mut end_vars: Vec<BTreeMap<String, String>> = Vec::with_capacity(df.stages.len());
        for stage in &df.stages {
            let line = stage.from.line;
            let image = expand_word(&stage.from.node.image, &Vars(&global_vars), escape).map_err(
                |source| PlanError::Expand {
                    line,
                    what: "FROM image".into(),
                    source,
                },
            )?;
            if image.is_empty() {
                return Err(PlanError::EmptyFrom {
                    line,
                    image: stage.from.node.image.clone(),
                });
            }
            let base = if image.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if let Some(&i) = names.get(&image.to_ascii_lowercase()) {
                Base::Stage(i)
            } else {
                Base::Image(image)
            };
            // Stage-scope variables known before building: global ARGs a stage ARG redeclares,
            // stage ARG defaults and build args, and ENV values.
            // A stage FROM another stage starts with that stage's ARG and ENV values.
            let mut vars = match &base {
                Base::Stage(i) => end_vars.get(*i).cloned().unwrap_or_default(),
                _ => platform_vars.clone(),
            };
            let mut size = ScopeSize::of(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut reads = BTreeSet::new();
            let mut read_images = BTreeSet::new();
            for ins in &stage.instructions {
                let line = ins.line;
                match &ins.node {
                    Instruction::Arg(a) => {
                        for def in &a.args {
                            let mut v = build_args.get(&def.name).cloned();
                            if let (None, Some(d)) = (&v, &def.default) {
                                v = expand_or_skip(d, &vars, escape, line, || {
                                    format!("ARG {}", def.name)
                                })?;
                            }
                            if let Some(v) = v.or_else(|| global_vars.get(&def.name).cloned()) {
                                set_var(&mut vars, &mut size, "ARG", &def.name, v, line)?;
                            }
                        }
                    }
                    Instruction::Env(pairs) => {
                        for (k, v) in pairs {
                            let what = || format!("ENV {k}");
                            if let Some(v) = expand_or_skip(v, &vars, escape, line, what)? {
                                set_var(&mut vars, &mut size, "ENV", k, v, line)?;
                            }
                        }
                    }
                    Instruction::Copy(_) | Instruction::Add(_) | Instruction::Run(_) => {
                        checks::typed_values(&ins.node, &vars, escape, line)?;
                    }
                    _ => {}
                }
                let froms: Vec<&String> = match &ins.node {
                    Instruction::Copy(c) => c.from.iter().collect(),
                    Instruction::Run(r) => r
                        .mounts
                        .iter()
                        .filter_map(|m| match m {
                            MountSpec::Bind { from, .. } | MountSpec::Cache { from, .. } => {
                                from.as_ref()
                            }
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                for raw in froms {
                    let name = expand_word(raw, &Vars(&vars), escape).map_err(|source| {
                        PlanError::Expand {
                            line: ins.line,
                            what: "--from".into(),
                            source,
                        }
                    })?;
                    match resolve_stage_ref(&name, &names, stage.index) {
                        StageRef::Stage(i) => {
                            reads.insert(i);
                        }
                        StageRef::Forward => {
                            return Err(PlanError::ForwardReference {
                                line: ins.line,
                                index: stage.index,
                                name,
                            })
                        }
                        StageRef::Image => {
                            read_images.insert(name);
                        }
                    }
                }
            }
            if let Some(n) = &stage.name {
                if names.insert(n.clone(), stage.index).is_some() {
                    return Err(PlanError::DuplicateStage {
                        line,
                        name: n.clone(),
                    });
                }
            }
            end_vars.push(vars);
            stages.push(PlannedStage {
                index: stage.index,
                name: stage.name.clone(),
                base,
                reads,
                read_images,
                // Set once the needed stages are known, below.
                platform: target.clone(),
            });
        }

        let mut target_idx = Vec::new();
        if targets.is_empty() {
            target_idx.push(stages.len() - 1);
        }
        for t in targets {
            let found = names
                .get(&t.to_ascii_lowercase())
                .copied()
                .or_else(|| t.parse::<usize>().ok().filter(|i| *i < stages.len()));
            match found {
                Some(i) if !target_idx.contains(&i) => target_idx.push(i),
                Some(_) => {}
                None => {
                    let available = stages
                        .iter()
                        .map(PlannedStage::display_name)
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(PlanError::UnknownTarget {
                        target: t.clone(),
                        available,
                    });
                }
            }
        }

        // Dependencies always point to earlier stages, so index order is a build order.
        let mut needed = BTreeSet::new();
        let mut todo: Vec<usize> = target_idx.clone();
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(stages[i].depends_on());
            }
        }
        let bases: Vec<Base> = stages.iter().map(|s| s.base.clone()).collect();
        let platforms = platform::stage_platforms(df, &bases, &needed, &global_vars, &target)?;
        for (s, p) in stages.iter_mut().zip(platforms) {
            s.platform = p;
        }
        let declared: BTreeSet<&str> = df
            .global_args
            .iter()
            .flat_map(|a| a.node.args.iter().map(|d| d.name.as_str()))
            .chain(df.stages.iter().flat_map(|s| {
                s.instructions.iter().flat_map(|i| match &i.node {
                    Instruction::Arg(a) => a.args.iter().map(|d| d.name.as_str()).collect(),
                    _ => Vec::new(),
                })
            }))
            .collect();
        let unused_build_args = build_args
            .keys()
            // BUILDKIT_DOCKERFILE_CHECK configures the build checks, not the Dockerfile.
            .filter(|k| {
                !declared.contains(k.as_str()) && !is_proxy_arg(k) && k.as_str() != CHECK_BUILD_ARG
            })
            .cloned()
            .collect();
        Ok(BuildPlan {
            stages,
            targets: target_idx,
            order: needed.into_iter().collect(),
            global_vars,
            unused_build_args,
            named: named::NamedContexts::default(),
        })
    }

    /// The stage that `name` (a `COPY --from` or `RUN --mount from=` value) names when read
    /// from stage `current`: a stage's `AS` name (case-insensitive), or the index of an earlier
    /// stage. `None` means it names an image.
    pub fn stage_ref(&self, name: &str, current: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < current))
            .filter(|i| self.replaced_stage(*i).is_none())
    }

    /// The `--build-context` image that stands in for stage `i`, when one does.
    fn replaced_stage(&self, i: usize) -> Option<String> {
        self.named.image_for(self.stages.get(i)?.name.as_deref()?)
    }

    /// The image a `--from` value reads when it is not a stage: the `--build-context` image for
    /// it (or for the stage it names), else the value itself.
    pub fn image_for_from(&self, name: &str, current: usize) -> String {
        let lower = name.to_ascii_lowercase();
        let stage = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < current));
        stage
            .and_then(|i| self.replaced_stage(i))
            .or_else(|| self.named.image_for(name))
            .unwrap_or_else(|| name.to_string())
    }

    /// Whether stage `i` is built for the chosen targets.
    pub fn is_needed(&self, i: usize) -> bool {
        self.order.contains(&i)
    }
}

/// What a `--from` value names.
enum StageRef {
    Stage(usize),
    Forward,
    Image,
}

fn resolve_stage_ref(name: &str, names: &BTreeMap<String, usize>, current: usize) -> StageRef {
    if let Some(&i) = names.get(&name.to_ascii_lowercase()) {
        return StageRef::Stage(i);
    }
    if let Ok(i) = name.parse::<usize>() {
        return if i < current {
            StageRef::Stage(i)
        } else {
            StageRef::Forward
        };
    }
    StageRef::Image
}

/// BuildKit's predefined proxy ARGs: usable without an `ARG` line and kept out of the cache key
/// and history unless declared.
pub const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The build argument that configures the build checks (the `lint` module), replacing the
/// Dockerfile's `# check=` directive (BuildKit's `build-arg:BUILDKIT_DOCKERFILE_CHECK`); no ARG
/// needs to declare it.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// Whether `name` is one of BuildKit's predefined proxy ARGs (also `ALL_PROXY`).
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name) || name == "ALL_PROXY" || name == "all_proxy"
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Scratch => f.write_str("scratch"),
            Base::Stage(i) => write!(f, "stage {i}"),
            Base::Image(r) => f.write_str(r),
        }
    }
}
