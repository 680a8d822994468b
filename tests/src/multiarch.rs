//! Foreign-platform fixtures for the multi-platform tests: a two-platform busybox base image
//! (linux/amd64 from the host's busybox, linux/arm64 from Debian's arm64 `busybox-static`
//! package, which `bash tests/run.sh` downloads), built FROM scratch by rbuild itself as one
//! index, and whether this machine runs arm64 RUN steps (QEMU registered in binfmt_misc).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::write_tree;
use crate::{have_tool, rbuild, rbuild_bin, run, tools_required};

/// The Debian arm64 busybox-static package tests/run.sh downloaded, if any.
fn arm64_busybox_deb() -> Option<PathBuf> {
    let deb = std::env::var_os("RBUILD_TEST_ARM64_BUSYBOX_DEB").map(PathBuf::from);
    match deb.filter(|d| d.is_file()) {
        Some(d) => Some(d),
        None => {
            assert!(
                !tools_required(),
                "RBUILD_TEST_ARM64_BUSYBOX_DEB is required (RBUILD_REQUIRE_TOOLS=1): bash tests/run.sh downloads it"
            );
            eprintln!("SKIPPED: no arm64 busybox-static package (bash tests/run.sh downloads it)");
            None
        }
    }
}

/// Whether arm64 RUN steps run here: `rbuild binfmt arm64` says so (QEMU registered with the F
/// flag). Fails under `RBUILD_REQUIRE_TOOLS=1` when they do not.
pub fn arm64_runs() -> bool {
    let r = run(Command::new(rbuild_bin()).args(["binfmt", "arm64"]));
    if r.code != 0 {
        assert!(
            !tools_required(),
            "arm64 emulation is required (RBUILD_REQUIRE_TOOLS=1): {}",
            r.stdout
        );
        eprintln!("SKIPPED: arm64 RUN steps cannot run here: {}", r.stdout);
    }
    r.code == 0
}

/// The busybox applets a rootfs gets (the host busybox's list; both builds of Debian's package
/// have the same configuration).
fn applets() -> Vec<String> {
    let busybox = run(Command::new("sh").args(["-c", "command -v busybox"]))
        .success()
        .stdout;
    run(Command::new(busybox.trim()).arg("--list"))
        .success()
        .stdout
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
        .map(str::to_string)
        .collect()
}

/// Lays out a busybox rootfs at `rootfs` with `binary` as `/bin/busybox`.
fn rootfs_with(rootfs: &Path, binary: &Path, applets: &[String]) {
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(binary, rootfs.join("bin/busybox")).unwrap();
    for a in applets {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    write_tree(
        rootfs,
        &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
        ],
    );
}

/// Builds the two-platform busybox base (linux/amd64 and linux/arm64, one index) with rbuild
/// into `store`, tagged `tag` (with `extra` arguments, e.g. `--push`). Returns false when a
/// fixture is missing and tools are optional.
pub fn two_platform_busybox(dir: &Path, store: &Path, tag: &str, extra: &[&str]) -> bool {
    if !have_tool("busybox") || !have_tool("dpkg-deb") {
        return false;
    }
    let Some(deb) = arm64_busybox_deb() else {
        return false;
    };
    let ctx = dir.join("busybox-multiarch");
    let unpacked = dir.join("busybox-arm64-deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)).success();
    let applets = applets();
    let host = run(Command::new("sh").args(["-c", "command -v busybox"]))
        .success()
        .stdout;
    rootfs_with(&ctx.join("rootfs-amd64"), Path::new(host.trim()), &applets);
    rootfs_with(
        &ctx.join("rootfs-arm64"),
        &unpacked.join("bin/busybox"),
        &applets,
    );
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"/bin/sh\"]\n",
        )],
    );
    run(rbuild(store)
        .arg("build")
        .arg(&ctx)
        .args(["--progress", "quiet", "--tag", tag])
        .args(["--platform", "linux/amd64,linux/arm64"])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "0"))
    .success();
    true
}

/// The test registry and a two-platform busybox base pushed to `REGISTRY/REPO/busybox:multi`
/// (built under `dir`), or `None` (after saying why) when the registry, skopeo, arm64
/// emulation or a fixture is missing, or the host is not x86-64 (the fixture's amd64 image is
/// the host's busybox).
pub fn registry_with_two_platform_base(dir: &Path, repo: &str) -> Option<(String, String)> {
    let reg = crate::test_registry();
    if reg.is_none() {
        assert!(!tools_required(), "tests/run.sh must start a registry");
        eprintln!("SKIPPED: no test registry (run bash tests/run.sh)");
    }
    let reg = reg?;
    if std::env::consts::ARCH != "x86_64" || !arm64_runs() || !have_tool("skopeo") {
        return None;
    }
    let base = format!("{reg}/{repo}/busybox:multi");
    two_platform_busybox(dir, &dir.join("base-store"), &base, &["--push"]).then_some((reg, base))
}
