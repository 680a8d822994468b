//! Build checks: BuildKit's Dockerfile lint rules (`frontend/dockerfile/linter/ruleset.go`),
//! with BuildKit's names, messages, URLs and trigger conditions, plus rbuild's own rules (docs
//! in `docs/checks/`). Every build runs them and shows what fired as warnings; `--call check`
//! (`--check`) and `rbuild check` print them in buildx's format and build nothing.
//!
//! Docker 20.10's BuildKit (v0.8) predates build checks, so the reference is BuildKit's source
//! and its `frontend/dockerfile/dockerfile_check_test.go`, not a differential run.
//!
//! Modules: [`directive`] (`# check=…`, `BUILDKIT_DOCKERFILE_CHECK`), `rules` (the registry),
//! `parse` (what BuildKit checks while parsing: casing, stage names, MAINTAINER, empty
//! continuation lines, descriptions), `from` (the `FROM` line's variables and platform),
//! `base` (what a resolved base image tells: its platform),
//! `dispatch` (each stage's instructions in order, with its variables: UndefinedVar,
//! WORKDIR, CMD/ENTRYPOINT, ENV/LABEL/ARG, EXPOSE, COPY of ignored files), `advice` and
//! `context` (rbuild's rules), `report` (buildx's printing and the metadata file).

mod advice;
mod base;
mod context;
pub mod directive;
mod dispatch;
mod from;
mod parse;
pub mod report;
pub mod rules;

use std::collections::BTreeMap;
use std::path::Path;

use crate::dockerfile::Dockerfile;
use crate::graph::BuildPlan;

pub use directive::{Config, ConfigError};
pub use rules::Rule;

pub use crate::graph::CHECK_BUILD_ARG;

/// Source lines a warning is about, 1-based and inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lines {
    pub start: usize,
    pub end: usize,
}

impl Lines {
    pub fn one(line: usize) -> Lines {
        Lines {
            start: line,
            end: line,
        }
    }
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub rule: &'static Rule,
    /// The rule's message for this case (BuildKit's `Detail`).
    pub detail: String,
    /// Where in the Dockerfile; `None` for what is about the context or the command line.
    pub at: Option<Lines>,
}

impl Warning {
    /// BuildKit's one-line form (`linter.LintFormatShort`): `Rule: detail (line N)`.
    pub fn short(&self) -> String {
        match self.at {
            Some(l) if l.start > 0 => {
                format!("{}: {} (line {})", self.rule.name, self.detail, l.start)
            }
            _ => format!("{}: {}", self.rule.name, self.detail),
        }
    }
}

/// What the build learnt from the resolved base images: BuildKit resolves every reachable
/// `FROM` before it checks, and two rules read what it found.
#[derive(Debug, Clone, Default)]
pub struct Bases {
    /// Each stage's base image environment (its config's `KEY=value` entries), by stage index,
    /// for the stages built from an image that resolved. UndefinedVar knows these variables.
    pub env: BTreeMap<usize, Vec<String>>,
    /// Bases pulled with another platform than their stage expected (InvalidBaseImagePlatform).
    pub platform_mismatches: Vec<PlatformMismatch>,
}

/// A base image whose platform is not the one its stage expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMismatch {
    pub stage: usize,
    /// The name as the `FROM` line gives it (after its variables).
    pub image: String,
    /// `os/arch[/variant]` as BuildKit prints them (`platforms.FormatAll`).
    pub expected: String,
    pub actual: String,
}

/// What the checks read.
pub struct Input<'a> {
    pub dockerfile: &'a Dockerfile,
    pub plan: &'a BuildPlan,
    /// `--build-arg` values that are set.
    pub build_args: &'a BTreeMap<String, String>,
    /// `--build-arg` names as given (a bare name with no such environment variable too).
    pub build_arg_names: Vec<&'a str>,
    /// The predefined platform ARGs (`TARGETPLATFORM`, …).
    pub platform_vars: &'a BTreeMap<String, String>,
    /// Check every stage (`--call check` without `--target`, as BuildKit's lint does), or
    /// only the stages the targets need (a build).
    pub all_stages: bool,
    /// The local context directory and the Dockerfile, for the rules that look at the
    /// context's files and `.dockerignore`; `None` for a context that is not a directory.
    pub context: Option<(&'a Path, &'a Path)>,
    /// Paths inside the context the build never reads (its store, its outputs): left out of
    /// the context scan, as the build's own scan leaves them out.
    pub skip: &'a [std::path::PathBuf],
    /// What the resolved base images told (empty when none was resolved).
    pub bases: &'a Bases,
}

/// The checks' outcome.
#[derive(Debug, Clone)]
pub struct Report {
    /// Sorted as buildx prints them: warnings without a line first (by rule name), then by
    /// line, in the order they fired.
    pub warnings: Vec<Warning>,
    /// `error=true`: a warning fails the build.
    pub error: bool,
}

impl Report {
    /// BuildKit's error when `error=true` and a rule fired (`Linter.Error`), with the rule
    /// names sorted (BuildKit lists them in map order).
    pub fn violation(&self) -> Option<String> {
        if !self.error || self.warnings.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = self.warnings.iter().map(|w| w.rule.name).collect();
        names.sort_unstable();
        names.dedup();
        Some(format!(
            "lint violation found for rules: {}",
            names.join(", ")
        ))
    }
}

/// Collects what fired, under the configuration in effect where it fired.
pub(crate) struct Sink {
    pub base: Config,
    pub(crate) warnings: Vec<Warning>,
}

impl Sink {
    pub(crate) fn new(base: Config) -> Sink {
        Sink {
            base,
            warnings: Vec::new(),
        }
    }

    /// Records `rule` firing unless `config` turns it off (`Linter.Run`).
    pub fn emit(
        &mut self,
        config: &Config,
        rule: &'static Rule,
        at: Option<Lines>,
        detail: String,
    ) {
        if config.runs(rule.name, rule.experimental) {
            self.warnings.push(Warning { rule, detail, at });
        }
    }

    /// The configuration for the instruction on `line`: the build's, with the `# check=`
    /// comment right above it merged in.
    pub fn config_at(&self, df: &Dockerfile, line: usize) -> Config {
        match df.facts_at(line) {
            Some(f) => self.base.with_comments(&f.comments),
            None => self.base.clone(),
        }
    }
}

/// The location BuildKit gives an instruction: its first to last line.
pub(crate) fn lines_of(df: &Dockerfile, line: usize) -> Lines {
    let end = df.facts_at(line).map_or(line, |f| f.end_line.max(line));
    Lines { start: line, end }
}

/// Runs every check. Fails only when the check configuration itself is invalid (BuildKit:
/// "failed to parse check options").
pub fn run(input: &Input<'_>) -> Result<Report, ConfigError> {
    let df = input.dockerfile;
    let config = Config::for_build(
        df.directives.check.as_deref(),
        input.build_args.get(CHECK_BUILD_ARG).map(String::as_str),
    )?;
    let error = config.error;
    let mut sink = Sink::new(config);
    let ignore = context::load_ignore(input);
    parse::check(df, &mut sink);
    from::check(input, &mut sink);
    base::check(input, &mut sink);
    dispatch::check(input, ignore.as_ref(), &mut sink);
    advice::check(input, &mut sink);
    context::check(input, ignore.as_ref(), &mut sink);
    let mut warnings = sink.warnings;
    warnings.sort_by(|a, b| match (a.at, b.at) {
        (None, None) => a.rule.name.cmp(b.rule.name),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.start.cmp(&y.start),
    });
    Ok(Report { warnings, error })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Running the checks on a Dockerfile text in unit tests.

    use std::collections::BTreeMap;

    use super::{run, Bases, Input, Report};
    use crate::dockerfile::parse;
    use crate::graph::{platform_args, BuildPlan};

    pub fn linux_amd64() -> rbuild_layers::Platform {
        crate::graph::platform::parse_platform("linux/amd64").expect("valid")
    }

    /// The checks of `src` as `--call check` runs them (every stage, no context).
    pub fn check_with(src: &str, build_args: &[(&str, &str)], targets: &[&str]) -> Report {
        check_full(src, build_args, targets, &Bases::default())
    }

    /// The checks of `src` (every stage, no context) with what its resolved bases told.
    pub fn check_bases(src: &str, bases: &Bases) -> Report {
        check_full(src, &[], &[], bases)
    }

    fn check_full(
        src: &str,
        build_args: &[(&str, &str)],
        targets: &[&str],
        bases: &Bases,
    ) -> Report {
        let df = parse(src).expect("the test Dockerfile parses");
        let args: BTreeMap<String, String> = build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pv = platform_args(&linux_amd64(), &linux_amd64());
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let plan = BuildPlan::new(&df, &targets, &args, &pv).expect("the test Dockerfile plans");
        let input = Input {
            dockerfile: &df,
            plan: &plan,
            build_args: &args,
            build_arg_names: args.keys().map(String::as_str).collect(),
            platform_vars: &pv,
            all_stages: targets.is_empty(),
            context: None,
            skip: &[],
            bases,
        };
        run(&input).expect("valid check configuration")
    }

    /// `Rule: detail (line N)` of every warning.
    pub fn shorts(src: &str) -> Vec<String> {
        check_with(src, &[], &[])
            .warnings
            .iter()
            .map(|w| w.short())
            .collect()
    }

    /// The short forms of the warnings of one rule.
    pub fn fired(src: &str, rule: &str) -> Vec<String> {
        check_with(src, &[], &[])
            .warnings
            .iter()
            .filter(|w| w.rule.name == rule)
            .map(|w| w.short())
            .collect()
    }
}
