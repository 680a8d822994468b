//! rbuild where CI runs it: the rbuild image (`image/Dockerfile`, built by the rbuild under
//! test) in `docker run` with Docker's default capabilities and seccomp profile — no
//! `--privileged`, no added capability — as a GitLab Kubernetes-executor pod, a GitHub
//! container job or a Kubernetes Job runs it. RUN steps there get `--isolation chroot` (auto),
//! and the image must be the one a privileged `namespaces` build makes, byte for byte.
//!
//! The CI recipes of `docs/ci/` are read as YAML and their shell lines run as they are, with the
//! CI system's variables set to test values: the GitLab job's `script:` and the GitHub container
//! job's `run:` steps in the rbuild image, the GitHub on-runner job's steps on this machine, the
//! Kubernetes Job's container arguments in the rbuild image with the Job's volumes. Each runs
//! twice, in a fresh container (a fresh runner, an empty store): the second run must be all
//! cache hits from the registry cache the first one exported, and push the same image.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build::{build_cmd, metadata, write_tree, EPOCH};
use rbuild_tests::container::{self, Engine};
use rbuild_tests::{run, scratch, tools_required, Run};
use yaml_rust2::{Yaml, YamlLoader};

/// Whether the container tests can run; under `RBUILD_REQUIRE_TOOLS=1` (tests/run.sh) they must.
fn engine() -> Option<Engine> {
    if let Some(why) = container::unavailable() {
        assert!(!tools_required(), "{why}");
        eprintln!("SKIPPED: {why}");
        return None;
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: starting dockerd needs root");
        return None;
    }
    Some(Engine::start().unwrap_or_else(|e| panic!("{e}")))
}

/// RUN, COPY --chown, USER, a cache mount, a secret, a whiteout and an opaque directory, a
/// COPY --from another stage.
const DOCKERFILE: &str = "ARG BASE\n\
FROM ${BASE} AS builder\n\
RUN mkdir /out && echo artifact > /out/artifact\n\
FROM ${BASE}\n\
COPY --chown=1000:1000 f.txt /home/app/f.txt\n\
RUN mkdir -p /data/appdir /data/gone /data/opq/sub && echo x > /data/gone/f \
    && echo o > /data/opq/sub/o && chown app:app /data/appdir\n\
RUN rm -r /data/gone && rm -r /data/opq && mkdir /data/opq && echo n > /data/opq/new\n\
RUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = s3cret && echo used > /data/secret-used\n\
RUN --mount=type=cache,target=/var/cache/app echo hit >> /var/cache/app/log && cp /var/cache/app/log /data/cache-seen\n\
COPY --from=builder /out/artifact /data/artifact\n\
USER app\n\
RUN echo \"$(id -u):$(id -g)\" > /data/appdir/who && cat /home/app/f.txt >> /data/appdir/who\n";

#[test]
fn the_rbuild_image_in_docker_run_with_the_default_profile_builds_the_namespaces_image() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", DOCKERFILE), ("f.txt", "from the context\n")],
    );
    std::fs::write(d.join("tok"), "s3cret").unwrap();
    let base = format!("BASE={}", imgs.busybox);

    // The reference: rbuild on this machine as root with CAP_SYS_ADMIN.
    let host_md = d.join("host.json");
    let host_tag = format!("{}/rbuild-e2e/in-container:host", imgs.registry);
    reference_build(d, &ctx, &base, &host_tag, &host_md, &[]);

    // The same in the rbuild image, as a CI job runs it (the entrypoint is rbuild).
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let tag = format!("{}/rbuild-e2e/in-container:docker", imgs.registry);
    let r = run(engine
        .run_cmd()
        .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
        .args(volume(&ctx, "/workspace"))
        .args(volume(&d.join("tok"), "/run/tok"))
        .args(volume(&out, "/out"))
        .arg(&imgs.rbuild)
        .args(["--progress", "plain", "--build-arg", &base])
        .args(["--secret", "id=tok,src=/run/tok", "--tag", &tag, "--push"])
        .args(["--metadata-file", "/out/md.json", "."]))
    .success();
    assert!(
        r.stderr
            .contains("--isolation chroot (auto: namespaces are not allowed here"),
        "{}",
        r.stderr
    );
    let md = metadata(&out.join("md.json"));
    assert_eq!(md["rbuild.isolation"], "chroot");
    assert_eq!(
        md["containerimage.digest"],
        metadata(&host_md)["containerimage.digest"],
        "the image built in the container differs from the namespaces build:\n{}",
        r.stderr
    );
}

/// The reference: rbuild on this machine as root with CAP_SYS_ADMIN (`--isolation namespaces`),
/// with the `tok` secret of `d`, pushed as `tag`, its metadata in `md`.
fn reference_build(d: &Path, ctx: &Path, base: &str, tag: &str, md: &Path, extra: &[&str]) {
    run(build_cmd(&d.join("store"), ctx)
        .args(["--isolation", "namespaces", "--build-arg", base])
        .args([
            "--secret",
            &format!("id=tok,src={}", d.join("tok").display()),
        ])
        .args([
            "--tag",
            tag,
            "--push",
            "--metadata-file",
            md.to_str().unwrap(),
        ])
        .args(extra))
    .success();
}

/// A repository name no earlier run against the same registry has used (the first pipeline
/// run must find no cache).
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("rbuild-e2e/{name}-{}-{nanos}", std::process::id())
}

/// `-v HOST:CONTAINER`.
fn volume(host: &Path, target: &str) -> [String; 2] {
    ["-v".into(), format!("{}:{target}", host.display())]
}

/// The app the recipes build: a production target with RUN steps and a cache mount, FROM the
/// test busybox base (its default, since the recipes pass no build arguments).
fn recipe_app(dir: &Path, busybox: &str) -> PathBuf {
    let app = dir.join("app");
    write_tree(
        &app,
        &[
            (
                "Dockerfile",
                &format!(
                    "ARG BASE={busybox}\n\
                     FROM ${{BASE}} AS runtime\n\
                     RUN --mount=type=cache,target=/var/cache/deps echo deps > /deps && mkdir -p /srv\n\
                     FROM runtime AS production\n\
                     COPY www/ /srv/www/\n\
                     RUN wc -c /srv/www/index.html > /srv/size\n"
                ),
            ),
            ("www/index.html", "<h1>hello</h1>\n"),
        ],
    );
    app
}

/// Reads `docs/ci/<name>`.
fn recipe(name: &str) -> Yaml {
    let path = rbuild_tests::repo_root().join("docs/ci").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0)
}

fn string_list(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// What a pipeline run left: the build's output and its metadata file.
struct PipelineRun {
    run: Run,
    digest: String,
}

/// Two pipeline runs, each in a fresh checkout of `app` under `dir` (`run-0`, `run-1`) made by
/// `one(n, checkout)`, which leaves its `build.json` there; the second must hit the cache the
/// first exported.
fn two_pipeline_runs(dir: &Path, app: &Path, one: impl Fn(usize, &Path) -> Run) {
    let runs: Vec<PipelineRun> = (0..2)
        .map(|n| {
            let ws = dir.join(format!("run-{n}"));
            checkout(app, &ws);
            let run = one(n, &ws);
            PipelineRun {
                digest: digest_in(&ws),
                run,
            }
        })
        .collect();
    assert_cache_hit(&runs[0], &runs[1]);
}

/// Asserts that the second run (a fresh runner) built nothing: every step a cache hit from the
/// registry cache, the same image.
fn assert_cache_hit(first: &PipelineRun, second: &PipelineRun) {
    // A step answered from the cache is reported as `#N CACHED`.
    let cached = |out: &str| {
        out.lines()
            .filter(|l| l.starts_with('#') && l.trim_end().ends_with(" CACHED"))
            .count()
    };
    assert_eq!(
        cached(&first.run.stderr),
        0,
        "the first run found a cache it should not have:\n{}",
        first.run.stderr
    );
    let out = &second.run.stderr;
    // The app's three steps after FROM: RUN, COPY, RUN.
    assert!(
        !out.contains("cache miss") && cached(out) >= 3,
        "the second pipeline run missed the registry cache:\n{out}"
    );
    assert_eq!(first.digest, second.digest, "{out}");
}

/// The digest a `--metadata-file build.json` in `dir` recorded.
fn digest_in(dir: &Path) -> String {
    metadata(&dir.join("build.json"))["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A fresh copy of `app` (a new checkout), with the recipe's output file removed.
fn checkout(app: &Path, dest: &Path) {
    let _ = std::fs::remove_dir_all(dest);
    run(Command::new("cp").arg("-a").arg(app).arg(dest)).success();
}

#[test]
fn gitlab_recipe_script_runs_unprivileged_and_a_fresh_pod_gets_cache_hits() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let doc = recipe("gitlab-ci.yml");
    let job = &doc["build-image"];
    assert_eq!(job["image"]["entrypoint"][0].as_str(), Some(""));
    let script = string_list(&job["script"]).join("\n");
    let dir = scratch();
    let app = recipe_app(dir.path(), &imgs.busybox);
    let project = format!("{}/{}", imgs.registry, unique("gitlab-app"));
    two_pipeline_runs(dir.path(), &app, |_, checkout_dir| {
        let mut c = engine.run_cmd();
        c.args(["--entrypoint", ""])
            .args(volume(checkout_dir, "/builds/team/app"))
            .args(["-w", "/builds/team/app"]);
        // GitLab's predefined variables, and the job's own (`IMAGE: $CI_REGISTRY_IMAGE`).
        for (k, v) in [
            ("CI_REGISTRY", imgs.registry.as_str()),
            ("CI_REGISTRY_IMAGE", project.as_str()),
            ("CI_REGISTRY_USER", "gitlab-ci-token"),
            ("CI_REGISTRY_PASSWORD", "not-a-real-token"),
            ("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("IMAGE", project.as_str()),
            ("SOURCE_DATE_EPOCH", EPOCH),
        ] {
            c.args(["-e", &format!("{k}={v}")]);
        }
        run(c.arg(&imgs.rbuild).args(["sh", "-euc", &script])).success()
    });
}

/// The `run:` lines of a GitHub job's steps, with `${{ }}` expressions replaced by test values.
fn github_steps(job: &Yaml, values: &[(&str, &str)]) -> Vec<(String, String)> {
    job["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let run = s["run"].as_str()?;
            let name = s["name"].as_str().unwrap_or("").to_string();
            let mut text = run.to_string();
            for (expr, v) in values {
                text = text.replace(&format!("${{{{ {expr} }}}}"), v);
            }
            assert!(
                !text.contains("${{"),
                "a GitHub expression the test does not know: {text}"
            );
            Some((name, text))
        })
        .collect()
}

const GITHUB_SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";

#[test]
fn github_container_job_steps_run_unprivileged_and_a_fresh_runner_gets_cache_hits() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let doc = recipe("github-actions.yml");
    let job = &doc["jobs"]["in-container"];
    assert!(job["container"]["image"].as_str().is_some());
    let image = format!("{}/{}", imgs.registry, unique("github-app"));
    let steps = github_steps(
        job,
        &[
            ("secrets.GITHUB_TOKEN", "not-a-real-token"),
            ("github.actor", "octocat"),
            ("github.sha", GITHUB_SHA),
        ],
    );
    assert_eq!(steps.len(), 2, "{steps:?}");
    let dir = scratch();
    let app = recipe_app(dir.path(), &imgs.busybox);
    // GitHub runs every step of a container job in the one container, with the workflow's
    // env (IMAGE: the repository's package, here in the test registry).
    let script = steps
        .iter()
        .map(|(_, s)| s.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    two_pipeline_runs(dir.path(), &app, |_, ws| {
        run(engine
            .run_cmd()
            .args(["--entrypoint", ""])
            .args(volume(ws, "/__w/app/app"))
            .args(["-w", "/__w/app/app"])
            .args(["-e", &format!("IMAGE={image}")])
            .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
            .arg(&imgs.rbuild)
            .args(["sh", "-euc", &script]))
        .success()
    });
}

#[test]
fn github_on_runner_steps_install_rbuild_from_its_image_and_build_as_root_with_sudo() {
    // The runner is this machine; its Docker engine only hands over the rbuild binary.
    let Some(engine) = engine() else {
        return;
    };
    let imgs = engine.images.clone();
    let doc = recipe("github-actions.yml");
    let image = format!("{}/{}", imgs.registry, unique("github-runner-app"));
    let dir = scratch();
    let d = dir.path();
    // The runner's tools, where this machine differs: the binary is installed into a directory
    // of the test's (not the machine's /usr/local/bin), and the runner's passwordless `sudo` is
    // a shim that runs the command as the root this test already is, keeping PATH.
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("sudo"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
    std::fs::set_permissions(
        bin.join("sudo"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let steps: Vec<(String, String)> = github_steps(
        &doc["jobs"]["on-runner"],
        &[
            ("secrets.GITHUB_TOKEN", "not-a-real-token"),
            ("github.actor", "octocat"),
            ("github.sha", GITHUB_SHA),
        ],
    )
    .into_iter()
    .collect();
    assert_eq!(steps[0].0, "Install rbuild");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = steps
        .iter()
        .map(|(_, s)| s.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let app = recipe_app(d, &imgs.busybox);
    two_pipeline_runs(d, &app, |n, ws| {
        // A fresh runner: a new HOME (so a new default store and login), /tmp files of the
        // install step in their own directory.
        let home = d.join(format!("home-{n}"));
        let tmp = d.join(format!("tmp-{n}"));
        for dir in [&home, &tmp] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let script = script
            .replace("/tmp/", &format!("{}/", tmp.display()))
            // The install target (the image's own path, after `$id:`, stays).
            .replace(
                " /usr/local/bin/rbuild",
                &format!(" {}/rbuild", bin.display()),
            );
        let r = run(Command::new("sh")
            .args(["-euc", &script])
            .current_dir(ws)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("IMAGE", &image)
            .env("RBUILD_IMAGE", &imgs.rbuild)
            .env("DOCKER_HOST", engine.host())
            .env("RBUILD_REGISTRIES_CONF", "/dev/null")
            // As `rbuild_tests::rbuild`: no default provenance, so the two runs' pushes compare.
            .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
            .env("SOURCE_DATE_EPOCH", EPOCH))
        .success();
        assert!(bin.join("rbuild").exists());
        r
    });
}

#[test]
fn kubernetes_job_arguments_run_unprivileged_with_the_jobs_volumes_and_hit_the_cache() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let doc = recipe("kubernetes-job.yaml");
    let pod = &doc["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert!(
        c["securityContext"].is_badvalue(),
        "the Job must need no securityContext"
    );
    let repo = format!("{}/{}", imgs.registry, unique("k8s-app"));
    let args: Vec<String> = string_list(&c["args"])
        .into_iter()
        .map(|a| a.replace("registry.example.com/team/app", &repo))
        .chain(["--metadata-file=/workspace/build.json".to_string()])
        .collect();
    let mounts: Vec<(String, String)> = c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dir = scratch();
    let d = dir.path();
    // The Secret `registry-auth` as the Job mounts it: a Docker config with the registry's
    // credentials (the test registry takes any).
    let auth = d.join("registry-auth");
    write_tree(
        &auth,
        &[(
            "config.json",
            &format!(
                "{{\"auths\":{{\"{}\":{{\"auth\":\"dGVzdGVyOm5vdC1hLXJlYWwtcGFzc3dvcmQ=\"}}}}}}",
                imgs.registry
            ),
        )],
    );
    let app = recipe_app(d, &imgs.busybox);
    two_pipeline_runs(d, &app, |_, ws| {
        let mut cmd = engine.run_cmd();
        for (name, path) in &mounts {
            let host = match name.as_str() {
                "workspace" => ws.to_path_buf(),
                "registry-auth" => auth.clone(),
                other => panic!("a volume the test does not know: {other}"),
            };
            cmd.args(volume(&host, path));
        }
        run(cmd
            .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
            .arg(&imgs.rbuild)
            .args(["--progress", "plain"])
            .args(&args))
        .success()
    });
}

#[test]
fn a_non_root_user_in_docker_run_builds_without_run_and_gets_the_fix_for_run() {
    // Docker's default seccomp profile refuses user namespaces to a process without
    // CAP_SYS_ADMIN, so a non-root user there has no RUN sandbox at all: a Dockerfile without
    // RUN still builds, and one with RUN fails before anything runs, saying what grants it.
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let dir = scratch();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!("FROM {}\nCOPY f.txt /f.txt\n", imgs.busybox),
            ),
            (
                "with-run.Dockerfile",
                &format!("FROM {}\nRUN true\n", imgs.busybox),
            ),
            ("f.txt", "x\n"),
        ],
    );
    let as_user = |dockerfile: &str| {
        run(engine
            .run_cmd()
            .args(["--user", "rbuild"])
            .args(volume(&ctx, "/workspace"))
            .arg(&imgs.rbuild)
            .args(["--progress", "plain", "-f", dockerfile, "."]))
    };
    as_user("Dockerfile").success();
    let r = as_user("with-run.Dockerfile");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("seccomp") && !r.stderr.contains("panicked"),
        "the error should name what refused the user namespace:\n{}",
        r.stderr
    );
}

/// `--isolation in-place` (kaniko's way): in the rbuild image with Docker's default profile,
/// steps run on the container's own root, see its `/proc` (which chroot mode cannot give: the
/// JVM needs it), and the image is the namespaces build's, byte for byte — cache mount, secret,
/// whiteouts, opaque directory, USER and all.
#[test]
fn in_place_mode_gives_steps_proc_and_builds_the_namespaces_image() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    let dockerfile = format!(
        "{DOCKERFILE}RUN test -r /proc/self/status && grep -q . /proc/cpuinfo && test -c /dev/null \
         && test \"$(ulimit -n)\" = 1000\n"
    );
    write_tree(
        &ctx,
        &[("Dockerfile", &dockerfile), ("f.txt", "from the context\n")],
    );
    std::fs::write(d.join("tok"), "s3cret").unwrap();
    let base = format!("BASE={}", imgs.busybox);
    let host_md = d.join("host.json");
    let host_tag = format!("{}/rbuild-e2e/in-place:host", imgs.registry);
    reference_build(
        d,
        &ctx,
        &base,
        &host_tag,
        &host_md,
        &["--ulimit", "nofile=1000:1001"],
    );

    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let tag = format!("{}/rbuild-e2e/in-place:docker", imgs.registry);
    let r = run(engine
        .run_cmd()
        .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
        .args(volume(&ctx, "/workspace"))
        .args(volume(&d.join("tok"), "/run/tok"))
        .args(volume(&out, "/results"))
        .arg(&imgs.rbuild)
        .args(["--progress", "plain", "--isolation", "in-place"])
        .args(["--ulimit", "nofile=1000:1001"])
        .args(["--build-arg", &base, "--secret", "id=tok,src=/run/tok"])
        .args([
            "--tag",
            &tag,
            "--push",
            "--metadata-file",
            "/results/md.json",
            ".",
        ]))
    .success();
    assert!(
        r.stderr
            .contains("--isolation in-place (chosen with --isolation"),
        "{}",
        r.stderr
    );
    let md = metadata(&out.join("md.json"));
    assert_eq!(md["rbuild.isolation"], "in-place");
    assert_eq!(
        md["containerimage.digest"],
        metadata(&host_md)["containerimage.digest"],
        "the image built in place differs from the namespaces build:\n{}",
        r.stderr
    );
}

/// In-place mode destroys the container's files, so it refuses — before touching anything —
/// outside the rbuild image (no marker), when a path rbuild needs later would be removed, and
/// when the image has files where the container has a mount. All inside `docker run`: a guard
/// that failed on this machine would wipe it.
#[test]
fn in_place_mode_refuses_outside_its_image_and_where_it_would_lose_or_hide_files() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", &format!("FROM {}\nRUN true\n", imgs.busybox)),
            (
                "conflict.Dockerfile",
                &format!(
                    "FROM {}\nCOPY f.txt /workspace/f.txt\nRUN true\n",
                    imgs.busybox
                ),
            ),
            (
                "writes.Dockerfile",
                &format!("FROM {}\nRUN touch /workspace/new\n", imgs.busybox),
            ),
            (
                "writes.Dockerfile",
                &format!("FROM {}\nRUN touch /workspace/new\n", imgs.busybox),
            ),
            ("f.txt", "x\n"),
        ],
    );
    let in_container = |script: &str| {
        run(engine
            .run_cmd()
            .args(volume(&ctx, "/workspace"))
            .args(["--entrypoint", "/bin/sh"])
            .arg(&imgs.rbuild)
            .args(["-c", script]))
    };
    // Without the marker: refused, and the container's own files are all there afterwards.
    let r = in_container(
        "rm /.rbuild-image; rbuild --progress plain --isolation in-place .; echo \"code $?\"; \
         test -x /usr/bin/apt-get && test -s /etc/os-release && echo intact",
    );
    assert!(r.stdout.contains("code 1"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("intact"), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("runs only inside the rbuild image")
            && r.stderr.contains("/.rbuild-image"),
        "{}",
        r.stderr
    );
    // An output on the container's root: a usage error naming it, before the build.
    let r = in_container(
        "rbuild --progress plain --isolation in-place --output type=oci,dest=/tmp/img.tar .; \
         echo \"code $?\"; test -x /usr/bin/apt-get && echo intact",
    );
    assert!(r.stdout.contains("code 2"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("intact"), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("--output dest (/tmp/img.tar)"),
        "{}",
        r.stderr
    );
    // The image has a file where the container has a mount: refused, naming both.
    let r = in_container(
        "rbuild --progress plain --isolation in-place -f conflict.Dockerfile .; \
         echo \"code $?\"; test -x /usr/bin/apt-get && echo intact",
    );
    assert!(r.stdout.contains("code 1"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("intact"), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "the image has a file at /workspace/f.txt, where this container has /workspace"
        ),
        "{}",
        r.stderr
    );
    // A step that writes into the container's mount (the image has no /workspace): refused,
    // since a namespaces build would have put the file in the image.
    let r = in_container("rbuild --progress plain --isolation in-place -f writes.Dockerfile .");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("the RUN step wrote in /workspace"),
        "{}",
        r.stderr
    );
}

/// `--load` (buildx's shorthand for `--output type=docker`): the image streamed into the
/// Docker Engine `DOCKER_HOST` names, under its tag, with the image ID `--iidfile` gives; and,
/// with no engine there, an error that says how to do without one.
#[test]
fn load_sends_the_image_into_the_docker_engine_as_buildx_does() {
    let Some(engine) = engine() else {
        return;
    };
    let imgs = &engine.images;
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nCOPY f.txt /f.txt\nCMD [\"cat\", \"/f.txt\"]\n",
                    imgs.busybox
                ),
            ),
            ("f.txt", "loaded by rbuild\n"),
        ],
    );
    let iid = d.join("iid");
    run(build_cmd(&d.join("store"), &ctx)
        .env("DOCKER_HOST", engine.host())
        .args(["--load", "--tag", "rbuild-e2e/loaded:1"])
        .args(["--iidfile", iid.to_str().unwrap()]))
    .success();
    let id = run(engine.docker().args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "rbuild-e2e/loaded:1",
    ]))
    .success();
    assert_eq!(
        id.stdout.trim(),
        std::fs::read_to_string(&iid).unwrap().trim()
    );
    let out = run(engine.run_cmd().arg("rbuild-e2e/loaded:1")).success();
    assert_eq!(out.stdout, "loaded by rbuild\n");

    let r = run(build_cmd(&d.join("store"), &ctx)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", d.join("none.sock").display()),
        )
        .args(["--load", "--tag", "rbuild-e2e/loaded:2"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("without dest=): no Docker Engine at unix://")
            && r.stderr.contains("--output type=docker,dest="),
        "{}",
        r.stderr
    );
}
