//! Validated options: raw flags turned into ready-to-use values before any work starts.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rbuild_layers::Platform;
use rbuild_registry::Reference;

use super::args::{BuildArgs, PlanArgs};
use super::cache_spec::{CacheExportSpec, CacheImportSpec, CacheSpecError};
use super::output::{OutputSpec, OutputSpecError};
use super::secret::{SecretSpec, SecretSpecError};
use super::values::{host_platform, parse_platform, BuildArg, NetworkMode, ProgressMode};

/// A usage error: bad flags or values (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("the build context {0} is not a directory")]
    ContextNotDir(PathBuf),
    #[error("cannot find the Dockerfile {path}: {source}\n  hint: pass -f/--file PATH, or run rbuild in the directory that holds the Dockerfile")]
    DockerfileMissing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Value(String),
    #[error("invalid --tag {tag:?}: {source}")]
    Tag {
        tag: String,
        #[source]
        source: rbuild_registry::ReferenceError,
    },
    #[error("invalid --output: {0}")]
    Output(#[from] OutputSpecError),
    #[error("invalid cache option: {0}")]
    Cache(#[from] CacheSpecError),
    #[error("invalid --secret: {0}")]
    Secret(#[from] SecretSpecError),
    #[error("--secret id={0} is given twice")]
    DuplicateSecret(String),
    #[error("--platform {0} is not the host's platform ({1}); rbuild builds for the host platform only (no emulation)")]
    ForeignPlatform(String, String),
    #[error(
        "cannot find a store directory: set --store DIR or RBUILD_STORE, or XDG_CACHE_HOME/HOME"
    )]
    NoStore,
}

/// What `check` and `build` both need: which Dockerfile, which targets, which args.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub targets: Vec<String>,
    pub build_args: Vec<BuildArg>,
    pub platform: Platform,
}

/// Everything a build needs, validated.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub plan: PlanOptions,
    pub tags: Vec<Reference>,
    pub outputs: Vec<OutputSpec>,
    pub push: bool,
    pub cache_from: Vec<CacheImportSpec>,
    pub cache_to: Vec<CacheExportSpec>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub secrets: Vec<SecretSpec>,
    pub network: NetworkMode,
    /// `Auto` is resolved here: never `Auto` after validation.
    pub progress: ProgressMode,
    pub metadata_file: Option<PathBuf>,
    pub store: PathBuf,
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl PlanOptions {
    pub fn from_args(a: &PlanArgs) -> Result<Self, UsageError> {
        if !a.context.is_dir() {
            return Err(UsageError::ContextNotDir(a.context.clone()));
        }
        let dockerfile = a
            .file
            .clone()
            .unwrap_or_else(|| a.context.join("Dockerfile"));
        if let Err(source) = std::fs::metadata(&dockerfile) {
            return Err(UsageError::DockerfileMissing {
                path: dockerfile,
                source,
            });
        }
        let build_args = a
            .build_args
            .iter()
            .map(|s| BuildArg::parse(s, env_var))
            .collect::<Result<Vec<_>, _>>()
            .map_err(UsageError::Value)?;
        let host = host_platform();
        let mut platform = host.clone();
        for p in &a.platforms {
            let parsed = parse_platform(p).map_err(UsageError::Value)?;
            if parsed.os != host.os || parsed.architecture != host.architecture {
                return Err(UsageError::ForeignPlatform(
                    p.clone(),
                    super::values::platform_string(&host),
                ));
            }
            platform = parsed;
        }
        Ok(PlanOptions {
            context: a.context.clone(),
            dockerfile,
            targets: a.targets.clone(),
            build_args,
            platform,
        })
    }
}

/// The store directory from `--store`/`RBUILD_STORE`, else the default.
pub fn store_dir(given: Option<&Path>) -> Result<PathBuf, UsageError> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => default_store_dir().ok_or(UsageError::NoStore),
    }
}

/// The default store: `$XDG_CACHE_HOME/rbuild`, else `$HOME/.cache/rbuild`.
pub fn default_store_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(Path::new(&x).join("rbuild"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| Path::new(&h).join(".cache").join("rbuild"))
}

impl BuildOptions {
    pub fn from_args(a: &BuildArgs) -> Result<Self, UsageError> {
        let plan = PlanOptions::from_args(&a.plan)?;
        let tags = a
            .tags
            .iter()
            .map(|t| {
                t.parse::<Reference>().map_err(|source| UsageError::Tag {
                    tag: t.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = a
            .outputs
            .iter()
            .map(|o| o.parse::<OutputSpec>())
            .collect::<Result<Vec<_>, _>>()?;
        // Layers are written once, in the first output's compression (BuildKit reuses layers
        // as they are unless forced); an output that forces another one cannot be honoured.
        if let Some(first) = outputs.first() {
            if let Some(o) = outputs
                .iter()
                .find(|o| o.force_compression && o.compression != first.compression)
            {
                return Err(UsageError::Value(format!(
                    "--output: force-compression asks for {:?} layers but the first --output writes {:?}; rbuild writes each layer once: give every --output the same compression",
                    o.compression, first.compression
                )));
            }
        }
        let cache_from = a
            .cache_from
            .iter()
            .map(|s| CacheImportSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_to = a
            .cache_to
            .iter()
            .map(|s| CacheExportSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut secrets: Vec<SecretSpec> = Vec::new();
        for s in &a.secrets {
            let spec = SecretSpec::parse(s, |k| std::env::var_os(k).is_some())?;
            if secrets.iter().any(|x| x.id == spec.id) {
                return Err(UsageError::DuplicateSecret(spec.id));
            }
            secrets.push(spec);
        }
        let progress = match (a.quiet, a.progress) {
            (true, _) => ProgressMode::Quiet,
            (false, ProgressMode::Auto) if std::io::stderr().is_terminal() => ProgressMode::Tty,
            (false, ProgressMode::Auto) => ProgressMode::Plain,
            (false, p) => p,
        };
        let store = store_dir(a.store.as_deref())?;
        Ok(BuildOptions {
            plan,
            tags,
            outputs,
            push: a.push,
            cache_from,
            cache_to,
            no_cache: a.no_cache,
            no_cache_filter: a.no_cache_filter.clone(),
            secrets,
            network: a.network,
            progress,
            metadata_file: a.metadata_file.clone(),
            store,
        })
    }
}
