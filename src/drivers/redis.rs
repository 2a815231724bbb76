//! `redis-credentials`: one ACL user per slot, each with exactly one password.
//!
//! Upstream created a new ACL user on every rotation and deleted the inactive one. rotator keeps
//! two fixed users per rotation instead (slot 0 and slot 1, named after the rotation id unless
//! configured), the same two-slot model as the SQL types:
//!
//! - **apply**: `ACL SETUSER <user> reset on #<SHA-256 of the password> <permission scope…>`:
//!   one atomic command that creates the user if needed and leaves it with exactly this password
//!   and this scope, whatever it had before, so applying twice is harmless and a crashed attempt
//!   leaves no orphan. The password goes as its SHA-256 (the form Redis stores), so the plaintext
//!   never crosses the admin connection. Then `ACL SAVE`; a server without an ACL file answers
//!   that it has none, which is ignored (the change then lives in memory only).
//! - **verify**: a new connection that sends `AUTH <user> <password>`.
//! - **revoke**: `ACL DELUSER <user>` (it also closes the user's connections), then `ACL SAVE`.
//!
//! Why not one user with two passwords (`>new`, `<old`)? Removing the right old password needs
//! the other slot's plaintext or a read of the server's state, and an interrupted attempt can
//! leave a stray third password; two users need neither, and the engine treats Redis exactly as
//! it treats PostgreSQL.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{AsyncStream, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError, ServerErrorKind};

use super::admin_sessions::IDLE_FOR;
use super::redact::Redactor;
use super::sql_error::Login;
use super::tls;
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    Driver, DriverError, DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, invalid,
};
use crate::proto::{RedisCredentialsParameters, RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("redis");

/// `redis-credentials` on Redis (ACL users).
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "redis",
    default_port: 6379,
    rotation_types: &[RotationType::RedisCredentials],
    shape: CredentialShape::UsernamePassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "ACL SETUSER",
        verify: "AUTH",
        revoke: "ACL DELUSER",
        probe: "ACL WHOAMI",
    },
    options: &[],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::RedisCredentials(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let usernames = ctx
        .usernames
        .cloned()
        .unwrap_or_else(|| RedisDriver::default_usernames(ctx.rotation_id));
    let admin = ctx.shared.get_or_init(AdminShared::new);
    let driver = RedisDriver::new(ctx.connection.clone(), parameters, &usernames)?.with_admin(admin);
    Ok(Built::chosen(
        driver,
        usernames,
        parameters.password_requirements.as_ref(),
    ))
}

/// ACL rules a permission scope must not contain: they would change the user's passwords or
/// switch it off, which is the driver's job.
const RESERVED_RULES: &[&str] = &["on", "off", "nopass", "resetpass", "reset"];

/// What the rotations of one connection share: one admin connection, reused by their applies
/// and revokes (a login costs a connection, HELLO and AUTH, more than the `ACL SETUSER` itself)
/// and multiplexed (redis-rs pipelines the commands of concurrent applies over it, so the server
/// reads and answers them in batches); and whether the missing ACL file was reported already
/// (once per connection, not per apply).
#[derive(Clone)]
struct AdminShared {
    /// The admin connection and when it was last used; one unused for [`IDLE_FOR`] is closed
    /// and replaced by a new login, so the server never keeps a rotator session for long
    /// after the last rotation.
    connection: Arc<tokio::sync::Mutex<Option<(MultiplexedConnection, Instant)>>>,
    no_acl_file_reported: Arc<AtomicBool>,
}

impl AdminShared {
    fn new() -> Self {
        Self {
            connection: Arc::default(),
            no_acl_file_reported: Arc::default(),
        }
    }
}

impl std::fmt::Debug for AdminShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminShared").finish_non_exhaustive()
    }
}

/// The Redis driver of one rotation.
#[derive(Debug, Clone)]
pub struct RedisDriver {
    connection: Arc<ConnectionConfig>,
    /// The permission scope, one ACL rule per element (selectors kept whole).
    scope: Vec<String>,
    /// The TLS settings of the connection's mode (`None` under `disable`). The driver opens
    /// the socket and does the handshake itself, so `verify-full` pins a `ca_file` certificate
    /// (redis takes only root certificates).
    tls: Option<Arc<rustls::ClientConfig>>,
    admin: AdminShared,
}

// === impl RedisDriver ===

impl RedisDriver {
    /// A driver for the two slot users `usernames`, each given `parameters.permission_scope`.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`]: an empty scope, a scope rule that touches passwords or
    /// the user's on/off state, a username with whitespace, `default`, equal usernames or one
    /// equal to the admin. [`DriverErrorKind::Tls`]: a `ca_file` with no PEM certificate.
    pub fn new(
        connection: impl Into<Arc<ConnectionConfig>>,
        parameters: &RedisCredentialsParameters,
        usernames: &[String; 2],
    ) -> Result<Self, DriverError> {
        let connection: Arc<ConnectionConfig> = connection.into();
        let scope = parse_scope(&parameters.permission_scope)?;
        for u in usernames {
            if u.chars().any(|c| c.is_whitespace() || c.is_control()) || u == "default" {
                return Err(invalid(
                    SYSTEM,
                    Phase::Build,
                    format!("{u:?} cannot be a rotated ACL user"),
                ));
            }
        }
        let tls = tls::client_config(&connection, SYSTEM)?;
        Ok(Self {
            admin: AdminShared::new(),
            connection,
            scope,
            tls,
        })
    }

    /// This driver with `admin` shared with the connection's other rotations.
    fn with_admin(mut self, admin: AdminShared) -> Self {
        self.admin = admin;
        self
    }

    /// The slot users used when the configuration names none: `rotator-<rotation id>-0` and
    /// `-1`, with any character Redis refuses in a username replaced by `_`.
    pub fn default_usernames(rotation_id: &str) -> [String; 2] {
        let id: String = rotation_id
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        [format!("rotator-{id}-0"), format!("rotator-{id}-1")]
    }

    /// The ACL rules each slot user gets.
    pub fn scope(&self) -> &[String] {
        &self.scope
    }

    async fn connect(
        &self,
        phase: Phase,
        login: Login,
        username: &str,
        password: &str,
        redactor: &Redactor<'_>,
    ) -> Result<MultiplexedConnection, DriverError> {
        let c = &self.connection;
        let opening = async {
            let tcp = tls::connect_tcp(c, SYSTEM, phase).await?;
            let stream: Pin<Box<dyn AsyncStream + Send + Sync>> = match &self.tls {
                Some(config) => Box::pin(
                    tls::handshake(Arc::clone(config), c, tcp, SYSTEM, phase).await?,
                ),
                None => Box::pin(tcp),
            };
            Ok(stream)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, opening)
            .await
            .unwrap_or_else(|_| Err(timed_out(phase)))
            .map_err(DriverError::before_sending)?;
        // The response timeout bounds each step of the login (HELLO/AUTH); this bounds them all.
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(OPERATION_TIMEOUT));
        let settings = login_settings(username, password);
        match tokio::time::timeout(
            OPERATION_TIMEOUT + Duration::from_secs(1),
            MultiplexedConnection::new_with_config(&settings, stream, config),
        )
        .await
        {
            Ok(Ok((conn, driver))) => {
                tokio::spawn(driver);
                Ok(conn)
            }
            Ok(Err(e)) => Err(from_redis(&e, phase, login, redactor).before_sending()),
            Err(_) => Err(timed_out(phase).before_sending()),
        }
    }

    async fn admin_connection(
        &self,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<MultiplexedConnection, DriverError> {
        let c = &self.connection;
        self.connect(
            phase,
            Login::Admin,
            &c.admin_username,
            c.admin_password.expose(),
            redactor,
        )
        .await
    }

    /// Runs `work` on the connection's shared admin connection (logging in when there is none,
    /// or the last one sat unused for [`IDLE_FOR`]). A shared connection that broke (the
    /// server restarted, say) is dropped and `work` runs once more on a new login: each admin
    /// command here may be sent twice.
    async fn as_admin<F, Fut>(
        &self,
        phase: Phase,
        redactor: &Redactor<'_>,
        work: F,
    ) -> Result<(), DriverError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<(), DriverError>>,
    {
        let (conn, reused) = self.shared_admin(phase, redactor).await?;
        match work(conn).await {
            Err(e) if reused && e.kind() == DriverErrorKind::Unreachable => {
                *self.admin.connection.lock().await = None;
                let (conn, _) = self.shared_admin(phase, redactor).await?;
                work(conn).await
            }
            outcome => outcome,
        }
    }

    /// The shared admin connection, and whether it was already open. The lock is held while
    /// logging in, so concurrent applies wait for one login instead of each making its own.
    async fn shared_admin(
        &self,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<(MultiplexedConnection, bool), DriverError> {
        let mut shared = self.admin.connection.lock().await;
        let now = Instant::now();
        if let Some((conn, used)) = shared.as_mut()
            && now.saturating_duration_since(*used) < IDLE_FOR
        {
            *used = now;
            return Ok((conn.clone(), true));
        }
        // Dropping the last clone closes an idle connection.
        *shared = None;
        let conn = self.admin_connection(phase, redactor).await?;
        *shared = Some((conn.clone(), now));
        Ok((conn, false))
    }

    /// `ACL SAVE`, ignoring "no ACL file" (the change then lives in memory only).
    async fn save(
        &self,
        conn: &mut MultiplexedConnection,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SAVE");
        match cmd.query_async::<()>(conn).await {
            Ok(()) => Ok(()),
            Err(e) if is_no_acl_file(&e) => {
                if !self.admin.no_acl_file_reported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the Redis server has no ACL file: ACL changes are not persisted and are lost at restart (reported once per connection)"
                    );
                }
                Ok(())
            }
            Err(e) => {
                let mut err = from_redis(&e, phase, Login::Admin, redactor);
                if err.kind() == DriverErrorKind::Server {
                    err = DriverError::new(
                        DriverErrorKind::PersistFailed,
                        SYSTEM,
                        phase,
                        err.detail().to_owned(),
                    );
                }
                Err(err)
            }
        }
    }
}

impl Driver for RedisDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        let password_hash = acl_password_hash(&credential.secret);
        let redactor = Redactor::new([
            credential.secret.expose(),
            password_hash.expose(),
            self.connection.admin_password.expose(),
        ]);
        let setuser = |mut conn: MultiplexedConnection| {
            let (redactor, hash) = (&redactor, &password_hash);
            async move {
                let mut cmd = redis::cmd("ACL");
                cmd.arg("SETUSER")
                    .arg(&credential.id)
                    .arg("reset")
                    .arg("on")
                    .arg(format!("#{}", hash.expose()))
                    .arg(&self.scope);
                if let Err(e) = cmd.query_async::<()>(&mut conn).await {
                    let mut err = from_redis(&e, Phase::Apply, Login::Admin, redactor);
                    // A rule the server does not understand: the scope is wrong, nothing changed.
                    if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ResponseError)) {
                        err = DriverError::new(
                            DriverErrorKind::InvalidInput,
                            SYSTEM,
                            Phase::Apply,
                            err.detail().to_owned(),
                        );
                    }
                    return Err(err);
                }
                self.save(&mut conn, Phase::Apply, redactor).await
            }
        };
        self.as_admin(Phase::Apply, &redactor, setuser).await
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.connection.admin_password.expose(),
        ]);
        // Connecting sends AUTH and fails unless it succeeds; no command is needed after it
        // (the scope may not even allow PING).
        self.connect(
            Phase::Verify,
            Login::Target,
            &credential.id,
            credential.secret.expose(),
            &redactor,
        )
        .await
        .map(drop)
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.connection.admin_password.expose()]);
        let deluser = |mut conn: MultiplexedConnection| {
            let redactor = &redactor;
            async move {
                let mut cmd = redis::cmd("ACL");
                cmd.arg("DELUSER").arg(id);
                query(&mut conn, &cmd, Phase::Revoke, redactor).await?;
                self.save(&mut conn, Phase::Revoke, redactor).await
            }
        };
        self.as_admin(Phase::Revoke, &redactor, deluser).await
    }

    /// Logs in as the admin and runs `ACL WHOAMI`.
    async fn probe(&self) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.connection.admin_password.expose()]);
        let mut conn = self.admin_connection(Phase::Probe, &redactor).await?;
        let mut cmd = redis::cmd("ACL");
        cmd.arg("WHOAMI");
        query(&mut conn, &cmd, Phase::Probe, &redactor).await
    }
}

/// Splits a permission scope into ACL rules: on whitespace, except inside a `( … )` selector,
/// which stays one rule as `ACL SETUSER` expects.
///
/// # Errors
///
/// An empty scope, an unclosed selector, or a rule that sets passwords or the on/off state.
pub fn parse_scope(scope: &str) -> Result<Vec<String>, DriverError> {
    let mut rules = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in scope.chars() {
        match c {
            '(' if current.is_empty() || depth > 0 => {
                depth += 1;
                current.push(c);
            }
            ')' if depth > 0 => {
                depth -= 1;
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    rules.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if depth > 0 {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "unclosed ( in the permission scope",
        ));
    }
    if !current.is_empty() {
        rules.push(current);
    }
    // Held by every rotation's driver for the server's life: no spare capacity.
    for rule in &mut rules {
        rule.shrink_to_fit();
    }
    rules.shrink_to_fit();
    if rules.is_empty() {
        return Err(invalid(
            SYSTEM,
            Phase::Build,
            "Permission scope is required",
        ));
    }
    for rule in &rules {
        let lower = rule.to_ascii_lowercase();
        if RESERVED_RULES.contains(&lower.as_str()) || rule.starts_with(['>', '<', '#', '!']) {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                format!(
                    "the permission scope may not contain {rule:?}: passwords and on/off are set by the driver"
                ),
            ));
        }
    }
    Ok(rules)
}

/// The lower-case hex SHA-256 of a password: what `ACL SETUSER … #<hash>` takes and what Redis
/// stores and saves.
pub fn acl_password_hash(password: &SecretString) -> SecretString {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(password.expose().as_bytes());
    SecretString::new(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

/// The login of a connection: `AUTH username password`, none with an empty password.
fn login_settings(username: &str, password: &str) -> RedisConnectionInfo {
    let settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    if password.is_empty() {
        settings
    } else {
        settings.set_username(username).set_password(password)
    }
}

async fn query(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> Result<(), DriverError> {
    cmd.query_async::<redis::Value>(conn)
        .await
        .map(drop)
        .map_err(|e| from_redis(&e, phase, Login::Admin, redactor))
}

/// The server's answer to `ACL SAVE` without `aclfile`: "This Redis instance is not configured
/// to use an ACL file…". Redis gives it no code of its own, so the text is the only signal.
fn is_no_acl_file(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ResponseError))
        && e.detail()
            .is_some_and(|d| d.contains("not configured to use an ACL file"))
}

fn timed_out(phase: Phase) -> DriverError {
    DriverError::new(
        DriverErrorKind::Timeout,
        SYSTEM,
        phase,
        "no answer from the server in time",
    )
}

/// The kind of the I/O error inside `e`, if it wraps one. redis keeps it behind an
/// `Arc<dyn Error>` that `source()` exposes as is.
fn io_error_kind(e: &RedisError) -> Option<std::io::ErrorKind> {
    use std::error::Error as _;
    let source = e.source()?;
    let io = source.downcast_ref::<std::io::Error>().or_else(|| {
        source
            .downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
    });
    io.map(std::io::Error::kind)
}

/// Classifies a Redis client error; the detail is scrubbed.
fn from_redis(e: &RedisError, phase: Phase, login: Login, redactor: &Redactor<'_>) -> DriverError {
    let kind = if e.is_timeout() {
        DriverErrorKind::Timeout
    } else if io_error_kind(e) == Some(std::io::ErrorKind::InvalidData) {
        // rustls reports a broken TLS session as InvalidData.
        DriverErrorKind::Tls
    } else if e.kind() == ErrorKind::AuthenticationFailed {
        login.rejected()
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        DriverErrorKind::Unreachable
    } else {
        match e.kind() {
            ErrorKind::Server(ServerErrorKind::NoPerm) => DriverErrorKind::PermissionDenied,
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown,
            ) => DriverErrorKind::ServerUnavailable,
            ErrorKind::InvalidClientConfig => DriverErrorKind::InvalidInput,
            _ => DriverErrorKind::Server,
        }
    };
    DriverError::new(kind, SYSTEM, phase, redactor.scrub(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_splits_on_whitespace_and_keeps_selectors_whole() {
        let rules = parse_scope("  ~app:*  +@read +ping (~other:* +get)\t&chan").expect("valid");
        assert_eq!(
            rules,
            ["~app:*", "+@read", "+ping", "(~other:* +get)", "&chan"]
        );
    }

    #[test]
    fn scope_may_not_touch_passwords_or_state() {
        for bad in [
            "",
            "   ",
            "~* >pw",
            "~* <pw",
            "~* #abc",
            "~* !abc",
            "nopass",
            "~* OFF",
            "reset +@all",
            "(~a +get",
        ] {
            let e = parse_scope(bad).expect_err(bad);
            assert_eq!(e.kind(), DriverErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn default_usernames_are_per_rotation_and_per_slot() {
        let [a, b] = RedisDriver::default_usernames("1f0e 42");
        assert_eq!(a, "rotator-1f0e_42-0");
        assert_eq!(b, "rotator-1f0e_42-1");
    }
}
