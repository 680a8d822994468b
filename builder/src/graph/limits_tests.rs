//! Regression tests for the expansion bounds (`dockerfile::limits`): each reproduces an input
//! that used to take gigabytes or quadratic time, and checks it now stops with the limit's
//! message. They live with the plan because most go through it; the frontend's own tests never
//! import the plan (the frontend stands alone).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::BuildPlan;
use crate::dockerfile::expand::{expand_word, ExpandErrorKind};
use crate::dockerfile::limits::*;
use crate::dockerfile::parse;

/// The Dockerfile of the report: forty ARGs, each twice the one before (8 × 2^39 bytes).
fn doubling_args_dockerfile(global: bool) -> String {
    let mut args = String::from("ARG A1=xxxxxxxx\n");
    for i in 2..=40 {
        args.push_str(&format!("ARG A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
    }
    if global {
        format!("{args}FROM scratch\nRUN echo $A40\n")
    } else {
        format!("FROM scratch\n{args}RUN echo $A40\n")
    }
}

fn plan_error(src: &str, build_args: &[(&str, &str)]) -> String {
    let df = parse(src).expect("the Dockerfile parses");
    let build_args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let err = BuildPlan::new(&df, &[], &build_args, &BTreeMap::new()).expect_err("over a limit");
    err.render("Dockerfile")
}

fn vars(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn doubling_args_in_a_stage_stop_at_the_word_limit() {
    let message = plan_error(&doubling_args_dockerfile(false), &[]);
    // A18 is 8 × 2^17 bytes = 1 MiB; A19 would be 2 MiB. Line 1 is FROM.
    insta::assert_snapshot!(message, @r#"Dockerfile:20: ARG A19: failed to process "${A18}${A18}": the expanded word would be larger than 1 MiB, the limit for one expanded word: keep large data in a file of the build context and COPY it (or pass it with --secret); see "Limits" in the README"#);
}

#[test]
fn doubling_global_args_stop_at_the_word_limit() {
    let message = plan_error(&doubling_args_dockerfile(true), &[]);
    assert!(
        message.starts_with("Dockerfile:19: global ARG A19: "),
        "{message}"
    );
    assert!(message.contains("1 MiB"), "{message}");
}

#[test]
fn many_one_mib_args_stop_at_the_scope_limit() {
    // Each value is within the word limit; together they are not.
    let mut src = String::from("FROM scratch\nARG BIG\n");
    for i in 0..8 {
        src.push_str(&format!("ARG COPY{i}=$BIG\n"));
    }
    let big = "x".repeat(MAX_WORD_BYTES - 16);
    let message = plan_error(&src, &[("BIG", &big)]);
    insta::assert_snapshot!(message, @r#"Dockerfile:6: ARG COPY3: the ARG, ENV and LABEL values in scope would total 5242823 bytes, over the 4 MiB limit for one scope: keep large data in a file of the build context and COPY it (or pass it with --secret); see "Limits" in the README"#);
}

#[test]
fn one_instruction_repeating_a_big_arg_stops_at_the_instruction_limit() {
    // `LABEL a=$BIG b=$BIG …`: every word is under 1 MiB, the instruction is not.
    let big = "y".repeat(MAX_WORD_BYTES / 2);
    let labels: String = (0..40).map(|i| format!(" l{i}=$BIG")).collect();
    let df = parse(&format!("FROM scratch\nLABEL{labels}\n")).expect("parses");
    let ins = &df.stages[0].instructions[0].node;
    let err = ins
        .expand(&vars(&[("BIG", big)]), '\\')
        .expect_err("over the instruction limit");
    assert_eq!(err.kind, ExpandErrorKind::InstructionTooLarge);
}

#[test]
fn replacement_that_multiplies_a_value_stops_at_the_word_limit() {
    // Every character of a 64 KiB value replaced by 64 characters would be 4 MiB.
    let v = vars(&[("V", "a".repeat(64 << 10))]);
    let err = expand_word(&format!("${{V//?/{}}}", "b".repeat(64)), &v, '\\')
        .expect_err("over the word limit");
    assert_eq!(err.kind, ExpandErrorKind::WordTooLarge);
}

#[test]
fn deeply_nested_substitution_is_an_error_not_a_stack_overflow() {
    let depth = 200_000;
    let word = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    let err = expand_word(&word, &BTreeMap::new(), '\\').expect_err("too deep");
    assert_eq!(err.kind, ExpandErrorKind::NestingTooDeep);
    assert!(
        err.to_string().len() < 1000,
        "the message quotes only the start of the word"
    );
    // Nesting within the bound still works.
    let ok = format!(
        "{}x{}",
        "${A:-".repeat(MAX_NESTING - 1),
        "}".repeat(MAX_NESTING - 1)
    );
    assert_eq!(expand_word(&ok, &BTreeMap::new(), '\\').as_deref(), Ok("x"));
}

/// Runs `f` and fails if it takes longer than a quadratic algorithm would need to be caught.
fn within_seconds<T>(secs: u64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(secs), "took {took:?}");
    out
}

#[test]
fn star_pattern_replace_on_a_long_value_is_not_quadratic() {
    // Trying `*x` (or `a*x`) at each of 512 Ki positions of a value without an `x` scanned to
    // the end from every one: 2^37 steps.
    let long = "ab".repeat(256 << 10);
    let v = vars(&[("V", long.clone())]);
    for pattern in ["*x", "a*x", "a*b*x"] {
        let out = within_seconds(5, || expand_word(&format!("${{V//{pattern}/}}"), &v, '\\'));
        assert!(
            out.as_deref() == Ok(long.as_str()),
            "{pattern}: changed the value"
        );
    }
    // With matches: the longest match from the first `a` takes everything up to the last `b`.
    let v = vars(&[("V", format!("{long}c"))]);
    let out = within_seconds(5, || expand_word("${V//a*b/-}", &v, '\\'));
    assert_eq!(out.as_deref(), Ok("-c"));
    let v = vars(&[("V", "path/to/x/file".to_owned())]);
    assert_eq!(expand_word("${V//*x/}", &v, '\\').as_deref(), Ok("/file"));
}

#[test]
fn long_pattern_on_a_long_value_stops_at_the_step_limit() {
    // 4096 `?` tried over a 1 MiB value: 2^32 matcher steps.
    let v = vars(&[
        ("V", "a".repeat(MAX_WORD_BYTES - 8)),
        ("P", "?".repeat(4096)),
    ]);
    let err = within_seconds(20, || expand_word("${V//$P/}", &v, '\\')).expect_err("too much work");
    assert!(
        matches!(err.kind, ExpandErrorKind::PatternTooExpensive { .. }),
        "{}",
        err.kind
    );
}

#[test]
fn ordinary_pattern_operations_on_a_one_mib_value_are_linear() {
    let v = vars(&[("V", format!("v{}", "a/".repeat((MAX_WORD_BYTES - 8) / 2)))]);
    let out = within_seconds(10, || expand_word("${V//a/b}", &v, '\\')).expect("linear");
    assert!(out.starts_with("vb/b/"));
    let out = within_seconds(10, || expand_word("${V#v}", &v, '\\')).expect("linear");
    assert!(out.starts_with("a/a/"));
    let out = within_seconds(10, || expand_word("${V%/*}", &v, '\\')).expect("linear");
    assert!(out.ends_with("a/a"));
}
