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
//! (`AdminSessions`); every verify is a new login. 10 s to connect.
//!
//! The client is tokio-postgres over a socket the driver opens itself: plain TCP, or the
//! SSLRequest and then the TLS handshake of [`tls`](super::tls), so `verify-full` pins a
//! self-signed `ca_file` certificate (sqlx, which the store uses, takes only root certificates).
//! tokio-postgres logs statement text through the `log` crate at debug level; rotator installs
//! no `log` logger, so the verifier in an `ALTER ROLE` goes nowhere.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use super::admin_sessions::AdminSessions;
use super::quote::{pg_identifier, pg_literal};
use super::redact::Redactor;
use super::sql_error::{Login, timed_out};
use super::tls;
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    Driver, DriverError, DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, invalid, scram,
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
        .get_or_init(|| AdminSessions::<Client>::new(ctx.shared.max_parallel()));
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
    connection: Arc<ConnectionConfig>,
    /// `username1`, `username2`, trimmed.
    usernames: [String; 2],
    /// Idle admin sessions, shared with the connection's other rotations.
    admin_sessions: AdminSessions<Client>,
    /// The TLS settings of the connection's mode (`None` under `disable`).
    tls: Option<Arc<rustls::ClientConfig>>,
}

// === impl PostgresDriver ===

impl PostgresDriver {
    /// A driver for `username1` / `username2` on `connection`.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`]: a missing or unquotable username, equal usernames, a
    /// username equal to the admin, or a custom `rotationStatement` (it would put the password
    /// into SQL text; the local driver never does). [`DriverErrorKind::Tls`]: a `ca_file` with
    /// no PEM certificate.
    pub fn new(
        connection: impl Into<Arc<ConnectionConfig>>,
        parameters: &SqlCredentialsParameters,
        admin_sessions: AdminSessions<Client>,
    ) -> Result<Self, DriverError> {
        let connection: Arc<ConnectionConfig> = connection.into();
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
        let tls = tls::client_config(&connection, SYSTEM)?;
        Ok(Self {
            connection,
            usernames,
            admin_sessions,
            tls,
        })
    }

    /// Logs in as `username` on a new session, within [`CONNECT_TIMEOUT`].
    async fn connect(
        &self,
        phase: Phase,
        login: Login,
        username: &str,
        password: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<Client, DriverError> {
        let c = &self.connection;
        let mut config = tokio_postgres::Config::new();
        config
            .user(username)
            .password(password.expose())
            .application_name("rotator")
            // The socket below is already what the connection's `tls` asks for.
            .ssl_mode(SslMode::Disable);
        if !c.database.is_empty() {
            config.dbname(&c.database);
        }
        let connecting = async {
            let tcp = tls::connect_tcp(c, SYSTEM, phase).await?;
            let started = match &self.tls {
                Some(tls_config) => {
                    let tcp = ssl_request(tcp, phase).await?;
                    let stream =
                        tls::handshake(Arc::clone(tls_config), c, tcp, SYSTEM, phase).await?;
                    start(&config, stream).await
                }
                None => start(&config, tcp).await,
            };
            started.map_err(|e| from_pg(&e, phase, login, redactor))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(connected) => connected.map_err(DriverError::before_sending),
            Err(_) => Err(timed_out(SYSTEM, phase, "the connection").before_sending()),
        }
    }

    /// Runs `sql` (simple protocol, nothing cached) and closes the session.
    async fn execute(
        &self,
        conn: Client,
        phase: Phase,
        login: Login,
        sql: &str,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        run(&conn, sql)
            .await
            .map_err(|e| e.into_driver_error(phase, login, redactor))
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
        // Dropping a session closes it: tokio-postgres sends Terminate and ends the socket.
        let taken = self.admin_sessions.take(std::time::Instant::now());
        drop(taken.expired);
        if let Some(conn) = taken.session {
            match run(&conn, sql).await {
                Ok(()) => {
                    self.keep(conn);
                    return Ok(());
                }
                Err(RunError::Failed(e)) if !session_lost(&e) => {
                    return Err(from_pg(&e, phase, Login::Admin, redactor));
                }
                Err(_) => drop(conn),
            }
        }
        let c = &self.connection;
        let conn = self
            .connect(
                phase,
                Login::Admin,
                &c.admin_username,
                &c.admin_password,
                redactor,
            )
            .await?;
        match run(&conn, sql).await {
            Ok(()) => {
                self.keep(conn);
                Ok(())
            }
            Err(e) => Err(e.into_driver_error(phase, Login::Admin, redactor)),
        }
    }

    /// Keeps an admin session for the next apply, or closes it when enough are kept.
    fn keep(&self, conn: Client) {
        drop(self.admin_sessions.put(conn, std::time::Instant::now()));
    }
}

/// PostgreSQL's SSLRequest on a new socket: the server answers `S` and then speaks TLS, or `N`
/// when it has none.
async fn ssl_request(mut tcp: TcpStream, phase: Phase) -> Result<TcpStream, DriverError> {
    /// Length 8, then the request code 80877103 (protocol docs, "SSLRequest").
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let broken = |e: std::io::Error| {
        DriverError::new(DriverErrorKind::Unreachable, SYSTEM, phase, e.to_string())
    };
    tcp.write_all(&SSL_REQUEST).await.map_err(broken)?;
    let mut answer = [0_u8];
    tcp.read_exact(&mut answer).await.map_err(broken)?;
    match answer {
        [b'S'] => Ok(tcp),
        [b'N'] => Err(DriverError::new(
            DriverErrorKind::Tls,
            SYSTEM,
            phase,
            "the server does not accept TLS: turn ssl on in its configuration, or use \
             tls = \"disable\" (unencrypted)",
        )),
        _ => Err(DriverError::new(
            DriverErrorKind::Server,
            SYSTEM,
            phase,
            "the server answered the TLS request with neither S nor N: is it PostgreSQL?",
        )),
    }
}

/// The startup (login) over `stream`; the session's I/O then runs on its own task until the
/// client is dropped.
async fn start<S>(
    config: &tokio_postgres::Config,
    stream: S,
) -> Result<Client, tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = config.connect_raw(stream, NoTls).await?;
    // A broken session shows as a closed client on its next statement.
    tokio::spawn(async move { drop(connection.await) });
    Ok(client)
}

/// Why a statement did not succeed.
enum RunError {
    Failed(tokio_postgres::Error),
    TimedOut,
}

impl RunError {
    fn into_driver_error(self, phase: Phase, login: Login, redactor: &Redactor<'_>) -> DriverError {
        match self {
            Self::Failed(e) => from_pg(&e, phase, login, redactor),
            Self::TimedOut => timed_out(SYSTEM, phase, "the statement"),
        }
    }
}

/// Runs `sql` on `conn` with the simple protocol, within [`OPERATION_TIMEOUT`].
async fn run(conn: &Client, sql: &str) -> Result<(), RunError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, conn.batch_execute(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RunError::Failed(e)),
        Err(_) => Err(RunError::TimedOut),
    }
}

/// Whether a statement failed because its session is gone (closed socket, server shutdown or
/// terminated backend), as opposed to the statement itself being refused.
fn session_lost(error: &tokio_postgres::Error) -> bool {
    error.code().is_none_or(|code| {
        let code = code.code();
        code.starts_with("57P") || code.starts_with("08")
    })
}

/// Classifies a client error: a server error by its SQLSTATE ([`database_kind`]), a broken
/// session as unreachable. The detail is scrubbed by `redactor`.
fn from_pg(
    e: &tokio_postgres::Error,
    phase: Phase,
    login: Login,
    redactor: &Redactor<'_>,
) -> DriverError {
    let (kind, detail) = match e.as_db_error() {
        Some(db) => (
            database_kind(db.code().code(), login),
            format!("[{}] {}", db.code().code(), db.message()),
        ),
        None => {
            let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
            let kind = if e.is_closed() || io {
                DriverErrorKind::Unreachable
            } else {
                DriverErrorKind::Server
            };
            (kind, error_text(e))
        }
    };
    DriverError::new(kind, SYSTEM, phase, redactor.scrub(&detail))
}

/// `e` and its sources, `: `-joined (tokio-postgres keeps the cause in the source).
fn error_text(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
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
fn database_kind(code: &str, login: Login) -> DriverErrorKind {
    match code {
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
