//! The test fixtures themselves work with independent tools: the busybox base image made with
//! umoci is readable by skopeo, and the registry started by tests/run.sh accepts it.

use std::process::Command;

use rbuild_tests::{have_tool, image::busybox_layout, run, scratch, test_registry};

#[test]
fn busybox_base_image_is_a_valid_oci_layout() {
    let dir = scratch();
    let Some(layout) = busybox_layout(dir.path(), "base") else {
        return;
    };
    if !have_tool("skopeo") {
        return;
    }
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:base", layout.display())))
    .success();
    assert!(out.stdout.contains("\"Layers\""), "{}", out.stdout);
}

#[test]
fn test_registry_accepts_a_pushed_image() {
    let Some(registry) = test_registry() else {
        eprintln!("SKIPPED: no test registry (run bash tests/run.sh)");
        assert!(
            !rbuild_tests::tools_required(),
            "tests/run.sh must start a registry"
        );
        return;
    };
    let dir = scratch();
    let Some(layout) = busybox_layout(dir.path(), "base") else {
        return;
    };
    if !have_tool("skopeo") {
        return;
    }
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:base", layout.display()))
        .arg(format!("docker://{registry}/fixtures/busybox:base")))
    .success();
    let out = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{registry}/fixtures/busybox:base")))
    .success();
    assert!(out.stdout.contains("fixtures/busybox"), "{}", out.stdout);
}
