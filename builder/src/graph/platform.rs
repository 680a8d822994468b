//! `FROM --platform=…`: rbuild builds one platform per build, so a stage's `--platform` is
//! honoured when it names the build's target platform (often written `$TARGETPLATFORM`, or
//! `$BUILDPLATFORM` when that is the same) and refused otherwise; it is never ignored.
//!
//! The value is expanded with the global scope, as BuildKit expands it (global `ARG`s and the
//! automatic platform ARGs), and compared after containerd's normalisation (`x86_64` is
//! `amd64`, `arm64/v8` is `arm64`).

use std::collections::BTreeMap;

use super::{PlanError, Vars};
use crate::cli::values::{parse_platform, platform_string};
use crate::dockerfile::expand::expand_word;
use crate::dockerfile::Dockerfile;

/// Checks the `--platform` of the `FROM` of every stage in `needed` against the target
/// platform (the global scope's `TARGETPLATFORM`).
pub(super) fn check_from_platforms(
    df: &Dockerfile,
    needed: impl IntoIterator<Item = usize>,
    global_vars: &BTreeMap<String, String>,
) -> Result<(), PlanError> {
    let target = global_vars
        .get("TARGETPLATFORM")
        .and_then(|t| parse_platform(t).ok())
        .map(|p| platform_string(&p));
    for i in needed {
        let Some(stage) = df.stages.get(i) else {
            continue;
        };
        let Some(raw) = &stage.from.node.platform else {
            continue;
        };
        let line = stage.from.line;
        let value =
            expand_word(raw, &Vars(global_vars), df.directives.escape).map_err(|source| {
                PlanError::Expand {
                    line,
                    what: "FROM --platform".into(),
                    source,
                }
            })?;
        let platform =
            parse_platform(&value).map_err(|reason| PlanError::BadFromPlatform { line, reason })?;
        let platform = platform_string(&platform);
        if target.as_deref() != Some(platform.as_str()) {
            return Err(PlanError::ForeignFromPlatform {
                line,
                platform,
                target: target.unwrap_or_else(|| "unknown".into()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{global_scope, platform_args};

    fn check(dockerfile: &str, target: &str) -> Result<(), PlanError> {
        let df = crate::dockerfile::parse(dockerfile).expect("parses");
        let target = parse_platform(target).expect("platform");
        let build = parse_platform("linux/amd64").expect("platform");
        let vars = platform_args(&target, &build);
        let vars = global_scope(&df, &BTreeMap::new(), &vars)?;
        check_from_platforms(&df, 0..df.stages.len(), &vars)
    }

    #[test]
    fn from_platform_equal_to_the_target_is_honoured() {
        for p in [
            "linux/amd64",
            "linux/x86_64",
            "$TARGETPLATFORM",
            "${BUILDPLATFORM}",
            "$TARGETOS/$TARGETARCH",
        ] {
            check(&format!("FROM --platform={p} scratch\n"), "linux/amd64")
                .unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        check(
            "ARG P=linux/arm64/v8\nFROM --platform=$P scratch\n",
            "linux/arm64",
        )
        .unwrap();
    }

    #[test]
    fn from_platform_other_than_the_target_is_refused_with_its_line() {
        let e = check(
            "FROM scratch\nFROM --platform=linux/arm64 scratch\n",
            "linux/amd64",
        )
        .expect_err("another platform");
        assert_eq!(e.line(), Some(2));
        let msg = e.render("Dockerfile");
        assert!(msg.starts_with("Dockerfile:2: "), "{msg}");
        assert!(
            msg.contains("linux/arm64") && msg.contains("linux/amd64"),
            "{msg}"
        );
        // $BUILDPLATFORM when the target is another platform: refused too.
        let e = check("FROM --platform=$BUILDPLATFORM scratch\n", "linux/arm64")
            .expect_err("build platform is not the target");
        assert_eq!(e.line(), Some(1));
    }

    #[test]
    fn from_platform_that_is_not_a_platform_is_refused() {
        let e = check("FROM --platform=arm64 scratch\n", "linux/amd64").expect_err("bad");
        assert!(
            matches!(e, PlanError::BadFromPlatform { line: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn from_platform_of_a_stage_not_built_is_not_checked() {
        let df = crate::dockerfile::parse(
            "FROM --platform=linux/s390x scratch AS other\nFROM scratch\n",
        )
        .expect("parses");
        let target = parse_platform("linux/amd64").expect("platform");
        let vars = platform_args(&target, &target);
        check_from_platforms(&df, [1], &vars).expect("stage 0 is not needed");
    }
}
