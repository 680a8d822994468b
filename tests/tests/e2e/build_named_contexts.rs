//! `--build-context NAME=DIR|git URL|http URL` and a tarball URL as the build context, against
//! real directories and servers on 127.0.0.1 (Python's `http.server`, `git daemon`).
//!
//! What BuildKit does was read from its source (`frontend/dockerui/namedcontext.go`,
//! `context.go`; Docker 20.10's BuildKit has no named contexts and buildx is not installed): a
//! local directory is an `llb.Local` filtered by its own `.dockerignore`, `FROM` it gets an empty
//! image's config; a git URL is the checkout; another URL is one file named `context`, never
//! unpacked; a URL context that is an archive is unpacked, else it is the Dockerfile.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build_cmd, write_tree};
use rbuild_tests::progress::op_steps;
use rbuild_tests::{have_tool, run, scratch};

use super::build_add_remote::{git, git_daemon, http_server};

const BASE: &str = "localhost/rbuild-test/named-dir:1";

fn layout_config(layout: &Path) -> (serde_json::Value, serde_json::Value) {
    let index = rbuild_tests::oci::index(layout);
    let manifest =
        rbuild_tests::oci::blob_json(layout, index["manifests"][0]["digest"].as_str().unwrap());
    let config =
        rbuild_tests::oci::blob_json(layout, manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// A local directory (relative to the working directory) stands in for `COPY --from=NAME`,
/// `RUN --mount=from=NAME`, `FROM NAME` and a stage `AS NAME` (never built); its own
/// `.dockerignore` filters it; `FROM` it is one layer with an empty image's config; keys follow
/// the content, not mtimes.
#[test]
fn a_local_directory_stands_in_for_copy_from_mounts_from_and_stages() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    if !rbuild_tests::build::busybox_base(d, &store, BASE) {
        return;
    }
    let lib = d.join("libdir");
    write_tree(
        &lib,
        &[
            ("a.txt", "from the named context\n"),
            ("sub/b.txt", "b\n"),
            ("ignored.txt", "never read\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch AS lib\nCOPY nosuch /nosuch\n\
                 FROM src AS rootfs\n\
                 FROM {BASE}\n\
                 COPY --from=src a.txt /from-copy\n\
                 COPY --from=lib sub/b.txt /from-stage\n\
                 COPY --from=rootfs / /from-root/\n\
                 RUN --mount=from=src,target=/m cat /m/a.txt > /from-mount && test ! -e /m/ignored.txt\n"
            ),
        )],
    );
    let build = |extra: &[&str]| {
        run(build_cmd(&store, &ctx)
            .current_dir(d)
            .args(["--build-context", "src=./libdir"])
            .args(["--build-context", &format!("lib={}", lib.display())])
            .args(extra))
    };
    // Each build writes a new directory (an output must not exist).
    let n = std::cell::Cell::new(0);
    let next_out = || {
        n.set(n.get() + 1);
        d.join(format!("out{}", n.get()))
    };
    let out = next_out();
    let r = build(&["--output", &format!("type=local,dest={}", out.display())]).success();
    let read = |out: &Path, p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(
        read(&out, "from-copy"),
        "from the named context\n",
        "{}",
        r.stderr
    );
    assert_eq!(read(&out, "from-stage"), "b\n");
    assert_eq!(read(&out, "from-mount"), "from the named context\n");
    assert_eq!(read(&out, "from-root/sub/b.txt"), "b\n");
    assert!(
        !out.join("from-root/ignored.txt").exists(),
        "the directory's .dockerignore applies"
    );
    assert!(!out.join("nosuch").exists());
    assert!(
        !r.stderr.contains("COPY nosuch"),
        "the replaced stage ran:\n{}",
        r.stderr
    );

    // FROM NAME alone: the directory's files as one layer, an empty image's config, no base.
    let layout = d.join("layout");
    let r = build(&[
        "--target",
        "rootfs",
        "--output",
        &format!("type=oci,dest={},tar=false", layout.display()),
    ])
    .success();
    let (manifest, config) = layout_config(&layout);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(config["config"]["WorkingDir"], "/");
    assert!(rbuild_tests::oci::env_var(&config, "PATH").is_some());
    let annotations = manifest["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("org.opencontainers.image.base.name"),
        "{annotations:?}"
    );
    let layer = manifest["layers"][0]["digest"].clone();

    // New mtimes, same content: every step cached, the same layer.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    for f in ["a.txt", "sub/b.txt"] {
        std::fs::File::options()
            .write(true)
            .open(lib.join(f))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let r = build(&[
        "--output",
        &format!("type=local,dest={}", next_out().display()),
    ])
    .success();
    let misses: Vec<_> = op_steps(&r.stderr)
        .into_iter()
        .filter(|s| !s.cached)
        .collect();
    assert!(
        misses.is_empty(),
        "misses after touching: {misses:?}\n{}",
        r.stderr
    );
    let layout2 = d.join("layout2");
    build(&[
        "--target",
        "rootfs",
        "--output",
        &format!("type=oci,dest={},tar=false", layout2.display()),
    ])
    .success();
    assert_eq!(layout_config(&layout2).0["layers"][0]["digest"], layer);

    // New content: the steps that read it run again.
    write_tree(&lib, &[("a.txt", "changed\n")]);
    let out = next_out();
    let r = build(&["--output", &format!("type=local,dest={}", out.display())]).success();
    assert_eq!(read(&out, "from-copy"), "changed\n", "{}", r.stderr);
    assert_eq!(read(&out, "from-mount"), "changed\n");
    assert_eq!(read(&out, "from-root/a.txt"), "changed\n");
    // An ignored file changing changes nothing.
    write_tree(&lib, &[("ignored.txt", "still never read\n")]);
    let r = build(&[
        "--output",
        &format!("type=local,dest={}", next_out().display()),
    ])
    .success();
    let misses: Vec<_> = op_steps(&r.stderr)
        .into_iter()
        .filter(|s| !s.cached)
        .collect();
    assert!(misses.is_empty(), "{misses:?}\n{}", r.stderr);

    // A file instead of a directory: refused before the build, naming the flag.
    let r = build_cmd(&store, &ctx)
        .args([
            "--build-context",
            &format!("src={}", lib.join("a.txt").display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--build-context src=") && stderr.contains("not a directory"),
        "{stderr}"
    );
}

/// A git URL is its checkout (ref and subdir, no `.git`); another URL is one file named
/// `context`, not unpacked, mode 0600; a URL that fails names the flag.
#[test]
fn git_and_http_urls_as_named_contexts() {
    if !have_tool("git") || !have_tool("python3") || !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    write_tree(&work, &[("sub/f.txt", "from git\n"), ("top.txt", "top\n")]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one"]);
    let base = d.join("git");
    std::fs::create_dir_all(&base).unwrap();
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
    );
    let daemon = git_daemon(&base);
    let srv = d.join("srv");
    write_tree(&srv, &[("in/x.txt", "x\n")]);
    let tarred = Command::new("tar")
        .args(["-czf", "data.tar.gz", "-C", "in", "."])
        .current_dir(&srv)
        .status()
        .unwrap();
    assert!(tarred.success());
    let server = http_server(&srv, &d.join("http.log"));
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM g AS fromgit\n\
             FROM scratch\n\
             COPY --from=g f.txt /g.txt\n\
             COPY --from=fromgit / /gitroot/\n\
             COPY --from=h context /h.tar.gz\n",
        )],
    );
    let store = d.join("store");
    let out = d.join("out");
    let git_url = format!("git://127.0.0.1:{}/repo.git#main:sub", daemon.port);
    let http_url = format!("http://127.0.0.1:{}/data.tar.gz", server.port);
    let r = run(build_cmd(&store, &ctx)
        .args(["--build-context", &format!("g={git_url}")])
        .args(["--build-context", &format!("h={http_url}")])
        .args(["--output", &format!("type=local,dest={}", out.display())]))
    .success();
    assert_eq!(
        std::fs::read_to_string(out.join("g.txt")).unwrap(),
        "from git\n",
        "{}",
        r.stderr
    );
    assert!(out.join("gitroot/f.txt").is_file());
    assert!(!out.join("gitroot/top.txt").exists() && !out.join("gitroot/.git").exists());
    assert_eq!(
        std::fs::read(out.join("h.tar.gz")).unwrap(),
        std::fs::read(srv.join("data.tar.gz")).unwrap(),
        "the download as it is, not unpacked"
    );
    assert_eq!(
        std::fs::metadata(out.join("h.tar.gz")).unwrap().mode() & 0o777,
        0o600
    );

    let missing = format!("http://127.0.0.1:{}/missing.tar.gz", server.port);
    let r = run(build_cmd(&store, &ctx)
        .args(["--build-context", &format!("g={git_url}")])
        .args(["--build-context", &format!("h={missing}")]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("--build-context h={missing}")) && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
    let bad_ref = format!("git://127.0.0.1:{}/repo.git#nosuch", daemon.port);
    let r = run(build_cmd(&store, &ctx)
        .args(["--build-context", &format!("g={bad_ref}")])
        .args(["--build-context", &format!("h={http_url}")]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--build-context g:"), "{}", r.stderr);
}

/// A tarball URL as the build context, gzip-compressed or plain: unpacked, its `.dockerignore`
/// applied, `-f` inside it. A URL that is not an archive is the Dockerfile; one that fails
/// names the URL.
#[test]
fn a_tarball_url_is_the_build_context() {
    if !have_tool("python3") || !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let srv = d.join("srv");
    write_tree(
        &srv,
        &[
            ("in/Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
            ("in/other.Dockerfile", "FROM scratch\nCOPY v.txt /other\n"),
            ("in/v.txt", "v\n"),
            ("in/skip.txt", "skipped\n"),
            ("in/.dockerignore", "skip.txt\n"),
            ("Dockerfile.txt", "FROM scratch\nCOPY context /self\n"),
        ],
    );
    for (name, flag) in [("ctx.tar.gz", "-czf"), ("ctx.tar", "-cf")] {
        let ok = Command::new("tar")
            .args([flag, name, "-C", "in", "."])
            .current_dir(&srv)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let server = http_server(&srv, &d.join("http.log"));
    let base = format!("http://127.0.0.1:{}", server.port);
    let store = d.join("store");
    for name in ["ctx.tar.gz", "ctx.tar"] {
        let out = d.join(format!("out-{name}"));
        let r = run(rbuild_tests::rbuild(&store)
            .arg("build")
            .arg(format!("{base}/{name}"))
            .args(["--output", &format!("type=local,dest={}", out.display())]))
        .success();
        assert_eq!(
            std::fs::read_to_string(out.join("ctx/v.txt")).unwrap(),
            "v\n",
            "{name}: {}",
            r.stderr
        );
        assert!(!out.join("ctx/skip.txt").exists(), "{name}");
    }
    let out = d.join("out-f");
    run(rbuild_tests::rbuild(&store)
        .arg("build")
        .arg(format!("{base}/ctx.tar.gz"))
        .args(["-f", "other.Dockerfile"])
        .args(["--output", &format!("type=local,dest={}", out.display())]))
    .success();
    assert_eq!(std::fs::read_to_string(out.join("other")).unwrap(), "v\n");

    // Not an archive: BuildKit reads it as the Dockerfile, saved under the name `context`.
    let out = d.join("out-df");
    let r = run(rbuild_tests::rbuild(&store)
        .arg("build")
        .arg(format!("{base}/Dockerfile.txt"))
        .args(["--output", &format!("type=local,dest={}", out.display())]))
    .success();
    assert_eq!(
        std::fs::read_to_string(out.join("self")).unwrap(),
        "FROM scratch\nCOPY context /self\n",
        "{}",
        r.stderr
    );

    let r = run(rbuild_tests::rbuild(&store)
        .arg("build")
        .arg(format!("{base}/missing.tar.gz")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("the context {base}/missing.tar.gz"))
            && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
}

/// `RUN --mount=…,from=NAME` reads what `COPY --from=NAME` reads, as BuildKit mounts any
/// state: an image that is no stage of the Dockerfile (bound read-only), and a directory
/// `--build-context` seeding an empty cache mount (its files, by its own `.dockerignore`).
#[test]
fn mounts_from_an_image_and_a_cache_seeded_from_a_directory_context() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    if !rbuild_tests::build::busybox_base(d, &store, BASE) {
        return;
    }
    let seeds = d.join("seeds");
    write_tree(
        &seeds,
        &[
            ("tool.cfg", "seeded\n"),
            ("skip.txt", "never read\n"),
            (".dockerignore", "skip.txt\n"),
        ],
    );
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM {BASE}\n\
                 RUN --mount=from={BASE},source=/bin,target=/img test -x /img/busybox && echo bound > /from-image\n\
                 RUN --mount=type=cache,id=seeded-from-dir,from=seeds,target=/c \
                 cat /c/tool.cfg > /from-cache && test ! -e /c/skip.txt && echo written > /c/new\n\
                 RUN --mount=type=cache,id=seeded-from-dir,target=/c cat /c/new > /cache-kept\n"
            ),
        )],
    );
    let out = d.join("out");
    let r = run(build_cmd(&store, &ctx)
        .args(["--build-context", &format!("seeds={}", seeds.display())])
        .args(["--output", &format!("type=local,dest={}", out.display())]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(read("from-image"), "bound\n");
    assert_eq!(read("from-cache"), "seeded\n");
    assert_eq!(read("cache-kept"), "written\n");
}
