//! The slower end-to-end RUN tests, on Debian minbase root filesystems made with debootstrap
//! (so they run only from the README test command, `bash tests/run.sh`, or with
//! `RBUILD_SLOW_TESTS=1`): real glibc programs (`useradd`, bash) change /etc and /usr in the
//! sandbox, and a later step runs as the user created; and C cross-compiled on the build
//! platform for two target platforms.

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{have_tool, run, scratch, tools_required};

fn slow_tests_enabled() -> bool {
    let on = tools_required() || std::env::var("RBUILD_SLOW_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("SKIPPED: slow Debian test (set RBUILD_SLOW_TESTS=1 or run bash tests/run.sh)");
    }
    on
}

#[test]
fn useradd_and_a_script_writing_under_usr_on_a_debian_minbase_rootfs() {
    if !slow_tests_enabled() || !have_tool("debootstrap") {
        return;
    }
    let dir = scratch();
    // The suite's one debootstrap tree (minbase, with ca-certificates and uidmap).
    let rootfs = rbuild_tests::container::debian_rootfs().unwrap_or_else(|e| panic!("{e}"));
    // The base image: the debootstrap tree as one layer, by rbuild itself.
    rbuild_tests::container::debian_base_context(&rootfs, &dir.path().join("base"))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("store");
    build(
        &store,
        &dir.path().join("base"),
        &["--tag", "localhost/debian-min:bookworm"],
    )
    .success();

    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/debian-min:bookworm\n\
             RUN useradd --create-home --shell /bin/bash --uid 1234 builder && id builder\n\
             RUN cat > /usr/local/bin/hello <<'EOF'\n\
             #!/bin/bash\n\
             echo \"hello from $(readlink -f \"$0\") as $(whoami)\"\n\
             EOF\n\
             RUN chmod 0755 /usr/local/bin/hello && rm -rf /usr/share/doc/*\n\
             USER builder\n\
             WORKDIR /home/builder\n\
             RUN hello > out.txt && echo \"$HOME\" >> out.txt\n",
        )],
    );
    let fs = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    assert!(r.stderr.contains("uid=1234(builder)"), "{}", r.stderr);
    let passwd = std::fs::read_to_string(fs.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("builder:x:1234:1234::/home/builder:/bin/bash"),
        "{passwd}"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("home/builder/out.txt")).unwrap(),
        "hello from /usr/local/bin/hello as builder\n/home/builder\n"
    );
    assert_eq!(
        std::fs::read_dir(fs.join("usr/share/doc")).unwrap().count(),
        0
    );
    let meta = std::fs::metadata(fs.join("home/builder/out.txt")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1234);
}

/// The cross-compilation pattern with a real compiler (issue 14): the builder stage runs on
/// `$BUILDPLATFORM` (a Debian root with gcc and gcc-aarch64-linux-gnu) for both targets, its
/// steps before `ARG TARGETARCH` once, and compiles for `$TARGETARCH`; each platform's final
/// stage gets a native static binary (checked with `file`) and runs it (arm64 through QEMU).
#[test]
fn cross_compiling_c_on_the_build_platform_makes_a_native_binary_per_target() {
    if !slow_tests_enabled() || !have_tool("debootstrap") || !have_tool("file") {
        return;
    }
    let Some(reg) = rbuild_tests::test_registry() else {
        assert!(!tools_required(), "tests/run.sh must start a registry");
        return;
    };
    if std::env::consts::ARCH != "x86_64" || !rbuild_tests::multiarch::arm64_runs() {
        return;
    }
    let dir = scratch();
    let store = dir.path().join("store");
    let busybox = format!("{reg}/e2e-cross/busybox:multi");
    if !rbuild_tests::multiarch::two_platform_busybox(dir.path(), &store, &busybox, &["--push"]) {
        return;
    }
    let rootfs = rbuild_tests::container::debian_cross_rootfs().unwrap_or_else(|e| panic!("{e}"));
    rbuild_tests::container::debian_base_context(&rootfs, &dir.path().join("base"))
        .unwrap_or_else(|e| panic!("{e}"));
    build(
        &store,
        &dir.path().join("base"),
        &["--tag", "localhost/debian-cross:bookworm"],
    )
    .success();

    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM --platform=$BUILDPLATFORM localhost/debian-cross:bookworm AS build\n\
                     WORKDIR /src\n\
                     COPY hello.c .\n\
                     ARG TARGETARCH\n\
                     RUN case \"$TARGETARCH\" in arm64) CC=aarch64-linux-gnu-gcc;; amd64) CC=gcc;; esac; \\\n\
                         $CC -static -O2 -o /hello hello.c\n\
                     FROM {busybox}\n\
                     COPY --from=build /hello /usr/local/bin/hello\n\
                     RUN hello > /greeting\n"
                ),
            ),
            (
                "hello.c",
                "#include <stdio.h>\nint main(void) {\n#ifdef __aarch64__\n  puts(\"hello from aarch64\");\n#else\n  puts(\"hello from x86_64\");\n#endif\n  return 0;\n}\n",
            ),
        ],
    );
    let out = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--output",
            &format!("type=local,dest={}", out.display()),
        ],
    )
    .success();
    // The builder's steps all ran on the build platform (never emulated).
    assert!(!r.stderr.contains("[linux/arm64 build"), "{}", r.stderr);
    assert!(
        r.stderr.contains("[linux/amd64->arm64 build 4/4] RUN case"),
        "{}",
        r.stderr
    );
    for (platform, file_says, greeting) in [
        ("linux_amd64", "x86-64", "hello from x86_64\n"),
        ("linux_arm64", "ARM aarch64", "hello from aarch64\n"),
    ] {
        let binary = out.join(platform).join("usr/local/bin/hello");
        let described = run(std::process::Command::new("file").arg(&binary)).success();
        assert!(
            described.stdout.contains(file_says) && described.stdout.contains("statically linked"),
            "{platform}: {}",
            described.stdout
        );
        assert_eq!(
            std::fs::read_to_string(out.join(platform).join("greeting")).unwrap(),
            greeting
        );
    }
}
