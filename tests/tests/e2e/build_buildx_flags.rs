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
        r.stderr
            .contains("local and tar exporters are incompatible with an image ID file"),
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

/// The line of `/proc/self/limits` for `what` (e.g. "Max open files"): (soft, hard).
fn limits_line(limits: &str, what: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("{what} not in {limits}"));
    let fields: Vec<&str> = line[what.len()..].split_whitespace().collect();
    (fields[0].to_string(), fields[1].to_string())
}

#[test]
fn shm_size_and_ulimits_reach_run_steps_in_namespaces_and_chroot_mode_and_their_keys() {
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    if !rbuild_tests::build::busybox_base(d, &store, "localhost/buildx-flags/busybox:2") {
        return;
    }
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/buildx-flags/busybox:2\n\
             RUN cat /proc/self/limits > /limits && df -k /dev/shm | tail -n 1 > /shm\n",
        )],
    );
    let n = std::cell::Cell::new(0);
    let out = |i: usize| d.join(format!("out-{i}"));
    let with = |flags: &[&str]| {
        n.set(n.get() + 1);
        let mut args = vec![
            "--output".to_string(),
            format!("type=local,dest={}", out(n.get()).display()),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        build(&store, &ctx, &args)
    };
    let cached = |r: &rbuild_tests::Run| {
        r.stderr
            .lines()
            .filter(|l| l.starts_with('#') && l.ends_with(" CACHED"))
            .count()
    };
    let shm_kib = |i: usize| -> u64 {
        let line = std::fs::read_to_string(out(i).join("shm")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let limits = |i: usize| std::fs::read_to_string(out(i).join("limits")).unwrap();
    // 1: defaults: Docker's 64 MiB /dev/shm.
    with(&["--isolation", "namespaces"]).success();
    assert_eq!(shm_kib(1), 65536);
    // 2: --shm-size 32m and two ulimits (a later nofile wins, as in docker).
    let flags = [
        "--isolation",
        "namespaces",
        "--shm-size",
        "32m",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "core=0:-1",
    ];
    let r = with(&flags).success();
    assert_eq!(cached(&r), 0, "other flags, another RUN key:\n{}", r.stderr);
    assert_eq!(shm_kib(2), 32768);
    let l = limits(2);
    assert_eq!(
        limits_line(&l, "Max open files"),
        ("1024".into(), "2048".into())
    );
    assert_eq!(
        limits_line(&l, "Max core file size"),
        ("0".into(), "unlimited".into())
    );
    // 3: the same flags: cached. 4, 5: one value changed: not.
    assert_eq!(cached(&with(&flags).success()), 1);
    let mut other = flags;
    other[3] = "16m";
    assert_eq!(cached(&with(&other).success()), 0);
    assert_eq!(shm_kib(4), 16384);
    let mut other = flags;
    other[7] = "nofile=1024:4096";
    assert_eq!(cached(&with(&other).success()), 0);
    assert_eq!(
        limits_line(&limits(5), "Max open files"),
        ("1024".into(), "4096".into())
    );
    // Chroot mode sets ulimits too (its root has no /proc: the shell's ulimit reads them).
    let chroot_ctx = d.join("chroot-ctx");
    write_tree(
        &chroot_ctx,
        &[(
            "Dockerfile",
            "FROM localhost/buildx-flags/busybox:2\nRUN (ulimit -Sn; ulimit -Hn) > /nofile\n",
        )],
    );
    let chroot_out = d.join("chroot-out");
    build(
        &store,
        &chroot_ctx,
        &[
            "--isolation",
            "chroot",
            "--ulimit",
            "nofile=512:1024",
            "--output",
            &format!("type=local,dest={}", chroot_out.display()),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(chroot_out.join("nofile")).unwrap(),
        "512\n1024\n"
    );
    // A /dev/shm size chroot mode cannot give: a usage error naming the mode.
    let r = with(&["--isolation", "chroot", "--shm-size", "128m"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--isolation chroot"), "{}", r.stderr);
    // Docker's parse errors, as usage errors.
    for (bad, says) in [
        (["--ulimit", "files=1"], "invalid ulimit type"),
        (
            ["--ulimit", "nofile=10:5"],
            "soft limit must be less than or equal",
        ),
        (["--shm-size", "64x"], "invalid size"),
    ] {
        let r = with(&bad);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
    }
}

/// BuildKit's `client.SolveStatus` types (`client/graph.go`, minus the protobuf-typed fields
/// rbuild never writes), decoded by Go's own `encoding/json` with unknown fields refused: the
/// stream must parse as buildx's consumers parse it (times, base64 data). Prints one line per
/// finished vertex and per log.
const GO_SOLVE_STATUS: &str = r#"package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

type Vertex struct {
	Digest    string     `json:"digest,omitempty"`
	Inputs    []string   `json:"inputs,omitempty"`
	Name      string     `json:"name,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Completed *time.Time `json:"completed,omitempty"`
	Cached    bool       `json:"cached,omitempty"`
	Error     string     `json:"error,omitempty"`
}

type VertexStatus struct {
	ID        string     `json:"id"`
	Vertex    string     `json:"vertex,omitempty"`
	Name      string     `json:"name,omitempty"`
	Total     int64      `json:"total,omitempty"`
	Current   int64      `json:"current"`
	Timestamp time.Time  `json:"timestamp"`
	Started   *time.Time `json:"started,omitempty"`
	Completed *time.Time `json:"completed,omitempty"`
}

type VertexLog struct {
	Vertex    string    `json:"vertex,omitempty"`
	Stream    int       `json:"stream,omitempty"`
	Data      []byte    `json:"data"`
	Timestamp time.Time `json:"timestamp"`
}

type VertexWarning struct {
	Vertex string   `json:"vertex,omitempty"`
	Level  int      `json:"level,omitempty"`
	Short  []byte   `json:"short,omitempty"`
	Detail [][]byte `json:"detail,omitempty"`
	URL    string   `json:"url,omitempty"`
}

type SolveStatus struct {
	Vertexes []*Vertex        `json:"vertexes,omitempty"`
	Statuses []*VertexStatus  `json:"statuses,omitempty"`
	Logs     []*VertexLog     `json:"logs,omitempty"`
	Warnings []*VertexWarning `json:"warnings,omitempty"`
}

func main() {
	names := map[string]string{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var s SolveStatus
		if err := dec.Decode(&s); err != nil {
			fmt.Println("DECODE ERROR", err, line)
			os.Exit(1)
		}
		for _, v := range s.Vertexes {
			names[v.Digest] = v.Name
			if v.Started == nil {
				fmt.Println("NO START", v.Name)
				os.Exit(1)
			}
			if v.Completed != nil {
				fmt.Printf("vertex %q cached=%v error=%q\n", v.Name, v.Cached, v.Error)
			}
		}
		for _, l := range s.Logs {
			fmt.Printf("log %q %d %q\n", names[l.Vertex], l.Stream, string(l.Data))
		}
	}
}
"#;

#[test]
fn buildkit_progress_rawjson_is_buildkits_status_stream_as_go_decodes_it() {
    if !rbuild_tests::have_tool("go") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let store = d.join("store");
    if !rbuild_tests::build::busybox_base(d, &store, "localhost/buildx-flags/busybox:3") {
        return;
    }
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/buildx-flags/busybox:3\nRUN echo hello && echo oops >&2\n",
        )],
    );
    let go_dir = d.join("go");
    std::fs::create_dir(&go_dir).unwrap();
    std::fs::write(go_dir.join("main.go"), GO_SOLVE_STATUS).unwrap();
    // No --progress: BUILDKIT_PROGRESS decides, as in buildx.
    let raw = |extra: &[&str]| {
        rbuild_tests::run(
            rbuild_tests::rbuild(&store)
                .arg("build")
                .arg(&ctx)
                .args(extra)
                .env("BUILDKIT_PROGRESS", "rawjson"),
        )
        .success()
    };
    let decode = |stderr: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("go")
            .args(["run", "main.go"])
            .current_dir(&go_dir)
            .env("GO111MODULE", "off")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stderr.as_bytes())
            .unwrap();
        rbuild_tests::Run::from_output(child.wait_with_output().unwrap()).success()
    };
    let first = raw(&[]);
    // Every line of the stream is one JSON object (stderr has nothing else on success).
    for line in first.stderr.lines() {
        assert!(line.starts_with('{'), "{line}\n{}", first.stderr);
    }
    let go = decode(&first.stderr).stdout;
    let run = "[stage-0 2/2] RUN echo hello && echo oops >&2";
    assert!(go.contains(&format!("log {run:?} 1 \"hello\\n\"")), "{go}");
    assert!(go.contains(&format!("log {run:?} 2 \"oops\\n\"")), "{go}");
    assert!(
        go.contains(&format!("vertex {run:?} cached=false error=\"\"")),
        "{go}"
    );
    let again = decode(&raw(&[]).stderr).stdout;
    assert!(
        again.contains(&format!("vertex {run:?} cached=true")),
        "{again}"
    );
    // An explicit --progress wins over BUILDKIT_PROGRESS.
    let plain = raw(&["--progress", "plain"]);
    assert!(
        plain.stderr.lines().any(|l| l.starts_with("#1 ")),
        "{}",
        plain.stderr
    );
    // buildx's `none`: nothing on either stream.
    let none = rbuild_tests::run(
        rbuild_tests::rbuild(&store)
            .arg("build")
            .arg(&ctx)
            .env("BUILDKIT_PROGRESS", "none"),
    )
    .success();
    assert_eq!((none.stdout.as_str(), none.stderr.as_str()), ("", ""));
    // A mode BUILDKIT_PROGRESS cannot be: a usage error naming it.
    let bad = rbuild_tests::run(
        rbuild_tests::rbuild(&store)
            .arg("build")
            .arg(&ctx)
            .env("BUILDKIT_PROGRESS", "fancy"),
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("BUILDKIT_PROGRESS"), "{}", bad.stderr);
}

/// `--build-context NAME=docker-image://REF|oci-layout://DIR:TAG`, as buildx: the image stands
/// in for `FROM NAME`, for `COPY --from=NAME`, and for a stage `AS NAME`, which is then not built
/// at all (its `RUN false` never runs). A directory that is not there is refused, naming the flag.
#[test]
fn build_contexts_stand_in_for_images_and_stages() {
    let dir = rbuild_tests::scratch();
    let d = dir.path();
    let store = d.join("store");
    if !rbuild_tests::build::busybox_base(d, &store, "localhost/rbuild-test/named:1") {
        return;
    }
    // An OCI layout of the same base, for oci-layout://.
    let layout = d.join("layout");
    let ctx0 = d.join("ctx0");
    rbuild_tests::build::write_tree(
        &ctx0,
        &[("Dockerfile", "FROM localhost/rbuild-test/named:1\n")],
    );
    rbuild_tests::run(
        rbuild_tests::build::build_cmd(&store, &ctx0)
            .args(["--tag", "localhost/named-layout:v1"])
            .args([
                "--output",
                &format!("type=oci,dest={},tar=false", layout.display()),
            ]),
    )
    .success();
    let ctx = d.join("ctx");
    rbuild_tests::build::write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM nosuch.invalid/never:1 AS tools\nRUN false\n\
             FROM alpine:3.18\n\
             COPY --from=tools /bin/busybox /from-stage\n\
             COPY --from=extra /bin/busybox /from-layout\n\
             RUN test -x /bin/busybox && cmp /bin/busybox /from-stage && cmp /bin/busybox /from-layout\n",
        )],
    );
    let out = d.join("out");
    let r = rbuild_tests::run(
        rbuild_tests::build::build_cmd(&store, &ctx)
            .args([
                "--build-context",
                "alpine:3.18=docker-image://localhost/rbuild-test/named:1",
            ])
            .args([
                "--build-context",
                "tools=docker-image://localhost/rbuild-test/named:1",
            ])
            .args([
                "--build-context",
                &format!("extra=oci-layout://{}:v1", layout.display()),
            ])
            .args(["--output", &format!("type=local,dest={}", out.display())]),
    )
    .success();
    assert!(out.join("from-stage").is_file(), "{}", r.stderr);
    assert!(out.join("from-layout").is_file(), "{}", r.stderr);
    assert!(
        !r.stderr.contains("RUN false"),
        "the replaced stage ran:\n{}",
        r.stderr
    );

    // A directory that is not there fails before the build, as buildx's `os.Stat` does.
    let r = rbuild_tests::run(
        rbuild_tests::build::build_cmd(&store, &ctx)
            .current_dir(d)
            .args(["--build-context", "tools=./nosuch"]),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--build-context tools=./nosuch: failed to get build context tools: stat")
            && r.stderr.contains("No such file or directory"),
        "{}",
        r.stderr
    );
}

/// `--annotation` as `docker buildx build --annotation` places it, by BuildKit's exporter rules
/// (see `builder/src/cli/annotation.rs`): a manifest annotation is in the pushed manifest (so
/// in its digest) and wins over rbuild's own `org.opencontainers.image.*` of the same key; a
/// manifest-descriptor one is on the OCI layout's `index.json` entry only (the digest stays);
/// another platform's applies to nothing; none is a label or in a cache key; index levels are a
/// usage error, since a single-platform build writes no index.
#[test]
fn annotations_land_on_the_manifest_or_its_descriptor_and_never_in_the_cache_key() {
    let Some(reg) = rbuild_tests::test_registry() else {
        eprintln!("SKIPPED: no test registry (bash tests/run.sh starts one)");
        return;
    };
    if !rbuild_tests::have_tool("skopeo") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x\n")],
    );
    let store = d.join("store");
    let repo = format!("{reg}/rbuild-e2e/annotation-{}", std::process::id());
    let cached = |r: &rbuild_tests::Run| {
        r.stderr
            .lines()
            .filter(|l| l.starts_with('#') && l.ends_with(" CACHED"))
            .count()
    };
    // Builds with `annotations`, pushed as REPO:n and written to the layout d/n; returns the
    // run, the pushed manifest and the layout's index.json entry.
    let with = |n: &str, annotations: &[&str]| {
        let out = d.join(n);
        let tag = format!("{repo}:{n}");
        let mut args = vec![
            "--tag".to_string(),
            tag.clone(),
            "--push".to_string(),
            "--output".to_string(),
            format!("type=oci,dest={},tar=false", out.display()),
            "--output".to_string(),
            format!("type=docker,dest={}.tar", out.display()),
        ];
        for a in annotations {
            args.extend(["--annotation".to_string(), a.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = build(&store, &ctx, &args).success();
        let raw = rbuild_tests::run(
            std::process::Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{tag}")),
        )
        .success();
        let pushed: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
        let entry = oci::index(&out)["manifests"][0].clone();
        assert_eq!(
            entry["digest"].as_str(),
            Some(oci::manifest_digest(&out, n).as_str())
        );
        (r, pushed, entry)
    };
    let (_, plain, plain_entry) = with("0", &[]);
    let digest = |e: &serde_json::Value| e["digest"].as_str().unwrap().to_string();

    let (r, pushed, entry) = with(
        "1",
        &["manifest-descriptor:org.example.desc=on the descriptor"],
    );
    assert_eq!(cached(&r), 1, "{}", r.stderr);
    assert_eq!(
        digest(&entry),
        digest(&plain_entry),
        "a descriptor annotation"
    );
    assert_eq!(pushed, plain);
    assert_eq!(
        entry["annotations"]["org.example.desc"],
        "on the descriptor"
    );
    // The docker archive's index.json entry too (BuildKit's docker exporter with OCI types,
    // its default since compatibility version 0.31).
    let docker_index = rbuild_tests::run(
        std::process::Command::new("tar")
            .arg("-xOf")
            .arg(d.join("1.tar"))
            .arg("index.json"),
    )
    .success();
    let docker_index: serde_json::Value = serde_json::from_str(&docker_index.stdout).unwrap();
    assert_eq!(
        docker_index["manifests"][0]["annotations"]["org.example.desc"], "on the descriptor",
        "{docker_index}"
    );

    let (r, pushed, entry) = with(
        "2",
        &[
            "org.example.plain=p=1",
            "manifest,manifest-descriptor:org.example.both=b",
            "manifest[linux/riscv64]:org.example.other=not this platform",
            "manifest:org.opencontainers.image.created=the user's",
        ],
    );
    assert_eq!(cached(&r), 1, "{}", r.stderr);
    assert_ne!(
        digest(&entry),
        digest(&plain_entry),
        "a manifest annotation"
    );
    let a = &pushed["annotations"];
    assert_eq!(a["org.example.plain"], "p=1");
    assert_eq!(a["org.example.both"], "b");
    assert_eq!(a["org.opencontainers.image.created"], "the user's");
    assert!(a.get("org.example.other").is_none(), "{pushed}");
    assert_eq!(entry["annotations"]["org.example.both"], "b");
    assert!(entry["annotations"].get("org.example.plain").is_none());
    // Annotations are not labels.
    let labels = &config(&d.join("2"), "2")["config"]["Labels"];
    assert!(labels.get("org.example.plain").is_none(), "{labels}");

    // Usage errors, before anything is built.
    for (bad, says) in [
        ("index:org.example.i=1", "single platform"),
        ("manifest,index-descriptor:k=v", "single platform"),
        ("layer:k=v", "unknown annotation type"),
        ("novalue", "expected KEY=VALUE"),
    ] {
        let r = build(
            &store,
            &ctx,
            &[
                "--tag",
                &format!("{repo}:bad"),
                "--push",
                "--annotation",
                bad,
            ],
        );
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("--annotation"), "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{bad}: {}", r.stderr);
    }
}
