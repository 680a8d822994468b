//! Typed Dockerfile instructions.
//!
//! Every string field holds the word exactly as BuildKit's parser leaves it: quotes and escapes
//! still in place and variables unexpanded, because expansion needs the environment in effect at
//! that build step (see [`Instruction::expand`] in `substitute.rs`). Flags are already
//! validated and typed (`--mount` specs, `--network` modes, healthcheck durations).

use std::time::Duration;

use serde::Serialize;

use super::flags::NetworkMode;
use super::mount::MountSpec;

/// `FROM [--platform=<p>] <image> [AS <name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromInstruction {
    /// The image reference (or earlier stage name), unexpanded.
    pub image: String,
    pub platform: Option<String>,
    /// The stage name, lower-cased as BuildKit does.
    pub name: Option<String>,
}

/// One `name[=default]` of an `ARG` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    pub name: String,
    /// The default, unexpanded and still quoted; `None` for `ARG name`.
    pub default: Option<String>,
}

/// `ARG name[=default] [name[=default] ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgInstruction {
    pub args: Vec<ArgDef>,
}

/// Exec form (JSON array) or shell form of RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandForm {
    /// `["executable", "arg"]`: run directly, no shell, no expansion.
    Exec(Vec<String>),
    /// Anything else: handed to the stage's `SHELL` as one string.
    Shell(String),
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`); for COPY/ADD also the file name.
    pub name: String,
    /// The body exactly as written, line endings included, tabs not yet chomped.
    pub content: String,
    /// `false` when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): the body is
    /// then used literally.
    pub expand: bool,
    /// `<<-EOF`: leading tabs are stripped from every body line.
    pub chomp_tabs: bool,
}

impl Heredoc {
    /// The body with leading tabs removed from each line when `chomp_tabs` is set.
    pub fn body(&self) -> String {
        if !self.chomp_tabs {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// `RUN [--mount=...] [--network=...] <command>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInstruction {
    /// Not expanded by the frontend: the shell does it at run time.
    pub command: CommandForm,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<MountSpec>,
    /// One per entry of `mounts`: the `--mount` value as written when it has typed options
    /// with variables (`uid=$UID`), which only expansion can read (see
    /// `mount::parse_mount_expanded`); `None` when `mounts` holds all of it.
    #[serde(skip)]
    pub deferred_mounts: Vec<Option<String>>,
    pub network: Option<NetworkMode>,
}

/// `COPY`/`ADD [flags] <src>... <dest>` (ADD accepts a subset of the flags, no `--from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyInstruction {
    /// Source paths (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    pub dest: String,
    /// Inline files, in the order their `<<NAME` markers appear.
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// `ADD --checksum=sha256:<hex>`: the digest a downloaded URL must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`: keep the `.git` directory of a git source.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_git_dir: bool,
}

impl CopyInstruction {
    /// Whether the destination names a directory by its spelling (BuildKit: a trailing `/`, or
    /// `.`/`..` as its last component); an existing directory in the image is one too, but that
    /// is known only when the step runs.
    pub fn dest_names_dir(&self) -> bool {
        let d = self.dest.as_str();
        d.ends_with('/') || d == "." || d.ends_with("/.") || d == ".." || d.ends_with("/..")
    }

    /// How many sources this copy has (heredocs included).
    pub fn source_count(&self) -> usize {
        self.sources.len() + self.heredocs.len()
    }
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD <command>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// Disable any healthcheck inherited from the base image.
    None,
    Check(HealthcheckConfig),
}

/// The options of `HEALTHCHECK CMD`; `None` means "not given" (the runtime default applies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckConfig {
    pub command: CommandForm,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `ONBUILD <instruction>`: recorded in the image, run by builds that use it as a base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnbuildInstruction {
    pub trigger: Box<Instruction>,
    /// The trigger's source text (after `ONBUILD `, heredoc bodies appended as BuildKit stores
    /// them in the image config).
    pub original: String,
}

/// A Dockerfile instruction other than `FROM` (which starts a [`super::Stage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    Run(RunInstruction),
    Copy(CopyInstruction),
    Add(CopyInstruction),
    /// `(key, value)` pairs; the legacy `ENV key value` form yields one pair.
    Env(Vec<(String, String)>),
    Arg(ArgInstruction),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    Shell(Vec<String>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Stopsignal(String),
    Healthcheck(Healthcheck),
    Onbuild(OnbuildInstruction),
    Maintainer(String),
}

impl Instruction {
    /// The upper-case keyword (`RUN`, `COPY`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// Every instruction keyword rbuild accepts, in the order the reference documents them.
pub const SUPPORTED_INSTRUCTIONS: &[&str] = &[
    "FROM",
    "ARG",
    "ENV",
    "LABEL",
    "WORKDIR",
    "USER",
    "RUN",
    "COPY",
    "ADD",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "EXPOSE",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "ONBUILD",
    "MAINTAINER",
];
