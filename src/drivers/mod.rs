//! Local drivers: what rotator does on a target system to set, check and revoke a credential.
//!
//! Every driver implements [`Driver`] (apply, verify, revoke), and [`AnyDriver`] dispatches over
//! them so the engine holds one concrete type. The contract every driver keeps (idempotent apply,
//! fresh-login verify, no secret in any output, one span per phase, classified errors) is
//! `docs/specs/driver.md`; `tests/support/driver_conformance.rs` checks it against real servers.
//!
//! - [`postgres`]: `ALTER ROLE … PASSWORD '<SCRAM-SHA-256 verifier>'`.
//! - [`mysql`]: `ALTER USER '<user>'@'<host>' IDENTIFIED BY '<literal>'` (MySQL, MariaDB).
//! - [`redis`]: one ACL user per slot, `ACL SETUSER … resetpass >pw`, then `ACL SAVE`.
//! - [`error`]: [`DriverError`], [`DriverErrorKind`]; [`redact`]: scrubbing peer text.
//! - [`quote`], [`scram`]: SQL quoting and client-side SCRAM verifiers.

pub mod admin_sessions;
pub mod error;
pub mod mysql;
pub mod postgres;
pub mod quote;
pub mod redact;
pub mod redis;
pub mod scram;
mod sql_error;

use std::future::Future;
use std::time::Duration;

use tracing::Instrument as _;

pub use self::error::{DbSystem, DriverError, DriverErrorKind, Phase};
use self::mysql::{MysqlDriver, MysqlOptions};
use self::postgres::PostgresDriver;
use self::redis::RedisDriver;
use crate::local::password::{PasswordError, PasswordPolicy};
use crate::proto::{RotationType, rotation_parameters};
use crate::secret::SecretString;

/// How long a driver waits for a connection (TCP, TLS and login), as upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a driver waits for one statement or command once connected.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One driver operation set: apply, verify, revoke. See `docs/specs/driver.md`.
///
/// Each call opens its own connection and closes it, so calls are independent and may run
/// concurrently.
pub trait Driver: Send + Sync {
    /// Makes `credential.password` the password of `credential.username` on the target.
    ///
    /// Idempotent: applying the same credential again succeeds and leaves the same state, which
    /// is how recovery resumes an attempt whose outcome is unknown.
    ///
    /// # Errors
    ///
    /// A [`DriverError`]. A permanent error means the target refused and the user's previous
    /// password still holds; after a transient one the outcome is unknown (verify, or apply
    /// again).
    fn apply(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Logs in as `credential` on a new connection, as an application would.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::LoginRejected`] when the target refuses the credential; other kinds
    /// when the check itself could not be made.
    fn verify(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Makes every password of `username` unusable. Idempotent.
    ///
    /// # Errors
    ///
    /// A [`DriverError`], classified as for apply.
    fn revoke(&self, username: &str) -> impl Future<Output = Result<(), DriverError>> + Send;
}

/// A username and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The login name on the target.
    pub username: String,
    /// The password; `Debug` redacts it.
    pub password: SecretString,
}

/// One of a dual-phase rotation's two credential slots (`activeIndex` 0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Slot 0 (`username1` for SQL types).
    First,
    /// Slot 1 (`username2` for SQL types).
    Second,
}

/// How to reach and log in to a target as its admin ("rotator") user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The database to connect to (PostgreSQL, MySQL; empty for none). Redis ignores it.
    pub database: String,
    /// The admin login, allowed to change the target users' passwords.
    pub admin_username: String,
    /// The admin password (Redis: empty means no `AUTH`).
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

/// Per-driver settings that are not part of the rotation's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOptions {
    /// MySQL: the accounts' host part (`%` by default) and how the password is sent.
    pub mysql: MysqlOptions,
    /// Redis: the ACL user of each slot; [`RedisDriver::default_usernames`] when absent.
    pub redis_usernames: Option<[String; 2]>,
    /// PostgreSQL: the idle admin sessions of the rotation's connection, shared by all its
    /// rotations; a cache of one of its own when absent.
    pub postgres_admin_sessions:
        Option<admin_sessions::AdminSessions<sqlx::postgres::PgConnection>>,
}

/// Why no driver could be built for a rotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No local driver exists for this type.
    #[error("no local driver for rotation type {0}")]
    Unsupported(&'static str),
    /// The connection or parameters are unusable.
    #[error(transparent)]
    Invalid(#[from] DriverError),
    /// The password requirements are invalid.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// Every local driver, for static dispatch.
#[derive(Debug, Clone)]
pub enum AnyDriver {
    /// `postgres-credentials`.
    Postgres(PostgresDriver),
    /// `mysql-credentials`.
    Mysql(MysqlDriver),
    /// `redis-credentials`.
    Redis(RedisDriver),
}

/// A driver together with the password policy of its rotation.
#[derive(Debug, Clone)]
pub struct RotationDriver {
    /// The driver.
    pub driver: AnyDriver,
    /// The validated password policy for new credentials.
    pub password_policy: PasswordPolicy,
}

// === impl Slot ===

impl Slot {
    /// The slot for `activeIndex`-style index 0 or 1.
    pub fn from_index(index: u32) -> Option<Self> {
        match index {
            0 => Some(Self::First),
            1 => Some(Self::Second),
            _ => None,
        }
    }

    /// 0 or 1.
    pub fn index(self) -> usize {
        match self {
            Self::First => 0,
            Self::Second => 1,
        }
    }

    /// The other slot: where the next rotation writes.
    pub fn other(self) -> Self {
        match self {
            Self::First => Self::Second,
            Self::Second => Self::First,
        }
    }
}

// === impl ConnectionConfig ===

impl ConnectionConfig {
    /// The CA PEM, if one is set and not empty.
    pub(crate) fn ca_pem(&self) -> Option<&str> {
        self.tls.ca_pem.as_deref().filter(|p| !p.trim().is_empty())
    }

    /// Checks the fields every driver needs.
    pub(crate) fn check(&self, system: DbSystem) -> Result<(), DriverError> {
        let problem = if self.host.trim().is_empty() {
            Some("the connection host is empty")
        } else if self.port == 0 {
            Some("the connection port is 0")
        } else if self.admin_username.trim().is_empty() {
            Some("the connection admin username is empty")
        } else {
            None
        };
        match problem {
            Some(p) => Err(invalid(system, Phase::Build, p)),
            None => Ok(()),
        }
    }
}

// === impl AnyDriver ===

impl AnyDriver {
    /// Builds the driver for a rotation from its connection, parameters and options, and
    /// validates its password requirements.
    ///
    /// `rotation_id` names the Redis slot users when `options` does not.
    ///
    /// # Errors
    ///
    /// [`BuildError::Unsupported`] for types without a local driver; otherwise invalid
    /// connection fields, parameters or password requirements.
    pub fn build(
        rotation_id: &str,
        connection: ConnectionConfig,
        parameters: &rotation_parameters::Kind,
        options: DriverOptions,
    ) -> Result<RotationDriver, BuildError> {
        use rotation_parameters::Kind;
        let (driver, rotation_type, requirements) = match parameters {
            Kind::PostgresCredentials(p) => (
                Self::Postgres(PostgresDriver::new(
                    connection,
                    p,
                    options
                        .postgres_admin_sessions
                        .unwrap_or_else(|| admin_sessions::AdminSessions::new(1)),
                )?),
                RotationType::PostgresCredentials,
                p.password_requirements.as_ref(),
            ),
            Kind::MysqlCredentials(p) => (
                Self::Mysql(MysqlDriver::new(connection, p, options.mysql)?),
                RotationType::MysqlCredentials,
                p.password_requirements.as_ref(),
            ),
            Kind::RedisCredentials(p) => {
                let usernames = options
                    .redis_usernames
                    .unwrap_or_else(|| RedisDriver::default_usernames(rotation_id));
                (
                    Self::Redis(RedisDriver::new(connection, p, usernames)?),
                    RotationType::RedisCredentials,
                    p.password_requirements.as_ref(),
                )
            }
            Kind::MssqlCredentials(_) => return Err(BuildError::Unsupported("mssql-credentials")),
            Kind::OracledbCredentials(_) => {
                return Err(BuildError::Unsupported("oracledb-credentials"));
            }
            Kind::MongodbCredentials(_) => {
                return Err(BuildError::Unsupported("mongodb-credentials"));
            }
            Kind::LdapPassword(_) => return Err(BuildError::Unsupported("ldap-password")),
            Kind::UnixLinuxLocalAccount(_) => {
                return Err(BuildError::Unsupported("unix-linux-local-account"));
            }
            Kind::WindowsLocalAccount(_) => {
                return Err(BuildError::Unsupported("windows-local-account"));
            }
            Kind::Auth0ClientSecret(_) => {
                return Err(BuildError::Unsupported("auth0-client-secret"));
            }
            Kind::OktaClientSecret(_) => return Err(BuildError::Unsupported("okta-client-secret")),
            Kind::AzureClientSecret(_) => {
                return Err(BuildError::Unsupported("azure-client-secret"));
            }
            Kind::AwsIamUserSecret(_) => {
                return Err(BuildError::Unsupported("aws-iam-user-secret"));
            }
            Kind::DatabricksServicePrincipalSecret(_) => {
                return Err(BuildError::Unsupported(
                    "databricks-service-principal-secret",
                ));
            }
        };
        let password_policy = PasswordPolicy::for_type(rotation_type, requirements)?;
        Ok(RotationDriver {
            driver,
            password_policy,
        })
    }

    /// The user a slot's credential belongs to.
    pub fn username_for(&self, slot: Slot) -> &str {
        match self {
            Self::Postgres(d) => d.username_for(slot),
            Self::Mysql(d) => d.username_for(slot),
            Self::Redis(d) => d.username_for(slot),
        }
    }

    /// The target system.
    pub fn system(&self) -> DbSystem {
        match self {
            Self::Postgres(_) => DbSystem::Postgresql,
            Self::Mysql(_) => DbSystem::Mysql,
            Self::Redis(_) => DbSystem::Redis,
        }
    }

    /// Logs in as the admin and changes nothing: a readiness check for the connection.
    ///
    /// # Errors
    ///
    /// As [`Driver::verify`], with [`DriverErrorKind::AdminLoginRejected`] for bad admin
    /// credentials.
    pub async fn probe(&self) -> Result<(), DriverError> {
        match self {
            Self::Postgres(d) => d.probe().await,
            Self::Mysql(d) => d.probe().await,
            Self::Redis(d) => d.probe().await,
        }
    }
}

impl Driver for AnyDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        match self {
            Self::Postgres(d) => d.apply(credential).await,
            Self::Mysql(d) => d.apply(credential).await,
            Self::Redis(d) => d.apply(credential).await,
        }
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        match self {
            Self::Postgres(d) => d.verify(credential).await,
            Self::Mysql(d) => d.verify(credential).await,
            Self::Redis(d) => d.verify(credential).await,
        }
    }

    async fn revoke(&self, username: &str) -> Result<(), DriverError> {
        match self {
            Self::Postgres(d) => d.revoke(username).await,
            Self::Mysql(d) => d.revoke(username).await,
            Self::Redis(d) => d.revoke(username).await,
        }
    }
}

// === helpers shared by the drivers ===

/// An [`DriverErrorKind::InvalidInput`] error with a driver-written (secret-free) message.
pub(crate) fn invalid(system: DbSystem, phase: Phase, message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidInput, system, phase, message)
}

/// Checks a username a caller asks a driver to change: one of the rotation's two users, never
/// the admin.
pub(crate) fn check_target(
    system: DbSystem,
    phase: Phase,
    username: &str,
    usernames: &[String; 2],
    admin: &str,
) -> Result<(), DriverError> {
    if username == admin {
        return Err(invalid(
            system,
            phase,
            format!("refusing to change the connection's own admin user {username:?}"),
        ));
    }
    if !usernames.iter().any(|u| u == username) {
        return Err(invalid(
            system,
            phase,
            format!("user {username:?} is not one of this rotation's two users"),
        ));
    }
    Ok(())
}

/// Checks the two slot usernames of a rotation.
pub(crate) fn check_usernames(
    system: DbSystem,
    usernames: &[String; 2],
    admin: &str,
) -> Result<(), DriverError> {
    let [a, b] = usernames;
    let problem = if a.is_empty() {
        Some("Username1 Required".to_owned())
    } else if b.is_empty() {
        Some("Username2 Required".to_owned())
    } else if a == b {
        Some("the two usernames must differ: the second slot is what keeps the previous credential alive".to_owned())
    } else if a == admin || b == admin {
        Some(format!(
            "the connection's admin user {admin:?} cannot be a rotated user"
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(invalid(system, Phase::Build, p)),
        None => Ok(()),
    }
}

/// Runs one phase inside its span, recording `error.type` on failure.
///
/// The span carries the OpenTelemetry database attributes: `db.system`, `db.operation`,
/// `db.namespace`, `db.user`, `server.address`, `server.port`.
pub(crate) async fn in_phase_span<T>(
    system: DbSystem,
    phase: Phase,
    operation: &'static str,
    connection: &ConnectionConfig,
    user: &str,
    work: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    macro_rules! phase_span {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                otel.kind = "client",
                db.system = system.as_str(),
                db.operation = operation,
                db.namespace = connection.database.as_str(),
                db.user = user,
                server.address = connection.host.as_str(),
                server.port = connection.port,
                error.type = tracing::field::Empty,
            )
        };
    }
    let span = match phase {
        Phase::Apply => phase_span!("driver.apply"),
        Phase::Verify => phase_span!("driver.verify"),
        Phase::Revoke => phase_span!("driver.revoke"),
        Phase::Probe => phase_span!("driver.probe"),
        Phase::Build => phase_span!("driver.build"),
    };
    let result = work.instrument(span.clone()).await;
    if let Err(e) = &result {
        // Status error, `error.type` and a redacted `exception` event.
        crate::telemetry::record_error(&span, e.reason(), &e.to_string());
        tracing::debug!(parent: &span, error = %e, "driver phase failed");
    }
    result
}
