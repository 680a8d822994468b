//! `FROM --platform=…`: the platform each stage is built for ([`stage_platforms`]). A build
//! plan is made per target platform; a stage on `$BUILDPLATFORM` (the cross-compilation
//! pattern) has the same platform, so the same cache keys, in every target platform's plan,
//! and is built once.
//!
//! The value is expanded with the global scope, as BuildKit expands it (global `ARG`s and the
//! automatic platform ARGs), and normalised as containerd does (`x86_64` is `amd64`, `arm64/v8`
//! is `arm64`).
//!
//! The platform strings ([`parse_platform`], [`platform_string`], [`host_platform`]) live with
//! the `Platform` type in `rbuild_layers::platform` (the sandbox uses them too); they are
//! re-exported here for the CLI and the engine.

use std::collections::BTreeMap;

use super::{PlanError, Vars};
use rbuild_layers::Platform;

use crate::dockerfile::expand::expand_word;
use crate::dockerfile::Dockerfile;

pub use rbuild_layers::platform::{host_platform, parse_platform, platform_string};

/// The platform each stage is built for, BuildKit's rules (`dockerfile2llb/convert.go`): a
/// stage `FROM` another stage is on that stage's platform (`dispatchState.init`: its own
/// `--platform` is ignored); a stage `FROM scratch` is on the target platform whatever its
/// `--platform` says (`emptyImage(targetPlatform)`; checked with Docker 20.10's BuildKit);
/// else `FROM --platform=…` when given (expanded with the global scope: global `ARG`s and the
/// automatic platform ARGs); else the target platform. A needed stage's `--platform` must be a
/// platform even where it is ignored, as BuildKit parses it first. Only the stages in `needed`
/// are checked; the others get the target's.
pub(super) fn stage_platforms(
    df: &Dockerfile,
    bases: &[super::Base],
    needed: &std::collections::BTreeSet<usize>,
    global_vars: &BTreeMap<String, String>,
    target: &Platform,
) -> Result<Vec<Platform>, PlanError> {
    let mut platforms: Vec<Platform> = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let inherited = match base {
            super::Base::Stage(j) => platforms.get(*j).cloned(),
            _ => None,
        };
        let given = match df.stages.get(i) {
            Some(stage) if needed.contains(&i) => match &stage.from.node.platform {
                Some(raw) => Some(from_platform(df, raw, stage.from.line, global_vars)?),
                None => None,
            },
            _ => None,
        };
        let platform = match (inherited, base) {
            (Some(p), _) => p,
            (None, super::Base::Scratch) => target.clone(),
            (None, _) => given.unwrap_or_else(|| target.clone()),
        };
        platforms.push(platform);
    }
    Ok(platforms)
}

/// A `FROM --platform` value, expanded and parsed.
fn from_platform(
    df: &Dockerfile,
    raw: &str,
    line: usize,
    global_vars: &BTreeMap<String, String>,
) -> Result<Platform, PlanError> {
    let value = expand_word(raw, &Vars(global_vars), df.directives.escape).map_err(|source| {
        PlanError::Expand {
            line,
            what: "FROM --platform".into(),
            source,
        }
    })?;
    parse_platform(&value).map_err(|reason| PlanError::BadFromPlatform { line, reason })
}

/// The target platform `platform_args` encoded in `vars` (`TARGETPLATFORM`), else the host's.
pub(super) fn target_of(vars: &BTreeMap<String, String>) -> Platform {
    vars.get("TARGETPLATFORM")
        .and_then(|t| parse_platform(t).ok())
        .unwrap_or_else(host_platform)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{global_scope, platform_args, BuildPlan};

    /// Each stage's platform in the plan for `target`, built on linux/amd64.
    fn platforms(dockerfile: &str, target: &str) -> Result<Vec<String>, PlanError> {
        let df = crate::dockerfile::parse(dockerfile).expect("parses");
        let target = parse_platform(target).expect("platform");
        let build = parse_platform("linux/amd64").expect("platform");
        let vars = platform_args(&target, &build);
        global_scope(&df, &BTreeMap::new(), &vars)?;
        let plan = BuildPlan::new(&df, &[], &BTreeMap::new(), &vars)?;
        Ok(plan
            .stages
            .iter()
            .map(|s| platform_string(&s.platform))
            .collect())
    }

    #[test]
    fn a_stage_without_from_platform_is_on_the_target_platform() {
        assert_eq!(
            platforms("FROM scratch\n", "linux/arm64").unwrap(),
            ["linux/arm64"]
        );
    }

    #[test]
    fn from_platform_expressions_expand_with_the_global_scope() {
        for (p, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("$TARGETPLATFORM", "linux/arm64"),
            ("${BUILDPLATFORM}", "linux/amd64"),
            ("$TARGETOS/$TARGETARCH", "linux/arm64"),
        ] {
            let got = platforms(&format!("FROM --platform={p} busybox\n"), "linux/arm64")
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(got, [want], "{p}");
        }
        assert_eq!(
            platforms(
                "ARG P=linux/arm64/v8\nFROM --platform=$P busybox\n",
                "linux/amd64"
            )
            .unwrap(),
            ["linux/arm64"]
        );
    }

    /// BuildKit's `dockerfile2llb`: a stage built FROM another stage takes that stage's
    /// platform (`d.platform = d.base.platform`), whatever its own `--platform` says.
    #[test]
    fn a_stage_from_another_stage_is_on_that_stages_platform() {
        let got = platforms(
            "FROM --platform=$BUILDPLATFORM busybox AS build\nFROM build AS more\nFROM --platform=linux/s390x build\nFROM scratch\nCOPY --from=more / /\n",
            "linux/arm64",
        )
        .unwrap();
        assert_eq!(
            got,
            ["linux/amd64", "linux/amd64", "linux/amd64", "linux/arm64"]
        );
    }

    /// BuildKit's `emptyImage(targetPlatform)`: scratch is the target's, whatever `--platform`
    /// says (Docker 20.10: `FROM --platform=linux/s390x scratch` exports an amd64 image).
    #[test]
    fn a_scratch_stage_is_on_the_target_platform_whatever_its_from_platform_says() {
        assert_eq!(
            platforms("FROM --platform=linux/s390x scratch\n", "linux/arm64").unwrap(),
            ["linux/arm64"]
        );
        let e = platforms("FROM --platform=nonsense scratch\n", "linux/arm64")
            .expect_err("still parsed");
        assert!(
            matches!(e, PlanError::BadFromPlatform { line: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn from_platform_that_is_not_a_platform_is_refused_with_its_line() {
        let e = platforms(
            "FROM scratch\nFROM --platform=arm64 scratch\n",
            "linux/amd64",
        )
        .expect_err("bad");
        assert!(
            matches!(e, PlanError::BadFromPlatform { line: 2, .. }),
            "{e}"
        );
        assert!(e.render("Dockerfile").starts_with("Dockerfile:2: "));
    }

    #[test]
    fn from_platform_of_a_stage_not_built_is_not_checked() {
        let got = platforms(
            "FROM --platform=nonsense scratch AS other\nFROM scratch\n",
            "linux/amd64",
        )
        .expect("stage 0 is not needed");
        assert_eq!(got[1], "linux/amd64");
    }
}
