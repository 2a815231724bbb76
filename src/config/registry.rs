//! The local registry: the connections and rotations this server rotates itself, declared in the
//! configuration file as `[[connections]]` and `[[rotations]]`, plus the credentials key ring.
//!
//! This is the file's grammar only. What an `app` means (its default port, its driver-specific
//! connection options, the rotation types it serves) is each driver's to say: the local backend
//! checks a registry against the drivers' descriptors before it serves it, naming the same
//! config keys (`connections[0].app`, `rotations[2].type`) as the problems found here.
//!
//! Parameters and secrets mappings use Infisical's camelCase field names and are read with the
//! same per-type serde derives as a forwarded rotation, so a rotation moves between Infisical and
//! the local registry without rewriting its parameters.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use uuid::Uuid;

use crate::config::sinks::SinkSpec;
use crate::config::{ConfigProblem, Env};
use crate::crypto::KeyRing;
use crate::proto::{RotationType, rotation_parameters, secrets_mapping};
use crate::secret::SecretString;

/// The environment variables holding the credentials-encryption keys.
pub const ENCRYPTION_KEY_VAR: &str = "ROTATOR_ENCRYPTION_KEY";
/// A file holding the keys, comma- or newline-separated.
pub const ENCRYPTION_KEY_FILE_VAR: &str = "ROTATOR_ENCRYPTION_KEY_FILE";

/// One declared connection.
#[derive(Debug, Clone)]
pub struct LocalConnection {
    /// Its name; rotations refer to it.
    pub name: String,
    /// Where it is declared, e.g. `connections[0]`, for problems found later.
    pub key: String,
    /// A stable id derived from the name (Infisical's `connectionId` has this place).
    pub id: Uuid,
    /// The app, as Infisical names it in `connection.app` (`postgres`, `mysql`, `redis`, ...).
    pub app: String,
    /// How to reach and log in to the target as its admin; the port is the app's default when
    /// absent.
    pub target: TargetSpec,
    /// Every other key of the connection's table: its driver's options (e.g. MySQL's
    /// `mysql_host_part`), checked by that driver.
    pub options: toml::Table,
    /// Rotations run at once against this connection, manual and scheduled together; more
    /// wait for a slot. Default [`DEFAULT_MAX_PARALLEL`].
    pub max_parallel_rotations: usize,
}

/// Rotations at once per connection unless `max_parallel_rotations` says otherwise: enough to
/// overlap network waits, few enough that no database sees a burst of sessions.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// How to reach and log in to a target as its admin ("rotator") user, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// Host name or IP address.
    pub host: String,
    /// TCP port; the app's default when absent.
    pub port: Option<u16>,
    /// The database to connect to (empty for none).
    pub database: String,
    /// The admin login, allowed to change the target users' passwords.
    pub admin_username: String,
    /// The admin password (empty for none).
    pub admin_password: SecretString,
    /// Transport security.
    pub tls: TlsConfig,
}

/// Transport security for a target connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Whether and how strictly TLS is used.
    pub mode: TlsMode,
    /// A CA certificate (PEM) to trust instead of the system roots; empty counts as absent.
    pub ca_pem: Option<String>,
}

/// TLS modes, after PostgreSQL's `sslmode` (upstream's `sslEnabled` / `sslRejectUnauthorized`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS (`sslEnabled: false`). Passwords then cross the network in the clear for MySQL
    /// and Redis, so this must be chosen explicitly.
    Disable,
    /// TLS without certificate checks (`sslRejectUnauthorized: false`).
    Require,
    /// TLS, certificate chain and host name checked (`sslRejectUnauthorized: true`).
    #[default]
    VerifyFull,
}

/// One declared rotation.
///
/// With 10,000 of them registered each byte here is 10 KB of the server's memory, so what few
/// rotations declare sits behind one box ([`RotationExtras`]) and the place in the file is a
/// number ([`LocalRotation::key`]).
#[derive(Debug, Clone)]
pub struct LocalRotation {
    /// Its id.
    pub id: Uuid,
    /// Its place in `[[rotations]]`.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its type.
    pub rotation_type: RotationType,
    /// The name of its connection.
    pub connection: String,
    /// The type's parameters.
    pub parameters: rotation_parameters::Kind,
    /// The type's secrets mapping.
    pub secrets_mapping: secrets_mapping::Kind,
    /// Days between rotations.
    pub interval_days: u32,
    /// UTC time of day (hours, minutes).
    pub rotate_at: (u32, u32),
    /// Whether the scheduler rotates it.
    pub auto_rotation: bool,
    /// Labels, so the answer has the same shape as a forwarded one.
    pub project_id: String,
    /// Environment slug label.
    pub environment: String,
    /// Folder path label.
    pub folder_path: String,
    /// What it declares beyond the above; `None` when it declares none of it.
    pub extras: Option<Box<RotationExtras>>,
}

/// What a rotation may declare and most do not.
#[derive(Debug, Clone, Default)]
pub struct RotationExtras {
    /// Free text.
    pub description: Option<String>,
    /// The target's password before rotator first changes it (`temporary_parameters.password`,
    /// as Infisical names it): what a driver that logs in as the target (`login-as-target`,
    /// `target-principal`) uses until rotator stores a credential of its own.
    pub initial_password: Option<SecretString>,
    /// Where each committed credential's mapped secrets go (docs/delivery.md).
    pub sinks: Vec<SinkSpec>,
    /// Consumers that must confirm the committed version before the next rotation replaces a
    /// credential (docs/delivery.md, "Confirmed handover"); empty: no handover.
    pub consumers: Vec<String>,
    /// How long after a commit the next rotation waits for the consumers' confirmations;
    /// [`DEFAULT_HANDOVER_GRACE`] when not set.
    pub handover_grace: Option<std::time::Duration>,
}

// === impl LocalRotation ===

impl LocalRotation {
    /// Where it is declared, e.g. `rotations[2]`, for problems found later.
    pub fn key(&self) -> String {
        format!("rotations[{}]", self.index)
    }

    /// Free text.
    pub fn description(&self) -> Option<&str> {
        self.extras.as_ref()?.description.as_deref()
    }

    /// See [`RotationExtras::initial_password`].
    pub fn initial_password(&self) -> Option<&SecretString> {
        self.extras.as_ref()?.initial_password.as_ref()
    }

    /// See [`RotationExtras::sinks`].
    pub fn sinks(&self) -> &[SinkSpec] {
        self.extras.as_ref().map_or(&[], |e| &e.sinks)
    }

    /// See [`RotationExtras::consumers`].
    pub fn consumers(&self) -> &[String] {
        self.extras.as_ref().map_or(&[], |e| &e.consumers)
    }

    /// See [`RotationExtras::handover_grace`].
    pub fn handover_grace(&self) -> std::time::Duration {
        self.extras
            .as_ref()
            .and_then(|e| e.handover_grace)
            .unwrap_or(DEFAULT_HANDOVER_GRACE)
    }
}

/// Every local connection and rotation, and the key ring that seals their credentials.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Connections by name.
    pub connections: HashMap<String, LocalConnection>,
    /// Rotations in declaration order.
    pub rotations: Vec<LocalRotation>,
    /// The key ring; present whenever there is a rotation.
    pub keys: Option<KeyRing>,
    /// `(id, index in rotations)` sorted by id, built at the first lookup: every call and
    /// every due rotation looks its rotation up, and a scan of 10,000 entries of a few hundred
    /// bytes each is a walk through megabytes.
    by_id: IdIndex,
}

/// [`Registry::rotation`]'s index, for a registry no longer changed once looked up (a reload
/// builds a new one, and a clone starts without one). A lookup that sees the index stale (a
/// different number of rotations, or another rotation at the indexed place) searches the
/// rotations themselves; a rotation put in place of another after the first lookup is not
/// found, as nothing in the service does that.
#[derive(Debug, Default)]
struct IdIndex(OnceLock<Box<[(Uuid, u32)]>>);

impl Clone for IdIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// The keys every connection has; any other key is its driver's option.
#[derive(Deserialize)]
struct RawConnection {
    name: String,
    app: String,
    host: String,
    port: Option<u16>,
    #[serde(default)]
    database: String,
    username: String,
    password: Option<String>,
    tls: Option<String>,
    ca_file: Option<String>,
    max_parallel_rotations: Option<usize>,
    #[serde(flatten)]
    options: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    id: String,
    name: String,
    #[serde(rename = "type")]
    rotation_type: String,
    connection: String,
    parameters: toml::Value,
    secrets_mapping: toml::Value,
    rotation_interval_days: Option<u32>,
    rotate_at_utc: Option<String>,
    auto_rotation: Option<bool>,
    project_id: Option<String>,
    environment: Option<String>,
    folder_path: Option<String>,
    description: Option<String>,
    temporary_parameters: Option<RawTemporaryParameters>,
    #[serde(default)]
    sinks: Vec<toml::Value>,
    #[serde(default)]
    consumers: Vec<String>,
    handover_grace_seconds: Option<u64>,
}

/// Create-only parameters, as Infisical names them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemporaryParameters {
    /// A reference (`env:NAME`, `file:PATH`) to the target's current password.
    password: Option<String>,
}

// === impl Registry ===

impl Registry {
    /// Reads `[[connections]]` and `[[rotations]]` (removed from `table` so the rest of the
    /// configuration is read as before) and the keys from `env`. Problems go to `problems`.
    pub fn from_table(
        table: &mut toml::Table,
        env: &Env,
        problems: &mut Vec<ConfigProblem>,
    ) -> Self {
        let raw_connections = table.remove("connections");
        let raw_rotations = table.remove("rotations");
        let mut registry = Self::default();
        for (i, value) in array(raw_connections, "connections", problems)
            .into_iter()
            .enumerate()
        {
            let key = format!("connections[{i}]");
            let raw: RawConnection = match value.try_into() {
                Ok(r) => r,
                Err(e) => {
                    push(
                        problems,
                        &key,
                        super::schema::describe_serde_error(e.message()),
                    );
                    continue;
                }
            };
            if let Some(c) = connection(raw, key.clone(), env, problems) {
                if registry.connections.contains_key(&c.name) {
                    push(
                        problems,
                        &key,
                        format!("duplicate connection name {:?}", c.name),
                    );
                } else {
                    registry.connections.insert(c.name.clone(), c);
                }
            }
        }
        for (i, value) in array(raw_rotations, "rotations", problems)
            .into_iter()
            .enumerate()
        {
            let key = format!("rotations[{i}]");
            let Ok(index) = u32::try_from(i) else {
                push(
                    problems,
                    &key,
                    "more rotations than one server takes".into(),
                );
                break;
            };
            let raw: RawRotation = match value.try_into() {
                Ok(r) => r,
                Err(e) => {
                    push(
                        problems,
                        &key,
                        super::schema::describe_serde_error(e.message()),
                    );
                    continue;
                }
            };
            if let Some(r) = rotation(raw, (index, &key), &registry.connections, env, problems) {
                registry.rotations.push(r);
            }
        }
        registry.duplicates(problems);
        if !registry.rotations.is_empty() {
            registry.keys = keys(env, problems);
        }
        // Kept for the server's life: without this, 10,000 rotations keep room for 16,384
        // (each entry is a few hundred bytes).
        registry.rotations.shrink_to_fit();
        registry
    }

    /// The rotation with this id.
    pub fn rotation(&self, id: Uuid) -> Option<&LocalRotation> {
        self.rotations.get(self.position(id)?)
    }

    /// The index in [`Registry::rotations`] of the rotation with this id.
    pub fn position(&self, id: Uuid) -> Option<usize> {
        let by_id = self.by_id.0.get_or_init(|| {
            let mut by_id: Vec<(Uuid, u32)> = self
                .rotations
                .iter()
                .zip(0..)
                .map(|(rotation, index)| (rotation.id, index))
                .collect();
            by_id.sort_unstable();
            by_id.into_boxed_slice()
        });
        if by_id.len() == self.rotations.len() {
            let at = by_id.binary_search_by_key(&id, |(id, _)| *id);
            let indexed = at.ok().and_then(|at| by_id.get(at)).and_then(|(_, index)| {
                let index = usize::try_from(*index).ok()?;
                Some((index, self.rotations.get(index)?))
            });
            match indexed {
                Some((index, rotation)) if rotation.id == id => return Some(index),
                None if at.is_err() => return None,
                _ => {}
            }
        }
        self.rotations.iter().position(|r| r.id == id)
    }

    /// A problem for each rotation whose id or name an earlier one already has. Sorted once
    /// instead of each rotation compared with every earlier one: with 10,000 rotations that
    /// was 50 million comparisons at every start.
    fn duplicates(&self, problems: &mut Vec<ConfigProblem>) {
        let mut ids: Vec<(Uuid, usize)> = self.rotations.iter().map(|r| r.id).zip(0..).collect();
        let mut names: Vec<(&str, usize)> = self
            .rotations
            .iter()
            .map(|r| r.name.as_str())
            .zip(0..)
            .collect();
        ids.sort_unstable();
        names.sort_unstable();
        for (index, what) in later_duplicates(&ids)
            .map(|i| (i, "id"))
            .chain(later_duplicates(&names).map(|i| (i, "name")))
        {
            if let Some(rotation) = self.rotations.get(index) {
                push(
                    problems,
                    &format!("{}.{what}", rotation.key()),
                    format!("duplicate rotation {what}"),
                );
            }
        }
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.rotations.is_empty()
    }
}

/// Of `(value, index)` pairs sorted by value, the index of each pair whose value equals the
/// one before it: the later declaration, as equal values sort by index.
fn later_duplicates<T: PartialEq>(sorted: &[(T, usize)]) -> impl Iterator<Item = usize> + '_ {
    sorted.windows(2).filter_map(|pair| match pair {
        [(a, _), (b, later)] if a == b => Some(*later),
        _ => None,
    })
}

fn push(problems: &mut Vec<ConfigProblem>, key: &str, reason: String) {
    problems.push(ConfigProblem {
        key: key.to_owned(),
        reason,
    });
}

fn array(
    value: Option<toml::Value>,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<toml::Value> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            push(problems, key, "must be an array of tables ([[...]])".into());
            Vec::new()
        }
    }
}

fn connection(
    raw: RawConnection,
    key: String,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<LocalConnection> {
    let before = problems.len();
    if raw.app.trim().is_empty() {
        push(problems, &format!("{key}.app"), "is empty".into());
    }
    if raw.name.trim().is_empty() {
        push(problems, &format!("{key}.name"), "is empty".into());
    }
    if raw.host.trim().is_empty() {
        push(problems, &format!("{key}.host"), "is empty".into());
    }
    let mode = match raw.tls.as_deref() {
        None | Some("verify-full") => TlsMode::VerifyFull,
        Some("require") => TlsMode::Require,
        Some("disable") => TlsMode::Disable,
        Some(_) => {
            push(
                problems,
                &format!("{key}.tls"),
                "must be disable, require or verify-full".into(),
            );
            TlsMode::VerifyFull
        }
    };
    let ca_pem = raw.ca_file.as_ref().and_then(|path| {
        std::fs::read_to_string(path)
            .map_err(|e| {
                push(
                    problems,
                    &format!("{key}.ca_file"),
                    format!("cannot read {path}: {e}"),
                )
            })
            .ok()
    });
    let password = raw
        .password
        .and_then(|r| secret_reference(&format!("{key}.password"), r, env, problems))
        .unwrap_or_else(|| SecretString::new(String::new()));
    let max_parallel_rotations = raw.max_parallel_rotations.unwrap_or(DEFAULT_MAX_PARALLEL);
    if !(1..=256).contains(&max_parallel_rotations) {
        push(
            problems,
            &format!("{key}.max_parallel_rotations"),
            "must be between 1 and 256".into(),
        );
    }
    if problems.len() > before {
        return None;
    }
    let id = derived_id(&raw.name);
    Some(LocalConnection {
        id,
        key,
        app: raw.app,
        target: TargetSpec {
            host: raw.host,
            port: raw.port,
            database: raw.database,
            admin_username: raw.username,
            admin_password: password,
            tls: TlsConfig { mode, ca_pem },
        },
        options: raw.options,
        max_parallel_rotations,
        name: raw.name,
    })
}

/// Resolves a secret given by reference (`env:NAME`, `file:PATH`); a literal value is a
/// problem, named by `key` and never shown.
pub(super) fn secret_reference(
    key: &str,
    reference: String,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SecretString> {
    if !(reference.starts_with("env:") || reference.starts_with("file:")) {
        push(
            problems,
            key,
            "must be a reference, env:NAME or file:PATH, never the password itself".into(),
        );
        return None;
    }
    crate::config::resolve_secret(key, Some(reference), env, problems)
}

/// A stable id from a connection name: the first 16 bytes of SHA-256, as a UUID (v8 layout).
fn derived_id(name: &str) -> Uuid {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("rotator/connection/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn rotation(
    raw: RawRotation,
    (index, key): (u32, &str),
    connections: &HashMap<String, LocalConnection>,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Option<LocalRotation> {
    let before = problems.len();
    let id = Uuid::parse_str(&raw.id)
        .map_err(|_| push(problems, &format!("{key}.id"), "must be a UUID".into()))
        .ok();
    let rotation_type = RotationType::parse(&raw.rotation_type);
    if rotation_type.is_none() {
        push(
            problems,
            &format!("{key}.type"),
            "is not a rotation type (e.g. postgres-credentials)".into(),
        );
    }
    if !connections.contains_key(&raw.connection) {
        push(
            problems,
            &format!("{key}.connection"),
            format!("no connection named {:?}", raw.connection),
        );
    }
    let interval_days = raw.rotation_interval_days.unwrap_or(30);
    if interval_days == 0 {
        push(
            problems,
            &format!("{key}.rotation_interval_days"),
            "must be at least 1".into(),
        );
    }
    let rotate_at = match raw.rotate_at_utc.as_deref() {
        None => (0, 0),
        Some(text) => parse_hhmm(text).unwrap_or_else(|| {
            push(
                problems,
                &format!("{key}.rotate_at_utc"),
                "must be \"HH:MM\" (UTC)".into(),
            );
            (0, 0)
        }),
    };
    let typed = rotation_type.and_then(|t| {
        let parameters = json_of(raw.parameters.clone())
            .and_then(|v| crate::rotation::json::parameters_from_json(t, v))
            .map_err(|e| {
                push(
                    problems,
                    &format!("{key}.parameters"),
                    super::schema::describe_serde_error(&e.to_string()),
                )
            })
            .ok();
        let mapping = json_of(raw.secrets_mapping.clone())
            .and_then(|v| crate::rotation::json::mapping_from_json(t, v))
            .map_err(|e| {
                push(
                    problems,
                    &format!("{key}.secrets_mapping"),
                    super::schema::describe_serde_error(&e.to_string()),
                )
            })
            .ok();
        Some((t, parameters?, mapping?))
    });
    let (rotation_type, parameters, secrets_mapping) = typed?;
    let initial_password = raw
        .temporary_parameters
        .and_then(|t| t.password)
        .and_then(|r| {
            secret_reference(
                &format!("{key}.temporary_parameters.password"),
                r,
                env,
                problems,
            )
        });
    let mapped = crate::rotation::json::mapped_names(&secrets_mapping);
    let sinks = super::sinks::read(raw.sinks, key, &mapped, env, problems);
    let consumers = consumers(raw.consumers, key, problems);
    let handover_grace = handover_grace(raw.handover_grace_seconds, interval_days, key, problems);
    if problems.len() > before {
        return None;
    }
    let extras = RotationExtras {
        description: raw.description,
        initial_password,
        sinks,
        consumers,
        handover_grace,
    };
    let declares_extras = extras.description.is_some()
        || extras.initial_password.is_some()
        || !extras.sinks.is_empty()
        || !extras.consumers.is_empty()
        || extras.handover_grace.is_some();
    Some(LocalRotation {
        id: id?,
        index,
        name: raw.name,
        rotation_type,
        connection: raw.connection,
        parameters,
        secrets_mapping,
        interval_days,
        rotate_at,
        auto_rotation: raw.auto_rotation.unwrap_or(true),
        project_id: raw.project_id.unwrap_or_default(),
        environment: raw.environment.unwrap_or_default(),
        folder_path: raw.folder_path.unwrap_or_else(|| "/".to_owned()),
        extras: declares_extras.then(|| Box::new(extras)),
    })
}

/// The longest consumer name.
pub const MAX_CONSUMER_LEN: usize = 64;

/// The handover grace when `handover_grace_seconds` is not set.
pub const DEFAULT_HANDOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether `name` is a consumer name: 1–64 characters of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit (the API checks a confirming consumer's name the same way).
pub fn is_consumer_name(name: &str) -> bool {
    name.len() <= MAX_CONSUMER_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn consumers(raw: Vec<String>, key: &str, problems: &mut Vec<ConfigProblem>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    for (i, name) in raw.iter().enumerate() {
        if !is_consumer_name(name) {
            push(
                problems,
                &format!("{key}.consumers[{i}]"),
                "must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                    .into(),
            );
        } else if !seen.insert(name.as_str()) {
            push(
                problems,
                &format!("{key}.consumers[{i}]"),
                "names a consumer twice".into(),
            );
        }
    }
    raw
}

/// `handover_grace_seconds`: at least 1 s and at most the rotation interval, so a consumer
/// that never confirms delays a scheduled rotation by less than one interval.
fn handover_grace(
    raw: Option<u64>,
    interval_days: u32,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<std::time::Duration> {
    let seconds = raw?;
    let interval = u64::from(interval_days.max(1)) * 86_400;
    if seconds == 0 || seconds > interval {
        push(
            problems,
            &format!("{key}.handover_grace_seconds"),
            format!("must be between 1 and the rotation interval ({interval} s)"),
        );
    }
    Some(std::time::Duration::from_secs(seconds))
}

fn json_of(value: toml::Value) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(value)
}

fn parse_hhmm(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

fn keys(env: &Env, problems: &mut Vec<ConfigProblem>) -> Option<KeyRing> {
    let text = match (
        env.get(ENCRYPTION_KEY_VAR),
        env.get(ENCRYPTION_KEY_FILE_VAR),
    ) {
        (Some(v), _) => SecretString::new(v.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => SecretString::new(v),
            Err(e) => {
                push(
                    problems,
                    ENCRYPTION_KEY_FILE_VAR,
                    format!("cannot read {path}: {e}"),
                );
                return None;
            }
        },
        (None, None) => {
            push(
                problems,
                ENCRYPTION_KEY_VAR,
                "local rotations are declared, so a credentials-encryption key is required \
                 (`rotator keygen` prints one)"
                    .into(),
            );
            return None;
        }
    };
    let parts: Vec<SecretString> = text
        .expose()
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::new(s.to_owned()))
        .collect();
    KeyRing::parse(&parts)
        .map_err(|e| push(problems, ENCRYPTION_KEY_VAR, e.to_string()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn load(text: &str, env: &[(&str, &str)]) -> (Registry, Vec<ConfigProblem>) {
        let mut table: toml::Table = text.parse().expect("toml");
        let env: Env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut problems = Vec::new();
        let r = Registry::from_table(&mut table, &env, &mut problems);
        (r, problems)
    }

    const GOOD: &str = r#"
[[connections]]
name = "pg"
app = "postgres"
host = "127.0.0.1"
port = 5433
database = "postgres"
username = "rotator_admin"
password = "env:PG_ADMIN"
tls = "disable"

[[rotations]]
id = "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10"
name = "app-db"
type = "postgres-credentials"
connection = "pg"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = { username1 = "app_a", username2 = "app_b" }
secrets_mapping = { username = "DB_USER", password = "DB_PASSWORD" }
"#;

    #[test]
    fn reads_connections_and_rotations_with_infisical_field_names() {
        let (r, problems) = load(GOOD, &[("PG_ADMIN", "pw"), (ENCRYPTION_KEY_VAR, KEY)]);
        assert!(problems.is_empty(), "{problems:?}");
        let rot = &r.rotations[0];
        assert_eq!(rot.rotation_type, RotationType::PostgresCredentials);
        assert_eq!(rot.rotate_at, (3, 30));
        assert_eq!(rot.interval_days, 7);
        assert!(
            matches!(rot.parameters, rotation_parameters::Kind::PostgresCredentials(ref p) if p.username2 == "app_b")
        );
        assert_eq!(r.connections["pg"].target.port, Some(5433));
        assert_eq!(r.connections["pg"].target.admin_password.expose(), "pw");
        assert_eq!(r.connections["pg"].app, "postgres");
        assert!(r.connections["pg"].options.is_empty());
        assert!(r.keys.is_some());
    }

    /// `GOOD`'s rotation declared again with `id` and `name`.
    fn another(id: &str, name: &str) -> String {
        let rotation = &GOOD[GOOD.find("[[rotations]]").unwrap_or(0)..];
        rotation
            .replace("6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10", id)
            .replace("\"app-db\"", &format!("{name:?}"))
    }

    #[test]
    fn a_repeated_id_or_name_is_a_problem_of_the_later_rotation() {
        let text = [
            GOOD.to_owned(),
            another("0e6b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a11", "other"),
            another("6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10", "third"),
            another("1e6b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a12", "other"),
            another("2e6b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a13", "app-db"),
        ]
        .concat();
        let (_, problems) = load(&text, &[("PG_ADMIN", "pw"), (ENCRYPTION_KEY_VAR, KEY)]);
        let mut found: Vec<_> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.reason.as_str()))
            .collect();
        found.sort_unstable();
        assert_eq!(
            found,
            [
                ("rotations[2].id", "duplicate rotation id"),
                ("rotations[3].name", "duplicate rotation name"),
                ("rotations[4].name", "duplicate rotation name"),
            ]
        );
    }

    #[test]
    fn a_rotation_is_found_by_id_among_many() {
        let text: String = std::iter::once(GOOD.to_owned())
            .chain((1..300).map(|i| {
                another(
                    &format!("00000000-0000-4000-8000-{:012}", 7919 * i % 1000),
                    &format!("r{i}"),
                )
            }))
            .collect();
        let (registry, problems) = load(&text, &[("PG_ADMIN", "pw"), (ENCRYPTION_KEY_VAR, KEY)]);
        assert!(problems.is_empty(), "{problems:?}");
        for rotation in &registry.rotations {
            let found = registry.rotation(rotation.id).map(|r| &r.name);
            assert_eq!(found, Some(&rotation.name));
        }
        assert!(registry.rotation(Uuid::nil()).is_none());
        // A registry changed after its first lookup still answers from what it holds.
        let mut changed = registry.clone();
        assert!(changed.rotation(registry.rotations[5].id).is_some());
        changed.rotations.swap(3, 4);
        assert_eq!(
            changed.rotation(registry.rotations[3].id).map(|r| &r.name),
            Some(&registry.rotations[3].name)
        );
        let last = changed.rotations.pop().map(|r| r.id).unwrap_or_default();
        assert!(changed.rotation(last).is_none());
    }

    #[test]
    fn problems_are_named_by_key_and_never_show_the_value() {
        let text = GOOD
            .replace("env:PG_ADMIN", "hunter2-literal")
            .replace("03:30", "25:00")
            .replace(
                "app = \"postgres\"",
                "app = \"postgres\"\nca_file = \"/nonexistent\"",
            );
        let (_, problems) = load(&text, &[]);
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"connections[0].password"), "{keys:?}");
        assert!(keys.contains(&"connections[0].ca_file"), "{keys:?}");
        assert!(keys.contains(&"rotations[0].connection"), "{keys:?}");
        assert!(problems.iter().all(|p| !p.reason.contains("hunter2")));
    }

    #[test]
    fn the_initial_password_is_a_reference_and_never_shown() {
        let with = |value: &str| {
            GOOD.replace(
                "secrets_mapping = {",
                &format!(
                    "temporary_parameters = {{ password = \"{value}\" }}\nsecrets_mapping = {{"
                ),
            )
        };
        let env = [
            ("PG_ADMIN", "pw"),
            ("APP_PW", "initial-pw"),
            (ENCRYPTION_KEY_VAR, KEY),
        ];
        let (r, problems) = load(&with("env:APP_PW"), &env);
        assert!(problems.is_empty(), "{problems:?}");
        let initial = r.rotations[0]
            .initial_password()
            .map(|p| p.expose().to_owned());
        assert_eq!(initial.as_deref(), Some("initial-pw"));
        assert!(load(GOOD, &env).0.rotations[0].initial_password().is_none());

        let (_, problems) = load(&with("hunter2-literal"), &env);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].key,
            "rotations[0].temporary_parameters.password"
        );
        assert!(!problems[0].reason.contains("hunter2"));
    }

    #[test]
    fn a_rotation_needs_a_key_and_a_matching_connection() {
        let (_, problems) = load(GOOD, &[("PG_ADMIN", "pw")]);
        assert_eq!(problems[0].key, ENCRYPTION_KEY_VAR);
        let text = GOOD.replace("connection = \"pg\"", "connection = \"nope\"");
        let (_, problems) = load(&text, &[("PG_ADMIN", "pw"), (ENCRYPTION_KEY_VAR, KEY)]);
        assert!(
            problems.iter().any(|p| p.key == "rotations[0].connection"),
            "{problems:?}"
        );
        let text = GOOD.replace("6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10", "nope");
        let (_, problems) = load(&text, &[("PG_ADMIN", "pw"), (ENCRYPTION_KEY_VAR, KEY)]);
        assert!(
            problems.iter().any(|p| p.key == "rotations[0].id"),
            "{problems:?}"
        );
    }

    #[test]
    fn consumers_and_the_handover_grace_are_checked_by_key() {
        let env = [("PG_ADMIN", "pw"), (ENCRYPTION_KEY_VAR, KEY)];
        let (r, problems) = load(GOOD, &env);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(r.rotations[0].consumers().is_empty(), "none by default");
        assert_eq!(r.rotations[0].handover_grace(), DEFAULT_HANDOVER_GRACE);
        assert!(
            r.rotations[0].extras.is_none(),
            "nothing boxed for nothing declared"
        );

        let with = |extra: &str| format!("{GOOD}{extra}\n");
        let (r, problems) = load(
            &with("consumers = [\"billing-api\", \"worker.v2\"]\nhandover_grace_seconds = 90"),
            &env,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(r.rotations[0].consumers(), ["billing-api", "worker.v2"]);
        assert_eq!(
            r.rotations[0].handover_grace(),
            std::time::Duration::from_secs(90)
        );

        let (_, problems) = load(
            &with("consumers = [\"ok\", \"\", \"ok\", \"-x\"]\nhandover_grace_seconds = 0"),
            &env,
        );
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rotations[0].consumers[1]",
                "rotations[0].consumers[2]",
                "rotations[0].consumers[3]",
                "rotations[0].handover_grace_seconds",
            ]
        );
        // The grace is at most the interval (7 days here).
        let (_, problems) = load(&with("handover_grace_seconds = 604801"), &env);
        assert_eq!(problems[0].key, "rotations[0].handover_grace_seconds");
        let (_, problems) = load(&with("handover_grace_seconds = 604800"), &env);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!is_consumer_name(&"a".repeat(65)) && is_consumer_name(&"a".repeat(64)));
    }

    #[test]
    fn no_rotations_need_no_key() {
        let (r, problems) = load("", &[]);
        assert!(problems.is_empty() && r.is_empty() && r.keys.is_none());
    }
}
