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
    assert_eq!(std::fs::metadata(x.join("app/b")).unwrap().mtime(), epoch);
    // Deterministic: built again without the cache, a second later, the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
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
    // A tarball onto a directory: refused before building, as buildx does.
    let r = build(
        &store,
        &ctx,
        &["--output", &format!("type=tar,dest={}", d.display())],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is a directory"), "{}", r.stderr);
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

/// `rbuild build CONTEXT ARGS…` with `input` on its standard input.
fn build_stdin(store: &Path, ctx: &str, args: &[&str], input: Vec<u8>) -> rbuild_tests::Run {
    let mut cmd = build_cmd(store, Path::new(ctx));
    cmd.args(args);
    with_stdin(cmd, input)
}

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(mut cmd: Command, input: Vec<u8>) -> rbuild_tests::Run {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A command that refuses its input stops reading: a broken pipe here is expected then.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    rbuild_tests::Run::from_output(out)
}

/// GNU tar's archive of the directory `dir` (`tar -C dir -c[z]f - .`).
fn gnu_tar(dir: &Path, gzip: bool) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg(if gzip { "-czf" } else { "-cf" })
        .args(["-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// One ustar entry written by hand (GNU tar and the `tar` crate refuse to write hostile names).
fn raw_entry(name: &str, typeflag: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// No `stdin-*` scratch directory is left in the store.
fn no_stdin_scratch_left(store: &Path) {
    let left: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("stdin-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn dash_f_reads_the_dockerfile_from_stdin_and_the_context_stays_the_directory() {
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY other /other\n"),
            ("a", "from the context\n"),
            ("other", "x\n"),
        ],
    );
    let store = d.join("store");
    let out = d.join("out");
    build_stdin(
        &store,
        ctx.to_str().unwrap(),
        &["-f", "-", "-o", out.to_str().unwrap()],
        b"FROM scratch\nCOPY a /from-stdin\n".to_vec(),
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(out.join("from-stdin")).unwrap(),
        "from the context\n"
    );
    assert!(
        !out.join("other").exists(),
        "the context's Dockerfile was not used"
    );
    no_stdin_scratch_left(&store);
    // Errors name it `stdin`, not a temporary path.
    let r = build_stdin(
        &store,
        ctx.to_str().unwrap(),
        &["-f", "-"],
        b"FROM scratch\nFROB x\n".to_vec(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("stdin:2"), "{}", r.stderr);
    no_stdin_scratch_left(&store);
    // `rbuild check` reads it the same way.
    let mut check = rbuild_tests::rbuild(&store);
    check.args(["check", ctx.to_str().unwrap(), "-f", "-"]);
    let r = with_stdin(check, b"FROM scratch AS only\nCOPY a /a\n".to_vec()).success();
    assert!(r.stdout.contains("Dockerfile: stdin"), "{}", r.stdout);
    assert!(r.stdout.contains("only"), "{}", r.stdout);
    no_stdin_scratch_left(&store);
}

#[test]
fn a_tar_on_stdin_is_the_context_with_its_dockerignore_and_f_inside_it() {
    if !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let src = d.join("src");
    write_tree(
        &src,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /c/\n"),
            ("build/Alt.Dockerfile", "FROM scratch\nCOPY app.txt /alt\n"),
            ("app.txt", "app\n"),
            ("debug.log", "ignored\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    let store = d.join("store");
    for gzip in [false, true] {
        let out = d.join(format!("out-{gzip}"));
        build_stdin(
            &store,
            "-",
            &["-o", out.to_str().unwrap()],
            gnu_tar(&src, gzip),
        )
        .success();
        assert_eq!(
            std::fs::read_to_string(out.join("c/app.txt")).unwrap(),
            "app\n"
        );
        assert!(!out.join("c/debug.log").exists(), ".dockerignore applies");
        assert!(out.join("c/build/Alt.Dockerfile").exists());
    }
    let alt = d.join("alt");
    build_stdin(
        &store,
        "-",
        &["-f", "build/Alt.Dockerfile", "-o", alt.to_str().unwrap()],
        gnu_tar(&src, false),
    )
    .success();
    assert_eq!(std::fs::read_to_string(alt.join("alt")).unwrap(), "app\n");
    no_stdin_scratch_left(&store);
}

#[test]
fn text_on_stdin_with_context_dash_is_the_dockerfile_and_the_context_is_empty() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    let out = d.join("oci");
    build_stdin(
        &store,
        "-",
        &[
            "--output",
            &format!("type=oci,dest={},tar=false", out.display()),
            "--tag",
            "localhost/stdin:1",
        ],
        b"FROM scratch\nLABEL from=stdin\nCOPY . /\n".to_vec(),
    )
    .success();
    let config = rbuild_tests::oci::read_config(&out, "1");
    assert_eq!(config["config"]["Labels"]["from"], "stdin", "{config}");
    // The empty context gave an empty COPY: no file in the image.
    let m = rbuild_tests::oci::manifest(&out, "1");
    for l in m["layers"].as_array().unwrap() {
        let blob = rbuild_tests::oci::blob_path(&out, l["digest"].as_str().unwrap());
        let list = run(Command::new("tar").arg("-tzf").arg(&blob)).success();
        assert!(
            list.stdout.lines().all(|p| p.ends_with('/')),
            "{}",
            list.stdout
        );
    }
    no_stdin_scratch_left(&store);
}

#[test]
fn stdin_for_both_or_an_ambiguous_dockerfile_is_a_usage_error() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    let r = build_stdin(&store, "-", &["-f", "-"], b"FROM scratch\n".to_vec());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("can't use stdin for both"),
        "{}",
        r.stderr
    );
    let r = build_stdin(
        &store,
        "-",
        &["-f", "Dockerfile"],
        b"FROM scratch\n".to_vec(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("ambiguous Dockerfile source"),
        "{}",
        r.stderr
    );
    let r = build_stdin(&store, "-", &[], Vec::new());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("standard input is empty"), "{}", r.stderr);
    no_stdin_scratch_left(&store);
}

#[test]
fn a_hostile_context_tar_on_stdin_writes_nothing_outside_its_directory() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    let outside = d.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("canary"), "canary\n").unwrap();
    let o = outside.display().to_string();
    let df = raw_entry("Dockerfile", b'0', "", b"FROM scratch\nCOPY . /c/\n");
    let end = vec![0u8; 1024];
    // (what, entries, exit code): refused (2), or contained in the context (0: the build
    // copies what the applier made of it inside the context).
    let cases: Vec<(&str, Vec<Vec<u8>>, i32)> = vec![
        (
            "dotdot",
            vec![raw_entry("../../outside/x", b'0', "", b"x")],
            2,
        ),
        (
            "absolute",
            vec![raw_entry(&format!("{o}/x"), b'0', "", b"x")],
            0,
        ),
        (
            "through a symlink",
            vec![
                raw_entry("link", b'2', &o, b""),
                raw_entry("link/x", b'0', "", b"x"),
            ],
            0,
        ),
        (
            "hard link out",
            vec![raw_entry("hl", b'1', &format!("{o}/canary"), b"")],
            2,
        ),
        (
            "overwrite through a final symlink",
            vec![
                raw_entry("c", b'2', &format!("{o}/canary"), b""),
                raw_entry("c", b'0', "", b"pwned"),
            ],
            0,
        ),
        ("device", vec![raw_entry("null", b'3', "", b"")], 0),
    ];
    for (what, entries, code) in cases {
        let mut t = df.clone();
        for e in entries {
            t.extend(e);
        }
        t.extend_from_slice(&end);
        let out = d.join(format!("out-{}", what.replace(' ', "-")));
        let r = build_stdin(&store, "-", &["-o", out.to_str().unwrap()], t);
        assert_eq!(r.code, code, "{what}: {}", r.stderr);
        if code == 2 {
            assert!(
                r.stderr
                    .contains("unpacking the build context from standard input"),
                "{what}: {}",
                r.stderr
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["canary"], "{what}: {}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(outside.join("canary")).unwrap(),
            "canary\n",
            "{what}"
        );
    }
    // Contained: the absolute name and the name through the symlink landed inside the
    // context, the final symlink was replaced by the file, the device is an inert empty file.
    let inside = format!("c{o}/x");
    assert_eq!(
        std::fs::read_to_string(d.join("out-absolute").join(&inside)).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out-through-a-symlink").join(&inside)).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out-overwrite-through-a-final-symlink/c/c")).unwrap(),
        "pwned"
    );
    use std::os::unix::fs::FileTypeExt;
    let dev = std::fs::symlink_metadata(d.join("out-device/c/null")).unwrap();
    assert!(!dev.file_type().is_char_device() && dev.len() == 0);
    no_stdin_scratch_left(&store);
}

/// `oci-mediatypes=false` (BuildKit's image exporter option): Docker schema2 manifests, config
/// and layer types — a manifest list for several platforms — with the same config (so the same
/// image ID) as the OCI image; read back by skopeo from the registry. What Docker's types
/// cannot carry is refused as BuildKit refuses it (`exporter/containerimage/opts.go`,
/// `writer.go`): zstd layers, annotations other than the manifest's, attestations.
#[test]
fn oci_mediatypes_false_gives_docker_schema2_images() {
    let Some(reg) = rbuild_tests::test_registry() else {
        eprintln!("SKIPPED: no test registry (bash tests/run.sh starts one)");
        return;
    };
    if !have_tool("skopeo") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let (ctx, store) = (d.join("ctx"), d.join("store"));
    tree_context(&ctx);
    let repo = format!("{reg}/rbuild-e2e/docker-types-{}", std::process::id());
    let iid = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();
    build(
        &store,
        &ctx,
        &["--iidfile", d.join("oci.iid").to_str().unwrap()],
    )
    .success();
    let layout = d.join("layout");
    build(
        &store,
        &ctx,
        &[
            "--output",
            &format!("type=image,name={repo}:one,push=true,oci-mediatypes=false"),
            "--output",
            &format!(
                "type=oci,dest={},tar=false,oci-mediatypes=false",
                layout.display()
            ),
            "--iidfile",
            d.join("docker.iid").to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(iid("docker.iid"), iid("oci.iid"), "the config is the same");
    let m = rbuild_tests::registry_http::skopeo_raw(&format!("{repo}:one"));
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    let index = rbuild_tests::oci::index(&layout);
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    run(Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{repo}:one"))
        .arg(format!("dir:{}", d.join("copied").display())))
    .success();

    // Several platforms: a Docker manifest list of Docker manifests.
    build(
        &store,
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--output",
            &format!("type=image,name={repo}:multi,push=true,oci-mediatypes=false"),
        ],
    )
    .success();
    let list = rbuild_tests::registry_http::skopeo_raw(&format!("{repo}:multi"));
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{list}");
    for e in entries {
        assert_eq!(
            e["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }

    // Refused before anything is built, with BuildKit's words.
    let image = format!("type=image,name={repo}:x,push=true,oci-mediatypes=false");
    for (extra, says) in [
        (
            vec![format!("{image},compression=zstd")],
            "\"compression=zstd\" conflicts with \"oci-mediatypes=false\"",
        ),
        (
            vec![
                image.clone(),
                "--annotation".into(),
                "manifest-descriptor:a=b".into(),
            ],
            "cannot export annotations with \"oci-mediatypes=false\"",
        ),
        (
            vec![format!("{image},oci-artifact=true")],
            "\"oci-artifact=true\" conflicts with \"oci-mediatypes=false\"",
        ),
        (
            vec![image.clone(), "--sbom=true".into()],
            "cannot export attestations with \"oci-mediatypes=false\"",
        ),
        (
            vec![
                image.clone(),
                "--output".into(),
                format!("type=oci,dest={}", d.join("o.tar").display()),
            ],
            "give every image --output the same oci-mediatypes",
        ),
    ] {
        let mut args: Vec<&str> = vec!["--output"];
        args.extend(extra.iter().map(String::as_str));
        let r = build(&store, &ctx, &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}
