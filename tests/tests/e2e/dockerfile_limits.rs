//! Hostile or risky Dockerfiles against the real binary: a tiny file must not be able to
//! expand into gigabytes (the project rule: no input under 1 MB may drive memory past 1 GiB),
//! and secret-looking ARG/ENV/--build-arg names are warned about without printing the value.
//! The exact messages are golden-tested in `builder/src/dockerfile/limits/tests.rs` and
//! `builder/src/lint/`.

use std::process::Command;

use rbuild_tests::build::write_tree;
use rbuild_tests::{rbuild_bin, run, scratch};

/// `rbuild ARGS` with its address space capped at 1 GiB (`prlimit --as`): an allocation past
/// the cap fails and aborts the process instead of exhausting the machine.
fn rbuild_within_1_gib(store: &std::path::Path, args: &[&std::ffi::OsStr]) -> rbuild_tests::Run {
    let mut c = Command::new("prlimit");
    c.arg(format!("--as={}", 1u64 << 30))
        .arg("--")
        .arg(rbuild_bin())
        .args(args)
        .env("RBUILD_STORE", store)
        .env("NO_COLOR", "1");
    run(&mut c)
}

/// Forty ARGs, each twice the one before: 859 bytes that expand to 8 × 2^39 bytes.
fn doubling_args() -> String {
    let mut df = String::from("FROM scratch\nARG A1=xxxxxxxx\n");
    for i in 2..=40 {
        df.push_str(&format!("ARG A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
    }
    df.push_str("RUN echo $A40\n");
    df
}

#[test]
fn forty_doubling_args_fail_check_within_1_gib_naming_the_line() {
    if !rbuild_tests::have_tool("prlimit") {
        return;
    }
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    let df = doubling_args();
    assert!(df.len() < 1024, "the attack is under 1 KiB: {}", df.len());
    write_tree(&ctx, &[("Dockerfile", &df)]);
    let store = dir.path().join("store");
    for command in ["check", "build"] {
        let r = rbuild_within_1_gib(&store, &[command.as_ref(), ctx.as_os_str()]);
        assert_eq!(r.code, 2, "{command}: {}", r.stderr);
        assert!(
            r.stderr.contains("Dockerfile:20: ARG A19: ")
                && r.stderr
                    .contains("larger than 1 MiB, the limit for one expanded word")
                && r.stderr.contains("COPY it"),
            "{command}: {}",
            r.stderr
        );
    }
}

#[test]
fn secret_looking_build_args_warn_in_check_and_build_without_the_value() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    let canary = format!("canary-{}-value", std::process::id());
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG GITHUB_TOKEN\nENV AUTH_TOKEN=$GITHUB_TOKEN VERSION=1\nCOPY f /f\n",
            ),
            ("f", "f\n"),
        ],
    );
    let store = dir.path().join("store");
    let arg = format!("GITHUB_TOKEN={canary}");
    for command in ["check", "build"] {
        let r = run(rbuild_tests::rbuild(&store)
            .arg(command)
            .arg(&ctx)
            .args(["--build-arg", &arg, "--build-arg", "PUBLIC_KEY=not-secret"])
            .args(if command == "build" {
                &["--progress", "plain"][..]
            } else {
                &[]
            }));
        assert_eq!(r.code, 0, "{command}: {}", r.stderr);
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(!out.contains(&canary), "{command} printed the value: {out}");
        // `check` prints buildx's check report, `build` BuildKit's one-line warnings.
        let (arg, env) = if command == "check" {
            (
                "WARNING: SecretsUsedInArgOrEnv - https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/\nDo not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\")\nDockerfile:2\n",
                "Do not use ARG or ENV instructions for sensitive data (ENV \"AUTH_TOKEN\")\nDockerfile:3\n",
            )
        } else {
            (
                "WARNING: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\") (line 2)",
                "WARNING: SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"AUTH_TOKEN\") (line 3)",
            )
        };
        for expected in [
            arg,
            env,
            "SecretLikeBuildArg",
            "--build-arg GITHUB_TOKEN looks like a secret",
            "--mount=type=secret,id=github_token",
        ] {
            assert!(
                out.contains(expected),
                "{command}: no {expected:?} in {out}"
            );
        }
        assert!(!out.contains("--build-arg PUBLIC_KEY"), "{command}: {out}");
    }
}

/// A 3 MiB environment (under the 4 MiB scope bound) followed by 600 `WORKDIR` steps: each
/// step keeps the config so far (its cache-export outcome and record), so without a
/// build-wide bound 6 KB of Dockerfile kept over 1.5 GiB. The build must stop at the bound
/// (`solver::budget`) with an error naming the step, inside 1 GiB.
#[test]
fn many_steps_under_a_large_environment_stop_at_the_kept_bytes_bound_within_1_gib() {
    if !rbuild_tests::have_tool("prlimit") {
        return;
    }
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    let mut df = String::from("FROM scratch\nARG A1=xxxxxxxx\n");
    for i in 2..=17 {
        df.push_str(&format!("ARG A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
    }
    df.push_str("ENV E1=$A17 E2=$A17 E3=$A17 E4=$A17 E5=$A17\n");
    for _ in 0..600 {
        df.push_str("WORKDIR /w\n");
    }
    assert!(
        df.len() < 8 * 1024,
        "the attack is under 8 KiB: {}",
        df.len()
    );
    write_tree(&ctx, &[("Dockerfile", &df)]);
    let store = dir.path().join("store");
    let r = rbuild_within_1_gib(
        &store,
        &[
            "build".as_ref(),
            ctx.as_os_str(),
            "--progress".as_ref(),
            "plain".as_ref(),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(": `WORKDIR /w`")
            && r.stderr.contains("would exceed 256 MiB")
            && r.stderr.contains("COPY it"),
        "{}",
        r.stderr
    );
}
