//! What a registry's answers can make the client send where: credentials (Basic or a bearer
//! token) go only to the registry's own scheme, host and port. Upload `Location`s (of the
//! `POST` that opens a session and of each `PATCH`) and redirects that point elsewhere are
//! followed without them (containerd CVE-2020-15157, docker CVE-2021-41092). Each test runs a
//! fake registry and a fake "storage" host on another port, and checks what each one saw.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;

use super::*;
use crate::testutil::{recorder, reply, Recorder, Seen};
use crate::Digest;

const TOKEN: &str = "token-for-registry-a";

#[derive(Clone, Copy)]
enum Auth {
    Basic,
    Bearer,
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    )
}

/// The storage host: takes any upload request, anonymously.
fn storage() -> Recorder {
    recorder(|req, _| match req.method.as_str() {
        // A relative Location resolves against the storage URL, not the registry's.
        "PATCH" => reply("202 Accepted", "Location: /upload/next\r\n", ""),
        "PUT" => reply("201 Created", "", ""),
        "DELETE" => reply("204 No Content", "", ""),
        _ => reply("200 OK", "", "blob"),
    })
}

/// A registry that wants `auth` on every request and sends uploads to `storage`: the session
/// of `a/b` opens there; the session of `own/b` opens on the registry and its `PATCH` moves it
/// to storage; a mount from `c/d` is declined (202) with a session there.
fn registry(auth: Auth, storage: &str) -> Recorder {
    let storage = storage.to_string();
    recorder(move |req, me| {
        if req.method == "GET" && req.target.starts_with("/token") {
            return if req.authorization.as_deref() == Some(basic().as_str()) {
                reply("200 OK", "", &format!(r#"{{"token":"{TOKEN}"}}"#))
            } else {
                reply("401 Unauthorized", "", "")
            };
        }
        let (wanted, challenge) = match auth {
            Auth::Basic => (basic(), "Basic realm=\"r\"".to_string()),
            Auth::Bearer => (
                format!("Bearer {TOKEN}"),
                format!("Bearer realm=\"http://{me}/token\",service=\"fake\""),
            ),
        };
        if req.authorization.as_deref() != Some(wanted.as_str()) {
            return reply(
                "401 Unauthorized",
                &format!("WWW-Authenticate: {challenge}\r\n"),
                "",
            );
        }
        let t = req.target.as_str();
        match req.method.as_str() {
            "HEAD" => reply("404 Not Found", "", ""),
            "GET" => reply(
                "307 Temporary Redirect",
                &format!("Location: http://{storage}/blob\r\n"),
                "",
            ),
            "POST" if t.contains("mount=") => reply(
                "202 Accepted",
                &format!("Location: http://{storage}/upload/declined-mount\r\n"),
                "",
            ),
            // The registry itself, named differently: another host as far as credentials go.
            "POST" if t.starts_with("/v2/alias/") => reply(
                "202 Accepted",
                &format!(
                    "Location: http://localhost:{}/v2/alias/b/blobs/uploads/u\r\n",
                    me.rsplit_once(':').map_or("", |(_, port)| port)
                ),
                "",
            ),
            "POST" if t.starts_with("/v2/own/") => reply(
                "202 Accepted",
                "Location: /v2/own/b/blobs/uploads/u1?_state=s\r\n",
                "",
            ),
            "POST" => reply(
                "202 Accepted",
                &format!("Location: http://{storage}/upload/1?_state=s\r\n"),
                "",
            ),
            "PATCH" => reply(
                "202 Accepted",
                &format!("Location: http://{storage}/upload/2\r\n"),
                "",
            ),
            _ => reply("404 Not Found", "", ""),
        }
    })
}

fn connect(reg: &Recorder) -> Registry {
    crate::testutil::connect_basic(&reg.addr)
}

fn methods(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.method.as_str()).collect()
}

/// Every upload path the client has — monolithic `PUT`, streamed `PATCH` + `PUT` from a
/// session opened elsewhere or moved elsewhere by a `PATCH`, and the `DELETE` of a declined
/// mount's session — against a registry with `auth`.
fn uploads_to_another_host_carry_no_credentials(auth: Auth) {
    let storage = storage();
    let reg = registry(auth, &storage.addr);
    let client = connect(&reg);
    let (_dir, store) = crate::testutil::store();
    let blob = b"layer bytes".to_vec();
    let desc = store
        .put_bytes(rbuild_layers::MediaType::OciLayerGzip, &blob)
        .expect("put");
    let file = store.blob_path(&desc.digest);
    let uploaded = client
        .upload_blob("a/b", &desc, &file, None)
        .expect("upload");
    assert_eq!(uploaded, blobs::Uploaded::Sent);
    for repo in ["a/b", "own/b"] {
        let size = blob.len() as u64;
        let digest = desc.digest.clone();
        client
            .upload_streamed(repo, Box::new(std::io::Cursor::new(blob.clone())), &|| {
                Some((digest.clone(), size))
            })
            .expect("streamed upload");
    }
    let other = Digest::sha256_of(b"other");
    assert!(!client.mount_blob("a/b", &other, "c/d").expect("mount"));

    let seen = storage.seen();
    assert_eq!(
        methods(&seen),
        ["PUT", "PATCH", "PUT", "PUT", "DELETE"],
        "{seen:?}"
    );
    let leaked: Vec<&Seen> = seen.iter().filter(|s| s.authorization.is_some()).collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to another host: {leaked:?}"
    );
    // The `PATCH` answer's relative Location stayed on the storage host.
    assert!(
        seen[2].target.starts_with("/upload/next?digest="),
        "{seen:?}"
    );
    // The registry itself got them (the test would prove nothing otherwise).
    let authorized = reg
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.authorization.is_some())
        .count();
    assert_eq!(authorized, 4, "{:?}", reg.seen());
}

#[test]
fn upload_location_on_other_host_gets_no_basic_credentials() {
    uploads_to_another_host_carry_no_credentials(Auth::Basic);
}

#[test]
fn upload_location_on_other_host_gets_no_bearer_token() {
    uploads_to_another_host_carry_no_credentials(Auth::Bearer);
}

/// The blob `GET` redirect (already covered for Basic in tests.rs), with a bearer token.
#[test]
fn blob_redirect_to_other_host_gets_no_bearer_token() {
    let storage = storage();
    let reg = registry(Auth::Bearer, &storage.addr);
    let client = connect(&reg);
    let (_dir, store) = crate::testutil::store();
    let desc = rbuild_layers::Descriptor::new(
        rbuild_layers::MediaType::OciLayerGzip,
        Digest::sha256_of(b"blob"),
        4,
    );
    assert!(client
        .fetch_blob(&store, "a/b", &desc, &|_| {})
        .expect("fetch"));
    let seen = storage.seen();
    assert_eq!(methods(&seen), ["GET"]);
    assert_eq!(seen[0].authorization, None, "{seen:?}");
}

/// A 401 from the other host is not answered with this registry's credentials or a token: it
/// is an error naming that host.
#[test]
fn a_challenge_from_the_upload_host_is_not_answered_with_the_registry_credentials() {
    let challenged = Arc::new(AtomicBool::new(false));
    let flag = challenged.clone();
    let storage = recorder(move |_, me| {
        flag.store(true, Ordering::SeqCst);
        reply(
            "401 Unauthorized",
            &format!("WWW-Authenticate: Bearer realm=\"http://{me}/token\"\r\n"),
            "",
        )
    });
    let reg = registry(Auth::Basic, &storage.addr);
    let client = connect(&reg);
    let (_dir, store) = crate::testutil::store();
    let desc = store
        .put_bytes(rbuild_layers::MediaType::OciLayerGzip, b"x")
        .expect("put");
    let e = client
        .upload_blob("a/b", &desc, &store.blob_path(&desc.digest), None)
        .expect_err("the storage host refuses");
    assert!(challenged.load(Ordering::SeqCst));
    let text = e.to_string();
    assert!(
        text.contains(&format!("http://{}/upload/1", storage.addr)) && text.contains("401"),
        "{text}"
    );
    let seen = storage.seen();
    assert_eq!(
        methods(&seen),
        ["PUT"],
        "no token request, no retry with one"
    );
    assert_eq!(seen[0].authorization, None);
}

/// The host as named decides, not the address it resolves to: `localhost` is not
/// `127.0.0.1`, even on the same port.
#[test]
fn upload_location_naming_another_host_on_the_same_port_gets_no_credentials() {
    let storage = storage();
    let reg = registry(Auth::Basic, &storage.addr);
    let client = connect(&reg);
    let (_dir, store) = crate::testutil::store();
    let desc = store
        .put_bytes(rbuild_layers::MediaType::OciLayerGzip, b"y")
        .expect("put");
    // Without credentials the registry refuses the PUT.
    let e = client
        .upload_blob("alias/b", &desc, &store.blob_path(&desc.digest), None)
        .expect_err("refused");
    assert!(e.to_string().contains("401"), "{e}");
    let seen = reg.seen();
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.len(), 1, "{seen:?}");
    assert_eq!(puts[0].authorization, None, "{seen:?}");
}

/// containers-auth.json(5): a `host/namespace/repo` key is used for that repository (and a
/// token for its scope is fetched with it), the host key for every other repository; a mount's
/// request uses the credential of the repository it writes to.
#[test]
fn each_repository_gets_its_most_specific_credential() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for auth in [Auth::Basic, Auth::Bearer] {
        // Wants `u:p` (the repository key) everywhere; the host key's password is wrong.
        let reg_server = registry(auth, "127.0.0.1:9");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("auth.json");
        let host = &reg_server.addr;
        std::fs::write(
            &file,
            serde_json::json!({"auths": {
                host.clone(): {"auth": b64("u:wrong")},
                format!("{host}/team/app"): {"auth": b64("u:p")},
            }})
            .to_string(),
        )
        .expect("write auth.json");
        let opts = ClientOptions {
            auth_files: Some(vec![crate::auth::credentials::AuthFile::json(&file)]),
            max_attempts: 1,
            ..ClientOptions::default()
        };
        let reg = Registry::connect(host, &opts).expect("connect");
        let d = Digest::sha256_of(b"x");
        assert!(!reg.has_blob("team/app", &d).expect("the repository key"));
        let e = reg
            .has_blob("team/web", &d)
            .expect_err("the host key is wrong");
        let text = e.to_string();
        assert!(
            matches!(e, RegistryError::Unauthorized { .. }) && text.contains("auth.json"),
            "{text}"
        );
        assert!(!text.contains("wrong"), "{text}");
    }
}

#[test]
fn the_repository_of_a_scope_is_its_first() {
    assert_eq!(
        scope_repository("repository:a/b:pull,push repository:c/d:pull"),
        Some("a/b")
    );
    assert_eq!(scope_repository("repository:h/x:pull"), Some("h/x"));
    assert_eq!(scope_repository(""), None);
    assert_eq!(scope_repository("registry:catalog:*"), None);
}
