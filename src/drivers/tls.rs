//! TLS the database drivers set up themselves (PostgreSQL, Redis, LDAP): the rustls
//! configuration of a connection's `tls` mode and `ca_file`, and the TCP socket and handshake.
//!
//! Why the drivers own their TLS: sqlx and redis take only root certificates, so they could not
//! accept a self-signed (CA:TRUE) server certificate given as the `ca_file`; with the handshake
//! done here, `verify-full` uses [`PinnedVerifier`] like every other client of rotator. The
//! session the certificate was checked on is the one the protocol runs over (no probe first).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::{ConnectionConfig, DbSystem, DriverError, DriverErrorKind, Phase, TlsMode};
use crate::net::pinned::{self, PinnedVerifier};

/// The rustls configuration for the connection's TLS mode and CA file, without ALPN:
/// `require` accepts any certificate (encrypted, not verified), `verify-full` checks with the
/// system roots, or with [`PinnedVerifier`] when there is a `ca_file`. `None` under `disable`.
///
/// # Errors
///
/// [`DriverErrorKind::Tls`]: a `ca_file` with no PEM certificate, or no system roots.
pub(crate) fn client_config(
    c: &ConnectionConfig,
    system: DbSystem,
) -> Result<Option<Arc<rustls::ClientConfig>>, DriverError> {
    let tls_error = |e: String| DriverError::new(DriverErrorKind::Tls, system, Phase::Build, e);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?;
    let config = match (c.tls.mode, c.ca_pem()) {
        (TlsMode::Disable, _) => return Ok(None),
        (TlsMode::Require, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        (TlsMode::VerifyFull, Some(pem)) => PinnedVerifier::new("ca_file", pem.as_bytes())
            .and_then(PinnedVerifier::client_config_without_alpn)
            .map_err(|e| tls_error(e.to_string()))?,
        (TlsMode::VerifyFull, None) => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| tls_error(format!("cannot load the system roots: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// A TCP connection to the connection's host and port (an IPv6 literal may be in brackets).
///
/// # Errors
///
/// [`DriverErrorKind::Unreachable`].
pub(crate) async fn connect_tcp(
    c: &ConnectionConfig,
    system: DbSystem,
    phase: Phase,
) -> Result<TcpStream, DriverError> {
    TcpStream::connect((bare_host(&c.host), c.port))
        .await
        .map_err(|e| DriverError::new(DriverErrorKind::Unreachable, system, phase, e.to_string()))
}

/// The TLS handshake with the connection's host over `stream`.
///
/// # Errors
///
/// [`DriverErrorKind::Tls`] for a refused certificate or a failed handshake (saying what to
/// fix), [`DriverErrorKind::Unreachable`] when the connection broke,
/// [`DriverErrorKind::InvalidInput`] for a host that is no server name.
pub(crate) async fn handshake<S>(
    config: Arc<rustls::ClientConfig>,
    c: &ConnectionConfig,
    stream: S,
    system: DbSystem,
    phase: Phase,
) -> Result<tokio_rustls::client::TlsStream<S>, DriverError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    pinned::handshake(config, bare_host(&c.host), stream)
        .await
        .map_err(|e| {
            let (kind, detail) = match e.kind() {
                std::io::ErrorKind::InvalidInput => (DriverErrorKind::InvalidInput, e.to_string()),
                // rustls reports handshake and certificate failures as InvalidData; the pinned
                // verifier's refusals carry their advice, the system roots' get it here.
                std::io::ErrorKind::InvalidData => match pinned::driver_advice(&e) {
                    Some(advice) => (DriverErrorKind::Tls, format!("{e}: {advice}")),
                    None => (DriverErrorKind::Tls, e.to_string()),
                },
                _ => (DriverErrorKind::Unreachable, e.to_string()),
            };
            DriverError::new(kind, system, phase, detail)
        })
}

fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Accepts any server certificate (`tls = "require"`: encrypted, not verified); the handshake
/// signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure of the clients that verify with OpenSSL (MySQL/MariaDB through native-tls,
/// MongoDB through its `openssl-tls` feature), found in an error's source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpensslFailure {
    /// The server certificate was refused ("certificate verify failed").
    Certificate,
    /// Another handshake failure (no TLS on the server, no common protocol version, …).
    Handshake,
}

/// What to fix when OpenSSL refused a driver's server certificate. OpenSSL trusts a
/// self-signed certificate found in the `ca_file` as the server's own (the host name and the
/// dates are still checked), so pinning works as with the other drivers.
pub(crate) const OPENSSL_CERTIFICATE_ADVICE: &str = "the server certificate of the connection's \
    host is refused: put its issuing CA in the connection's ca_file, or, for a self-signed one, \
    put that exact certificate in ca_file to pin it; and connect with a host name the \
    certificate names";

// OpenSSL's ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED and SSL_R_UNEXPECTED_EOF_WHILE_READING
// (openssl-sys does not export them).
const ERR_LIB_SSL: i32 = 20;
const SSL_R_CERTIFICATE_VERIFY_FAILED: i32 = 134;
const SSL_R_UNEXPECTED_EOF_WHILE_READING: i32 = 294;

/// The OpenSSL failure in `error`'s source chain, if any (an I/O error's inner error counts:
/// `std::io::Error::source` skips it). A connection that closed during the handshake is none:
/// it is the network's failure (transient), not a refusal.
pub(crate) fn openssl_failure(error: &(dyn std::error::Error + 'static)) -> Option<OpensslFailure> {
    let mut current = Some(error);
    while let Some(e) = current {
        let stack = e.downcast_ref::<openssl::error::ErrorStack>().or_else(|| {
            e.downcast_ref::<openssl::ssl::Error>()
                .and_then(openssl::ssl::Error::ssl_error)
        });
        if let Some(stack) = stack {
            let ssl_reason = |reason| {
                stack
                    .errors()
                    .iter()
                    .any(|e| e.library_code() == ERR_LIB_SSL && e.reason_code() == reason)
            };
            if ssl_reason(SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                return None;
            }
            let refused = ssl_reason(SSL_R_CERTIFICATE_VERIFY_FAILED);
            return Some(if refused {
                OpensslFailure::Certificate
            } else {
                OpensslFailure::Handshake
            });
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openssl_failure_is_found_through_io_errors_and_told_apart() {
        // A failed OpenSSL call (not a certificate refusal), wrapped as the clients wrap it.
        let stack = openssl::x509::X509::from_pem(b"not a certificate").expect_err("junk");
        let io = std::io::Error::other(stack);
        assert_eq!(openssl_failure(&io), Some(OpensslFailure::Handshake));

        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(openssl_failure(&plain), None);
    }
}
