//! Which instruction fields are expanded, per the Dockerfile reference "Environment
//! replacement" list and BuildKit's `Expand` methods (`instructions/commands.go`):
//! ADD, COPY (sources, destination, `--from --chown --chmod --exclude`, unquoted heredoc
//! bodies), ENV and LABEL (keys and values), ARG (names and defaults), EXPOSE, STOPSIGNAL, USER,
//! VOLUME, WORKDIR, FROM (image and `--platform`, with global ARGs), and RUN `--mount` string
//! options. RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands are left to the shell, MAINTAINER is
//! literal, and ONBUILD triggers are expanded only when a child build runs them.
//!
//! Every field of one instruction is expanded against the same `vars` (the environment before
//! the instruction), so `ENV a=1 b=$a` sees the old `a`.

use super::expand::{
    expand_heredoc, expand_word, expand_words, ExpandError, ExpandErrorKind, VarLookup,
};
use super::instruction::{
    ArgDef, ArgInstruction, CopyInstruction, FromInstruction, Heredoc, Instruction, RunInstruction,
};
use super::mount::MountSpec;

type Result<T> = std::result::Result<T, ExpandError>;

fn word(w: &str, vars: &dyn VarLookup, escape: char) -> Result<String> {
    expand_word(w, vars, escape)
}

fn opt(w: &Option<String>, vars: &dyn VarLookup, escape: char) -> Result<Option<String>> {
    w.as_deref().map(|w| word(w, vars, escape)).transpose()
}

fn pairs(
    kv: &[(String, String)],
    vars: &dyn VarLookup,
    escape: char,
) -> Result<Vec<(String, String)>> {
    kv.iter()
        .map(|(k, v)| Ok((word(k, vars, escape)?, word(v, vars, escape)?)))
        .collect()
}

impl FromInstruction {
    /// Expands the image and platform with the global ARGs (the stage name is literal).
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<FromInstruction> {
        Ok(FromInstruction {
            image: word(&self.image, vars, escape)?,
            platform: opt(&self.platform, vars, escape)?,
            name: self.name.clone(),
        })
    }
}

impl ArgInstruction {
    /// Expands names and defaults.
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<ArgInstruction> {
        let args = self
            .args
            .iter()
            .map(|a| {
                Ok(ArgDef {
                    name: word(&a.name, vars, escape)?,
                    default: opt(&a.default, vars, escape)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ArgInstruction { args })
    }
}

impl MountSpec {
    /// Expands the string options and re-checks them for path traversal.
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<MountSpec> {
        let o = |v: &Option<String>| opt(v, vars, escape);
        let w = |v: &String| word(v, vars, escape);
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

fn copy(c: &CopyInstruction, vars: &dyn VarLookup, escape: char) -> Result<CopyInstruction> {
    let heredocs = c
        .heredocs
        .iter()
        .map(|h| {
            let content = if h.expand {
                expand_heredoc(&h.content, vars, escape)?
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
        sources: c
            .sources
            .iter()
            .map(|s| word(s, vars, escape))
            .collect::<Result<_>>()?,
        dest: word(&c.dest, vars, escape)?,
        heredocs,
        from: opt(&c.from, vars, escape)?,
        chown: opt(&c.chown, vars, escape)?,
        chmod: opt(&c.chmod, vars, escape)?,
        link: c.link,
        exclude: c
            .exclude
            .iter()
            .map(|s| word(s, vars, escape))
            .collect::<Result<_>>()?,
        parents: c.parents,
    })
}

impl Instruction {
    /// This instruction with every field BuildKit expands expanded against `vars` (the
    /// environment before this instruction); other fields are returned unchanged.
    pub fn expand(&self, vars: &dyn VarLookup, escape: char) -> Result<Instruction> {
        Ok(match self {
            Instruction::Run(run) => Instruction::Run(RunInstruction {
                command: run.command.clone(),
                heredocs: run.heredocs.clone(),
                mounts: run
                    .mounts
                    .iter()
                    .map(|m| m.expand(vars, escape))
                    .collect::<Result<_>>()?,
                network: run.network,
            }),
            Instruction::Copy(c) => Instruction::Copy(copy(c, vars, escape)?),
            Instruction::Add(c) => Instruction::Add(copy(c, vars, escape)?),
            Instruction::Env(kv) => Instruction::Env(pairs(kv, vars, escape)?),
            Instruction::Label(kv) => Instruction::Label(pairs(kv, vars, escape)?),
            Instruction::Arg(a) => Instruction::Arg(a.expand(vars, escape)?),
            Instruction::Workdir(s) => Instruction::Workdir(word(s, vars, escape)?),
            Instruction::User(s) => Instruction::User(word(s, vars, escape)?),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(word(s, vars, escape)?),
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, vars, escape)?);
                }
                Instruction::Expose(out)
            }
            Instruction::Volume(v) => Instruction::Volume(
                v.iter()
                    .map(|s| word(s, vars, escape))
                    .collect::<Result<_>>()?,
            ),
            Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Shell(_)
            | Instruction::Healthcheck(_)
            | Instruction::Onbuild(_)
            | Instruction::Maintainer(_) => self.clone(),
        })
    }
}
