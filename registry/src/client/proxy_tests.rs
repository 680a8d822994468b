//! Registry and token traffic through a proxy from the proxy variables: a [`recorder`] plays an
//! HTTP proxy that answers for a registry whose name does not resolve (`registry.invalid`), so
//! every request it sees came through it. Proxy credentials go to the proxy as
//! `Proxy-Authorization` and appear in no error message.

use base64::Engine as _;

use super::proxy::ProxyEnv;
use super::*;
use crate::testutil::{recorder, reply};

const HOST: &str = "registry.invalid:5000";
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

fn options(proxy: &str) -> ClientOptions {
    ClientOptions {
        insecure: vec![HOST.into()],
        credential: Some(Credential::Basic {
            username: "u".into(),
            password: crate::auth::Secret::new("p"),
        }),
        max_attempts: 1,
        proxy: Some(ProxyEnv::from_pairs([
            ("HTTP_PROXY", proxy),
            ("HTTPS_PROXY", proxy),
        ])),
        ..ClientOptions::default()
    }
}

#[test]
fn registry_and_token_requests_go_through_the_proxy_with_its_credentials() {
    let proxy = recorder(|req, _| {
        let t = req.target.as_str();
        if req.method == "CONNECT" {
            // No tunnel: the HTTPS probe fails and the insecure registry is used over HTTP.
            return reply("403 Forbidden", "", "");
        }
        if t.starts_with(&format!("http://{HOST}/token")) {
            return reply("200 OK", "", r#"{"token":"T"}"#);
        }
        if req.authorization.as_deref() != Some("Bearer T") {
            return reply(
                "401 Unauthorized",
                &format!(
                    "WWW-Authenticate: Bearer realm=\"http://{HOST}/token\",service=\"s\"\r\n"
                ),
                "",
            );
        }
        reply(
            "200 OK",
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
            MANIFEST,
        )
    });
    let reg = Registry::connect(HOST, &options(&format!("http://pu:pp@{}", proxy.addr)))
        .expect("connect");
    reg.get_manifest("a/b", "x")
        .expect("manifest through the proxy");
    let seen = proxy.seen();
    let wanted = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("pu:pp")
    );
    let forwarded: Vec<_> = seen.iter().filter(|s| s.method != "CONNECT").collect();
    assert!(
        forwarded
            .iter()
            .any(|s| s.target.starts_with(&format!("http://{HOST}/token?"))),
        "{seen:?}"
    );
    assert!(
        forwarded
            .iter()
            .any(|s| s.target == format!("http://{HOST}/v2/a/b/manifests/x")),
        "{seen:?}"
    );
    for s in &seen {
        assert_eq!(
            s.proxy_authorization.as_deref(),
            Some(wanted.as_str()),
            "{s:?}"
        );
    }
}

#[test]
fn an_unreachable_proxy_is_an_error_without_its_credentials() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let reg = Registry::connect(
        HOST,
        &options(&format!("http://pu:proxy-secret-31@127.0.0.1:{port}")),
    )
    .expect("connect");
    let e = reg.get_manifest("a/b", "x").expect_err("no proxy there");
    let text = format!("{e} {e:?} {reg:?}");
    assert!(matches!(e, RegistryError::Transport { .. }), "{text}");
    assert!(text.contains(HOST), "{text}");
    assert!(!text.contains("proxy-secret-31"), "{text}");
}
