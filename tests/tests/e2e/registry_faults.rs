//! Faults between rbuild and a real registry, injected by a proxy written in the tests
//! (`rbuild_tests::fault_proxy`): a corrupted blob and a truncated blob are rejected and never
//! stored; `429 Too Many Requests` with `Retry-After` is honoured.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::registry_roundtrip::{child_context, registry, tiny_context};
use rbuild_tests::build::build;
use rbuild_tests::fault_proxy::{self, Fault};
use rbuild_tests::scratch;

/// Pushes a one-file image to the real registry and returns its repository path and tag.
fn pushed_image(dir: &std::path::Path, reg: &str, repo: &str, content: &str) -> String {
    let ctx = dir.join(format!("ctx-{}", repo.replace('/', "-")));
    tiny_context(&ctx, content);
    build(
        &dir.join("push-store"),
        &ctx,
        &["--tag", &format!("{reg}/{repo}:v1"), "--push"],
    )
    .success();
    format!("{repo}:v1")
}

fn blobs_in(store: &std::path::Path) -> usize {
    std::fs::read_dir(store.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn corrupted_and_truncated_blobs_are_rejected_and_not_stored() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    for (i, fault) in [Fault::CorruptBlobs, Fault::TruncateBlobs]
        .into_iter()
        .enumerate()
    {
        let image = pushed_image(
            dir.path(),
            &reg,
            &format!("e2e/fault{i}"),
            &format!("{i}\n"),
        );
        let proxy = fault_proxy::start(&reg, fault.clone());
        let child = dir.path().join(format!("child{i}"));
        child_context(&child, &format!("{}/{image}", proxy.addr));
        let store = dir.path().join(format!("store{i}"));
        let out = build(&store, &child, &[]);
        assert_eq!(out.code, 1, "{fault:?}: {}", out.stderr);
        assert!(proxy.injected.load(Ordering::SeqCst) > 0);
        assert!(
            out.stderr.contains(&format!("registry {}", proxy.addr)),
            "{fault:?}: {}",
            out.stderr
        );
        // Only the manifest made it in; no blob with wrong content is kept.
        assert!(
            blobs_in(&store) <= 1,
            "{fault:?}: {} blobs",
            blobs_in(&store)
        );
    }
}

#[test]
fn too_many_requests_with_retry_after_is_waited_out() {
    let Some(reg) = registry() else { return };
    let dir = scratch();
    let image = pushed_image(dir.path(), &reg, "e2e/throttled", "429\n");
    let proxy = fault_proxy::start(
        &reg,
        Fault::TooManyRequests {
            times: 1,
            retry_after_secs: 2,
        },
    );
    let child = dir.path().join("child");
    child_context(&child, &format!("{}/{image}", proxy.addr));
    let started = Instant::now();
    build(&dir.path().join("store"), &child, &[]).success();
    assert_eq!(proxy.injected.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed().as_secs_f64() >= 2.0,
        "Retry-After: 2 was not honoured ({:?})",
        started.elapsed()
    );
}

#[test]
fn a_registry_restarted_in_the_middle_of_a_push_is_retried_and_the_push_succeeds() {
    use rbuild_tests::registry_server::RegistryServer;
    use std::process::Stdio;
    if !rbuild_tests::have_tool("skopeo") {
        return;
    }
    let dir = scratch();
    let Some(mut server) = RegistryServer::start(&dir.path().join("registry")) else {
        return;
    };
    // A layer big enough for chunked upload (over 64 MiB), incompressible.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY big /big\n").unwrap();
    rbuild_tests::run(
        std::process::Command::new("head")
            .args(["-c", "100000000", "/dev/urandom"])
            .stdout(std::fs::File::create(ctx.join("big")).unwrap()),
    )
    .success();
    let store = dir.path().join("store");
    let name = format!("{}/e2e/restart:v1", server.addr);
    build(&store, &ctx, &["--tag", &name]).success();

    let push = rbuild_tests::build::build_cmd(&store, &ctx)
        .args(["--tag", &name, "--push"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Crash the registry as soon as an upload session exists, bring it back a second later.
    let uploads = server
        .data
        .join("docker/registry/v2/repositories/e2e/restart/_uploads");
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while !uploads.exists() {
        assert!(
            Instant::now() < deadline,
            "the push never started an upload"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.stop();
    std::thread::sleep(std::time::Duration::from_secs(1));
    server.restart();
    let out = rbuild_tests::Run::from_output(push.wait_with_output().unwrap()).success();
    assert!(
        out.stdout.contains(&format!("pushed {name}")),
        "{}",
        out.stdout
    );

    // Nothing corrupt: an independent client copies every blob, verifying digests.
    let copied = dir.path().join("copied");
    rbuild_tests::run(
        std::process::Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:v1", copied.display())),
    )
    .success();
}
