//! Driving `rbuild build` the way the end-to-end tests need: a fixed `SOURCE_DATE_EPOCH` (so that
//! outside git two builds are comparable), plain progress, small build contexts written from
//! literals, and a busybox base image built FROM scratch with rbuild into a test's own store.

use std::path::Path;
use std::process::Command;

use crate::{have_tool, rbuild, run, Run};

/// The `SOURCE_DATE_EPOCH` that [`build`] uses (2023-11-14T22:13:20Z).
pub const EPOCH: &str = "1700000000";

/// `rbuild build CONTEXT --progress plain` with `SOURCE_DATE_EPOCH=EPOCH`, ready for more args.
pub fn build_cmd(store: &Path, ctx: &Path) -> Command {
    let mut c = rbuild(store);
    c.arg("build")
        .arg(ctx)
        .args(["--progress", "plain"])
        .env("SOURCE_DATE_EPOCH", EPOCH);
    c
}

/// Runs [`build_cmd`] with `args` and returns its result, whatever the exit code.
pub fn build(store: &Path, ctx: &Path, args: &[&str]) -> Run {
    run(build_cmd(store, ctx).args(args))
}

/// Writes `files` (relative path, content) under `root`, creating parent directories.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
}

/// Reads a `--metadata-file` JSON.
pub fn metadata(path: &Path) -> serde_json::Value {
    crate::oci::read_json(path)
}

/// Lays out a busybox root filesystem at `rootfs`: Debian's static busybox at `/bin/busybox`,
/// its applets as symlinks, `/etc/passwd` and `/etc/group` with root and `app` (1000:1000),
/// `/tmp` and `/home/app`. Returns false (after printing why) when busybox is missing.
pub fn busybox_rootfs(rootfs: &Path) -> bool {
    if !have_tool("busybox") {
        return false;
    }
    let bin = rootfs.join("bin");
    for d in ["bin", "etc", "tmp", "home/app"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let busybox = run(Command::new("sh").args(["-c", "command -v busybox"]))
        .success()
        .stdout;
    let busybox = busybox.trim();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    let list = run(Command::new(busybox).arg("--list")).success().stdout;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    write_tree(
        rootfs,
        &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nweb:x:1001:1002:web:/home/web:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\napp:x:1000:\nwww:x:1002:\n"),
        ],
    );
    true
}

/// Builds a busybox base image FROM scratch with rbuild (like testdata/examples/quickstart.sh)
/// into `store` and tags it `tag` there. Work files go under `dir`. Returns false when busybox
/// is missing and tools are optional.
pub fn busybox_base(dir: &Path, store: &Path, tag: &str) -> bool {
    busybox_base_with(dir, store, tag, &[])
}

/// [`busybox_base`] with more `rbuild build` arguments (e.g. `--push`, to put the base image in
/// a test registry when `tag` names one).
pub fn busybox_base_with(dir: &Path, store: &Path, tag: &str, extra: &[&str]) -> bool {
    let ctx = dir.join("busybox-base");
    if !busybox_rootfs(&ctx.join("rootfs")) {
        return false;
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    run(rbuild(store)
        .arg("build")
        .arg(&ctx)
        .args(["--progress", "quiet", "--tag", tag])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "0"))
    .success();
    true
}

/// Copies `testdata/examples/<name>` to `dest` (which must not exist).
pub fn copy_example(name: &str, dest: &Path) {
    let src = crate::repo_root().join("testdata/examples").join(name);
    run(Command::new("cp").arg("-R").arg(&src).arg(dest)).success();
}

/// The base image name testdata/examples/hello-web builds on by default.
pub const HELLO_WEB_BASE: &str = "localhost/rbuild-examples/busybox:stable";
