//! The flags `docker buildx build` pipelines pass (docker/build-push-action always passes
//! `--iidfile` and `--label`), with buildx's meaning, checked against what Docker's BuildKit
//! did with the same command line (Docker 20.10, by hand): `--label a=2` wins over the
//! Dockerfile's `LABEL a=1`, `--label empty` is an empty value, labels change no layer and add
//! no history; the ID file holds the config digest without a newline.

use std::path::Path;

use rbuild_tests::build::{build, metadata, write_tree};
use rbuild_tests::{oci, scratch};

fn config(out: &Path, tag: &str) -> serde_json::Value {
    let m = oci::manifest(out, tag);
    let d = m["config"]["digest"].as_str().unwrap();
    serde_json::from_slice(&std::fs::read(oci::blob_path(out, d)).unwrap()).unwrap()
}

#[test]
fn labels_win_over_label_lines_and_the_iidfile_holds_the_config_digest() {
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch AS a\nLABEL a=1 keep=yes\nCOPY f /f\nFROM a\nLABEL c=4\n",
            ),
            ("f", "x\n"),
        ],
    );
    let store = d.join("store");
    let out = d.join("out");
    let iid = d.join("iid");
    let md = d.join("md.json");
    std::fs::write(&iid, "stale").unwrap();
    build(
        &store,
        &ctx,
        &[
            "--label",
            "a=2",
            "--label",
            "b=3=three",
            "--label",
            "empty",
            "--iidfile",
            iid.to_str().unwrap(),
            "--metadata-file",
            md.to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={},tar=false", out.display()),
            "--tag",
            "localhost/labels:1",
        ],
    )
    .success();
    let c = config(&out, "1");
    let labels = &c["config"]["Labels"];
    assert_eq!(labels["a"], "2", "{c}");
    assert_eq!(labels["b"], "3=three");
    assert_eq!(labels["empty"], "");
    assert_eq!(labels["keep"], "yes");
    assert_eq!(labels["c"], "4");
    // LABEL lines make (empty) history entries; --label makes none.
    let plain = d.join("plain");
    build(
        &store,
        &ctx,
        &[
            "--output",
            &format!("type=oci,dest={},tar=false", plain.display()),
            "--tag",
            "localhost/labels:1",
        ],
    )
    .success();
    let p = config(&plain, "1");
    assert_eq!(c["history"], p["history"]);
    assert_eq!(c["rootfs"], p["rootfs"]);
    assert_eq!(p["config"]["Labels"]["a"], "1");
    // The ID file: the config digest, no newline, the stale content gone.
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(
        id,
        metadata(&md)["containerimage.config.digest"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        id,
        oci::manifest(&out, "1")["config"]["digest"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn an_iidfile_with_a_local_output_or_several_targets_is_a_usage_error() {
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM scratch AS a\nCOPY Dockerfile /\nFROM a AS b\n",
        )],
    );
    let iid = d.join("iid");
    let r = build(
        &d.join("store"),
        &ctx,
        &[
            "--iidfile",
            iid.to_str().unwrap(),
            "--output",
            &format!("type=local,dest={}", d.join("fs").display()),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("local exporter is incompatible"),
        "{}",
        r.stderr
    );
    let r = build(
        &d.join("store"),
        &ctx,
        &[
            "--iidfile",
            iid.to_str().unwrap(),
            "--target",
            "a",
            "--target",
            "b",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("several targets"), "{}", r.stderr);
    assert!(!iid.exists());
    let r = build(&d.join("store"), &ctx, &["--label", "=x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("the key is empty"), "{}", r.stderr);
}

#[test]
fn pull_resolves_a_name_built_here_in_its_registry() {
    let Some(reg) = rbuild_tests::test_registry() else {
        eprintln!("SKIPPED: no test registry (bash tests/run.sh starts one)");
        return;
    };
    let dir = scratch();
    let d = dir.path();
    let name = format!("{reg}/rbuild-e2e/pull-base:{}", std::process::id());
    // The registry's image under the name, from another store (another machine).
    let remote = d.join("remote");
    write_tree(
        &remote,
        &[
            ("Dockerfile", "FROM scratch\nCOPY which /which\n"),
            ("which", "registry\n"),
        ],
    );
    build(&d.join("other-store"), &remote, &["--tag", &name, "--push"]).success();
    // This store built an image of its own under the same name.
    let store = d.join("store");
    let local = d.join("local");
    write_tree(
        &local,
        &[
            ("Dockerfile", "FROM scratch\nCOPY which /which\n"),
            ("which", "built here\n"),
        ],
    );
    build(&store, &local, &["--tag", &name]).success();
    let app = d.join("app");
    write_tree(&app, &[("Dockerfile", &format!("FROM {name}\n"))]);
    let read = |extra: &[&str], out: &str| {
        let dest = d.join(out);
        let mut args = vec![
            "--output".to_string(),
            format!("type=local,dest={}", dest.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        build(&store, &app, &args).success();
        std::fs::read_to_string(dest.join("which")).unwrap()
    };
    assert_eq!(read(&[], "without"), "built here\n");
    assert_eq!(read(&["--pull"], "with"), "registry\n");
}

#[test]
fn add_host_lines_are_in_run_steps_etc_hosts_as_buildkit_writes_them_and_in_the_key() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    if !rbuild_tests::build::busybox_base(d, &store, "localhost/buildx-flags/busybox:1") {
        return;
    }
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/buildx-flags/busybox:1\nRUN cat /etc/hosts > /h\n",
        )],
    );
    let n = std::cell::Cell::new(0);
    let out = |i: usize| d.join(format!("out-{i}"));
    let with = |hosts: &[&str]| {
        n.set(n.get() + 1);
        let mut args = vec![
            "--output".to_string(),
            format!("type=local,dest={}", out(n.get()).display()),
        ];
        for h in hosts {
            args.push("--add-host".into());
            args.push(h.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        build(&store, &ctx, &args).success()
    };
    with(&["myhost:10.1.2.3", "other:fe80::1"]);
    // Byte for byte what Docker 20.10's BuildKit gave the same RUN with the same flags.
    assert_eq!(
        std::fs::read_to_string(out(1).join("h")).unwrap(),
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         10.1.2.3\tmyhost\nfe80::1\tother\n"
    );
    assert!(!out(1).join("etc/hosts").exists(), "never in the image");
    // A step from the cache is reported `#N CACHED`.
    let cached = |r: &rbuild_tests::Run| {
        r.stderr
            .lines()
            .filter(|l| l.starts_with('#') && l.ends_with(" CACHED"))
            .count()
    };
    let again = with(&["myhost:10.1.2.3", "other:fe80::1"]);
    assert_eq!(cached(&again), 1, "{}", again.stderr);
    let moved = with(&["myhost:10.9.9.9", "other:fe80::1"]);
    assert_eq!(
        cached(&moved),
        0,
        "another address is another RUN key:\n{}",
        moved.stderr
    );
    assert!(std::fs::read_to_string(out(3).join("h"))
        .unwrap()
        .contains("10.9.9.9\tmyhost\n"));
}
