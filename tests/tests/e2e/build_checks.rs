//! Build checks end to end (`builder/src/lint/`, docs in `docs/checks/`): warnings in a
//! build's output and in `--metadata-file`, `error=true` failing the build before any step,
//! `skip=` (the directive, a comment above one instruction, `BUILDKIT_DOCKERFILE_CHECK`),
//! `--check`/`--call` building nothing, and `rbuild check`.
//!
//! Docker 20.10's BuildKit (v0.8) predates build checks, so the expected output is BuildKit's
//! and buildx's current source (`linter/ruleset.go`, `commands/build.go` `printResult`), not
//! a differential run.

use base64::Engine as _;
use rbuild_tests::build::{build, build_cmd, metadata, write_tree};
use rbuild_tests::{rbuild, run, scratch};

/// A Dockerfile where FromAsCasing (line 1) and JSONArgsRecommended (line 3) fire.
const TWO_WARNINGS: &str = "FROM scratch as base\nCOPY f /f\nCMD run\n";

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = scratch();
    write_tree(
        &dir.path().join("ctx"),
        &[("Dockerfile", dockerfile), ("f", "f\n")],
    );
    dir
}

#[test]
fn warnings_show_in_the_build_output_and_the_metadata_file() {
    let dir = context(TWO_WARNINGS);
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    let md = dir.path().join("md.json");
    let r = run(build_cmd(&store, &ctx)
        .args(["--metadata-file", md.to_str().unwrap()])
        .env("BUILDX_METADATA_WARNINGS", "1"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for expected in [
        "WARNING: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        "WARNING: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)",
    ] {
        assert!(r.stderr.contains(expected), "no {expected:?} in {}", r.stderr);
    }
    let warnings = metadata(&md)["buildx.build.warnings"].clone();
    let shorts: Vec<String> = warnings
        .as_array()
        .expect("an array of warnings")
        .iter()
        .map(|w| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(w["short"].as_str().unwrap())
                .unwrap();
            String::from_utf8(b).unwrap()
        })
        .collect();
    assert_eq!(
        shorts,
        [
            "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
            "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)",
        ]
    );
    assert_eq!(warnings[0]["range"][0]["start"]["line"], 1);
    assert_eq!(warnings[0]["sourceInfo"]["filename"], "Dockerfile");

    // As buildx, the warnings are in the metadata file only when BUILDX_METADATA_WARNINGS asks.
    build(&store, &ctx, &["--metadata-file", md.to_str().unwrap()]);
    assert!(
        metadata(&md).get("buildx.build.warnings").is_none(),
        "{}",
        metadata(&md)
    );
}

#[test]
fn error_true_fails_the_build_before_any_step_and_skip_turns_rules_off() {
    let dir = context(&format!("# check=error=true\n{TWO_WARNINGS}"));
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    let iid = dir.path().join("iid");
    let r = build(&store, &ctx, &["--iidfile", iid.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: lint violation found for rules: FromAsCasing, JSONArgsRecommended"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("WARNING: FromAsCasing"), "{}", r.stderr);
    assert!(!r.stderr.contains("COPY f /f"), "no step ran: {}", r.stderr);
    assert!(!iid.exists());

    // The build argument replaces the directive (error=true included).
    let r = build(
        &store,
        &ctx,
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=FromAsCasing"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("FromAsCasing"), "{}", r.stderr);
    assert!(
        r.stderr.contains("WARNING: JSONArgsRecommended"),
        "{}",
        r.stderr
    );

    // skip= in the directive, and a `# check=skip=` comment right above one instruction.
    let dir = context(
        "# check=skip=FromAsCasing;error=true\nFROM scratch as base\nCOPY f /f\n# check=skip=JSONArgsRecommended\nCMD run\n",
    );
    let r = build(&dir.path().join("store"), &dir.path().join("ctx"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("WARNING: "), "{}", r.stderr);
}

#[test]
fn check_builds_nothing_prints_buildx_report_and_exits_1_on_warnings() {
    // A RUN in a scratch stage cannot run: a build would fail, a check does not.
    let dir = context("FROM scratch as base\nRUN /no/such/program\n");
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    let r = run(rbuild(&store).arg("build").arg(&ctx).arg("--check"));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        "Check complete, 1 warning has been found!\n\
         \n\
         WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
         'as' and 'FROM' keywords' casing do not match\n\
         Dockerfile:1\n\
         --------------------\n   \
         1 | >>> FROM scratch as base\n   \
         2 |     RUN /no/such/program\n   \
         3 |     \n\
         --------------------\n"
    );
    let r = run(rbuild(&store)
        .arg("build")
        .arg(&ctx)
        .args(["--call", "check,ignorestatus=true"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let dir = context("FROM scratch AS base\nRUN /no/such/program\n");
    let ctx = dir.path().join("ctx");
    let r = run(rbuild(&store).arg("build").arg(&ctx).arg("--call=check"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Check complete, no warnings found.\n");

    let r = run(rbuild(&store)
        .arg("build")
        .arg(&ctx)
        .args(["--call", "check,format=json"]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["sources"][0]["filename"], "Dockerfile");
}

#[test]
fn call_targets_lists_stages_with_their_descriptions() {
    let dir = context("# base is the common base\nFROM scratch AS base\n\nFROM base AS release-build\n# final is what ships\nFROM base AS final\n");
    let r = run(rbuild(&dir.path().join("store"))
        .arg("build")
        .arg(dir.path().join("ctx"))
        .args(["--call", "targets"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "TARGET          DESCRIPTION\n\
         base            is the common base\n\
         release-build   \n\
         final (default) is what ships\n"
    );
}

#[test]
fn rbuild_check_prints_the_plan_then_the_report() {
    let dir = context(TWO_WARNINGS);
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    let r = run(rbuild(&store).arg("check").arg(&ctx));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Build order: base"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("\nCheck complete, 2 warnings have been found!\n\nWARNING: FromAsCasing"),
        "{}",
        r.stdout
    );
    let dir = context(&format!("# check=error=true\n{TWO_WARNINGS}"));
    let r = run(rbuild(&store).arg("check").arg(dir.path().join("ctx")));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("lint violation found for rules"),
        "{}",
        r.stderr
    );
}

#[test]
fn rbuild_rules_look_at_the_context() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /app\n"),
            (".env", "DB_PASSWORD=never-printed\n"),
            ("node_modules/x/index.js", "x\n"),
        ],
    );
    let r = run(rbuild(&dir.path().join("store"))
        .arg("build")
        .arg(&ctx)
        .arg("--check"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stdout.contains("never-printed"), "{}", r.stdout);
    for expected in [
        "WARNING: MissingDockerignore - docs/checks/MissingDockerignore.md\nThe context holds node_modules but has no .dockerignore",
        "WARNING: SecretFileCopied - docs/checks/SecretFileCopied.md\nCOPY would bake secret-looking files into the image: \".env\"",
    ] {
        assert!(r.stdout.contains(expected), "no {expected:?} in {}", r.stdout);
    }
}

#[test]
fn call_outline_shows_the_targets_args_secrets_and_ssh() {
    let dir = context(
        "# GO_VERSION is the Go release\nARG GO_VERSION=1.22\nARG UNUSED=x\nFROM scratch AS base\n# binary is the program\nFROM base AS binary\n# VERSION the version stamped in\nARG VERSION=dev\nARG GO_VERSION\nRUN --mount=type=secret,id=npm_token,required=true --mount=type=ssh true\n",
    );
    let r = run(rbuild(&dir.path().join("store"))
        .arg("build")
        .arg(dir.path().join("ctx"))
        .args(["--call", "outline", "--build-arg", "VERSION=1.2"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "TARGET:      binary\n\
         DESCRIPTION: is the program\n\
         \n\
         BUILD ARG    VALUE   DESCRIPTION\n\
         GO_VERSION   1.22    is the Go release\n\
         VERSION      1.2     the version stamped in\n\
         \n\
         SECRET      REQUIRED\n\
         npm_token   true\n\
         \n\
         SSH       REQUIRED\n\
         default   \n\
         \n"
    );
}

#[test]
fn an_invalid_check_option_is_a_usage_error_naming_it() {
    let dir = context("# check=skip\nFROM scratch\n");
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    let r = build(&store, &ctx, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(r#"error: failed to parse check options: invalid check option "skip""#),
        "{}",
        r.stderr
    );
    let r = build(
        &store,
        &ctx,
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=maybe"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("failed to parse BUILDKIT_DOCKERFILE_CHECK: failed to parse check option \"error=maybe\""),
        "{}",
        r.stderr
    );
}

/// Builds `FROM scratch` + ENV + a file as `tag` in `store` (extra: `--platform` …); a name
/// built here is used from the store, no registry asked.
fn local_base(store: &std::path::Path, dir: &std::path::Path, tag: &str, extra: &[&str]) {
    let ctx = dir.join(format!("base-{}", tag.replace(['/', ':'], "-")));
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch\nENV GREETING=hello\nCOPY f /f\n",
            ),
            ("f", "f\n"),
        ],
    );
    let r = build(store, &ctx, &[&["--tag", tag], extra].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The checks run once the bases are resolved, as BuildKit's do: a stage's variables include
/// its image's ENV, so `$GREETING` is defined and `$GREETNG` is a near miss of it — in
/// `--check`, `rbuild check` and a build's warnings alike.
#[test]
fn undefined_var_knows_the_base_images_env() {
    let dir =
        context("FROM localhost/check-env:1\nWORKDIR /$GREETING\nLABEL x=$GREETNG\nCOPY f /f2\n");
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    local_base(&store, dir.path(), "localhost/check-env:1", &[]);
    let expected = "UndefinedVar: Usage of undefined variable '$GREETNG' (did you mean $GREETING?)";
    let r = run(rbuild(&store).arg("build").arg(&ctx).arg("--check"));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("Check complete, 1 warning has been found!\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("WARNING: UndefinedVar - https://docs.docker.com/go/dockerfile/rule/undefined-var/\nUsage of undefined variable '$GREETNG' (did you mean $GREETING?)"),
        "{}",
        r.stdout
    );
    let r = run(rbuild(&store).arg("check").arg(&ctx));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("1 warning has been found"),
        "{}",
        r.stdout
    );
    let r = build(&store, &ctx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("WARNING: {expected} (line 3)")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("'$GREETING'"), "{}", r.stderr);
}

/// InvalidBaseImagePlatform (BuildKit's `validateBaseImagePlatform`): a base whose config
/// says another platform than the one the stage is built for. Under an implicit target
/// (no `--platform`), BuildKit takes the base's own platform when this host runs it
/// (`autoDetectPlatform`): then there is no warning.
#[test]
fn invalid_base_image_platform_names_both_platforms() {
    let dir = context("FROM localhost/check-arm:1\nCOPY f /f2\n");
    let (ctx, store) = (dir.path().join("ctx"), dir.path().join("store"));
    local_base(
        &store,
        dir.path(),
        "localhost/check-arm:1",
        &["--platform", "linux/arm64"],
    );
    let detail = "Base image localhost/check-arm:1 was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build";
    let r = run(rbuild(&store).arg("build").arg(&ctx).args([
        "--platform",
        "linux/amd64",
        "--call",
        "check,format=json",
    ]));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(v["warnings"][0]["ruleName"], "InvalidBaseImagePlatform");
    assert_eq!(v["warnings"][0]["detail"], detail);
    assert_eq!(
        v["warnings"][0]["location"]["ranges"][0]["start"]["line"],
        1
    );
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");

    // Implicit target: a warning only when this host cannot run arm64.
    let runs_arm64 = std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
        || std::env::consts::ARCH == "aarch64";
    let r = run(rbuild(&store).arg("build").arg(&ctx).arg("--check"));
    assert_eq!(r.code, i32::from(!runs_arm64), "{}\n{}", r.stdout, r.stderr);
    // Skipped like any rule.
    let r = run(rbuild(&store)
        .arg("build")
        .arg(&ctx)
        .args(["--platform", "linux/amd64", "--check"])
        .args([
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=InvalidBaseImagePlatform",
        ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}
