//! `FROM --platform=…`: rbuild builds one platform per build, so a stage's `--platform` is
//! honoured when it names the build's target platform (often written `$TARGETPLATFORM`, or
//! `$BUILDPLATFORM` when that is the same) and refused otherwise; it is never ignored.
//!
//! The value is expanded with the global scope, as BuildKit expands it (global `ARG`s and the
//! automatic platform ARGs), and compared after containerd's normalisation (`x86_64` is
//! `amd64`, `arm64/v8` is `arm64`).
//!
//! It also owns the platform strings: [`parse_platform`] and [`platform_string`] (the CLI and
//! the engine both use them; they live here, below the CLI).

use std::collections::BTreeMap;

use super::{PlanError, Vars};
use rbuild_layers::Platform;

use crate::dockerfile::expand::expand_word;
use crate::dockerfile::Dockerfile;

/// Parses `os/arch[/variant]` and normalises architecture aliases as containerd does.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = s.trim().split('/').collect();
    let (os, arch, variant) = match parts.as_slice() {
        [os, arch] => (*os, *arch, None),
        [os, arch, variant] => (*os, *arch, Some(*variant)),
        _ => {
            return Err(format!(
                "platform {s:?} must be os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
            ))
        }
    };
    if os.is_empty() || arch.is_empty() || variant == Some("") {
        return Err(format!("platform {s:?} has an empty part"));
    }
    let os = os.to_ascii_lowercase();
    let (arch, variant) = normalize_arch(&arch.to_ascii_lowercase(), variant);
    Ok(Platform {
        architecture: arch,
        os,
        os_version: None,
        variant,
    })
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_ascii_lowercase);
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => ("arm".into(), Some(variant.unwrap_or_else(|| "v7".into()))),
        "i386" | "i686" | "386" => ("386".into(), variant),
        other => (other.to_string(), variant),
    }
}

/// The platform rbuild itself runs on.
pub fn host_platform() -> Platform {
    let (arch, variant) = normalize_arch(std::env::consts::ARCH, None);
    Platform {
        architecture: arch,
        os: "linux".into(),
        os_version: None,
        variant,
    }
}

/// Formats a platform as `os/arch[/variant]`.
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

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

    #[test]
    fn platforms_normalise_like_containerd() {
        let p = parse_platform("linux/x86_64").unwrap();
        assert_eq!(platform_string(&p), "linux/amd64");
        assert_eq!(
            platform_string(&parse_platform("linux/aarch64").unwrap()),
            "linux/arm64"
        );
        assert_eq!(
            platform_string(&parse_platform("linux/arm64/v8").unwrap()),
            "linux/arm64"
        );
        assert_eq!(
            platform_string(&parse_platform("linux/arm").unwrap()),
            "linux/arm/v7"
        );
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }

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
