//! Base images for tests, made locally with independent tools (no Docker Hub here).
//!
//! `busybox_layout` builds an OCI image layout holding Debian's static busybox and its applet
//! links, using `umoci` (not rbuild), so that rbuild's own writer is not what makes its inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// Makes an OCI layout at `dir` with the image tag `tag`: busybox-static at `/bin/busybox`,
/// applet symlinks in `/bin`, `/etc/passwd` and `/etc/group` with root and `app` (uid 1000).
/// Returns `None` (after printing why) when umoci or busybox is missing and tools are optional.
pub fn busybox_layout(dir: &Path, tag: &str) -> Option<PathBuf> {
    if !crate::have_tool("umoci") || !crate::have_tool("busybox") {
        return None;
    }
    let rootfs = dir.join("busybox-rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    let busybox = which("busybox");
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    let list = run(Command::new(&busybox).arg("--list")).success().stdout;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();

    let layout = dir.join("busybox-oci");
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))
    .success();
    run(Command::new("umoci").args(["new", "--image", &image])).success();
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&rootfs)
        .arg("/"))
    .success();
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.cmd=/bin/sh",
    ]))
    .success();
    Some(layout)
}

fn which(tool: &str) -> PathBuf {
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}")))
    .success();
    PathBuf::from(out.stdout.trim())
}
