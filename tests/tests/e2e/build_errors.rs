//! Failures: what the exit code is (1 = the build failed, 2 = usage error or invalid
//! Dockerfile, nothing built), and that the message names the file, line and what to do.

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{scratch, Run};

fn try_build(dockerfile: &str, files: &[(&str, &str)], args: &[&str]) -> (Run, tempfile::TempDir) {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(&ctx, &[("Dockerfile", dockerfile)]);
    write_tree(&ctx, files);
    let r = build(&dir.path().join("store"), &ctx, args);
    (r, dir)
}

fn store_has_no_blobs(dir: &tempfile::TempDir) -> bool {
    let blobs = dir.path().join("store/blobs/sha256");
    std::fs::read_dir(&blobs).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn syntax_error_is_exit_2_with_file_line_column_and_caret() {
    let (r, dir) = try_build("FROM scratch\n\nFOO bar\n", &[], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:3:1"), "{}", r.stderr);
    assert!(r.stderr.contains("3 | FOO bar"), "{}", r.stderr);
    assert!(r.stderr.contains("| ^^^"), "{}", r.stderr);
    assert!(store_has_no_blobs(&dir));
}

#[test]
fn unknown_target_is_exit_2_listing_the_stages() {
    let (r, _dir) = try_build(
        "FROM scratch AS first\nFROM scratch AS second\n",
        &[],
        &["--target", "nosuch"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"nosuch\""), "{}", r.stderr);
    assert!(r.stderr.contains("first, second"), "{}", r.stderr);
}

#[test]
fn base_image_not_in_the_store_is_exit_1_saying_what_to_do() {
    let (r, _dir) = try_build("FROM localhost/not-built:1\n", &[], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:1"), "{}", r.stderr);
    assert!(r.stderr.contains("localhost/not-built:1"), "{}", r.stderr);
    assert!(r.stderr.contains("local store"), "{}", r.stderr);
    assert!(
        r.stderr.contains("--tag"),
        "says how to make it: {}",
        r.stderr
    );
}

#[test]
fn copy_of_a_missing_file_is_exit_1_naming_the_file_and_line() {
    let (r, _dir) = try_build("FROM scratch\n\nCOPY missing.txt /x\n", &[], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    assert!(r.stderr.contains("\"missing.txt\""), "{}", r.stderr);
}

#[test]
fn several_literal_sources_onto_a_non_directory_are_a_dockerfile_error_before_building() {
    // BuildKit 20.10 copies each source onto the file /d in turn; rbuild refuses that input,
    // as an invalid Dockerfile (exit 2) found while planning: nothing is built, and `rbuild
    // check` says so too.
    let (r, dir) = try_build(
        "FROM scratch\nCOPY a.txt b /d\n",
        &[("a.txt", "a"), ("b", "b")],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(r.stderr.contains("write `/d/`"), "{}", r.stderr);
    assert!(store_has_no_blobs(&dir));
    let ctx = dir.path().join("ctx");
    let check = rbuild_tests::rbuild(&dir.path().join("store"))
        .arg("check")
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
}

#[test]
fn several_wildcard_matches_onto_a_non_directory_are_exit_2() {
    // Known only once the wildcard is expanded: still a Dockerfile error (exit 2), naming
    // the line.
    let (r, _dir) = try_build(
        "FROM scratch\nCOPY *.txt /d\n",
        &[("a.txt", "a"), ("b.txt", "b")],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(r.stderr.contains("write `/d/`"), "{}", r.stderr);
}

#[test]
fn error_messages_state_their_cause_once() {
    let (r, _dir) = try_build("FROM scratch\nCOPY missing.txt /x\n", &[], &[]);
    let last = r.stderr.lines().rfind(|l| l.starts_with("error:")).unwrap();
    assert_eq!(
        last.matches("not found in build context").count(),
        1,
        "{last}"
    );
}

#[test]
fn add_of_an_unreachable_url_names_the_line_and_the_url() {
    let (r, _dir) = try_build(
        "FROM scratch\nADD http://127.0.0.1:9/file.txt /file.txt\n",
        &[],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(
        r.stderr.contains("http://127.0.0.1:9/file.txt"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("downloading"), "{}", r.stderr);
}
