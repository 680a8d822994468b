//! How a registry's certificate is judged, beyond rustls' standard (webpki) verification:
//!
//! - [`CertsDVerifier`]: Docker's documented set-up for a registry with a self-signed
//!   certificate is to copy that certificate into `certs.d/HOST:PORT/ca.crt`. Such a
//!   certificate (made by `openssl req -x509`) says `CA:TRUE`, and webpki refuses a CA
//!   certificate as the server's own (`CaUsedAsEndEntity`), where Go's `crypto/x509` (Docker,
//!   skopeo) accepts a leaf that is itself one of the trusted roots. This verifier accepts
//!   exactly that case: standard verification first; only when it fails with
//!   `CaUsedAsEndEntity` and the server's certificate is byte for byte one of the `certs.d` /
//!   `--registry-ca` certificates, the certificate is accepted after its name is checked.
//!   Its validity period has been checked already: webpki checks validity before basic
//!   constraints (`check_issuer_independent_properties` in rustls-webpki), so an expired
//!   certificate fails with `CertExpired`, never with `CaUsedAsEndEntity`.
//!
//!   The trusted roots (the system's few hundred, read and parsed) are only gathered when a
//!   server first presents a certificate: a registry that speaks plain HTTP (loopback, or
//!   named insecure), tried over TLS first, never needs them — nor do they need to exist.
//! - [`NoVerify`]: `--tls-verify=false` (buildah's flag): any certificate is accepted; the
//!   handshake's signatures are still checked against the certificate the server sent.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

/// Where the trusted roots come from, asked once, at the first certificate to verify.
pub type RootsSource = Box<dyn Fn() -> rustls::RootCertStore + Send + Sync>;

/// Standard verification, plus the exact-match acceptance of pinned self-signed CA
/// certificates (see the module doc).
pub struct CertsDVerifier {
    provider: Arc<CryptoProvider>,
    roots: RootsSource,
    inner: OnceLock<Result<Arc<WebPkiServerVerifier>, Error>>,
    pinned: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CertsDVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertsDVerifier")
            .field("pinned", &self.pinned.len())
            .field("roots_read", &self.inner.get().is_some())
            .finish()
    }
}

impl CertsDVerifier {
    /// `roots` gives the trusted roots (the pinned certificates among them) when the first
    /// certificate is to be verified.
    pub fn new(
        provider: Arc<CryptoProvider>,
        roots: RootsSource,
        pinned: Vec<CertificateDer<'static>>,
    ) -> Self {
        CertsDVerifier {
            provider,
            roots,
            inner: OnceLock::new(),
            pinned,
        }
    }

    /// The standard verifier, built from the roots the first time it is needed.
    fn webpki(&self) -> Result<&Arc<WebPkiServerVerifier>, Error> {
        self.inner
            .get_or_init(|| {
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new((self.roots)()),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| Error::General(format!("the trusted roots: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Whether rustls' error is webpki's `CaUsedAsEndEntity` (rustls carries it as an opaque
/// `CertificateError::Other`).
fn is_ca_used_as_end_entity(e: &Error) -> bool {
    matches!(e, Error::InvalidCertificate(rustls::CertificateError::Other(o))
        if format!("{o:?}").contains("CaUsedAsEndEntity"))
}

impl ServerCertVerifier for CertsDVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.webpki()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e)
                if is_ca_used_as_end_entity(&e)
                    && self
                        .pinned
                        .iter()
                        .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    // The handshake's signatures need no roots: the provider's algorithms, as webpki's
    // verifier uses them.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts any server certificate (`--tls-verify=false`).
#[derive(Debug)]
pub struct NoVerify {
    provider: Arc<CryptoProvider>,
}

impl NoVerify {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        NoVerify { provider }
    }
}

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
