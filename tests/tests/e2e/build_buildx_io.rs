//! `docker buildx build`'s output shorthands and standard-input forms, with buildx's meaning:
//! `-o DIR` is `type=local,dest=DIR`, `-o -` is `type=tar` on standard output (refused when
//! that is a terminal), `type=tar` is the `type=local` tree as one tarball, and `type=image`
//! takes several `name=`s. Checked with GNU tar (listing and extracting), `diff -r` and skopeo.

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, build_cmd, write_tree, EPOCH};
use rbuild_tests::{have_tool, rbuild_bin, run, scratch};

/// A small context: nested directories, a symlink, an executable, in two stages.
fn tree_context(ctx: &Path) {
    write_tree(
        ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch AS base\nCOPY app/ /app/\nCOPY z.txt a.txt /\n\
                 FROM base AS final\nCOPY --chmod=755 run.sh /usr/bin/run\n",
            ),
            ("app/b/c.txt", "c\n"),
            ("app/a.txt", "a\n"),
            ("z.txt", "z\n"),
            ("a.txt", "A\n"),
            ("run.sh", "#!/bin/sh\necho hi\n"),
        ],
    );
    std::os::unix::fs::symlink("a.txt", ctx.join("app/link")).unwrap();
}

/// `tar -tf FILE`, one path per line.
fn tar_list(tar: &Path) -> Vec<String> {
    let r = run(Command::new("tar").arg("-tf").arg(tar)).success();
    r.stdout.lines().map(str::to_string).collect()
}

#[test]
fn dash_o_dir_is_local_and_type_tar_is_the_same_tree_as_one_sorted_deterministic_tar() {
    if !have_tool("tar") || !have_tool("diff") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    tree_context(&ctx);
    let store = d.join("store");
    // -o DIR: buildx's shorthand for type=local,dest=DIR.
    let fs = d.join("fs");
    build(&store, &ctx, &["-o", fs.to_str().unwrap()]).success();
    assert_eq!(
        std::fs::read_to_string(fs.join("app/b/c.txt")).unwrap(),
        "c\n"
    );
    assert_eq!(
        std::fs::read_link(fs.join("app/link")).unwrap(),
        Path::new("a.txt")
    );
    // type=tar,dest=FILE and -o - (type=tar on standard output): the same bytes.
    let file = d.join("fs.tar");
    build(
        &store,
        &ctx,
        &["--output", &format!("type=tar,dest={}", file.display())],
    )
    .success();
    let piped = build_cmd(&store, &ctx).args(["-o", "-"]).output().unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes == piped.stdout, "-o - and type=tar,dest=FILE differ");
    // --quiet's digest goes to stderr when the tar owns standard output.
    let quiet = build_cmd(&store, &ctx)
        .args(["-o", "-", "--quiet"])
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert!(quiet.stdout == bytes, "the digest went into the tar");
    assert!(String::from_utf8_lossy(&quiet.stderr).contains("sha256:"));
    // GNU tar lists it in canonical order (parents first, then byte order), rooted at the
    // image's root: no `./`, no prefix.
    let listing = tar_list(&file);
    let mut sorted = listing.clone();
    sorted.sort_by_key(|p| {
        p.trim_end_matches('/')
            .split('/')
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    assert_eq!(listing, sorted);
    assert!(listing.contains(&"app/b/c.txt".to_string()), "{listing:?}");
    assert!(listing.contains(&"usr/bin/run".to_string()), "{listing:?}");
    // Extracted, it is the tree type=local wrote: contents, modes, symlinks.
    let x = d.join("x");
    std::fs::create_dir(&x).unwrap();
    run(Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(&file)
        .arg("-C")
        .arg(&x))
    .success();
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&fs)
        .arg(&x))
    .success();
    use std::os::unix::fs::MetadataExt;
    let run_meta = std::fs::metadata(x.join("usr/bin/run")).unwrap();
    assert_eq!(run_meta.mode() & 0o7777, 0o755);
    // Context files are newer than SOURCE_DATE_EPOCH: clamped to it, as in every layer.
    let epoch: i64 = EPOCH.parse().unwrap();
    assert_eq!(run_meta.mtime(), epoch);
    assert_eq!(
        std::fs::metadata(x.join("app/a.txt")).unwrap().mtime(),
        epoch
    );
    // Deterministic: built again without the cache, the same bytes.
    let again = d.join("again.tar");
    build(
        &store,
        &ctx,
        &[
            "--no-cache",
            "--output",
            &format!("type=tar,dest={}", again.display()),
        ],
    )
    .success();
    assert!(std::fs::read(&again).unwrap() == bytes, "not deterministic");
}

#[test]
fn several_targets_each_get_a_directory_in_the_tar_as_with_type_local() {
    if !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    tree_context(&ctx);
    let file = d.join("both.tar");
    build(
        &d.join("store"),
        &ctx,
        &[
            "--target",
            "base",
            "--target",
            "final",
            "--output",
            &format!("type=tar,dest={}", file.display()),
        ],
    )
    .success();
    let listing = tar_list(&file);
    assert!(listing.contains(&"base/".to_string()), "{listing:?}");
    assert!(
        listing.contains(&"base/app/b/c.txt".to_string()),
        "{listing:?}"
    );
    assert!(
        !listing.iter().any(|p| p.starts_with("base/usr")),
        "{listing:?}"
    );
    assert!(
        listing.contains(&"final/usr/bin/run".to_string()),
        "{listing:?}"
    );
    assert!(
        listing.contains(&"final/app/a.txt".to_string()),
        "{listing:?}"
    );
}

#[test]
fn stdout_outputs_are_refused_on_a_terminal_twice_or_with_an_iidfile() {
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    tree_context(&ctx);
    let store = d.join("store");
    let r = build(&store, &ctx, &["-o", "-", "--output", "type=oci,dest=-"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("multiple outputs"), "{}", r.stderr);
    let r = build(
        &store,
        &ctx,
        &["-o", "-", "--iidfile", d.join("iid").to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("incompatible with an image ID file"),
        "{}",
        r.stderr
    );
    // Standard output a terminal (script(1) gives the command a pseudo-terminal): refused
    // before anything is built, as buildx does.
    if !have_tool("script") {
        return;
    }
    let cmd = format!(
        "{} build {} -o - --progress plain",
        rbuild_bin().display(),
        ctx.display()
    );
    let r = run(Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("RBUILD_STORE", &store)
        .env("NO_COLOR", "1"));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("refusing to write a tar to the terminal"),
        "{all}"
    );
    assert!(
        !store.join("blobs").exists()
            || std::fs::read_dir(store.join("blobs/sha256"))
                .map_or(true, |mut e| e.next().is_none()),
        "nothing built"
    );
}

#[test]
fn type_image_pushes_every_name_given_repeated_or_quoted() {
    let Some(reg) = rbuild_tests::test_registry() else {
        eprintln!("SKIPPED: no test registry (bash tests/run.sh starts one)");
        return;
    };
    if !have_tool("skopeo") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    tree_context(&ctx);
    let repo = format!("{reg}/rbuild-e2e/names-{}", std::process::id());
    let (a, b, c) = (
        format!("{repo}:a"),
        format!("{repo}:b"),
        format!("{repo}:c"),
    );
    build(
        &d.join("store"),
        &ctx,
        &[
            "--output",
            &format!("type=image,name={a},name={b},push=true"),
            "--output",
            &format!("type=registry,\"name={c}\""),
        ],
    )
    .success();
    let digest = |r: &str| {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{r}")))
        .success();
        out.stdout.trim().to_string()
    };
    let da = digest(&a);
    assert!(da.starts_with("sha256:"), "{da}");
    assert_eq!(digest(&b), da);
    assert_eq!(digest(&c), da);
}
