//! The slower end-to-end RUN test, on a Debian minbase root filesystem made with debootstrap
//! (so it runs only from the README test command, `bash tests/run.sh`, or with
//! `RBUILD_SLOW_TESTS=1`): real glibc programs (`useradd`, bash) change /etc and /usr in the
//! sandbox, and a later step runs as the user created.

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{have_tool, scratch, tools_required};

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
