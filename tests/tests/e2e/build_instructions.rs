//! Instruction semantics, checked on the image config JSON read straight from the OCI layout
//! (testdata/e2e/instructions/Dockerfile): ENV/ARG scoping and expansion, LABEL, EXPOSE,
//! VOLUME, STOPSIGNAL, HEALTHCHECK, USER, WORKDIR, SHELL, CMD/ENTRYPOINT, MAINTAINER, history;
//! and ONBUILD triggers across two builds.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::oci::{env, env_var, read_config};
use rbuild_tests::{oci, repo_root, run, scratch};
use serde_json::{json, Value};

struct Built {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    fs: std::path::PathBuf,
}

fn build_fixture() -> Built {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    run(Command::new("cp")
        .arg("-R")
        .arg(repo_root().join("testdata/e2e/instructions"))
        .arg(&ctx))
    .success();
    let out = dir.path().join("out");
    let fs = dir.path().join("fs");
    build(
        &dir.path().join("store"),
        &ctx,
        &[
            "--target",
            "first",
            "--target",
            "second",
            "--target",
            "third",
            "--build-arg",
            "OVERRIDE=cli",
            "--output",
            &format!("type=oci,dest={},tar=false", out.display()),
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    Built { _dir: dir, out, fs }
}

#[test]
fn env_arg_label_expose_volume_and_friends_in_the_config() {
    let b = build_fixture();
    let c = read_config(&b.out, "first");
    // ENV replaces a variable in place (Docker keeps the original position).
    let names: Vec<String> = env(&c).into_iter().map(|(k, _)| k).collect();
    // FROM scratch starts with BuildKit's default PATH.
    assert_eq!(
        names,
        ["PATH", "SHADOW", "A", "B", "C", "D", "E", "F"],
        "{c}"
    );
    assert_eq!(env_var(&c, "A").as_deref(), Some("two"));
    assert_eq!(
        env_var(&c, "B").as_deref(),
        Some("one-x"),
        "${{A}}-x at that point"
    );
    assert_eq!(
        env_var(&c, "C").as_deref(),
        Some("g1"),
        "global ARG re-declared in the stage"
    );
    assert_eq!(
        env_var(&c, "D").as_deref(),
        Some("default"),
        "stage ARG default"
    );
    assert_eq!(
        env_var(&c, "E").as_deref(),
        Some("cli"),
        "--build-arg wins over the default"
    );
    assert_eq!(env_var(&c, "SHADOW").as_deref(), Some("env-value"));
    assert_eq!(
        env_var(&c, "F").as_deref(),
        Some("env-value"),
        "ENV wins over ARG"
    );

    let cfg = &c["config"];
    assert_eq!(cfg["Labels"]["l1"], "v1");
    assert_eq!(cfg["Labels"]["l 2"], "v 2");
    assert_eq!(
        cfg["ExposedPorts"],
        json!({"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}, "53/udp": {}})
    );
    assert_eq!(cfg["Volumes"], json!({"/data": {}, "/logs": {}}));
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(
        cfg["Healthcheck"],
        json!({
            "Test": ["CMD", "/bin/check", "x"],
            "Interval": 5_000_000_000u64,
            "Timeout": 2_000_000_000u64,
            "StartPeriod": 1_000_000_000u64,
            "Retries": 4
        })
    );
    assert_eq!(
        c["author"], "Jane <jane@example.com>",
        "MAINTAINER sets author"
    );
    assert_eq!(cfg["User"], "app");
    assert_eq!(cfg["WorkingDir"], "/a/b", "relative WORKDIRs chain");
    assert_eq!(cfg["Shell"], json!(["/bin/bash", "-c"]));
    assert_eq!(
        cfg["Cmd"],
        json!(["/bin/bash", "-c", "echo hi"]),
        "shell form uses SHELL"
    );
}

#[test]
fn args_carry_into_a_stage_built_from_a_stage_and_entrypoint_resets_only_an_inherited_cmd() {
    let b = build_fixture();
    let second = read_config(&b.out, "second");
    assert_eq!(
        env_var(&second, "G").as_deref(),
        Some("g1-default"),
        "a stage FROM `first` starts with the ARG values of `first` (BuildKit)"
    );
    assert_eq!(
        env_var(&second, "A").as_deref(),
        Some("two"),
        "ENV is inherited"
    );
    let cfg = &second["config"];
    assert_eq!(cfg["Entrypoint"], json!(["/ep"]));
    assert!(
        cfg["Cmd"].is_null(),
        "ENTRYPOINT resets the inherited CMD: {cfg}"
    );
    assert_eq!(cfg["Healthcheck"]["Test"], json!(["NONE"]));

    let third = read_config(&b.out, "third");
    assert_eq!(third["config"]["Entrypoint"], json!(["/ep2"]));
    assert_eq!(
        third["config"]["Cmd"],
        json!(["c"]),
        "a CMD set in the same stage survives ENTRYPOINT"
    );
}

#[test]
fn workdir_is_created_owned_by_the_user() {
    let b = build_fixture();
    for d in ["a", "a/b"] {
        let m = std::fs::metadata(b.fs.join("first").join(d)).unwrap();
        assert!(m.is_dir());
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "/{d} owned by USER app");
    }
}

#[test]
fn history_has_one_non_empty_entry_per_layer() {
    let b = build_fixture();
    for target in ["first", "second", "third"] {
        let c = read_config(&b.out, target);
        let m = oci::manifest(&b.out, target);
        let history = c["history"].as_array().unwrap();
        let non_empty: Vec<&Value> = history
            .iter()
            .filter(|h| h["empty_layer"] != true)
            .collect();
        assert_eq!(
            non_empty.len(),
            m["layers"].as_array().unwrap().len(),
            "{target}: {history:?}"
        );
        assert_eq!(
            c["rootfs"]["diff_ids"].as_array().unwrap().len(),
            non_empty.len()
        );
        for h in history {
            let by = h["created_by"].as_str().unwrap_or_default();
            let is_meta = ["ENV", "LABEL", "EXPOSE", "CMD", "USER", "ARG", "VOLUME"]
                .iter()
                .any(|k| by.starts_with(k));
            if is_meta {
                assert_eq!(h["empty_layer"], true, "{target}: {h}");
            }
        }
    }
    let first = read_config(&b.out, "first");
    let layer_steps: Vec<&str> = first["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        layer_steps.len(),
        3,
        "COPY etc/, WORKDIR a, WORKDIR b: {layer_steps:?}"
    );
}

#[test]
fn onbuild_is_recorded_and_triggered_by_a_later_build() {
    let dir = scratch();
    let store = dir.path().join("store");
    let a = dir.path().join("a");
    write_tree(
        &a,
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY a.txt /a.txt\nONBUILD COPY trigger.txt /trigger.txt\n",
            ),
            ("a.txt", "a\n"),
        ],
    );
    let a_out = dir.path().join("a-out");
    build(
        &store,
        &a,
        &[
            "--tag",
            "localhost/onbuild-a:1",
            "--output",
            &format!("type=oci,dest={},tar=false", a_out.display()),
        ],
    )
    .success();
    let ca = read_config(&a_out, "1");
    assert_eq!(
        ca["config"]["OnBuild"],
        json!(["COPY trigger.txt /trigger.txt"])
    );

    let b = dir.path().join("b");
    write_tree(
        &b,
        &[
            (
                "Dockerfile",
                "FROM localhost/onbuild-a:1\nCOPY b.txt /b.txt\n",
            ),
            ("b.txt", "b\n"),
            ("trigger.txt", "triggered\n"),
        ],
    );
    let b_out = dir.path().join("b-out");
    let b_fs = dir.path().join("b-fs");
    build(
        &store,
        &b,
        &[
            "--tag",
            "localhost/onbuild-b:1",
            "--output",
            &format!("type=oci,dest={},tar=false", b_out.display()),
            "--output",
            &format!("type=local,dest={}", b_fs.display()),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(b_fs.join("trigger.txt")).unwrap(),
        "triggered\n"
    );
    assert_eq!(std::fs::read_to_string(b_fs.join("a.txt")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(b_fs.join("b.txt")).unwrap(), "b\n");
    let cb = read_config(&b_out, "1");
    let onbuild = &cb["config"]["OnBuild"];
    assert!(
        onbuild.is_null() || onbuild == &json!([]),
        "triggers are consumed: {onbuild}"
    );
}
