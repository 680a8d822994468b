//! Canonical one-line rendering of instructions (`COPY --from=builder /src /dst`), used for
//! progress lines, `rbuild check` output and cache keys. Flags come in a fixed order and words
//! are printed as stored (unexpanded, quotes kept), so re-parsing the output gives the same
//! instruction. Heredoc bodies are not part of the line; cache keys must add them separately.

use std::fmt::{self, Display, Formatter};

use super::flags::format_duration;
use super::instruction::{
    ArgInstruction, CommandForm, CopyInstruction, FromInstruction, Healthcheck, Heredoc,
    Instruction,
};

fn json(words: &[String]) -> String {
    serde_json::to_string(words).unwrap_or_default()
}

impl Display for CommandForm {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            CommandForm::Exec(words) => f.write_str(&json(words)),
            CommandForm::Shell(s) => f.write_str(s),
        }
    }
}

impl Display for FromInstruction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("FROM")?;
        if let Some(p) = &self.platform {
            write!(f, " --platform={}", flag_value(p))?;
        }
        write!(f, " {}", self.image)?;
        if let Some(name) = &self.name {
            write!(f, " AS {name}")?;
        }
        Ok(())
    }
}

impl Display for ArgInstruction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("ARG")?;
        for arg in &self.args {
            match &arg.default {
                Some(d) => write!(f, " {}={d}", arg.name)?,
                None => write!(f, " {}", arg.name)?,
            }
        }
        Ok(())
    }
}

/// A flag value as it must be written to survive flag extraction: double-quoted (with `"` and
/// `\` escaped for the default escape character) when it holds whitespace, quotes or a
/// backslash (`--chown=\\` stores `\`; printed bare it would escape the space after it).
fn flag_value(v: &str) -> String {
    if v.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        v.to_owned()
    }
}

fn marker(h: &Heredoc) -> String {
    let dash = if h.chomp_tabs { "-" } else { "" };
    if h.expand {
        format!("<<{dash}{}", h.name)
    } else {
        format!("<<{dash}\"{}\"", h.name)
    }
}

/// Writes a bare `--` (end of flags) when the first argument would otherwise be read as a
/// flag: `COPY -- --x /d` stores the source `--x`, and `COPY --x /d` would not re-parse.
fn end_flags_before(f: &mut Formatter<'_>, first: &str) -> fmt::Result {
    if first.starts_with("--") {
        f.write_str(" --")?;
    }
    Ok(())
}

/// Whether `KW key value` parses back to exactly `(key, value)` (`parseNameVal`): the line is
/// read in the legacy form only when its first word (quotes span whitespace) has no `=`; the
/// key then ends at the first whitespace and the value loses its leading whitespace. A pair that
/// fails this came from the `key=value` form (a quote opened in the key), which printing that
/// form reproduces.
fn legacy_reads_back(k: &str, v: &str) -> bool {
    use super::parser::{is_ws, parse_words};
    let line = format!("{k} {v}");
    let legacy = parse_words(&line, '\\')
        .first()
        .is_some_and(|w| !w.contains('='));
    legacy
        && line
            .split_once(is_ws)
            .is_some_and(|(key, rest)| key == k && rest.trim_start_matches(is_ws) == v)
}

/// Whether `KW key=value` parses back to exactly `(key, value)`: one word (the parser splits
/// words on Unicode whitespace outside quotes), split at its first `=`.
fn key_value_reads_back(k: &str, v: &str) -> bool {
    let word = format!("{k}={v}");
    !k.contains('=') && super::parser::parse_words(&word, '\\') == [word]
}

fn key_values(f: &mut Formatter<'_>, kw: &str, pairs: &[(String, String)]) -> fmt::Result {
    f.write_str(kw)?;
    if let [(k, v)] = pairs {
        let legacy = legacy_reads_back(k, v);
        if legacy && (v.contains(char::is_whitespace) || !key_value_reads_back(k, v)) {
            // The legacy `ENV key value` form keeps the value verbatim, so it round-trips
            // values with unquoted whitespace (which only that form can produce).
            return write!(f, " {k} {v}");
        }
    }
    for (k, v) in pairs {
        write!(f, " {k}={v}")?;
    }
    Ok(())
}

fn copy(f: &mut Formatter<'_>, kw: &str, c: &CopyInstruction) -> fmt::Result {
    f.write_str(kw)?;
    for (name, value) in [("from", &c.from), ("chown", &c.chown), ("chmod", &c.chmod)] {
        if let Some(v) = value {
            write!(f, " --{name}={}", flag_value(v))?;
        }
    }
    if c.link {
        f.write_str(" --link")?;
    }
    if c.parents {
        f.write_str(" --parents")?;
    }
    for e in &c.exclude {
        write!(f, " --exclude={}", flag_value(e))?;
    }
    if let Some(sum) = &c.checksum {
        write!(f, " --checksum={}", flag_value(sum))?;
    }
    if c.keep_git_dir {
        f.write_str(" --keep-git-dir")?;
    }
    let has_space = |w: &String| w.chars().any(char::is_whitespace);
    if c.heredocs.is_empty() && (c.sources.iter().any(has_space) || has_space(&c.dest)) {
        // Only the JSON form can carry whitespace inside a path.
        let mut all = c.sources.clone();
        all.push(c.dest.clone());
        return write!(f, " {}", json(&all));
    }
    if let Some(first) = c.sources.first() {
        end_flags_before(f, first)?;
    }
    for s in &c.sources {
        write!(f, " {s}")?;
    }
    for h in &c.heredocs {
        write!(f, " {}", marker(h))?;
    }
    write!(f, " {}", c.dest)
}

impl Display for Instruction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::Run(run) => {
                f.write_str("RUN")?;
                for (i, m) in run.mounts.iter().enumerate() {
                    // Options with variables are not in `m` until expanded: show them as written.
                    let text = match run.deferred_mounts.get(i) {
                        Some(Some(raw)) => raw.clone(),
                        _ => m.to_string(),
                    };
                    write!(f, " --mount={}", flag_value(&text))?;
                }
                if let Some(n) = run.network {
                    write!(f, " --network={}", n.as_str())?;
                }
                if let CommandForm::Shell(command) = &run.command {
                    end_flags_before(f, command)?;
                }
                write!(f, " {}", run.command)
            }
            Instruction::Copy(c) => copy(f, "COPY", c),
            Instruction::Add(c) => copy(f, "ADD", c),
            Instruction::Env(pairs) => key_values(f, "ENV", pairs),
            Instruction::Label(pairs) => key_values(f, "LABEL", pairs),
            Instruction::Arg(arg) => arg.fmt(f),
            Instruction::Workdir(s)
            | Instruction::User(s)
            | Instruction::Stopsignal(s)
            | Instruction::Maintainer(s) => write!(f, "{} {s}", self.keyword()),
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => write!(f, "{} {c}", self.keyword()),
            Instruction::Shell(words) => write!(f, "SHELL {}", json(words)),
            Instruction::Expose(ports) => write!(f, "EXPOSE {}", ports.join(" ")),
            Instruction::Volume(v) => {
                if v.iter().any(|s| s.chars().any(char::is_whitespace)) {
                    write!(f, "VOLUME {}", json(v))
                } else {
                    write!(f, "VOLUME {}", v.join(" "))
                }
            }
            Instruction::Healthcheck(Healthcheck::None) => f.write_str("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::Check(h)) => {
                f.write_str("HEALTHCHECK")?;
                for (name, d) in [
                    ("interval", h.interval),
                    ("timeout", h.timeout),
                    ("start-period", h.start_period),
                    ("start-interval", h.start_interval),
                ] {
                    if let Some(d) = d {
                        write!(f, " --{name}={}", format_duration(d))?;
                    }
                }
                if let Some(r) = h.retries {
                    write!(f, " --retries={r}")?;
                }
                write!(f, " CMD {}", h.command)
            }
            Instruction::Onbuild(o) => write!(f, "ONBUILD {}", o.trigger),
        }
    }
}
