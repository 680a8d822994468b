//! Reproducibility and naming from git (the acceptance test): the same commit built from
//! two clones at different paths, with different umasks and file mtimes, gives identical images;
//! without --tag the image is named after the repository and commit; the revision label and the
//! created time come from the commit, and SOURCE_DATE_EPOCH overrides the time.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build::{build_cmd, busybox_base, copy_example, metadata, HELLO_WEB_BASE};
use rbuild_tests::{have_tool, oci, run, scratch, Run};

/// 2024-01-02T03:04:05Z
const COMMIT_DATE: &str = "2024-01-02T03:04:05Z";

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "rbuild tests")
        .env("GIT_AUTHOR_EMAIL", "tests@example.invalid")
        .env("GIT_COMMITTER_NAME", "rbuild tests")
        .env("GIT_COMMITTER_EMAIL", "tests@example.invalid")
        .env("GIT_AUTHOR_DATE", COMMIT_DATE)
        .env("GIT_COMMITTER_DATE", COMMIT_DATE)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    c
}

/// A git repository `hello-web` holding the example, committed at `COMMIT_DATE`; returns it and
/// the commit id.
fn origin(dir: &Path) -> Option<(PathBuf, String)> {
    if !have_tool("git") {
        return None;
    }
    let repo = dir.join("origin").join("hello-web");
    std::fs::create_dir_all(repo.parent().unwrap()).unwrap();
    copy_example("hello-web", &repo);
    run(git(&repo).args(["init", "-q", "-b", "main"])).success();
    run(git(&repo).args(["add", "-A"])).success();
    run(git(&repo).args(["commit", "-q", "-m", "example"])).success();
    let sha = run(git(&repo).args(["rev-parse", "HEAD"])).success().stdout;
    Some((repo, sha.trim().to_string()))
}

fn clone(origin: &Path, dest: &Path, umask: &str) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; git clone -q \"$0\" \"$1\""))
        .arg(origin)
        .arg(dest))
    .success();
}

fn build_git(store: &Path, ctx: &Path, meta: &Path, args: &[&str], sde: Option<&str>) -> Run {
    let mut c = build_cmd(store, ctx);
    c.args(args).arg("--metadata-file").arg(meta);
    match sde {
        Some(v) => c.env("SOURCE_DATE_EPOCH", v),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    run(&mut c).success()
}

fn digest_of(m: &serde_json::Value, target: &str) -> String {
    m[target]["containerimage.digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest for {target} in {m}"))
        .to_string()
}

#[test]
fn two_clones_with_different_paths_umasks_and_mtimes_build_identical_images() {
    let dir = scratch();
    let Some((origin, _sha)) = origin(dir.path()) else {
        return;
    };
    let a = dir.path().join("a").join("hello-web");
    let b = dir.path().join("somewhere/much/deeper").join("hello-web");
    clone(&origin, &a, "0002");
    clone(&origin, &b, "0022");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&a.join("www/index.html")),
        0o664,
        "umask 0002 took effect"
    );
    assert_eq!(
        mode(&b.join("www/index.html")),
        0o644,
        "umask 0022 took effect"
    );
    // Different mtimes in one clone only.
    run(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(b.join("www/index.html"))
        .arg(b.join("www"))
        .arg(b.join("config/httpd.conf")))
    .success();

    let mut results = Vec::new();
    for (name, ctx) in [("a", &a), ("b", &b)] {
        let store = dir.path().join(format!("store-{name}"));
        if !busybox_base(
            &dir.path().join(format!("base-{name}")),
            &store,
            HELLO_WEB_BASE,
        ) {
            return;
        }
        let meta = dir.path().join(format!("meta-{name}.json"));
        build_git(
            &store,
            ctx,
            &meta,
            &["--target", "development", "--target", "production"],
            None,
        );
        results.push(metadata(&meta));
    }
    for target in ["development", "production"] {
        assert_eq!(
            digest_of(&results[0], target),
            digest_of(&results[1], target),
            "{target}: the same commit gives the same image"
        );
    }
}

#[test]
fn default_name_revision_label_and_created_time_come_from_the_commit() {
    let dir = scratch();
    let Some((repo, sha)) = origin(dir.path()) else {
        return;
    };
    let store = dir.path().join("store");
    if !busybox_base(dir.path(), &store, HELLO_WEB_BASE) {
        return;
    }
    let meta = dir.path().join("meta.json");
    let out = dir.path().join("out");
    let dest = format!("type=oci,dest={},tar=false", out.display());

    build_git(&store, &repo, &meta, &["--output", &dest], None);
    let m = metadata(&meta);
    let name = m["image.name"].as_str().unwrap();
    assert!(
        name == format!("hello-web:{sha}") || name.ends_with(&format!("/hello-web:{sha}")),
        "default name is <repo dir>:<commit>, got {name:?}"
    );
    assert_eq!(
        oci::ref_names(&out),
        std::slice::from_ref(&sha),
        "the layout names it by the commit"
    );
    let cfg = oci::read_config(&out, &sha);
    assert_eq!(
        cfg["config"]["Labels"]["org.opencontainers.image.revision"],
        sha.as_str()
    );
    assert_eq!(cfg["created"], COMMIT_DATE, "created is the commit time");
    let manifest = oci::manifest(&out, &sha);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        COMMIT_DATE
    );

    // SOURCE_DATE_EPOCH wins over the commit time.
    std::fs::remove_dir_all(&out).unwrap();
    build_git(&store, &repo, &meta, &["--output", &dest], Some("0"));
    let cfg = oci::read_config(&out, &sha);
    assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");
    for h in cfg["history"].as_array().unwrap() {
        if h["comment"] == "rbuild.dockerfile.v0" {
            assert_eq!(h["created"], "1970-01-01T00:00:00Z", "{h}");
        }
    }

    // A modified tracked file makes the default tag <commit>-dirty.
    std::fs::write(repo.join("www/index.html"), "changed\n").unwrap();
    build_git(&store, &repo, &meta, &[], None);
    let name = metadata(&meta)["image.name"].as_str().unwrap().to_string();
    assert!(
        name.ends_with(&format!("hello-web:{sha}-dirty")),
        "dirty work tree: {name:?}"
    );
}

#[test]
fn git_work_tree_mode_normalisation_never_widens_a_mode() {
    let dir = scratch();
    if !have_tool("git") {
        return;
    }
    let repo = dir.path().join("repo");
    rbuild_tests::build::write_tree(
        &repo,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /c/\n"),
            ("f600", "a"),
            ("f664", "b"),
            ("f755", "c"),
            ("f775", "d"),
            ("d700/x", "e"),
            ("d775/x", "f"),
        ],
    );
    for (p, m) in [
        ("f600", 0o600),
        ("f664", 0o664),
        ("f755", 0o755),
        ("f775", 0o775),
        ("d700", 0o700),
        ("d775", 0o775),
    ] {
        std::fs::set_permissions(repo.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    }
    run(git(&repo).args(["init", "-q", "-b", "main"])).success();
    run(git(&repo).args(["add", "-A"])).success();
    run(git(&repo).args(["commit", "-q", "-m", "modes"])).success();
    let fs = dir.path().join("fs");
    build_git(
        &dir.path().join("store"),
        &repo,
        &dir.path().join("meta.json"),
        &["--output", &format!("type=local,dest={}", fs.display())],
        Some("0"),
    );
    let mode = |p: &str| {
        std::fs::metadata(fs.join("c").join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    // Only the group/other write bits (what a umask decides) are cleared.
    for (p, want) in [
        ("f600", 0o600),
        ("f664", 0o644),
        ("f755", 0o755),
        ("f775", 0o755),
        ("d700", 0o700),
        ("d775", 0o755),
    ] {
        assert_eq!(mode(p), want, "{p}: {:o}", mode(p));
    }
}
