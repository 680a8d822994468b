//! Which checks run and whether they fail the build: the `# check=skip=A,B;error=true`
//! parser directive, the `BUILDKIT_DOCKERFILE_CHECK` build argument (which replaces the
//! directive when given, as BuildKit's `dockerui` does), and the per-instruction
//! `# check=skip=…` comments, parsed as BuildKit's `linter.ParseLintOptions` and
//! `Linter.WithMergedConfigFromComments` parse them.

use std::collections::BTreeSet;

/// A check configuration (BuildKit's `linter.Config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub skip_all: bool,
    pub skip: BTreeSet<String>,
    pub experimental_all: bool,
    pub experimental: BTreeSet<String>,
    /// `error=true`: a rule that fires fails the build.
    pub error: bool,
}

/// A `check=` value that BuildKit refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid check option {0:?}")]
    Option(String),
    #[error("failed to parse check option {option:?}: strconv.ParseBool: parsing {value:?}: invalid syntax")]
    Bool { option: String, value: String },
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn rule_list(v: &str) -> BTreeSet<String> {
    v.split(',').map(|r| r.trim().to_owned()).collect()
}

impl Config {
    /// Parses a `check=` value (`skip=A,B;experimental=C;error=true`) as
    /// `linter.ParseLintOptions`: at most three `;`-separated parts (a fourth stays in the
    /// third's value), keys trimmed, `all` for every rule.
    pub fn parse(value: &str) -> Result<Config, ConfigError> {
        let value = value.trim();
        let mut c = Config::default();
        if value.is_empty() {
            return Ok(c);
        }
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(ConfigError::Option(part.to_owned()));
            };
            match k.trim() {
                "skip" => match v.trim() {
                    "all" => c.skip_all = true,
                    v => c.skip = rule_list(v),
                },
                "experimental" => match v.trim() {
                    "all" => c.experimental_all = true,
                    v => c.experimental = rule_list(v),
                },
                "error" => {
                    c.error = parse_bool(v.trim()).ok_or_else(|| ConfigError::Bool {
                        option: part.to_owned(),
                        value: v.trim().to_owned(),
                    })?;
                }
                other => return Err(ConfigError::Option(other.to_owned())),
            }
        }
        Ok(c)
    }

    /// The configuration of a whole build: `BUILDKIT_DOCKERFILE_CHECK` when the build sets
    /// it, else the Dockerfile's `# check=` directive, else everything on and warnings only.
    pub fn for_build(
        directive: Option<&str>,
        build_arg: Option<&str>,
    ) -> Result<Config, ConfigError> {
        match build_arg.or(directive) {
            Some(v) => Config::parse(v),
            None => Ok(Config::default()),
        }
    }

    /// This configuration with another's skips and experimental rules added
    /// (`WithMergedConfig`; `error` is the build's and is kept).
    fn merged(&self, other: &Config) -> Config {
        let mut c = self.clone();
        c.experimental_all |= other.experimental_all;
        c.experimental.extend(other.experimental.iter().cloned());
        c.skip_all |= other.skip_all;
        c.skip.extend(other.skip.iter().cloned());
        c
    }

    /// The configuration for one instruction: the first `check=` among the comment lines
    /// above it (its value up to the first space, so `# check=skip=all // why` works) is
    /// merged in; a comment BuildKit cannot parse leaves the configuration as it is.
    pub fn with_comments(&self, comments: &[String]) -> Config {
        for comment in comments {
            let Some((name, value)) = comment_directive(comment) else {
                continue;
            };
            if name != "check" {
                continue;
            }
            let value = value.split(' ').next().unwrap_or("");
            return match Config::parse(value) {
                Ok(other) => self.merged(&other),
                Err(_) => self.clone(),
            };
        }
        self.clone()
    }

    /// Whether a rule runs under this configuration (`Linter.Run`): an experimental rule only
    /// when named (or `experimental=all`), any other unless skipped.
    pub fn runs(&self, rule: &str, experimental: bool) -> bool {
        if experimental {
            self.experimental_all || self.experimental.contains(rule)
        } else {
            !(self.skip_all || self.skip.contains(rule))
        }
    }
}

/// A comment read as a directive with no comment marker (BuildKit's `DirectiveParser` with
/// `SetComment("")`: `name = value`, the name a letter then letters or digits): the
/// lower-cased name and the trimmed value.
fn comment_directive(comment: &str) -> Option<(String, &str)> {
    let rest = comment.trim_start();
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    let value = after.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then(|| (name.to_ascii_lowercase(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skip_error_and_experimental_as_buildkit() {
        let c = Config::parse(" skip = A, B ;error=TRUE").unwrap();
        assert_eq!(c.skip, ["A", "B"].map(String::from).into());
        assert!(c.error && !c.skip_all);
        let c = Config::parse("skip=all;experimental=all;error=0").unwrap();
        assert!(c.skip_all && c.experimental_all && !c.error);
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn refuses_what_buildkit_refuses() {
        assert_eq!(
            Config::parse("skip").unwrap_err().to_string(),
            r#"invalid check option "skip""#
        );
        assert_eq!(
            Config::parse("warn=true").unwrap_err().to_string(),
            r#"invalid check option "warn""#
        );
        insta::assert_snapshot!(Config::parse("error=yes").unwrap_err(), @r#"failed to parse check option "error=yes": strconv.ParseBool: parsing "yes": invalid syntax"#);
    }

    #[test]
    fn the_build_arg_replaces_the_directive() {
        let c = Config::for_build(Some("error=true"), Some("skip=all")).unwrap();
        assert!(c.skip_all && !c.error);
        let c = Config::for_build(Some("skip=A;error=true"), None).unwrap();
        assert!(c.error && c.skip.contains("A"));
    }

    #[test]
    fn comments_add_skips_for_one_instruction_and_keep_error() {
        let base = Config::parse("error=true").unwrap();
        let c = base.with_comments(&[
            "a description".into(),
            "check=skip=all // is local to only this instruction".into(),
        ]);
        assert!(c.skip_all && c.error);
        let c = base.with_comments(&["CHECK = skip=X,Y".into()]);
        assert!(!c.runs("X", false) && c.runs("Z", false));
        // An unparsable check comment changes nothing.
        assert_eq!(base.with_comments(&["check=bogus".into()]), base);
    }

    #[test]
    fn experimental_rules_run_only_when_named() {
        let c = Config::parse("experimental=InvalidDefinitionDescription").unwrap();
        assert!(c.runs("InvalidDefinitionDescription", true));
        assert!(!Config::default().runs("InvalidDefinitionDescription", true));
        // skip=all does not turn off a named experimental rule (Linter.Run).
        let c = Config::parse("skip=all;experimental=all").unwrap();
        assert!(c.runs("X", true) && !c.runs("Y", false));
    }
}
