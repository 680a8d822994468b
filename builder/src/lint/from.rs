//! The `FROM` line's checks, on every stage (BuildKit's `buildDispatchStates` and
//! `validateBaseImagesWithDefaultArgs`): variables no global ARG declares, a base name that
//! the ARG defaults alone make invalid, and `--platform` values that are redundant or
//! constant.
//!
//! `InvalidBaseImagePlatform` (a pulled base image of another platform) needs the resolved
//! base: see `super::base`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::rules::{
    FROM_PLATFORM_FLAG_CONST_DISALLOWED, INVALID_DEFAULT_ARG_IN_FROM, REDUNDANT_TARGET_PLATFORM,
    UNDEFINED_ARG_IN_FROM,
};
use super::{lines_of, Input, Sink};
use crate::dockerfile::{expand_word, VarLookup};
use crate::graph::platform::parse_platform;

/// A lookup that remembers which variables it was asked for and did or did not have
/// (BuildKit's `ProcessWordWithMatches`: `Matched` and `Unmatched`).
pub(super) struct Recorder<'a> {
    vars: &'a BTreeMap<String, String>,
    pub matched: RefCell<BTreeSet<String>>,
    pub unmatched: RefCell<BTreeSet<String>>,
}

impl<'a> Recorder<'a> {
    pub fn new(vars: &'a BTreeMap<String, String>) -> Self {
        Recorder {
            vars,
            matched: RefCell::default(),
            unmatched: RefCell::default(),
        }
    }
}

impl VarLookup for Recorder<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match self.vars.get(name) {
            Some(v) => {
                self.matched.borrow_mut().insert(name.to_owned());
                Some(v)
            }
            None => {
                self.unmatched.borrow_mut().insert(name.to_owned());
                None
            }
        }
    }
}

/// BuildKit's `suggest.Search`: the option closest to `val` by Levenshtein distance, if
/// under 3 (an exact match means no suggestion).
pub(super) fn suggest<'a>(
    val: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best = None;
    let mut min = 3;
    for opt in options {
        if opt == val {
            return None;
        }
        let d = crate::dockerfile::edit_distance(val, opt);
        if d < min {
            min = d;
            best = Some(opt);
        }
    }
    best
}

/// Predefined global ARGs BuildKit has and rbuild does not set.
const MORE_PREDEFINED: [&str; 3] = ["BUILDOSVERSION", "TARGETOSVERSION", "TARGETSTAGE"];

/// Whether `name` is a valid image reference (`reference.ParseNormalizedNamed`).
fn valid_reference(name: &str) -> bool {
    !name.is_empty() && rbuild_registry::Reference::from_str(name).is_ok()
}

pub(super) fn check(input: &Input<'_>, sink: &mut Sink) {
    let df = input.dockerfile;
    let escape = df.directives.escape;
    let globals = &input.plan.global_vars;
    // The names a FROM may use: predefined and declared global ARGs, set or not.
    let mut known: BTreeSet<&str> = globals.keys().map(String::as_str).collect();
    known.extend(MORE_PREDEFINED);
    for a in &df.global_args {
        known.extend(a.node.args.iter().map(|d| d.name.as_str()));
    }
    let defaults = default_scope(input);
    for stage in &df.stages {
        let from = &stage.from.node;
        let config = sink.config_at(df, stage.from.line);
        let at = Some(lines_of(df, stage.from.line));
        let undeclared = |sink: &mut Sink, rec: &Recorder<'_>| {
            for arg in rec.unmatched.borrow().iter() {
                if known.contains(arg.as_str()) {
                    continue;
                }
                let detail = match suggest(arg, known.iter().copied()) {
                    Some(s) => format!("FROM argument '{arg}' is not declared (did you mean {s}?)"),
                    None => format!("FROM argument '{arg}' is not declared"),
                };
                sink.emit(&config, &UNDEFINED_ARG_IN_FROM, at, detail);
            }
        };
        let rec = Recorder::new(globals);
        let _ = expand_word(&from.image, &rec, escape);
        undeclared(sink, &rec);
        if let Some(platform) = &from.platform {
            let rec = Recorder::new(globals);
            let value = expand_word(platform, &rec, escape).unwrap_or_default();
            undeclared(sink, &rec);
            let (matched, unmatched) = (rec.matched.borrow(), rec.unmatched.borrow());
            if matched.len() == 1
                && unmatched.is_empty()
                && matched.contains("TARGETPLATFORM")
                && globals.get("TARGETPLATFORM") == Some(&value)
            {
                sink.emit(
                    &config,
                    &REDUNDANT_TARGET_PLATFORM,
                    at,
                    format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"),
                );
            }
            if matched.is_empty() && unmatched.is_empty() {
                if let Ok(p) = parse_platform(&value) {
                    let name = stage.name.as_deref().unwrap_or("");
                    if !name.contains(&p.os) && !name.contains(&p.architecture) {
                        sink.emit(
                            &config,
                            &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                            at,
                            format!("FROM --platform flag should not use constant value {value:?}"),
                        );
                    }
                }
            }
        }
        // InvalidDefaultArgInFrom runs under the build's configuration, not the comments'.
        if let Some(defaults) = &defaults {
            let base = sink.base.clone();
            match expand_word(&from.image, defaults, escape) {
                Ok(name) if !valid_reference(&name) => sink.emit(
                    &base,
                    &INVALID_DEFAULT_ARG_IN_FROM,
                    at,
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        from.image
                    ),
                ),
                // An expansion error fails the build itself; BuildKit stops this check.
                _ => {}
            }
        }
    }
}

/// The global scope with no `--build-arg`: the predefined platform ARGs and each global
/// ARG's default (`buildMetaArgs(…, nil)`); `None` when a default does not expand.
fn default_scope(input: &Input<'_>) -> Option<BTreeMap<String, String>> {
    let df = input.dockerfile;
    let mut vars = input.platform_vars.clone();
    for arg in &df.global_args {
        for def in &arg.node.args {
            if let Some(d) = &def.default {
                let v = expand_word(d, &vars, df.directives.escape).ok()?;
                vars.insert(def.name.clone(), v);
            }
        }
    }
    Some(vars)
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::{check_with, shorts};

    #[test]
    fn declared_global_args_and_predefined_platform_args_are_known() {
        for src in [
            "ARG base=scratch\nFROM $base\n",
            "ARG BUILDPLATFORM=linux/amd64\nFROM --platform=$BUILDPLATFORM scratch\n",
            "FROM --platform=$BUILDPLATFORM scratch\n",
            "ARG DEBUG\nFROM scratch${DEBUG}\n",
            "ARG DEBUG\nFROM scra${DEBUG:-tch}\n",
        ] {
            assert!(shorts(src).is_empty(), "{src}: {:?}", shorts(src));
        }
    }

    #[test]
    fn undeclared_from_args_warn_with_a_suggestion() {
        let r = check_with(
            "ARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} scratch${MY_OS:+} AS unused\nFROM scratch\n",
            &[],
            &[],
        );
        let s: Vec<String> = r.warnings.iter().map(|w| w.short()).collect();
        assert_eq!(
            s,
            ["UndefinedArgInFrom: FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?) (line 3)"]
        );
        assert_eq!(
            shorts("ARG tag=latest\nFROM scratch${tag:+}${version} AS b\n"),
            ["UndefinedArgInFrom: FROM argument 'version' is not declared (line 2)"]
        );
    }

    #[test]
    fn redundant_target_platform_quotes_the_expression() {
        assert_eq!(
            shorts("FROM --platform=${TARGETPLATFORM} scratch\n"),
            ["RedundantTargetPlatform: Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior (line 1)"]
        );
        assert!(shorts(
            "# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM scratch\n"
        )
        .is_empty());
        assert!(shorts("FROM --platform=$BUILDPLATFORM scratch\n").is_empty());
    }

    #[test]
    fn constant_platform_warns_unless_the_stage_name_says_it() {
        assert_eq!(
            shorts("FROM --platform=linux/amd64 scratch\n"),
            ["FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value \"linux/amd64\" (line 1)"]
        );
        assert!(shorts("FROM --platform=linux/amd64 scratch AS my_amd64_stage\n").is_empty());
        assert!(shorts("FROM --platform=linux/amd64 scratch AS linux\n").is_empty());
    }

    #[test]
    fn invalid_default_arg_in_from_uses_defaults_not_build_args() {
        let r = check_with(
            "ARG VERSION\nFROM scratch AS base\nFROM base${VERSION:+x}:$VERSION\n",
            &[("VERSION", "1")],
            &[],
        );
        let s: Vec<String> = r
            .warnings
            .iter()
            .filter(|w| w.rule.name == "InvalidDefaultArgInFrom")
            .map(|w| w.short())
            .collect();
        assert_eq!(
            s,
            ["InvalidDefaultArgInFrom: Default value for ARG base${VERSION:+x}:$VERSION results in empty or invalid base image name (line 3)"]
        );
        for valid in [
            "ARG VERSION=\"latest\"\nFROM scratch AS busybox\nFROM busybox${VERSION:+}\n",
            "ARG VARIANT\nFROM scratch AS stable\nFROM stable${VARIANT}\n",
        ] {
            let r = check_with(valid, &[], &[]);
            assert!(
                r.warnings
                    .iter()
                    .all(|w| w.rule.name != "InvalidDefaultArgInFrom"),
                "{valid}"
            );
        }
    }
}
