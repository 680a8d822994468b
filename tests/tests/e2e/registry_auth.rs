//! The TLS registry with htpasswd Basic auth that tests/run.sh starts (its CA made by the
//! script): `rbuild login`, push and pull with the CA given by `--registry-ca`, and the
//! wrong-password error; and a credential helper that hangs (no registry needed).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::registry_roundtrip::{child_context, tiny_context};
use rbuild_tests::build::build_cmd;
use rbuild_tests::{rbuild, run, scratch, Run};

pub(crate) struct Tls {
    pub host: String,
    pub ca: String,
    pub user: String,
    pub password: String,
}

pub(crate) fn tls_registry() -> Option<Tls> {
    let get = |k: &str| std::env::var(k).ok();
    match (
        get("RBUILD_TEST_TLS_REGISTRY"),
        get("RBUILD_TEST_TLS_CA"),
        get("RBUILD_TEST_TLS_USER"),
        get("RBUILD_TEST_TLS_PASSWORD"),
    ) {
        (Some(host), Some(ca), Some(user), Some(password)) => Some(Tls {
            host,
            ca,
            user,
            password,
        }),
        _ => {
            assert!(
                !rbuild_tests::tools_required(),
                "tests/run.sh must start the TLS registry"
            );
            eprintln!("SKIPPED: no TLS test registry (run bash tests/run.sh)");
            None
        }
    }
}

fn login(docker_config: &Path, t: &Tls, password: &str) -> Run {
    let mut child = rbuild(docker_config)
        .args(["login", &t.host, "-u", &t.user, "--password-stdin"])
        .arg("--registry-ca")
        .arg(format!("{}={}", t.host, t.ca))
        .env("DOCKER_CONFIG", docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    Run::from_output(child.wait_with_output().unwrap())
}

fn build_with(dir: &Path, store: &str, ctx: &Path, t: &Tls, args: &[&str]) -> Run {
    run(build_cmd(&dir.join(store), ctx)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .arg("--registry-ca")
        .arg(format!("{}={}", t.host, t.ca))
        .args(args))
}

#[test]
fn login_then_push_and_pull_over_tls_with_basic_auth() {
    let Some(t) = tls_registry() else { return };
    let dir = scratch();
    let cfg = dir.path().join("docker");
    let out = login(&cfg, &t, &t.password).success();
    assert!(out.stderr.contains("Login Succeeded"), "{}", out.stderr);
    let written = std::fs::read_to_string(cfg.join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert!(v["auths"][&t.host]["auth"].is_string(), "{written}");

    let ctx = dir.path().join("base");
    tiny_context(&ctx, "tls\n");
    let name = format!("{}/e2e/tls:v1", t.host);
    build_with(dir.path(), "s1", &ctx, &t, &["--tag", &name, "--push"]).success();
    let child = dir.path().join("child");
    child_context(&child, &name);
    build_with(dir.path(), "s2", &child, &t, &[]).success();

    // Without the CA the server is not trusted, and rbuild does not fall back to HTTP.
    let out = run(build_cmd(&dir.path().join("s3"), &child).env("DOCKER_CONFIG", &cfg));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
}

#[test]
fn a_wrong_password_is_a_clear_error_naming_the_registry_and_source_without_the_secret() {
    let Some(t) = tls_registry() else { return };
    let dir = scratch();
    let cfg = dir.path().join("docker");
    let wrong = "not-the-password-5f2c";
    let out = login(&cfg, &t, wrong);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&t.host), "{}", out.stderr);
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong));
    assert!(
        !cfg.join("config.json").exists(),
        "a failed login stores nothing"
    );

    // The same wrong password in config.json, used by a build.
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = run(Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{}:{wrong}' | base64 -w0", t.user)))
    .success()
    .stdout;
    let config_json = cfg.join("config.json");
    std::fs::write(
        &config_json,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, t.host),
    )
    .unwrap();
    let ctx = dir.path().join("child");
    child_context(&ctx, &format!("{}/e2e/tls:v1", t.host));
    let out = build_with(dir.path(), "s", &ctx, &t, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("registry {}", t.host))
            && out.stderr.contains("authentication failed")
            && out.stderr.contains(config_json.to_str().unwrap()),
        "{}",
        out.stderr
    );
    for secret in [wrong, auth.trim()] {
        assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    }
}

#[test]
fn credentials_come_from_a_credential_helper_and_from_registry_auth_file() {
    let Some(t) = tls_registry() else { return };
    let dir = scratch();
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "helpers\n");
    let name = format!("{}/e2e/helper:v1", t.host);

    // credHelpers → docker-credential-rbuildtest get (host on stdin, JSON on stdout).
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rbuildtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$host\"\n",
            t.host, t.user, t.password
        ),
    )
    .unwrap();
    run(Command::new("chmod").arg("755").arg(&helper)).success();
    let cfg = dir.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"rbuildtest"}}}}"#, t.host),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(build_cmd(&dir.path().join("s1"), &ctx)
        .env("DOCKER_CONFIG", &cfg)
        .env("PATH", &path)
        .arg("--registry-ca")
        .arg(format!("{}={}", t.host, t.ca))
        .args(["--tag", &name, "--push"]))
    .success();

    // REGISTRY_AUTH_FILE (containers auth.json format), with an empty Docker config.
    let auth_file = dir.path().join("auth.json");
    let b64 = run(Command::new("sh").arg("-c").arg(format!(
        "printf '%s' '{}:{}' | base64 -w0",
        t.user, t.password
    )))
    .success()
    .stdout;
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, t.host),
    )
    .unwrap();
    let empty = dir.path().join("empty-docker");
    let child = dir.path().join("child");
    child_context(&child, &name);
    run(build_cmd(&dir.path().join("s2"), &child)
        .env("DOCKER_CONFIG", &empty)
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .arg("--registry-ca")
        .arg(format!("{}={}", t.host, t.ca)))
    .success();
}

/// A `credHelpers` helper that never answers (a keychain waiting to be unlocked) fails the
/// build after `RBUILD_CREDENTIAL_HELPER_TIMEOUT`, naming the helper and the registry, instead
/// of hanging it. Nothing listens on the registry's port: credentials are looked up first.
#[test]
fn a_credential_helper_that_hangs_fails_the_build_after_the_timeout() {
    let dir = scratch();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rbuildhang");
    std::fs::write(&helper, "#!/bin/sh\nprintf canary-9d3e\nsleep 1000\n").unwrap();
    run(Command::new("chmod").arg("755").arg(&helper)).success();
    let host = "127.0.0.1:1";
    let cfg = dir.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"credHelpers":{{"{host}":"rbuildhang"}}}}"#),
    )
    .unwrap();
    let ctx = dir.path().join("child");
    child_context(&ctx, &format!("{host}/e2e/hang:v1"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = std::time::Instant::now();
    let out = run(build_cmd(&dir.path().join("s"), &ctx)
        .env("DOCKER_CONFIG", &cfg)
        .env("PATH", &path)
        .env("RBUILD_CREDENTIAL_HELPER_TIMEOUT", "1"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    for part in [
        "docker-credential-rbuildhang",
        host,
        "RBUILD_CREDENTIAL_HELPER_TIMEOUT",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("canary-9d3e") && !out.stdout.contains("canary-9d3e"));
}

/// containers-auth.json(5): an `auths` key `host/namespace/repo` wins over the host's key for
/// that repository. Only the repository key has the right password: push and pull of that
/// repository succeed; a push to another repository uses the (wrong) host key and is refused.
#[test]
fn a_repository_key_wins_over_the_host_key() {
    let Some(t) = tls_registry() else { return };
    let dir = scratch();
    let b64 = |pass: &str| {
        run(Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' '{}:{pass}' | base64 -w0", t.user)))
        .success()
        .stdout
    };
    let wrong = "host-key-password-3a1f";
    let cfg = dir.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let config_json = cfg.join("config.json");
    std::fs::write(
        &config_json,
        format!(
            r#"{{"auths":{{"{h}":{{"auth":"{w}"}},"{h}/e2e/percred":{{"auth":"{r}"}}}}}}"#,
            h = t.host,
            w = b64(wrong),
            r = b64(&t.password),
        ),
    )
    .unwrap();
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "per-repository credentials\n");
    let name = format!("{}/e2e/percred:v1", t.host);
    build_with(dir.path(), "s1", &ctx, &t, &["--tag", &name, "--push"]).success();
    let child = dir.path().join("child");
    child_context(&child, &name);
    build_with(dir.path(), "s2", &child, &t, &[]).success();

    let other = format!("{}/e2e/percred-other:v1", t.host);
    let out = build_with(dir.path(), "s3", &ctx, &t, &["--tag", &other, "--push"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("authentication failed")
            && out.stderr.contains(config_json.to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(wrong), "{}", out.stderr);
}

/// `rbuild login` with a `credsStore` in config.json stores the password with that helper
/// (`docker-credential-<name> store`), leaves only `{}` in the file, and a build's push finds it
/// through the helper's `get`. The helper is a shell script keeping what it is given in a file.
#[test]
fn login_with_a_credential_store_goes_through_the_helper_and_a_push_finds_it() {
    let Some(t) = tls_registry() else { return };
    let dir = scratch();
    let cfg = dir.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.json"), r#"{"credsStore":"e2efile"}"#).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let kept = dir.path().join("kept.json");
    let helper = bin.join("docker-credential-e2efile");
    // `store` keeps the request; `get` answers it for the key it was stored under.
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nkept={}\ncase $1 in\n  store) cat > \"$kept\" ;;\n  get) read key; \
             [ -f \"$kept\" ] && grep -q \"\\\"ServerURL\\\":\\\"$key\\\"\" \"$kept\" \
             || {{ echo 'credentials not found in native keychain'; exit 1; }}; \
             sed 's/\"ServerURL\":\"[^\"]*\",//' \"$kept\" ;;\n  *) exit 2 ;;\nesac\n",
            kept.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&helper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&helper, perms).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let mut child = rbuild(&cfg)
        .args(["login", &t.host, "-u", &t.user, "--password-stdin"])
        .arg("--registry-ca")
        .arg(format!("{}={}", t.host, t.ca))
        .env("DOCKER_CONFIG", &cfg)
        .env("PATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", t.password).as_bytes())
        .unwrap();
    let out = Run::from_output(child.wait_with_output().unwrap()).success();
    assert!(
        out.stderr.contains("stored with docker-credential-e2efile"),
        "{}",
        out.stderr
    );
    let written = std::fs::read_to_string(cfg.join("config.json")).unwrap();
    assert!(!written.contains(&t.password), "{written}");
    let v: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(v["auths"][&t.host], serde_json::json!({}), "{written}");
    assert!(std::fs::read_to_string(&kept)
        .unwrap()
        .contains(&t.password));

    let ctx = dir.path().join("ctx");
    tiny_context(&ctx, "helper\n");
    let name = format!("{}/e2e/credstore:v1", t.host);
    run(build_cmd(&dir.path().join("s1"), &ctx)
        .env("DOCKER_CONFIG", &cfg)
        .env("PATH", &path)
        .arg("--registry-ca")
        .arg(format!("{}={}", t.host, t.ca))
        .args(["--tag", &name, "--push"]))
    .success();
}
