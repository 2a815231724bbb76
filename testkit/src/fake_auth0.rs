//! A fake Auth0 tenant: the token endpoint and the Management API v2 client routes rotator uses,
//! on one loopback port, built from Auth0's documentation (not from rotator's client):
//!
//! - `POST /oauth/token` (form or JSON): `grant_type=client_credentials`, `client_id`,
//!   `client_secret`, `audience`. 200 `{access_token, scope, expires_in: 86400, token_type:
//!   "Bearer"}`. Errors are `{error, error_description}`: a wrong client id or secret 401
//!   `access_denied` "Unauthorized"; an audience that is no API of the tenant 403
//!   `access_denied` "Service not found"; a client without a grant for the audience 403
//!   `access_denied` "Client is not authorized to access …"; another grant 403
//!   `unauthorized_client`.
//! - `PATCH /api/v2/clients/{id}` `{"client_secret"}` (scope `update:client_keys` or
//!   `update:clients`): 200 with the client, without its secret.
//! - `POST /api/v2/clients/{id}/rotate-secret` (scope `update:client_keys`): 200 with the client
//!   and its new `client_secret`: the only answer that shows a secret.
//! - `GET /api/v2/clients/{id}` (scope `read:clients`): the client, without its secret.
//!
//! Management API errors are `{statusCode, error, message, errorCode}`: no or an unknown token
//! 401 (`invalid_token`), a missing scope 403 `insufficient_scope`, an unknown client 404
//! `inexistent_client`, a bad body 400 `invalid_body`, a rate limit 429 `too_many_requests`.
//!
//! Faults: [`FakeAuth0::inject`] answers the next calls of an endpoint with a status (429 with
//! `Retry-After`, 5xx); [`FakeAuth0::set_propagation_delay`] keeps a new secret refused for a
//! while (Auth0: "up to thirty seconds"); [`FakeAuth0::revoke_tokens`],
//! [`FakeAuth0::rotate_admin_secret`] and [`FakeAuth0::set_admin_scopes`] take access away.

// Handlers return `Result<_, Response>` for early error answers; the size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::fake_http::{Served, StatusFaults, bearer, form, random_token, with_retry_after};

/// The Management API audience of the fake tenant.
pub const AUDIENCE: &str = "https://fake-tenant.auth0.test/api/v2/";

/// How long a token lives, in seconds (Auth0's default 86400).
pub const TOKEN_SECONDS: u64 = 86400;

/// The scopes rotator's M2M app needs.
pub const ADMIN_SCOPES: &[&str] = &["read:clients", "update:client_keys"];

/// Which endpoint an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/oauth/token`.
    Token,
    /// Every `/api/v2` route.
    Management,
}

#[derive(Debug)]
struct Client {
    secret: String,
    /// The previous secret and until when it still works (propagation).
    pending: Option<(String, Instant)>,
    /// Audiences it holds a grant for, with the granted scopes.
    grants: HashMap<String, Vec<String>>,
    patches: u64,
    rotations: u64,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<String, Client>,
    /// token → (client id, scopes, expiry).
    tokens: HashMap<String, (String, Vec<String>, Instant)>,
    faults: StatusFaults<Endpoint>,
    propagation: Duration,
    token_requests: u64,
}

type Shared = Arc<Mutex<State>>;

/// The fake, serving until dropped.
pub struct FakeAuth0 {
    served: Served,
    state: Shared,
    admin_id: String,
}

// === impl FakeAuth0 ===

impl FakeAuth0 {
    /// Starts the fake with an M2M app granted the Management API with [`ADMIN_SCOPES`].
    pub async fn start() -> Self {
        let state: Shared = Arc::default();
        let admin_id = new_client_in(&state);
        if let Some(c) = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clients
            .get_mut(&admin_id)
        {
            c.grants.insert(
                AUDIENCE.to_owned(),
                ADMIN_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
        let router = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/v2/clients/{id}", get(get_client).patch(patch_client))
            .route("/api/v2/clients/{id}/rotate-secret", post(rotate_secret))
            .with_state(state.clone());
        Self {
            served: Served::start(router).await,
            state,
            admin_id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.served.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.served.base_url()
    }

    /// The M2M app's client id and current secret.
    pub fn admin(&self) -> (String, String) {
        let secret = self.secret_of(&self.admin_id).unwrap_or_default();
        (self.admin_id.clone(), secret)
    }

    /// Creates an application (with a secret of its own, no grants); its client id.
    pub fn add_client(&self) -> String {
        new_client_in(&self.state)
    }

    /// The client's current secret, as the tenant holds it.
    pub fn secret_of(&self, client_id: &str) -> Option<String> {
        self.lock().clients.get(client_id).map(|c| c.secret.clone())
    }

    /// Whether `secret` authenticates `client_id` now.
    pub fn secret_works(&self, client_id: &str, secret: &str) -> bool {
        self.lock()
            .clients
            .get(client_id)
            .is_some_and(|c| authenticates(c, secret))
    }

    /// How many secrets of `client_id` authenticate now: 1, or 2 while a replaced one
    /// propagates (0 for an unknown client).
    pub fn live_secrets(&self, client_id: &str) -> usize {
        self.lock().clients.get(client_id).map_or(0, |c| {
            1 + usize::from(
                c.pending
                    .as_ref()
                    .is_some_and(|(_, until)| *until > Instant::now()),
            )
        })
    }

    /// (PATCHes, rotate-secrets) served for `client_id`.
    pub fn changes(&self, client_id: &str) -> (u64, u64) {
        self.lock()
            .clients
            .get(client_id)
            .map_or((0, 0), |c| (c.patches, c.rotations))
    }

    /// Replaces the M2M app's grant scopes.
    pub fn set_admin_scopes(&self, scopes: &[&str]) {
        let admin = self.admin_id.clone();
        if let Some(c) = self.lock().clients.get_mut(&admin) {
            c.grants.insert(
                AUDIENCE.to_owned(),
                scopes.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
        self.revoke_tokens();
    }

    /// Rotates the M2M app's secret (as someone would in the dashboard) and revokes its
    /// tokens.
    pub fn rotate_admin_secret(&self) {
        let admin = self.admin_id.clone();
        if let Some(c) = self.lock().clients.get_mut(&admin) {
            c.secret = new_secret();
            c.pending = None;
        }
        self.revoke_tokens();
    }

    /// Invalidates every token issued so far.
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Answers the next `times` calls of `endpoint` with `status` (and `Retry-After`).
    pub fn inject(&self, endpoint: Endpoint, status: u16, retry_after: Option<u64>, times: usize) {
        self.lock()
            .faults
            .push(endpoint, status, retry_after, times);
    }

    /// A changed secret takes `delay` to work; the replaced one works meanwhile.
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.lock().propagation = delay;
    }

    /// Token requests served so far.
    pub fn token_requests(&self) -> u64 {
        self.lock().token_requests
    }
}

/// Auth0's client secrets: 64 characters of `[A-Za-z0-9_-]`.
fn new_secret() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::rng();
    (0..64)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Auth0's client ids: 32 alphanumerics.
fn new_client_in(state: &Shared) -> String {
    let id = random_token(32);
    state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clients
        .insert(
            id.clone(),
            Client {
                secret: new_secret(),
                pending: None,
                grants: HashMap::new(),
                patches: 0,
                rotations: 0,
            },
        );
    id
}

/// While a new secret propagates, only the replaced one works.
fn authenticates(c: &Client, secret: &str) -> bool {
    match &c.pending {
        Some((old, until)) if *until > Instant::now() => old == secret,
        _ => c.secret == secret,
    }
}

fn replace_secret(c: &mut Client, secret: String, propagation: Duration) {
    let old = std::mem::replace(&mut c.secret, secret);
    c.pending = (!propagation.is_zero()).then(|| (old, Instant::now() + propagation));
}

fn take_fault(state: &mut State, endpoint: Endpoint) -> Option<Response> {
    let (status, retry_after) = state.faults.take(endpoint)?;
    let response = match (endpoint, status.as_u16()) {
        (Endpoint::Token, 429) => {
            token_error(status, "too_many_requests", "Global limit has been reached")
        }
        (Endpoint::Token, _) => token_error(status, "server_error", "Internal Server Error"),
        (Endpoint::Management, 429) => management_error(
            status,
            "Global limit has been reached",
            Some("too_many_requests"),
        ),
        (Endpoint::Management, _) => management_error(status, "Internal Server Error", None),
    };
    Some(with_retry_after(response, retry_after))
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn management_error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let mut body = json!({
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or_default(),
        "message": message,
    });
    if let (Some(code), Some(o)) = (code, body.as_object_mut()) {
        o.insert("errorCode".into(), code.into());
    }
    (status, axum::Json(body)).into_response()
}

async fn token(
    AxumState(state): AxumState<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.token_requests += 1;
    if let Some(fault) = take_fault(&mut state, Endpoint::Token) {
        return fault;
    }
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form: HashMap<String, String> = if json_body {
        serde_json::from_slice::<HashMap<String, Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect()
    } else {
        form(&body)
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let client_id = field("client_id").to_owned();
    let Some(client) = state.clients.get(&client_id) else {
        return token_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    };
    if field("grant_type") != "client_credentials" {
        return token_error(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "Grant type 'x' not allowed for the client.",
        );
    }
    if !authenticates(client, field("client_secret")) {
        return token_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let audience = field("audience");
    if audience != AUDIENCE {
        return token_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            &format!("Service not found: {audience}"),
        );
    }
    let Some(scopes) = client.grants.get(audience).cloned() else {
        return token_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            &format!(
                "Client is not authorized to access \"{audience}\". You need to create a \"client-grant\" associated to this API. See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants"
            ),
        );
    };
    let access_token = format!("eyJhbGciOiJSUzI1NiJ9.{}", Uuid::new_v4().simple());
    state.tokens.insert(
        access_token.clone(),
        (
            client_id,
            scopes.clone(),
            Instant::now() + Duration::from_secs(TOKEN_SECONDS),
        ),
    );
    axum::Json(json!({
        "access_token": access_token,
        "scope": scopes.join(" "),
        "expires_in": TOKEN_SECONDS,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// Counts nothing, answers an injected fault, checks the token and one of `scopes`, and finds
/// the client; the error answer otherwise.
fn management_call<'a>(
    state: &'a mut State,
    headers: &HeaderMap,
    id: &str,
    scopes: &[&str],
) -> Result<&'a mut Client, Response> {
    if let Some(fault) = take_fault(state, Endpoint::Management) {
        return Err(fault);
    }
    let token = bearer(headers);
    if token.is_empty() {
        return Err(management_error(
            StatusCode::UNAUTHORIZED,
            "Missing authentication",
            None,
        ));
    }
    let granted = match state.tokens.get(token) {
        Some((_, granted, expires)) if *expires > Instant::now() => granted.clone(),
        _ => {
            return Err(management_error(
                StatusCode::UNAUTHORIZED,
                "Invalid token",
                Some("invalid_token"),
            ));
        }
    };
    if !scopes.iter().any(|s| granted.iter().any(|g| g == s)) {
        return Err(management_error(
            StatusCode::FORBIDDEN,
            &format!("Insufficient scope, expected any of: {}", scopes.join(",")),
            Some("insufficient_scope"),
        ));
    }
    state.clients.get_mut(id).ok_or_else(|| {
        management_error(
            StatusCode::NOT_FOUND,
            "The client does not exist",
            Some("inexistent_client"),
        )
    })
}

fn client_json(id: &str, secret: Option<&str>) -> Value {
    let mut body = json!({
        "client_id": id,
        "tenant": "fake-tenant",
        "name": format!("app {id}"),
        "app_type": "non_interactive",
        "token_endpoint_auth_method": "client_secret_post",
    });
    if let (Some(secret), Some(o)) = (secret, body.as_object_mut()) {
        o.insert("client_secret".into(), secret.into());
    }
    body
}

async fn get_client(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    match management_call(&mut state, &headers, &id, &["read:clients"]) {
        Ok(_) => axum::Json(client_json(&id, None)).into_response(),
        Err(e) => e,
    }
}

async fn patch_client(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let propagation = state.propagation;
    let client = match management_call(
        &mut state,
        &headers,
        &id,
        &["update:clients", "update:client_keys"],
    ) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return management_error(
                StatusCode::BAD_REQUEST,
                "Invalid request payload JSON format",
                Some("invalid_body"),
            );
        }
    };
    let Some(fields) = body.as_object() else {
        return management_error(
            StatusCode::BAD_REQUEST,
            "Payload validation error: 'Expected type object'.",
            Some("invalid_body"),
        );
    };
    if let Some(other) = fields.keys().find(|k| *k != "client_secret") {
        return management_error(
            StatusCode::BAD_REQUEST,
            &format!("Payload validation error: 'Additional properties not allowed: {other}'."),
            Some("invalid_body"),
        );
    }
    if let Some(secret) = fields.get("client_secret") {
        match secret.as_str() {
            Some(s) if !s.is_empty() => {
                client.patches += 1;
                if client.secret != s {
                    replace_secret(client, s.to_owned(), propagation);
                }
            }
            _ => {
                return management_error(
                    StatusCode::BAD_REQUEST,
                    "Payload validation error: 'String is too short (0 chars), minimum 1' on property client_secret.",
                    Some("invalid_body"),
                );
            }
        }
    }
    axum::Json(client_json(&id, None)).into_response()
}

async fn rotate_secret(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let propagation = state.propagation;
    let client = match management_call(&mut state, &headers, &id, &["update:client_keys"]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let secret = new_secret();
    client.rotations += 1;
    replace_secret(client, secret.clone(), propagation);
    axum::Json(client_json(&id, Some(&secret))).into_response()
}
