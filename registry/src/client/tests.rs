//! The client against a tiny in-process registry that speaks distribution's token auth: a 401
//! with a Bearer challenge, a token service that wants Basic credentials, and manifests that
//! need the token. Checks the token is fetched once and reused, a wrong password is an
//! Unauthorized error naming the source and not the secret, and a digest mismatch is rejected.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;

use super::*;
use crate::auth::Secret;
use crate::Digest;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

struct Fake {
    addr: String,
    token_requests: Arc<AtomicUsize>,
}

/// Serves until the test process ends. `lie_about_digest` sends a wrong Docker-Content-Digest.
fn fake_registry(lie_about_digest: bool) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let count = token_requests.clone();
    let me = addr.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 || chunk[0] == 0x16 && buf.is_empty() {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            // A form body (the OAuth2 refresh-token grant) follows the head.
            let head_len = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(buf.len(), |i| i + 4);
            let body_len: usize = String::from_utf8_lossy(&buf[..head_len])
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            while buf.len() < head_len + body_len {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let req = String::from_utf8_lossy(&buf).into_owned();
            if req.is_empty() {
                continue;
            }
            let line = req.lines().next().unwrap_or("").to_string();
            let auth = req
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Authorization: ")
                        .or(l.strip_prefix("authorization: "))
                })
                .unwrap_or("")
                .to_string();
            let good_basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("u:p")
            );
            let (status, headers, body) = if line.starts_with("POST /token") {
                count.fetch_add(1, Ordering::SeqCst);
                let form = &req[head_len.min(req.len())..];
                if form.contains("grant_type=refresh_token")
                    && form.contains("refresh_token=R1")
                    && form.contains("scope=repository%3Aa%2Fb%3Apull")
                {
                    (
                        "200 OK",
                        String::new(),
                        r#"{"access_token":"T1","expires_in":300}"#.to_string(),
                    )
                } else {
                    ("401 Unauthorized", String::new(), String::new())
                }
            } else if line.starts_with("GET /token?") {
                count.fetch_add(1, Ordering::SeqCst);
                if auth == good_basic && line.contains("scope=repository%3Aa%2Fb%3Apull") {
                    (
                        "200 OK",
                        String::new(),
                        r#"{"token":"T1","expires_in":300}"#.to_string(),
                    )
                } else {
                    ("401 Unauthorized", String::new(), String::new())
                }
            } else if auth != "Bearer T1" {
                (
                    "401 Unauthorized",
                    format!(
                        "WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"fake\"\r\n"
                    ),
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_string(),
                )
            } else if line.starts_with("GET /v2/a/b/manifests/x ") {
                let digest = if lie_about_digest {
                    Digest::sha256_of(b"something else")
                } else {
                    Digest::sha256_of(MANIFEST.as_bytes())
                };
                (
                    "200 OK",
                    format!("Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {digest}\r\n"),
                    MANIFEST.to_string(),
                )
            } else {
                ("404 Not Found", String::new(), String::new())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    Fake {
        addr,
        token_requests,
    }
}

fn options(password: &str) -> ClientOptions {
    ClientOptions {
        credential: Some(Credential::Basic {
            username: "u".into(),
            password: Secret::new(password),
        }),
        max_attempts: 2,
        ..ClientOptions::default()
    }
}

#[test]
fn bearer_token_is_fetched_with_basic_credentials_once_and_reused() {
    let fake = fake_registry(false);
    let reg = Registry::connect(&fake.addr, &options("p")).expect("connect");
    for _ in 0..3 {
        let m = reg.get_manifest("a/b", "x").expect("manifest");
        assert_eq!(m.digest, Digest::sha256_of(MANIFEST.as_bytes()));
        assert_eq!(m.media_type, rbuild_layers::MediaType::OciImageManifest);
    }
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_rejected_password_is_unauthorized_naming_the_source_not_the_secret() {
    let fake = fake_registry(false);
    let reg = Registry::connect(&fake.addr, &options("wrong-secret-77")).expect("connect");
    let e = reg.get_manifest("a/b", "x").expect_err("must fail");
    let text = format!("{e} {e:?}");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains(&fake.addr) && text.contains("the command line"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-77"), "{text}");
}

#[test]
fn a_docker_content_digest_that_disagrees_with_the_body_is_rejected() {
    let fake = fake_registry(true);
    let reg = Registry::connect(&fake.addr, &options("p")).expect("connect");
    let e = reg.get_manifest("a/b", "x").expect_err("must fail");
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
}

#[test]
fn an_identity_token_is_exchanged_with_the_oauth2_refresh_token_grant() {
    let fake = fake_registry(false);
    let opts = ClientOptions {
        credential: Some(Credential::IdentityToken(Secret::new("R1"))),
        max_attempts: 2,
        ..ClientOptions::default()
    };
    let reg = Registry::connect(&fake.addr, &opts).expect("connect");
    reg.get_manifest("a/b", "x").expect("manifest");
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
}

/// A one-request-per-connection HTTP server answering with `respond(request head)`.
fn serve(respond: impl Fn(&str) -> Vec<u8> + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 || (buf.is_empty() && chunk[0] == 0x16) {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            if buf.is_empty() || buf[0] == 0x16 {
                continue;
            }
            let _ = conn.write_all(&respond(&String::from_utf8_lossy(&buf)));
        }
    });
    addr
}

fn has_authorization(req: &str) -> bool {
    req.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    })
}

/// containerd CVE-2020-15157 / docker CVE-2021-41092: a blob download redirected to another
/// host must not carry the registry's credentials there.
#[test]
fn a_redirect_to_another_host_carries_no_credentials() {
    let blob = b"layer bytes".to_vec();
    let digest = Digest::sha256_of(&blob);
    let saw_auth = Arc::new(AtomicUsize::new(0));
    let seen = saw_auth.clone();
    let body = blob.clone();
    let storage = serve(move |req| {
        if has_authorization(req) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    });
    let registry = serve(move |req| {
        if !has_authorization(req) {
            return b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        }
        format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{storage}/blob\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
    });
    let reg = Registry::connect(&registry, &options("p")).expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rbuild_layers::store::Store::open(dir.path()).expect("store");
    let desc = rbuild_layers::Descriptor::new(
        rbuild_layers::MediaType::OciLayerGzip,
        digest.clone(),
        blob.len() as u64,
    );
    assert!(reg
        .fetch_blob(&store, "a/b", &desc, &|_| {})
        .expect("fetch"));
    assert!(store.has_blob(&digest));
    assert_eq!(
        saw_auth.load(Ordering::SeqCst),
        0,
        "credentials leaked to the redirect target"
    );
}

/// The TLS registry tests/run.sh starts (Go's net/http offers `h2` by ALPN): the client speaks
/// HTTP/2 to it.
#[test]
fn http2_is_used_where_the_registry_offers_it() {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(host), Some(ca), Some(user), Some(password)) = (
        get("RBUILD_TEST_TLS_REGISTRY"),
        get("RBUILD_TEST_TLS_CA"),
        get("RBUILD_TEST_TLS_USER"),
        get("RBUILD_TEST_TLS_PASSWORD"),
    ) else {
        assert!(
            std::env::var("RBUILD_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "tests/run.sh must start the TLS registry"
        );
        eprintln!("SKIPPED: no TLS test registry (bash tests/run.sh starts one)");
        return;
    };
    let opts = ClientOptions {
        ca_files: vec![(host.clone(), ca.into())],
        credential: Some(Credential::Basic {
            username: user,
            password: Secret::new(password),
        }),
        ..ClientOptions::default()
    };
    let reg = Registry::connect(&host, &opts).expect("connect");
    let resp = reg
        .send(&Req {
            method: "GET",
            target: "/v2/".into(),
            scope: String::new(),
            headers: vec![],
            body: Body::Empty,
        })
        .expect("GET /v2/ with Basic credentials");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
}

/// A streamed upload whose source fails half-way (the compressor died) must not reach the
/// registry as a complete chunked body: the connection is aborted, so the registry never
/// records the `PATCH`, and the session is cancelled.
#[test]
fn a_streamed_body_whose_source_fails_is_aborted_not_ended() {
    use crate::testutil::{recorder, reply};
    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("compressor died"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let reg = recorder(|req, _| match req.method.as_str() {
        "POST" => reply("202 Accepted", "Location: /v2/a/b/blobs/uploads/u1\r\n", ""),
        "PATCH" => reply("202 Accepted", "Location: /v2/a/b/blobs/uploads/u1\r\n", ""),
        _ => reply("204 No Content", "", ""),
    });
    // Retries allowed: a streamed body is not retried, its own failure is reported.
    let client = Registry::connect(&reg.addr, &options("p")).expect("connect");
    let e = client
        .upload_streamed("a/b", Box::new(FailsAfter(600 * 1024)), &|| None)
        .expect_err("the source failed");
    assert!(e.to_string().contains("compressor died"), "{e}");
    let methods: Vec<String> = reg.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["POST", "DELETE"], "{e}");
}

/// A registry serving blob GETs: the first `bad` answers carry corrupted bytes (same length),
/// the rest the right ones. Returns its address and the count of GETs.
fn corrupting_registry(blob: Vec<u8>, bad: usize) -> (String, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let count = gets.clone();
    let addr = serve(move |_req| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let mut body = blob.clone();
        if n < bad {
            body[0] ^= 0xff;
        }
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    });
    (addr, gets)
}

fn blob_desc(blob: &[u8]) -> rbuild_layers::Descriptor {
    rbuild_layers::Descriptor::new(
        rbuild_layers::MediaType::OciLayerGzip,
        Digest::sha256_of(blob),
        blob.len() as u64,
    )
}

/// Issue 15: "A blob whose bytes fail verification is retried once from scratch before the
/// build fails (it is never stored)."
#[test]
fn a_blob_that_fails_verification_is_downloaded_once_more_then_stored() {
    let blob = b"layer bytes, corrupted once".to_vec();
    let (addr, gets) = corrupting_registry(blob.clone(), 1);
    let reg = Registry::connect(&addr, &ClientOptions::default()).expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rbuild_layers::store::Store::open(dir.path()).expect("store");
    let desc = blob_desc(&blob);
    assert!(reg
        .fetch_blob(&store, "a/b", &desc, &|_| {})
        .expect("fetch"));
    assert!(store.has_blob(&desc.digest));
    assert_eq!(gets.load(Ordering::SeqCst), 2);

    let (addr, gets) = corrupting_registry(blob.clone(), 1);
    let reg = Registry::connect(&addr, &ClientOptions::default()).expect("connect");
    assert_eq!(
        reg.get_blob_bytes("a/b", &desc, 1 << 20).expect("get"),
        blob
    );
    assert_eq!(gets.load(Ordering::SeqCst), 2);
}

#[test]
fn a_blob_that_fails_verification_twice_fails_and_is_never_stored() {
    let blob = b"layer bytes, always corrupted".to_vec();
    let (addr, gets) = corrupting_registry(blob.clone(), usize::MAX);
    let reg = Registry::connect(&addr, &ClientOptions::default()).expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rbuild_layers::store::Store::open(dir.path()).expect("store");
    let desc = blob_desc(&blob);
    let e = reg
        .fetch_blob(&store, "a/b", &desc, &|_| {})
        .expect_err("corrupt twice");
    assert!(e.to_string().contains("digest"), "{e}");
    assert!(!store.has_blob(&desc.digest));
    assert_eq!(gets.load(Ordering::SeqCst), 2, "exactly one more download");

    let (addr, gets) = corrupting_registry(blob.clone(), usize::MAX);
    let reg = Registry::connect(&addr, &ClientOptions::default()).expect("connect");
    let e = reg
        .get_blob_bytes("a/b", &desc, 1 << 20)
        .expect_err("corrupt twice");
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert_eq!(gets.load(Ordering::SeqCst), 2);
}
