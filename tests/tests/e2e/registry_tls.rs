//! TLS as Docker and containers set it up, against a real registry (CNCF distribution) that
//! this test starts with certificates it makes with `openssl`:
//! - the server's self-signed certificate (`CA:TRUE`, as `openssl req -x509` makes it) copied
//!   into `certs.d/HOST:PORT/ca.crt` is trusted as its own CA (Docker's documented pattern;
//!   webpki alone refuses it with `CaUsedAsEndEntity`);
//! - the registry requires client certificates (`clientcas`): `client.cert` + `client.key` in
//!   the same directory are presented, and without them the registry refuses the build;
//! - `--tls-verify=false` accepts the certificate with no CA at all, warned about once;
//! - BuildKit's `--output type=registry,…,registry.insecure=true` does the same for that
//!   output's host only, warned about once.
//!
//! `RBUILD_CERTS_D` points rbuild at the test's own `certs.d` root instead of `/etc/docker`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::registry_roundtrip::{child_context, tiny_context};
use rbuild_tests::build::build_cmd;
use rbuild_tests::tls::{openssl, self_signed};
use rbuild_tests::{have_tool, run, scratch, Run};

/// A server process killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until something listens on `127.0.0.1:port`.
pub fn wait_listening(port: u16, log: &Path) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "server on port {port} did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The certificates: a self-signed server certificate for 127.0.0.1, and a client CA with a
/// client certificate it signed.
fn make_certs(dir: &Path) {
    self_signed(
        dir,
        "127.0.0.1",
        Some("IP:127.0.0.1"),
        "server.key",
        "server.crt",
    );
    self_signed(
        dir,
        "rbuild client CA",
        None,
        "client-ca.key",
        "client-ca.crt",
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=rbuild client",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "client-ca.crt",
            "-CAkey",
            "client-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            "client.cert",
        ],
    );
}

/// A registry on `127.0.0.1:port` serving `dir/server.crt` and requiring a client certificate
/// signed by `dir/client-ca.crt`.
fn start_mtls_registry(dir: &Path, port: u16) -> Server {
    let d = dir.display();
    start_tls_registry(
        dir,
        port,
        &format!("    clientcas:\n      - {d}/client-ca.crt\n"),
    )
}

/// A registry on `127.0.0.1:port` serving `dir/server.crt` (`dir/server.key`); `extra` goes
/// on at the end of its `http.tls` section.
pub fn start_tls_registry(dir: &Path, port: u16, extra: &str) -> Server {
    let d = dir.display();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n{extra}"
        ),
    )
    .unwrap();
    let log = dir.join("registry.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_listening(port, &log);
    server
}

/// `root/HOST/` holding `files` (name in certs.d, file in `certs`).
fn certs_d(root: &Path, host: &str, certs: &Path, files: &[(&str, &str)]) -> PathBuf {
    let d = root.join(host);
    std::fs::create_dir_all(&d).unwrap();
    for (name, from) in files {
        std::fs::copy(certs.join(from), d.join(name)).unwrap();
    }
    root.to_path_buf()
}

fn build_with(certs_root: &Path, store: &Path, ctx: &Path, args: &[&str]) -> Run {
    run(build_cmd(store, ctx)
        .env("RBUILD_CERTS_D", certs_root)
        .env("DOCKER_CONFIG", store.join("no-docker-config"))
        .args(args))
}

#[test]
fn certs_d_self_signed_server_certificate_and_client_certificate_reach_an_mtls_registry() {
    if !have_tool("docker-registry") || !have_tool("openssl") {
        return;
    }
    let dir = scratch();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let port = free_port();
    let _registry = start_mtls_registry(&certs, port);
    let host = format!("127.0.0.1:{port}");

    let full = certs_d(
        &dir.path().join("certs.d"),
        &host,
        &certs,
        &[
            ("ca.crt", "server.crt"),
            ("client.cert", "client.cert"),
            ("client.key", "client.key"),
        ],
    );
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "mtls\n");
    let name = format!("{host}/e2e/mtls:v1");
    build_with(
        &full,
        &dir.path().join("s1"),
        &ctx,
        &["--tag", &name, "--push"],
    )
    .success();
    // Pulled back into an empty store: FROM the pushed image.
    let child = dir.path().join("child");
    child_context(&child, &name);
    build_with(&full, &dir.path().join("s2"), &child, &[]).success();

    // The same CA without the client certificate: the registry refuses the handshake.
    let no_client = certs_d(
        &dir.path().join("certs.d-no-client"),
        &host,
        &certs,
        &[("ca.crt", "server.crt")],
    );
    let out = build_with(&no_client, &dir.path().join("s3"), &child, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&host), "{}", out.stderr);

    // The client certificate without the CA: the server is not trusted...
    let no_ca = certs_d(
        &dir.path().join("certs.d-no-ca"),
        &host,
        &certs,
        &[("client.cert", "client.cert"), ("client.key", "client.key")],
    );
    let out = build_with(&no_ca, &dir.path().join("s4"), &child, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    // ...unless verification is turned off, which is said once.
    let out = build_with(
        &no_ca,
        &dir.path().join("s5"),
        &child,
        &["--tls-verify=false"],
    )
    .success();
    let warning = format!("registry {host}: TLS certificate verification is off");
    assert_eq!(
        out.stderr.matches(&warning).count(),
        1,
        "one warning per registry:\n{}",
        out.stderr
    );
}

#[test]
fn a_client_certificate_without_its_key_is_a_clear_error() {
    if !have_tool("openssl") {
        return;
    }
    let dir = scratch();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let host = format!("127.0.0.1:{}", free_port());
    let root = certs_d(
        &dir.path().join("certs.d"),
        &host,
        &certs,
        &[("client.cert", "client.cert")],
    );
    let ctx = dir.path().join("child");
    child_context(&ctx, &format!("{host}/e2e/nokey:v1"));
    let out = build_with(&root, &dir.path().join("s"), &ctx, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("client.cert") && out.stderr.contains("has no key"),
        "{}",
        out.stderr
    );
}

/// `registry.insecure=true` on a registry output pushes to a TLS registry whose certificate
/// nothing trusts (no CA anywhere), with one warning; without it the push fails on the
/// certificate. It is that output's host only: a pull from the same TLS registry in a build
/// whose insecure output goes elsewhere still verifies the certificate.
#[test]
fn registry_insecure_output_option_pushes_to_an_unverifiable_tls_registry() {
    if !have_tool("docker-registry") || !have_tool("openssl") {
        return;
    }
    let dir = scratch();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let port = free_port();
    let _registry = start_tls_registry(&certs, port, "");
    let host = format!("127.0.0.1:{port}");
    let no_certs = dir.path().join("certs.d-empty");
    std::fs::create_dir_all(&no_certs).unwrap();
    let ctx = dir.path().join("base");
    tiny_context(&ctx, "insecure output\n");
    let name = format!("{host}/e2e/insecure:v1");

    let plain = format!("type=registry,name={name}");
    let out = build_with(
        &no_certs,
        &dir.path().join("s1"),
        &ctx,
        &["--output", &plain],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);

    let insecure = format!("type=image,name={name},push=true,registry.insecure=true");
    let out = build_with(
        &no_certs,
        &dir.path().join("s1"),
        &ctx,
        &["--output", &insecure],
    )
    .success();
    let warning =
        format!("registry {host}: TLS certificate verification is off (registry.insecure=true");
    assert_eq!(
        out.stderr.matches(&warning).count(),
        1,
        "one warning:\n{}",
        out.stderr
    );
    let manifest = run(Command::new("curl").args([
        "-fsSk",
        "-o",
        "/dev/null",
        &format!("https://{host}/v2/e2e/insecure/manifests/v1"),
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
    ]));
    assert_eq!(
        manifest.code, 0,
        "the image was pushed: {}",
        manifest.stderr
    );

    // An insecure output to another host leaves this one verified.
    if let Some(reg) = rbuild_tests::test_registry() {
        let child = dir.path().join("child");
        child_context(&child, &name);
        let elsewhere =
            format!("type=registry,name={reg}/e2e/insecure-elsewhere:v1,registry.insecure=true");
        let out = build_with(
            &no_certs,
            &dir.path().join("s2"),
            &child,
            &["--output", &elsewhere],
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("certificate") && out.stderr.contains(&host),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_plain_http_loopback_registry_needs_no_system_ca_certificates() {
    // A runner image without ca-certificates, building against a registry on 127.0.0.1: the
    // TLS attempt every registry gets first fails before any certificate is judged, so the
    // system roots are never read (they used to be, and their absence failed the build).
    let Some(reg) = rbuild_tests::test_registry() else {
        eprintln!("SKIPPED: no test registry (bash tests/run.sh starts one)");
        return;
    };
    let dir = scratch();
    let d = dir.path();
    let no_roots = |c: &mut Command| {
        c.env("SSL_CERT_FILE", d.join("no-such-bundle.pem"))
            .env("SSL_CERT_DIR", d.join("no-such-dir"));
    };
    let ctx = d.join("base");
    tiny_context(&ctx, "no roots\n");
    let name = format!("{reg}/e2e/no-roots:{}", std::process::id());
    let mut push = build_cmd(&d.join("s1"), &ctx);
    no_roots(push.args(["--tag", &name, "--push"]));
    run(&mut push).success();
    let child = d.join("child");
    child_context(&child, &name);
    let mut pull = build_cmd(&d.join("s2"), &child);
    no_roots(&mut pull);
    run(&mut pull).success();
}
