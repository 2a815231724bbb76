//! A small typed client of the Kubernetes API for the `kubernetes-secret` sink: the four calls it
//! makes (Secret GET/POST/PUT, Deployment PATCH) over reqwest + rustls, with the connection
//! (server, CA, bearer token or client certificate) resolved from the pod's service account or
//! a kubeconfig file on every delivery, so a rotated token or CA is always the current one.
//!
//! Why not the `kube` crate: it brings kube-client, k8s-openapi (every API group's types) and a
//! tower stack for four endpoints; this is ~300 lines on crates the tree already builds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use super::KubernetesError;
use crate::config::kubeconfig::{self, ClientAuth, Resolved};
use crate::config::sinks::KubernetesAuth;
use crate::secret::SecretString;

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest API message quoted in an error.
const MAX_MESSAGE: usize = 300;

/// A connection to one API server, built for one delivery.
pub struct Api {
    /// `https://host:port` (or `http://` to a loopback `kubectl proxy`), no trailing slash.
    base: String,
    client: reqwest::Client,
    /// The bearer token, when the user authenticates with one.
    token: Option<SecretString>,
}

/// An API answer: its status and JSON body (`Null` when it had none).
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

// === impl Api ===

impl Api {
    /// Resolves `auth` (reading the token, CA and kubeconfig files now) into a connection.
    ///
    /// # Errors
    ///
    /// [`KubernetesError::Auth`]: a file that cannot be read, a kubeconfig without the
    /// context, an unsupported user kind; never a value.
    pub fn connect(auth: &KubernetesAuth) -> Result<Self, KubernetesError> {
        let resolved = match auth {
            KubernetesAuth::InCluster { dir, host, port } => in_cluster(dir, host, port)?,
            KubernetesAuth::Kubeconfig { path, context } => {
                kubeconfig::resolve(path, context.as_deref())
                    .map_err(|e| KubernetesError::Auth(e.to_string()))?
            }
        };
        Self::from_resolved(resolved)
    }

    fn from_resolved(resolved: Resolved) -> Result<Self, KubernetesError> {
        let server = resolved.server.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&server).map_err(|_| {
            KubernetesError::Auth(format!("the server URL {server:?} is not a URL"))
        })?;
        let (token, identity) = match resolved.user {
            ClientAuth::Token(token) => (Some(token), None),
            ClientAuth::Certificate { cert_pem, key_pem } => (None, Some((cert_pem, key_pem))),
            ClientAuth::None => (None, None),
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("rotator/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10));
        match url.scheme() {
            "https" => {
                let tls = tls_config(resolved.ca_pem.as_deref(), identity)?;
                builder = builder.use_preconfigured_tls(tls);
            }
            "http" if is_loopback(&url) => {
                // `kubectl proxy` on this host: it adds the credentials itself.
            }
            _ => {
                return Err(KubernetesError::Auth(format!(
                    "the server {server} must be https:// (http:// only to a loopback \
                     `kubectl proxy`)"
                )));
            }
        }
        let client = builder
            .build()
            .map_err(|e| KubernetesError::Auth(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: server,
            client,
            token,
        })
    }

    /// One call: `method path` with an optional JSON body of `content_type`. `what` names the
    /// call in errors ("GET Secret app/db").
    ///
    /// # Errors
    ///
    /// [`KubernetesError::Transport`] when no answer came; an answer of any status is `Ok`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, &Value)>,
        what: &str,
    ) -> Result<Answer, KubernetesError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| KubernetesError::Transport {
                what: what.to_owned(),
                server: self.base.clone(),
                reason: transport(&e),
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }
}

// === impl Answer ===

impl Answer {
    /// The error of an unexpected answer: its status and the API's `Status.reason` and
    /// `Status.message` (shortened), which name objects and permissions, never data.
    pub fn error(&self, what: &str) -> KubernetesError {
        let text = |key: &str| {
            self.body
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut message = text("message");
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        KubernetesError::Status {
            what: what.to_owned(),
            status: self.status,
            reason: text("reason"),
            message,
        }
    }
}

/// The pod's own service account: token and CA from `dir`, the server from the environment.
fn in_cluster(
    dir: &Path,
    host: &Option<String>,
    port: &Option<String>,
) -> Result<Resolved, KubernetesError> {
    let (Some(host), Some(port)) = (host, port) else {
        return Err(KubernetesError::Auth(
            "in-cluster authentication needs KUBERNETES_SERVICE_HOST and \
             KUBERNETES_SERVICE_PORT (set in every pod); outside a cluster give `kubeconfig`"
                .into(),
        ));
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let token = read(&dir.join("token"))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(KubernetesError::Auth(format!(
            "{} is empty",
            dir.join("token").display()
        )));
    }
    let ca = read(&dir.join("ca.crt"))?;
    Ok(Resolved {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca.into_bytes()),
        user: ClientAuth::Token(SecretString::new(token)),
    })
}

/// A file's text; the error names the file and the OS reason only.
fn read(path: &Path) -> Result<String, KubernetesError> {
    kubeconfig::read(path).map_err(|e| KubernetesError::Auth(e.to_string()))
}

/// rustls with the cluster's CA as the only trust anchors (the platform's roots when no CA is
/// given, as for a managed cluster with a public certificate) and the client certificate, if
/// any.
fn tls_config(
    ca_pem: Option<&[u8]>,
    identity: Option<(Vec<u8>, SecretString)>,
) -> Result<rustls::ClientConfig, KubernetesError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let setup = |e: rustls::Error| KubernetesError::Auth(format!("TLS setup: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(setup)?;
    let builder = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem).filter_map(Result::ok) {
                roots.add(cert).map_err(setup)?;
            }
            if roots.is_empty() {
                return Err(KubernetesError::Auth(
                    "the cluster's CA certificate holds no PEM certificate".into(),
                ));
            }
            builder.with_root_certificates(roots)
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(setup)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .filter_map(Result::ok)
                .collect();
            if chain.is_empty() {
                return Err(KubernetesError::Auth(
                    "the user's client certificate holds no PEM certificate".into(),
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes()).map_err(|_| {
                KubernetesError::Auth("the user's client key is not a PEM private key".into())
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| KubernetesError::Auth(format!("client certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn transport(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    }
}
