//! Instruction flags (`--name=value` words before the arguments): extraction from the line as
//! BuildKit's `extractBuilderFlags` does it, and validation against each instruction's
//! allowlist as its `BFlags` does. Flag values have quotes and escapes removed here, exactly
//! like BuildKit, but variables stay unexpanded.

use std::time::Duration;

use serde::Serialize;

pub use super::mount::MountError;

/// `RUN --network=<mode>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// Splits leading `--flag` words off `line` (the text after the keyword). Returns the
/// remaining arguments and the flag words (without the leading `--` removed).
///
/// A word is a flag only if it starts with `--`; a bare `--` ends the flags. Quotes group and
/// are removed; the escape character escapes the next character.
pub(crate) fn extract_builder_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut iter = line.char_indices().peekable();
    loop {
        let Some((pos, ch)) = iter.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return ("", words);
        };
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                if ch != '-' || iter.peek().map(|&(_, c)| c) != Some('-') {
                    return (&line[pos..], words);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[pos..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == escape {
                    // An escape at the very end is dropped.
                    if let Some((_, next)) = iter.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape {
                    match iter.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    String,
    /// `--exclude=x`, repeatable.
    Strings,
    /// A real BuildKit flag that rbuild does not implement; the text says why.
    Unsupported(&'static str),
}

/// Why an instruction's flags were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("unknown flag `--{name}` for {instruction}")]
    Unknown {
        instruction: &'static str,
        name: String,
        allowed: Vec<&'static str>,
    },
    #[error("flag `--{name}` of {instruction} is not supported by rbuild: {reason}")]
    Unsupported {
        instruction: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("missing a value on flag `--{name}`")]
    MissingValue { name: String },
    #[error("duplicate flag specified: `--{name}`")]
    Duplicate { name: String },
    #[error("expecting boolean value for flag `--{name}`, not: {value}")]
    BadBool { name: String, value: String },
    #[error("invalid value `{value}` for flag `--{name}`")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("invalid `--mount` value: {0}")]
    Mount(#[from] MountError),
    #[error("`RUN --security=insecure` needs the `security.insecure` entitlement (`--allow security.insecure` in BuildKit), which rbuild does not grant: RUN steps always run in the sandbox")]
    InsecureNotAllowed,
}

impl FlagError {
    /// What the user can write instead.
    pub fn help(&self) -> Option<String> {
        match self {
            FlagError::Unknown { name, allowed, .. } => {
                let list = if allowed.is_empty() {
                    "this instruction takes no flags".to_owned()
                } else {
                    let names: Vec<String> = allowed.iter().map(|a| format!("--{a}")).collect();
                    format!("allowed flags: {}", names.join(", "))
                };
                Some(match super::diagnostic::suggest(name, allowed) {
                    Some(s) => format!("did you mean `--{s}`? {list}"),
                    None => list,
                })
            }
            FlagError::Unsupported { .. } => Some("remove the flag".to_owned()),
            FlagError::MissingValue { name } => Some(format!("write `--{name}=<value>`")),
            FlagError::Duplicate { .. } => Some("give the flag only once".to_owned()),
            FlagError::BadBool { name, .. } => Some(format!(
                "write `--{name}`, `--{name}=true` or `--{name}=false`"
            )),
            FlagError::BadValue { expected, .. } => Some(format!("expected {expected}")),
            FlagError::Mount(e) => e.help(),
            FlagError::InsecureNotAllowed => {
                Some("remove the flag, or write `--security=sandbox`".to_owned())
            }
        }
    }

    /// The flag name the error is about, used to place the caret.
    pub(crate) fn flag_name(&self) -> Option<&str> {
        match self {
            FlagError::Unknown { name, .. }
            | FlagError::Unsupported { name, .. }
            | FlagError::MissingValue { name }
            | FlagError::Duplicate { name }
            | FlagError::BadBool { name, .. }
            | FlagError::BadValue { name, .. } => Some(name),
            FlagError::Mount(_) => Some("mount"),
            FlagError::InsecureNotAllowed => Some("security"),
        }
    }
}

/// Parsed flag values of one instruction.
#[derive(Debug, Default)]
pub(crate) struct ParsedFlags {
    values: Vec<(&'static str, Option<String>)>,
}

impl ParsedFlags {
    /// The single value of a string flag.
    pub fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: present without value or `=true`.
    pub fn bool(&self, name: &str) -> bool {
        self.values
            .iter()
            .any(|(n, v)| *n == name && v.as_deref() == Some("true"))
    }
}

/// Validates flag words against `allowed` (name, kind) for `instruction`.
pub(crate) fn parse_flags(
    instruction: &'static str,
    words: &[String],
    allowed: &[(&'static str, FlagKind)],
) -> Result<ParsedFlags, FlagError> {
    let mut parsed = ParsedFlags::default();
    for word in words {
        let body = word.strip_prefix("--").unwrap_or(word);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        // Flag names are case-sensitive in BuildKit (`--From` is unknown).
        let Some(&(canonical, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            return Err(FlagError::Unknown {
                instruction,
                name: name.to_owned(),
                allowed: allowed
                    .iter()
                    .filter(|(_, k)| !matches!(k, FlagKind::Unsupported(_)))
                    .map(|(n, _)| *n)
                    .collect(),
            });
        };
        match kind {
            FlagKind::Unsupported(reason) => {
                return Err(FlagError::Unsupported {
                    instruction,
                    name: canonical.to_owned(),
                    reason,
                })
            }
            FlagKind::Bool => {
                if parsed.values.iter().any(|(n, _)| *n == canonical) {
                    return Err(FlagError::Duplicate {
                        name: canonical.to_owned(),
                    });
                }
                let value = match value.as_deref().map(str::to_ascii_lowercase) {
                    None => "true".to_owned(),
                    Some(v) if v.is_empty() => {
                        return Err(FlagError::MissingValue {
                            name: canonical.to_owned(),
                        })
                    }
                    Some(v) if v == "true" || v == "false" => v,
                    Some(_) => {
                        return Err(FlagError::BadBool {
                            name: canonical.to_owned(),
                            value: value.unwrap_or_default(),
                        })
                    }
                };
                parsed.values.push((canonical, Some(value)));
            }
            FlagKind::String | FlagKind::Strings => {
                let Some(value) = value else {
                    return Err(FlagError::MissingValue {
                        name: canonical.to_owned(),
                    });
                };
                if kind == FlagKind::String && parsed.values.iter().any(|(n, _)| *n == canonical) {
                    return Err(FlagError::Duplicate {
                        name: canonical.to_owned(),
                    });
                }
                parsed.values.push((canonical, Some(value)));
            }
        }
    }
    Ok(parsed)
}

/// Parses `--network`.
pub(crate) fn parse_network(value: &str) -> Result<NetworkMode, FlagError> {
    match value {
        "default" => Ok(NetworkMode::Default),
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        _ => Err(FlagError::BadValue {
            name: "network".to_owned(),
            value: value.to_owned(),
            expected: "one of `default`, `none`, `host`",
        }),
    }
}

/// `RUN --security`: `sandbox` is what every RUN gets; `insecure` needs an entitlement rbuild
/// does not grant, so it is refused rather than run sandboxed.
pub(crate) fn check_run_security(value: &str) -> Result<(), FlagError> {
    match value {
        "sandbox" => Ok(()),
        "insecure" => Err(FlagError::InsecureNotAllowed),
        _ => Err(FlagError::BadValue {
            name: "security".to_owned(),
            value: value.to_owned(),
            expected: "`sandbox` or `insecure`",
        }),
    }
}

/// Parses a HEALTHCHECK interval in Go `time.ParseDuration` syntax (`30s`, `1m30s`, `500ms`);
/// like BuildKit, zero means "default" and anything else must be at least 1ms.
pub(crate) fn parse_health_duration(name: &str, value: &str) -> Result<Duration, FlagError> {
    let bad = |expected| FlagError::BadValue {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    };
    let d = parse_go_duration(value)
        .ok_or_else(|| bad("a duration such as `30s`, `1m30s` or `500ms`"))?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(bad("a duration of at least 1ms"));
    }
    Ok(d)
}

fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    // Go durations are int64 nanoseconds.
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

/// Formats a duration the way it would be written in a Dockerfile.
pub(crate) fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos % 1_000_000_000 == 0 {
        format!("{}s", d.as_secs())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_flags_and_stops_at_first_non_flag() {
        let (rest, flags) =
            extract_builder_flags("--from=build --chown=\"a b\" --link src dst --nope", '\\');
        assert_eq!(flags, vec!["--from=build", "--chown=a b", "--link"]);
        assert_eq!(rest, "src dst --nope");
    }

    #[test]
    fn double_dash_ends_flags() {
        let (rest, flags) = extract_builder_flags("--link -- --weird dst", '\\');
        assert_eq!(flags, vec!["--link"]);
        assert_eq!(rest.trim(), "--weird dst");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert!(parse_health_duration("interval", "10ns").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn bool_flags_accept_explicit_values() {
        let words = vec!["--link=false".to_owned()];
        let parsed = parse_flags("COPY", &words, &[("link", FlagKind::Bool)]).expect("valid");
        assert!(!parsed.bool("link"));
        let words = vec!["--link=yes".to_owned()];
        assert!(parse_flags("COPY", &words, &[("link", FlagKind::Bool)]).is_err());
    }
}
