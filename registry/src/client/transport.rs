//! TLS trust and the choice between HTTPS and plain HTTP for one registry host.
//!
//! Trust: the system roots plus, for that host only, CA files from `--registry-ca HOST=FILE` and
//! the `certs.d` conventions (`/etc/docker/certs.d/HOST[:PORT]/*.crt`,
//! `/etc/containers/certs.d/HOST[:PORT]/*.crt`). Plain HTTP only for hosts named as insecure
//! and, as Docker does, for `localhost` and 127.0.0.0/8 — and even there HTTPS is tried first
//! (one `GET /v2/`), falling back to HTTP only when the TLS connection fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::RegistryError;

/// Where `certs.d` directories are looked for.
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

/// The CA files that apply to `host`.
pub fn ca_files_for(host: &str, explicit: &[(String, PathBuf)]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = explicit
        .iter()
        .filter(|(h, _)| h == host)
        .map(|(_, p)| p.clone())
        .collect();
    for root in CERTS_D_ROOTS {
        let dir = Path::new(root).join(host);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "crt"))
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    out
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

/// Starts reading the system roots on a background thread, so that a build's first registry
/// request does not wait for them (the caller goes on parsing the Dockerfile meanwhile).
pub fn preload_system_roots() {
    let _ = std::thread::Builder::new()
        .name("tls-roots".into())
        .spawn(|| {
            system_roots();
        });
}

/// A rustls configuration trusting the system roots and `extra_cas`. Without extra CAs every
/// host shares one configuration.
pub fn tls_config(
    host: &str,
    extra_cas: &[PathBuf],
) -> Result<Arc<rustls::ClientConfig>, RegistryError> {
    if extra_cas.is_empty() {
        static SYSTEM_ONLY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        if let Some(c) = SYSTEM_ONLY.get() {
            return Ok(c.clone());
        }
        let c = build_config(host, system_roots().clone())?;
        return Ok(SYSTEM_ONLY.get_or_init(|| c).clone());
    }
    let mut roots = system_roots().clone();
    for path in extra_cas {
        let pem = std::fs::read(path)
            .map_err(|e| tls_error(host, format!("reading CA file {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.map_err(|e| tls_error(host, format!("CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| tls_error(host, format!("CA file {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(tls_error(
                host,
                format!("CA file {} holds no PEM certificate", path.display()),
            ));
        }
    }
    build_config(host, roots)
}

fn build_config(
    host: &str,
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(host, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP agent for one registry.
pub fn agent(tls: Arc<rustls::ClientConfig>) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(tls)
        .timeout_connect(Duration::from_secs(15))
        // Per read, not per body: a 512 MiB blob may take minutes, a stalled socket may not.
        .timeout_read(Duration::from_secs(60))
        .timeout_write(Duration::from_secs(60))
        .redirects(5)
        // Blob downloads are often redirected to storage elsewhere: credentials never follow a
        // redirect (ureq's `SameHost` ignores the port, so it would send them to another
        // service on the same machine — found by the redirect test).
        .redirect_auth_headers(ureq::RedirectAuthHeaders::Never)
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .build()
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
