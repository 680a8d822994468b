//! Mirrors, against the test registry as the mirror and a registry that is down (a closed
//! port on loopback) as the "upstream":
//! - `registries.conf` (`RBUILD_REGISTRIES_CONF`, so nothing in `/etc` is read) with a
//!   `[[registry.mirror]]` for the upstream: the base image exists only on the mirror, and a
//!   build from a fresh store pulls its manifest and then its layer from there (an OCI output
//!   needs the layer's bytes); the same build without the file fails on the dead upstream;
//!   a push to the upstream in the same build goes to the upstream, never to the mirror;
//! - a `--cache-from` on the upstream is read from the mirror (its step taken as cached);
//! - `blocked = true` is an error naming the file, before any request;
//! - kaniko's `--registry-mirror HOST/PATH` serves a docker.io name from the mirror, after a
//!   first mirror that is down (named in one warning line);
//! - a search list in the file makes an unqualified name an error, not a silent search.

use std::path::Path;

use crate::registry_roundtrip::{child_context, tiny_context};
use crate::registry_tls::free_port;
use rbuild_tests::build::{build_cmd, write_tree};
use rbuild_tests::oci::index;
use rbuild_tests::{run, scratch, test_registry, Run};

/// A build with `conf` as its registries.conf (a missing file: no configuration) and no
/// proxy or Docker credentials from the environment.
fn build_with(store: &Path, ctx: &Path, conf: &Path, args: &[&str]) -> Run {
    let mut cmd = build_cmd(store, ctx);
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        cmd.env_remove(k);
    }
    run(cmd
        .env("RBUILD_REGISTRIES_CONF", conf)
        .env_remove("CONTAINERS_REGISTRIES_CONF")
        .env("DOCKER_CONFIG", store.join("no-docker-config"))
        .args(args))
}

/// Pushes a one-file base image to `name`.
fn push_base(dir: &Path, name: &str) {
    let ctx = dir.join("base-ctx");
    tiny_context(&ctx, "from the mirror\n");
    let none = dir.join("no-registries.conf");
    build_with(
        &dir.join("base-store"),
        &ctx,
        &none,
        &["--tag", name, "--push"],
    )
    .success();
}

/// A unique repository suffix, so reruns against the same registry start clean.
fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The layer digests of the single image in an OCI layout.
fn layer_count(layout: &Path) -> usize {
    let idx = index(layout);
    let digest = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest = rbuild_tests::oci::blob_json(layout, &digest);
    manifest["layers"].as_array().unwrap().len()
}

#[test]
fn a_base_image_only_on_a_mirror_is_pulled_from_it_while_the_registry_is_down() {
    let Some(reg) = test_registry() else { return };
    let dir = scratch();
    let id = unique();
    let dead = format!("127.0.0.1:{}", free_port());
    let mirror_path = format!("{reg}/mirror-{id}");
    push_base(dir.path(), &format!("{mirror_path}/team/base:v1"));

    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{dead}\"\n\n[[registry.mirror]]\nlocation = \"{mirror_path}\"\n"
        ),
    )
    .unwrap();
    let ctx = dir.path().join("child");
    child_context(&ctx, &format!("{dead}/team/base:v1"));

    // Without the mirror the upstream is down and nothing is in the store: the build fails.
    let none = dir.path().join("absent.conf");
    let out = build_with(&dir.path().join("store0"), &ctx, &none, &[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&dead), "{}", out.stderr);

    // With it: the manifest and (for the OCI output) the base layer come from the mirror.
    let layout = dir.path().join("out");
    let spec = format!("type=oci,dest={},tar=false", layout.display());
    build_with(
        &dir.path().join("store1"),
        &ctx,
        &conf,
        &["--output", &spec],
    )
    .success();
    assert_eq!(layer_count(&layout), 2, "the base layer and the child's");
    for l in rbuild_tests::oci::blob_json(
        &layout,
        index(&layout)["manifests"][0]["digest"].as_str().unwrap(),
    )["layers"]
        .as_array()
        .unwrap()
    {
        let d = l["digest"].as_str().unwrap();
        assert!(
            rbuild_tests::oci::blob_path(&layout, d).exists(),
            "layer {d} is in the output"
        );
    }

    // A push to the upstream goes to the upstream (down), never to the mirror.
    let out = build_with(
        &dir.path().join("store1"),
        &ctx,
        &conf,
        &["--tag", &format!("{dead}/team/child:v1"), "--push"],
    );
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains(&dead), "{}", out.stderr);
    let catalog = run(std::process::Command::new("curl").args([
        "-fsS",
        &format!("http://{reg}/v2/mirror-{id}/team/child/tags/list"),
    ]));
    assert_ne!(
        catalog.code, 0,
        "the mirror got the push: {}",
        catalog.stdout
    );
}

#[test]
fn a_blocked_registry_is_a_clear_error_naming_the_file() {
    let Some(reg) = test_registry() else { return };
    let dir = scratch();
    let id = unique();
    let name = format!("{reg}/blocked-{id}/base:v1");
    push_base(dir.path(), &name);
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!("[[registry]]\nprefix = \"{reg}/blocked-{id}\"\nlocation = \"{reg}/blocked-{id}\"\nblocked = true\n"),
    )
    .unwrap();
    let ctx = dir.path().join("child");
    child_context(&ctx, &name);
    let out = build_with(&dir.path().join("store"), &ctx, &conf, &[]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains(&format!("pulling {name} is blocked by {}", conf.display())),
        "{}",
        out.stderr
    );
    // The rest of the registry is not blocked.
    let open = format!("{reg}/open-{id}/base:v1");
    push_base(dir.path(), &open);
    child_context(&ctx, &open);
    build_with(&dir.path().join("store"), &ctx, &conf, &[]).success();
}

#[test]
fn kaniko_registry_mirror_serves_docker_hub_names() {
    let Some(reg) = test_registry() else { return };
    let dir = scratch();
    let id = unique();
    // `docker.io/library/NAME` is looked for at `MIRROR/PATH/library/NAME`.
    let repo = format!("rbuild-e2e-{id}");
    push_base(dir.path(), &format!("{reg}/hub-{id}/library/{repo}:v1"));
    let ctx = dir.path().join("child");
    child_context(&ctx, &format!("{repo}:v1"));
    let layout = dir.path().join("out");
    let spec = format!("type=oci,dest={},tar=false", layout.display());
    let none = dir.path().join("absent.conf");
    let down = format!("127.0.0.1:{}", free_port());
    let out = build_with(
        &dir.path().join("store"),
        &ctx,
        &none,
        &[
            "--registry-mirror",
            &down,
            "--registry-mirror",
            &format!("{reg}/hub-{id}"),
            "--output",
            &spec,
        ],
    )
    .success();
    assert_eq!(layer_count(&layout), 2);
    // The first mirror is down: one warning line names it and why, then the next is tried.
    let warned: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("warning: mirror {down}/library/{repo} failed (")))
        .collect();
    assert_eq!(warned.len(), 1, "{}", out.stderr);
    assert!(
        warned[0].contains(&format!("; trying {reg}")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_search_list_makes_unqualified_names_an_error() {
    let dir = scratch();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        "unqualified-search-registries = [\"registry.fedoraproject.org\", \"docker.io\"]\n",
    )
    .unwrap();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[("Dockerfile", "FROM fedora:40\nCOPY Dockerfile /\n")],
    );
    let out = build_with(&dir.path().join("store"), &ctx, &conf, &[]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("unqualified-search-registries")
            && out.stderr.contains(&conf.display().to_string()),
        "{}",
        out.stderr
    );
    // An image built here under a short name is still used: no registry is involved.
    let base_ctx = dir.path().join("base-ctx");
    tiny_context(&base_ctx, "built here\n");
    let store = dir.path().join("store");
    build_with(&store, &base_ctx, &conf, &["--tag", "localbase:v1"]).success();
    child_context(&ctx, "localbase:v1");
    build_with(&store, &ctx, &conf, &[]).success();
}

/// The summary table's CACHED column for the one target (`cached/steps`).
fn cached(out: &Run) -> String {
    out.stderr
        .lines()
        .find(|l| l.starts_with("stage-0 "))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_cache_import_comes_from_the_mirror_while_the_registry_is_down() {
    let Some(reg) = test_registry() else { return };
    let dir = scratch();
    let id = unique();
    let dead = format!("127.0.0.1:{}", free_port());
    let mirror_path = format!("{reg}/cache-mirror-{id}");
    let ctx = dir.path().join("ctx");
    tiny_context(&ctx, "cached through a mirror\n");
    let none = dir.path().join("absent.conf");
    let to = format!("type=registry,ref={mirror_path}/app/cache:v1,mode=max");
    build_with(
        &dir.path().join("store0"),
        &ctx,
        &none,
        &["--cache-to", &to],
    )
    .success();

    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{dead}\"\n\n[[registry.mirror]]\nlocation = \"{mirror_path}\"\n"
        ),
    )
    .unwrap();
    let from = format!("type=registry,ref={dead}/app/cache:v1");
    // Without the file the cache is on a registry that is down: a warning, nothing cached.
    let out = build_with(
        &dir.path().join("store1"),
        &ctx,
        &none,
        &["--cache-from", &from],
    )
    .success();
    assert_eq!(cached(&out), "0/1", "{}", out.stderr);
    // With it, the mirror serves the cache and the COPY step is taken from it.
    let out = build_with(
        &dir.path().join("store2"),
        &ctx,
        &conf,
        &["--cache-from", &from],
    )
    .success();
    assert_eq!(cached(&out), "1/1", "{}", out.stderr);
}

/// `{"auths": {HOST: {"auth": base64(USER:PASSWORD)}}}`, containers' auth.json.
fn auth_json(path: &Path, host: &str, user: &str, password: &str) {
    let mut b64 = std::process::Command::new("base64");
    b64.args(["-w0"]).stdin(std::process::Stdio::piped());
    b64.stdout(std::process::Stdio::piped());
    let mut child = b64.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{user}:{password}").as_bytes(),
    )
    .unwrap();
    let encoded = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        serde_json::json!({ "auths": { host: { "auth": encoded } } }).to_string(),
    )
    .unwrap();
}

/// A mirror that requires a login gets the credentials stored for its own host — here in
/// `~/.config/containers/auth.json`, one of containers' default locations — and never those
/// of the registry it mirrors.
#[test]
fn a_mirror_uses_its_own_credentials_from_containers_auth_json() {
    let Some(reg) = test_registry() else { return };
    let Some(tls) = crate::registry_auth::tls_registry() else {
        return;
    };
    let dir = scratch();
    let id = unique();
    let ca = format!("{}={}", tls.host, tls.ca);
    let mirror_path = format!("{}/authmirror-{id}", tls.host);

    // The base, pushed to the authenticated registry with the credentials in the new file.
    let home = dir.path().join("home");
    let own = home.join(".config/containers/auth.json");
    auth_json(&own, &tls.host, &tls.user, &tls.password);
    let with_home = |home: &Path, store: &str, ctx: &Path, conf: &Path, args: &[&str]| {
        let mut cmd = build_cmd(&dir.path().join(store), ctx);
        run(cmd
            .env("HOME", home)
            .env("RBUILD_REGISTRIES_CONF", conf)
            .env("XDG_RUNTIME_DIR", dir.path().join("no-runtime-dir"))
            .env("DOCKER_CONFIG", dir.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CONTAINERS_REGISTRIES_CONF")
            .args(["--registry-ca", &ca])
            .args(args))
    };
    let base_ctx = dir.path().join("base-ctx");
    tiny_context(&base_ctx, "behind a login\n");
    let none = dir.path().join("absent.conf");
    let base = format!("{mirror_path}/team/base:v1");
    with_home(
        &home,
        "base-store",
        &base_ctx,
        &none,
        &["--tag", &base, "--push"],
    )
    .success();

    // The upstream (a repository on the plain registry that does not exist) has its own
    // credentials; the mirror is asked first, with the mirror's.
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"{reg}/upstream-{id}\"\nlocation = \"{reg}/upstream-{id}\"\n\n[[registry.mirror]]\nlocation = \"{mirror_path}\"\n"
        ),
    )
    .unwrap();
    let ctx = dir.path().join("child");
    child_context(&ctx, &format!("{reg}/upstream-{id}/team/base:v1"));
    let layout = dir.path().join("out");
    let spec = format!("type=oci,dest={},tar=false", layout.display());
    with_home(&home, "store1", &ctx, &conf, &["--output", &spec]).success();
    assert_eq!(layer_count(&layout), 2);

    // Credentials stored only for the upstream's host are not given to the mirror: it refuses
    // the anonymous pull, and the upstream does not have the image.
    let other_home = dir.path().join("other-home");
    auth_json(
        &other_home.join(".config/containers/auth.json"),
        &reg,
        &tls.user,
        &tls.password,
    );
    let out = with_home(&other_home, "store2", &ctx, &conf, &[]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("upstream-{id}/team/base")),
        "{}",
        out.stderr
    );
}
