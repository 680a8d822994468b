//! RUN in the sandbox, on a busybox base image built in the test: the layer a RUN writes
//! (created, modified and deleted files, an opaque directory), read back with `umoci unpack`
//! and run with `crun`; the process's environment, user, working directory and command forms;
//! and a failing command.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build::{build, busybox_base, write_tree};
use rbuild_tests::{have_tool, oci, run, scratch};

pub const BASE: &str = "localhost/rbuild-run/busybox:1";

/// A store with the busybox base image plus a context holding `dockerfile`.
pub fn setup(dir: &Path, dockerfile: &str) -> Option<(PathBuf, PathBuf)> {
    let store = dir.join("store");
    if !busybox_base(dir, &store, BASE) {
        return None;
    }
    let ctx = dir.join("ctx");
    write_tree(&ctx, &[("Dockerfile", dockerfile)]);
    Some((store, ctx))
}

/// The lines of `find` run in the built image by crun after `umoci unpack`.
fn tree_in_crun(dir: &Path, out: &Path, args: &[&str]) -> Option<Vec<String>> {
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:final", out.display()))
        .arg(&bundle))
    .success();
    let r = rbuild_tests::crun::run_bundle(&bundle, args)?.success();
    let mut lines: Vec<String> = r.stdout.lines().map(str::to_string).collect();
    lines.sort();
    Some(lines)
}

#[test]
fn run_changes_lower_layers_and_the_image_unpacks_to_exactly_that_tree() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE} AS lower\n\
         RUN mkdir -p /data/keep /data/gone /data/opq/sub && echo k > /data/keep/f \
             && echo g > /data/gone/f && echo o > /data/opq/old && echo s > /data/opq/sub/s \
             && echo x > /data/file\n\
         FROM lower AS final\n\
         RUN rm -r /data/gone /data/file && echo changed > /data/keep/f \
             && rm -r /data/opq && mkdir /data/opq && echo n > /data/opq/new \
             && mkdir /data/made && touch /data/made/empty\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    if !have_tool("umoci") {
        return;
    }
    let out = dir.path().join("out");
    build(
        &store,
        &ctx,
        &[
            "--target",
            "final",
            "--tag",
            "localhost/run-tree:final",
            "--output",
            &format!("type=oci,dest={},tar=false", out.display()),
        ],
    )
    .success();
    // The last layer holds only the changes, with OCI whiteouts (checked in the tar itself).
    let m = oci::manifest(&out, "final");
    let layers = m["layers"].as_array().unwrap();
    let last = layers.last().unwrap()["digest"].as_str().unwrap();
    let listing = run(Command::new("tar")
        .arg("tzf")
        .arg(oci::blob_path(&out, last)))
    .success()
    .stdout;
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "data/",
            "data/.wh.file",
            "data/.wh.gone",
            "data/keep/",
            "data/keep/f",
            "data/made/",
            "data/made/empty",
            "data/opq/",
            "data/opq/.wh..wh..opq",
            "data/opq/new",
        ],
        "nothing injected (/proc, /dev, /etc/hosts, ...) and no untouched copied-up directory"
    );
    let Some(tree) = tree_in_crun(
        dir.path(),
        &out,
        &["/bin/sh", "-c", "find /data | while read p; do if [ -f \"$p\" ]; then echo \"$p=$(cat \"$p\")\"; else echo \"$p\"; fi; done"],
    ) else {
        return;
    };
    assert_eq!(
        tree,
        [
            "/data",
            "/data/keep",
            "/data/keep/f=changed",
            "/data/made",
            "/data/made/empty=",
            "/data/opq",
            "/data/opq/new=n",
        ]
    );
}

#[test]
fn the_process_gets_env_args_user_workdir_and_command_forms_as_buildkit_gives_them() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE} AS final\n\
         ARG GREETING=hello\n\
         ENV FROM_ENV=env-value\n\
         WORKDIR /work\n\
         RUN echo \"$GREETING $FROM_ENV $(pwd) $(hostname)\" > /work/shell.txt\n\
         RUN [\"/bin/sh\", \"-c\", \"echo exec-form $0 > /work/exec.txt\"]\n\
         RUN <<EOF\n\
         #!/bin/busybox sh\n\
         echo script > /work/heredoc.txt\n\
         EOF\n\
         RUN chown app /work\n\
         USER app\n\
         RUN id > /work/id.txt && echo $HOME > /work/home.txt\n\
         SHELL [\"/bin/busybox\", \"sh\", \"-c\"]\n\
         RUN echo shell-instruction > /work/shell2.txt\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(
        read("work/shell.txt"),
        "hello env-value /work buildkitsandbox\n"
    );
    assert_eq!(read("work/exec.txt"), "exec-form /bin/sh\n");
    assert_eq!(read("work/heredoc.txt"), "script\n");
    assert_eq!(
        read("work/id.txt"),
        "uid=1000(app) gid=1000(app) groups=1000(app)\n"
    );
    assert_eq!(read("work/home.txt"), "/home/app\n");
    assert_eq!(read("work/shell2.txt"), "shell-instruction\n");
    // Nothing the sandbox injects lands in the image (but the mount points of /proc, /sys and
    // /dev, as with BuildKit: see below).
    for injected in ["run", "etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert!(
            std::fs::symlink_metadata(fs.join(injected)).is_err(),
            "{injected} leaked into the image\n{}",
            r.stderr
        );
    }
}

/// The tar listing (`tar tvzf`, numeric owners; type and mode, owner, path) of the layer
/// `from_end` places below the last one of image `name` in `out`.
fn layer_listing(out: &Path, name: &str, from_end: usize) -> Vec<String> {
    let m = oci::manifest(out, name);
    let layers = m["layers"].as_array().unwrap();
    let last = layers[layers.len() - 1 - from_end]["digest"]
        .as_str()
        .unwrap();
    let listing = run(Command::new("tar")
        .args(["tvzf"])
        .arg(oci::blob_path(out, last))
        .arg("--numeric-owner"))
    .success()
    .stdout;
    listing
        .lines()
        .map(|l| {
            // `drwxr-xr-x 0/0 0 2024-01-01 00:00 dev/` without size and time.
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", f[0], f[1], f[f.len() - 1])
        })
        .collect()
}

#[test]
fn a_run_on_a_root_without_dev_proc_sys_leaves_them_as_root_owned_0755_dirs_as_buildkit_does() {
    let dir = scratch();
    // The test base has /etc but no /dev, /proc, /sys; `fresh` has not even /etc.
    let df = format!(
        "FROM {BASE} AS final
         RUN echo hi > /x
         RUN echo again > /y
         FROM scratch AS fresh
         COPY --from=final /bin /bin
         RUN --mount=type=tmpfs,target=/t1/t2 --mount=type=secret,id=s,target=/s1/s2              --mount=type=bind,from=final,source=/bin,target=/b1/b2 /bin/echo hi > /x
"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let out = dir.path().join("out");
    for target in ["final", "fresh"] {
        build(
            &store,
            &ctx,
            &[
                "--target",
                target,
                "--tag",
                &format!("localhost/run-stubs:{target}"),
                "--secret",
                &format!("id=s,src={}", secret.display()),
                "--output",
                &format!("type=oci,dest={},tar=false", out.join(target).display()),
            ],
        )
        .success();
    }
    let dir_0755 = |p: &str| format!("drwxr-xr-x 0/0 {p}/");
    // The first RUN on the base leaves the three mount points beside its own file...
    assert_eq!(
        layer_listing(&out.join("final"), "final", 1),
        [
            dir_0755("dev"),
            dir_0755("proc"),
            dir_0755("sys"),
            "-rw-r--r-- 0/0 x".into()
        ]
    );
    // ...and the next one, whose root has them, nothing more.
    assert_eq!(
        layer_listing(&out.join("final"), "final", 0),
        ["-rw-r--r-- 0/0 y"]
    );
    // The stubs of /etc/hosts, /etc/resolv.conf and of the step's mounts are removed with the
    // parents they needed (current BuildKit's recursive clean-up): no /etc, /t1, /s1, /b1.
    assert_eq!(
        layer_listing(&out.join("fresh"), "fresh", 0),
        [
            dir_0755("dev"),
            dir_0755("proc"),
            dir_0755("sys"),
            "-rw-r--r-- 0/0 x".into()
        ]
    );
}

#[test]
fn writes_to_run_and_etc_hostname_stay_in_the_image_as_with_buildkit() {
    let dir = scratch();
    // BuildKit mounts no tmpfs on /run and binds no /etc/hostname: the image has none, and
    // what the command writes in either place is part of the layer.
    let df = format!(
        "FROM {BASE}
         RUN (cat /etc/hostname 2>/dev/null || echo none) > /hostname-seen              && mkdir -p /run/x && echo hi > /run/x/f
         RUN echo h > /etc/hostname && ls /run/x > /run-seen
"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("hostname-seen"), "none\n");
    assert_eq!(read("run/x/f"), "hi\n");
    assert_eq!(read("run-seen"), "f\n");
    assert_eq!(read("etc/hostname"), "h\n");
}

#[test]
fn a_failing_command_fails_the_build_with_its_exit_code_and_output_tail_and_caches_nothing() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE}\nRUN i=0; while [ $i -lt 30 ]; do echo line-$i; i=$((i+1)); done; echo broken >&2; exit 3\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let r = build(&store, &ctx, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(r.stderr.contains("exited with code 3"), "{}", r.stderr);
    let error = r.stderr.split("error:").last().unwrap();
    assert!(
        error.contains("broken"),
        "the tail is in the error: {error}"
    );
    assert!(error.contains("line-29"), "{error}");
    // stdout and stderr are separate pipes, so where `broken` falls among the others may vary;
    // the error shows exactly the last 20 lines either way.
    let shown = error.lines().filter(|l| l.starts_with("  ")).count();
    assert_eq!(shown, 20, "only the last 20 lines: {error}");
    assert!(!error.contains("line-9\n"), "{error}");
    // A retry runs the command again (no cache record), and the store holds no scratch dirs.
    let again = build(&store, &ctx, &[]);
    assert!(again.stderr.contains("line-0"), "{}", again.stderr);
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn a_missing_shell_is_a_clear_error_not_a_host_command() {
    let dir = scratch();
    let Some((store, ctx)) = setup(dir.path(), "FROM scratch\nRUN echo hi\n") else {
        return;
    };
    let r = build(&store, &ctx, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("/bin/sh"), "{}", r.stderr);
    assert!(!r.stderr.contains("\nhi\n"), "{}", r.stderr);
}

#[test]
fn run_is_cached_by_command_env_args_and_network_and_an_unchanged_run_is_an_empty_layer() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE} AS final\nARG V=1\nRUN echo $V > /v\nRUN true\nRUN --network=none true\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let out = dir.path().join("out");
    let args = |v: &str| {
        vec![
            "--build-arg".to_string(),
            format!("V={v}"),
            "--tag".into(),
            "localhost/run-cache:final".into(),
            "--output".into(),
            format!("type=oci,dest={},tar=false", out.display()),
        ]
    };
    let go = |v: &str| {
        let a = args(v);
        build(
            &store,
            &ctx,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .success()
    };
    let first = go("1");
    assert!(!first.stderr.contains("CACHED\n#"), "{}", first.stderr);
    let again = go("1");
    let steps = rbuild_tests::progress::op_steps(&again.stderr);
    assert!(steps.iter().all(|s| s.cached), "{}", again.stderr);
    let changed = go("2");
    let steps = rbuild_tests::progress::op_steps(&changed.stderr);
    assert!(
        steps
            .iter()
            .filter(|s| s.name.contains("RUN"))
            .all(|s| !s.cached),
        "{}",
        changed.stderr
    );
    // `RUN true` changes nothing: no layer, history marks it empty (BuildKit does the same).
    let c = oci::read_config(&out, "final");
    let history = c["history"].as_array().unwrap();
    let run_true: Vec<_> = history
        .iter()
        .filter(|h| h["created_by"].as_str().unwrap_or("").contains("-c true"))
        .collect();
    assert_eq!(run_true.len(), 2, "{c}");
    assert!(run_true.iter().all(|h| h["empty_layer"] == true), "{c}");
    let m = oci::manifest(&out, "final");
    assert_eq!(m["layers"].as_array().unwrap().len(), 2, "base + RUN echo");
}

#[test]
fn without_cap_sys_admin_rbuild_names_the_refused_operation_and_runs_nothing() {
    let dir = scratch();
    let Some((store, ctx)) = setup(dir.path(), &format!("FROM {BASE}\nRUN echo ran > /proof\n"))
    else {
        return;
    };
    if !have_tool("setpriv") {
        return;
    }
    // Like an unprivileged container: the capability is gone from the bounding set.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-sys_admin"])
        .arg(rbuild_tests::rbuild_bin())
        .arg("build")
        .arg(&ctx)
        // `auto` would take the chroot mode here (see run_isolation.rs).
        .args(["--progress", "plain", "--isolation", "namespaces"])
        .env("RBUILD_STORE", &store);
    let r = run(&mut cmd);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("unshare("), "{}", r.stderr);
    assert!(r.stderr.contains("was refused"), "{}", r.stderr);
    assert!(r.stderr.contains("CAP_SYS_ADMIN"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was run"), "{}", r.stderr);
    assert!(!Path::new("/proof").exists());
}

#[test]
fn a_heredoc_scripts_content_is_in_the_key() {
    let dir = scratch();
    let df = |word: &str| {
        format!(
            "FROM {BASE}\nRUN <<EOF\n#!/bin/sh\necho {word} > /word\necho \"$0\" > /argv0\nEOF\n"
        )
    };
    let Some((store, ctx)) = setup(dir.path(), &df("first")) else {
        return;
    };
    for word in ["first", "second"] {
        write_tree(&ctx, &[("Dockerfile", &df(word))]);
        let fs = dir.path().join(word);
        build(
            &store,
            &ctx,
            &["--output", &format!("type=local,dest={}", fs.display())],
        )
        .success();
        assert_eq!(
            std::fs::read_to_string(fs.join("word")).unwrap(),
            format!("{word}\n")
        );
        assert_eq!(
            std::fs::read_to_string(fs.join("argv0")).unwrap(),
            "/dev/pipes/EOF\n"
        );
        // The script's mount point is on the /dev tmpfs; only the empty mount point of /dev
        // itself stays (as with BuildKit, on a base without /dev).
        assert_eq!(std::fs::read_dir(fs.join("dev")).unwrap().count(), 0);
    }
}

#[test]
fn the_command_is_pid_1_with_only_fds_0_1_2_and_workdir_under_proc_self_fd_is_refused() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE} AS final\n\
         RUN for fd in 3 4 5 6 7 8 9; do if [ -e /proc/$$/fd/$fd ]; then echo $fd; fi; done > /leaked; echo $$ > /pid\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    // The shell's fds 3-9 (ash keeps the stdout it saves for `> /leaked` at fd 10 and up). The
    // helper's status pipe would be fd 3.
    assert_eq!(std::fs::read_to_string(fs.join("leaked")).unwrap(), "");
    assert_eq!(std::fs::read_to_string(fs.join("pid")).unwrap(), "1\n");

    // runc CVE-2024-21626: a working directory under /proc/self/fd could reach a leaked fd.
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM {BASE}\nWORKDIR /proc/self/fd/7\nRUN true\n"),
        )],
    );
    let r = build(&store, &ctx, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("CVE-2024-21626"), "{}", r.stderr);
}

#[test]
fn undeclared_proxy_build_args_reach_run_in_both_spellings_but_not_its_key() {
    let dir = scratch();
    let df = format!("FROM {BASE}\nRUN echo \"$HTTP_PROXY|$http_proxy|$OTHER\" > /proxy\n");
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let go = |proxy: &str, out: &str| {
        let fs = dir.path().join(out);
        let r = build(
            &store,
            &ctx,
            &[
                "--build-arg",
                &format!("HTTP_PROXY={proxy}"),
                "--output",
                &format!("type=local,dest={}", fs.display()),
            ],
        )
        .success();
        (r, std::fs::read_to_string(fs.join("proxy")).unwrap())
    };
    let (_, first) = go("http://proxy-a:3128", "a");
    assert_eq!(
        first, "http://proxy-a:3128|http://proxy-a:3128|\n",
        "BuildKit passes proxy args undeclared, as HTTP_PROXY and http_proxy"
    );
    // Another proxy: same key (BuildKit keeps proxies out of the cache key), so the cached
    // layer, made with the first proxy, is reused.
    let (r, second) = go("http://proxy-b:3128", "b");
    let steps = rbuild_tests::progress::op_steps(&r.stderr);
    assert!(steps.iter().all(|s| s.cached), "{}", r.stderr);
    assert_eq!(second, first);
}

#[test]
fn a_run_over_more_layers_than_fit_in_one_mount_option_page_sees_them_all() {
    // 1 + 80 layers: their snapshot names alone overflow one overlay mount's option page.
    const LAYERS: usize = 80;
    let dir = scratch();
    let mut df = format!("FROM {BASE} AS final\n");
    for i in 0..LAYERS {
        df.push_str(&format!("COPY f{i} /layers/f{i}\n"));
    }
    df.push_str(
        "RUN ls /layers | wc -l > /count && cat /layers/f0 /layers/f79 > /ends && rm /layers/f0\n",
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    for i in 0..LAYERS {
        write_tree(&ctx, &[(&format!("f{i}"), &format!("{i}\n"))]);
    }
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("count").trim(), LAYERS.to_string());
    assert_eq!(read("ends"), "0\n79\n");
    assert!(
        !fs.join("layers/f0").exists(),
        "the whiteout hides the bottom layer's file"
    );
    assert!(fs.join("layers/f1").exists());
}
