//! Validated options: raw flags turned into ready-to-use values before any work starts.
//!
//! Every path from the command line (context, `-f`, `--store`, `--secret src=`, `--output
//! dest=`, `--cache-to/--cache-from type=local`, `--metadata-file`, `--registry-ca`) is made
//! absolute here, once, against the working directory (see [`absolute`]); nothing past this
//! module sees a relative path. A relative path would otherwise mean another file to the RUN
//! sandbox helper, which opens secret sources and cache-mount directories after `chdir`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rbuild_layers::Platform;
use rbuild_registry::Reference;

use super::args::{BuildArgs, PlanArgs};
use super::cache_spec::{
    CacheExportSpec, CacheExportTarget, CacheImportSource, CacheImportSpec, CacheSpecError,
};
use super::output::{Destination, OutputKind, OutputSpec, OutputSpecError};
use super::secret::{SecretSource, SecretSpec, SecretSpecError};
use super::ssh::{SshSpec, SshSpecError};
use super::stdin::{materialise, uses_stdin, StdinInputs};
use super::values::{BuildArg, IsolationMode, NetworkMode, ProgressMode};
use crate::graph::platform::{host_platform, parse_platform};

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
    #[error(transparent)]
    Stdin(#[from] super::stdin::StdinError),
    #[error(transparent)]
    GitContext(#[from] super::git_context::GitContextError),
    #[error(transparent)]
    NamedContext(#[from] crate::graph::named::NamedContextError),
    #[error(transparent)]
    FetchContext(#[from] super::named_context::FetchContextError),
    #[error(transparent)]
    UrlContext(#[from] super::url_context::UrlContextError),
    #[error("opening the store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: rbuild_layers::store::StoreError,
    },
    #[error(transparent)]
    Annotation(#[from] super::annotation::AnnotationError),
    #[error("invalid --ssh: {0}")]
    Ssh(#[from] SshSpecError),
    #[error("--platform {0} is given twice")]
    DuplicatePlatform(String),
    #[error(
        "cannot find a store directory: set --store DIR or RBUILD_STORE, or XDG_CACHE_HOME/HOME"
    )]
    NoStore,
    #[error("cannot make the path {path:?} absolute (is the working directory still there?)")]
    Absolute {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `path` made absolute against the working directory. Symlinks and `..` are left as they are
/// (`std::path::absolute`, not `canonicalize`): the path keeps the meaning the user's shell
/// gave it, and a store or output that does not exist yet can still be named.
pub fn absolute(path: &Path) -> Result<PathBuf, UsageError> {
    std::path::absolute(path).map_err(|source| UsageError::Absolute {
        path: path.to_path_buf(),
        source,
    })
}

/// What `check` and `build` both need: which Dockerfile, which targets, which args.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    /// What standard input became (`-f -`, context `-`): owns the files `context` or
    /// `dockerfile` then point at, removed when the last clone of these options is dropped.
    pub stdin: Option<std::sync::Arc<StdinInputs>>,
    /// A git URL context, checked out: owns the files `context` points at.
    pub git_context: Option<std::sync::Arc<super::git_context::GitContext>>,
    /// A tarball URL context, downloaded: owns the files `context` (and maybe `dockerfile`)
    /// point at.
    pub url_context: Option<std::sync::Arc<super::url_context::UrlContext>>,
    /// `--build-context` values (git and HTTP ones fetched into directories).
    pub named_contexts: crate::graph::named::NamedContexts,
    /// The fetched git and HTTP `--build-context`s: own the directories they point at.
    pub fetched_contexts: Vec<std::sync::Arc<super::named_context::Fetched>>,
    pub targets: Vec<String>,
    pub build_args: Vec<BuildArg>,
    /// The target platforms (`--platform`, `local` being the host's), in the order given,
    /// never empty: the host's when none is given. One image per platform; several make an
    /// image index per target.
    pub platforms: Vec<Platform>,
    /// Whether `--platform` was given: then each image's config says its target platform, as
    /// BuildKit writes it when the target is explicit (else the config keeps its base's).
    pub platforms_given: bool,
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
    /// `--ssh` agents (sockets, absolute), for `RUN --mount=type=ssh`.
    pub ssh: Vec<SshSpec>,
    pub network: NetworkMode,
    /// `--isolation`, as the engine takes it.
    pub isolation: crate::executor::isolation::Isolation,
    /// `Auto` is resolved here: never `Auto` after validation.
    pub progress: ProgressMode,
    pub metadata_file: Option<PathBuf>,
    /// `--label`s, in order (a later one of the same key wins).
    pub labels: Vec<(String, String)>,
    /// `--annotation`s that apply to this build's images (see `cli::annotation`), one set per
    /// platform, in `plan.platforms`' order.
    pub annotations: Vec<crate::export::annotation::UserAnnotations>,
    /// `--iidfile`, absolute.
    pub iidfile: Option<PathBuf>,
    /// `--sbom`, `--provenance`, `--attest`, with buildx's defaults.
    pub attest: crate::attest::AttestRequest,
    /// `--pull`: every base from its registry.
    pub pull: bool,
    /// `--add-host`, parsed.
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// `--shm-size` in bytes (`None` when not given or 0, as Docker's "unset").
    pub shm_size: Option<u64>,
    /// `--ulimit`s, a later one of a name replacing an earlier, sorted by name.
    pub ulimits: Vec<crate::executor::limits::Ulimit>,
    pub store: PathBuf,
    /// The working directory when rbuild started, against which `FROM oci-layout://DIR`
    /// (a path in the Dockerfile) is resolved.
    pub workdir: PathBuf,
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl PlanOptions {
    /// `store` is `--store` (if the command has one): standard input, when it is read, is
    /// unpacked in a scratch directory there.
    pub fn from_args(a: &PlanArgs, store: Option<&Path>) -> Result<Self, UsageError> {
        let stdin = if uses_stdin(&a.context, a.file.as_deref()) {
            let root = store_dir(store)?;
            materialise(
                &a.context,
                a.file.as_deref(),
                std::io::stdin().lock(),
                || rbuild_layers::store::Store::scratch_dir_at(&root, "stdin"),
            )?
            .map(std::sync::Arc::new)
        } else {
            None
        };
        // A git URL (buildx: only when no local directory has that name) is checked out.
        let word = a.context.to_string_lossy();
        let git_context = if stdin.is_none()
            && !a.context.is_dir()
            && super::git_context::is_remote(&word)
            && !super::url_context::is_url_context(&word)
        {
            let root = store_dir(store)?;
            Some(std::sync::Arc::new(super::git_context::materialise(
                &word,
                || rbuild_layers::store::Store::scratch_dir_at(&root, "gitcontext"),
            )?))
        } else {
            None
        };
        // A tarball URL (buildx: any other http(s) URL) is downloaded and unpacked.
        let url_context = if stdin.is_none()
            && git_context.is_none()
            && !a.context.is_dir()
            && super::url_context::is_url_context(&word)
        {
            let root = store_dir(store)?;
            let st =
                rbuild_layers::store::Store::open(&root).map_err(|source| UsageError::Store {
                    path: root.clone(),
                    source,
                })?;
            Some(std::sync::Arc::new(super::url_context::materialise(
                &word,
                a.file.as_deref(),
                &st,
            )?))
        } else {
            None
        };
        let context = match (
            stdin.as_ref().and_then(|s| s.context.clone()),
            &git_context,
            &url_context,
        ) {
            (Some(c), _, _) => c,
            (None, Some(g), _) => g.dir.clone(),
            (None, None, Some(u)) => u.context.clone(),
            (None, None, None) => absolute(&a.context)?,
        };
        if !context.is_dir() {
            return Err(UsageError::ContextNotDir(a.context.clone()));
        }
        let given = stdin
            .as_ref()
            .and_then(|s| s.dockerfile.clone())
            .or_else(|| url_context.as_ref().and_then(|u| u.dockerfile.clone()));
        let dockerfile = match (given, &a.file) {
            (Some(d), _) => d,
            // With a git context, a relative -f names a file of the repository, as in buildx.
            (None, Some(f)) if git_context.is_some() && f.is_relative() => context.join(f),
            (None, Some(f)) => absolute(f)?,
            (None, None) => context.join("Dockerfile"),
        };
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
        let platforms = target_platforms(&a.platforms)?;
        let platforms_given = a.platforms.iter().any(|p| !p.trim().is_empty());
        let cwd = absolute(Path::new("."))?;
        let mut named_contexts =
            crate::graph::named::NamedContexts::parse(&a.build_contexts, &cwd)?;
        let fetched_contexts = if named_contexts.remote().is_empty() {
            Vec::new()
        } else {
            let root = store_dir(store)?;
            super::named_context::fetch_all(&mut named_contexts, &root)?
        };
        Ok(PlanOptions {
            context,
            dockerfile,
            stdin,
            git_context,
            url_context,
            named_contexts,
            fetched_contexts,
            targets: a.targets.clone(),
            build_args,
            platforms,
            platforms_given,
        })
    }
}

/// `--platform` values (comma-separated, repeatable; `local` is the host's, as in buildx),
/// normalised; the host's when none is given. A platform named twice is refused (buildx
/// refuses duplicates too: it would be two images with one platform in an index).
fn target_platforms(given: &[String]) -> Result<Vec<Platform>, UsageError> {
    let mut platforms: Vec<Platform> = Vec::new();
    for p in given.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let parsed = if p == "local" {
            host_platform()
        } else {
            parse_platform(p).map_err(UsageError::Value)?
        };
        if platforms.contains(&parsed) {
            return Err(UsageError::DuplicatePlatform(
                crate::graph::platform::platform_string(&parsed),
            ));
        }
        platforms.push(parsed);
    }
    if platforms.is_empty() {
        platforms.push(host_platform());
    }
    Ok(platforms)
}

impl PlanOptions {
    /// The Dockerfile's name in messages: `stdin` when its text came from standard input (its
    /// file is a temporary one), else its path.
    pub fn dockerfile_shown(&self) -> String {
        match &self.stdin {
            Some(s) if s.dockerfile_is_stdin => "stdin".to_string(),
            _ => self.dockerfile.display().to_string(),
        }
    }

    /// Whether the context came from standard input or a tarball URL (a scratch directory
    /// under the store: it has no git metadata of its own).
    pub fn context_is_stdin(&self) -> bool {
        self.stdin.as_ref().is_some_and(|s| s.context.is_some()) || self.url_context.is_some()
    }
}

/// The store directory from `--store`/`RBUILD_STORE`, else the default; absolute.
pub fn store_dir(given: Option<&Path>) -> Result<PathBuf, UsageError> {
    match given {
        Some(p) => absolute(p),
        // `$XDG_CACHE_HOME/rbuild`, else `$HOME/.cache/rbuild` (the store's own rule: a
        // relative XDG_CACHE_HOME is ignored, as the XDG spec says).
        None => rbuild_layers::store::Store::default_dir().map_err(|_| UsageError::NoStore),
    }
}

/// An `--output` with its `dest=` made absolute.
fn absolute_output(mut o: OutputSpec) -> Result<OutputSpec, UsageError> {
    match &mut o.kind {
        OutputKind::Oci(Destination::Directory(p) | Destination::Tarball(p))
        | OutputKind::Docker(Destination::Directory(p) | Destination::Tarball(p))
        | OutputKind::Tar(Destination::Directory(p) | Destination::Tarball(p))
        | OutputKind::Local(p) => *p = absolute(p)?,
        OutputKind::Oci(Destination::Stdout | Destination::Engine)
        | OutputKind::Docker(Destination::Stdout | Destination::Engine)
        | OutputKind::Tar(Destination::Stdout | Destination::Engine)
        | OutputKind::Registry { .. } => {}
    }
    Ok(o)
}

/// A `--cache-to` with its `type=local,dest=` made absolute.
fn absolute_cache_to(mut c: CacheExportSpec) -> Result<CacheExportSpec, UsageError> {
    if let CacheExportTarget::Local(p) = &mut c.target {
        *p = absolute(p)?;
    }
    Ok(c)
}

/// A `--cache-from` with its `type=local,src=` made absolute.
fn absolute_cache_from(mut c: CacheImportSpec) -> Result<CacheImportSpec, UsageError> {
    if let CacheImportSource::Local(p) = &mut c.source {
        *p = absolute(p)?;
    }
    Ok(c)
}

/// A `--secret` with its `src=` file made absolute.
fn absolute_secret(mut s: SecretSpec) -> Result<SecretSpec, UsageError> {
    if let SecretSource::File(p) = &mut s.source {
        *p = absolute(p)?;
    }
    Ok(s)
}

/// A `--label`: `KEY=VALUE`, or `KEY` alone for an empty value (buildx's reading).
fn parse_label(l: &str) -> Result<(String, String), UsageError> {
    let (k, v) = l.split_once('=').unwrap_or((l, ""));
    if k.is_empty() {
        return Err(UsageError::Value(format!(
            "invalid --label {l:?}: the key is empty; use --label KEY=VALUE"
        )));
    }
    Ok((k.to_string(), v.to_string()))
}

/// An `--add-host`: `HOST:IP` (split at the first `:`, so an IPv6 address may follow) or
/// `HOST=IP`, the IP possibly in brackets, as Docker's CLI reads it. `host-gateway` (Docker's
/// engine's bridge address) has no meaning without an engine: refused.
fn parse_extra_host(h: &str) -> Result<(String, std::net::IpAddr), UsageError> {
    let bad = |why: &str| {
        UsageError::Value(format!(
            "invalid --add-host {h:?}: {why}; use --add-host HOST:IP (e.g. registry.local:10.0.0.5)"
        ))
    };
    let (host, ip) = h
        .split_once('=')
        .or_else(|| h.split_once(':'))
        .ok_or_else(|| bad("no ':' between the host and its address"))?;
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(bad("the host name is empty or has spaces"));
    }
    if ip == "host-gateway" {
        return Err(bad(
            "host-gateway names a Docker engine's bridge address, and rbuild runs without an engine",
        ));
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    let ip = ip
        .parse()
        .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
    Ok((host.to_string(), ip))
}

/// `--progress auto` (given or the default) takes `BUILDKIT_PROGRESS` when it is set, as buildx
/// does (`util/progress/printer.go`); any other `--progress` wins over it.
fn progress_from_env(flag: ProgressMode, env: Option<&str>) -> Result<ProgressMode, UsageError> {
    use clap::ValueEnum;
    match env {
        Some(v) if flag == ProgressMode::Auto && !v.is_empty() => {
            ProgressMode::from_str(v, false).map_err(|_| {
                UsageError::Value(format!(
                    "BUILDKIT_PROGRESS={v:?} is not a progress mode: use auto, plain, tty, json, rawjson, quiet or none (or unset it)"
                ))
            })
        }
        _ => Ok(flag),
    }
}

/// A tarball output whose `dest` is an existing directory, or a directory output whose `dest`
/// is an existing file, is refused before building, as buildx refuses them (`CreateExports`).
fn check_destinations(outputs: &[OutputSpec]) -> Result<(), UsageError> {
    for o in outputs {
        let (path, wants_dir) = match &o.kind {
            OutputKind::Oci(Destination::Tarball(p))
            | OutputKind::Docker(Destination::Tarball(p))
            | OutputKind::Tar(Destination::Tarball(p)) => (p, false),
            OutputKind::Oci(Destination::Directory(p))
            | OutputKind::Docker(Destination::Directory(p))
            | OutputKind::Tar(Destination::Directory(p))
            | OutputKind::Local(p) => (p, true),
            _ => continue,
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() && !wants_dir => {
                return Err(UsageError::Value(format!(
                    "--output: destination file {} is a directory; give a file name (dest=DIR/image.tar)",
                    path.display()
                )))
            }
            Ok(m) if !m.is_dir() && wants_dir => {
                return Err(UsageError::Value(format!(
                    "--output: destination directory {} is a file; give a directory",
                    path.display()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// At most one output may write to standard output, and not when it is a terminal: buildx's
/// rules (`build/opt.go`, `CreateExports`), with its reasons in the messages.
fn check_stdout(outputs: &[OutputSpec], stdout_is_terminal: bool) -> Result<(), UsageError> {
    let mut to_stdout = outputs.iter().filter(|o| o.kind.is_stdout());
    let Some(first) = to_stdout.next() else {
        return Ok(());
    };
    if to_stdout.next().is_some() {
        return Err(UsageError::Value(
            "--output: multiple outputs configured to write to stdout; give all but one a dest=FILE".into(),
        ));
    }
    if stdout_is_terminal {
        let kind = match first.kind {
            OutputKind::Oci(_) => "oci",
            OutputKind::Docker(_) => "docker",
            _ => "tar",
        };
        return Err(UsageError::Value(format!(
            "--output: dest file is required for the {kind} exporter, refusing to write a tar to the terminal; give dest=FILE or redirect standard output (> file, | tar -t)"
        )));
    }
    Ok(())
}

/// `--shm-size` with `--isolation chroot` or `in-place` (chosen, not probed): refused before
/// anything is built, since chroot mode's `/dev/shm` is a directory and in-place mode's the
/// container's own (`auto` resolving to chroot is refused at the first RUN, by the engine).
fn check_shm_size(shm_size: Option<u64>, isolation: IsolationMode) -> Result<(), UsageError> {
    let non_default = shm_size.is_some_and(|s| s != crate::executor::limits::DEFAULT_SHM_SIZE);
    let why = match isolation {
        IsolationMode::Chroot => "/dev/shm is a directory of the step's private root there",
        IsolationMode::InPlace => "/dev/shm is the container's own there",
        _ => return Ok(()),
    };
    if non_default {
        return Err(UsageError::Value(format!(
            "--shm-size cannot be honoured with --isolation {}: {why}, and a tmpfs of that size needs CAP_SYS_ADMIN; use --isolation namespaces (or rootless), or drop --shm-size",
            isolation.to_engine_mode_name()
        )));
    }
    Ok(())
}

/// `--allow` (buildx's entitlements): `network.host` is what rbuild always permits (a `RUN
/// --network=host` step); `security.insecure` would run steps outside the sandbox, which rbuild
/// never does — refused, so that nothing is built differently from what was asked.
fn check_entitlements(allow: &[String]) -> Result<(), UsageError> {
    for e in allow.iter().flat_map(|a| a.split(',')).map(str::trim) {
        match e {
            "" | "network.host" => {}
            "security.insecure" => {
                return Err(UsageError::Value(
                    "--allow security.insecure: rbuild runs every RUN step in its sandbox and grants no insecure entitlement; remove the flag (and any RUN --security=insecure)".into(),
                ))
            }
            other => {
                return Err(UsageError::Value(format!(
                    "--allow {other}: unknown entitlement (buildx's are network.host and security.insecure)"
                )))
            }
        }
    }
    Ok(())
}

/// The `--annotation`s for the image of each platform (in `platforms`' order). Every build
/// writes an image (to the store at least) unless all its outputs are `type=local` or
/// `type=tar`.
fn annotations(
    a: &BuildArgs,
    platforms: &[Platform],
    outputs: &[OutputSpec],
) -> Result<Vec<crate::export::annotation::UserAnnotations>, UsageError> {
    use super::annotation::{parse, resolve};
    let parsed = a
        .annotations
        .iter()
        .map(|f| parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    let writes_image = outputs.is_empty()
        || outputs
            .iter()
            .any(|o| !matches!(o.kind, OutputKind::Local(_) | OutputKind::Tar(_)));
    let parsed = parsed.concat();
    let writes_index = platforms.len() > 1;
    platforms
        .iter()
        .map(|p| Ok(resolve(&parsed, p, writes_image, writes_index)?))
        .collect()
}

/// `--iidfile` names one image: refused (as buildx does) with outputs that write no image,
/// and with several targets, whose IDs `--metadata-file` gives.
fn check_iidfile(plan: &PlanOptions, outputs: &[OutputSpec]) -> Result<(), UsageError> {
    if outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Local(_) | OutputKind::Tar(_)))
    {
        return Err(UsageError::Value(
            "--iidfile: the local and tar exporters are incompatible with an image ID file (they write no image); use --output type=oci or type=docker, or drop --iidfile".into(),
        ));
    }
    if plan.targets.len() > 1 {
        return Err(UsageError::Value(
            "--iidfile names one image, and this build has several targets: use --metadata-file, which gives each target's containerimage.config.digest".into(),
        ));
    }
    Ok(())
}

impl BuildOptions {
    /// Whether the images get Docker schema2 media types: an output says `oci-mediatypes=false`
    /// (the build's inputs refuse image outputs that disagree, see `commands::build::inputs`).
    pub fn docker_media_types(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| o.oci_media_types == Some(false))
    }

    /// Whether attestation manifests take the OCI artifact form: BuildKit's default with OCI
    /// media types, unless an output says `oci-artifact=false` (outputs agree, as above).
    pub fn oci_artifact(&self) -> bool {
        !self.outputs.iter().any(|o| o.oci_artifact == Some(false))
    }

    pub fn from_args(a: &BuildArgs) -> Result<Self, UsageError> {
        let plan = PlanOptions::from_args(&a.plan, a.store.as_deref())?;
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
        // `--load` is buildx's shorthand for `--output type=docker` (into the engine).
        let load = a.load.then(|| "type=docker".to_string());
        let outputs = a
            .outputs
            .iter()
            .chain(load.iter())
            .map(|o| absolute_output(o.parse::<OutputSpec>()?))
            .collect::<Result<Vec<_>, UsageError>>()?;
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
        check_stdout(&outputs, std::io::stdout().is_terminal())?;
        check_destinations(&outputs)?;
        let shm_size = a.shm_size.map(|s| s.0).filter(|s| *s > 0);
        check_shm_size(shm_size, a.isolation)?;
        let cache_from = a
            .cache_from
            .iter()
            .map(|s| absolute_cache_from(CacheImportSpec::parse(s)?))
            .collect::<Result<Vec<_>, UsageError>>()?;
        let cache_to = a
            .cache_to
            .iter()
            .map(|s| absolute_cache_to(CacheExportSpec::parse(s)?))
            .collect::<Result<Vec<_>, UsageError>>()?;
        let mut secrets: Vec<SecretSpec> = Vec::new();
        for s in &a.secrets {
            let spec = absolute_secret(SecretSpec::parse(s, |k| std::env::var_os(k).is_some())?)?;
            if secrets.iter().any(|x| x.id == spec.id) {
                return Err(UsageError::DuplicateSecret(spec.id));
            }
            secrets.push(spec);
        }
        let cwd = std::env::current_dir().map_err(|source| UsageError::Absolute {
            path: PathBuf::from("."),
            source,
        })?;
        let auth_sock = env_var("SSH_AUTH_SOCK");
        let ssh = SshSpec::parse_all(&a.ssh, auth_sock.as_deref(), &cwd)?;
        let chosen = progress_from_env(a.progress, env_var("BUILDKIT_PROGRESS").as_deref())?;
        let progress = match (a.quiet, chosen) {
            (true, _) => ProgressMode::Quiet,
            (false, ProgressMode::Auto) if std::io::stderr().is_terminal() => ProgressMode::Tty,
            (false, ProgressMode::Auto) => ProgressMode::Plain,
            (false, p) => p,
        };
        let store = store_dir(a.store.as_deref())?;
        let labels = a
            .labels
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<Vec<_>, _>>()?;
        let annotations = annotations(a, &plan.platforms, &outputs)?;
        check_entitlements(&a.allow)?;
        let iidfile = a.iidfile.as_deref().map(absolute).transpose()?;
        if iidfile.is_some() {
            check_iidfile(&plan, &outputs)?;
        }
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
            ssh,
            network: a.network,
            isolation: a.isolation.to_engine(),
            progress,
            metadata_file: a.metadata_file.as_deref().map(absolute).transpose()?,
            labels,
            annotations,
            iidfile,
            attest: super::attest::attest_request(
                &a.attest,
                a.sbom.as_deref(),
                a.provenance.as_deref(),
                std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS")
                    .ok()
                    .as_deref(),
            )?,
            pull: a.pull,
            extra_hosts: a
                .add_hosts
                .iter()
                .map(|h| parse_extra_host(h))
                .collect::<Result<_, _>>()?,
            shm_size,
            ulimits: crate::executor::limits::normalise(
                a.ulimits
                    .iter()
                    .map(|u| {
                        u.parse()
                            .map_err(|e| UsageError::Value(format!("invalid --ulimit {u:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            store,
            workdir: std::env::current_dir().map_err(|source| UsageError::Absolute {
                path: PathBuf::from("."),
                source,
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_is_read_as_dockers_cli_reads_it() {
        let ok = |s: &str| parse_extra_host(s).unwrap();
        assert_eq!(
            ok("myhost:10.1.2.3"),
            ("myhost".into(), "10.1.2.3".parse().unwrap())
        );
        // The first ':' splits: an IPv6 address may follow, bare or in brackets.
        assert_eq!(
            ok("other:fe80::1"),
            ("other".into(), "fe80::1".parse().unwrap())
        );
        assert_eq!(ok("v6=[::1]"), ("v6".into(), "::1".parse().unwrap()));
        for bad in [
            "nohost",
            ":1.2.3.4",
            "h:not-an-ip",
            "h:host-gateway",
            "a b:1.2.3.4",
        ] {
            assert!(parse_extra_host(bad).is_err(), "{bad}");
        }
    }

    /// The words of the usage errors of buildx's flags (`-o -`, stdin, `--shm-size`,
    /// `--ulimit`, `BUILDKIT_PROGRESS`), as users see them after `error: `.
    #[test]
    fn buildx_flag_usage_errors_golden() {
        use crate::cli::stdin::StdinError;
        use crate::executor::limits::Ulimit;
        let o = |s: &str| s.parse::<OutputSpec>().unwrap();
        let mut m: Vec<String> = vec![
            check_stdout(&[o("-"), o("type=oci")], false)
                .unwrap_err()
                .to_string(),
            check_stdout(&[o("-")], true).unwrap_err().to_string(),
            "type=tarball"
                .parse::<OutputSpec>()
                .unwrap_err()
                .to_string(),
            check_shm_size(Some(1 << 30), IsolationMode::Chroot)
                .unwrap_err()
                .to_string(),
            "64x".parse::<super::super::values::MemBytes>().unwrap_err(),
            progress_from_env(ProgressMode::Auto, Some("fancy"))
                .unwrap_err()
                .to_string(),
        ];
        for u in [
            "nofile",
            "files=1",
            "nofile=x",
            "nofile=1:2:3",
            "nofile=10:5",
        ] {
            m.push(u.parse::<Ulimit>().unwrap_err().to_string());
        }
        for e in [
            StdinError::Both,
            StdinError::Ambiguous("Dockerfile".into()),
            StdinError::Empty,
            StdinError::TooLarge,
            StdinError::FileOutside("../x".into()),
        ] {
            m.push(e.to_string());
        }
        insta::assert_snapshot!(m.join("\n"));
    }

    #[test]
    fn a_tarball_onto_a_directory_or_a_directory_onto_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let spec = |s: String| absolute_output(s.parse().unwrap()).unwrap();
        let d = dir.path().display();
        for bad in [
            format!("type=tar,dest={d}"),
            format!("type=oci,dest={d}"),
            format!("type=local,dest={d}/f"),
            format!("type=oci,tar=false,dest={d}/f"),
        ] {
            assert!(check_destinations(&[spec(bad.clone())]).is_err(), "{bad}");
        }
        for good in [
            format!("type=tar,dest={d}/f"),
            format!("type=tar,dest={d}/new.tar"),
            format!("type=local,dest={d}"),
            format!("type=local,dest={d}/new"),
        ] {
            assert!(check_destinations(&[spec(good.clone())]).is_ok(), "{good}");
        }
    }

    #[test]
    fn buildkit_progress_is_the_default_of_progress_auto_only() {
        use ProgressMode as P;
        let env = |v: Option<&str>| progress_from_env(P::Auto, v).unwrap();
        assert_eq!(env(Some("rawjson")), P::Rawjson);
        assert_eq!(env(Some("plain")), P::Plain);
        assert_eq!(env(Some("none")), P::None);
        assert_eq!(env(Some("")), P::Auto);
        assert_eq!(env(None), P::Auto);
        assert_eq!(progress_from_env(P::Tty, Some("rawjson")).unwrap(), P::Tty);
        let e = progress_from_env(P::Auto, Some("fancy")).unwrap_err();
        assert!(e.to_string().contains("BUILDKIT_PROGRESS"), "{e}");
    }

    #[test]
    fn a_non_default_shm_size_is_refused_in_chroot_mode_only() {
        let mib = |n: u64| Some(n << 20);
        assert!(check_shm_size(mib(128), IsolationMode::Namespaces).is_ok());
        assert!(check_shm_size(mib(128), IsolationMode::Auto).is_ok());
        assert!(check_shm_size(mib(64), IsolationMode::Chroot).is_ok());
        assert!(check_shm_size(None, IsolationMode::Chroot).is_ok());
        let e = check_shm_size(mib(128), IsolationMode::Chroot).unwrap_err();
        assert!(e.to_string().contains("--isolation chroot"), "{e}");
    }

    #[test]
    fn one_output_on_stdout_and_never_to_a_terminal() {
        let o = |s: &str| s.parse::<OutputSpec>().unwrap();
        assert!(check_stdout(&[o("-"), o("type=oci,dest=x.tar")], false).is_ok());
        assert!(check_stdout(&[o("type=local,dest=d")], true).is_ok());
        let two = check_stdout(&[o("-"), o("type=oci,dest=-")], false).unwrap_err();
        assert!(two.to_string().contains("multiple outputs"), "{two}");
        let tty = check_stdout(&[o("type=tar")], true).unwrap_err();
        assert!(tty.to_string().contains("refusing to write"), "{tty}");
        assert!(tty.to_string().contains("tar exporter"), "{tty}");
        let tty = check_stdout(&[o("type=docker,dest=-")], true).unwrap_err();
        assert!(tty.to_string().contains("docker exporter"), "{tty}");
    }

    #[test]
    fn relative_output_cache_and_secret_paths_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let out = absolute_output("type=local,dest=out".parse().unwrap()).unwrap();
        assert_eq!(out.kind, OutputKind::Local(cwd.join("out")));
        let out = absolute_output("fs".parse().unwrap()).unwrap();
        assert_eq!(out.kind, OutputKind::Local(cwd.join("fs")));
        let out = absolute_output("type=tar,dest=fs.tar".parse().unwrap()).unwrap();
        assert_eq!(
            out.kind,
            OutputKind::Tar(Destination::Tarball(cwd.join("fs.tar")))
        );
        let out = absolute_output("type=oci,dest=o/x.tar".parse().unwrap()).unwrap();
        assert_eq!(
            out.kind,
            OutputKind::Oci(Destination::Tarball(cwd.join("o/x.tar")))
        );
        let to = absolute_cache_to(CacheExportSpec::parse("type=local,dest=c").unwrap()).unwrap();
        assert_eq!(to.target, CacheExportTarget::Local(cwd.join("c")));
        let from =
            absolute_cache_from(CacheImportSpec::parse("type=local,src=../c").unwrap()).unwrap();
        // `..` is kept: made absolute, not canonicalized through symlinks.
        assert_eq!(from.source, CacheImportSource::Local(cwd.join("../c")));
        let secret = absolute_secret(SecretSpec::parse("id=x,src=s.txt", |_| false).unwrap());
        assert!(matches!(secret.unwrap().source, SecretSource::File(p) if p == cwd.join("s.txt")));
        assert_eq!(store_dir(Some(Path::new("s2"))).unwrap(), cwd.join("s2"));
    }
}
