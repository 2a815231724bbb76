//! A fake Okta org, built from Okta's documentation of the Application Client Secrets API and
//! the org authorization server's token endpoint (not from rotator's client):
//!
//! - `GET|POST /api/v1/apps/{appId}/credentials/secrets`, `GET|DELETE …/secrets/{secretId}`,
//!   `POST …/secrets/{secretId}/lifecycle/{activate|deactivate}`, with `Authorization: SSWS
//!   <token>`. Create takes an optional `client_secret` (else Okta generates one) and answers
//!   with the whole secret object; an app holds at most two secrets and a third is refused with
//!   `E0000001`; only an INACTIVE secret can be deleted. Okta shows `client_secret` in the list
//!   and get answers too (the documented `ClientSecret` object always carries it).
//! - `POST /oauth2/v1/token` (org authorization server) and `/oauth2/{id}/v1/token`:
//!   `client_credentials` with `client_secret_basic` or `client_secret_post`. The client is
//!   authenticated first (`invalid_client`, 401), then the scope is checked (`invalid_scope`,
//!   400: an app is granted no scope unless the test grants one).
//! - Errors are Okta's body `{errorCode, errorSummary, errorLink, errorId, errorCauses}`: 401
//!   `E0000011` (bad or revoked API token), 403 `E0000006` (a read-only token on a write), 404
//!   `E0000007`, 429 `E0000047` with `X-Rate-Limit-Limit/Remaining/Reset`, 500 `E0000009`.
//!   Failures are injected with [`FakeOkta::fail_next`].

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
};

/// Secrets an app may hold.
pub const MAX_SECRETS: usize = 2;

/// A running fake Okta org on 127.0.0.1; stopped on drop.
pub struct FakeOkta {
    served: Served,
    shared: Arc<Shared>,
}

/// One client secret as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSecret {
    /// `ocs…`.
    pub id: String,
    /// The secret value.
    pub value: String,
    /// ACTIVE (true) or INACTIVE.
    pub active: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    api_failures: Injected,
    token_failures: Injected,
}

#[derive(Default)]
struct State {
    /// API tokens and whether they may write.
    tokens: HashMap<String, bool>,
    apps: HashMap<String, App>,
    /// `METHOD path` of every request, in order.
    requests: Vec<String>,
}

#[derive(Default)]
struct App {
    secrets: Vec<Secret>,
    granted_scopes: Vec<String>,
}

#[derive(Clone)]
struct Secret {
    id: String,
    value: String,
    active: bool,
    created: u64,
    updated: u64,
}

// === impl FakeOkta ===

impl FakeOkta {
    /// Starts a fake org with one read-write API token.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new().fallback({
            let shared = Arc::clone(&shared);
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = Arc::clone(&shared);
                async move { shared.handle(&method, &uri, &headers, &body) }
            }
        });
        let fake = Self {
            served: Served::start(router).await,
            shared,
        };
        fake.new_api_token(true);
        fake
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

    /// A new API token (`00` + 40 characters, the documented format); read-only unless
    /// `manage`.
    pub fn new_api_token(&self, manage: bool) -> String {
        let token = format!("00{}", random_token(40));
        self.state().tokens.insert(token.clone(), manage);
        token
    }

    /// The first read-write API token.
    pub fn api_token(&self) -> String {
        let state = self.state();
        let mut tokens: Vec<&String> = state
            .tokens
            .iter()
            .filter(|(_, manage)| **manage)
            .map(|(t, _)| t)
            .collect();
        tokens.sort();
        tokens.first().map(|t| (*t).clone()).unwrap_or_default()
    }

    /// Revokes an API token: requests with it get 401 `E0000011`.
    pub fn revoke_api_token(&self, token: &str) {
        self.state().tokens.remove(token);
    }

    /// A new OIDC app with no secret; its id (also its client id).
    pub fn create_app(&self) -> String {
        let id = format!("0oa{}", random_token(17));
        self.state().apps.insert(id.clone(), App::default());
        id
    }

    /// Grants `scope` to an app, so a token request asking for it succeeds.
    pub fn grant_scope(&self, app: &str, scope: &str) {
        if let Some(app) = self.state().apps.get_mut(app) {
            app.granted_scopes.push(scope.to_owned());
        }
    }

    /// Adds a secret as an admin would in the console; its id and value.
    pub fn add_secret(&self, app: &str) -> (String, String) {
        let secret = new_secret(None);
        let answer = (secret.id.clone(), secret.value.clone());
        if let Some(app) = self.state().apps.get_mut(app) {
            app.secrets.push(secret);
        }
        answer
    }

    /// The secrets of `app`, oldest first.
    pub fn secrets(&self, app: &str) -> Vec<FakeSecret> {
        self.state()
            .apps
            .get(app)
            .map(|a| {
                a.secrets
                    .iter()
                    .map(|s| FakeSecret {
                        id: s.id.clone(),
                        value: s.value.clone(),
                        active: s.active,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Secrets held by every app.
    pub fn live_secrets(&self) -> usize {
        self.state().apps.values().map(|a| a.secrets.len()).sum()
    }

    /// The next `times` management-API requests fail with `failure`, changing nothing.
    pub fn fail_next(&self, failure: Failure, times: usize) {
        self.shared.api_failures.push(failure, times);
    }

    /// The next `times` token requests fail with `failure`.
    pub fn fail_next_token(&self, failure: Failure, times: usize) {
        self.shared.token_failures.push(failure, times);
    }

    /// `METHOD path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

// === impl Shared ===

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        let path = uri.path();
        self.state().requests.push(format!("{method} {path}"));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["oauth2", "v1", "token"] | ["oauth2", _, "v1", "token"] if method == Method::POST => {
                if let Some(failure) = self.token_failures.take() {
                    return failure_response(failure, "token");
                }
                self.token(headers, body)
            }
            ["api", "v1", rest @ ..] => {
                let Some(manage) =
                    auth_value(headers, "SSWS").and_then(|t| self.state().tokens.get(t).copied())
                else {
                    return okta_error(
                        StatusCode::UNAUTHORIZED,
                        "E0000011",
                        "Invalid token provided",
                        &[],
                    );
                };
                if let Some(failure) = self.api_failures.take() {
                    return failure_response(failure, path);
                }
                if method != Method::GET && !manage {
                    return okta_error(
                        StatusCode::FORBIDDEN,
                        "E0000006",
                        "You do not have permission to perform the requested action",
                        &[],
                    );
                }
                self.api(method, rest, body)
            }
            _ => okta_error(
                StatusCode::NOT_FOUND,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
                &[],
            ),
        }
    }

    fn api(&self, method: &Method, rest: &[&str], body: &[u8]) -> Response {
        if rest == ["users", "me"] {
            return (
                StatusCode::OK,
                axum::Json(json!({"id": "00uadmin", "status": "ACTIVE"})),
            )
                .into_response();
        }
        let ["apps", app_id, "credentials", "secrets", tail @ ..] = rest else {
            return not_found("resource");
        };
        let mut state = self.state();
        let Some(app) = state.apps.get_mut(*app_id) else {
            return not_found(&format!("{app_id} (AppInstance)"));
        };
        match (method.clone(), tail) {
            (Method::GET, []) => {
                let list: Vec<Value> = app.secrets.iter().map(secret_json).collect();
                (StatusCode::OK, axum::Json(Value::Array(list))).into_response()
            }
            (Method::POST, []) => {
                let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let chosen = request
                    .get("client_secret")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if chosen.as_ref().is_some_and(|s| s.len() < 14) {
                    return okta_error(
                        StatusCode::BAD_REQUEST,
                        "E0000001",
                        "Api validation failed: client_secret",
                        &["client_secret: 'client_secret' must be at least '14' characters long."],
                    );
                }
                if app.secrets.len() >= MAX_SECRETS {
                    return okta_error(
                        StatusCode::BAD_REQUEST,
                        "E0000001",
                        "Api validation failed: client_secret",
                        &["You can create up to two client secrets for an app."],
                    );
                }
                let secret = new_secret(chosen);
                let answer = secret_json(&secret);
                app.secrets.push(secret);
                (StatusCode::OK, axum::Json(answer)).into_response()
            }
            (method, [secret_id, more @ ..]) => {
                let Some(index) = app.secrets.iter().position(|s| s.id == *secret_id) else {
                    return not_found(&format!("{secret_id} (ClientSecret)"));
                };
                match (method, more) {
                    (Method::GET, []) => {
                        (StatusCode::OK, axum::Json(secret_json(&app.secrets[index])))
                            .into_response()
                    }
                    (Method::DELETE, []) => {
                        if app.secrets[index].active {
                            return okta_error(
                                StatusCode::BAD_REQUEST,
                                "E0000001",
                                "Api validation failed: secret",
                                &["You can only delete an inactive secret."],
                            );
                        }
                        app.secrets.remove(index);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    (Method::POST, ["lifecycle", action @ ("activate" | "deactivate")]) => {
                        let secret = &mut app.secrets[index];
                        secret.active = *action == "activate";
                        secret.updated = epoch_seconds();
                        (StatusCode::OK, axum::Json(secret_json(secret))).into_response()
                    }
                    _ => not_found("resource"),
                }
            }
            _ => not_found("resource"),
        }
    }

    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let fields = form(body);
        let (client_id, secret) = match basic_auth(headers) {
            Some(pair) => pair,
            None => (
                fields.get("client_id").cloned().unwrap_or_default(),
                fields.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        if fields.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            );
        }
        let state = self.state();
        let authenticated = state.apps.get(&client_id).is_some_and(|app| {
            app.secrets
                .iter()
                .any(|s| s.active && !secret.is_empty() && s.value == secret)
        });
        if !authenticated {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The client secret supplied for a confidential client is invalid.",
            );
        }
        let scope = fields.get("scope").cloned().unwrap_or_default();
        let granted = state
            .apps
            .get(&client_id)
            .is_some_and(|app| !scope.is_empty() && app.granted_scopes.contains(&scope));
        if !granted {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "The authorization server does not support the requested scope.",
            );
        }
        (
            StatusCode::OK,
            axum::Json(json!({
                "token_type": "Bearer",
                "expires_in": 3600,
                "access_token": random_token(64),
                "scope": scope,
            })),
        )
            .into_response()
    }
}

fn new_secret(value: Option<String>) -> Secret {
    let now = epoch_seconds();
    Secret {
        id: format!("ocs{}", random_token(17)),
        value: value.unwrap_or_else(|| random_token(64)),
        active: true,
        created: now,
        updated: now,
    }
}

fn secret_json(secret: &Secret) -> Value {
    let status = if secret.active { "ACTIVE" } else { "INACTIVE" };
    let links = if secret.active {
        json!({"deactivate": {"hints": {"allow": ["POST"]}}})
    } else {
        json!({"activate": {"hints": {"allow": ["POST"]}}, "delete": {"hints": {"allow": ["DELETE"]}}})
    };
    json!({
        "id": secret.id,
        "status": status,
        "client_secret": secret.value,
        "secret_hash": format!("{}", secret.value.len()),
        "created": rfc3339(secret.created),
        "lastUpdated": rfc3339(secret.updated),
        "_links": links,
    })
}

fn okta_error(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({ "errorSummary": c }))
        .collect();
    (
        status,
        axum::Json(json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": format!("oae{}", random_token(22)),
            "errorCauses": causes,
        })),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {what}"),
        &[],
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn failure_response(failure: Failure, what: &str) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let mut response = okta_error(
                StatusCode::TOO_MANY_REQUESTS,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
                &[],
            );
            let headers = response.headers_mut();
            let reset = (epoch_seconds() + retry_after_secs).to_string();
            for (name, value) in [
                ("x-rate-limit-limit", "100".to_owned()),
                ("x-rate-limit-remaining", "0".to_owned()),
                ("x-rate-limit-reset", reset),
            ] {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            }
            response
        }
        Failure::ServerError(status) => okta_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "E0000009",
            "Internal Server Error",
            &[],
        ),
        Failure::Forbidden => okta_error(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
            &[],
        ),
        Failure::NotFound => not_found(what),
    }
}
