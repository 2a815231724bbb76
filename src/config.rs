//! Configuration: defaults, then a TOML file, then `ROTATOR_*` environment variables, then
//! `validate()` into a typed [`Config`] that cannot be invalid.
//!
//! Secret-bearing options accept a reference instead of a value: `env:NAME` reads the variable
//! `NAME`, `file:/path` reads (and trims) the file. Problems are reported all at once, naming the
//! key and the reason, never the value.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::rotation::RotationType;
use crate::secret::SecretString;

pub mod kubeconfig;
pub mod registry;
mod schema;
mod security;
pub mod sinks;
pub mod telemetry;

pub use self::security::{AuthConfig, AuthMode, IdentityConfig, NetworkConfig, TlsConfig};

/// The process environment as a map, so tests never mutate the real one.
pub type Env = HashMap<String, String>;

/// A configuration value that is wrong, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `infisical.url`.
    pub key: String,
    /// Why the value was rejected; never contains the value of a secret.
    pub reason: String,
}

/// Every problem found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.0 {
            writeln!(f, "  {}: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

/// The environment variables read, and the dotted key each one sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("ROTATOR_LISTEN", "listen"),
    ("ROTATOR_ADMIN_LISTEN", "admin_listen"),
    ("ROTATOR_DATA_DIR", "data_dir"),
    ("ROTATOR_STORE_URL", "store_url"),
    ("ROTATOR_MAX_CONCURRENT_CALLS", "max_concurrent_calls"),
    ("ROTATOR_MAX_MESSAGE_BYTES", "max_message_bytes"),
    ("ROTATOR_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds"),
    ("ROTATOR_LOG_FORMAT", "log_format"),
    ("ROTATOR_ENABLED_TYPES", "enabled_types"),
    ("ROTATOR_INFISICAL_URL", "infisical.url"),
    ("ROTATOR_INFISICAL_CLIENT_ID", "infisical.client_id"),
    ("ROTATOR_INFISICAL_CLIENT_SECRET", "infisical.client_secret"),
    ("ROTATOR_INFISICAL_TOKEN", "infisical.token"),
    ("ROTATOR_INFISICAL_CA_FILE", "infisical.ca_file"),
    (
        "ROTATOR_INFISICAL_ORGANIZATION_SLUG",
        "infisical.organization_slug",
    ),
    (
        "ROTATOR_INFISICAL_REQUEST_TIMEOUT_SECONDS",
        "infisical.request_timeout_seconds",
    ),
    ("ROTATOR_NATS_URL", "nats.url"),
    ("ROTATOR_NATS_USER", "nats.user"),
    ("ROTATOR_NATS_PASSWORD", "nats.password"),
    ("ROTATOR_NATS_TOKEN", "nats.token"),
    ("ROTATOR_NATS_CREDS_FILE", "nats.creds_file"),
    ("ROTATOR_NATS_NKEY_SEED", "nats.nkey_seed"),
    ("ROTATOR_NATS_TLS_CA_FILE", "nats.tls_ca_file"),
    ("ROTATOR_NATS_TLS_REQUIRED", "nats.tls_required"),
    ("ROTATOR_NATS_SUBJECT_PREFIX", "nats.subject_prefix"),
    ("ROTATOR_NATS_STREAM_NAME", "nats.stream.name"),
    (
        "ROTATOR_NATS_STREAM_MAX_AGE_SECONDS",
        "nats.stream.max_age_seconds",
    ),
    ("ROTATOR_NATS_STREAM_STORAGE", "nats.stream.storage"),
    ("ROTATOR_NATS_STREAM_REPLICAS", "nats.stream.replicas"),
    (
        "ROTATOR_NATS_STREAM_DUPLICATE_WINDOW_SECONDS",
        "nats.stream.duplicate_window_seconds",
    ),
    (
        "ROTATOR_EVENTS_OUTBOX_RETENTION_SECONDS",
        "events.outbox_retention_seconds",
    ),
    (
        "ROTATOR_EVENTS_UNPUBLISHED_CAP_WITHOUT_NATS",
        "events.unpublished_cap_without_nats",
    ),
    (
        "ROTATOR_EVENTS_RELAY_POLL_INTERVAL_SECONDS",
        "events.relay_poll_interval_seconds",
    ),
    (
        "ROTATOR_EVENTS_BACKLOG_LOG_INTERVAL_SECONDS",
        "events.backlog_log_interval_seconds",
    ),
    (
        "ROTATOR_EVENTS_RELAY_LEASE_TTL_SECONDS",
        "events.relay_lease_ttl_seconds",
    ),
    ("ROTATOR_LOCAL_LEASE_TTL_SECONDS", "local.lease_ttl_seconds"),
    (
        "ROTATOR_LOCAL_LEASE_RENEW_SECONDS",
        "local.lease_renew_seconds",
    ),
    (
        "ROTATOR_LOCAL_SCAN_INTERVAL_SECONDS",
        "local.scan_interval_seconds",
    ),
    ("ROTATOR_TLS_CERT_FILE", "tls.cert_file"),
    ("ROTATOR_TLS_KEY_FILE", "tls.key_file"),
    ("ROTATOR_TLS_CLIENT_CA_FILE", "tls.client_ca_file"),
    (
        "ROTATOR_TLS_CLIENT_AUTH_OPTIONAL",
        "tls.client_auth_optional",
    ),
    ("ROTATOR_AUTH_MODE", "auth.mode"),
    ("ROTATOR_AUTH_OPEN_HEALTH", "auth.open_health"),
    ("ROTATOR_AUTH_OPEN_REFLECTION", "auth.open_reflection"),
    (
        "ROTATOR_AUTH_ALLOW_PLAINTEXT_TOKENS",
        "auth.allow_plaintext_tokens",
    ),
    (
        "ROTATOR_NETWORK_DENY_PRIVATE_ADDRESSES",
        "network.deny_private_addresses",
    ),
];

/// `ROTATOR_*` variables read outside the configuration keys: known, so never reported as
/// unknown. A test scans the sources for `ROTATOR_*` names so this list stays complete.
pub const OTHER_VARS: &[(&str, &str)] = &[
    ("ROTATOR_CONFIG", "the configuration file (`--config`)"),
    ("ROTATOR_ENCRYPTION_KEY", "credentials-encryption keys"),
    (
        "ROTATOR_ENCRYPTION_KEY_FILE",
        "a file of credentials-encryption keys",
    ),
    (
        "ROTATOR_FAILPOINT",
        "crash and pause points of the crash tests",
    ),
    ("ROTATOR_SERVER", "the server the CLI calls (`--server`)"),
    (
        "ROTATOR_TEST_PYTHON",
        "the Python with `moto[server]` the AWS driver tests start",
    ),
    ("ROTATOR_TOKEN", "the CLI's bearer token (`--token`)"),
    (
        "ROTATOR_TOKEN_FILE",
        "the CLI's bearer token file (`--token-file`)",
    ),
    ("ROTATOR_CA_FILE", "the CLI's CA file (`--ca-file`)"),
    (
        "ROTATOR_CLIENT_CERT_FILE",
        "the CLI's client certificate (`--cert-file`)",
    ),
    (
        "ROTATOR_CLIENT_KEY_FILE",
        "the CLI's client key (`--key-file`)",
    ),
    (
        "ROTATOR_TEST_POSTGRES_ADMIN_URL",
        "the PostgreSQL server of the test suite",
    ),
];

// === raw (as written) ===
// No `Debug` on the raw structs: they hold secrets as plain strings.

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    admin_listen: Option<String>,
    data_dir: Option<String>,
    store_url: Option<String>,
    max_concurrent_calls: Option<u32>,
    max_message_bytes: Option<u32>,
    shutdown_grace_seconds: Option<u64>,
    log_format: Option<String>,
    enabled_types: Option<Vec<String>>,
    infisical: Option<RawInfisical>,
    nats: Option<RawNats>,
    events: Option<RawEvents>,
    local: Option<RawLocal>,
    tls: Option<security::RawTls>,
    auth: Option<security::RawAuth>,
    network: Option<security::RawNetwork>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInfisical {
    url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token: Option<String>,
    ca_file: Option<String>,
    organization_slug: Option<String>,
    request_timeout_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    creds_file: Option<String>,
    nkey_seed: Option<String>,
    tls_ca_file: Option<String>,
    tls_required: Option<bool>,
    subject_prefix: Option<String>,
    stream: Option<RawStream>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Option<String>,
    max_age_seconds: Option<u64>,
    storage: Option<String>,
    replicas: Option<u32>,
    duplicate_window_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    outbox_retention_seconds: Option<u64>,
    unpublished_cap_without_nats: Option<u64>,
    relay_poll_interval_seconds: Option<u64>,
    backlog_log_interval_seconds: Option<u64>,
    relay_lease_ttl_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    lease_ttl_seconds: Option<u64>,
    lease_renew_seconds: Option<u64>,
    scan_interval_seconds: Option<u64>,
}

// === typed (validated) ===

/// The validated configuration of a rotator server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the gRPC server binds. Default `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Address of the admin HTTP listener (`/metrics`, `/livez`, `/readyz`); `None` when set to
    /// `"off"`. Default `127.0.0.1:9464`.
    pub admin_listen: Option<SocketAddr>,
    /// The file it was loaded from, re-read on SIGHUP; `None` for defaults and environment only.
    pub config_file: Option<PathBuf>,
    /// Directory of the embedded store. Default `./rotator-data`.
    pub data_dir: PathBuf,
    /// A PostgreSQL store shared by replicas (`postgres://…`, may hold a password, so an
    /// `env:`/`file:` reference is accepted); `None` keeps the embedded SQLite store.
    pub store_url: Option<SecretString>,
    /// Calls served at once; the next one gets `RESOURCE_EXHAUSTED`. Default 256.
    pub max_concurrent_calls: usize,
    /// Largest request or response message in bytes. Default 4 MiB.
    pub max_message_bytes: usize,
    /// How long in-flight calls may take to finish after SIGTERM. Default 30 s.
    pub shutdown_grace: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// Rotation types this server accepts; others are rejected before any backend.
    pub enabled_types: Vec<RotationType>,
    /// The Infisical upstream, when configured.
    pub infisical: Option<InfisicalConfig>,
    /// The NATS connection for events, when configured.
    pub nats: Option<NatsConfig>,
    /// The events outbox and relay.
    pub events: EventsConfig,
    /// Leases and scans of local rotation (`[local]`).
    pub local_timing: LocalTiming,
    /// Server TLS (mutual TLS with a client CA), when configured.
    pub tls: Option<TlsConfig>,
    /// Caller authentication and authorization.
    pub auth: AuthConfig,
    /// Outbound address policy for remote targets.
    pub network: NetworkConfig,
    /// Local connections and rotations (`[[connections]]`, `[[rotations]]`) and their key ring.
    pub local: registry::Registry,
    /// OpenTelemetry export, sampling and log level, from the standard `OTEL_*` variables and
    /// `RUST_LOG` (never from the file: those variables are the operator's interface).
    pub telemetry: crate::config::telemetry::TelemetrySettings,
}

/// How the events outbox and its relay behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// How long a delivered event stays in the outbox (for inspection) before it is deleted;
    /// zero deletes it at the next prune. Default 1 day. Since v0.1.
    pub outbox_retention: Duration,
    /// With no NATS configured, how many unpublished events the outbox keeps; older ones are
    /// deleted (counted in `rotator_events_discarded_total`). Zero records none. Default
    /// 10,000. With NATS configured it does not apply: events wait for NATS, never dropped.
    pub unpublished_cap_without_nats: u64,
    /// How often the relay looks for new events when nothing woke it. Default 1 s. Since v0.1.
    pub relay_poll_interval: Duration,
    /// How often the outbox depth and oldest age are logged. Default 60 s. Since v0.1.
    pub backlog_log_interval: Duration,
    /// How long the relay lease lasts past each renewal (every third of it). Replicas sharing a
    /// store publish through one relay at a time; a dead leader's relay is replaced within
    /// TTL + TTL/3. Default 15 s.
    pub relay_lease_ttl: Duration,
}

/// Leases and scans of local rotation: how fast a crashed replica's attempt is resumed by
/// another, against how often the store is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTiming {
    /// How long a rotation's lease lasts past each renewal or fenced write. Default 120 s.
    pub lease_ttl: Duration,
    /// How often a running attempt renews its lease. Under half the TTL. Default 30 s.
    pub lease_renew: Duration,
    /// How often the scheduler scans for due rotations and for open attempts whose lease
    /// expired. Default 30 s. A crashed replica's attempt is resumed within TTL + one scan.
    pub scan_interval: Duration,
}

impl Default for LocalTiming {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(120),
            lease_renew: Duration::from_secs(30),
            scan_interval: Duration::from_secs(30),
        }
    }
}

/// Bounds of the lease settings, in seconds.
const LEASE_TTL_BOUNDS: (u64, u64) = (3, 3600);

/// Unpublished events kept without NATS: a day of one call every ten seconds, a few MB.
const DEFAULT_UNPUBLISHED_CAP: u64 = 10_000;

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            outbox_retention: Duration::from_secs(24 * 3600),
            unpublished_cap_without_nats: DEFAULT_UNPUBLISHED_CAP,
            relay_poll_interval: Duration::from_secs(1),
            backlog_log_interval: Duration::from_secs(60),
            relay_lease_ttl: Duration::from_secs(15),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// How rotator reaches Infisical.
#[derive(Debug, Clone)]
pub struct InfisicalConfig {
    /// Base URL, e.g. `https://eu.infisical.com`.
    pub base_url: reqwest::Url,
    /// Machine-identity authentication.
    pub auth: InfisicalAuth,
    /// Extra CA certificate(s), PEM, trusted for the upstream.
    pub ca_pem: Option<Vec<u8>>,
    /// Sub-organization slug sent at login.
    pub organization_slug: Option<String>,
    /// Longest any one upstream call may take (the caller's deadline may cut it shorter).
    pub request_timeout: Duration,
}

/// Machine-identity authentication to Infisical.
#[derive(Debug, Clone)]
pub enum InfisicalAuth {
    /// Universal Auth: login with a client id and secret, renewed before expiry.
    UniversalAuth {
        /// The identity's client id.
        client_id: String,
        /// The identity's client secret.
        client_secret: SecretString,
    },
    /// A token created by Token Auth, sent as is.
    StaticToken(SecretString),
}

/// How rotator reaches NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// User and password authentication.
    pub user_password: Option<(String, SecretString)>,
    /// Token authentication.
    pub token: Option<SecretString>,
    /// A `.creds` file (JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// An nkey seed.
    pub nkey_seed: Option<SecretString>,
    /// Extra CA certificate file for TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Require TLS.
    pub tls_required: bool,
    /// Subject prefix; events go to `PREFIX.<type>.<outcome>`. Default `rotator.events`.
    pub subject_prefix: String,
    /// The JetStream stream that stores events.
    pub stream: StreamConfig,
}

/// The JetStream stream settings, applied by create-or-update at start-up.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Stream name. Default `ROTATOR_EVENTS`.
    pub name: String,
    /// How long events are kept. Default 30 days.
    pub max_age: Duration,
    /// `file` (default) or `memory`.
    pub memory_storage: bool,
    /// Replica count. Default 1.
    pub replicas: usize,
    /// Window in which a repeated `Nats-Msg-Id` is dropped. Default 2 minutes.
    pub duplicate_window: Duration,
}

// === impl Config ===

impl Config {
    /// Loads the configuration from an optional TOML file and the given environment.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its key.
    pub fn load(file: Option<&Path>, env: &Env) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    return Err(problem(
                        "config file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            },
            None => String::new(),
        };
        let mut config = Self::from_toml_str(&text, env)?;
        config.config_file = file.map(Path::to_path_buf);
        Ok(config)
    }

    /// Loads the configuration from TOML text and the given environment (what [`Config::load`]
    /// does after reading the file; also the entry point of the config fuzz target).
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its key.
    pub fn from_toml_str(text: &str, env: &Env) -> Result<Self, ConfigError> {
        let mut table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                let line = e
                    .span()
                    .map(|span| format!(" (line {})", schema::line_of(text, span.start)))
                    .unwrap_or_default();
                return Err(problem(
                    "config file",
                    format!("not valid TOML: {}{line}", e.message().trim_end()),
                ));
            }
        };
        let mut problems = unknown_variables(env);
        let mut from_env = HashMap::new();
        for (var, key) in ENV_KEYS {
            if let Some(value) = env.get(*var) {
                set_dotted(&mut table, key, env_value(key, value));
                from_env.insert(*key, *var);
            }
        }
        // serde stops at the first problem and quotes the value; the schema names every key.
        schema::check(&mut table, schema::ROOT, false, "", &mut problems);
        let checked: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        let local = registry::Registry::from_table(&mut table, env, &mut problems);
        let raw: RawConfig = match toml::Value::Table(table).try_into() {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(ConfigProblem {
                    key: "config".to_owned(),
                    reason: schema::describe_serde_error(e.message()),
                });
                RawConfig::default()
            }
        };
        let mut config = validate(raw, env, &mut problems);
        config.local = local;
        if config.infisical.is_none() {
            problems.extend(sinks::infisical_without_upstream(&config.local));
        }
        if problems.is_empty() {
            return Ok(config);
        }
        // Each key's line, read only now that a problem needs one: it is a second parse of the
        // whole file and a map of every key in it (with 10,000 rotations, 21 of the 92 MB that
        // loading the file allocated at its peak).
        let lines = schema::Lines::of(text);
        // A key removed for its type may come back as "missing" from a later stage: once is
        // enough.
        let first = checked.len();
        let mut index = 0;
        problems.retain(|p| {
            index += 1;
            index <= first
                || !checked.iter().any(|c| {
                    c == &p.key
                        || c.strip_prefix(p.key.as_str())
                            .is_some_and(|rest| rest.starts_with(['.', '[']))
                })
        });
        // The shape problems in file order (unknown variables first), then the rest as found.
        let shape = first.min(problems.len());
        problems[..shape].sort_by_key(|p| {
            from_env
                .contains_key(p.key.as_str())
                .then_some(0)
                .or_else(|| lines.find(&p.key))
                .unwrap_or(0)
        });
        for p in &mut problems {
            if let Some(var) = from_env.get(p.key.as_str()) {
                p.reason = format!("{} (from {var})", p.reason);
            } else if let Some(line) = lines.find(&p.key) {
                p.reason = format!("{} (line {line})", p.reason);
            }
        }
        Err(ConfigError(problems))
    }
}

/// Every `ROTATOR_*` variable that is neither a configuration key nor one of [`OTHER_VARS`],
/// naming the closest known variable: a typo must not silently leave a default in place.
fn unknown_variables(env: &Env) -> Vec<ConfigProblem> {
    let known = || {
        ENV_KEYS
            .iter()
            .map(|(var, _)| *var)
            .chain(OTHER_VARS.iter().map(|(var, _)| *var))
    };
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|var| var.starts_with("ROTATOR_") && !known().any(|k| k == var.as_str()))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|var| {
            let hint = known()
                .min_by_key(|k| schema::edit_distance(var, k))
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            ConfigProblem {
                key: var.clone(),
                reason: format!("is not a variable rotator reads{hint}"),
            }
        })
        .collect()
}

/// Every key the configuration file may hold (leaves, dotted; arrays of tables without an index,
/// e.g. `connections.host`), for documentation checks. Driver options of a connection
/// (`mysql_host_part`) are the drivers' and not listed.
pub fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    schema::leaf_paths(schema::ROOT, "", &mut keys);
    keys
}

fn problem(key: &str, reason: String) -> ConfigError {
    ConfigError(vec![ConfigProblem {
        key: key.to_owned(),
        reason,
    }])
}

/// Environment values are strings; typed keys get the TOML type they need.
fn env_value(key: &str, value: &str) -> toml::Value {
    let numeric = key.ends_with("_seconds")
        || key.ends_with("_calls")
        || key.ends_with("_bytes")
        || key.ends_with("replicas")
        || key == "events.unpublished_cap_without_nats";
    if numeric && let Ok(n) = value.trim().parse::<i64>() {
        return toml::Value::Integer(n);
    }
    if (key.ends_with("tls_required") || security::BOOL_KEYS.contains(&key))
        && let Ok(b) = value.trim().parse::<bool>()
    {
        return toml::Value::Boolean(b);
    }
    if key == "enabled_types" {
        let items = value
            .split(',')
            .map(|s| toml::Value::String(s.trim().to_owned()));
        return toml::Value::Array(items.collect());
    }
    toml::Value::String(value.to_owned())
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return;
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => current = t,
            _ => return,
        }
    }
}

/// Resolves `env:NAME` and `file:PATH` references of a secret option.
pub(crate) fn resolve_secret(
    key: &str,
    value: Option<String>,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SecretString> {
    let value = value?;
    let resolved = if let Some(name) = value.strip_prefix("env:") {
        match env.get(name) {
            Some(v) => v.clone(),
            None => {
                problems.push(ConfigProblem {
                    key: key.to_owned(),
                    reason: format!("refers to environment variable {name}, which is not set"),
                });
                return None;
            }
        }
    } else if let Some(path) = value.strip_prefix("file:") {
        match std::fs::read_to_string(path) {
            Ok(v) => v.trim_end_matches(['\n', '\r']).to_owned(),
            Err(e) => {
                problems.push(ConfigProblem {
                    key: key.to_owned(),
                    reason: format!("cannot read secret file {path}: {e}"),
                });
                return None;
            }
        }
    } else {
        value
    };
    if resolved.trim().is_empty() {
        problems.push(ConfigProblem {
            key: key.to_owned(),
            reason: "is empty".to_owned(),
        });
        return None;
    }
    Some(SecretString::new(resolved))
}

fn read_file(
    key: &str,
    path: Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Vec<u8>> {
    let path = path?;
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                reason: format!("cannot read {path}: {e}"),
            });
            None
        }
    }
}

fn validate(raw: RawConfig, env: &Env, problems: &mut Vec<ConfigProblem>) -> Config {
    let mut bad = |key: &str, reason: &str| {
        problems.push(ConfigProblem {
            key: key.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:50051");
    let listen = listen.parse().unwrap_or_else(|_| {
        bad(
            "listen",
            "must be an IP address and port, e.g. 127.0.0.1:50051",
        );
        SocketAddr::from(([127, 0, 0, 1], 50051))
    });
    let admin_listen = match raw.admin_listen.as_deref().map(str::trim) {
        Some("off") => None,
        other => match other.unwrap_or("127.0.0.1:9464").parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                bad(
                    "admin_listen",
                    "must be an IP address and port, e.g. 127.0.0.1:9464, or \"off\"",
                );
                None
            }
        },
    };
    let max_concurrent_calls = raw.max_concurrent_calls.unwrap_or(256);
    if max_concurrent_calls == 0 {
        bad("max_concurrent_calls", "must be at least 1");
    }
    let max_message_bytes = raw.max_message_bytes.unwrap_or(4 * 1024 * 1024);
    if max_message_bytes < 1024 {
        bad("max_message_bytes", "must be at least 1024");
    }
    let log_format = match raw.log_format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(_) => {
            bad("log_format", "must be \"json\" or \"pretty\"");
            LogFormat::Json
        }
    };
    let enabled_types = match raw.enabled_types {
        None => crate::rotation::TYPES
            .iter()
            .map(|t| t.rotation_type)
            .collect(),
        Some(list) => list
            .iter()
            .filter_map(|s| {
                let t = RotationType::parse(s);
                if t.is_none() {
                    bad("enabled_types", &format!("unknown rotation type {s:?}"));
                }
                t
            })
            .collect(),
    };
    let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| "./rotator-data".to_owned()));
    let store_url = resolve_secret("store_url", raw.store_url, env, problems).filter(|url| {
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.expose().starts_with(scheme));
        if !postgres {
            problems.push(ConfigProblem {
                key: "store_url".to_owned(),
                reason: "must be a PostgreSQL URL (postgres://user@host:port/database)".to_owned(),
            });
        }
        postgres
    });
    let infisical = raw
        .infisical
        .and_then(|i| validate_infisical(i, env, problems));
    let nats = raw.nats.and_then(|n| validate_nats(n, env, problems));
    let events = validate_events(raw.events.unwrap_or_default(), problems);
    let local_timing = validate_local_timing(raw.local.unwrap_or_default(), problems);
    let tls = raw.tls.and_then(|t| security::validate_tls(t, problems));
    let auth =
        security::validate_auth(raw.auth.unwrap_or_default(), listen, tls.as_ref(), problems);
    let network = security::validate_network(raw.network.unwrap_or_default());
    let telemetry = crate::config::telemetry::TelemetrySettings::from_env(env, problems);
    Config {
        listen,
        admin_listen,
        config_file: None,
        data_dir,
        store_url,
        max_concurrent_calls: max_concurrent_calls as usize,
        max_message_bytes: max_message_bytes as usize,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_seconds.unwrap_or(30)),
        log_format,
        enabled_types,
        infisical,
        nats,
        events,
        local_timing,
        tls,
        auth,
        network,
        local: registry::Registry::default(),
        telemetry,
    }
}

fn validate_events(raw: RawEvents, problems: &mut Vec<ConfigProblem>) -> EventsConfig {
    let defaults = EventsConfig::default();
    let mut at_least_one = |key: &str, value: Option<u64>, default: Duration| match value {
        None => default,
        Some(0) => {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                reason: "must be at least 1".to_owned(),
            });
            default
        }
        Some(seconds) => Duration::from_secs(seconds),
    };
    EventsConfig {
        outbox_retention: raw
            .outbox_retention_seconds
            .map_or(defaults.outbox_retention, Duration::from_secs),
        unpublished_cap_without_nats: raw
            .unpublished_cap_without_nats
            .unwrap_or(defaults.unpublished_cap_without_nats),
        relay_poll_interval: at_least_one(
            "events.relay_poll_interval_seconds",
            raw.relay_poll_interval_seconds,
            defaults.relay_poll_interval,
        ),
        backlog_log_interval: at_least_one(
            "events.backlog_log_interval_seconds",
            raw.backlog_log_interval_seconds,
            defaults.backlog_log_interval,
        ),
        relay_lease_ttl: lease_ttl(
            "events.relay_lease_ttl_seconds",
            raw.relay_lease_ttl_seconds,
            defaults.relay_lease_ttl,
            problems,
        ),
    }
}

/// A lease TTL within [`LEASE_TTL_BOUNDS`], else the default and a problem.
fn lease_ttl(
    key: &str,
    value: Option<u64>,
    default: Duration,
    problems: &mut Vec<ConfigProblem>,
) -> Duration {
    let (min, max) = LEASE_TTL_BOUNDS;
    match value {
        None => default,
        Some(seconds) if (min..=max).contains(&seconds) => Duration::from_secs(seconds),
        Some(_) => {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                reason: format!("must be between {min} and {max} seconds"),
            });
            default
        }
    }
}

fn validate_local_timing(raw: RawLocal, problems: &mut Vec<ConfigProblem>) -> LocalTiming {
    let defaults = LocalTiming::default();
    let lease_ttl = lease_ttl(
        "local.lease_ttl_seconds",
        raw.lease_ttl_seconds,
        defaults.lease_ttl,
        problems,
    );
    let lease_renew = match raw.lease_renew_seconds {
        // The default renewal follows a shorter TTL: a quarter of it.
        None => defaults.lease_renew.min(lease_ttl / 4),
        Some(seconds) if seconds >= 1 && Duration::from_secs(seconds) * 2 < lease_ttl => {
            Duration::from_secs(seconds)
        }
        Some(_) => {
            problems.push(ConfigProblem {
                key: "local.lease_renew_seconds".to_owned(),
                reason: "must be at least 1 and less than half of local.lease_ttl_seconds, so \
                         a renewal can fail once without losing the lease"
                    .to_owned(),
            });
            defaults.lease_renew.min(lease_ttl / 4)
        }
    };
    let scan_interval = match raw.scan_interval_seconds {
        None => defaults.scan_interval,
        Some(seconds @ 1..=86_400) => Duration::from_secs(seconds),
        Some(_) => {
            problems.push(ConfigProblem {
                key: "local.scan_interval_seconds".to_owned(),
                reason: "must be between 1 and 86400 seconds".to_owned(),
            });
            defaults.scan_interval
        }
    };
    LocalTiming {
        lease_ttl,
        lease_renew,
        scan_interval,
    }
}

fn validate_infisical(
    raw: RawInfisical,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<InfisicalConfig> {
    let url = raw.url?;
    let base_url = match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            problems.push(ConfigProblem {
                key: "infisical.url".into(),
                reason: "must be an http(s) URL, e.g. https://eu.infisical.com".into(),
            });
            return None;
        }
    };
    let client_secret = resolve_secret("infisical.client_secret", raw.client_secret, env, problems);
    let token = resolve_secret("infisical.token", raw.token, env, problems);
    let auth = match (raw.client_id, client_secret, token) {
        (Some(client_id), Some(client_secret), None) => InfisicalAuth::UniversalAuth {
            client_id,
            client_secret,
        },
        (None, None, Some(token)) => InfisicalAuth::StaticToken(token),
        (Some(_), None, None) => {
            problems.push(ConfigProblem {
                key: "infisical.client_secret".into(),
                reason: "is required with infisical.client_id".into(),
            });
            return None;
        }
        (None, Some(_), None) => {
            problems.push(ConfigProblem {
                key: "infisical.client_id".into(),
                reason: "is required with infisical.client_secret".into(),
            });
            return None;
        }
        (None, None, None) => {
            problems.push(ConfigProblem {
                key: "infisical".into(),
                reason: "needs client_id + client_secret (universal auth) or token".into(),
            });
            return None;
        }
        _ => {
            problems.push(ConfigProblem {
                key: "infisical.token".into(),
                reason: "give either token or client_id + client_secret, not both".into(),
            });
            return None;
        }
    };
    let ca_pem = read_file("infisical.ca_file", raw.ca_file, problems);
    if let Some(pem) = &ca_pem
        && reqwest::Certificate::from_pem_bundle(pem)
            .map(|c| c.is_empty())
            .unwrap_or(true)
    {
        problems.push(ConfigProblem {
            key: "infisical.ca_file".into(),
            reason: "holds no PEM certificate".into(),
        });
    }
    let timeout = raw.request_timeout_seconds.unwrap_or(120);
    if timeout == 0 {
        problems.push(ConfigProblem {
            key: "infisical.request_timeout_seconds".into(),
            reason: "must be at least 1".into(),
        });
    }
    Some(InfisicalConfig {
        base_url,
        auth,
        ca_pem,
        organization_slug: raw.organization_slug,
        request_timeout: Duration::from_secs(timeout.max(1)),
    })
}

fn validate_nats(raw: RawNats, env: &Env, problems: &mut Vec<ConfigProblem>) -> Option<NatsConfig> {
    let url = raw.url?;
    if url.trim().is_empty() {
        problems.push(ConfigProblem {
            key: "nats.url".into(),
            reason: "is empty".into(),
        });
    }
    let password = resolve_secret("nats.password", raw.password, env, problems);
    let user_password = match (raw.user, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            problems.push(ConfigProblem {
                key: "nats.user".into(),
                reason: "nats.user and nats.password go together".into(),
            });
            None
        }
    };
    let stream = raw.stream.unwrap_or_default();
    let memory_storage = match stream.storage.as_deref() {
        None | Some("file") => false,
        Some("memory") => true,
        Some(_) => {
            problems.push(ConfigProblem {
                key: "nats.stream.storage".into(),
                reason: "must be \"file\" or \"memory\"".into(),
            });
            false
        }
    };
    let subject_prefix = raw
        .subject_prefix
        .unwrap_or_else(|| "rotator.events".to_owned());
    if subject_prefix.is_empty()
        || subject_prefix.contains(['*', '>', ' '])
        || subject_prefix.ends_with('.')
    {
        problems.push(ConfigProblem {
            key: "nats.subject_prefix".into(),
            reason: "must be dot-separated tokens without wildcards or spaces".into(),
        });
    }
    Some(NatsConfig {
        url,
        user_password,
        token: resolve_secret("nats.token", raw.token, env, problems),
        creds_file: raw.creds_file.map(PathBuf::from),
        nkey_seed: resolve_secret("nats.nkey_seed", raw.nkey_seed, env, problems),
        tls_ca_file: raw.tls_ca_file.map(PathBuf::from),
        tls_required: raw.tls_required.unwrap_or(false),
        subject_prefix,
        stream: StreamConfig {
            name: stream.name.unwrap_or_else(|| "ROTATOR_EVENTS".to_owned()),
            max_age: Duration::from_secs(stream.max_age_seconds.unwrap_or(30 * 24 * 3600)),
            memory_storage,
            replicas: stream.replicas.unwrap_or(1).max(1) as usize,
            duplicate_window: Duration::from_secs(stream.duplicate_window_seconds.unwrap_or(120)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn embedded_defaults_need_nothing() {
        let config = Config::load(None, &Env::new()).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert!(config.infisical.is_none());
        assert_eq!(config.enabled_types.len(), 14);
        assert_eq!(
            config.admin_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        assert!(config.telemetry.traces.is_none());
    }

    #[test]
    fn the_admin_listener_can_be_moved_or_switched_off() {
        let config = Config::load(None, &env(&[("ROTATOR_ADMIN_LISTEN", "off")])).expect("valid");
        assert!(config.admin_listen.is_none());
        let config =
            Config::load(None, &env(&[("ROTATOR_ADMIN_LISTEN", "0.0.0.0:19464")])).expect("valid");
        assert_eq!(config.admin_listen.map(|a| a.port()), Some(19464));
        let err = Config::load(None, &env(&[("ROTATOR_ADMIN_LISTEN", "metrics-port")]))
            .expect_err("invalid");
        assert_eq!(err.0[0].key, "admin_listen");
    }

    #[test]
    fn otel_variables_are_validated_with_the_rest() {
        let err = Config::load(
            None,
            &env(&[
                ("ROTATOR_LISTEN", "nowhere"),
                ("OTEL_TRACES_SAMPLER", "sometimes"),
            ]),
        )
        .expect_err("invalid");
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["listen", "OTEL_TRACES_SAMPLER"]);
    }

    #[test]
    fn env_sets_infisical_with_a_secret_reference() {
        let config = Config::load(
            None,
            &env(&[
                ("ROTATOR_INFISICAL_URL", "http://127.0.0.1:8080"),
                ("ROTATOR_INFISICAL_CLIENT_ID", "id-1"),
                ("ROTATOR_INFISICAL_CLIENT_SECRET", "env:MY_SECRET"),
                ("MY_SECRET", "s3cr3t-value"),
            ]),
        )
        .expect("valid");
        let Some(InfisicalConfig {
            auth: InfisicalAuth::UniversalAuth { client_secret, .. },
            ..
        }) = config.infisical
        else {
            panic!("universal auth expected");
        };
        assert_eq!(client_secret.expose(), "s3cr3t-value");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_never_the_secret() {
        let err = Config::load(
            None,
            &env(&[
                ("ROTATOR_LISTEN", "nowhere"),
                ("ROTATOR_INFISICAL_URL", "ftp://x"),
                ("ROTATOR_ENABLED_TYPES", "postgres-credentials,bogus"),
            ]),
        )
        .expect_err("invalid");
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["listen", "enabled_types", "infisical.url"]);
        let err = Config::load(
            None,
            &env(&[
                ("ROTATOR_INFISICAL_URL", "http://x"),
                ("ROTATOR_INFISICAL_CLIENT_SECRET", "topsecret-xyz"),
            ]),
        )
        .expect_err("no client id");
        assert!(!err.to_string().contains("topsecret-xyz"));
        assert_eq!(err.0[0].key, "infisical.client_id");
    }

    #[test]
    fn events_settings_have_defaults_and_come_from_env() {
        let config = Config::load(None, &Env::new()).expect("defaults");
        assert_eq!(config.events, EventsConfig::default());
        let config = Config::load(
            None,
            &env(&[
                ("ROTATOR_EVENTS_OUTBOX_RETENTION_SECONDS", "0"),
                ("ROTATOR_EVENTS_RELAY_POLL_INTERVAL_SECONDS", "5"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.events.outbox_retention, Duration::ZERO);
        assert_eq!(config.events.relay_poll_interval, Duration::from_secs(5));
        let err = Config::load(
            None,
            &env(&[("ROTATOR_EVENTS_RELAY_POLL_INTERVAL_SECONDS", "0")]),
        )
        .expect_err("a zero poll interval");
        assert_eq!(err.0[0].key, "events.relay_poll_interval_seconds");
    }

    #[test]
    fn lease_settings_have_defaults_bounds_and_come_from_env() {
        let config = Config::load(None, &Env::new()).expect("defaults");
        assert_eq!(config.local_timing, LocalTiming::default());
        assert_eq!(config.events.relay_lease_ttl, Duration::from_secs(15));
        let config = Config::load(
            None,
            &env(&[
                ("ROTATOR_LOCAL_LEASE_TTL_SECONDS", "8"),
                ("ROTATOR_LOCAL_SCAN_INTERVAL_SECONDS", "2"),
                ("ROTATOR_EVENTS_RELAY_LEASE_TTL_SECONDS", "6"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            config.local_timing,
            LocalTiming {
                lease_ttl: Duration::from_secs(8),
                lease_renew: Duration::from_secs(2),
                scan_interval: Duration::from_secs(2),
            },
            "the renewal follows a short TTL"
        );
        assert_eq!(config.events.relay_lease_ttl, Duration::from_secs(6));
        let keys = |vars: &[(&str, &str)]| -> Vec<String> {
            Config::load(None, &env(vars))
                .expect_err("invalid")
                .0
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        assert_eq!(
            keys(&[
                ("ROTATOR_LOCAL_LEASE_TTL_SECONDS", "10"),
                ("ROTATOR_LOCAL_LEASE_RENEW_SECONDS", "5"),
            ]),
            ["local.lease_renew_seconds"],
            "a renewal of half the TTL"
        );
        assert_eq!(
            keys(&[
                ("ROTATOR_LOCAL_LEASE_TTL_SECONDS", "2"),
                ("ROTATOR_LOCAL_SCAN_INTERVAL_SECONDS", "0"),
                ("ROTATOR_EVENTS_RELAY_LEASE_TTL_SECONDS", "7200"),
            ]),
            [
                "events.relay_lease_ttl_seconds",
                "local.lease_ttl_seconds",
                "local.scan_interval_seconds"
            ]
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rotator.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_port = 5\n").expect("write");
        let err = Config::load(Some(&path), &Env::new()).expect_err("unknown key");
        assert!(err.to_string().contains("listen_port"));
    }

    #[test]
    fn type_errors_from_file_and_env_are_all_reported_by_key_and_line_without_values() {
        let text = "listen = \"127.0.0.1:50051\"\nmax_concurrent_calls = \"lots-of-calls\"\n\n[nats]\nurl = \"nats://x\"\ntls_required = \"very-much\"\n\n[[connections]]\nname = \"pg\"\napp = \"postgres\"\nhost = \"db\"\nport = \"five-four-three-two\"\nusername = \"rotator\"\n";
        let err = Config::from_toml_str(text, &env(&[("ROTATOR_MAX_MESSAGE_BYTES", "abc-bytes")]))
            .expect_err("mistyped");
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "max_message_bytes",
                "max_concurrent_calls",
                "nats.tls_required",
                "connections[0].port",
            ],
            "{err}"
        );
        let reasons: Vec<_> = err.0.iter().map(|p| p.reason.as_str()).collect();
        assert!(
            reasons[0].ends_with("(from ROTATOR_MAX_MESSAGE_BYTES)"),
            "{err}"
        );
        assert!(reasons[1].ends_with("(line 2)"), "{err}");
        assert!(reasons[2].ends_with("(line 6)"), "{err}");
        assert!(reasons[3].ends_with("(line 12)"), "{err}");
        let shown = err.to_string();
        for value in ["lots-of-calls", "abc-bytes", "very-much", "five-four"] {
            assert!(!shown.contains(value), "{value} echoed: {shown}");
        }
    }

    #[test]
    fn a_mistyped_key_does_not_hide_later_validation_problems() {
        let err = Config::from_toml_str(
            "max_concurrent_calls = \"x\"\nlisten = \"nowhere\"\nlog_formt = \"json\"\n",
            &Env::new(),
        )
        .expect_err("invalid");
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["max_concurrent_calls", "log_formt", "listen"],
            "{err}"
        );
        assert!(
            err.0[1].reason.contains("did you mean `log_format`?"),
            "{err}"
        );
    }

    #[test]
    fn invalid_toml_names_its_line() {
        let err = Config::from_toml_str(
            "listen = \"127.0.0.1:1\"\nproject_id = \"p\"; environment = \"s3cr3t\"\n",
            &Env::new(),
        )
        .expect_err("not TOML");
        assert_eq!(err.0[0].key, "config file");
        assert!(err.0[0].reason.ends_with("(line 2)"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn an_unknown_rotator_variable_names_the_closest_known_one() {
        let err = Config::from_toml_str(
            "",
            &env(&[
                ("ROTATOR_MAX_MESAGE_BYTES", "1024"),
                ("ROTATOR_NATS__URL", "nats://x"),
            ]),
        )
        .expect_err("unknown variables");
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["ROTATOR_MAX_MESAGE_BYTES", "ROTATOR_NATS__URL"]);
        assert!(
            err.0[0].reason.contains("ROTATOR_MAX_MESSAGE_BYTES"),
            "{err}"
        );
        assert!(err.0[1].reason.contains("ROTATOR_NATS_URL"), "{err}");
        assert!(!err.to_string().contains("nats://x"));
        // Variables read outside the configuration keys are known.
        let others: Vec<(&str, &str)> = OTHER_VARS.iter().map(|(v, _)| (*v, "x")).collect();
        let mut others = env(&others);
        others.remove("ROTATOR_ENCRYPTION_KEY");
        others.remove("ROTATOR_ENCRYPTION_KEY_FILE");
        Config::from_toml_str("", &others).expect("known variables");
    }

    /// Every `ROTATOR_*` name in the sources is a variable the loader knows, so setting one
    /// is never refused as unknown (a new variable must be added to `ENV_KEYS` or `OTHER_VARS`).
    #[test]
    fn every_rotator_variable_in_the_sources_is_known() {
        // Names that look like variables but are not: the default stream name, the typo
        // `tests/cli.rs` makes on purpose, and what the exec sink sets for its child (rotator
        // never reads them).
        const NOT_VARIABLES: &[&str] = &[
            "ROTATOR_EVENTS",
            "ROTATOR_LISTN",
            "ROTATOR_ROTATION_ID",
            "ROTATOR_VERSION",
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = ["src", "tests", "benches", "testkit/src"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    // the loader itself, whose tests spell unknown variables on purpose
                    && !path.ends_with("src/config.rs")
                    && !path.ends_with("src/config/schema.rs")
                {
                    files.push(path);
                }
            }
        }
        assert!(
            files.len() > 20,
            "sources not found under {}",
            root.display()
        );
        let mut unknown = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (at, _) in text.match_indices("\"ROTATOR_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let closed = text[at + 1 + name.len()..].starts_with('"');
                let known = ENV_KEYS.iter().any(|(v, _)| *v == name)
                    || OTHER_VARS.iter().any(|(v, _)| *v == name)
                    || NOT_VARIABLES.contains(&name.as_str());
                if closed && !known {
                    unknown.push(format!("{name} in {}", file.display()));
                }
            }
        }
        assert!(unknown.is_empty(), "unknown variables: {unknown:?}");
    }
}
