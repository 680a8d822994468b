//! `--isolation rootless`: rbuild run by a non-root user (made by tests/run.sh, named in
//! `RBUILD_TEST_ROOTLESS_USER`, with ranges in /etc/subuid and /etc/subgid) builds, in the
//! default `auto` mode, a Dockerfile with RUN, `COPY --chown`, USER, a cache mount, a secret,
//! a whiteout and an opaque directory on a base whose files belong to other users, pushes it to
//! the test registry, and gets the image digest of root's `namespaces` build (and of its
//! `chroot` build without `CAP_SYS_ADMIN`); the steps saw the image's owners, and
//! `RUN --network=none` gets a network namespace of its own; `auto` says once
//! that it chose `rootless`, and why; with its store where overlayfs is refused (on an overlay
//! mount), each step gets a copy of the root, and the same image. A user without ranges (`RBUILD_TEST_SINGLE_ID_USER`)
//! gets a single-id map, a note of what it limits, and errors naming the fix where a step or
//! a layer needs another id. Ctrl-C or a killed rbuild leaves nothing behind; `rbuild login`
//! as the user and a rootless push use the user's own credentials. Tests skip, saying why,
//! when the users are not there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build::{build_cmd, busybox_base_with, metadata, write_tree};
use rbuild_tests::{have_tool, rbuild, run, test_registry, Run};

/// The test user named by `var`, when tests/run.sh made it (and this runs as root).
fn test_user(var: &str) -> Option<String> {
    let user = std::env::var(var).ok().filter(|u| !u.is_empty());
    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() } == 0;
    match user {
        Some(u) if root && have_tool("setpriv") => Some(u),
        _ => {
            eprintln!("SKIPPED: {var} is not set, or this does not run as root with setpriv (bash tests/run.sh makes the user)");
            None
        }
    }
}

fn id_of(user: &str, flag: &str) -> u32 {
    run(Command::new("id").args([flag, user]))
        .success()
        .stdout
        .trim()
        .parse()
        .unwrap()
}

/// A directory the user owns, in /tmp (the suite's scratch directory is root's, 0700).
struct UserDir {
    dir: tempfile::TempDir,
}

impl UserDir {
    fn new(user: &str) -> UserDir {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-rootless-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["home", "ctx"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let (uid, gid) = (id_of(user, "-u"), id_of(user, "-g"));
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(dir.path()))
        .success();
        UserDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `files` under the directory as the user owns them (only their top directories
    /// are chowned: a store of the user's holds files of its subordinate ids).
    fn write(&self, user: &str, files: &[(&str, &str)]) {
        write_tree(self.path(), files);
        for (rel, _) in files {
            let top = rel.split('/').next().unwrap_or(rel);
            self.give(user, top);
        }
    }

    /// Gives `rel` (with what is under it) to the user.
    fn give(&self, user: &str, rel: &str) {
        let (uid, gid) = (id_of(user, "-u"), id_of(user, "-g"));
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(self.path().join(rel)))
        .success();
    }
}

impl Drop for UserDir {
    fn drop(&mut self) {
        // Files of the user's subordinate ids are root's to remove here (the test runs as root).
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// `inner` run as `user` (its groups, no capabilities), with its HOME in `home` and none of
/// root's per-user directories.
fn as_user(user: &str, home: &Path, inner: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.arg("--reuid")
        .arg(user)
        .arg("--regid")
        .arg(id_of(user, "-g").to_string())
        .arg("--init-groups")
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(home);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    for k in [
        "XDG_RUNTIME_DIR",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "DOCKER_CONFIG",
        "REGISTRY_AUTH_FILE",
    ] {
        c.env_remove(k);
    }
    c.env("HOME", home).env("USER", user).env("LOGNAME", user);
    c
}

/// An overlay mount owned by `user` under `dir` (root's), unmounted when dropped.
struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    fn new(dir: &Path, user: &str) -> OverlayMount {
        let d = |n: &str| {
            let p = dir.join(n);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let (lower, upper, work) = (d("ovl-lower"), d("ovl-upper"), d("ovl-work"));
        // The user must reach it: the suite's scratch directory is root's.
        let target = tempfile::Builder::new()
            .prefix("rbuild-rootless-ovl-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&target))
        .success();
        run(Command::new("chown").arg(user).arg(&target)).success();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        OverlayMount { target }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
        let _ = std::fs::remove_dir(&self.target);
    }
}

/// Pushes a busybox image and, on it, a base whose files belong to other users (made by root
/// in `namespaces` mode), to the test registry; returns both references.
fn push_bases(work: &Path, registry: &str, name: &str) -> Option<(String, String)> {
    let busybox = format!("{registry}/rootless-{name}/busybox:1");
    let store = work.join("base-store");
    if !busybox_base_with(&work.join("busybox"), &store, &busybox, &["--push"]) {
        return None;
    }
    let base = format!("{registry}/rootless-{name}/base:1");
    let ctx = work.join("base-ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM {busybox}\n\
                 RUN mkdir -p /srv/web /srv/opq/sub && echo w > /srv/web/index && chmod 4755 /srv/web/index \
                 && chown -R 1001:1002 /srv/web && echo n > /srv/nobody && chown 65534:65534 /srv/nobody \
                 && echo old > /srv/opq/old && echo s > /srv/opq/sub/s && chown -R 1000:1000 /srv/opq /home/app\n"
            ),
        )],
    );
    run(build_cmd(&store, &ctx).args(["--isolation", "namespaces", "--push", "-t", &base]))
        .success();
    Some((busybox, base))
}

const SECRET: &str = "s3cret-rootless";

fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         COPY --chown=1000:1000 f.txt /home/app/f.txt\n\
         RUN echo \"$(stat -c %u:%g /srv/web /srv/web/index /srv/nobody /home/app/f.txt)\" > /owners \
             && rm /srv/nobody && rm -r /srv/opq && mkdir /srv/opq && echo new > /srv/opq/new \
             && chown 1001:1002 /srv/opq/new\n\
         RUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = {SECRET} && echo used > /secret-used\n\
         RUN --mount=type=cache,target=/var/cache/app,uid=1000,gid=1000 \
             echo hit > /var/cache/app/log && stat -c %u /var/cache/app > /cache-owner\n\
         RUN --mount=type=cache,target=/var/cache/app cp /var/cache/app/log /cache-seen\n\
         USER app\n\
         RUN echo \"$(id -u):$(id -g) $HOME\" > /home/app/who && cat /home/app/f.txt >> /home/app/who\n"
    )
}

fn digest_of(md: &Path) -> String {
    metadata(md)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn rootless_build_as_a_non_root_user_pushes_the_image_the_namespaces_build_makes() {
    let Some(user) = test_user("RBUILD_TEST_ROOTLESS_USER") else {
        return;
    };
    let Some(registry) = test_registry() else {
        eprintln!("SKIPPED: no test registry (run bash tests/run.sh)");
        return;
    };
    let root_work = rbuild_tests::scratch();
    let Some((_, base)) = push_bases(root_work.path(), &registry, "full") else {
        return;
    };
    let df = dockerfile(&base);
    let files = [("Dockerfile", df.as_str()), ("f.txt", "from the context\n")];

    // Root, namespaces, a store of its own.
    let ctx = root_work.path().join("ctx");
    write_tree(&ctx, &files);
    let tok = root_work.path().join("tok");
    std::fs::write(&tok, SECRET).unwrap();
    let ns_md = root_work.path().join("ns.json");
    let ns = run(build_cmd(&root_work.path().join("ns-store"), &ctx).args([
        "--isolation",
        "namespaces",
        "--secret",
        &format!("id=tok,src={}", tok.display()),
        "--metadata-file",
        ns_md.to_str().unwrap(),
        "--push",
        "-t",
        &format!("{registry}/rootless-full/app:namespaces"),
    ]))
    .success();

    // Root without CAP_SYS_ADMIN, chroot: the same image too.
    let ch_md = root_work.path().join("ch.json");
    let mut ch = build_cmd(&root_work.path().join("ch-store"), &ctx);
    ch.args([
        "--isolation",
        "chroot",
        "--secret",
        &format!("id=tok,src={}", tok.display()),
        "--metadata-file",
        ch_md.to_str().unwrap(),
    ]);
    let ch = run(&mut super::run_isolation::without_sys_admin(&ch));
    assert_eq!(ch.code, 0, "{}", ch.stderr);
    assert_eq!(digest_of(&ch_md), digest_of(&ns_md), "{}", ch.stderr);

    // The user, auto, a store, context, secret and metadata file of the user's.
    let home = UserDir::new(&user);
    home.write(
        &user,
        &[
            ("ctx/Dockerfile", df.as_str()),
            ("ctx/f.txt", "from the context\n"),
            ("tok", SECRET),
        ],
    );
    let h = home.path();
    let md = h.join("home/md.json");
    let mut inner = build_cmd(&h.join("home/store"), &h.join("ctx"));
    inner.args([
        "--secret",
        &format!("id=tok,src={}", h.join("tok").display()),
        "--metadata-file",
        md.to_str().unwrap(),
        "--push",
        "-t",
        &format!("{registry}/rootless-full/app:rootless"),
    ]);
    let rl = run(&mut as_user(&user, &h.join("home"), &inner));
    assert_eq!(rl.code, 0, "rootless build failed\n{}", rl.stderr);
    assert_eq!(
        rl.stderr
            .matches("note: RUN steps run with --isolation rootless (auto: rbuild runs as a non-root user; a user namespace mapping uids 0→")
            .count(),
        1,
        "{}",
        rl.stderr
    );
    let m = metadata(&md);
    assert_eq!(m["rbuild.isolation"], "rootless");
    assert!(
        m["rbuild.isolation.reason"]
            .as_str()
            .unwrap()
            .contains("overlayfs (userxattr)"),
        "{m}"
    );
    assert_eq!(
        digest_of(&md),
        digest_of(&ns_md),
        "the rootless build differs from the namespaces build\n--- namespaces\n{}\n--- rootless\n{}",
        ns.stderr,
        rl.stderr
    );
    assert!(!rl.stderr.contains(SECRET));
    // What the user's store holds is the user's (and its subordinate ids').
    let store_meta = std::fs::metadata(h.join("home/store/blobs")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&store_meta),
        id_of(&user, "-u")
    );

    // The same store again: every step from the cache, the same image.
    let again = run(&mut as_user(&user, &h.join("home"), &inner));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(digest_of(&md), digest_of(&ns_md));

    // The user's store used by root (namespaces) and then by the user again, every step run
    // again: each id mapping keeps its own snapshots (owners on disk differ), opaque
    // directories stay opaque both ways, and both give the same image.
    let shared_md = root_work.path().join("shared.json");
    let shared = run(build_cmd(&h.join("home/store"), &h.join("ctx")).args([
        "--isolation",
        "namespaces",
        "--no-cache",
        "--secret",
        &format!("id=tok,src={}", h.join("tok").display()),
        "--metadata-file",
        shared_md.to_str().unwrap(),
    ]));
    assert_eq!(shared.code, 0, "{}", shared.stderr);
    assert_eq!(
        digest_of(&shared_md),
        digest_of(&ns_md),
        "{}",
        shared.stderr
    );
    let mut no_cache = build_cmd(&h.join("home/store"), &h.join("ctx"));
    no_cache.args([
        "--no-cache",
        "--secret",
        &format!("id=tok,src={}", h.join("tok").display()),
        "--metadata-file",
        md.to_str().unwrap(),
    ]);
    let back = run(&mut as_user(&user, &h.join("home"), &no_cache));
    assert_eq!(back.code, 0, "{}", back.stderr);
    assert_eq!(digest_of(&md), digest_of(&ns_md), "{}", back.stderr);

    // What the steps saw, as the user's image has it, and `--network=none` (a network
    // namespace of its own, whose sysfs the step may mount).
    home.write(
        &user,
        &[(
            "ctx2/Dockerfile",
            &format!(
                "FROM {registry}/rootless-full/app:rootless\nUSER root\n\
                 RUN --network=none ls /sys/class/net > /netns\n"
            ),
        )],
    );
    let out = h.join("home/out");
    let mut look = build_cmd(&h.join("home/store"), &h.join("ctx2"));
    look.args(["--output", &format!("type=local,dest={}", out.display())]);
    let l = run(&mut as_user(&user, &h.join("home"), &look));
    assert_eq!(l.code, 0, "{}", l.stderr);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(read("netns"), "lo\n");
    assert_eq!(
        read("owners"),
        "1001:1002\n1001:1002\n65534:65534\n1000:1000\n"
    );
    assert_eq!(
        read("home/app/who"),
        "1000:1000 /home/app\nfrom the context\n"
    );
    assert_eq!(read("cache-owner"), "1000\n");
    assert_eq!(read("cache-seen"), "hit\n");
    assert_eq!(read("secret-used"), "used\n");

    // A store where overlayfs is refused in the user namespace (on an overlay mount, which
    // cannot be an upper directory): each step gets a copy of the root, same image.
    let ovl = OverlayMount::new(root_work.path(), &user);
    let copy_md = h.join("home/copy.json");
    let mut copy = build_cmd(&ovl.target.join("store"), &h.join("ctx"));
    copy.args([
        "--isolation",
        "rootless",
        "--secret",
        &format!("id=tok,src={}", h.join("tok").display()),
        "--metadata-file",
        copy_md.to_str().unwrap(),
    ]);
    let c = run(&mut as_user(&user, &h.join("home"), &copy));
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(
        metadata(&copy_md)["rbuild.isolation.reason"]
            .as_str()
            .unwrap()
            .contains("overlayfs is refused in it"),
        "{}",
        c.stderr
    );
    assert_eq!(digest_of(&copy_md), digest_of(&ns_md), "{}", c.stderr);
    drop(ovl);

    // The user's store commands run in the same user namespace (they see its snapshots and
    // may remove them).
    let mut prune = rbuild(&h.join("home/store"));
    prune.args(["prune", "--all"]);
    let p = run(&mut as_user(&user, &h.join("home"), &prune));
    assert_eq!(p.code, 0, "{}\n{}", p.stdout, p.stderr);
}

#[test]
fn a_user_without_subordinate_ids_gets_a_single_id_map_and_errors_that_name_the_fix() {
    let Some(user) = test_user("RBUILD_TEST_SINGLE_ID_USER") else {
        return;
    };
    let Some(registry) = test_registry() else {
        eprintln!("SKIPPED: no test registry (run bash tests/run.sh)");
        return;
    };
    let root_work = rbuild_tests::scratch();
    let Some((busybox, base)) = push_bases(root_work.path(), &registry, "single") else {
        return;
    };
    let home = UserDir::new(&user);
    let h = home.path();
    let build = |df: &str, isolation: &str| -> (Run, PathBuf) {
        home.write(&user, &[("ctx/Dockerfile", df), ("ctx/f.txt", "f\n")]);
        let md = h.join("home/md.json");
        let _ = std::fs::remove_file(&md);
        let mut inner = build_cmd(&h.join("home/store"), &h.join("ctx"));
        inner
            .args(["--isolation", isolation, "--metadata-file"])
            .arg(&md);
        (run(&mut as_user(&user, &h.join("home"), &inner)), md)
    };

    // Root of the image only: works, and says once what the single-id map limits.
    let (ok, md) = build(
        &format!("FROM {busybox}\nRUN echo hi > /hi && test \"$(id -u)\" = 0\n"),
        "rootless",
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(
        ok.stderr.matches("a single-id map").count(),
        1,
        "{}",
        ok.stderr
    );
    assert!(
        ok.stderr.contains("/etc/subuid") && ok.stderr.contains("newuidmap"),
        "{}",
        ok.stderr
    );
    assert_eq!(metadata(&md)["rbuild.isolation"], "rootless");

    // A step as another user: refused before it runs, naming the user, the id and the fix.
    let (refused, md) = build(&format!("FROM {busybox}\nUSER app\nRUN true\n"), "rootless");
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains(
            "RUN needs the uid of USER app (uid 1000), which rbuild's user namespace does not map"
        ),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("/etc/subuid"), "{}", refused.stderr);
    assert!(!md.exists(), "nothing is written for a refused build");

    // A base with files of other owners cannot be unpacked for a RUN: the file and the fix.
    let (refused, md) = build(&format!("FROM {base}\nRUN true\n"), "rootless");
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("does not exist in rbuild's user namespace"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("applying entry `home/app`: its owner 1000:1000")
            && refused.stderr.contains("/etc/subuid"),
        "{}",
        refused.stderr
    );
    assert!(!md.exists());

    // Modes that need root say what to use instead.
    let (refused, _) = build(&format!("FROM {busybox}\nRUN true\n"), "namespaces");
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("--isolation namespaces needs root")
            && refused.stderr.contains("--isolation rootless"),
        "{}",
        refused.stderr
    );
}

/// Ctrl-C (SIGINT to the process group: rbuild outside the user namespace and rbuild in it)
/// and a killed rbuild (SIGKILL to the outer one alone) both end the step's processes and
/// leave no scratch directory in the user's store.
#[test]
fn in_rootless_mode_ctrl_c_or_a_killed_rbuild_ends_the_step_and_leaves_no_scratch_dir() {
    use super::run_interrupt::{empty_dir, processes_with, start_step, wait_until};
    let Some(user) = test_user("RBUILD_TEST_ROOTLESS_USER") else {
        return;
    };
    for group in [true, false] {
        let home = UserDir::new(&user);
        let h = home.path();
        let store = h.join("home/store");
        // The base, built by root, then given to the user (its blobs and tags are bytes).
        if !rbuild_tests::build::busybox_base(
            &h.join("base"),
            &store,
            "localhost/rootless/busybox:1",
        ) {
            return;
        }
        home.give(&user, "home/store");
        let a = 300_000 + (std::process::id() % 20_000) * 4 + if group { 0 } else { 2 };
        home.write(
            &user,
            &[(
                "ctx/Dockerfile",
                &format!(
                    "FROM localhost/rootless/busybox:1\nRUN echo started; sleep {a} & sleep {}; echo never\n",
                    a + 1
                ),
            )],
        );
        let log = h.join("log");
        let cmd = as_user(&user, &h.join("home"), &build_cmd(&store, &h.join("ctx")));
        // The whole step is kept: its guard kills the group if the test ends early.
        let mut step = start_step(cmd, &log, a);
        let pid = step.pid;
        let target = if group {
            vec!["-INT".to_string(), "--".into(), format!("-{pid}")]
        } else {
            vec!["-KILL".to_string(), pid.to_string()]
        };
        run(Command::new("kill").args(&target)).success();
        assert!(!step.child.wait().unwrap().success());
        wait_until("every process of the step to die", || {
            processes_with(&format!("sleep {a}")).is_empty()
                && processes_with(&format!("sleep {}", a + 1)).is_empty()
        });
        wait_until("the scratch directory to go", || {
            empty_dir(&store.join("tmp"))
        });
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains("--isolation rootless"), "{log}");
        assert!(
            !log.lines()
                .any(|l| l.ends_with(" never") && !l.contains("RUN")),
            "the command did not go on: {log}"
        );
    }
}

/// Registry credentials are the user's: `rbuild login` as the user writes the user's Docker
/// config, and a rootless build (RUN in the user namespace) pushes with them to the TLS
/// registry with Basic auth, then pulls the image back in a fresh store.
#[test]
fn a_rootless_build_pushes_with_the_users_own_credentials() {
    let Some(user) = test_user("RBUILD_TEST_ROOTLESS_USER") else {
        return;
    };
    let Some(t) = super::registry_auth::tls_registry() else {
        return;
    };
    let home = UserDir::new(&user);
    let h = home.path();
    let ca = std::fs::read_to_string(&t.ca).unwrap();
    let name = format!("{}/e2e/rootless:v1", t.host);
    let busybox = run(Command::new("sh").args(["-c", "command -v busybox"]))
        .success()
        .stdout;
    home.write(
        &user,
        &[
            ("ca.crt", &ca),
            (
                "ctx/Dockerfile",
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo built > /out\"]\n",
            ),
            ("ctx2/Dockerfile", &format!("FROM {name}\nRUN [\"/bin/busybox\", \"cat\", \"/out\"]\n")),
        ],
    );
    std::fs::copy(busybox.trim(), h.join("ctx/busybox")).unwrap();
    home.give(&user, "ctx");
    let registry_ca = format!("{}={}", t.host, h.join("ca.crt").display());
    let home_dir = h.join("home");

    let mut login = rbuild(&home_dir.join("store"));
    login
        .args([
            "login",
            &t.host,
            "-u",
            &t.user,
            "--password-stdin",
            "--registry-ca",
        ])
        .arg(&registry_ca);
    let mut child = as_user(&user, &home_dir, &login)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{}\n", t.password).as_bytes(),
    )
    .unwrap();
    let out = Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config = home_dir.join(".docker/config.json");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&config).unwrap()),
        id_of(&user, "-u"),
        "the credentials are the user's"
    );

    let mut push = build_cmd(&home_dir.join("store"), &h.join("ctx"));
    push.args(["--registry-ca", &registry_ca, "--push", "-t", &name]);
    let p = run(&mut as_user(&user, &home_dir, &push));
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert!(p.stderr.contains("--isolation rootless"), "{}", p.stderr);
    assert!(!p.stderr.contains(&t.password));

    let mut pull = build_cmd(&home_dir.join("store2"), &h.join("ctx2"));
    pull.args(["--registry-ca", &registry_ca]);
    let back = run(&mut as_user(&user, &home_dir, &pull));
    assert_eq!(back.code, 0, "{}", back.stderr);
    assert!(back.stderr.contains("built"), "{}", back.stderr);
}

/// Runs argv in a user namespace (ids 0-65535 mapped to themselves) whose
/// `user.max_user_namespaces` is 0, so that nothing in it can create a user namespace — as on
/// a host with that sysctl at 0, without changing the machine's.
const NO_USER_NAMESPACES_PY: &str = r#"
import os, ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:
        sys.exit("unshare(CLONE_NEWUSER) failed")
    os.write(w, b'x'); os.read(r2, 1)
    with open('/proc/sys/user/max_user_namespaces', 'w') as f:
        f.write('0')
    os.execvp(sys.argv[1], sys.argv[1:])
os.read(r, 1)
for m in ('uid_map', 'gid_map'):
    with open(f'/proc/{pid}/{m}', 'w') as f:
        f.write('0 0 65536\n')
os.write(w2, b'g')
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st))
"#;

/// A non-root user where user namespaces cannot be made: `auto` builds without RUN, and a RUN
/// fails naming the sysctl that is at 0 and the other ways (root, /etc/subuid), writing no
/// metadata; `--isolation rootless` fails before it opens the store.
#[test]
fn without_user_namespaces_a_non_root_user_gets_the_setting_that_fixes_it() {
    let Some(user) = test_user("RBUILD_TEST_ROOTLESS_USER") else {
        return;
    };
    if !have_tool("python3") {
        return;
    }
    let home = UserDir::new(&user);
    let h = home.path();
    let busybox = run(Command::new("sh").args(["-c", "command -v busybox"]))
        .success()
        .stdout;
    home.write(
        &user,
        &[
            ("helper.py", NO_USER_NAMESPACES_PY),
            (
                "ctx/Dockerfile",
                "FROM scratch\nCOPY busybox /bin/busybox\n",
            ),
        ],
    );
    std::fs::copy(busybox.trim(), h.join("ctx/busybox")).unwrap();
    home.give(&user, "ctx");
    let md = h.join("home/md.json");
    let attempt = |store: &str, args: &[&str]| -> Run {
        let mut inner = build_cmd(&h.join("home").join(store), &h.join("ctx"));
        inner.args(args).arg("--metadata-file").arg(&md);
        let as_u = as_user(&user, &h.join("home"), &inner);
        let mut c = Command::new("python3");
        c.arg(h.join("helper.py"))
            .arg(as_u.get_program())
            .args(as_u.get_args())
            .current_dir(h.join("home"));
        for (k, v) in as_u.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        run(&mut c)
    };
    // No RUN: no sandbox needed.
    let ok = attempt("store", &[]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(metadata(&md)["rbuild.isolation"], "none");
    std::fs::remove_file(&md).unwrap();

    home.write(
        &user,
        &[(
            "ctx/Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n",
        )],
    );
    home.give(&user, "ctx");
    let refused = attempt("store", &[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    for needle in [
        "no RUN sandbox works here: rbuild runs as a non-root user, and creating a user namespace was refused",
        "set the sysctl user.max_user_namespaces to a positive number",
        "/etc/subuid",
        "--privileged",
        "securityContext",
    ] {
        assert!(refused.stderr.contains(needle), "{needle}: {}", refused.stderr);
    }
    assert!(!md.exists(), "nothing is written for a refused build");

    let refused = attempt("store-explicit", &["--isolation", "rootless"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("error: creating a user namespace was refused")
            && refused.stderr.contains("user.max_user_namespaces"),
        "{}",
        refused.stderr
    );
    assert!(
        !h.join("home/store-explicit").exists(),
        "the store is not even opened"
    );
}

/// `--shm-size` and `--ulimit` reach a rootless step too: the /dev/shm tmpfs is made in the
/// user namespace, and limits at or below the user's own are set before the command execs.
#[test]
fn in_rootless_mode_shm_size_and_ulimits_reach_the_step() {
    let Some(user) = test_user("RBUILD_TEST_ROOTLESS_USER") else {
        return;
    };
    let home = UserDir::new(&user);
    let h = home.path();
    let store = h.join("home/store");
    if !rbuild_tests::build::busybox_base(&h.join("base"), &store, "localhost/rootless/busybox:2") {
        return;
    }
    home.give(&user, "home/store");
    home.write(
        &user,
        &[(
            "ctx/Dockerfile",
            "FROM localhost/rootless/busybox:2\n\
             RUN cat /proc/self/limits > /limits && df -k /dev/shm | tail -n 1 > /shm\n",
        )],
    );
    let out = h.join("home/out");
    let mut cmd = build_cmd(&store, &h.join("ctx"));
    cmd.args([
        "--shm-size",
        "32m",
        "--ulimit",
        "nofile=256:512",
        "--output",
        &format!("type=local,dest={}", out.display()),
    ]);
    let r = run(&mut as_user(&user, &h.join("home"), &cmd));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--isolation rootless"), "{}", r.stderr);
    let shm = std::fs::read_to_string(out.join("shm")).unwrap();
    assert_eq!(shm.split_whitespace().nth(1), Some("32768"), "{shm}");
    let limits = std::fs::read_to_string(out.join("limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    assert_eq!(&fields[..2], ["256", "512"], "{limits}");
}
