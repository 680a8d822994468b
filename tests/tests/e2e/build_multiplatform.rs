//! Multi-platform builds (`--platform linux/amd64,linux/arm64`): one image index per target,
//! pushed and written as OCI layouts, read back with independent tools (skopeo, umoci, Docker);
//! arm64 RUN steps through QEMU registered in binfmt_misc; the cross-compilation pattern (a
//! stage on `$BUILDPLATFORM`) built once and natively; the cache of every platform exported and
//! imported; and the refusals BuildKit makes too.
//!
//! The foreign base is Debian's arm64 busybox-static, unpacked and built FROM scratch by rbuild
//! beside the host's busybox as one two-platform index (`rbuild_tests::multiarch`).

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, metadata, write_tree};
use rbuild_tests::multiarch::registry_with_two_platform_base;
use rbuild_tests::registry_http::skopeo_raw;
use rbuild_tests::{have_tool, oci, rbuild, run, scratch};

const BOTH: &str = "linux/amd64,linux/arm64";

fn setup(dir: &Path, repo: &str) -> Option<(String, String)> {
    registry_with_two_platform_base(dir, repo)
}

/// The platforms of an index's entries, as `os/arch`.
fn platforms_of(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// Copies one platform of `reference` into an OCI layout with skopeo, unpacks it with umoci and
/// returns the bundle's root filesystem.
fn unpack_platform(dir: &Path, reference: &str, arch: &str) -> std::path::PathBuf {
    let layout = dir.join(format!("layout-{arch}"));
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--override-arch",
        arch,
        &format!("docker://{reference}"),
        &format!("oci:{}:{arch}", layout.display()),
    ]))
    .success();
    let bundle = dir.join(format!("bundle-{arch}"));
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{arch}", layout.display()))
        .arg(&bundle))
    .success();
    bundle.join("rootfs")
}

#[test]
fn a_two_platform_build_pushes_one_index_and_each_image_runs_its_own_machine() {
    let dir = scratch();
    let Some((reg, base)) = setup(dir.path(), "e2e-mp-push") else {
        return;
    };
    if !have_tool("umoci") {
        return;
    }
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM {base}\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n"),
        )],
    );
    let name = format!("{reg}/e2e-mp-push/app:1");
    let meta = dir.path().join("meta.json");
    let r = build(
        &dir.path().join("store"),
        &ctx,
        &[
            "--platform",
            BOTH,
            "--tag",
            &name,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--annotation",
            "index:org.opencontainers.image.description=two platforms",
        ],
    )
    .success();
    // BuildKit's progress labels name the platform of each stage.
    assert!(
        r.stderr
            .contains("[linux/arm64 stage-0 2/2] RUN uname -m > /arch"),
        "{}",
        r.stderr
    );

    // One index, a manifest per platform, in --platform order, with the index annotation.
    let index = skopeo_raw(&name);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"]);
    assert_eq!(
        index["annotations"]["org.opencontainers.image.description"],
        "two platforms"
    );
    // --metadata-file names the index, as BuildKit's does.
    let m = metadata(&meta);
    let pushed = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{name}"),
    ]))
    .success();
    let index_digest = m["containerimage.digest"].as_str().unwrap();
    assert_eq!(pushed.stdout.trim(), index_digest, "the pushed index");
    assert!(m.get("containerimage.config.digest").is_none(), "{m}");

    // Each platform's image says its own machine: unpacked by umoci, and run (the arm64 one
    // through the kernel's binfmt_misc, as any arm64 binary here).
    for (arch, machine) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let rootfs = unpack_platform(dir.path(), &name, arch);
        assert_eq!(
            std::fs::read_to_string(rootfs.join("arch")).unwrap(),
            format!("{machine}\n"),
            "{arch}"
        );
        let ran = run(Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/uname", "-m"]))
        .success();
        assert_eq!(ran.stdout.trim(), machine);
        let config = serde_json::from_str::<serde_json::Value>(
            &run(Command::new("skopeo").args([
                "inspect",
                "--tls-verify=false",
                "--config",
                "--override-arch",
                arch,
                &format!("docker://{name}"),
            ]))
            .success()
            .stdout,
        )
        .unwrap();
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
    }

    // Pushed by digest (buildx's `push-by-digest=true`): the index is there under its digest,
    // with no tag, and the metadata names it once.
    let by_digest = format!("{reg}/e2e-mp-push/by-digest");
    let meta2 = dir.path().join("meta2.json");
    build(
        &dir.path().join("store"),
        &ctx,
        &[
            "--platform",
            BOTH,
            "--output",
            &format!("type=image,name={by_digest},push-by-digest=true,push=true"),
            "--metadata-file",
            meta2.to_str().unwrap(),
        ],
    )
    .success();
    let m2 = metadata(&meta2);
    let d2 = m2["containerimage.digest"].as_str().unwrap();
    assert_eq!(m2["rbuild.pushed"][0], format!("{by_digest}@{d2}"), "{m2}");
    assert_eq!(
        platforms_of(&skopeo_raw(&format!("{by_digest}@{d2}"))),
        ["linux/amd64", "linux/arm64"]
    );

    // skopeo copy --all round-trips the index, byte for byte.
    let copied = format!("{reg}/e2e-mp-push/copy:1");
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{name}"),
        &format!("docker://{copied}"),
    ]))
    .success();
    assert_eq!(skopeo_raw(&copied), index);

    // Docker pulls each platform, where an engine is here.
    if rbuild_tests::differential::buildkit::unavailable().is_none() {
        let d = rbuild_tests::differential::buildkit::Dockerd::start(&dir.path().join("docker"))
            .unwrap_or_else(|e| panic!("{e}"));
        for arch in ["amd64", "arm64"] {
            let platform = format!("linux/{arch}");
            run(d
                .docker()
                .args(["pull", "-q", "--platform", &platform, &name]))
            .success();
            let inspected =
                run(d
                    .docker()
                    .args(["image", "inspect", "--format", "{{.Architecture}}", &name]))
                .success();
            assert_eq!(inspected.stdout.trim(), arch);
        }
    }
}

/// The cross-compilation pattern: a builder stage on `$BUILDPLATFORM` runs natively for every
/// target (its steps before `ARG TARGETARCH` are the same step, built once), reads the target
/// from `TARGETARCH`, and the final stage of each platform copies its own result.
#[test]
fn the_build_platform_stage_runs_natively_and_its_shared_steps_are_built_once() {
    let dir = scratch();
    let Some((_reg, base)) = setup(dir.path(), "e2e-mp-cross") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM --platform=$BUILDPLATFORM {base} AS build\n\
                 RUN echo SHARED\"\"RAN && uname -m > /built-on\n\
                 ARG TARGETARCH\n\
                 RUN echo \"$TARGETARCH\" > /target\n\
                 FROM {base}\n\
                 COPY --from=build /built-on /target /\n\
                 RUN uname -m > /runs-on\n"
            ),
        )],
    );
    let store = dir.path().join("store");
    let out = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &[
            "--platform",
            BOTH,
            "--no-cache",
            "--output",
            &format!("type=local,dest={}", out.display()),
        ],
    )
    .success();
    // The shared step's output appears once: the other platform waited and took it.
    assert_eq!(r.stderr.matches("SHAREDRAN").count(), 1, "{}", r.stderr);
    // Once TARGETARCH is in scope the builder's steps differ, and BuildKit labels them so.
    assert!(
        r.stderr
            .contains("[linux/amd64->arm64 build 3/3] RUN echo \"$TARGETARCH\" > /target"),
        "{}",
        r.stderr
    );
    // BuildKit's local exporter layout for several platforms: a directory per platform.
    for (dir_name, target, runs_on) in [
        ("linux_amd64", "amd64", "x86_64"),
        ("linux_arm64", "arm64", "aarch64"),
    ] {
        let read = |f: &str| std::fs::read_to_string(out.join(dir_name).join(f)).unwrap();
        assert_eq!(read("built-on"), "x86_64\n", "{dir_name}: built natively");
        assert_eq!(read("target"), format!("{target}\n"));
        assert_eq!(read("runs-on"), format!("{runs_on}\n"));
    }

    // `rbuild check` prints the plan per platform, with each stage's platform.
    let c = run(rbuild(&store)
        .arg("check")
        .arg(&ctx)
        .args(["--platform", BOTH]))
    .success();
    assert!(c.stdout.contains("Platform: linux/arm64"), "{}", c.stdout);
    assert!(
        c.stdout
            .contains(&format!("[0] build (FROM {base}) on linux/amd64 - needed")),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout.contains(&format!(
            "[1] stage-1 (FROM {base}) on linux/arm64 - needed"
        )),
        "{}",
        c.stdout
    );
}

#[test]
fn a_fresh_runner_importing_the_cache_hits_every_platform_and_downloads_no_layer() {
    let dir = scratch();
    let Some((reg, base)) = setup(dir.path(), "e2e-mp-cache") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM --platform=$BUILDPLATFORM {base} AS build\n\
                     ARG TARGETARCH\n\
                     COPY src /src\n\
                     RUN cat /src > /out-$TARGETARCH\n\
                     FROM {base}\n\
                     ARG TARGETARCH\n\
                     COPY --from=build /out-$TARGETARCH /out\n\
                     RUN uname -m >> /out\n"
                ),
            ),
            ("src", "source\n"),
        ],
    );
    let name = format!("{reg}/e2e-mp-cache/app:1");
    let cache = format!("type=registry,ref={reg}/e2e-mp-cache/cache:1,mode=max");
    let first_meta = dir.path().join("first.json");
    build(
        &dir.path().join("store1"),
        &ctx,
        &[
            "--platform",
            BOTH,
            "--tag",
            &name,
            "--push",
            "--cache-to",
            &cache,
            "--metadata-file",
            first_meta.to_str().unwrap(),
        ],
    )
    .success();
    let meta = dir.path().join("second.json");
    let r = build(
        &dir.path().join("store2"),
        &ctx,
        &[
            "--platform",
            BOTH,
            "--tag",
            &name,
            "--push",
            "--cache-from",
            &format!("type=registry,ref={reg}/e2e-mp-cache/cache:1"),
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    )
    .success();
    // Every step of both platforms from the cache: the summary's CACHED column is n/n.
    let summary = r
        .stderr
        .lines()
        .find(|l| l.starts_with("stage-1 "))
        .unwrap_or_else(|| panic!("no summary in {}", r.stderr));
    let cached = summary.split_whitespace().last().unwrap();
    let (hit, total) = cached.split_once('/').unwrap();
    assert_eq!(hit, total, "{summary}\n{}", r.stderr);
    assert_eq!(total, "12", "both platforms' steps: {summary}");
    assert!(!r.stderr.contains("cache miss"), "{}", r.stderr);
    let second = metadata(&meta);
    assert_eq!(second["rbuild.cache.imported.bytes"], 0, "{second}");
    assert_eq!(
        second["containerimage.digest"],
        metadata(&first_meta)["containerimage.digest"],
        "the same index"
    );
}

#[test]
fn oci_outputs_of_several_platforms_hold_the_index_and_docker_outputs_are_refused() {
    let dir = scratch();
    let Some((_reg, base)) = setup(dir.path(), "e2e-mp-oci") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", &format!("FROM {base}\nCOPY f /f\n")),
            ("f", "f\n"),
        ],
    );
    let store = dir.path().join("store");
    let layout = dir.path().join("layout");
    build(
        &store,
        &ctx,
        &[
            "--platform",
            BOTH,
            "--tag",
            "app:1",
            "--output",
            &format!("type=oci,dest={},tar=false", layout.display()),
            "--annotation",
            "index-descriptor:org.example.d=on the descriptor",
            "--annotation",
            "manifest[linux/arm64]:org.example.arm=only arm64",
        ],
    )
    .success();
    let top = oci::index(&layout);
    let entries = top["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{top}");
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entries[0]["annotations"]["org.example.d"],
        "on the descriptor"
    );
    let index = oci::blob_json(&layout, entries[0]["digest"].as_str().unwrap());
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"]);
    for (i, arm) in [(0, false), (1, true)] {
        let m = oci::blob_json(&layout, index["manifests"][i]["digest"].as_str().unwrap());
        assert_eq!(
            m["annotations"].get("org.example.arm").is_some(),
            arm,
            "{m}"
        );
    }
    // skopeo reads each platform of the layout.
    if have_tool("skopeo") {
        for arch in ["amd64", "arm64"] {
            let r = run(Command::new("skopeo").args([
                "inspect",
                "--override-arch",
                arch,
                &format!("oci:{}:1", layout.display()),
            ]))
            .success();
            assert!(
                r.stdout.contains(&format!("\"Architecture\": \"{arch}\"")),
                "{}",
                r.stdout
            );
        }
    }

    // A docker archive holds one platform's image: refused before anything is built, as buildx.
    for output in ["type=docker,dest=x.tar", "type=docker"] {
        let r = build(&store, &ctx, &["--platform", BOTH, "--output", output]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("docker exporter does not currently support exporting manifest lists"),
            "{}",
            r.stderr
        );
    }
    let r = build(&store, &ctx, &["--platform", "linux/arm64,linux/aarch64"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--platform linux/arm64 is given twice"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_base_without_the_platform_and_a_missing_emulator_are_clear_errors() {
    let dir = scratch();
    let Some((_reg, base)) = setup(dir.path(), "e2e-mp-errors") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM {base}\nRUN uname -m > /arch\n"),
        )],
    );
    let store = dir.path().join("store");
    // The index has no s390x image: the error names what it has.
    let r = build(&store, &ctx, &["--platform", "linux/amd64,linux/s390x"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("linux/s390x") && r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );

    // No emulator registered (binfmt_misc hidden under an empty tmpfs in a private mount
    // namespace): the arm64 RUN step is refused with what to do; the native one is not run
    // either way.
    if !have_tool("unshare") {
        return;
    }
    let script = format!(
        "mount -t tmpfs none /proc/sys/fs/binfmt_misc && exec \"$0\" build {} --progress plain --platform linux/arm64",
        ctx.display()
    );
    let r = run(Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(rbuild_tests::rbuild_bin())
        .env("RBUILD_STORE", &store)
        .env("RBUILD_REGISTRIES_CONF", "/dev/null")
        .env("NO_COLOR", "1"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("RUN steps for linux/arm64 need QEMU user emulation")
            && r.stderr.contains("rbuild binfmt --install"),
        "{}",
        r.stderr
    );
}

/// BuildKit's rule for an explicit target (`dockerfile2llb`, `!implicitTarget`): the image's
/// config says the target platform even when its stage is on another one; without
/// `--platform` it keeps its base's. Checked by hand with Docker 20.10's BuildKit on this base:
/// `FROM --platform=linux/arm64 …` exports arm64 without `--platform`, amd64 with
/// `--platform linux/amd64`.
#[test]
fn an_explicit_target_platform_labels_the_image_as_buildkit_does() {
    let dir = scratch();
    let Some((_reg, base)) = setup(dir.path(), "e2e-mp-label") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!("FROM --platform=linux/arm64 {base}\nCOPY f /f\n"),
            ),
            ("f", "f\n"),
        ],
    );
    let arm64_manifest = skopeo_raw(&base)["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for (flags, arch) in [
        (&[][..], "arm64"),
        (&["--platform", "linux/amd64"][..], "amd64"),
    ] {
        let layout = dir.path().join(format!("layout-{arch}"));
        let mut args = vec![
            "--tag".to_string(),
            "app:1".into(),
            "--output".into(),
            format!("type=oci,dest={},tar=false", layout.display()),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        build(&dir.path().join("store"), &ctx, &args).success();
        assert_eq!(oci::read_config(&layout, "1")["architecture"], arch);
        // Either way the stage is built on the arm64 image of the base.
        assert_eq!(
            oci::manifest(&layout, "1")["annotations"]["org.opencontainers.image.base.digest"],
            arm64_manifest.as_str()
        );
    }
}

/// Attestations of a two-platform push, as BuildKit lays them out: the index lists both image
/// manifests, then an attestation manifest per platform pointing at its image; each platform's
/// statements name its own manifest, and its SBOM lists its own busybox.
#[test]
fn a_two_platform_push_attests_each_platforms_image() {
    let dir = scratch();
    let Some((reg, base)) = setup(dir.path(), "e2e-mp-attest") else {
        return;
    };
    if !have_tool("jq") {
        return;
    }
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", &format!("FROM {base}\nCOPY f /f\n")),
            ("f", "f\n"),
        ],
    );
    let name = format!("{reg}/e2e-mp-attest/app:1");
    build(
        &dir.path().join("store"),
        &ctx,
        &[
            "--platform",
            BOTH,
            "--tag",
            &name,
            "--push",
            "--sbom=true",
            "--provenance=mode=max",
        ],
    )
    .success();
    let index = skopeo_raw(&name);
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 4, "{index}");
    for (i, arch) in [(0, "amd64"), (1, "arm64")] {
        assert_eq!(m[i]["platform"]["architecture"], arch);
        let att = &m[i + 2];
        assert_eq!(att["platform"]["architecture"], "unknown");
        assert_eq!(
            att["annotations"]["vnd.docker.reference.digest"], m[i]["digest"],
            "{index}"
        );
        let am = skopeo_raw(&format!(
            "{reg}/e2e-mp-attest/app@{}",
            att["digest"].as_str().unwrap()
        ));
        for layer in am["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap();
            let r = rbuild_tests::registry_http::request(
                &reg,
                "GET",
                &format!("/v2/e2e-mp-attest/app/blobs/{digest}"),
                &[],
                b"",
            );
            assert_eq!(r.status, 200);
            let file = dir.path().join(digest.replace(':', "-"));
            std::fs::write(&file, &r.body).unwrap();
            let jq = |filter: &str| {
                run(Command::new("jq").args(["-r", filter]).arg(&file))
                    .success()
                    .stdout
                    .trim()
                    .to_string()
            };
            assert_eq!(
                format!("sha256:{}", jq(".subject[0].digest.sha256")),
                m[i]["digest"].as_str().unwrap()
            );
            assert!(
                jq(".subject[0].name").ends_with(&format!("platform=linux%2F{arch}")),
                "{}",
                jq(".subject[0].name")
            );
            if jq(".predicateType") == "https://slsa.dev/provenance/v1" {
                let deps = jq(".predicate.buildDefinition.resolvedDependencies[].uri");
                assert!(
                    deps.contains(&format!("platform=linux%2F{arch}")),
                    "{arch}: {deps}"
                );
            }
        }
    }
}

/// `rbuild binfmt --install` mounts binfmt_misc for every later process (rbuild's other
/// commands run in a private mount namespace; this one must not): on a runner where nothing
/// mounted it, the next `rbuild` finds the emulator. Run in a mount namespace of its own with
/// binfmt_misc unmounted, so the host's stays as it is.
#[test]
fn binfmt_install_mounts_binfmt_misc_for_the_builds_that_follow() {
    if !have_tool("unshare")
        || !Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists()
        || !rbuild_tests::multiarch::arm64_runs()
    {
        return;
    }
    let script = "umount /proc/sys/fs/binfmt_misc 2>/dev/null; \
                  test ! -e /proc/sys/fs/binfmt_misc/register || exit 3; \
                  \"$0\" binfmt --install arm64 >/dev/null && exec \"$0\" binfmt arm64";
    let r = run(Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(rbuild_tests::rbuild_bin())
        .env("NO_COLOR", "1"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("linux/arm64: emulated by qemu-aarch64"),
        "{}",
        r.stdout
    );
}

/// A step that fails stops the build, as BuildKit cancels the rest of its solve: the other
/// platform, still in a longer step, starts no further step, and the error shown is the step
/// that failed, not the one that stopped because of it.
#[test]
fn a_failed_step_stops_the_other_platform_before_its_next_step() {
    let dir = scratch();
    let store = dir.path().join("store");
    if !rbuild_tests::multiarch::two_platform_busybox(
        dir.path(),
        &store,
        "localhost/mp-cancel:1",
        &[],
    ) || !rbuild_tests::multiarch::arm64_runs()
    {
        return;
    }
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/mp-cancel:1\nARG TARGETARCH\n\
             RUN if [ \"$TARGETARCH\" = amd64 ]; then sleep 3; else echo arm64 fails; exit 3; fi\n\
             RUN echo after-the-failure\n",
        )],
    );
    let r = build(&store, &ctx, &["--platform", "linux/amd64,linux/arm64"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let error = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect::<Vec<_>>();
    assert_eq!(error.len(), 1, "{}", r.stderr);
    assert!(error[0].contains("exited with code 3"), "{}", r.stderr);
    assert!(!error[0].contains("cancelled"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("RUN echo after-the-failure"),
        "the amd64 build went on:\n{}",
        r.stderr
    );
}
