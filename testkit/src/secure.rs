//! Fixtures for the security tests: a throwaway PKI made with rcgen (no key is committed), a
//! rotator server configured from TOML text (for `[tls]` and `[[auth.identities]]`, which
//! environment variables cannot express), and clients over plaintext, TLS or mutual TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rotator::config::{Config, Env};
use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate authority and a server certificate for `localhost` / `127.0.0.1`, as files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
}

/// A client certificate and key, in memory and as files.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How a client reaches the server.
#[derive(Clone, Copy)]
pub enum Transport<'a> {
    /// http://
    Plain,
    /// https:// verifying the server against `ca_pem`.
    Tls { ca_pem: &'a str },
    /// https:// with a client certificate.
    Mutual {
        ca_pem: &'a str,
        client: &'a ClientCert,
    },
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test PKI file");
    path
}

impl Pki {
    /// A fresh CA (named `label`) and a server certificate it signed.
    pub fn new(label: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rotator test CA {label}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("self-signed CA");
        let ca_pem = ca.pem();
        let ca_file = write(dir.path(), "ca.pem", &ca_pem);
        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "rotator test server");
        let server = params.signed_by(&server_key, &ca).expect("server cert");
        let server_cert_file = write(dir.path(), "server.pem", &server.pem());
        let server_key_file = write(dir.path(), "server.key", &server_key.serialize_pem());
        Self {
            dir,
            ca,
            ca_pem,
            ca_file,
            server_cert_file,
            server_key_file,
        }
    }

    /// A client certificate with the given subject CN and SANs (`spiffe://…` become URIs,
    /// anything else DNS names).
    pub fn client(&self, file_stem: &str, cn: &str, sans: &[&str]) -> ClientCert {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                let ia5 = (*s).to_owned().try_into().expect("IA5 SAN");
                if s.contains("://") {
                    SanType::URI(ia5)
                } else {
                    SanType::DnsName(ia5)
                }
            })
            .collect();
        let cert = params.signed_by(&key, &self.ca).expect("client cert");
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        ClientCert {
            cert_file: write(self.dir.path(), &format!("{file_stem}.pem"), &cert_pem),
            key_file: write(self.dir.path(), &format!("{file_stem}.key"), &key_pem),
            cert_pem,
            key_pem,
        }
    }

    /// The `[tls]` section for this PKI; mutual when `client_ca`.
    pub fn tls_toml(&self, client_ca: bool, client_auth_optional: bool) -> String {
        let mut toml = format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.server_cert_file.display().to_string(),
            self.server_key_file.display().to_string()
        );
        if client_ca {
            toml.push_str(&format!(
                "client_ca_file = {:?}\nclient_auth_optional = {client_auth_optional}\n",
                self.ca_file.display().to_string()
            ));
        }
        toml
    }
}

/// The `token_sha256` line of a token.
pub fn token_hash(token: &str) -> String {
    rotator::api::auth::TokenHash::of(token).to_hex()
}

/// A running server on 127.0.0.1:0; `shutdown` stops it.
pub struct SecureServer {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), rotator::server::ServeError>>,
}

impl SecureServer {
    /// Starts a server from TOML text and an environment.
    pub async fn start(toml: &str, env: &Env) -> Self {
        let data_dir = std::env::temp_dir().join(format!("rotator-test-{}", uuid::Uuid::new_v4()));
        let toml = format!(
            "data_dir = {:?}\nshutdown_grace_seconds = 10\n{toml}",
            data_dir.display().to_string()
        );
        let config = Config::from_toml_str(&toml, env)
            .unwrap_or_else(|e| panic!("test config is valid: {e}"));
        Self::start_with(config).await
    }

    /// Starts a server from a validated configuration.
    pub async fn start_with(config: Config) -> Self {
        let engine = rotator::server::build_engine(&config, None).expect("engine builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let run_config = config.clone();
        let handle = tokio::spawn(async move {
            rotator::server::run(&run_config, engine, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            config,
            stop: Some(stop),
            handle,
        }
    }

    /// `http://` or `https://` URL of the server.
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// Connects; `Err` when the transport (e.g. the TLS handshake) fails.
    pub async fn try_channel(&self, transport: Transport<'_>) -> Result<Channel, String> {
        let tls = !matches!(transport, Transport::Plain);
        let mut endpoint = Channel::from_shared(self.url(tls)).expect("url");
        let config = match transport {
            Transport::Plain => None,
            Transport::Tls { ca_pem } => {
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)))
            }
            Transport::Mutual { ca_pem, client } => Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .identity(Identity::from_pem(&client.cert_pem, &client.key_pem)),
            ),
        };
        if let Some(config) = config {
            endpoint = endpoint.tls_config(config).expect("client TLS config");
        }
        endpoint.connect().await.map_err(|e| format!("{e:?}"))
    }

    /// Connects, or panics.
    pub async fn channel(&self, transport: Transport<'_>) -> Channel {
        self.try_channel(transport)
            .await
            .expect("connect to the test server")
    }

    /// A rotation-service client.
    pub async fn client(&self, transport: Transport<'_>) -> SecretRotationServiceClient<Channel> {
        SecretRotationServiceClient::new(self.channel(transport).await)
    }

    /// Signals shutdown and waits for the drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

/// A request carrying `authorization: Bearer <token>` (when given).
pub fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
    }
    request
}

/// The `ErrorInfo` reason and request id of a failed call; panics when either is missing.
pub fn reason_and_request_id(status: &tonic::Status) -> (String, String) {
    use tonic_types::StatusExt;
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("ErrorInfo in {status:?}"));
    let request_id = info
        .metadata
        .get("request_id")
        .cloned()
        .expect("request_id in ErrorInfo");
    let header = status
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id on the status");
    assert_eq!(header, request_id, "header and ErrorInfo agree");
    (info.reason, request_id)
}
