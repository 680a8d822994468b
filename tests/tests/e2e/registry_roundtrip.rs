//! Pull and push against the real registry tests/run.sh starts (CNCF distribution, plain HTTP
//! on 127.0.0.1 — which rbuild, like Docker, reaches over HTTP after HTTPS fails), checked with
//! an independent client (skopeo).

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, metadata, write_tree};
use rbuild_tests::{have_tool, oci, run, scratch, test_registry};

/// The registry, or `None` (after saying why) when the suite runs without one.
pub fn registry() -> Option<String> {
    let r = test_registry();
    if r.is_none() {
        assert!(
            !rbuild_tests::tools_required(),
            "tests/run.sh must start a registry"
        );
        eprintln!("SKIPPED: no test registry (run bash tests/run.sh)");
    }
    r
}

/// A one-file image context (`FROM scratch`) whose content is `content`.
pub fn tiny_context(dir: &Path, content: &str) {
    write_tree(
        dir,
        &[
            ("Dockerfile", "FROM scratch\nCOPY hello /hello\n"),
            ("hello", content),
        ],
    );
}

/// A context building on `base` with one more file.
pub fn child_context(dir: &Path, base: &str) {
    write_tree(
        dir,
        &[
            ("Dockerfile", &format!("FROM {base}\nCOPY child /child\n")),
            ("child", "child\n"),
        ],
    );
}

#[test]
fn push_then_skopeo_inspect_and_copy_then_pull_back_into_an_empty_store() {
    let Some(reg) = registry() else { return };
    if !have_tool("skopeo") {
        return;
    }
    let dir = scratch();
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "round trip\n");
    let name = format!("{reg}/e2e/roundtrip:v1");
    let meta = dir.path().join("meta.json");
    let out = build(
        &dir.path().join("store1"),
        &ctx,
        &[
            "--tag",
            &name,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    )
    .success();
    let digest = metadata(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.stdout
            .contains(&format!("pushed {name}: digest: {digest}")),
        "{}",
        out.stdout
    );
    assert_eq!(
        metadata(&meta)["rbuild.pushed"][0],
        format!("{name}@{digest}")
    );
    // The push is a step of its own that reports the bytes it put on the registry.
    assert!(
        out.stderr.contains("pushing") && out.stderr.contains(" done"),
        "push progress: {}",
        out.stderr
    );

    // An independent client sees the same digest and can copy the image out.
    let inspect = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{name}")))
    .success();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"], digest);
    let copied = dir.path().join("copied");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:v1", copied.display())))
    .success();
    assert_eq!(oci::manifest_digest(&copied, "v1"), digest);

    // FROM the pushed image in a second build with an empty store: pulled, and its digest is
    // the base digest recorded in the child image.
    let child = dir.path().join("child");
    child_context(&child, &name);
    let layout = dir.path().join("child-out");
    let out = build(
        &dir.path().join("store2"),
        &child,
        &[
            "--tag",
            "child:1",
            "--output",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    )
    .success();
    assert!(
        out.stderr.contains(&format!("FROM {name}")),
        "{}",
        out.stderr
    );
    let m = oci::manifest(&layout, "1");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        digest
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn push_by_digest_and_cross_repository_mount_on_the_same_registry() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "mount me\n");
    let base = format!("{reg}/e2e/mount-base:v1");
    build(&dir.path().join("store"), &ctx, &["--tag", &base, "--push"]).success();
    // Pulled from e2e/mount-base, pushed to a new repository: the base layer is mounted.
    let child_repo = format!(
        "e2e/mount-child-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let child = dir.path().join("child");
    child_context(&child, &base);
    let out = build(
        &dir.path().join("store2"),
        &child,
        &[
            "--output",
            &format!("type=registry,name={reg}/{child_repo},push-by-digest=true"),
        ],
    )
    .success();
    assert!(out.stderr.contains("1 mounted"), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("pushed {reg}/{child_repo}@sha256:")),
        "{}",
        out.stdout
    );
}

/// PUTs an OCI index of `entries` (descriptor JSON, platform) as `repo:tag` with curl.
fn put_index(reg: &str, dir: &Path, repo_tag: &str, entries: &[(serde_json::Value, &str)]) {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(d, arch)| {
            serde_json::json!({
                "mediaType": d["mediaType"],
                "digest": d["digest"],
                "size": d["size"],
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let index_file = dir.join(format!("index-{}.json", repo_tag.replace([':', '/'], "-")));
    std::fs::write(&index_file, index.to_string()).unwrap();
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    run(Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.index.v1+json")
        .arg("--data-binary")
        .arg(format!("@{}", index_file.display()))
        .arg(format!("http://{reg}/v2/{repo}/manifests/{tag}")))
    .success();
}

#[test]
fn from_picks_the_entry_for_the_platform_from_a_multi_arch_index() {
    let Some(reg) = registry() else { return };
    if !have_tool("curl") {
        return;
    }
    let (host, other) = match std::env::consts::ARCH {
        "aarch64" => ("arm64", "amd64"),
        _ => ("amd64", "arm64"),
    };
    let dir = scratch();
    let store = dir.path().join("store");
    // Two images pushed by digest; the index made here labels the first with another architecture and the
    // second the host's (rbuild builds for the host only, so both are host images; the
    // index's platform field is what FROM chooses by).
    let mut descs = Vec::new();
    for which in ["first", "second"] {
        let ctx = dir.path().join(which);
        tiny_context(&ctx, &format!("{which}\n"));
        let meta = dir.path().join(format!("{which}.json"));
        build(
            &store,
            &ctx,
            &[
                "--output",
                &format!("type=registry,name={reg}/e2e/multi,push-by-digest=true"),
                "--metadata-file",
                meta.to_str().unwrap(),
            ],
        )
        .success();
        descs.push(metadata(&meta)["containerimage.descriptor"].clone());
    }
    put_index(
        &reg,
        dir.path(),
        "e2e/multi:both",
        &[(descs[0].clone(), other), (descs[1].clone(), host)],
    );
    put_index(
        &reg,
        dir.path(),
        "e2e/multi:foreign",
        &[(descs[0].clone(), other), (descs[1].clone(), "s390x")],
    );

    let child = dir.path().join("child");
    child_context(&child, &format!("{reg}/e2e/multi:both"));
    let layout = dir.path().join("out");
    build(
        &dir.path().join("store-child"),
        &child,
        &[
            "--platform",
            &format!("linux/{host}"),
            "--tag",
            "c:1",
            "--output",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    )
    .success();
    let m = oci::manifest(&layout, "1");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"], descs[1]["digest"],
        "linux/{host} must build on the index's linux/{host} entry"
    );

    // An index without the platform is a clear error naming what it has.
    let child = dir.path().join("child-foreign");
    child_context(&child, &format!("{reg}/e2e/multi:foreign"));
    let out = build(
        &dir.path().join("store-foreign"),
        &child,
        &["--platform", &format!("linux/{host}")],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("linux/{host}"))
            && out.stderr.contains(&format!("linux/{other}, linux/s390x")),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_image_and_unknown_tag_fail_naming_the_registry() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "tags\n");
    let known = format!("{reg}/e2e/known:v1");
    build(&dir.path().join("s0"), &ctx, &["--tag", &known, "--push"]).success();
    for (i, missing) in [
        format!("{reg}/e2e/never-pushed:v1"),
        format!("{reg}/e2e/known:no-such-tag"),
    ]
    .iter()
    .enumerate()
    {
        let child = dir.path().join(format!("c{i}"));
        child_context(&child, missing);
        let out = build(&dir.path().join(format!("s{}", i + 1)), &child, &[]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("registry {reg}")) && out.stderr.contains("not found"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_name_built_here_is_used_without_a_registry_and_a_pulled_one_survives_an_outage() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let store = dir.path().join("store");
    // Built here under a registry name that was never pushed: FROM uses the local image.
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "local\n");
    let local_name = format!("{reg}/e2e/only-local:v1");
    build(&store, &ctx, &["--tag", &local_name]).success();
    let child = dir.path().join("child");
    child_context(&child, &local_name);
    build(&store, &child, &[]).success();

    // Pulled through a proxy that then goes away: the pulled copy is used, with a warning.
    let pushed = format!("{reg}/e2e/outage:v1");
    build(
        &dir.path().join("s-push"),
        &ctx,
        &["--tag", &pushed, "--push"],
    )
    .success();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    // The same repository reached through a name that stops answering: a store tag made by
    // a pull of the real registry, copied to the dead name.
    let child2 = dir.path().join("child2");
    child_context(&child2, &pushed);
    build(&store, &child2, &[]).success();
    let dead = format!("127.0.0.1:{port}/e2e/outage:v1");
    let store_index = store.join("index.json");
    let idx = std::fs::read_to_string(&store_index).unwrap();
    std::fs::write(&store_index, idx.replace(&pushed, &dead)).unwrap();
    let child3 = dir.path().join("child3");
    child_context(&child3, &dead);
    let out = build(&store, &child3, &[]).success();
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("pulled earlier"),
        "{}",
        out.stderr
    );
}
