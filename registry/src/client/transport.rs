//! TLS trust, client certificates and the HTTP client of one registry host.
//!
//! Trust, as Docker and containers do it: the system roots plus, for that host only, the CA
//! files from `--registry-ca HOST=FILE` and the `certs.d` conventions
//! (`/etc/docker/certs.d/HOST[:PORT]/*.crt`, `/etc/containers/certs.d/HOST[:PORT]/*.crt`;
//! `RBUILD_CERTS_D`, a `:`-separated list of directories, replaces those two roots). A
//! self-signed server certificate copied there is accepted as its own CA (see
//! [`super::verify`]). Client certificates for mutual TLS come from the same directory:
//! each `NAME.cert` with its `NAME.key` (Docker's `client.cert` + `client.key` is one such
//! pair; a certificate without its key, or a key without its certificate, is an error, as in
//! Docker). `--tls-verify=false` (every host) and an output's `registry.insecure=true` (its
//! hosts) accept any server certificate, with a warning once per host.
//!
//! Plain HTTP only for hosts named as insecure and, as Docker does, for `localhost` and
//! 127.0.0.0/8 — and even there HTTPS is tried first (one `GET /v2/`), falling back to HTTP
//! only when the TLS connection fails.
//!
//! The client: `reqwest` with rbuild's own rustls configuration (ring; ALPN offers `h2` and
//! `http/1.1`, so HTTP/2 is used where the registry offers it), a connection pool per
//! registry, no automatic redirects ([`super::Registry::send`] follows the ones it may, with
//! the credentials it may), proxies from the environment ([`super::proxy`]).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::proxy::ProxyEnv;
use super::verify::{CertsDVerifier, NoVerify};
use crate::error::RegistryError;

/// Where `certs.d` directories are looked for (unless `RBUILD_CERTS_D` names others).
pub const CERTS_D_ROOTS: &[&str] = &["/etc/docker/certs.d", "/etc/containers/certs.d"];

/// Whether plain HTTP may be used for `host` (`HOST[:PORT]`).
pub fn may_use_http(host: &str, insecure: &[String]) -> bool {
    let name = host_name(host);
    if insecure.iter().any(|i| i == host || i == name) {
        return true;
    }
    name == "localhost"
        || name
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 127)
}

/// `host:port` → `host` (IPv6 literals keep their brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The certificate files that apply to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trust anchors (PEM).
    pub cas: Vec<PathBuf>,
    /// A client certificate chain and its key (PEM), for mutual TLS.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The `certs.d` roots in force.
fn certs_d_roots() -> Vec<PathBuf> {
    match std::env::var_os("RBUILD_CERTS_D") {
        Some(v) if !v.is_empty() => std::env::split_paths(&v).collect(),
        _ => CERTS_D_ROOTS.iter().map(PathBuf::from).collect(),
    }
}

/// The CA files and client certificate that apply to `host`.
pub fn tls_files_for(
    host: &str,
    explicit: &[(String, PathBuf)],
) -> Result<TlsFiles, RegistryError> {
    let mut files = TlsFiles {
        cas: explicit
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, p)| p.clone())
            .collect(),
        client: None,
    };
    for root in certs_d_roots() {
        read_certs_dir(host, &root.join(host), &mut files)?;
    }
    Ok(files)
}

/// Docker's `ReadCertsDirectory`: `*.crt` are CAs, `*.cert`/`*.key` pairs client
/// certificates (the first pair, by name, is used).
fn read_certs_dir(host: &str, dir: &Path, files: &mut TlsFiles) -> Result<(), RegistryError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut found: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    found.sort();
    for p in found {
        match p.extension().and_then(|e| e.to_str()) {
            Some("crt") => files.cas.push(p),
            Some("cert") => {
                let key = p.with_extension("key");
                if !key.exists() {
                    return Err(tls_error(
                        host,
                        format!(
                            "client certificate {} has no key {}",
                            p.display(),
                            key.display()
                        ),
                    ));
                }
                if files.client.is_none() {
                    files.client = Some((p, key));
                }
            }
            Some("key") => {
                let cert = p.with_extension("cert");
                if !cert.exists() {
                    return Err(tls_error(
                        host,
                        format!(
                            "client key {} has no certificate {}",
                            p.display(),
                            cert.display()
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn tls_error(host: &str, reason: String) -> RegistryError {
    RegistryError::Tls {
        registry: host.to_string(),
        reason,
    }
}

/// The system's trusted roots, read once per process: reading and parsing the few hundred
/// files of `/etc/ssl/certs` costs tens of milliseconds, which every registry client paid
/// before its first request.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped, as every TLS client does.
        if let Ok(certs) = rustls_native_certs::load_native_certs() {
            let _ = roots.add_parsable_certificates(certs);
        }
        roots
    })
}

/// Reads the system roots now, if no request has yet (`--isolation in-place` replaces the
/// files they are read from with the image's before its first RUN step).
pub fn load_system_roots() {
    system_roots();
}

/// Starts reading the system roots on a background thread, so that a build's first registry
/// request does not wait for them (the caller goes on parsing the Dockerfile meanwhile).
pub fn preload_system_roots() {
    let _ = std::thread::Builder::new()
        .name("tls-roots".into())
        .spawn(|| {
            system_roots();
        });
}

fn read_pem(host: &str, path: &Path, what: &str) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path)
        .map_err(|e| tls_error(host, format!("reading {what} {}: {e}", path.display())))
}

fn pem_certs(
    host: &str,
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let pem = read_pem(host, path, what)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(host, format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(
            host,
            format!("{what} {} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn client_identity(
    host: &str,
    (cert, key): &(PathBuf, PathBuf),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), RegistryError> {
    let chain = pem_certs(host, cert, "client certificate")?;
    let pem = read_pem(host, key, "client key")?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| tls_error(host, format!("client key {}: {e}", key.display())))?
        .ok_or_else(|| {
            tls_error(
                host,
                format!("client key {} holds no PEM private key", key.display()),
            )
        })?;
    Ok((chain, key))
}

/// A rustls configuration for `host`: the system roots and `files`, or no verification at
/// all when `verify` is false. Without extra files every verifying host shares one.
pub fn tls_config(
    host: &str,
    files: &TlsFiles,
    verify: bool,
) -> Result<Arc<rustls::ClientConfig>, RegistryError> {
    if verify && files == &TlsFiles::default() {
        static SYSTEM_ONLY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        if let Some(c) = SYSTEM_ONLY.get() {
            return Ok(c.clone());
        }
        let c = build_config(host, files, verify)?;
        return Ok(SYSTEM_ONLY.get_or_init(|| c).clone());
    }
    build_config(host, files, verify)
}

fn build_config(
    host: &str,
    files: &TlsFiles,
    verify: bool,
) -> Result<Arc<rustls::ClientConfig>, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut pinned = Vec::new();
    for path in &files.cas {
        for cert in pem_certs(host, path, "CA file")? {
            // Checked now (a bad CA file is an error before any request); the system roots
            // join them only when a certificate is first verified.
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| tls_error(host, format!("CA file {}: {e}", path.display())))?;
            pinned.push(cert);
        }
    }
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if verify {
        let extra = pinned.clone();
        let roots = Box::new(move || {
            let mut roots = system_roots().clone();
            for c in &extra {
                // Each was added to a store above.
                let _ = roots.add(c.clone());
            }
            roots
        });
        Arc::new(CertsDVerifier::new(provider.clone(), roots, pinned))
    } else {
        Arc::new(NoVerify::new(provider.clone()))
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(host, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &files.client {
        Some(pair) => {
            let (chain, key) = client_identity(host, pair)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(host, format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    // HTTP/2 where the registry offers it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Says once per process and host that its certificate is not verified, and `why`.
pub fn warn_unverified(host: &str, why: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(host.to_string())
    {
        eprintln!(
            "warning: registry {host}: TLS certificate verification is off ({why}); \
             anyone on the network path can impersonate it"
        );
    }
}

/// An HTTP client for one registry: `tls`, proxies from `proxy`, no automatic redirects.
pub fn client(
    host: &str,
    tls: &rustls::ClientConfig,
    proxy: ProxyEnv,
) -> Result<reqwest::Client, RegistryError> {
    // Per read, not per body: a 512 MiB blob may take minutes, a stalled socket may not.
    build_client(tls, proxy, Duration::from_secs(15), Duration::from_secs(60))
        .map_err(|e| tls_error(host, format!("building the HTTP client: {e}")))
}

/// An HTTP client for downloads from any host (`ADD <url>`): the system roots, proxies from the
/// process environment, no automatic redirects (the caller decides where credentials go).
pub fn download_client(
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, super::http::HttpError> {
    let tls = tls_config("downloads", &TlsFiles::default(), true)
        .map_err(|e| super::http::HttpError::new(e.to_string()))?;
    build_client(
        &tls,
        ProxyEnv::from_process(),
        connect_timeout,
        read_timeout,
    )
}

fn build_client(
    tls: &rustls::ClientConfig,
    proxy: ProxyEnv,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, super::http::HttpError> {
    // The client's connector arms tokio timers: it is built inside the runtime.
    let rt = super::http::handle()?;
    let _inside = rt.enter();
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        // Concurrent blob transfers share one HTTP/2 connection: windows sized to the measured
        // bandwidth-delay product, not hyper's fixed 2 MiB, keep a long link busy.
        .http2_adaptive_window(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        // reqwest's own reading of the environment does not exempt loopback as Go does.
        .no_proxy();
    if !proxy.is_empty() {
        b = b.proxy(reqwest::Proxy::custom(move |url| {
            proxy.proxy_for(url).and_then(|p| url::Url::parse(&p).ok())
        }));
    }
    b.build()
        .map_err(|e| super::http::HttpError::new(format!("building the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_for_loopback_localhost_and_named_hosts() {
        // Docker: `localhost` and 127.0.0.0/8 are implicitly insecure registries.
        assert!(may_use_http("127.0.0.1:5000", &[]));
        assert!(may_use_http("127.3.2.1", &[]));
        assert!(may_use_http("localhost:5000", &[]));
        assert!(!may_use_http("128.0.0.1:5000", &[]));
        assert!(!may_use_http("registry.example:5000", &[]));
        assert!(may_use_http(
            "registry.example:5000",
            &["registry.example:5000".into()]
        ));
        assert!(may_use_http(
            "registry.example:5000",
            &["registry.example".into()]
        ));
        assert!(!may_use_http("[::1]:5000", &["[::2]".into()]));
    }
}
