//! Divergences from BuildKit found by building the same Dockerfile with both (issue 13), each
//! checked on the image rbuild writes: stage ARG inheritance, the empty image's defaults, and
//! images that do not depend on their tags.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, busybox_base_with, metadata, write_tree};
use rbuild_tests::oci::{env, read_config};
use rbuild_tests::{have_tool, oci, rbuild, run, scratch};
use serde_json::Value;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn oci_out(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let out = dir.join(name);
    let spec = format!("type=oci,dest={},tar=false", out.display());
    (out, spec)
}

#[test]
fn stage_from_a_stage_starts_with_that_stages_arg_values() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "ARG G=global\n\
             FROM scratch AS one\n\
             ARG A=adef\n\
             ARG B\n\
             ARG NOVALUE\n\
             ARG G\n\
             FROM one AS two\n\
             ENV FROM_A=$A FROM_B=$B FROM_G=$G FROM_NOVALUE=x${NOVALUE}x\n\
             FROM two\n\
             ENV THIRD_A=$A\n",
        )],
    );
    let (out, spec) = oci_out(dir.path(), "out");
    build(
        &dir.path().join("store"),
        &ctx,
        &["--build-arg", "B=bover", "-t", "t:x", "--output", &spec],
    )
    .success();
    let c = read_config(&out, "x");
    let e: Vec<(String, String)> = env(&c);
    let get = |k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("FROM_A"), Some("adef"), "{c}");
    assert_eq!(get("FROM_B"), Some("bover"), "{c}");
    assert_eq!(get("FROM_G"), Some("global"), "{c}");
    assert_eq!(
        get("FROM_NOVALUE"),
        Some("xx"),
        "an ARG without value stays unset"
    );
    assert_eq!(get("THIRD_A"), Some("adef"), "carried through two FROMs");
}

#[test]
fn scratch_image_has_buildkit_default_path_and_workdir() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nENV A=b\nCOPY f /f\n"),
            ("f", "hi\n"),
        ],
    );
    let (out, spec) = oci_out(dir.path(), "out");
    build(
        &dir.path().join("store"),
        &ctx,
        &["-t", "t:x", "--output", &spec],
    )
    .success();
    let c = read_config(&out, "x");
    assert_eq!(
        c["config"]["Env"],
        serde_json::json!([format!("PATH={DEFAULT_PATH}"), "A=b"]),
        "{c}"
    );
    assert_eq!(c["config"]["WorkingDir"], "/", "{c}");
}

#[test]
fn base_image_without_path_gets_buildkit_default_path_appended() {
    if !have_tool("umoci") {
        return;
    }
    let dir = scratch();
    let store = dir.path().join("store");
    // A base from another builder (umoci): an environment, no PATH and no WorkingDir.
    let base = dir.path().join("base");
    let image = format!("{}:base", base.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&base)).success();
    run(Command::new("umoci").args(["new", "--image", &image])).success();
    run(Command::new("umoci").args(["config", "--image", &image, "--config.env=FOO=bar"]))
        .success();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM oci-layout://{}:base\nLABEL a=b\n", base.display()),
        )],
    );
    let (out, spec) = oci_out(dir.path(), "out");
    build(&store, &ctx, &["-t", "t:x", "--output", &spec]).success();
    let c = read_config(&out, "x");
    assert_eq!(
        c["config"]["Env"],
        serde_json::json!(["FOO=bar", format!("PATH={DEFAULT_PATH}")]),
        "{c}"
    );
    assert_eq!(
        c["config"]["WorkingDir"],
        Value::Null,
        "only scratch gets `/`: {c}"
    );
}

#[test]
fn same_build_under_two_tags_has_the_same_manifest_digest() {
    let dir = scratch();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "hi\n")],
    );
    let mut digests = Vec::new();
    for tag in ["1", "2"] {
        let (out, spec) = oci_out(dir.path(), &format!("oci-{tag}"));
        let archive = dir.path().join(format!("docker-{tag}.tar"));
        let meta = dir.path().join(format!("meta-{tag}.json"));
        build(
            &store,
            &ctx,
            &[
                "-t",
                &format!("app:{tag}"),
                "--output",
                &spec,
                "--output",
                &format!("type=docker,dest={}", archive.display()),
                "--metadata-file",
                meta.to_str().unwrap(),
            ],
        )
        .success();
        // The tag is the layout's ref.name on the index descriptor, and nowhere in the image.
        assert_eq!(oci::ref_names(&out), [tag]);
        let manifest = oci::manifest(&out, tag);
        let config = read_config(&out, tag);
        for (what, doc) in [("manifest", &manifest), ("config", &config)] {
            let text = doc.to_string();
            assert!(!text.contains("image.version"), "{what}: {text}");
            assert!(!text.contains("image.ref.name"), "{what}: {text}");
        }
        let digest = oci::manifest_digest(&out, tag);
        assert_eq!(metadata(&meta)["containerimage.digest"], digest.as_str());
        digests.push(digest);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn check_rejects_what_the_build_would_reject() {
    let dir = scratch();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    let check = |dockerfile: &str| {
        write_tree(&ctx, &[("Dockerfile", dockerfile), ("a", "a")]);
        run(rbuild(&store).arg("check").arg(&ctx))
    };
    for (dockerfile, line, says) in [
        ("FROM scratch\nCOPY --chmod=0999 a /a\n", 2, "--chmod"),
        (
            "FROM scratch\nARG M=u*x\nCOPY --chmod=$M a /a\n",
            3,
            "--chmod",
        ),
        (
            "FROM scratch\nRUN --security=insecure true\n",
            2,
            "security.insecure",
        ),
        (
            "FROM scratch\nARG M=zz\nRUN --mount=type=cache,target=/c,mode=$M true\n",
            3,
            "mode",
        ),
    ] {
        let r = check(dockerfile);
        assert_eq!(r.code, 2, "{dockerfile}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("Dockerfile:{line}")),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    for ok in [
        "FROM scratch\nRUN --security=sandbox true\n",
        "FROM scratch\nARG M=0640\nCOPY --chmod=$M a /a\n",
        "FROM scratch\nARG UID=1000 M=0750\nRUN --mount=type=cache,target=/c,uid=$UID,mode=$M true\n",
    ] {
        let r = check(ok);
        assert_eq!(r.code, 0, "{ok}: {}", r.stderr);
    }
}

#[test]
fn layer_entry_under_a_symlinked_parent_is_written_inside_the_root() {
    if !have_tool("umoci") || !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let store = dir.path().join("store");
    let base = dir.path().join("base");
    let spec = format!("type=oci,dest={},tar=false", base.display());
    if !busybox_base_with(
        dir.path(),
        &store,
        "localhost/parity/busybox:1",
        &["--output", &spec],
    ) {
        return;
    }
    // A layer from another tool: `link -> /etc`, then `link/x` (containerd writes /etc/x; this
    // layer's snapshot has no /etc, which used to fail with "File exists").
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    std::fs::create_dir_all(&s1).unwrap();
    write_tree(&s2, &[("d/x", "x\n")]);
    std::os::unix::fs::symlink("/etc", s1.join("link")).unwrap();
    let layer = dir.path().join("layer.tar");
    let tar = |args: &[&str]| {
        run(Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner"])
            .args(args))
        .success();
    };
    tar(&[
        "-cf",
        layer.to_str().unwrap(),
        "-C",
        s1.to_str().unwrap(),
        "link",
    ]);
    tar(&[
        "-rf",
        layer.to_str().unwrap(),
        "-C",
        s2.to_str().unwrap(),
        "--transform",
        "s,^d/,link/,",
        "d/x",
    ]);
    let image = format!("{}:1", base.display());
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&layer))
    .success();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM oci-layout://{image}\nRUN cat /etc/x /link/x > /both\n"),
        )],
    );
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    assert_eq!(std::fs::read_to_string(fs.join("both")).unwrap(), "x\nx\n");
    assert_eq!(std::fs::read_to_string(fs.join("etc/x")).unwrap(), "x\n");
    assert!(std::fs::symlink_metadata(fs.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn directory_a_layer_only_implies_keeps_the_lower_layers_mode_in_run() {
    if !have_tool("umoci") || !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let store = dir.path().join("store");
    let base = dir.path().join("base");
    let spec = format!("type=oci,dest={},tar=false", base.display());
    if !busybox_base_with(
        dir.path(),
        &store,
        "localhost/parity/busybox:2",
        &["--output", &spec],
    ) {
        return;
    }
    let image = format!("{}:2", base.display());
    // Layer 1: /tmp 1777. Layer 2 (another tool's): `tmp/x` with no `tmp/` entry.
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    std::fs::create_dir_all(s1.join("tmp")).unwrap();
    std::fs::set_permissions(s1.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    write_tree(&s2, &[("tmp/x", "x\n")]);
    for (src, what) in [(&s1, "tmp"), (&s2, "tmp/x")] {
        let layer = dir.path().join(format!("{}.tar", what.replace('/', "-")));
        run(Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer)
            .arg("-C")
            .arg(src)
            .arg(what))
        .success();
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(&layer))
        .success();
    }
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM oci-layout://{image}\nRUN stat -c %a /tmp > /mode\n"),
        )],
    );
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", fs.display())],
    )
    .success();
    // containerd's overlay apply copies the lower /tmp's metadata (`WithParents`).
    assert_eq!(std::fs::read_to_string(fs.join("mode")).unwrap(), "1777\n");
}
