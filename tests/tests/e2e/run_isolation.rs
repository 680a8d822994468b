//! `--isolation`: RUN as root without `CAP_SYS_ADMIN` (dropped with `setpriv` from the bounding
//! and inheritable sets, as in a container with Docker's default capabilities). The `chroot`
//! build of a Dockerfile with RUN, `COPY --chown`, USER, a secret, a tmpfs, whiteouts and an
//! opaque directory, a cache mount (kept from one step to the next), binds of the context and
//! of a stage, and `COPY --from` a stage of several layers gives the image digest of the
//! `namespaces` build; `auto` picks `chroot`
//! there and says why (progress and `--metadata-file`); `namespaces` is refused with what
//! grants it, before any output is written; a build without RUN needs no privilege; mounts
//! the chroot mode cannot provide are refused, naming the mount and the mode.

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build_cmd, busybox_base, metadata, write_tree};
use rbuild_tests::{have_tool, run, scratch, Run};

const BASE: &str = "localhost/rbuild-isolation/busybox:1";

const DOCKERFILE: &str = "FROM localhost/rbuild-isolation/busybox:1 AS builder\n\
    RUN mkdir /out && echo built > /out/artifact\n\
    RUN echo more > /out/more && rm /out/artifact && echo rebuilt > /out/artifact\n\
    FROM localhost/rbuild-isolation/busybox:1\n\
    COPY --chown=1000:1000 f.txt /home/app/f.txt\n\
    COPY --from=builder /out /opt/out\n\
    RUN mkdir -p /data/keep /data/gone /data/opq/sub && echo k > /data/keep/f \
        && echo g > /data/gone/f && echo o > /data/opq/old && echo s > /data/opq/sub/s \
        && echo x > /data/file && ln -s keep /data/link && echo p > /data/h1 && ln /data/h1 /data/h2 && mkdir /data/appdir && chown app:app /data/appdir\n\
    RUN rm -r /data/gone /data/file && echo changed >> /data/keep/f && chmod 700 /data/keep \
        && rm -r /data/opq && mkdir /data/opq && echo n > /data/opq/new \
        && test -c /dev/null && echo quiet > /dev/null\n\
    RUN --mount=type=secret,id=tok --mount=type=tmpfs,target=/scratchpad \
        test \"$(cat /run/secrets/tok)\" = s3cret && touch /scratchpad/x && echo used > /data/secret-used\n\
    RUN --mount=type=cache,target=/var/cache/app --mount=type=bind,target=/ctx \
        echo hit >> /var/cache/app/log && cat /ctx/f.txt > /data/from-bind\n\
    RUN --mount=type=cache,target=/var/cache/app cp /var/cache/app/log /data/cache-seen\n\
    RUN --mount=type=bind,from=builder,source=/out,target=/b cat /b/artifact /b/more > /data/from-stage\n\
    USER app\n\
    RUN echo \"$(id -u):$(id -g) $HOME\" > /data/appdir/who && cat /home/app/f.txt >> /data/appdir/who\n";

/// `inner` run by `setpriv` with CAP_SYS_ADMIN dropped from the bounding and inheritable sets
/// (root then gets every capability but that one, as in a container with the default ones).
pub fn without_sys_admin(inner: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--inh-caps=-sys_admin", "--bounding-set=-sys_admin"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// `rbuild build` as root with CAP_SYS_ADMIN dropped (or with it, when `drop` is false).
fn build_as(store: &Path, ctx: &Path, drop: bool, args: &[&str]) -> Run {
    let mut inner = build_cmd(store, ctx);
    inner.args(args);
    if drop {
        run(&mut without_sys_admin(&inner))
    } else {
        run(&mut inner)
    }
}

/// A store with the busybox base (built with CAP_SYS_ADMIN dropped: no RUN, no privilege) and
/// the context; `None` when the tools are missing.
fn setup(
    dir: &Path,
    name: &str,
    dockerfile: &str,
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 || !have_tool("setpriv") {
        eprintln!("SKIPPED: needs root and setpriv");
        return None;
    }
    let store = dir.join(format!("store-{name}"));
    if !busybox_base(&dir.join(name), &store, BASE) {
        return None;
    }
    let ctx = dir.join(format!("ctx-{name}"));
    write_tree(
        &ctx,
        &[("Dockerfile", dockerfile), ("f.txt", "from the context\n")],
    );
    std::fs::write(dir.join("tok"), "s3cret").unwrap();
    Some((store, ctx))
}

fn digest_and_mode(md: &Path) -> (String, String) {
    let m = metadata(md);
    (
        m["containerimage.digest"].as_str().unwrap().to_string(),
        m["rbuild.isolation"].as_str().unwrap().to_string(),
    )
}

#[test]
fn chroot_without_cap_sys_admin_builds_the_image_the_namespaces_mode_builds() {
    let dir = scratch();
    let d = dir.path();
    let Some((ns_store, ctx)) = setup(d, "ns", DOCKERFILE) else {
        return;
    };
    let Some((ch_store, _)) = setup(d, "ch", DOCKERFILE) else {
        return;
    };
    let secret = format!("id=tok,src={}", d.join("tok").display());
    let ns_md = d.join("ns.json");
    let ns = build_as(
        &ns_store,
        &ctx,
        false,
        &[
            "--isolation",
            "namespaces",
            "--secret",
            &secret,
            "--metadata-file",
            ns_md.to_str().unwrap(),
        ],
    )
    .success();
    assert!(
        ns.stderr
            .contains("--isolation namespaces (chosen with --isolation)"),
        "{}",
        ns.stderr
    );
    let ch_md = d.join("ch.json");
    let ch = build_as(
        &ch_store,
        &ctx,
        true,
        &[
            "--isolation",
            "chroot",
            "--secret",
            &secret,
            "--metadata-file",
            ch_md.to_str().unwrap(),
        ],
    )
    .success();
    let (ns_digest, ns_mode) = digest_and_mode(&ns_md);
    let (ch_digest, ch_mode) = digest_and_mode(&ch_md);
    assert_eq!(
        (ns_mode.as_str(), ch_mode.as_str()),
        ("namespaces", "chroot")
    );
    assert_eq!(
        ns_digest, ch_digest,
        "the chroot build differs from the namespaces build\n--- chroot stderr\n{}",
        ch.stderr
    );
    // The secret's value never reaches the output.
    assert!(!ch.stderr.contains("s3cret"));

    // auto, without CAP_SYS_ADMIN, in a fresh store: chroot, said once, and why.
    let auto_store = d.join("store-auto");
    assert!(busybox_base(&d.join("auto"), &auto_store, BASE));
    let auto_md = d.join("auto.json");
    let auto = build_as(
        &auto_store,
        &ctx,
        true,
        &[
            "--secret",
            &secret,
            "--metadata-file",
            auto_md.to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(
        auto.stderr
            .matches("RUN steps run with --isolation chroot")
            .count(),
        1,
        "{}",
        auto.stderr
    );
    let m = metadata(&auto_md);
    assert_eq!(m["rbuild.isolation"], "chroot");
    assert!(m["rbuild.isolation.reason"]
        .as_str()
        .unwrap()
        .starts_with("auto: namespaces are not allowed here"));
    assert_eq!(m["containerimage.digest"].as_str().unwrap(), ns_digest);
}

#[test]
fn namespaces_without_cap_sys_admin_is_refused_with_what_grants_it() {
    let dir = scratch();
    let d = dir.path();
    let Some((store, ctx)) = setup(
        d,
        "refused",
        "FROM localhost/rbuild-isolation/busybox:1\nRUN true\n",
    ) else {
        return;
    };
    let md = d.join("md.json");
    let r = build_as(
        &store,
        &ctx,
        true,
        &[
            "--isolation",
            "namespaces",
            "--metadata-file",
            md.to_str().unwrap(),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--isolation namespaces cannot run here"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("CAP_SYS_ADMIN") && r.stderr.contains("--privileged"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--isolation chroot"), "{}", r.stderr);
    assert!(!md.exists(), "nothing is written for a refused build");

    // Rootless is for a non-root user (run_rootless): as root it says what to use.
    let r = build_as(&store, &ctx, false, &["--isolation", "rootless"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("--isolation rootless is for a non-root user, and rbuild runs as root here")
            && r.stderr.contains("--isolation namespaces"),
        "{}",
        r.stderr
    );

    // A build without RUN needs no sandbox, whatever the mode — `COPY --from` a stage of
    // several layers included (copied where it cannot be mounted).
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/rbuild-isolation/busybox:1 AS b\nCOPY f.txt /x/f\nCOPY f.txt /x/g\n\
             FROM localhost/rbuild-isolation/busybox:1\nCOPY --from=b /x /x\n",
        )],
    );
    let r = build_as(
        &store,
        &ctx,
        true,
        &[
            "--isolation",
            "namespaces",
            "--metadata-file",
            md.to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(metadata(&md)["rbuild.isolation"], "none", "{}", r.stderr);
}

#[test]
fn chroot_refuses_the_mounts_it_cannot_provide_naming_them() {
    let dir = scratch();
    let d = dir.path();
    let Some((store, ctx)) = setup(
        d,
        "mounts",
        "FROM localhost/rbuild-isolation/busybox:1\nRUN --mount=type=ssh true\n",
    ) else {
        return;
    };
    let r = build_as(&store, &ctx, true, &["--isolation", "chroot"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("RUN --mount=type=ssh cannot be provided with --isolation chroot"),
        "{}",
        r.stderr
    );
}

/// A step that fails for want of `/proc` (the JVM, procps) says so and names the mode that has
/// it; a failure that does not mention `/proc` gets no such hint.
#[test]
fn chroot_names_in_place_mode_when_a_failed_step_needed_proc() {
    let dir = scratch();
    let d = dir.path();
    let Some((store, ctx)) = setup(
        d,
        "proc",
        "FROM localhost/rbuild-isolation/busybox:1\nRUN cat /proc/self/status\n",
    ) else {
        return;
    };
    let r = build_as(&store, &ctx, true, &["--isolation", "chroot"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--isolation in-place runs steps with the container's /proc"),
        "{}",
        r.stderr
    );
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/rbuild-isolation/busybox:1\nRUN false\n",
        )],
    );
    let r = build_as(&store, &ctx, true, &["--isolation", "chroot"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("in-place"), "{}", r.stderr);
}

#[test]
fn a_store_shared_with_a_privileged_build_keeps_opaque_directories_opaque() {
    let dir = scratch();
    let d = dir.path();
    let first = "FROM localhost/rbuild-isolation/busybox:1\n\
        RUN mkdir -p /o/sub && echo o > /o/old\n\
        RUN rm -r /o && mkdir /o && echo n > /o/new\n\
        RUN true\n";
    let Some((store, ctx)) = setup(d, "shared", first) else {
        return;
    };
    // Without CAP_SYS_ADMIN the opaque directory's snapshot cannot get trusted.overlay.opaque.
    build_as(&store, &ctx, true, &["--isolation", "chroot"]).success();
    // A privileged build on top, in the same store, mounts that snapshot with overlayfs.
    // Its RUN adds a file to that directory: overlay copies the directory up with the
    // snapshot's `user.overlay.opaque` as plain data, and the layer must not make it opaque
    // (which would hide `new`, below it, from every later step).
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("{first}RUN echo m > /o/more\nRUN ls -A /o > /listing\n"),
        )],
    );
    let fs = d.join("fs");
    let r = build_as(
        &store,
        &ctx,
        false,
        &[
            "--isolation",
            "namespaces",
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(fs.join("listing")).unwrap(),
        "more\nnew\n",
        "{}",
        r.stderr
    );
}

/// `inner` as PID 1 of a new PID namespace, as a container's entrypoint is (`docker run
/// IMAGE`, a Kubernetes pod whose command is rbuild).
fn as_pid1(inner: &Command) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--kill-child"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

#[test]
fn rbuild_as_pid_1_of_its_container_runs_run_steps_in_both_modes() {
    // The sandbox helper used to take a parent of PID 1 for "rbuild died, I was reparented"
    // and give up without a word: every RUN failed in `docker run rbuild-image`.
    let dir = scratch();
    let d = dir.path();
    let df = "FROM localhost/rbuild-isolation/busybox:1\nRUN echo $$ > /pid && echo ran > /ran\n";
    let Some((store, ctx)) = setup(d, "pid1", df) else {
        return;
    };
    for (mode, drop) in [("namespaces", false), ("chroot", true)] {
        let mut inner = build_cmd(&store, &ctx);
        inner.args(["--isolation", mode, "--no-cache"]);
        let inner = if drop {
            without_sys_admin(&inner)
        } else {
            inner
        };
        let fs = d.join(format!("fs-{mode}"));
        let r =
            run(as_pid1(&inner).args(["--output", &format!("type=local,dest={}", fs.display())]))
                .success();
        assert_eq!(
            std::fs::read_to_string(fs.join("ran")).unwrap(),
            "ran\n",
            "{mode}: {}",
            r.stderr
        );
    }
}
