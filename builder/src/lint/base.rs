//! The checks that read a resolved base image (BuildKit runs them while it resolves each
//! reachable `FROM`, in `dockerfile2llb`'s `dispatchStage` preparation):
//! InvalidBaseImagePlatform, a base pulled with another platform than the stage expected.
//! The build finds the mismatches (it knows the target platform and what this host runs,
//! see [`super::Bases`]); this module reports them on the `FROM` line, under the
//! configuration in effect there.

use super::rules::INVALID_BASE_IMAGE_PLATFORM;
use super::{lines_of, Input, Sink};

pub(super) fn check(input: &Input<'_>, sink: &mut Sink) {
    let df = input.dockerfile;
    for m in &input.bases.platform_mismatches {
        let Some(stage) = df.stages.get(m.stage) else {
            continue;
        };
        let line = stage.from.line;
        let config = sink.config_at(df, line);
        sink.emit(
            &config,
            &INVALID_BASE_IMAGE_PLATFORM,
            Some(lines_of(df, line)),
            format!(
                "Base image {} was pulled with platform {:?}, expected {:?} for current build",
                m.image, m.actual, m.expected
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::check_bases;
    use crate::lint::{Bases, PlatformMismatch};

    /// BuildKit's `RuleInvalidBaseImagePlatform.Format` (`linter/ruleset.go`), on the FROM
    /// line, skippable like every rule.
    #[test]
    fn invalid_base_image_platform_is_reported_on_the_from_line() {
        let bases = Bases {
            platform_mismatches: vec![PlatformMismatch {
                stage: 1,
                image: "example.com/tool:1".into(),
                expected: "linux/amd64".into(),
                actual: "linux/arm64".into(),
            }],
            ..Bases::default()
        };
        let src = "FROM scratch AS a\n\nFROM example.com/tool:1\nCOPY --from=a / /\n";
        let shorts: Vec<String> = check_bases(src, &bases)
            .warnings
            .iter()
            .map(|w| w.short())
            .collect();
        assert_eq!(
            shorts,
            ["InvalidBaseImagePlatform: Base image example.com/tool:1 was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build (line 3)"]
        );
        let skipped = format!("# check=skip=InvalidBaseImagePlatform\n{src}");
        assert!(check_bases(&skipped, &bases).warnings.is_empty());
    }
}
