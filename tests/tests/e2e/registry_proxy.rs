//! Registry traffic through an HTTP proxy from `HTTP_PROXY`/`HTTPS_PROXY`: a real proxy
//! (tinyproxy) on loopback, requiring Basic credentials, is the only way to the registry — the
//! registry is named `rbuild-registry.proxied.test`, a name only the proxy resolves (it runs in
//! a mount namespace of its own whose `/etc/hosts` maps it to 127.0.0.1). A push and a pull
//! through it succeed and appear in its log; without the proxy variables the name does not
//! resolve; with a wrong proxy password the build fails without printing either password; the
//! loopback registry is reached directly even with the variables set. An
//! HTTPS registry by that name is reached through the proxy's `CONNECT` tunnel, trusted through
//! `certs.d/NAME:PORT/`.

use std::path::Path;
use std::process::Command;

use crate::registry_roundtrip::{child_context, tiny_context};
use crate::registry_tls::{free_port, start_tls_registry, wait_listening, Server};
use rbuild_tests::build::build_cmd;
use rbuild_tests::tls::self_signed;
use rbuild_tests::{have_tool, run, scratch, test_registry, tools_required, Run};

const NAME: &str = "rbuild-registry.proxied.test";
const USER: &str = "proxy-user";
const PASSWORD: &str = "proxy-s3cret-9d1e";

/// tinyproxy on `127.0.0.1:port` with Basic auth, resolving [`NAME`] to 127.0.0.1; `None`
/// (skipped) where mount namespaces are not available.
fn start_proxy(dir: &Path, port: u16) -> Option<Server> {
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {NAME}\n")).unwrap();
    let log = dir.join("proxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 50\nBasicAuth {USER} {PASSWORD}\n",
            log.display()
        ),
    )
    .unwrap();
    // `unshare` execs the shell, which execs tinyproxy: the child is the proxy itself.
    let child = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount --bind '{}' /etc/hosts && exec tinyproxy -d -c '{}'",
            hosts.display(),
            conf.display()
        ))
        .stdout(std::fs::File::create(dir.join("proxy.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("proxy.err")).unwrap())
        .spawn()
        .unwrap();
    let server = Server(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        if !std::fs::read_to_string(dir.join("proxy.err"))
            .unwrap_or_default()
            .is_empty()
        {
            let err = std::fs::read_to_string(dir.join("proxy.err")).unwrap_or_default();
            assert!(!tools_required(), "tinyproxy did not start: {err}");
            eprintln!("SKIPPED: tinyproxy in a mount namespace did not start: {err}");
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    wait_listening(port, &log);
    Some(server)
}

/// A build with the proxy variables set to `proxy` (or all removed).
fn build_via(store: &Path, ctx: &Path, proxy: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = build_cmd(store, ctx);
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(k);
    }
    if let Some(p) = proxy {
        cmd.env("HTTP_PROXY", p).env("https_proxy", p);
    }
    run(cmd
        .env("DOCKER_CONFIG", store.join("no-docker-config"))
        .args(args))
}

#[test]
fn a_registry_reachable_only_through_an_authenticating_proxy_is_pushed_to_and_pulled_from() {
    let Some(reg) = test_registry() else { return };
    if !have_tool("tinyproxy") || !have_tool("unshare") {
        return;
    }
    let dir = scratch();
    let proxy_port = free_port();
    let Some(_proxy) = start_proxy(dir.path(), proxy_port) else {
        return;
    };
    let registry_port = reg.rsplit(':').next().unwrap();
    let host = format!("{NAME}:{registry_port}");
    let image = format!("{host}/e2e/proxied:v1");
    let insecure = ["--insecure-registry", host.as_str()];
    let proxy = format!("http://{USER}:{PASSWORD}@127.0.0.1:{proxy_port}");

    let ctx = dir.path().join("base");
    tiny_context(&ctx, "through the proxy\n");
    let mut args = vec!["--tag", image.as_str(), "--push"];
    args.extend(insecure);
    let out = build_via(&dir.path().join("s1"), &ctx, Some(&proxy), &args).success();
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);

    let child = dir.path().join("child");
    child_context(&child, &image);
    build_via(&dir.path().join("s2"), &child, Some(&proxy), &insecure).success();

    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    for request in [
        format!("PUT http://{host}/v2/e2e/proxied/manifests/v1"),
        format!("GET http://{host}/v2/e2e/proxied/manifests/v1"),
    ] {
        assert!(
            log.contains(&request),
            "{request} not in the proxy log:\n{log}"
        );
    }

    // Loopback is never proxied (as Docker and Go decide): with the variables naming a proxy
    // that does not exist, the registry on 127.0.0.1 is still pushed to directly.
    let dead = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", free_port());
    let direct = format!("{reg}/e2e/not-proxied:v1");
    build_via(
        &dir.path().join("s5"),
        &ctx,
        Some(&dead),
        &["--tag", &direct, "--push"],
    )
    .success();

    // Without the proxy the name does not resolve: the build cannot reach the registry.
    let out = build_via(&dir.path().join("s3"), &child, None, &insecure);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&host), "{}", out.stderr);

    // A wrong proxy password: refused by the proxy, and neither password is printed.
    let wrong = "wrong-proxy-pass-4c7a";
    let bad = format!("http://{USER}:{wrong}@127.0.0.1:{proxy_port}");
    let out = build_via(&dir.path().join("s4"), &child, Some(&bad), &insecure);
    assert_eq!(out.code, 1, "{}", out.stderr);
    for secret in [wrong, PASSWORD] {
        assert!(
            !out.stderr.contains(secret) && !out.stdout.contains(secret),
            "{}",
            out.stderr
        );
    }
}

/// HTTPS through the proxy: the registry (its own self-signed certificate for [`NAME`], trusted
/// through `certs.d/NAME:PORT/ca.crt`) is reached by a `CONNECT` tunnel the proxy opens with
/// the proxy credentials; TLS runs end to end inside it.
#[test]
fn an_https_registry_is_reached_through_a_connect_tunnel_and_certs_d_by_name() {
    if !have_tool("tinyproxy") || !have_tool("unshare") || !have_tool("docker-registry") {
        return;
    }
    let dir = scratch();
    let proxy_port = free_port();
    let Some(_proxy) = start_proxy(dir.path(), proxy_port) else {
        return;
    };
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    self_signed(
        &certs,
        NAME,
        Some(&format!("DNS:{NAME}")),
        "server.key",
        "server.crt",
    );
    let registry_port = free_port();
    let _registry = start_tls_registry(&certs, registry_port, "");
    let host = format!("{NAME}:{registry_port}");
    let certs_d = dir.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&host)).unwrap();
    std::fs::copy(certs.join("server.crt"), certs_d.join(&host).join("ca.crt")).unwrap();
    let proxy = format!("http://{USER}:{PASSWORD}@127.0.0.1:{proxy_port}");
    let image = format!("{host}/e2e/tunnelled:v1");

    let ctx = dir.path().join("base");
    tiny_context(&ctx, "through a tunnel\n");
    let store = dir.path().join("s1");
    let out = run(build_cmd(&store, &ctx)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("HTTPS_PROXY", &proxy)
        .env("RBUILD_CERTS_D", &certs_d)
        .env("DOCKER_CONFIG", store.join("no-docker-config"))
        .args(["--tag", &image, "--push"]))
    .success();
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    assert!(
        log.contains(&format!("CONNECT {host}")),
        "no CONNECT tunnel in the proxy log:\n{log}"
    );
    // What the registry stored is what was pushed: its own log shows the manifest PUT.
    let registry_log = std::fs::read_to_string(certs.join("registry.log")).unwrap();
    assert!(
        registry_log.contains("/v2/e2e/tunnelled/manifests/v1"),
        "{registry_log}"
    );
}
