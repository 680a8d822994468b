//! Raw command-line arguments as clap sees them (before validation).
//!
//! `rbuild [build] [CONTEXT]`: `build` is the default subcommand, so the build flags are accepted
//! at the top level too (`rbuild --target production --tag $(git rev-parse HEAD)`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::values::{ByteSize, IsolationMode, MemBytes, NetworkMode, ProgressMode};

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the build failed (a step failed, a registry or I/O error)
  2  usage error or invalid Dockerfile/.dockerignore (nothing was built)

Outputs: for --output type=oci and type=docker, dest is a tarball (- for standard output), as
docker buildx build writes it; add tar=false for an OCI image layout directory. -o DIR means
type=local,dest=DIR; -o - means type=tar (the filesystem as one tar) on standard output.";

#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    about = "A daemonless, BuildKit-style container image builder",
    args_conflicts_with_subcommands = true,
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub build: BuildArgs,
}

// Parsed once per process; boxing the build flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build images from a Dockerfile (the default command).
    #[command(after_help = EXIT_CODES_HELP)]
    Build(BuildArgs),
    /// Parse and validate the Dockerfile and print the build plan, without building.
    #[command(after_help = EXIT_CODES_HELP)]
    Check(CheckArgs),
    /// Show the last build of a Dockerfile: each step, whether it was cached, and why not.
    Explain(ExplainArgs),
    /// Remove what no tag or cache record keeps, least recently used first.
    Prune(PruneArgs),
    /// Show what the store holds.
    Du(StoreArgs),
    /// Verify every blob in the store (removing corrupt ones) and every tag's image.
    Fsck(StoreArgs),
    /// Log in to a registry: checks the credentials and stores them in Docker's config.json.
    Login(LoginArgs),
    /// Show how RUN steps of each platform run here (natively, or under which QEMU emulator),
    /// or register the QEMU emulators (`--install`, as root) for multi-platform builds.
    Binfmt(BinfmtArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BinfmtArgs {
    /// Register the QEMU user-mode emulators that Debian's qemu-user-static describes
    /// (/usr/lib/binfmt.d/qemu-*.conf) in binfmt_misc, with the F (fix-binary) flag rbuild
    /// needs; mounts binfmt_misc first when it is not mounted. Needs root.
    #[arg(long)]
    pub install: bool,

    /// Architectures (arm64, arm, ppc64le, s390x, riscv64, …; default: all that are known, or
    /// with --install all that the package describes).
    #[arg(value_name = "ARCH")]
    pub arches: Vec<String>,
}

/// How registries are reached (shared by `build` and `login`).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Allow plain HTTP for this registry (HOST[:PORT]; repeatable). localhost and 127.0.0.0/8
    /// are always allowed, after HTTPS is tried, as Docker does.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// Trust this CA certificate (PEM) for one registry: HOST[:PORT]=FILE (repeatable).
    #[arg(long = "registry-ca", value_name = "HOST=FILE")]
    pub registry_cas: Vec<String>,

    /// `--tls-verify=false` (buildah's flag): accept a registry's HTTPS certificate even when it
    /// cannot be verified (self-signed, wrong name, expired); warned about once per registry.
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: Option<bool>,

    /// kaniko's flag: pull docker.io images from this mirror first (HOST[:PORT][/PATH];
    /// repeatable, tried in order, then docker.io itself). Pushes never go to a mirror.
    #[arg(long = "registry-mirror", value_name = "HOST[/PATH]")]
    pub registry_mirrors: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct LoginArgs {
    /// The registry host (HOST[:PORT]); default Docker Hub.
    #[arg(value_name = "REGISTRY", default_value = "docker.io")]
    pub registry: String,

    /// User name.
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: String,

    /// Read the password from standard input (the only way: a password on the command line
    /// would be visible to every process).
    #[arg(long = "password-stdin", required = true)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub registry_opts: RegistryArgs,
}

/// The store option, for commands that only need the store.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The local store (layers, cache) [default: $XDG_CACHE_HOME/rbuild].
    #[arg(long, env = "RBUILD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    /// Keep up to this much data (e.g. 10GB); without it, remove everything unreferenced.
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<ByteSize>,
    /// Also remove cache records and then `RUN --mount=type=cache` directories (tags are kept).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Flags that choose the Dockerfile and what to build from it (shared by `build` and `check`).
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// The build context directory; `-` reads standard input: a tar of the context, or else
    /// the Dockerfile (with an empty context), as buildx does.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,

    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from standard input. With the
    /// context `-` (a tar), a path inside that archive.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// An image standing in for NAME wherever the Dockerfile names it (FROM NAME, COPY
    /// --from=NAME, a stage AS NAME), as buildx: NAME=docker-image://REF or
    /// NAME=oci-layout://DIR[:TAG] (repeatable).
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,

    /// A stage to build; repeat to build several targets in one run (default: the last stage).
    #[arg(long = "target", value_name = "STAGE")]
    pub targets: Vec<String>,

    /// A build-time variable: KEY=VALUE, or KEY to take the value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Target platform(s), os/arch[/variant] or `local` (the host's), comma-separated and
    /// repeatable (default: the host's). Several make one image index per target; RUN steps
    /// of a foreign platform run under QEMU user emulation registered in binfmt_misc (see
    /// `rbuild binfmt`).
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// How the base images' registries are reached (the checks read their configs).
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Name and tag for the image (repeatable); with several targets see the README's tag rule.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// Output: type=oci|docker|registry|image|local|tar,dest=…,… (repeatable); `-o DIR` is
    /// type=local,dest=DIR and `-o -` is type=tar on standard output, as in buildx.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,

    /// Push every --tag that names a registry (shorthand for --output type=registry).
    #[arg(long)]
    pub push: bool,

    /// Load the image into the Docker Engine DOCKER_HOST names (or /var/run/docker.sock), as
    /// `docker buildx build --load`: shorthand for --output type=docker.
    #[arg(long)]
    pub load: bool,

    /// A label in the image config: KEY=VALUE, or KEY for an empty value (repeatable). It wins
    /// over a Dockerfile LABEL of the same key, as `docker buildx build --label` does.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// An OCI annotation on the image: [TYPE:]KEY=VALUE (repeatable), as `docker buildx build
    /// --annotation`. TYPE is manifest (the default: in the manifest, so in its digest) or
    /// manifest-descriptor (the index.json entry of an oci/docker output), comma-separated for
    /// both, each optionally with [os/arch] to apply only to that platform's image; index and
    /// index-descriptor (the image index of a build for several platforms) are refused for a
    /// single platform, which writes no index. Never in a cache key.
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,

    /// Attach an SBOM (SPDX, from the image's package databases) to pushed images: true,
    /// false, or KEY=VALUE,… (shorthand for --attest type=sbom,…).
    #[arg(long, value_name = "true|false|KEY=VALUE")]
    pub sbom: Option<String>,

    /// SLSA provenance for pushed images: true (mode=max), false, or mode=min|max (shorthand
    /// for --attest type=provenance,…). Default, as buildx: mode=min, unless
    /// BUILDX_NO_DEFAULT_ATTESTATIONS is true.
    #[arg(long, value_name = "true|false|mode=min|max")]
    pub provenance: Option<String>,

    /// An attestation for pushed images: type=sbom|provenance[,disabled=true][,mode=min|max]
    /// (repeatable). Never on --load images, never changing the image's manifest digest.
    #[arg(long = "attest", value_name = "type=…")]
    pub attest: Vec<String>,

    /// Write the image ID (its config digest, as `docker buildx build --iidfile`) to FILE.
    #[arg(long = "iidfile", value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Resolve every FROM in its registry, even a name built here with --tag, and fail rather
    /// than use a copy pulled earlier when the registry cannot be reached (`docker build --pull`).
    #[arg(long)]
    pub pull: bool,

    /// buildx's builder instance. rbuild has none (every build runs here, in this process): the
    /// name is accepted, so that `docker buildx build` command lines run unchanged, and noted.
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,

    /// An entitlement, as `docker buildx build --allow`: `network.host` (RUN --network=host,
    /// which rbuild always permits) is accepted; `security.insecure` is refused (RUN steps
    /// always run in the sandbox).
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,

    /// Import build cache: type=registry,ref=…, type=local,src=…, or an image reference.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,

    /// Export build cache: type=registry,ref=…|type=local,dest=…|type=inline[,mode=min|max], or
    /// an image reference (type=registry,ref=<it>).
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,

    /// Do not use the cache for any step.
    #[arg(long = "no-cache")]
    pub no_cache: bool,

    /// Do not use the cache for the steps of these stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,

    /// A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VARIABLE (repeatable).
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,

    /// An ssh agent for RUN --mount=type=ssh: default (the agent of $SSH_AUTH_SOCK), ID (the
    /// same agent under another id) or ID=SOCKET (repeatable). Agent sockets only: key files
    /// are refused (load them with ssh-add).
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,

    /// A line of RUN steps' /etc/hosts: HOST:IP (or HOST=IP; repeatable), as in `docker buildx
    /// build --add-host`. Never in the image; part of every RUN's cache key.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,

    /// The size of RUN steps' /dev/shm: bytes, or with a k, m or g suffix (1024-based, as
    /// docker: 64m). Not in the image; part of every RUN's cache key. Refused in chroot mode.
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<MemBytes>,

    /// A resource limit of RUN steps: TYPE=SOFT[:HARD] (repeatable; docker's names: nofile,
    /// nproc, core, cpu, data, fsize, locks, memlock, msgqueue, nice, rss, rtprio, rttime,
    /// sigpending, stack, and as; -1 is unlimited). Not in the image; part of every RUN's key.
    #[arg(long = "ulimit", value_name = "TYPE=SOFT[:HARD]")]
    pub ulimits: Vec<String>,

    /// Network for RUN steps.
    #[arg(long, value_enum, default_value_t = NetworkMode::Default)]
    pub network: NetworkMode,

    /// The sandbox of RUN steps: auto picks the strongest that works here (namespaces needs
    /// CAP_SYS_ADMIN; chroot runs as root with Docker's default capabilities).
    #[arg(long, value_enum, env = "RBUILD_ISOLATION", default_value_t = IsolationMode::Auto)]
    pub isolation: IsolationMode,

    /// How to show progress (rawjson: BuildKit's status stream, one JSON object per line on
    /// stderr, as buildx writes it). With auto, BUILDKIT_PROGRESS, when set, decides.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Evaluate the build instead of building, as buildx's --call: check (the build checks,
    /// in buildx's format; exit 1 when one fires), outline (the build args, secrets and ssh
    /// the target uses) or targets (the stages and their descriptions); build is the
    /// default. Options after a comma: format=json, ignorestatus=true.
    #[arg(long = "call", value_name = "METHOD", default_value = "build")]
    pub call: String,

    /// Shorthand for --call=check.
    #[arg(long = "check")]
    pub check: bool,

    /// Write build results (image digests, tags) as JSON to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// The local store (layers, cache) [default: $XDG_CACHE_HOME/rbuild].
    #[arg(long, env = "RBUILD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print only the image digest(s).
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}
