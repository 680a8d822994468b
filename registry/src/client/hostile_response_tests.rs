//! Answers a hostile or broken registry can send that once made the client panic (a panic on
//! a worker thread takes the whole build down): an error message cut inside a multi-byte
//! character, and a token whose `expires_in` overflows `Instant`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::testutil::{connect_basic as connect, recorder, reply};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

#[test]
fn an_error_message_cut_inside_a_multibyte_character_does_not_panic() {
    // "DENIED: x" is 9 bytes, so byte 200 falls in the middle of an 'é'.
    let message = format!("x{}", "é".repeat(150));
    let body = format!(r#"{{"errors":[{{"code":"DENIED","message":"{message}"}}]}}"#);
    let reg = recorder(move |_, _| reply("400 Bad Request", "", &body));
    let e = connect(&reg.addr)
        .get_manifest("a/b", "x")
        .expect_err("refused");
    let text = e.to_string();
    assert!(
        matches!(e, RegistryError::Status { status: 400, .. }),
        "{text}"
    );
    let kept = format!("DENIED: x{}", "é".repeat(95));
    assert!(text.contains(&format!("({kept})")), "{text}");
}

#[test]
fn a_token_expiring_in_u64_max_seconds_does_not_panic() {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    let reg = recorder(move |req, me| {
        if req.target.starts_with("/token") {
            count.fetch_add(1, Ordering::SeqCst);
            return reply(
                "200 OK",
                "",
                r#"{"token":"T","expires_in":18446744073709551615}"#,
            );
        }
        if req.authorization.as_deref() != Some("Bearer T") {
            return reply(
                "401 Unauthorized",
                &format!("WWW-Authenticate: Bearer realm=\"http://{me}/token\"\r\n"),
                "",
            );
        }
        reply(
            "200 OK",
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
            MANIFEST,
        )
    });
    let client = connect(&reg.addr);
    for _ in 0..2 {
        client.get_manifest("a/b", "x").expect("manifest");
    }
    assert_eq!(issued.load(Ordering::SeqCst), 1, "the token is kept");
}

#[test]
fn a_redirect_answering_a_manifest_put_is_an_error_not_a_stored_manifest() {
    let reg = recorder(|_, me| {
        reply(
            "307 Temporary Redirect",
            &format!("Location: http://{me}/elsewhere/manifest\r\n"),
            "",
        )
    });
    let media = rbuild_layers::MediaType::OciImageManifest;
    let e = connect(&reg.addr)
        .put_manifest("a/b", "latest", &media, MANIFEST.as_bytes())
        .expect_err("a 307 stores nothing");
    assert!(
        matches!(e, RegistryError::Status { status: 307, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("/elsewhere/manifest"), "{e}");
    // The redirect was not followed with the body.
    assert_eq!(reg.seen().len(), 1);
}

#[test]
fn error_bodies_are_read_with_the_spec_codes_and_with_a_registry_own_code() {
    assert_eq!(
        error_entries(
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down","detail":{"a":1}}]}"#
        ),
        [("TOOMANYREQUESTS".to_string(), "slow down".to_string())]
    );
    assert_eq!(
        error_entries(
            br#"{"errors":[{"code":"NAME_UNKNOWN"},{"code":"NOT_FOUND","message":"gone"}]}"#
        ),
        [
            ("NAME_UNKNOWN".to_string(), String::new()),
            ("NOT_FOUND".to_string(), "gone".to_string())
        ]
    );
    assert!(error_entries(b"<html>502</html>").is_empty());
}
