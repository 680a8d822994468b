//! Which instruction fields are expanded, per the Dockerfile reference "Environment
//! replacement" list and BuildKit's `Expand` methods (`instructions/commands.go`):
//! ADD, COPY (sources, destination, `--from --chown --chmod --exclude`, unquoted heredoc
//! bodies), ENV and LABEL (keys and values), ARG (names and defaults), EXPOSE, STOPSIGNAL, USER,
//! VOLUME, WORKDIR, FROM (image and `--platform`, with global ARGs), and RUN `--mount` string
//! options. RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands are left to the shell, MAINTAINER is
//! literal, and ONBUILD triggers are expanded only when a child build runs them.
//!
//! Every field of one instruction is expanded against the same `vars` (the environment before
//! the instruction), so `ENV a=1 b=$a` sees the old `a`; and every field draws on one
//! expansion [`Budget`], so the instruction as a whole stays within the limits of
//! [`super::limits`].

use super::expand::{
    expand_heredoc_in, expand_word_in, expand_words_in, Budget, ExpandError, ExpandErrorKind,
    VarLookup,
};
use super::instruction::{
    ArgDef, ArgInstruction, CopyInstruction, FromInstruction, Heredoc, Instruction, RunInstruction,
};
use super::mount::{parse_mount_expanded, MountError, MountSpec};

type Result<T> = std::result::Result<T, ExpandError>;

/// What expanding one instruction needs: its variables, the escape character and its budget.
struct Cx<'a> {
    vars: &'a dyn VarLookup,
    escape: char,
    budget: Budget,
}

impl<'a> Cx<'a> {
    fn new(vars: &'a dyn VarLookup, escape: char) -> Self {
        Cx {
            vars,
            escape,
            budget: Budget::default(),
        }
    }
}

fn word(w: &str, cx: &Cx<'_>) -> Result<String> {
    expand_word_in(w, cx.vars, cx.escape, &cx.budget)
}

fn opt(w: &Option<String>, cx: &Cx<'_>) -> Result<Option<String>> {
    w.as_deref().map(|w| word(w, cx)).transpose()
}

fn words(ws: &[String], cx: &Cx<'_>) -> Result<Vec<String>> {
    ws.iter().map(|s| word(s, cx)).collect()
}

fn pairs(kv: &[(String, String)], cx: &Cx<'_>) -> Result<Vec<(String, String)>> {
    kv.iter()
        .map(|(k, v)| Ok((word(k, cx)?, word(v, cx)?)))
        .collect()
}

impl FromInstruction {
    /// Expands the image and platform with the global ARGs (the stage name is literal).
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<FromInstruction> {
        let cx = Cx::new(vars, escape);
        Ok(FromInstruction {
            image: word(&self.image, &cx)?,
            platform: opt(&self.platform, &cx)?,
            name: self.name.clone(),
        })
    }
}

impl ArgInstruction {
    /// Expands names and defaults.
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<ArgInstruction> {
        self.expand_in(&Cx::new(vars, escape))
    }

    fn expand_in(&self, cx: &Cx<'_>) -> Result<ArgInstruction> {
        let args = self
            .args
            .iter()
            .map(|a| {
                Ok(ArgDef {
                    name: word(&a.name, cx)?,
                    default: opt(&a.default, cx)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ArgInstruction { args })
    }
}

impl MountSpec {
    /// Expands the string options and re-checks them for path traversal.
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<MountSpec> {
        self.expand_in(&Cx::new(vars, escape))
    }

    fn expand_in(&self, cx: &Cx<'_>) -> Result<MountSpec> {
        let o = |v: &Option<String>| opt(v, cx);
        let w = |v: &String| word(v, cx);
        let expanded = match self {
            MountSpec::Bind {
                source,
                target,
                from,
                rw,
            } => MountSpec::Bind {
                source: o(source)?,
                target: w(target)?,
                from: from.clone(),
                rw: *rw,
            },
            MountSpec::Cache {
                id,
                target,
                sharing,
                from,
                source,
                mode,
                uid,
                gid,
                readonly,
            } => MountSpec::Cache {
                id: o(id)?,
                target: w(target)?,
                sharing: *sharing,
                from: from.clone(),
                source: o(source)?,
                mode: *mode,
                uid: *uid,
                gid: *gid,
                readonly: *readonly,
            },
            MountSpec::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => MountSpec::Secret {
                id: o(id)?,
                target: o(target)?,
                env: o(env)?,
                required: *required,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            MountSpec::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => MountSpec::Ssh {
                id: o(id)?,
                target: o(target)?,
                required: *required,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            MountSpec::Tmpfs { target, size } => MountSpec::Tmpfs {
                target: w(target)?,
                size: *size,
            },
        };
        expanded.check_paths().map_err(|e| ExpandError {
            word: self.to_string(),
            kind: ExpandErrorKind::Mount(e),
        })?;
        Ok(expanded)
    }
}

/// A `--mount` whose typed options have variables, read again with every value expanded.
fn expand_mount_value(raw: &str, cx: &Cx<'_>) -> Result<MountSpec> {
    /// Either failure of [`parse_mount_expanded`] with an expanding closure.
    enum Failed {
        Expand(ExpandError),
        Mount(MountError),
    }
    impl From<MountError> for Failed {
        fn from(e: MountError) -> Self {
            Failed::Mount(e)
        }
    }
    parse_mount_expanded(raw, |v| word(v, cx).map_err(Failed::Expand)).map_err(|e| match e {
        Failed::Expand(e) => e,
        Failed::Mount(e) => ExpandError {
            word: raw.to_string(),
            kind: ExpandErrorKind::Mount(e),
        },
    })
}

fn copy(c: &CopyInstruction, cx: &Cx<'_>) -> Result<CopyInstruction> {
    let heredocs = c
        .heredocs
        .iter()
        .map(|h| {
            let content = if h.expand {
                expand_heredoc_in(&h.content, cx.vars, cx.escape, &cx.budget)?
            } else {
                h.content.clone()
            };
            Ok(Heredoc {
                content,
                ..h.clone()
            })
        })
        .collect::<Result<_>>()?;
    Ok(CopyInstruction {
        sources: words(&c.sources, cx)?,
        dest: word(&c.dest, cx)?,
        heredocs,
        from: opt(&c.from, cx)?,
        chown: opt(&c.chown, cx)?,
        chmod: opt(&c.chmod, cx)?,
        link: c.link,
        exclude: words(&c.exclude, cx)?,
        parents: c.parents,
        checksum: opt(&c.checksum, cx)?,
        keep_git_dir: c.keep_git_dir,
    })
}

impl Instruction {
    /// This instruction with every field BuildKit expands expanded against `vars` (the
    /// environment before this instruction); other fields are returned unchanged.
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<Instruction> {
        let cx = Cx::new(vars, escape);
        let cx = &cx;
        Ok(match self {
            Instruction::Run(run) => Instruction::Run(RunInstruction {
                command: run.command.clone(),
                heredocs: run.heredocs.clone(),
                mounts: run
                    .mounts
                    .iter()
                    .enumerate()
                    .map(|(i, m)| match run.deferred_mounts.get(i) {
                        Some(Some(raw)) => expand_mount_value(raw, cx),
                        _ => m.expand_in(cx),
                    })
                    .collect::<Result<_>>()?,
                deferred_mounts: Vec::new(),
                network: run.network,
            }),
            Instruction::Copy(c) => Instruction::Copy(copy(c, cx)?),
            Instruction::Add(c) => Instruction::Add(copy(c, cx)?),
            Instruction::Env(kv) => Instruction::Env(pairs(kv, cx)?),
            Instruction::Label(kv) => Instruction::Label(pairs(kv, cx)?),
            Instruction::Arg(a) => Instruction::Arg(a.expand_in(cx)?),
            Instruction::Workdir(s) => Instruction::Workdir(word(s, cx)?),
            Instruction::User(s) => Instruction::User(word(s, cx)?),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(word(s, cx)?),
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words_in(p, cx.vars, cx.escape, &cx.budget)?);
                }
                Instruction::Expose(out)
            }
            Instruction::Volume(v) => Instruction::Volume(words(v, cx)?),
            Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Shell(_)
            | Instruction::Healthcheck(_)
            | Instruction::Onbuild(_)
            | Instruction::Maintainer(_) => self.clone(),
        })
    }
}
