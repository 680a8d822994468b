//! The command line's contract: help, version, exit codes, and flag validation.

use rbuild_tests::{rbuild, run, scratch};

#[test]
fn help_documents_exit_codes() {
    let dir = scratch();
    let out = run(rbuild(dir.path()).arg("--help")).success();
    for needle in [
        "Exit codes:",
        "0  success",
        "1  the build failed",
        "2  usage error",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            out.stdout
        );
    }
    for flag in [
        "--file",
        "--target",
        "--tag",
        "--build-arg",
        "--platform",
        "--output",
        "--push",
        "--cache-from",
        "--cache-to",
        "--no-cache",
        "--secret",
        "--ssh",
        "--network",
        "--progress",
        "--store",
        "--quiet",
    ] {
        assert!(out.stdout.contains(flag), "missing {flag} in --help");
    }
}

#[test]
fn version_prints_the_package_version() {
    let dir = scratch();
    let out = run(rbuild(dir.path()).arg("--version")).success();
    assert_eq!(
        out.stdout.trim(),
        format!("rbuild {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let dir = scratch();
    let out = run(rbuild(dir.path()).arg("--frobnicate"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--frobnicate"), "{}", out.stderr);
}

#[test]
fn missing_dockerfile_is_a_usage_error_naming_the_path() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let out = run(rbuild(dir.path()).arg("check").arg(&ctx));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile"), "{}", out.stderr);
    assert!(
        out.stderr.contains("--file"),
        "should say what to do: {}",
        out.stderr
    );
}

#[test]
fn bad_flag_values_are_usage_errors_with_what_is_allowed() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--output", "type=tarball,dest=x"],
            "type=oci, docker, registry, image, local or tar",
        ),
        // type=oci without dest= is standard output and type=docker the Docker Engine (buildx);
        // a directory has no such default.
        (&["--output", "type=docker,tar=false"], "dest=PATH"),
        (
            &["--cache-to", "type=local,dest=/tmp/x,cache-mounts=../up"],
            "cache id",
        ),
        (&["--secret", "id=s"], "src=FILE or env=VARIABLE"),
        (&["--ssh", "default"], "SSH_AUTH_SOCK is not set"),
        (
            &["--ssh", "gh=/nonexistent/agent.sock"],
            "cannot use the agent socket",
        ),
        (&["--tag", "Upper/Case"], "invalid --tag"),
        (&["--build-arg", "=x"], "--build-arg"),
        (&["--network", "bridge"], "bridge"),
        (&["--platform", "linux"], "os/arch"),
    ];
    for (args, needle) in cases {
        let out = run(rbuild(dir.path())
            .arg("build")
            .arg(&ctx)
            .args(*args)
            .env_remove("s")
            .env_remove("SSH_AUTH_SOCK"));
        assert_eq!(
            out.code, 2,
            "{args:?} should be a usage error: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(needle),
            "{args:?}: expected {needle:?} in {}",
            out.stderr
        );
    }
}

#[test]
fn secrets_never_reach_error_output() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    // A malformed spec that contains a would-be secret value must not be echoed back whole.
    let out = run(rbuild(dir.path())
        .arg("build")
        .arg(&ctx)
        .args([
            "--secret",
            "id=tok,env=RBUILD_CANARY_VAR",
            "--secret",
            "id=tok,env=OTHER",
        ])
        .env("RBUILD_CANARY_VAR", "s3cr3t-canary-value"));
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("s3cr3t-canary-value"));
}

#[test]
fn conflicting_forced_output_compression_is_refused_before_building() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /x\n").unwrap();
    let store = dir.path().join("store");
    let out = run(rbuild(&store)
        .arg("build")
        .arg(&ctx)
        .args(["--output", "type=oci,dest=a,compression=zstd"])
        .args([
            "--output",
            "type=oci,dest=b,compression=gzip,force-compression=true",
        ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("same compression"), "{}", out.stderr);
    assert!(!store.join("blobs").exists(), "nothing was built");
}

/// `-q` prints each target's digest once, on standard output (as buildx prints the image ID),
/// and nothing on standard error.
#[test]
fn quiet_prints_the_digest_once_on_stdout() {
    let dir = rbuild_tests::scratch();
    let ctx = dir.path().join("ctx");
    rbuild_tests::build::write_tree(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x\n")],
    );
    let r = rbuild_tests::run(
        rbuild_tests::rbuild(&dir.path().join("store"))
            .arg("build")
            .arg(&ctx)
            .arg("-q")
            .arg("--iidfile")
            .arg(dir.path().join("iid")),
    )
    .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert!(lines[0].starts_with("sha256:"), "{}", r.stdout);
    assert!(!r.stderr.contains("sha256:"), "{}", r.stderr);
    // buildx's `--quiet` prints the image ID (`getImageID`: the config's digest), the same
    // as `--iidfile` writes.
    let iid = std::fs::read_to_string(dir.path().join("iid")).unwrap();
    assert_eq!(lines[0], iid);
}
