//! A fake Databricks account and workspace, built from Databricks' documentation of the
//! service principal secrets APIs and OAuth M2M (not from rotator's client):
//!
//! - Account API `…/api/2.0/accounts/{account_id}/servicePrincipals/{id}/credentials/secrets`
//!   and workspace proxy `…/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets`:
//!   `POST` (`{"lifetime": "<seconds>s"}`, at most 730 days) answers with the secret's `id` and
//!   `secret`, the only time the value is shown; `GET` lists `secrets[]` without values, by
//!   pages (`page_size`, `page_token` / `next_page_token`); `DELETE …/{secret_id}`. A principal
//!   holds at most [`DEFAULT_CAP`] secrets.
//! - OAuth M2M: `POST /oidc/v1/token` and `/oidc/accounts/{account_id}/v1/token`, HTTP Basic
//!   `client_id:secret`, `grant_type=client_credentials&scope=all-apis`; answers `access_token`,
//!   `token_type`, `expires_in`. A bad client gets 401 `invalid_client`.
//! - API calls need `Authorization: Bearer <token>` of an admin principal: none, unknown or
//!   expired is 401 `UNAUTHENTICATED`; a token of a principal that is no admin is 403
//!   `PERMISSION_DENIED`; an unknown principal or secret is 404 `RESOURCE_DOES_NOT_EXIST`.
//!   Error bodies are `{error_code, message}`; 429 `REQUEST_LIMIT_EXCEEDED` carries
//!   `Retry-After`. Failures are injected with [`FakeDatabricks::fail_next`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use crate::fake_http::Failure;
use crate::fake_http::{
    Injected, Served, auth_value, basic_auth, epoch_seconds, form, random_token, rfc3339,
    with_retry_after,
};

/// Secrets a principal may hold (Databricks' documentation: "up to five OAuth secrets").
pub const DEFAULT_CAP: usize = 5;
/// The longest lifetime of a secret, in seconds (730 days).
pub const MAX_LIFETIME_SECONDS: u64 = 730 * 86_400;

/// A running fake Databricks on 127.0.0.1; stopped on drop.
pub struct FakeDatabricks {
    served: Served,
    shared: Arc<Shared>,
    account_id: String,
    admin: (String, String),
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    api_failures: Injected,
    token_failures: Injected,
}

struct State {
    account_id: String,
    principals: HashMap<String, Principal>,
    /// Access token → (application id, expiry epoch second).
    tokens: HashMap<String, (String, u64)>,
    token_lifetime: u64,
    cap: usize,
    token_requests: usize,
    create_calls: usize,
}

struct Principal {
    application_id: String,
    admin: bool,
    secrets: Vec<Secret>,
}

struct Secret {
    id: String,
    value: String,
    created: u64,
    expires: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            account_id: String::new(),
            principals: HashMap::new(),
            tokens: HashMap::new(),
            token_lifetime: 3600,
            cap: DEFAULT_CAP,
            token_requests: 0,
            create_calls: 0,
        }
    }
}

// === impl FakeDatabricks ===

impl FakeDatabricks {
    /// Starts a fake with one admin service principal holding one secret.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let account_id = uuid::Uuid::new_v4().to_string();
        shared.state().account_id = account_id.clone();
        let router = Router::new().fallback({
            let shared = Arc::clone(&shared);
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = Arc::clone(&shared);
                async move { shared.handle(&method, &uri, &headers, &body) }
            }
        });
        let served = Served::start(router).await;
        let (admin_id, admin_app) = shared.add_principal(true);
        let (_, admin_secret) = shared.add_secret(&admin_id, MAX_LIFETIME_SECONDS);
        Self {
            served,
            shared,
            account_id,
            admin: (admin_app, admin_secret),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// The port (the connection's `port`; its host is `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.served.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.served.base_url()
    }

    /// The account id.
    pub fn account_id(&self) -> String {
        self.account_id.clone()
    }

    /// The admin service principal's OAuth client id and secret.
    pub fn admin(&self) -> (String, String) {
        self.admin.clone()
    }

    /// A new service principal that is no admin: its numeric id and application (client) id.
    pub fn create_principal(&self) -> (String, String) {
        self.shared.add_principal(false)
    }

    /// Adds a secret to principal `id` as an admin would in the console: its id and value.
    pub fn add_secret(&self, id: &str) -> (String, String) {
        self.shared.add_secret(id, 86_400)
    }

    /// The `(id, value)` of each secret of principal `id`, oldest first.
    pub fn secrets(&self, id: &str) -> Vec<(String, String)> {
        self.state()
            .principals
            .get(id)
            .map(|p| {
                p.secrets
                    .iter()
                    .map(|s| (s.id.clone(), s.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many secrets principal `id` holds.
    pub fn live_secrets(&self, id: &str) -> usize {
        self.secrets(id).len()
    }

    /// The lifetime in seconds of secret `secret_id` of principal `id`.
    pub fn lifetime_of(&self, id: &str, secret_id: &str) -> Option<u64> {
        self.state().principals.get(id).and_then(|p| {
            p.secrets
                .iter()
                .find(|s| s.id == secret_id)
                .map(|s| s.expires - s.created)
        })
    }

    /// Deletes the admin's secrets and every token they got: the admin credential is revoked.
    pub fn revoke_admin(&self) {
        let mut state = self.state();
        let admin_app = self.admin.0.clone();
        for p in state.principals.values_mut() {
            if p.application_id == admin_app {
                p.secrets.clear();
            }
        }
        state.tokens.retain(|_, (app, _)| *app != admin_app);
    }

    /// Makes every issued access token invalid (as if they expired).
    pub fn expire_tokens(&self) {
        self.state().tokens.clear();
    }

    /// Sets the `expires_in` of new tokens.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.state().token_lifetime = seconds;
    }

    /// Token requests served so far.
    pub fn token_requests(&self) -> usize {
        self.state().token_requests
    }

    /// Create calls received so far (refused ones included).
    pub fn create_calls(&self) -> usize {
        self.state().create_calls
    }

    /// The next `times` secrets-API requests fail with `failure`, changing nothing.
    pub fn fail_next(&self, failure: Failure, times: usize) {
        self.shared.api_failures.push(failure, times);
    }

    /// The next `times` token requests fail with `failure`.
    pub fn fail_next_token(&self, failure: Failure, times: usize) {
        self.shared.token_failures.push(failure, times);
    }
}

// === impl Shared ===

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_principal(&self, admin: bool) -> (String, String) {
        use rand::Rng as _;
        let id = rand::rng()
            .random_range(10_000_000_000_000u64..99_999_999_999_999)
            .to_string();
        let application_id = uuid::Uuid::new_v4().to_string();
        self.state().principals.insert(
            id.clone(),
            Principal {
                application_id: application_id.clone(),
                admin,
                secrets: Vec::new(),
            },
        );
        (id, application_id)
    }

    fn add_secret(&self, id: &str, lifetime: u64) -> (String, String) {
        let secret = new_secret(lifetime);
        let answer = (secret.id.clone(), secret.value.clone());
        if let Some(p) = self.state().principals.get_mut(id) {
            p.secrets.push(secret);
        }
        answer
    }

    fn handle(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
        let account = self.state().account_id.clone();
        match segments.as_slice() {
            ["oidc", "v1", "token"] if method == Method::POST => self.token(headers, body),
            ["oidc", "accounts", acct, "v1", "token"] if method == Method::POST => {
                if *acct != account {
                    return api_error(
                        StatusCode::NOT_FOUND,
                        "RESOURCE_DOES_NOT_EXIST",
                        "account not found",
                    );
                }
                self.token(headers, body)
            }
            [
                "api",
                "2.0",
                "accounts",
                "servicePrincipals",
                sp,
                "credentials",
                "secrets",
                tail @ ..,
            ] => self.secrets(method, uri, headers, body, sp, tail),
            [
                "api",
                "2.0",
                "accounts",
                acct,
                "servicePrincipals",
                sp,
                "credentials",
                "secrets",
                tail @ ..,
            ] => {
                if *acct != account {
                    return api_error(
                        StatusCode::NOT_FOUND,
                        "RESOURCE_DOES_NOT_EXIST",
                        "account not found",
                    );
                }
                self.secrets(method, uri, headers, body, sp, tail)
            }
            _ => api_error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", "No API found"),
        }
    }

    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        if let Some(failure) = self.token_failures.take() {
            return failure_response(failure);
        }
        let fields = form(body);
        let mut state = self.state();
        state.token_requests += 1;
        let now = epoch_seconds();
        let client = basic_auth(headers).filter(|(user, password)| {
            state.principals.values().any(|p| {
                p.application_id == *user
                    && p.secrets
                        .iter()
                        .any(|s| s.value == *password && s.expires > now)
            })
        });
        let Some((application_id, _)) = client else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            );
        };
        if fields.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
        if fields.get("scope").map(String::as_str) != Some("all-apis") {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "Invalid scope");
        }
        let token = format!("eyJ{}", random_token(60));
        let lifetime = state.token_lifetime;
        state
            .tokens
            .insert(token.clone(), (application_id, now + lifetime));
        (
            StatusCode::OK,
            axum::Json(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": "all-apis",
            })),
        )
            .into_response()
    }

    fn secrets(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        principal: &str,
        tail: &[&str],
    ) -> Response {
        let mut state = self.state();
        let now = epoch_seconds();
        let caller = auth_value(headers, "Bearer")
            .and_then(|t| state.tokens.get(t))
            .filter(|(_, expires)| *expires > now)
            .map(|(app, _)| app.clone());
        let Some(caller) = caller else {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Credential was not sent or was of an unsupported type for this API.",
            );
        };
        if let Some(failure) = self.api_failures.take() {
            return failure_response(failure);
        }
        let is_admin = state
            .principals
            .values()
            .any(|p| p.application_id == caller && p.admin);
        if !is_admin {
            return api_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "Only account admins or service principal managers can manage secrets.",
            );
        }
        if method == Method::POST && tail.is_empty() {
            state.create_calls += 1;
        }
        let cap = state.cap;
        let Some(p) = state.principals.get_mut(principal) else {
            return api_error(
                StatusCode::NOT_FOUND,
                "RESOURCE_DOES_NOT_EXIST",
                &format!("Service principal {principal} does not exist."),
            );
        };
        match (method.clone(), tail) {
            (Method::GET, []) => {
                let query = form(uri.query().unwrap_or_default().as_bytes());
                let size = query
                    .get("page_size")
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|s| *s > 0)
                    .unwrap_or(100);
                let start = query
                    .get("page_token")
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(0);
                let page: Vec<Value> = p
                    .secrets
                    .iter()
                    .skip(start)
                    .take(size)
                    .map(|s| secret_info(s, false))
                    .collect();
                let mut answer = json!({ "secrets": page });
                if start + size < p.secrets.len() {
                    answer["next_page_token"] = json!((start + size).to_string());
                }
                (StatusCode::OK, axum::Json(answer)).into_response()
            }
            (Method::POST, []) => {
                let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let lifetime = match request.get("lifetime").and_then(Value::as_str) {
                    None => Some(MAX_LIFETIME_SECONDS),
                    Some(text) => text.trim_end_matches('s').parse::<u64>().ok(),
                };
                let Some(lifetime) = lifetime.filter(|l| *l > 0 && *l <= MAX_LIFETIME_SECONDS)
                else {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "lifetime must be a duration of at most 730 days",
                    );
                };
                if p.secrets.len() >= cap {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        "RESOURCE_LIMIT_EXCEEDED",
                        &format!("A service principal can have at most {cap} secrets."),
                    );
                }
                let secret = new_secret(lifetime);
                let answer = secret_info(&secret, true);
                p.secrets.push(secret);
                (StatusCode::OK, axum::Json(answer)).into_response()
            }
            (Method::DELETE, [secret_id]) => {
                let before = p.secrets.len();
                p.secrets.retain(|s| s.id != *secret_id);
                if p.secrets.len() == before {
                    return api_error(
                        StatusCode::NOT_FOUND,
                        "RESOURCE_DOES_NOT_EXIST",
                        &format!("Secret {secret_id} does not exist."),
                    );
                }
                (StatusCode::OK, axum::Json(json!({}))).into_response()
            }
            _ => api_error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", "No API found"),
        }
    }
}

fn new_secret(lifetime: u64) -> Secret {
    let now = epoch_seconds();
    Secret {
        id: hex_id(),
        value: format!("dose{}", random_token(32)),
        created: now,
        expires: now + lifetime,
    }
}

fn hex_id() -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..64)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

fn secret_info(secret: &Secret, with_value: bool) -> Value {
    let mut info = json!({
        "id": secret.id,
        "secret_hash": format!("{}", secret.value.len()),
        "create_time": rfc3339(secret.created),
        "update_time": rfc3339(secret.created),
        "expire_time": rfc3339(secret.expires),
        "status": "ACTIVE",
    });
    if with_value {
        info["secret"] = json!(secret.value);
    }
    info
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error_code": code, "message": message })),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn failure_response(failure: Failure) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let response = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "REQUEST_LIMIT_EXCEEDED",
                "Too many requests. Please wait a moment and try again.",
            );
            with_retry_after(response, Some(retry_after_secs))
        }
        Failure::ServerError(status) => {
            let code = if status == 503 {
                "TEMPORARILY_UNAVAILABLE"
            } else {
                "INTERNAL_ERROR"
            };
            api_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
                "The service is temporarily unavailable.",
            )
        }
        Failure::Forbidden => api_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "This API is disabled for the caller.",
        ),
        Failure::NotFound => api_error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            "The service principal does not exist.",
        ),
    }
}
