//! `mongodb-credentials`: two MongoDB users, one per slot, in the connection's `database`.
//!
//! - **apply**: as the admin, on the connection's `database`:
//!   `{updateUser: <user>, pwd: <new>, mechanisms: ["SCRAM-SHA-256"]}`. SCRAM-SHA-256 needs the
//!   server to compute the verifier (`digestPassword` is always the server's for it), so the
//!   password crosses the admin connection: use TLS outside a loopback test. Idempotent: the
//!   same command again leaves the same password.
//! - **verify**: a new client logged in as the user (SCRAM-SHA-256, `authSource` = the
//!   database), then `{ping: 1}`.
//! - **revoke**: `updateUser` to a discarded random password, as upstream (no `dropUser`:
//!   rotator does not own the user's roles or data).
//! - **probe**: the admin logs in and pings.
//!
//! Every call builds its own client (one pooled connection, `directConnection=true` to
//! `host:port`, no SRV lookup) and shuts it down. The admin logs in with `authSource` = the
//! database, as upstream, unless the connection option `admin_auth_source` names another one
//! (an admin kept in `admin`). 10 s to connect and select the server, as upstream; 30 s
//! ([`OPERATION_TIMEOUT`]) for one command.
//!
//! Before `updateUser` the admin pings on the same connection, so a failure to connect or log
//! in is known to have changed nothing (`before_sending`).
//!
//! TLS is OpenSSL's (the crate's `openssl-tls` feature): `verify-full` trusts the system roots
//! and the `ca_file`, and a self-signed server certificate (CA:TRUE, as `openssl req -x509`
//! makes it) found in the `ca_file` is trusted as the server's own, its host name and dates
//! still checked; the crate's rustls backend refuses such a certificate (`CaUsedAsEndEntity`)
//! and takes no verifier. The client reads the CA from a path only, so the PEM goes to a
//! private temporary file, removed after the client has read it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ::mongodb::bson::{Document, doc};
use ::mongodb::error::{Error as MongoError, ErrorKind};
use ::mongodb::event::EventHandler;
use ::mongodb::event::sdam::SdamEvent;
use ::mongodb::options::{
    AuthMechanism, ClientOptions, Credential as MongoCredential, ServerAddress, Tls, TlsOptions,
};

use super::redact::Redactor;
use super::sql_error::Login;
use super::tls::{OPENSSL_CERTIFICATE_ADVICE, OpensslFailure, openssl_failure};
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    Driver, DriverError, DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, TlsMode, invalid,
};
use crate::proto::{MongoDbCredentialsParameters, RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("mongodb");

/// The connection option naming the database the admin authenticates against (`authSource`);
/// the connection's `database` when absent, as upstream.
pub const ADMIN_AUTH_SOURCE_OPTION: &str = "admin_auth_source";

/// The only mechanism rotator sets and logs in with.
const MECHANISM: &str = "SCRAM-SHA-256";

/// `mongodb-credentials` on MongoDB.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "mongodb",
    default_port: 27017,
    rotation_types: &[RotationType::MongodbCredentials],
    shape: CredentialShape::UsernamePassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "updateUser",
        verify: "ping",
        revoke: "updateUser",
        probe: "ping",
    },
    options: &[ADMIN_AUTH_SOURCE_OPTION],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::MongodbCredentials(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let admin_auth_source = match ctx.options.get(ADMIN_AUTH_SOURCE_OPTION) {
        None => None,
        Some(value) => Some(
            value
                .as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid(
                        SYSTEM,
                        Phase::Build,
                        format!("{ADMIN_AUTH_SOURCE_OPTION} must be a non-empty string"),
                    )
                })?
                .to_owned(),
        ),
    };
    let driver = MongoDriver::new(ctx.connection.clone(), parameters, admin_auth_source)?;
    let usernames = driver.usernames.clone();
    Ok(Built::chosen(
        driver,
        usernames,
        parameters.password_requirements.as_ref(),
    ))
}

/// The MongoDB driver of one rotation.
#[derive(Debug, Clone)]
pub struct MongoDriver {
    connection: Arc<ConnectionConfig>,
    /// `username1`, `username2`, trimmed.
    usernames: [String; 2],
    /// Where the admin authenticates: `admin_auth_source`, else the connection's database.
    admin_auth_source: String,
}

/// The last failed server check of a client: why server selection found no server (a refused
/// TCP connection, a TLS failure), which the selection error itself only describes in text.
type LastFailure = Arc<Mutex<Option<MongoError>>>;

/// A client of one call, and what its server monitor saw.
struct Session {
    client: ::mongodb::Client,
    last_failure: LastFailure,
    /// Notified when a server check failed on TLS (a refused certificate or handshake), which
    /// waiting out the server selection timeout cannot heal.
    tls_refused: Arc<tokio::sync::Notify>,
}

/// A CA PEM written to a private temporary file for the driver's TLS setup, which reads CA
/// certificates from a path only; removed when dropped (the client has read it by then).
struct CaFile(PathBuf);

// === impl MongoDriver ===

impl MongoDriver {
    /// A driver for `username1` / `username2` on `connection`.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`]: an empty database (it is where the users live), or a
    /// username the server cannot hold (empty, or with a NUL).
    pub fn new(
        connection: impl Into<Arc<ConnectionConfig>>,
        parameters: &MongoDbCredentialsParameters,
        admin_auth_source: Option<String>,
    ) -> Result<Self, DriverError> {
        let connection: Arc<ConnectionConfig> = connection.into();
        let database = connection.database.trim().to_owned();
        if database.is_empty() {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "the connection's database is empty: it is where the rotated users live and \
                 their authSource",
            ));
        }
        let usernames = [
            parameters.username1.trim().to_owned(),
            parameters.username2.trim().to_owned(),
        ];
        for u in &usernames {
            if u.contains('\0') {
                return Err(invalid(
                    SYSTEM,
                    Phase::Build,
                    format!("username {u:?} holds a NUL character"),
                ));
            }
        }
        let admin_auth_source = admin_auth_source.unwrap_or_else(|| database.clone());
        // The users' database, not the connection's; the rest stays shared.
        let connection = if connection.database == database {
            connection
        } else {
            Arc::new(ConnectionConfig {
                database,
                ..ConnectionConfig::clone(&connection)
            })
        };
        Ok(Self {
            connection,
            usernames,
            admin_auth_source,
        })
    }

    /// The client options of a login as `username` against `auth_source`.
    fn client_options(
        &self,
        username: &str,
        password: &SecretString,
        auth_source: &str,
        ca_file: Option<&CaFile>,
    ) -> ClientOptions {
        let c = &self.connection;
        let credential = MongoCredential::builder()
            .username(username.to_owned())
            .password(password.expose().to_owned())
            .source(auth_source.to_owned())
            .mechanism(AuthMechanism::ScramSha256)
            .build();
        let tls = match c.tls.mode {
            TlsMode::Disable => Tls::Disabled,
            TlsMode::Require => Tls::Enabled(
                TlsOptions::builder()
                    .allow_invalid_certificates(true)
                    .build(),
            ),
            TlsMode::VerifyFull => Tls::Enabled(
                TlsOptions::builder()
                    .ca_file_path(ca_file.map(|f| f.0.clone()))
                    .build(),
            ),
        };
        ClientOptions::builder()
            .hosts(vec![ServerAddress::Tcp {
                host: c.host.clone(),
                port: Some(c.port),
            }])
            .direct_connection(true)
            .credential(credential)
            .tls(tls)
            .app_name("rotator".to_owned())
            .connect_timeout(CONNECT_TIMEOUT)
            .server_selection_timeout(CONNECT_TIMEOUT)
            .max_pool_size(1u32)
            .min_pool_size(0u32)
            .retry_reads(false)
            .retry_writes(false)
            .build()
    }

    /// A client logged in (lazily, at its first command) as `username`.
    fn session(
        &self,
        phase: Phase,
        username: &str,
        password: &SecretString,
        auth_source: &str,
    ) -> Result<Session, DriverError> {
        let ca_file = match (self.connection.tls.mode, self.connection.ca_pem()) {
            (TlsMode::VerifyFull, Some(pem)) => Some(CaFile::write(pem, phase)?),
            _ => None,
        };
        let mut options = self.client_options(username, password, auth_source, ca_file.as_ref());
        let last_failure = LastFailure::default();
        let tls_refused = Arc::new(tokio::sync::Notify::new());
        let (sink, notify) = (last_failure.clone(), tls_refused.clone());
        options.sdam_event_handler = Some(EventHandler::callback(move |event: SdamEvent| {
            if let SdamEvent::ServerHeartbeatFailed(failed) = event {
                let tls = is_tls_failure(&failed.failure);
                if let Ok(mut last) = sink.lock() {
                    *last = Some(failed.failure);
                }
                if tls {
                    notify.notify_one();
                }
            }
        }));
        // The client reads the CA file here; the file goes when `ca_file` drops.
        let client = ::mongodb::Client::with_options(options).map_err(|e| {
            classify(&e, None, phase, Login::Admin, &Redactor::new([])).before_sending()
        })?;
        Ok(Session {
            client,
            last_failure,
            tls_refused,
        })
    }

    /// A session logged in as the admin, proven by a `ping` (the admin's login happens there).
    async fn admin_session(
        &self,
        phase: Phase,
        redactor: &Redactor<'_>,
    ) -> Result<Session, DriverError> {
        let c = &self.connection;
        let session = self.session(
            phase,
            &c.admin_username,
            &c.admin_password,
            &self.admin_auth_source,
        )?;
        match session
            .command(
                &self.admin_auth_source,
                doc! { "ping": 1 },
                phase,
                Login::Admin,
                redactor,
            )
            .await
        {
            Ok(()) => Ok(session),
            Err(e) => {
                session.close().await;
                // Nothing but the ping was sent.
                Err(e.before_sending())
            }
        }
    }

    /// `updateUser` of `username` to `password` as the admin.
    async fn update_user(
        &self,
        phase: Phase,
        username: &str,
        password: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        if password.expose().is_empty() {
            return Err(invalid(SYSTEM, phase, "the password is empty"));
        }
        let session = self.admin_session(phase, redactor).await?;
        let result = session
            .command(
                &self.connection.database,
                doc! {
                    "updateUser": username,
                    "pwd": password.expose(),
                    "mechanisms": [MECHANISM],
                },
                phase,
                Login::Admin,
                redactor,
            )
            .await;
        session.close().await;
        result
    }
}

// === impl Session ===

impl Session {
    /// Runs `command` on `database` within [`OPERATION_TIMEOUT`].
    async fn command(
        &self,
        database: &str,
        command: Document,
        phase: Phase,
        login: Login,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
        let database = self.client.database(database);
        let run = tokio::time::timeout(OPERATION_TIMEOUT, database.run_command(command));
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = self.tls_refused.notified() => {
                // Nothing can have been sent: no connection got through TLS.
                let last = self.last_failure();
                let (kind, why) = selection_failure(last.as_ref(), login);
                return Err(DriverError::new(
                    kind,
                    SYSTEM,
                    phase,
                    redactor.scrub(&format!("no usable server: {why}")),
                )
                .before_sending());
            }
        };
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let last = self.last_failure();
                Err(classify(&e, last.as_ref(), phase, login, redactor))
            }
            Err(_) => Err(DriverError::new(
                DriverErrorKind::Timeout,
                SYSTEM,
                phase,
                format!("no answer within {} s", OPERATION_TIMEOUT.as_secs()),
            )),
        }
    }

    /// The client's last failed server check.
    fn last_failure(&self) -> Option<MongoError> {
        self.last_failure.lock().ok().and_then(|l| l.clone())
    }

    /// Ends the client's connection and its monitor (a client dropped while its runtime shuts
    /// down can panic in the driver; an explicit shutdown never does).
    async fn close(self) {
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.client.shutdown()).await;
    }
}

// === impl CaFile ===

impl CaFile {
    /// Writes `pem` to a new file only this process created (`create_new`: never through an
    /// existing path or link).
    fn write(pem: &str, phase: Phase) -> Result<Self, DriverError> {
        use std::io::Write as _;
        let path = std::env::temp_dir().join(format!(
            "rotator-mongodb-ca-{}.pem",
            uuid::Uuid::new_v4().simple()
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(pem.as_bytes()));
        match written {
            Ok(()) => Ok(Self(path)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(DriverError::new(
                    DriverErrorKind::Tls,
                    SYSTEM,
                    phase,
                    format!("cannot write the CA certificate to a temporary file: {e}"),
                )
                .before_sending())
            }
        }
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Driver for MongoDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.connection.admin_password.expose(),
        ]);
        self.update_user(Phase::Apply, &credential.id, &credential.secret, &redactor)
            .await
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.connection.admin_password.expose(),
        ]);
        let database = &self.connection.database;
        let session = self.session(Phase::Verify, &credential.id, &credential.secret, database)?;
        let result = session
            .command(
                database,
                doc! { "ping": 1 },
                Phase::Verify,
                Login::Target,
                &redactor,
            )
            .await;
        session.close().await;
        result
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        // A password nobody keeps: the 48-alphanumeric default policy.
        let discarded =
            super::password::PasswordPolicy::default_for(RotationType::MongodbCredentials)
                .generate();
        let redactor = Redactor::new([discarded.expose(), self.connection.admin_password.expose()]);
        self.update_user(Phase::Revoke, id, &discarded, &redactor)
            .await
    }

    /// Logs in as the admin and pings.
    async fn probe(&self) -> Result<(), DriverError> {
        let redactor = Redactor::new([self.connection.admin_password.expose()]);
        let session = self.admin_session(Phase::Probe, &redactor).await?;
        session.close().await;
        Ok(())
    }
}

/// Classifies a driver error. `last_failure` is the client's last failed server check, which
/// says why server selection found no server. The detail is built from codes and messages,
/// never from the error's `Display` (which prints the whole server response), and scrubbed.
fn classify(
    error: &MongoError,
    last_failure: Option<&MongoError>,
    phase: Phase,
    login: Login,
    redactor: &Redactor<'_>,
) -> DriverError {
    let (kind, detail, before_sending) = match error.kind.as_ref() {
        ErrorKind::Command(c) => (
            command_kind(c.code, login),
            format!("[{} {}] {}", c.code, c.code_name, c.message),
            false,
        ),
        // SCRAM refused (the server's code 18 is in the source): nothing else was sent yet.
        ErrorKind::Authentication { message, .. } => (
            login.rejected(),
            format!("authentication failed: {message}"),
            true,
        ),
        ErrorKind::ServerSelection { .. } => {
            let (kind, why) = selection_failure(last_failure, login);
            (
                kind,
                format!(
                    "no usable server within {} s: {why}",
                    CONNECT_TIMEOUT.as_secs()
                ),
                true,
            )
        }
        ErrorKind::Io(io) => (io_kind(io), io_detail(io, error), false),
        ErrorKind::InvalidTlsConfig { message, .. } => (DriverErrorKind::Tls, message.clone(), true),
        ErrorKind::InvalidArgument { message, .. } => {
            (DriverErrorKind::InvalidInput, message.clone(), true)
        }
        ErrorKind::DnsResolve { message, .. } => (DriverErrorKind::Unreachable, message.clone(), true),
        ErrorKind::ConnectionPoolCleared { message, .. } => {
            (DriverErrorKind::Unreachable, message.clone(), false)
        }
        other => (DriverErrorKind::Server, short(other), false),
    };
    let e = DriverError::new(kind, SYSTEM, phase, redactor.scrub(&detail));
    if before_sending {
        e.before_sending()
    } else {
        e
    }
}

/// Why server selection found no server, from the client's last failed server check.
fn selection_failure(last_failure: Option<&MongoError>, login: Login) -> (DriverErrorKind, String) {
    match last_failure.map(|f| (f, f.kind.as_ref())) {
        Some((f, ErrorKind::Io(io))) => (io_kind(io), io_detail(io, f)),
        Some((_, ErrorKind::Command(c))) => (
            command_kind(c.code, login),
            format!("[{} {}] {}", c.code, c.code_name, c.message),
        ),
        Some((_, ErrorKind::InvalidTlsConfig { message, .. })) => {
            (DriverErrorKind::Tls, message.clone())
        }
        Some((_, other)) => (DriverErrorKind::Unreachable, short(other)),
        None => (
            DriverErrorKind::Unreachable,
            "no answer from the server".to_owned(),
        ),
    }
}

/// Whether a server check failed on TLS (OpenSSL's handshake and certificate failures are in
/// the I/O error).
fn is_tls_failure(error: &MongoError) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Io(io) => io_kind(io) == DriverErrorKind::Tls,
        ErrorKind::InvalidTlsConfig { .. } => true,
        _ => false,
    }
}

/// The kind of a server error code.
fn command_kind(code: i32, login: Login) -> DriverErrorKind {
    match code {
        // AuthenticationFailed
        18 => login.rejected(),
        // UserNotFound
        11 => DriverErrorKind::UserNotFound,
        // Unauthorized (no changePassword on the database), AuthenticationRestrictionUnmet
        13 | 334 => DriverErrorKind::PermissionDenied,
        // ExceededTimeLimit, MaxTimeMSExpired, NetworkTimeout
        262 | 50 | 89 => DriverErrorKind::Timeout,
        // HostUnreachable, HostNotFound, SocketException
        6 | 7 | 9001 => DriverErrorKind::Unreachable,
        // ShutdownInProgress, InterruptedAtShutdown, InterruptedDueToReplStateChange,
        // NotWritablePrimary, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, PrimarySteppedDown,
        // WriteConflict, LockTimeout, LockBusy, TooManyConnections (mongos)
        91 | 11600 | 11602 | 10107 | 13435 | 13436 | 189 | 112 | 24 | 46 | 10058 => {
            DriverErrorKind::ServerUnavailable
        }
        _ => DriverErrorKind::Server,
    }
}

/// The kind of an I/O failure: a TLS failure when OpenSSL is in it.
fn io_kind(io: &std::io::Error) -> DriverErrorKind {
    if openssl_failure(io).is_some() {
        return DriverErrorKind::Tls;
    }
    match io.kind() {
        std::io::ErrorKind::InvalidData => DriverErrorKind::Tls,
        std::io::ErrorKind::TimedOut => DriverErrorKind::Timeout,
        _ => DriverErrorKind::Unreachable,
    }
}

/// An I/O failure's text, followed by what to fix when it is a refused certificate.
fn io_detail(io: &std::io::Error, error: &MongoError) -> String {
    match openssl_failure(io).or_else(|| openssl_failure(error)) {
        Some(OpensslFailure::Certificate) => format!("{io}: {OPENSSL_CERTIFICATE_ADVICE}"),
        Some(OpensslFailure::Handshake) => format!(
            "{io}: the TLS handshake failed: check that the server accepts TLS on this port, or \
             set tls = \"disable\" for a server without TLS"
        ),
        None => io.to_string(),
    }
}

/// The first line of an error kind's text, bounded.
fn short(kind: &ErrorKind) -> String {
    let text = kind.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::TlsConfig;

    fn driver(mode: TlsMode, ca_pem: Option<&str>) -> MongoDriver {
        MongoDriver::new(
            ConnectionConfig {
                host: "db.example".into(),
                port: 27018,
                database: " appdb ".into(),
                admin_username: "rotator".into(),
                admin_password: SecretString::new("admin-Pw-1"),
                tls: TlsConfig {
                    mode,
                    ca_pem: ca_pem.map(str::to_owned),
                },
            },
            &MongoDbCredentialsParameters {
                username1: " app_a".into(),
                username2: "app_b ".into(),
                password_requirements: None,
            },
            None,
        )
        .expect("a valid driver")
    }

    fn options(d: &MongoDriver, ca: Option<&CaFile>) -> ClientOptions {
        d.client_options("app_a", &SecretString::new("user-Pw-1"), "appdb", ca)
    }

    #[test]
    fn a_login_is_direct_scram_sha_256_against_the_database_with_upstream_timeouts() {
        let d = driver(TlsMode::Disable, None);
        assert_eq!(d.usernames, ["app_a", "app_b"]);
        assert_eq!(d.admin_auth_source, "appdb");
        let o = options(&d, None);
        assert_eq!(
            o.hosts,
            vec![ServerAddress::Tcp {
                host: "db.example".into(),
                port: Some(27018)
            }]
        );
        assert_eq!(o.direct_connection, Some(true));
        assert_eq!(o.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(o.server_selection_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(o.max_pool_size, Some(1));
        let credential = o.credential.expect("a credential");
        assert_eq!(credential.source.as_deref(), Some("appdb"));
        assert_eq!(credential.mechanism, Some(AuthMechanism::ScramSha256));
        assert_eq!(o.tls, Some(Tls::Disabled));
    }

    #[test]
    fn tls_modes_map_to_the_drivers_settings() {
        let require = options(&driver(TlsMode::Require, Some("ignored")), None);
        let Some(Tls::Enabled(t)) = require.tls else {
            panic!("require enables TLS")
        };
        assert_eq!(t.allow_invalid_certificates, Some(true));
        assert_eq!(t.ca_file_path, None);

        let full = options(&driver(TlsMode::VerifyFull, None), None);
        let Some(Tls::Enabled(t)) = full.tls else {
            panic!("verify-full enables TLS")
        };
        assert_eq!(t.allow_invalid_certificates, None, "certificates checked");
        assert_eq!(t.ca_file_path, None, "the driver's built-in roots");
    }

    #[test]
    fn a_ca_pem_is_handed_over_in_a_temporary_file_removed_after_use() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let d = driver(TlsMode::VerifyFull, Some(pem));
        let ca = CaFile::write(pem, Phase::Verify).expect("a temp file");
        let path = ca.0.clone();
        assert_eq!(std::fs::read_to_string(&path).expect("written"), pem);
        let Some(Tls::Enabled(t)) = options(&d, Some(&ca)).tls else {
            panic!("verify-full enables TLS")
        };
        assert_eq!(t.ca_file_path.as_ref(), Some(&path));
        drop(ca);
        assert!(!path.exists(), "the CA file is removed");
    }

    #[test]
    fn the_admin_may_authenticate_elsewhere_and_an_empty_database_is_refused() {
        let mut d = driver(TlsMode::Disable, None);
        assert_eq!(d.connection.database, "appdb");
        d = MongoDriver::new(
            d.connection.clone(),
            &MongoDbCredentialsParameters {
                username1: "a".into(),
                username2: "b".into(),
                password_requirements: None,
            },
            Some("admin".into()),
        )
        .expect("valid");
        assert_eq!(d.admin_auth_source, "admin");
        let mut empty = ConnectionConfig::clone(&d.connection);
        empty.database = "  ".into();
        let e = MongoDriver::new(empty, &MongoDbCredentialsParameters::default(), None)
            .expect_err("no database");
        assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    }

    #[test]
    fn server_codes_map_to_kinds() {
        assert_eq!(
            command_kind(18, Login::Admin),
            DriverErrorKind::AdminLoginRejected
        );
        assert_eq!(
            command_kind(18, Login::Target),
            DriverErrorKind::LoginRejected
        );
        assert_eq!(
            command_kind(11, Login::Admin),
            DriverErrorKind::UserNotFound
        );
        assert_eq!(
            command_kind(13, Login::Admin),
            DriverErrorKind::PermissionDenied
        );
        assert_eq!(
            command_kind(91, Login::Admin),
            DriverErrorKind::ServerUnavailable
        );
        assert_eq!(command_kind(2, Login::Admin), DriverErrorKind::Server);
    }
}
