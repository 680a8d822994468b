//! Build checks on the parsed Dockerfile that warn without failing the build. One so far:
//! BuildKit's `SecretsUsedInArgOrEnv` (`frontend/dockerfile/dockerfile2llb/convert.go`,
//! documented at docs.docker.com/reference/build-checks/secrets-used-in-arg-or-env/).
//!
//! An ARG or ENV value is recorded in the image config and history and in every cache key
//! and record of the steps that see it, so a name that says "secret" is worth a warning that
//! points at `--secret` and `RUN --mount=type=secret`. The names are checked as BuildKit does:
//! a name is sensitive when one of its `_`-separated parts is, case-insensitively, one of
//! [`SECRET_TOKENS`] and none is `public` (`GITHUB_TOKEN`, `api_key`, `AUTH` are;
//! `TOKENIZER`, `PUBLIC_KEY` are not). `--build-arg` names get the same check, since their
//! values land in the same places. Warnings name the variable, never its value.

use super::{Dockerfile, Instruction};

/// BuildKit's deny tokens: a name with one of these as a whole `_`-separated part is
/// sensitive.
pub const SECRET_TOKENS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];

/// BuildKit's allow tokens: a name with one of these as a part is never sensitive.
const ALLOW_TOKENS: [&str; 1] = ["public"];

/// BuildKit's rule name, also what `# check=skip=` names.
pub const RULE: &str = "SecretsUsedInArgOrEnv";

/// Whether `name` looks like it holds a secret (BuildKit's `isSecretKey`).
pub fn is_secret_name(name: &str) -> bool {
    let has = |tokens: &[&str]| {
        name.split('_')
            .any(|part| tokens.iter().any(|t| part.eq_ignore_ascii_case(t)))
    };
    has(&SECRET_TOKENS) && !has(&ALLOW_TOKENS)
}

/// Where a secret-looking variable was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSite {
    /// An `ARG` or `ENV` instruction at this line.
    Instruction { keyword: &'static str, line: usize },
    /// A `--build-arg` on the command line.
    BuildArg,
}

/// One `SecretsUsedInArgOrEnv` finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretWarning {
    pub site: SecretSite,
    pub name: String,
}

impl SecretWarning {
    /// The warning line: BuildKit's wording, the location (`file` is the Dockerfile's name as
    /// shown to the user), and what to do instead.
    pub fn render(&self, file: &str) -> String {
        let name = &self.name;
        let id = name.to_ascii_lowercase();
        let instead = format!(
            "pass it with --secret id={id},src=FILE (or env=VARIABLE) and read it in `RUN --mount=type=secret,id={id}` (or env={name}), which keeps it out of the image and the cache"
        );
        match &self.site {
            SecretSite::Instruction { keyword, line } => format!(
                "{file}:{line}: {RULE}: Do not use ARG or ENV instructions for sensitive data ({keyword} {name:?}): its value is kept in the image config and history and in the build cache; {instead}"
            ),
            SecretSite::BuildArg => format!(
                "--build-arg {name}: {RULE}: Do not use build args for sensitive data: the value is kept in the image history and in the build cache of the steps that see it; {instead}"
            ),
        }
    }
}

/// Whether `# check=skip=...` turns this rule off (`skip=all` or a list naming it).
fn skipped(df: &Dockerfile) -> bool {
    let Some(check) = df.directives.check.as_deref() else {
        return false;
    };
    check
        .split(';')
        .filter_map(|kv| kv.trim().strip_prefix("skip="))
        .flat_map(|list| list.split(','))
        .any(|rule| rule.trim() == "all" || rule.trim() == RULE)
}

/// Every secret-looking name set by an ARG or ENV of `df` (global ARGs included), then every
/// secret-looking `--build-arg` name, in order.
pub fn secrets_in_args_or_env<'a>(
    df: &Dockerfile,
    build_args: impl IntoIterator<Item = &'a str>,
) -> Vec<SecretWarning> {
    let mut out = Vec::new();
    if !skipped(df) {
        let globals = df
            .global_args
            .iter()
            .map(|a| (a.line, Instruction::Arg(a.node.clone())));
        let staged = df
            .stages
            .iter()
            .flat_map(|s| s.instructions.iter().map(|i| (i.line, i.node.clone())));
        for (line, ins) in globals.chain(staged) {
            let names: Vec<&str> = match &ins {
                Instruction::Arg(a) => a.args.iter().map(|d| d.name.as_str()).collect(),
                Instruction::Env(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
                _ => continue,
            };
            let site = SecretSite::Instruction {
                keyword: ins.keyword(),
                line,
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|n| is_secret_name(n))
                    .map(|n| SecretWarning {
                        site: site.clone(),
                        name: n.to_owned(),
                    }),
            );
        }
    }
    out.extend(
        build_args
            .into_iter()
            .filter(|n| is_secret_name(n))
            .map(|n| SecretWarning {
                site: SecretSite::BuildArg,
                name: n.to_owned(),
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    #[test]
    fn names_are_matched_by_whole_underscore_parts_as_buildkit_does() {
        for name in [
            "TOKEN",
            "GITHUB_TOKEN",
            "api_key",
            "AUTH",
            "secret_MESSAGE",
            "DATABASE_PASSWORD",
            "MY_TOKEN_FILE",
            "aws_secret_access_key",
            "NPM_AUTH",
            "apikey",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "TOKENIZER",
            "PUBLIC_KEY",
            "keyboard",
            "MONKEY",
            "API-KEY",
            "VERSION",
            "AUTHOR",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn secret_looking_args_and_envs_warn_with_line_and_never_the_value() {
        let df = parse(
            "ARG GITHUB_TOKEN\nFROM scratch\nARG VERSION=1 API_KEY=hunter2-in-dockerfile\nENV DB_PASSWORD=hunter3-in-dockerfile PATH=/bin\n",
        )
        .unwrap();
        let warnings = secrets_in_args_or_env(&df, ["TOKEN", "VERSION"]);
        let lines: Vec<String> = warnings.iter().map(|w| w.render("Dockerfile")).collect();
        let text = lines.join("\n");
        assert!(!text.contains("hunter"), "values never appear: {text}");
        insta::assert_snapshot!(text, @r#"
        Dockerfile:1: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN"): its value is kept in the image config and history and in the build cache; pass it with --secret id=github_token,src=FILE (or env=VARIABLE) and read it in `RUN --mount=type=secret,id=github_token` (or env=GITHUB_TOKEN), which keeps it out of the image and the cache
        Dockerfile:3: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "API_KEY"): its value is kept in the image config and history and in the build cache; pass it with --secret id=api_key,src=FILE (or env=VARIABLE) and read it in `RUN --mount=type=secret,id=api_key` (or env=API_KEY), which keeps it out of the image and the cache
        Dockerfile:4: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD"): its value is kept in the image config and history and in the build cache; pass it with --secret id=db_password,src=FILE (or env=VARIABLE) and read it in `RUN --mount=type=secret,id=db_password` (or env=DB_PASSWORD), which keeps it out of the image and the cache
        --build-arg TOKEN: SecretsUsedInArgOrEnv: Do not use build args for sensitive data: the value is kept in the image history and in the build cache of the steps that see it; pass it with --secret id=token,src=FILE (or env=VARIABLE) and read it in `RUN --mount=type=secret,id=token` (or env=TOKEN), which keeps it out of the image and the cache
        "#);
    }

    #[test]
    fn check_skip_directive_turns_the_dockerfile_rule_off() {
        let df = parse("# check=skip=SecretsUsedInArgOrEnv\nFROM scratch\nARG TOKEN\n").unwrap();
        assert!(secrets_in_args_or_env(&df, []).is_empty());
        let df = parse("# check=skip=all\nFROM scratch\nENV TOKEN=x\n").unwrap();
        assert!(secrets_in_args_or_env(&df, []).is_empty());
    }
}
