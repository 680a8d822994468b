//! Bearer-token auth against a real registry: a private `docker-registry` configured with
//! distribution's `token` auth, and the token issuer written in the tests
//! (`rbuild_tests::token_server`). rbuild answers the registry's Bearer challenge by asking the
//! issuer with the Basic credentials from config.json, then pushes and pulls with the token.

use std::sync::atomic::Ordering;

use crate::registry_roundtrip::{child_context, tiny_context};
use rbuild_tests::build::build_cmd;
use rbuild_tests::registry_server::RegistryServer;
use rbuild_tests::token_server::{self, ISSUER, SERVICE};
use rbuild_tests::{have_tool, run, scratch};

#[test]
fn push_and_pull_with_bearer_tokens_from_a_token_service() {
    if !have_tool("openssl") {
        return;
    }
    let dir = scratch();
    let tok = token_server::start(&dir.path().join("token"), "tok-user", "tok-pass-9a1");
    let extra = format!(
        "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        tok.realm,
        tok.cert.display()
    );
    let Some(server) = RegistryServer::start_with(&dir.path().join("registry"), &extra) else {
        return;
    };
    let write_config = |name: &str, password: &str| {
        let cfg = dir.path().join(name);
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("config.json"),
            format!(
                r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
                server.addr,
                token_server::basic_auth_b64("tok-user", password)
            ),
        )
        .unwrap();
        cfg
    };
    let good = write_config("good", "tok-pass-9a1");
    let bad = write_config("bad", "wrong-pass-3c");

    let ctx = dir.path().join("base");
    tiny_context(&ctx, "token\n");
    let name = format!("{}/e2e/token:v1", server.addr);
    run(build_cmd(&dir.path().join("s1"), &ctx)
        .env("DOCKER_CONFIG", &good)
        .args(["--tag", &name, "--push"]))
    .success();
    assert!(tok.issued.load(Ordering::SeqCst) >= 1);

    let child = dir.path().join("child");
    child_context(&child, &name);
    run(build_cmd(&dir.path().join("s2"), &child).env("DOCKER_CONFIG", &good)).success();

    let out = run(build_cmd(&dir.path().join("s3"), &child).env("DOCKER_CONFIG", &bad));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("authentication failed")
            && out.stderr.contains(&format!("registry {}", server.addr))
            && out
                .stderr
                .contains(bad.join("config.json").to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-pass-3c"));
}
