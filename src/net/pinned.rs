//! Server certificate checks for a configured CA file: the system roots plus the file's
//! certificates as trust anchors, and any certificate of the file accepted as the server's own
//! (pinning).
//!
//! Why pinning: `openssl req -x509` (the usual way to make a self-signed certificate) sets
//! `basicConstraints CA:TRUE`, and WebPKI refuses a CA certificate as a server certificate
//! (`CaUsedAsEndEntity`), so giving that certificate as the CA file failed every call. A server
//! certificate that is byte for byte (DER) one of the file's certificates is the operator's
//! explicit choice, so it is accepted as is; anything else gets full verification (chain, name,
//! validity period). A refusal says what to fix, naming the config key, and never a secret.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// The certificate checks of one outbound client whose CA file is `key`.
#[derive(Debug)]
pub struct PinnedVerifier {
    /// Full verification: platform roots plus the file's certificates.
    inner: Arc<dyn ServerCertVerifier>,
    /// The file's certificates (DER), each accepted as a server certificate as it is.
    pinned: Vec<CertificateDer<'static>>,
    /// The config key of the CA file, named in refusals.
    key: String,
}

/// A refused server certificate, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PinnedError {
    /// The CA file holds no PEM certificate.
    #[error("{0}: holds no PEM certificate")]
    NoCertificate(String),
    /// The verifier could not be built.
    #[error("{key}: cannot set up certificate verification: {source}")]
    Setup {
        /// The config key of the CA file.
        key: String,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// The message a refused certificate carries up the error chain (rustls → hyper → reqwest).
#[derive(Debug)]
struct Refusal(String);

// === impl Refusal ===

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

// === impl PinnedVerifier ===

impl PinnedVerifier {
    /// Builds the checks from the PEM text of the CA file at config key `key`.
    ///
    /// # Errors
    ///
    /// A file with no certificate, or a platform verifier that cannot be set up.
    pub fn new(key: &str, pem: &[u8]) -> Result<Self, PinnedError> {
        let pinned: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .collect();
        if pinned.is_empty() {
            return Err(PinnedError::NoCertificate(key.to_owned()));
        }
        let inner = rustls_platform_verifier::Verifier::new_with_extra_roots(
            pinned.iter().cloned(),
            provider(),
        )
        .map_err(|source| PinnedError::Setup {
            key: key.to_owned(),
            source,
        })?;
        Ok(Self {
            inner: Arc::new(inner),
            pinned,
            key: key.to_owned(),
        })
    }

    /// A rustls client configuration with these checks, HTTP/2 and HTTP/1.1 offered (ALPN).
    ///
    /// # Errors
    ///
    /// The crypto provider does not support the default protocol versions.
    pub fn client_config(self) -> Result<rustls::ClientConfig, PinnedError> {
        let key = self.key.clone();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| PinnedError::Setup { key, source })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(self))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A rustls client configuration with these checks and no ALPN, for protocols that
    /// negotiate none (Redis, LDAP).
    ///
    /// # Errors
    ///
    /// As [`client_config`](Self::client_config).
    pub fn client_config_without_alpn(self) -> Result<rustls::ClientConfig, PinnedError> {
        let mut config = self.client_config()?;
        config.alpn_protocols.clear();
        Ok(config)
    }

    /// What to do about a certificate full verification refused.
    fn explain(&self, error: &rustls::Error, server: &ServerName<'_>) -> rustls::Error {
        let server = server.to_str();
        let advice = match error {
            rustls::Error::InvalidCertificate(e) => certificate_advice(e, &server, &self.key),
            other => format!("the server certificate of {server} is refused: {other}"),
        };
        // `Error::Other` prints its message (a `CertificateError::Other` would print Debug).
        rustls::Error::Other(rustls::OtherError(Arc::new(Refusal(format!(
            "certificate refused: {advice}"
        )))))
    }
}

/// What to fix for a refused certificate of `server`, whose CA file is config key `key` (every
/// client of rotator accepts the file's own certificates as server certificates).
fn certificate_advice(e: &CertificateError, server: &str, key: &str) -> String {
    match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the server certificate does not name {server}: connect with a name the \
                 certificate covers, or reissue it with subjectAltName={server} (or put that \
                 exact certificate in {key} to pin it)"
            )
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => format!(
            "the server certificate of {server} is outside its validity period: renew it (or \
             check this host's clock)"
        ),
        CertificateError::UnknownIssuer => format!(
            "the server certificate of {server} is not signed by a CA in {key} or the system \
             roots: put its issuing CA, or the server's own certificate, in {key}"
        ),
        other => {
            let why = match other {
                CertificateError::Other(why) => why.to_string(),
                other => other.to_string(),
            };
            format!(
                "the server certificate of {server} is refused ({why}); if it is self-signed, \
                 put that exact certificate in {key}"
            )
        }
    }
}

/// What to fix when a driver's rustls session refused the server certificate: `None` unless a
/// rustls certificate error is in `error`'s source chain.
pub fn driver_advice(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        let found = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(c)) = found {
            return Some(certificate_advice(
                c,
                "the connection's host",
                "the connection's ca_file",
            ));
        }
        current = e.source();
    }
    None
}

/// The TLS handshake to `host` over `stream` with `config`, whose verifier does the checks (a
/// refusal is an [`std::io::ErrorKind::InvalidData`] error that says what to fix).
///
/// # Errors
///
/// `host` is no valid server name ([`std::io::ErrorKind::InvalidInput`]), or the handshake
/// failed.
pub async fn handshake<S>(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    stream: S,
) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|pin| pin.as_ref() == end_entity.as_ref())
        {
            // The operator gave this very certificate: nothing to chain to, and its name and
            // dates are what they chose. The handshake still proves the server holds its key.
            return Ok(ServerCertVerified::assertion());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| self.explain(&e, server_name))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_certificate_refusal_says_what_to_fix() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let advice = driver_advice(&io).expect("a certificate refusal");
        assert!(
            advice.contains("or the server's own certificate, in the connection's ca_file"),
            "{advice}"
        );
        let other = std::io::Error::new(std::io::ErrorKind::InvalidData, "not a certificate");
        assert!(driver_advice(&other).is_none());
    }
}
