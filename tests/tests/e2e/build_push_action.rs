//! rbuild driven with the exact argument list `docker/build-push-action` gives `docker buildx`
//! for a typical workflow (its `src/context.ts`, `getArgs`: build args in `getBuildArgs` order,
//! then `getCommonArgs`, then the context), with the values `docker/metadata-action` produces
//! for tags, labels and annotations, and `docker/setup-buildx-action`'s builder name. A user
//! switching from buildx changes the program name and nothing else.

use std::process::Command;

use rbuild_tests::build::{metadata, write_tree};
use rbuild_tests::multiarch::registry_with_two_platform_base;
use rbuild_tests::{rbuild, run, scratch};

#[test]
fn the_arguments_of_build_push_action_for_a_two_platform_push_with_cache_and_metadata() {
    let dir = scratch();
    let Some((reg, base)) = registry_with_two_platform_base(dir.path(), "e2e-bpa") else {
        return;
    };
    let ctx = dir.path().join("repo");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {base}\nRUN --mount=type=secret,id=GIT_AUTH_TOKEN test -s /run/secrets/GIT_AUTH_TOKEN\nCOPY app.sh /app.sh\nRUN uname -m > /arch\nCMD [\"/app.sh\"]\n"
                ),
            ),
            ("app.sh", "#!/bin/sh\necho hello\n"),
        ],
    );
    // What the actions write under RUNNER_TEMP (docker-actions-toolkit's temp directory).
    let toolkit = dir.path().join("docker-actions-toolkit-abc123");
    std::fs::create_dir_all(&toolkit).unwrap();
    let iidfile = toolkit.join("build-iidfile-0123456789.txt");
    let metadata_file = toolkit.join("build-metadata-0123456789.json");
    let secret = toolkit.join("tmp-secret-0");
    std::fs::write(&secret, "ghs_not-a-real-token").unwrap();
    let image = format!("{reg}/e2e-bpa/app");
    let cache = format!("{reg}/e2e-bpa/app:buildcache");
    let created = "2026-12-04T10:00:00.000Z";
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let args: Vec<String> = [
        "build",
        "--annotation",
        &format!("manifest:org.opencontainers.image.created={created}"),
        "--annotation",
        "manifest:org.opencontainers.image.description=",
        "--annotation",
        &format!("manifest:org.opencontainers.image.revision={revision}"),
        "--annotation",
        "index:org.opencontainers.image.source=https://github.com/octo-org/app",
        "--cache-from",
        &format!("type=registry,ref={cache}"),
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max"),
        "--iidfile",
        iidfile.to_str().unwrap(),
        "--label",
        &format!("org.opencontainers.image.created={created}"),
        "--label",
        "org.opencontainers.image.description=",
        "--label",
        "org.opencontainers.image.licenses=MIT",
        "--label",
        &format!("org.opencontainers.image.revision={revision}"),
        "--label",
        "org.opencontainers.image.source=https://github.com/octo-org/app",
        "--label",
        "org.opencontainers.image.title=app",
        "--label",
        "org.opencontainers.image.url=https://github.com/octo-org/app",
        "--label",
        "org.opencontainers.image.version=main",
        "--platform",
        "linux/amd64,linux/arm64",
        "--attest",
        "type=provenance,mode=max,builder-id=https://github.com/octo-org/app/actions/runs/123456789/attempts/1",
        "--secret",
        &format!("id=GIT_AUTH_TOKEN,src={}", secret.display()),
        "--tag",
        &format!("{image}:main"),
        "--tag",
        &format!("{image}:sha-0123456"),
        "--builder",
        "builder-5f8a2b8e-1e2b-4b9d-9c6f-1c2d3e4f5a6b",
        "--metadata-file",
        metadata_file.to_str().unwrap(),
        "--push",
        ".",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = run(rbuild(&dir.path().join("store"))
        .current_dir(&ctx)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(&args));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("ghs_not-a-real-token"), "{}", r.stderr);

    // The outputs build-push-action reads: the image ID and the metadata (its `digest` output
    // is `containerimage.digest`).
    let m = metadata(&metadata_file);
    let digest = m["containerimage.digest"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(&iidfile).unwrap(), digest);
    let pushed = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}:sha-0123456"),
    ]))
    .success();
    let index: serde_json::Value = serde_json::from_str(&pushed.stdout).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    // Two images, then their provenance attestations.
    assert_eq!(entries.len(), 4, "{index}");
    assert_eq!(
        index["annotations"]["org.opencontainers.image.source"],
        "https://github.com/octo-org/app"
    );
    let tag_digest = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{image}:main"),
    ]))
    .success();
    assert_eq!(tag_digest.stdout.trim(), digest);
    for arch in ["amd64", "arm64"] {
        let config: serde_json::Value = serde_json::from_str(
            &run(Command::new("skopeo").args([
                "inspect",
                "--tls-verify=false",
                "--config",
                "--override-arch",
                arch,
                &format!("docker://{image}:main"),
            ]))
            .success()
            .stdout,
        )
        .unwrap();
        assert_eq!(config["architecture"], arch);
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            "main"
        );
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.revision"],
            revision
        );
    }
    // The cache went where the next pipeline run reads it.
    run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{cache}"),
    ]))
    .success();
}
