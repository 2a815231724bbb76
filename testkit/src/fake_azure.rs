//! A fake of the Microsoft identity platform token endpoint and of Microsoft Graph's application
//! password credentials, on one loopback port, built from Microsoft's documentation (not from
//! rotator's client):
//!
//! - `POST /{tenant}/oauth2/v2.0/token` (form): `grant_type=client_credentials`, `client_id`,
//!   `client_secret`, `scope` (`<resource>/.default`). 200 `{token_type: "Bearer", expires_in,
//!   ext_expires_in, access_token}`. Errors are `{error, error_description, error_codes,
//!   timestamp, trace_id, correlation_id}`: an unknown tenant 400 `invalid_request`
//!   (AADSTS90002), an unknown app 400 `unauthorized_client` (AADSTS700016), a wrong or expired
//!   secret 401 `invalid_client` (AADSTS7000215 / AADSTS7000222), a bad scope 400
//!   `invalid_scope` (AADSTS70011), another grant 400 `unsupported_grant_type`.
//! - `POST /v1.0/applications/{id}/addPassword` `{passwordCredential: {displayName,
//!   endDateTime}}`: 200 with the `passwordCredential`, `secretText` included. This is the only
//!   answer that shows a secret.
//! - `POST /v1.0/applications/{id}/removePassword` `{keyId}`: 204; an unknown keyId 400.
//! - `GET /v1.0/applications/{id}` (`$select=passwordCredentials` honoured): the credentials,
//!   `secretText` null, `hint` the first three characters.
//!
//! Graph errors are `{"error": {"code", "message", "innerError": {date, request-id,
//! client-request-id}}}`: no or an unknown bearer token 401 `InvalidAuthenticationToken`; a
//! caller without `Application.ReadWrite.*` 403 `Authorization_RequestDenied`; an unknown
//! object id 404 `Request_ResourceNotFound`; over the cap 400 `TooManyAppPasswords`.
//!
//! **Cap.** Graph documents no single limit: an application that accepts personal Microsoft
//! accounts may hold at most 2 passwords ("You can only add a maximum of 2 passwords"), others
//! many more. The fake has no cap unless [`FakeAzure::set_cap`] sets one
//! ([`PERSONAL_ACCOUNT_CAP`] for the documented one).
//!
//! Faults: [`FakeAzure::inject`] answers the next calls of the token endpoint or of Graph with a
//! status (429 with `Retry-After`, 5xx), [`FakeAzure::set_propagation_delay`] makes a new secret
//! refused for a while, [`FakeAzure::revoke_tokens`] and [`FakeAzure::remove_admin_secret`]
//! take the admin's access away.

// Handlers return `Result<_, Response>` for early error answers; the size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::fake_http::{Served, StatusFaults, bearer, with_retry_after};

/// The documented cap of an application that accepts personal Microsoft accounts.
pub const PERSONAL_ACCOUNT_CAP: usize = 2;

/// How long a token lives, in seconds (the platform's usual 3599).
pub const TOKEN_SECONDS: u64 = 3599;

/// Which endpoint an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/{tenant}/oauth2/v2.0/token`.
    Token,
    /// Every Graph route.
    Graph,
}

/// An application registration.
#[derive(Debug, Clone)]
pub struct App {
    /// The object id (Graph paths).
    pub object_id: String,
    /// The application (client) id (token requests).
    pub app_id: String,
}

#[derive(Debug, Clone)]
struct Password {
    key_id: String,
    secret: String,
    display_name: Option<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    usable_at: Instant,
}

#[derive(Debug)]
struct Application {
    app: App,
    passwords: Vec<Password>,
    /// Holds `Application.ReadWrite.All`: may change other applications.
    writer: bool,
}

#[derive(Debug, Default)]
struct State {
    tenant: String,
    applications: HashMap<String, Application>,
    /// token → (app id, expiry).
    tokens: HashMap<String, (String, Instant)>,
    cap: Option<usize>,
    faults: StatusFaults<Endpoint>,
    propagation: Duration,
    token_requests: u64,
    graph_requests: u64,
}

type Shared = Arc<Mutex<State>>;

/// The fake, serving until dropped.
pub struct FakeAzure {
    served: Served,
    state: Shared,
    admin: (App, String),
}

// === impl FakeAzure ===

impl FakeAzure {
    /// Starts the fake: one tenant, and an admin application holding one secret and
    /// `Application.ReadWrite.All`.
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(State {
            tenant: Uuid::new_v4().to_string(),
            ..State::default()
        }));
        let admin = new_app(&state, true);
        let (_, admin_secret) = add_password_to(&state, &admin.object_id, None);
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/applications/{id}", get(get_application))
            .route("/v1.0/applications/{id}/addPassword", post(add_password))
            .route(
                "/v1.0/applications/{id}/removePassword",
                post(remove_password),
            )
            .with_state(state.clone());
        Self {
            served: Served::start(router).await,
            state,
            admin: (admin, admin_secret),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loopback port (Graph and the token endpoint alike).
    pub fn port(&self) -> u16 {
        self.served.port()
    }

    /// `http://127.0.0.1:<port>`: the authority URL and the Graph base.
    pub fn url(&self) -> String {
        self.served.base_url()
    }

    /// The tenant id.
    pub fn tenant(&self) -> String {
        self.lock().tenant.clone()
    }

    /// The admin application's client id and secret.
    pub fn admin(&self) -> (&str, &str) {
        (&self.admin.0.app_id, &self.admin.1)
    }

    /// Registers an application without secrets or Graph permissions.
    pub fn add_app(&self) -> App {
        new_app(&self.state, false)
    }

    /// Adds a password to `object_id` as someone else would: (keyId, secret).
    pub fn add_password(&self, object_id: &str) -> (String, String) {
        add_password_to(&self.state, object_id, None)
    }

    /// The keyIds `object_id` holds.
    pub fn key_ids(&self, object_id: &str) -> Vec<String> {
        self.lock()
            .applications
            .get(object_id)
            .map(|a| a.passwords.iter().map(|p| p.key_id.clone()).collect())
            .unwrap_or_default()
    }

    /// How many passwords `object_id` holds (live secrets).
    pub fn live_secrets(&self, object_id: &str) -> usize {
        self.key_ids(object_id).len()
    }

    /// The `endDateTime` and `displayName` of a password.
    pub fn password_details(
        &self,
        object_id: &str,
        key_id: &str,
    ) -> Option<(DateTime<Utc>, Option<String>)> {
        self.lock()
            .applications
            .get(object_id)?
            .passwords
            .iter()
            .find(|p| p.key_id == key_id)
            .map(|p| (p.end, p.display_name.clone()))
    }

    /// Whether `secret` is one of the application's (unexpired) passwords, now.
    pub fn secret_works(&self, app_id: &str, secret: &str) -> bool {
        let state = self.lock();
        state
            .applications
            .values()
            .find(|a| a.app.app_id == app_id)
            .is_some_and(|a| {
                a.passwords
                    .iter()
                    .any(|p| p.secret == secret && p.end > Utc::now())
            })
    }

    /// Caps the passwords of every application (`None`: no cap).
    pub fn set_cap(&self, cap: Option<usize>) {
        self.lock().cap = cap;
    }

    /// Grants or withdraws the admin's `Application.ReadWrite.All`.
    pub fn set_admin_can_write(&self, can: bool) {
        let admin = self.admin.0.object_id.clone();
        if let Some(a) = self.lock().applications.get_mut(&admin) {
            a.writer = can;
        }
    }

    /// Removes the admin's secret (its tokens stay valid until they expire, as in Entra).
    pub fn remove_admin_secret(&self) {
        let admin = self.admin.0.object_id.clone();
        if let Some(a) = self.lock().applications.get_mut(&admin) {
            a.passwords.clear();
        }
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

    /// New secrets are refused by the token endpoint for `delay` after they are created.
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.lock().propagation = delay;
    }

    /// Ends the propagation of every secret created so far: each is usable from now on.
    pub fn finish_propagation(&self) {
        let now = Instant::now();
        for app in self.lock().applications.values_mut() {
            for password in &mut app.passwords {
                password.usable_at = password.usable_at.min(now);
            }
        }
    }

    /// Token requests served so far.
    pub fn token_requests(&self) -> u64 {
        self.lock().token_requests
    }

    /// Graph requests served so far.
    pub fn graph_requests(&self) -> u64 {
        self.lock().graph_requests
    }
}

fn new_app(state: &Shared, writer: bool) -> App {
    let app = App {
        object_id: Uuid::new_v4().to_string(),
        app_id: Uuid::new_v4().to_string(),
    };
    state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .applications
        .insert(
            app.object_id.clone(),
            Application {
                app: app.clone(),
                passwords: Vec::new(),
                writer,
            },
        );
    app
}

/// Entra's secret shape: 40 characters, `~` at index 3.
fn new_secret() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    let mut rng = rand::rng();
    let mut s: String = (0..3)
        .map(|_| CHARS[rng.random_range(0..62)] as char)
        .collect();
    s.push_str("8Q~");
    s.extend((0..34).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char));
    s
}

fn add_password_to(
    state: &Shared,
    object_id: &str,
    display_name: Option<String>,
) -> (String, String) {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let usable_at = Instant::now() + state.propagation;
    let password = Password {
        key_id: Uuid::new_v4().to_string(),
        secret: new_secret(),
        display_name,
        start: Utc::now(),
        end: Utc::now() + chrono::Duration::days(730),
        usable_at,
    };
    let out = (password.key_id.clone(), password.secret.clone());
    if let Some(a) = state.applications.get_mut(object_id) {
        a.passwords.push(password);
    }
    out
}

fn take_fault(state: &mut State, endpoint: Endpoint) -> Option<Response> {
    let (status, retry_after) = state.faults.take(endpoint)?;
    let response = match endpoint {
        Endpoint::Graph => {
            let code = match status.as_u16() {
                429 => "TooManyRequests",
                503 => "ServiceNotAvailable",
                _ => "generalException",
            };
            graph_error(status, code, "Injected failure.")
        }
        Endpoint::Token => token_error(
            status,
            "temporarily_unavailable",
            "AADSTS50196: The server terminated an operation because it encountered a client request loop.",
            50196,
        ),
    };
    Some(with_retry_after(response, retry_after))
}

fn token_error(status: StatusCode, error: &str, description: &str, code: u64) -> Response {
    let now = Utc::now();
    let trace = Uuid::new_v4();
    let correlation = Uuid::new_v4();
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!(
                "{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {}",
                now.format("%Y-%m-%d %H:%M:%SZ")
            ),
            "error_codes": [code],
            "timestamp": now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace,
            "correlation_id": correlation,
        })),
    )
        .into_response()
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let id = Uuid::new_v4();
    (
        status,
        axum::Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                    "request-id": id,
                    "client-request-id": id,
                }
            }
        })),
    )
        .into_response()
}

async fn token(
    AxumState(state): AxumState<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.token_requests += 1;
    if let Some(fault) = take_fault(&mut state, Endpoint::Token) {
        return fault;
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if tenant != state.tenant {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
            90002,
        );
    }
    if field("grant_type") != "client_credentials" {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
            70003,
        );
    }
    let client_id = field("client_id").to_owned();
    let Some(app) = state
        .applications
        .values()
        .find(|a| a.app.app_id == client_id)
    else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory."
            ),
            700016,
        );
    };
    let secret = field("client_secret");
    let matching = app.passwords.iter().find(|p| p.secret == secret);
    match matching {
        Some(p) if p.end <= Utc::now() => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!(
                    "AADSTS7000222: The provided client secret keys for app '{client_id}' are expired."
                ),
                7000222,
            );
        }
        Some(p) if p.usable_at <= Instant::now() => {}
        _ => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
                7000215,
            );
        }
    }
    if !field("scope").ends_with("/.default") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS70011: The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid.",
            70011,
        );
    }
    let access_token = format!("eyJ0eXAiOiJKV1Qi.{}", Uuid::new_v4().simple());
    state.tokens.insert(
        access_token.clone(),
        (
            client_id,
            Instant::now() + Duration::from_secs(TOKEN_SECONDS),
        ),
    );
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_SECONDS,
        "ext_expires_in": TOKEN_SECONDS,
        "access_token": access_token,
    }))
    .into_response()
}

/// Counts the call, answers an injected fault, checks the bearer token and the permission, and
/// finds the application; the error answer otherwise.
fn graph_call<'a>(
    state: &'a mut State,
    headers: &HeaderMap,
    object_id: &str,
    write: bool,
) -> Result<&'a mut Application, Response> {
    state.graph_requests += 1;
    if let Some(fault) = take_fault(state, Endpoint::Graph) {
        return Err(fault);
    }
    let token = bearer(headers);
    if token.is_empty() {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        ));
    }
    let caller = match state.tokens.get(token) {
        Some((app_id, expires)) if *expires > Instant::now() => app_id.clone(),
        _ => {
            return Err(graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            ));
        }
    };
    let caller_writes = state
        .applications
        .values()
        .any(|a| a.app.app_id == caller && a.writer);
    let owned_self = state
        .applications
        .get(object_id)
        .is_some_and(|a| a.app.app_id == caller);
    // Application.ReadWrite.All, or an app reading itself.
    let allowed = caller_writes || (owned_self && !write);
    if !allowed {
        return Err(graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    state.applications.get_mut(object_id).ok_or_else(|| {
        graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."),
        )
    })
}

fn password_json(p: &Password, with_secret: bool) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": p.end.to_rfc3339_opts(SecondsFormat::Secs, true),
        "hint": p.secret.chars().take(3).collect::<String>(),
        "keyId": p.key_id,
        "secretText": if with_secret { Value::from(p.secret.clone()) } else { Value::Null },
        "startDateTime": p.start.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

async fn get_application(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let app = match graph_call(&mut state, &headers, &id, false) {
        Ok(app) => app,
        Err(e) => return e,
    };
    let credentials: Vec<Value> = app
        .passwords
        .iter()
        .map(|p| password_json(p, false))
        .collect();
    let selected = query
        .get("$select")
        .is_some_and(|s| s.split(',').all(|f| f.trim() == "passwordCredentials"));
    let body = if selected {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications(passwordCredentials)/$entity",
            "passwordCredentials": credentials,
        })
    } else {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
            "id": app.app.object_id,
            "appId": app.app.app_id,
            "passwordCredentials": credentials,
        })
    };
    axum::Json(body).into_response()
}

async fn add_password(
    AxumState(shared): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let cap = state.cap;
    let propagation = state.propagation;
    let app = match graph_call(&mut state, &headers, &id, true) {
        Ok(app) => app,
        Err(e) => return e,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload.",
        );
    };
    let credential = body.get("passwordCredential").cloned().unwrap_or(json!({}));
    let end = match credential.get("endDateTime") {
        None | Some(Value::Null) => Utc::now() + chrono::Duration::days(730),
        Some(v) => match v.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(t)) if t > Utc::now() => t.with_timezone(&Utc),
            _ => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "Invalid value specified for property 'endDateTime' of resource 'PasswordCredential'.",
                );
            }
        },
    };
    if let Some(cap) = cap
        && app.passwords.len() >= cap
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "TooManyAppPasswords",
            &format!(
                "Not allowed to add {} passwords. You can only add a maximum of {cap} passwords.",
                app.passwords.len() + 1
            ),
        );
    }
    let password = Password {
        key_id: Uuid::new_v4().to_string(),
        secret: new_secret(),
        display_name: credential
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_owned),
        start: Utc::now(),
        end,
        usable_at: Instant::now() + propagation,
    };
    let mut answer = password_json(&password, true);
    if let Some(o) = answer.as_object_mut() {
        o.insert(
            "@odata.context".into(),
            "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential".into(),
        );
    }
    app.passwords.push(password);
    axum::Json(answer).into_response()
}

async fn remove_password(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let app = match graph_call(&mut state, &headers, &id, true) {
        Ok(app) => app,
        Err(e) => return e,
    };
    let key_id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b.get("keyId").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let before = app.passwords.len();
    app.passwords.retain(|p| p.key_id != key_id);
    if app.passwords.len() == before {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &format!("No password credential found with keyId {key_id}."),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}
