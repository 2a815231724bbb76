//! A faithful fake of the part of Infisical's REST API that rotator forwards to.
//!
//! Built only from the vendor contract in `shared/spec/` (`infisical-api.md`, the auth0 rotate OpenAPI
//! seed, `rotation-types.md` and `lifecycle.md`), never from rotator's client code.
//!
//! Tests use it as `rotator_testkit::fake_infisical`; reqwest is only used by
//! `tests/fake_infisical_selftest.rs`, the fake itself is axum on tokio.
//!
//! Layout of this file:
//!   1. public constants, `FakeConfig`, `Route`
//!   2. the type catalogue (14 rotation types) and seed data
//!   3. the rotation model: JSON shape, `nextRotationAt`, credential and password generation
//!   4. tokens, lockout, rate-limit buckets
//!   5. shared state
//!   6. the public `FakeInfisical` handle
//!   7. the connection layer (a listener whose connections a test can cut)
//!   8. HTTP plumbing: responses, error bodies, `reqId`, Zod-like issues, body parsing
//!   9. request dispatch (route matching, counters, injections) and the route handlers
//!  10. small helpers (time formatting, base64url, percent-decoding)
//!
//! Pipeline of every request, in Fastify's order (`infisical-api.md` §7.2, §10):
//!   route match (unknown route/type -> Fastify 404 without reqId) -> counters and header recording
//!   -> one-shot injection, if any -> authentication (401 / 403 TokenError) -> rate limit (429)
//!   -> body parsing (empty or bad JSON -> 500 `Something went wrong`) -> validation (422)
//!   -> plan gate (400) -> existence (404) -> permission (403) -> type/app match (400)
//!   -> rotation lock (400 "already in progress") -> the work.
// Handlers return `Result<_, Response>` for early error answers; the size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use chrono::{DateTime, Days, SecondsFormat, TimeZone, Utc};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use uuid::Uuid;

// =================================================================================================
// 1. Public constants, configuration and route names
// =================================================================================================

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

// =================================================================================================
// 2. Type catalogue and seed data
// =================================================================================================

struct TypeInfo {
    slug: &'static str,
    display: &'static str,
    app: &'static str,
    /// (logical field, default secret name) in the template's order.
    mapping: &'static [(&'static str, &'static str)],
}

#[rustfmt::skip]
const TYPES: &[TypeInfo] = &[
    TypeInfo { slug: "windows-local-account", display: "Windows Local Account", app: "smb",
        mapping: &[("username", "WINDOWS_USERNAME"), ("password", "WINDOWS_PASSWORD")] },
    TypeInfo { slug: "unix-linux-local-account", display: "Unix/Linux Local Account", app: "ssh",
        mapping: &[("username", "UNIX_USERNAME"), ("password", "UNIX_PASSWORD")] },
    TypeInfo { slug: "redis-credentials", display: "Redis Credentials", app: "redis",
        mapping: &[("username", "REDIS_USERNAME"), ("password", "REDIS_PASSWORD")] },
    TypeInfo { slug: "postgres-credentials", display: "PostgreSQL Credentials", app: "postgres",
        mapping: &[("username", "POSTGRES_DB_USERNAME"), ("password", "POSTGRES_DB_PASSWORD")] },
    TypeInfo { slug: "oracledb-credentials", display: "OracleDB Credentials", app: "oracledb",
        mapping: &[("username", "ORACLEDB_USERNAME"), ("password", "ORACLEDB_PASSWORD")] },
    TypeInfo { slug: "okta-client-secret", display: "Okta Client Secret", app: "okta",
        mapping: &[("clientId", "OKTA_CLIENT_ID"), ("clientSecret", "OKTA_CLIENT_SECRET")] },
    TypeInfo { slug: "mysql-credentials", display: "MySQL Credentials", app: "mysql",
        mapping: &[("username", "MYSQL_USERNAME"), ("password", "MYSQL_PASSWORD")] },
    TypeInfo { slug: "mssql-credentials", display: "Microsoft SQL Server Credentials", app: "mssql",
        mapping: &[("username", "MSSQL_DB_USERNAME"), ("password", "MSSQL_DB_PASSWORD")] },
    TypeInfo { slug: "mongodb-credentials", display: "MongoDB Credentials", app: "mongodb",
        mapping: &[("username", "MONGODB_DB_USERNAME"), ("password", "MONGODB_DB_PASSWORD")] },
    TypeInfo { slug: "ldap-password", display: "LDAP Password", app: "ldap",
        mapping: &[("dn", "LDAP_DN"), ("password", "LDAP_PASSWORD")] },
    TypeInfo { slug: "databricks-service-principal-secret", display: "Databricks Service Principal Secret",
        app: "databricks",
        mapping: &[("clientId", "DATABRICKS_CLIENT_ID"), ("clientSecret", "DATABRICKS_CLIENT_SECRET")] },
    TypeInfo { slug: "azure-client-secret", display: "Azure Client Secret", app: "azure-client-secrets",
        mapping: &[("clientId", "AZURE_CLIENT_ID"), ("clientSecret", "AZURE_CLIENT_SECRET")] },
    TypeInfo { slug: "aws-iam-user-secret", display: "AWS IAM User Secret", app: "aws",
        mapping: &[("accessKeyId", "AWS_ACCESS_KEY_ID"), ("secretAccessKey", "AWS_SECRET_ACCESS_KEY")] },
    TypeInfo { slug: "auth0-client-secret", display: "Auth0 Client Secret", app: "auth0",
        mapping: &[("clientId", "AUTH0_CLIENT_ID"), ("clientSecret", "AUTH0_CLIENT_SECRET")] },
];

fn type_info(slug: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.slug == slug)
}

/// Display name of a type, as used in upstream messages (`Could not find <Display Name> Rotation ...`).
pub fn display_name(type_slug: &str) -> Option<&'static str> {
    type_info(type_slug).map(|t| t.display)
}

/// Connection `app` literal of a type.
pub fn connection_app(type_slug: &str) -> Option<&'static str> {
    type_info(type_slug).map(|t| t.app)
}

fn is_sql_type(slug: &str) -> bool {
    matches!(
        slug,
        "postgres-credentials" | "mysql-credentials" | "mssql-credentials" | "oracledb-credentials"
    )
}

/// Where and how each type's pre-seeded rotation lives.
struct SeedSpec {
    slug: &'static str,
    name: &'static str,
    description: Option<&'static str>,
    env: &'static str,
    path: &'static str,
    connection_name: &'static str,
    interval_days: u32,
    rotate_at: (u32, u32),
    auto_rotation: bool,
}

/// (type, name, description, environment, secret path, connection name, interval days, rotateAtUtc,
/// auto-rotation). The mysql rotation has auto-rotation off, so `nextRotationAt` is null.
#[rustfmt::skip]
const SEEDS: &[SeedSpec] = &[
    SeedSpec { slug: "postgres-credentials", name: "pg-orders-db", description: Some("Orders service database login"),
        env: "prod", path: "/databases", connection_name: "prod-postgres", interval_days: 30, rotate_at: (2, 0), auto_rotation: true },
    SeedSpec { slug: "mysql-credentials", name: "mysql-legacy-crm", description: None,
        env: "prod", path: "/databases", connection_name: "prod-mysql", interval_days: 14, rotate_at: (3, 30), auto_rotation: false },
    SeedSpec { slug: "mssql-credentials", name: "mssql-reporting", description: Some("Reporting warehouse login"),
        env: "prod", path: "/databases", connection_name: "prod-mssql", interval_days: 30, rotate_at: (4, 15), auto_rotation: true },
    SeedSpec { slug: "oracledb-credentials", name: "oracle-erp", description: None,
        env: "prod", path: "/databases", connection_name: "prod-oracle", interval_days: 60, rotate_at: (1, 0), auto_rotation: true },
    SeedSpec { slug: "mongodb-credentials", name: "mongo-catalog", description: Some("Catalog service MongoDB users"),
        env: "prod", path: "/databases", connection_name: "prod-mongodb", interval_days: 7, rotate_at: (0, 0), auto_rotation: true },
    SeedSpec { slug: "redis-credentials", name: "redis-cache", description: None,
        env: "dev", path: "/", connection_name: "dev-redis", interval_days: 1, rotate_at: (0, 30), auto_rotation: true },
    SeedSpec { slug: "auth0-client-secret", name: "auth0-backend-m2m", description: Some("Backend machine-to-machine app"),
        env: "prod", path: "/", connection_name: "prod-auth0", interval_days: 90, rotate_at: (9, 0), auto_rotation: true },
    SeedSpec { slug: "okta-client-secret", name: "okta-portal-client", description: None,
        env: "prod", path: "/", connection_name: "prod-okta", interval_days: 30, rotate_at: (6, 45), auto_rotation: true },
    SeedSpec { slug: "azure-client-secret", name: "azure-payments-app", description: Some("Payments API app registration"),
        env: "prod", path: "/cloud", connection_name: "prod-azure-graph", interval_days: 180, rotate_at: (12, 0), auto_rotation: true },
    SeedSpec { slug: "aws-iam-user-secret", name: "aws-ci-deployer", description: Some("CI deployer IAM user"),
        env: "staging", path: "/cloud", connection_name: "staging-aws", interval_days: 30, rotate_at: (23, 59), auto_rotation: true },
    SeedSpec { slug: "databricks-service-principal-secret", name: "databricks-etl-sp", description: None,
        env: "staging", path: "/cloud", connection_name: "staging-databricks", interval_days: 90, rotate_at: (5, 0), auto_rotation: true },
    SeedSpec { slug: "ldap-password", name: "ldap-svc-app", description: Some("AD service account for the app tier"),
        env: "prod", path: "/directory", connection_name: "prod-active-directory", interval_days: 45, rotate_at: (2, 30), auto_rotation: true },
    SeedSpec { slug: "unix-linux-local-account", name: "unix-app-host", description: Some("Local account on the app host"),
        env: "staging", path: "/hosts", connection_name: "staging-ssh-bastion", interval_days: 30, rotate_at: (3, 0), auto_rotation: true },
    SeedSpec { slug: "windows-local-account", name: "windows-backup-svc", description: None,
        env: "staging", path: "/hosts", connection_name: "staging-smb-fileserver", interval_days: 30, rotate_at: (3, 15), auto_rotation: true },
];

const ENVIRONMENTS: &[(&str, &str)] = &[
    ("dev", "Development"),
    ("staging", "Staging"),
    ("prod", "Production"),
];

fn password_requirements(
    length: u32,
    lower: u32,
    upper: u32,
    digits: u32,
    symbols: u32,
    allowed: &str,
) -> Value {
    json!({
        "length": length,
        "required": { "lowercase": lower, "uppercase": upper, "digits": digits, "symbols": symbols },
        "allowedSymbols": allowed,
    })
}

/// Realistic `parameters` for each type, with every optional field filled in.
fn seed_parameters(slug: &str) -> Value {
    match slug {
        "postgres-credentials" => json!({
            "username1": "orders_app_1",
            "username2": "orders_app_2",
            "rotationStatement": "ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'",
            "passwordRequirements": password_requirements(48, 1, 1, 1, 0, "-_.~!*"),
        }),
        "mysql-credentials" => json!({
            "username1": "crm_app_1",
            "username2": "crm_app_2",
            "rotationStatement": "ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'",
            "passwordRequirements": password_requirements(32, 2, 2, 2, 0, "-_.~!*"),
        }),
        "mssql-credentials" => json!({
            "username1": "reporting_login_1",
            "username2": "reporting_login_2",
            "rotationStatement": "ALTER LOGIN [{{username}}] WITH PASSWORD = '{{password}}'",
            "passwordRequirements": password_requirements(40, 1, 1, 1, 1, "-_.~!*"),
        }),
        "oracledb-credentials" => json!({
            "username1": "ERP_APP_1",
            "username2": "ERP_APP_2",
            "rotationStatement": "ALTER USER \"{{username}}\" IDENTIFIED BY \"{{password}}\"",
            "passwordRequirements": password_requirements(30, 1, 1, 1, 0, "-_.~!*"),
        }),
        "mongodb-credentials" => {
            json!({ "username1": "catalog_rw_1", "username2": "catalog_rw_2" })
        }
        "redis-credentials" => json!({
            "permissionScope": "~* +@all",
            "passwordRequirements": password_requirements(48, 1, 1, 1, 0, "-_.~!*"),
        }),
        "auth0-client-secret" => json!({ "clientId": "Xk3pQ9vT2mW8rL5nB7cD1fG4hJ6sA0eY" }),
        "okta-client-secret" => json!({ "clientId": "0oa8k2m4n6p8r0t2v4x6" }),
        "azure-client-secret" => json!({
            "objectId": "4f6a2c8e-1b3d-4e5f-a7c9-0d2e4f6a8b1c",
            "clientId": "9e7c5a3b-1d2f-4a6c-8e0b-3f5d7a9c1e2b",
            "appName": "payments-api",
        }),
        "aws-iam-user-secret" => json!({ "userName": "ci-deployer", "region": "us-east-1" }),
        "databricks-service-principal-secret" => json!({
            "servicePrincipalId": "76997828332531",
            "clientId": "1c3e5a7b-9d2f-4b6a-8c0e-2f4a6c8e0b1d",
            "servicePrincipalName": "etl-pipeline-sp",
        }),
        "ldap-password" => json!({
            "dn": "CN=svc-app,OU=Service Accounts,DC=corp,DC=example,DC=com",
            "rotationMethod": "connection-principal",
            "passwordRequirements": password_requirements(64, 2, 2, 2, 2, "-_.~!*"),
        }),
        "unix-linux-local-account" => json!({
            "username": "appsvc",
            "rotationMethod": "login-as-root",
            "passwordRequirements": password_requirements(36, 2, 2, 2, 2, "-_.~!*"),
            "useSudo": true,
        }),
        "windows-local-account" => json!({
            "username": "svc_backup",
            "rotationMethod": "login-as-root",
            "passwordRequirements": password_requirements(32, 1, 1, 1, 1, "-_.~!*"),
        }),
        _ => json!({}),
    }
}

fn default_secrets_mapping(ti: &TypeInfo) -> Value {
    let mut m = Map::new();
    for (field, name) in ti.mapping {
        m.insert(field.to_string(), Value::String(name.to_string()));
    }
    Value::Object(m)
}

/// The options template of one type (`GET /api/v2/secret-rotations/options`).
fn options_template(ti: &TypeInfo) -> Value {
    let mapping = default_secrets_mapping(ti);
    let (create, rotation): (Option<&str>, Option<&str>) = match ti.slug {
        "postgres-credentials" => (
            Some(
                "-- create user\nCREATE USER infisical_user WITH ENCRYPTED PASSWORD 'temporary_password';\n\n-- grant database connection permissions\nGRANT CONNECT ON DATABASE my_database TO infisical_user;\n\n-- grant relevant table permissions\nGRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO infisical_user;",
            ),
            Some("ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'"),
        ),
        "mysql-credentials" => (
            Some(
                "-- create user\nCREATE USER 'infisical_user'@'%' IDENTIFIED BY 'temporary_password';\n\n-- grant all privileges\nGRANT ALL PRIVILEGES ON my_database.* TO 'infisical_user'@'%';\n\n-- apply the privilege changes\nFLUSH PRIVILEGES;",
            ),
            Some("ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'"),
        ),
        "mssql-credentials" => (
            Some(
                "-- create login\nCREATE LOGIN [infisical_user] WITH PASSWORD = 'temporary_password';\n\n-- grant permissions to connect to the server\nGRANT CONNECT SQL TO [infisical_user];\n\n-- switch to the database\nUSE my_database;\n\n-- create the database user\nCREATE USER [infisical_user] FOR LOGIN [infisical_user];\n\n-- grant relevant permissions\nGRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::dbo TO [infisical_user];",
            ),
            Some("ALTER LOGIN [{{username}}] WITH PASSWORD = '{{password}}'"),
        ),
        "oracledb-credentials" => (
            Some(
                "-- create user\nCREATE USER INFISICAL_USER IDENTIFIED BY \"temporary_password\";\n\n-- grant all privileges\nGRANT ALL PRIVILEGES TO INFISICAL_USER;",
            ),
            Some("ALTER USER \"{{username}}\" IDENTIFIED BY \"{{password}}\""),
        ),
        "mongodb-credentials" => (
            Some(
                "use [DATABASE_NAME]\ndb.createUser({\n  user: \"infisical_user_1\",\n  pwd: \"temporary_password\",\n  roles: [{ role: \"readWrite\", db: \"[DATABASE_NAME]\" }]\n})\n\ndb.createUser({\n  user: \"infisical_user_2\",\n  pwd: \"temporary_password\",\n  roles: [{ role: \"readWrite\", db: \"[DATABASE_NAME]\" }]\n})",
            ),
            None,
        ),
        _ => (None, None),
    };
    let mut t = Map::new();
    if let Some(c) = create {
        t.insert("createUserStatement".into(), Value::String(c.into()));
    }
    if let Some(r) = rotation {
        t.insert("rotationStatement".into(), Value::String(r.into()));
    }
    t.insert("secretsMapping".into(), mapping);
    Value::Object(t)
}

// =================================================================================================
// 3. The rotation model
// =================================================================================================

#[derive(Clone, Debug)]
struct Environment {
    slug: String,
    name: String,
    id: Uuid,
}

#[derive(Clone, Debug)]
struct Folder {
    id: String,
    env_slug: String,
    path: String,
}

#[derive(Clone, Debug)]
struct Connection {
    app: &'static str,
    name: String,
    id: Uuid,
}

/// One row of `secret_rotations_v2`, joined, plus its decrypted generated credentials.
#[derive(Clone, Debug)]
struct Rotation {
    id: Uuid,
    name: String,
    description: Option<String>,
    is_auto_rotation_enabled: bool,
    active_index: usize,
    folder: Folder,
    connection: Connection,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    rotation_interval: u32,
    rotation_status: &'static str,
    last_rotation_attempted_at: DateTime<Utc>,
    last_rotated_at: DateTime<Utc>,
    last_rotation_job_id: Option<String>,
    next_rotation_at: Option<DateTime<Utc>>,
    is_last_rotation_manual: bool,
    environment: Environment,
    project_id: String,
    rotate_at_utc: (u32, u32),
    last_rotation_message: Option<String>,
    type_slug: &'static str,
    parameters: Value,
    secrets_mapping: Value,
    generated_credentials: Vec<Value>,
}

impl Rotation {
    /// The `secretRotation` object exactly as the strict serializer emits it (`infisical-api.md` §6):
    /// every field, `null` for unset nullable fields, ISO-8601 timestamps with milliseconds.
    fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "name": self.name,
            "description": self.description,
            "isAutoRotationEnabled": self.is_auto_rotation_enabled,
            "activeIndex": self.active_index,
            "folderId": self.folder.id,
            "connectionId": self.connection.id.to_string(),
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "rotationInterval": self.rotation_interval,
            "rotationStatus": self.rotation_status,
            "lastRotationAttemptedAt": iso(self.last_rotation_attempted_at),
            "lastRotatedAt": iso(self.last_rotated_at),
            "lastRotationJobId": self.last_rotation_job_id,
            "nextRotationAt": self.next_rotation_at.map(iso),
            "isLastRotationManual": self.is_last_rotation_manual,
            "connection": {
                "app": self.connection.app,
                "name": self.connection.name,
                "id": self.connection.id.to_string(),
            },
            "environment": {
                "slug": self.environment.slug,
                "name": self.environment.name,
                "id": self.environment.id.to_string(),
            },
            "projectId": self.project_id,
            "folder": { "id": self.folder.id, "path": self.folder.path },
            "rotateAtUtc": { "hours": self.rotate_at_utc.0, "minutes": self.rotate_at_utc.1 },
            "lastRotationMessage": self.last_rotation_message,
            "type": self.type_slug,
            "parameters": self.parameters,
            "secretsMapping": self.secrets_mapping,
        })
    }

    /// The 200 body of `GET .../generated-credentials`.
    fn generated_credentials_body(&self) -> Value {
        json!({
            "generatedCredentials": self.generated_credentials,
            "activeIndex": self.active_index,
            "rotationId": self.id.to_string(),
            "type": self.type_slug,
        })
    }

    fn recompute_next_rotation_at(&mut self, now: DateTime<Utc>) {
        self.next_rotation_at = calculate_next_rotation_at(
            self.is_auto_rotation_enabled,
            self.rotation_status == "failed",
            self.last_rotated_at,
            self.rotation_interval,
            self.rotate_at_utc,
            self.is_last_rotation_manual,
            now,
        );
    }

    /// A successful manual rotation (`lifecycle.md` §2 and §4): new credential in the inactive slot,
    /// flip `activeIndex`, reset status and message, recompute `nextRotationAt`.
    fn apply_successful_rotation(&mut self, now: DateTime<Utc>) {
        let inactive = (self.active_index + 1) % 2;
        let new_set = generate_credential(self.type_slug, &self.parameters, inactive);
        if inactive < self.generated_credentials.len() {
            self.generated_credentials[inactive] = new_set;
        } else {
            self.generated_credentials.push(new_set);
        }
        self.active_index = inactive;
        self.is_last_rotation_manual = true;
        self.last_rotated_at = now;
        self.last_rotation_attempted_at = now;
        self.rotation_status = "success";
        self.last_rotation_message = None;
        self.recompute_next_rotation_at(now);
        self.updated_at = now;
    }

    /// A failed final attempt (`lifecycle.md` §5.2). Returns the message for the 500 body.
    fn apply_failed_rotation(&mut self, provider_detail: &str, now: DateTime<Utc>) -> String {
        let mut message = format!("{PROVIDER_FAILURE_PREFIX}{provider_detail}");
        for secret in self.known_passwords() {
            if !secret.is_empty() {
                message = message.replace(&secret, "*******************");
            }
        }
        if message.chars().count() > 1024 {
            message = format!("{}...", message.chars().take(1021).collect::<String>());
        }
        self.rotation_status = "failed";
        self.last_rotation_message = Some(message.clone());
        self.last_rotation_attempted_at = now;
        self.recompute_next_rotation_at(now);
        self.updated_at = now;
        message
    }

    fn known_passwords(&self) -> Vec<String> {
        let mut out = Vec::new();
        for set in &self.generated_credentials {
            for key in ["password", "clientSecret", "secretAccessKey"] {
                if let Some(s) = set.get(key).and_then(Value::as_str) {
                    out.push(s.to_string());
                }
            }
        }
        out
    }
}

/// `calculateNextRotationAt` (`lifecycle.md` §7.2).
/// Disabled -> None; failed -> next UTC day at `rotateAtUtc`; otherwise the day of `lastRotatedAt` at
/// `rotateAtUtc` plus the interval, plus one more day for a manual rotation at/after `rotateAtUtc`.
pub fn calculate_next_rotation_at(
    is_auto_rotation_enabled: bool,
    rotation_failed: bool,
    last_rotated_at: DateTime<Utc>,
    rotation_interval_days: u32,
    rotate_at_utc: (u32, u32),
    is_manual: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !is_auto_rotation_enabled {
        return None;
    }
    let (hours, minutes) = (rotate_at_utc.0.min(23), rotate_at_utc.1.min(59));
    let at = |date: chrono::NaiveDate| date.and_hms_opt(hours, minutes, 0).map(|n| n.and_utc());
    if rotation_failed {
        return at(now.date_naive().checked_add_days(Days::new(1))?);
    }
    let base = at(last_rotated_at.date_naive())?;
    let mut next = base.checked_add_days(Days::new(u64::from(rotation_interval_days)))?;
    if is_manual && last_rotated_at >= base {
        next = next.checked_add_days(Days::new(1))?;
    }
    Some(next)
}

/// Password requirements (`rotation-types.md` §1.2), parsed leniently from `parameters`.
#[derive(Clone, Debug)]
struct PasswordRules {
    length: usize,
    lowercase: usize,
    uppercase: usize,
    digits: usize,
    symbols: usize,
    allowed_symbols: String,
}

impl PasswordRules {
    fn default_with_length(length: usize) -> Self {
        PasswordRules {
            length,
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 0,
            allowed_symbols: "-_.~!*".into(),
        }
    }

    fn from_parameters(params: &Value, default_length: usize) -> Self {
        let Some(req) = params.get("passwordRequirements").filter(|v| v.is_object()) else {
            return Self::default_with_length(default_length);
        };
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0) as usize;
        let required = req.get("required");
        PasswordRules {
            length: req
                .get("length")
                .and_then(Value::as_u64)
                .map(|l| l as usize)
                .unwrap_or(default_length),
            lowercase: n(required.and_then(|r| r.get("lowercase"))),
            uppercase: n(required.and_then(|r| r.get("uppercase"))),
            digits: n(required.and_then(|r| r.get("digits"))),
            symbols: n(required.and_then(|r| r.get("symbols"))),
            allowed_symbols: req
                .get("allowedSymbols")
                .and_then(Value::as_str)
                .unwrap_or("-_.~!*")
                .to_string(),
        }
    }
}

/// `generatePassword` (`rotation-types.md` §1.3): required counts per class, the rest from the union
/// of the classes with a non-zero count, then a Fisher–Yates shuffle.
fn generate_password(rules: &PasswordRules) -> String {
    let mut symbols: Vec<char> = rules
        .allowed_symbols
        .chars()
        .filter(|c| *c != '"')
        .collect();
    if symbols.is_empty() {
        symbols = "-_.~!*".chars().collect();
    }
    let lower: Vec<char> = ('a'..='z').collect();
    let upper: Vec<char> = ('A'..='Z').collect();
    let digits: Vec<char> = ('0'..='9').collect();
    let classes: [(&[char], usize); 4] = [
        (&lower, rules.lowercase),
        (&upper, rules.uppercase),
        (&digits, rules.digits),
        (&symbols, rules.symbols),
    ];
    let mut rng = rand::rng();
    let mut out: Vec<char> = Vec::with_capacity(rules.length);
    let mut union: Vec<char> = Vec::new();
    for (alphabet, count) in classes {
        for _ in 0..count {
            out.push(alphabet[rng.random_range(0..alphabet.len())]);
        }
        if count > 0 {
            union.extend_from_slice(alphabet);
        }
    }
    if union.is_empty() {
        union = lower.iter().chain(&upper).chain(&digits).copied().collect();
    }
    let required: usize = classes.iter().map(|(_, c)| c).sum();
    for _ in 0..rules.length.saturating_sub(required) {
        out.push(union[rng.random_range(0..union.len())]);
    }
    out.shuffle(&mut rng);
    out.into_iter().collect()
}

fn random_from(alphabet: &str, len: usize) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut rng = rand::rng();
    (0..len)
        .map(|_| chars[rng.random_range(0..chars.len())])
        .collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn param_str(params: &Value, key: &str) -> String {
    params
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A new generated-credential set of the type's shape (`rotation-types.md` §0) for `slot`.
fn generate_credential(type_slug: &str, params: &Value, slot: usize) -> Value {
    match type_slug {
        // SQL and MongoDB alternate between the two users: slot 0 = username1, slot 1 = username2.
        t if is_sql_type(t) || t == "mongodb-credentials" => {
            let user = param_str(params, if slot == 0 { "username1" } else { "username2" });
            let rules = if t == "mongodb-credentials" {
                PasswordRules::default_with_length(48)
            } else {
                PasswordRules::from_parameters(
                    params,
                    if t == "oracledb-credentials" { 30 } else { 48 },
                )
            };
            json!({ "username": user, "password": generate_password(&rules) })
        }
        "redis-credentials" => {
            let user_rules = PasswordRules {
                length: 32,
                lowercase: 5,
                uppercase: 5,
                digits: 5,
                symbols: 0,
                allowed_symbols: String::new(),
            };
            json!({
                "username": generate_password(&user_rules),
                "password": generate_password(&PasswordRules::from_parameters(params, 48)),
            })
        }
        "auth0-client-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": generate_password(&PasswordRules::default_with_length(48)),
        }),
        "okta-client-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": random_from(&format!("{ALNUM}-_"), 64),
            "secretId": format!("ocs{}", random_from(ALNUM, 17)),
        }),
        "azure-client-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": format!("{}8Q~{}", random_from(ALNUM, 3), random_from(&format!("{ALNUM}_.~-"), 34)),
            "keyId": Uuid::new_v4().to_string(),
        }),
        "aws-iam-user-secret" => json!({
            "accessKeyId": format!("AKIA{}", random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
            "secretAccessKey": random_from(&format!("{ALNUM}/+"), 40),
        }),
        "databricks-service-principal-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": format!("dose{}", random_from("0123456789abcdef", 32)),
            "secretId": random_from("0123456789abcdef", 32),
        }),
        "ldap-password" => json!({
            "dn": param_str(params, "dn"),
            "password": generate_password(&PasswordRules::from_parameters(params, 48)),
        }),
        "unix-linux-local-account" | "windows-local-account" => json!({
            "username": param_str(params, "username"),
            "password": generate_password(&PasswordRules::from_parameters(params, 48)),
        }),
        _ => json!({}),
    }
}

// =================================================================================================
// 4. Tokens, lockout and rate-limit buckets
// =================================================================================================

/// A row of `identity_access_tokens`.
#[derive(Clone, Debug)]
struct TokenRow {
    created_at: DateTime<Utc>,
    last_renewed_at: Option<DateTime<Utc>>,
    ttl_secs: u64,
    max_ttl_secs: u64,
    period_secs: u64,
    revoked: bool,
}

/// One signed JWT handed out for a token row (login or renew).
#[derive(Clone, Debug)]
struct IssuedJwt {
    row: Uuid,
    exp: Option<DateTime<Utc>>,
    force_expired: bool,
}

enum JwtCheck {
    Valid(Uuid),
    Expired,
    Malformed,
    BadAlgorithm,
    BadSignature,
}

#[derive(Default, Debug)]
struct Lockout {
    failed_attempts: u32,
    locked: bool,
    /// When the keystore item expires (counter reset window, or the lockout duration).
    expires_at: Option<Instant>,
}

#[derive(Default, Debug)]
struct Bucket {
    window_start: Option<Instant>,
    count: u32,
}

#[derive(Clone, Copy, Debug)]
struct RateInfo {
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    exceeded: bool,
}

impl Bucket {
    /// Fixed window like `@fastify/rate-limit`'s store: every request counts, over the limit is 429.
    fn hit(&mut self, limit: u32, window: Duration, now: Instant) -> RateInfo {
        let expired = self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= window);
        if expired {
            self.window_start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        let elapsed = self
            .window_start
            .map(|s| now.duration_since(s))
            .unwrap_or_default();
        let ttl = window.saturating_sub(elapsed);
        RateInfo {
            limit,
            remaining: limit.saturating_sub(self.count),
            reset_secs: ttl.as_millis().div_ceil(1000) as u64,
            exceeded: self.count > limit,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RateClass {
    Exempt,
    Read,
    Write,
}

// =================================================================================================
// 5. Shared state
// =================================================================================================

#[derive(Clone, Debug)]
struct Injection {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

struct InflightLock {
    token: u64,
    taken_at: Instant,
}

struct State {
    cfg: FakeConfig,
    environments: Vec<Environment>,
    folders: Vec<Folder>,
    rotations: Vec<Rotation>,

    token_rows: HashMap<Uuid, TokenRow>,
    jwts: HashMap<String, IssuedJwt>,
    lockout: Lockout,

    fail_next: HashMap<Uuid, String>,
    drop_after_apply: HashSet<Uuid>,
    simulated_locks: HashSet<Uuid>,
    inflight: HashMap<Uuid, InflightLock>,
    next_lock_token: u64,
    denied: HashMap<Uuid, HashSet<String>>,
    injections: HashMap<Route, VecDeque<Injection>>,

    write_bucket: Bucket,
    read_bucket: Bucket,

    rotate_calls: HashMap<Uuid, usize>,
    total_rotate_calls: usize,
    login_calls: usize,
    renew_calls: usize,
    requests: VecDeque<RecordedRequest>,
    last_resource_headers: Vec<(String, String)>,
}

impl State {
    fn new(cfg: FakeConfig) -> Self {
        let environments: Vec<Environment> = ENVIRONMENTS
            .iter()
            .map(|(slug, name)| Environment {
                slug: slug.to_string(),
                name: name.to_string(),
                id: Uuid::new_v4(),
            })
            .collect();
        let mut st = State {
            cfg,
            environments,
            folders: Vec::new(),
            rotations: Vec::new(),
            token_rows: HashMap::new(),
            jwts: HashMap::new(),
            lockout: Lockout::default(),
            fail_next: HashMap::new(),
            drop_after_apply: HashSet::new(),
            simulated_locks: HashSet::new(),
            inflight: HashMap::new(),
            next_lock_token: 0,
            denied: HashMap::new(),
            injections: HashMap::new(),
            write_bucket: Bucket::default(),
            read_bucket: Bucket::default(),
            rotate_calls: HashMap::new(),
            total_rotate_calls: 0,
            login_calls: 0,
            renew_calls: 0,
            requests: VecDeque::new(),
            last_resource_headers: Vec::new(),
        };
        // Every environment has a root folder.
        for (slug, _) in ENVIRONMENTS {
            st.folder_or_create(slug, "/");
        }
        let base = Utc
            .with_ymd_and_hms(2025, 1, 10, 5, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        for (i, seed) in SEEDS.iter().enumerate() {
            if !st.type_supported(seed.slug) {
                continue;
            }
            // Creation times a day and 7 minutes apart, so rows are distinguishable.
            let created = base + chrono::Duration::minutes(i as i64 * (24 * 60 + 7));
            st.seed_rotation(seed, seed.name, created, None);
        }
        st
    }

    fn type_supported(&self, slug: &str) -> bool {
        self.cfg.supported_types.iter().any(|t| t == slug)
    }

    fn folder_or_create(&mut self, env_slug: &str, path: &str) -> Folder {
        if let Some(f) = self
            .folders
            .iter()
            .find(|f| f.env_slug == env_slug && f.path == path)
        {
            return f.clone();
        }
        let f = Folder {
            id: Uuid::new_v4().to_string(),
            env_slug: env_slug.into(),
            path: path.into(),
        };
        self.folders.push(f.clone());
        f
    }

    /// Insert a rotation "as created": 1 generated credential, status success, manual.
    fn seed_rotation(
        &mut self,
        seed: &SeedSpec,
        name: &str,
        created: DateTime<Utc>,
        connection: Option<Connection>,
    ) -> Uuid {
        let Some(ti) = type_info(seed.slug) else {
            return Uuid::nil();
        };
        let folder = self.folder_or_create(seed.env, seed.path);
        let environment = self
            .environments
            .iter()
            .find(|e| e.slug == seed.env)
            .cloned()
            .unwrap_or_else(|| Environment {
                slug: seed.env.into(),
                name: seed.env.into(),
                id: Uuid::new_v4(),
            });
        let parameters = seed_parameters(seed.slug);
        let first = generate_credential(seed.slug, &parameters, 0);
        let mut rot = Rotation {
            id: Uuid::new_v4(),
            name: name.to_string(),
            description: seed.description.map(str::to_string),
            is_auto_rotation_enabled: seed.auto_rotation,
            active_index: 0,
            folder,
            connection: connection.unwrap_or_else(|| Connection {
                app: ti.app,
                name: seed.connection_name.to_string(),
                id: Uuid::new_v4(),
            }),
            created_at: created,
            updated_at: created,
            rotation_interval: seed.interval_days,
            rotation_status: "success",
            last_rotation_attempted_at: created,
            last_rotated_at: created,
            last_rotation_job_id: None,
            next_rotation_at: None,
            is_last_rotation_manual: true,
            environment,
            project_id: PROJECT_ID.to_string(),
            rotate_at_utc: seed.rotate_at,
            last_rotation_message: None,
            type_slug: ti.slug,
            parameters,
            secrets_mapping: default_secrets_mapping(ti),
            generated_credentials: vec![first],
        };
        rot.recompute_next_rotation_at(created);
        let id = rot.id;
        self.rotations.push(rot);
        id
    }

    fn rotation(&self, id: Uuid) -> Option<&Rotation> {
        self.rotations.iter().find(|r| r.id == id)
    }

    fn rotation_mut(&mut self, id: Uuid) -> Option<&mut Rotation> {
        self.rotations.iter_mut().find(|r| r.id == id)
    }

    fn is_denied(&self, id: Uuid, action: &str) -> bool {
        self.denied.get(&id).is_some_and(|s| s.contains(action))
    }

    fn lock_held(&self, id: Uuid, now: Instant) -> bool {
        self.simulated_locks.contains(&id)
            || self
                .inflight
                .get(&id)
                .is_some_and(|l| now.duration_since(l.taken_at) < self.cfg.rotation_lock_ttl)
    }

    // ---- tokens --------------------------------------------------------------------------------

    fn create_token_row(&mut self, now: DateTime<Utc>) -> Uuid {
        let id = Uuid::new_v4();
        self.token_rows.insert(
            id,
            TokenRow {
                created_at: now,
                last_renewed_at: None,
                ttl_secs: self.cfg.access_token_ttl_secs,
                max_ttl_secs: self.cfg.access_token_max_ttl_secs,
                period_secs: self.cfg.access_token_period_secs,
                revoked: false,
            },
        );
        id
    }

    /// Sign a new JWT-shaped token for a row. `lifetime_secs` 0 = no `exp`.
    fn issue_jwt(&mut self, row: Uuid, lifetime_secs: u64, now: DateTime<Utc>) -> String {
        let exp =
            (lifetime_secs > 0).then(|| now + chrono::Duration::seconds(lifetime_secs as i64));
        let mut payload = json!({
            "identityId": IDENTITY_ID,
            "identityAccessTokenId": row.to_string(),
            "authTokenType": "identityAccessToken",
            "iat": now.timestamp(),
        });
        if let (Some(e), Some(obj)) = (exp, payload.as_object_mut()) {
            obj.insert("exp".into(), json!(e.timestamp()));
        }
        let mut sig = [0u8; 32];
        rand::rng().fill(&mut sig[..]);
        let token = format!(
            "{}.{}.{}",
            b64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64url_encode(payload.to_string().as_bytes()),
            b64url_encode(&sig)
        );
        self.jwts.insert(
            token.clone(),
            IssuedJwt {
                row,
                exp,
                force_expired: false,
            },
        );
        token
    }

    /// `jwt.verify` as the server runs it: unknown strings are malformed / wrong algorithm / bad
    /// signature; known ones can be expired.
    fn check_jwt(&self, token: &str, now: DateTime<Utc>) -> JwtCheck {
        if let Some(j) = self.jwts.get(token) {
            if j.force_expired || j.exp.is_some_and(|e| now >= e) {
                return JwtCheck::Expired;
            }
            return JwtCheck::Valid(j.row);
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return JwtCheck::Malformed;
        }
        let header = b64url_decode(parts[0]).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let payload =
            b64url_decode(parts[1]).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        match (header, payload) {
            (Some(h), Some(_)) if h.is_object() => {
                if h.get("alg").and_then(Value::as_str) != Some("HS256") {
                    JwtCheck::BadAlgorithm
                } else {
                    JwtCheck::BadSignature
                }
            }
            _ => JwtCheck::Malformed,
        }
    }

    fn token_lifetime(&self, row: &TokenRow) -> u64 {
        if row.period_secs > 0 {
            row.period_secs
        } else {
            row.ttl_secs
        }
    }

    fn token_body(&self, token: &str, row: &TokenRow) -> Value {
        let max_ttl = if row.period_secs > 0 {
            1_000_000_000
        } else {
            row.max_ttl_secs
        };
        json!({
            "accessToken": token,
            "expiresIn": self.token_lifetime(row),
            "accessTokenMaxTTL": max_ttl,
            "tokenType": "Bearer",
        })
    }

    // ---- lockout -------------------------------------------------------------------------------

    fn lockout_current(&mut self, now: Instant) -> &mut Lockout {
        if self.lockout.expires_at.is_some_and(|e| now >= e) {
            self.lockout = Lockout::default();
        }
        &mut self.lockout
    }

    fn register_failed_login(&mut self, now: Instant) {
        let (threshold, reset, duration) = (
            self.cfg.lockout_threshold,
            self.cfg.lockout_counter_reset,
            self.cfg.lockout_duration,
        );
        let l = self.lockout_current(now);
        l.failed_attempts += 1;
        if l.failed_attempts >= threshold {
            l.locked = true;
            l.expires_at = Some(now + duration);
        } else {
            l.expires_at = Some(now + reset);
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Live connections, so that a test can cut one (or shutdown can cut all).
    connections: Mutex<HashMap<u64, Arc<ConnHandle>>>,
    next_conn_id: AtomicU64,
}

type App = Arc<Shared>;

impl Shared {
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnHandle>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// =================================================================================================
// 6. The public handle
// =================================================================================================

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

    /// Every token issued so far now fails with 403 TokenError `Your token has expired...`.
    /// Tokens issued afterwards are fine.
    pub fn expire_all_tokens(&self) {
        for j in self.shared.st().jwts.values_mut() {
            j.force_expired = true;
        }
    }

    /// Every token issued so far now fails with 401 `No identity access token found`.
    pub fn revoke_all_tokens(&self) {
        for row in self.shared.st().token_rows.values_mut() {
            row.revoked = true;
        }
    }

    /// Clear the Universal Auth lockout state (failure counter and lock).
    pub fn reset_lockout(&self) {
        self.shared.st().lockout = Lockout::default();
    }

    /// The next rotate-secrets on `id` that gets past the checks and the lock fails at the provider:
    /// 500 InternalServerError with the prefixed message, row marked failed (`lifecycle.md` §5).
    pub fn fail_next_rotation(&self, id: Uuid, provider_detail: &str) {
        self.shared
            .st()
            .fail_next
            .insert(id, provider_detail.to_string());
    }

    /// One-shot canned response for the next request on `route` (it still counts as a call).
    pub fn inject_next(
        &self,
        route: Route,
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    ) {
        self.shared
            .st()
            .injections
            .entry(route)
            .or_default()
            .push_back(Injection {
                status,
                body,
                headers,
            });
    }

    pub fn set_rotate_latency(&self, d: Duration) {
        self.shared.st().cfg.rotate_latency = d;
    }

    pub fn set_plan_allows_rotation(&self, allowed: bool) {
        self.shared.st().cfg.plan_allows_rotation = allowed;
    }

    /// The next rotate-secrets on `id` applies the rotation, then the connection is cut without any
    /// response bytes (the client sees the connection close before a status line).
    pub fn drop_connection_after_apply(&self, id: Uuid) {
        self.shared.st().drop_after_apply.insert(id);
    }

    /// Simulate another rotation holding `secret-rotation-v2-mutex-<id>`.
    pub fn set_lock_held(&self, id: Uuid, held: bool) {
        let mut st = self.shared.st();
        if held {
            st.simulated_locks.insert(id);
        } else {
            st.simulated_locks.remove(&id);
        }
    }

    /// Deny one permission action on `id`: "rotate-secrets", "read" or "read-generated-credentials".
    pub fn deny_permission(&self, id: Uuid, action: &str) {
        self.shared
            .st()
            .denied
            .entry(id)
            .or_default()
            .insert(action.to_string());
    }

    pub fn allow_permission(&self, id: Uuid, action: &str) {
        if let Some(set) = self.shared.st().denied.get_mut(&id) {
            set.remove(action);
        }
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

// =================================================================================================
// 7. Connection layer: a listener whose connections can be cut from a handler
// =================================================================================================

/// Per-connection handle. `cut()` shuts the socket down in both directions through a duplicated
/// descriptor, so the peer sees the connection close with no response bytes.
struct ConnHandle {
    cut: AtomicBool,
    dup: Mutex<Option<std::net::TcpStream>>,
}

impl ConnHandle {
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Some(s) = self.dup.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

struct CuttableListener {
    inner: tokio::net::TcpListener,
    shared: App,
}

struct CuttableStream {
    inner: tokio::net::TcpStream,
    id: u64,
    handle: Arc<ConnHandle>,
    shared: App,
}

impl CuttableListener {
    fn wrap(&self, stream: tokio::net::TcpStream) -> io::Result<CuttableStream> {
        let std_stream = stream.into_std()?;
        let dup = std_stream.try_clone()?;
        let inner = tokio::net::TcpStream::from_std(std_stream)?;
        let _ = inner.set_nodelay(true);
        let id = self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle {
            cut: AtomicBool::new(false),
            dup: Mutex::new(Some(dup)),
        });
        self.shared.conns().insert(id, handle.clone());
        Ok(CuttableStream {
            inner,
            id,
            handle,
            shared: self.shared.clone(),
        })
    }
}

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => match self.wrap(stream) {
                    Ok(s) => return (s, addr),
                    Err(_) => continue,
                },
                // Like axum's own listener: back off briefly on accept errors (e.g. EMFILE).
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Drop for CuttableStream {
    fn drop(&mut self) {
        // Close the duplicated descriptor too, or the socket would outlive the connection.
        self.handle
            .dup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.shared.conns().remove(&self.id);
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.handle.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.handle.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connect info handed to handlers: the connection's cut switch.
#[derive(Clone)]
struct ConnInfo {
    handle: Arc<ConnHandle>,
}

impl Connected<IncomingStream<'_, CuttableListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        ConnInfo {
            handle: stream.io().handle.clone(),
        }
    }
}

// =================================================================================================
// 8. HTTP plumbing
// =================================================================================================

/// Everything a handler needs about one request.
struct Ctx {
    method: Method,
    /// Path plus query, as sent (used in Fastify's 404 message).
    url: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    req_id: String,
    conn: ConnInfo,
}

impl Ctx {
    /// The standard error body (`infisical-api.md` §4.1).
    fn error(&self, status: u16, error: &str, message: impl Into<Value>) -> Response {
        json_response(
            status,
            &error_body(&self.req_id, status, error, message.into(), None),
        )
    }

    fn error_with_details(
        &self,
        status: u16,
        error: &str,
        message: impl Into<Value>,
        details: Value,
    ) -> Response {
        json_response(
            status,
            &error_body(&self.req_id, status, error, message.into(), Some(details)),
        )
    }

    fn validation_failure(&self, issues: Vec<Value>) -> Response {
        self.error(422, "ValidationFailure", Value::Array(issues))
    }

    fn something_went_wrong(&self) -> Response {
        self.error(500, "InternalServerError", MSG_SOMETHING_WRONG)
    }

    fn query_param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

fn error_body(
    req_id: &str,
    status: u16,
    error: &str,
    message: Value,
    details: Option<Value>,
) -> Value {
    let mut body =
        json!({ "reqId": req_id, "statusCode": status, "message": message, "error": error });
    if let (Some(d), Some(obj)) = (details, body.as_object_mut()) {
        obj.insert("details".into(), d);
    }
    body
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn add_header(resp: &mut Response, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().append(n, v);
    }
}

fn with_rate_headers(mut resp: Response, info: Option<RateInfo>) -> Response {
    if let Some(i) = info {
        add_header(&mut resp, "x-ratelimit-limit", &i.limit.to_string());
        add_header(&mut resp, "x-ratelimit-remaining", &i.remaining.to_string());
        add_header(&mut resp, "x-ratelimit-reset", &i.reset_secs.to_string());
    }
    resp
}

/// Fastify's default not-found body: no `reqId` (`infisical-api.md` §4.2).
fn fastify_not_found(method: &Method, url: &str) -> Response {
    json_response(
        404,
        &json!({ "message": format!("Route {}:{} not found", method.as_str(), url), "error": "Not Found", "statusCode": 404 }),
    )
}

/// `req-` + 14 alphanumerics (Fastify `genReqId`).
fn new_req_id() -> String {
    let suffix: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(14)
        .map(char::from)
        .collect();
    format!("req-{suffix}")
}

// ---- Zod-like validation issues ----------------------------------------------------------------

fn zod_required(path: &[&str], expected: &str) -> Value {
    json!({ "code": "invalid_type", "expected": expected, "received": "undefined", "path": path, "message": "Required" })
}

fn zod_wrong_type(path: &[&str], expected: &str, received: &Value) -> Value {
    let received = match received {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    json!({
        "code": "invalid_type", "expected": expected, "received": received, "path": path,
        "message": format!("Expected {expected}, received {received}"),
    })
}

fn zod_too_small(path: &[&str], minimum: usize) -> Value {
    json!({
        "code": "too_small", "minimum": minimum, "type": "string", "inclusive": true, "exact": false,
        "message": format!("String must contain at least {minimum} character(s)"), "path": path,
    })
}

fn zod_too_big(path: &[&str], maximum: usize) -> Value {
    json!({
        "code": "too_big", "maximum": maximum, "type": "string", "inclusive": true, "exact": false,
        "message": format!("String must contain at most {maximum} character(s)"), "path": path,
    })
}

fn zod_invalid_uuid(path: &[&str]) -> Value {
    json!({ "validation": "uuid", "code": "invalid_string", "message": "Invalid uuid", "path": path })
}

fn zod_unrecognized_keys(keys: &[String]) -> Value {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    json!({
        "code": "unrecognized_keys", "keys": keys, "path": [],
        "message": format!("Unrecognized key(s) in object: {}", quoted.join(", ")),
    })
}

/// Zod's uuid check: 8-4-4-4-12 hex digits, any case (no braces, no URN, no simple form).
fn is_zod_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Validate a required query string (`z.string().trim().min(1)`), collecting issues.
fn required_query(ctx: &Ctx, key: &'static str, issues: &mut Vec<Value>) -> String {
    match ctx.query_param(key) {
        None => {
            issues.push(zod_required(&[key], "string"));
            String::new()
        }
        Some(v) if v.trim().is_empty() => {
            issues.push(zod_too_small(&[key], 1));
            String::new()
        }
        Some(v) => v.trim().to_string(),
    }
}

// ---- body parsing ------------------------------------------------------------------------------

enum ParsedBody {
    Absent,
    Json(Value),
    Text,
}

/// Fastify's content-type parsing for POST bodies. Err = a Fastify error, which Infisical's error
/// handler turns into 500 `Something went wrong` (empty JSON body, invalid JSON, unsupported media).
fn parse_body(ctx: &Ctx) -> Result<ParsedBody, ()> {
    let content_type = ctx
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        Some("application/json") => {
            if ctx.body.is_empty() {
                return Err(());
            }
            serde_json::from_slice::<Value>(&ctx.body)
                .map(ParsedBody::Json)
                .map_err(|_| ())
        }
        Some("text/plain") => Ok(ParsedBody::Text),
        // No body at all: nothing to parse, whatever the content type says.
        _ if ctx.body.is_empty() => Ok(ParsedBody::Absent),
        // A body Fastify has no parser for (or no content type): 415 upstream, 500 after Infisical's handler.
        _ => Err(()),
    }
}

/// Validate a strict object body with the given string fields (trimmed).
/// `required` fields must be present; `optional` may be absent. Unknown keys are rejected.
fn parse_string_fields(
    body: &ParsedBody,
    required: &[&'static str],
    optional: &[(&'static str, usize, usize)],
) -> Result<HashMap<&'static str, String>, Vec<Value>> {
    let obj = match body {
        ParsedBody::Json(Value::Object(o)) => o,
        ParsedBody::Json(other) => return Err(vec![zod_wrong_type(&[], "object", other)]),
        ParsedBody::Absent | ParsedBody::Text => return Err(vec![zod_required(&[], "object")]),
    };
    let mut issues = Vec::new();
    let mut out = HashMap::new();
    for key in required {
        match obj.get(*key) {
            None => issues.push(zod_required(&[key], "string")),
            Some(Value::String(s)) => {
                out.insert(*key, s.trim().to_string());
            }
            Some(other) => issues.push(zod_wrong_type(&[key], "string", other)),
        }
    }
    for (key, min, max) in optional {
        match obj.get(*key) {
            None => {}
            Some(Value::String(s)) => {
                let len = s.trim().chars().count();
                if len < *min {
                    issues.push(zod_too_small(&[key], *min));
                } else if len > *max {
                    issues.push(zod_too_big(&[key], *max));
                } else {
                    out.insert(*key, s.trim().to_string());
                }
            }
            Some(other) => issues.push(zod_wrong_type(&[key], "string", other)),
        }
    }
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| !required.contains(&k.as_str()) && !optional.iter().any(|(o, _, _)| o == k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        issues.push(zod_unrecognized_keys(&unknown));
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

// =================================================================================================
// 9. Dispatch and route handlers
// =================================================================================================

/// A matched route with its path parameters.
enum Matched {
    Status,
    Login,
    Renew,
    Revoke,
    Options,
    ListAll,
    ListType(&'static TypeInfo),
    Get(&'static TypeInfo, String),
    GetByName(&'static TypeInfo, String),
    GeneratedCredentials(&'static TypeInfo, String),
    Rotate(&'static TypeInfo, String),
}

impl Matched {
    fn route(&self) -> Option<Route> {
        Some(match self {
            Matched::Status => return None,
            Matched::Login => Route::Login,
            Matched::Renew => Route::Renew,
            Matched::Revoke => Route::Revoke,
            Matched::Options => Route::Options,
            Matched::ListAll | Matched::ListType(_) => Route::List,
            Matched::Get(..) => Route::Get,
            Matched::GetByName(..) => Route::GetByName,
            Matched::GeneratedCredentials(..) => Route::GeneratedCredentials,
            Matched::Rotate(..) => Route::Rotate,
        })
    }

    fn rate_class(&self) -> RateClass {
        match self {
            Matched::Status => RateClass::Exempt,
            Matched::Login | Matched::Renew | Matched::Revoke | Matched::Rotate(..) => {
                RateClass::Write
            }
            _ => RateClass::Read,
        }
    }
}

/// Path segments after `/api/v2/secret-rotations`, if the path is under it.
fn rotation_route_segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("/api/v2/secret-rotations")?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    Some(rest.strip_prefix('/')?.split('/').collect())
}

/// Route table. Only supported `{type}` values match; everything else is Fastify's 404.
fn match_route(method: &Method, path: &str, supported: &[String]) -> Option<Matched> {
    let method = method.as_str();
    match (method, path) {
        ("GET", "/api/status") => return Some(Matched::Status),
        ("POST", "/api/v1/auth/universal-auth/login") => return Some(Matched::Login),
        ("POST", "/api/v1/auth/token/renew") => return Some(Matched::Renew),
        ("POST", "/api/v1/auth/token/revoke") => return Some(Matched::Revoke),
        _ => {}
    }
    let segs = rotation_route_segments(path)?;
    let known = |t: &str| type_info(t).filter(|ti| supported.iter().any(|s| s == ti.slug));
    let id = |s: &str| percent_decode(s);
    match (method, segs.as_slice()) {
        ("GET", []) => Some(Matched::ListAll),
        ("GET", ["options"]) => Some(Matched::Options),
        ("GET", [t]) => known(t).map(Matched::ListType),
        ("GET", [t, "rotation-name", name]) => known(t).map(|ti| Matched::GetByName(ti, id(name))),
        ("GET", [t, rid]) => known(t).map(|ti| Matched::Get(ti, id(rid))),
        ("GET", [t, rid, "generated-credentials"]) => {
            known(t).map(|ti| Matched::GeneratedCredentials(ti, id(rid)))
        }
        ("POST", [t, rid, "rotate-secrets"]) => known(t).map(|ti| Matched::Rotate(ti, id(rid))),
        _ => None,
    }
}

/// Entry point for every request.
async fn dispatch(
    AxumState(app): AxumState<App>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let url = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let headers_vec: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    let (matched, req_id, injection) = {
        let mut st = app.st();
        record_request(&mut st, &parts.method, &path, &url, &headers_vec);
        let req_id = match parts
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if st.cfg.adopt_request_id_header && !v.is_empty() => v.to_string(),
            _ => new_req_id(),
        };
        let matched = match_route(&parts.method, &path, &st.cfg.supported_types);
        let injection = matched
            .as_ref()
            .and_then(Matched::route)
            .and_then(|r| st.injections.get_mut(&r).and_then(VecDeque::pop_front));
        (matched, req_id, injection)
    };

    let Some(matched) = matched else {
        return fastify_not_found(&parts.method, &url);
    };
    if let Some(inj) = injection {
        let mut resp = json_response(inj.status, &inj.body);
        for (k, v) in &inj.headers {
            add_header(&mut resp, k, v);
        }
        return resp;
    }

    let ctx = Ctx {
        method: parts.method.clone(),
        url,
        query: parse_query(&parts.uri),
        headers: parts.headers,
        body,
        req_id,
        conn,
    };
    match matched {
        Matched::Status => status_route(),
        Matched::Login | Matched::Renew | Matched::Revoke => {
            let rate = match rate_limit(&app, &ctx, matched.rate_class()) {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let resp = match matched {
                Matched::Login => login_route(&app, &ctx),
                Matched::Renew => renew_route(&app, &ctx),
                _ => revoke_route(&app, &ctx),
            };
            with_rate_headers(resp, rate)
        }
        _ => resource_route(app, ctx, matched).await,
    }
}

/// Counters and header recording, before anything can fail.
fn record_request(
    st: &mut State,
    method: &Method,
    path: &str,
    url: &str,
    headers: &[(String, String)],
) {
    if st.requests.len() >= MAX_RECORDED_REQUESTS {
        st.requests.pop_front();
    }
    st.requests.push_back(RecordedRequest {
        method: method.to_string(),
        url: url.to_string(),
        headers: headers.to_vec(),
    });
    if path.starts_with("/api/v2/") {
        st.last_resource_headers = headers.to_vec();
    }
    match (method.as_str(), path) {
        ("POST", "/api/v1/auth/universal-auth/login") => st.login_calls += 1,
        ("POST", "/api/v1/auth/token/renew") => st.renew_calls += 1,
        ("POST", _) => {
            // Any rotate-secrets POST counts, whatever its type (even an unsupported one).
            let segs = rotation_route_segments(path).unwrap_or_default();
            if let [_, rid, "rotate-secrets"] = segs.as_slice() {
                st.total_rotate_calls += 1;
                let rid = percent_decode(rid);
                let id = Some(rid.as_str())
                    .filter(|r| is_zod_uuid(r))
                    .and_then(|r| Uuid::parse_str(r).ok());
                if let Some(id) = id {
                    *st.rotate_calls.entry(id).or_default() += 1;
                }
            }
        }
        _ => {}
    }
}

fn parse_query(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// Rate limiting (Cloud mode only). Ok(None) when not enforced for this route.
fn rate_limit(app: &App, ctx: &Ctx, class: RateClass) -> Result<Option<RateInfo>, Response> {
    let mut st = app.st();
    if !st.cfg.rate_limit_cloud {
        return Ok(None);
    }
    let (limit, window) = match class {
        RateClass::Exempt => return Ok(None),
        RateClass::Write => (st.cfg.write_limit_per_minute, st.cfg.rate_limit_window),
        RateClass::Read => (st.cfg.read_limit_per_minute, st.cfg.rate_limit_window),
    };
    if limit == 0 {
        return Ok(None);
    }
    let now = Instant::now();
    let info = match class {
        RateClass::Write => st.write_bucket.hit(limit, window, now),
        _ => st.read_bucket.hit(limit, window, now),
    };
    if !info.exceeded {
        return Ok(Some(info));
    }
    let wait = info.reset_secs.max(1);
    let mut resp = ctx.error(
        429,
        "RateLimitExceeded",
        format!("Rate limit exceeded. Please try again in {wait} seconds"),
    );
    add_header(&mut resp, "retry-after", &wait.to_string());
    Err(with_rate_headers(resp, Some(info)))
}

// ---- authentication ----------------------------------------------------------------------------

/// `injectIdentity` + `verifyAuth` (`infisical-api.md` §2.4). Returns the token row on success.
fn authenticate(app: &App, ctx: &Ctx) -> Result<Uuid, Response> {
    let header = ctx
        .headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let header = match header {
        Some(h) if !h.is_empty() => h,
        _ => return Err(ctx.error(401, "UnauthorizedError", MSG_TOKEN_MISSING)),
    };
    // The server drops the first 7 characters ("Bearer ") and treats the rest as the token.
    let token: String = header.chars().skip(7).collect();
    if token.starts_with("st.") {
        // A legacy service token: wrong auth mode for rotation routes.
        return Err(ctx.error(
            403,
            &format!("Forbidden access to {}", ctx.url),
            "You are not allowed to access this resource",
        ));
    }
    let st = app.st();
    let row_id = match st.check_jwt(&token, now_ms()) {
        JwtCheck::Valid(row) => row,
        failure => return Err(token_error(ctx, failure)),
    };
    match st.token_rows.get(&row_id) {
        Some(row) if !row.revoked => Ok(row_id),
        _ => Err(ctx.error(401, "UnauthorizedError", MSG_NO_ACCESS_TOKEN)),
    }
}

fn token_error(ctx: &Ctx, check: JwtCheck) -> Response {
    let message = match check {
        JwtCheck::Expired => MSG_TOKEN_EXPIRED,
        JwtCheck::BadAlgorithm => MSG_TOKEN_BAD_ALGORITHM,
        JwtCheck::BadSignature => MSG_TOKEN_BAD_SIGNATURE,
        JwtCheck::Malformed | JwtCheck::Valid(_) => MSG_TOKEN_MALFORMED,
    };
    ctx.error(403, "TokenError", message)
}

// ---- /api/status -------------------------------------------------------------------------------

fn status_route() -> Response {
    json_response(
        200,
        &json!({
            "date": iso(now_ms()),
            "message": "Ok",
            "emailConfigured": false,
            "inviteOnlySignup": false,
            "redisConfigured": true,
            "secretScanningConfigured": false,
            "samlDefaultOrgSlug": null,
            "auditLogStorageDisabled": false,
        }),
    )
}

// ---- Universal Auth login, renew, revoke -------------------------------------------------------

fn login_route(app: &App, ctx: &Ctx) -> Response {
    let Ok(body) = parse_body(ctx) else {
        return ctx.something_went_wrong();
    };
    let fields = match parse_string_fields(
        &body,
        &["clientId", "clientSecret"],
        &[("organizationSlug", 1, 64), ("subOrganizationName", 1, 64)],
    ) {
        Ok(f) => f,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let client_id = fields
        .get("clientId")
        .map(String::as_str)
        .unwrap_or_default();
    let client_secret = fields
        .get("clientSecret")
        .map(String::as_str)
        .unwrap_or_default();

    let mut st = app.st();
    if client_id != CLIENT_ID {
        return ctx.error(401, "UnauthorizedError", MSG_INVALID_CREDENTIALS);
    }
    let now = Instant::now();
    let lockout_enabled = st.cfg.lockout_enabled;
    if lockout_enabled && st.lockout_current(now).locked {
        return ctx.error(401, "UnauthorizedError", MSG_LOCKED_OUT);
    }
    if client_secret != CLIENT_SECRET {
        if lockout_enabled {
            st.register_failed_login(now);
        }
        return ctx.error(401, "UnauthorizedError", MSG_INVALID_CREDENTIALS);
    }
    st.lockout = Lockout::default();
    let now = now_ms();
    let row_id = st.create_token_row(now);
    let Some(row) = st.token_rows.get(&row_id).cloned() else {
        return ctx.something_went_wrong();
    };
    let lifetime = st.token_lifetime(&row);
    let token = st.issue_jwt(row_id, lifetime, now);
    json_response(200, &st.token_body(&token, &row))
}

fn renew_route(app: &App, ctx: &Ctx) -> Response {
    let Ok(body) = parse_body(ctx) else {
        return ctx.something_went_wrong();
    };
    let fields = match parse_string_fields(&body, &["accessToken"], &[]) {
        Ok(f) => f,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let token = fields.get("accessToken").cloned().unwrap_or_default();
    let now = now_ms();
    let mut st = app.st();
    let row_id = match st.check_jwt(&token, now) {
        JwtCheck::Valid(row) => row,
        failure => return token_error(ctx, failure),
    };
    let Some(row) = st.token_rows.get(&row_id).cloned().filter(|r| !r.revoked) else {
        return ctx.error(401, "UnauthorizedError", MSG_NO_ACCESS_TOKEN);
    };
    let secs = |s: u64| chrono::Duration::seconds(s as i64);
    let lifetime = st.token_lifetime(&row);
    if lifetime > 0 && now > row.last_renewed_at.unwrap_or(row.created_at) + secs(lifetime) {
        return ctx.error(
            401,
            "UnauthorizedError",
            "Failed to renew MI access token due to TTL expiration",
        );
    }
    if row.period_secs == 0 && row.max_ttl_secs > 0 {
        let max_expiry = row.created_at + secs(row.max_ttl_secs);
        if now > max_expiry {
            return ctx.error(
                401,
                "UnauthorizedError",
                "Failed to renew MI access token due to Max TTL expiration",
            );
        }
        if now + secs(row.ttl_secs) > max_expiry {
            return ctx.error(
                401,
                "UnauthorizedError",
                "Failed to renew MI access token past its Max TTL expiration",
            );
        }
    }
    if let Some(r) = st.token_rows.get_mut(&row_id) {
        r.last_renewed_at = Some(now);
    }
    let new_token = st.issue_jwt(row_id, lifetime, now);
    json_response(200, &st.token_body(&new_token, &row))
}

fn revoke_route(app: &App, ctx: &Ctx) -> Response {
    let Ok(body) = parse_body(ctx) else {
        return ctx.something_went_wrong();
    };
    let fields = match parse_string_fields(&body, &["accessToken"], &[]) {
        Ok(f) => f,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let token = fields.get("accessToken").cloned().unwrap_or_default();
    let mut st = app.st();
    let row_id = match st.check_jwt(&token, now_ms()) {
        JwtCheck::Valid(row) => row,
        failure => return token_error(ctx, failure),
    };
    match st.token_rows.get_mut(&row_id) {
        Some(row) if !row.revoked => {
            row.revoked = true;
            json_response(200, &json!({ "message": MSG_REVOKED_OK }))
        }
        _ => ctx.error(401, "UnauthorizedError", MSG_NO_ACCESS_TOKEN),
    }
}

// ---- secret-rotation routes --------------------------------------------------------------------

/// Authenticated routes under `/api/v2/secret-rotations`.
async fn resource_route(app: App, ctx: Ctx, matched: Matched) -> Response {
    if let Err(resp) = authenticate(&app, &ctx) {
        return resp;
    }
    let rate = match rate_limit(&app, &ctx, matched.rate_class()) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let resp = match &matched {
        Matched::Options => options_route(),
        Matched::ListAll => list_route(&app, &ctx, None),
        Matched::ListType(ti) => list_route(&app, &ctx, Some(ti)),
        Matched::Get(ti, rid) => get_route(&app, &ctx, ti, rid),
        Matched::GetByName(ti, name) => get_by_name_route(&app, &ctx, ti, name),
        Matched::GeneratedCredentials(ti, rid) => generated_credentials_route(&app, &ctx, ti, rid),
        Matched::Rotate(ti, rid) => rotate_route(&app, &ctx, ti, rid).await,
        _ => fastify_not_found(&ctx.method, &ctx.url),
    };
    with_rate_headers(resp, rate)
}

/// 403 PermissionDenied with the caller's (inverted) rule for that action as `details`.
fn permission_denied(ctx: &Ctx, action: &str, rot: &Rotation) -> Response {
    ctx.error_with_details(
        403,
        "PermissionDenied",
        format!("You are not allowed to {action} on secret-rotation"),
        json!([{
            "action": action,
            "inverted": true,
            "subject": "secret-rotation",
            "conditions": {
                "environment": { "$eq": rot.environment.slug },
                "secretPath": { "$glob": rot.folder.path },
                "connectionId": { "$eq": rot.connection.id.to_string() },
            },
        }]),
    )
}

/// The checks common to the per-id routes, in order (`infisical-api.md` §7.2):
/// 422 (non-UUID) -> plan (400) -> existence (404) -> permission (403) -> type/app match (400).
fn checked_rotation(
    st: &State,
    ctx: &Ctx,
    ti: &TypeInfo,
    rid: &str,
    action: &str,
    plan_msg: &str,
) -> Result<Uuid, Response> {
    if !is_zod_uuid(rid) {
        return Err(ctx.validation_failure(vec![zod_invalid_uuid(&["rotationId"])]));
    }
    if !st.cfg.plan_allows_rotation {
        return Err(ctx.error(400, "BadRequest", plan_msg));
    }
    let rot = Uuid::parse_str(rid).ok().and_then(|id| st.rotation(id));
    let Some(rot) = rot else {
        return Err(ctx.error(
            404,
            "NotFound",
            format!("Could not find {} Rotation with ID \"{rid}\"", ti.display),
        ));
    };
    if st.is_denied(rot.id, action) {
        return Err(permission_denied(ctx, action, rot));
    }
    if rot.connection.app != ti.app {
        return Err(ctx.error(
            400,
            "BadRequest",
            format!(
                "Secret Rotation with ID \"{}\" is not configured for {}",
                rot.id, ti.display
            ),
        ));
    }
    Ok(rot.id)
}

fn options_route() -> Response {
    let mut options: Vec<Value> = TYPES
        .iter()
        .map(|ti| json!({ "name": ti.display, "type": ti.slug, "connection": ti.app, "template": options_template(ti) }))
        .collect();
    options.sort_by_key(|o| o["name"].as_str().unwrap_or_default().to_lowercase());
    json_response(200, &json!({ "secretRotationOptions": options }))
}

fn list_route(app: &App, ctx: &Ctx, ti: Option<&TypeInfo>) -> Response {
    let mut issues = Vec::new();
    let project_id = required_query(ctx, "projectId", &mut issues);
    if !issues.is_empty() {
        return ctx.validation_failure(issues);
    }
    let st = app.st();
    if !st.cfg.plan_allows_rotation {
        return ctx.error(400, "BadRequest", MSG_PLAN_READ);
    }
    let rotations: Vec<Value> = st
        .rotations
        .iter()
        .filter(|r| r.project_id == project_id)
        .filter(|r| ti.is_none_or(|t| r.type_slug == t.slug))
        .filter(|r| st.type_supported(r.type_slug))
        .filter(|r| !st.is_denied(r.id, "read"))
        .map(Rotation::to_json)
        .collect();
    json_response(200, &json!({ "secretRotations": rotations }))
}

fn get_route(app: &App, ctx: &Ctx, ti: &TypeInfo, rid: &str) -> Response {
    let st = app.st();
    match checked_rotation(&st, ctx, ti, rid, "read", MSG_PLAN_READ) {
        Ok(id) => match st.rotation(id) {
            Some(rot) => json_response(200, &json!({ "secretRotation": rot.to_json() })),
            None => ctx.something_went_wrong(),
        },
        Err(resp) => resp,
    }
}

/// Trimmed, trailing `/` removed (root stays `/`).
fn normalize_secret_path(p: &str) -> String {
    let t = p.trim();
    let stripped = t.trim_end_matches('/');
    if stripped.is_empty() {
        "/".to_string()
    } else {
        stripped.to_string()
    }
}

fn get_by_name_route(app: &App, ctx: &Ctx, ti: &TypeInfo, name: &str) -> Response {
    let mut issues = Vec::new();
    if name.trim().is_empty() {
        issues.push(zod_too_small(&["rotationName"], 1));
    }
    let project_id = required_query(ctx, "projectId", &mut issues);
    let secret_path = required_query(ctx, "secretPath", &mut issues);
    let environment = required_query(ctx, "environment", &mut issues);
    if !issues.is_empty() {
        return ctx.validation_failure(issues);
    }
    let secret_path = normalize_secret_path(&secret_path);
    let st = app.st();
    if !st.cfg.plan_allows_rotation {
        return ctx.error(400, "BadRequest", MSG_PLAN_READ);
    }
    let folder = st
        .folders
        .iter()
        .find(|f| project_id == PROJECT_ID && f.env_slug == environment && f.path == secret_path);
    let Some(folder) = folder else {
        return ctx.error(
            400,
            "BadRequest",
            format!("Could not find folder with path \"{secret_path}\" in environment \"{environment}\" for project with ID \"{project_id}\""),
        );
    };
    let rot = st
        .rotations
        .iter()
        .find(|r| r.folder.id == folder.id && r.name == name.trim());
    let Some(rot) = rot else {
        return ctx.error(
            404,
            "NotFound",
            format!(
                "Could not find {} Rotation with name \"{}\"",
                ti.display,
                name.trim()
            ),
        );
    };
    if st.is_denied(rot.id, "read") {
        return permission_denied(ctx, "read", rot);
    }
    if rot.connection.app != ti.app {
        return ctx.error(
            400,
            "BadRequest",
            format!(
                "Secret Rotation with ID \"{}\" is not configured for {}",
                rot.id, ti.display
            ),
        );
    }
    json_response(200, &json!({ "secretRotation": rot.to_json() }))
}

fn generated_credentials_route(app: &App, ctx: &Ctx, ti: &TypeInfo, rid: &str) -> Response {
    let st = app.st();
    match checked_rotation(
        &st,
        ctx,
        ti,
        rid,
        "read-generated-credentials",
        MSG_PLAN_READ,
    ) {
        Ok(id) => match st.rotation(id) {
            Some(rot) => json_response(200, &rot.generated_credentials_body()),
            None => ctx.something_went_wrong(),
        },
        Err(resp) => resp,
    }
}

/// What the rotation work decided.
enum RotateOutcome {
    Success(Value),
    ProviderFailure(String),
    Vanished,
}

/// `POST /{type}/{rotationId}/rotate-secrets` (`infisical-api.md` §7.3, `lifecycle.md` §4–§6).
async fn rotate_route(app: &App, ctx: &Ctx, ti: &TypeInfo, rid: &str) -> Response {
    // Fastify parses the body before validation: an empty JSON body is a 500 even with a bad id.
    if parse_body(ctx).is_err() {
        return ctx.something_went_wrong();
    }
    // Checks, the in-progress test and taking the lock happen atomically under the state mutex.
    let (id, lock_token, failure, cut_after, latency) = {
        let mut st = app.st();
        let id = match checked_rotation(&st, ctx, ti, rid, "rotate-secrets", MSG_PLAN_ROTATE) {
            Ok(id) => id,
            Err(resp) => return resp,
        };
        let now = Instant::now();
        if st.lock_held(id, now) {
            return ctx.error(400, "BadRequest", MSG_IN_PROGRESS);
        }
        st.next_lock_token += 1;
        let lock_token = st.next_lock_token;
        st.inflight.insert(
            id,
            InflightLock {
                token: lock_token,
                taken_at: now,
            },
        );
        let failure = st.fail_next.remove(&id);
        let cut_after = st.drop_after_apply.remove(&id);
        (id, lock_token, failure, cut_after, st.cfg.rotate_latency)
    };

    // The provider work runs in its own task, so it completes (and releases the lock) even when the
    // client gives up and the connection goes away, as upstream's would.
    let worker_app = app.clone();
    let work = tokio::spawn(async move {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut st = worker_app.st();
        let now = now_ms();
        let outcome = match st.rotation_mut(id) {
            None => RotateOutcome::Vanished,
            Some(rot) => match &failure {
                Some(detail) => {
                    RotateOutcome::ProviderFailure(rot.apply_failed_rotation(detail, now))
                }
                None => {
                    rot.apply_successful_rotation(now);
                    RotateOutcome::Success(rot.to_json())
                }
            },
        };
        if st.inflight.get(&id).is_some_and(|l| l.token == lock_token) {
            st.inflight.remove(&id);
        }
        outcome
    });
    let outcome = work.await;

    if cut_after {
        ctx.conn.handle.cut();
    }
    match outcome {
        Ok(RotateOutcome::Success(obj)) => json_response(200, &json!({ "secretRotation": obj })),
        Ok(RotateOutcome::ProviderFailure(message)) => {
            ctx.error(500, "InternalServerError", message)
        }
        Ok(RotateOutcome::Vanished) => ctx.error(
            404,
            "NotFound",
            format!("Could not find {} Rotation with ID \"{rid}\"", ti.display),
        ),
        Err(_) => ctx.something_went_wrong(),
    }
}

// =================================================================================================
// 10. Small helpers
// =================================================================================================

/// Now, truncated to milliseconds (what a JS `Date` holds).
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

/// `Date.prototype.toISOString()`: `2025-01-10T05:00:00.000Z`.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64URL.iter().position(|x| *x == c)? as u32;
        acc = ((acc << 6) | v) & 0xFF_FFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = if bytes[i] == b'%' && i + 2 < bytes.len() {
            hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(hi, lo)| hi * 16 + lo)
        } else {
            None
        };
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
