//! A fake Kubernetes API server, built from the Kubernetes API reference (core/v1 Secret,
//! apps/v1 Deployment, meta/v1 Status) rather than from rotator's client:
//!
//! - `GET|PUT|PATCH|DELETE /api/v1/namespaces/{ns}/secrets/{name}`, `POST
//!   /api/v1/namespaces/{ns}/secrets`; `GET|PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}`.
//! - HTTPS with a throwaway CA ([`FakeKubernetes::ca_pem`]). A request is authenticated by an
//!   `Authorization: Bearer` token the fake issued, or by a client certificate its CA signed
//!   (x509 client auth); otherwise 401 `Unauthorized`.
//! - Every write sets `metadata.resourceVersion` from one counter (as etcd's revision does). A
//!   PUT whose `resourceVersion` is not the stored one, or a PATCH carrying a stale one, is 409
//!   `Conflict`; a POST of an existing name is 409 `AlreadyExists`; a PUT or PATCH of an absent
//!   object is 404 `NotFound` (Secrets are not created by an update). Secret `data` must be
//!   base64 under valid keys, else 422 `Invalid`.
//! - PATCH takes `application/merge-patch+json` and `application/strategic-merge-patch+json`
//!   (for the map fields used here both merge as RFC 7386 does); other patch types are 415.
//!   A Deployment whose `spec` changes gets `metadata.generation` + 1 (a new rollout).
//! - Errors are `Status` objects (`kind: Status`, `status: Failure`, `reason`, `message`,
//!   `code`, `details`).
//!
//! Test hooks: [`FakeKubernetes::inject_conflicts`] (a concurrent writer changes the Secret
//! just before the next writes), [`FakeKubernetes::secret`] / [`deployment`](FakeKubernetes::deployment)
//! to read stored objects, [`FakeKubernetes::put_secret`] to seed one, and
//! [`FakeKubernetes::requests`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::fake_http::{Served, bearer, random_token};
use crate::secure::{ClientCert, Pki};

/// A running fake API server on 127.0.0.1 (HTTPS); stopped on drop.
pub struct FakeKubernetes {
    pki: Pki,
    shared: Arc<Shared>,
    port: u16,
    front: tokio::task::JoinHandle<()>,
    // The plain backends the TLS front forwards to: by token, and for verified client certs.
    token_backend: Served,
    _cert_backend: Served,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tokens: HashSet<String>,
    /// (resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    revision: u64,
    /// Secrets (namespace, name) a concurrent writer changes before the next N writes.
    conflicts: HashMap<(String, String), usize>,
    /// `METHOD path status` of every request, in order.
    requests: Vec<String>,
}

const SECRETS: &str = "secrets";
const DEPLOYMENTS: &str = "deployments";

// === impl FakeKubernetes ===

impl FakeKubernetes {
    /// Starts the fake with one bearer token ([`token`](Self::token)).
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let backend = |by_cert: bool| {
            let shared = Arc::clone(&shared);
            Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let shared = Arc::clone(&shared);
                    async move { shared.handle(&method, &uri, &headers, &body, by_cert) }
                },
            )
        };
        let token_backend = Served::start(backend(false)).await;
        let cert_backend = Served::start(backend(true)).await;
        let pki = Pki::new("kubernetes");
        let (port, front) = tls_front(&pki, token_backend.port(), cert_backend.port()).await;
        let fake = Self {
            pki,
            shared,
            port,
            front,
            token_backend,
            _cert_backend: cert_backend,
        };
        fake.new_token();
        fake
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// The port on 127.0.0.1 (what `KUBERNETES_SERVICE_PORT` says in a pod).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`: the same API in plain HTTP (bearer tokens only), as a local
    /// `kubectl proxy` would serve it.
    pub fn plain_url(&self) -> String {
        self.token_backend.base_url()
    }

    /// The cluster CA certificate (PEM), as `ca.crt` of a service account holds it.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// A new valid bearer token.
    pub fn new_token(&self) -> String {
        let token = format!("eyJ{}", random_token(60));
        self.state().tokens.insert(token.clone());
        token
    }

    /// Revokes `token`: requests with it get 401.
    pub fn revoke_token(&self, token: &str) {
        self.state().tokens.remove(token);
    }

    /// The first token.
    pub fn token(&self) -> String {
        let state = self.state();
        let mut tokens: Vec<&String> = state.tokens.iter().collect();
        tokens.sort();
        tokens.first().map(|t| (*t).clone()).unwrap_or_default()
    }

    /// A client certificate for user `cn`, signed by the cluster CA (accepted as a user).
    pub fn client_cert(&self, cn: &str) -> ClientCert {
        self.pki.client(cn, cn, &[])
    }

    /// A kubeconfig whose current context `fake` uses `token`, with the CA inline.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig(&format!("    token: {token}\n"))
    }

    /// A kubeconfig whose current context `fake` uses client certificate `cert` (files).
    pub fn kubeconfig_with_cert(&self, cert: &ClientCert) -> String {
        self.kubeconfig(&format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert.cert_file.display(),
            cert.key_file.display()
        ))
    }

    fn kubeconfig(&self, user: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.pki.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  \
             cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: \
             fake\n  context:\n    cluster: fake\n    user: rotator\n    namespace: default\n\
             users:\n- name: rotator\n  user:\n{user}",
            self.server_url()
        )
    }

    /// Creates a Deployment `ns/name` (one container) to be restarted.
    pub fn create_deployment(&self, ns: &str, name: &str) {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "namespace": ns, "generation": 1 },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "app", "image": "example/app:1" }] }
                }
            }
        });
        self.state().store(DEPLOYMENTS, ns, name, object);
    }

    /// Stores `secret` as `ns/name`, as another writer would (a new resourceVersion).
    pub fn put_secret(&self, ns: &str, name: &str, secret: Value) {
        self.state().store(SECRETS, ns, name, secret);
    }

    /// The stored Secret.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.state().get(SECRETS, ns, name).cloned()
    }

    /// A stored Secret's data decoded: key → text.
    pub fn secret_data(&self, ns: &str, name: &str) -> BTreeMap<String, String> {
        let Some(secret) = self.secret(ns, name) else {
            return BTreeMap::new();
        };
        secret["data"]
            .as_object()
            .map(|data| {
                data.iter()
                    .map(|(k, v)| {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(v.as_str().unwrap_or_default())
                            .unwrap_or_default();
                        (k.clone(), String::from_utf8_lossy(&bytes).into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The stored Deployment.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Value> {
        self.state().get(DEPLOYMENTS, ns, name).cloned()
    }

    /// Before each of the next `times` writes (PUT/PATCH) of Secret `ns/name`, another writer
    /// changes it (an annotation, a new resourceVersion), so a write with the version read
    /// before is a 409 Conflict.
    pub fn inject_conflicts(&self, ns: &str, name: &str, times: usize) {
        self.state()
            .conflicts
            .insert((ns.to_owned(), name.to_owned()), times);
    }

    /// `METHOD path status` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

impl Drop for FakeKubernetes {
    fn drop(&mut self) {
        self.front.abort();
    }
}

// === impl Shared ===

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        by_cert: bool,
    ) -> Response {
        let mut state = self.state();
        let (status, answer) = if by_cert || state.tokens.contains(bearer(headers)) {
            state.route(method, uri.path(), headers, body)
        } else {
            status_object(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized",
                None,
            )
        };
        state
            .requests
            .push(format!("{method} {} {}", uri.path(), status.as_u16()));
        (
            status,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response()
    }
}

// === impl State ===

type Answer = (StatusCode, Value);

impl State {
    fn key(resource: &str, ns: &str, name: &str) -> (String, String, String) {
        (resource.to_owned(), ns.to_owned(), name.to_owned())
    }

    fn get(&self, resource: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(resource, ns, name))
    }

    /// Stores `object` with a new resourceVersion (and uid, creationTimestamp when new).
    fn store(&mut self, resource: &str, ns: &str, name: &str, mut object: Value) -> Value {
        self.revision += 1;
        let key = Self::key(resource, ns, name);
        let previous = self.objects.get(&key).map(|o| o["metadata"].clone());
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("name".into(), name.into());
            metadata.insert("namespace".into(), ns.into());
            metadata.insert("resourceVersion".into(), self.revision.to_string().into());
            let keep = |field: &str, fresh: Value| {
                previous
                    .as_ref()
                    .and_then(|p| p.get(field).cloned())
                    .unwrap_or(fresh)
            };
            metadata.insert(
                "uid".into(),
                keep("uid", uuid::Uuid::new_v4().to_string().into()),
            );
            metadata.insert(
                "creationTimestamp".into(),
                keep(
                    "creationTimestamp",
                    chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                        .into(),
                ),
            );
        }
        self.objects.insert(key, object.clone());
        object
    }

    fn route(&mut self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("POST", ["api", "v1", "namespaces", ns, "secrets"]) => self.create(ns, body),
            (m, ["api", "v1", "namespaces", ns, "secrets", name]) => {
                self.object(m, SECRETS, ns, name, headers, body)
            }
            (
                m @ ("GET" | "PATCH"),
                ["apis", "apps", "v1", "namespaces", ns, "deployments", name],
            ) => self.object(m, DEPLOYMENTS, ns, name, headers, body),
            _ => status_object(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            ),
        }
    }

    fn create(&mut self, ns: &str, body: &[u8]) -> Answer {
        let Ok(object) = serde_json::from_slice::<Value>(body) else {
            return bad_request("the body is not a JSON object");
        };
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
            return invalid(
                "",
                "metadata.name: Required value: name or generateName is required",
            );
        };
        if let Some(given) = object["metadata"]["namespace"].as_str()
            && given != ns
        {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        if self.get(SECRETS, ns, &name).is_some() {
            return status_object(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("secrets \"{name}\" already exists"),
                Some(&name),
            );
        }
        if let Err(answer) = check_secret(&name, &object) {
            return answer;
        }
        let stored = self.store(SECRETS, ns, &name, object);
        (StatusCode::CREATED, stored)
    }

    fn object(
        &mut self,
        method: &str,
        resource: &str,
        ns: &str,
        name: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Answer {
        let not_found = || {
            status_object(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{resource} \"{name}\" not found"),
                Some(name),
            )
        };
        let conflict = || {
            status_object(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again"
                ),
                Some(name),
            )
        };
        if method == "GET" {
            return match self.get(resource, ns, name) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => not_found(),
            };
        }
        if method == "DELETE" {
            return match self.objects.remove(&Self::key(resource, ns, name)) {
                Some(object) => (StatusCode::OK, object),
                None => not_found(),
            };
        }
        if !matches!(method, "PUT" | "PATCH") {
            return status_object(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            );
        }
        let Ok(sent) = serde_json::from_slice::<Value>(body) else {
            return bad_request("the body is not JSON");
        };
        let Some(stored) = self.get(resource, ns, name).cloned() else {
            return not_found();
        };
        // An injected concurrent writer gets in first.
        let key = (ns.to_owned(), name.to_owned());
        let stored = match self.conflicts.get_mut(&key) {
            Some(left) if *left > 0 && resource == SECRETS => {
                *left -= 1;
                let mut changed = stored;
                changed["metadata"]["annotations"]["example.com/concurrent-writer"] =
                    json!(self.revision.to_string());
                self.store(resource, ns, name, changed)
            }
            _ => stored,
        };
        let current_version = stored["metadata"]["resourceVersion"].clone();
        let sent_version = &sent["metadata"]["resourceVersion"];
        let next = if method == "PUT" {
            if sent["metadata"]["name"].as_str() != Some(name) {
                return bad_request("the name of the object does not match the name on the URL");
            }
            if !sent_version.is_null() && *sent_version != current_version {
                return conflict();
            }
            sent
        } else {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !matches!(
                content_type.split(';').next().unwrap_or_default().trim(),
                "application/merge-patch+json" | "application/strategic-merge-patch+json"
            ) {
                return status_object(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format: {content_type}"),
                    None,
                );
            }
            if !sent_version.is_null() && *sent_version != current_version {
                return conflict();
            }
            let mut next = stored.clone();
            merge_patch(&mut next, &sent);
            next
        };
        if resource == SECRETS
            && let Err(answer) = check_secret(name, &next)
        {
            return answer;
        }
        let mut next = next;
        if resource == DEPLOYMENTS && next["spec"] != stored["spec"] {
            let generation = stored["metadata"]["generation"].as_u64().unwrap_or(1) + 1;
            next["metadata"]["generation"] = json!(generation);
        }
        (StatusCode::OK, self.store(resource, ns, name, next))
    }
}

/// A Secret's `data`: valid keys, base64 values.
fn check_secret(name: &str, secret: &Value) -> Result<(), Answer> {
    let Some(data) = secret.get("data").filter(|d| !d.is_null()) else {
        return Ok(());
    };
    let Some(data) = data.as_object() else {
        return Err(invalid(name, "data: Invalid value: must be a map"));
    };
    for (key, value) in data {
        let key_ok = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok {
            return Err(invalid(
                name,
                &format!(
                    "data[{key}]: Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
                ),
            ));
        }
        let decodes = value
            .as_str()
            .is_some_and(|v| base64::engine::general_purpose::STANDARD.decode(v).is_ok());
        if !decodes {
            return Err(invalid(
                name,
                &format!("data[{key}]: Invalid value: illegal base64 data"),
            ));
        }
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(target) = target.as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn status_object(code: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Answer {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(name) = name {
        status["details"] = json!({ "name": name });
    }
    (code, status)
}

fn bad_request(message: &str) -> Answer {
    status_object(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn invalid(name: &str, cause: &str) -> Answer {
    status_object(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("Secret \"{name}\" is invalid: {cause}"),
        Some(name),
    )
}

/// The HTTPS front: a client certificate signed by the CA goes to the certificate backend,
/// anything else to the token backend.
async fn tls_front(
    pki: &Pki,
    token_port: u16,
    cert_port: u16,
) -> (u16, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert_file)
        .expect("server certificate")
        .collect::<Result<_, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(&pki.server_key_file).expect("server key");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(ca.expect("CA")).expect("CA root");
    }
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .expect("client verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(clients)
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let by_cert = tls.get_ref().1.peer_certificates().is_some();
                let backend = if by_cert { cert_port } else { token_port };
                if let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (port, task)
}
