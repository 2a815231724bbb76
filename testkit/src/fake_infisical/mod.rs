//! A faithful fake of the part of Infisical's REST API that rotator forwards to.
//!
//! Built only from the vendor contract in `shared/spec/` (`infisical-api.md`, the auth0 rotate OpenAPI
//! seed, `rotation-types.md` and `lifecycle.md`), never from rotator's client code.
//!
//! Tests use it as `rotator_testkit::fake_infisical`; reqwest is only used by
//! `tests/fake_infisical_selftest.rs`, the fake itself is axum on tokio.
//!
//! # Layout
//!
//! - `mod.rs`: public constants, [`FakeConfig`], [`Route`] and the [`FakeInfisical`] handle
//!   (start, seed, observe, shut down).
//! - `inject.rs`: the handle's failure injection: canned responses, provider failures, cut
//!   connections, held locks, denied permissions, expired and revoked tokens.
//! - `catalogue.rs`: the 14 rotation types, the seeded rotations and their parameters, options.
//! - `rotation.rs`: a rotation row, its JSON, `nextRotationAt`, a rotation applied or failed.
//! - `credentials.rs`: password requirements and the generated credentials of each type.
//! - `tokens.rs`: access tokens (JWT-shaped), Universal Auth lockout, rate-limit buckets.
//! - `state.rs`: the state behind the mutex: environments, folders, rotations, locks, counters.
//! - `connection.rs`: a listener whose connections a test can cut.
//! - `http.rs`: responses, error bodies, `reqId`, Zod-like issues, body parsing.
//! - `dispatch.rs`: the pipeline below: route table, counters, injections, rate limit, and the
//!   checks every per-rotation route makes.
//! - `auth_routes.rs`: authentication, Universal Auth login, token renew and revoke.
//! - `read_routes.rs`: options, list, get, get-by-name, generated credentials.
//! - `rotate_route.rs`: rotate-secrets, under the per-rotation lock.
//! - `secret_routes.rs`: the secrets API (v4) a writer of secrets uses: list, batch update
//!   (`failOnNotFound`, `ignore`, `upsert`), with versions, and folders under a change policy
//!   (writes become approval requests); built from Infisical's API reference.
//! - `codec.rs`: JS timestamps, base64url, percent-decoding.
//!
//! Pipeline of every request, in Fastify's order (`infisical-api.md` §7.2, §10):
//!   route match (unknown route/type -> Fastify 404 without reqId) -> counters and header recording
//!   -> one-shot injection, if any -> authentication (401 / 403 TokenError) -> rate limit (429)
//!   -> body parsing (empty or bad JSON -> 500 `Something went wrong`) -> validation (422)
//!   -> plan gate (400) -> existence (404) -> permission (403) -> type/app match (400)
//!   -> rotation lock (400 "already in progress") -> the work.
// Handlers return `Result<_, Response>` for early error answers; the size does not matter here.
#![allow(clippy::result_large_err)]

mod auth_routes;
mod catalogue;
mod codec;
mod connection;
mod credentials;
mod dispatch;
mod http;
mod inject;
mod read_routes;
mod rotate_route;
mod rotation;
mod secret_routes;
mod state;
mod tokens;

pub use catalogue::{connection_app, display_name};
pub use rotation::calculate_next_rotation_at;
pub use secret_routes::FakeSecret;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use uuid::Uuid;

use catalogue::SEEDS;
use codec::now_ms;
use connection::{ConnHandle, ConnInfo, CuttableListener};
use dispatch::dispatch;
use rotation::Rotation;
use state::{App, Shared, State};

/// The one valid Universal Auth client id (UA client ids are UUIDs).
pub const CLIENT_ID: &str = "5b1e9f4c-2a7d-4c3e-9f10-6d8a2b4c7e91";
/// The one valid Universal Auth client secret (64 hex characters, as Infisical generates them).
pub const CLIENT_SECRET: &str = "3f9a1c7e5b2d8f4a6c0e9b1d7a3f5c8e2b6d4f0a9c1e7b3d5f8a2c6e0b4d9f17";
/// The machine identity behind `CLIENT_ID`.
pub const IDENTITY_ID: &str = "a4e2c1b0-6f3d-4e8a-9b7c-2d1f0e9a8b76";
/// The project every seeded rotation lives in.
pub const PROJECT_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

/// The 14 rotation types in scope, as they appear in URLs and in `type`.
pub const ALL_TYPES: [&str; 14] = [
    "windows-local-account",
    "unix-linux-local-account",
    "redis-credentials",
    "postgres-credentials",
    "oracledb-credentials",
    "okta-client-secret",
    "mysql-credentials",
    "mssql-credentials",
    "mongodb-credentials",
    "ldap-password",
    "databricks-service-principal-secret",
    "azure-client-secret",
    "aws-iam-user-secret",
    "auth0-client-secret",
];

pub const MSG_TOKEN_MISSING: &str = "Token missing";
pub const MSG_TOKEN_EXPIRED: &str = "Your token has expired. Please re-authenticate.";
pub const MSG_TOKEN_MALFORMED: &str = "The provided access token is malformed. Please use a valid token or generate a new one and try again.";
pub const MSG_TOKEN_BAD_ALGORITHM: &str = "The access token is signed with an invalid algorithm. Please provide a valid token and try again.";
pub const MSG_TOKEN_BAD_SIGNATURE: &str = "invalid signature";
pub const MSG_NO_ACCESS_TOKEN: &str = "No identity access token found";
pub const MSG_INVALID_CREDENTIALS: &str = "Invalid credentials";
pub const MSG_LOCKED_OUT: &str =
    "This identity auth method is temporarily locked, please try again later";
pub const MSG_IN_PROGRESS: &str = "A rotation is already in progress. Please try again shortly.";
pub const MSG_PLAN_ROTATE: &str = "Failed to rotate secret rotation secrets due to plan restriction. Upgrade plan to rotate secret rotation secrets.";
pub const MSG_PLAN_READ: &str = "Failed to access secret rotations due to plan restriction. Upgrade plan to access secret rotations.";
pub const MSG_SOMETHING_WRONG: &str = "Something went wrong";
pub const MSG_REVOKED_OK: &str = "Successfully revoked access token";
pub const PROVIDER_FAILURE_PREFIX: &str =
    "Infisical encountered an issue while generating credentials with the configured inputs: ";

/// Configuration of one fake instance. Build it with `FakeConfig { field: x, ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// `expiresIn` of issued tokens; 0 = the token never expires (the JWT has no `exp`).
    pub access_token_ttl_secs: u64,
    /// `accessTokenMaxTTL`; 0 = no maximum.
    pub access_token_max_ttl_secs: u64,
    /// > 0 makes tokens periodic: `expiresIn` = period, `accessTokenMaxTTL` = 1,000,000,000 (§2.1).
    pub access_token_period_secs: u64,
    /// How long rotate-secrets holds the rotation lock before answering.
    pub rotate_latency: Duration,
    /// Cloud mode: enforce the route rate limits below (self-hosted instances do not rate-limit).
    pub rate_limit_cloud: bool,
    /// Write bucket (login, renew, revoke, rotate-secrets), shared by all write routes.
    pub write_limit_per_minute: u32,
    /// Read bucket (list, get, get-by-name, generated-credentials, options); 0 = not enforced.
    pub read_limit_per_minute: u32,
    /// Length of a rate-limit window (60 s upstream; shorten it to test waiting).
    pub rate_limit_window: Duration,
    /// false => the plan-restriction 400 on every rotation route (options excepted).
    pub plan_allows_rotation: bool,
    /// Universal Auth lockout (applies to `CLIENT_ID` only).
    pub lockout_enabled: bool,
    pub lockout_threshold: u32,
    pub lockout_counter_reset: Duration,
    pub lockout_duration: Duration,
    /// TTL of the per-rotation mutex (60 s upstream; not extended while the rotation runs).
    pub rotation_lock_ttl: Duration,
    /// The `{type}` values that have routes. Other types get Fastify's 404.
    pub supported_types: Vec<String>,
    /// Adopt an incoming `request-id` header as `reqId` (Fastify v4 behaviour; inferred upstream).
    pub adopt_request_id_header: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            access_token_ttl_secs: 3600,
            access_token_max_ttl_secs: 86_400,
            access_token_period_secs: 0,
            rotate_latency: Duration::ZERO,
            rate_limit_cloud: false,
            write_limit_per_minute: 200,
            read_limit_per_minute: 0,
            rate_limit_window: Duration::from_secs(60),
            plan_allows_rotation: true,
            lockout_enabled: true,
            lockout_threshold: 3,
            lockout_counter_reset: Duration::from_secs(30),
            lockout_duration: Duration::from_secs(300),
            rotation_lock_ttl: Duration::from_secs(60),
            supported_types: ALL_TYPES.iter().map(|t| t.to_string()).collect(),
            adopt_request_id_header: false,
        }
    }
}

/// Route names used by `inject_next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Login,
    Renew,
    Rotate,
    Get,
    GetByName,
    /// Both list routes: all types and per type.
    List,
    GeneratedCredentials,
    Revoke,
    Options,
    /// `GET /api/v4/secrets`.
    SecretsList,
    /// `PATCH /api/v4/secrets/batch`.
    SecretsBatchUpdate,
}

/// How many requests `FakeInfisical::requests` keeps (a bench must not grow memory without bound).
pub const MAX_RECORDED_REQUESTS: usize = 10_000;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path plus query string, as sent.
    pub url: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
}

/// A running fake on 127.0.0.1; stopped by [`shutdown`](Self::shutdown), or cut short on drop.
/// Its failure injection is in `inject.rs`.
pub struct FakeInfisical {
    base_url: String,
    shared: App,
    server: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeInfisical {
    /// Start on 127.0.0.1:0 with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(FakeConfig::default()).await
    }

    /// Start on 127.0.0.1:0. Panics if the loopback port cannot be bound (a test-fixture failure).
    pub async fn start_with(cfg: FakeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared: App = Arc::new(Shared {
            state: Mutex::new(State::new(cfg)),
            connections: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
        });
        let listener = CuttableListener {
            inner: listener,
            shared: shared.clone(),
        };
        let router = Router::new().fallback(dispatch).with_state(shared.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<ConnInfo>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await;
        });
        FakeInfisical {
            base_url: format!("http://{addr}"),
            shared,
            server: Some(server),
            stop: Some(stop_tx),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Id of the pre-seeded rotation of a type. Panics for an unknown or unsupported type.
    pub fn rotation_id(&self, type_slug: &str) -> Uuid {
        let st = self.shared.st();
        let seed = SEEDS.iter().find(|s| s.slug == type_slug);
        st.rotations
            .iter()
            .find(|r| r.type_slug == type_slug && seed.is_some_and(|s| s.name == r.name))
            .map(|r| r.id)
            .unwrap_or_else(|| panic!("fake_infisical: no seeded rotation of type {type_slug:?}"))
    }

    /// Ids of every rotation, in seed order.
    pub fn rotation_ids(&self) -> Vec<Uuid> {
        self.shared.st().rotations.iter().map(|r| r.id).collect()
    }

    /// The current `secretRotation` object (the inner object). Panics for an unknown id.
    pub fn rotation_json(&self, id: Uuid) -> Value {
        self.shared
            .st()
            .rotation(id)
            .map(Rotation::to_json)
            .unwrap_or_else(|| panic!("unknown rotation {id}"))
    }

    /// The full 200 body of generated-credentials. Panics for an unknown id.
    pub fn generated_credentials_json(&self, id: Uuid) -> Value {
        self.shared
            .st()
            .rotation(id)
            .map(Rotation::generated_credentials_body)
            .unwrap_or_else(|| panic!("unknown rotation {id}"))
    }

    /// Add another rotation of a type (same connection, environment and folder as the seeded one,
    /// fresh credentials). `name` must be a slug; uniqueness in the folder is up to the caller.
    pub fn add_rotation(&self, type_slug: &str, name: &str) -> Uuid {
        let mut st = self.shared.st();
        let seed = SEEDS
            .iter()
            .find(|s| s.slug == type_slug)
            .unwrap_or_else(|| panic!("unknown type {type_slug}"));
        let connection = st
            .rotations
            .iter()
            .find(|r| r.type_slug == type_slug)
            .map(|r| r.connection.clone());
        st.seed_rotation(seed, name, now_ms(), connection)
    }

    /// How many rotate-secrets POSTs named this id in their path (any outcome, injected ones included).
    pub fn rotate_calls(&self, id: Uuid) -> usize {
        self.shared.st().rotate_calls.get(&id).copied().unwrap_or(0)
    }

    pub fn total_rotate_calls(&self) -> usize {
        self.shared.st().total_rotate_calls
    }

    pub fn login_calls(&self) -> usize {
        self.shared.st().login_calls
    }

    pub fn renew_calls(&self) -> usize {
        self.shared.st().renew_calls
    }

    /// Headers (lower-case names) of the most recent request under `/api/v2/`.
    pub fn last_request_headers(&self) -> Vec<(String, String)> {
        self.shared.st().last_resource_headers.clone()
    }

    /// The requests the fake received, oldest first (the last `MAX_RECORDED_REQUESTS` only).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.st().requests.iter().cloned().collect()
    }

    /// A token created out of band, as Token Auth does (no login call): a configured static token.
    /// It has the configured TTL / max TTL / period and can be renewed and revoked like any other.
    pub fn issue_token(&self) -> String {
        let mut st = self.shared.st();
        let now = now_ms();
        let row_id = st.create_token_row(now);
        let lifetime = st
            .token_rows
            .get(&row_id)
            .map(|r| st.token_lifetime(r))
            .unwrap_or(0);
        st.issue_jwt(row_id, lifetime, now)
    }

    /// The secret `key` in folder `secret_path` of `environment`, with its versions' values.
    pub fn secret(&self, environment: &str, secret_path: &str, key: &str) -> Option<FakeSecret> {
        self.shared
            .st()
            .secrets
            .iter()
            .find(|s| s.environment == environment && s.secret_path == secret_path && s.key == key)
            .cloned()
    }

    /// Every secret written through the secrets API.
    pub fn secrets(&self) -> Vec<FakeSecret> {
        self.shared.st().secrets.clone()
    }

    /// Creates folder `path` (e.g. `/app/db`) in `environment` (`dev`, `staging` or `prod`).
    pub fn add_folder(&self, environment: &str, path: &str) {
        self.shared.st().folder_or_create(environment, path);
    }

    /// Stores a secret managed by an Infisical secret rotation (writes keep its value).
    pub fn add_rotated_secret(&self, environment: &str, secret_path: &str, key: &str, value: &str) {
        let mut st = self.shared.st();
        st.folder_or_create(environment, secret_path);
        st.secrets.push(FakeSecret {
            id: Uuid::new_v4().to_string(),
            environment: environment.into(),
            secret_path: secret_path.into(),
            key: key.into(),
            value: value.into(),
            version: 1,
            history: vec![value.into()],
            metadata: Vec::new(),
            comment: String::new(),
            is_rotated: true,
        });
    }

    /// Puts folder `secret_path` of `environment` under a change policy: batch writes there
    /// answer `{approval}` and write nothing until [`approve_all`](Self::approve_all).
    pub fn require_approval(&self, environment: &str, secret_path: &str) {
        let mut st = self.shared.st();
        st.folder_or_create(environment, secret_path);
        st.approval_paths
            .push((environment.to_owned(), secret_path.to_owned()));
    }

    /// How many approval requests wait.
    pub fn pending_approvals(&self) -> usize {
        self.shared.st().pending_approvals.len()
    }

    /// Approves and merges every waiting approval request, oldest first.
    pub fn approve_all(&self) {
        let mut st = self.shared.st();
        let pending = std::mem::take(&mut st.pending_approvals);
        for (_, batch) in pending {
            let _ = secret_routes::apply_batch(&mut st, batch);
        }
    }

    /// How many requests named `path` (without the query), whatever their outcome.
    pub fn calls_to(&self, method: &str, path: &str) -> usize {
        self.shared
            .st()
            .requests
            .iter()
            .filter(|r| r.method == method && r.url.split('?').next() == Some(path))
            .count()
    }

    /// Stop accepting, cut every open connection and wait (briefly) for the server task.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        let Some(mut handle) = self.server.take() else {
            return;
        };
        if tokio::time::timeout(Duration::from_secs(2), &mut handle)
            .await
            .is_err()
        {
            handle.abort();
        }
    }

    fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let conns: Vec<Arc<ConnHandle>> = self.shared.conns().values().cloned().collect();
        for c in conns {
            c.cut();
        }
    }
}

impl Drop for FakeInfisical {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(handle) = self.server.take() {
            handle.abort();
        }
    }
}
