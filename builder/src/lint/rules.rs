//! The rule registry: every rule's name (what `# check=skip=` names), description and
//! documentation link. BuildKit's rules carry BuildKit's text and URLs exactly
//! (`frontend/dockerfile/linter/ruleset.go`); rbuild's link to `docs/checks/<Name>.md`.

/// Whose rule it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    BuildKit,
    Rbuild,
}

/// One check.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    /// BuildKit's documentation URL; `None` for BuildKit's rule that has none and for
    /// rbuild's rules (see [`Rule::url`]).
    bk_url: Option<&'static str>,
    /// Runs only when named by `experimental=` (BuildKit's `Experimental`).
    pub experimental: bool,
    pub origin: Origin,
}

impl Rule {
    /// Where the rule is documented: BuildKit's URL for BuildKit's rules, this repository's
    /// `docs/checks/<Name>.md` for rbuild's.
    pub fn url(&self) -> Option<String> {
        match self.origin {
            Origin::BuildKit => self.bk_url.map(str::to_owned),
            Origin::Rbuild => Some(format!("docs/checks/{}.md", self.name)),
        }
    }
}

const fn buildkit(
    name: &'static str,
    description: &'static str,
    bk_url: Option<&'static str>,
    experimental: bool,
) -> Rule {
    Rule {
        name,
        description,
        bk_url,
        experimental,
        origin: Origin::BuildKit,
    }
}

const fn rbuild(name: &'static str, description: &'static str) -> Rule {
    Rule {
        name,
        description,
        bk_url: None,
        experimental: false,
        origin: Origin::Rbuild,
    }
}

pub static STAGE_NAME_CASING: Rule = buildkit(
    "StageNameCasing",
    "Stage names should be lowercase",
    Some("https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"),
    false,
);

pub static FROM_AS_CASING: Rule = buildkit(
    "FromAsCasing",
    "The 'as' keyword should match the case of the 'from' keyword",
    Some("https://docs.docker.com/go/dockerfile/rule/from-as-casing/"),
    false,
);

pub static NO_EMPTY_CONTINUATION: Rule = buildkit(
    "NoEmptyContinuation",
    "Empty continuation lines will become errors in a future release",
    Some("https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"),
    false,
);

pub static CONSISTENT_INSTRUCTION_CASING: Rule = buildkit(
    "ConsistentInstructionCasing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
    Some("https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/"),
    false,
);

pub static DUPLICATE_STAGE_NAME: Rule = buildkit(
    "DuplicateStageName",
    "Stage names should be unique",
    Some("https://docs.docker.com/go/dockerfile/rule/duplicate-stage-name/"),
    false,
);

pub static RESERVED_STAGE_NAME: Rule = buildkit(
    "ReservedStageName",
    "Reserved words should not be used as stage names",
    Some("https://docs.docker.com/go/dockerfile/rule/reserved-stage-name/"),
    false,
);

pub static JSON_ARGS_RECOMMENDED: Rule = buildkit(
    "JSONArgsRecommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    Some("https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"),
    false,
);

pub static MAINTAINER_DEPRECATED: Rule = buildkit(
    "MaintainerDeprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    Some("https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"),
    false,
);

pub static UNDEFINED_ARG_IN_FROM: Rule = buildkit(
    "UndefinedArgInFrom",
    "FROM command must use declared ARGs",
    Some("https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/"),
    false,
);

pub static WORKDIR_RELATIVE_PATH: Rule = buildkit(
    "WorkdirRelativePath",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    Some("https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/"),
    false,
);

pub static UNDEFINED_VAR: Rule = buildkit(
    "UndefinedVar",
    "Variables should be defined before their use",
    Some("https://docs.docker.com/go/dockerfile/rule/undefined-var/"),
    false,
);

pub static MULTIPLE_INSTRUCTIONS_DISALLOWED: Rule = buildkit(
    "MultipleInstructionsDisallowed",
    "Multiple instructions of the same type should not be used in the same stage",
    Some("https://docs.docker.com/go/dockerfile/rule/multiple-instructions-disallowed/"),
    false,
);

pub static LEGACY_KEY_VALUE_FORMAT: Rule = buildkit(
    "LegacyKeyValueFormat",
    "Legacy key/value format with whitespace separator should not be used",
    Some("https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/"),
    false,
);

pub static INVALID_BASE_IMAGE_PLATFORM: Rule = buildkit(
    "InvalidBaseImagePlatform",
    "Base image platform does not match expected target platform",
    None,
    false,
);

pub static REDUNDANT_TARGET_PLATFORM: Rule = buildkit(
    "RedundantTargetPlatform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    Some("https://docs.docker.com/go/dockerfile/rule/redundant-target-platform/"),
    false,
);

pub static SECRETS_USED_IN_ARG_OR_ENV: Rule = buildkit(
    "SecretsUsedInArgOrEnv",
    "Sensitive data should not be used in the ARG or ENV commands",
    Some("https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/"),
    false,
);

pub static INVALID_DEFAULT_ARG_IN_FROM: Rule = buildkit(
    "InvalidDefaultArgInFrom",
    "Default value for global ARG results in an empty or invalid base image name",
    Some("https://docs.docker.com/go/dockerfile/rule/invalid-default-arg-in-from/"),
    false,
);

pub static FROM_PLATFORM_FLAG_CONST_DISALLOWED: Rule = buildkit(
    "FromPlatformFlagConstDisallowed",
    "FROM --platform flag should not use a constant value",
    Some("https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/"),
    false,
);

pub static COPY_IGNORED_FILE: Rule = buildkit(
    "CopyIgnoredFile",
    "Attempting to Copy file that is excluded by .dockerignore",
    Some("https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/"),
    false,
);

pub static INVALID_DEFINITION_DESCRIPTION: Rule = buildkit(
    "InvalidDefinitionDescription",
    "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
    Some("https://docs.docker.com/go/dockerfile/rule/invalid-definition-description/"),
    true,
);

pub static EXPOSE_PROTO_CASING: Rule = buildkit(
    "ExposeProtoCasing",
    "Protocol in EXPOSE instruction should be lowercase",
    Some("https://docs.docker.com/go/dockerfile/rule/expose-proto-casing/"),
    false,
);

pub static EXPOSE_INVALID_FORMAT: Rule = buildkit(
    "ExposeInvalidFormat",
    "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    Some("https://docs.docker.com/go/dockerfile/rule/expose-invalid-format/"),
    false,
);

pub static COPY_ALL_BEFORE_DEPENDENCY_INSTALL: Rule = rbuild(
    "CopyAllBeforeDependencyInstall",
    "The whole context should not be copied before the dependency install step, so that a source change does not redo the install",
);

pub static MISSING_DOCKERIGNORE: Rule = rbuild(
    "MissingDockerignore",
    "A context holding .git, node_modules, .venv or __pycache__ should have a .dockerignore",
);

pub static FLOATING_BASE_TAG: Rule = rbuild(
    "FloatingBaseTag",
    "Base images should be pinned to a version tag or a digest, not latest or no tag",
);

pub static SECRET_FILE_COPIED: Rule = rbuild(
    "SecretFileCopied",
    "Files that look like secrets should not be copied into the image",
);

pub static SECRET_LIKE_BUILD_ARG: Rule = rbuild(
    "SecretLikeBuildArg",
    "Build arguments should not carry secrets",
);

/// Every rule, BuildKit's in `ruleset.go` order, then rbuild's.
pub static ALL: [&Rule; 27] = [
    &STAGE_NAME_CASING,
    &FROM_AS_CASING,
    &NO_EMPTY_CONTINUATION,
    &CONSISTENT_INSTRUCTION_CASING,
    &DUPLICATE_STAGE_NAME,
    &RESERVED_STAGE_NAME,
    &JSON_ARGS_RECOMMENDED,
    &MAINTAINER_DEPRECATED,
    &UNDEFINED_ARG_IN_FROM,
    &WORKDIR_RELATIVE_PATH,
    &UNDEFINED_VAR,
    &MULTIPLE_INSTRUCTIONS_DISALLOWED,
    &LEGACY_KEY_VALUE_FORMAT,
    &INVALID_BASE_IMAGE_PLATFORM,
    &REDUNDANT_TARGET_PLATFORM,
    &SECRETS_USED_IN_ARG_OR_ENV,
    &INVALID_DEFAULT_ARG_IN_FROM,
    &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    &COPY_IGNORED_FILE,
    &INVALID_DEFINITION_DESCRIPTION,
    &EXPOSE_PROTO_CASING,
    &EXPOSE_INVALID_FORMAT,
    &COPY_ALL_BEFORE_DEPENDENCY_INSTALL,
    &MISSING_DOCKERIGNORE,
    &FLOATING_BASE_TAG,
    &SECRET_FILE_COPIED,
    &SECRET_LIKE_BUILD_ARG,
];

/// The rule named `name`, if there is one.
pub fn by_name(name: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_rule_has_a_doc_page() {
        let mut names: Vec<&str> = ALL.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/checks");
        for rule in ALL {
            let page = docs.join(format!("{}.md", rule.name));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            assert!(
                text.starts_with(&format!("# {}", rule.name)),
                "{}",
                page.display()
            );
            assert!(
                text.contains("check=skip="),
                "{} says how to skip",
                page.display()
            );
        }
    }

    #[test]
    fn buildkit_rules_link_to_buildkit_and_rbuild_rules_to_this_repository() {
        assert_eq!(
            by_name("FromAsCasing").and_then(Rule::url).as_deref(),
            Some("https://docs.docker.com/go/dockerfile/rule/from-as-casing/")
        );
        assert_eq!(
            FLOATING_BASE_TAG.url().as_deref(),
            Some("docs/checks/FloatingBaseTag.md")
        );
        assert_eq!(INVALID_BASE_IMAGE_PLATFORM.url(), None);
    }
}
