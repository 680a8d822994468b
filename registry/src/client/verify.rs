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
//! - [`NoVerify`]: `--tls-verify=false` (buildah's flag): any certificate is accepted; the
//!   handshake's signatures are still checked against the certificate the server sent.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

/// Standard verification, plus the exact-match acceptance of pinned self-signed CA
/// certificates (see the module doc).
#[derive(Debug)]
pub struct CertsDVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl CertsDVerifier {
    pub fn new(inner: Arc<WebPkiServerVerifier>, pinned: Vec<CertificateDer<'static>>) -> Self {
        CertsDVerifier { inner, pinned }
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
        match self.inner.verify_server_cert(
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
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
