//! `postgres-credentials`: two PostgreSQL roles, one per slot.
//!
//! - **apply**: `ALTER ROLE "<user>" PASSWORD '<verifier>'` as the admin, where the verifier is
//!   a SCRAM-SHA-256 verifier computed here ([`scram`](super::scram)), so the plaintext never
//!   reaches the server, its logs or `pg_stat_statements`. PostgreSQL stores a string that is
//!   already a verifier as is, whatever `password_encryption` says.
//! - **verify**: a new connection logged in as the user, then `SELECT 1`.
//! - **revoke**: `ALTER ROLE "<user>" PASSWORD NULL` (no `DROP ROLE`: rotator does not own the
//!   role's objects).
//!
//! Applies reuse an idle admin session of the connection when one is fresh
//! (`AdminSessions`); every verify is a new login. 10 s to connect, statement logging off (sqlx
//! would otherwise log the statement text).

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

use super::admin_sessions::AdminSessions;
use super::quote::{pg_identifier, pg_literal};
use super::redact::Redactor;
use super::sql_error::{Login, connect_within, from_sqlx, timed_out};
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    Driver, DriverError, DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, TlsMode, invalid,
    scram,
};
use crate::proto::{RotationType, SqlCredentialsParameters, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("postgresql");

/// `postgres-credentials` on PostgreSQL.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "postgres",
    default_port: 5432,
    rotation_types: &[RotationType::PostgresCredentials],
    shape: CredentialShape::UsernamePassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "ALTER ROLE",
        verify: "LOGIN",
        revoke: "ALTER ROLE",
        probe: "SELECT",
    },
    options: &[],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::PostgresCredentials(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let sessions = ctx
        .shared
        .get_or_init(|| AdminSessions::<PgConnection>::new(ctx.shared.max_parallel()));
    let driver = PostgresDriver::new(ctx.connection.clone(), parameters, sessions)?;
    let usernames = driver.usernames.clone();
    Ok(Built::chosen(
        driver,
        usernames,
        parameters.password_requirements.as_ref(),
    ))
}

/// The PostgreSQL driver of one rotation.
#[derive(Debug, Clone)]
pub struct PostgresDriver {
    connection: ConnectionConfig,
    /// `username1`, `username2`, trimmed.
    usernames: [String; 2],
    /// Idle admin sessions, shared with the connection's other rotations.
    admin_sessions: AdminSessions<PgConnection>,
}

// === impl PostgresDriver ===

impl PostgresDriver {
    /// A driver for `username1` / `username2` on `connection`.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`]: a missing or unquotable username, equal usernames, a
    /// username equal to the admin, or a custom `rotationStatement` (it would put the password
    /// into SQL text; the local driver never does).
    pub fn new(
        connection: ConnectionConfig,
        parameters: &SqlCredentialsParameters,
        admin_sessions: AdminSessions<PgConnection>,
    ) -> Result<Self, DriverError> {
        if parameters.rotation_statement.is_some() {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "custom rotation statements are not supported by the local driver: it sends a SCRAM verifier, never the password",
            ));
        }
        let usernames = [
            parameters.username1.trim().to_owned(),
            parameters.username2.trim().to_owned(),
        ];
        for u in &usernames {
            pg_identifier(u)
                .map_err(|e| invalid(SYSTEM, Phase::Build, format!("username {u:?}: {e}")))?;
        }
        Ok(Self {
            connection,
            usernames,
            admin_sessions,
        })
    }

    fn options(&self, username: &str, password: &str) -> PgConnectOptions {
        let c = &self.connection;
        let ssl_mode = match c.tls.mode {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        };
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&c.host)
            .port(c.port)
            .username(username)
            .password(password)
            .ssl_mode(ssl_mode)
            .application_name("rotator")
            .statement_cache_capacity(0)
            .disable_statement_logging();
        if !c.database.is_empty() {
            options = options.database(&c.database);
        }
        if let Some(pem) = c.ca_pem() {
            options = options.ssl_root_cert_from_pem(pem.as_bytes().to_vec());
        }
        options
    }

    async fn connect(
        &self,
        phase: Phase,
        login: Login,
        username: &str,
        password: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<PgConnection, DriverError> {
        let options = self.options(username, password.expose());
        connect_within(
            PgConnection::connect_with(&options),
            SYSTEM,
            phase,
            login,
            redactor,
            database_kind,
        )
        .await
    }

    /// Runs `sql` (simple protocol, nothing cached) and closes the connection.
    async fn execute(
        &self,
        mut conn: PgConnection,
        phase: Phase,
        login: Login,
        sql: &str,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let result = run(&mut conn, sql)
            .await
            .map_err(|e| e.into_driver_error(phase, login, redactor));
        close(conn).await;
        result
    }

    /// Runs `sql` as the admin, on an idle admin session when a fresh one is kept, else on a new
    /// login; the session is kept for the next apply when the statement succeeded. A kept
    /// session the server has closed meanwhile is replaced by a new login (the statements are
    /// idempotent, so running one again is safe).
    async fn admin_execute(
        &self,
        phase: Phase,
        sql: &str,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let taken = self.admin_sessions.take(std::time::Instant::now());
        for expired in taken.expired {
            close(expired).await;
        }
        if let Some(mut conn) = taken.session {
            match run(&mut conn, sql).await {
                Ok(()) => {
                    self.keep(conn).await;
                    return Ok(());
                }
                Err(RunError::Failed(e)) if !session_lost(&e) => {
                    close(conn).await;
                    return Err(from_sqlx(
                        &e,
                        SYSTEM,
                        phase,
                        Login::Admin,
                        redactor,
                        database_kind,
                    ));
                }
                Err(_) => close(conn).await,
            }
        }
        let c = &self.connection;
        let mut conn = self
            .connect(
                phase,
                Login::Admin,
                &c.admin_username,
                &c.admin_password,
                redactor,
            )
            .await?;
        match run(&mut conn, sql).await {
            Ok(()) => {
                self.keep(conn).await;
                Ok(())
            }
            Err(e) => {
                close(conn).await;
                Err(e.into_driver_error(phase, Login::Admin, redactor))
            }
        }
    }

    /// Keeps an admin session for the next apply, or closes it when enough are kept.
    async fn keep(&self, conn: PgConnection) {
        if let Some(extra) = self.admin_sessions.put(conn, std::time::Instant::now()) {
            close(extra).await;
        }
    }
}

/// Why a statement did not succeed.
enum RunError {
    Failed(sqlx::Error),
    TimedOut,
}

impl RunError {
    fn into_driver_error(self, phase: Phase, login: Login, redactor: &Redactor<'_>) -> DriverError {
        match self {
            Self::Failed(e) => from_sqlx(&e, SYSTEM, phase, login, redactor, database_kind),
            Self::TimedOut => timed_out(SYSTEM, phase, "the statement"),
        }
    }
}

/// Runs `sql` on `conn` with the simple protocol, within [`OPERATION_TIMEOUT`].
async fn run(conn: &mut PgConnection, sql: &str) -> Result<(), RunError> {
    match tokio::time::timeout(
        OPERATION_TIMEOUT,
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(RunError::Failed(e)),
        Err(_) => Err(RunError::TimedOut),
    }
}

/// Whether a statement failed because its session is gone (closed socket, server shutdown or
/// terminated backend), as opposed to the statement itself being refused.
fn session_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// Says goodbye, best effort: the server ends the session on its own if it is lost.
async fn close(conn: PgConnection) {
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.close()).await;
}

impl Driver for PostgresDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        let password = credential.secret.clone();
        // 4096 rounds of HMAC: off the async workers.
        let verifier = tokio::task::spawn_blocking(move || scram::verifier(&password))
            .await
            .map_err(|_| {
                invalid(
                    SYSTEM,
                    Phase::Apply,
                    "the verifier computation was cancelled",
                )
            })?
            .map_err(|e| invalid(SYSTEM, Phase::Apply, e.to_string()))?;
        let role = pg_identifier(&credential.id)
            .map_err(|e| invalid(SYSTEM, Phase::Apply, e.to_string()))?;
        let literal = pg_literal(verifier.expose())
            .map_err(|e| invalid(SYSTEM, Phase::Apply, e.to_string()))?;
        let sql = SecretString::new(format!("ALTER ROLE {role} PASSWORD {literal}"));
        let redactor = Redactor::new([
            credential.secret.expose(),
            verifier.expose(),
            self.connection.admin_password.expose(),
        ]);
        self.admin_execute(Phase::Apply, sql.expose(), &redactor)
            .await
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.connection.admin_password.expose(),
        ]);
        let conn = self
            .connect(
                Phase::Verify,
                Login::Target,
                &credential.id,
                &credential.secret,
                &redactor,
            )
            .await?;
        self.execute(conn, Phase::Verify, Login::Target, "SELECT 1", &redactor)
            .await
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let role = pg_identifier(id).map_err(|e| invalid(SYSTEM, Phase::Revoke, e.to_string()))?;
        let redactor = Redactor::new([self.connection.admin_password.expose()]);
        self.admin_execute(
            Phase::Revoke,
            &format!("ALTER ROLE {role} PASSWORD NULL"),
            &redactor,
        )
        .await
    }

    /// Logs in as the admin and runs `SELECT 1`.
    async fn probe(&self) -> Result<(), DriverError> {
        let admin = &self.connection.admin_username;
        let redactor = Redactor::new([self.connection.admin_password.expose()]);
        let conn = self
            .connect(
                Phase::Probe,
                Login::Admin,
                admin,
                &self.connection.admin_password,
                &redactor,
            )
            .await?;
        self.execute(conn, Phase::Probe, Login::Admin, "SELECT 1", &redactor)
            .await
    }
}

/// Classifies a server error by SQLSTATE.
fn database_kind(db: &dyn DatabaseError, login: Login) -> DriverErrorKind {
    let code = db.code().unwrap_or_default();
    match code.as_ref() {
        // invalid_password, invalid_authorization_specification (incl. "not permitted to log in")
        "28P01" | "28000" => login.rejected(),
        // undefined_object: ALTER ROLE on a missing role
        "42704" => DriverErrorKind::UserNotFound,
        // insufficient_privilege: no CREATEROLE, a superuser target, or no CONNECT on the database
        "42501" => DriverErrorKind::PermissionDenied,
        // invalid_parameter_value: a password check hook (e.g. passwordcheck) refused it
        "22023" => DriverErrorKind::PasswordRejected,
        // too_many_connections, cannot_connect_now, admin/crash shutdown, lock_not_available,
        // serialization and deadlock failures
        "53300" | "57P01" | "57P02" | "57P03" | "55P03" | "40001" | "40P01" => {
            DriverErrorKind::ServerUnavailable
        }
        c if c.starts_with("08") || c.starts_with("53") => DriverErrorKind::ServerUnavailable,
        _ => DriverErrorKind::Server,
    }
}
