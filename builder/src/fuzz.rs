//! Fuzz oracles for the builder's untrusted inputs, one function per cargo-fuzz target.
//!
//! This module exists for `tests/fuzz` (the cargo-fuzz targets, each a one-line call of a
//! function here) and for `builder/tests/fuzz_corpus.rs`, which runs every file of
//! `testdata/fuzz/<target>/` through the same function, so the committed corpus is a regression
//! suite. Each function holds the whole oracle and panics when it finds a bug; none is part of
//! rbuild's API.
//!
//! - [`dockerfile_parse`]: any text parses or yields diagnostics that render; spans are inside
//!   the source; each instruction's canonical line re-parses to the same instruction; expanding
//!   with no variables set does not panic; the build checks run on what plans, each warning's
//!   lines are inside the source, and their report renders.
//! - [`dockerfile_expand`]: expansion of a word against a few variables stays within
//!   [`EXPANSION_OUTPUT_LIMIT`], and leaves a word without quotes, escapes or `$` unchanged.
//! - [`dockerignore`]: `.dockerignore` text compiles or is refused with an error, and the
//!   scanner never skips a directory holding a path the rules include.

use std::collections::BTreeMap;
use std::path::Path;

use crate::context::patternmatcher::MatchInfo;
use crate::context::IgnoreRules;
use crate::dockerfile::{
    expand_heredoc, expand_word, expand_words, parse, Instruction, NoVars, Spanned,
};

/// Largest expansion output (bytes) the `dockerfile_expand` oracle accepts for its inputs
/// (a few KiB, with at most [`MAX_VARS`] variables). Expansion must never be exponential in the
/// input: SECURITY.md requires that no input under 1 MB drive memory past 1 GiB.
pub const EXPANSION_OUTPUT_LIMIT: usize = 16 << 20;

/// How many leading `NAME=VALUE` lines of a `dockerfile_expand` input become variables.
pub const MAX_VARS: usize = 4;

/// Oracle for the Dockerfile parser and instruction conversion.
pub fn dockerfile_parse(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let df = match parse(&src) {
        Ok(df) => df,
        Err(e) => {
            assert!(
                !e.diagnostics.is_empty(),
                "a parse error without diagnostics"
            );
            let _ = e.render("Dockerfile", &src);
            return;
        }
    };
    let escape = df.directives.escape;
    let check_span = |span_start: usize, span_end: usize| {
        assert!(
            span_start <= span_end && span_end <= src.len(),
            "span outside the source"
        );
        assert!(src.is_char_boundary(span_start) && src.is_char_boundary(span_end));
    };
    for arg in &df.global_args {
        check_span(arg.span.start, arg.span.end);
        let _ = arg.node.expand(&NoVars, escape);
    }
    for stage in &df.stages {
        check_span(stage.from.span.start, stage.from.span.end);
        let _ = stage.from.node.expand(&NoVars, escape);
        for i in &stage.instructions {
            check_span(i.span.start, i.span.end);
            let _ = i.source_text(&src);
            let _ = i.node.expand(&NoVars, escape);
            assert_canonical_line_reparses(i, escape);
        }
    }
    build_checks(&df, &src);
}

/// The build checks (`lint`) on a Dockerfile that plans: they never panic, point inside the
/// source, and their buildx report and metadata render.
fn build_checks(df: &crate::dockerfile::Dockerfile, src: &str) {
    let platform = crate::graph::platform::parse_platform("linux/amd64").expect("valid");
    let pv = crate::graph::platform_args(&platform, &platform);
    let args = BTreeMap::new();
    let Ok(plan) = crate::graph::BuildPlan::new(df, &[], &args, &pv) else {
        return;
    };
    let input = crate::lint::Input {
        dockerfile: df,
        plan: &plan,
        build_args: &args,
        build_arg_names: Vec::new(),
        platform_vars: &pv,
        all_stages: true,
        context: None,
        skip: &[],
        bases: &crate::lint::Bases::default(),
    };
    let Ok(report) = crate::lint::run(&input) else {
        return;
    };
    let lines = src.split('\n').count();
    for w in &report.warnings {
        if let Some(at) = w.at {
            assert!(
                1 <= at.start && at.start <= at.end && at.end <= lines,
                "{} points outside the source: {at:?}",
                w.short()
            );
        }
    }
    let _ = crate::lint::report::check_output(&report, "Dockerfile", src);
    let _ = crate::lint::report::metadata_warnings(&report, "Dockerfile", src);
}

/// The canonical one-line form (`display`) must parse back to the same instruction, as the
/// golden tests check for the fixtures; heredoc bodies are not part of the line.
fn assert_canonical_line_reparses(i: &Spanned<Instruction>, escape: char) {
    let line = i.node.to_string();
    if line.contains("<<") {
        return;
    }
    let again = match parse(&format!("# escape={escape}\nFROM x\n{line}\n")) {
        Ok(df) => df,
        Err(e) => panic!("the canonical line {line:?} does not re-parse: {e}"),
    };
    let reparsed = again
        .stages
        .first()
        .and_then(|s| s.instructions.first())
        .map(|i| &i.node);
    match (reparsed, &i.node) {
        // `original` keeps the source spelling; the trigger must match.
        (Some(Instruction::Onbuild(a)), Instruction::Onbuild(b)) => {
            assert_eq!(a.trigger, b.trigger, "canonical line {line:?}")
        }
        (a, b) => assert_eq!(a, Some(b), "canonical line {line:?}"),
    }
}

/// Splits a `dockerfile_expand` input into up to [`MAX_VARS`] leading `NAME=VALUE` lines and
/// the word (the rest). A first line `# escape=`` selects the backtick escape.
fn expand_input(text: &str) -> (BTreeMap<String, String>, String, char) {
    let mut rest = text;
    let mut escape = '\\';
    if let Some(after) = rest.strip_prefix("# escape=`\n") {
        escape = '`';
        rest = after;
    }
    let mut vars = BTreeMap::new();
    while vars.len() < MAX_VARS {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        match line.split_once('=') {
            Some((k, v)) if !k.is_empty() && !after.is_empty() => {
                vars.insert(k.to_string(), v.to_string());
                rest = after;
            }
            _ => break,
        }
    }
    (vars, rest.to_string(), escape)
}

/// Oracle for variable expansion (BuildKit's `shell.Lex`).
pub fn dockerfile_expand(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (vars, word, escape) = expand_input(&text);
    let plain = !word.contains(['$', '\'', '"', escape]);
    let bounded = |what: &str, len: usize| {
        assert!(
            len <= EXPANSION_OUTPUT_LIMIT,
            "{what} of a {}-byte input produced {len} bytes",
            data.len()
        );
    };
    if let Ok(out) = expand_word(&word, &vars, escape) {
        bounded("expand_word", out.len());
        if plain {
            assert_eq!(out, word, "a word without quotes, escapes or `$` changed");
        }
    }
    if let Ok(words) = expand_words(&word, &vars, escape) {
        bounded("expand_words", words.iter().map(String::len).sum());
        assert!(words.iter().all(|w| !w.is_empty() || !plain));
    }
    if let Ok(out) = expand_heredoc(&word, &vars, escape) {
        bounded("expand_heredoc", out.len());
        if !word.contains(['$', escape]) {
            assert_eq!(out, word, "a heredoc without escapes or `$` changed");
        }
    }
}

/// The paths a `dockerignore` input is checked against: a fixed set, plus each pattern made
/// literal (wildcards replaced), so matches are likely.
fn probe_paths(text: &str) -> Vec<String> {
    let mut paths: Vec<String> = ["a", "a/b", "a/b/c", "foo.txt", "dir/sub/file", ".git/HEAD"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for line in text.lines().take(8) {
        let literal: String = line
            .trim()
            .trim_start_matches('!')
            .chars()
            .filter(|c| !matches!(c, '[' | ']' | '\\'))
            .map(|c| match c {
                '*' => 'x',
                '?' => 'q',
                c => c,
            })
            .collect();
        let literal = literal.trim_matches('/');
        if !literal.is_empty() {
            paths.push(literal.to_string());
            paths.push(format!("{literal}/inner"));
        }
    }
    paths
}

/// Oracle for `.dockerignore` parsing and matching.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(rules) = IgnoreRules::parse(&text, Path::new(".dockerignore")) else {
        return;
    };
    for path in probe_paths(&text) {
        let _ = rules.is_excluded(&path, false);
        // Walk down to `path` as the scanner does: a directory that is excluded and may not
        // include anything below it is skipped, so nothing below it may be included.
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut info = MatchInfo::default();
        let mut skipped_at = None;
        for depth in 1..=components.len() {
            let prefix = components[..depth].join("/");
            let (excluded, next) = rules.excluded_in_walk(&prefix, &info);
            info = next;
            if let Some(dir) = &skipped_at {
                assert!(
                    excluded,
                    "{prefix:?} is included, but the scanner skips {dir:?} above it"
                );
            } else if depth < components.len() && excluded && !rules.may_include_under(&prefix) {
                skipped_at = Some(prefix);
            }
        }
    }
}
