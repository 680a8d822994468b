//! The checks BuildKit makes while parsing, on every stage whether built or not
//! (`parser.Parse`, `instructions.ParseInstructionWithLinter`, `validateStageNames`,
//! `validateCommandCasing`): how keywords and stage names are spelled, MAINTAINER, empty
//! continuation lines and (experimental) description comments.

use super::rules::{
    CONSISTENT_INSTRUCTION_CASING, DUPLICATE_STAGE_NAME, FROM_AS_CASING,
    INVALID_DEFINITION_DESCRIPTION, MAINTAINER_DEPRECATED, NO_EMPTY_CONTINUATION,
    RESERVED_STAGE_NAME, STAGE_NAME_CASING,
};
use super::{lines_of, Lines, Sink};
use crate::dockerfile::{Dockerfile, Instruction, SourceFacts};

/// `FROM`'s arguments without its flags, as written (`image`, `AS`, `name`).
pub(super) fn from_args(f: &SourceFacts) -> Vec<&str> {
    f.words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.starts_with("--"))
        .collect()
}

fn is_lower(s: &str) -> bool {
    s == s.to_lowercase()
}

fn is_upper(s: &str) -> bool {
    s == s.to_uppercase()
}

pub(super) fn check(df: &Dockerfile, sink: &mut Sink) {
    for f in &df.facts {
        if let Some(line) = f.empty_continuation {
            let config = sink.base.clone();
            sink.emit(
                &config,
                &NO_EMPTY_CONTINUATION,
                Some(Lines::one(line)),
                "Empty continuation line".into(),
            );
        }
    }
    for arg in &df.global_args {
        let keys: Vec<&str> = arg.node.args.iter().map(|a| a.name.as_str()).collect();
        description(df, sink, "ARG", &keys, arg.line);
    }
    for stage in &df.stages {
        from_line(df, sink, stage.from.line, stage.name.as_deref());
        for ins in &stage.instructions {
            match &ins.node {
                Instruction::Maintainer(_) => {
                    let config = sink.config_at(df, ins.line);
                    sink.emit(
                        &config,
                        &MAINTAINER_DEPRECATED,
                        Some(lines_of(df, ins.line)),
                        "Maintainer instruction is deprecated in favor of using label".into(),
                    );
                }
                Instruction::Arg(a) => {
                    let keys: Vec<&str> = a.args.iter().map(|a| a.name.as_str()).collect();
                    description(df, sink, "ARG", &keys, ins.line);
                }
                _ => {}
            }
        }
    }
    stage_names(df, sink);
    command_casing(df, sink);
}

/// StageNameCasing, FromAsCasing and the stage's description.
fn from_line(df: &Dockerfile, sink: &mut Sink, line: usize, name: Option<&str>) {
    let Some(f) = df.facts_at(line) else {
        return;
    };
    let config = sink.config_at(df, line);
    let at = Some(lines_of(df, line));
    let args = from_args(f);
    if let [_, as_kw, stage] = args[..] {
        if !is_lower(stage) {
            sink.emit(
                &config,
                &STAGE_NAME_CASING,
                at,
                format!("Stage name '{stage}' should be lowercase"),
            );
        }
        // A keyword that is neither lower nor upper case is ConsistentInstructionCasing's.
        let cmd = f.keyword.as_str();
        let matches = if is_lower(cmd) {
            is_lower(as_kw)
        } else if is_upper(cmd) {
            is_upper(as_kw)
        } else {
            true
        };
        if !matches {
            sink.emit(
                &config,
                &FROM_AS_CASING,
                at,
                format!("'{as_kw}' and '{cmd}' keywords' casing do not match"),
            );
        }
    }
    if let Some(name) = name {
        description(df, sink, "FROM", &[name], line);
    }
}

/// InvalidDefinitionDescription (experimental): the last comment right above a named stage or
/// an ARG should start with its name.
fn description(df: &Dockerfile, sink: &mut Sink, instruction: &str, keys: &[&str], line: usize) {
    let Some(f) = df.facts_at(line) else {
        return;
    };
    let (Some(last), Some(first_key)) = (f.comments.last(), keys.first()) else {
        return;
    };
    let first_word = last.split(' ').next().unwrap_or("");
    if keys.contains(&first_word) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        first_key
    };
    let config = sink.config_at(df, line);
    sink.emit(
        &config,
        &INVALID_DEFINITION_DESCRIPTION,
        Some(lines_of(df, line)),
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    );
}

/// ReservedStageName and DuplicateStageName (`validateStageNames`). rbuild refuses a
/// duplicate stage name when parsing (BuildKit builds with a warning, and the name then means
/// different stages to `FROM` and to `COPY --from`; see docs/checks/DuplicateStageName.md), so
/// the second can only fire on a Dockerfile assembled in memory.
fn stage_names(df: &Dockerfile, sink: &mut Sink) {
    let config = sink.base.clone();
    let mut seen = std::collections::BTreeSet::new();
    for stage in &df.stages {
        let Some(name) = stage.name.as_deref() else {
            continue;
        };
        let at = Some(lines_of(df, stage.from.line));
        if matches!(name, "context" | "scratch") {
            sink.emit(
                &config,
                &RESERVED_STAGE_NAME,
                at,
                format!("Stage name should not use the same name as reserved stage {name:?}"),
            );
        }
        if !seen.insert(name) {
            sink.emit(
                &config,
                &DUPLICATE_STAGE_NAME,
                at,
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            );
        }
    }
}

/// ConsistentInstructionCasing (`validateCommandCasing`): every stage's FROM and
/// instructions (not the global ARGs) count towards a majority, a tie being upper case; a
/// keyword that is not all in the majority's case fires.
fn command_casing(df: &Dockerfile, sink: &mut Sink) {
    let lines: Vec<usize> = df
        .stages
        .iter()
        .flat_map(|s| std::iter::once(s.from.line).chain(s.instructions.iter().map(|i| i.line)))
        .collect();
    let keywords: Vec<(usize, &str)> = lines
        .iter()
        .filter_map(|&l| df.facts_at(l).map(|f| (l, f.keyword.as_str())))
        .collect();
    let (mut lower, mut upper) = (0, 0);
    for (_, kw) in &keywords {
        if is_lower(kw) {
            lower += 1;
        } else if is_upper(kw) {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    let config = sink.base.clone();
    for (line, kw) in keywords {
        let casing = if majority_lower && !is_lower(kw) {
            "lowercase"
        } else if !majority_lower && !is_upper(kw) {
            "uppercase"
        } else {
            continue;
        };
        sink.emit(
            &config,
            &CONSISTENT_INSTRUCTION_CASING,
            Some(lines_of(df, line)),
            format!("Command '{kw}' should match the case of the command majority ({casing})"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::{fired, shorts};

    #[test]
    fn stage_name_and_as_casing() {
        let src = "\n# warning: stage name should be lowercase\n#\nFROM scratch AS BadStageName\n\n#\nFROM scratch as base2\n\nFROM scratch AS base3\n";
        insta::assert_debug_snapshot!(shorts(src), @r#"
        [
            "StageNameCasing: Stage name 'BadStageName' should be lowercase (line 4)",
            "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 7)",
        ]
        "#);
        let src = "from scratch AS base\nfrom scratch as base2\n";
        assert_eq!(
            shorts(src),
            ["FromAsCasing: 'AS' and 'from' keywords' casing do not match (line 1)"]
        );
    }

    #[test]
    fn consistent_instruction_casing_follows_the_majority_with_ties_upper() {
        assert_eq!(
            shorts("From scratch as base\nFROM scratch AS base2\n"),
            ["ConsistentInstructionCasing: Command 'From' should match the case of the command majority (uppercase) (line 1)"]
        );
        assert_eq!(
            shorts("from scratch\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n"),
            ["ConsistentInstructionCasing: Command 'COPY' should match the case of the command majority (lowercase) (line 2)"]
        );
        assert_eq!(
            fired("FROM scratch\ncopy a /a\n", "ConsistentInstructionCasing"),
            ["ConsistentInstructionCasing: Command 'copy' should match the case of the command majority (uppercase) (line 2)"]
        );
        assert!(shorts("from scratch\ncopy a /foo\ncopy a /bar\n").is_empty());
        // Global ARGs do not count.
        assert!(fired("arg X=1\nFROM scratch\n", "ConsistentInstructionCasing").is_empty());
    }

    #[test]
    fn reserved_stage_names() {
        insta::assert_debug_snapshot!(shorts("FROM scratch AS context\nFROM scratch AS a\n"), @r#"
        [
            "ReservedStageName: Stage name should not use the same name as reserved stage \"context\" (line 1)",
        ]
        "#);
        assert!(shorts("FROM scratch\nFROM scratch AS a\n").is_empty());
    }

    #[test]
    fn duplicate_stage_names_on_a_dockerfile_built_in_memory() {
        // rbuild's parser refuses a duplicate name, so the Dockerfile is assembled here.
        let mut df = crate::dockerfile::parse("FROM scratch AS b\nFROM scratch AS c\n").unwrap();
        df.stages[1].name = Some("b".into());
        let mut sink = crate::lint::Sink::new(crate::lint::Config::default());
        super::check(&df, &mut sink);
        let shorts: Vec<String> = sink.warnings.iter().map(|w| w.short()).collect();
        assert_eq!(
            shorts,
            ["DuplicateStageName: Duplicate stage name \"b\", stage names should be unique (line 2)"]
        );
    }

    #[test]
    fn maintainer_is_deprecated_unless_skipped_above_it() {
        assert_eq!(
            shorts("FROM scratch\nMAINTAINER me@example.org\n"),
            ["MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)"]
        );
        assert!(
            shorts("FROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me\n").is_empty()
        );
    }

    #[test]
    fn empty_continuation_line_is_reported_at_the_instructions_last_line() {
        let src =
            "\nFROM scratch\n# c\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n# comment\n.\n";
        assert_eq!(
            shorts(src),
            ["NoEmptyContinuation: Empty continuation line (line 6)"]
        );
    }

    #[test]
    fn definition_descriptions_are_experimental() {
        let src = "# check=experimental=InvalidDefinitionDescription\n# bar this is the bar\nARG foo=bar\n# BasE this is the BasE image\nFROM scratch AS base\n# definitely a bad comment\nARG version=latest\n# definitely a bad comment\nARG foo=baz bar=qux baz=quux\n";
        insta::assert_debug_snapshot!(shorts(src), @r#"
        [
            "InvalidDefinitionDescription: Comment for ARG should follow the format: `# foo <description>` (line 3)",
            "InvalidDefinitionDescription: Comment for FROM should follow the format: `# base <description>` (line 5)",
            "InvalidDefinitionDescription: Comment for ARG should follow the format: `# version <description>` (line 7)",
            "InvalidDefinitionDescription: Comment for ARG should follow the format: `# <arg_key> <description>` (line 9)",
        ]
        "#);
        let good = "# check=experimental=InvalidDefinitionDescription\n# foo is the foo\nARG foo=bar\n# base is the base\nFROM scratch AS base\n#\nARG bit=bat\n";
        assert!(shorts(good).is_empty());
        // Off unless named.
        assert!(shorts("# bar x\nARG foo=bar\nFROM scratch\n").is_empty());
    }
}
