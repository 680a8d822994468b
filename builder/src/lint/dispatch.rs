//! The checks BuildKit makes while dispatching each stage's instructions in order
//! (`dockerfile2llb.dispatch` and its `dispatch*` functions), with the stage's variables as
//! they are at each instruction: UndefinedVar, WorkdirRelativePath, JSONArgsRecommended,
//! MultipleInstructionsDisallowed, LegacyKeyValueFormat, SecretsUsedInArgOrEnv,
//! ExposeProtoCasing, ExposeInvalidFormat and CopyIgnoredFile.
//!
//! Only the stages a build dispatches are checked (every stage for `--call check` without a
//! target). A stage built `FROM` an earlier one starts from that one's variables, SHELL and
//! WORKDIR state, as BuildKit's does.
//!
//! A stage built from an image starts with the image's ENV ([`super::Bases::env`]), which the
//! build reads by resolving the bases before it checks, as BuildKit does. When a base could
//! not be resolved (an unreachable registry: the build then fails at that `FROM`, a check
//! reports the note), a variable the Dockerfile uses but does not define could be the image's
//! (`GOPATH` in `golang`), so there UndefinedVar reports it only when the Dockerfile declares
//! that name somewhere (it is then used before its ARG or ENV, or in a stage that does not
//! have it), and no near miss is suggested: `$GOPATH` is as near to `$PATH` as `$PAHT` is.

use std::collections::{BTreeMap, BTreeSet};

use super::from::{suggest, Recorder};
use super::rules::{
    COPY_IGNORED_FILE, EXPOSE_INVALID_FORMAT, EXPOSE_PROTO_CASING, JSON_ARGS_RECOMMENDED,
    LEGACY_KEY_VALUE_FORMAT, MULTIPLE_INSTRUCTIONS_DISALLOWED, SECRETS_USED_IN_ARG_OR_ENV,
    UNDEFINED_VAR, WORKDIR_RELATIVE_PATH,
};
use super::{lines_of, Config, Input, Lines, Sink};
use crate::context::IgnoreRules;
use crate::dockerfile::{expand_word, CommandForm, CopyInstruction, Dockerfile, Instruction};
use crate::graph::Base;

/// Linux's default PATH, which BuildKit sets in every stage whose image has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// ARGs that never become environment variables (BuildKit's `nonEnvArgs`).
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// BuildKit's deny tokens: a name with one of these as a whole `_`-separated part is
/// sensitive.
const SECRET_TOKENS: [&str; 10] = [
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
const ALLOW_TOKENS: [&str; 3] = ["public", "file", "version"];

/// Whether `name` looks like it holds a secret (BuildKit's `validateNoSecretKey` regexps:
/// a deny token and no allow token as a whole `_`-separated part, case-insensitively).
pub fn is_secret_name(name: &str) -> bool {
    let has = |tokens: &[&str]| {
        name.split('_')
            .any(|part| tokens.iter().any(|t| part.eq_ignore_ascii_case(t)))
    };
    has(&SECRET_TOKENS) && !has(&ALLOW_TOKENS)
}

/// A stage's state as dispatch sees it.
#[derive(Debug, Clone, Default)]
struct State {
    /// The environment: the image's (PATH here), ENV, and ARGs that have a value.
    vars: BTreeMap<String, String>,
    /// ARGs declared in the stage or its base stages (`d.buildArgs`).
    declared: BTreeSet<String>,
    /// The stage starts from an image whose ENV is unknown here.
    image_env_unknown: bool,
    shell_set: bool,
    workdir_set: bool,
}

/// Where CMD, ENTRYPOINT and HEALTHCHECK were last set in the stage.
#[derive(Default)]
struct UsedOnce {
    cmd: Option<Lines>,
    entrypoint: Option<Lines>,
    healthcheck: Option<Lines>,
}

pub(super) fn check(input: &Input<'_>, ignore: Option<&IgnoreRules>, sink: &mut Sink) {
    let df = input.dockerfile;
    // Every name an ARG or ENV of the Dockerfile defines (see the module docs).
    let defined_somewhere: BTreeSet<&str> = df
        .stages
        .iter()
        .flat_map(|s| s.instructions.iter())
        .flat_map(|i| match &i.node {
            Instruction::Arg(a) => a.args.iter().map(|d| d.name.as_str()).collect(),
            Instruction::Env(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut end_states: Vec<State> = Vec::with_capacity(df.stages.len());
    for (i, stage) in df.stages.iter().enumerate() {
        let planned = input.plan.stages.get(i);
        let mut state = match planned.map(|p| &p.base) {
            Some(Base::Stage(j)) => end_states.get(*j).cloned().unwrap_or_default(),
            // The image's ENV, when the build resolved it (as BuildKit reads it before it
            // checks); else unknown (see the module docs).
            Some(Base::Image(_)) => match input.bases.env.get(&i) {
                Some(env) => State {
                    vars: env
                        .iter()
                        .map(|kv| match kv.split_once('=') {
                            Some((k, v)) => (k.to_string(), v.to_string()),
                            None => (kv.clone(), String::new()),
                        })
                        .collect(),
                    ..State::default()
                },
                None => State {
                    image_env_unknown: true,
                    ..State::default()
                },
            },
            _ => State::default(),
        };
        state
            .vars
            .entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        let report = input.all_stages || input.plan.is_needed(i);
        let mut d = Dispatch {
            df,
            input,
            ignore,
            sink,
            report,
            defined_somewhere: &defined_somewhere,
            state,
            used: UsedOnce::default(),
        };
        for ins in &stage.instructions {
            d.instruction(&ins.node, ins.line);
        }
        end_states.push(d.state);
    }
}

struct Dispatch<'a, 's> {
    df: &'a Dockerfile,
    input: &'a Input<'a>,
    ignore: Option<&'a IgnoreRules>,
    sink: &'s mut Sink,
    /// Whether this stage is dispatched (its warnings count).
    report: bool,
    defined_somewhere: &'a BTreeSet<&'a str>,
    state: State,
    used: UsedOnce,
}

impl Dispatch<'_, '_> {
    fn emit(&mut self, config: &Config, rule: &'static super::Rule, at: Lines, detail: String) {
        if self.report {
            self.sink.emit(config, rule, Some(at), detail);
        }
    }

    /// UndefinedVar for the variables an expansion missed (`reportUnmatchedVariables`).
    fn unmatched(&mut self, config: &Config, at: Lines, missed: BTreeSet<String>) {
        let missed: Vec<String> = missed
            .into_iter()
            .filter(|v| !self.state.declared.contains(v) && !NON_ENV_ARGS.contains(&v.as_str()))
            .collect();
        for var in missed {
            let hint = suggest(&var, self.state.vars.keys().map(String::as_str));
            if self.state.image_env_unknown && !self.defined_somewhere.contains(var.as_str()) {
                continue;
            }
            let detail = match hint {
                Some(h) => format!("Usage of undefined variable '${var}' (did you mean ${h}?)"),
                None => format!("Usage of undefined variable '${var}'"),
            };
            self.emit(config, &UNDEFINED_VAR, at, detail);
        }
    }

    fn keyword(&self, line: usize, ins: &Instruction) -> String {
        self.df
            .facts_at(line)
            .map_or_else(|| ins.keyword().to_owned(), |f| f.keyword.clone())
    }

    /// Whether the key/value instruction on `line` uses the legacy `KEY value` form (its
    /// first word has no `=`).
    fn legacy_form(&self, line: usize) -> bool {
        self.df
            .facts_at(line)
            .and_then(|f| f.words.first())
            .is_some_and(|w| !w.contains('='))
    }

    fn instruction(&mut self, ins: &Instruction, line: usize) {
        let config = self.sink.config_at(self.df, line);
        let at = lines_of(self.df, line);
        let escape = self.df.directives.escape;
        // Every word BuildKit expands before dispatching (ARG expands its defaults itself;
        // RUN's command is the shell's).
        let expanded = match ins {
            Instruction::Arg(_) | Instruction::Run(_) => None,
            _ => {
                let rec = Recorder::new(&self.state.vars);
                let out = ins.expand(&rec, escape).ok();
                let missed = rec.unmatched.into_inner();
                self.unmatched(&config, at, missed);
                out
            }
        };
        let ins = expanded.as_ref().unwrap_or(ins);
        match ins {
            Instruction::Arg(a) => {
                for def in &a.args {
                    self.secret(&config, at, "ARG", &def.name);
                    let value = if let Some(v) = self.input.build_args.get(&def.name) {
                        Some(v.clone())
                    } else if let Some(d) = &def.default {
                        let rec = Recorder::new(&self.state.vars);
                        let v = expand_word(d, &rec, escape).ok();
                        let missed = rec.unmatched.into_inner();
                        self.unmatched(&config, at, missed);
                        v
                    } else {
                        self.input.plan.global_vars.get(&def.name).cloned()
                    };
                    if let Some(v) = value {
                        if !NON_ENV_ARGS.contains(&def.name.as_str()) {
                            self.state.vars.insert(def.name.clone(), v);
                        }
                    }
                    self.state.declared.insert(def.name.clone());
                }
            }
            Instruction::Env(kv) => {
                let legacy = self.legacy_form(line);
                for (k, v) in kv {
                    if legacy {
                        self.legacy(&config, at, "ENV");
                    }
                    self.secret(&config, at, "ENV", k);
                    self.state.vars.insert(k.clone(), v.clone());
                }
            }
            Instruction::Label(kv) if self.legacy_form(line) => {
                for _ in kv {
                    self.legacy(&config, at, "LABEL");
                }
            }
            Instruction::Workdir(path) => {
                if !self.state.workdir_set && !path.starts_with('/') {
                    self.emit(
                        &config,
                        &WORKDIR_RELATIVE_PATH,
                        at,
                        format!("Relative workdir {path:?} can have unexpected results if the base image changes"),
                    );
                }
                self.state.workdir_set = true;
            }
            Instruction::Shell(_) => self.state.shell_set = true,
            Instruction::Cmd(form) | Instruction::Entrypoint(form) => {
                let name = self.keyword(line, ins);
                let slot = match ins {
                    Instruction::Cmd(_) => &mut self.used.cmd,
                    _ => &mut self.used.entrypoint,
                };
                let previous = slot.replace(at);
                if let Some(prev) = previous {
                    self.used_once(&config, prev, &name);
                }
                if matches!(form, CommandForm::Shell(_)) && !self.state.shell_set {
                    self.emit(
                        &config,
                        &JSON_ARGS_RECOMMENDED,
                        at,
                        format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                    );
                }
            }
            Instruction::Healthcheck(_) => {
                let name = self.keyword(line, ins);
                if let Some(prev) = self.used.healthcheck.replace(at) {
                    self.used_once(&config, prev, &name);
                }
            }
            Instruction::Expose(ports) => {
                for raw in ports {
                    self.expose(&config, at, raw);
                }
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let cmd = if matches!(ins, Instruction::Add(_)) {
                    "Add"
                } else {
                    "Copy"
                };
                self.copy_ignored(&config, at, cmd, c);
            }
            _ => {}
        }
    }

    fn secret(&mut self, config: &Config, at: Lines, instruction: &str, key: &str) {
        if is_secret_name(key) {
            self.emit(
                config,
                &SECRETS_USED_IN_ARG_OR_ENV,
                at,
                format!(
                    "Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})"
                ),
            );
        }
    }

    fn legacy(&mut self, config: &Config, at: Lines, cmd: &str) {
        self.emit(
            config,
            &LEGACY_KEY_VALUE_FORMAT,
            at,
            format!(
                "\"{cmd} key=value\" should be used instead of legacy \"{cmd} key value\" format"
            ),
        );
    }

    /// MultipleInstructionsDisallowed, at the earlier instruction (the one that is ignored).
    fn used_once(&mut self, config: &Config, previous: Lines, name: &str) {
        self.emit(
            config,
            &MULTIPLE_INSTRUCTIONS_DISALLOWED,
            previous,
            format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
        );
    }

    /// ExposeProtoCasing and ExposeInvalidFormat (`portSpecs.parsePort`): `[ip:]host:container`
    /// split on `:`, the protocol after `/`; a value BuildKit refuses is left to the build.
    fn expose(&mut self, config: &Config, at: Lines, raw: &str) {
        let parts: Vec<&str> = raw.split(':').collect();
        let n = parts.len();
        let (ip, host, container) = match n {
            1 => (String::new(), "", parts[0]),
            2 => (String::new(), parts[0], parts[1]),
            _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
        };
        let (port, proto) = container.split_once('/').unwrap_or((container, ""));
        if port.is_empty()
            || !matches!(
                proto.to_ascii_lowercase().as_str(),
                "" | "tcp" | "udp" | "sctp"
            )
        {
            return;
        }
        if proto != proto.to_lowercase() {
            self.emit(
                config,
                &EXPOSE_PROTO_CASING,
                at,
                format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
            );
        }
        if !ip.is_empty() || !host.is_empty() {
            self.emit(
                config,
                &EXPOSE_INVALID_FORMAT,
                at,
                format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
            );
        }
    }

    /// CopyIgnoredFile (`validateCopySourcePath`): a context source the `.dockerignore`
    /// excludes. Not checked when the ignore file has `!` exceptions (too hard to decide
    /// statically, as BuildKit says); `.` and `/` only when a pattern excludes everything.
    fn copy_ignored(&mut self, config: &Config, at: Lines, cmd: &str, c: &CopyInstruction) {
        let Some(rules) = self.ignore.filter(|r| r.origin().is_some()) else {
            return;
        };
        if c.from.is_some() || rules.matcher().has_exclusions() {
            return;
        }
        for src in &c.sources {
            if cmd == "Add" && super::advice::is_remote_source(src) {
                continue;
            }
            let clean = crate::context::gopath::clean(src);
            if clean == "." || clean == "/" {
                let all = rules
                    .matcher()
                    .patterns()
                    .iter()
                    .any(|p| matches!(p.as_str(), "*" | "**" | "**/*"));
                if !all {
                    continue;
                }
            } else if !rules.matcher().matches_or_parent_matches(&clean) {
                continue;
            }
            self.emit(
                config,
                &COPY_IGNORED_FILE,
                at,
                format!("Attempting to {cmd} file {clean:?} that is excluded by .dockerignore"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_secret_name;
    use crate::lint::testing::{check_with, fired, shorts};

    #[test]
    fn secret_names_are_matched_by_whole_underscore_parts_as_buildkit_does() {
        for name in [
            "TOKEN",
            "GITHUB_TOKEN",
            "api_key",
            "AUTH",
            "secret_MESSAGE",
            "DATABASE_PASSWORD",
            "aws_secret_access_key",
            "apikey",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "TOKENIZER",
            "PUBLIC_KEY",
            "keyboard",
            "API-KEY",
            "AUTHOR",
            "SECRET_PASSPHRASE_FILE",
            "AUTH_MODULE_VERSION",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn secrets_used_in_arg_or_env_with_per_instruction_skips() {
        let src = "# check=skip=InvalidDefinitionDescription\n\nFROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\nENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\nENV git_key=\nENV PUBLIC_KEY=\nARG public_token\nARG SECRET_PASSPHRASE_FILE\nENV password_file=bar secret_File=baz\nARG AUTH_MODULE_VERSION\n# check=skip=SecretsUsedInArgOrEnv // allow secret in environment\nENV password=bar\n# check=skip=all // is local to only this instruction\nARG alternate_password\n";
        insta::assert_snapshot!(shorts(src).join("\n"), @r#"
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "SECRET_PASSPHRASE") (line 4)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "SUPER_Secret") (line 5)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "password") (line 6)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "secret") (line 6)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "super_duper_secret_token") (line 7)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "auth") (line 7)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "apikey") (line 8)
        SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "git_key") (line 9)
        "#);
    }

    #[test]
    fn undefined_vars_before_their_arg_and_near_misses() {
        assert!(shorts("FROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n").is_empty());
        assert!(
            shorts("FROM scratch AS base\nARG foo=Dockerfile\nFROM base\nCOPY $foo .\n").is_empty()
        );
        assert_eq!(
            fired(
                "FROM scratch\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n",
                "UndefinedVar"
            ),
            ["UndefinedVar: Usage of undefined variable '$foo' (line 2)"]
        );
        assert_eq!(
            fired(
                "FROM scratch\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nCOPY $DIR_ASSET .\n",
                "UndefinedVar"
            ),
            ["UndefinedVar: Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?) (line 4)"]
        );
        assert_eq!(
            fired("FROM scratch\nENV PATH=$PAHT:/tmp/bin\n", "UndefinedVar"),
            ["UndefinedVar: Usage of undefined variable '$PAHT' (did you mean $PATH?) (line 2)"]
        );
    }

    /// With the base resolved, its ENV is what BuildKit's dispatch state starts with: the
    /// image's variables are defined, anything else is undefined and near misses of the
    /// image's names are suggested (`dockerfile_check_test.go`'s `testUndefinedVariable`).
    #[test]
    fn a_resolved_bases_env_decides_what_is_defined() {
        use crate::lint::testing::check_bases;
        use crate::lint::Bases;
        let src = "FROM golang:1.22\nENV PATH=$GOPATH/bin:$PATH\nWORKDIR $HOME\nCOPY $GOPAHT /x\n";
        let bases = Bases {
            env: [(
                0,
                vec![
                    "PATH=/usr/local/go/bin:/usr/bin:/bin".to_string(),
                    "GOPATH=/go".to_string(),
                ],
            )]
            .into(),
            ..Bases::default()
        };
        let shorts: Vec<String> = check_bases(src, &bases)
            .warnings
            .iter()
            .filter(|w| w.rule.name == "UndefinedVar")
            .map(|w| w.short())
            .collect();
        assert_eq!(
            shorts,
            [
                "UndefinedVar: Usage of undefined variable '$HOME' (line 3)",
                "UndefinedVar: Usage of undefined variable '$GOPAHT' (did you mean $GOPATH?) (line 4)"
            ]
        );
    }

    #[test]
    fn an_images_own_variables_are_not_reported() {
        // The base is not resolved: GOPATH may be the image's, not reported. foo is the
        // Dockerfile's, used too early.
        let src = "FROM golang:1.22\nENV PATH=$GOPATH/bin:$PATH\nCOPY $foo /x\nARG foo=a\n";
        assert_eq!(
            fired(src, "UndefinedVar"),
            ["UndefinedVar: Usage of undefined variable '$foo' (line 3)"]
        );
    }

    #[test]
    fn workdir_relative_path_only_before_an_absolute_one() {
        assert_eq!(
            fired("FROM scratch\nWORKDIR app/\n", "WorkdirRelativePath"),
            ["WorkdirRelativePath: Relative workdir \"app/\" can have unexpected results if the base image changes (line 2)"]
        );
        assert!(
            shorts("FROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n").is_empty()
        );
        assert!(
            shorts("FROM scratch\n# check=skip=WorkdirRelativePath\nWORKDIR app/\n").is_empty()
        );
    }

    #[test]
    fn json_args_recommended_unless_a_shell_is_set() {
        assert_eq!(
            shorts("FROM scratch\nCMD mycommand\n"),
            ["JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)"]
        );
        assert_eq!(
            fired("FROM scratch\nentrypoint mycommand\n", "JSONArgsRecommended"),
            ["JSONArgsRecommended: JSON arguments recommended for entrypoint to prevent unintended behavior related to OS signals (line 2)"]
        );
        assert!(
            shorts("FROM scratch AS base\nSHELL [\"/bin/x\"]\nFROM base\nCMD mycommand\n")
                .is_empty()
        );
        assert!(
            shorts("FROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n").is_empty()
        );
        assert!(shorts("FROM scratch\nCMD [\"mycommand\"]\n").is_empty());
    }

    #[test]
    fn multiple_instructions_warn_at_the_ignored_one() {
        let src = "FROM scratch\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nCOPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT [\"/b\"]\nCMD [\"/b\"]\nHEALTHCHECK CMD [\"/b\"]\n";
        insta::assert_snapshot!(shorts(src).join("\n"), @r"
        MultipleInstructionsDisallowed: Multiple ENTRYPOINT instructions should not be used in the same stage because only the last one will be used (line 2)
        MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used (line 3)
        MultipleInstructionsDisallowed: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used (line 4)
        ");
        let staged = "FROM scratch AS a\nENTRYPOINT [\"/a\"]\nCMD [\"/a\"]\nFROM a AS b\nENTRYPOINT [\"/b\"]\nCMD [\"/b\"]\n";
        assert!(shorts(staged).is_empty());
    }

    #[test]
    fn legacy_key_value_format_in_unbuilt_stages_only_for_check() {
        let src =
            "FROM scratch AS a\n\nFROM a AS b\nENV testkey value\nLABEL key value\n\nFROM a AS c\n";
        assert_eq!(shorts(src).len(), 2, "{:?}", shorts(src));
        assert!(fired(src, "LegacyKeyValueFormat")[0].contains(
            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 4)"
        ));
        // A build of target c does not dispatch b.
        assert!(check_with(src, &[], &["c"]).warnings.is_empty());
        assert!(shorts("FROM scratch\nENV k=v\nLABEL k=v\n").is_empty());
    }

    #[test]
    fn expose_protocol_casing_and_host_mappings() {
        insta::assert_snapshot!(shorts("FROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n").join("\n"), @r"
        ExposeProtoCasing: Defined protocol '80/TcP' in EXPOSE instruction should be lowercase (line 2)
        ExposeProtoCasing: Defined protocol '8080/TCP' in EXPOSE instruction should be lowercase (line 2)
        ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80' (line 2)
        ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '[::1]:8080:8080' (line 2)
        ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '5000:5000' (line 2)
        ");
    }
}
