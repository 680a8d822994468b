//! Paths given on the command line: relative ones mean the same file to every part of a build
//! (the RUN sandbox helper opens secret sources and cache-mount directories in another working
//! directory, so the CLI makes every path absolute before anything runs).

use std::process::Command;

use rbuild_tests::build::{busybox_base, write_tree, EPOCH};
use rbuild_tests::{rbuild_bin, run, scratch};

use super::run_sandbox::BASE;

fn sha256_hex(data: &str) -> String {
    run(Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$1\" | sha256sum | cut -d' ' -f1")
        .arg("sh")
        .arg(data))
    .success()
    .stdout
}

#[test]
fn relative_store_and_secret_src_work_in_run_with_cache_and_secret_mounts() {
    let dir = scratch();
    // The base image goes into the store the build then names relatively, as `s2`.
    if !busybox_base(dir.path(), &dir.path().join("s2"), BASE) {
        return;
    }
    let secret = format!("relative-secret-{}", std::process::id());
    write_tree(
        dir.path(),
        &[
            ("relative/secret.txt", &secret),
            (
                "ctx/Dockerfile",
                &format!(
                    "FROM {BASE}\n\
                     RUN --mount=type=cache,target=/cache --mount=type=secret,id=x \
                         sha256sum /run/secrets/x | cut -d' ' -f1 > /sum && echo seen > /cache/seen\n"
                ),
            ),
        ],
    );
    let r = run(Command::new(rbuild_bin())
        .current_dir(dir.path())
        .env_remove("RBUILD_STORE")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("NO_COLOR", "1")
        .args(["build", "ctx", "-f", "ctx/Dockerfile", "--store", "s2"])
        .args([
            "--progress",
            "plain",
            "--secret",
            "id=x,src=relative/secret.txt",
        ])
        .args([
            "--output",
            "type=local,dest=out",
            "--metadata-file",
            "meta.json",
        ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains(&secret), "the secret is masked");
    let sum = std::fs::read_to_string(dir.path().join("out/sum")).unwrap();
    assert_eq!(sum, sha256_hex(&secret), "the RUN read the secret file");
    assert!(dir.path().join("meta.json").is_file());
    assert!(
        std::fs::read_dir(dir.path().join("s2/cache-mounts"))
            .unwrap()
            .next()
            .is_some(),
        "the cache mount lives in the relative store"
    );
}
