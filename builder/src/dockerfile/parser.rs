//! Logical line → typed instruction, following BuildKit's `parser/line_parsers.go` (how each
//! instruction's arguments are split) and `instructions/parse.go` (argument counts, flags,
//! errors). Errors become [`Diagnostic`]s pointing at the offending token.

use super::chmod::{Chmod, CHMOD_EXPECTED};
use super::diagnostic::{suggest, Diagnostic};
use super::flags::{
    check_run_security, extract_builder_flags, parse_flags, parse_health_duration, parse_network,
    FlagError, FlagKind, ParsedFlags,
};
use super::heredoc::parse_marker;
use super::instruction::{
    ArgDef, ArgInstruction, CommandForm, CopyInstruction, FromInstruction, Healthcheck,
    HealthcheckConfig, Heredoc, Instruction, OnbuildInstruction, RunInstruction,
    SUPPORTED_INSTRUCTIONS,
};
use super::lexer::LogicalLine;
use super::mount::{has_deferred_options, parse_mount};

/// What one line parsed to.
#[derive(Debug)]
pub(crate) enum Parsed {
    From(FromInstruction),
    Other(Instruction),
}

/// BuildKit's `reWhitespace` (`[\t\v\f\r ]+`).
pub(super) fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits `text` into (keyword, rest after the keyword).
fn split_command(text: &str) -> (&str, &str) {
    let body = text.trim();
    let kw_end = body.find(is_ws).unwrap_or(body.len());
    (&body[..kw_end], &body[kw_end..])
}

/// Outcome of trying the JSON exec form.
enum Json {
    /// Not a JSON array: shell form / whitespace-separated words.
    Plain,
    Array(Vec<String>),
    NotStrings,
}

fn parse_json(args: &str) -> Json {
    let args = args.trim_start();
    if !args.starts_with('[') {
        return Json::Plain;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(args) {
        Err(_) => Json::Plain,
        Ok(values) => {
            let strings: Option<Vec<String>> = values
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            strings.map_or(Json::NotStrings, Json::Array)
        }
    }
}

/// Whether the heredoc scanner should look for bodies after this line (RUN/COPY/ADD, also as
/// an ONBUILD trigger, and not in JSON form).
pub(crate) fn can_contain_heredoc(text: &str, escape: char) -> bool {
    let (kw, rest) = split_command(text);
    let mut kw = kw.to_ascii_lowercase();
    let (mut args, _) = extract_builder_flags(rest, escape);
    if kw == "onbuild" {
        let (sub_kw, sub_rest) = split_command(args);
        kw = sub_kw.to_ascii_lowercase();
        args = extract_builder_flags(sub_rest, escape).0;
    }
    matches!(kw.as_str(), "run" | "copy" | "add") && !matches!(parse_json(args), Json::Array(_))
}

/// Whitespace split (`parseStringsWhitespaceDelimited`).
fn split_ws(args: &str) -> Vec<String> {
    if args.is_empty() {
        return Vec::new();
    }
    args.split(is_ws)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Quote-aware word split that keeps quotes and escapes (`parseWords`).
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None if !in_word => {
                if ch.is_whitespace() {
                    continue;
                }
                in_word = true;
                push_word_char(&mut word, &mut quote, &mut blank_ok, ch, escape, &mut chars);
            }
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                push_word_char(&mut word, &mut quote, &mut blank_ok, ch, escape, &mut chars);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                    word.push(ch);
                } else if ch == escape && q != '\'' {
                    match chars.next() {
                        // An escape at the end inside quotes is dropped.
                        None => quote = None,
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                        }
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

fn push_word_char(
    word: &mut String,
    quote: &mut Option<char>,
    blank_ok: &mut bool,
    ch: char,
    escape: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) {
    if ch == '\'' || ch == '"' {
        *quote = Some(ch);
        *blank_ok = true;
        word.push(ch);
    } else if ch == escape {
        // An escape at the very end of the line is dropped; otherwise both are kept.
        if let Some(next) = chars.next() {
            word.push(ch);
            word.push(next);
        }
    } else {
        word.push(ch);
    }
}

/// Where a line's pieces are, for diagnostics.
struct Ctx<'a> {
    source: &'a str,
    line: &'a LogicalLine,
    escape: char,
}

/// Byte ranges (in the joined text) of one instruction's parts.
struct Parts<'a> {
    keyword: &'a str,
    kw_range: (usize, usize),
    flags: Vec<String>,
    args: &'a str,
    args_range: (usize, usize),
    /// Text after the keyword (flags included), trimmed.
    after_keyword: &'a str,
}

impl Ctx<'_> {
    fn diag(&self, range: (usize, usize), message: String, help: Option<String>) -> Diagnostic {
        let span = self.line.source_span(range.0, range.1);
        Diagnostic::new(self.source, span, message, help)
    }

    /// The range of `needle` in the joined text at or after `from`, else `fallback`.
    fn find(&self, needle: &str, from: usize, fallback: (usize, usize)) -> (usize, usize) {
        self.line
            .text
            .get(from..)
            .and_then(|t| t.find(needle))
            .map_or(fallback, |i| (from + i, from + i + needle.len()))
    }

    fn split(&self, offset: usize) -> Parts<'_> {
        let text = &self.line.text[offset..];
        let lead = text.len() - text.trim_start().len();
        let (keyword, rest) = split_command(text);
        let kw_start = offset + lead;
        let kw_end = kw_start + keyword.len();
        let (args_raw, flags) = extract_builder_flags(rest, self.escape);
        let args = args_raw.trim();
        let args_start =
            kw_end + (rest.len() - args_raw.len()) + (args_raw.len() - args_raw.trim_start().len());
        Parts {
            keyword,
            kw_range: (kw_start, kw_end),
            flags,
            args,
            args_range: (args_start, args_start + args.len()),
            after_keyword: rest.trim(),
        }
    }

    fn flags(
        &self,
        parts: &Parts<'_>,
        instruction: &'static str,
        allowed: &[(&'static str, FlagKind)],
    ) -> Result<ParsedFlags, Diagnostic> {
        parse_flags(instruction, &parts.flags, allowed).map_err(|e| self.flag_diag(parts, &e))
    }

    fn flag_diag(&self, parts: &Parts<'_>, e: &FlagError) -> Diagnostic {
        let range = match e.flag_name() {
            Some(name) => {
                let needle = format!("--{name}");
                let mut found = self.find(&needle, parts.kw_range.1, parts.kw_range);
                if matches!(e, FlagError::Duplicate { .. }) {
                    // Point at the repeated occurrence, not the first one.
                    found = self.find(&needle, found.1, found);
                }
                // Case-insensitive flag names: fall back to any `--` after the keyword.
                if found == parts.kw_range {
                    self.find("--", parts.kw_range.1, parts.kw_range)
                } else {
                    found
                }
            }
            None => parts.kw_range,
        };
        self.diag(range, e.to_string(), e.help())
    }

    fn args_diag(&self, parts: &Parts<'_>, message: String, help: Option<String>) -> Diagnostic {
        let range = if parts.args.is_empty() {
            parts.kw_range
        } else {
            parts.args_range
        };
        self.diag(range, message, help)
    }
}

const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("parents", FlagKind::Bool),
];
const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("checksum", FlagKind::String),
    ("keep-git-dir", FlagKind::Bool),
    (
        "unpack",
        FlagKind::Unsupported("ADD --unpack is not implemented"),
    ),
];
const RUN_FLAGS: &[(&str, FlagKind)] = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
    (
        "device",
        FlagKind::Unsupported("RUN --device (CDI devices) is not implemented"),
    ),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagKind)] = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

/// Parses the logical line `line` (or, for an ONBUILD trigger, its text from `offset`).
pub(crate) fn parse_line(
    source: &str,
    line: &LogicalLine,
    escape: char,
) -> Result<Parsed, Diagnostic> {
    let ctx = Ctx {
        source,
        line,
        escape,
    };
    parse_at(&ctx, 0, false)
}

fn parse_at(ctx: &Ctx<'_>, offset: usize, in_onbuild: bool) -> Result<Parsed, Diagnostic> {
    let parts = ctx.split(offset);
    let kw = parts.keyword.to_ascii_uppercase();
    let instruction = match kw.as_str() {
        "FROM" => return parse_from(ctx, &parts).map(Parsed::From),
        "ARG" => {
            ctx.flags(&parts, "ARG", &[])?;
            let words = parse_words(parts.args, ctx.escape);
            if words.is_empty() {
                return Err(at_least_one(ctx, &parts, "ARG", "ARG <name>[=<default>]"));
            }
            let mut args = Vec::new();
            for word in words {
                let (name, default) = match word.split_once('=') {
                    Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                    None => (word, None),
                };
                if name.is_empty() {
                    return Err(ctx.args_diag(
                        &parts,
                        "ARG names can not be blank".to_owned(),
                        Some("write `ARG <name>=<value>`".to_owned()),
                    ));
                }
                args.push(ArgDef { name, default });
            }
            Instruction::Arg(ArgInstruction { args })
        }
        "ENV" => {
            ctx.flags(&parts, "ENV", &[])?;
            Instruction::Env(parse_name_val(ctx, &parts, "ENV")?)
        }
        "LABEL" => {
            ctx.flags(&parts, "LABEL", &[])?;
            Instruction::Label(parse_name_val(ctx, &parts, "LABEL")?)
        }
        "WORKDIR" => Instruction::Workdir(one_string(ctx, &parts, "WORKDIR", "WORKDIR /path")?),
        "USER" => Instruction::User(one_string(ctx, &parts, "USER", "USER <user>[:<group>]")?),
        "STOPSIGNAL" => {
            Instruction::Stopsignal(one_string(ctx, &parts, "STOPSIGNAL", "STOPSIGNAL SIGTERM")?)
        }
        "MAINTAINER" => {
            Instruction::Maintainer(one_string(ctx, &parts, "MAINTAINER", "MAINTAINER <name>")?)
        }
        "RUN" => Instruction::Run(parse_run(ctx, &parts)?),
        "COPY" => Instruction::Copy(parse_copy(ctx, &parts, "COPY", COPY_FLAGS)?),
        "ADD" => Instruction::Add(parse_copy(ctx, &parts, "ADD", ADD_FLAGS)?),
        "CMD" => {
            ctx.flags(&parts, "CMD", &[])?;
            Instruction::Cmd(maybe_json(ctx, &parts)?)
        }
        "ENTRYPOINT" => {
            ctx.flags(&parts, "ENTRYPOINT", &[])?;
            Instruction::Entrypoint(maybe_json(ctx, &parts)?)
        }
        "SHELL" => {
            ctx.flags(&parts, "SHELL", &[])?;
            match maybe_json(ctx, &parts)? {
                CommandForm::Exec(words) if !words.is_empty() => Instruction::Shell(words),
                CommandForm::Exec(_) => {
                    return Err(at_least_one(
                        ctx,
                        &parts,
                        "SHELL",
                        r#"SHELL ["/bin/sh", "-c"]"#,
                    ))
                }
                CommandForm::Shell(_) => {
                    return Err(ctx.args_diag(
                        &parts,
                        "SHELL requires the arguments to be in JSON form".to_owned(),
                        Some(r#"write e.g. `SHELL ["/bin/bash", "-c"]`"#.to_owned()),
                    ))
                }
            }
        }
        "EXPOSE" => {
            ctx.flags(&parts, "EXPOSE", &[])?;
            let ports = split_ws(parts.args);
            if ports.is_empty() {
                return Err(at_least_one(ctx, &parts, "EXPOSE", "EXPOSE 80/tcp"));
            }
            Instruction::Expose(ports)
        }
        "VOLUME" => {
            ctx.flags(&parts, "VOLUME", &[])?;
            let volumes = maybe_json_list(ctx, &parts)?;
            if volumes.is_empty() {
                return Err(at_least_one(ctx, &parts, "VOLUME", "VOLUME /data"));
            }
            if volumes.iter().any(|v| v.trim().is_empty()) {
                return Err(ctx.args_diag(
                    &parts,
                    "VOLUME specified can not be an empty string".to_owned(),
                    None,
                ));
            }
            Instruction::Volume(volumes.into_iter().map(|v| v.trim().to_owned()).collect())
        }
        "HEALTHCHECK" => Instruction::Healthcheck(parse_healthcheck(ctx, &parts)?),
        "ONBUILD" => {
            if in_onbuild {
                return Err(ctx.diag(
                    parts.kw_range,
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned(),
                    None,
                ));
            }
            ctx.flags(&parts, "ONBUILD", &[])?;
            if parts.args.is_empty() {
                return Err(at_least_one(ctx, &parts, "ONBUILD", "ONBUILD RUN make"));
            }
            let trigger_kw = split_command(parts.args).0.to_ascii_uppercase();
            if matches!(trigger_kw.as_str(), "FROM" | "MAINTAINER") {
                return Err(ctx.args_diag(
                    &parts,
                    format!("{trigger_kw} isn't allowed as an ONBUILD trigger"),
                    None,
                ));
            }
            let trigger = match parse_at(ctx, parts.args_range.0, true)? {
                Parsed::Other(i) => i,
                Parsed::From(_) => {
                    return Err(ctx.args_diag(
                        &parts,
                        "FROM isn't allowed as an ONBUILD trigger".to_owned(),
                        None,
                    ))
                }
            };
            let mut original = parts.after_keyword.to_owned();
            for h in &ctx.line.heredocs {
                original.push('\n');
                original.push_str(&h.content);
                original.push_str(&h.name);
            }
            Instruction::Onbuild(OnbuildInstruction {
                trigger: Box::new(trigger),
                original,
            })
        }
        _ => {
            let list = SUPPORTED_INSTRUCTIONS.join(", ");
            let help = match suggest(parts.keyword, SUPPORTED_INSTRUCTIONS) {
                Some(s) => format!("did you mean `{s}`? Supported instructions: {list}"),
                None => format!("supported instructions: {list}"),
            };
            return Err(ctx.diag(
                parts.kw_range,
                format!("unknown instruction `{}`", parts.keyword),
                Some(help),
            ));
        }
    };
    Ok(Parsed::Other(instruction))
}

fn at_least_one(ctx: &Ctx<'_>, parts: &Parts<'_>, kw: &str, example: &str) -> Diagnostic {
    ctx.args_diag(
        parts,
        format!("{kw} requires at least one argument"),
        Some(format!("write e.g. `{example}`")),
    )
}

fn parse_from(ctx: &Ctx<'_>, parts: &Parts<'_>) -> Result<FromInstruction, Diagnostic> {
    let flags = ctx.flags(parts, "FROM", &[("platform", FlagKind::String)])?;
    let args = split_ws(parts.args);
    let name = match args.as_slice() {
        [_] => None,
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            let valid = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && lower
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                let range = ctx.find(name, parts.args_range.0, parts.args_range);
                return Err(ctx.diag(
                    range,
                    format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ),
                    Some("stage names match [a-z][a-z0-9-_.]*".to_owned()),
                ));
            }
            Some(lower)
        }
        _ => {
            return Err(ctx.args_diag(
                parts,
                "FROM requires either one or three arguments".to_owned(),
                Some("write `FROM <image> [AS <name>]`".to_owned()),
            ))
        }
    };
    Ok(FromInstruction {
        image: args[0].clone(),
        platform: flags.string("platform"),
        name,
    })
}

/// ENV/LABEL `key=value ...` or legacy `key value` (`parseNameVal`).
fn parse_name_val(
    ctx: &Ctx<'_>,
    parts: &Parts<'_>,
    kw: &str,
) -> Result<Vec<(String, String)>, Diagnostic> {
    let words = parse_words(parts.args, ctx.escape);
    let Some(first) = words.first() else {
        return Err(at_least_one(ctx, parts, kw, &format!("{kw} key=value")));
    };
    if !first.contains('=') {
        // Legacy form: the first whitespace-separated word is the key, the rest the value.
        let Some((key, value)) = parts.args.split_once(is_ws) else {
            return Err(ctx.args_diag(
                parts,
                format!("{kw} must have two arguments"),
                Some(format!("write `{kw} {first}=<value>`")),
            ));
        };
        let value = value.trim_start_matches(is_ws);
        return Ok(vec![(key.to_owned(), value.to_owned())]);
    }
    let mut pairs = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            let range = ctx.find(&word, parts.args_range.0, parts.args_range);
            return Err(ctx.diag(
                range,
                format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value"),
                Some(format!(
                    "write `{kw} {word}=<value>` or quote values containing spaces"
                )),
            ));
        };
        if key.is_empty() {
            return Err(ctx.args_diag(parts, format!("{kw} names can not be blank"), None));
        }
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

fn one_string(
    ctx: &Ctx<'_>,
    parts: &Parts<'_>,
    kw: &'static str,
    example: &str,
) -> Result<String, Diagnostic> {
    ctx.flags(parts, kw, &[])?;
    if parts.args.is_empty() {
        return Err(ctx.args_diag(
            parts,
            format!("{kw} requires exactly one argument"),
            Some(format!("write e.g. `{example}`")),
        ));
    }
    Ok(parts.args.to_owned())
}

fn not_strings(ctx: &Ctx<'_>, parts: &Parts<'_>) -> Diagnostic {
    ctx.args_diag(
        parts,
        "when using JSON array syntax, arrays must be comprised of strings only".to_owned(),
        Some("quote every element, e.g. `[\"sleep\", \"10\"]`".to_owned()),
    )
}

/// Exec form if the arguments are a JSON string array, else shell form (`parseMaybeJSON`).
fn maybe_json(ctx: &Ctx<'_>, parts: &Parts<'_>) -> Result<CommandForm, Diagnostic> {
    command_form(ctx, parts, parts.args)
}

fn command_form(ctx: &Ctx<'_>, parts: &Parts<'_>, args: &str) -> Result<CommandForm, Diagnostic> {
    if args.is_empty() {
        return Ok(CommandForm::Shell(String::new()));
    }
    match parse_json(args) {
        Json::Array(words) => Ok(CommandForm::Exec(words)),
        Json::NotStrings => Err(not_strings(ctx, parts)),
        Json::Plain => Ok(CommandForm::Shell(args.to_owned())),
    }
}

/// JSON string array or whitespace-separated words (`parseMaybeJSONToList`).
fn maybe_json_list(ctx: &Ctx<'_>, parts: &Parts<'_>) -> Result<Vec<String>, Diagnostic> {
    match parse_json(parts.args) {
        Json::Array(words) => Ok(words),
        Json::NotStrings => Err(not_strings(ctx, parts)),
        Json::Plain => Ok(split_ws(parts.args)),
    }
}

fn parse_run(ctx: &Ctx<'_>, parts: &Parts<'_>) -> Result<RunInstruction, Diagnostic> {
    let flags = ctx.flags(parts, "RUN", RUN_FLAGS)?;
    let mut mounts = Vec::new();
    let mut deferred_mounts = Vec::new();
    for value in flags.strings("mount") {
        let mount = parse_mount(&value).map_err(|e| {
            let range = ctx.find(&value, parts.kw_range.1, parts.kw_range);
            let e = FlagError::from(e);
            ctx.diag(range, e.to_string(), e.help())
        })?;
        mounts.push(mount);
        deferred_mounts.push(has_deferred_options(&value).then_some(value));
    }
    let network = match flags.string("network") {
        Some(v) => Some(parse_network(&v).map_err(|e| ctx.flag_diag(parts, &e))?),
        None => None,
    };
    if let Some(v) = flags.string("security") {
        check_run_security(&v).map_err(|e| ctx.flag_diag(parts, &e))?;
    }
    if parts.args.is_empty() {
        return Err(at_least_one(ctx, parts, "RUN", "RUN make install"));
    }
    let command = maybe_json(ctx, parts)?;
    let heredocs = match command {
        CommandForm::Exec(_) => Vec::new(),
        CommandForm::Shell(_) => ctx.line.heredocs.clone(),
    };
    Ok(RunInstruction {
        command,
        heredocs,
        mounts,
        deferred_mounts,
        network,
    })
}

fn parse_copy(
    ctx: &Ctx<'_>,
    parts: &Parts<'_>,
    kw: &'static str,
    allowed: &[(&'static str, FlagKind)],
) -> Result<CopyInstruction, Diagnostic> {
    let flags = ctx.flags(parts, kw, allowed)?;
    let chmod = flags.string("chmod");
    check_literal_chmod(ctx, parts, chmod.as_deref())?;
    let is_json = matches!(parse_json(parts.args), Json::Array(_));
    let mut words = maybe_json_list(ctx, parts)?;
    if words.len() < 2 {
        return Err(ctx.args_diag(
            parts,
            format!(
                "{kw} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
            Some(format!("write `{kw} <src>... <dest>`")),
        ));
    }
    let dest = words.pop().unwrap_or_default();
    if !is_json && matches!(parse_marker(&dest), Ok(Some(_))) {
        let range = ctx.find(&dest, parts.args_range.0, parts.args_range);
        return Err(ctx.diag(
            range,
            format!("{kw} cannot accept a heredoc as a destination"),
            Some(format!("write `{kw} <<EOF /path/to/file`")),
        ));
    }
    let mut sources = Vec::new();
    let mut heredocs: Vec<Heredoc> = Vec::new();
    for word in words {
        match parse_marker(&word) {
            Ok(Some(marker)) if !is_json => {
                let content = ctx
                    .line
                    .heredocs
                    .iter()
                    .find(|h| h.name == marker.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                heredocs.push(Heredoc {
                    name: marker.name,
                    content,
                    expand: marker.expand,
                    chomp_tabs: marker.chomp,
                });
            }
            _ => sources.push(word),
        }
    }
    check_remote_sources(
        ctx,
        parts,
        kw,
        &sources,
        flags.string("checksum").as_deref(),
    )?;
    let c = CopyInstruction {
        sources,
        dest,
        heredocs,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod,
        link: flags.bool("link"),
        exclude: flags.strings("exclude"),
        parents: flags.bool("parents"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
    };
    check_several_sources(ctx, parts, kw, &c)?;
    Ok(c)
}

/// Several sources need a destination spelled as a directory. BuildKit 20.10 would copy them
/// one after the other onto the file (the last one wins), newer builders refuse; rbuild
/// refuses, here when every source is a literal path (a wildcard may match one file or none,
/// a variable is known only later: the build checks those).
fn check_several_sources(
    ctx: &Ctx<'_>,
    parts: &Parts<'_>,
    kw: &'static str,
    c: &CopyInstruction,
) -> Result<(), Diagnostic> {
    let literal = |w: &str| !w.contains(['$', '*', '?', '[', '\\']);
    if c.source_count() < 2
        || c.dest_names_dir()
        || !literal(&c.dest)
        || !c.sources.iter().all(|s| literal(s))
    {
        return Ok(());
    }
    let dest = c.dest.trim_end_matches('/');
    // The destination is the last word: search from the end (a source may contain its text).
    let (start, end) = parts.args_range;
    let range = ctx
        .line
        .text
        .get(start..end)
        .and_then(|t| t.rfind(c.dest.as_str()))
        .map_or(parts.args_range, |i| (start + i, start + i + c.dest.len()));
    Err(ctx.diag(
        range,
        format!("{kw} of several sources needs a directory as its destination, ending in '/'"),
        Some(format!("write `{dest}/`")),
    ))
}

/// What BuildKit rejects about remote sources, checked here when the words hold no variable
/// (otherwise the build checks the expanded words): COPY takes no URL or git repository, and
/// `ADD --checksum` needs one HTTP(S) source and a sha256 digest.
fn check_remote_sources(
    ctx: &Ctx<'_>,
    parts: &Parts<'_>,
    kw: &'static str,
    sources: &[String],
    checksum: Option<&str>,
) -> Result<(), Diagnostic> {
    let word_diag = |word: &str, message: String, help: &str| {
        let range = ctx.find(word, parts.args_range.0, parts.args_range);
        ctx.diag(range, message, Some(help.to_owned()))
    };
    let (mut remote, mut local) = (None, None);
    for src in sources.iter().filter(|s| !s.contains('$')) {
        let class = super::remote::classify(src)
            .map_err(|e| word_diag(src, e.to_string(), "fix the URL's fragment"))?;
        if kw == "COPY" && class.is_some() {
            return Err(word_diag(
                src,
                "COPY does not accept a URL or git repository as a source".into(),
                "use ADD to download it",
            ));
        }
        match class {
            Some(_) => remote = remote.or(Some(src)),
            None => local = local.or(Some(src)),
        }
    }
    if let (Some(_), Some(l)) = (remote, local) {
        return Err(word_diag(
            l,
            "ADD with both remote (URL or git) and local sources is not supported by rbuild".into(),
            "write one ADD for the remote sources and one for the local ones",
        ));
    }
    let Some(sum) = checksum else {
        return Ok(());
    };
    if !sum.contains('$') {
        super::remote::parse_checksum(sum).map_err(|e| {
            let range = ctx.find("--checksum", parts.kw_range.1, parts.kw_range);
            ctx.diag(
                range,
                e.to_string(),
                Some("write `--checksum=sha256:<hex>`".into()),
            )
        })?;
    }
    if sources.len() != 1 {
        return Err(ctx.args_diag(
            parts,
            "--checksum can't be specified for multiple sources".into(),
            Some("give --checksum on an ADD of one URL".into()),
        ));
    }
    let src = &sources[0];
    if !src.contains('$') && !super::remote::is_http(src) {
        return Err(word_diag(
            src,
            "--checksum can't be specified for non-HTTP(S) sources".into(),
            "remove --checksum, or ADD an http:// or https:// URL",
        ));
    }
    Ok(())
}

/// A `--chmod` without variables is checked here, so that `rbuild check` rejects what the
/// build would; one with variables is checked once expanded (by the plan, or the COPY step).
fn check_literal_chmod(
    ctx: &Ctx<'_>,
    parts: &Parts<'_>,
    chmod: Option<&str>,
) -> Result<(), Diagnostic> {
    match chmod {
        Some(v) if !v.contains('$') && Chmod::parse(v).is_err() => {
            let e = FlagError::BadValue {
                name: "chmod".to_owned(),
                value: v.to_owned(),
                expected: CHMOD_EXPECTED,
            };
            Err(ctx.flag_diag(parts, &e))
        }
        _ => Ok(()),
    }
}

fn parse_healthcheck(ctx: &Ctx<'_>, parts: &Parts<'_>) -> Result<Healthcheck, Diagnostic> {
    if parts.args.is_empty() {
        return Err(at_least_one(
            ctx,
            parts,
            "HEALTHCHECK",
            "HEALTHCHECK CMD curl -f http://localhost/",
        ));
    }
    let typ_end = parts
        .args
        .find(char::is_whitespace)
        .unwrap_or(parts.args.len());
    let typ = &parts.args[..typ_end];
    let rest = parts.args[typ_end..].trim_start();
    match typ.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() {
                return Err(ctx.args_diag(
                    parts,
                    "HEALTHCHECK NONE takes no arguments".to_owned(),
                    None,
                ));
            }
            if !parts.flags.is_empty() {
                return Err(ctx.diag(
                    parts.kw_range,
                    "HEALTHCHECK NONE takes no options".to_owned(),
                    Some("remove the options or use `HEALTHCHECK [options] CMD ...`".to_owned()),
                ));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = ctx.flags(parts, "HEALTHCHECK", HEALTHCHECK_FLAGS)?;
            let command = command_form(ctx, parts, rest)?;
            if matches!(&command, CommandForm::Shell(s) if s.is_empty())
                || matches!(&command, CommandForm::Exec(v) if v.is_empty())
            {
                return Err(ctx.args_diag(
                    parts,
                    "Missing command after HEALTHCHECK CMD".to_owned(),
                    Some("write e.g. `HEALTHCHECK CMD curl -f http://localhost/`".to_owned()),
                ));
            }
            let duration = |name: &str| -> Result<Option<std::time::Duration>, Diagnostic> {
                match flags.string(name) {
                    None => Ok(None),
                    Some(v) => parse_health_duration(name, &v)
                        .map(Some)
                        .map_err(|e| ctx.flag_diag(parts, &e)),
                }
            };
            let retries = match flags.string("retries") {
                None => None,
                Some(v) => Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|r| i32::try_from(*r).is_ok())
                        .ok_or_else(|| {
                            ctx.flag_diag(
                                parts,
                                &FlagError::BadValue {
                                    name: "retries".to_owned(),
                                    value: v.clone(),
                                    expected: "a non-negative whole number",
                                },
                            )
                        })?,
                ),
            };
            Ok(Healthcheck::Check(HealthcheckConfig {
                command,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            }))
        }
        _ => {
            let end = parts.args_range.0 + typ.len();
            Err(ctx.diag(
                (parts.args_range.0, end),
                format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"),
                Some(
                    "write `HEALTHCHECK [options] CMD <command>` or `HEALTHCHECK NONE`".to_owned(),
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_words_keeps_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="x y" b=c\ d 'e f'"#, '\\'),
            vec![r#"a="x y""#, r"b=c\ d", "'e f'"]
        );
        assert_eq!(parse_words("a\\", '\\'), vec!["a"]);
    }

    #[test]
    fn json_detection() {
        assert!(matches!(parse_json(r#"["a", "b"]"#), Json::Array(_)));
        assert!(matches!(parse_json(r#"[1]"#), Json::NotStrings));
        assert!(matches!(parse_json(r#"[a"#), Json::Plain));
        assert!(can_contain_heredoc("RUN <<EOF", '\\'));
        assert!(can_contain_heredoc("onbuild copy <<EOF /x", '\\'));
        assert!(!can_contain_heredoc(r#"RUN ["<<EOF"]"#, '\\'));
    }
}
